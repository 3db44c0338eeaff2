"""A provider that drips its answer cannot hold a send past OTP_HUAWEI_TIMEOUT (issue 20.5).

Over real HTTP: the app served by a WSGI server with a fixed pool of worker threads (as
gunicorn's ``gthread`` worker has), the real Huawei gateway, and the loopback simulator's
``drip`` fault (prompt headers, then one body byte per interval). Before the total deadline a
2 s timeout let one such send run 28.5 s, and a pool's worth of them starved ``/verify``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from werkzeug.serving import BaseWSGIServer

from otp_service import create_app
from otp_service.settings import Settings
from otp_service.sms.huawei import HuaweiSmsGateway
from otp_service.store import MemoryStore
from tests.conftest import FakeClock
from tests.huawei_sim import Fault, HuaweiSimulator

pytestmark = pytest.mark.memory

TIMEOUT = 1.0
#: Seconds between dripped bytes: each read succeeds far inside the per-read timeout, and the
#: ~300-byte answer would take minutes.
DRIP = 0.4
#: Worker threads of the served app, and dripping sends that occupy all of them.
THREADS = 4
#: One cost unit per message to the mainland, a ceiling of two a day.
BUDGET = {"budget_costs": (("CN", 1.0),), "budget_daily": 2.0}


def number(index: int) -> str:
    return f"+86138000{index:05d}"


class PooledServer(BaseWSGIServer):
    """werkzeug's server with a fixed pool of request threads: a request waits for a free one,
    exactly what starves ``/verify`` when every thread is stuck on the provider."""

    def __init__(self, app: Any, threads: int) -> None:
        super().__init__("127.0.0.1", 0, app)
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="worker")

    def process_request(self, request: Any, client_address: Any) -> None:
        self._pool.submit(self._work, request, client_address)

    def _work(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)

    def server_close(self) -> None:
        super().server_close()
        self._pool.shutdown(wait=True)


@pytest.fixture
def serve(
    settings_factory: Callable[..., Settings], fake_clock: FakeClock
) -> Iterator[Callable[..., str]]:
    """Serve the app on the real gateway against ``sim``; returns its base URL."""
    running: list[tuple[PooledServer, threading.Thread, HuaweiSmsGateway]] = []

    def make(sim: HuaweiSimulator, **overrides: Any) -> str:
        settings = settings_factory(**sim.settings_overrides(huawei_timeout=TIMEOUT, **overrides))
        gateway = HuaweiSmsGateway.from_settings(settings, sleep=lambda _: None)
        app = create_app(settings, store=MemoryStore(), gateway=gateway, clock=fake_clock)
        server = PooledServer(app, THREADS)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
        thread.start()
        running.append((server, thread, gateway))
        return f"http://127.0.0.1:{server.server_port}"

    try:
        yield make
    finally:
        for server, thread, gateway in running:
            server.shutdown()
            thread.join(timeout=10)
            server.server_close()
            gateway.close()


def _post(url: str, body: dict[str, str]) -> tuple[int, dict[str, Any], float]:
    started = time.monotonic()
    with requests.Session() as http:
        http.trust_env = False  # loopback: no proxy from the environment
        response = http.post(url, json=body, timeout=30)
    return response.status_code, response.json(), time.monotonic() - started


def test_a_dripping_answer_is_cut_at_the_timeout_and_stays_charged(
    huawei_sim: HuaweiSimulator, serve: Callable[..., str]
) -> None:
    base = serve(huawei_sim, **BUDGET)
    huawei_sim.inject(Fault(drip=DRIP))

    status, body, elapsed = _post(base + "/send-code", {"phone": number(0)})

    assert (status, body["code"], body["reason"]) == (502, "provider_unavailable", "timeout")
    assert elapsed < TIMEOUT + 1.0
    # The platform accepted the message before it began to drip: it may reach the phone, so it
    # stays charged (issue 17.1).
    assert len(huawei_sim.messages) == 1
    # The number's windows stay counted: a retry is not a fresh send ...
    status, body, _ = _post(base + "/send-code", {"phone": number(0)})
    assert (status, body.get("limit")) == (429, "number")
    # ... and the money stays reserved: one more send fits under the ceiling of two, not two.
    status, body, _ = _post(base + "/send-code", {"phone": number(1)})
    assert status == 202, body
    status, body, _ = _post(base + "/send-code", {"phone": number(2)})
    assert (status, body["code"]) == (503, "budget_exhausted")


def test_verify_answers_while_every_worker_is_on_a_dripping_send(
    huawei_sim: HuaweiSimulator, serve: Callable[..., str]
) -> None:
    base = serve(huawei_sim)
    huawei_sim.inject(*[Fault(drip=DRIP)] * THREADS)

    with ThreadPoolExecutor(THREADS) as clients:
        sends = [
            clients.submit(_post, base + "/send-code", {"phone": number(i)}) for i in range(THREADS)
        ]
        # Every worker thread is now inside the gateway, reading a dripping answer.
        deadline = time.monotonic() + 5
        while huawei_sim.received < THREADS:
            assert time.monotonic() < deadline, "the sends never reached the provider"
            time.sleep(0.01)
        status, body, waited = _post(base + "/verify", {"phone": number(0), "code": "123456"})
        results = [future.result() for future in sends]

    # A worker frees up when the first send hits its deadline, not when its drip would end
    # (about 300 bytes at 0.4 s: two minutes).
    assert status == 400 and body["code"] in {"code_invalid", "code_expired"}
    assert waited < TIMEOUT + 1.5
    assert [(s, b["code"]) for s, b, _ in results] == [(502, "provider_unavailable")] * THREADS
    assert max(elapsed for _, _, elapsed in results) < TIMEOUT + 1.0


def test_an_accepted_answer_past_the_size_cap_is_an_unknown_outcome(
    huawei_sim: HuaweiSimulator, serve: Callable[..., str]
) -> None:
    """The platform accepted the message, but its answer is too big to read: charged, 502."""
    base = serve(huawei_sim)
    huawei_sim.inject(Fault(pad=2 * 1024 * 1024))
    status, body, _ = _post(base + "/send-code", {"phone": number(0)})
    assert (status, body["code"], body["http_status"]) == (502, "provider_unavailable", 200)
    assert len(huawei_sim.messages) == 1
    status, body, _ = _post(base + "/send-code", {"phone": number(0)})
    assert (status, body.get("limit")) == (429, "number")
