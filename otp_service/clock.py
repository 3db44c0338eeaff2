"""Time and randomness, the two things the pure core must be handed rather than fetch.

Everything that reads the time or draws random bytes does so through these protocols, so tests
inject a :class:`FakeClock`-like object and a seeded source instead of sleeping or guessing.
"""

from __future__ import annotations

import secrets
import time
from typing import Protocol


class Clock(Protocol):
    """Wall-clock seconds since the epoch, as a float."""

    def now(self) -> float: ...


class RandomSource(Protocol):
    """Cryptographically strong randomness (tests may pass a seeded one)."""

    def randbelow(self, n: int) -> int: ...

    def token_bytes(self, n: int) -> bytes: ...


class SystemClock:
    """The real clock."""

    def now(self) -> float:
        return time.time()


class SecretsRandom:
    """The real random source: the :mod:`secrets` module."""

    def randbelow(self, n: int) -> int:
        return secrets.randbelow(n)

    def token_bytes(self, n: int) -> bytes:
        return secrets.token_bytes(n)
