"""SMS gateways: the port, and a factory choosing one from the settings."""

from __future__ import annotations

from otp_service.settings import Settings
from otp_service.sms.base import SendResult, SmsGateway, SmsMessage
from otp_service.sms.console import ConsoleGateway

__all__ = ["ConsoleGateway", "SendResult", "SmsGateway", "SmsMessage", "gateway_from_settings"]


def gateway_from_settings(settings: Settings) -> SmsGateway:
    """The gateway ``OTP_SMS_GATEWAY`` names, configured from the settings."""
    if settings.sms_gateway == "huawei":
        from otp_service.sms.huawei import HuaweiSmsGateway

        return HuaweiSmsGateway.from_settings(settings)
    return ConsoleGateway(show_code=settings.env == "development")
