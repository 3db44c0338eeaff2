"""otp-service: SMS verification codes with the anti-abuse built in.

Use it over HTTP (``create_app``), in-process (``OtpService``), or as Flask guard middleware.
"""

from __future__ import annotations

from otp_service.app import create_app
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
from otp_service.service import Approval, Challenge, OtpService, SendReceipt
from otp_service.settings import Settings
from otp_service.sms import ConsoleGateway, SmsGateway, SmsMessage
from otp_service.store import MemoryStore, Store, store_from_url

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
