"""Load benchmark: the service's routes against a hello-world ceiling, in one run, on one machine.

Everything runs on loopback: a private ``redis-server`` on a free port, the service under gunicorn
(the shipped ``otp_service.gunicorn_conf``, 2 workers; ``sync`` and ``gthread`` variants), a second
service with the captcha on (for ``POST /captcha`` and the missing-captcha refusal), a third with
a tight per-address limit (for the limit refusals), and :mod:`bench.hello` under the very same
gunicorn configuration as the ceiling. ``wrk`` drives each target at 16 connections, and the
hot routes again at 64; within each repetition the targets run one after the other
(interleaved), so a noisy moment hits one repetition of every target rather than every
repetition of one, and each ratio compares a target with the hello-world run of the same
repetition, variant and connection count.

The ``refused: …`` rows are what an abuse flood mostly is (issue 18): a malformed body, an
invalid number, a send without the captcha, a number in its resend interval and an address
over its limit. Their "CPU × send" column is their CPU per request over an accepted send's.

Per run it records req/s, p50 and p99 (from wrk), the Redis commands per request (``INFO
commandstats`` deltas, reset before each run) and the workers' CPU µs per request (``utime +
stime`` deltas from ``/proc/<pid>/stat``). Separately, with the same app in-process (Flask's
test client), it counts the Redis round trips per HTTP request of each target at the client:
every write of a command (or a whole pipeline) to the socket is one round trip. Results:
``bench/results/load.jsonl`` (one line per run) and ``bench/results/load-summary.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
from redis.connection import Connection

from otp_service.core.codes import code_digest
from otp_service.core.keys import phone_tag
from otp_service.core.purpose import validate_purpose
from otp_service.service import OtpService
from otp_service.settings import Settings

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "results"
WRK_SCRIPT = BENCH_DIR / "wrk" / "otp.lua"
RIGHT_CODE = "246810"
WRK_THREADS = 2
#: Verify targets use pre-seeded numbers (+86139 and 8 digits); each block is used by one run.
SEED_BLOCK = 1_000_000
#: Limits far above what a run reaches, so every limit is checked and counted but none refuses.
HIGH_LIMITS = {
    "OTP_LIMITS_NUMBER": "1000/hour;10000/day",
    "OTP_LIMITS_IP": "100000/minute;1000000/hour",
    "OTP_LIMITS_SUBNET": "100000/minute;1000000/hour",
    "OTP_LIMITS_IPV6_SITE": "100000/minute;1000000/hour",
    "OTP_LIMITS_PREFIX": "1000000/hour",
    "OTP_LIMITS_GLOBAL": "100000000/hour",
    "OTP_LIMITS_VERIFY_IP": "100000/minute",
    "OTP_LIMITS_VERIFY_SUBNET": "100000/minute",
    "OTP_LIMITS_VERIFY_IPV6_SITE": "100000/minute",
    "OTP_LIMITS_CAPTCHA_IP": "100000/minute;1000000/hour",
    "OTP_LIMITS_CAPTCHA_SUBNET": "100000/minute;1000000/hour",
    "OTP_LIMITS_CAPTCHA_IPV6_SITE": "100000/minute;1000000/hour",
    # The per-worker render cap (40 images/s) would answer most /captcha runs 429 at once: the
    # row measures what drawing costs, so the cap is lifted here.
    "OTP_CAPTCHA_RENDER_IMAGES": "",
    "OTP_PUMPING_FLOOR": "1000000",
    "OTP_PUMPING_COUNTRY_FLOOR": "1000000",
}
#: The 4th server's limits: HIGH_LIMITS but an address may send 10 an hour, so the
#: ``refused_ip`` run (one fixed address) is refused from its 11th request on.
LIMITED_IP = {"OTP_LIMITS_IP": "10/hour;100/day"}
#: (name, route label, server, connections) in the order each repetition runs them. The
#: ``refused_*`` rows are the abuse mix of issue 18: each is refused by the check its name says.
TARGETS = (
    ("hello", "hello-world", "hello", 16),
    ("send", "/send-code (new numbers)", "service", 16),
    ("verify_wrong", "/verify (wrong code: 400 expected)", "service", 16),
    ("verify_right", "/verify (right code)", "service", 16),
    ("token", "/tokens/check", "service", 16),
    ("captcha", "/captcha (captcha on)", "captcha", 16),
    ("refused_malformed", "refused: malformed body", "service", 16),
    ("refused_invalid", "refused: invalid number", "service", 16),
    ("refused_captcha", "refused: missing captcha", "captcha", 16),
    ("refused_number", "refused: rate-limited number", "limited", 16),
    ("refused_ip", "refused: rate-limited IP", "limited", 16),
    ("hello", "hello-world", "hello", 64),
    ("send", "/send-code (new numbers)", "service", 64),
    ("verify_wrong", "/verify (wrong code: 400 expected)", "service", 64),
    ("verify_right", "/verify (right code)", "service", 64),
)
#: Uncounted requests before each round-trip count: more than ``LIMITED_IP`` lets through.
PRIMED = 12
#: (load target, server) whose HTTP requests the round-trip count repeats in-process.
ROUND_TRIP_TARGETS = (
    ("send", "service"),
    ("verify_wrong", "service"),
    ("verify_right", "service"),
    ("captcha", "captcha"),
    ("refused_malformed", "service"),
    ("refused_invalid", "service"),
    ("refused_captcha", "captcha"),
    ("refused_number", "limited"),
    ("refused_ip", "limited"),
)
JSON = {"Content-Type": "application/json"}
#: (target, server) run once for a second before the measured repetitions.
WARM_UP = (
    ("hello", "hello"),
    ("send", "service"),
    ("captcha", "captcha"),
    ("refused_number", "limited"),
)
VARIANTS = {"sync": "--worker-class sync", "gthread": "--worker-class gthread --threads 4"}


def free_port() -> int:
    """A loopback port nobody listens on now (the kernel picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """Block until ``port`` accepts connections; fail early if ``process`` died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout}s")


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop one process we started, by its PID: TERM, then KILL if it lingers."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def worker_pids(master: int) -> list[int]:
    """The gunicorn workers: the master's children, read from ``/proc``."""
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return [int(pid) for pid in children]


def cpu_ticks(pids: list[int]) -> int:
    """``utime + stime`` of ``pids`` in clock ticks (fields 14 and 15 of ``/proc/<pid>/stat``)."""
    total = 0
    for pid in pids:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])
    return total


def command_calls(client: redis.Redis) -> dict[str, int]:
    """``INFO commandstats`` as command -> calls (scripts' inner commands included)."""
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}


@dataclass
class Server:
    """A gunicorn we started, with its port and master process."""

    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Stack:
    """Every process of one variant, and what the runs need to know about them."""

    redis_client: redis.Redis
    settings: Settings
    servers: dict[str, Server] = field(default_factory=dict)


def service_env(base: dict[str, str], **extra: str) -> dict[str, str]:
    """The environment of one gunicorn (service, captcha service or hello-world)."""
    env = dict(base)
    env.update(extra)
    return env


@contextlib.contextmanager
def started(
    args: list[str], env: dict[str, str], port: int, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Start a process (its output to ``log``), wait for ``port``, and always stop it by PID."""
    with log.open("ab") as out:
        process = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)  # noqa: S603
    try:
        wait_for_port(port, process)
        yield process
    finally:
        stop(process)


def gunicorn_args(app: str) -> list[str]:
    """gunicorn with the shipped configuration file; the worker class comes from the env."""
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        "python:otp_service.gunicorn_conf",
        app,
    ]


def seed_codes(stack: Stack, service: OtpService, start: int, count: int) -> None:
    """Store ``RIGHT_CODE`` for numbers ``start .. start+count`` the way a send would.

    Through the store's own ``put_code`` and the service's keys, so the HTTP ``/verify`` finds
    exactly what ``/send-code`` would have left; without the send's SMS, limits and audit.
    """
    purpose = validate_purpose(None)
    settings = stack.settings
    tag_key = service._tag_key  # noqa: SLF001 - the bench seeds codes as the service keys them
    code_key = service._code_keys[0]  # noqa: SLF001

    def put(n: int) -> None:
        e164 = f"+86139{n:08d}"
        digest = code_digest(code_key, phone=e164, purpose=purpose, code=RIGHT_CODE)
        service.store.put_code(
            service.keys.code(phone_tag(tag_key, e164), purpose),
            digest,
            ttl=settings.code_ttl,
            max_attempts=settings.max_attempts,
            now=time.time(),
        )

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, range(start, start + count)))


def in_process_request(target: str, n: int) -> tuple[str, str, str]:
    """Path, body and client address of the ``n``-th in-process request of ``target``.

    The same shapes ``bench/wrk/otp.lua`` sends, on numbers and addresses of their own.
    """
    address = f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 254 + 1}"
    bodies = {
        "send": ("/send-code", f'{{"phone": "+86138{n:08d}"}}', address),
        "verify_wrong": ("/verify", f'{{"phone": "+86139{n:08d}", "code": "000000"}}', address),
        "verify_right": (
            "/verify",
            f'{{"phone": "+86139{n:08d}", "code": "{RIGHT_CODE}"}}',
            address,
        ),
        "captcha": ("/captcha", "{}", address),
        "refused_malformed": ("/send-code", '{"phone": "+86138', address),
        "refused_invalid": ("/send-code", '{"phone": "+86123"}', address),
        "refused_captcha": ("/send-code", f'{{"phone": "+86138{n:08d}"}}', address),
        "refused_number": ("/send-code", '{"phone": "+8613700000002"}', address),
        "refused_ip": ("/send-code", f'{{"phone": "+86136{n:08d}"}}', "10.201.0.1"),
    }
    return bodies[target]


def post_json(url: str, body: dict[str, str]) -> dict[str, Any]:
    """POST JSON and return the JSON answer (the bench's own setup calls)."""
    request = urllib.request.Request(  # noqa: S310 - loopback URL we built
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        answer: dict[str, Any] = json.loads(response.read())
        return answer


def run_wrk(
    url: str, duration: float, env: dict[str, str], connections: int = 16
) -> dict[str, Any]:
    """One wrk run; its ``done()`` prints the figures as a JSON line."""
    completed = subprocess.run(  # noqa: S603
        [
            "wrk",
            f"-t{WRK_THREADS}",
            f"-c{connections}",
            f"-d{max(1, round(duration))}s",
            "-s",
            str(WRK_SCRIPT),
            url,
        ],
        env={**os.environ, **env, "BENCH_THREADS": str(WRK_THREADS)},
        capture_output=True,
        text=True,
        check=True,
        timeout=duration + 60,
    )
    for line in completed.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            figures: dict[str, Any] = json.loads(line.removeprefix("BENCH_JSON "))
            return figures
    raise RuntimeError(f"wrk printed no figures: {completed.stdout}{completed.stderr}")


@dataclass
class Bench:
    """One benchmark run: options, the machine's processes, and the result lines."""

    duration: float
    reps: int
    variants: list[str]
    workdir: Path
    records: list[dict[str, Any]] = field(default_factory=list)
    seeded_blocks: int = 0

    def run(self) -> list[dict[str, Any]]:
        redis_port = free_port()
        redis_args = [
            "redis-server",
            "--port",
            str(redis_port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.workdir),
        ]
        with started(redis_args, dict(os.environ), redis_port, self.workdir / "redis.log"):
            client = redis.Redis(port=redis_port)
            for variant in self.variants:
                self.run_variant(variant, client, f"redis://127.0.0.1:{redis_port}/0")
        return self.records

    def run_variant(self, variant: str, client: redis.Redis, redis_url: str) -> None:
        base = {
            **os.environ,
            **HIGH_LIMITS,
            "OTP_ENV": "testing",
            "OTP_SECRET_KEY": secrets.token_urlsafe(48),
            "OTP_REDIS_URL": redis_url,
            "OTP_SMS_GATEWAY": "console",
            "OTP_CAPTCHA_MODE": "off",
            "OTP_TRUSTED_PROXIES": "127.0.0.1/32",
            "OTP_CODE_TTL": "600",
            "OTP_MAX_ATTEMPTS": "20",
            "OTP_WORKERS": "2",
            "GUNICORN_CMD_ARGS": VARIANTS[variant],
        }
        settings = Settings.from_env(base)
        stack = Stack(redis_client=client, settings=settings)
        service = OtpService(settings)
        with contextlib.ExitStack() as stack_of_processes:
            for name, app, extra in (
                ("hello", "bench.hello:app", {}),
                ("service", "otp_service.app:create_app()", {}),
                ("captcha", "otp_service.app:create_app()", {"OTP_CAPTCHA_MODE": "always"}),
                ("limited", "otp_service.app:create_app()", LIMITED_IP),
            ):
                port = free_port()
                metrics_dir = self.workdir / f"metrics-{variant}-{name}"
                env = service_env(
                    base,
                    **extra,
                    OTP_BIND=f"127.0.0.1:{port}",
                    PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
                )
                log = self.workdir / f"{variant}-{name}.log"
                process = stack_of_processes.enter_context(
                    started(gunicorn_args(app), env, port, log)
                )
                stack.servers[name] = Server(port, process)
            self.round_trips(variant, base)
            wrong_base = self.seed(stack, service)
            token_answer = self.verified_token(stack, service)
            # Warm-up of every server: imports, pools, script cache, the workers' first requests.
            for target, server_name in WARM_UP:
                run_wrk(stack.servers[server_name].url, 1, {"BENCH_TARGET": target})
            for rep in range(1, self.reps + 1):
                for name, label, server_name, connections in TARGETS:
                    env = {"BENCH_TARGET": name, "BENCH_TOKEN": token_answer}
                    if name == "verify_wrong":
                        env.update(BENCH_BASE=str(wrong_base), BENCH_COUNT=str(SEED_BLOCK))
                    elif name == "verify_right":
                        env.update(
                            BENCH_BASE=str(self.seed(stack, service)),
                            BENCH_COUNT=str(SEED_BLOCK),
                        )
                    self.records.append(
                        self.measure(
                            stack, variant, rep, name, label, server_name, env, connections
                        )
                    )
                    print(self.describe(self.records[-1]), file=sys.stderr, flush=True)

    def seed(self, stack: Stack, service: OtpService) -> int:
        """Seed a fresh block of numbers with a code, enough for one run; its first number."""
        start = self.seeded_blocks * SEED_BLOCK
        self.seeded_blocks += 1
        seed_count = int(self.duration * 4000)
        seed_codes(stack, service, start, seed_count)
        return start

    def verified_token(self, stack: Stack, service: OtpService) -> str:
        """A real token from the running service, for the ``/tokens/check`` runs."""
        start = self.seed(stack, service)
        answer = post_json(
            stack.servers["service"].url + "/verify",
            {"phone": f"+86139{start:08d}", "code": RIGHT_CODE},
        )
        return str(answer["token"])

    def round_trips(self, variant: str, base: dict[str, str]) -> None:
        """Round trips and commands per HTTP request of each load target, counted at the client.

        The request goes through the real WSGI app in-process (Flask's test client) with the
        settings of the server the load run uses, so the count is the whole request's: admission,
        code, audit. Each target first gets ``PRIMED`` uncounted requests (the cooldown's first
        send, the limited address's first ten), then ``calls`` counted ones.
        """
        from otp_service.app import create_app

        counts = {"writes": 0}
        original: Callable[..., None] = Connection.send_packed_command

        def counting(self: Connection, command: Any, check_health: bool = True) -> None:
            counts["writes"] += 1
            original(self, command, check_health)

        settings = Settings.from_env(base)
        apps = {
            "service": create_app(settings),
            "captcha": create_app(Settings.from_env({**base, "OTP_CAPTCHA_MODE": "always"})),
            "limited": create_app(Settings.from_env({**base, **LIMITED_IP})),
        }
        service: OtpService = apps["service"].extensions["otp_service"]
        calls = 40
        for index, (target, server_name) in enumerate(ROUND_TRIP_TARGETS):
            start = 9_000_000 + index * (calls + PRIMED)
            if target.startswith("verify"):
                stack = Stack(redis_client=service.store.client, settings=settings)  # type: ignore[attr-defined]
                seed_codes(stack, service, start, calls + PRIMED)
            client = apps[server_name].test_client()
            requests = [in_process_request(target, start + i) for i in range(calls + PRIMED)]
            with contextlib.redirect_stdout(io.StringIO()):
                for path, body, forwarded in requests[:PRIMED]:
                    client.post(path, data=body, headers={**JSON, "X-Forwarded-For": forwarded})
                before = command_calls(service.store.client)  # type: ignore[attr-defined]
                Connection.send_packed_command = counting  # type: ignore[method-assign,assignment]
                counts["writes"] = 0
                try:
                    for path, body, forwarded in requests[PRIMED:]:
                        client.post(path, data=body, headers={**JSON, "X-Forwarded-For": forwarded})
                finally:
                    Connection.send_packed_command = original  # type: ignore[method-assign]
            after = command_calls(service.store.client)  # type: ignore[attr-defined]
            commands = {
                name: round((after.get(name, 0) - before.get(name, 0)) / calls, 2)
                for name in after
                if name != "info" and after.get(name, 0) != before.get(name, 0)
            }
            self.records.append(
                {
                    "kind": "round_trips",
                    "variant": variant,
                    "target": target,
                    "calls": calls,
                    "round_trips_per_call": counts["writes"] / calls,
                    "commands_per_call": commands,
                }
            )

    def measure(
        self,
        stack: Stack,
        variant: str,
        rep: int,
        name: str,
        label: str,
        server_name: str,
        env: dict[str, str],
        connections: int,
    ) -> dict[str, Any]:
        server = stack.servers[server_name]
        pids = worker_pids(server.process.pid)
        stack.redis_client.config_resetstat()
        ticks_before = cpu_ticks(pids)
        figures = run_wrk(server.url, self.duration, env, connections)
        ticks = cpu_ticks(pids) - ticks_before
        commands = command_calls(stack.redis_client)
        commands.pop("config", None)
        requests = max(1, int(figures["requests"]))
        tick_us = 1_000_000 / os.sysconf("SC_CLK_TCK")
        return {
            "kind": "load",
            "variant": variant,
            "rep": rep,
            "target": name,
            "label": label,
            "connections": connections,
            "rps": requests / (figures["duration_us"] / 1_000_000),
            "p50_ms": figures["p50_us"] / 1000,
            "p99_ms": figures["p99_us"] / 1000,
            "requests": requests,
            "non_2xx": figures["non_2xx"],
            "socket_errors": figures["socket_errors"],
            "cpu_us_per_request": ticks * tick_us / requests,
            "redis_commands_per_request": round(sum(commands.values()) / requests, 2),
            "redis_commands": {k: round(v / requests, 2) for k, v in sorted(commands.items())},
        }

    @staticmethod
    def describe(record: dict[str, Any]) -> str:
        return (
            f"{record['variant']:8} rep {record['rep']} -c{record['connections']:<3} "
            f"{record['label']:36} "
            f"{record['rps']:8.0f} req/s  p50 {record['p50_ms']:.2f} ms  "
            f"p99 {record['p99_ms']:.2f} ms  non-2xx {record['non_2xx']}"
        )


def machine() -> dict[str, str]:
    """What the figures ran on."""
    free = subprocess.run(["free", "-h"], capture_output=True, text=True, check=False).stdout
    memory = next((line.split()[1] for line in free.splitlines() if line.startswith("Mem:")), "?")
    return {
        "nproc": str(os.cpu_count()),
        "memory": memory,
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "redis": redis_version(),
    }


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def redis_version() -> str:
    out = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True, check=False
    ).stdout
    return next((part[2:] for part in out.split() if part.startswith("v=")), "?")


def spread(values: list[float], fmt: str) -> str:
    """``median (min–max)`` of ``values``."""
    return (
        f"{format(statistics.median(values), fmt)} "
        f"({format(min(values), fmt)}–{format(max(values), fmt)})"
    )


def table(records: list[dict[str, Any]]) -> str:
    """The markdown tables: one row per variant, target and connection count.

    Each ratio compares a run with the hello-world run of the same repetition, variant and
    connection count; "CPU × send" compares a row's CPU per request with the accepted send's at
    16 connections in the same variant (issue 18: a refusal costs at most half).
    """
    loads = [r for r in records if r["kind"] == "load"]
    hello = {(r["variant"], r["rep"], r["connections"]): r for r in loads if r["target"] == "hello"}
    rows: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for record in loads:
        rows.setdefault((record["variant"], record["label"], record["connections"]), []).append(
            record
        )
    send_cpu = {
        variant: statistics.median(r["cpu_us_per_request"] for r in runs)
        for (variant, label, connections), runs in rows.items()
        if runs[0]["target"] == "send" and connections == 16
    }
    trips = {(r["variant"], r["target"]): r for r in records if r["kind"] == "round_trips"}
    lines = [
        "| variant | target | conns | req/s median (min–max) | × hello-world | p50 ms | p99 ms "
        "| p99 × hello | CPU µs/req | CPU × send | Redis cmds/req | round trips/req | non-2xx |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (variant, label, connections), runs in rows.items():
        ratios = [r["rps"] / hello[(variant, r["rep"], connections)]["rps"] for r in runs]
        p99_ratios = [r["p99_ms"] / hello[(variant, r["rep"], connections)]["p99_ms"] for r in runs]
        cpu = statistics.median(r["cpu_us_per_request"] for r in runs)
        trip = trips.get((variant, runs[0]["target"]))
        lines.append(
            f"| {variant} | {label} | {connections} | {spread([r['rps'] for r in runs], '.0f')} "
            f"| {spread(ratios, '.2f')} "
            f"| {statistics.median(r['p50_ms'] for r in runs):.2f} "
            f"| {statistics.median(r['p99_ms'] for r in runs):.2f} "
            f"| {statistics.median(p99_ratios):.2f} "
            f"| {cpu:.0f} | {cpu / send_cpu[variant]:.2f} "
            f"| {statistics.median(r['redis_commands_per_request'] for r in runs):.1f} "
            f"| {'–' if trip is None else format(trip['round_trips_per_call'], 'g')} "
            f"| {sum(r['non_2xx'] for r in runs)} |"
        )
    if trips:
        lines += [
            "",
            "| variant | in-process HTTP request | Redis round trips/request | commands/request |",
            "|---|---|---|---|",
        ]
        for r in trips.values():
            commands = ", ".join(f"{k} {v:g}" for k, v in sorted(r["commands_per_call"].items()))
            lines.append(
                f"| {r['variant']} | {r['target']} | {r['round_trips_per_call']:g} "
                f"| {commands or 'none'} |"
            )
    return "\n".join(lines)


def write_results(records: list[dict[str, Any]], info: dict[str, str], options: str) -> Path:
    """Append the JSON lines and rewrite the markdown summary; return the summary's path."""
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    with (RESULTS / "load.jsonl").open("a") as out:
        for record in records:
            out.write(json.dumps({"time": stamp, "machine": info, **record}) + "\n")
    summary = RESULTS / "load-summary.md"
    machine_line = ", ".join(f"{k} {v}" for k, v in info.items())
    summary.write_text(
        f"# Load benchmark, {stamp}\n\nMachine: {machine_line}.\n\nOptions: {options}.\n\n"
        f"{table(records)}\n"
    )
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per run (default 2)")
    parser.add_argument("--reps", type=int, default=5, help="repetitions (default 5)")
    parser.add_argument(
        "--variants",
        default="sync,gthread",
        help="gunicorn worker classes, comma list of sync,gthread (default both)",
    )
    args = parser.parse_args(argv)
    for tool in ("wrk", "redis-server"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed (Debian: apt-get install -y {tool})")
    variants = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(variants) - VARIANTS.keys())
    if unknown:
        sys.exit(f"unknown variant(s): {', '.join(unknown)}")
    with tempfile.TemporaryDirectory(prefix="otp-bench-") as workdir:
        bench = Bench(args.duration, args.reps, variants, Path(workdir))
        records = bench.run()
    options = f"duration {args.duration}s, reps {args.reps}, 16 and 64 connections"
    summary = write_results(records, machine(), options)
    print(table(records))
    print(f"\nsummary: {summary.relative_to(BENCH_DIR.parent)}")
    return 0
