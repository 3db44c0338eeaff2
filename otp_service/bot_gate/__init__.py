"""The bot gate: what a send must prove so that automation costs real work.

- :mod:`.gate` — :class:`BotGate`, the one interface the send pipeline calls;
- :mod:`.adaptive` — the risk signals (sends, failures, new ranges, global load) in the store;
- :mod:`.challenges` — image and audio captchas: drawn, stored, served, answered once;
- :mod:`.pow` — ALTCHA proof-of-work challenges, signed and spent once;
- :mod:`.render_budget` — the per-process cap on captcha drawing CPU.

The pure decisions (what to ask for, how hard) are in :mod:`otp_service.core.bot_gate`,
:mod:`otp_service.core.captcha` and :mod:`otp_service.core.pow`.
"""

from __future__ import annotations

from otp_service.bot_gate.challenges import Challenge
from otp_service.bot_gate.gate import BotGate
from otp_service.core.bot_gate import BotProof

__all__ = ["BotGate", "BotProof", "Challenge"]
