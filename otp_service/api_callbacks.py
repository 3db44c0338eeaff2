"""``POST /callbacks/huawei/[<token>/]status`` and ``/uplink``: thin views over :mod:`callbacks`.

The service lives in ``current_app.extensions["otp_service"]`` (anything with ``settings``,
``store`` and ``clock``). Errors are raised as :class:`~otp_service.errors.OtpError`s and
rendered by the problem handlers registered on this blueprint; success is ``200`` with an
empty body, as Huawei asks.
"""

from __future__ import annotations

from typing import cast

from flask import Blueprint, Response, current_app, request

from otp_service.audit import AuditLog, Event
from otp_service.callbacks import (
    MAX_BATCH_BYTES,
    CallbackContext,
    ReportOutcome,
    StatusReport,
    UplinkOutcome,
    handle_batch_status_callback,
    handle_status_callback,
    handle_uplink_callback,
)
from otp_service.core.client_ip import parse_networks, resolve_client_ip
from otp_service.problems import register_on_blueprint

callbacks_bp = Blueprint("otp_callbacks", __name__)
# Problems are rendered for these views whichever app mounts them (sidecar or host app).
register_on_blueprint(callbacks_bp)


def _context() -> CallbackContext:
    return cast(CallbackContext, current_app.extensions["otp_service"])


def _audit(ctx: CallbackContext) -> AuditLog | None:
    audit = getattr(ctx, "audit", None)
    return audit if isinstance(audit, AuditLog) else None


def _client_ip(ctx: CallbackContext) -> str | None:
    """The push's source address, resolved through ``OTP_TRUSTED_PROXIES`` like every client's."""
    proxies = getattr(ctx, "trusted_proxies", None)
    if proxies is None:
        proxies = parse_networks(ctx.settings.trusted_proxies)
    forwarded = request.headers.get("X-Forwarded-For")
    return resolve_client_ip(request.remote_addr, [] if forwarded is None else [forwarded], proxies)


@callbacks_bp.post("/callbacks/huawei/status")
@callbacks_bp.post("/callbacks/huawei/<token>/status")
def huawei_status(token: str | None = None) -> Response:
    """A delivery report (a form), or a batch of them (JSON); the token rides in the URL.

    Per-request reports go to the ``statusCallback`` we sent; batch reports to the
    application-level status URL set in Huawei's console. The path form
    (``/callbacks/huawei/<token>/status``) is what we hand out by default: it survives a
    platform that drops the query string; the query form (``?token=``) still works.
    """
    ctx = _context()
    token = token if token is not None else request.args.get("token")
    if request.mimetype == "application/json":
        # A batch push (sms_05_0063): up to 50 reports, more than the app's usual body bound.
        request.max_content_length = MAX_BATCH_BYTES
        batch = handle_batch_status_callback(
            ctx, token=token, body=request.get_data(cache=False), client_ip=_client_ip(ctx)
        )
        for outcome in batch.outcomes:
            _audit_report(ctx, outcome)
        for report in batch.unknown:
            _audit_unknown_report(ctx, report)
        return Response(status=200)
    outcome = handle_status_callback(
        ctx, token=token, body=request.get_data(cache=False), client_ip=_client_ip(ctx)
    )
    _audit_report(ctx, outcome)
    return Response(status=200)


@callbacks_bp.post("/callbacks/huawei/uplink")
@callbacks_bp.post("/callbacks/huawei/<token>/uplink")
def huawei_uplink(token: str | None = None) -> Response:
    """An inbound SMS; the token rides in the uplink URL configured in Huawei's console."""
    ctx = _context()
    outcome = handle_uplink_callback(
        ctx,
        token=token if token is not None else request.args.get("token"),
        body=request.get_data(cache=False),
        client_ip=_client_ip(ctx),
    )
    _audit_uplink(ctx, outcome)
    return Response(status=200)


def _audit_report(ctx: CallbackContext, outcome: ReportOutcome) -> None:
    audit = _audit(ctx)
    if audit is None:
        return
    event = Event("delivery_report", purpose=outcome.purpose)
    event.details.update(
        message_id=outcome.report.sms_msg_id,
        status=outcome.report.status,
        sequence=outcome.report.sequence,
        suppressed=outcome.suppressed or None,
    )
    audit.record(event, "duplicate" if outcome.duplicate else "recorded")


def _audit_unknown_report(ctx: CallbackContext, report: StatusReport) -> None:
    audit = _audit(ctx)
    if audit is None:
        return
    event = Event("delivery_report")
    event.details.update(message_id=report.sms_msg_id, status=report.status)
    audit.record(event, "unknown")


def _audit_uplink(ctx: CallbackContext, outcome: UplinkOutcome) -> None:
    audit = _audit(ctx)
    if audit is None:
        return
    event = Event("uplink", phone=outcome.e164)
    event.details["message_id"] = outcome.message.sms_msg_id
    outcome_name = (
        "duplicate" if outcome.duplicate else "opted_out" if outcome.opted_out else "ignored"
    )
    audit.record(event, outcome_name)
