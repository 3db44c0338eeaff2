"""One behaviour suite for every store backend (memory and a private Redis)."""

from __future__ import annotations

import threading
import uuid

import pytest

from otp_service.store import CodeStatus, Denial, LimitRule, MemoryStore, Store
from otp_service.store.base import CodeRecord, Tally

NOW = 1_800_000_000.0


def token() -> str:
    return uuid.uuid4().hex


def test_right_code_is_approved_once(store: Store) -> None:
    store.put_code("k", b"digest", ttl=300, max_attempts=5, now=NOW)
    assert store.verify_code("k", [b"digest"], now=NOW + 1).status is CodeStatus.APPROVED
    assert store.verify_code("k", [b"digest"], now=NOW + 2).status is CodeStatus.EXPIRED


def test_wrong_codes_count_down_then_lock_even_the_right_code(store: Store) -> None:
    store.put_code("k", b"digest", ttl=300, max_attempts=3, now=NOW)
    lefts = [store.verify_code("k", [b"wrong!"], now=NOW).attempts_left for _ in range(3)]
    assert lefts == [2, 1, 0]
    assert store.verify_code("k", [b"digest"], now=NOW).status is CodeStatus.LOCKED
    assert store.verify_code("k", [b"wrong!"], now=NOW).status is CodeStatus.LOCKED


def test_code_expires_by_the_passed_clock(store: Store) -> None:
    store.put_code("k", b"digest", ttl=300, max_attempts=5, now=NOW)
    assert store.verify_code("k", [b"digest"], now=NOW + 300).status is CodeStatus.EXPIRED


def test_new_code_replaces_old_and_resets_attempts(store: Store) -> None:
    store.put_code("k", b"first", ttl=300, max_attempts=2, now=NOW)
    store.verify_code("k", [b"nope"], now=NOW)
    store.verify_code("k", [b"nope"], now=NOW)
    store.put_code("k", b"second", ttl=300, max_attempts=2, now=NOW + 1)
    assert store.verify_code("k", [b"first"], now=NOW + 1).attempts_left == 1
    assert store.verify_code("k", [b"second"], now=NOW + 1).status is CodeStatus.APPROVED


def test_any_candidate_may_match(store: Store) -> None:
    store.put_code("k", b"old-key-digest", ttl=300, max_attempts=5, now=NOW)
    check = store.verify_code("k", [b"new-key-digest", b"old-key-digest"], now=NOW)
    assert check.status is CodeStatus.APPROVED


def test_unknown_code_is_expired(store: Store) -> None:
    assert store.verify_code("missing", [b"x"], now=NOW).status is CodeStatus.EXPIRED


def test_limit_refuses_at_exactly_its_amount_and_recovers_after_window(store: Store) -> None:
    rule = LimitRule("ip", "lim:ip", amount=3, window=60)
    results = [store.admit(denials=(), limits=[rule], now=NOW + i, token=token()) for i in range(4)]
    assert [r.allowed for r in results] == [True, True, True, False]
    assert results[3].refused_by == "ip"
    assert results[3].retry_after == pytest.approx(57)
    later = store.admit(denials=(), limits=[rule], now=NOW + 60.001, token=token())
    assert later.allowed


def test_refused_request_consumes_no_other_quota(store: Store) -> None:
    tight = LimitRule("number", "lim:n", amount=1, window=60)
    loose = LimitRule("ip", "lim:ip", amount=2, window=60)
    assert store.admit(denials=(), limits=[tight, loose], now=NOW, token=token()).allowed
    refused = store.admit(denials=(), limits=[tight, loose], now=NOW, token=token())
    assert refused.refused_by == "number"
    assert store.admit(denials=(), limits=[loose], now=NOW, token=token()).allowed


def test_longest_wait_wins_when_several_limits_refuse(store: Store) -> None:
    short = LimitRule("ip", "lim:a", amount=1, window=10)
    long = LimitRule("global", "lim:b", amount=1, window=100)
    store.admit(denials=(), limits=[short, long], now=NOW, token=token())
    refused = store.admit(denials=(), limits=[short, long], now=NOW, token=token())
    assert (refused.refused_by, refused.retry_after) == ("global", pytest.approx(100))


def test_shadow_limit_reports_but_never_refuses(store: Store) -> None:
    rule = LimitRule("prefix", "lim:p", amount=1, window=60, shadow=True)
    first = store.admit(denials=(), limits=[rule], now=NOW, token=token())
    second = store.admit(denials=(), limits=[rule], now=NOW, token=token())
    assert first.allowed and first.shadowed == ()
    assert second.allowed and second.shadowed == ("prefix",)


def test_denial_key_refuses_while_live(store: Store) -> None:
    store.put("deny", b"1", ttl=100, now=NOW)
    denial = Denial("number_opted_out", "deny")
    assert store.admit(denials=[denial], limits=(), now=NOW, token=token()).refused_by == (
        "number_opted_out"
    )
    assert store.admit(denials=[denial], limits=(), now=NOW + 100, token=token()).allowed


def test_verify_limits_refuse_before_touching_the_code(store: Store) -> None:
    rule = LimitRule("verify_ip", "lim:v", amount=1, window=60)
    store.put_code("k", b"digest", ttl=300, max_attempts=5, now=NOW)
    first = store.verify_code("k", [b"nope"], now=NOW, limits=[rule], token=token())
    second = store.verify_code("k", [b"digest"], now=NOW, limits=[rule], token=token())
    assert first.status is CodeStatus.INVALID
    assert (second.status, second.refused_by) == (CodeStatus.LIMITED, "verify_ip")
    assert store.verify_code("k", [b"digest"], now=NOW).status is CodeStatus.APPROVED


def test_values_put_get_take_and_expire(store: Store) -> None:
    store.put("v", b"payload", ttl=10, now=NOW)
    assert store.get("v", now=NOW + 9) == b"payload"
    assert store.get("v", now=NOW + 10) is None
    store.put("t", b"once", ttl=10, now=NOW)
    assert store.take("t", now=NOW) == b"once"
    assert store.take("t", now=NOW) is None


def test_put_new_keeps_the_first_value_until_it_expires(store: Store) -> None:
    assert store.put_new("n", b"first", ttl=10, now=NOW) is None
    assert store.put_new("n", b"second", ttl=10, now=NOW + 5) == b"first"
    assert store.put_new("n", b"third", ttl=10, now=NOW + 10) is None
    assert store.get("n", now=NOW + 10) == b"third"


def test_delete_counts_removed_keys(store: Store) -> None:
    store.put("a", b"1", ttl=10, now=NOW)
    store.put_code("b", b"d", ttl=10, max_attempts=1, now=NOW)
    assert store.delete("a", "b", "missing") == 2


def test_parallel_admits_never_exceed_a_limit(store: Store) -> None:
    rule = LimitRule("number", "lim:race", amount=3, window=60)
    allowed: list[bool] = []
    barrier = threading.Barrier(40)

    def attempt() -> None:
        barrier.wait()
        allowed.append(store.admit(denials=(), limits=[rule], now=NOW, token=token()).allowed)

    threads = [threading.Thread(target=attempt) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert allowed.count(True) == 3


def test_parallel_wrong_guesses_count_exactly_max_attempts(store: Store) -> None:
    store.put_code("k", b"digest", ttl=300, max_attempts=5, now=NOW)
    statuses: list[CodeStatus] = []
    barrier = threading.Barrier(100)

    def guess() -> None:
        barrier.wait()
        statuses.append(store.verify_code("k", [b"wrong!"], now=NOW).status)

    threads = [threading.Thread(target=guess) for _ in range(100)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses.count(CodeStatus.INVALID) == 5
    assert statuses.count(CodeStatus.LOCKED) == 95
    assert store.verify_code("k", [b"digest"], now=NOW).status is CodeStatus.LOCKED


def test_admission_reports_each_window_after_its_own_hit(store: Store) -> None:
    roomy = LimitRule("ip", "lim:u1", amount=3, window=60)
    tight = LimitRule("number", "lim:u2", amount=2, window=10)
    store.admit(denials=(), limits=[roomy, tight], now=NOW, token=token())
    second = store.admit(denials=(), limits=[roomy, tight], now=NOW + 4, token=token())
    ip, number = second.usage
    assert (ip.rule, ip.used, ip.remaining) == (roomy, 2, 1)
    assert (ip.reset_after, ip.retry_after) == (pytest.approx(56), 0)
    assert (number.used, number.remaining) == (2, 0)
    assert (number.reset_after, number.retry_after) == (pytest.approx(6), pytest.approx(6))


def test_admission_usage_of_a_fresh_window_is_one_hit_for_a_full_window(store: Store) -> None:
    rule = LimitRule("global", "lim:fresh", amount=5, window=3600)
    (usage,) = store.admit(denials=(), limits=[rule], now=NOW, token=token()).usage
    assert (usage.used, usage.remaining, usage.retry_after) == (1, 4, 0)
    assert usage.reset_after == pytest.approx(3600)


def test_window_usage_reads_without_counting(store: Store) -> None:
    rule = LimitRule("ip", "lim:read", amount=2, window=60)
    empty = LimitRule("subnet", "lim:none", amount=5, window=60)
    store.admit(denials=(), limits=[rule], now=NOW, token=token())
    store.admit(denials=(), limits=[rule], now=NOW + 10, token=token())
    full, untouched = store.window_usage([rule, empty], now=NOW + 20)
    assert (full.used, full.remaining) == (2, 0)
    assert (full.reset_after, full.retry_after) == (pytest.approx(40), pytest.approx(40))
    assert (untouched.used, untouched.reset_after, untouched.retry_after) == (0, 0, 0)
    assert store.window_usage([rule], now=NOW + 20)[0].used == 2
    (half,) = store.window_usage([rule], now=NOW + 60)
    assert (half.used, half.reset_after, half.retry_after) == (1, pytest.approx(10), 0)
    assert store.window_usage([], now=NOW) == []


def test_deleting_a_limit_key_resets_its_window(store: Store) -> None:
    rule = LimitRule("ip", "lim:reset", amount=1, window=60)
    store.admit(denials=(), limits=[rule], now=NOW, token=token())
    assert not store.admit(denials=(), limits=[rule], now=NOW, token=token()).allowed
    assert store.delete(rule.key) == 1
    assert store.admit(denials=(), limits=[rule], now=NOW, token=token()).allowed


def test_tally_counts_reads_and_expires_counters(store: Store) -> None:
    assert store.tally({"c:a": 1, "c:b": 5}, ["c:a", "c:b", "c:x"], ttl=60, now=NOW) == [1, 5, 0]
    assert store.tally({"c:a": 1, "c:b": -2}, ["c:a", "c:b"], ttl=60, now=NOW + 1) == [2, 3]
    assert store.tally({}, ["c:a"], ttl=60, now=NOW + 2) == [2]
    assert store.delete("c:b") == 1
    assert store.tally({}, ["c:b"], ttl=60, now=NOW + 2) == [0]
    if isinstance(store, MemoryStore):
        assert store.tally({}, ["c:a"], ttl=60, now=NOW + 62) == [0]


def test_parallel_tallies_lose_no_increment(store: Store) -> None:
    def bump() -> None:
        for _ in range(25):
            store.tally({"c:p": 1}, [], ttl=60, now=NOW)

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert store.tally({}, ["c:p"], ttl=60, now=NOW) == [100]


def test_admission_stores_the_code_in_the_same_step(store: Store) -> None:
    rule = LimitRule("number", "lim:code", amount=1, window=60)
    record = CodeRecord("k", b"digest", ttl=300, max_attempts=2)
    assert store.admit(denials=(), limits=[rule], now=NOW, token=token(), code=record).allowed
    assert store.verify_code("k", [b"digest"], now=NOW).status is CodeStatus.APPROVED


def test_a_refused_admission_leaves_the_previous_code_alone(store: Store) -> None:
    rule = LimitRule("number", "lim:code", amount=1, window=60)
    first = CodeRecord("k", b"first", ttl=300, max_attempts=2)
    second = CodeRecord("k", b"second", ttl=300, max_attempts=2)
    store.admit(denials=(), limits=[rule], now=NOW, token=token(), code=first)
    refused = store.admit(denials=(), limits=[rule], now=NOW, token=token(), code=second)
    assert not refused.allowed
    assert store.verify_code("k", [b"first"], now=NOW).status is CodeStatus.APPROVED


def test_approval_adds_to_counters_in_the_same_step(store: Store) -> None:
    store.put_code("k", b"digest", ttl=300, max_attempts=5, now=NOW)
    tally = Tally({"ok:a": 1, "ok:b": 2}, ttl=600)
    assert store.verify_code("k", [b"wrong!"], now=NOW, on_approve=tally).status is (
        CodeStatus.INVALID
    )
    assert store.tally({}, ["ok:a", "ok:b"], ttl=600, now=NOW) == [0, 0]
    assert store.verify_code("k", [b"digest"], now=NOW, on_approve=tally).status is (
        CodeStatus.APPROVED
    )
    assert store.tally({}, ["ok:a", "ok:b"], ttl=600, now=NOW) == [1, 2]


def test_give_back_frees_exactly_the_admissions_hits(store: Store) -> None:
    """A send that never left returns its number's windows (issue 20.6), nobody else's hits."""
    rule = LimitRule("number", "{n}:lim", amount=2, window=60)
    first, second = token(), token()
    assert store.admit(denials=(), limits=[rule], now=NOW, token=first).allowed
    assert store.admit(denials=(), limits=[rule], now=NOW + 1, token=second).allowed
    assert not store.admit(denials=(), limits=[rule], now=NOW + 2, token=token()).allowed
    store.give_back(limits=[rule], token=first, admitted_at=NOW)
    assert store.admit(denials=(), limits=[rule], now=NOW + 2, token=token()).allowed
    assert not store.admit(denials=(), limits=[rule], now=NOW + 3, token=token()).allowed


def test_give_back_after_the_window_passed_changes_nothing(store: Store) -> None:
    rule = LimitRule("number", "{n}:lim", amount=1, window=10)
    old = token()
    store.admit(denials=(), limits=[rule], now=NOW, token=old)
    assert store.admit(denials=(), limits=[rule], now=NOW + 11, token=token()).allowed
    store.give_back(limits=[rule], token=old, admitted_at=NOW)
    assert not store.admit(denials=(), limits=[rule], now=NOW + 12, token=token()).allowed


def test_give_back_drops_the_code_only_while_it_is_the_admitted_one(store: Store) -> None:
    first = CodeRecord("{n}:code", b"first", ttl=300, max_attempts=5)
    admitted = token()
    store.admit(denials=(), limits=(), now=NOW, token=admitted, code=first)
    store.give_back(limits=(), token=admitted, admitted_at=NOW, code=first)
    assert store.verify_code("{n}:code", [b"first"], now=NOW).status is CodeStatus.EXPIRED

    store.admit(denials=(), limits=(), now=NOW, token=admitted, code=first)
    later = CodeRecord("{n}:code", b"later", ttl=300, max_attempts=5)
    store.admit(denials=(), limits=(), now=NOW + 1, token=token(), code=later)
    store.give_back(limits=(), token=admitted, admitted_at=NOW, code=first)
    assert store.verify_code("{n}:code", [b"later"], now=NOW + 2).status is CodeStatus.APPROVED


def test_a_refusal_names_the_key_of_the_full_window(store: Store) -> None:
    cooldown = LimitRule("number", "{n}:cooldown", amount=1, window=60)
    hourly = LimitRule("number", "{n}:hourly", amount=5, window=3600)
    store.admit(denials=(), limits=[hourly, cooldown], now=NOW, token=token())
    refused = store.admit(denials=(), limits=[hourly, cooldown], now=NOW, token=token())
    assert (refused.refused_by, refused.refused_key) == ("number", "{n}:cooldown")
    store.put("{n}:deny", b"1", ttl=100, now=NOW)
    denied = store.admit(
        denials=[Denial("number_opted_out", "{n}:deny")], limits=(), now=NOW, token=token()
    )
    assert (denied.refused_by, denied.refused_key) == ("number_opted_out", None)
