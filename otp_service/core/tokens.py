"""Verification tokens: proof, for the host app, that a number was verified for a purpose.

Signing and key rotation are itsdangerous' (a list of keys: the last signs, all verify — the same
scheme as Flask's ``SECRET_KEY_FALLBACKS``). Expiry is checked here against the ``now`` the caller
passes instead of itsdangerous' own clock, so tests move time without sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeSerializer

from otp_service.errors import TokenExpired, TokenInvalid

SALT = "otp-service.verification-token"
MAX_TOKEN_LENGTH = 2048


@dataclass(frozen=True, slots=True)
class VerifiedClaim:
    """What a valid token says."""

    phone: str
    purpose: str
    token_id: str
    verified_at: int
    expires_at: int


class TokenSigner:
    """Issues and checks tokens with a list of keys (oldest first, the signing key last)."""

    def __init__(self, keys: list[str]) -> None:
        self._serializer = URLSafeSerializer(keys, salt=SALT)

    def issue(self, *, phone: str, purpose: str, token_id: str, now: float, ttl: int) -> str:
        issued = int(now)
        payload = {"p": phone, "u": purpose, "j": token_id, "t": issued, "e": issued + ttl}
        return str(self._serializer.dumps(payload))

    def check(self, token: str, *, now: float, purpose: str | None = None) -> VerifiedClaim:
        """The claim in ``token``, or raise.

        :raises TokenInvalid: bad signature, malformed, or issued for another purpose.
        :raises TokenExpired: valid but past its expiry.
        """
        if not token or len(token) > MAX_TOKEN_LENGTH:
            raise TokenInvalid("The token is missing or malformed.")
        try:
            payload = self._serializer.loads(token)
            claim = VerifiedClaim(
                phone=str(payload["p"]),
                purpose=str(payload["u"]),
                token_id=str(payload["j"]),
                verified_at=int(payload["t"]),
                expires_at=int(payload["e"]),
            )
        except (BadSignature, KeyError, TypeError, ValueError):
            raise TokenInvalid("The token is missing or malformed.") from None
        if purpose is not None and claim.purpose != purpose:
            raise TokenInvalid("The token was issued for another purpose.")
        if now >= claim.expires_at:
            raise TokenExpired("The token has expired.")
        return claim
