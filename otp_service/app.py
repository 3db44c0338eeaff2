"""``create_app``: the sidecar's WSGI application and the tests' entry point.

gunicorn runs ``otp_service.app:create_app()``; settings come from ``OTP_*`` variables unless a
:class:`Settings` is passed, and any adapter can be swapped by keyword.
"""

from __future__ import annotations

from typing import Any

from flask import Flask

from otp_service.api import MAX_BODY_BYTES, bp
from otp_service.api_callbacks import callbacks_bp
from otp_service.audit import attach_audit_log
from otp_service.problems import register_problem_handlers
from otp_service.responses import install_request_ids
from otp_service.service import OtpService
from otp_service.settings import Settings


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
    attach_audit_log(service.settings.audit_log)
    app = Flask("otp_service", static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.extensions["otp_service"] = service
    app.register_blueprint(bp)
    app.register_blueprint(callbacks_bp)
    register_problem_handlers(app)
    install_request_ids(app)
    return app
