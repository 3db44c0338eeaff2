"""OtpService: the send and verify pipelines, in one place, used by every delivery.

This is where the pure core meets the adapters (store, gateway, clock, randomness); the bot gate
(captchas, proof of work, adaptive signals) is its own package, :mod:`otp_service.bot_gate`, which
the send pipeline calls once per send. The HTTP API, the Flask guard and the CLI all call this
module; none of them talks to the store or the gateway directly.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

from otp_service.audit import AuditLog, Event
from otp_service.bot_gate import BotGate, BotProof, Challenge
from otp_service.budget import Budget
from otp_service.callbacks import carry_optout, record_sent
from otp_service.captcha_render import CaptchaRenderer, DefaultRenderer, ImageRenderer
from otp_service.captcha_style import CaptchaStyle
from otp_service.clock import Clock, RandomSource, SecretsRandom, SystemClock
from otp_service.content_rules import content_policy_from_settings
from otp_service.core.client_ip import IPNetwork, canonical_ip, parse_networks
from otp_service.core.codes import code_digest, derive_key, generate_code
from otp_service.core.content import ContentPolicy
from otp_service.core.keys import Keys, every_tag, phone_tag, range_tag
from otp_service.core.phone import Phone, mask_phone, parse_phone
from otp_service.core.policy import AddressLimits, SendLimits, parse_windows, tightest_window
from otp_service.core.purpose import validate_purpose
from otp_service.core.refusal_memo import RefusalMemo
from otp_service.core.tokens import TokenSigner, VerifiedClaim
from otp_service.errors import (
    CodeExpired,
    CodeInvalid,
    ContentBlocked,
    IdempotencyInProgress,
    InvalidRequest,
    NumberOptedOut,
    OtpError,
    ProviderError,
    ProviderNotReady,
    RateLimited,
    StoreUnavailable,
    TokenUsed,
    TooManyAttempts,
    all_error_classes,
)
from otp_service.metrics import Metrics
from otp_service.provider_state import ProviderStateWatch
from otp_service.pumping import Decision, PumpingDefence
from otp_service.settings import Settings
from otp_service.sms import SmsGateway, SmsMessage, gateway_from_settings
from otp_service.sms.huawei_manage import HuaweiManagement
from otp_service.store import CodeStatus, Denial, LimitRule, Store, WindowUsage, store_from_url
from otp_service.store.base import CodeRecord, PersistenceReport
from otp_service.store.redis import retry_after_seconds

log = logging.getLogger(__name__)

IDEMPOTENCY_KEY_PATTERN = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_IDEMPOTENCY_PENDING = b"pending"


@dataclass(frozen=True, slots=True)
class SendReceipt:
    """What a caller learns about an accepted send: never the code."""

    phone: str
    purpose: str
    expires_in: int
    resend_after: int
    #: The caller's own window closest to refusing (``RateLimit-*`` headers); ``None`` when the
    #: client address is unknown or a replayed answer is returned.
    rate_limit: WindowUsage | None = None


@dataclass(frozen=True, slots=True)
class Approval:
    """A verified number, and the token that proves it."""

    phone: str
    purpose: str
    token: str
    expires_in: int


def _replay(record: dict[str, Any]) -> SendReceipt:
    """The first answer to an idempotent send: its receipt, or its provider error raised again."""
    if "error" not in record:
        return SendReceipt(**record)
    by_code = {cls.code: cls for cls in all_error_classes()}
    error = by_code.get(record["error"], ProviderError)(record["detail"], **record["extras"])
    if isinstance(error, ProviderError):
        error.operator_problem = bool(record.get("operator_problem"))
    raise error


@dataclass(frozen=True, slots=True)
class _Admitted:
    """What one admitted send took, so a send that never left can give it back."""

    #: The caller's own window closest to refusing (see :class:`SendReceipt`).
    rate_limit: WindowUsage | None
    #: The admission's token and the number's windows it counted (never the address's).
    token: str
    number_rules: tuple[LimitRule, ...]


@dataclass(frozen=True, slots=True)
class LimitReport:
    """The windows of a number and/or an address, for operators; the number is masked."""

    phone: str | None
    purpose: str
    ip: str | None
    windows: tuple[WindowUsage, ...]


@dataclass(frozen=True, slots=True)
class _OperatorTarget:
    """A number and/or address an operator named, resolved to its windows."""

    e164: str | None
    purpose: str
    ip: str | None
    rules: list[LimitRule]


class OtpService:
    """Issues and verifies codes. Every collaborator can be injected; defaults follow settings.

    :param settings: the configuration; ``Settings()`` (embedded defaults) if omitted.
    :param store: shared state; from ``OTP_REDIS_URL`` (memory when unset) if omitted.
    :param gateway: SMS sender; from ``OTP_SMS_GATEWAY`` if omitted.
    :param captcha_renderer: draws challenges (PNG and WAV); the ``captcha`` package in the
        style the secret derives if omitted.
    :param clock: time source; the system clock if omitted.
    :param rng: randomness; :mod:`secrets` if omitted.
    :param audit: where decisions are recorded; a JSON log if omitted.
    :param metrics: Prometheus metrics, fed by ``audit``; a fresh set if omitted.
    :param content_policy: the content check of every message; the shipped rules plus
        ``OTP_CONTENT_RULES`` if omitted.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        store: Store | None = None,
        gateway: SmsGateway | None = None,
        captcha_renderer: CaptchaRenderer | None = None,
        clock: Clock | None = None,
        rng: RandomSource | None = None,
        audit: AuditLog | None = None,
        metrics: Metrics | None = None,
        content_policy: ContentPolicy | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self.store = store if store is not None else store_from_url(self.settings.redis_url)
        self.gateway = gateway if gateway is not None else gateway_from_settings(self.settings)
        self.clock = clock or SystemClock()
        self.rng = rng or SecretsRandom()
        self.content_policy = content_policy or content_policy_from_settings(self.settings)
        self.keys = Keys(self.settings.key_prefix)
        secret = self.settings.secret_key
        assert secret is not None  # noqa: S101 - Settings always fills it
        self.audit = audit or AuditLog(derive_key(secret, "audit"))
        self.metrics = metrics or Metrics()
        self.audit.subscribe(self.metrics)
        # Optional: with the IAM settings, /readyz also watches the template and signature state.
        management = HuaweiManagement.from_settings(self.settings, now=time.time)
        self.provider_state = (
            None
            if management is None
            else ProviderStateWatch(
                management, self.settings, on_findings=self.metrics.provider_state
            )
        )
        # Numbers are keyed under the current key; what must outlive a rotation (opt-outs,
        # allow-lists, blocks) is also looked for under every fallback (docs/operations.md).
        self._tag_keys = self.settings.tag_keys
        self._tag_key = self._tag_keys[0]
        # Codes are checked against every key (current first), so a rotation keeps codes in flight.
        self._code_keys = [derive_key(k, "code") for k in reversed(self.settings.signing_keys)]
        self._signer = TokenSigner(self.settings.signing_keys)
        self._refusals = RefusalMemo(self.settings.refusal_memo_seconds)
        self._send_limits = SendLimits(
            resend_interval=self.settings.resend_interval,
            number=self.settings.limits_number,
            number_total=self.settings.limits_number_total,
            ip=self.settings.limits_ip,
            subnet=self.settings.limits_subnet,
            prefix=self.settings.limits_prefix,
            global_=self.settings.limits_global,
            ipv6_site=self.settings.limits_ipv6_site,
            ipv6_site_bits=self.settings.ipv6_site_bits,
            shadow=self.settings.shadow_rules,
        )
        settings = self.settings
        # Every action a client can repeat cheaply is counted per address, /24 or /64, and IPv6
        # site, so rotating addresses inside a network gains nothing (docs/limits.md).
        self._verify_limits = AddressLimits(
            "verify",
            ip=settings.limits_verify_ip,
            subnet=settings.limits_verify_subnet,
            ipv6_site=settings.limits_verify_ipv6_site,
            ipv6_site_bits=settings.ipv6_site_bits,
            shadow=settings.shadow_rules,
        )
        self._test_codes = self.settings.test_codes
        # Delivery reports only come when the provider was given our callback URL.
        self._tracks_delivery = bool(
            self.settings.sms_gateway == "huawei"
            and self.settings.public_url
            and self.settings.callback_token
        )
        self.pumping = PumpingDefence(self.store, self.keys, self.settings)
        self.budget = Budget(self.store, self.keys, self.settings)
        # The images' look follows the secret, so a reader trained on the public style does not
        # fit this deployment (docs/captcha.md, "Per-deployment style").
        renderer = captcha_renderer or DefaultRenderer(
            ImageRenderer(
                style=CaptchaStyle.derive(
                    derive_key(secret, "captcha-style"), settings.captcha_fonts
                )
            )
        )
        #: Captchas, proof of work and the adaptive policy: called once per send (docs/captcha.md).
        self.bot_gate = BotGate(
            settings,
            store=self.store,
            keys=self.keys,
            clock=self.clock,
            rng=self.rng,
            audit=self.audit,
            renderer=renderer,
            tag_key=self._tag_key,
            global_rules=self._send_limits.global_rules(self.keys),
            parse_phone=self._parse,
        )
        self._persistence_warned = False
        #: ``OTP_TRUSTED_PROXIES`` parsed once; the HTTP layer resolves client addresses with it.
        self.trusted_proxies: tuple[IPNetwork, ...] = parse_networks(self.settings.trusted_proxies)

    # -- send ---------------------------------------------------------------------------------

    def send_code(
        self,
        phone: str,
        *,
        purpose: str | None = None,
        region: str | None = None,
        client_ip: str | None = None,
        captcha_id: str | None = None,
        captcha_answer: str | None = None,
        altcha: str | None = None,
        idempotency_key: str | None = None,
    ) -> SendReceipt:
        """Run the send pipeline: cheapest and most decisive checks first, money last.

        With ``idempotency_key``, a repeat for the same number and purpose within the resend
        interval (at least 60 s) returns the first receipt and sends nothing; a repeat while the
        first is still running gets :class:`IdempotencyInProgress`. A refused first attempt sent
        nothing, so it frees the key and a retry runs the pipeline again.

        :raises InvalidPhone, RegionNotAllowed, PhoneTypeNotAllowed: the number is refused.
        :raises CaptchaRequired, CaptchaInvalid: the captcha gate is closed.
        :raises NumberOptedOut: the number replied STOP.
        :raises RateLimited: a limit refused; carries ``limit`` and ``retry_after``.
        :raises ContentBlocked: the message would break the provider's content rules.
        :raises ProviderError: the gateway failed.
        :raises StoreUnavailable: limits cannot be checked, so nothing is sent.
        :raises IdempotencyInProgress: a request with the same key is still running.
        """
        purpose = validate_purpose(purpose)
        client_ip = canonical_ip(client_ip)
        if idempotency_key is not None and not IDEMPOTENCY_KEY_PATTERN.fullmatch(idempotency_key):
            raise InvalidRequest(
                "Idempotency-Key: 1-64 characters of A-Z, a-z, 0-9, _, -, . or :.",
                field="Idempotency-Key",
            )
        event = Event("send", purpose=purpose, client_ip=client_ip)
        proof = BotProof(captcha_id=captcha_id, captcha_answer=captcha_answer, altcha=altcha)
        try:
            if idempotency_key is None:
                receipt = self._send(event, phone, purpose, region, client_ip, proof)
            else:
                receipt = self._send_once(
                    event, idempotency_key, phone, purpose, region, client_ip, proof
                )
        except OtpError as exc:
            self.audit.refused(event, exc)
            raise
        self.audit.accepted(event)
        return receipt

    def _send_once(
        self,
        event: Event,
        idempotency_key: str,
        raw_phone: str,
        purpose: str,
        region: str | None,
        client_ip: str | None,
        proof: BotProof,
    ) -> SendReceipt:
        """The send pipeline behind an atomic claim on the idempotency key.

        The claim (``put_new``) comes before the captcha gate: a repeat carries the first
        request's already-consumed captcha and must still get the first answer.
        """
        phone = self._parse(raw_phone, region)
        tag = phone_tag(self._tag_key, phone.e164)
        digest = hmac.new(
            self._tag_key, f"{purpose}\0{idempotency_key}".encode(), hashlib.sha256
        ).hexdigest()[:32]
        key = self.keys.idempotency(tag, digest)
        ttl = max(60, self.settings.resend_interval)
        now = self.clock.now()
        event.details["idempotency"] = "first"
        existing = self.store.put_new(key, _IDEMPOTENCY_PENDING, ttl=ttl, now=now)
        if existing == _IDEMPOTENCY_PENDING:
            event.phone = phone.e164
            event.details["idempotency"] = "in_progress"
            raise IdempotencyInProgress(
                "A request with this Idempotency-Key is still running; retry shortly.",
                retry_after=1,
            )
        if existing is not None:
            event.phone = phone.e164
            event.details["idempotency"] = "replayed"
            return _replay(json.loads(existing))
        try:
            receipt = self._send(event, raw_phone, purpose, region, client_ip, proof)
        except ProviderError as exc:
            if exc.retryable:
                self.store.delete(key)
            else:
                # The message may have reached the provider: a retry must not send it again.
                failure = {
                    "error": exc.code,
                    "detail": exc.detail,
                    "extras": exc.extras,
                    "operator_problem": exc.operator_problem,
                }
                self.store.put(key, json.dumps(failure).encode(), ttl=ttl, now=now)
            raise
        except BaseException:
            self.store.delete(key)
            raise
        stored = json.dumps(
            {
                "phone": receipt.phone,
                "purpose": receipt.purpose,
                "expires_in": receipt.expires_in,
                "resend_after": receipt.resend_after,
            }
        ).encode()
        try:
            self.store.put(key, stored, ttl=ttl, now=now)
        except StoreUnavailable:
            # The code has left: answering 503 ("nothing was sent") would be false. Repeats of
            # the key meet the pending claim (409) until it expires, and never send twice.
            log.warning("idempotency receipt not stored: the store failed after a send")
        return receipt

    def _send(
        self,
        event: Event,
        raw_phone: str,
        purpose: str,
        region: str | None,
        client_ip: str | None,
        proof: BotProof,
    ) -> SendReceipt:
        phone = self._parse(raw_phone, region)
        event.phone = phone.e164
        now = self.clock.now()
        tag = phone_tag(self._tag_key, phone.e164)
        waived = self.bot_gate.pass_send(event, phone, client_ip, proof, now)
        rules = self._send_rules(phone, tag, purpose, client_ip, captcha_waived=waived)
        self._refuse_remembered(event, rules, now)
        # The content check is pure and cheaper than a store round trip, so it runs before the
        # limits: a blocked template spends no one's quota. The admission stores the code.
        test_code = self._test_codes.get(phone.e164)
        code = test_code or generate_code(self.rng, self.settings.code_length)
        message = self._render(phone, purpose, code)
        self._check_content(event, message)
        record = CodeRecord(
            self.keys.code(tag, purpose),
            code_digest(self._code_keys[0], phone=phone.e164, purpose=purpose, code=code),
            ttl=self.settings.code_ttl,
            max_attempts=self.settings.max_attempts,
        )
        # The budget is reserved before admission, which replaces the number's live code and
        # spends its quota: a refusal for money must leave both as they were.
        reservation = None if test_code is not None else self.budget.reserve(phone.region, now)
        try:
            admitted = self._admit(event, phone, client_ip, now, record, rules)
        except BaseException:
            self.budget.refund(reservation, now)
            raise
        if test_code is None:
            event.details["provider"] = self.gateway.name
            started = time.perf_counter()
            try:
                result = self.gateway.send(message)
            except ProviderError as exc:
                if exc.certainly_not_sent:
                    self.budget.refund(reservation, now)
                    self._give_back(admitted, record, now)
                else:
                    self._charge_unknown_outcome(event, phone, client_ip, now)
                raise
            except BaseException:
                # A gateway's own bug: whether it sent is unknowable, so nothing is given back.
                self._charge_unknown_outcome(event, phone, client_ip, now)
                raise
            finally:
                # Audited (and so measured) whether the provider answered or failed.
                event.details["provider_seconds"] = round(time.perf_counter() - started, 4)
            event.details["provider"] = result.provider
            event.details["message_id"] = result.message_id
            self._remember_delivery(result.message_id, tag, purpose, now)
            if "pumping_allow_listed" not in event.details:
                self._count_pumping(event, phone, client_ip, now)
        else:
            event.details["test_number"] = True
        return SendReceipt(
            phone=phone.masked,
            purpose=purpose,
            expires_in=self.settings.code_ttl,
            resend_after=self.settings.resend_interval,
            rate_limit=admitted.rate_limit,
        )

    def _give_back(self, admitted: _Admitted, code: CodeRecord, now: float) -> None:
        """Return the number's windows and drop the code of a send that never left.

        Without it a provider outage spent each number's quota for an hour on messages nobody
        received, and a retry with the same Idempotency-Key met 429 ``limit: number``. The
        address's windows stay counted: attempts from it were made. Best effort: if the store
        fails too, the hits expire with their windows.
        """
        try:
            self.store.give_back(
                limits=admitted.number_rules, token=admitted.token, admitted_at=now, code=code
            )
        except StoreUnavailable:
            log.warning("a send that never left keeps its number's windows: the store failed")
            return
        self._refusals.forget(rule.key for rule in admitted.number_rules)

    def _charge_unknown_outcome(
        self, event: Event, phone: Phone, client_ip: str | None, now: float
    ) -> None:
        """A send the provider may have accepted counts as sent: its money stays reserved, its
        windows counted, and the pumping detector sees it (docs/reliability.md)."""
        event.details["provider_outcome"] = "unknown"
        if "pumping_allow_listed" not in event.details:
            self._count_pumping(event, phone, client_ip, now)

    def _range(self, phone: Phone) -> str:
        """The number's range as store keys name it: a keyed hash, never the digits."""
        return range_tag(self._tag_key, phone.prefix)

    def _remember_delivery(
        self, message_id: str | None, tag: str, purpose: str, now: float
    ) -> None:
        """Note the provider's message id so its delivery report can be matched later.

        The SMS has already left: a store failure here is logged, never turned into an error
        that would make the caller ask for (and pay for) a second message.
        """
        if not message_id or not self._tracks_delivery:
            return
        try:
            record_sent(
                self.store,
                self.keys,
                message_id=message_id,
                phone_tag=tag,
                purpose=purpose,
                now=now,
            )
        except StoreUnavailable:
            log.warning("could not record message %s for delivery reports", message_id)

    def _parse(self, raw_phone: str, region: str | None) -> Phone:
        default_region = (region or self.settings.default_region).upper()
        if len(default_region) != 2 or not default_region.isalpha():
            raise InvalidRequest("region: expected a two-letter ISO country code.")
        return parse_phone(
            raw_phone,
            default_region=default_region,
            allowed_regions=self.settings.allowed_regions,
        )

    def _send_rules(
        self,
        phone: Phone,
        tag: str,
        purpose: str,
        client_ip: str | None,
        *,
        captcha_waived: bool,
    ) -> list[LimitRule]:
        """Every window one send must pass.

        :param captcha_waived: the adaptive gate let the send in without a captcha; its send
            signals then refuse in admission (``captcha_required``) if they filled up since it
            looked.
        """
        rules = self._send_limits.rules(
            self.keys,
            phone_tag=tag,
            purpose=purpose,
            prefix=self._range(phone),
            client_ip=client_ip,
        )
        return rules + self.bot_gate.risk.send_rules(client_ip, enforce=captcha_waived)

    def _refuse_remembered(self, event: Event, rules: list[LimitRule], now: float) -> None:
        """Refuse at once if one of ``rules`` refused moments ago in this process and is still
        full (:mod:`otp_service.core.refusal_memo`): a flood on one number or from one address
        then costs no content check, budget reservation or round trip. Audited as any refusal.
        """
        remembered = self._refusals.refusing((rule.key for rule in rules), now)
        if remembered is None:
            return
        event.details["refusal_memo"] = True
        raise RateLimited(
            f"Too many requests ({remembered.name}); retry later.",
            limit=remembered.name,
            retry_after=retry_after_seconds(remembered.retry_after),
        )

    def _admit(
        self,
        event: Event,
        phone: Phone,
        client_ip: str | None,
        now: float,
        code: CodeRecord,
        rules: list[LimitRule],
    ) -> _Admitted:
        """Check every send limit and count the send, in one store step; refuse, or return what
        it took with the caller's tightest window. A shadow rule that would have refused is
        recorded only.
        """
        scopes = self.pumping.scopes_for(phone, client_ip)
        optouts = [
            Denial("number_opted_out", self.keys.optout(t))
            for t in every_tag(self._tag_keys, phone.e164)
        ]
        denials = [*optouts, *self.pumping.denials(scopes)]
        token = uuid.uuid4().hex
        admission = self.store.admit(denials=denials, limits=rules, now=now, token=token, code=code)
        blocked_by = admission.refused_by
        if blocked_by is not None and blocked_by.startswith("pumping_"):
            if not self.pumping.allow_listed(phone.e164, client_ip, now):
                raise RateLimited(
                    f"Too many unverified codes in this {blocked_by[8:]}; retry later.",
                    limit=blocked_by,
                    retry_after=self.pumping.retry_after(blocked_by, scopes, now),
                )
            # An operator exempted this number or subnet: admit it past the scope's block.
            event.details["pumping_allow_listed"] = blocked_by
            token = uuid.uuid4().hex
            admission = self.store.admit(
                denials=optouts, limits=rules, now=now, token=token, code=code
            )
        event.details["shadowed"] = (
            list(self.bot_gate.risk.without_signals(admission.shadowed)) or None
        )
        if admission.refused_by == "number_opted_out":
            self._carry_optout(phone, now)
            raise NumberOptedOut("This number has opted out of messages.")
        signal = self.bot_gate.risk.tripped_in_admission(admission.refused_by)
        if signal is not None:
            event.details.pop("captcha", None)
            event.details["captcha_signals"] = [signal]
            raise self.bot_gate.closed_by(signal)
        if not admission.allowed:
            if admission.refused_key is not None and admission.refused_by is not None:
                self._refusals.remember(
                    admission.refused_key, admission.refused_by, admission.retry_after, now
                )
            raise RateLimited(
                f"Too many requests ({admission.refused_by}); retry later.",
                limit=admission.refused_by,
                retry_after=retry_after_seconds(admission.retry_after),
            )
        number_rules = tuple(rule for rule in rules if rule.name == "number")
        return _Admitted(tightest_window(admission.usage), token, number_rules)

    def _carry_optout(self, phone: Phone, now: float) -> None:
        """Keep an opt-out found under a fallback key once that key is gone (best effort: the
        refusal stands whatever the store says)."""
        try:
            carry_optout(
                self.store,
                self.keys,
                every_tag(self._tag_keys, phone.e164),
                now=now,
                optout_ttl=self.settings.optout_ttl,
            )
        except StoreUnavailable:
            log.warning("opt-out not carried to the current key: the store failed")

    def _count_pumping(self, event: Event, phone: Phone, client_ip: str | None, now: float) -> None:
        """Count a sent message per scope; audit each scope that trips (blocked or shadowed).

        The message is already gone, so a store failure here is logged, not raised.
        """
        try:
            decisions = self.pumping.record_sent(self.pumping.scopes_for(phone, client_ip), now)
        except OtpError:
            log.warning("pumping counts not updated: the store failed after a send")
            return
        for decision in decisions:
            self._audit_pumping(event, decision)

    def _audit_pumping(self, event: Event, decision: Decision) -> None:
        # A range scope is shown masked (``prefix:+86138****``, its id a keyed hash) and the
        # number only by its keyed hash: joined with the send line's masked number, the visible
        # digits never cover a whole number.
        details = decision.describe()
        if event.phone is not None:
            details["phone_hash"] = self.audit.phone_hash(event.phone)
        pumping = Event(
            "pumping",
            purpose=event.purpose,
            client_ip=event.client_ip,
            details=details,
        )
        self.audit.record(pumping, decision.outcome)

    def _check_content(self, event: Event, message: SmsMessage) -> None:
        """Check the rendered text and each template parameter before anything is stored or sent.

        A ``block`` finding refuses the send; a ``flag`` is only recorded on the audit event.
        Only rule ids and groups leave this method, never the matched text: the caller may be
        anonymous, and content does not belong in logs.

        :raises ContentBlocked: a rule with action ``block`` matched.
        """
        report = self.content_policy.check_message(
            message.text, message.template_params, self.settings.huawei_signature
        )
        if report.flags:
            event.details["content_flags"] = sorted({f.rule for f in report.flags})
        if report.blocked:
            finding = report.blocking[0]
            raise ContentBlocked(
                f"The message breaks content rule {finding.rule}.",
                rule=finding.rule,
                group=finding.group,
            )

    def _render(self, phone: Phone, purpose: str, code: str) -> SmsMessage:
        minutes = max(1, self.settings.code_ttl // 60)
        text = self.settings.message_template.format(code=code, minutes=minutes)
        return SmsMessage(
            to=phone.e164, code=code, text=text, purpose=purpose, template_params=(code,)
        )

    # -- verify -------------------------------------------------------------------------------

    def verify(
        self,
        phone: str,
        code: str,
        *,
        purpose: str | None = None,
        region: str | None = None,
        client_ip: str | None = None,
    ) -> Approval:
        """Check a code in one atomic store step; on success return a signed token.

        :raises CodeInvalid: wrong code; carries ``attempts_left``.
        :raises CodeExpired: no live code for this number and purpose (or never sent).
        :raises TooManyAttempts: the code is locked; a new one must be requested.
        :raises RateLimited: too many verify calls from this client.
        """
        purpose = validate_purpose(purpose)
        client_ip = canonical_ip(client_ip)
        event = Event("verify", purpose=purpose, client_ip=client_ip)
        try:
            approval = self._verify(event, phone, code, purpose, region, client_ip)
        except OtpError as exc:
            self.audit.refused(event, exc)
            raise
        self.audit.accepted(event)
        return approval

    def _verify(
        self,
        event: Event,
        raw_phone: str,
        code: str,
        purpose: str,
        region: str | None,
        client_ip: str | None,
    ) -> Approval:
        phone = self._parse(raw_phone, region)
        event.phone = phone.e164
        if not code.isascii() or not code.isdigit() or len(code) != self.settings.code_length:
            raise InvalidRequest(f"code: expected {self.settings.code_length} digits.")
        now = self.clock.now()
        tag = phone_tag(self._tag_key, phone.e164)
        candidates = [
            code_digest(key, phone=phone.e164, purpose=purpose, code=code)
            for key in self._code_keys
        ]
        limits = self._verify_limits.rules(self.keys, client_ip)
        # Conversions raise a scope's pumping allowance; counted in the same store step.
        counted = phone.e164 not in self._test_codes
        check = self.store.verify_code(
            self.keys.code(tag, purpose),
            candidates,
            now=now,
            limits=limits,
            token=uuid.uuid4().hex,
            on_approve=self.pumping.verified_tally(self.pumping.scopes_for(phone, client_ip), now)
            if counted
            else None,
        )
        event.details["shadowed"] = list(check.shadowed) or None
        if check.status is CodeStatus.LIMITED:
            raise RateLimited(
                "Too many verification attempts from this client; retry later.",
                limit=check.refused_by,
                retry_after=retry_after_seconds(check.retry_after),
            )
        if check.status in (CodeStatus.INVALID, CodeStatus.EXPIRED, CodeStatus.LOCKED):
            self.bot_gate.risk.record_failure(now=now, client_ip=client_ip, phone_tag=tag)
        if check.status is CodeStatus.INVALID:
            raise CodeInvalid("The code is wrong.", attempts_left=check.attempts_left)
        if check.status is CodeStatus.EXPIRED:
            raise CodeExpired("There is no valid code; request a new one.")
        if check.status is CodeStatus.LOCKED:
            raise TooManyAttempts("Too many wrong codes; request a new one.")
        self.bot_gate.risk.record_verified(now=now, prefix=self._range(phone))
        token = self._signer.issue(
            phone=phone.e164,
            purpose=purpose,
            token_id=uuid.uuid4().hex,
            now=now,
            ttl=self.settings.token_ttl,
        )
        return Approval(
            phone=phone.e164, purpose=purpose, token=token, expires_in=self.settings.token_ttl
        )

    # -- tokens -------------------------------------------------------------------------------

    def check_token(
        self,
        token: str,
        *,
        purpose: str | None = None,
        consume: bool = False,
        client_ip: str | None = None,
    ) -> VerifiedClaim:
        """The claim of a verification token; with ``consume`` it works once only.

        Audited like every decision: a host app checking tokens it was never issued shows up.

        :raises TokenInvalid, TokenExpired: not a valid token (for this purpose).
        :raises TokenUsed: ``consume`` and the token was consumed before.
        """
        event = Event("token_check", client_ip=client_ip, details={"consume": consume})
        try:
            claim = self._check_token(event, token, purpose, consume)
        except OtpError as exc:
            self.audit.refused(event, exc)
            raise
        self.audit.accepted(event)
        return claim

    def _check_token(
        self, event: Event, token: str, purpose: str | None, consume: bool
    ) -> VerifiedClaim:
        checked_purpose = None if purpose is None else validate_purpose(purpose)
        event.purpose = checked_purpose
        now = self.clock.now()
        claim = self._signer.check(token, now=now, purpose=checked_purpose)
        event.phone = claim.phone
        event.purpose = claim.purpose
        event.details["token_id"] = claim.token_id
        if consume:
            ttl = max(1.0, claim.expires_at - now)
            if self.store.put_new(self.keys.token_used(claim.token_id), b"1", ttl=ttl, now=now):
                raise TokenUsed("This token was already used.")
        return claim

    # -- the bot gate: delegations to BotGate (otp_service/bot_gate) ------------------------

    @property
    def captcha_renderer(self) -> CaptchaRenderer:
        """What the bot gate draws challenges with: the ``captcha_renderer`` given, or the
        default in this deployment's style."""
        return self.bot_gate.challenges.renderer

    def create_captcha(
        self, *, client_ip: str | None = None, purpose: str | None = None
    ) -> Challenge:
        """A fresh one-time challenge for ``purpose`` (the default purpose if omitted: the one a
        send without ``purpose`` uses). The store keeps the answer's HMAC, bound to the purpose,
        the text sealed (for the audio variant) and the PNG, under one key that lives
        ``OTP_CAPTCHA_TTL``. An answer checked for another purpose is refused as wrong.

        :raises InvalidRequest: ``purpose`` is malformed.
        :raises RateLimited: ``limit="captcha_ip"`` (or ``captcha_subnet``,
            ``captcha_ipv6_site``): this address, or its network, asked for too many.
        """
        return self.bot_gate.create_captcha(client_ip=client_ip, purpose=purpose)

    def create_pow(
        self,
        *,
        client_ip: str | None = None,
        phone: str | None = None,
        region: str | None = None,
    ) -> dict[str, Any]:
        """A proof-of-work challenge (ALTCHA v2) as hard as this client's risk signals say.

        With ``phone``, the number's own signals (failures, a range nobody verifies in) count
        too, so the challenge is as hard as the send it is for will ask; without, a send that
        trips one of them answers ``captcha_required`` with the ``pow_level`` to ask for.

        :raises RateLimited: ``limit="captcha_ip"`` (``captcha_subnet``, ``captcha_ipv6_site``):
            this address, or its network, asked for too many challenges.
        :raises InvalidPhone, RegionNotAllowed: ``phone`` is given and refused.
        """
        return self.bot_gate.create_pow(client_ip=client_ip, phone=phone, region=region)

    def captcha_image(self, challenge_id: str) -> bytes:
        """The PNG of a live challenge.

        :raises NotFound: unknown, used or expired.
        """
        return self.bot_gate.captcha_image(challenge_id)

    def captcha_audio(
        self, challenge_id: str, *, altcha: str | None = None, client_ip: str | None = None
    ) -> bytes:
        """The WAV of a live challenge: the same text, spoken, for people who cannot see it.

        Drawn on the first request (it takes about a quarter of a second) from the sealed text,
        then served from the store until the challenge's own expiry could have passed. Each
        request first checks that the challenge is still live, so an answered or expired
        challenge has no audio even while its cached WAV waits for its TTL.

        With ``OTP_CAPTCHA_AUDIO_POW`` the first request must bring a solved proof of work at the
        level ``/pow`` gives this address, spent once: matching the ``captcha`` package's
        recordings reads the audio (bench/captcha_audio_attack.py), so without it the audio
        would be a cheaper door than the image. Replays of a spoken challenge need none.

        Each render (not a cached answer) counts against the client's /24 or /64 and IPv6 site
        (``OTP_LIMITS_CAPTCHA_AUDIO``) before the per-process budget: a flood from one network
        meets its own limit instead of using up every worker's audio.

        :raises NotFound: unknown, used or expired.
        :raises CaptchaRequired: no proof of work, or one easier than this address needs.
        :raises CaptchaInvalid: a wrong, used or expired proof of work.
        :raises RateLimited: ``limit="captcha_audio_subnet"`` (``captcha_audio_ipv6_site``): the
            client's network asked for too much audio; ``captcha_render``: this process's budget.
        """
        return self.bot_gate.captcha_audio(challenge_id, altcha=altcha, client_ip=client_ip)

    def check_captcha(
        self,
        challenge_id: str | None,
        answer: str | None,
        *,
        altcha: str | None = None,
        client_ip: str | None = None,
        purpose: str | None = None,
    ) -> None:
        """Check (and spend) what ``OTP_CAPTCHA_KIND`` asks for, whatever ``OTP_CAPTCHA_MODE``
        says: an image answer, a proof of work, or both. An image challenge must have been made
        for ``purpose`` (the default purpose if omitted).

        The send pipeline applies the mode; a caller asking directly (the guard's
        ``captcha_required``, a host app) has decided a proof is needed. One-time: a wrong
        answer burns the challenge too, so answers cannot be guessed against one image. A
        proof of work here needs level 0 (the caller, not a risk signal, decided to ask).

        :raises CaptchaRequired: what the kind asks for is missing.
        :raises CaptchaInvalid: wrong, used, expired or unknown challenge.
        """
        self.bot_gate.check_captcha(
            challenge_id, answer, altcha=altcha, client_ip=client_ip, purpose=purpose
        )

    # -- limits on any action ------------------------------------------------------------------

    def hit_limits(
        self,
        axis: str,
        subject: str,
        spec: str,
        *,
        scope: str = "app",
        hash_subject: bool = True,
        client_ip: str | None = None,
    ) -> None:
        """Count one hit of ``subject`` against ``spec`` (``limits`` notation), or refuse.

        The same atomic moving windows as the send pipeline, for a host app's own actions (the
        guard's ``rate_limit``). Counters are separate per ``scope`` and ``axis``, so a route's
        ``ip`` limit never spends the send pipeline's. Subjects are stored as a keyed hash unless
        ``hash_subject`` is false (IPs and subnets, which operators want to read): a host's own
        key may be an e-mail address or a phone number.

        :param axis: the name reported in ``RateLimited.limit`` (``ip``, ``subnet``, ``global`` …).
        :param subject: who is counted (an IP, a subnet, an account id …).
        :param spec: e.g. ``"5/minute;100/day"``; empty means no limit.
        :param scope: a name shared by the actions that share these counters.
        :raises RateLimited: a window is full; carries ``limit`` and ``retry_after``.
        :raises StoreUnavailable: the store cannot count, so nothing is allowed (fail closed).
        """
        event = Event("limit", client_ip=client_ip, details={"scope": scope, "axis": axis})
        shown = phone_tag(self._tag_key, subject) if hash_subject else subject
        rules = [
            LimitRule(
                axis,
                self.keys.limit(f"{scope}:{axis}", shown, window.seconds, window.amount),
                window.amount,
                window.seconds,
            )
            for window in parse_windows(spec)
        ]
        try:
            admission = self.store.admit(
                denials=(), limits=rules, now=self.clock.now(), token=uuid.uuid4().hex
            )
            if not admission.allowed:
                raise RateLimited(
                    f"Too many requests ({axis}); retry later.",
                    limit=axis,
                    retry_after=retry_after_seconds(admission.retry_after),
                )
        except OtpError as exc:
            self.audit.refused(event, exc)
            raise
        self.audit.accepted(event)

    # -- operations ---------------------------------------------------------------------------

    def limit_status(
        self,
        *,
        phone: str | None = None,
        purpose: str | None = None,
        region: str | None = None,
        ip: str | None = None,
    ) -> LimitReport:
        """How full the windows of a number and/or a client address are, counting nothing.

        A number shows its resend cooldown and number windows (for ``purpose``) and its range's
        windows; an address shows its own, its subnet's and IPv6 site's, and its verify windows on
        those axes. The global budget is always shown.

        :raises InvalidRequest: neither ``phone`` nor ``ip``, or either is malformed.
        """
        target = self._operator_target(phone, purpose, region, ip)
        rules = target.rules + self._send_limits.global_rules(self.keys)
        windows = tuple(self.store.window_usage(rules, now=self.clock.now()))
        masked = None if target.e164 is None else mask_phone(target.e164)
        return LimitReport(masked, target.purpose, target.ip, windows)

    def reset_limits(
        self,
        *,
        phone: str | None = None,
        purpose: str | None = None,
        region: str | None = None,
        ip: str | None = None,
    ) -> int:
        """Clear the windows :meth:`limit_status` shows, except the global budget.

        For an operator unblocking a legitimate user or office. Audited as ``limits_reset``.

        :returns: how many windows held hits and were cleared.
        :raises InvalidRequest: neither ``phone`` nor ``ip``, or either is malformed.
        """
        target = self._operator_target(phone, purpose, region, ip)
        event = Event("limits_reset", purpose=target.purpose, client_ip=target.ip)
        event.phone = target.e164
        cleared = self.store.delete(*dict.fromkeys(rule.key for rule in target.rules))
        self._refusals.forget(rule.key for rule in target.rules)
        event.details["cleared"] = cleared
        self.audit.accepted(event)
        return cleared

    def _operator_target(
        self, phone: str | None, purpose: str | None, region: str | None, ip: str | None
    ) -> _OperatorTarget:
        if phone is None and ip is None:
            raise InvalidRequest("Name a phone number, an IP address, or both.")
        rules: list[LimitRule] = []
        parsed = None if phone is None else self._parse(phone, region)
        purpose = validate_purpose(purpose)
        if parsed is not None:
            tag = phone_tag(self._tag_key, parsed.e164)
            rules += self._send_limits.number_rules(self.keys, phone_tag=tag, purpose=purpose)
            rules += self._send_limits.prefix_rules(self.keys, self._range(parsed))
        address = canonical_ip(ip)
        if address is not None:
            rules += self._send_limits.address_rules(self.keys, address)
            rules += self._verify_limits.rules(self.keys, address)
        return _OperatorTarget(
            e164=None if parsed is None else parsed.e164, purpose=purpose, ip=address, rules=rules
        )

    def ready(self) -> None:
        """Raise unless the service can do its job.

        :raises StoreUnavailable: the store does not answer.
        :raises ProviderNotReady: the management API says the template or signature cannot
            send (only when the IAM settings are configured).
        """
        self.store.ping()
        if self.provider_state is None:
            return
        blocking = self.provider_state.blocking(self.clock.now())
        if blocking:
            raise ProviderNotReady(
                "; ".join(f"{f.subject} is {f.state}: {f.fix}" for f in blocking),
                reasons=[f"{f.subject}: {f.state}" for f in blocking],
            )

    def persistence_warning(self) -> str | None:
        """In production, why a restart of the store would lose what must be durable
        (opt-outs, consumed token ids, allow-lists, blocks), or ``None``.

        Logged once per process; asked by ``/readyz`` and ``check-config``.

        :raises StoreUnavailable: the store cannot be reached.
        """
        if self.settings.env != "production" or not isinstance(self.store, PersistenceReport):
            return None
        warning = self.store.persistence_warning()
        if warning is not None and not self._persistence_warned:
            self._persistence_warned = True
            log.warning("%s", warning)
        return warning
