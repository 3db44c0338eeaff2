"""``create_app``: the sidecar's WSGI application and the tests' entry point.

gunicorn runs ``otp_service.app:create_app()``; settings come from ``OTP_*`` variables unless a
:class:`Settings` is passed, and any adapter can be swapped by keyword.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from flask import Flask, Response, request

from otp_service.api import bp
from otp_service.api_callbacks import callbacks_bp
from otp_service.audit import request_id_var
from otp_service.problems import register_problem_handlers
from otp_service.service import OtpService
from otp_service.settings import Settings

#: Bodies are a few short strings; anything bigger is a mistake or an attack.
MAX_BODY_BYTES = 16 * 1024
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def create_app(
    settings: Settings | None = None, *, service: OtpService | None = None, **components: Any
) -> Flask:
    """Build the HTTP service.

    :param settings: configuration; read from the environment when omitted.
    :param service: a ready :class:`OtpService` (then ``components`` must be empty).
    :param components: adapters for :class:`OtpService` — ``store``, ``gateway``,
        ``captcha_renderer``, ``clock``, ``rng``, ``audit``.
    """
    if service is None:
        service = OtpService(settings or Settings.from_env(), **components)
    elif components:
        raise TypeError("pass either service= or components, not both")
    app = Flask("otp_service", static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["otp_service"] = service
    app.register_blueprint(bp)
    app.register_blueprint(callbacks_bp)
    register_problem_handlers(app)
    app.before_request(_bind_request_id)
    app.after_request(_echo_request_id)
    return app


def _bind_request_id() -> None:
    supplied = request.headers.get("X-Request-ID", "")
    valid = REQUEST_ID_PATTERN.fullmatch(supplied) is not None
    request_id_var.set(supplied if valid else uuid.uuid4().hex)


def _echo_request_id(response: Response) -> Response:
    request_id = request_id_var.get()
    if request_id:
        response.headers["X-Request-ID"] = request_id
    return response
