"""The pumping defence through the service, on every store: trips, blocks, shadow, operators."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest

from otp_service import ConsoleGateway, OtpService
from otp_service.app import create_app
from otp_service.core.codes import derive_key
from otp_service.core.keys import phone_tag, range_tag
from otp_service.errors import RateLimited, StoreUnavailable
from otp_service.settings import Settings
from otp_service.store import MemoryStore, Store
from tests.conftest import TEST_SECRET, FakeClock

RANGE = "+861381234"
ATTACKER_IP = "203.0.113.7"

ServiceFactory = Callable[..., OtpService]


def number(i: int, prefix: str = RANGE) -> str:
    return f"{prefix}{i:04d}"


@pytest.fixture
def gateway() -> ConsoleGateway:
    return ConsoleGateway()


@pytest.fixture
def make_service(
    store: Store,
    gateway: ConsoleGateway,
    fake_clock: FakeClock,
    settings_factory: Callable[..., Settings],
) -> ServiceFactory:
    """Fixed limits off, so only the pumping rules decide."""

    def make(**overrides: Any) -> OtpService:
        values: dict[str, Any] = {
            "limits_number": "",
            "limits_ip": "",
            "limits_subnet": "",
            "limits_prefix": "",
            "limits_global": "",
            "pumping_floor": 5,
        }
        values.update(overrides)
        return OtpService(
            settings_factory(**values), store=store, gateway=gateway, clock=fake_clock
        )

    return make


def audit_lines(caplog: pytest.LogCaptureFixture, kind: str) -> list[dict[str, Any]]:
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "otp_service.audit"]
    return [line for line in lines if line["event"] == kind]


def pump(service: OtpService, count: int, *, start: int = 0, ip: str = ATTACKER_IP) -> int:
    """Send to ``count`` numbers of the range, never verifying; return how many were sent."""
    sent = 0
    for i in range(start, start + count):
        try:
            service.send_code(number(i), client_ip=ip)
        except RateLimited:
            continue
        sent += 1
    return sent


def test_unverified_range_is_blocked_past_the_floor_and_audited(
    make_service: ServiceFactory, gateway: ConsoleGateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="otp_service.audit")
    service = make_service()
    assert pump(service, 6) == 6  # the 6th send exceeds the floor of 5 and trips
    with pytest.raises(RateLimited) as refused:
        service.send_code(number(100), client_ip="198.51.100.1")
    assert refused.value.extras == {"limit": "pumping_prefix", "retry_after": 900}
    assert len(gateway.sent) == 6
    (event,) = [e for e in audit_lines(caplog, "pumping") if e["rule"] == "pumping_prefix"]
    assert event["outcome"] == "blocked"
    assert (event["scope"], event["sent"], event["verified"]) == ("prefix:+86138****", 6, 0)
    assert event["scope_id"] == range_tag(derive_key(TEST_SECRET, "phone-tag"), RANGE)
    assert (event["allowance"], event["strikes"], event["block_seconds"]) == (5.0, 1, 900)
    # The range is masked, and the number appears by its hash only.
    assert "phone" not in event and len(event["phone_hash"]) == 16
    assert number(5) not in json.dumps(event) and RANGE not in json.dumps(event)


def test_verified_traffic_keeps_flowing(
    make_service: ServiceFactory, gateway: ConsoleGateway
) -> None:
    service = make_service()
    for i in range(40):
        service.send_code(number(i), client_ip=f"198.51.100.{i}")
        code = gateway.last_code(number(i))
        assert code is not None
        service.verify(number(i), code, client_ip=f"198.51.100.{i}")
    assert len(gateway.sent) == 40


def test_subnet_rotating_over_ranges_is_blocked(make_service: ServiceFactory) -> None:
    service = make_service()
    for i in range(6):
        service.send_code(number(i, prefix=f"+86139{i:04d}"), client_ip=ATTACKER_IP)
    with pytest.raises(RateLimited) as refused:
        service.send_code(number(1, prefix="+861371111"), client_ip="203.0.113.99")
    assert refused.value.extras["limit"] == "pumping_subnet"


def test_shadow_rule_records_but_never_blocks(
    make_service: ServiceFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="otp_service.audit")
    service = make_service(
        shadow_rules=frozenset({"pumping_prefix", "pumping_subnet", "pumping_country"})
    )
    assert pump(service, 12) == 12
    outcomes = {e["outcome"] for e in audit_lines(caplog, "pumping")}
    assert outcomes == {"shadowed"}


def test_blocks_escalate_on_repeat(make_service: ServiceFactory, fake_clock: FakeClock) -> None:
    service = make_service()
    pump(service, 6)
    fake_clock.advance(901)
    assert pump(service, 1, start=50) == 1  # the block lifted, the counts still say pumping
    with pytest.raises(RateLimited) as refused:
        service.send_code(number(60), client_ip="198.51.100.1")
    assert refused.value.extras["retry_after"] == 1800


def test_operator_lists_lifts_and_allow_lists(
    make_service: ServiceFactory, fake_clock: FakeClock
) -> None:
    service = make_service()
    pump(service, 6)
    blocks = {(b.kind, b.shown): b for b in service.pumping.blocks(fake_clock.now())}
    range_block = blocks[("prefix", "+86138****")]
    assert range_block.record["sent"] == 6
    assert range_block.value == range_tag(derive_key(TEST_SECRET, "phone-tag"), RANGE)
    assert ("subnet", "203.0.113.0/24") in blocks

    tag = service.pumping.allow("number", number(200), now=fake_clock.now())
    assert tag == phone_tag(derive_key(TEST_SECRET, "phone-tag"), number(200))
    service.send_code(number(200), client_ip="198.51.100.1")

    service.pumping.allow("subnet", "198.51.100.9", now=fake_clock.now())
    service.send_code(number(201), client_ip="198.51.100.20")

    assert service.pumping.lift("prefix", range_block.value)
    assert not service.pumping.lift("prefix", RANGE)
    service.send_code(number(202), client_ip="192.0.2.1")


def test_block_is_a_429_problem_with_retry_after(
    store: Store, fake_clock: FakeClock, settings_factory: Callable[..., Settings]
) -> None:
    settings = settings_factory(limits_prefix="", limits_subnet="", limits_ip="", pumping_floor=2)
    app = create_app(settings, store=store, gateway=ConsoleGateway(), clock=fake_clock)
    client = app.test_client()
    for i in range(3):
        assert client.post("/send-code", json={"phone": number(i)}).status_code == 202
    refused = client.post("/send-code", json={"phone": number(9)})
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "900"
    body = refused.get_json()
    assert (body["code"], body["limit"], body["retry_after"]) == (
        "rate_limited",
        "pumping_prefix",
        900,
    )


def test_test_numbers_are_not_counted(make_service: ServiceFactory) -> None:
    numbers = tuple((number(i), "123456") for i in range(10))
    service = make_service(test_numbers=numbers)
    for e164, _ in numbers:
        service.send_code(e164, client_ip=ATTACKER_IP)
        service.verify(e164, "123456", client_ip=ATTACKER_IP)
    assert service.pumping.blocks(service.clock.now()) == []


class CountingFails(MemoryStore):
    def tally(
        self, increments: Mapping[str, int], reads: Sequence[str], *, ttl: float, now: float
    ) -> list[int]:
        raise StoreUnavailable("down")


def test_counting_failure_after_a_send_does_not_fail_the_send(
    gateway: ConsoleGateway, fake_clock: FakeClock, settings_factory: Callable[..., Settings]
) -> None:
    service = OtpService(
        settings_factory(), store=CountingFails(), gateway=gateway, clock=fake_clock
    )
    service.send_code(number(1), client_ip=ATTACKER_IP)
    code = gateway.last_code(number(1))
    assert code is not None
    service.verify(number(1), code, client_ip=ATTACKER_IP)
    assert len(gateway.sent) == 1
