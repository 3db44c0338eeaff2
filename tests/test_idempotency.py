"""``Idempotency-Key`` on sends: a repeat returns the first answer and never sends twice."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from otp_service import ConsoleGateway, OtpService
from otp_service.app import create_app
from otp_service.errors import (
    IdempotencyInProgress,
    InvalidRequest,
    ProviderRejected,
    ProviderUnavailable,
    RateLimited,
    StoreUnavailable,
)
from otp_service.settings import Settings
from otp_service.sms import SendResult, SmsMessage
from otp_service.store import MemoryStore, Store
from tests.conftest import FakeClock

PHONE = "+8613812345678"


class SlowGateway(ConsoleGateway):
    """Holds every send until released, so parallel requests overlap the first one."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def send(self, message: SmsMessage) -> SendResult:
        self.entered.set()
        assert self.release.wait(10)
        return super().send(message)


class FailingGateway(ConsoleGateway):
    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error
        self.calls = 0

    def send(self, message: SmsMessage) -> SendResult:
        self.calls += 1
        raise self.error


@pytest.fixture
def make_service(
    store: Store, fake_clock: FakeClock, settings_factory: Callable[..., Settings]
) -> Callable[..., OtpService]:
    def make(gateway: ConsoleGateway, **overrides: Any) -> OtpService:
        return OtpService(
            settings_factory(**overrides), store=store, gateway=gateway, clock=fake_clock
        )

    return make


def test_repeat_returns_the_first_receipt_and_sends_once(
    make_service: Callable[..., OtpService], fake_clock: FakeClock
) -> None:
    gateway = ConsoleGateway()
    service = make_service(gateway)
    first = service.send_code(PHONE, idempotency_key="signup-1")
    fake_clock.advance(30)
    again = service.send_code(PHONE, idempotency_key="signup-1")
    assert again == first
    assert len(gateway.sent) == 1


def test_repeat_after_the_interval_is_a_new_request(
    make_service: Callable[..., OtpService], fake_clock: FakeClock
) -> None:
    gateway = ConsoleGateway()
    service = make_service(gateway)
    service.send_code(PHONE, idempotency_key="k")
    fake_clock.advance(61)
    service.send_code(PHONE, idempotency_key="k")
    assert len(gateway.sent) == 2


def test_key_is_scoped_to_number_and_purpose(
    make_service: Callable[..., OtpService], fake_clock: FakeClock
) -> None:
    gateway = ConsoleGateway()
    service = make_service(gateway)
    service.send_code(PHONE, idempotency_key="k")
    service.send_code("+8613912345678", idempotency_key="k")
    fake_clock.advance(61)  # past the cooldown, which every purpose of the number shares
    service.send_code(PHONE, purpose="login", idempotency_key="k")
    assert len(gateway.sent) == 3


def test_without_key_the_cooldown_refuses_the_repeat(
    make_service: Callable[..., OtpService],
) -> None:
    service = make_service(ConsoleGateway())
    service.send_code(PHONE)
    with pytest.raises(RateLimited):
        service.send_code(PHONE)


def test_refused_first_attempt_frees_the_key(
    make_service: Callable[..., OtpService], fake_clock: FakeClock
) -> None:
    gateway = ConsoleGateway()
    service = make_service(gateway)
    service.send_code(PHONE)
    with pytest.raises(RateLimited):
        service.send_code(PHONE, idempotency_key="k")
    fake_clock.advance(61)
    service.send_code(PHONE, idempotency_key="k")
    assert len(gateway.sent) == 2


def test_provider_failure_is_replayed_not_resent(
    make_service: Callable[..., OtpService],
) -> None:
    # The message may have reached the provider, so a retry with the key must not send again.
    gateway = FailingGateway(ProviderRejected("bad template", provider_code="E200015"))
    service = make_service(gateway)
    for _ in range(2):
        with pytest.raises(ProviderRejected) as caught:
            service.send_code(PHONE, idempotency_key="k")
        assert caught.value.extras == {"provider_code": "E200015"}
    assert gateway.calls == 1


def test_provider_failure_that_never_reached_it_frees_the_key(
    make_service: Callable[..., OtpService], fake_clock: FakeClock
) -> None:
    refused = ProviderUnavailable("refused", reason="connection_refused")
    refused.retryable = True
    gateway = FailingGateway(refused)
    service = make_service(gateway)
    with pytest.raises(ProviderUnavailable):
        service.send_code(PHONE, idempotency_key="k")
    # Not a replay: the retry runs again (and waits out the cooldown the first attempt spent).
    fake_clock.advance(61)
    with pytest.raises(ProviderUnavailable):
        service.send_code(PHONE, idempotency_key="k")
    assert gateway.calls == 2


class ReceiptWriteFails(MemoryStore):
    """The store fails exactly when the receipt of a finished send is written."""

    def put(self, key: str, value: bytes, *, ttl: float, now: float) -> None:
        if ":idem:" in key and value.startswith(b"{"):
            raise StoreUnavailable("blip")
        super().put(key, value, ttl=ttl, now=now)


def test_a_send_whose_receipt_cannot_be_stored_still_answers_sent(
    fake_clock: FakeClock, settings_factory: Callable[..., Settings]
) -> None:
    gateway = ConsoleGateway()
    service = OtpService(
        settings_factory(), store=ReceiptWriteFails(), gateway=gateway, clock=fake_clock
    )
    # The SMS left, so the caller must hear 202, not a 503 that says nothing was sent.
    assert service.send_code(PHONE, idempotency_key="k").phone == "+86138****5678"
    with pytest.raises(IdempotencyInProgress):
        service.send_code(PHONE, idempotency_key="k")
    assert len(gateway.sent) == 1


@pytest.mark.parametrize("bad", ["", "x" * 65, "a b", "é", "k/1"])
def test_malformed_key_is_refused(make_service: Callable[..., OtpService], bad: str) -> None:
    with pytest.raises(InvalidRequest):
        make_service(ConsoleGateway()).send_code(PHONE, idempotency_key=bad)


def test_parallel_repeats_send_once_and_others_see_in_progress(
    make_service: Callable[..., OtpService],
) -> None:
    gateway = SlowGateway()
    service = make_service(gateway)
    outcomes: list[object] = []

    def call() -> None:
        try:
            outcomes.append(service.send_code(PHONE, idempotency_key="k"))
        except IdempotencyInProgress as exc:
            outcomes.append(exc)

    first = threading.Thread(target=call)
    first.start()
    try:
        assert gateway.entered.wait(10)
        others = [threading.Thread(target=call) for _ in range(5)]
        for thread in others:
            thread.start()
        for thread in others:
            thread.join(10)
    finally:
        gateway.release.set()
        first.join(10)
    assert len(gateway.sent) == 1
    assert sum(isinstance(o, IdempotencyInProgress) for o in outcomes) == 5
    assert service.send_code(PHONE, idempotency_key="k") in outcomes


def test_http_repeat_returns_same_status_and_body(
    store: Store, fake_clock: FakeClock, settings_factory: Callable[..., Settings]
) -> None:
    gateway = ConsoleGateway()
    app = create_app(settings_factory(), store=store, gateway=gateway, clock=fake_clock)
    client = app.test_client()
    headers = {"Idempotency-Key": "req-42"}
    first = client.post("/send-code", json={"phone": PHONE}, headers=headers)
    again = client.post("/send-code", json={"phone": PHONE}, headers=headers)
    assert (first.status_code, again.status_code) == (202, 202)
    assert first.get_json() == again.get_json()
    assert len(gateway.sent) == 1
    bad = client.post("/send-code", json={"phone": PHONE}, headers={"Idempotency-Key": "a b"})
    assert bad.status_code == 400
    assert bad.get_json()["code"] == "invalid_request"
