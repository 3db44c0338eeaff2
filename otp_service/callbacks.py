"""Huawei's pushes to us: delivery reports (§4, single or batch) and inbound SMS (§5), no Flask.

Both pushes are forms the provider POSTs without authentication of its own, so every push must
carry our shared secret (``OTP_CALLBACK_TOKEN``, as a path segment of the URL we hand out, or as
its ``token`` query parameter) and is compared in constant time; ``OTP_CALLBACK_ALLOWED_NETWORKS``
can also restrict where pushes may come from. What a push may change is narrow:

* a **status report** only updates the delivery state of a message we recorded as sent (unknown
  ``smsMsgId`` → 404, nothing stored), and is idempotent on (``smsMsgId``, ``sequence``,
  ``status``) because Huawei's redelivery behaviour is undocumented;
* an **uplink** only ever *adds* a number to the suppression list, when its body is an opt-out
  word (``TD``, ``T``, ``退订``, ``STOP``, ``UNSUBSCRIBE`` after NFKC and case folding).

Every key written here has a TTL. Nothing stores or logs a full number: numbers become
:func:`~otp_service.core.keys.phone_tag` values, and logs get the masked form.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Protocol
from urllib.parse import unquote_to_bytes

import phonenumbers

from otp_service.clock import Clock
from otp_service.core.client_ip import IPNetwork, parse_address, parse_networks
from otp_service.core.keys import Keys, every_tag, phone_tag
from otp_service.core.phone import mask_phone
from otp_service.errors import (
    CallbackForbidden,
    CallbackUnauthorized,
    InvalidPhone,
    InvalidRequest,
    NotFound,
)
from otp_service.settings import Settings
from otp_service.store.base import Store

log = logging.getLogger(__name__)

#: Reports arrive at most 72 h after sending (§4.1); one more day covers clock skew and queues.
DELIVERY_TTL = 4 * 86400
#: Long enough to absorb any redelivery of the same inbound message.
UPLINK_TTL = 7 * 86400
#: The one status that means the handset got it (§4.3).
DELIVERED = "DELIVRD"
#: Intermediate statuses that must not overwrite a final one that arrived first.
INTERMEDIATE = frozenset({"ACCEPTD"})
#: Statuses that mean "this number does not want our messages" (§4.3): suppress it like a STOP.
SUPPRESSING_STATUSES = frozenset(
    {"BLACK", "TDBLACK", "TSBLACK", "MBBLACK", "SC:0003", "SC:0005", "SC:0016"}
)
#: Opt-out replies, compared after NFKC + casefold + trimming spaces and punctuation.
# "r" is Huawei's own unsubscribe reply (reference §5); "退訂" the traditional spelling.
OPTOUT_WORDS = frozenset({"td", "t", "r", "退订", "退訂", "stop", "unsubscribe"})
# Uplink is domestic only (reference §5): a sender without a country code is a mainland number,
# whatever OTP_DEFAULT_REGION says about the numbers our users type.
UPLINK_REGION = "CN"

_MESSAGE_ID = re.compile(r"[A-Za-z0-9._-]{1,50}")
_STATUS = re.compile(r"[A-Za-z0-9:_-]{1,32}")
_SEGMENT = re.compile(r"[0-9]{1,2}")
_UTC_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
_NUMBER = re.compile(r"\+?[0-9]{1,21}")
MAX_FORM_BYTES = 8 * 1024


class CallbackContext(Protocol):
    """What the handlers need from the service (``OtpService`` has all three)."""

    settings: Settings
    store: Store
    clock: Clock


# -- authentication and parsing --------------------------------------------------------------


@lru_cache(maxsize=16)
def _networks(cidrs: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return parse_networks(cidrs)


def check_source(settings: Settings, client_ip: str | None) -> None:
    """Accept the push only from ``OTP_CALLBACK_ALLOWED_NETWORKS`` (when any are configured).

    ``client_ip`` is the address resolved through ``OTP_TRUSTED_PROXIES``, as every limit sees
    it; an unknown address (a Unix socket without a trusted proxy) is refused, not waved through.

    :raises CallbackForbidden: the address is outside every allowed network.
    """
    allowed = settings.callback_allowed_networks
    if not allowed:
        return
    address = parse_address(client_ip) if client_ip else None
    if address is not None and any(
        address.version == net.version and address in net for net in _networks(allowed)
    ):
        return
    log.warning("provider callback refused: source %s is not an allowed network", client_ip)
    raise CallbackForbidden("This address may not send provider callbacks.")


def authenticate(settings: Settings, token: str | None) -> None:
    """Accept the push only if it carries ``OTP_CALLBACK_TOKEN``.

    :raises CallbackUnauthorized: no token configured (callbacks are off), or a wrong one.
    """
    expected = settings.callback_token
    if not expected:
        log.warning("provider callback refused: OTP_CALLBACK_TOKEN is not set")
        raise CallbackUnauthorized("Provider callbacks are not enabled on this service.")
    if token is None or not hmac.compare_digest(token.encode(), expected.encode()):
        log.warning("provider callback refused: wrong or missing token")
        raise CallbackUnauthorized("The callback token is missing or wrong.")


def parse_form(raw: bytes) -> dict[str, str]:
    """Decode a form body in any encoding Huawei's pushes are seen in.

    Each value's bytes (percent-encoded, raw, or both mixed) are read as UTF-8, then as
    GB18030, Huawei's domestic fallback; raw non-ASCII bytes are not an error (the uplink FAQ,
    sms_05_0004, expects receivers to cope with them). The ISO-8859-1 mis-decoding is repaired
    later, per field, by :func:`repair_body`. Only a value neither encoding can read is
    refused, and the refusal is logged with what could be read (masked sender, message id).

    :raises InvalidRequest: oversized, unreadable, or a field given twice (parameter pollution
        is how a forged field would slip past a check on the first copy).
    """
    if len(raw) > MAX_FORM_BYTES:
        raise InvalidRequest("The callback body is too large.")
    form: dict[str, str] = {}
    unreadable: list[str] = []
    for pair in raw.split(b"&"):
        if not pair:
            continue
        raw_name, _, raw_value = pair.partition(b"=")
        name = _decode_form_part(raw_name)
        value = _decode_form_part(raw_value)
        if name is None:
            unreadable.append("(field name)")
            continue
        if name in form:
            raise InvalidRequest(f"{name[:40]}: given more than once.")
        if value is None:
            unreadable.append(name[:40])
            continue
        form[name] = value
    if unreadable:
        log.warning(
            "provider callback refused: unreadable %s (smsMsgId=%s, from %s, %d bytes)",
            ", ".join(unreadable),
            form.get("smsMsgId", "?")[:50],
            _masked_sender(form.get("from")),
            len(raw),
            extra={"unreadable_fields": unreadable},
        )
        raise InvalidRequest(f"Unreadable text in: {', '.join(unreadable)[:200]}.")
    return form


#: Tried in order on each form value's bytes: the standard, then Huawei's domestic fallback.
FORM_ENCODINGS = ("utf-8", "gb18030")


def _decode_form_part(raw: bytes) -> str | None:
    """One name or value: ``+`` is a space, ``%XX`` a byte, other bytes stand for themselves."""
    data = unquote_to_bytes(raw.replace(b"+", b" "))
    for encoding in FORM_ENCODINGS:
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return None


def _masked_sender(raw: str | None) -> str:
    """A sender number fit for a log line: masked, never in full, whatever its shape."""
    if not raw:
        return "?"
    digits = "".join(c for c in raw if c.isdigit() or c == "+")[:21]
    if not digits:
        return "?"
    try:
        return mask_phone(normalize_number(digits, UPLINK_REGION))
    except InvalidPhone:
        return mask_phone(digits)


def _field(
    form: Mapping[str, str], name: str, *, max_len: int, required: bool = False
) -> str | None:
    value = form.get(name)
    if value is None or value == "":
        if required:
            raise InvalidRequest(f"{name}: required.")
        return None
    if len(value) > max_len:
        raise InvalidRequest(f"{name}: at most {max_len} characters.")
    return value


def _matching(
    form: Mapping[str, str], name: str, pattern: re.Pattern[str], **kw: bool
) -> str | None:
    value = _field(form, name, max_len=64, **kw)
    if value is not None and not pattern.fullmatch(value):
        raise InvalidRequest(f"{name}: unexpected format.")
    return value


@dataclass(frozen=True, slots=True)
class StatusReport:
    """One delivery report (§4.1). ``to`` is present only when ``extend`` was sent."""

    sms_msg_id: str
    status: str
    sequence: int = 1
    total: int = 1
    source: str | None = None
    status_desc: str | None = None
    update_time: str | None = None
    extend: str | None = None
    to: str | None = None
    org_code: str | None = None

    @property
    def delivered(self) -> bool:
        return self.status == DELIVERED


def parse_status_report(form: Mapping[str, str]) -> StatusReport:
    """Validate a status-report form field by field.

    :raises InvalidRequest: a required field is missing or any field breaks its documented shape.
    """
    message_id = _matching(form, "smsMsgId", _MESSAGE_ID, required=True)
    status = _matching(form, "status", _STATUS, required=True)
    assert message_id is not None and status is not None  # noqa: S101 - required=True
    total = int(_matching(form, "total", _SEGMENT) or "1")
    sequence = int(_matching(form, "sequence", _SEGMENT) or "1")
    if not 1 <= sequence <= max(total, 1) or total < 1:
        raise InvalidRequest("sequence: must be between 1 and total.")
    source = _field(form, "source", max_len=1)
    if source is not None and source not in {"1", "2", "3"}:
        raise InvalidRequest("source: expected 1, 2 or 3.")
    to = _matching(form, "to", _NUMBER)
    return StatusReport(
        sms_msg_id=message_id,
        status=status,
        sequence=sequence,
        total=total,
        source=source,
        status_desc=_field(form, "statusDesc", max_len=500),
        update_time=_matching(form, "updateTime", _UTC_TIME),
        extend=_field(form, "extend", max_len=128),
        to=to,
        org_code=_field(form, "orgCode", max_len=16),
    )


#: At most this many reports per batch push (sms_05_0063).
MAX_BATCH_REPORTS = 50
#: 50 reports of a few hundred bytes each fit with room; the route's body bound.
MAX_BATCH_BYTES = 64 * 1024


class _RepeatedName(ValueError):
    pass


def _unique_names(pairs: list[tuple[str, object]]) -> dict[str, object]:
    # As for forms: a name given twice is how a forged field would slip past a check.
    found: dict[str, object] = {}
    for name, value in pairs:
        if name in found:
            raise _RepeatedName(name)
        found[name] = value
    return found


def parse_batch_reports(raw: bytes) -> list[StatusReport]:
    """Validate a batch push ``{"statusReportList": [...]}`` (sms_05_0063), every report first.

    Each report carries the fields of a single one (numbers may come as JSON numbers); one
    malformed report refuses the whole push before any is applied, so a fixed redelivery is
    applied whole.

    :raises InvalidRequest: not a JSON object, no list, more than 50 reports, a repeated
        name, or any report that :func:`parse_status_report` refuses.
    """
    if len(raw) > MAX_BATCH_BYTES:
        raise InvalidRequest("The callback body is too large.")
    try:
        data = json.loads(raw, object_pairs_hook=_unique_names)
    except _RepeatedName as exc:
        raise InvalidRequest(f"{str(exc)[:40]}: given more than once.") from None
    except (ValueError, RecursionError):
        raise InvalidRequest("The body must be a JSON object.") from None
    items = data.get("statusReportList") if isinstance(data, dict) else None
    if not isinstance(items, list) or not items:
        raise InvalidRequest("statusReportList: required, a non-empty list of reports.")
    if len(items) > MAX_BATCH_REPORTS:
        raise InvalidRequest(f"statusReportList: at most {MAX_BATCH_REPORTS} reports per push.")
    reports = []
    for index, item in enumerate(items):
        try:
            reports.append(parse_status_report(_report_fields(item)))
        except InvalidRequest as exc:
            raise InvalidRequest(f"statusReportList[{index}]: {exc.detail}") from None
    return reports


def _report_fields(item: object) -> dict[str, str]:
    """One JSON report as the form fields of a single report; scalars only."""
    if not isinstance(item, dict):
        raise InvalidRequest("each report must be an object.")
    fields: dict[str, str] = {}
    for name, value in item.items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise InvalidRequest(f"{name[:40]}: expected a string.")
        fields[name] = str(value)
    return fields


@dataclass(frozen=True, slots=True)
class UplinkMessage:
    """One inbound SMS (§5). ``sender`` is the user's number, ``to`` our channel number."""

    sms_msg_id: str
    sender: str
    to: str
    body: str
    create_time: str | None = None


def parse_uplink(form: Mapping[str, str]) -> UplinkMessage:
    """Validate an uplink form; repairs a body that arrived as Latin-1 mojibake (§5).

    :raises InvalidRequest: a required field is missing or malformed.
    """
    message_id = _matching(form, "smsMsgId", _MESSAGE_ID, required=True)
    sender = _matching(form, "from", _NUMBER, required=True)
    to = _field(form, "to", max_len=21, required=True)
    body = _field(form, "body", max_len=640, required=True)
    assert message_id and sender and to and body  # noqa: S101 - required=True
    body = repair_body(body)
    if len(body) > 160:
        raise InvalidRequest("body: at most 160 characters.")
    return UplinkMessage(
        sms_msg_id=message_id,
        sender=sender,
        to=to,
        body=body,
        create_time=_matching(form, "createTime", _UTC_TIME),
    )


def repair_body(body: str) -> str:
    """Huawei's advice for a garbled body: read it as ISO-8859-1 bytes, decode as UTF-8."""
    try:
        return body.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return body


def is_optout_request(body: str) -> bool:
    """True if the whole reply is an opt-out word, whatever its width, case or punctuation.

    NFKC folds full-width ``ＴＤ`` to ``TD``; casefold handles ``Stop``; surrounding spaces and
    punctuation (``STOP.``, ``【退订】``) are trimmed. A sentence merely *containing* "stop" is not
    an opt-out: suppressing a number is cheap to undo but should not happen by accident.
    """
    text = unicodedata.normalize("NFKC", body).casefold()
    start, end = 0, len(text)
    while start < end and _is_trim(text[start]):
        start += 1
    while end > start and _is_trim(text[end - 1]):
        end -= 1
    return text[start:end] in OPTOUT_WORDS


def _is_trim(char: str) -> bool:
    return char.isspace() or unicodedata.category(char)[0] in {"P", "S", "Z", "C"}


def normalize_number(raw: str, default_region: str) -> str:
    """The E.164 form the send pipeline uses, so an opt-out hits the same ``phone_tag``.

    Uplink ``from`` may come as ``+8613…``, ``8613…`` or a bare domestic ``13…``.

    :raises InvalidPhone: not a valid number of any plan.
    """
    attempts = [raw] if raw.startswith("+") else [raw, "+" + raw]
    for candidate in attempts:
        try:
            number = phonenumbers.parse(candidate, default_region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    raise InvalidPhone("The sender number of the inbound message is not valid.")


# -- state -------------------------------------------------------------------------------------


def tag_key(settings: Settings) -> bytes:
    """The key of :func:`phone_tag`, derived exactly as the service derives it."""
    return settings.tag_keys[0]


@dataclass(frozen=True, slots=True)
class DeliveryState:
    """What we know about a sent message's delivery. ``segments`` maps sequence → status."""

    message_id: str
    status: str
    delivered: bool
    total: int
    segments: dict[str, str]
    source: str | None
    updated_at: str | None
    received_at: float

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> DeliveryState:
        return cls(**json.loads(raw))


@dataclass(frozen=True, slots=True)
class ReportOutcome:
    """What a status report changed: nothing (``duplicate``), the state, maybe a suppression."""

    report: StatusReport
    duplicate: bool
    state: DeliveryState | None
    suppressed: bool = False
    purpose: str | None = None


@dataclass(frozen=True, slots=True)
class UplinkOutcome:
    """What an inbound SMS changed."""

    message: UplinkMessage
    e164: str
    duplicate: bool
    opted_out: bool


def record_sent(
    store: Store,
    keys: Keys,
    *,
    message_id: str,
    phone_tag: str,
    purpose: str,
    now: float,
    ttl: float = DELIVERY_TTL,
) -> None:
    """Remember a message the provider accepted, so its reports are recognised.

    The send pipeline calls this right after the gateway returns a ``message_id``. Only the
    keyed ``phone_tag`` is kept (it lets a blacklist report suppress the number).
    """
    if not _MESSAGE_ID.fullmatch(message_id):
        log.warning("not recording a provider message id of unexpected shape")
        return
    record = {"tag": phone_tag, "purpose": purpose, "sent_at": now}
    store.put(keys.sms_message(message_id), json.dumps(record).encode(), ttl=ttl, now=now)


def delivery_state(
    store: Store, keys: Keys, message_id: str, *, now: float
) -> DeliveryState | None:
    """The recorded delivery state of ``message_id``, if any report arrived."""
    raw = store.get(keys.sms_delivery(message_id), now=now)
    return DeliveryState.from_bytes(raw) if raw is not None else None


def record_status(
    store: Store, keys: Keys, report: StatusReport, *, now: float, optout_ttl: float
) -> ReportOutcome:
    """Apply one report: idempotent, refuses unknown messages, never lets ACCEPTD undo a final.

    :raises NotFound: no message with this ``smsMsgId`` was recorded as sent (or it expired).
    """
    sent_raw = store.get(keys.sms_message(report.sms_msg_id), now=now)
    if sent_raw is None:
        raise NotFound("No message with this smsMsgId was sent by this service.")
    sent = json.loads(sent_raw)
    # The "seen" marker is written only after the report's effects (both idempotent): if the
    # store fails in between, the provider's redelivery applies them again instead of meeting
    # a marker and losing an opt-out for good.
    marker = keys.sms_report(report.sms_msg_id, report.sequence, report.status)
    if store.get(marker, now=now) is not None:
        return ReportOutcome(report, duplicate=True, state=None, purpose=sent.get("purpose"))

    previous = delivery_state(store, keys, report.sms_msg_id, now=now)
    segments = dict(previous.segments) if previous else {}
    old = segments.get(str(report.sequence))
    if not (report.status in INTERMEDIATE and old is not None and old not in INTERMEDIATE):
        segments[str(report.sequence)] = report.status
    total = max(report.total, previous.total if previous else 1)
    state = DeliveryState(
        message_id=report.sms_msg_id,
        status=_overall(segments, total),
        delivered=_overall(segments, total) == DELIVERED,
        total=total,
        segments=segments,
        source=report.source,
        updated_at=report.update_time,
        received_at=now,
    )
    # Read-modify-write: two *different* segments' reports racing may lose one segment's entry;
    # verification codes are single-segment, and duplicates are already excluded above.
    store.put(keys.sms_delivery(report.sms_msg_id), state.to_bytes(), ttl=DELIVERY_TTL, now=now)

    suppressed = False
    tag = sent.get("tag")
    if report.status in SUPPRESSING_STATUSES and isinstance(tag, str):
        suppressed = opt_out(
            store, keys, tag, now=now, ttl=optout_ttl, reason=f"status:{report.status}"
        )
    if store.put_new(marker, b"1", ttl=DELIVERY_TTL, now=now) is not None:
        # A redelivery raced this one and applied the same effects.
        return ReportOutcome(report, duplicate=True, state=None, purpose=sent.get("purpose"))
    return ReportOutcome(
        report, duplicate=False, state=state, suppressed=suppressed, purpose=sent.get("purpose")
    )


def _overall(segments: Mapping[str, str], total: int) -> str:
    """A failed segment fails the message; it is delivered only when every segment is."""
    statuses = list(segments.values())
    for status in statuses:
        if status != DELIVERED and status not in INTERMEDIATE:
            return status
    if len(statuses) >= total and all(s == DELIVERED for s in statuses):
        return DELIVERED
    return "ACCEPTD"


def record_uplink(
    store: Store,
    keys: Keys,
    message: UplinkMessage,
    *,
    tag_key: bytes,
    default_region: str,
    now: float,
    optout_ttl: float,
) -> UplinkOutcome:
    """Apply one inbound SMS: an opt-out word suppresses the sender; redeliveries do nothing.

    :raises InvalidPhone: the sender is not a valid number (nothing stored).
    """
    e164 = normalize_number(message.sender, default_region)
    # As for reports: the opt-out first (idempotent), the "seen" marker last, so a store failure
    # between them makes the provider's redelivery retry the opt-out instead of skipping it.
    marker = keys.uplink(message.sms_msg_id)
    if store.get(marker, now=now) is not None:
        return UplinkOutcome(message, e164, duplicate=True, opted_out=False)
    opted_out = False
    if is_optout_request(message.body):
        tag = phone_tag(tag_key, e164)
        opt_out(store, keys, tag, now=now, ttl=optout_ttl, reason="uplink")
        opted_out = True
    if store.put_new(marker, b"1", ttl=UPLINK_TTL, now=now) is not None:
        return UplinkOutcome(message, e164, duplicate=True, opted_out=False)
    return UplinkOutcome(message, e164, duplicate=False, opted_out=opted_out)


def opt_out(store: Store, keys: Keys, tag: str, *, now: float, ttl: float, reason: str) -> bool:
    """Suppress the number behind ``tag``; True if it was not suppressed already.

    An existing opt-out is kept as it is (its TTL is not extended by a repeat).
    """
    # ``until`` lets a rotation carry the opt-out to a new key with the time it has left.
    value = json.dumps({"reason": reason, "at": now, "until": now + ttl}).encode()
    return store.put_new(keys.optout(tag), value, ttl=ttl, now=now) is None


def carry_optout(
    store: Store, keys: Keys, tags: Sequence[str], *, now: float, optout_ttl: float
) -> None:
    """Copy an opt-out found under an older key's tag (``tags[1:]``) to the current tag
    (``tags[0]``), with the time it has left, so it outlives dropping that key from the
    fallbacks. Nothing is written when the current tag holds one already. A record from before
    ``until`` was stored lasts ``optout_ttl`` from its ``at``."""
    if store.get(keys.optout(tags[0]), now=now) is not None:
        return
    for old in tags[1:]:
        raw = store.get(keys.optout(old), now=now)
        if raw is None:
            continue
        record = json.loads(raw)
        left = float(record.get("until", float(record.get("at", now)) + optout_ttl)) - now
        if left > 0:
            store.put_new(keys.optout(tags[0]), raw, ttl=left, now=now)
        return


def _optout_keys(settings: Settings, phone: str) -> tuple[list[str], str]:
    e164 = normalize_number(phone.strip(), settings.default_region)
    keys = Keys(settings.key_prefix)
    return [keys.optout(tag) for tag in every_tag(settings.tag_keys, e164)], e164


def optout_status(
    settings: Settings, store: Store, phone: str, *, now: float
) -> dict[str, object] | None:
    """The opt-out record of ``phone`` (``reason``, ``at``), under any configured key, or None.
    For the CLI.

    :raises InvalidPhone: ``phone`` is not a valid number.
    """
    found, _ = _optout_keys(settings, phone)
    for key in found:
        raw = store.get(key, now=now)
        if raw is not None:
            record: dict[str, object] = json.loads(raw)
            return record
    return None


def clear_optout(settings: Settings, store: Store, phone: str) -> bool:
    """Lift an opt-out (operator action, e.g. ``otp-service optout clear``) under every
    configured key; True if one existed.

    :raises InvalidPhone: ``phone`` is not a valid number.
    """
    found, e164 = _optout_keys(settings, phone)
    removed = store.delete(*found) > 0
    log.info("opt-out %s for %s", "cleared" if removed else "not present", mask_phone(e164))
    return removed


# -- the two pushes, end to end ----------------------------------------------------------------


def handle_status_callback(
    ctx: CallbackContext, *, token: str | None, body: bytes, client_ip: str | None = None
) -> ReportOutcome:
    """Authenticate, parse and apply a per-request status report (§4.1).

    :raises CallbackForbidden: ``client_ip`` is outside ``OTP_CALLBACK_ALLOWED_NETWORKS``.
    :raises CallbackUnauthorized: wrong or missing token.
    :raises InvalidRequest: malformed report. :raises NotFound: unknown ``smsMsgId``.
    """
    check_source(ctx.settings, client_ip)
    authenticate(ctx.settings, token)
    return apply_report(ctx, parse_status_report(parse_form(body)))


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """What a batch push changed: one outcome per known report, and the unknown ones."""

    outcomes: list[ReportOutcome]
    unknown: list[StatusReport]


def handle_batch_status_callback(
    ctx: CallbackContext, *, token: str | None, body: bytes, client_ip: str | None = None
) -> BatchOutcome:
    """Authenticate, parse and apply a batch push (sms_05_0063), each report as a single one.

    A report for a message this service did not send (or no longer remembers) is skipped and
    logged instead of failing the push: answering 404 would refuse its 49 neighbours too.

    :raises CallbackForbidden: ``client_ip`` is outside ``OTP_CALLBACK_ALLOWED_NETWORKS``.
    :raises CallbackUnauthorized: wrong or missing token.
    :raises InvalidRequest: malformed push (nothing applied).
    """
    check_source(ctx.settings, client_ip)
    authenticate(ctx.settings, token)
    reports = parse_batch_reports(body)
    outcomes: list[ReportOutcome] = []
    unknown: list[StatusReport] = []
    for report in reports:
        try:
            outcomes.append(apply_report(ctx, report))
        except NotFound:
            log.warning(
                "huawei batch status report for an unknown smsMsgId=%s skipped",
                report.sms_msg_id,
                extra={"sms_msg_id": report.sms_msg_id},
            )
            unknown.append(report)
    return BatchOutcome(outcomes, unknown)


def apply_report(ctx: CallbackContext, report: StatusReport) -> ReportOutcome:
    """Record one validated report and log it; the same for a single and a batch push.

    :raises NotFound: unknown ``smsMsgId``.
    """
    outcome = record_status(
        ctx.store,
        Keys(ctx.settings.key_prefix),
        report,
        now=ctx.clock.now(),
        optout_ttl=ctx.settings.optout_ttl,
    )
    log.info(
        "huawei status report smsMsgId=%s status=%s%s",
        report.sms_msg_id,
        report.status,
        " (duplicate)" if outcome.duplicate else "",
        extra={"sms_msg_id": report.sms_msg_id, "sms_status": report.status},
    )
    return outcome


def handle_uplink_callback(
    ctx: CallbackContext, *, token: str | None, body: bytes, client_ip: str | None = None
) -> UplinkOutcome:
    """Authenticate, parse and apply an inbound SMS (§5).

    :raises CallbackForbidden: ``client_ip`` is outside ``OTP_CALLBACK_ALLOWED_NETWORKS``.
    :raises CallbackUnauthorized: wrong or missing token.
    :raises InvalidRequest: malformed push, including an invalid sender number.
    """
    check_source(ctx.settings, client_ip)
    authenticate(ctx.settings, token)
    form = parse_form(body)
    try:
        message = parse_uplink(form)
        outcome = record_uplink(
            ctx.store,
            Keys(ctx.settings.key_prefix),
            message,
            tag_key=tag_key(ctx.settings),
            default_region=UPLINK_REGION,
            now=ctx.clock.now(),
            optout_ttl=ctx.settings.optout_ttl,
        )
    except InvalidRequest as exc:
        # A refused reply may have been an opt-out: say which one, without the number.
        log.warning(
            "huawei uplink refused: %s (smsMsgId=%s, from %s)",
            exc.detail,
            form.get("smsMsgId", "?")[:50],
            _masked_sender(form.get("from")),
        )
        raise
    log.info(
        "huawei uplink smsMsgId=%s from %s%s",
        message.sms_msg_id,
        mask_phone(outcome.e164),
        " : opt-out" if outcome.opted_out else "",
        extra={"sms_msg_id": message.sms_msg_id, "phone": mask_phone(outcome.e164)},
    )
    return outcome
