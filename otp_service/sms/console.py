"""A gateway that writes messages to the log instead of sending them (development and tests)."""

from __future__ import annotations

import logging
import threading
from collections import deque

from otp_service.core.phone import mask_phone
from otp_service.sms.base import SendResult, SmsMessage

log = logging.getLogger(__name__)


class ConsoleGateway:
    """Logs one line per message with the number masked, and remembers the last messages.

    ``show_code`` is for a developer trying the flow on their laptop; the service enables it only
    when ``OTP_ENV=development``. :attr:`sent` lets tests and the demo read what was "sent".
    """

    name = "console"

    def __init__(self, *, show_code: bool = False, keep: int = 1000) -> None:
        self.show_code = show_code
        self._sent: deque[SmsMessage] = deque(maxlen=keep)
        self._lock = threading.Lock()
        self._counter = 0

    def send(self, message: SmsMessage) -> SendResult:
        with self._lock:
            self._sent.append(message)
            self._counter += 1
            message_id = f"console-{self._counter}"
        shown = message.code if self.show_code else "******"
        log.warning(
            "SMS to %s (%s): code %s [console gateway: nothing was sent]",
            mask_phone(message.to),
            message.purpose,
            shown,
        )
        return SendResult(provider=self.name, message_id=message_id)

    @property
    def sent(self) -> list[SmsMessage]:
        with self._lock:
            return list(self._sent)

    def last_code(self, to: str) -> str | None:
        """The code of the newest message to ``to`` (tests and the demo)."""
        for message in reversed(self.sent):
            if message.to == to:
                return message.code
        return None
