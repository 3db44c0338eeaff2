"""Every storage key is built here, and nowhere else.

Keys never contain a full phone number: a number appears as a keyed hash (``phone_tag``), which
is also the Redis Cluster hash tag (``{…}``) so every key of one number lives in one slot and each
Lua script touches one slot. A number range (a number without its last four digits) is keyed by
hash too (``range_tag``): in clear, next to anything that shows a number's last four digits (a
masked number in a log), it would spell the whole number. IP addresses appear in clear, so
operators can read counters.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence


def phone_tag(key: bytes, e164: str) -> str:
    """A stable, keyed, non-reversible identifier of a number (20 base32 characters)."""
    digest = hmac.new(key, e164.encode(), hashlib.sha256).digest()[:12]
    return base64.b32encode(digest).decode().rstrip("=").lower()


def range_tag(key: bytes, prefix: str) -> str:
    """A keyed identifier of a number range, as :func:`phone_tag` is of a number (the input is
    marked, so a range and a number never share a tag)."""
    return phone_tag(key, f"range\0{prefix}")


def every_tag(keys: Sequence[bytes], e164: str) -> list[str]:
    """The tags of a number under each key (current first, no repeats): state that must outlive
    a key rotation is looked for under all of them."""
    return list(dict.fromkeys(phone_tag(key, e164) for key in keys))


class Keys:
    """Key builders under one prefix (``OTP_KEY_PREFIX``)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def code(self, tag: str, purpose: str) -> str:
        return f"{self.prefix}{{{tag}}}:code:{purpose}"

    def cooldown(self, tag: str) -> str:
        """The resend cooldown of one number, shared by every purpose (purposes are free text)."""
        return f"{self.prefix}{{{tag}}}:cooldown"

    def optout(self, tag: str) -> str:
        return f"{self.prefix}{{{tag}}}:optout"

    def limit(self, axis: str, subject: str, window_seconds: int, amount: int) -> str:
        return f"{self.prefix}limit:{axis}:{subject}:{amount}/{window_seconds}s"

    def number_limit(self, tag: str, purpose: str, window_seconds: int, amount: int) -> str:
        return f"{self.prefix}{{{tag}}}:limit:number:{purpose}:{amount}/{window_seconds}s"

    def number_total_limit(self, tag: str, window_seconds: int, amount: int) -> str:
        """A window over every purpose of one number (``*`` is never a valid purpose)."""
        return f"{self.prefix}{{{tag}}}:limit:number:*:{amount}/{window_seconds}s"

    def idempotency(self, tag: str, digest: str) -> str:
        """One ``Idempotency-Key`` of a number's sends (``digest``: keyed hash of key, purpose)."""
        return f"{self.prefix}{{{tag}}}:idem:{digest}"

    def pumping_count(self, kind: str, value: str, counted: str, bucket: int) -> str:
        """Sends (``counted="sent"``) or verifications (``"ok"``) of one scope in one bucket."""
        return f"{self.prefix}pump:{kind}:{value}:{counted}:{bucket}"

    def pumping_block(self, kind: str, value: str) -> str:
        """A scope's block (a Denial key) holding the figures that tripped it."""
        return f"{self.prefix}pump:block:{kind}:{value}"

    def pumping_strikes(self, kind: str, value: str) -> str:
        """How often a scope tripped lately (escalates the block)."""
        return f"{self.prefix}pump:strikes:{kind}:{value}"

    def pumping_allow(self, kind: str, value: str) -> str:
        """An operator's allow-list entry (``number`` by phone tag, or ``subnet``)."""
        return f"{self.prefix}pump:allow:{kind}:{value}"

    def budget_spend(self, period: str) -> str:
        """Money spent in one period (``day:2026-11-25``, ``month:2026-11``), in micro-units."""
        return f"{self.prefix}budget:{period}"

    def token_used(self, token_id: str) -> str:
        return f"{self.prefix}token:{token_id}"

    def captcha(self, challenge_id: str) -> str:
        return f"{self.prefix}captcha:{challenge_id}"

    def captcha_audio(self, challenge_id: str) -> str:
        """The WAV of a challenge, rendered on first request (the PNG lives in its record)."""
        return f"{self.prefix}captcha:{challenge_id}:wav"

    def pow_spent(self, challenge_signature: str) -> str:
        """A spent proof-of-work challenge, kept until it would have expired (replay refusal)."""
        return f"{self.prefix}pow:{challenge_signature}"

    def captcha_signal(self, signal: str, subject: str, window_seconds: int) -> str:
        """A counter of the adaptive captcha's risk signals (sends, failures, known ranges)."""
        return f"{self.prefix}captcha-signal:{signal}:{subject}:{window_seconds}s"

    def number_captcha_signal(self, tag: str, signal: str, window_seconds: int) -> str:
        return f"{self.prefix}{{{tag}}}:captcha-signal:{signal}:{window_seconds}s"

    def sms_message(self, message_id: str) -> str:
        """A sent message by provider id, so delivery reports for unknown ids are refused."""
        return f"{self.prefix}sms:{message_id}"

    def sms_delivery(self, message_id: str) -> str:
        """The latest delivery state of a sent message."""
        return f"{self.prefix}sms:{message_id}:delivery"

    def sms_report(self, message_id: str, sequence: int, status: str) -> str:
        """One status report seen (idempotency of redelivered reports)."""
        return f"{self.prefix}sms:{message_id}:report:{sequence}:{status}"

    def uplink(self, message_id: str) -> str:
        """One inbound (uplink) SMS seen (idempotency)."""
        return f"{self.prefix}uplink:{message_id}"
