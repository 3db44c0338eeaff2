"""The store port: the few atomic operations the pipelines need, with time passed in.

Each operation is one atomic step on every backend (a Lua script on Redis, one lock in memory),
and takes ``now`` from the service's clock so both backends agree on time and tests can move it.
Redis key TTLs exist only so nothing outlives its use; expiry decisions use the stored times.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class LimitRule:
    """One moving window of one axis, resolved to a storage key.

    ``name`` is the axis reported to callers (``number``, ``ip`` …). A ``shadow`` rule is counted
    and reported when it would refuse, but never refuses.
    """

    name: str
    key: str
    amount: int
    window: int
    shadow: bool = False


@dataclass(frozen=True, slots=True)
class Denial:
    """A key whose presence refuses the request (an opt-out, a block), named for the caller."""

    name: str
    key: str


@dataclass(frozen=True, slots=True)
class WindowUsage:
    """How full one limit's moving window is at one moment (for headers and operators).

    :param used: hits counted in the window (including the request just admitted, if any).
    :param reset_after: seconds until the oldest counted hit leaves the window, so one more
        request fits again; 0 when the window is empty.
    :param retry_after: seconds until the window admits a request; 0 while it is not full.
    """

    rule: LimitRule
    used: int
    reset_after: float = 0.0
    retry_after: float = 0.0

    @property
    def remaining(self) -> int:
        return max(0, self.rule.amount - self.used)

    @classmethod
    def from_hits(cls, rule: LimitRule, hits: Sequence[float], now: float) -> WindowUsage:
        """Usage from the sorted hit times still inside the window (both stores share this)."""
        if not hits:
            return cls(rule, 0)
        used = len(hits)
        retry = hits[used - rule.amount] + rule.window - now if used >= rule.amount else 0.0
        return cls(rule, used, reset_after=hits[0] + rule.window - now, retry_after=retry)


@dataclass(frozen=True, slots=True)
class CodeRecord:
    """A code's digest to store when a send is admitted (see :meth:`Store.admit`)."""

    key: str
    digest: bytes
    ttl: int
    max_attempts: int


@dataclass(frozen=True, slots=True)
class Tally:
    """Counters to add to when a code is approved (see :meth:`Store.verify_code`)."""

    increments: Mapping[str, int]
    ttl: float


@dataclass(frozen=True, slots=True)
class Admission:
    """The outcome of :meth:`Store.admit`: allowed, or refused by one named rule.

    An admitted request also carries ``usage``: one :class:`WindowUsage` per limit, in the order
    given, counted after its own hit (the figures behind ``RateLimit-*`` headers).
    """

    allowed: bool
    refused_by: str | None = None
    retry_after: float = 0.0
    shadowed: tuple[str, ...] = ()
    usage: tuple[WindowUsage, ...] = ()
    #: The storage key of the limit that refused (``None`` for a denial): several windows
    #: share a name, and the refusal memo must remember the one that was full.
    refused_key: str | None = None


class CodeStatus(Enum):
    APPROVED = "approved"
    INVALID = "invalid"
    EXPIRED = "expired"
    LOCKED = "locked"
    LIMITED = "limited"


@dataclass(frozen=True, slots=True)
class CodeCheck:
    """The outcome of :meth:`Store.verify_code`."""

    status: CodeStatus
    attempts_left: int = 0
    refused_by: str | None = None
    retry_after: float = 0.0
    shadowed: tuple[str, ...] = ()


class Store(Protocol):
    """Shared state. Raises :class:`~otp_service.errors.StoreUnavailable` when unreachable."""

    def ping(self) -> None: ...

    def admit(
        self,
        *,
        denials: Sequence[Denial],
        limits: Sequence[LimitRule],
        now: float,
        token: str,
        code: CodeRecord | None = None,
    ) -> Admission:
        """Check denials, then every limit; if none refuses, count one hit on every limit.

        All or nothing: a refused request consumes no quota. ``token`` is unique per request.
        When admitted, ``code`` (if given) is stored in the same step, replacing any previous
        code under its key, so a send costs one round trip for its limits and its code.
        """
        ...

    def window_usage(self, limits: Sequence[LimitRule], *, now: float) -> list[WindowUsage]:
        """Read how full each limit's window is, counting nothing (operators' tools)."""
        ...

    def give_back(
        self,
        *,
        limits: Sequence[LimitRule],
        token: str,
        admitted_at: float,
        code: CodeRecord | None = None,
    ) -> None:
        """Undo one admission on ``limits``, in one step: its hit (``token``, counted at
        ``admitted_at``) leaves each window, and ``code`` is deleted if it is still the one
        stored under its key (a later send's code stays).

        For a send that certainly never reached the provider. On a cluster every key must be in
        one hash slot, as one number's keys are.
        """
        ...

    def put_code(self, key: str, digest: bytes, *, ttl: int, max_attempts: int, now: float) -> None:
        """Store a code's digest, replacing any previous code under ``key``."""
        ...

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
        """Check ``limits``, then compare the stored digest with each candidate in constant time.

        Match: delete, add ``on_approve``'s increments (as :meth:`tally` does) and approve.
        Mismatch: count one attempt. Attempts exhausted: locked until the record's TTL (or a new
        code).
        """
        ...

    def put(self, key: str, value: bytes, *, ttl: float, now: float) -> None: ...

    def put_new(self, key: str, value: bytes, *, ttl: float, now: float) -> bytes | None:
        """Set ``key`` only if absent; return the existing value if there was one."""
        ...

    def get(self, key: str, *, now: float) -> bytes | None: ...

    def take(self, key: str, *, now: float) -> bytes | None:
        """Get and delete in one step (one-time values: captcha challenges)."""
        ...

    def delete(self, *keys: str) -> int: ...

    def tally(
        self, increments: Mapping[str, int], reads: Sequence[str], *, ttl: float, now: float
    ) -> list[int]:
        """Add each amount to its counter (which then lives ``ttl``), then read ``reads``.

        One round trip. Each increment is atomic; the reads see at least this call's increments.
        Counters are only read through ``tally`` (a missing counter reads 0), never ``get``.
        """
        ...

    def close(self) -> None: ...


@runtime_checkable
class PersistenceReport(Protocol):
    """A store whose server can say whether its data outlives a restart (Redis).

    Opt-outs, consumed token ids, allow-lists and pumping blocks must survive a restart; a
    server that keeps nothing on disk lifts them all when it restarts.
    """

    def persistence_warning(self) -> str | None:
        """Why a restart of the server would lose state, or ``None`` when it persists (or does
        not let us ask).

        :raises StoreUnavailable: the server cannot be reached.
        """
        ...
