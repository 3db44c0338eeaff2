"""A send's ``purpose``: the caller's name for why a code is sent (login, signup …).

Codes, captcha answers and tokens are bound to it, so it is checked in one place and every module
that binds something to a purpose (the send pipeline, the bot gate, the guard) agrees on it.
"""

from __future__ import annotations

import re

from otp_service.errors import InvalidRequest

PURPOSE_PATTERN = re.compile(r"[a-z][a-z0-9_-]{0,31}")
DEFAULT_PURPOSE = "default"


def validate_purpose(purpose: str | None) -> str:
    """``None`` → the default purpose; otherwise a short lowercase name."""
    if purpose is None:
        return DEFAULT_PURPOSE
    if not PURPOSE_PATTERN.fullmatch(purpose):
        raise InvalidRequest("purpose: 1-32 characters of a-z, 0-9, _ or -, starting a-z.")
    return purpose
