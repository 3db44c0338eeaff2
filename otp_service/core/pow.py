"""Proof of work: how much a send must prove, and what a challenge promises about itself.

A text captcha falls to a solver trained on its own renderer (docs/captcha.md has the figures), so
the bot gate also offers work that cannot be learned: an ALTCHA challenge whose solution costs a
known number of PBKDF2 evaluations. The price follows risk. A visitor on whom no signal trips pays
level 0 (a few tens of milliseconds in a browser); each adaptive signal that trips (sends from the
address or its subnet, failures, a range nobody verifies in, a global surge) raises the level, so a
flood buys every message with seconds of CPU while a person waits once.

What a challenge promises — its level and its expiry — travels inside the challenge's signed
``data``, so the server keeps no state until a solution is spent (then only its id, to refuse a
replay until the challenge would have expired anyway).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

#: The ALTCHA v2 key derivation used: PBKDF2 runs natively in every browser (WebCrypto), so a
#: person's browser pays what an attacker's native code pays per attempt, unlike a bare SHA-256
#: loop in JavaScript, which native code runs many times faster.
ALGORITHM = "PBKDF2/SHA-256"
#: Longest ``altcha`` payload accepted (a real one is about 700 characters).
MAX_PAYLOAD_CHARS = 4096


def level_for(tripped_signals: int, levels: Sequence[int]) -> int:
    """The level a request must prove: one step up per tripped signal, capped at the hardest."""
    return min(max(tripped_signals, 0), len(levels) - 1)


def expected_attempts(level: int, levels: Sequence[int]) -> float:
    """Mean key derivations a solver needs at ``level`` (the secret counter is uniform)."""
    return (levels[level] + 2) / 2


@dataclass(frozen=True, slots=True)
class PowClaims:
    """What a signed challenge says about itself."""

    level: int
    expires: int

    def as_data(self) -> dict[str, int]:
        """The challenge's ``data`` field (signed with the challenge)."""
        return {"level": self.level, "expires": self.expires}

    @classmethod
    def from_data(cls, data: object) -> PowClaims | None:
        """The claims in a challenge's ``data``, or ``None`` if they are not ours."""
        if not isinstance(data, Mapping):
            return None
        level, expires = data.get("level"), data.get("expires")
        if type(level) is not int or type(expires) is not int or level < 0:
            return None
        return cls(level=level, expires=expires)

    def live(self, now: float) -> bool:
        return now < self.expires
