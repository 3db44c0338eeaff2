"""The bot gate's risk signals: ask for a proof only when they say a request looks automated.

``OTP_CAPTCHA_MODE=adaptive`` keeps the first sends of an ordinary user free of friction and asks
for a captcha once any signal trips (thresholds are ``OTP_CAPTCHA_ADAPTIVE_*`` settings; reasons
for the defaults are in docs/captcha.md):

- ``ip_sends`` / ``subnet_sends`` / ``ipv6_site_sends``: sends from the client's address, its
  /24 (/64), or an IPv6 client's site network (a /48) in a window;
- ``ip_failures`` / ``subnet_failures``: failed verifies and wrong captcha answers from them;
- ``number_failures``: failed verifies for the number (someone guessing its codes);
- ``new_range``: no number in the number's range verified recently (pumping rings target ranges
  a service's real users never verify in);
- ``global_budget``: a global send window is past a share of its limit (a surge, often pumping).

Every signal is a moving window in the store, counted with the same atomic machinery as the
throttles. Sends are counted inside the send pipeline's own ``admit`` call (no extra round
trip); failures and verifications are counted on those (rarer) paths; the decision is one read
of every window (:meth:`Store.window_usage`), taken only when a request comes without a captcha.
A request that brings a captcha anyway has it checked, so there is nothing to decide.

The read alone would be a race: parallel captcha-less sends would all read "not full" and then
all be counted. So a send the read let through without a captcha carries its send signals into
``admit`` as enforcing rules: the decision and the count are one atomic step, and a signal that
filled up meanwhile refuses the send there (:meth:`tripped_in_admission`), spending nothing.
A send with a captcha counts them as shadow rules, which never refuse.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Iterable, Sequence

from otp_service.core.keys import Keys
from otp_service.core.policy import parse_windows, site_of, subnet_of
from otp_service.errors import OtpError
from otp_service.settings import Settings
from otp_service.store import LimitRule, Store

log = logging.getLogger(__name__)

#: Rule names of signal windows start with this, so they never mix with throttle names.
SIGNAL_PREFIX = "captcha_signal:"
NEW_RANGE = "new_range"


def _name(signal: str) -> str:
    return SIGNAL_PREFIX + signal


class RiskSignals:
    """Counts the adaptive signals and says which ones trip. Inert unless the mode is adaptive.

    :param global_rules: the send pipeline's global windows; ``global_budget`` reads the same
        counters with its lower threshold.
    """

    def __init__(
        self, settings: Settings, store: Store, keys: Keys, global_rules: Sequence[LimitRule]
    ) -> None:
        self.settings = settings
        self.adaptive = settings.captcha_mode == "adaptive"
        self._store = store
        self._keys = keys
        share = settings.captcha_adaptive_global
        self._global_near = [
            LimitRule(
                _name("global_budget"),
                rule.key,
                max(1, math.ceil(rule.amount * share)),
                rule.window,
                shadow=True,
            )
            for rule in global_rules
            if share > 0
        ]

    # -- deciding ------------------------------------------------------------------------------

    def signals(
        self, *, now: float, client_ip: str | None, phone_tag: str | None, prefix: str | None
    ) -> tuple[str, ...]:
        """The signals that trip for this request (empty: no captcha needed). One store read.

        Without a number (``phone_tag`` and ``prefix`` None: a proof-of-work challenge asked for
        before the number is known) only the address's and the global signals are read.
        """
        rules = [
            *self.send_rules(client_ip),
            *self._failure_rules(client_ip, phone_tag),
            *self._global_near,
        ]
        known_range = None if prefix is None else self._known_range_rule(prefix)
        if known_range is not None:
            rules.append(known_range)
        tripped: list[str] = []
        for usage in self._store.window_usage(rules, now=now):
            full = usage.used >= usage.rule.amount
            if usage.rule.name == _name("known_range"):
                if not full:
                    tripped.append(NEW_RANGE)
            elif full:
                tripped.append(usage.rule.name.removeprefix(SIGNAL_PREFIX))
        return tuple(dict.fromkeys(tripped))

    # -- counting ------------------------------------------------------------------------------

    def send_rules(self, client_ip: str | None, *, enforce: bool = False) -> list[LimitRule]:
        """Rules that count a send per address and networks, to add to the send's ``admit``.

        :param enforce: the send was let through without a captcha, so a full window must
            refuse it in the same step that counts it; otherwise the rules only count (shadow).
        """
        if not self.adaptive or client_ip is None:
            return []
        settings = self.settings
        shadow = not enforce
        rules = [
            *self._rules("ip_sends", client_ip, settings.captcha_adaptive_ip, shadow),
            *self._rules(
                "subnet_sends", subnet_of(client_ip), settings.captcha_adaptive_subnet, shadow
            ),
        ]
        site = site_of(client_ip, settings.ipv6_site_bits)
        if site is not None:
            rules += self._rules(
                "ipv6_site_sends", site, settings.captcha_adaptive_ipv6_site, shadow
            )
        return rules

    @staticmethod
    def tripped_in_admission(refused_by: str | None) -> str | None:
        """The send signal that refused an ``admit`` (a captcha is needed after all), if any."""
        if refused_by is None or not refused_by.startswith(SIGNAL_PREFIX):
            return None
        return refused_by.removeprefix(SIGNAL_PREFIX)

    def record_failure(self, *, now: float, client_ip: str | None, phone_tag: str | None) -> None:
        """Count a failed verify or a wrong captcha answer (for the address, and the number)."""
        if not self.adaptive:
            return
        rules = self._failure_rules(client_ip, phone_tag)
        self._count(rules, now, "failure")

    def record_verified(self, *, now: float, prefix: str) -> None:
        """Mark the number's range as known: a real user verified a code in it.

        The mark is one hit in a window of ``OTP_CAPTCHA_ADAPTIVE_RANGE_MEMORY`` seconds, and only
        the first verification in a window counts (the rule allows one hit), so the mark lasts
        that long from the first verification and then needs a fresh one.
        """
        rule = self._known_range_rule(prefix)
        if rule is not None:
            self._count([rule], now, "verified range")

    @staticmethod
    def without_signals(names: Iterable[str]) -> tuple[str, ...]:
        """``names`` less the signal windows (for audit fields about throttles)."""
        return tuple(name for name in names if not name.startswith(SIGNAL_PREFIX))

    # -- rules ---------------------------------------------------------------------------------

    def _failure_rules(self, client_ip: str | None, phone_tag: str | None) -> list[LimitRule]:
        if not self.adaptive:
            return []
        settings = self.settings
        rules: list[LimitRule] = []
        if client_ip is not None:
            rules += self._rules("ip_failures", client_ip, settings.captcha_adaptive_ip_failures)
            rules += self._rules(
                "subnet_failures", subnet_of(client_ip), settings.captcha_adaptive_subnet_failures
            )
        if phone_tag is not None:
            rules += [
                LimitRule(
                    _name("number_failures"),
                    self._keys.number_captcha_signal(phone_tag, "number_failures", w.seconds),
                    w.amount,
                    w.seconds,
                    shadow=True,
                )
                for w in parse_windows(settings.captcha_adaptive_number_failures)
            ]
        return rules

    def _known_range_rule(self, prefix: str) -> LimitRule | None:
        if not self.adaptive or not self.settings.captcha_adaptive_new_range:
            return None
        memory = self.settings.captcha_adaptive_range_memory
        key = self._keys.captcha_signal("known_range", prefix, memory)
        return LimitRule(_name("known_range"), key, 1, memory)

    def _rules(self, signal: str, subject: str, spec: str, shadow: bool = True) -> list[LimitRule]:
        # Shadow unless enforced: a signal window only refuses a send it let in without a captcha.
        return [
            LimitRule(
                _name(signal),
                self._keys.captcha_signal(signal, subject, w.seconds),
                w.amount,
                w.seconds,
                shadow=shadow,
            )
            for w in parse_windows(spec)
        ]

    def _count(self, rules: list[LimitRule], now: float, what: str) -> None:
        """One hit on each rule. The request's outcome is already decided, so a store failure
        is logged rather than raised: it must not turn a refusal or an approval into a 503."""
        if not rules:
            return
        try:
            self._store.admit(denials=(), limits=rules, now=now, token=uuid.uuid4().hex)
        except OtpError:
            log.warning("adaptive captcha: %s not counted, the store failed", what)
