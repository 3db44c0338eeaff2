"""One behaviour suite for every SmsGateway: the console one and Huawei's (against the simulator).

Same style as the ``store`` fixture: one parametrised fixture, and the simulator starts only for
the Huawei case. Each case says how to read back what was "sent", so the suite checks delivery
of the code itself, not just a return value.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from otp_service.settings import Settings
from otp_service.sms import ConsoleGateway, SmsGateway, SmsMessage
from otp_service.sms.huawei import HuaweiSmsGateway
from tests.huawei_sim import HuaweiSimulator

PHONE = "+8613812345678"
OTHER = "+8613987654321"


@dataclass
class GatewayUnderTest:
    gateway: SmsGateway
    #: The code in the newest message that reached ``to`` (None if none did).
    last_code: Callable[[str], str | None]
    #: How many messages the far end has accepted in total.
    count: Callable[[], int]


def _message(to: str = PHONE, code: str = "482913") -> SmsMessage:
    return SmsMessage(
        to=to, code=code, text=f"Your code is {code}", purpose="login", template_params=(code,)
    )


@pytest.fixture(params=["console", "huawei"])
def subject(
    request: pytest.FixtureRequest, settings_factory: Callable[..., Settings]
) -> Iterator[GatewayUnderTest]:
    if request.param == "console":
        console = ConsoleGateway()
        yield GatewayUnderTest(console, console.last_code, lambda: len(console.sent))
        return
    sim: HuaweiSimulator = request.getfixturevalue("huawei_sim")
    huawei = HuaweiSmsGateway.from_settings(settings_factory(**sim.settings_overrides()))
    try:
        yield GatewayUnderTest(huawei, sim.last_code, lambda: len(sim.messages))
    finally:
        huawei.close()


def test_send_delivers_the_code(subject: GatewayUnderTest) -> None:
    subject.gateway.send(_message(code="482913"))
    assert subject.last_code(PHONE) == "482913"
    assert subject.count() == 1


def test_leading_zeros_survive(subject: GatewayUnderTest) -> None:
    subject.gateway.send(_message(code="000417"))
    assert subject.last_code(PHONE) == "000417"


def test_result_names_the_provider_and_a_message_id(subject: GatewayUnderTest) -> None:
    result = subject.gateway.send(_message())
    assert result.provider == subject.gateway.name
    assert result.message_id


def test_message_ids_are_unique(subject: GatewayUnderTest) -> None:
    ids = {subject.gateway.send(_message()).message_id for _ in range(3)}
    assert len(ids) == 3


def test_numbers_do_not_mix(subject: GatewayUnderTest) -> None:
    subject.gateway.send(_message(PHONE, "111111"))
    subject.gateway.send(_message(OTHER, "222222"))
    assert subject.last_code(PHONE) == "111111"
    assert subject.last_code(OTHER) == "222222"


def test_one_call_sends_exactly_one_message(subject: GatewayUnderTest) -> None:
    for n in range(1, 4):
        subject.gateway.send(_message())
        assert subject.count() == n


def test_newest_code_wins(subject: GatewayUnderTest) -> None:
    subject.gateway.send(_message(code="111111"))
    subject.gateway.send(_message(code="333333"))
    assert subject.last_code(PHONE) == "333333"


def test_nothing_sent_reads_as_none(subject: GatewayUnderTest) -> None:
    assert subject.last_code(PHONE) is None
    assert subject.count() == 0


def test_name_is_stable_and_reported(subject: GatewayUnderTest) -> None:
    name = subject.gateway.name
    assert name in {"console", "huawei"}
    assert subject.gateway.send(_message()).provider == name == subject.gateway.name
