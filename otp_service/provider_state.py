"""Readiness from the provider's account state: a deactivated template fails every send.

``/readyz`` asks :meth:`ProviderStateWatch.blocking` on every probe; the management API is read
at most every ``OTP_HUAWEI_STATE_REFRESH`` seconds per process (a probe every few seconds must
not become an API call every few seconds). When the API cannot be read the last known state
stands, and with none known the service stays ready: an unreachable management API says nothing
about the send API, and taking every instance out of rotation for it would turn a reporting
outage into a sending outage.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from otp_service.settings import Settings
from otp_service.sms.huawei_manage import Finding, HuaweiManagement, ManagementError, assess

log = logging.getLogger(__name__)


class ProviderStateWatch:
    """The configured template's and signature's findings, refreshed lazily.

    :param on_findings: called with each fresh reading (metrics).
    """

    def __init__(
        self,
        management: HuaweiManagement,
        settings: Settings,
        *,
        on_findings: Callable[[list[Finding]], None] = lambda findings: None,
    ) -> None:
        self._management = management
        self._template_id = settings.huawei_template_id or ""
        self._signature = settings.huawei_signature
        self._refresh = settings.huawei_state_refresh
        self._code_length = settings.code_length
        self._on_findings = on_findings
        self._lock = threading.Lock()
        self._findings: list[Finding] | None = None
        self._read_at: float | None = None

    def read(self) -> list[Finding]:
        """Read the state now. :raises ManagementError: it could not be read."""
        template = self._management.template(self._template_id)
        signature = None if not self._signature else self._management.signature(self._signature)
        findings = assess(
            template,
            signature,
            signature_configured=bool(self._signature),
            variables=self._management.variables(template),
            code_length=self._code_length,
        )
        self._on_findings(findings)
        return findings

    def blocking(self, now: float) -> list[Finding]:
        """The findings that stop every send, from a reading at most ``refresh`` seconds old."""
        with self._lock:
            if self._read_at is None or now - self._read_at >= self._refresh:
                self._read_at = now
                try:
                    self._findings = self.read()
                except ManagementError as exc:
                    log.warning("provider state not refreshed: %s", exc)
            return [f for f in self._findings or () if f.blocking]
