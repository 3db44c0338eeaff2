"""A private 3-master Redis Cluster for tests: free ports, no persistence, stopped by PID.

The cluster proves the hash-tag design: every script must touch one slot, or Redis refuses it
with CROSSSLOT. It starts only when a cluster test runs, once per session.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.redis_server import RedisProcess, free_port

MASTERS = 3
# A node's bus port defaults to its port + 10000, which must stay a valid port; redis-cli
# --cluster create assumes that default even when --cluster-port is given.
MAX_CLIENT_PORT = 55535


def client_port() -> int:
    """A free port a cluster node can listen on for clients."""
    while True:
        port = free_port()
        if port <= MAX_CLIENT_PORT:
            return port


def _cluster_ok(ports: list[int]) -> bool:
    """Every node reports ``cluster_state:ok`` and sees all masters."""
    for port in ports:
        client = redis.Redis(port=port, socket_connect_timeout=0.2, socket_timeout=1)
        try:
            info = client.cluster("info")
        except redis.RedisError:
            return False
        finally:
            client.close()
        if info.get("cluster_state") != "ok" or int(info.get("cluster_known_nodes", 0)) < MASTERS:
            return False
    return True


def start_cluster(workdir: Path) -> list[RedisProcess]:
    """Start the nodes, join them with ``redis-cli --cluster create``, wait for state ok.

    On any failure every started node is stopped before the error propagates.
    """
    cli = shutil.which("redis-cli")
    if cli is None:
        pytest.fail("redis-cli is not installed: run `apt-get install -y redis-server`")
    nodes: list[RedisProcess] = []
    try:
        for index in range(MASTERS):
            port = client_port()
            node_dir = workdir / f"node{index}"
            node_dir.mkdir()
            node = RedisProcess(
                port,
                node_dir,
                extra_args=(
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    str(node_dir / "nodes.conf"),
                    "--cluster-port",
                    str(free_port()),
                    "--cluster-node-timeout",
                    "2000",
                ),
            )
            nodes.append(node)
            node.start()
        subprocess.run(
            [
                cli,
                "--cluster",
                "create",
                *(f"127.0.0.1:{node.port}" for node in nodes),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )
        ports = [node.port for node in nodes]
        deadline = time.monotonic() + 15
        while not _cluster_ok(ports):
            if time.monotonic() > deadline:
                pytest.fail("redis cluster did not reach cluster_state:ok within 15 s")
            time.sleep(0.1)
    except BaseException:
        stop_cluster(nodes)
        raise
    return nodes


def stop_cluster(nodes: list[RedisProcess]) -> None:
    for node in nodes:
        node.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[RedisProcess]]:
    """The cluster's nodes, for the whole session."""
    nodes = start_cluster(tmp_path_factory.mktemp("redis-cluster"))
    try:
        yield nodes
    finally:
        stop_cluster(nodes)


@pytest.fixture
def redis_cluster_url(redis_cluster: list[RedisProcess]) -> Iterator[str]:
    """``redis+cluster://`` URL of the private cluster, every master flushed before each test."""
    for node in redis_cluster:
        client = redis.Redis(port=node.port)
        try:
            client.flushall()
        finally:
            client.close()
    yield f"redis+cluster://127.0.0.1:{redis_cluster[0].port}"
