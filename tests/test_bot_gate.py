"""BotGate, the send pipeline's one interface to the bot gate, on every store backend."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from otp_service import ConsoleGateway, OtpService
from otp_service.audit import Event
from otp_service.core.bot_gate import BotProof
from otp_service.core.phone import parse_phone
from otp_service.errors import CaptchaInvalid, CaptchaRequired
from otp_service.store import Store
from tests.conftest import FakeClock, RecordingRenderer

PHONE = parse_phone("+8613812345678", default_region="CN", allowed_regions=("CN",))
IP = "203.0.113.7"


@pytest.fixture
def make_service(
    store: Store, fake_clock: FakeClock, settings_factory: Callable[..., Any]
) -> Callable[..., tuple[OtpService, RecordingRenderer]]:
    def make(**overrides: Any) -> tuple[OtpService, RecordingRenderer]:
        renderer = RecordingRenderer()
        service = OtpService(
            settings_factory(**overrides),
            store=store,
            gateway=ConsoleGateway(),
            clock=fake_clock,
            captcha_renderer=renderer,
        )
        return service, renderer

    return make


def test_a_right_answer_passes_once_and_the_gate_waives_nothing(
    make_service: Callable[..., tuple[OtpService, RecordingRenderer]],
) -> None:
    service, renderer = make_service(captcha_mode="always", captcha_kind="image")
    gate = service.bot_gate
    challenge = gate.create_captcha(client_ip=IP)
    proof = BotProof(captcha_id=challenge.challenge_id, captcha_answer=renderer.texts[-1])
    event = Event("send", purpose="default", client_ip=IP)
    assert gate.pass_send(event, PHONE, IP, proof, service.clock.now()) is False
    assert event.details["captcha"] == "passed"
    with pytest.raises(CaptchaInvalid):
        gate.pass_send(Event("send", purpose="default"), PHONE, IP, proof, service.clock.now())


def test_adaptive_waives_a_bare_send_until_a_signal_trips(
    make_service: Callable[..., tuple[OtpService, RecordingRenderer]],
) -> None:
    service, _ = make_service(
        captcha_mode="adaptive",
        captcha_kind="auto",
        captcha_adaptive_ip_failures="1/hour",
        captcha_adaptive_new_range=False,
    )
    gate = service.bot_gate
    now = service.clock.now()
    event = Event("send", purpose="default", client_ip=IP)
    assert gate.pass_send(event, PHONE, IP, BotProof(), now) is True
    assert event.details["captcha"] == "not_required"
    gate.risk.record_failure(now=now, client_ip=IP, phone_tag=None)
    event = Event("send", purpose="default", client_ip=IP)
    with pytest.raises(CaptchaRequired) as refused:
        gate.pass_send(event, PHONE, IP, BotProof(), now)
    assert refused.value.extras == {"captcha_kinds": ["image", "pow"], "pow_level": 1}
    assert event.details["captcha_signals"] == ["ip_failures"]


def test_closed_by_a_signal_asks_what_one_tripped_signal_asks(
    make_service: Callable[..., tuple[OtpService, RecordingRenderer]],
) -> None:
    service, _ = make_service(captcha_mode="adaptive", captcha_kind="image")
    assert service.bot_gate.closed_by("ip_sends").extras == {"captcha_kinds": ["image"]}
    service, _ = make_service(captcha_mode="adaptive", captcha_kind="auto")
    closed = service.bot_gate.closed_by("ip_sends")
    assert closed.extras == {"captcha_kinds": ["image", "pow"], "pow_level": 1}


def test_the_service_keeps_its_captcha_api_as_delegations(
    make_service: Callable[..., tuple[OtpService, RecordingRenderer]],
) -> None:
    service, renderer = make_service(captcha_mode="always")
    assert service.captcha_renderer is renderer
    challenge = service.create_captcha(client_ip=IP, purpose="signup")
    assert service.captcha_image(challenge.challenge_id) == challenge.image_png
    assert service.bot_gate.captcha_image(challenge.challenge_id) == challenge.image_png
    service.check_captcha(
        challenge.challenge_id, renderer.texts[-1], client_ip=IP, purpose="signup"
    )
    with pytest.raises(CaptchaInvalid):
        service.check_captcha(challenge.challenge_id, renderer.texts[-1], purpose="signup")
