"""Micro-benchmarks of the per-request building blocks, in one process on one core.

Run ``python -m bench.micro``. Each figure is the best of several ``timeit`` rounds (the least
disturbed by the rest of the machine): token sign + verify, phone parse, code HMAC, captcha image
render (images/s on one core), and the content check (10,000 rules, 70-character messages, clean
and dirty) when the content module is present; it reuses ``bench/content_bench.py``'s policy
builder so both benchmarks measure the same policy. Appends JSON lines to
``bench/results/micro.jsonl`` and prints a table.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import secrets
import timeit
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from otp_service.captcha_render import ImageRenderer
from otp_service.core.codes import code_digest, derive_key
from otp_service.core.phone import parse_phone
from otp_service.core.tokens import TokenSigner

RESULTS = Path(__file__).resolve().parent / "results" / "micro.jsonl"
CONTENT_RULES = 10_000


def best_us(function: Callable[[], object], number: int, repeat: int) -> float:
    """Best per-call time in µs over ``repeat`` rounds of ``number`` calls."""
    return min(timeit.repeat(function, number=number, repeat=repeat)) / number * 1_000_000


def cases(scale: float) -> dict[str, tuple[Callable[[], object], int]]:
    """Name -> (one call, calls per round); ``scale`` shrinks or grows the rounds."""
    signer = TokenSigner([secrets.token_urlsafe(48)])
    token = signer.issue(phone="+8613800000000", purpose="login", token_id="x" * 32, now=0, ttl=900)
    key = derive_key(secrets.token_urlsafe(48), "code")
    renderer = ImageRenderer()

    def token_round_trip() -> object:
        issued = signer.issue(
            phone="+8613800000000", purpose="login", token_id="x" * 32, now=0, ttl=900
        )
        return signer.check(issued, now=1)

    found: dict[str, tuple[Callable[[], object], int]] = {
        "token sign+verify": (token_round_trip, int(2000 * scale)),
        "token verify": (lambda: signer.check(token, now=1), int(2000 * scale)),
        "phone parse (CN mobile)": (
            lambda: parse_phone("+86 138 0013 8000", default_region="CN", allowed_regions=("CN",)),
            int(2000 * scale),
        ),
        "code HMAC": (
            lambda: code_digest(key, phone="+8613800138000", purpose="login", code="123456"),
            int(20000 * scale),
        ),
        "captcha image render": (lambda: renderer.render_image("K7P3X"), max(5, int(40 * scale))),
    }
    found.update(content_cases(scale))
    return found


def content_cases(scale: float) -> dict[str, tuple[Callable[[], object], int]]:
    """The content check on clean and dirty messages, or nothing if it is not built yet."""
    if importlib.util.find_spec("otp_service.core.content") is None:
        return {}
    from bench.content_bench import MESSAGES, SIGNATURE, build

    policy, _ = build(CONTENT_RULES, seed=1)
    found: dict[str, tuple[Callable[[], object], int]] = {}
    for name in ("clean zh", "dirty zh"):
        text = MESSAGES[name]
        found[f"content check, {name} ({CONTENT_RULES} rules)"] = (
            lambda text=text: policy.check_message(text, ["123456"], SIGNATURE),  # type: ignore[misc]
            int(2000 * scale),
        )
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.micro", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--scale", type=float, default=1.0, help="calls per round, × (default 1)")
    parser.add_argument("--repeat", type=int, default=5, help="rounds; the best counts (default 5)")
    args = parser.parse_args(argv)
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    rows = []
    for name, (function, number) in cases(args.scale).items():
        function()  # warm caches (phonenumbers metadata, fonts) outside the timing
        micros = best_us(function, max(1, number), args.repeat)
        rows.append({"time": stamp, "name": name, "us_per_call": micros, "per_s": 1e6 / micros})
    RESULTS.parent.mkdir(exist_ok=True)
    with RESULTS.open("a") as out:
        for row in rows:
            out.write(json.dumps({**row, "python": platform.python_version()}) + "\n")
    print("| micro-benchmark | µs/call (best) | calls/s on one core |\n|---|---|---|")
    for row in rows:
        print(f"| {row['name']} | {row['us_per_call']:.1f} | {row['per_s']:,.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
