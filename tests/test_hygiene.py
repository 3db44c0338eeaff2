"""What a full run leaves in Redis: every key expires, and nothing holds a code or a number.

A dump of the store (a backup, a replica, ``MONITOR`` output, an operator's ``SCAN``) must not
hand out live codes or a list of who signed up. Codes are stored as HMACs and numbers as keyed
hashes (``core/keys.py``); this test checks the outcome on a real server rather than the intent.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator

import pytest
import redis
from flask.testing import FlaskClient

from otp_service import ConsoleGateway, create_app
from otp_service.settings import Settings
from otp_service.store.redis import RedisStore
from tests.conftest import FakeClock, RecordingRenderer
from tests.test_log_hygiene import RANGE_NUMBERS, captured, hidden_digits, pump_one_range
from tests.test_pow import solve as solve_pow

pytestmark = pytest.mark.redis

PHONE = "+8613812345678"
LOCKED_PHONE = "+8613912345679"
CALLBACK_TOKEN = "callback-token-0123456789-abcdef"


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    client: redis.Redis = redis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def store(redis_url: str) -> Iterator[RedisStore]:
    backend = RedisStore.from_url(redis_url)
    try:
        yield backend
    finally:
        backend.close()


def solve(client: FlaskClient, renderer: RecordingRenderer) -> dict[str, str]:
    captcha = client.post("/captcha")
    assert captcha.status_code == 201
    captcha_id = captcha.get_json()["captcha_id"]
    work = solve_pow(client.get("/pow").get_json())
    assert (
        client.get(f"/captcha/{captcha_id}.wav", query_string={"altcha": work}).status_code == 200
    )
    return {"captcha_id": captcha_id, "captcha_answer": renderer.last_answer}


def full_run(
    client: FlaskClient, renderer: RecordingRenderer, gateway: ConsoleGateway, clock: FakeClock
) -> list[str]:
    """Every kind of write once; returns the codes that were sent."""
    wrong_captcha = client.post(
        "/send-code", json={"phone": PHONE, "captcha_id": "nope", "captcha_answer": "x"}
    )
    assert wrong_captcha.status_code == 400
    assert client.post("/send-code", json={"phone": PHONE, **solve(client, renderer)}).status_code
    code = gateway.last_code(PHONE)
    assert code is not None
    wrong = "000000" if code != "000000" else "111111"
    assert client.post("/verify", json={"phone": PHONE, "code": wrong}).status_code == 400
    approved = client.post("/verify", json={"phone": PHONE, "code": code})
    assert approved.status_code == 200
    token = approved.get_json()["token"]
    assert client.post("/tokens/check", json={"token": token, "consume": True}).status_code == 200
    assert client.post("/tokens/check", json={"token": token, "consume": True}).status_code == 401
    limited = client.post("/send-code", json={"phone": PHONE, **solve(client, renderer)})
    assert limited.get_json()["code"] == "rate_limited"

    clock.advance(61)
    sent = client.post(
        "/send-code",
        json={"phone": PHONE, **solve(client, renderer)},
        headers={"Idempotency-Key": "hygiene-1"},
    )
    assert sent.status_code == 202
    codes = [code, gateway.last_code(PHONE) or ""]

    assert client.post("/send-code", json={"phone": LOCKED_PHONE, **solve(client, renderer)})
    locked_code = gateway.last_code(LOCKED_PHONE)
    assert locked_code is not None
    codes.append(locked_code)
    wrong = "000000" if locked_code != "000000" else "111111"
    answers = [
        client.post("/verify", json={"phone": LOCKED_PHONE, "code": wrong}).get_json()["code"]
        for _ in range(6)
    ]
    assert answers[-1] == "too_many_attempts"

    uplink = client.post(
        f"/callbacks/huawei/uplink?token={CALLBACK_TOKEN}",
        data={"smsMsgId": "uplink-0001", "from": PHONE, "to": "10690000", "body": "TD"},
    )
    assert uplink.status_code == 200
    opted_out = client.post("/send-code", json={"phone": PHONE, **solve(client, renderer)})
    assert opted_out.get_json()["code"] == "number_opted_out"
    return codes


def stored_text(client: redis.Redis, key: bytes) -> bytes:
    """Everything a key holds, whatever its type, as one byte string."""
    kind = bytes(client.execute_command("TYPE", key)).decode()
    if kind == "string":
        return client.get(key) or b""
    if kind == "hash":
        return b"\n".join(f + b"=" + v for f, v in client.hgetall(key).items())
    if kind == "zset":
        return b"\n".join(m for m, _ in client.zrange(key, 0, -1, withscores=True))
    if kind == "list":
        return b"\n".join(client.lrange(key, 0, -1))
    if kind == "set":
        return b"\n".join(client.smembers(key))
    pytest.fail(f"unexpected key type {kind} at {key!r}")


def test_every_key_expires_and_holds_no_code_or_number(
    store: RedisStore,
    raw: redis.Redis,
    settings_factory: Callable[..., Settings],
    fake_clock: FakeClock,
) -> None:
    renderer = RecordingRenderer()
    gateway = ConsoleGateway()
    # The run speaks more audio than the per-process render budget allows in ten real seconds;
    # that budget is wall-clock CPU protection, tested in test_captcha, not key hygiene.
    settings = settings_factory(
        captcha_mode="always",
        callback_token=CALLBACK_TOKEN,
        public_url="https://otp.example",
        captcha_render_audio="",
    )
    app = create_app(
        settings, store=store, gateway=gateway, clock=fake_clock, captcha_renderer=renderer
    )
    codes = full_run(app.test_client(), renderer, gateway, fake_clock)

    keys = list(raw.scan_iter(count=1000))
    kinds = {key.split(b":")[1] for key in keys}
    # The run wrote every family of key it should: codes, cooldowns, limits, opt-outs, captchas.
    assert len(keys) >= 10 and len(kinds) >= 4
    # A digit run exactly as long as a code, not part of a longer one (timestamps are digits too).
    code_patterns = [re.compile(rb"(?<!\d)" + c.encode() + rb"(?!\d)") for c in codes]
    numbers = [
        form.encode() for phone in (PHONE, LOCKED_PHONE) for form in (phone, phone[1:], phone[3:])
    ]
    for key in keys:
        assert raw.pttl(key) > 0, f"{key!r} never expires"
        content = key + b"\n" + stored_text(raw, key)
        for pattern in code_patterns:
            assert not pattern.search(content), f"a plaintext code in {key!r}"
        for number in numbers:
            assert number not in content, f"a phone number in {key!r}"


def test_a_dump_and_the_logs_joined_never_spell_a_number(
    store: RedisStore,
    raw: redis.Redis,
    settings_factory: Callable[..., Settings],
    fake_clock: FakeClock,
) -> None:
    """An attacker with a store dump and the audit log lines every fragment up against each
    number: range keys (limits, pumping counts, blocks) held the range in clear, the log the last
    four digits. Together they must still hide the middle four digits of every number."""
    settings = settings_factory(pumping_floor=2, limits_subnet="", limits_ip="")
    app = create_app(settings, store=store, gateway=ConsoleGateway(), clock=fake_clock)
    with captured(logging.getLogger(), logging.DEBUG) as capture:
        pump_one_range(app.test_client())
    keys = list(raw.scan_iter(count=1000))
    assert any(b":pump:block:prefix:" in key for key in keys)
    assert any(b":limit:prefix:" in key for key in keys)
    dump = [(key + b" " + stored_text(raw, key)).decode(errors="replace") for key in keys]
    for phone in RANGE_NUMBERS:
        assert hidden_digits(dump, phone) >= 4, f"the dump alone shows {phone}"
        assert hidden_digits(dump + capture.lines, phone) >= 4, phone
