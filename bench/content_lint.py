"""How fast ``otp-service content lint-template --many`` lints a file of 1,000 templates.

Not a test: run ``python -m bench.content_lint`` (``--save`` also writes the table to
``bench/results/content-lint.md``). It generates ``--templates`` varied templates (a seeded mix
of clean Chinese and English ones and ones with a finding: a second variable, a link, a short
link, unsubscribe wording, gambling keywords, a missing code word, ``【】`` in the body, a
template too long for one message), then times:

- the real CLI as a subprocess, ``--many FILE --json`` (wall time, interpreter start, imports and
  the policy build included), best and median of ``--reps``; the same command on a one-line file
  is the fixed cost a second file would pay again;
- the in-process lint of the same templates (``ContentPolicy.lint_template`` on a policy built
  once, as the CLI builds it), µs per template, best of ``--reps``.

Both use the shipped rules and an explicit ``--signature`` (``OTP_CONTENT_RULES`` and
``OTP_HUAWEI_SIGNATURE`` are removed from the subprocess's environment), so the runs are
comparable. The subprocess runs this checkout's code (``PYTHONPATH`` is set to it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from otp_service.content_rules import load_policy

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "content-lint.md"
SIGNATURE = "示例科技"
#: Removed from the subprocess's environment, so both timings use the same rules and signature.
_CONTENT_SETTINGS = frozenset({"OTP_CONTENT_RULES", "OTP_HUAWEI_SIGNATURE"})

_CLEAN = (
    "您的验证码为${1}，{minutes}分钟内有效，请勿泄露给他人。",
    "验证码${1}，用于{purpose}，{minutes}分钟内有效。如非本人操作，请忽略。",
    "您正在登录，验证码是${1}，请于5分钟内填写。",
    "Your verification code is ${1}. It expires in {minutes} minutes.",
    "Your login code is {code}. Do not share it with anyone.",
    "Use ${1} to verify your account. Never share this code.",
)
#: One finding each (block or flag), appended to or replacing a clean template.
_DIRTY = (
    "您的验证码为${1}，有效期${2}分钟。",
    "验证码${1}，详情见 https://example.com/a",
    "Your code is ${1}. Details: bit.ly/abc",
    "验证码${1}，回T退订",
    "您的验证码为${1}，澳门赌场首充送彩金！",
    "您的验证码为${1}，医院挂号专用。",
    "您好，${1}，欢迎光临本店。",
    "验证码${1}，【活动】全场5折。",
    "您的验证码为${1}，" + "请在页面上输入该验证码完成身份核验，切勿告诉任何人。" * 20,
)
_TAILS = ("", "谢谢。", "祝您愉快。", " Thank you.", "（客服工号{agent}）", "")


def generate(count: int, seed: int) -> list[str]:
    """``count`` distinct templates, about two in three clean, in a seeded order."""
    rng = random.Random(seed)
    templates = []
    for index in range(count):
        pool = _DIRTY if rng.random() < 0.35 else _CLEAN
        # The index keeps every line distinct, so no per-text cache can flatter the figures.
        tail = rng.choice(_TAILS)
        templates.append(f"{rng.choice(pool)}{tail}（{index}）")
    return templates


def _cli() -> list[str]:
    script = shutil.which("otp-service", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "otp_service"]


def time_cli(path: Path, reps: int) -> tuple[list[float], list[dict[str, Any]]]:
    """Wall seconds of each run of the command, and the last run's JSON results."""
    env = {k: v for k, v in os.environ.items() if k not in _CONTENT_SETTINGS}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    command = [*_cli(), "content", "lint-template", "--many", str(path), "--json"]
    command += ["--signature", SIGNATURE]
    seconds, output = [], ""
    for _ in range(reps):
        started = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)  # noqa: S603
        seconds.append(time.perf_counter() - started)
        if done.returncode not in (0, 1, 2):
            raise SystemExit(f"{' '.join(command)} exited {done.returncode}: {done.stderr}")
        output = done.stdout
    return seconds, json.loads(output)


def time_inprocess(templates: list[str], reps: int) -> tuple[float, float]:
    """Seconds to build the policy, and the best µs per template over ``reps`` passes."""
    started = time.perf_counter()
    policy = load_policy(None)
    build = time.perf_counter() - started
    per_template = []
    for _ in range(reps):
        started = time.perf_counter()
        for template in templates:
            policy.lint_template(template, signature=SIGNATURE)
        per_template.append((time.perf_counter() - started) / len(templates) * 1e6)
    return build, min(per_template)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--templates", type=int, default=1_000)
    parser.add_argument("--reps", type=int, default=3, help="runs of each timing (best is kept)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--save", action="store_true", help=f"write the table to {RESULTS}")
    args = parser.parse_args(argv)

    templates = generate(args.templates, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        many, one = Path(tmp, "many.txt"), Path(tmp, "one.txt")
        many.write_text("\n".join(templates) + "\n", "utf-8")
        one.write_text(templates[0] + "\n", "utf-8")
        cli_many, results = time_cli(many, args.reps)
        cli_one, _ = time_cli(one, args.reps)
    if len(results) != len(templates):
        raise SystemExit(f"the CLI reported {len(results)} results for {len(templates)} templates")
    build, inprocess_us = time_inprocess(templates, args.reps)

    actions = [{f["action"] for f in r["findings"]} for r in results]
    blocked = sum("block" in a for a in actions)
    flagged = sum(bool(a) and "block" not in a for a in actions)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    n = f"{len(templates):,}"
    lines = [
        f"`content lint-template --many` on {n} generated templates "
        f"({len(templates) - blocked - flagged} clean, {flagged} flagged, {blocked} blocked; "
        f"seed {args.seed}), shipped rules.",
        "",
        "| what | best | median |",
        "|---|---|---|",
        f"| CLI, {n} templates (subprocess wall time, of {args.reps}) "
        f"| {min(cli_many):.2f} s | {statistics.median(cli_many):.2f} s |",
        f"| CLI, 1 template (the same command's fixed cost) "
        f"| {min(cli_one):.2f} s | {statistics.median(cli_one):.2f} s |",
        f"| in-process `lint_template`, per template (of {args.reps} passes) "
        f"| {inprocess_us:.0f} µs | |",
        f"| in-process policy build (once per rules version) | {build * 1000:.0f} ms | |",
        "",
        f"Machine: {os.cpu_count()} cores, Python {platform.python_version()} "
        f"({platform.machine()}), load {load:.1f} when it ran.",
    ]
    table = "\n".join(lines)
    print(table)
    if args.save:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(
            "# Content lint: many templates\n\n`python -m bench.content_lint --save`\n\n"
            + table
            + "\n",
            "utf-8",
        )
        print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
