"""BotGate: the one interface between the send pipeline and everything that tells people from bots.

:class:`~otp_service.service.OtpService` calls :meth:`BotGate.pass_send` once per send, and three
one-liners from its admission step (:attr:`BotGate.risk`'s send rules, and
:meth:`BotGate.closed_by` when a signal filled up meanwhile); its verify step reports failures and
verified ranges to :attr:`BotGate.risk`. Everything else a client meets on the way to a send — a
new image (:meth:`create_captcha`), its PNG and WAV, a proof-of-work challenge
(:meth:`create_pow`), a direct check (:meth:`check_captcha`) — lives here too, and
``OtpService`` keeps its public methods for them as delegations.

What to ask for is decided in :mod:`otp_service.core.bot_gate` (pure); this class reads the risk
signals (:mod:`.adaptive`), checks and spends the proofs (:mod:`.challenges`, :mod:`.pow`), counts
what clients ask for per address, and audits its own decisions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from otp_service.audit import AuditLog, Event
from otp_service.bot_gate.adaptive import RiskSignals
from otp_service.bot_gate.challenges import CaptchaChallenges, Challenge, count_per_address
from otp_service.bot_gate.pow import ProofOfWork
from otp_service.captcha_render import CaptchaRenderer
from otp_service.clock import Clock, RandomSource
from otp_service.core import bot_gate as gate_core
from otp_service.core import pow as pow_core
from otp_service.core.bot_gate import BotProof
from otp_service.core.client_ip import canonical_ip
from otp_service.core.keys import Keys, phone_tag, range_tag
from otp_service.core.phone import Phone
from otp_service.core.policy import AddressLimits
from otp_service.core.purpose import DEFAULT_PURPOSE, validate_purpose
from otp_service.errors import CaptchaInvalid, CaptchaRequired, OtpError
from otp_service.settings import Settings
from otp_service.store import LimitRule, Store

#: Parses a number as the send pipeline does (default region, allowed regions).
PhoneParser = Callable[[str, str | None], Phone]


class BotGate:
    """Image and audio captchas, proof of work, and the adaptive policy that picks among them.

    :param tag_key: the current key numbers and ranges are hashed under in store keys.
    :param global_rules: the send pipeline's global windows (the ``global_budget`` signal).
    :param parse_phone: how ``create_pow`` reads a number it is given.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        store: Store,
        keys: Keys,
        clock: Clock,
        rng: RandomSource,
        audit: AuditLog,
        renderer: CaptchaRenderer,
        tag_key: bytes,
        global_rules: Sequence[LimitRule],
        parse_phone: PhoneParser,
    ) -> None:
        self.settings = settings
        self._store = store
        self._keys = keys
        self._clock = clock
        self._audit = audit
        self._tag_key = tag_key
        self._parse_phone = parse_phone
        self.risk = RiskSignals(settings, store, keys, global_rules)
        self.challenges = CaptchaChallenges(
            settings, store=store, keys=keys, rng=rng, renderer=renderer
        )
        self.pow = ProofOfWork(
            store=store,
            keys=keys,
            rng=rng,
            signing_keys=settings.signing_keys,
            cost=settings.pow_cost,
            levels=settings.pow_levels,
            ttl=settings.captcha_ttl,
        )
        self._challenge_limits = AddressLimits(
            "captcha",
            ip=settings.limits_captcha_ip,
            subnet=settings.limits_captcha_subnet,
            ipv6_site=settings.limits_captcha_ipv6_site,
            ipv6_site_bits=settings.ipv6_site_bits,
            shadow=settings.shadow_rules,
        )

    # -- the send pipeline's gate ---------------------------------------------------------------

    def pass_send(
        self, event: Event, phone: Phone, client_ip: str | None, proof: BotProof, now: float
    ) -> bool:
        """Check (and spend) what this send must prove, by ``OTP_CAPTCHA_MODE`` and
        ``OTP_CAPTCHA_KIND`` and the risk signals (:func:`core.bot_gate.demand`); true when the
        adaptive mode let the send in without a proof (admission then re-checks the send
        signals atomically, see :meth:`RiskSignals.send_rules`).

        A proof of work must be at least as hard as the level the tripped signals ask for. With
        both kinds, the proof of work is checked before the image answer is consumed and spent
        after it, so a wrong answer wastes no work. A wrong proof counts as a failure.

        :raises CaptchaRequired: a proof is missing or too easy.
        :raises CaptchaInvalid: a proof is wrong, used or expired.
        """
        settings = self.settings
        signals: tuple[str, ...] = ()
        if gate_core.reads_signals(settings.captcha_mode, settings.captcha_kind, proof):
            signals = self.risk.signals(
                now=now,
                client_ip=client_ip,
                phone_tag=phone_tag(self._tag_key, phone.e164),
                prefix=range_tag(self._tag_key, phone.prefix),
            )
            if signals:
                event.details["captcha_signals"] = list(signals)
        demand = gate_core.demand(
            settings.captcha_mode, settings.captcha_kind, signals, proof, settings.pow_levels
        )
        if demand.waived:
            event.details["captcha"] = "not_required"
        if not demand.kinds:
            return demand.waived
        try:
            self._check_proof(event, proof, level=demand.level, now=now, kinds=demand.kinds)
        except CaptchaInvalid:
            self.risk.record_failure(now=now, client_ip=client_ip, phone_tag=None)
            raise
        return False

    def closed_by(self, signal: str) -> CaptchaRequired:
        """The refusal for a send let in without a proof whose ``signal`` filled up before its
        admission counted it: the kinds and level one tripped signal asks for."""
        return self.closed(
            pow_core.level_for(1, self.settings.pow_levels),
            gate_core.kinds_for(self.settings.captcha_kind, (signal,)),
        )

    def closed(self, level: int, kinds: tuple[str, ...]) -> CaptchaRequired:
        """``captcha_required`` naming what to bring: ``captcha_kinds``, and ``pow_level``."""
        return CaptchaRequired(
            gate_core.closed_detail(kinds),
            captcha_kinds=list(kinds),
            pow_level=level if "pow" in kinds else None,
        )

    # -- asked for directly ---------------------------------------------------------------------

    def check_captcha(
        self,
        challenge_id: str | None,
        answer: str | None,
        *,
        altcha: str | None = None,
        client_ip: str | None = None,
        purpose: str | None = None,
    ) -> None:
        """See :meth:`OtpService.check_captcha`: what ``OTP_CAPTCHA_KIND`` asks for with no
        signal tripped, at proof-of-work level 0, whatever the mode says."""
        event = Event("captcha", client_ip=client_ip)
        proof = BotProof(captcha_id=challenge_id, captcha_answer=answer, altcha=altcha)
        try:
            event.purpose = validate_purpose(purpose)
            kinds = gate_core.kinds_for(self.settings.captcha_kind)
            self._check_proof(event, proof, level=0, now=self._clock.now(), kinds=kinds)
        except OtpError as exc:
            self._audit.refused(event, exc)
            raise
        self._audit.accepted(event)

    def create_captcha(
        self, *, client_ip: str | None = None, purpose: str | None = None
    ) -> Challenge:
        """See :meth:`OtpService.create_captcha`."""
        event = Event("captcha_create", client_ip=client_ip)
        try:
            event.purpose = purpose = validate_purpose(purpose)
            client_ip = canonical_ip(client_ip)
            now = self._clock.now()
            self._count_challenge(client_ip, now)
            challenge = self.challenges.create(purpose, now)
        except OtpError as exc:
            self._audit.refused(event, exc)
            raise
        self._audit.accepted(event)
        return challenge

    def create_pow(
        self,
        *,
        client_ip: str | None = None,
        phone: str | None = None,
        region: str | None = None,
    ) -> dict[str, Any]:
        """See :meth:`OtpService.create_pow`."""
        event = Event("pow_create", client_ip=client_ip)
        try:
            client_ip = canonical_ip(client_ip)
            now = self._clock.now()
            parsed = None if phone is None else self._parse_phone(phone, region)
            self._count_challenge(client_ip, now)
            level = self._pow_level(client_ip, parsed, now)
            challenge = self.pow.challenge(level, now=now)
        except OtpError as exc:
            self._audit.refused(event, exc)
            raise
        event.details["pow_level"] = level
        self._audit.accepted(event)
        return challenge

    def captcha_image(self, challenge_id: str) -> bytes:
        """See :meth:`OtpService.captcha_image`."""
        return self.challenges.live(challenge_id, self._clock.now()).image_png

    def captcha_audio(
        self, challenge_id: str, *, altcha: str | None = None, client_ip: str | None = None
    ) -> bytes:
        """See :meth:`OtpService.captcha_audio`: with ``OTP_CAPTCHA_AUDIO_POW`` the first
        request pays a proof of work at this address's level before anything is drawn."""
        client_ip = canonical_ip(client_ip)
        now = self._clock.now()
        record = self.challenges.live(challenge_id, now)
        if self.settings.captcha_audio_pow and not self.challenges.has_audio(challenge_id, now):
            level = self._pow_level(client_ip, None, now)
            self.pow.spend(self.pow.check(altcha, required_level=level, now=now), now=now)
        return self.challenges.audio(challenge_id, record, client_ip=client_ip, now=now)

    # -- inside ---------------------------------------------------------------------------------

    def _check_proof(
        self, event: Event, proof: BotProof, *, level: int, now: float, kinds: tuple[str, ...]
    ) -> None:
        """Check every kind in ``kinds``; notes the outcome on ``event``."""
        if gate_core.lacks(kinds, proof):
            raise self.closed(level, kinds)
        work = None
        if "pow" in kinds:
            work = self.pow.check(proof.altcha, required_level=level, now=now)
        if "image" in kinds:
            self.challenges.answer(
                proof.captcha_id,
                proof.captcha_answer,
                purpose=event.purpose or DEFAULT_PURPOSE,
                now=now,
            )
        if work is not None:
            self.pow.spend(work, now=now)
            event.details["pow_level"] = work.level
        event.details["captcha"] = "passed"

    def _pow_level(self, client_ip: str | None, phone: Phone | None, now: float) -> int:
        """One level per adaptive signal that trips for this client (and number, if known)."""
        if not self.risk.adaptive:
            return 0
        signals = self.risk.signals(
            now=now,
            client_ip=client_ip,
            phone_tag=None if phone is None else phone_tag(self._tag_key, phone.e164),
            prefix=None if phone is None else range_tag(self._tag_key, phone.prefix),
        )
        return pow_core.level_for(len(signals), self.settings.pow_levels)

    def _count_challenge(self, client_ip: str | None, now: float) -> None:
        """Count a new challenge (image or proof of work) against the client's address and its
        networks (/24 or /64, IPv6 site).

        Drawing an image, or deriving a challenge's key, costs CPU and each image ~16 KB of store:
        the address is counted before anything is made.
        """
        count_per_address(
            self._store,
            self._keys,
            self._challenge_limits,
            client_ip=client_ip,
            now=now,
            refusal="Too many captchas from this client; retry later.",
        )
