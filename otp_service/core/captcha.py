"""Captcha challenges: the text, answer normalisation, and what the store keeps of a challenge.

The alphabet leaves out look-alikes (0/O, 1/I/l, 5/S, 2/Z, 8/B) so a person who reads the image
correctly is never refused for a glyph ambiguity; answers are compared case- and
width-insensitively (a full-width ``ＡＢＣ`` typed by an IME counts).

The store never holds a challenge's text in clear. It keeps an HMAC of the answer (what
``/send-code`` compares against) and the text *sealed* with AES-GCM, because the audio variant is
rendered only when somebody asks for it, after the text has left memory. The seal's key is
derived from the server secret for this one use, and the challenge id is the associated data, so
a sealed text cannot be read without the secret nor moved to another challenge. A store dump
therefore reveals no answers, and a live challenge's answer is no easier to get than by solving it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from otp_service.clock import RandomSource

ALPHABET = "ACDEFGHJKMNPQRTUVWXY3479"
MAX_ANSWER_LENGTH = 32
NONCE_BYTES = 12
DIGEST_BYTES = 32
_RECORD_VERSION = 1
#: A challenge id as the service makes them (hex) or a client may send them; anything else is
#: refused before the store is asked.
CHALLENGE_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{16,64}")


def well_formed_id(challenge_id: str) -> bool:
    """Whether ``challenge_id`` could name a challenge (a cheap check before any store read)."""
    return CHALLENGE_ID_PATTERN.fullmatch(challenge_id) is not None


def generate_challenge(rng: RandomSource, length: int) -> str:
    """A random challenge over :data:`ALPHABET`."""
    return "".join(ALPHABET[rng.randbelow(len(ALPHABET))] for _ in range(length))


def normalize_answer(answer: str) -> str:
    """Width- and case-insensitive form of an answer, without spaces."""
    folded = unicodedata.normalize("NFKC", answer[:MAX_ANSWER_LENGTH]).upper()
    return "".join(folded.split())


def answer_digest(key: bytes, challenge_id: str, answer: str, *, purpose: str) -> bytes:
    """HMAC of a (normalised) answer bound to its challenge id and the purpose (flow) it was
    made for; the text itself is never stored.

    Binding the purpose means an answer checked for another flow is simply wrong: a challenge
    solved for ``signup`` cannot open ``login``, with no field to read or compare on its own.
    """
    # surrogatepass: a lone surrogate from JSON is just a wrong answer, not an encoding crash.
    message = f"captcha\x00{purpose}\x00{challenge_id}\x00{normalize_answer(answer)}".encode(
        "utf-8", "surrogatepass"
    )
    return hmac.new(key, message, hashlib.sha256).digest()


def seal_text(key: bytes, challenge_id: str, text: str, nonce: bytes) -> bytes:
    """``nonce || AES-GCM(text)`` with the challenge id as associated data.

    :param key: 32 bytes, e.g. ``derive_key(secret, "captcha-seal")``.
    :param nonce: 12 fresh random bytes; never reuse one under the same key.
    """
    if len(nonce) != NONCE_BYTES:
        raise ValueError(f"nonce must be {NONCE_BYTES} bytes")
    return nonce + AESGCM(key).encrypt(nonce, text.encode(), challenge_id.encode())


def open_text(key: bytes, challenge_id: str, sealed: bytes) -> str | None:
    """The text of :func:`seal_text`, or ``None`` if the key, the id or the bytes do not match."""
    nonce, ciphertext = sealed[:NONCE_BYTES], sealed[NONCE_BYTES:]
    if len(nonce) != NONCE_BYTES:
        return None
    try:
        return AESGCM(key).decrypt(nonce, ciphertext, challenge_id.encode()).decode()
    except (InvalidTag, UnicodeDecodeError):
        return None


@dataclass(frozen=True, slots=True)
class ChallengeRecord:
    """One stored challenge: answer HMAC, sealed text and the PNG, in one value.

    One value means one write at creation, one atomic ``take`` when an answer consumes it (the
    image goes with it) and one read to serve the image.
    """

    digest: bytes
    sealed: bytes
    image_png: bytes

    def encode(self) -> bytes:
        """``version | digest | len(sealed) | sealed | png``."""
        if len(self.digest) != DIGEST_BYTES or len(self.sealed) > 255:
            raise ValueError("digest must be 32 bytes and the sealed text at most 255")
        return (
            bytes([_RECORD_VERSION])
            + self.digest
            + bytes([len(self.sealed)])
            + self.sealed
            + self.image_png
        )

    @classmethod
    def decode(cls, raw: bytes) -> ChallengeRecord | None:
        """The record in ``raw``, or ``None`` for bytes this version did not write."""
        header = 1 + DIGEST_BYTES + 1
        if len(raw) < header or raw[0] != _RECORD_VERSION:
            return None
        digest = raw[1 : 1 + DIGEST_BYTES]
        sealed_end = header + raw[header - 1]
        if len(raw) < sealed_end:
            return None
        return cls(digest=digest, sealed=raw[header:sealed_end], image_png=raw[sealed_end:])
