"""Private redis-server processes for tests: free port, no persistence (one variant with AOF),
stopped by PID.

Tests never touch the shared server on 6379. ``OTP_TEST_REDIS_URL`` may point at a server of your
own instead (it is flushed between tests, so never point it at data you care about).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RedisProcess:
    """One redis-server child process; ``stop``/``start`` simulate an outage on the same port."""

    port: int
    workdir: Path
    extra_args: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail(
                "redis-server is not installed: run `apt-get install -y redis-server` "
                "(scripts/test.sh does this) or set OTP_TEST_REDIS_URL",
                pytrace=False,
            )
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
                "--daemonize",
                "no",
                *self.extra_args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    pytest.fail(f"redis-server exited at start (port {self.port})", pytrace=False)
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    time.sleep(0.05)
        finally:
            client.close()
        self.stop()
        pytest.fail(f"redis-server did not answer on port {self.port} within 10 s", pytrace=False)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess | str]:
    """A redis-server for the whole session (or the URL in ``OTP_TEST_REDIS_URL``)."""
    external = os.environ.get("OTP_TEST_REDIS_URL")
    if external:
        yield external
        return
    server = RedisProcess(free_port(), tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisProcess | str) -> Iterator[str]:
    """The private server's URL, flushed before each test."""
    url = redis_server if isinstance(redis_server, str) else redis_server.url
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    yield url


@pytest.fixture(scope="session")
def durable_redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    """A redis-server with AOF on, as docs/operations.md recommends for production."""
    server = RedisProcess(
        free_port(), tmp_path_factory.mktemp("redis-aof"), extra_args=("--appendonly", "yes")
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def durable_redis_url(durable_redis_server: RedisProcess) -> str:
    """The AOF server's URL, flushed before each test."""
    client = redis.Redis.from_url(durable_redis_server.url)
    client.flushdb()
    client.close()
    return durable_redis_server.url


@pytest.fixture
def redis_process(tmp_path: Path) -> Iterator[RedisProcess]:
    """A redis-server of this test's own, for outage tests that stop and restart it."""
    server = RedisProcess(free_port(), tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
