"""Prometheus metrics, fed by the audit log so that every counted decision is also an audit line.

:class:`Metrics` is an :class:`~otp_service.audit.AuditObserver`: the service never touches a
counter itself, it records decisions and this module turns them into numbers. Labels are closed
vocabularies (error codes, limit axes, rule ids, provider codes); a value that does not look like
one, or that holds a run of digits long enough to be a phone number, is counted as ``other``, so
no number or code can reach a label and no client can grow the series without bound.

Under gunicorn each worker is its own process with its own counters. With
``PROMETHEUS_MULTIPROC_DIR`` set (the Docker image sets it, and the gunicorn config refuses
several workers without it) ``prometheus_client`` keeps values in files in that directory, and
:meth:`Metrics.exposition` merges every worker's files, so a scrape sees the whole server
whichever worker answers it.
"""

from __future__ import annotations

import os
import re

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from otp_service.audit import Decision
from otp_service.errors import ContentBlocked, ProviderError, StoreUnavailable
from otp_service.sms.huawei_manage import Finding

#: The environment variable ``prometheus_client`` reads to switch to multiprocess mode.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: Provider round trips: a healthy provider answers in well under a second; the tail up to the
#: 5 s default timeout (OTP_HUAWEI_TIMEOUT) is what an operator needs to see.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0)
_LABEL = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_DIGIT_RUN = re.compile(r"\d{7,}")
_CAPTCHA_OUTCOMES = {"captcha_required": "required", "captcha_invalid": "invalid"}


def label(value: object) -> str:
    """A safe label value: ``""`` for nothing, ``other`` for anything outside the vocabulary."""
    if value is None or value == "":
        return ""
    text = str(value)
    if not _LABEL.fullmatch(text) or _DIGIT_RUN.search(text):
        return "other"
    return text


class Metrics:
    """The service's Prometheus metrics, one set per instance (no global registry).

    :param registry: where single-process values live; a fresh registry if omitted.
    :param multiprocess_dir: merge every process's values from this directory when exposing;
        defaults to ``PROMETHEUS_MULTIPROC_DIR``.
    """

    def __init__(
        self, registry: CollectorRegistry | None = None, *, multiprocess_dir: str | None = None
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.multiprocess_dir = multiprocess_dir or os.environ.get(MULTIPROC_ENV) or None
        r = self.registry
        self.decisions = Counter(
            "otp_decisions",
            "Every audited decision by event kind and outcome.",
            ["event", "outcome"],
            registry=r,
        )
        self.sends = Counter(
            "otp_sends",
            "Send-code requests: sent, test_number (no SMS) or refused, with reason.",
            ["outcome", "reason"],
            registry=r,
        )
        self.verifications = Counter(
            "otp_verifications",
            "Verify requests: approved or refused, with reason.",
            ["outcome", "reason"],
            registry=r,
        )
        self.token_checks = Counter(
            "otp_token_checks",
            "Token checks: valid or refused, with reason.",
            ["outcome", "reason"],
            registry=r,
        )
        self.refusals = Counter(
            "otp_refusals",
            "Refusals of any kind by event, error code and limit axis.",
            ["event", "reason", "limit"],
            registry=r,
        )
        self.captcha = Counter(
            "otp_captcha",
            "Captcha challenges issued (or refused) and gate outcomes: passed, required, invalid.",
            ["outcome"],
            registry=r,
        )
        self.provider_errors = Counter(
            "otp_provider_errors",
            "SMS provider failures by our code and the provider's code.",
            ["provider", "error", "provider_code"],
            registry=r,
        )
        self.provider_operator_problems = Counter(
            "otp_provider_operator_problems",
            "Provider answers naming a fault of our account or configuration (ops must act).",
            ["provider", "provider_code"],
            registry=r,
        )
        self.provider_latency = Histogram(
            "otp_provider_latency_seconds",
            "Time spent in the SMS provider call.",
            ["provider", "outcome"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.store_errors = Counter(
            "otp_store_errors",
            "Decisions refused because the state store failed.",
            ["event"],
            registry=r,
        )
        self.content_blocks = Counter(
            "otp_content_blocks",
            "Sends blocked by the content check, by rule group and rule.",
            ["group", "rule"],
            registry=r,
        )
        self.shadow_hits = Counter(
            "otp_shadow_hits",
            "Shadow rules that would have blocked a decision.",
            ["rule"],
            registry=r,
        )
        self.delivery_reports = Counter(
            "otp_delivery_reports",
            "Provider delivery reports by status (duplicates apart).",
            ["status", "outcome"],
            registry=r,
        )
        self.provider_blocking = Gauge(
            "otp_provider_state_blocking",
            "1 when the management API says this template or signature state stops every send.",
            ["subject", "state"],
            registry=r,
            multiprocess_mode="max",
        )
        self.uplinks = Counter(
            "otp_uplinks",
            "Inbound SMS by outcome (opted_out, ignored, duplicate).",
            ["outcome"],
            registry=r,
        )

    def provider_state(self, findings: list[Finding]) -> None:
        """Record a fresh reading of the template and signature state (``/readyz``)."""
        for finding in findings:
            kind = finding.subject.split(" ", 1)[0]
            self.provider_blocking.labels(kind, label(finding.state)).set(
                1 if finding.blocking else 0
            )

    def observe(self, decision: Decision) -> None:
        """Count one decision (the :class:`~otp_service.audit.AuditObserver` hook)."""
        event, error = decision.event, decision.error
        kind, outcome = label(event.kind), label(decision.outcome)
        reason = label(error.code) if error is not None else ""
        self.decisions.labels(kind, outcome).inc()
        if error is not None:
            self.refusals.labels(kind, reason, label(error.extras.get("limit"))).inc()
            self._count_error(kind, event.details, error)
        shadowed = event.details.get("shadowed")
        if isinstance(shadowed, list | tuple):
            for rule in shadowed:
                self.shadow_hits.labels(label(rule)).inc()
        if kind == "send":
            self._count_send(decision, reason)
        elif kind == "verify":
            self.verifications.labels("refused" if error else "approved", reason).inc()
        elif kind == "token_check":
            self.token_checks.labels("refused" if error else "valid", reason).inc()
        elif kind == "captcha":
            self.captcha.labels(self._captcha_outcome(reason)).inc()
        elif kind == "captcha_create":
            self.captcha.labels("issued" if error is None else "refused").inc()
        elif kind == "delivery_report":
            self.delivery_reports.labels(label(event.details.get("status")), outcome).inc()
        elif kind == "uplink":
            self.uplinks.labels(outcome).inc()

    def _count_send(self, decision: Decision, reason: str) -> None:
        details, error = decision.event.details, decision.error
        if error is not None:
            self.sends.labels("refused", reason).inc()
            if reason in _CAPTCHA_OUTCOMES:
                self.captcha.labels(_CAPTCHA_OUTCOMES[reason]).inc()
        else:
            self.sends.labels("test_number" if details.get("test_number") else "sent", "").inc()
        if details.get("captcha") == "passed":
            self.captcha.labels("passed").inc()
        seconds = details.get("provider_seconds")
        if isinstance(seconds, int | float):
            provider = label(details.get("provider"))
            self.provider_latency.labels(provider, reason or "ok").observe(seconds)

    @staticmethod
    def _captcha_outcome(reason: str) -> str:
        if not reason:
            return "passed"
        return _CAPTCHA_OUTCOMES.get(reason, "error")

    def _count_error(self, kind: str, details: dict[str, object], error: Exception) -> None:
        if isinstance(error, ProviderError):
            extras = error.extras
            provider_code = (
                extras.get("provider_code") or extras.get("http_status") or extras.get("reason")
            )
            self.provider_errors.labels(
                label(details.get("provider")), label(error.code), label(provider_code)
            ).inc()
            if error.operator_problem:
                self.provider_operator_problems.labels(
                    label(details.get("provider")), label(provider_code)
                ).inc()
        elif isinstance(error, StoreUnavailable):
            self.store_errors.labels(kind).inc()
        elif isinstance(error, ContentBlocked):
            self.content_blocks.labels(
                label(error.extras.get("group")), label(error.extras.get("rule"))
            ).inc()

    def exposition(self) -> tuple[bytes, str]:
        """The scrape body and its content type: every worker's values in multiprocess mode."""
        if self.multiprocess_dir:
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
