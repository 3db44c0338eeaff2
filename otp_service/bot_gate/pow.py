"""ALTCHA proof-of-work challenges: issued signed and stateless, spent once.

The ``altcha`` package does the protocol (v2: PBKDF2 key derivation, HMAC-signed parameters);
this module adds what a shared service needs on top: keys derived from the server secret and
rotated with it, expiry judged by the injected clock, difficulty set per request, and a replay
refusal that holds across workers — spending a solution is one atomic ``put_new`` of its
challenge's signature, kept until the challenge would have expired.

Challenges are made in the protocol's deterministic mode: the server picks the secret counter,
derives its key once, and signs a key signature, so checking a solution costs one HMAC (not a key
derivation) and the work a client must do is exactly uniform over ``[0, levels[level]]``.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from altcha import v2 as altcha

from otp_service.clock import RandomSource
from otp_service.core import pow as pow_core
from otp_service.core.codes import derive_key
from otp_service.core.keys import Keys
from otp_service.errors import CaptchaInvalid, CaptchaRequired
from otp_service.store import Store

_WRONG = "The proof of work is wrong, used or expired."


@dataclass(frozen=True, slots=True)
class SolvedWork:
    """A checked solution, not yet spent."""

    spent_key: str
    level: int
    expires: int


class ProofOfWork:
    """Issues challenges at a level and checks solutions against a required level.

    :param signing_keys: the server secret and its fallbacks, oldest first (as in Settings), so a
        rotation keeps challenges in flight.
    :param cost: PBKDF2 iterations per attempt (``OTP_POW_COST``).
    :param levels: the counter range of each level (``OTP_POW_LEVELS``).
    :param ttl: seconds a challenge can be solved and spent in.
    """

    def __init__(
        self,
        *,
        store: Store,
        keys: Keys,
        rng: RandomSource,
        signing_keys: Sequence[str],
        cost: int,
        levels: Sequence[int],
        ttl: int,
    ) -> None:
        self._store = store
        self._keys = keys
        self._rng = rng
        newest_first = list(reversed(signing_keys))
        self._signature_keys = [derive_key(k, "pow").hex() for k in newest_first]
        self._key_signature_keys = [derive_key(k, "pow-key").hex() for k in newest_first]
        self.cost = cost
        self.levels = tuple(levels)
        self.ttl = ttl

    def challenge(self, level: int, *, now: float) -> dict[str, Any]:
        """A new challenge as the ALTCHA widget's ``challengeurl`` expects it."""
        level = pow_core.level_for(level, self.levels)
        claims = pow_core.PowClaims(level=level, expires=int(now) + self.ttl)
        made = altcha.create_challenge(
            pow_core.ALGORITHM,
            self.cost,
            counter=self._rng.randbelow(self.levels[level] + 1),
            data=claims.as_data(),
            hmac_secret=self._signature_keys[0],
            hmac_key_secret=self._key_signature_keys[0],
        )
        return made.to_dict()

    def check(self, payload: str | None, *, required_level: int, now: float) -> SolvedWork:
        """A genuine, live solution at least as hard as ``required_level``; nothing is spent yet.

        :raises CaptchaRequired: no payload, or one for an easier level than this request needs
            (``pow_level`` says which to ask for).
        :raises CaptchaInvalid: malformed, forged, wrong or expired.
        """
        if not payload:
            raise CaptchaRequired(
                "Solve a proof of work first (POST /pow).",
                captcha_kinds=["pow"],
                pow_level=required_level,
            )
        parsed = _parse(payload)
        claims = (
            None
            if parsed is None
            else pow_core.PowClaims.from_data(parsed.challenge.parameters.data)
        )
        if parsed is None or claims is None or not claims.live(now) or not self._genuine(parsed):
            raise CaptchaInvalid(_WRONG, captcha_kind="pow")
        if claims.level < required_level:
            raise CaptchaRequired(
                "This request needs a harder proof of work (POST /pow).",
                captcha_kinds=["pow"],
                pow_level=required_level,
            )
        return SolvedWork(
            spent_key=self._keys.pow_spent(str(parsed.challenge.signature)),
            level=claims.level,
            expires=claims.expires,
        )

    def spend(self, work: SolvedWork, *, now: float) -> None:
        """Spend a checked solution: of any number of requests carrying it, exactly one passes.

        :raises CaptchaInvalid: it was spent already.
        """
        ttl = max(1.0, work.expires - now)
        if self._store.put_new(work.spent_key, b"1", ttl=ttl, now=now) is not None:
            raise CaptchaInvalid(_WRONG, captcha_kind="pow")

    def _genuine(self, parsed: altcha.Payload) -> bool:
        """Signed by one of our keys (so every parameter is ours), with the derived key that
        solves it (checked against the signed key signature: one HMAC, no key derivation)."""
        return any(
            altcha.verify_solution(
                parsed, signature_key, hmac_key_secret=key_signature_key
            ).verified
            for signature_key, key_signature_key in zip(
                self._signature_keys, self._key_signature_keys, strict=True
            )
        )


def _parse(payload: str) -> altcha.Payload | None:
    """The payload (base64 of ``{challenge, solution}`` JSON), or ``None`` if it is not one."""
    if len(payload) > pow_core.MAX_PAYLOAD_CHARS:
        return None
    try:
        return altcha.Payload.from_base64(payload)
    except (
        binascii.Error,
        json.JSONDecodeError,
        UnicodeDecodeError,
        ValueError,
        KeyError,
        TypeError,
        RecursionError,
    ):
        return None
