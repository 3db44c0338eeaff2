"""A secret rotation keeps what must outlive it: opt-outs, allow-lists and pumping blocks.

Numbers (and ranges) appear in store keys as keyed hashes under the current secret, so the new
key names them differently. The rotation the README describes (new key in ``OTP_SECRET_KEY``,
the old one in ``OTP_SECRET_KEY_FALLBACKS``) must still find that state, over HTTP, on both
stores; an opt-out found under a fallback is carried to the current key, so it also outlives
dropping the fallback later.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from flask.testing import FlaskClient

from otp_service import ConsoleGateway, OtpService, create_app
from otp_service.settings import Settings
from otp_service.store import MemoryStore, Store
from tests.conftest import TEST_SECRET, FakeClock

NEW_SECRET = "rotated-secret-key-that-is-long-enough-9876543210"
TOKEN = "callback-token-of-at-least-32-characters-0001"
PHONE = "+8613812345678"
RANGE = "+861381234"


@pytest.fixture(
    params=[
        pytest.param("memory", marks=pytest.mark.memory),
        pytest.param("redis", marks=pytest.mark.redis),
    ]
)
def shared_store(request: pytest.FixtureRequest) -> Iterator[Store]:
    """One store both sides of the rotation use, as every instance shares one Redis."""
    if request.param == "memory":
        yield MemoryStore()
        return
    from otp_service.store.redis import RedisStore

    backend = RedisStore.from_url(request.getfixturevalue("redis_url"))
    try:
        yield backend
    finally:
        backend.close()


ServiceFactory = Callable[..., OtpService]


@pytest.fixture
def make_service(
    shared_store: Store, settings_factory: Callable[..., Settings], fake_clock: FakeClock
) -> ServiceFactory:
    def make(
        secret: str = TEST_SECRET, fallbacks: tuple[str, ...] = (), **extra: Any
    ) -> OtpService:
        settings = settings_factory(
            secret_key=secret,
            secret_key_fallbacks=fallbacks,
            callback_token=TOKEN,
            **extra,
        )
        return OtpService(settings, store=shared_store, gateway=ConsoleGateway(), clock=fake_clock)

    return make


def http(service: OtpService) -> FlaskClient:
    return create_app(service=service).test_client()


def reply_stop(client: FlaskClient, sender: str) -> None:
    response = client.post(
        "/callbacks/huawei/uplink?" + urlencode({"token": TOKEN}),
        data=urlencode({"smsMsgId": "up-1", "from": sender, "to": "1069000", "body": "STOP"}),
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 200, response.get_data(as_text=True)


def send(client: FlaskClient, phone: str, ip: str = "192.0.2.1") -> Any:
    return client.post("/send-code", json={"phone": phone}, environ_base={"REMOTE_ADDR": ip})


def assert_opted_out(response: Any) -> None:
    assert response.status_code == 403, response.get_data(as_text=True)
    assert response.get_json()["code"] == "number_opted_out"


def test_an_opt_out_survives_a_rotation_and_then_dropping_the_old_key(
    make_service: ServiceFactory,
) -> None:
    before = http(make_service())
    reply_stop(before, PHONE.removeprefix("+"))
    assert_opted_out(send(before, PHONE))

    rotated = make_service(NEW_SECRET, (TEST_SECRET,))
    gateway = rotated.gateway
    assert isinstance(gateway, ConsoleGateway)
    assert_opted_out(send(http(rotated), PHONE))
    assert gateway.sent == []

    # The refusal carried the opt-out to the new key: dropping the fallback keeps it.
    assert_opted_out(send(http(make_service(NEW_SECRET)), PHONE))


def test_an_operator_clears_an_opt_out_made_under_the_old_key(
    make_service: ServiceFactory,
) -> None:
    from otp_service.callbacks import clear_optout, optout_status

    reply_stop(http(make_service()), PHONE.removeprefix("+"))
    rotated = make_service(NEW_SECRET, (TEST_SECRET,))
    now = rotated.clock.now()
    assert optout_status(rotated.settings, rotated.store, PHONE, now=now) is not None
    assert clear_optout(rotated.settings, rotated.store, PHONE)
    assert send(http(rotated), PHONE).status_code == 202


def test_an_allow_listed_number_passes_a_block_after_a_rotation(
    make_service: ServiceFactory,
) -> None:
    before = make_service(pumping_floor=3, limits_prefix="")
    before.pumping.allow("number", f"{RANGE}0200", now=before.clock.now())
    rotated = make_service(NEW_SECRET, (TEST_SECRET,), pumping_floor=3, limits_prefix="")
    client = http(rotated)
    for i in range(4):
        assert send(client, f"{RANGE}{i:04d}", ip=f"198.51.{i}.1").status_code == 202
    refused = send(client, f"{RANGE}0100")
    assert refused.status_code == 429
    assert refused.get_json()["limit"] == "pumping_prefix"
    assert send(client, f"{RANGE}0200").status_code == 202
    assert rotated.pumping.disallow("number", f"{RANGE}0200")
    assert send(client, f"{RANGE}0201").status_code == 429


def test_a_range_block_holds_after_a_rotation(make_service: ServiceFactory) -> None:
    before = http(make_service(pumping_floor=3, limits_prefix=""))
    for i in range(4):
        assert send(before, f"{RANGE}{i:04d}", ip=f"198.51.{i}.1").status_code == 202
    assert send(before, f"{RANGE}0100").get_json()["limit"] == "pumping_prefix"

    rotated = make_service(NEW_SECRET, (TEST_SECRET,), pumping_floor=3, limits_prefix="")
    refused = send(http(rotated), f"{RANGE}0100")
    assert refused.status_code == 429
    assert refused.get_json()["limit"] == "pumping_prefix"
    assert int(refused.headers["Retry-After"]) > 0
    # The operator lifts it by the range in clear, under every key.
    assert rotated.pumping.lift("prefix", RANGE)
    assert send(http(rotated), f"{RANGE}0100").status_code == 202
