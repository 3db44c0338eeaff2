"""The pure proof-of-work policy: levels from signals, and what a challenge's data may claim."""

from __future__ import annotations

import pytest

from otp_service.core.pow import PowClaims, expected_attempts, level_for

LEVELS = (20, 200, 2000)


@pytest.mark.parametrize(("tripped", "level"), [(-1, 0), (0, 0), (1, 1), (2, 2), (7, 2)])
def test_one_level_per_tripped_signal_capped_at_the_hardest(tripped: int, level: int) -> None:
    assert level_for(tripped, LEVELS) == level


def test_expected_attempts_is_the_mean_of_a_uniform_counter() -> None:
    # The counter is uniform over 0..20, and finding counter c takes c + 1 derivations.
    assert expected_attempts(0, LEVELS) == 11
    assert expected_attempts(2, LEVELS) == 1001


def test_claims_round_trip_and_expire_at_their_second() -> None:
    claims = PowClaims(level=1, expires=1000)
    assert PowClaims.from_data(claims.as_data()) == claims
    assert claims.live(999.9)
    assert not claims.live(1000)


@pytest.mark.parametrize(
    "data",
    [
        None,
        [],
        {},
        {"level": 1},
        {"level": "1", "expires": 1000},
        {"level": True, "expires": 1000},
        {"level": 1, "expires": 1000.5},
        {"level": -1, "expires": 1000},
    ],
)
def test_claims_not_written_by_us_are_refused(data: object) -> None:
    assert PowClaims.from_data(data) is None
