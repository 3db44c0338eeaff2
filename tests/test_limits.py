"""The throttling set through the service, on both stores, with the injected clock.

Each axis trips at exactly its limit and recovers when its window moves on; an attacker rotating
whatever one axis keys on is stopped by the next; a refusal spends no quota anywhere; parallel
sends never pass a limit; shadow rules only record.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

import pytest

from otp_service import ConsoleGateway, OtpService, RateLimited
from otp_service.errors import CodeExpired, CodeInvalid, InvalidRequest
from otp_service.settings import Settings
from otp_service.store import Store
from tests.conftest import FakeClock

ServiceFactory = Callable[..., OtpService]
Request = tuple[str, str]

#: Every axis off, so each test switches on exactly what it is about.
NO_LIMITS: dict[str, Any] = {
    "resend_interval": 0,
    "limits_number": "",
    "limits_number_total": "",
    "limits_ip": "",
    "limits_subnet": "",
    "limits_ipv6_site": "",
    "limits_prefix": "",
    "limits_global": "",
    "limits_verify_ip": "",
    "limits_verify_subnet": "",
    "limits_verify_ipv6_site": "",
}


def number_in_range(i: int) -> str:
    """Numbers sharing one range (``+861381234``), differing in their last four digits."""
    return f"+861381234{i:04d}"


def number_in_own_range(i: int) -> str:
    """Numbers each in a range of its own."""
    return f"+86139{i:04d}5678"


def ip_in_own_subnet(i: int) -> str:
    return f"198.51.{i}.1"


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
    def make(**overrides: Any) -> OtpService:
        return OtpService(
            settings_factory(**overrides), store=store, gateway=gateway, clock=fake_clock
        )

    return make


def audit_lines(caplog: pytest.LogCaptureFixture, kind: str) -> list[dict[str, Any]]:
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "otp_service.audit"]
    return [line for line in lines if line["event"] == kind]


# Each row: the settings that switch on one axis, and the i-th request of an attacker who keeps
# that axis's subject fixed while rotating everything else.
AXES = [
    pytest.param(
        "number",
        {"limits_number": "3/minute"},
        lambda i: (number_in_range(1), f"203.0.{i}.9"),
        id="number",
    ),
    pytest.param(
        "ip",
        {"limits_ip": "3/minute"},
        lambda i: (number_in_own_range(i), "203.0.113.9"),
        id="ip-rotating-numbers",
    ),
    pytest.param(
        "subnet",
        {"limits_subnet": "3/minute"},
        lambda i: (number_in_own_range(i), f"203.0.113.{i + 1}"),
        id="subnet-rotating-ipv4",
    ),
    pytest.param(
        "subnet",
        {"limits_subnet": "3/minute"},
        lambda i: (number_in_own_range(i), f"2001:db8:1:2:{i + 1:x}::7"),
        id="subnet-rotating-ipv6-within-64",
    ),
    pytest.param(
        "prefix",
        {"limits_prefix": "3/minute"},
        lambda i: (number_in_range(i), ip_in_own_subnet(i)),
        id="prefix-rotating-numbers-in-range",
    ),
    pytest.param(
        "global",
        {"limits_global": "3/minute"},
        lambda i: (number_in_own_range(i), ip_in_own_subnet(i)),
        id="global",
    ),
]


@pytest.mark.parametrize(("axis", "limit", "request_of"), AXES)
def test_each_axis_trips_at_exactly_its_limit_and_recovers_after_its_window(
    make_service: ServiceFactory,
    gateway: ConsoleGateway,
    fake_clock: FakeClock,
    axis: str,
    limit: dict[str, str],
    request_of: Callable[[int], Request],
) -> None:
    service = make_service(**{**NO_LIMITS, **limit})
    for i in range(3):
        phone, ip = request_of(i)
        service.send_code(phone, client_ip=ip)
        fake_clock.advance(1)
    phone, ip = request_of(3)
    with pytest.raises(RateLimited) as info:
        service.send_code(phone, client_ip=ip)
    # The first of the three sends leaves the 60 s window 57 s from now.
    assert info.value.extras == {"limit": axis, "retry_after": 57}
    assert len(gateway.sent) == 3

    fake_clock.advance(56.5)
    with pytest.raises(RateLimited):
        service.send_code(phone, client_ip=ip)
    fake_clock.advance(0.5)
    service.send_code(phone, client_ip=ip)
    assert len(gateway.sent) == 4


def test_the_subnet_of_an_address_does_not_hold_back_its_neighbours_subnet(
    make_service: ServiceFactory, gateway: ConsoleGateway
) -> None:
    service = make_service(**{**NO_LIMITS, "limits_subnet": "1/minute"})
    service.send_code(number_in_own_range(1), client_ip="203.0.113.1")
    service.send_code(number_in_own_range(2), client_ip="203.0.114.1")
    service.send_code(number_in_own_range(3), client_ip="2001:db8:1:2::1")
    service.send_code(number_in_own_range(4), client_ip="2001:db8:1:3::1")
    with pytest.raises(RateLimited) as info:
        service.send_code(number_in_own_range(5), client_ip="2001:db8:1:3:ffff::1")
    assert info.value.extras["limit"] == "subnet"
    assert len(gateway.sent) == 4


def test_verify_calls_per_ip_trip_at_their_limit_and_recover(
    make_service: ServiceFactory, fake_clock: FakeClock, gateway: ConsoleGateway
) -> None:
    service = make_service(**{**NO_LIMITS, "limits_verify_ip": "3/minute"})
    service.send_code(number_in_range(1), client_ip="203.0.113.9")
    code = gateway.last_code(number_in_range(1))
    assert code is not None
    wrong = "000000" if code != "000000" else "111111"
    with pytest.raises(CodeInvalid):
        service.verify(number_in_range(1), wrong, client_ip="203.0.113.9")
    for i in range(2):
        with pytest.raises(CodeExpired):
            service.verify(number_in_range(2 + i), wrong, client_ip="203.0.113.9")
    with pytest.raises(RateLimited) as info:
        service.verify(number_in_range(1), code, client_ip="203.0.113.9")
    assert info.value.extras == {"limit": "verify_ip", "retry_after": 60}
    # Another address is not held back, and the refused guess did not cost an attempt.
    fake_clock.advance(60)
    approval = service.verify(number_in_range(1), code, client_ip="203.0.113.9")
    assert approval.phone == number_in_range(1)


# Against the shipped defaults (DESIGN.md; docs/limits.md says why). Rotation within a subnet or
# a range is proven by the AXES table above: at the defaults (30, 50) the pumping detector, a
# separate defence, would step in first.


def test_rotating_numbers_from_one_ip_stops_at_the_ip_limit(
    make_service: ServiceFactory, gateway: ConsoleGateway
) -> None:
    service = make_service()
    outcomes = []
    for i in range(15):
        try:
            service.send_code(number_in_own_range(i), client_ip="203.0.113.9")
            outcomes.append("sent")
        except RateLimited as exc:
            outcomes.append(str(exc.extras["limit"]))
    assert outcomes == ["sent"] * 10 + ["ip"] * 5
    assert len(gateway.sent) == 10


def test_the_resend_cooldown_and_number_caps_hold_one_number_from_any_ip(
    make_service: ServiceFactory, gateway: ConsoleGateway, fake_clock: FakeClock
) -> None:
    service = make_service()
    service.send_code(number_in_range(1), client_ip="203.0.113.1")
    with pytest.raises(RateLimited) as info:
        service.send_code(number_in_range(1), client_ip="198.51.100.1")
    assert info.value.extras == {"limit": "number", "retry_after": 60}
    for _ in range(4):
        fake_clock.advance(60)
        service.send_code(number_in_range(1), client_ip="203.0.113.1")
    fake_clock.advance(60)
    with pytest.raises(RateLimited) as info:
        service.send_code(number_in_range(1), client_ip="198.51.100.1")
    # 5/hour: the first send leaves the hour 3600 - 5 * 60 s from now.
    assert info.value.extras == {"limit": "number", "retry_after": 3300}
    assert len(gateway.sent) == 5


def test_rotating_the_purpose_stops_at_the_number_total_cap(
    make_service: ServiceFactory, gateway: ConsoleGateway, fake_clock: FakeClock
) -> None:
    only_number_axis = {
        "resend_interval": 60,
        "limits_number": "2/hour",
        "limits_number_total": "2/minute;8/hour;15/day",
    }
    service = make_service(**{**NO_LIMITS, **only_number_axis})
    outcomes = []
    for i in range(12):
        try:
            service.send_code(number_in_range(1), purpose=f"p{i}", client_ip=ip_in_own_subnet(i))
            outcomes.append("sent")
        except RateLimited as exc:
            outcomes.append(str(exc.extras["limit"]))
        # Past the cooldown, which every purpose of the number shares.
        fake_clock.advance(61)
    # Each purpose is fresh for its own 2/hour; the number's 8/hour is not.
    assert outcomes == ["sent"] * 8 + ["number"] * 4
    assert len(gateway.sent) == 8


# Order and consumption.


@pytest.mark.parametrize(
    ("axis", "limit"),
    [
        ("number", {"limits_number": "1/minute"}),
        ("number", {"resend_interval": 60}),
        ("ip", {"limits_ip": "1/minute"}),
        ("subnet", {"limits_subnet": "1/minute"}),
        ("prefix", {"limits_prefix": "1/minute"}),
        ("global", {"limits_global": "1/minute"}),
    ],
)
def test_a_send_refused_by_one_axis_spends_no_other_quota(
    make_service: ServiceFactory,
    gateway: ConsoleGateway,
    axis: str,
    limit: dict[str, Any],
) -> None:
    roomy = {
        "limits_number": "5/minute",
        "limits_ip": "5/minute",
        "limits_subnet": "5/minute",
        "limits_prefix": "5/minute",
        "limits_global": "5/minute",
        "limits_verify_ip": "5/minute",
    }
    service = make_service(**{**NO_LIMITS, **roomy, **limit})
    phone, ip = number_in_range(1), "203.0.113.9"
    service.send_code(phone, client_ip=ip)
    with pytest.raises(RateLimited) as info:
        service.send_code(phone, client_ip=ip)
    assert info.value.extras["limit"] == axis
    assert len(gateway.sent) == 1
    report = service.limit_status(phone=phone, ip=ip)
    sends = [w for w in report.windows if not w.rule.name.startswith("verify_")]
    assert {w.rule.name for w in sends} == {"number", "ip", "subnet", "prefix", "global"}
    assert [w.used for w in sends] == [1] * len(sends)


@pytest.mark.parametrize(
    ("axis", "limit", "request_of"),
    [
        ("ip", {"limits_ip": "5/minute"}, lambda i: (number_in_own_range(i), "203.0.113.9")),
        (
            "subnet",
            {"limits_subnet": "5/minute"},
            lambda i: (number_in_own_range(i), f"2001:db8::{i + 1:x}"),
        ),
        (
            "prefix",
            {"limits_prefix": "5/minute"},
            lambda i: (number_in_range(i), ip_in_own_subnet(i)),
        ),
        (
            "global",
            {"limits_global": "5/minute"},
            lambda i: (number_in_own_range(i), ip_in_own_subnet(i)),
        ),
        ("number", {"resend_interval": 60}, lambda i: (number_in_range(1), ip_in_own_subnet(i))),
    ],
)
def test_parallel_sends_never_exceed_a_limit(
    make_service: ServiceFactory,
    gateway: ConsoleGateway,
    axis: str,
    limit: dict[str, Any],
    request_of: Callable[[int], Request],
) -> None:
    service = make_service(**{**NO_LIMITS, **limit})
    parallel = 30
    barrier = threading.Barrier(parallel)
    refused: list[str] = []
    failures: list[BaseException] = []

    def send(i: int) -> None:
        phone, ip = request_of(i)
        barrier.wait()
        try:
            service.send_code(phone, client_ip=ip)
        except RateLimited as exc:
            refused.append(str(exc.extras["limit"]))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            failures.append(exc)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(parallel)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert failures == []
    expected = 1 if axis == "number" else 5
    assert len(gateway.sent) == expected
    assert refused == [axis] * (parallel - expected)


# Shadow mode.


def test_a_shadow_rule_sends_and_records_what_it_would_have_blocked(
    make_service: ServiceFactory, gateway: ConsoleGateway, caplog: pytest.LogCaptureFixture
) -> None:
    service = make_service(
        **{**NO_LIMITS, "limits_ip": "1/minute", "shadow_rules": frozenset({"ip"})}
    )
    caplog.set_level(logging.INFO, logger="otp_service.audit")
    for i in range(3):
        service.send_code(number_in_own_range(i), client_ip="203.0.113.9")
    assert len(gateway.sent) == 3
    lines = audit_lines(caplog, "send")
    assert [line["outcome"] for line in lines] == ["accepted"] * 3
    assert [line.get("shadowed") for line in lines] == [None, ["ip"], ["ip"]]
    (window,) = [w for w in service.limit_status(ip="203.0.113.9").windows if w.rule.name == "ip"]
    assert (window.used, window.rule.shadow) == (3, True)


def test_shadow_rules_do_not_soften_the_enforced_ones(
    make_service: ServiceFactory, gateway: ConsoleGateway
) -> None:
    service = make_service(
        **{
            **NO_LIMITS,
            "limits_ip": "1/minute",
            "limits_global": "2/minute",
            "shadow_rules": frozenset({"ip"}),
        }
    )
    for i in range(2):
        service.send_code(number_in_own_range(i), client_ip="203.0.113.9")
    with pytest.raises(RateLimited) as info:
        service.send_code(number_in_own_range(9), client_ip="203.0.113.9")
    assert info.value.extras["limit"] == "global"
    assert len(gateway.sent) == 2


def test_a_shadow_verify_limit_records_and_lets_the_check_run(
    make_service: ServiceFactory, gateway: ConsoleGateway, caplog: pytest.LogCaptureFixture
) -> None:
    service = make_service(
        **{**NO_LIMITS, "limits_verify_ip": "1/minute", "shadow_rules": frozenset({"verify_ip"})}
    )
    caplog.set_level(logging.INFO, logger="otp_service.audit")
    service.send_code(number_in_range(1), client_ip="203.0.113.9")
    for _ in range(2):
        with pytest.raises(CodeExpired):
            service.verify(number_in_range(2), "123456", client_ip="203.0.113.9")
    code = gateway.last_code(number_in_range(1))
    assert code is not None
    service.verify(number_in_range(1), code, client_ip="203.0.113.9")
    lines = audit_lines(caplog, "verify")
    assert [line.get("shadowed") for line in lines] == [None, ["verify_ip"], ["verify_ip"]]
    assert [line["outcome"] for line in lines] == ["refused", "refused", "accepted"]


# Headers' figures and operators' tools.


def test_a_receipt_carries_the_callers_tightest_window(
    make_service: ServiceFactory, fake_clock: FakeClock
) -> None:
    service = make_service(**{**NO_LIMITS, "limits_ip": "10/minute", "limits_subnet": "3/hour"})
    first = service.send_code(number_in_own_range(1), client_ip="203.0.113.9").rate_limit
    assert first is not None
    assert (first.rule.name, first.rule.amount, first.remaining) == ("subnet", 3, 2)
    assert first.reset_after == pytest.approx(3600)
    fake_clock.advance(100)
    second = service.send_code(number_in_own_range(2), client_ip="203.0.113.10").rate_limit
    assert second is not None
    assert (second.remaining, second.reset_after) == (1, pytest.approx(3500))
    assert service.send_code(number_in_own_range(3)).rate_limit is None


def test_limit_status_shows_windows_and_reset_clears_them(
    make_service: ServiceFactory, gateway: ConsoleGateway, fake_clock: FakeClock
) -> None:
    service = make_service(**{**NO_LIMITS, "limits_number": "2/hour", "limits_ip": "2/minute"})
    phone, ip = number_in_range(1), "203.0.113.9"
    service.send_code(phone, client_ip=ip)
    fake_clock.advance(10)
    service.send_code(phone, client_ip=ip)
    report = service.limit_status(phone=phone, ip=ip)
    assert (report.phone, report.purpose, report.ip) == ("+86138****0001", "default", ip)
    by_axis = {w.rule.name: w for w in report.windows}
    assert (by_axis["number"].used, by_axis["number"].retry_after) == (2, pytest.approx(3590))
    assert (by_axis["ip"].used, by_axis["ip"].retry_after) == (2, pytest.approx(50))
    with pytest.raises(RateLimited):
        service.send_code(phone, client_ip=ip)

    assert service.reset_limits(phone=phone, purpose="other") == 0
    assert service.reset_limits(phone=phone) == 1
    with pytest.raises(RateLimited) as info:
        service.send_code(phone, client_ip=ip)
    assert info.value.extras["limit"] == "ip"
    assert service.reset_limits(ip="203.0.113.9") == 1
    service.send_code(phone, client_ip=ip)
    assert len(gateway.sent) == 3


def test_operator_tools_need_a_valid_subject(make_service: ServiceFactory) -> None:
    service = make_service()
    with pytest.raises(InvalidRequest):
        service.limit_status()
    with pytest.raises(InvalidRequest):
        service.reset_limits(ip="not-an-ip")
    with pytest.raises(InvalidRequest):
        service.send_code(number_in_range(1), client_ip="not-an-ip")


def test_ip_spellings_share_one_counter(make_service: ServiceFactory) -> None:
    service = make_service(**{**NO_LIMITS, "limits_ip": "2/minute"})
    service.send_code(number_in_own_range(1), client_ip="2001:db8::1")
    service.send_code(number_in_own_range(2), client_ip="2001:DB8:0:0:0:0:0:1")
    with pytest.raises(RateLimited):
        service.send_code(number_in_own_range(3), client_ip="2001:db8:0::1")
