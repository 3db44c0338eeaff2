"""Throttling over HTTP: 429 bodies and headers, RateLimit-* headers, client addresses through
trusted proxies (IPv4 and IPv6), and failing closed when the store is down."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from otp_service import ConsoleGateway, create_app
from otp_service.settings import Settings
from otp_service.store import Store
from tests.conftest import FakeClock
from tests.redis_server import RedisProcess

NO_LIMITS: dict[str, Any] = {
    "resend_interval": 0,
    "limits_number": "",
    "limits_ip": "",
    "limits_subnet": "",
    "limits_prefix": "",
    "limits_global": "",
    "limits_verify_ip": "",
    "limits_verify_subnet": "",
    "limits_verify_ipv6_site": "",
}
PROXIES = ("10.0.0.0/8", "fd00::/8")
AppFactory = Callable[..., Flask]


def phone(i: int) -> str:
    return f"+86139{i:04d}5678"


@pytest.fixture
def gateway() -> ConsoleGateway:
    return ConsoleGateway()


@pytest.fixture
def make_app(
    store: Store,
    gateway: ConsoleGateway,
    fake_clock: FakeClock,
    settings_factory: Callable[..., Settings],
) -> AppFactory:
    def make(**overrides: Any) -> Flask:
        settings = settings_factory(**{**NO_LIMITS, **overrides})
        return create_app(settings, store=store, gateway=gateway, clock=fake_clock)

    return make


def send(
    client: FlaskClient, i: int, peer: str = "203.0.113.9", forwarded: str | None = None
) -> Any:
    headers = {} if forwarded is None else {"X-Forwarded-For": forwarded}
    return client.post(
        "/send-code",
        json={"phone": phone(i)},
        headers=headers,
        environ_base={"REMOTE_ADDR": peer},
    )


def test_a_refusal_is_a_429_problem_naming_the_axis_and_when_to_retry(
    make_app: AppFactory, gateway: ConsoleGateway, fake_clock: FakeClock
) -> None:
    client = make_app(limits_ip="2/minute").test_client()
    assert send(client, 1).status_code == 202
    fake_clock.advance(15)
    assert send(client, 2).status_code == 202
    refused = send(client, 3)
    assert refused.status_code == 429
    assert refused.mimetype == "application/problem+json"
    assert refused.headers["Retry-After"] == "45"
    body = refused.get_json()
    assert {k: body[k] for k in ("status", "code", "limit", "retry_after")} == {
        "status": 429,
        "code": "rate_limited",
        "limit": "ip",
        "retry_after": 45,
    }
    assert "5678" not in refused.get_data(as_text=True)
    assert "RateLimit-Remaining" not in refused.headers
    assert len(gateway.sent) == 2


def test_a_send_reports_the_callers_tightest_window_in_ratelimit_headers(
    make_app: AppFactory, fake_clock: FakeClock
) -> None:
    client = make_app(limits_ip="3/minute;20/hour", limits_subnet="30/minute").test_client()
    first = send(client, 1)
    assert first.status_code == 202
    assert (
        first.headers["RateLimit-Limit"],
        first.headers["RateLimit-Remaining"],
        first.headers["RateLimit-Reset"],
    ) == ("3", "2", "60")
    fake_clock.advance(20.5)
    second = send(client, 2)
    assert (second.headers["RateLimit-Remaining"], second.headers["RateLimit-Reset"]) == (
        "1",
        "40",
    )


def test_no_ratelimit_headers_when_only_other_peoples_axes_are_limited(
    make_app: AppFactory,
) -> None:
    response = send(make_app(limits_global="5/minute", resend_interval=60).test_client(), 1)
    assert response.status_code == 202
    assert not [name for name, _ in response.headers if name.lower().startswith("ratelimit")]


BOMBING_PURPOSES = ["signup", "login", "reset", *(f"a{i}" for i in range(1, 8))]


def send_for(client: FlaskClient, purpose: str, peer: str) -> Any:
    return client.post(
        "/send-code",
        json={"phone": phone(1), "purpose": purpose},
        environ_base={"REMOTE_ADDR": peer},
    )


def test_rotating_the_purpose_does_not_escape_the_resend_cooldown(
    make_app: AppFactory, gateway: ConsoleGateway, fake_clock: FakeClock
) -> None:
    # The attack: ten purposes for one victim within half a second, each from its own address.
    client = make_app(resend_interval=60, limits_number="5/hour;10/day").test_client()
    statuses = []
    for i, purpose in enumerate(BOMBING_PURPOSES):
        statuses.append(send_for(client, purpose, f"198.51.{i}.1").status_code)
        fake_clock.advance(0.04)
    assert statuses == [202] + [429] * 9
    assert len(gateway.sent) == 1
    refused = send_for(client, "a9", "198.51.99.1").get_json()
    assert (refused["limit"], refused["retry_after"]) == ("number", 60)


def test_the_number_total_default_holds_huaweis_two_per_minute_without_a_cooldown(
    make_app: AppFactory, gateway: ConsoleGateway, fake_clock: FakeClock
) -> None:
    # Even an operator who turns the cooldown off keeps the platform's 2/minute per number.
    client = make_app(limits_number_total=Settings().limits_number_total).test_client()
    statuses = []
    for i, purpose in enumerate(BOMBING_PURPOSES):
        statuses.append(send_for(client, purpose, f"198.51.{i}.1").status_code)
        fake_clock.advance(0.04)
    assert statuses == [202, 202] + [429] * 8
    assert len(gateway.sent) == 2
    fake_clock.advance(60)
    assert send_for(client, "late", "198.51.99.1").status_code == 202


def test_forwarded_for_from_an_untrusted_peer_is_ignored(
    make_app: AppFactory, gateway: ConsoleGateway
) -> None:
    client = make_app(limits_ip="2/minute", trusted_proxies=PROXIES).test_client()
    statuses = [
        send(client, i, peer="203.0.113.9", forwarded=f"198.51.100.{i}").status_code
        for i in range(4)
    ]
    assert statuses == [202, 202, 429, 429]
    assert len(gateway.sent) == 2


def test_without_trusted_proxies_even_a_private_peer_is_the_client(
    make_app: AppFactory,
) -> None:
    client = make_app(limits_ip="1/minute").test_client()
    assert send(client, 1, peer="10.0.0.5", forwarded="198.51.100.1").status_code == 202
    assert send(client, 2, peer="10.0.0.5", forwarded="198.51.100.2").status_code == 429


@pytest.mark.parametrize(
    ("peer", "chain_of"),
    [
        pytest.param("10.0.0.5", lambda client: f"6.6.6.6, {client}", id="ipv4-proxy"),
        pytest.param(
            "10.0.0.5", lambda client: f"6.6.6.6, {client}, 10.1.1.1", id="ipv4-two-proxies"
        ),
        pytest.param("fd00::5", lambda client: f"{client}", id="ipv6-proxy"),
        pytest.param("::ffff:10.0.0.5", lambda client: f"{client}", id="ipv4-mapped-proxy"),
    ],
)
@pytest.mark.parametrize(
    ("client_a", "client_b"),
    [
        pytest.param("198.51.100.1", "198.51.100.2", id="ipv4-clients"),
        pytest.param("2001:db8::1", "[2001:db8::2]:4711", id="ipv6-clients"),
    ],
)
def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_counter(
    make_app: AppFactory,
    gateway: ConsoleGateway,
    peer: str,
    chain_of: Callable[[str], str],
    client_a: str,
    client_b: str,
) -> None:
    client = make_app(limits_ip="1/minute", trusted_proxies=PROXIES).test_client()
    assert send(client, 1, peer=peer, forwarded=chain_of(client_a)).status_code == 202
    assert send(client, 2, peer=peer, forwarded=chain_of(client_b)).status_code == 202
    refused = send(client, 3, peer=peer, forwarded=chain_of(client_a))
    assert (refused.status_code, refused.get_json()["limit"]) == (429, "ip")
    # Spelling the same client differently (a port, a mapped address) changes nothing.
    same = client_b.replace("[", "").replace("]:4711", "")
    assert send(client, 4, peer=peer, forwarded=chain_of(same)).status_code == 429
    assert len(gateway.sent) == 2


LEADING_ZERO_SPELLINGS = [
    "198.51.100.7",
    "198.051.100.7",
    "198.51.100.07",
    "198.51.100.007",
    "198.051.100.007",
    "0198.51.100.7",
    "198.051.0100.7",
    "198.51.100.7:4711",
    "198.051.100.007:80",
    "::ffff:198.051.100.007",
    "[::ffff:198.51.100.007]:443",
]


def test_leading_zero_spellings_of_a_forwarded_address_share_its_counter(
    make_app: AppFactory, gateway: ConsoleGateway
) -> None:
    client = make_app(limits_ip="2/minute", trusted_proxies=PROXIES).test_client()
    statuses = [
        send(client, i, peer="10.0.0.5", forwarded=spelling).status_code
        for i, spelling in enumerate(LEADING_ZERO_SPELLINGS)
    ]
    assert statuses == [202, 202] + [429] * (len(LEADING_ZERO_SPELLINGS) - 2)
    assert len(gateway.sent) == 2
    # None of them landed on the proxy's own counter either: its other clients are unaffected.
    assert send(client, 99, peer="10.0.0.5", forwarded="198.51.100.8").status_code == 202
    assert send(client, 98, peer="10.0.0.5", forwarded="198.51.100.8").status_code == 202


def test_rotating_64s_inside_one_48_is_stopped_by_the_ipv6_site_limit(
    make_app: AppFactory, gateway: ConsoleGateway
) -> None:
    defaults = Settings()
    client = make_app(
        limits_ip=defaults.limits_ip, limits_subnet=defaults.limits_subnet
    ).test_client()
    # The attack: 40 sends, each from an address in a /64 of its own, all in 2001:db8:5::/48.
    responses = [send(client, i, peer=f"2001:db8:5:{i:x}::1") for i in range(40)]
    assert [r.status_code for r in responses] == [202] * 30 + [429] * 10
    assert {r.get_json()["limit"] for r in responses[30:]} == {"ipv6_site"}
    assert len(gateway.sent) == 30
    # The neighbouring /48 is someone else's.
    assert send(client, 40, peer="2001:db8:6::1").status_code == 202


def test_a_narrower_ipv6_site_is_configurable(make_app: AppFactory) -> None:
    client = make_app(limits_ipv6_site="2/minute", ipv6_site_bits=56).test_client()
    assert send(client, 1, peer="2001:db8:5:100::1").status_code == 202
    assert send(client, 2, peer="2001:db8:5:1ff::1").status_code == 202
    assert send(client, 3, peer="2001:db8:5:1ab::1").get_json()["limit"] == "ipv6_site"
    assert send(client, 4, peer="2001:db8:5:200::1").status_code == 202


#: Spellings of 198.51.100.7 as IPv6: mapped, NAT64, 6to4 (any address of its /48), Teredo.
IPV4_EMBEDDED_FORMS = [
    "::ffff:198.51.100.7",
    "64:ff9b::c633:6407",
    "64:ff9b::198.51.100.7",
    "2002:c633:6407::1",
    "2002:c633:6407:abcd::99",
    "2001:0:4136:e378:8000:63bf:39cc:9bf8",
]


@pytest.mark.parametrize("form", IPV4_EMBEDDED_FORMS)
def test_ipv6_forms_embedding_an_ipv4_address_count_as_that_address(
    make_app: AppFactory, gateway: ConsoleGateway, form: str
) -> None:
    client = make_app(limits_ip="1/minute", trusted_proxies=PROXIES).test_client()
    assert send(client, 1, peer="198.51.100.7").status_code == 202
    as_peer = send(client, 2, peer=form)
    assert (as_peer.status_code, as_peer.get_json()["limit"]) == (429, "ip")
    forwarded = send(client, 3, peer="10.0.0.5", forwarded=form)
    assert (forwarded.status_code, forwarded.get_json()["limit"]) == (429, "ip")
    assert len(gateway.sent) == 1


def test_rotating_addresses_inside_a_64_cannot_verify_without_limit(
    make_app: AppFactory,
) -> None:
    client = make_app(limits_verify_ip="30/minute", limits_verify_subnet="90/minute").test_client()
    statuses = [
        client.post(
            "/verify",
            json={"phone": phone(i), "code": "123456"},
            environ_base={"REMOTE_ADDR": f"2001:db8:9:1::{i:x}"},
        ).status_code
        for i in range(200)
    ]
    # 400 is code_expired (nothing was sent): the verify ran; 429 is the /64's limit.
    assert statuses == [400] * 90 + [429] * 110


def test_verify_calls_are_limited_per_ipv6_site(make_app: AppFactory) -> None:
    client = make_app(limits_verify_ipv6_site="5/minute").test_client()

    def verify(peer: str) -> Any:
        return client.post(
            "/verify",
            json={"phone": phone(1), "code": "123456"},
            environ_base={"REMOTE_ADDR": peer},
        )

    assert [verify(f"2001:db8:9:{i:x}::1").status_code for i in range(5)] == [400] * 5
    assert verify("2001:db8:9:ff::1").get_json()["limit"] == "verify_ipv6_site"


def test_verify_calls_are_limited_per_forwarded_client(make_app: AppFactory) -> None:
    client = make_app(limits_verify_ip="1/minute", trusted_proxies=PROXIES).test_client()

    def verify(forwarded: str) -> int:
        return client.post(
            "/verify",
            json={"phone": phone(1), "code": "123456"},
            headers={"X-Forwarded-For": forwarded},
            environ_base={"REMOTE_ADDR": "fd00::1"},
        ).status_code

    assert verify("2001:db8::1") == 400
    assert verify("2001:db8::2") == 400
    assert verify("2001:db8:0::1") == 429


@pytest.mark.redis
def test_store_outage_fails_closed_with_503_and_no_sms_then_recovers(
    redis_process: RedisProcess,
    fake_clock: FakeClock,
    settings_factory: Callable[..., Settings],
) -> None:
    from otp_service.store.redis import RedisStore

    gateway = ConsoleGateway()
    store = RedisStore.from_url(redis_process.url)
    try:
        app = create_app(settings_factory(), store=store, gateway=gateway, clock=fake_clock)
        client = app.test_client()
        redis_process.stop()
        for path, body in (
            ("/send-code", {"phone": phone(1)}),
            ("/verify", {"phone": phone(1), "code": "123456"}),
        ):
            response = client.post(path, json=body)
            assert response.status_code == 503, path
            assert response.get_json()["code"] == "store_unavailable"
        assert gateway.sent == []
        redis_process.start()
        assert send(client, 1).status_code == 202
        assert len(gateway.sent) == 1
    finally:
        store.close()
