"""The store fails under real HTTP load: every answer is normal or a 503 problem, and it recovers.

The service runs on a real loopback socket with a redis-server of the test's own. Killing that
server (or pausing it past the client's socket timeout) must never produce a 500 or a stack
trace, never let an SMS out while limits cannot be checked, and must heal without restarting the
app. ``tests/test_service.py`` covers the same stance one call at a time; this file adds the
concurrency and the HTTP edge.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis
import requests
from flask import Flask
from werkzeug.serving import make_server

from otp_service import ConsoleGateway
from otp_service.app import create_app
from otp_service.settings import Settings
from otp_service.store.redis import RedisStore
from tests.redis_server import RedisProcess

pytestmark = pytest.mark.redis

CLIENTS = 6
#: A client gives up after this long; the store's own timeouts are far shorter.
HTTP_TIMEOUT = 5.0
NORMAL = {200, 202}


@dataclass
class Outcome:
    """One HTTP exchange, with the load phase it started and ended in."""

    started: str
    ended: str
    status: int
    content_type: str
    body: str


@dataclass
class Load:
    """Client threads sending and verifying distinct numbers until told to stop.

    ``phase`` is read when a request starts and when it ends; ``inflight`` counts requests still
    open per starting phase, so the test can wait for the last pre-outage request to finish before
    it declares the outage started.
    """

    base_url: str
    gateway: ConsoleGateway
    phase: str = "up"
    outcomes: list[Outcome] = field(default_factory=list)
    inflight: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)
    numbers: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def set_phase(self, phase: str) -> None:
        with self.lock:
            self.phase = phase

    def count(self, phase: str, *, ended: str | None = None) -> int:
        with self.lock:
            return sum(
                1
                for o in self.outcomes
                if o.started == phase and (ended is None or o.ended == ended)
            )

    def wait_idle(self, *phases: str) -> None:
        deadline = time.monotonic() + HTTP_TIMEOUT * 2
        while time.monotonic() < deadline:
            with self.lock:
                if all(self.inflight.get(p, 0) == 0 for p in phases):
                    return
            time.sleep(0.01)
        pytest.fail(f"requests started in {phases} still open after {HTTP_TIMEOUT * 2} s")

    def _post(
        self, http: requests.Session, path: str, body: dict[str, str]
    ) -> requests.Response | None:
        with self.lock:
            started = self.phase
            self.inflight[started] = self.inflight.get(started, 0) + 1
        response: requests.Response | None = None
        try:
            response = http.post(f"{self.base_url}{path}", json=body, timeout=HTTP_TIMEOUT)
        finally:
            with self.lock:
                self.inflight[started] -= 1
                self.outcomes.append(
                    Outcome(
                        started,
                        self.phase,
                        response.status_code if response is not None else 0,
                        response.headers.get("Content-Type", "") if response is not None else "",
                        response.text if response is not None else "no response",
                    )
                )
        return response

    def client(self) -> None:
        with requests.Session() as http:
            while not self.stop.is_set():
                with self.lock:
                    phone = f"+86138{next(self.numbers):08d}"
                sent = self._post(http, "/send-code", {"phone": phone})
                code = self.gateway.last_code(phone)
                if sent is not None and sent.status_code == 202 and code is not None:
                    self._post(http, "/verify", {"phone": phone, "code": code})


def _settings(settings_factory: Callable[..., Settings]) -> Settings:
    """Limits high enough that load alone never trips them: only the store may refuse."""
    return settings_factory(
        limits_ip="100000/minute",
        limits_subnet="100000/minute",
        limits_ipv6_site="100000/minute",
        limits_prefix="100000/hour",
        limits_global="100000/hour",
        limits_verify_ip="100000/minute",
        limits_verify_subnet="100000/minute",
        limits_verify_ipv6_site="100000/minute",
    )


@pytest.fixture
def serve() -> Iterator[Callable[[Flask], str]]:
    """Serve apps on loopback sockets; every server is shut down even if the test fails."""
    running: list[tuple[Any, threading.Thread]] = []

    def start(app: Flask) -> str:
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        running.append((server, thread))
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server, thread in running:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


def _assert_problem_or_normal(outcome: Outcome) -> None:
    """A success, 503 ``store_unavailable``, or ``code_expired``.

    The last is honest too: a code sent just before the kill lived in a server without
    persistence, so its verify after the restart finds nothing.
    """
    assert "Traceback" not in outcome.body
    assert outcome.status != 500, outcome.body
    if outcome.status in NORMAL:
        return
    assert outcome.content_type == "application/problem+json", outcome.body
    expected = {503: "store_unavailable", 400: "code_expired"}
    assert outcome.status in expected, outcome.body
    assert json.loads(outcome.body)["code"] == expected[outcome.status]


def _wait_for(predicate: Callable[[], bool], what: str, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_killing_redis_under_load_fails_closed_and_recovers_without_restart(
    redis_process: RedisProcess,
    settings_factory: Callable[..., Settings],
    serve: Callable[[Flask], str],
) -> None:
    gateway = ConsoleGateway()
    store = RedisStore.from_url(redis_process.url)
    base_url = serve(create_app(_settings(settings_factory), store=store, gateway=gateway))
    load = Load(base_url, gateway)
    clients = [threading.Thread(target=load.client) for _ in range(CLIENTS)]
    for thread in clients:
        thread.start()
    try:
        _wait_for(lambda: load.count("up") >= 40, "load before the outage")

        load.set_phase("killing")
        redis_process.stop()
        load.set_phase("down")
        load.wait_idle("up", "killing")
        sent_when_down = len(gateway.sent)
        _wait_for(lambda: load.count("down", ended="down") >= 40, "requests during the outage")
        ready = requests.get(f"{base_url}/readyz", timeout=HTTP_TIMEOUT)
        sent_at_restart = len(gateway.sent)

        load.set_phase("restarting")
        redis_process.start()
        _wait_for(
            lambda: (
                requests.post(
                    f"{base_url}/send-code", json={"phone": "+8613900000001"}, timeout=HTTP_TIMEOUT
                ).status_code
                == 202
            ),
            "the service to recover",
        )
        load.set_phase("recovered")
        _wait_for(lambda: load.count("recovered") >= 40, "load after recovery")
    finally:
        load.stop.set()
        for thread in clients:
            thread.join(timeout=HTTP_TIMEOUT * 2)
        store.close()

    assert not any(thread.is_alive() for thread in clients)
    for outcome in load.outcomes:
        _assert_problem_or_normal(outcome)
    during = [o for o in load.outcomes if o.started == o.ended == "down"]
    assert during and all(o.status == 503 for o in during)
    assert sent_at_restart == sent_when_down, "an SMS left while the store was down"
    assert ready.status_code == 503
    assert ready.json()["code"] == "store_unavailable"
    before = [o.status for o in load.outcomes if o.started == o.ended == "up"]
    after = [o.status for o in load.outcomes if o.started == "recovered"]
    assert set(before) <= NORMAL and 202 in before and 200 in before
    assert set(after) <= NORMAL and 202 in after and 200 in after
    assert requests.get(f"{base_url}/readyz", timeout=HTTP_TIMEOUT).status_code == 200


def test_redis_slower_than_the_socket_timeout_fails_closed_and_recovers(
    redis_process: RedisProcess,
    settings_factory: Callable[..., Settings],
    serve: Callable[[Flask], str],
) -> None:
    pause_ms = 3000
    gateway = ConsoleGateway()
    client: redis.Redis = redis.Redis.from_url(
        redis_process.url, socket_timeout=0.3, socket_connect_timeout=0.3
    )
    admin: redis.Redis = redis.Redis.from_url(redis_process.url)
    store = RedisStore(client)
    base_url = serve(create_app(_settings(settings_factory), store=store, gateway=gateway))
    try:
        assert (
            requests.post(
                f"{base_url}/send-code", json={"phone": "+8613812340001"}, timeout=HTTP_TIMEOUT
            ).status_code
            == 202
        )
        sent_before = len(gateway.sent)
        admin.execute_command("CLIENT", "PAUSE", pause_ms, "ALL")
        started = time.monotonic()
        try:
            slow = requests.post(
                f"{base_url}/send-code", json={"phone": "+8613812340002"}, timeout=HTTP_TIMEOUT
            )
            ready = requests.get(f"{base_url}/readyz", timeout=HTTP_TIMEOUT)
            waited = time.monotonic() - started
        finally:
            admin.execute_command("CLIENT", "UNPAUSE")
        assert waited < pause_ms / 1000, "the store waited for Redis instead of timing out"
        assert slow.status_code == 503
        assert slow.headers["Content-Type"] == "application/problem+json"
        assert slow.json()["code"] == "store_unavailable"
        assert "Traceback" not in slow.text
        assert ready.status_code == 503
        assert len(gateway.sent) == sent_before

        recovered = requests.post(
            f"{base_url}/send-code", json={"phone": "+8613812340003"}, timeout=HTTP_TIMEOUT
        )
        assert recovered.status_code == 202
        assert len(gateway.sent) == sent_before + 1
    finally:
        store.close()
        admin.close()
