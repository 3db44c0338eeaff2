"""Callback tokens out of log lines that show a request's path (access logs, the dev server).

The provider's pushes carry our shared secret in their URL: as the path segment of
``/callbacks/huawei/<token>/status`` (the default we hand out) or as a ``token=`` query value.
Anything that writes a request line must pass it through :func:`redact_tokens` first.
"""

from __future__ import annotations

import logging
import re

#: What stands in a log line where a token was.
REDACTED = "***"
# Any mount prefix; every segment after ``huawei/`` that is not a route's own word may be a
# token (a mistyped ``/<token>/statuses`` is logged as a 404 too).
_PATH_TOKEN = re.compile(r"(/callbacks/huawei/)(?!(?:status|uplink)(?![^/?#\s]))[^/?#\s]+")
_QUERY_TOKEN = re.compile(r"([?&;]token=)[^&#\s\"']*")


def redact_tokens(text: str) -> str:
    """``text`` with every callback token (path segment or ``token=`` value) replaced."""
    return _QUERY_TOKEN.sub(r"\g<1>" + REDACTED, _PATH_TOKEN.sub(r"\g<1>" + REDACTED, text))


class RedactTokens(logging.Filter):
    """A filter for loggers that print request lines (werkzeug's development server)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_tokens(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True
