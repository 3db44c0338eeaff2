"""One structured audit event per decision, with the number masked and keyed-hashed.

Every decision the service makes (a send accepted or refused, a verification, a token check, a
captcha, a delivery report, an opt-out) passes through :class:`AuditLog` exactly once. That makes
it the one place to hang everything that watches decisions: it writes the JSON audit line, and
hands the same :class:`Decision` to its observers (the Prometheus :class:`~otp_service.metrics.
Metrics`), so metrics and audit trail can never disagree.

Operators correlate a number's events through ``phone_hash`` (an HMAC under a key derived from
the server secret) without the log ever holding the number, a code or a secret.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import logging.handlers
import sys
from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from otp_service.core.phone import mask_phone
from otp_service.errors import ConfigurationError, OtpError, ProviderError

log = logging.getLogger("otp_service.audit")

#: The current request's id, set by the HTTP layer so events and problems carry it.
request_id_var: ContextVar[str | None] = ContextVar("otp_request_id", default=None)

#: The ``LogRecord`` attribute holding a structured line (audit event, access line) as a dict,
#: so :class:`JsonLineFormatter` writes fields rather than parsing a message.
FIELDS_ATTRIBUTE = "otp_fields"


class _JsonText:
    """A line as JSON text, encoded only when a handler asks for the record's message.

    The message is the line itself, so a bare handler still writes one JSON object per line;
    :class:`JsonLineFormatter` writes the fields instead, so the sidecar encodes each line once.
    """

    __slots__ = ("line",)

    def __init__(self, line: dict[str, object]) -> None:
        self.line = line

    def __str__(self) -> str:
        return json.dumps(self.line, ensure_ascii=False, sort_keys=True, default=str)


@dataclass(slots=True)
class Event:
    """A decision being made; filled in as the pipeline learns more.

    ``kind`` names the decision (``send``, ``verify``, ``token_check``, ``captcha``, ``limit``,
    ``delivery_report``, ``uplink``); ``details`` hold public facts only (limit ids, provider
    name and latency, message ids), never a code, a token or a full number.
    """

    kind: str
    purpose: str | None = None
    client_ip: str | None = None
    phone: str | None = None
    details: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Decision:
    """What observers of the audit log receive: the event, its outcome, and the refusal if any."""

    event: Event
    outcome: str
    error: OtpError | None = None


class AuditObserver(Protocol):
    """Anything that wants to see every decision (metrics, alerting hooks)."""

    def observe(self, decision: Decision) -> None: ...


class AuditLog:
    """Writes events as JSON lines on the ``otp_service.audit`` logger and notifies observers.

    :param hash_key: keys ``phone_hash``; derive it from the server secret.
    :param observers: told about every decision after its line is written.
    """

    def __init__(self, hash_key: bytes, observers: Iterable[AuditObserver] = ()) -> None:
        self._hash_key = hash_key
        self._observers: list[AuditObserver] = list(observers)

    def subscribe(self, observer: AuditObserver) -> None:
        """Add ``observer`` unless already there (several services may share one log)."""
        if not any(existing is observer for existing in self._observers):
            self._observers.append(observer)

    def phone_hash(self, e164: str) -> str:
        return hmac.new(self._hash_key, e164.encode(), hashlib.sha256).hexdigest()[:16]

    def accepted(self, event: Event) -> None:
        self.record(event, "accepted")

    def refused(self, event: Event, error: OtpError) -> None:
        # The line's ``reason`` is the error code; an error's own ``reason`` extra (why a
        # provider call failed: ``timeout``, ``connection_refused`` …) becomes ``cause``.
        fields = dict(error.extras)
        cause = fields.pop("reason", None)
        if cause is not None:
            fields["cause"] = cause
        if isinstance(error, ProviderError) and error.operator_problem:
            # The provider named a fault of our account or configuration: an operator's alert,
            # not the caller's (docs/huawei.md, section 5).
            fields["operator_problem"] = True
        self.record(event, "refused", error=error, reason=error.code, **fields)

    def record(
        self, event: Event, outcome: str, *, error: OtpError | None = None, **extra: object
    ) -> None:
        """Write one line for ``event`` and tell every observer.

        :param outcome: ``accepted``, ``refused``, or a kind's own word (``recorded``,
            ``duplicate``, ``opted_out`` …).
        :param error: the refusal, for observers that count by its code and attributes.
        :param extra: further public fields for the line.
        """
        line: dict[str, object] = {
            "event": event.kind,
            "outcome": outcome,
            "purpose": event.purpose,
            "ip": event.client_ip,
            "request_id": request_id_var.get(),
        }
        if event.phone is not None:
            line["phone"] = mask_phone(event.phone)
            line["phone_hash"] = self.phone_hash(event.phone)
        line.update({k: v for k, v in event.details.items() if v is not None})
        line.update(extra)
        if log.isEnabledFor(logging.INFO):
            # Built here rather than by ``log.info``, whose look-up of the caller's frame costs
            # as much as writing the line and would only ever name this method.
            record = log.makeRecord(
                log.name,
                logging.INFO,
                __file__,
                0,
                _JsonText(line),
                (),
                None,
                func="record",
                extra={FIELDS_ATTRIBUTE: line},
            )
            log.handle(record)
        decision = Decision(event, outcome, error)
        for observer in self._observers:
            try:
                observer.observe(decision)
            except Exception:
                # An observer's bug must not turn a decision already made (an SMS already sent)
                # into an error for the caller.
                log.exception("audit observer %s failed", type(observer).__name__)


class JsonLineFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, then the record's structured fields.

    Audit and access records carry their fields in :data:`FIELDS_ATTRIBUTE` and are written as
    those fields; any other record is written as its message (and traceback, if any). The
    sidecar's gunicorn config installs it on every handler, so a log shipper parses every line.
    """

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        fields = getattr(record, FIELDS_ATTRIBUTE, None)
        if isinstance(fields, dict):
            line.update(fields)
        else:
            line["message"] = record.getMessage()
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class _AuditLogHandler(logging.Handler):
    """Marks the one handler :func:`attach_audit_log` owns, so a second app replaces it."""


class _AuditStreamHandler(logging.StreamHandler, _AuditLogHandler):  # type: ignore[type-arg]
    pass


class _AuditFileHandler(logging.handlers.WatchedFileHandler, _AuditLogHandler):
    pass


def attach_audit_log(destination: str) -> logging.Handler | None:
    """Send audit lines (JSON, as the sidecar writes them) to ``stderr`` or a file.

    For a host that embeds ``create_app`` under its own WSGI server and configures no logging:
    the audit logger would otherwise reach no handler and every decision would be invisible. A
    library must not reconfigure its host, so this is opt-in (``OTP_AUDIT_LOG``) and touches only
    the ``otp_service.audit`` logger: it adds one handler (replacing the one an earlier app
    added) and lets INFO through; propagation is left alone, so a host's own handlers still get
    the lines too. A file is watched (``WatchedFileHandler``): logrotate may move it.

    The new handler is opened before the old one goes, so a destination that cannot be opened
    leaves the trail where it was.

    :returns: the handler attached, or ``None`` for ``off``.
    :raises ConfigurationError: the file cannot be opened (gone, or not writable, since the
        settings were checked).
    """
    handler: logging.Handler | None = None
    if destination == "stderr":
        handler = _AuditStreamHandler(sys.stderr)
    elif destination != "off":
        try:
            handler = _AuditFileHandler(destination, encoding="utf-8")
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise ConfigurationError(
                problems=[f"OTP_AUDIT_LOG: cannot open {destination!r}: {reason}"]
            ) from exc
    for old in [h for h in log.handlers if isinstance(h, _AuditLogHandler)]:
        log.removeHandler(old)
        old.close()
    if handler is None:
        return None
    handler.setFormatter(JsonLineFormatter())
    log.addHandler(handler)
    if not log.isEnabledFor(logging.INFO):
        log.setLevel(logging.INFO)
    return handler
