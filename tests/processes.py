"""Child processes the tests start: a minimal environment, and a stop by PID that keeps output."""

from __future__ import annotations

import os
import subprocess


def child_environ(extra: dict[str, str]) -> dict[str, str]:
    """Only what a Python child needs to run (PATH, HOME, PYTHONPATH), plus ``extra``: no
    ``OTP_*`` of the test run leaks in."""
    base = {name: os.environ[name] for name in ("PATH", "HOME", "PYTHONPATH") if name in os.environ}
    return {**base, **extra}


def stop_and_read(process: subprocess.Popen[str], grace: float = 10) -> str:
    """Stop ``process`` by its PID (TERM, then KILL after ``grace`` seconds) and return what it
    wrote to its one captured pipe."""
    process.terminate()
    try:
        output, errors = process.communicate(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        output, errors = process.communicate(timeout=5)
    return output or errors or ""
