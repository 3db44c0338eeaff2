"""The send and verify pipelines on every store, with an injected clock."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from typing import Any

import pytest

from otp_service import (
    CodeExpired,
    CodeInvalid,
    ConsoleGateway,
    OtpService,
    RateLimited,
    TokenExpired,
    TokenUsed,
    TooManyAttempts,
)
from otp_service.errors import InvalidRequest, ProviderUnavailable, StoreUnavailable
from otp_service.settings import Settings
from otp_service.sms import SendResult, SmsMessage
from otp_service.store import MemoryStore, Store
from tests.conftest import FakeClock

PHONE = "+8613812345678"
ServiceFactory = Callable[..., OtpService]


@pytest.fixture
def gateway() -> ConsoleGateway:
    return ConsoleGateway()


@pytest.fixture
def make_service(
    store: Store,
    gateway: ConsoleGateway,
    fake_clock: FakeClock,
    settings_factory: Callable[..., Settings],
) -> ServiceFactory:
    def make(**overrides: Any) -> OtpService:
        return OtpService(
            settings_factory(**overrides), store=store, gateway=gateway, clock=fake_clock
        )

    return make


def test_send_then_verify_issues_a_token_for_the_number(
    make_service: ServiceFactory, gateway: ConsoleGateway
) -> None:
    service = make_service()
    receipt = service.send_code("138 1234 5678", purpose="signup")
    assert (receipt.phone, receipt.expires_in, receipt.resend_after) == ("+86138****5678", 300, 60)
    code = gateway.last_code(PHONE)
    assert code is not None and len(code) == 6
    approval = service.verify(PHONE, code, purpose="signup")
    claim = service.check_token(approval.token, purpose="signup")
    assert (claim.phone, claim.purpose) == (PHONE, "signup")


def test_a_code_works_once(make_service: ServiceFactory, gateway: ConsoleGateway) -> None:
    service = make_service()
    service.send_code(PHONE)
    code = gateway.last_code(PHONE)
    assert code is not None
    service.verify(PHONE, code)
    with pytest.raises(CodeExpired):
        service.verify(PHONE, code)


def test_wrong_codes_count_down_then_lock(
    make_service: ServiceFactory, gateway: ConsoleGateway
) -> None:
    service = make_service(max_attempts=3)
    service.send_code(PHONE)
    code = gateway.last_code(PHONE)
    assert code is not None
    wrong = "000000" if code != "000000" else "111111"
    lefts = []
    for _ in range(3):
        with pytest.raises(CodeInvalid) as info:
            service.verify(PHONE, wrong)
        lefts.append(info.value.extras["attempts_left"])
    assert lefts == [2, 1, 0]
    with pytest.raises(TooManyAttempts):
        service.verify(PHONE, code)


def test_code_expires_with_the_clock(
    make_service: ServiceFactory, gateway: ConsoleGateway, fake_clock: FakeClock
) -> None:
    service = make_service()
    service.send_code(PHONE)
    fake_clock.advance(300)
    with pytest.raises(CodeExpired):
        service.verify(PHONE, gateway.last_code(PHONE) or "")


def test_new_send_replaces_the_old_code(
    make_service: ServiceFactory, gateway: ConsoleGateway, fake_clock: FakeClock
) -> None:
    service = make_service()
    service.send_code(PHONE)
    first = gateway.last_code(PHONE)
    fake_clock.advance(60)
    service.send_code(PHONE)
    second = gateway.last_code(PHONE)
    assert first and second
    if first != second:
        with pytest.raises(CodeInvalid):
            service.verify(PHONE, first)
    assert service.verify(PHONE, second).phone == PHONE


def test_codes_are_per_purpose(make_service: ServiceFactory, gateway: ConsoleGateway) -> None:
    service = make_service()
    service.send_code(PHONE, purpose="login")
    code = gateway.last_code(PHONE) or ""
    with pytest.raises(CodeExpired):
        service.verify(PHONE, code, purpose="signup")


@pytest.mark.memory
def test_codes_come_from_the_secrets_module_by_default(
    monkeypatch: pytest.MonkeyPatch,
    gateway: ConsoleGateway,
    fake_clock: FakeClock,
    settings_factory: Callable[..., Settings],
) -> None:
    draws: list[int] = []

    def recording_randbelow(n: int) -> int:
        draws.append(n)
        return n - 1

    monkeypatch.setattr(secrets, "randbelow", recording_randbelow)
    service = OtpService(settings_factory(), store=MemoryStore(), gateway=gateway, clock=fake_clock)
    service.send_code(PHONE)
    assert draws == [10**6]
    assert gateway.last_code(PHONE) == "999999"


def test_resend_cooldown_refuses_with_retry_after(
    make_service: ServiceFactory, fake_clock: FakeClock, gateway: ConsoleGateway
) -> None:
    service = make_service()
    service.send_code(PHONE)
    fake_clock.advance(20)
    with pytest.raises(RateLimited) as info:
        service.send_code(PHONE)
    assert info.value.extras == {"limit": "number", "retry_after": 40}
    fake_clock.advance(40)
    service.send_code(PHONE)
    assert len(gateway.sent) == 2


def test_fifty_parallel_sends_for_one_number_send_exactly_one_message(
    make_service: ServiceFactory, gateway: ConsoleGateway
) -> None:
    service = make_service()
    barrier = threading.Barrier(50)
    outcomes: list[str] = []

    def send() -> None:
        barrier.wait()
        try:
            service.send_code(PHONE)
            outcomes.append("sent")
        except RateLimited:
            outcomes.append("limited")

    threads = [threading.Thread(target=send) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("sent") == 1
    assert len(gateway.sent) == 1


def test_two_hundred_parallel_wrong_verifies_count_max_attempts_then_lock(
    make_service: ServiceFactory, gateway: ConsoleGateway
) -> None:
    service = make_service(limits_verify_ip="")
    service.send_code(PHONE)
    code = gateway.last_code(PHONE) or ""
    wrong = "000000" if code != "000000" else "111111"
    barrier = threading.Barrier(200)
    errors: list[str] = []

    def guess() -> None:
        barrier.wait()
        try:
            service.verify(PHONE, wrong)
        except (CodeInvalid, TooManyAttempts) as exc:
            errors.append(exc.code)

    threads = [threading.Thread(target=guess) for _ in range(200)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors.count("code_invalid") == 5
    assert errors.count("too_many_attempts") == 195
    with pytest.raises(TooManyAttempts):
        service.verify(PHONE, code)


def test_parallel_verifies_of_the_right_code_approve_exactly_once(
    make_service: ServiceFactory, gateway: ConsoleGateway
) -> None:
    service = make_service(limits_verify_ip="")
    service.send_code(PHONE)
    code = gateway.last_code(PHONE) or ""
    barrier = threading.Barrier(30)
    approvals: list[str] = []

    def verify() -> None:
        barrier.wait()
        try:
            approvals.append(service.verify(PHONE, code).token)
        except CodeExpired:
            pass

    threads = [threading.Thread(target=verify) for _ in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(approvals) == 1


def test_one_time_tokens_cannot_be_replayed(
    make_service: ServiceFactory, gateway: ConsoleGateway
) -> None:
    service = make_service()
    service.send_code(PHONE)
    token = service.verify(PHONE, gateway.last_code(PHONE) or "").token
    service.check_token(token, consume=True)
    with pytest.raises(TokenUsed):
        service.check_token(token, consume=True)


def test_tokens_expire_with_the_clock(
    make_service: ServiceFactory, gateway: ConsoleGateway, fake_clock: FakeClock
) -> None:
    service = make_service(token_ttl=60)
    service.send_code(PHONE)
    token = service.verify(PHONE, gateway.last_code(PHONE) or "").token
    fake_clock.advance(60)
    with pytest.raises(TokenExpired):
        service.check_token(token)


def test_key_rotation_keeps_codes_and_tokens_in_flight(
    store: Store,
    gateway: ConsoleGateway,
    fake_clock: FakeClock,
    settings_factory: Callable[..., Settings],
) -> None:
    old = OtpService(
        settings_factory(secret_key="o" * 40), store=store, gateway=gateway, clock=fake_clock
    )
    old.send_code(PHONE, purpose="a")
    fake_clock.advance(61)  # past the number's cooldown, which every purpose shares
    old.send_code(PHONE, purpose="b")
    token = old.verify(PHONE, gateway.sent[0].code, purpose="a").token
    rotated = OtpService(
        settings_factory(secret_key="n" * 40, secret_key_fallbacks=("o" * 40,)),
        store=store,
        gateway=gateway,
        clock=fake_clock,
    )
    assert rotated.check_token(token).phone == PHONE
    with pytest.raises(CodeExpired):
        # Keys of a number are tagged with the current key: in-flight codes start over.
        rotated.verify(PHONE, gateway.sent[1].code, purpose="b")


def test_test_numbers_get_their_fixed_code_without_an_sms(
    make_service: ServiceFactory, gateway: ConsoleGateway
) -> None:
    service = make_service(test_numbers=(("+8613800000000", "246810"),))
    service.send_code("+8613800000000")
    assert gateway.sent == []
    with pytest.raises(CodeInvalid):
        service.verify("+8613800000000", "111111")
    assert service.verify("+8613800000000", "246810").phone == "+8613800000000"


@pytest.mark.parametrize("code", ["12345", "1234567", "abcdef", "１２３４５６", ""])
def test_malformed_codes_are_invalid_requests(make_service: ServiceFactory, code: str) -> None:
    with pytest.raises(InvalidRequest):
        make_service().verify(PHONE, code)


@pytest.mark.parametrize("purpose", ["", "Login", "a" * 33, "sign up", "../x"])
def test_bad_purposes_are_invalid_requests(make_service: ServiceFactory, purpose: str) -> None:
    with pytest.raises(InvalidRequest):
        make_service().send_code(PHONE, purpose=purpose)


class _FailingGateway:
    name = "failing"

    def __init__(self) -> None:
        self.calls = 0

    def send(self, message: SmsMessage) -> SendResult:
        self.calls += 1
        raise ProviderUnavailable("down", provider_code="E000510")


def test_provider_failure_is_raised_once_and_never_retried(
    store: Store, fake_clock: FakeClock, settings_factory: Callable[..., Settings]
) -> None:
    failing = _FailingGateway()
    service = OtpService(settings_factory(), store=store, gateway=failing, clock=fake_clock)
    with pytest.raises(ProviderUnavailable):
        service.send_code(PHONE)
    assert failing.calls == 1


@pytest.mark.redis
def test_store_outage_fails_closed_and_recovers(
    redis_process: Any, fake_clock: FakeClock, settings_factory: Callable[..., Settings]
) -> None:
    from otp_service.store.redis import RedisStore

    gateway = ConsoleGateway()
    store = RedisStore.from_url(redis_process.url)
    service = OtpService(settings_factory(), store=store, gateway=gateway, clock=fake_clock)
    try:
        redis_process.stop()
        with pytest.raises(StoreUnavailable):
            service.send_code(PHONE)
        with pytest.raises(StoreUnavailable):
            service.ready()
        assert gateway.sent == []
        redis_process.start()
        service.send_code(PHONE)
        assert len(gateway.sent) == 1
    finally:
        store.close()
