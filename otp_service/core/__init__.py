"""The pure core: plain values in, plain values (or :class:`~otp_service.errors.OtpError`) out.

Modules here open no sockets, read no files or environment, and neither read the clock nor draw
randomness themselves: time arrives as ``now: float`` and randomness as a
:class:`~otp_service.clock.RandomSource` argument. That keeps every rule unit-testable without
Redis, HTTP or sleeps, and lets the same rules run inside the HTTP service, the library and the
Flask guard. ``tests/test_layering.py`` enforces this by parsing the imports of every module here.
"""

from __future__ import annotations
