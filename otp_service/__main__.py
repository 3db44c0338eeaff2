"""``python -m otp_service`` is ``otp-service``."""

from __future__ import annotations

from otp_service.cli import run

run()
