"""In-memory store: one process, one lock, lazy expiry by the injected clock.

The embedded default for trying the service and for library use. It implements exactly the
semantics of the Redis scripts, so one contract suite runs against both.
"""

from __future__ import annotations

import hmac
import threading
from bisect import bisect_left, bisect_right, insort
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from otp_service.store.base import (
    Admission,
    CodeCheck,
    CodeRecord,
    CodeStatus,
    Denial,
    LimitRule,
    Tally,
    WindowUsage,
)


@dataclass(slots=True)
class _Code:
    digest: bytes
    attempts: int
    max_attempts: int
    expires_at: float


@dataclass(slots=True)
class _Window:
    span: int
    hits: list[float] = field(default_factory=list)


class MemoryStore:
    """A thread-safe dict. Sweeps expired entries every ``sweep_every`` writes."""

    def __init__(self, *, sweep_every: int = 1024) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, tuple[float, bytes]] = {}
        self._codes: dict[str, _Code] = {}
        self._windows: dict[str, _Window] = {}
        self._writes = 0
        self._sweep_every = sweep_every

    def ping(self) -> None:
        return None

    def close(self) -> None:
        return None

    def admit(
        self,
        *,
        denials: Sequence[Denial],
        limits: Sequence[LimitRule],
        now: float,
        token: str,
        code: CodeRecord | None = None,
    ) -> Admission:
        with self._lock:
            self._tick(now)
            for denial in denials:
                if self._live_value(denial.key, now) is not None:
                    return Admission(False, refused_by=denial.name)
            refusing, retry_after, shadowed = self._check_limits(limits, now)
            if refusing is not None:
                return Admission(
                    False,
                    refused_by=refusing.name,
                    retry_after=retry_after,
                    refused_key=refusing.key,
                )
            self._hit_limits(limits, now)
            if code is not None:
                self._codes[code.key] = _Code(code.digest, 0, code.max_attempts, now + code.ttl)
            usage = tuple(self._usage(rule, now) for rule in limits)
            return Admission(True, shadowed=shadowed, usage=usage)

    def give_back(
        self,
        *,
        limits: Sequence[LimitRule],
        token: str,
        admitted_at: float,
        code: CodeRecord | None = None,
    ) -> None:
        # Hits are timestamps here, and every hit at one instant counts alike: taking out one
        # at ``admitted_at`` undoes this admission's (gone already if its window passed).
        with self._lock:
            for rule in limits:
                window = self._windows.get(rule.key)
                if window is None:
                    continue
                index = bisect_left(window.hits, admitted_at)
                if index < len(window.hits) and window.hits[index] == admitted_at:
                    del window.hits[index]
            stored = self._codes.get(code.key) if code is not None else None
            if code is not None and stored is not None and stored.digest == code.digest:
                del self._codes[code.key]

    def window_usage(self, limits: Sequence[LimitRule], *, now: float) -> list[WindowUsage]:
        with self._lock:
            return [self._usage(rule, now) for rule in limits]

    def put_code(self, key: str, digest: bytes, *, ttl: int, max_attempts: int, now: float) -> None:
        with self._lock:
            self._tick(now)
            self._codes[key] = _Code(digest, 0, max_attempts, now + ttl)

    def verify_code(
        self,
        key: str,
        candidates: Sequence[bytes],
        *,
        now: float,
        limits: Sequence[LimitRule] = (),
        token: str = "",
        on_approve: Tally | None = None,
    ) -> CodeCheck:
        with self._lock:
            self._tick(now)
            refusing, retry_after, shadowed = self._check_limits(limits, now)
            if refusing is not None:
                return CodeCheck(
                    CodeStatus.LIMITED, refused_by=refusing.name, retry_after=retry_after
                )
            self._hit_limits(limits, now)
            record = self._codes.get(key)
            if record is None or record.expires_at <= now:
                self._codes.pop(key, None)
                return CodeCheck(CodeStatus.EXPIRED, shadowed=shadowed)
            if record.attempts >= record.max_attempts:
                return CodeCheck(CodeStatus.LOCKED, shadowed=shadowed)
            matched = False
            for candidate in candidates:
                matched |= hmac.compare_digest(record.digest, candidate)
            if matched:
                del self._codes[key]
                if on_approve is not None:
                    self._add(on_approve.increments, on_approve.ttl, now)
                return CodeCheck(CodeStatus.APPROVED, shadowed=shadowed)
            record.attempts += 1
            left = record.max_attempts - record.attempts
            return CodeCheck(CodeStatus.INVALID, attempts_left=left, shadowed=shadowed)

    def put(self, key: str, value: bytes, *, ttl: float, now: float) -> None:
        with self._lock:
            self._tick(now)
            self._values[key] = (now + ttl, value)

    def put_new(self, key: str, value: bytes, *, ttl: float, now: float) -> bytes | None:
        with self._lock:
            self._tick(now)
            existing = self._live_value(key, now)
            if existing is not None:
                return existing
            self._values[key] = (now + ttl, value)
            return None

    def get(self, key: str, *, now: float) -> bytes | None:
        with self._lock:
            return self._live_value(key, now)

    def take(self, key: str, *, now: float) -> bytes | None:
        with self._lock:
            value = self._live_value(key, now)
            self._values.pop(key, None)
            return value

    def delete(self, *keys: str) -> int:
        with self._lock:
            removed = 0
            for key in keys:
                found = (
                    self._values.pop(key, None),
                    self._codes.pop(key, None),
                    self._windows.pop(key, None),
                )
                removed += any(entry is not None for entry in found)
            return removed

    def tally(
        self, increments: Mapping[str, int], reads: Sequence[str], *, ttl: float, now: float
    ) -> list[int]:
        with self._lock:
            self._tick(now)
            self._add(increments, ttl, now)
            return [int(self._live_value(key, now) or b"0") for key in reads]

    def _add(self, increments: Mapping[str, int], ttl: float, now: float) -> None:
        for key, amount in increments.items():
            count = int(self._live_value(key, now) or b"0") + amount
            self._values[key] = (now + ttl, str(count).encode())

    def keys(self) -> list[str]:
        """Every live key (for operators' tools and hygiene tests)."""
        with self._lock:
            return [*self._values, *self._codes, *self._windows]

    def _live_value(self, key: str, now: float) -> bytes | None:
        entry = self._values.get(key)
        if entry is None:
            return None
        if entry[0] <= now:
            del self._values[key]
            return None
        return entry[1]

    def _check_limits(
        self, limits: Sequence[LimitRule], now: float
    ) -> tuple[LimitRule | None, float, tuple[str, ...]]:
        refused: LimitRule | None = None
        retry_after = 0.0
        shadowed: list[str] = []
        for rule in limits:
            window = self._windows.get(rule.key)
            if window is None:
                continue
            del window.hits[: bisect_right(window.hits, now - rule.window)]
            used = len(window.hits)
            if used < rule.amount:
                continue
            wait = window.hits[used - rule.amount] + rule.window - now
            if rule.shadow:
                shadowed.append(rule.name)
            elif wait > retry_after or refused is None:
                refused, retry_after = rule, wait
        return refused, retry_after, tuple(shadowed)

    def _usage(self, rule: LimitRule, now: float) -> WindowUsage:
        window = self._windows.get(rule.key)
        hits = window.hits if window is not None else []
        return WindowUsage.from_hits(rule, hits[bisect_right(hits, now - rule.window) :], now)

    def _hit_limits(self, limits: Sequence[LimitRule], now: float) -> None:
        for rule in limits:
            insort(self._windows.setdefault(rule.key, _Window(rule.window)).hits, now)

    def _tick(self, now: float) -> None:
        self._writes += 1
        if self._writes % self._sweep_every:
            return
        self._values = {k: v for k, v in self._values.items() if v[0] > now}
        self._codes = {k: c for k, c in self._codes.items() if c.expires_at > now}
        self._windows = {
            k: w for k, w in self._windows.items() if w.hits and w.hits[-1] > now - w.span
        }
