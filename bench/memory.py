"""Redis memory per number and per captcha challenge (issue 18, item 4).

``python -m bench.memory`` starts a private ``redis-server`` (no persistence, stopped by PID),
runs the real :class:`OtpService` on it with the console gateway, and measures ``used_memory``
before and after:

- ``send+verify``: ``--numbers`` distinct numbers, each sent a code and verified, so what stays
  is what a real sign-up leaves until the TTLs run out (limit windows, cooldowns, the consumed
  code's tombstone, range and global counters shared between numbers);
- ``send only``: the same for numbers whose code is never entered (a code in flight);
- ``captcha``: ``--challenges`` challenges created and never answered (the worst case: each holds
  its answer digest until it expires).

It also checks that every key it left has a TTL. Figures are bytes of Redis ``used_memory`` per
item (allocator overhead included), so they are what an operator sizes ``maxmemory`` with.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import redis

from bench.load import HIGH_LIMITS, free_port, started
from otp_service.service import OtpService
from otp_service.settings import Settings
from otp_service.sms.console import ConsoleGateway
from otp_service.store.redis import RedisStore

SECRET = "bench-memory-" + "k3y" * 11


def settings(redis_url: str) -> Settings:
    limits = {k.removeprefix("OTP_").lower(): v for k, v in HIGH_LIMITS.items()}
    limits["pumping_floor"] = int(limits["pumping_floor"])
    limits["pumping_country_floor"] = int(limits["pumping_country_floor"])
    return Settings(
        env="testing",
        secret_key=SECRET,
        redis_url=redis_url,
        captcha_mode="off",
        limits_captcha_ip="1000000/minute",
        limits_captcha_subnet="1000000/minute",
        limits_captcha_ipv6_site="1000000/minute",
        **limits,
    )


def used_memory(client: redis.Redis) -> int:
    info = client.info("memory")
    return int(info["used_memory"])


def per_item(client: redis.Redis, count: int, work: Callable[[int], None]) -> float:
    before = used_memory(client)
    for n in range(count):
        work(n)
    return (used_memory(client) - before) / count


def keys_without_ttl(client: redis.Redis) -> int:
    return sum(1 for key in client.scan_iter(count=1000) if client.ttl(key) < 0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--numbers", type=int, default=2000)
    parser.add_argument("--challenges", type=int, default=500)
    args = parser.parse_args()
    if shutil.which("redis-server") is None:
        print("redis-server is needed: apt-get install -y redis-server", file=sys.stderr)
        return 2
    logging.disable(logging.CRITICAL)
    port = free_port()
    with tempfile.TemporaryDirectory() as workdir:
        command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        command += ["--appendonly", "no", "--dir", workdir]
        with started(command, {}, port, Path(workdir) / "redis.log"):
            url = f"redis://127.0.0.1:{port}/0"
            client = redis.Redis.from_url(url)
            gateway = ConsoleGateway(keep=10)
            service = OtpService(settings(url), store=RedisStore.from_url(url), gateway=gateway)

            def send_verify(n: int) -> None:
                phone = f"+86139{n:08d}"
                service.send_code(phone, client_ip=f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}")
                service.verify(phone, gateway.sent[-1].code)

            def send_only(n: int) -> None:
                phone = f"+86137{n:08d}"
                service.send_code(phone, client_ip=f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}")

            def challenge(n: int) -> None:
                service.create_captcha(client_ip=f"10.9.{n >> 8 & 255}.{n & 255}")

            rows = [
                ("send+verify, per number", per_item(client, args.numbers, send_verify)),
                (
                    "send only (code in flight), per number",
                    per_item(client, args.numbers, send_only),
                ),
                ("captcha challenge, unanswered", per_item(client, args.challenges, challenge)),
            ]
            untimed = keys_without_ttl(client)
            client.close()
    print("| what | Redis bytes |")
    print("|---|---|")
    for name, value in rows:
        print(f"| {name} | {value:,.0f} |")
    print(f"\nkeys without a TTL: {untimed}")
    return 1 if untimed else 0


if __name__ == "__main__":
    sys.exit(main())
