"""Every log line of a full run, from every logger at DEBUG: one audit line per decision, and no
code, captcha answer, token, secret or full phone number anywhere.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from flask.testing import FlaskClient

from otp_service import ConsoleGateway, create_app
from otp_service.audit import JsonLineFormatter
from otp_service.settings import Settings
from otp_service.store import MemoryStore
from tests.conftest import TEST_SECRET, FakeClock, RecordingRenderer

#: What an attacker lines up against a number: forms anchored at the country code (``+86138****``,
#: ``+86138****5678``, ``+861381234``) and bare digit runs (``861381234``, ``13812345678``).
_ANCHORED = re.compile(r"\+([0-9*]{4,})")
_DIGIT_RUN = re.compile(r"(?<![0-9+*])[0-9]{5,}(?![0-9*])")

PHONE = "+8613812345678"
#: Every way the full number could be written.
PHONE_FORMS = (PHONE, PHONE[1:], PHONE[3:], "138 1234 5678", "138-1234-5678")
CALLBACK_TOKEN = "callback-token-0123456789-abcdef"


def revealed_digits(texts: list[str], e164: str) -> set[int]:
    """The positions of ``e164``'s digits an attacker learns by joining every fragment of
    ``texts`` (log lines, store keys and values) that fits the number.

    Stricter than an attacker needs to be: fragments are joined whether or not a hash links
    them, so any combination that would spell the number is caught.
    """
    digits = e164.removeprefix("+")
    seen: set[int] = set()
    for text in texts:
        for match in _ANCHORED.finditer(text):
            shown = match.group(1)
            if len(shown) <= len(digits) and all(
                c in ("*", d) for c, d in zip(shown, digits, strict=False)
            ):
                seen |= {i for i, c in enumerate(shown) if c != "*"}
        for match in _DIGIT_RUN.finditer(text):
            run = match.group(0)
            start = digits.find(run)
            if start >= 0:
                seen |= set(range(start, start + len(run)))
    return seen


def hidden_digits(texts: list[str], e164: str) -> int:
    return len(e164.removeprefix("+")) - len(revealed_digits(texts, e164))


class Capture(logging.Handler):
    """Formats every record as the sidecar would (JSON lines) and keeps the text."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonLineFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@contextmanager
def captured(logger: logging.Logger, level: int) -> Iterator[Capture]:
    """Every record ``logger`` passes at ``level`` or above, as JSON lines, while in the block."""
    handler = Capture()
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


@pytest.fixture
def capture() -> Iterator[Capture]:
    with captured(logging.getLogger(), logging.DEBUG) as handler:
        yield handler


@pytest.fixture
def renderer() -> RecordingRenderer:
    return RecordingRenderer()


@pytest.fixture
def gateway() -> ConsoleGateway:
    return ConsoleGateway()


@pytest.fixture
def client(
    settings_factory: Callable[..., Settings],
    fake_clock: FakeClock,
    renderer: RecordingRenderer,
    gateway: ConsoleGateway,
) -> FlaskClient:
    settings = settings_factory(
        captcha_mode="always", callback_token=CALLBACK_TOKEN, public_url="https://otp.example"
    )
    app = create_app(
        settings, store=MemoryStore(), gateway=gateway, clock=fake_clock, captcha_renderer=renderer
    )
    return app.test_client()


def solve(
    client: FlaskClient, renderer: RecordingRenderer, *, wrong: bool = False
) -> dict[str, str]:
    captcha_id = client.post("/captcha").get_json()["captcha_id"]
    answer = "0000" if wrong else renderer.last_answer
    return {"captcha_id": captcha_id, "captcha_answer": answer}


def full_run(
    client: FlaskClient, renderer: RecordingRenderer, gateway: ConsoleGateway
) -> dict[str, Any]:
    """Every kind of decision once; returns what must never be logged."""
    headers = {"X-Request-ID": "req-hygiene-1"}
    refused = client.post(
        "/send-code", json={"phone": PHONE, **solve(client, renderer, wrong=True)}, headers=headers
    )
    assert refused.get_json()["code"] == "captcha_invalid"
    answers = list(renderer.texts)
    sent = client.post("/send-code", json={"phone": PHONE, **solve(client, renderer)})
    assert sent.status_code == 202
    answers.append(renderer.last_answer)
    code = gateway.last_code(PHONE)
    assert code is not None
    wrong_code = "000000" if code != "000000" else "111111"
    assert client.post("/verify", json={"phone": PHONE, "code": wrong_code}).status_code == 400
    approved = client.post("/verify", json={"phone": PHONE, "code": code})
    token = approved.get_json()["token"]
    assert client.post("/tokens/check", json={"token": token, "consume": True}).status_code == 200
    assert client.post("/tokens/check", json={"token": token, "consume": True}).status_code == 401
    limited = client.post("/send-code", json={"phone": PHONE, **solve(client, renderer)})
    assert limited.get_json()["code"] == "rate_limited"
    answers.append(renderer.last_answer)
    uplink = client.post(
        f"/callbacks/huawei/uplink?token={CALLBACK_TOKEN}",
        data={"smsMsgId": "uplink-0001", "from": PHONE, "to": "10690000", "body": "TD"},
    )
    assert uplink.status_code == 200
    return {
        "codes": [code, wrong_code],
        "answers": answers,
        "token": token,
        "secrets": [TEST_SECRET, CALLBACK_TOKEN],
    }


def test_a_full_run_logs_no_code_answer_token_secret_or_number(
    client: FlaskClient, renderer: RecordingRenderer, gateway: ConsoleGateway, capture: Capture
) -> None:
    forbidden = full_run(client, renderer, gateway)
    text = "\n".join(capture.lines)
    assert len(capture.lines) >= 10
    for code in forbidden["codes"]:
        assert code not in text
    for answer in forbidden["answers"]:
        assert f'"{answer}' not in text and f" {answer}" not in text
    token = forbidden["token"]
    assert token not in text
    for part in token.split("."):
        assert len(part) < 8 or part not in text
    for secret in forbidden["secrets"]:
        assert secret not in text
    for form in PHONE_FORMS:
        assert form not in text


def audit_lines(capture: Capture) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in capture.lines]
    return [line for line in lines if line["logger"] == "otp_service.audit"]


def test_each_decision_is_one_structured_audit_line(
    client: FlaskClient, renderer: RecordingRenderer, gateway: ConsoleGateway, capture: Capture
) -> None:
    full_run(client, renderer, gateway)
    # Captcha issuance is audited too (by the captcha gate); this run checks the other decisions.
    lines = [line for line in audit_lines(capture) if line["event"] != "captcha_create"]
    seen = [(line["event"], line["outcome"], line.get("reason")) for line in lines]
    assert seen == [
        ("send", "refused", "captcha_invalid"),
        ("send", "accepted", None),
        ("verify", "refused", "code_invalid"),
        ("verify", "accepted", None),
        ("token_check", "accepted", None),
        ("token_check", "refused", "token_used"),
        ("send", "refused", "rate_limited"),
        ("uplink", "opted_out", None),
    ]
    for line in lines:
        assert line["phone"] == "+86138****5678"
        assert len(line["phone_hash"]) == 16
        assert line["request_id"]
        assert {"time", "level", "purpose", "ip"} <= set(line)
    assert lines[0]["request_id"] == "req-hygiene-1"
    assert lines[1]["provider"] == "console" and lines[1]["provider_seconds"] >= 0
    assert lines[6]["limit"] == "number" and lines[6]["retry_after"] > 0
    assert lines[4]["token_id"] and lines[4]["consume"] is True
    assert len({line["phone_hash"] for line in lines}) == 1


@pytest.mark.parametrize(
    ("supplied", "kept"),
    [
        pytest.param("abc-123", True, id="plain"),
        pytest.param("trace:1.2_3", True, id="punctuation"),
        pytest.param("x" * 64, True, id="longest"),
        pytest.param("x" * 65, False, id="too-long"),
        pytest.param("has space", False, id="space"),
        pytest.param('quote"d', False, id="quote"),
        pytest.param("", False, id="empty"),
    ],
)
def test_request_ids_are_validated_echoed_and_audited(
    client: FlaskClient, capture: Capture, supplied: str, kept: bool
) -> None:
    response = client.post(
        "/verify", json={"phone": PHONE, "code": "123456"}, headers={"X-Request-ID": supplied}
    )
    echoed = response.headers["X-Request-ID"]
    assert (echoed == supplied) is kept
    assert len(echoed) <= 64 and " " not in echoed
    assert response.get_json()["request_id"] == echoed
    (line,) = [line for line in audit_lines(capture) if line["event"] == "verify"]
    assert line["request_id"] == echoed


def test_a_request_never_inherits_the_previous_request_id(client: FlaskClient) -> None:
    """The id lives in a context variable set per request, so it never leaks into the next."""
    first = client.get("/healthz", headers={"X-Request-ID": "first"})
    second = client.get("/healthz")
    assert first.headers["X-Request-ID"] == "first"
    assert second.headers["X-Request-ID"] not in ("", "first")


#: Numbers of one range (PHONE's), so its pumping scope trips and is logged.
RANGE_NUMBERS = [PHONE, *(f"{PHONE[:-4]}{i:04d}" for i in range(3))]


def pump_one_range(client: FlaskClient) -> None:
    """Unverified sends to one range from several addresses until its pumping block trips, then
    one refused send to the range: every line that could name the range or the number."""
    for i, phone in enumerate(RANGE_NUMBERS[:-1]):
        sent = client.post(
            "/send-code", json={"phone": phone}, environ_base={"REMOTE_ADDR": f"198.51.{i}.7"}
        )
        assert sent.status_code == 202
    refused = client.post("/send-code", json={"phone": RANGE_NUMBERS[-1]})
    assert refused.get_json()["limit"] == "pumping_prefix"


def store_texts(store: MemoryStore, now: float) -> list[str]:
    return [
        f"{key} {(store.get(key, now=now) or b'').decode(errors='replace')}" for key in store.keys()
    ]


def test_log_lines_and_keys_joined_never_spell_a_number(
    settings_factory: Callable[..., Settings], fake_clock: FakeClock, capture: Capture
) -> None:
    """The attack of issue 19.2: the pumping line gave the range in clear, the send line the
    last four digits, and one phone hash joined them. Every fragment together must still hide
    the middle of every number (four digits, as the mask does)."""
    store = MemoryStore()
    settings = settings_factory(pumping_floor=2, limits_subnet="", limits_ip="")
    app = create_app(settings, store=store, gateway=ConsoleGateway(), clock=fake_clock)
    pump_one_range(app.test_client())
    lines = [json.loads(line) for line in capture.lines]
    assert any(line.get("event") == "pumping" for line in lines)
    texts = capture.lines + store_texts(store, fake_clock.now())
    for phone in RANGE_NUMBERS:
        assert hidden_digits(texts, phone) >= 4, phone


def test_the_join_check_catches_the_old_leak() -> None:
    """The checker itself: a range in clear next to a masked number spells it."""
    leaked = ['{"scope": "prefix:+861381234"}', '{"phone": "+86138****5678"}']
    assert hidden_digits(leaked, PHONE) == 0
    assert hidden_digits(['{"scope": "prefix:+86138****"}', leaked[1]], PHONE) == 4
    assert hidden_digits(["otp:limit:prefix:861381234:50/3600s", leaked[1]], PHONE) == 0
