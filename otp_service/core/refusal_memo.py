"""A process's short memory of the limit windows that just refused, so a flood is cheap to refuse.

Abuse is mostly repeats: SMS bombing sends to one victim's number again and again, and a bot
retries from one address. Each repeat used to cost almost what an accepted send costs — the
content check, the budget reservation and the admission round trip — only to hear the same
"full" from the same window. The memo keeps, per process, "window K is full for another T
seconds" for a short hold, and the send pipeline asks it before spending anything.

Why this cannot loosen a limit: a moving window that refused with ``retry_after`` T stays full
for T seconds unless someone frees it; the memo answers only within ``min(T, hold)``. Freeing
is what it can miss — an operator's ``limits reset`` in another process, or a send that never
left giving its number's windows back in another worker — and then a caller waits at most
``hold`` seconds longer than the store would make it (``OTP_REFUSAL_MEMO_SECONDS``, 1 s by
default; 0 turns the memo off). Shadow rules never refuse, so they are never remembered.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

#: Entries kept at most: a flood from many addresses must not grow a worker without bound.
DEFAULT_CAPACITY = 10_000


@dataclass(frozen=True, slots=True)
class RememberedRefusal:
    """A window known full: its axis name as callers see it, and the seconds still to wait."""

    name: str
    retry_after: float


class RefusalMemo:
    """Full windows by storage key, each until ``min(retry_after, hold)`` after its refusal.

    Thread-safe (gthread workers share one): the lock guards an ``OrderedDict`` whose order is
    the eviction order, oldest refusal first.
    """

    def __init__(self, hold: float, capacity: int = DEFAULT_CAPACITY) -> None:
        self.hold = hold
        self.capacity = capacity
        self._until: OrderedDict[str, tuple[str, float, float]] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.hold > 0

    def remember(self, key: str, name: str, retry_after: float, now: float) -> None:
        """Note that ``key``'s window refused at ``now`` and frees in ``retry_after`` seconds."""
        if not self.enabled or retry_after <= 0:
            return
        held_until = now + min(retry_after, self.hold)
        with self._lock:
            self._until.pop(key, None)
            self._until[key] = (name, held_until, now + retry_after)
            while len(self._until) > self.capacity:
                self._until.popitem(last=False)

    def refusing(self, keys: Iterable[str], now: float) -> RememberedRefusal | None:
        """The remembered refusal among ``keys`` with the longest wait, or ``None``."""
        if not self.enabled or not self._until:
            return None
        found: RememberedRefusal | None = None
        with self._lock:
            for key in keys:
                entry = self._until.get(key)
                if entry is None:
                    continue
                name, held_until, frees_at = entry
                if held_until <= now:
                    del self._until[key]
                    continue
                if found is None or frees_at - now > found.retry_after:
                    found = RememberedRefusal(name, frees_at - now)
        return found

    def forget(self, keys: Iterable[str] | None = None) -> None:
        """Drop ``keys`` (or everything): this process freed those windows itself — an operator
        reset, or a send that never left giving its windows back."""
        with self._lock:
            if keys is None:
                self._until.clear()
                return
            for key in keys:
                self._until.pop(key, None)

    def __len__(self) -> int:
        return len(self._until)
