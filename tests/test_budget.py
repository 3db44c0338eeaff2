"""Money budget: per-destination costs against daily and monthly ceilings, on every store."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import pytest

from otp_service import ConsoleGateway, OtpService
from otp_service.app import create_app
from otp_service.errors import BudgetExhausted, ConfigurationError, ProviderUnavailable
from otp_service.settings import Settings
from otp_service.sms import SendResult, SmsMessage
from otp_service.store import Store
from tests.conftest import FakeClock

ServiceFactory = Callable[..., OtpService]


class FlakyGateway(ConsoleGateway):
    """Fails while ``failing`` is set: a connection never opened, or (``unknown``) a timeout
    after the request was written."""

    failing = False
    unknown = False

    def send(self, message: SmsMessage) -> SendResult:
        if self.failing:
            error = ProviderUnavailable("down", reason="timeout" if self.unknown else "refused")
            error.retryable = not self.unknown
            raise error
        return super().send(message)


@pytest.fixture
def gateway() -> FlakyGateway:
    return FlakyGateway()


@pytest.fixture
def make_service(
    store: Store,
    gateway: FlakyGateway,
    fake_clock: FakeClock,
    settings_factory: Callable[..., Settings],
) -> ServiceFactory:
    def make(**overrides: Any) -> OtpService:
        values: dict[str, Any] = {
            "limits_number": "",
            "limits_ip": "",
            "limits_prefix": "",
            "limits_subnet": "",
            "limits_global": "",
            "resend_interval": 0,
            "pumping_floor": 0,
            "allowed_regions": ("CN", "US"),
            "budget_costs": (("CN", 0.05), ("*", 0.01)),
        }
        values.update(overrides)
        return OtpService(
            settings_factory(**values), store=store, gateway=gateway, clock=fake_clock
        )

    return make


def cn(i: int) -> str:
    return f"+86138123{i:05d}"


def test_daily_ceiling_stops_sends_with_503_and_an_audit_event(
    make_service: ServiceFactory, gateway: FlakyGateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="otp_service.audit")
    service = make_service(budget_daily=0.2)
    for i in range(4):
        service.send_code(cn(i))
    with pytest.raises(BudgetExhausted) as refused:
        service.send_code(cn(4))
    assert refused.value.status == 503
    assert refused.value.extras == {"period": "day"}
    assert len(gateway.sent) == 4
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "otp_service.audit"]
    assert lines[-1]["reason"] == "budget_exhausted" and lines[-1]["period"] == "day"
    # A cheaper destination still fits only if it fits: the day is spent to the cent.
    assert service.budget.spent(service.clock.now())["day"] == pytest.approx(0.2)


def test_day_rolls_over_but_the_month_keeps_counting(
    make_service: ServiceFactory, fake_clock: FakeClock
) -> None:
    service = make_service(budget_daily=0.1, budget_monthly=0.12)
    service.send_code(cn(0))
    service.send_code(cn(1))
    with pytest.raises(BudgetExhausted):
        service.send_code(cn(2))
    fake_clock.advance(86400)
    with pytest.raises(BudgetExhausted) as refused:
        service.send_code(cn(3))
    assert refused.value.extras["period"] == "month"
    service.send_code("+12015550123")  # the rest of the world costs 0.01 and still fits


def test_a_send_that_never_left_gives_its_reservation_back(
    make_service: ServiceFactory, gateway: FlakyGateway
) -> None:
    service = make_service(budget_daily=0.05)
    gateway.failing = True
    with pytest.raises(ProviderUnavailable):
        service.send_code(cn(0))
    gateway.failing = False
    service.send_code(cn(1))
    assert len(gateway.sent) == 1


def test_a_send_whose_outcome_is_unknown_stays_charged(
    make_service: ServiceFactory, gateway: FlakyGateway
) -> None:
    """The provider may have delivered it: refunding let 13 messages out under a ceiling of 3."""
    service = make_service(budget_daily=0.05)
    gateway.failing = gateway.unknown = True
    with pytest.raises(ProviderUnavailable):
        service.send_code(cn(0))
    gateway.failing = False
    with pytest.raises(BudgetExhausted):
        service.send_code(cn(1))
    assert gateway.sent == []


def test_a_budget_refusal_keeps_the_live_code_and_spends_no_quota(
    make_service: ServiceFactory, gateway: FlakyGateway
) -> None:
    service = make_service(budget_daily=0.05, limits_number="2/hour")
    service.send_code(cn(0))
    live = gateway.last_code(cn(0)) or ""
    with pytest.raises(BudgetExhausted):
        service.send_code(cn(0))
    with pytest.raises(BudgetExhausted):
        service.send_code(cn(0))
    # Neither refusal replaced the code that reached the phone or used the number's 2/hour.
    assert service.verify(cn(0), live).phone == cn(0)
    windows = service.limit_status(phone=cn(0)).windows
    (usage,) = [u for u in windows if (u.rule.amount, u.rule.window) == (2, 3600)]
    assert usage.used == 1


def test_no_ceiling_means_no_budget_bookkeeping(make_service: ServiceFactory) -> None:
    service = make_service()
    for i in range(3):
        service.send_code(cn(i))
    assert service.budget.spent(service.clock.now()) == {"day": 0.0, "month": 0.0}


def test_cost_table_is_parsed_and_checked() -> None:
    parsed = Settings.from_env({"OTP_BUDGET_COSTS": "cn:0.05, US:0.0079,*:0.1"})
    assert parsed.budget_costs == (("CN", 0.05), ("US", 0.0079), ("*", 0.1))
    with pytest.raises(ConfigurationError, match="^OTP_BUDGET_COSTS:"):
        Settings.from_env({"OTP_BUDGET_COSTS": "CN=0.05"})
    with pytest.raises(ConfigurationError, match="^OTP_BUDGET_COSTS:"):
        Settings.from_env({"OTP_BUDGET_COSTS": "CN:-1"})


def test_exhausted_budget_is_a_503_problem(
    store: Store, fake_clock: FakeClock, settings_factory: Callable[..., Settings]
) -> None:
    settings = settings_factory(budget_costs=(("CN", 1.0),), budget_daily=1.0, resend_interval=0)
    client = create_app(settings, store=store, gateway=ConsoleGateway(), clock=fake_clock)
    http = client.test_client()
    assert http.post("/send-code", json={"phone": cn(1)}).status_code == 202
    refused = http.post("/send-code", json={"phone": cn(2)})
    assert refused.status_code == 503
    assert refused.get_json()["code"] == "budget_exhausted"
