"""In-process CPU per request: where a request's CPU goes, without gunicorn, wrk or the network.

``python -m bench.inprocess`` calls the WSGI apps directly (a built ``environ`` per request) and
the service's methods directly, on a private ``redis-server``, with the load run's settings and
the sidecar's JSON logging (to ``/dev/null``). Each figure is the best of five batches of
``time.process_time()`` per request, so a busy machine inflates it less than a load run. Rows:

- ``hello-world``: :mod:`bench.hello`, the ceiling (Flask, werkzeug, JSON in and out);
- ``HTTP``: the route through the app, as a worker runs it minus gunicorn;
- ``service``: the :class:`OtpService` call alone (store, audit, metrics included);
- ``HTTP, service stubbed``: the route with the service call replaced by a constant answer, so
  Flask, werkzeug and our HTTP layer (hooks, body checks, client address) alone;
- ``refused: …``: ``/send-code`` requests that abuse traffic mostly is — a malformed body, an
  invalid number, a missing captcha, a number in its cooldown, an address over its limit — with
  their cost as a share of an accepted send (issue 18 asks for at most half).

Metrics count in one process's memory here; the load run's workers write ``prometheus_client``'s
multiprocess files instead, about a microsecond more per counter.

``--profile send`` also writes ``send-HTTP.prof`` and ``send-service.prof`` (cProfile with a
CPU-time timer) in the current directory, for the rows whose name starts with the word given.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import itertools
import logging
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

from bench.hello import app as hello
from bench.load import HIGH_LIMITS, RIGHT_CODE, Stack, free_port, seed_codes, started
from otp_service.app import create_app
from otp_service.audit import JsonLineFormatter
from otp_service.service import Approval, OtpService, SendReceipt
from otp_service.settings import Settings
from otp_service.store import MemoryStore

BATCHES = 5


def environ(path: str, body: str, client_ip: str) -> dict[str, Any]:
    """A WSGI environ as gunicorn builds it for a JSON POST from a trusted proxy."""
    data = body.encode()
    return {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path,
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(data)),
        "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_X_FORWARDED_FOR": client_ip,
        "wsgi.input": io.BytesIO(data),
        "wsgi.errors": sys.stderr,
        "wsgi.url_scheme": "http",
        "wsgi.version": (1, 0),
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }


def wsgi_call(app: Any, env: dict[str, Any]) -> None:
    """One request through ``app``, its body read to the end as a server would."""
    body = app(env, lambda status, headers, exc_info=None: None)
    b"".join(body)
    getattr(body, "close", lambda: None)()


def cpu_per_call(calls: Iterable[Callable[[], object]], profile: Path | None) -> float:
    """Best-of-batches CPU µs per call; each call is made once."""
    pending = list(calls)
    size = len(pending) // BATCHES
    profiler = cProfile.Profile(time.process_time) if profile else None
    best = float("inf")
    for batch in range(BATCHES):
        chunk = pending[batch * size : (batch + 1) * size]
        if profiler:
            profiler.enable()
        started_at = time.process_time()
        for call in chunk:
            call()
        best = min(best, (time.process_time() - started_at) / size * 1e6)
        if profiler:
            profiler.disable()
    if profiler and profile:
        profiler.dump_stats(profile)
    return best


def main(argv: list[str] | None = None) -> int:
    """Start a private redis-server, measure, stop it (by PID, also on failure)."""
    parser = argparse.ArgumentParser(prog="python -m bench.inprocess", description=__doc__)
    parser.add_argument("--requests", type=int, default=3000, help="per row (default 3000)")
    parser.add_argument("--profile", default="", help="row name prefix to profile, e.g. send")
    parser.add_argument(
        "--out",
        type=Path,
        help="also write the table to this markdown file, e.g. bench/results/inprocess-refusals.md",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="otp-inprocess-") as workdir:
        port = free_port()
        redis_args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        with started([*redis_args, "--dir", workdir], dict(os.environ), port, Path(workdir) / "r"):
            table = run(args.requests, args.profile, port)
    print(table)
    if args.out:
        stamp = datetime.now(UTC).date().isoformat()
        title = f"# bench.inprocess, {stamp}, {args.requests:,} requests per row, best of 5 batches"
        args.out.write_text(f"{title}, CPU time\n\n{table}\n")
    return 0


def run(n: int, profile: str, port: int) -> str:
    """Measure every row on the Redis at ``port``; the markdown table."""
    handler = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115 - lives for the run
    handler.setFormatter(JsonLineFormatter())
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    settings = Settings.from_env(
        {
            **HIGH_LIMITS,
            "OTP_ENV": "testing",
            "OTP_SECRET_KEY": secrets.token_urlsafe(48),
            "OTP_REDIS_URL": f"redis://127.0.0.1:{port}/0",
            "OTP_SMS_GATEWAY": "console",
            "OTP_CAPTCHA_MODE": "off",
            "OTP_TRUSTED_PROXIES": "127.0.0.1/32",
            "OTP_CODE_TTL": "600",
            "OTP_MAX_ATTEMPTS": "20",
        }
    )
    app = create_app(settings)
    service: OtpService = app.extensions["otp_service"]
    seed_codes(Stack(redis.Redis(port=port), settings), service, 0, 2 * n + 400)
    numbers = itertools.count(10_000_000)
    seeded = itertools.count(0)
    rng = secrets.SystemRandom()

    def ip() -> str:
        return f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"

    def send_body() -> str:
        return f'{{"phone": "+86138{next(numbers):08d}"}}'

    def verify_body() -> str:
        return f'{{"phone": "+86139{next(seeded):08d}", "code": "{RIGHT_CODE}"}}'

    rows: list[tuple[str, Callable[[], Callable[[], object]]]] = [
        ("hello-world", lambda: _http(hello, "/hello", '{"phone": "+8613800000000"}', ip())),
        ("send: HTTP", lambda: _http(app, "/send-code", send_body(), ip())),
        ("send: service", lambda: _direct_send(service, f"+86138{next(numbers):08d}", ip())),
        ("verify: HTTP", lambda: _http(app, "/verify", verify_body(), ip())),
        ("verify: service", lambda: _direct_verify(service, f"+86139{next(seeded):08d}", ip())),
    ]

    def refusing_app(db: int, **extra: str) -> Any:
        """An app on its own Redis database that refuses what the accepted rows let through."""
        env = {**HIGH_LIMITS, "OTP_ENV": "testing", "OTP_SECRET_KEY": settings.secret_key}
        env |= {"OTP_REDIS_URL": f"redis://127.0.0.1:{port}/{db}", "OTP_SMS_GATEWAY": "console"}
        env |= {"OTP_TRUSTED_PROXIES": "127.0.0.1/32", "OTP_CAPTCHA_MODE": "off", **extra}
        return create_app(Settings.from_env(env))

    captcha_always = refusing_app(1, OTP_CAPTCHA_MODE="always")
    one_per_ip = refusing_app(2, OTP_LIMITS_IP="1/hour")
    limited_ip = ip()
    rows += [
        ("refused: malformed body", lambda: _http(app, "/send-code", '{"phone": ', ip())),
        ("refused: invalid number", lambda: _http(app, "/send-code", '{"phone": "+861"}', ip())),
        (
            "refused: missing captcha",
            lambda: _http(captcha_always, "/send-code", send_body(), ip()),
        ),
        (
            "refused: rate-limited number",
            lambda: _http(app, "/send-code", '{"phone": "+8613700000001"}', ip()),
        ),
        (
            "refused: rate-limited IP",
            lambda: _http(one_per_ip, "/send-code", send_body(), limited_ip),
        ),
    ]
    figures = {}
    for name, make in rows:
        for _ in range(100):  # warm: imports, pool, script cache
            make()()
        slug = name.replace(": ", "-").replace(" ", "_")
        target = Path(f"{slug}.prof") if profile and name.startswith(profile) else None
        figures[name] = cpu_per_call([make() for _ in range(n)], target)
    stubbed = _stubbed_http(settings, n, ip)
    figures.update(stubbed)
    hello_cpu = figures["hello-world"]
    accepted = figures["send: HTTP"]
    lines = ["| row | CPU µs/request | × hello-world | × accepted send |", "|---|---|---|---|"]
    for name, value in figures.items():
        lines.append(f"| {name} | {value:.0f} | {value / hello_cpu:.2f} | {value / accepted:.2f} |")
    return "\n".join(lines)


def _http(app: Any, path: str, body: str, client_ip: str) -> Callable[[], object]:
    env = environ(path, body, client_ip)
    return lambda: wsgi_call(app, env)


def _direct_send(service: OtpService, phone: str, client_ip: str) -> Callable[[], object]:
    return lambda: service.send_code(phone, client_ip=client_ip)


def _direct_verify(service: OtpService, phone: str, client_ip: str) -> Callable[[], object]:
    return lambda: service.verify(phone, RIGHT_CODE, client_ip=client_ip)


def _stubbed_http(settings: Settings, n: int, ip: Callable[[], str]) -> dict[str, float]:
    """The routes with the service answering a constant: Flask and our HTTP layer alone."""

    class Stubbed(OtpService):
        def send_code(self, *args: Any, **kwargs: Any) -> SendReceipt:
            return SendReceipt(
                phone="+86138****0000", purpose="default", expires_in=600, resend_after=60
            )

        def verify(self, *args: Any, **kwargs: Any) -> Approval:
            return Approval(
                phone="+8613800000000", purpose="default", token="t" * 140, expires_in=900
            )

    app = create_app(service=Stubbed(settings, store=MemoryStore()))
    send = '{"phone": "+8613800000000"}'
    verify = '{"phone": "+8613800000000", "code": "246810"}'
    return {
        "send: HTTP, service stubbed": cpu_per_call(
            [_http(app, "/send-code", send, ip()) for _ in range(n)], None
        ),
        "verify: HTTP, service stubbed": cpu_per_call(
            [_http(app, "/verify", verify, ip()) for _ in range(n)], None
        ),
    }


if __name__ == "__main__":
    sys.exit(main())
