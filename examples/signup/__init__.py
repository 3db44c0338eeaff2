"""A sign-up page protected by :class:`otp_service.OtpGuard` (see ``README.md`` here)."""

from __future__ import annotations
