"""Provider faults end to end: the HTTP API, the real Huawei gateway, the loopback simulator.

The gateway's own tests pin the wire and the retry rule; these follow one `/send-code` through
the whole service for each fault and check what the caller, the operator (metrics, audit) and the
phone (messages that left) each see.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from flask.testing import FlaskClient

from otp_service import create_app
from otp_service.settings import Settings
from otp_service.sms.huawei import HuaweiSmsGateway
from otp_service.store import MemoryStore
from tests.conftest import FakeClock
from tests.huawei_sim import Fault, HuaweiSimulator
from tests.test_huawei_gateway import DOCUMENTED
from tests.test_log_hygiene import Capture, captured
from tests.test_metrics import scrape, value

pytestmark = pytest.mark.memory

PHONE = "+8613812345678"


@dataclass(frozen=True)
class Case:
    """One fault and what the whole service must make of it."""

    fault: Fault
    error: str
    #: fields the problem body must carry beside its ``code``
    fields: dict[str, object]
    #: the ``provider_code`` label of the provider-error counter
    label: str
    #: messages the platform accepted for the number (a timeout may still be delivered);
    #: None where the platform may or may not have (the connection was cut mid-request)
    left: int | None


TRANSPORT = {
    "read-timeout": Case(
        Fault(delay=0.8), "provider_unavailable", {"reason": "timeout"}, "timeout", 1
    ),
    "reset-after-connect": Case(
        Fault(reset=True), "provider_unavailable", {"reason": "connection"}, "connection", None
    ),
    **{
        f"http-{status}": Case(
            Fault(http_status=status),
            "provider_unavailable",
            {"http_status": status},
            str(status),
            0,
        )
        for status in (500, 502, 503, 429)
    },
    "http-404": Case(Fault(http_status=404), "provider_rejected", {"http_status": 404}, "404", 0),
}
#: Answers 200 the gateway cannot read: the platform may have accepted the message, so each is
#: an unknown outcome (502 provider_unavailable, never a retry) — never a 500.
UNREADABLE = {
    "deep-json": Fault(nesting=100_000),
    "not-utf8": Fault(body=b'{"code":"000000","description":"\xff\xfe"}'),
    "json-array": Fault(body=b'[{"code":"000000"}]'),
    "json-string": Fault(body=b'"000000"'),
    "not-json": Fault(body=b"<html>ok</html>"),
    # Past the 1 MiB cap (otp_service/sms/_http.py): not read further, so unreadable.
    "oversized": Fault(body=b'{"code":"000000"}' + b" " * (2 * 1024 * 1024)),
}
UNREADABLE_CASES = {
    f"unreadable-{name}": Case(fault, "provider_unavailable", {"http_status": 200}, "200", 0)
    for name, fault in UNREADABLE.items()
}
CODES = {
    code: Case(Fault(code=code), f"provider_{kind}", {"provider_code": code}, code, 0)
    for code, kind in DOCUMENTED.items()
}


@pytest.fixture
def run(
    huawei_sim: HuaweiSimulator, settings_factory: Callable[..., Settings], fake_clock: FakeClock
) -> Iterator[Callable[..., tuple[FlaskClient, Any]]]:
    """A service on the real gateway pointed at the simulator; the gateway is closed after."""
    gateways: list[HuaweiSmsGateway] = []

    def make(**overrides: Any) -> tuple[FlaskClient, Any]:
        settings = settings_factory(**huawei_sim.settings_overrides(**overrides))
        gateway = HuaweiSmsGateway.from_settings(settings, sleep=lambda _: None)
        gateways.append(gateway)
        app = create_app(settings, store=MemoryStore(), gateway=gateway, clock=fake_clock)
        client = app.test_client()
        return client, client.post("/send-code", json={"phone": PHONE})

    try:
        yield make
    finally:
        for gateway in gateways:
            gateway.close()


@pytest.fixture
def audit() -> Iterator[Capture]:
    with captured(logging.getLogger("otp_service.audit"), logging.INFO) as handler:
        yield handler


@pytest.mark.parametrize(
    "case",
    [*TRANSPORT.values(), *UNREADABLE_CASES.values(), *CODES.values()],
    ids=[*TRANSPORT, *UNREADABLE_CASES, *CODES],
)
def test_each_fault_is_one_problem_at_most_one_message_and_recorded(
    case: Case,
    huawei_sim: HuaweiSimulator,
    run: Callable[..., tuple[FlaskClient, Any]],
    audit: Capture,
) -> None:
    huawei_sim.inject(case.fault)
    client, response = run(huawei_timeout=0.3)

    assert response.status_code == 502
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["code"] == case.error
    assert {key: body.get(key) for key in case.fields} == case.fields
    huawei_sim.wait_idle()
    assert huawei_sim.received == 1
    left = len(huawei_sim.delivered_to(PHONE))
    assert left <= 1 if case.left is None else left == case.left
    samples = scrape(client)
    assert (
        value(
            samples,
            "otp_provider_errors_total",
            provider="huawei",
            error=case.error,
            provider_code=case.label,
        )
        == 1
    )
    [line] = [json.loads(text) for text in audit.lines]
    assert (line["event"], line["outcome"], line["reason"]) == ("send", "refused", case.error)
    if "reason" in case.fields:
        assert line["cause"] == case.fields["reason"]


def test_refused_connection_is_retried_once_then_unavailable_and_nothing_left(
    huawei_sim_factory: Callable[..., HuaweiSimulator],
    settings_factory: Callable[..., Settings],
    fake_clock: FakeClock,
    audit: Capture,
) -> None:
    sim = huawei_sim_factory()
    sim.bind()  # the port is reserved but refuses every connection
    settings = settings_factory(**sim.settings_overrides())
    gateway = HuaweiSmsGateway.from_settings(settings, sleep=lambda _: None)
    try:
        client = create_app(
            settings, store=MemoryStore(), gateway=gateway, clock=fake_clock
        ).test_client()
        response = client.post("/send-code", json={"phone": PHONE})
        assert (response.status_code, response.get_json()["code"]) == (502, "provider_unavailable")
        assert sim.received == 0
        assert (
            value(
                scrape(client),
                "otp_provider_errors_total",
                provider="huawei",
                error="provider_unavailable",
                provider_code="connection_refused",
            )
            == 1
        )
        [line] = [json.loads(text) for text in audit.lines]
        assert (line["reason"], line["cause"]) == ("provider_unavailable", "connection_refused")
    finally:
        gateway.close()


def test_a_slow_answer_within_the_timeout_sends_exactly_one_message(
    huawei_sim: HuaweiSimulator, run: Callable[..., tuple[FlaskClient, Any]], audit: Capture
) -> None:
    huawei_sim.latency = 0.2
    client, response = run(huawei_timeout=2.0)
    assert response.status_code == 202
    assert len(huawei_sim.delivered_to(PHONE)) == 1
    assert not [name for name, _ in scrape(client) if name == "otp_provider_errors_total"]
    [line] = [json.loads(text) for text in audit.lines]
    assert (line["event"], line["outcome"]) == ("send", "accepted")


@pytest.mark.parametrize("fault", UNREADABLE.values(), ids=UNREADABLE)
def test_an_unreadable_answer_is_an_unknown_outcome_not_an_internal_error(
    fault: Fault, huawei_sim: HuaweiSimulator, run: Callable[..., tuple[FlaskClient, Any]]
) -> None:
    huawei_sim.inject(fault)
    client, response = run()

    assert (response.status_code, response.mimetype) == (502, "application/problem+json")
    body = response.get_json()
    assert (body["code"], body["http_status"]) == ("provider_unavailable", 200)
    text = response.get_data(as_text=True)
    assert "Traceback" not in text and "Recursion" not in text and "[[" not in text
    # Unknown outcome, as after a timeout: a repeat of the key replays the failure, never resends.
    huawei_sim.inject(fault)
    keyed = {"json": {"phone": "+8613812345679"}, "headers": {"Idempotency-Key": "k1"}}
    first, repeat = client.post("/send-code", **keyed), client.post("/send-code", **keyed)
    assert [r.get_json()["code"] for r in (first, repeat)] == ["provider_unavailable"] * 2
    assert huawei_sim.received == 2


@pytest.mark.parametrize(
    ("options", "fault", "code", "operator"),
    [
        pytest.param({}, Fault(code="E000109"), "E000109", True, id="E000109-deactivated"),
        pytest.param(
            {"clock": lambda: time.time() - 25 * 3600}, None, "E000110", True, id="E000110-clock"
        ),
        pytest.param(
            {"allowed_ips": frozenset({"192.0.2.10"})}, None, "E000620", True, id="E000620-ip"
        ),
        pytest.param({}, Fault(code="E000503"), "E000503", False, id="E000503-not-operator"),
    ],
)
def test_account_and_configuration_faults_are_counted_as_operator_problems(
    huawei_sim_factory: Callable[..., HuaweiSimulator],
    settings_factory: Callable[..., Settings],
    fake_clock: FakeClock,
    audit: Capture,
    options: dict[str, Any],
    fault: Fault | None,
    code: str,
    operator: bool,
) -> None:
    """Issue 16.6: a skewed clock and a missing whitelist entry alert ops, like E000109."""
    sim = huawei_sim_factory(**options).start()
    if fault is not None:
        sim.inject(fault)
    settings = settings_factory(**sim.settings_overrides())
    gateway = HuaweiSmsGateway.from_settings(settings, sleep=lambda _: None)
    try:
        client = create_app(
            settings, store=MemoryStore(), gateway=gateway, clock=fake_clock
        ).test_client()
        response = client.post("/send-code", json={"phone": PHONE})
        body = response.get_json()
        assert (response.status_code, body["provider_code"]) == (502, code)
        assert "operator_problem" not in body  # the caller's body does not announce it
        [line] = [json.loads(text) for text in audit.lines]
        assert (line["reason"], line["provider_code"]) == ("provider_rejected", code)
        assert line.get("operator_problem", False) is operator
        counted = value(
            scrape(client),
            "otp_provider_operator_problems_total",
            provider="huawei",
            provider_code=code,
        )
        assert counted == (1 if operator else 0)
    finally:
        gateway.close()


def test_an_idempotent_replay_of_an_operator_problem_stays_one(
    huawei_sim_factory: Callable[..., HuaweiSimulator],
    settings_factory: Callable[..., Settings],
    fake_clock: FakeClock,
    audit: Capture,
) -> None:
    """The stored first answer keeps ``operator_problem``: the replay's line says it too."""
    sim = huawei_sim_factory(allowed_ips=frozenset({"192.0.2.10"})).start()
    settings = settings_factory(**sim.settings_overrides())
    gateway = HuaweiSmsGateway.from_settings(settings, sleep=lambda _: None)
    try:
        client = create_app(
            settings, store=MemoryStore(), gateway=gateway, clock=fake_clock
        ).test_client()
        for _ in range(2):
            response = client.post(
                "/send-code", json={"phone": PHONE}, headers={"Idempotency-Key": "k-620"}
            )
            assert response.get_json()["provider_code"] == "E000620"
        assert sim.received == 1
        lines = [json.loads(text) for text in audit.lines]
        assert [line.get("operator_problem") for line in lines] == [True, True]
        assert lines[1]["idempotency"] == "replayed"
    finally:
        gateway.close()
