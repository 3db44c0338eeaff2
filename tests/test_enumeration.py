"""No enumeration: ``/send-code`` and ``/verify`` answer a known number as they answer a new one.

"Known" means a number that completed a sign-up (a code was sent and verified) before. Whether a
number has an account is the host app's secret; our answers, their shape and their timing must
not leak it. (A number with a code pending *now* does answer ``/verify`` differently —
``code_invalid`` with ``attempts_left`` instead of ``code_expired`` — but only its own sender
can have caused that, and the contract needs ``attempts_left``.)
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient

from otp_service import ConsoleGateway, create_app
from otp_service.settings import Settings
from otp_service.store import MemoryStore
from tests.conftest import FakeClock

CALLS = 200
#: Timing bound. The memory store has no network, so a real leak — an extra store round trip,
#: an account lookup, a hash over stored data — shows up as a systematic gap in the medians,
#: while scheduler noise on a shared 2-core CI runner moves a median of ~1 ms calls by a few
#: tenths of a millisecond. 3 ms (or half the faster median, if larger) never flaked in local
#: runs and still catches any path that does measurably more work for one kind of number.
ABSOLUTE_BOUND = 0.003
RELATIVE_BOUND = 0.5


@pytest.fixture
def gateway() -> ConsoleGateway:
    return ConsoleGateway()


@pytest.fixture
def client(
    settings_factory: Callable[..., Settings], fake_clock: FakeClock, gateway: ConsoleGateway
) -> FlaskClient:
    """Limits out of the way (they are per number, so they would differ between the two sets).

    The pumping detector is off too: it counts whole scopes (prefix, subnet, country), never one
    number, and 800 sends from one test client would trip it for both sets alike.
    """
    settings = settings_factory(
        limits_number="100000/hour",
        limits_ip="100000/minute",
        limits_subnet="100000/minute",
        limits_ipv6_site="100000/minute",
        limits_prefix="100000/hour",
        limits_global="100000/hour",
        limits_verify_ip="100000/minute",
        limits_verify_subnet="100000/minute",
        limits_verify_ipv6_site="100000/minute",
        pumping_floor=0,
    )
    app = create_app(settings, store=MemoryStore(), gateway=gateway, clock=fake_clock)
    return app.test_client()


def numbers(first: int) -> list[str]:
    return [f"+86138{first + i:08d}" for i in range(CALLS)]


def sign_up(client: FlaskClient, gateway: ConsoleGateway, phones: list[str]) -> None:
    """Each number receives a code and verifies it: these are the numbers "with an account"."""
    for phone in phones:
        assert client.post("/send-code", json={"phone": phone}).status_code == 202
        code = gateway.last_code(phone)
        assert client.post("/verify", json={"phone": phone, "code": code}).status_code == 200


def timed(client: FlaskClient, path: str, body: dict[str, str]) -> tuple[float, Any]:
    started = time.perf_counter()
    response = client.post(path, json=body)
    return time.perf_counter() - started, response


def compare(
    client: FlaskClient, path: str, seen: list[str], unseen: list[str], extra: dict[str, str]
) -> tuple[int, str | None]:
    """Alternate the two sets (so drift hits both alike); same status, keys, code; close medians."""
    times: dict[str, list[float]] = {"seen": [], "unseen": []}
    answers: dict[str, tuple[int, list[str], str | None]] = {}
    for known, new in zip(seen, unseen, strict=True):
        for label, phone in (("seen", known), ("unseen", new)):
            elapsed, response = timed(client, path, {"phone": phone, **extra})
            times[label].append(elapsed)
            body = response.get_json()
            answers[label] = (response.status_code, sorted(body), body.get("code"))
        assert answers["seen"] == answers["unseen"]
    fast, slow = sorted(statistics.median(values) for values in times.values())
    assert slow - fast < max(ABSOLUTE_BOUND, RELATIVE_BOUND * fast), times
    status, _, code = answers["seen"]
    return status, code


def test_send_code_answers_a_known_number_like_a_new_one(
    client: FlaskClient, gateway: ConsoleGateway, fake_clock: FakeClock
) -> None:
    seen, unseen = numbers(10_000), numbers(20_000)
    sign_up(client, gateway, seen)
    fake_clock.advance(3600)
    assert compare(client, "/send-code", seen, unseen, {}) == (202, None)
    sent_to = {message.to for message in gateway.sent}
    assert set(seen) <= sent_to and set(unseen) <= sent_to


def test_verify_answers_a_known_number_like_a_new_one(
    client: FlaskClient, gateway: ConsoleGateway, fake_clock: FakeClock
) -> None:
    seen, unseen = numbers(10_000), numbers(20_000)
    sign_up(client, gateway, seen)
    fake_clock.advance(3600)
    assert compare(client, "/verify", seen, unseen, {"code": "123456"}) == (400, "code_expired")
