"""The throttling policy: limits notation → keyed moving windows per axis, and header choice."""

from __future__ import annotations

from typing import Any

import pytest

from otp_service.core.keys import Keys
from otp_service.core.policy import (
    AddressLimits,
    SendLimits,
    parse_windows,
    site_of,
    subnet_of,
    tightest_window,
)
from otp_service.store import LimitRule, WindowUsage

KEYS = Keys("t:")


def limits(**overrides: Any) -> SendLimits:
    values: dict[str, Any] = {
        "resend_interval": 60,
        "number": "5/hour;10/day",
        "number_total": "",
        "ip": "10/minute;100/hour",
        "subnet": "30/minute",
        "prefix": "50/hour",
        "global_": "1000/hour",
    }
    values.update(overrides)
    return SendLimits(**values)


def test_parse_windows_uses_limits_notation() -> None:
    assert [(w.amount, w.seconds) for w in parse_windows("10/minute;100/hour")] == [
        (10, 60),
        (100, 3600),
    ]
    assert [(w.amount, w.seconds) for w in parse_windows("3 per 2 seconds")] == [(3, 2)]
    assert parse_windows("  ") == ()


@pytest.mark.parametrize(
    ("ip", "subnet"),
    [
        ("203.0.113.77", "203.0.113.0/24"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("::ffff:203.0.113.77", "203.0.113.0/24"),
    ],
)
def test_subnet_of(ip: str, subnet: str) -> None:
    assert subnet_of(ip) == subnet


@pytest.mark.parametrize(
    ("ip", "bits", "site"),
    [
        ("2001:db8:1:2:3:4:5:6", 48, "2001:db8:1::/48"),
        ("2001:db8:1:2ff:3:4:5:6", 56, "2001:db8:1:200::/56"),
        ("203.0.113.77", 48, None),
        ("::ffff:203.0.113.77", 48, None),
        ("2002:cb00:714d:1::1", 48, None),  # 6to4: the IPv4 host 203.0.113.77
        ("64:ff9b::cb00:714d", 48, None),  # NAT64
    ],
)
def test_site_of(ip: str, bits: int, site: str | None) -> None:
    assert site_of(ip, bits) == site


def test_ipv4_embedded_forms_are_their_ipv4_subnet() -> None:
    assert subnet_of("2002:cb00:714d:1::1") == subnet_of("64:ff9b::cb00:714d") == "203.0.113.0/24"


def test_an_ipv6_client_passes_its_site_axis_and_an_ipv4_client_has_none() -> None:
    policy = limits(ipv6_site="60/minute")
    v6 = policy.address_rules(KEYS, "2001:db8:1:2::9")
    assert [(r.name, r.key) for r in v6][-1] == (
        "ipv6_site",
        "t:limit:ipv6_site:2001:db8:1::/48:60/60s",
    )
    assert "ipv6_site" not in {r.name for r in policy.address_rules(KEYS, "203.0.113.7")}


def test_a_send_passes_every_axis_in_order() -> None:
    rules = limits().rules(
        KEYS, phone_tag="tag", purpose="login", prefix="+861381234", client_ip="203.0.113.7"
    )
    assert [(r.name, r.amount, r.window) for r in rules] == [
        ("number", 1, 60),
        ("number", 5, 3600),
        ("number", 10, 86400),
        ("ip", 10, 60),
        ("ip", 100, 3600),
        ("subnet", 30, 60),
        ("prefix", 50, 3600),
        ("global", 1000, 3600),
    ]
    assert len({r.key for r in rules}) == len(rules)
    assert all(r.key.startswith("t:{tag}:") for r in rules[:3])
    assert rules[5].key == "t:limit:subnet:203.0.113.0/24:30/60s"
    assert rules[6].key == "t:limit:prefix:+861381234:50/3600s"
    assert not any(r.shadow for r in rules)


def test_without_a_client_address_the_address_axes_are_skipped() -> None:
    rules = limits().rules(KEYS, phone_tag="tag", purpose="p", prefix="+86138", client_ip=None)
    assert {r.name for r in rules} == {"number", "prefix", "global"}


def test_empty_specs_and_zero_interval_switch_an_axis_off() -> None:
    rules = limits(resend_interval=0, number="", ip="", subnet="", prefix="").rules(
        KEYS, phone_tag="tag", purpose="p", prefix="+86138", client_ip="203.0.113.7"
    )
    assert [r.name for r in rules] == ["global"]


def test_shadow_marks_every_window_of_the_named_axes() -> None:
    rules = limits(shadow=frozenset({"number", "subnet"})).rules(
        KEYS, phone_tag="tag", purpose="p", prefix="+86138", client_ip="203.0.113.7"
    )
    assert {r.name for r in rules if r.shadow} == {"number", "subnet"}
    verify = AddressLimits("verify", "30/minute", "", "", shadow=frozenset({"verify_ip"}))
    assert verify.rules(KEYS, "203.0.113.7")[0].shadow


def test_address_limits_count_the_address_its_subnet_and_an_ipv6_site() -> None:
    verify = AddressLimits("verify", ip="30/minute", subnet="90/minute", ipv6_site="120/hour")
    v4 = verify.rules(KEYS, "203.0.113.7")
    assert [(r.name, r.key) for r in v4] == [
        ("verify_ip", "t:limit:verify_ip:203.0.113.7:30/60s"),
        ("verify_subnet", "t:limit:verify_subnet:203.0.113.0/24:90/60s"),
    ]
    v6 = verify.rules(KEYS, "2001:db8:1:2::9")
    assert [(r.name, r.key) for r in v6][1:] == [
        ("verify_subnet", "t:limit:verify_subnet:2001:db8:1:2::/64:90/60s"),
        ("verify_ipv6_site", "t:limit:verify_ipv6_site:2001:db8:1::/48:120/3600s"),
    ]
    assert verify.rules(KEYS, None) == []


def usage(name: str, amount: int, used: int, reset: float, shadow: bool = False) -> WindowUsage:
    return WindowUsage(LimitRule(name, name, amount, 60, shadow), used, reset_after=reset)


def test_tightest_window_is_the_callers_fewest_remaining() -> None:
    number = usage("number", 1, 1, 60)
    ip = usage("ip", 10, 3, 50)
    subnet = usage("subnet", 30, 25, 40)
    assert tightest_window([number, ip, subnet]) == subnet


def test_tightest_window_ties_go_to_the_longest_wait_and_shadow_is_ignored() -> None:
    short = usage("ip", 10, 5, 20)
    long = usage("subnet", 10, 5, 50)
    shadowed = usage("ip", 2, 2, 59, shadow=True)
    assert tightest_window([short, long, shadowed]) == long


def test_tightest_window_never_reports_other_peoples_axes() -> None:
    assert tightest_window([usage("number", 5, 5, 1), usage("global", 9, 9, 1)]) is None
