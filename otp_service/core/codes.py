"""Verification codes: drawn from a strong random source, stored only as keyed HMACs."""

from __future__ import annotations

import hashlib
import hmac

from otp_service.clock import RandomSource


def generate_code(rng: RandomSource, length: int) -> str:
    """A uniformly random string of ``length`` decimal digits (leading zeros kept)."""
    return str(rng.randbelow(10**length)).zfill(length)


def code_digest(key: bytes, *, phone: str, purpose: str, code: str) -> bytes:
    """HMAC-SHA256 of the code bound to its number and purpose.

    Binding number and purpose means a stolen store row cannot be replayed for another number,
    and the key means a store dump cannot be brute-forced offline over the 10^6 code space.
    """
    message = f"code\x00{purpose}\x00{phone}\x00{code}".encode()
    return hmac.new(key, message, hashlib.sha256).digest()


def derive_key(secret: str, label: str) -> bytes:
    """A per-use subkey of the server secret, so one key never serves two purposes."""
    return hmac.new(secret.encode(), f"otp-service:{label}".encode(), hashlib.sha256).digest()


def key_id(secret: str) -> str:
    """A short public name of a secret (8 hex digits), so operators can tell keys apart.

    Derived like any subkey, so it reveals nothing of the secret; it names which key state was
    written under after a rotation (``OTP_SECRET_KEY_FALLBACKS``).
    """
    return derive_key(secret, "key-id").hex()[:8]
