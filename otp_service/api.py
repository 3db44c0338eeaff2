"""The HTTP API: thin JSON views over :class:`~otp_service.service.OtpService`.

Each view validates its body (types, unknown fields), makes one service call and renders the
result. Errors are raised, never rendered here: ``problems.py`` turns them into problem bodies.
"""

from __future__ import annotations

import base64
import math
from typing import Any

from flask import Blueprint, Response, current_app, request, url_for

from otp_service.core.client_ip import resolve_client_ip
from otp_service.core.pow import MAX_PAYLOAD_CHARS
from otp_service.errors import InvalidRequest, NotFound, StoreUnavailable, UnsupportedMediaType
from otp_service.openapi import openapi_document
from otp_service.problem_docs import problem_docs, render_html
from otp_service.problems import register_on_blueprint
from otp_service.responses import json_response
from otp_service.service import OtpService
from otp_service.store import WindowUsage

bp = Blueprint("otp", __name__)
register_on_blueprint(bp)

#: Bodies are a few short strings; anything bigger is a mistake or an attack.
MAX_BODY_BYTES = 16 * 1024

MAX_FIELD_LENGTH = 256
#: Fields allowed to be longer than MAX_FIELD_LENGTH: an ALTCHA payload is ~700 characters.
LONG_FIELDS = {"altcha": MAX_PAYLOAD_CHARS}
#: Fields that are JSON booleans; every other field is a bounded string.
BOOLEAN_FIELDS = frozenset({"consume"})


@bp.before_request
def _bound_body() -> None:
    # Per request, so the API mounted in a host app is bounded too, whatever its config says.
    request.max_content_length = MAX_BODY_BYTES


def get_service() -> OtpService:
    """The app's service.

    :raises RuntimeError: neither ``create_app`` nor ``OtpGuard.init_app`` set this app up.
    """
    service = current_app.extensions.get("otp_service")
    if not isinstance(service, OtpService):
        raise RuntimeError("otp-service is not set up on this app: call OtpGuard.init_app(app)")
    return service


def client_ip() -> str | None:
    """The client's address: the peer's, or ``X-Forwarded-For`` walked through trusted proxies.

    Only a peer inside ``OTP_TRUSTED_PROXIES`` is believed about who it forwards for, so a client
    cannot pick the address its IP and subnet limits count against
    (:func:`~otp_service.core.client_ip.resolve_client_ip`).
    """
    # A WSGI environ holds a header once (repeated lines arrive joined by commas), so ``get``
    # finds everything ``getlist`` would, without walking every header of the request.
    forwarded = request.headers.get("X-Forwarded-For")
    return resolve_client_ip(
        request.remote_addr,
        [] if forwarded is None else [forwarded],
        get_service().trusted_proxies,
    )


def rate_limit_headers(usage: WindowUsage | None) -> dict[str, str]:
    """``RateLimit-Limit``/``-Remaining``/``-Reset`` for the caller's tightest window.

    Reset is the whole seconds until the window's oldest counted request leaves it (one more
    request fits again then). Empty without a known client address.
    """
    if usage is None:
        return {}
    return {
        "RateLimit-Limit": str(usage.rule.amount),
        "RateLimit-Remaining": str(usage.remaining),
        "RateLimit-Reset": str(max(0, math.ceil(usage.reset_after))),
    }


def json_body(*, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict[str, Any]:
    """The request's JSON object, checked: only known fields, strings (or booleans where named).

    :raises UnsupportedMediaType: not ``application/json``.
    :raises InvalidRequest: malformed JSON, not an object, unknown/missing/mistyped fields.
    """
    if not request.is_json:
        raise UnsupportedMediaType("Send a JSON object with Content-Type: application/json.")
    try:
        data = request.get_json(silent=True)
    except RecursionError:
        data = None
    if not isinstance(data, dict):
        raise InvalidRequest("The body must be a JSON object.")
    unknown = sorted(set(data) - set(required) - set(optional))
    if unknown:
        raise InvalidRequest(f"Unknown fields: {', '.join(unknown)[:200]}.")
    for name in required:
        if data.get(name) is None:
            raise InvalidRequest(f"{name}: required.", field=name)
    for name, value in data.items():
        if value is None:
            continue
        if name in BOOLEAN_FIELDS:
            if not isinstance(value, bool):
                # "false" is a non-empty string: read as a flag it would mean the opposite.
                raise InvalidRequest(f"{name}: expected true or false.", field=name)
            continue
        longest = LONG_FIELDS.get(name, MAX_FIELD_LENGTH)
        if not isinstance(value, str) or len(value) > longest:
            raise InvalidRequest(
                f"{name}: expected a string of at most {longest} characters.", field=name
            )
    return data


@bp.post("/captcha")
def create_captcha() -> Response:
    data = json_body(required=(), optional=("purpose",)) if request.content_length else {}
    challenge = get_service().create_captcha(client_ip=client_ip(), purpose=data.get("purpose"))
    image = base64.b64encode(challenge.image_png).decode()
    body = {
        "captcha_id": challenge.challenge_id,
        "image": f"data:image/png;base64,{image}",
        # url_for keeps the link right when a host app mounts the API under a prefix.
        "image_url": url_for(".captcha_image", challenge_id=challenge.challenge_id),
        "audio_url": url_for(".captcha_audio", challenge_id=challenge.challenge_id),
        "expires_in": challenge.expires_in,
    }
    return json_response(body, 201)


@bp.route("/pow", methods=["GET", "POST"])
def create_pow() -> Response:
    """An ALTCHA v2 challenge; the body is what the ALTCHA widget's ``challengeurl`` expects.

    ``GET`` (the widget's default) prices the work by the client's address alone; ``POST`` with
    the ``phone`` the send will be for prices it by the number's signals too.
    """
    data: dict[str, Any] = {}
    if request.method == "POST" and request.content_length:
        data = json_body(required=(), optional=("phone", "region"))
    challenge = get_service().create_pow(
        client_ip=client_ip(), phone=data.get("phone"), region=data.get("region")
    )
    response = json_response(challenge, 201 if request.method == "POST" else 200)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/captcha/<challenge_id>.png")
def captcha_image(challenge_id: str) -> Response:
    response = Response(get_service().captcha_image(challenge_id), mimetype="image/png")
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/captcha/<challenge_id>.wav")
def captcha_audio(challenge_id: str) -> Response:
    """The same challenge spoken (accessibility); drawn on first request, then cached.

    The first request brings a solved proof of work as ``?altcha=`` (``OTP_CAPTCHA_AUDIO_POW``).
    """
    altcha = request.args.get("altcha")
    if altcha is not None and len(altcha) > MAX_PAYLOAD_CHARS:
        raise InvalidRequest("altcha is too long.", field="altcha")
    audio = get_service().captcha_audio(challenge_id, altcha=altcha, client_ip=client_ip())
    response = Response(audio, mimetype="audio/wav")
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/send-code")
def send_code() -> Response:
    data = json_body(
        required=("phone",),
        optional=("region", "purpose", "captcha_id", "captcha_answer", "altcha"),
    )
    receipt = get_service().send_code(
        data["phone"],
        purpose=data.get("purpose"),
        region=data.get("region"),
        client_ip=client_ip(),
        captcha_id=data.get("captcha_id"),
        captcha_answer=data.get("captcha_answer"),
        altcha=data.get("altcha"),
        idempotency_key=request.headers.get("Idempotency-Key"),
    )
    body = {
        "status": "sent",
        "phone": receipt.phone,
        "purpose": receipt.purpose,
        "expires_in": receipt.expires_in,
        "resend_after": receipt.resend_after,
    }
    response = json_response(body, 202)
    response.headers.update(rate_limit_headers(receipt.rate_limit))
    return response


@bp.post("/verify")
def verify() -> Response:
    data = json_body(required=("phone", "code"), optional=("purpose", "region"))
    approval = get_service().verify(
        data["phone"],
        data["code"],
        purpose=data.get("purpose"),
        region=data.get("region"),
        client_ip=client_ip(),
    )
    return json_response(
        {
            "status": "approved",
            "token": approval.token,
            "phone": approval.phone,
            "purpose": approval.purpose,
            "expires_in": approval.expires_in,
        }
    )


@bp.post("/tokens/check")
def check_token() -> Response:
    data = json_body(required=("token",), optional=("purpose", "consume"))
    claim = get_service().check_token(
        data["token"],
        purpose=data.get("purpose"),
        consume=bool(data.get("consume")),
        client_ip=client_ip(),
    )
    return json_response(
        {
            "phone": claim.phone,
            "purpose": claim.purpose,
            "verified_at": claim.verified_at,
            "expires_at": claim.expires_at,
        }
    )


@bp.get("/healthz")
def healthz() -> Response:
    return json_response({"status": "ok"})


@bp.get("/readyz")
def readyz() -> Response:
    service = get_service()
    try:
        service.ready()
        # Ready either way: a store without persistence serves, but a restart would lose state.
        warning = service.persistence_warning()
    except StoreUnavailable:
        raise StoreUnavailable("The state store is unreachable; not ready.") from None
    body: dict[str, object] = {"status": "ready"}
    if warning is not None:
        body["warnings"] = [warning]
    return json_response(body)


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus text; every gunicorn worker's values when ``PROMETHEUS_MULTIPROC_DIR`` is set."""
    body, content_type = get_service().metrics.exposition()
    return Response(body, content_type=content_type)


@bp.get("/openapi.json")
def openapi() -> Response:
    """The OpenAPI 3.1 document of the routes this app serves."""
    document = openapi_document(current_app, code_length=get_service().settings.code_length)
    return json_response(document)


@bp.get("/problems")
def problem_index() -> Response:
    """Every problem type: what each ``code`` means and what to do about it."""
    docs = list(problem_docs().values())
    if _wants_html():
        return Response(
            render_html(docs, heading="otp-service problem types"), mimetype="text/html"
        )
    return json_response({"problems": [doc.as_json() for doc in docs]})


@bp.get("/problems/<code>")
def problem_doc(code: str) -> Response:
    """The page a problem's ``type`` points at: JSON, or HTML for a browser."""
    doc = problem_docs().get(code)
    if doc is None:
        raise NotFound("No problem type has this code; see /problems.")
    if _wants_html():
        return Response(render_html([doc], heading=f"Problem: {code}"), mimetype="text/html")
    return json_response(doc.as_json())


def _wants_html() -> bool:
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "text/html"
