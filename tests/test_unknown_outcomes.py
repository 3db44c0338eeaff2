"""What a failed provider call leaves behind, over the real gateway and the loopback simulator.

A send whose outcome is unknown (a timeout after the request was written) may have reached the
phone: it stays charged to the money budget and counted by the number's windows (issue 17.1).
A send that certainly never left (the connection was refused) gives both back, so a retry
after the outage runs the pipeline again (issue 20.6). docs/reliability.md states the rule.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient

from otp_service import create_app
from otp_service.settings import Settings
from otp_service.sms.huawei import HuaweiSmsGateway
from otp_service.store import MemoryStore, Store
from tests.conftest import FakeClock
from tests.huawei_sim import Fault, HuaweiSimulator

PHONE = "+8613812345678"
#: One cost unit per message to the mainland, a ceiling of three a day.
BUDGET = {"budget_costs": (("CN", 1.0),), "budget_daily": 3.0}


def number(index: int) -> str:
    return f"+86138000{index:05d}"


@pytest.fixture
def service(
    settings_factory: Callable[..., Settings], fake_clock: FakeClock
) -> Iterator[Callable[..., FlaskClient]]:
    """A service on the real Huawei gateway pointed at ``sim``; every gateway closed after."""
    gateways: list[HuaweiSmsGateway] = []

    def make(sim: HuaweiSimulator, store: Store | None = None, **overrides: Any) -> FlaskClient:
        settings = settings_factory(**sim.settings_overrides(huawei_timeout=0.3, **overrides))
        gateway = HuaweiSmsGateway.from_settings(settings, sleep=lambda _: None)
        gateways.append(gateway)
        app = create_app(settings, store=store or MemoryStore(), gateway=gateway, clock=fake_clock)
        return app.test_client()

    try:
        yield make
    finally:
        for gateway in gateways:
            gateway.close()


def test_timed_out_sends_stay_charged_so_the_budget_holds(
    huawei_sim: HuaweiSimulator, service: Callable[..., FlaskClient]
) -> None:
    """Refunding timeouts once let 13 messages reach phones under a ceiling of 3."""
    client = service(huawei_sim, **BUDGET)
    huawei_sim.inject(*[Fault(delay=0.8)] * 3)
    for index in range(3):
        response = client.post("/send-code", json={"phone": number(index)})
        assert response.get_json()["code"] == "provider_unavailable"
    response = client.post("/send-code", json={"phone": number(3)})
    assert (response.status_code, response.get_json()["code"]) == (503, "budget_exhausted")
    # The platform accepted every timed-out message: exactly the ceiling's worth left.
    huawei_sim.wait_idle()
    assert len(huawei_sim.messages) == 3


@pytest.mark.parametrize("store_kind", ["memory", pytest.param("redis", marks=pytest.mark.redis)])
def test_a_refused_connection_gives_back_the_budget_and_the_numbers_windows(
    store_kind: str,
    huawei_sim_factory: Callable[..., HuaweiSimulator],
    service: Callable[..., FlaskClient],
    request: pytest.FixtureRequest,
) -> None:
    store: Store = MemoryStore()
    if store_kind == "redis":
        from otp_service.store.redis import RedisStore

        store = RedisStore.from_url(request.getfixturevalue("redis_url"))
    sim = huawei_sim_factory()
    sim.bind()  # the port refuses every connection until listen()
    client = service(sim, store=store, **BUDGET)
    headers = {"Idempotency-Key": "signup-42"}
    try:
        for _ in range(5):
            response = client.post("/send-code", json={"phone": PHONE}, headers=headers)
            assert (response.status_code, response.get_json()["code"]) == (
                502,
                "provider_unavailable",
            )
        assert sim.received == 0
        # The code of a message that never left is gone too: nobody can have it.
        response = client.post("/verify", json={"phone": PHONE, "code": "000000"})
        assert response.get_json()["code"] == "code_expired"
        sim.listen()
        response = client.post("/send-code", json={"phone": PHONE}, headers=headers)
        assert response.status_code == 202, response.get_json()
        assert len(sim.delivered_to(PHONE)) == 1
        code = sim.last_code(PHONE)
        response = client.post("/verify", json={"phone": PHONE, "code": code})
        assert response.status_code == 200
        # Nothing was charged for the five: two more fit under the ceiling of three.
        for index in range(2):
            assert client.post("/send-code", json={"phone": number(index)}).status_code == 202
    finally:
        store.close()


def test_a_timed_out_send_keeps_the_numbers_windows(
    huawei_sim: HuaweiSimulator, service: Callable[..., FlaskClient]
) -> None:
    client = service(huawei_sim)
    huawei_sim.inject(Fault(delay=0.8))
    assert client.post("/send-code", json={"phone": PHONE}).status_code == 502
    response = client.post("/send-code", json={"phone": PHONE})
    assert (response.status_code, response.get_json()["limit"]) == (429, "number")
    huawei_sim.wait_idle()
    assert len(huawei_sim.messages) == 1
