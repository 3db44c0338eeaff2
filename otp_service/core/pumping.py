"""SMS pumping detection: the pure decisions (no I/O; counts and time arrive as arguments).

Pumping rings make us send codes to numbers they are paid for and never enter the codes. Fixed
limits cannot tell them from a busy range; the conversion rate can. For each scope a send touches
(its number range, its destination country, its client subnet) we keep rolling counts of codes
sent and codes verified, and a scope trips when

    unverified sends > floor + ratio × verified

over the window. The floor lets a quiet scope have a few abandoned sign-ups; the ratio scales the
allowance with the scope's real, converting traffic, so a busy country is not blocked by a burst
of abandoned codes, while a range nobody verifies is cut after about ``floor`` messages.
A tripped scope is blocked for ``block_seconds``, doubling on each repeat within a day, and
while it has strikes its floor halves per strike: without that, an attacker whose block outlasts
the window would find a fresh floor of messages waiting each time it lifts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

#: Scope kinds, in the order they are checked; each one's rule is named ``pumping_<kind>``.
SCOPE_KINDS = ("prefix", "country", "subnet")
#: Buckets per window: counts move in steps of window / BUCKETS, memory stays bounded.
BUCKETS = 6


def rule_name(kind: str) -> str:
    """The rule (and the ``limit`` callers see) for a scope kind: ``pumping_prefix`` …"""
    return f"pumping_{kind}"


@dataclass(frozen=True, slots=True)
class Scope:
    """One place counts are kept: a kind (``prefix``, ``country``, ``subnet``) and its value.

    A range's ``value`` is its keyed hash; ``label`` is what logs and operators see instead (the
    masked range), and ``aliases`` are its hashes under fallback keys, where a block made before
    a key rotation is still found.
    """

    kind: str
    value: str
    label: str = ""
    aliases: tuple[str, ...] = ()

    @property
    def shown(self) -> str:
        return self.label or self.value

    @property
    def values(self) -> tuple[str, ...]:
        """The value under the current key first, then under each fallback."""
        return (self.value, *self.aliases)

    @property
    def rule(self) -> str:
        return rule_name(self.kind)


@dataclass(frozen=True, slots=True)
class Figures:
    """A scope's counts over the window, and how often it tripped lately (``strikes``)."""

    sent: int
    verified: int
    strikes: int = 0

    @property
    def unverified(self) -> int:
        return max(0, self.sent - self.verified)


@dataclass(frozen=True, slots=True)
class Thresholds:
    """The detector's settings (``OTP_PUMPING_*``)."""

    floor: int
    ratio: float
    window: int
    block_seconds: int
    max_block_seconds: int
    #: A country holds many ranges and subnets, so its floor is its own (and higher).
    country_floor: int = 200

    def allowance(self, kind: str, figures: Figures) -> float:
        """Unverified sends a scope may have before it trips."""
        floor = self.country_floor if kind == "country" else self.floor
        return (floor >> min(figures.strikes, 30)) + self.ratio * figures.verified


@dataclass(frozen=True, slots=True)
class Trip:
    """A scope over its allowance: everything an operator needs to explain the decision."""

    scope: Scope
    figures: Figures
    allowance: float

    def describe(self) -> dict[str, object]:
        scope = self.scope
        hashed: dict[str, object] = {"scope_id": scope.value} if scope.label else {}
        return {
            "rule": scope.rule,
            "scope": f"{scope.kind}:{scope.shown}",
            **hashed,
            "sent": self.figures.sent,
            "verified": self.figures.verified,
            "unverified": self.figures.unverified,
            "earlier_strikes": self.figures.strikes,
            "allowance": round(self.allowance, 2),
        }


def bucket_of(now: float, window: int) -> int:
    """The index of the bucket holding ``now``."""
    return int(now // bucket_span(window))


def bucket_span(window: int) -> int:
    return max(1, window // BUCKETS)


def window_buckets(now: float, window: int) -> list[int]:
    """Buckets read for the rolling window: the current one and the ``BUCKETS`` before it."""
    current = bucket_of(now, window)
    return list(range(current - BUCKETS, current + 1))


def evaluate(counts: Sequence[tuple[Scope, Figures]], thresholds: Thresholds) -> list[Trip]:
    """The scopes whose unverified sends exceed their allowance."""
    trips = []
    for scope, figures in counts:
        allowance = thresholds.allowance(scope.kind, figures)
        if figures.unverified > allowance:
            trips.append(Trip(scope, figures, allowance))
    return trips


def block_seconds(strikes: int, thresholds: Thresholds) -> int:
    """How long a scope stays blocked on its ``strikes``-th trip: doubling, capped."""
    exponent = min(max(0, strikes - 1), 20)
    seconds: int = thresholds.block_seconds << exponent
    return min(seconds, thresholds.max_block_seconds)
