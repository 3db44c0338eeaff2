"""otp-service: SMS verification codes with the anti-abuse built in.

Use it over HTTP (``create_app``), in-process (``OtpService``), or as Flask guard middleware.

Each public name is imported on first use (PEP 562), so ``import otp_service.settings`` — and
the ``otp-service`` commands that need neither Flask nor Redis, such as ``content check`` — do
not pay for loading the whole service.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from otp_service.app import create_app
    from otp_service.bot_gate import Challenge
    from otp_service.clock import Clock, RandomSource, SecretsRandom, SystemClock
    from otp_service.core.tokens import VerifiedClaim
    from otp_service.errors import (
        CaptchaInvalid,
        CaptchaRequired,
        CodeExpired,
        CodeInvalid,
        ConfigurationError,
        ContentBlocked,
        InvalidPhone,
        NumberOptedOut,
        OtpError,
        PhoneTypeNotAllowed,
        ProviderError,
        RateLimited,
        RegionNotAllowed,
        StoreUnavailable,
        TokenExpired,
        TokenInvalid,
        TokenUsed,
        TooManyAttempts,
    )
    from otp_service.guard import OtpGuard
    from otp_service.service import Approval, OtpService, SendReceipt
    from otp_service.settings import Settings
    from otp_service.sms import ConsoleGateway, SmsGateway, SmsMessage
    from otp_service.store import MemoryStore, Store, store_from_url

#: Where each public name is defined.
_EXPORTS = {
    "Approval": "otp_service.service",
    "CaptchaInvalid": "otp_service.errors",
    "CaptchaRequired": "otp_service.errors",
    "Challenge": "otp_service.bot_gate",
    "Clock": "otp_service.clock",
    "CodeExpired": "otp_service.errors",
    "CodeInvalid": "otp_service.errors",
    "ConfigurationError": "otp_service.errors",
    "ConsoleGateway": "otp_service.sms",
    "ContentBlocked": "otp_service.errors",
    "InvalidPhone": "otp_service.errors",
    "MemoryStore": "otp_service.store",
    "NumberOptedOut": "otp_service.errors",
    "OtpError": "otp_service.errors",
    "OtpGuard": "otp_service.guard",
    "OtpService": "otp_service.service",
    "PhoneTypeNotAllowed": "otp_service.errors",
    "ProviderError": "otp_service.errors",
    "RandomSource": "otp_service.clock",
    "RateLimited": "otp_service.errors",
    "RegionNotAllowed": "otp_service.errors",
    "SecretsRandom": "otp_service.clock",
    "SendReceipt": "otp_service.service",
    "Settings": "otp_service.settings",
    "SmsGateway": "otp_service.sms",
    "SmsMessage": "otp_service.sms",
    "Store": "otp_service.store",
    "StoreUnavailable": "otp_service.errors",
    "SystemClock": "otp_service.clock",
    "TokenExpired": "otp_service.errors",
    "TokenInvalid": "otp_service.errors",
    "TokenUsed": "otp_service.errors",
    "TooManyAttempts": "otp_service.errors",
    "VerifiedClaim": "otp_service.core.tokens",
    "create_app": "otp_service.app",
    "store_from_url": "otp_service.store",
}


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups find it without coming here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = [
    "Approval",
    "CaptchaInvalid",
    "CaptchaRequired",
    "Challenge",
    "Clock",
    "CodeExpired",
    "CodeInvalid",
    "ConfigurationError",
    "ConsoleGateway",
    "ContentBlocked",
    "InvalidPhone",
    "MemoryStore",
    "NumberOptedOut",
    "OtpError",
    "OtpGuard",
    "OtpService",
    "PhoneTypeNotAllowed",
    "ProviderError",
    "RandomSource",
    "RateLimited",
    "RegionNotAllowed",
    "SecretsRandom",
    "SendReceipt",
    "Settings",
    "SmsGateway",
    "SmsMessage",
    "Store",
    "StoreUnavailable",
    "SystemClock",
    "TokenExpired",
    "TokenInvalid",
    "TokenUsed",
    "TooManyAttempts",
    "VerifiedClaim",
    "create_app",
    "store_from_url",
]
