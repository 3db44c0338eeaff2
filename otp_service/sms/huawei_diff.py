"""Huawei ``batchSendDiffSms`` (sms_05_0002, reference §1.3): one template to many numbers.

Operator notices go to many numbers at once. The rules of :mod:`otp_service.sms.huawei` hold
here too, through the same gateway: the same WSSE auth, the same code table, the same total
deadline per call (:mod:`otp_service.sms._http`), and **never two SMS for one number** — a
request that may have been accepted (read timeout, deadline, reset, unreadable answer) is never
retried, and every number in it is reported as an unknown outcome.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import requests

from otp_service.core.phone import mask_phone
from otp_service.errors import ProviderError
from otp_service.sms._http import Answer, deadline_after, fetch
from otp_service.sms.huawei import (
    ACCEPTED,
    RETRY_PAUSE_SECONDS,
    SEND_PATH,
    HuaweiSmsGateway,
    classify,
    provider_error,
    refused_before_sending,
)

log = logging.getLogger(__name__)

DIFF_PATH = "/sms/batchSendDiffSms/v1"
#: The whole body must stay under 64 KB (§1.3); keep a margin for the envelope.
MAX_BODY_BYTES = 64 * 1024 - 1
#: At most 500 numbers per ``to`` array; more fails the whole request (§1.3).
MAX_NUMBERS_PER_REQUEST = 500

Outcome = Literal["sent", "refused", "unknown"]


@dataclass(frozen=True, slots=True)
class NumberResult:
    """What became of one number: ``sent`` (accepted, ``message_id`` set), ``refused`` (the
    platform said no, nothing was sent) or ``unknown`` (it may have been sent)."""

    to: str
    outcome: Outcome
    code: str | None = None
    message_id: str | None = None

    @property
    def masked(self) -> str:
        return mask_phone(self.to)


@dataclass(frozen=True, slots=True)
class DiffBatch:
    """One template with its parameters, for ``numbers``."""

    numbers: Sequence[str]
    template_id: str
    params: Sequence[str]
    signature: str | None = None


def diff_body(gateway: HuaweiSmsGateway, batch: DiffBatch) -> dict[str, object]:
    """The JSON body of one request; ``templateParas`` is a real array of strings here."""
    content: dict[str, object] = {
        "to": list(batch.numbers),
        "templateId": batch.template_id,
        "templateParas": [str(p) for p in batch.params],
    }
    if batch.signature:
        content["signature"] = batch.signature
    body: dict[str, object] = {"from": gateway.sender, "smsContent": [content]}
    if gateway.status_callback:
        body["statusCallback"] = gateway.status_callback
    return body


def encode(body: dict[str, object]) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def split_batch(
    gateway: HuaweiSmsGateway, batch: DiffBatch, group_size: int = MAX_NUMBERS_PER_REQUEST
) -> Iterator[DiffBatch]:
    """Groups of at most ``group_size`` (≤ 500) numbers whose body stays under 64 KB."""
    size = max(1, min(group_size, MAX_NUMBERS_PER_REQUEST))
    current: list[str] = []
    for number in batch.numbers:
        candidate = DiffBatch([*current, number], batch.template_id, batch.params, batch.signature)
        too_big = len(encode(diff_body(gateway, candidate))) > MAX_BODY_BYTES
        if current and (len(current) >= size or too_big):
            yield DiffBatch(current, batch.template_id, batch.params, batch.signature)
            current = [number]
        else:
            current.append(number)
    if current:
        yield DiffBatch(current, batch.template_id, batch.params, batch.signature)


def send_diff(gateway: HuaweiSmsGateway, batch: DiffBatch) -> list[NumberResult]:
    """Send one group in one request; per-number results, never an exception for the outcome.

    Only a refused connection (nothing written) is retried once, exactly as ``send`` does.
    """
    body = encode(diff_body(gateway, batch))
    if len(body) > MAX_BODY_BYTES:
        raise ValueError("batchSendDiffSms body over 64 KB: split the batch first")
    try:
        response = _post_json(gateway, body, len(batch.numbers))
    except ProviderError as exc:
        return _all(batch, exc)
    return _interpret(response, batch)


def _post_json(gateway: HuaweiSmsGateway, body: bytes, count: int) -> Answer:
    url = gateway.url[: -len(SEND_PATH)] + DIFF_PATH
    headers = {"Content-Type": "application/json;charset=UTF-8", "Accept": "application/json"}
    where = f"{count} numbers"
    deadline = deadline_after(gateway.timeout)
    for attempt in (1, 2):
        try:
            return fetch(
                gateway._session,
                "POST",
                url,
                deadline=deadline,
                data=body,
                headers=headers,
                auth=gateway._auth,
            )
        except requests.ConnectTimeout as exc:
            raise gateway._network_error("connect_timeout", where) from exc
        except requests.ReadTimeout as exc:
            raise gateway._network_error("timeout", where) from exc
        except requests.exceptions.SSLError as exc:
            raise gateway._network_error("tls", where) from exc
        except requests.ConnectionError as exc:
            if attempt == 1 and refused_before_sending(exc):
                gateway._sleep(RETRY_PAUSE_SECONDS)
                continue
            reason = "connection_refused" if refused_before_sending(exc) else "connection"
            raise gateway._network_error(reason, where) from exc
        except requests.RequestException as exc:
            raise gateway._network_error("request", where) from exc
    raise AssertionError("unreachable")  # pragma: no cover


def _all(batch: DiffBatch, error: ProviderError) -> list[NumberResult]:
    """Every number gets the request's fate: refused only when nothing can have been sent."""
    provider_code = error.extras.get("provider_code")
    outcome: Outcome = "refused" if error.certainly_not_sent else "unknown"
    code = provider_code or error.extras.get("reason") or error.extras.get("http_status")
    code = None if code is None else str(code)
    return [NumberResult(n, outcome, code) for n in batch.numbers]


def _interpret(response: Answer, batch: DiffBatch) -> list[NumberResult]:
    status = response.status
    try:
        payload = json.loads(response.body)
    except (ValueError, RecursionError):
        payload = None
    code = None
    if isinstance(payload, dict):
        raw = payload.get("code", payload.get("error_code"))
        code = raw if isinstance(raw, str) and raw else None
    if not isinstance(payload, dict) or code is None or (code == ACCEPTED and status != 200):
        log.error("huawei diff sms: HTTP %s without a usable code", status)
        # 200 or 5xx unreadable: it may have been accepted. 4xx: a refusal (wrong address).
        unknown = status == 200 or status >= 500 or status == 429
        return [
            NumberResult(n, "unknown" if unknown else "refused", str(status)) for n in batch.numbers
        ]
    entries = [e for e in payload.get("result") or [] if isinstance(e, dict)]
    if code not in (ACCEPTED, "E000510"):
        log.error("huawei diff sms: %s (%s)", code, classify(code, status).meaning)
        return _all(batch, provider_error(code, status))
    by_number: dict[str, dict[str, object]] = {}
    for entry in entries:
        origin = str(entry.get("originTo", "")).lstrip("+")
        # A duplicate's E200041 copy never hides the number's real entry.
        if origin not in by_number or by_number[origin].get("status") == "E200041":
            by_number[origin] = entry
    results = []
    for number in batch.numbers:
        bare = number.lstrip("+")
        found = by_number.get(bare) or by_number.get(bare[2:])
        if found is None:
            # Accepted request without our entry: it may have been sent; E000510 sent nothing.
            results.append(NumberResult(number, "unknown" if code == ACCEPTED else "refused"))
            continue
        number_status = str(found.get("status", ACCEPTED))
        if number_status == ACCEPTED and code == ACCEPTED:
            msg_id = found.get("smsMsgId")
            results.append(NumberResult(number, "sent", None, str(msg_id) if msg_id else None))
        else:
            results.append(NumberResult(number, "refused", number_status))
    sent = sum(r.outcome == "sent" for r in results)
    log.info("huawei diff sms: %s of %s accepted", sent, len(results))
    return results
