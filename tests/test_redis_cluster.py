"""ClusterRedisStore specifics: slot-split scripts, taking hits back, closing every socket.

The shared behaviour runs on the cluster through the ``store`` fixture (tests/contracts); these
tests pin what only the cluster path does.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from otp_service.store import CodeStatus, LimitRule, store_from_url
from otp_service.store.base import CodeRecord, Tally
from otp_service.store.redis import ClusterRedisStore
from tests.redis_server import RedisProcess

pytestmark = pytest.mark.redis

NOW = 1_800_000_000.0


@pytest.fixture
def cluster_store(redis_cluster_url: str) -> Iterator[ClusterRedisStore]:
    backend = store_from_url(redis_cluster_url)
    assert isinstance(backend, ClusterRedisStore)
    try:
        yield backend
    finally:
        backend.close()


def _other_clients(nodes: list[RedisProcess]) -> int:
    """Client connections on every node, not counting the one asking."""
    total = 0
    for node in nodes:
        probe = redis.Redis(port=node.port)
        try:
            total += len(probe.client_list()) - 1
        finally:
            probe.close()
    return total


def test_close_releases_every_nodes_connections_after_threads(
    redis_cluster: list[RedisProcess], redis_cluster_url: str
) -> None:
    backend = ClusterRedisStore.from_url(redis_cluster_url)
    try:

        def work(worker: int) -> None:
            for i in range(30):
                backend.put(f"t{worker}:{i}", b"v", ttl=60, now=NOW)

        threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert _other_clients(redis_cluster) > 0
    finally:
        backend.close()
    deadline = time.monotonic() + 5
    while _other_clients(redis_cluster) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _other_clients(redis_cluster) == 0


def test_later_slot_refusing_takes_back_earlier_hits(cluster_store: ClusterRedisStore) -> None:
    first = LimitRule("a", "lim:a", amount=5, window=60)
    full = LimitRule("b", "lim:bb", amount=1, window=60)
    assert cluster_store.admit(denials=(), limits=[full], now=NOW, token="t0").allowed
    refused = cluster_store.admit(denials=(), limits=[first, full], now=NOW, token="t1")
    assert (refused.allowed, refused.refused_by) == (False, "b")
    assert [u.used for u in cluster_store.window_usage([first, full], now=NOW)] == [0, 1]


def test_code_is_stored_only_when_every_slot_admits(cluster_store: ClusterRedisStore) -> None:
    full = LimitRule("ip", "lim:ip", amount=1, window=60)
    code = CodeRecord("{tag}:code", b"digest", ttl=300, max_attempts=5)
    assert cluster_store.admit(denials=(), limits=[full], now=NOW, token="t0").allowed
    assert not cluster_store.admit(
        denials=(), limits=[full], now=NOW, token="t1", code=code
    ).allowed
    assert cluster_store.verify_code(code.key, [b"digest"], now=NOW).status is CodeStatus.EXPIRED
    free = LimitRule("ip", "lim:other-ip", amount=1, window=60)
    assert cluster_store.admit(denials=(), limits=[free], now=NOW, token="t2", code=code).allowed
    assert cluster_store.verify_code(code.key, [b"digest"], now=NOW).status is CodeStatus.APPROVED


def test_approval_adds_counters_in_other_slots(cluster_store: ClusterRedisStore) -> None:
    cluster_store.put_code("{tag}:code", b"digest", ttl=300, max_attempts=5, now=NOW)
    tally = Tally({"{tag}:ok": 1, "pump:ip:ok": 1}, ttl=60)
    check = cluster_store.verify_code(
        "{tag}:code", [b"digest"], now=NOW, token=uuid.uuid4().hex, on_approve=tally
    )
    assert check.status is CodeStatus.APPROVED
    assert cluster_store.tally({}, ["{tag}:ok", "pump:ip:ok"], ttl=60, now=NOW) == [1, 1]
