"""Client address resolution: the peer, or X-Forwarded-For walked from the right via proxies."""

from __future__ import annotations

import pytest

from otp_service.core.client_ip import (
    canonical_ip,
    forwarded_hops,
    parse_address,
    parse_networks,
    resolve_client_ip,
)
from otp_service.errors import InvalidRequest

PROXIES = parse_networks(["10.0.0.0/8", "fd00::/8", "192.0.2.7"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("203.0.113.9", "203.0.113.9", id="ipv4"),
        pytest.param(" 203.0.113.9 ", "203.0.113.9", id="spaces"),
        pytest.param("203.0.113.9:5678", "203.0.113.9", id="ipv4-port"),
        pytest.param("2001:DB8:0:0::1", "2001:db8::1", id="ipv6-canonical"),
        pytest.param("[2001:db8::1]", "2001:db8::1", id="ipv6-brackets"),
        pytest.param("[2001:db8::1]:443", "2001:db8::1", id="ipv6-brackets-port"),
        pytest.param("::ffff:203.0.113.9", "203.0.113.9", id="ipv4-mapped"),
        pytest.param("64:ff9b::cb00:7109", "203.0.113.9", id="nat64"),
        pytest.param("2002:cb00:7109:5::1", "203.0.113.9", id="6to4"),
        pytest.param("2001:0:4136:e378:8000:63bf:34ff:8ef6", "203.0.113.9", id="teredo"),
        pytest.param("64:ff9b:1::cb00:7109", "64:ff9b:1::cb00:7109", id="nat64-local-use-kept"),
        pytest.param("fe80::1%eth0", "fe80::1", id="zone-dropped"),
        pytest.param("010.000.000.001", "10.0.0.1", id="leading-zeros"),
        pytest.param("0203.000.0113.09:80", "203.0.113.9", id="leading-zeros-port"),
        pytest.param("::ffff:010.0.0.1", "10.0.0.1", id="leading-zeros-mapped"),
        pytest.param("000.000.000.000", "0.0.0.0", id="all-zeros"),  # noqa: S104
        pytest.param("010.0.0.0400", None, id="leading-zeros-bad-octet"),
        pytest.param("0x0a.0.0.1", None, id="hex-octet"),
        pytest.param("10.1", None, id="short-form"),
        pytest.param("unknown", None, id="unknown"),
        pytest.param("_hidden", None, id="obfuscated"),
        pytest.param("", None, id="empty"),
        pytest.param("203.0.113.9:", None, id="empty-port"),
        pytest.param("203.0.113.9:http", None, id="named-port"),
        pytest.param("[2001:db8::1", None, id="open-bracket"),
        pytest.param("[2001:db8::1]x", None, id="junk-after-bracket"),
        pytest.param("300.1.1.1", None, id="bad-octet"),
        pytest.param("1.2.3.4/24", None, id="network"),
    ],
)
def test_parse_address(text: str, expected: str | None) -> None:
    parsed = parse_address(text)
    assert (None if parsed is None else str(parsed)) == expected


def test_forwarded_hops_joins_header_lines_in_order() -> None:
    assert forwarded_hops(["1.1.1.1, 2.2.2.2", " ,3.3.3.3 "]) == ["1.1.1.1", "2.2.2.2", "3.3.3.3"]


def test_parse_networks_accepts_addresses_and_host_bits() -> None:
    assert [str(n) for n in parse_networks(["10.1.2.3/8", "192.0.2.7", "fd00::1/8"])] == [
        "10.0.0.0/8",
        "192.0.2.7/32",
        "fd00::/8",
    ]
    with pytest.raises(ValueError):
        parse_networks(["not-a-network"])


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        pytest.param("203.0.113.9", [], "203.0.113.9", id="direct"),
        pytest.param("203.0.113.9", ["198.51.100.1"], "203.0.113.9", id="spoof-from-untrusted"),
        pytest.param("10.0.0.5", [], "10.0.0.5", id="proxy-without-header"),
        pytest.param("10.0.0.5", ["198.51.100.1"], "198.51.100.1", id="one-proxy"),
        pytest.param(
            "10.0.0.5", ["6.6.6.6, 198.51.100.1"], "198.51.100.1", id="client-spoof-left-ignored"
        ),
        pytest.param(
            "10.0.0.5", ["6.6.6.6, 198.51.100.1, 10.9.9.9"], "198.51.100.1", id="proxy-chain"
        ),
        pytest.param(
            "10.0.0.5", ["6.6.6.6", "198.51.100.1, 192.0.2.7"], "198.51.100.1", id="split-lines"
        ),
        pytest.param("10.0.0.5", ["10.1.1.1, 10.2.2.2"], "10.1.1.1", id="all-trusted"),
        pytest.param("10.0.0.5", ["6.6.6.6, garbage"], "10.0.0.5", id="malformed-hop"),
        pytest.param("10.0.0.5", ["garbage, 198.51.100.1"], "198.51.100.1", id="malformed-left"),
        pytest.param("fd00::1", ["2001:db8::7"], "2001:db8::7", id="ipv6-proxy"),
        pytest.param("fd00::1", ["[2001:DB8::7]:443"], "2001:db8::7", id="ipv6-bracket-port"),
        pytest.param(
            "2001:db8::9", ["198.51.100.1"], "2001:db8::9", id="ipv6-spoof-from-untrusted"
        ),
        pytest.param("::ffff:10.0.0.5", ["198.51.100.1"], "198.51.100.1", id="mapped-proxy"),
        pytest.param("fd00::1", ["::ffff:198.51.100.1"], "198.51.100.1", id="mapped-client"),
        pytest.param(None, ["198.51.100.1"], None, id="unix-socket"),
        pytest.param("not-an-ip", [], None, id="malformed-peer"),
    ],
)
def test_resolve_client_ip(peer: str | None, forwarded: list[str], expected: str | None) -> None:
    assert resolve_client_ip(peer, forwarded, PROXIES) == expected


def test_without_trusted_proxies_the_header_is_never_read() -> None:
    assert resolve_client_ip("10.0.0.5", ["198.51.100.1"], ()) == "10.0.0.5"


def test_canonical_ip_normalises_or_refuses() -> None:
    assert canonical_ip(None) is None
    assert canonical_ip("2001:DB8::0:1") == "2001:db8::1"
    assert canonical_ip("::ffff:203.0.113.9") == "203.0.113.9"
    with pytest.raises(InvalidRequest) as info:
        canonical_ip("not-an-ip")
    assert info.value.extras == {"field": "client_ip"}
