"""The refusal memo answers only while a refused window is certainly still full."""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

import pytest

from otp_service import ConsoleGateway, OtpService
from otp_service.core.refusal_memo import RefusalMemo
from otp_service.errors import RateLimited
from otp_service.settings import Settings
from otp_service.store import Admission, MemoryStore
from tests.conftest import TEST_SECRET, FakeClock
from tests.test_log_hygiene import captured

PHONE = "+8613812345678"


def test_a_refusal_is_remembered_for_the_hold_and_no_longer() -> None:
    memo = RefusalMemo(hold=1.0)
    memo.remember("k:number", "number", retry_after=30.0, now=100.0)
    hit = memo.refusing(["k:ip", "k:number"], now=100.5)
    assert hit is not None and hit.name == "number"
    assert hit.retry_after == pytest.approx(29.5)
    assert memo.refusing(["k:number"], now=101.0) is None
    assert len(memo) == 0


def test_a_window_that_frees_before_the_hold_is_not_answered_for() -> None:
    memo = RefusalMemo(hold=1.0)
    memo.remember("k:ip", "ip", retry_after=0.25, now=10.0)
    assert memo.refusing(["k:ip"], now=10.2) is not None
    assert memo.refusing(["k:ip"], now=10.25) is None


def test_the_longest_wait_among_the_request_keys_is_reported() -> None:
    memo = RefusalMemo(hold=5.0)
    memo.remember("a", "ip", retry_after=3.0, now=0.0)
    memo.remember("b", "number", retry_after=40.0, now=0.0)
    hit = memo.refusing(["a", "b", "c"], now=1.0)
    assert hit is not None and hit.name == "number" and hit.retry_after == pytest.approx(39.0)


def test_zero_hold_turns_the_memo_off() -> None:
    memo = RefusalMemo(hold=0)
    memo.remember("a", "ip", retry_after=60.0, now=0.0)
    assert not memo.enabled
    assert memo.refusing(["a"], now=0.0) is None


def test_forgetting_keys_frees_them_at_once() -> None:
    memo = RefusalMemo(hold=1.0)
    memo.remember("a", "number", retry_after=60.0, now=0.0)
    memo.remember("b", "ip", retry_after=60.0, now=0.0)
    memo.forget(["a"])
    assert memo.refusing(["a"], now=0.1) is None
    assert memo.refusing(["b"], now=0.1) is not None
    memo.forget()
    assert len(memo) == 0


def test_capacity_evicts_the_oldest_refusal() -> None:
    memo = RefusalMemo(hold=1.0, capacity=2)
    for index, key in enumerate("abc"):
        memo.remember(key, "ip", retry_after=60.0, now=float(index) / 10)
    assert len(memo) == 2
    assert memo.refusing(["a"], now=0.3) is None
    assert memo.refusing(["c"], now=0.3) is not None


def test_parallel_writers_and_readers_keep_the_bound() -> None:
    memo = RefusalMemo(hold=1.0, capacity=100)

    def hammer(offset: int) -> None:
        for index in range(2000):
            memo.remember(f"{offset}:{index}", "ip", retry_after=1.0, now=0.0)
            memo.refusing([f"{offset}:{index - 1}"], now=0.5)

    threads = [threading.Thread(target=hammer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(memo) == 100


class CountingStore(MemoryStore):
    """A memory store that counts admission round trips (what the memo saves)."""

    admits = 0

    def admit(self, **kwargs: Any) -> Admission:
        self.admits += 1
        return super().admit(**kwargs)


def make_service(store: MemoryStore, clock: FakeClock) -> OtpService:
    settings = Settings(env="testing", secret_key=TEST_SECRET, captcha_mode="off")
    return OtpService(settings, store=store, gateway=ConsoleGateway(), clock=clock)


def test_a_repeat_within_the_hold_is_refused_without_asking_the_store() -> None:
    store, clock = CountingStore(), FakeClock()
    service = make_service(store, clock)
    service.send_code(PHONE)
    with pytest.raises(RateLimited):
        service.send_code(PHONE)
    assert store.admits == 2
    clock.advance(0.5)
    with captured(logging.getLogger("otp_service.audit"), logging.INFO) as audit:
        with pytest.raises(RateLimited) as refused:
            service.send_code(PHONE, purpose="login")  # the cooldown is shared by purposes
    assert store.admits == 2
    assert (refused.value.extras["limit"], refused.value.extras["retry_after"]) == ("number", 60)
    [line] = [json.loads(text) for text in audit.lines]
    assert (line["reason"], line["refusal_memo"]) == ("rate_limited", True)
    clock.advance(0.5)
    with pytest.raises(RateLimited):
        service.send_code(PHONE)
    assert store.admits == 3


def test_another_workers_reset_is_seen_once_the_hold_passes_and_its_own_at_once() -> None:
    store, clock = CountingStore(), FakeClock()
    worker, operator = make_service(store, clock), make_service(store, clock)
    worker.send_code(PHONE)
    with pytest.raises(RateLimited):
        worker.send_code(PHONE)
    operator.reset_limits(phone=PHONE)
    with pytest.raises(RateLimited):
        worker.send_code(PHONE)  # within the hold: the memo has not heard of the reset
    clock.advance(1.0)
    worker.send_code(PHONE)
    with pytest.raises(RateLimited):
        worker.send_code(PHONE)
    worker.reset_limits(phone=PHONE)
    worker.send_code(PHONE)


def test_a_memo_of_one_number_never_refuses_another() -> None:
    store, clock = CountingStore(), FakeClock()
    service = make_service(store, clock)
    service.send_code(PHONE)
    with pytest.raises(RateLimited):
        service.send_code(PHONE)
    service.send_code("+8613912345678")
