"""``python -m bench.captcha_flood``: does a ``/captcha`` flood from many addresses starve the rest?

A private ``redis-server`` and the service under gunicorn (shipped configuration, 2 sync workers,
captcha ``always``) on loopback. For each setting of the per-process render budget — the
defaults (``OTP_CAPTCHA_RENDER_IMAGES=40/second``) and none — it measures ``/healthz`` and
``/verify`` alone, then again while a second ``wrk`` floods ``POST /captcha`` from random
addresses (``X-Forwarded-For`` through a trusted proxy, so every per-address limit passes). It
prints one table and writes it to ``bench/results/captcha-flood.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.load import (
    HIGH_LIMITS,
    RESULTS,
    WRK_SCRIPT,
    free_port,
    gunicorn_args,
    machine,
    run_wrk,
    started,
)

FLOOD_CONNECTIONS = 32
BUDGETS = {
    "default budget (40 images/s per worker)": {},
    "no budget": {"OTP_CAPTCHA_RENDER_IMAGES": "", "OTP_CAPTCHA_RENDER_AUDIO": ""},
}
ROUTES = (("healthz", "GET /healthz"), ("verify_random", "POST /verify (no code: 400)"))


def flood(url: str, duration: float) -> subprocess.Popen[str]:
    """A background wrk on ``POST /captcha`` (its figures come on stdout when it ends)."""
    return subprocess.Popen(  # noqa: S603
        [
            "wrk",
            "-t2",
            f"-c{FLOOD_CONNECTIONS}",
            f"-d{max(1, round(duration))}s",
            "-s",
            str(WRK_SCRIPT),
            url,
        ],
        env={**os.environ, "BENCH_TARGET": "captcha", "BENCH_THREADS": "2"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def flood_figures(process: subprocess.Popen[str]) -> dict[str, Any]:
    output, _ = process.communicate(timeout=120)
    for line in output.splitlines():
        if line.startswith("BENCH_JSON "):
            figures: dict[str, Any] = json.loads(line.removeprefix("BENCH_JSON "))
            return figures
    raise RuntimeError(f"flood wrk printed no figures: {output}")


def rate(figures: dict[str, Any]) -> float:
    return float(figures["requests"]) / (float(figures["duration_us"]) / 1e6)


def measure(duration: float, workdir: Path) -> list[dict[str, Any]]:
    redis_port = free_port()
    redis_args = ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1"]
    redis_args += ["--save", "", "--appendonly", "no", "--dir", str(workdir)]
    rows: list[dict[str, Any]] = []
    with started(redis_args, dict(os.environ), redis_port, workdir / "redis.log"):
        for label, extra in BUDGETS.items():
            port = free_port()
            env = {
                **os.environ,
                **HIGH_LIMITS,
                "OTP_ENV": "testing",
                "OTP_SECRET_KEY": secrets.token_urlsafe(48),
                "OTP_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
                "OTP_CAPTCHA_MODE": "always",
                "OTP_LIMITS_CAPTCHA_IP": "100000/minute",
                "OTP_LIMITS_CAPTCHA_SUBNET": "100000/minute",
                "OTP_LIMITS_CAPTCHA_IPV6_SITE": "100000/minute",
                "OTP_TRUSTED_PROXIES": "127.0.0.1/32",
                "OTP_WORKERS": "2",
                "OTP_BIND": f"127.0.0.1:{port}",
                "PROMETHEUS_MULTIPROC_DIR": str(workdir / f"metrics-{port}"),
                **extra,
            }
            log = workdir / f"service-{port}.log"
            with started(gunicorn_args("otp_service.app:create_app()"), env, port, log):
                url = f"http://127.0.0.1:{port}"
                run_wrk(url, 1, {"BENCH_TARGET": "healthz"})  # warm-up
                for target, route in ROUTES:
                    alone = run_wrk(url, duration, {"BENCH_TARGET": target})
                    flooder = flood(url, duration + 2)
                    time.sleep(1)
                    flooded = run_wrk(url, duration, {"BENCH_TARGET": target})
                    captcha = flood_figures(flooder)
                    rows.append(
                        {
                            "budget": label,
                            "route": route,
                            "alone_rps": rate(alone),
                            "alone_p99_ms": alone["p99_us"] / 1000,
                            "flooded_rps": rate(flooded),
                            "flooded_p99_ms": flooded["p99_us"] / 1000,
                            "captcha_rps": rate(captcha),
                            "captcha_refused": captcha["non_2xx"] / max(1, captcha["requests"]),
                        }
                    )
                    print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| render budget | route | alone req/s | alone p99 | under flood req/s | under flood p99 "
        "| /captcha req/s (share refused) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['budget']} | {r['route']} | {r['alone_rps']:.0f} | {r['alone_p99_ms']:.1f} ms "
            f"| {r['flooded_rps']:.0f} | {r['flooded_p99_ms']:.1f} ms "
            f"| {r['captcha_rps']:.0f} ({r['captcha_refused']:.0%}) |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per wrk run")
    options = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="otp-flood-") as workdir:
        rows = measure(options.duration, Path(workdir))
    info = machine()
    text = (
        f"### {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {info.get('cpu', '')}, "
        f"{options.duration:g} s per run, flood {FLOOD_CONNECTIONS} connections\n\n"
        f"{table(rows)}\n"
    )
    print(text)
    out = RESULTS / "captcha-flood.md"
    with out.open("a") as handle:
        handle.write(text + "\n")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        raise SystemExit(main())
