"""Example host applications that use otp-service (not part of the installed package)."""

from __future__ import annotations
