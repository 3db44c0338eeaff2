"""What each problem ``code`` means and what a client should do, served at ``/problems/<code>``.

A problem's ``type`` URI is the place its documentation lives (RFC 9457 §3.1.1). A URI that does
not resolve sends integrators to a dead link at the very moment something failed, so the service
documents its own problems under its own mount (or under ``OTP_PROBLEM_BASE_URL`` when an
operator publishes them elsewhere). The words live here, next to nothing else, so adding an error
class without saying what to do about it fails a test instead of shipping a blank page.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from otp_service.errors import OtpError, all_error_classes

#: code → what happened and what the client (or operator) does next.
REMEDIES: dict[str, str] = {
    "otp_error": "An error of the verification service. Look at the problem's code and detail.",
    "configuration_error": "The service's settings are invalid or unsafe. The operator runs "
    "`otp-service check-config`, which names each variable at fault.",
    "invalid_request": "The request body is malformed: not a JSON object, an unknown field, a "
    "field of the wrong type or too long. `field` names the field; fix the request.",
    "unsupported_media_type": "Send the body as `Content-Type: application/json`.",
    "payload_too_large": "The body is larger than the route accepts (16 KiB for the API). "
    "Requests are a few short strings; send less.",
    "not_found": "No such route, or the captcha challenge is used, expired or unknown: "
    "ask for a new one.",
    "method_not_allowed": "The route exists but not for this HTTP method; see /openapi.json.",
    "invalid_phone": "The phone number cannot be read. Send it in E.164 (`+8613812345678`) or "
    "give `region` for a national number.",
    "region_not_allowed": "This deployment does not send to the number's region "
    "(`OTP_ALLOWED_REGIONS`). Tell the person which countries are served.",
    "phone_type_not_allowed": "The number is of a kind that cannot receive verification codes "
    "here (e.g. fixed-line, premium rate). Ask for a mobile number.",
    "number_opted_out": "The number asked not to receive messages (a STOP/退订 reply). Offer "
    "another way to verify; it cannot be texted until it opts in again.",
    "captcha_failed": "The bot check failed; ask for a new challenge and try again.",
    "captcha_required": "This request needs a captcha answer or a proof of work first. "
    "`captcha_kinds` says which; create one (`POST /captcha` or `/pow`) and send it with the "
    "request. `pow_level` says how much work a proof must show.",
    "captcha_invalid": "The captcha answer was wrong, or the challenge was used or expired "
    "(they are not told apart). A challenge works once, right or wrong: create a new one.",
    "rate_limited": "A limit refused the request. `limit` names which (number, ip, subnet, "
    "prefix, global …) and `retry_after` (also the `Retry-After` header) says how many seconds "
    "to wait. Do not retry sooner.",
    "idempotency_in_progress": "A request with the same `Idempotency-Key` is still running. "
    "Wait `retry_after` seconds and repeat it: the first request's answer is replayed.",
    "budget_exhausted": "The deployment's sending budget for the period is spent "
    "(`OTP_BUDGET_*`). Nothing was sent; the operator raises the budget or waits for the next "
    "period.",
    "content_blocked": "The message would break the provider's content rules. `rule` and "
    "`group` name the rule (never the text); the operator fixes the template.",
    "verification_failed": "The verification failed; request a new code.",
    "code_invalid": "The code is wrong. `attempts_left` says how many tries remain before the "
    "code is burnt.",
    "code_expired": "There is no valid code for this number and purpose: it expired, was used, "
    "or was never sent (these are not told apart). Check that `purpose` matches the one given to "
    "/send-code (the default is `default`), then request a new code.",
    "too_many_attempts": "Too many wrong codes: this code is burnt. Request a new one.",
    "token_invalid": "The verification token is missing, malformed, signed by another key or "
    "for another purpose. A guarded route takes it as `Authorization: Bearer <token>` (or the "
    "form field or cookie the guard names); verify the number again.",
    "token_expired": "The verification token has expired. Verify the number again.",
    "token_used": "The one-time token was already used. Verify the number again.",
    "provider_error": "The SMS provider failed.",
    "provider_rejected": "The SMS provider refused the message for good (configuration, "
    "template or number). Retrying will not help; `provider_code` is the provider's code, and "
    "the operator runs `otp-service check-provider`.",
    "provider_unavailable": "The SMS provider failed or timed out. If the message may have gone "
    "out the answer says so and the send stays charged; retry later with the same "
    "`Idempotency-Key` so nothing is sent twice.",
    "store_unavailable": "The state store (Redis) is unreachable. Nothing was sent; retry "
    "later. The operator checks `/readyz` and `OTP_REDIS_URL`.",
    "provider_not_ready": "Readiness only: Huawei's management API says the configured "
    "template or signature cannot send (e.g. a deactivated template, a signature to be "
    "activated). `reasons` names each; the operator runs `otp-service check-provider` for the "
    "fix.",
    "internal_error": "An unexpected error. The answer says nothing more; the `request_id` "
    "finds the log line with the trace.",
    "callback_forbidden": "A provider callback from an address outside "
    "`OTP_CALLBACK_ALLOWED_NETWORKS` (Huawei publishes its push source ranges, sms_faq_0093). "
    "The operator checks the list and `OTP_TRUSTED_PROXIES`.",
    "callback_unauthorized": "A provider callback without the right callback token "
    "(`OTP_CALLBACK_TOKEN`), or callbacks are not configured.",
}


@dataclass(frozen=True, slots=True)
class ProblemDoc:
    """One problem type as documented: what a client sees in ``code``, ``status``, ``title``."""

    code: str
    status: int
    title: str
    remedy: str

    def as_json(self) -> dict[str, object]:
        return {
            "code": self.code,
            "status": self.status,
            "title": self.title,
            "remedy": self.remedy,
        }


def problem_docs() -> dict[str, ProblemDoc]:
    """Every problem type, by code, sorted."""
    docs = {cls.code: _doc(cls) for cls in all_error_classes()}
    return dict(sorted(docs.items()))


def _doc(cls: type[OtpError]) -> ProblemDoc:
    return ProblemDoc(cls.code, cls.status, cls.title, REMEDIES.get(cls.code, cls.title))


def render_html(docs: list[ProblemDoc], *, heading: str) -> str:
    """A plain page for people following a problem's ``type`` from a browser."""
    items = "\n".join(
        f'<section id="{escape(doc.code)}"><h2><code>{escape(doc.code)}</code> · {doc.status} '
        f"{escape(doc.title)}</h2><p>{escape(doc.remedy)}</p></section>"
        for doc in docs
    )
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(heading)}</title></head><body><h1>{escape(heading)}</h1>\n"
        f"{items}\n</body></html>\n"
    )
