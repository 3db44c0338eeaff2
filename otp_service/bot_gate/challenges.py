"""Image and audio challenges: drawn, stored (answer as HMAC, text sealed), served and answered.

A challenge is one store key that lives ``OTP_CAPTCHA_TTL``: the answer's HMAC bound to the
purpose, the text sealed for the audio variant (so the store never holds it in clear), and the
PNG. Its WAV is drawn on the first request and cached beside it. Answering takes the key in one
atomic step, so of parallel answers to one challenge exactly one sees it.
"""

from __future__ import annotations

import hmac
import threading
import uuid
from dataclasses import dataclass

from otp_service.bot_gate.render_budget import RenderBudget
from otp_service.captcha_render import CaptchaRenderer
from otp_service.clock import RandomSource
from otp_service.core import captcha as captcha_core
from otp_service.core.codes import derive_key
from otp_service.core.keys import Keys
from otp_service.core.policy import AddressLimits
from otp_service.errors import CaptchaInvalid, CaptchaRequired, NotFound, RateLimited
from otp_service.settings import Settings
from otp_service.store import Store
from otp_service.store.redis import retry_after_seconds

_WRONG = "The captcha answer is wrong, used or expired."


@dataclass(frozen=True, slots=True)
class Challenge:
    """A new captcha challenge as handed to a client (the answer stays on the server)."""

    challenge_id: str
    image_png: bytes
    expires_in: int


class CaptchaChallenges:
    """Makes, serves and checks image (and audio) challenges.

    :param renderer: draws the PNG and the WAV of a text.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        store: Store,
        keys: Keys,
        rng: RandomSource,
        renderer: CaptchaRenderer,
    ) -> None:
        self.settings = settings
        self._store = store
        self._keys = keys
        self._rng = rng
        self.renderer = renderer
        # Answers are checked, and texts unsealed, under every key (current first): a rotation
        # keeps the challenges in flight.
        self._answer_keys = [derive_key(k, "captcha") for k in reversed(settings.signing_keys)]
        self._seal_keys = [derive_key(k, "captcha-seal") for k in reversed(settings.signing_keys)]
        self.render_budget = RenderBudget(
            images=settings.captcha_render_images, audio=settings.captcha_render_audio
        )
        self._audio_limits = AddressLimits(
            "captcha_audio",
            ip="",
            subnet=settings.limits_captcha_audio,
            ipv6_site=settings.limits_captcha_audio,
            ipv6_site_bits=settings.ipv6_site_bits,
            shadow=settings.shadow_rules,
        )
        # One audio render at a time per process: parallel requests for one challenge wait and
        # then find the cached WAV, and audio (a quarter second of CPU each) can take at most one
        # core however many arrive.
        self._audio_lock = threading.Lock()

    def create(self, purpose: str, now: float) -> Challenge:
        """Draw and store a new challenge for ``purpose`` (within this process's render budget).

        :raises RateLimited: ``limit="captcha_render"``: this process is drawing all it may.
        """
        self.render_budget.take("image")
        challenge_id = self._rng.token_bytes(18).hex()
        text = captcha_core.generate_challenge(self._rng, self.settings.captcha_length)
        record = captcha_core.ChallengeRecord(
            digest=captcha_core.answer_digest(
                self._answer_keys[0], challenge_id, text, purpose=purpose
            ),
            sealed=captcha_core.seal_text(
                self._seal_keys[0], challenge_id, text, self._rng.token_bytes(12)
            ),
            image_png=self.renderer.render_image(text),
        )
        ttl = self.settings.captcha_ttl
        self._store.put(self._keys.captcha(challenge_id), record.encode(), ttl=ttl, now=now)
        return Challenge(challenge_id=challenge_id, image_png=record.image_png, expires_in=ttl)

    def live(self, challenge_id: str, now: float) -> captcha_core.ChallengeRecord:
        """The stored challenge, still unanswered and unexpired.

        :raises NotFound: unknown, used or expired.
        """
        if not captcha_core.well_formed_id(challenge_id):
            raise NotFound("No such captcha.")
        raw = self._store.get(self._keys.captcha(challenge_id), now=now)
        record = None if raw is None else captcha_core.ChallengeRecord.decode(raw)
        if record is None:
            raise NotFound("No such captcha.")
        return record

    def has_audio(self, challenge_id: str, now: float) -> bool:
        """Whether the challenge's WAV is drawn already (a replay of it costs no render)."""
        return self._store.get(self._keys.captcha_audio(challenge_id), now=now) is not None

    def audio(
        self,
        challenge_id: str,
        record: captcha_core.ChallengeRecord,
        *,
        client_ip: str | None,
        now: float,
    ) -> bytes:
        """The challenge's WAV: cached, or drawn from the sealed text and cached until the
        challenge's own expiry could have passed.

        :raises NotFound: sealed under a key no longer configured.
        :raises RateLimited: the client's network (``captcha_audio_*``) or this process's
            budget (``captcha_render``).
        """
        key = self._keys.captcha_audio(challenge_id)
        with self._audio_lock:
            cached = self._store.get(key, now=now)
            if cached is not None:
                return cached
            text = next(
                (
                    opened
                    for seal_key in self._seal_keys
                    if (opened := captcha_core.open_text(seal_key, challenge_id, record.sealed))
                ),
                None,
            )
            if text is None:
                # Sealed under a key no longer configured: as good as expired.
                raise NotFound("No such captcha.")
            count_per_address(
                self._store,
                self._keys,
                self._audio_limits,
                client_ip=client_ip,
                now=now,
                refusal="Too much captcha audio for this network; retry later.",
            )
            self.render_budget.take("audio")
            audio = self.renderer.render_audio(text)
            self._store.put(key, audio, ttl=self.settings.captcha_ttl, now=now)
            return audio

    def answer(
        self, challenge_id: str | None, answer: str | None, *, purpose: str, now: float
    ) -> None:
        """Take the challenge (one-time, even when wrong) and check the answer for ``purpose``.

        :raises CaptchaRequired: no challenge id or no answer.
        :raises CaptchaInvalid: wrong, used, expired, unknown, or made for another purpose.
        """
        if not challenge_id or not answer:
            raise CaptchaRequired("Solve a captcha first (POST /captcha).")
        if not captcha_core.well_formed_id(challenge_id):
            raise CaptchaInvalid(_WRONG)
        # One atomic take: of parallel answers to one challenge, exactly one sees the record.
        raw = self._store.take(self._keys.captcha(challenge_id), now=now)
        record = None if raw is None else captcha_core.ChallengeRecord.decode(raw)
        matched = False
        for key in self._answer_keys:
            expected = captcha_core.answer_digest(key, challenge_id, answer, purpose=purpose)
            # Compared whether or not the record exists, so timing says nothing about ids.
            matched |= hmac.compare_digest(record.digest if record else bytes(32), expected)
        if record is None or not matched:
            raise CaptchaInvalid(_WRONG)


def count_per_address(
    store: Store,
    keys: Keys,
    limits: AddressLimits,
    *,
    client_ip: str | None,
    now: float,
    refusal: str,
) -> None:
    """Count one request against ``limits`` for the client's address and networks, or refuse it
    (``refusal`` is the detail) before anything costly is made.

    :raises RateLimited: a window is full; ``limit`` names it.
    """
    rules = limits.rules(keys, client_ip)
    if not rules:
        return
    admission = store.admit(denials=(), limits=rules, now=now, token=uuid.uuid4().hex)
    if not admission.allowed:
        raise RateLimited(
            refusal,
            limit=admission.refused_by,
            retry_after=retry_after_seconds(admission.retry_after),
        )
