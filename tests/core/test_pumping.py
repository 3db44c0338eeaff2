"""The pumping detector's pure decisions: allowance, trips, buckets, escalation."""

from __future__ import annotations

from otp_service.core.pumping import (
    BUCKETS,
    Figures,
    Scope,
    Thresholds,
    block_seconds,
    bucket_of,
    evaluate,
    window_buckets,
)

THRESHOLDS = Thresholds(floor=20, ratio=1.0, window=3600, block_seconds=900, max_block_seconds=3600)
RANGE = Scope("prefix", "+8613812")


def test_quiet_scope_trips_only_past_the_floor() -> None:
    assert evaluate([(RANGE, Figures(sent=20, verified=0))], THRESHOLDS) == []
    (trip,) = evaluate([(RANGE, Figures(sent=21, verified=0))], THRESHOLDS)
    assert trip.describe() == {
        "rule": "pumping_prefix",
        "scope": "prefix:+8613812",
        "sent": 21,
        "verified": 0,
        "unverified": 21,
        "earlier_strikes": 0,
        "allowance": 20.0,
    }


def test_each_earlier_strike_halves_the_floor() -> None:
    assert [
        THRESHOLDS.allowance("prefix", Figures(sent=0, verified=3, strikes=n)) for n in (0, 1, 2, 5)
    ] == [23.0, 13.0, 8.0, 3.0]
    assert THRESHOLDS.allowance("country", Figures(sent=0, verified=0, strikes=1)) == 100.0


def test_verified_traffic_raises_the_allowance() -> None:
    # 1000 sent, 400 verified: 600 unverified > 20 + 400 → trips; 500 verified: 500 ≤ 520.
    assert evaluate([(RANGE, Figures(sent=1000, verified=400))], THRESHOLDS)
    assert not evaluate([(RANGE, Figures(sent=1000, verified=500))], THRESHOLDS)


def test_only_the_scopes_over_allowance_trip() -> None:
    country = Scope("country", "CN")
    trips = evaluate(
        [(RANGE, Figures(sent=50, verified=0)), (country, Figures(sent=5000, verified=4000))],
        THRESHOLDS,
    )
    assert [t.scope for t in trips] == [RANGE]


def test_more_verified_than_sent_never_counts_negative() -> None:
    assert Figures(sent=3, verified=5).unverified == 0


def test_blocks_double_on_repeat_up_to_the_ceiling() -> None:
    assert [block_seconds(n, THRESHOLDS) for n in (1, 2, 3, 4, 50)] == [900, 1800, 3600, 3600, 3600]


def test_window_reads_the_current_bucket_and_the_ones_before() -> None:
    span = 3600 // BUCKETS
    buckets = window_buckets(10 * span + 1, 3600)
    assert buckets == list(range(10 - BUCKETS, 11))
    assert bucket_of(11 * span, 3600) == 11
