"""State stores: Redis for any number of service instances, memory for one process."""

from __future__ import annotations

import logging

from otp_service.errors import ConfigurationError
from otp_service.store.base import (
    Admission,
    CodeCheck,
    CodeStatus,
    Denial,
    LimitRule,
    Store,
    WindowUsage,
)
from otp_service.store.memory import MemoryStore

log = logging.getLogger(__name__)

__all__ = [
    "Admission",
    "CodeCheck",
    "CodeStatus",
    "Denial",
    "LimitRule",
    "MemoryStore",
    "Store",
    "WindowUsage",
    "store_from_url",
]


def store_from_url(url: str | None) -> Store:
    """Pick the backend by scheme, importing redis only when it is used.

    ``None`` or ``memory://`` → :class:`MemoryStore`; ``redis://`` & co → ``RedisStore``;
    ``redis+cluster://`` → ``ClusterRedisStore`` (it discovers the cluster at once, so an
    unreachable seed raises :class:`StoreUnavailable` here).
    """
    if url is None or url.startswith("memory://"):
        return MemoryStore()
    if url.startswith("redis+cluster://"):
        from otp_service.store.redis import ClusterRedisStore

        return ClusterRedisStore.from_url(url)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from otp_service.store.redis import RedisStore

        return RedisStore.from_url(url)
    raise ConfigurationError("OTP_REDIS_URL: unsupported scheme")
