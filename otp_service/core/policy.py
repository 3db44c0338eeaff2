"""Throttling policy: which limits apply to a request, resolved to storage keys.

Limits are written in the ``limits`` package's notation (``10/minute;100/hour``) and parsed by it;
the windows are moving windows, enforced atomically by the store (see ``store/lua/common.lua``).
Every axis an attacker can rotate has its own limit: the number, the client IP, its subnet, an
IPv6 client's wider site network, the number range, and the global budget. Why each default is
what it is: ``docs/limits.md``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from limits import parse_many

from otp_service.core.client_ip import embedded_ipv4
from otp_service.core.keys import Keys
from otp_service.store.base import LimitRule, WindowUsage

#: Send-side axes, in the order they are reported when several refuse with equal waits.
SEND_AXES = ("number", "ip", "subnet", "ipv6_site", "prefix", "global")
IPV4_SUBNET_BITS = 24
IPV6_SUBNET_BITS = 64
#: The default width of the IPv6 site axis (``OTP_IPV6_SITE_BITS``): what hosting providers and
#: many ISPs hand one customer (RFC 6177), so the /64s inside it are one owner's to rotate.
IPV6_SITE_BITS = 48
#: Axes whose figures a caller may see in ``RateLimit-*`` headers: its own address and networks.
#: The number, range and global windows count other people's traffic (who was sent codes, how
#: close the budget is to tripping), so they never leave the service except as a refusal.
HEADER_AXES = frozenset({"ip", "subnet", "ipv6_site"})


@dataclass(frozen=True, slots=True)
class Window:
    """``amount`` hits per ``seconds``."""

    amount: int
    seconds: int


@lru_cache(maxsize=64)
def parse_windows(spec: str) -> tuple[Window, ...]:
    """``"5/hour;10/day"`` → windows. Empty means no limit on that axis.

    A window written twice (``2/minute;2/60 seconds``) is kept once: both would name one key,
    which Redis counts once per request and a naive count twice.

    :raises ValueError: malformed, or a window that allows nothing (``0/minute``).
    """
    if not spec.strip():
        return ()
    windows = [Window(item.amount, int(item.get_expiry())) for item in parse_many(spec)]
    if any(window.amount < 1 for window in windows):
        raise ValueError(f"every limit must allow at least 1, got {spec!r}")
    return tuple(dict.fromkeys(windows))


@lru_cache(maxsize=4096)
def _address(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The address ``ip`` names, IPv4 when an IPv6 form embeds one.

    Cached: one request asks for its client's subnet and site up to four times (limits, pumping
    scopes, the bot gate's signals), and ``ipaddress`` parsing was 5 % of a verify.
    """
    address = ipaddress.ip_address(ip)
    if isinstance(address, ipaddress.IPv6Address):
        return embedded_ipv4(address) or address
    return address


def _network_text(address: ipaddress.IPv4Address | ipaddress.IPv6Address, bits: int) -> str:
    # The network address from the integer: the same text as ``ip_network(...)`` at half the
    # cost (a send asks for its client's subnet up to three times).
    host_bits = address.max_prefixlen - bits
    return f"{type(address)(int(address) >> host_bits << host_bits)}/{bits}"


def subnet_of(ip: str) -> str:
    """The /24 (IPv4) or /64 (IPv6) holding ``ip``, the unit a botnet's neighbours share.

    An IPv6 form embedding an IPv4 address (mapped, NAT64, 6to4, Teredo) is that address's /24.
    """
    address = _address(ip)
    return _network_text(address, IPV4_SUBNET_BITS if address.version == 4 else IPV6_SUBNET_BITS)


def site_of(ip: str, bits: int = IPV6_SITE_BITS) -> str | None:
    """The IPv6 network of ``bits`` (a /48 by default) holding ``ip``; ``None`` for IPv4.

    An IPv6 host picks a new /64 as easily as a new address when its provider gave it a /48 or
    a /56, so the /64 subnet axis alone does not hold it. IPv4 has no wider axis: a /24 is
    already what one owner gets.
    """
    address = _address(ip)
    return None if address.version == 4 else _network_text(address, bits)


@dataclass(frozen=True, slots=True)
class SendLimits:
    """The limit specs of the send side (``OTP_LIMITS_*`` and ``OTP_RESEND_INTERVAL``)."""

    resend_interval: int
    number: str
    number_total: str
    ip: str
    subnet: str
    prefix: str
    global_: str
    ipv6_site: str = ""
    ipv6_site_bits: int = IPV6_SITE_BITS
    shadow: frozenset[str] = frozenset()

    def rules(
        self,
        keys: Keys,
        *,
        phone_tag: str,
        purpose: str,
        prefix: str,
        client_ip: str | None,
    ) -> list[LimitRule]:
        """Every limit one send must pass, resolved to keys."""
        rules = self.number_rules(keys, phone_tag=phone_tag, purpose=purpose)
        if client_ip is not None:
            rules += self.address_rules(keys, client_ip)
        rules += self.prefix_rules(keys, prefix)
        rules += self.global_rules(keys)
        return rules

    def number_rules(self, keys: Keys, *, phone_tag: str, purpose: str) -> list[LimitRule]:
        """The resend cooldown (a 1-per-interval window) and the number's own windows.

        The cooldown holds across purposes: ``purpose`` is the caller's free text, so a cooldown
        per purpose would let anyone rotating it (``a1``, ``a2`` …) flood one phone. A purpose
        keeps its own, longer windows (``OTP_LIMITS_NUMBER``).
        """
        rules: list[LimitRule] = []
        if self.resend_interval > 0:
            rules.append(
                LimitRule(
                    "number",
                    keys.cooldown(phone_tag),
                    1,
                    self.resend_interval,
                    "number" in self.shadow,
                )
            )
        for window in parse_windows(self.number):
            key = keys.number_limit(phone_tag, purpose, window.seconds, window.amount)
            rules.append(self._rule("number", key, window))
        # Purposes are free text from the caller: without a cap across them, rotating the
        # purpose would reset the per-purpose windows and flood one phone.
        for window in parse_windows(self.number_total):
            key = keys.number_total_limit(phone_tag, window.seconds, window.amount)
            rules.append(self._rule("number", key, window))
        return rules

    def address_rules(self, keys: Keys, client_ip: str) -> list[LimitRule]:
        """The client address's windows, its subnet's and (IPv6) its site network's."""
        rules = self._axis("ip", keys, client_ip, self.ip)
        rules += self._axis("subnet", keys, subnet_of(client_ip), self.subnet)
        site = site_of(client_ip, self.ipv6_site_bits)
        if site is not None:
            rules += self._axis("ipv6_site", keys, site, self.ipv6_site)
        return rules

    def prefix_rules(self, keys: Keys, prefix: str) -> list[LimitRule]:
        """The windows of one number range, named by its keyed hash (``keys.range_tag``)."""
        return self._axis("prefix", keys, prefix, self.prefix)

    def global_rules(self, keys: Keys) -> list[LimitRule]:
        """The budget every send shares."""
        return self._axis("global", keys, "all", self.global_)

    def _axis(self, axis: str, keys: Keys, subject: str, spec: str) -> list[LimitRule]:
        return [
            self._rule(axis, keys.limit(axis, subject, w.seconds, w.amount), w)
            for w in parse_windows(spec)
        ]

    def _rule(self, axis: str, key: str, window: Window) -> LimitRule:
        return LimitRule(axis, key, window.amount, window.seconds, axis in self.shadow)


@dataclass(frozen=True, slots=True)
class AddressLimits:
    """The limits on one action per client address, its subnet and (IPv6) its site network.

    An attacker rotating addresses inside a /64 (or /64s inside a /48) passes any per-address
    limit, so every action a client can repeat cheaply (creating captchas, verifying codes,
    making the service speak audio) is also counted per /24 or /64 and per IPv6 site, as sends
    are. Rule names are ``<action>_ip``, ``<action>_subnet`` and ``<action>_ipv6_site``.
    """

    action: str
    ip: str
    subnet: str
    ipv6_site: str
    ipv6_site_bits: int = IPV6_SITE_BITS
    shadow: frozenset[str] = frozenset()

    def rules(self, keys: Keys, client_ip: str | None) -> list[LimitRule]:
        """Every window the action must pass for ``client_ip``; none without an address."""
        if client_ip is None:
            return []
        subjects = [("ip", client_ip, self.ip), ("subnet", subnet_of(client_ip), self.subnet)]
        site = site_of(client_ip, self.ipv6_site_bits)
        if site is not None:
            subjects.append(("ipv6_site", site, self.ipv6_site))
        rules: list[LimitRule] = []
        for axis, subject, spec in subjects:
            name = f"{self.action}_{axis}"
            rules += [
                LimitRule(
                    name,
                    keys.limit(name, subject, w.seconds, w.amount),
                    w.amount,
                    w.seconds,
                    name in self.shadow,
                )
                for w in parse_windows(spec)
            ]
        return rules


def tightest_window(usage: Sequence[WindowUsage]) -> WindowUsage | None:
    """The caller's window closest to refusing, for ``RateLimit-*`` headers.

    Only enforced (not shadow) windows of :data:`HEADER_AXES` count. Fewest requests remaining
    wins; on a tie, the one that takes longest to free up.
    """
    candidates = [u for u in usage if u.rule.name in HEADER_AXES and not u.rule.shadow]
    if not candidates:
        return None
    return min(candidates, key=lambda u: (u.remaining, -u.reset_after))
