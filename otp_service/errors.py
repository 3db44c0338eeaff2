"""The one exception hierarchy of otp-service.

Every refusal the service can make is an :class:`OtpError` subclass carrying a stable machine
``code`` (part of the public contract), an HTTP ``status`` and a human ``title``. Per-instance
details (``retry_after``, ``limit``, ``attempts_left`` …) are keyword attributes collected in
:attr:`OtpError.extras`, which the HTTP layer copies into the problem body. Nothing here imports
Flask: the mapping to HTTP happens once, in ``problems.py``.

Messages (``detail``) never contain a code, a secret or a full phone number.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar


class OtpError(Exception):
    """Base of every error the service raises on purpose."""

    code: ClassVar[str] = "otp_error"
    status: ClassVar[int] = 500
    title: ClassVar[str] = "Verification service error"

    def __init__(self, detail: str | None = None, **extras: object) -> None:
        self.detail = detail or self.title
        #: Public, JSON-safe details for the problem body (e.g. ``retry_after``).
        self.extras: dict[str, object] = {k: v for k, v in extras.items() if v is not None}
        super().__init__(self.detail)

    def __getattr__(self, name: str) -> object:
        # Lets callers write ``exc.retry_after`` for any extra without a subclass per field.
        extras = self.__dict__.get("extras", {})
        if name in extras:
            return extras[name]
        raise AttributeError(name)


class ConfigurationError(OtpError):
    """Invalid or unsafe settings; raised at start-up and names the variable.

    ``problems`` holds every problem found, so an operator fixes them all in one pass instead of
    one per start; ``detail`` joins them.
    """

    code = "configuration_error"
    status = 500
    title = "Service misconfigured"

    def __init__(self, detail: str | None = None, *, problems: Sequence[str] = ()) -> None:
        super().__init__(detail or "; ".join(problems) or None)
        #: Each problem, starting with the variable it is about.
        self.problems: tuple[str, ...] = tuple(problems) or (self.detail,)


class InvalidRequest(OtpError):
    code = "invalid_request"
    status = 400
    title = "Invalid request"


class UnsupportedMediaType(InvalidRequest):
    code = "unsupported_media_type"
    status = 415
    title = "Expected application/json"


class PayloadTooLarge(InvalidRequest):
    code = "payload_too_large"
    status = 413
    title = "Request body too large"


class NotFound(OtpError):
    code = "not_found"
    status = 404
    title = "Not found"


class MethodNotAllowed(OtpError):
    code = "method_not_allowed"
    status = 405
    title = "Method not allowed"


class InvalidPhone(InvalidRequest):
    code = "invalid_phone"
    status = 400
    title = "Invalid phone number"


class RegionNotAllowed(InvalidRequest):
    code = "region_not_allowed"
    status = 403
    title = "Destination region not allowed"


class PhoneTypeNotAllowed(InvalidRequest):
    code = "phone_type_not_allowed"
    status = 403
    title = "This kind of number cannot receive verification codes"


class NumberOptedOut(OtpError):
    code = "number_opted_out"
    status = 403
    title = "The number has opted out of messages"


class CaptchaFailed(OtpError):
    code = "captcha_failed"
    status = 400
    title = "Captcha failed"


class CaptchaRequired(CaptchaFailed):
    code = "captcha_required"
    status = 400
    title = "A captcha answer is required"


class CaptchaInvalid(CaptchaFailed):
    code = "captcha_invalid"
    status = 400
    title = "The captcha answer is wrong, used or expired"


class RateLimited(OtpError):
    """Carries ``limit`` (the axis) and ``retry_after`` (whole seconds)."""

    code = "rate_limited"
    status = 429
    title = "Too many requests"


class IdempotencyInProgress(OtpError):
    """A request with the same ``Idempotency-Key`` is still running; retry shortly."""

    code = "idempotency_in_progress"
    status = 409
    title = "A request with this Idempotency-Key is in progress"


class BudgetExhausted(OtpError):
    code = "budget_exhausted"
    status = 503
    title = "The sending budget is exhausted"


class ContentBlocked(OtpError):
    """Carries the ``rule`` id and its ``group``; never the matched text."""

    code = "content_blocked"
    status = 422
    title = "Message content blocked"


class VerificationFailed(OtpError):
    code = "verification_failed"
    status = 400
    title = "Verification failed"


class CodeInvalid(VerificationFailed):
    """Carries ``attempts_left``."""

    code = "code_invalid"
    status = 400
    title = "The code is wrong"


class CodeExpired(VerificationFailed):
    code = "code_expired"
    status = 400
    title = "No valid code; request a new one"


class TooManyAttempts(VerificationFailed):
    code = "too_many_attempts"
    status = 429
    title = "Too many wrong codes; request a new one"


class TokenInvalid(OtpError):
    code = "token_invalid"
    status = 401
    title = "The verification token is invalid"


class TokenExpired(TokenInvalid):
    code = "token_expired"
    status = 401
    title = "The verification token has expired"


class TokenUsed(TokenInvalid):
    code = "token_used"
    status = 401
    title = "The verification token was already used"


class ProviderError(OtpError):
    """The SMS provider failed. Carries ``provider_code`` and whether a retry may help."""

    code = "provider_error"
    status = 502
    title = "SMS provider error"
    #: True when the request provably did not reach the provider (safe to retry); set on the
    #: instance by the gateway that knows.
    retryable: bool = False
    #: True when the provider named a fault of our account or configuration (a deactivated
    #: subscriber, our clock, our server's address not whitelisted …): no caller can cause or
    #: fix it, an operator must. Kept out of ``extras`` so callers' problem bodies do not
    #: announce it; the audit line and the metrics carry it.
    operator_problem: bool = False

    @property
    def certainly_not_sent(self) -> bool:
        """Whether the provider certainly did not accept the message, so nothing can arrive.

        Only then is the send's money refunded and its number's windows given back. Certain:
        the request never left (``retryable``), the platform answered with a refusal code
        (``provider_code``), or it refused the request as a whole (a 4xx,
        :class:`ProviderRejected`).
        Everything else — a timeout or reset after the request was written, a 5xx, a 429 from
        whatever fronts the platform, an unreadable answer — may follow a message the platform
        accepted and delivered, so it stays charged (docs/reliability.md, "Unknown outcomes").
        """
        if self.retryable or self.extras.get("provider_code") is not None:
            return True
        return isinstance(self, ProviderRejected)


class ProviderRejected(ProviderError):
    """Permanent: configuration, template or number problem. Retrying will not help."""

    code = "provider_rejected"
    status = 502
    title = "The SMS provider rejected the message"


class ProviderUnavailable(ProviderError):
    """Transient: timeouts, 5xx, throttling at the provider."""

    code = "provider_unavailable"
    status = 502
    title = "The SMS provider is unavailable"


class StoreUnavailable(OtpError):
    code = "store_unavailable"
    status = 503
    title = "State store unavailable"


class ProviderNotReady(OtpError):
    """The provider account cannot send (template or signature state); carries ``reasons``."""

    code = "provider_not_ready"
    status = 503
    title = "The SMS provider account cannot send"


class InternalError(OtpError):
    """An unexpected bug. The body says nothing more than this."""

    code = "internal_error"
    status = 500
    title = "Internal error"


def all_error_classes() -> list[type[OtpError]]:
    """Every concrete error class, for the problem table test and the OpenAPI document."""
    found: list[type[OtpError]] = []
    pending: list[type[OtpError]] = [OtpError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


class CallbackUnauthorized(OtpError):
    """A provider callback without the shared callback token (or callbacks not configured)."""

    code = "callback_unauthorized"
    status = 401
    title = "The callback is not authenticated"


class CallbackForbidden(OtpError):
    """A provider callback from an address outside ``OTP_CALLBACK_ALLOWED_NETWORKS``."""

    code = "callback_forbidden"
    status = 403
    title = "The callback's source address is not allowed"
