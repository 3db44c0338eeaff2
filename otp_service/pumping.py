"""SMS pumping defence: conversion counts in the store, blocks as Denial keys, operator tools.

The decisions are pure (``core/pumping.py``); this module keeps the counts and the blocks. The
send path pays nothing extra to *check* a block: blocks are Denial keys, checked by the same
``admit`` call as every limit. Counting is one ``tally`` round trip after a send; an approved
verify is counted inside the verify step itself. Every count lives in time buckets with a TTL,
so memory stays bounded.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from otp_service.core.keys import Keys, every_tag, phone_tag, range_tag
from otp_service.core.phone import Phone, mask_range
from otp_service.core.policy import subnet_of
from otp_service.core.pumping import (
    BUCKETS,
    SCOPE_KINDS,
    Figures,
    Scope,
    Thresholds,
    Trip,
    block_seconds,
    bucket_span,
    evaluate,
    rule_name,
    window_buckets,
)
from otp_service.errors import InvalidRequest
from otp_service.settings import Settings
from otp_service.store import Denial, MemoryStore, Store
from otp_service.store.base import Tally

#: A scope's strikes are forgotten after a quiet day; until then each block doubles.
STRIKE_MEMORY = 86400
#: Allow-list entries expire too (every key has a TTL); operators renew them.
DEFAULT_ALLOW_TTL = 90 * 86400
ALLOW_KINDS = ("number", "subnet")


@dataclass(frozen=True, slots=True)
class Decision:
    """A tripped scope and what was done: ``blocked`` for ``seconds``, or only ``shadowed``."""

    trip: Trip
    outcome: str
    strikes: int = 0
    seconds: int = 0

    def describe(self) -> dict[str, object]:
        figures = self.trip.describe()
        if self.outcome == "blocked":
            figures.update(strikes=self.strikes, block_seconds=self.seconds)
        return figures


@dataclass(frozen=True, slots=True)
class Block:
    """A live block as an operator sees it: ``value`` names it for :meth:`PumpingDefence.lift`
    (a range's id), ``shown`` is what to read (a range masked)."""

    kind: str
    value: str
    record: dict[str, object]

    @property
    def shown(self) -> str:
        scope = str(self.record.get("scope", ""))
        return scope.partition(":")[2] or self.value


def thresholds_from(settings: Settings) -> Thresholds:
    return Thresholds(
        floor=settings.pumping_floor,
        ratio=settings.pumping_ratio,
        window=settings.pumping_window,
        block_seconds=settings.pumping_block,
        max_block_seconds=settings.pumping_max_block,
        country_floor=settings.pumping_country_floor,
    )


#: A range's id as ``abuse blocks`` shows it: a ``range_tag`` (20 base32 characters; no range
#: in clear is that long, E.164 has at most 15 digits).
RANGE_ID = re.compile(r"[a-z2-7]{20}")


def range_scope(tag_keys: Sequence[bytes], prefix: str) -> Scope:
    """A number range as a scope: keyed by its hash under each key, shown masked."""
    tags = list(dict.fromkeys(range_tag(key, prefix) for key in tag_keys))
    return Scope("prefix", tags[0], label=mask_range(prefix), aliases=tuple(tags[1:]))


class PumpingDefence:
    """Counts sends and verifications per scope, blocks scopes that convert too little."""

    def __init__(self, store: Store, keys: Keys, settings: Settings) -> None:
        self.store = store
        self.keys = keys
        self.thresholds = thresholds_from(settings)
        self.shadow = settings.shadow_rules
        self.enabled = settings.pumping_floor > 0
        # Derived exactly as the service derives them, so an allow-listed number matches its
        # sends; entries are written under the current key and found under every fallback too.
        self._tag_keys = settings.tag_keys

    # -- the send and verify paths --------------------------------------------------------------

    def scopes_for(self, phone: Phone, client_ip: str | None) -> list[Scope]:
        """The scopes one send or verify touches: its range, its country and its client's
        subnet."""
        scopes = [range_scope(self._tag_keys, phone.prefix), Scope("country", phone.region)]
        if client_ip:
            scopes.append(Scope("subnet", subnet_of(client_ip)))
        return scopes

    def denials(self, scopes: Sequence[Scope]) -> list[Denial]:
        """Blocks to check inside ``admit`` (no extra round trip), under every configured key."""
        if not self.enabled:
            return []
        return [
            Denial(s.rule, self.keys.pumping_block(s.kind, value))
            for s in scopes
            for value in s.values
        ]

    def allow_listed(self, e164: str, client_ip: str | None, now: float) -> bool:
        """Whether an operator exempted this number (under any configured key) or subnet; asked
        only after a block refused."""
        for tag in every_tag(self._tag_keys, e164):
            if self.store.get(self.keys.pumping_allow("number", tag), now=now) is not None:
                return True
        if not client_ip:
            return False
        subnet = subnet_of(client_ip)
        return self.store.get(self.keys.pumping_allow("subnet", subnet), now=now) is not None

    def retry_after(self, rule: str, scopes: Sequence[Scope], now: float) -> int:
        """Seconds until the block behind ``rule`` lifts (at least one)."""
        for scope in scopes:
            if scope.rule != rule:
                continue
            for value in scope.values:
                raw = self.store.get(self.keys.pumping_block(scope.kind, value), now=now)
                if raw is not None:
                    until = float(json.loads(raw)["until"])
                    return max(1, int(until - now + 0.999))
        return 1

    def record_sent(self, scopes: Sequence[Scope], now: float) -> list[Decision]:
        """Count one send in every scope, then block (or shadow) each scope that trips."""
        if not self.enabled:
            return []
        return self._decide(self._count_sent(scopes, now), now)

    def verified_tally(self, scopes: Sequence[Scope], now: float) -> Tally | None:
        """The counts one approved code adds, for the store to apply in the verify step itself."""
        if not self.enabled:
            return None
        window = self.thresholds.window
        current = window_buckets(now, window)[-1]
        increments = {self.keys.pumping_count(s.kind, s.value, "ok", current): 1 for s in scopes}
        return Tally(increments, bucket_span(window) * (BUCKETS + 2))

    def _count_sent(self, scopes: Sequence[Scope], now: float) -> list[tuple[Scope, Figures]]:
        """Count one send per scope and read each scope's window back, in one round trip."""
        window = self.thresholds.window
        buckets = window_buckets(now, window)
        current = buckets[-1]
        increments = {self.keys.pumping_count(s.kind, s.value, "sent", current): 1 for s in scopes}
        reads = []
        for s in scopes:
            reads += [self.keys.pumping_count(s.kind, s.value, "sent", b) for b in buckets]
            reads += [self.keys.pumping_count(s.kind, s.value, "ok", b) for b in buckets]
            reads.append(self.keys.pumping_strikes(s.kind, s.value))
        ttl = bucket_span(window) * (BUCKETS + 2)
        values = self.store.tally(increments, reads, ttl=ttl, now=now)
        n = len(buckets)
        per_scope = 2 * n + 1
        figures = []
        for index, scope in enumerate(scopes):
            chunk = values[index * per_scope : (index + 1) * per_scope]
            counts = Figures(sent=sum(chunk[:n]), verified=sum(chunk[n : 2 * n]), strikes=chunk[-1])
            figures.append((scope, counts))
        return figures

    def _decide(self, counts: Sequence[tuple[Scope, Figures]], now: float) -> list[Decision]:
        decisions = []
        for trip in evaluate(counts, self.thresholds):
            if trip.scope.rule in self.shadow:
                decisions.append(Decision(trip, "shadowed"))
                continue
            decisions.append(self._block(trip, now))
        return decisions

    def _block(self, trip: Trip, now: float) -> Decision:
        scope = trip.scope
        strikes_key = self.keys.pumping_strikes(scope.kind, scope.value)
        (strikes,) = self.store.tally({strikes_key: 1}, [strikes_key], ttl=STRIKE_MEMORY, now=now)
        seconds = block_seconds(strikes, self.thresholds)
        decision = Decision(trip, "blocked", strikes=strikes, seconds=seconds)
        record = {**decision.describe(), "blocked_at": now, "until": now + seconds}
        self.store.put(
            self.keys.pumping_block(scope.kind, scope.value),
            json.dumps(record).encode(),
            ttl=seconds,
            now=now,
        )
        return decision

    # -- operators --------------------------------------------------------------------------

    def blocks(self, now: float) -> list[Block]:
        """Every live block with the figures that tripped it."""
        prefix = self.keys.pumping_block("", "")[: -len("::")]
        found = []
        for key in _keys_under(self.store, prefix):
            raw = self.store.get(key, now=now)
            if raw is None:
                continue
            kind, _, value = key[len(prefix) + 1 :].partition(":")
            found.append(Block(kind, value, json.loads(raw)))
        return sorted(found, key=lambda b: (b.kind, b.value))

    def lift(self, kind: str, value: str) -> bool:
        """Remove a block (and its strikes, so the next trip starts short again).

        A range is named by the id :meth:`blocks` shows, or in clear (E.164 without its last
        four digits), which is hashed under every configured key.
        """
        _check_kind(kind, SCOPE_KINDS)
        if kind == "prefix" and not RANGE_ID.fullmatch(value):
            values = range_scope(self._tag_keys, value).values
        else:
            values = (value,)
        removed = self.store.delete(*(self.keys.pumping_block(kind, v) for v in values))
        self.store.delete(*(self.keys.pumping_strikes(kind, v) for v in values))
        return removed > 0

    def allow(self, kind: str, value: str, *, now: float, ttl: int = DEFAULT_ALLOW_TTL) -> str:
        """Exempt a number (E.164) or a subnet (CIDR, or an address for its /24 or /64) from the
        pumping rules; returns what was stored (a number only as its keyed tag)."""
        stored = self._allow_value(kind, value)
        self.store.put(self.keys.pumping_allow(kind, stored), b"1", ttl=ttl, now=now)
        return stored

    def disallow(self, kind: str, value: str) -> bool:
        """Remove an allow-list entry given as :meth:`allow` takes it (a number's under every
        configured key)."""
        _check_kind(kind, ALLOW_KINDS)
        if kind == "number":
            stored = every_tag(self._tag_keys, value)
        else:
            stored = [self._allow_value(kind, value)]
        return self.store.delete(*(self.keys.pumping_allow(kind, v) for v in stored)) > 0

    def _allow_value(self, kind: str, value: str) -> str:
        _check_kind(kind, ALLOW_KINDS)
        if kind == "number":
            return phone_tag(self._tag_keys[0], value)
        try:
            network = ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise InvalidRequest(f"subnet: {value!r} is not an address or CIDR.") from None
        # Entries are looked up by the client's /24 or /64, the unit the subnet rule counts; a
        # bare address stands for its unit. Any other width would be stored and never match.
        unit = subnet_of(str(network.network_address))
        if "/" in value and str(network) != unit:
            raise InvalidRequest(
                f"subnet: allow-list entries are one /24 (IPv4) or /64 (IPv6), got {value!r}; "
                f"allow each /24 or /64 of a wider network, or give an address for {unit}."
            )
        return unit


def _check_kind(kind: str, kinds: Sequence[str]) -> None:
    if kind not in kinds:
        raise InvalidRequest(f"kind: one of {', '.join(kinds)}.")


def _keys_under(store: Store, prefix: str) -> list[str]:
    """Keys starting with ``prefix``: SCAN on Redis, a filter in memory."""
    if isinstance(store, MemoryStore):
        return [k for k in store.keys() if k.startswith(prefix)]
    from otp_service.store.redis import RedisStore

    if isinstance(store, RedisStore):
        return store.keys(f"{prefix}*")
    return []


__all__ = ["Block", "Decision", "PumpingDefence", "range_scope", "rule_name"]
