"""Send-side admission: our one Lua script against calling ``limits`` once per limit.

Run ``python -m bench.limits_bench`` (needs ``redis-server`` on ``PATH``). It starts a private
``redis-server`` on a free port (no persistence), and stops it by PID when it ends, also on
failure. For the default send limits (``Settings()``: resend cooldown, number 5/hour + 10/day,
IP 10/minute + 100/hour, subnet 30/minute + 300/hour, prefix 50/hour, global 1000/hour: nine
moving windows and the opt-out denial), each approach admits the same requests, one new number and
address per request so nothing is refused and every window is checked and counted:

- ``ours``: :meth:`RedisStore.admit` — every window and the denial, all or nothing, one script;
- ``limits hit``: ``MovingWindowRateLimiter.hit`` per window on ``limits``' ``RedisStorage``
  (the cheapest way to use the package; a refusal by a later window has already spent the
  earlier ones, and the opt-out needs its own ``GET``);
- ``limits test+hit``: ``test`` every window, then ``hit`` every window — what "refused spends
  nothing" costs with the package, and still racy between the two passes.

Figures per request: wall µs (one client thread, loopback), Redis round trips counted at the
client (each write of a command to the socket), and Redis commands from ``INFO commandstats``
deltas (scripts' inner commands included). Best of ``--reps`` repetitions; the database is
flushed before each run. Appends one JSON line to ``bench/results/limits.jsonl``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import limits
import redis
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter
from redis.connection import Connection

from bench.load import command_calls, free_port, started
from otp_service.core.keys import Keys
from otp_service.core.policy import SendLimits
from otp_service.settings import Settings
from otp_service.store import Denial, LimitRule
from otp_service.store.redis import RedisStore

RESULTS = Path(__file__).resolve().parent / "results" / "limits.jsonl"
#: Under the default global budget (1000/hour), so no run is refused.
DEFAULT_REQUESTS = 900

Admit = Callable[[Denial, list[LimitRule]], None]


def default_limits() -> SendLimits:
    settings = Settings(env="testing", secret_key="bench-" + "x" * 40)
    return SendLimits(
        resend_interval=settings.resend_interval,
        number=settings.limits_number,
        number_total=settings.limits_number_total,
        ip=settings.limits_ip,
        subnet=settings.limits_subnet,
        prefix=settings.limits_prefix,
        global_=settings.limits_global,
        ipv6_site=settings.limits_ipv6_site,
        ipv6_site_bits=settings.ipv6_site_bits,
    )


def request_rules(policy: SendLimits, keys: Keys, i: int) -> tuple[Denial, list[LimitRule]]:
    """The i-th request: a number in a range of its own, from an address in a subnet of its own."""
    tag = f"tag{i}"
    rules = policy.rules(
        keys,
        phone_tag=tag,
        purpose="login",
        prefix=f"+86139{i:05d}",
        client_ip=f"10.{i // 250}.{i % 250}.1",
    )
    return Denial("number_opted_out", keys.optout(tag)), rules


class RoundTrips:
    """Counts writes of commands (or pipelines) to Redis sockets: one per round trip."""

    def __init__(self) -> None:
        self.count = 0

    @contextlib.contextmanager
    def counting(self) -> Iterator[None]:
        original = Connection.send_packed_command

        def send(conn: Connection, command: Any, check_health: bool = True) -> None:
            self.count += 1
            original(conn, command, check_health)

        Connection.send_packed_command = send  # type: ignore[method-assign]
        try:
            yield
        finally:
            Connection.send_packed_command = original  # type: ignore[method-assign]


def ours(url: str) -> tuple[Admit, Callable[[], None]]:
    store = RedisStore.from_url(url)

    def admit(denial: Denial, rules: list[LimitRule]) -> None:
        admission = store.admit(
            denials=[denial], limits=rules, now=time.time(), token=uuid.uuid4().hex
        )
        assert admission.allowed

    return admit, store.close


def limits_hit(url: str, *, test_first: bool) -> tuple[Admit, Callable[[], None]]:
    storage = RedisStorage(url)
    limiter = MovingWindowRateLimiter(storage)
    client = redis.Redis.from_url(url)
    items: dict[tuple[int, int], limits.RateLimitItem] = {}

    def item(rule: LimitRule) -> limits.RateLimitItem:
        key = (rule.amount, rule.window)
        if key not in items:
            items[key] = limits.RateLimitItemPerSecond(rule.amount, rule.window)
        return items[key]

    def admit(denial: Denial, rules: list[LimitRule]) -> None:
        assert client.get(denial.key) is None
        if test_first:
            assert all(limiter.test(item(rule), rule.key) for rule in rules)
        for rule in rules:
            assert limiter.hit(item(rule), rule.key)

    return admit, client.close


def run_once(
    name: str, url: str, requests: list[tuple[Denial, list[LimitRule]]]
) -> dict[str, float]:
    factories: dict[str, Callable[[str], tuple[Admit, Callable[[], None]]]] = {
        "ours": ours,
        "limits hit": lambda u: limits_hit(u, test_first=False),
        "limits test+hit": lambda u: limits_hit(u, test_first=True),
    }
    admin = redis.Redis.from_url(url)
    admin.flushdb()
    admit, close = factories[name](url)
    try:
        admit(*requests[0])  # scripts loaded, connections open: not part of the figures
        admin.flushdb()
        trips = RoundTrips()
        before = command_calls(admin)
        with trips.counting():
            started_at = time.perf_counter()
            for denial, rules in requests:
                admit(denial, rules)
            elapsed = time.perf_counter() - started_at
            counted = trips.count
        after = command_calls(admin)
    finally:
        close()
        admin.close()
    commands = sum(after.values()) - sum(before.values())
    # This run's own bookkeeping: the second INFO and any FLUSHDB/INFO counted by the client.
    commands -= after.get("info", 0) - before.get("info", 0)
    return {
        "us_per_request": elapsed / len(requests) * 1e6,
        "round_trips": counted / len(requests),
        "commands": commands / len(requests),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=DEFAULT_REQUESTS)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args(argv)
    if args.requests > DEFAULT_REQUESTS:
        parser.error(f"--requests: at most {DEFAULT_REQUESTS} (the default global budget)")

    policy = default_limits()
    keys = Keys("bench:")
    requests = [request_rules(policy, keys, i) for i in range(args.requests)]
    windows = len(requests[0][1])
    names = ("ours", "limits hit", "limits test+hit")
    best: dict[str, dict[str, float]] = {}
    port = free_port()
    with tempfile.TemporaryDirectory() as workdir:
        server_args = [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
        ]
        with started(server_args, dict(os.environ), port, Path(workdir) / "redis.log"):
            url = f"redis://127.0.0.1:{port}/0"
            for _ in range(args.reps):
                for name in names:
                    figures = run_once(name, url, requests)
                    if name not in best or figures["us_per_request"] < best[name]["us_per_request"]:
                        best[name] = figures

    version = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True, check=False
    ).stdout.split()
    print(f"default send limits: {windows} moving windows + 1 denial; {args.requests} requests")
    print("| approach | µs/request | Redis round trips/request | Redis commands/request |")
    print("|---|---:|---:|---:|")
    for name in names:
        f = best[name]
        print(
            f"| {name} | {f['us_per_request']:.0f} | {f['round_trips']:.1f} | {f['commands']:.1f} |"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    line = {
        "bench": "limits",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "redis": next((v for v in version if v.startswith("v=")), "?").removeprefix("v="),
        "limits": limits.__version__,
        "machine": platform.machine(),
        "windows": windows,
        "requests": args.requests,
        "reps": args.reps,
        "results": {name: {k: round(v, 2) for k, v in best[name].items()} for name in names},
    }
    with RESULTS.open("a") as out:
        out.write(json.dumps(line) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
