"""Every error leaves as RFC 9457 ``application/problem+json``, built here and only here."""

from __future__ import annotations

import logging

from flask import Blueprint, Flask, Response, current_app, has_request_context, url_for
from werkzeug.exceptions import HTTPException

from otp_service.audit import request_id_var
from otp_service.errors import (
    InternalError,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    OtpError,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from otp_service.responses import PROBLEM_MIMETYPE, json_response

log = logging.getLogger(__name__)

#: The view serving a problem type's documentation (``api.problem_doc``).
PROBLEM_DOC_ENDPOINT = "otp.problem_doc"
_HTTP_ERRORS: dict[int, type[OtpError]] = {
    400: InvalidRequest,
    404: NotFound,
    405: MethodNotAllowed,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
}


def problem_type(code: str) -> str:
    """The URI documenting ``code``: ``OTP_PROBLEM_BASE_URL`` + code if the operator set one,
    else this app's own ``/problems/<code>``, absolute (RFC 9457 resolves a relative ``type``
    against the request, which a client that logs only the body cannot do).

    ``about:blank`` ("nothing more than the status") only where neither exists: an app whose
    guard mounts no API.
    """
    if not has_request_context():
        return "about:blank"
    service = current_app.extensions.get("otp_service")
    base: str | None = service.settings.problem_base_url if service is not None else None
    if base:
        return base.rstrip("/") + "/" + code
    if PROBLEM_DOC_ENDPOINT in current_app.view_functions:
        return url_for(PROBLEM_DOC_ENDPOINT, code=code, _external=True)
    return "about:blank"


def problem_body(error: OtpError) -> dict[str, object]:
    body: dict[str, object] = {
        "type": problem_type(error.code),
        "title": error.title,
        "status": error.status,
        "detail": error.detail,
        "code": error.code,
    }
    body.update(error.extras)
    request_id = request_id_var.get()
    if request_id:
        body["request_id"] = request_id
    return body


def problem_response(error: OtpError) -> Response:
    response = json_response(problem_body(error), error.status, mimetype=PROBLEM_MIMETYPE)
    retry_after = error.extras.get("retry_after")
    if isinstance(retry_after, int):
        response.headers["Retry-After"] = str(retry_after)
    return response


def _from_http(exc: HTTPException) -> Response:
    error_class = _HTTP_ERRORS.get(exc.code or 500)
    if error_class is None:
        if (exc.code or 500) >= 500:
            return problem_response(InternalError())
        error = InvalidRequest(exc.description or None)
        response = problem_response(error)
        response.status_code = exc.code or 400
        return response
    response = problem_response(error_class())
    # RFC 9110: a 405 lists what the resource does allow.
    allow = exc.get_response().headers.get("Allow")
    if allow:
        response.headers["Allow"] = allow
    return response


def _from_unexpected(exc: Exception) -> Response:
    log.exception("unhandled error", exc_info=exc)
    return problem_response(InternalError())


def register_problem_handlers(app: Flask, *, unexpected: bool = True) -> None:
    """Map our errors, HTTP errors and anything unexpected to problem responses on ``app``.

    :param unexpected: also turn any other exception into a bare 500 problem. The sidecar wants
        that; a host app mounting the guard keeps its own handling (and its debugger).
    """
    app.register_error_handler(OtpError, problem_response)
    app.register_error_handler(HTTPException, _from_http)
    if unexpected:
        app.register_error_handler(Exception, _from_unexpected)


def register_on_blueprint(bp: Blueprint) -> None:
    """The same mapping, scoped to ``bp``'s views, so every app that mounts it answers problems.

    A host app mounting the API through the guard keeps its own error pages everywhere else.
    """
    bp.register_error_handler(OtpError, problem_response)
    bp.register_error_handler(HTTPException, _from_http)
    bp.register_error_handler(Exception, _from_unexpected)
