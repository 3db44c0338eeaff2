"""The SMS gateway port: what the service hands a gateway and what it gets back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class SmsMessage:
    """One verification message to one number.

    ``text`` is the message as our template renders it (for the console and the content check);
    providers with server-side templates send ``template_params`` instead.
    """

    to: str
    code: str
    text: str
    purpose: str
    template_params: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SendResult:
    """The provider's acceptance of a message."""

    provider: str
    message_id: str | None = None


class SmsGateway(Protocol):
    """Sends one message or raises :class:`~otp_service.errors.ProviderError`.

    A gateway must never send twice for one call: it may retry only when the request provably did
    not reach the provider (connection refused before anything was written).
    """

    name: str

    def send(self, message: SmsMessage) -> SendResult: ...
