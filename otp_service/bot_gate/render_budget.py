"""A cap on the CPU one process spends drawing captchas, so a flood of ``/captcha`` cannot starve
``/verify`` and ``/healthz`` on the same worker.

The per-address and per-subnet limits bound what one client may ask for; a flood from many
addresses passes them all. Drawing an image costs several milliseconds of CPU and speaking one
about half a second, so each worker process keeps its own moving windows
(``OTP_CAPTCHA_RENDER_IMAGES``, ``OTP_CAPTCHA_RENDER_AUDIO``): past them a request is refused at
once (``rate_limited``, ``limit: captcha_render``, with ``retry_after``) instead of queueing for a
core. The windows are in-process on purpose: what they protect is this process's CPU, and
counting them costs no store round trip. The ``limits`` package keeps the windows.
"""

from __future__ import annotations

import math
import threading
import time

from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from otp_service.errors import RateLimited


class RenderBudget:
    """Moving windows of renders per kind (``image``, ``audio``) in this process.

    :param images: ``limits`` notation, e.g. ``"30/second"``; empty for no cap.
    :param audio: likewise, e.g. ``"2 per 10 seconds"``.
    """

    def __init__(self, *, images: str, audio: str) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        # Test-then-hit is one step under the lock, so threads of one worker cannot overshoot.
        self._lock = threading.Lock()
        self._items: dict[str, list[RateLimitItem]] = {
            "image": parse_many(images) if images.strip() else [],
            "audio": parse_many(audio) if audio.strip() else [],
        }

    def take(self, kind: str) -> None:
        """Count one render of ``kind``, or refuse it without counting.

        :raises RateLimited: ``limit="captcha_render"``: this process is drawing all it may.
        """
        items = self._items[kind]
        with self._lock:
            for item in items:
                if not self._limiter.test(item, kind):
                    reset = self._limiter.get_window_stats(item, kind).reset_time
                    raise RateLimited(
                        "The service is drawing as many captchas as it can; retry shortly.",
                        limit="captcha_render",
                        retry_after=max(1, math.ceil(reset - time.time())),
                    )
            for item in items:
                self._limiter.hit(item, kind)
