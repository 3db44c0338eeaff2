"""The OpenAPI 3.1 description of the HTTP API, built for the app that serves it.

Operations are described here once, keyed by their Flask rule. :func:`openapi_document` keeps
only those the app really routes, under the paths it routes them at, so a host app that mounts
the blueprint under a prefix, or a sidecar without the provider callbacks, is described exactly.
The problem schema enumerates every error ``code`` from :func:`~otp_service.errors.
all_error_classes`, so a new error class is documented the moment it exists. Tests validate real
responses against this document and fuzz the app with schemathesis over it.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

from flask import Flask

from otp_service.callbacks import MAX_BATCH_REPORTS
from otp_service.core.pow import MAX_PAYLOAD_CHARS
from otp_service.core.purpose import PURPOSE_PATTERN
from otp_service.errors import all_error_classes

OPENAPI_VERSION = "3.1.0"
PROBLEM_MEDIA_TYPE = "application/problem+json"
_REF = "#/components/schemas/"
_RULE_ARGUMENT = re.compile(r"<(?:[a-z_]+:)?([a-z_]+)>")
#: The longest string ``api.json_body`` accepts in any field.
MAX_FIELD_LENGTH = 256

JSONSchema = dict[str, Any]


def _string(description: str, **extra: Any) -> JSONSchema:
    return {"type": "string", "description": description, **extra}


def _optional_string(description: str, pattern: str | None = None) -> JSONSchema:
    schema: JSONSchema = {
        "type": ["string", "null"],
        "maxLength": MAX_FIELD_LENGTH,
        "description": description,
    }
    if pattern is not None:
        schema["pattern"] = pattern
    return schema


def _object(
    properties: dict[str, JSONSchema], required: tuple[str, ...], *, closed: bool = True
) -> JSONSchema:
    schema: JSONSchema = {"type": "object", "properties": properties, "required": list(required)}
    if closed:
        schema["additionalProperties"] = False
    return schema


def _problem_schema() -> JSONSchema:
    codes = sorted({cls.code for cls in all_error_classes()})
    return {
        "type": "object",
        "description": "RFC 9457 problem details; never carries a code, a secret or a full number.",
        "required": ["type", "title", "status", "detail", "code"],
        "properties": {
            "type": {
                "type": "string",
                "format": "uri",
                "description": "Documents the code: this API's /problems/{code} (absolute), "
                "or OTP_PROBLEM_BASE_URL + code.",
            },
            "title": {"type": "string"},
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "detail": {"type": "string"},
            "code": {"type": "string", "enum": codes, "description": "Stable machine code."},
            "request_id": {"type": "string", "description": "The request's X-Request-ID."},
            "retry_after": {"type": "integer", "minimum": 0, "description": "Seconds."},
            "limit": {
                "type": "string",
                "description": "Which limit refused: number, ip, subnet, prefix, global, …",
            },
            "attempts_left": {"type": "integer", "minimum": 0},
            "field": {"type": "string", "description": "The request field at fault."},
            "rule": {"type": "string", "description": "Content rule id (never the text)."},
            "group": {"type": "string", "description": "Content rule group."},
            "provider_code": {"type": "string", "description": "The SMS provider's error code."},
            "captcha_kinds": {
                "type": "array",
                "items": {"enum": ["image", "pow"]},
                "description": "captcha_required: what to bring (OTP_CAPTCHA_KIND).",
            },
            "pow_level": {
                "type": "integer",
                "minimum": 0,
                "description": "captcha_required: the proof-of-work level this request needs.",
            },
            "captcha_kind": {
                "enum": ["image", "pow"],
                "description": "captcha_invalid: which proof was wrong, used or expired.",
            },
        },
        # Errors may carry further public details; clients must ignore what they do not know.
        "additionalProperties": True,
    }


def _problem_doc_schema() -> JSONSchema:
    codes = sorted({cls.code for cls in all_error_classes()})
    return _object(
        {
            "code": {"type": "string", "enum": codes},
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "title": {"type": "string"},
            "remedy": _string("What happened and what the client does next."),
        },
        ("code", "status", "title", "remedy"),
    )


def _schemas(code_length: int) -> dict[str, JSONSchema]:
    """Every request constraint ``api.json_body`` and the service enforce, stated (issue 17.4).

    A schema looser than the service would have clients (and fuzzers) send requests the service
    then calls malformed; the code pattern follows ``OTP_CODE_LENGTH`` for that reason.
    """
    purpose = _optional_string(
        "Names a flow (signup, login …); 'default' if omitted.",
        f"^{PURPOSE_PATTERN.pattern}$",
    )
    region = _optional_string(
        "Two-letter region for numbers without a country code.", "^[A-Za-z]{2}$"
    )
    return {
        "Problem": _problem_schema(),
        "ProblemDoc": _problem_doc_schema(),
        "ProblemIndex": _object(
            {"problems": {"type": "array", "items": {"$ref": _REF + "ProblemDoc"}}},
            ("problems",),
        ),
        # A challenge answers only for the purpose it was made for (send-code's, or the guard's).
        "CaptchaRequest": _object(
            {
                "purpose": _optional_string(
                    "The flow the challenge is for; its answer is refused (captcha_invalid) for "
                    "any other. 'default' if omitted, as for a send without purpose.",
                    f"^{PURPOSE_PATTERN.pattern}$",
                )
            },
            (),
        ),
        "Captcha": _object(
            {
                "captcha_id": _string("Pass back as captcha_id with the answer."),
                "image": _string(
                    "The challenge as a data: URL.", pattern="^data:image/png;base64,"
                ),
                "image_url": _string("The challenge image on this service."),
                "audio_url": _string("The challenge spoken, on this service (accessibility)."),
                "expires_in": {"type": "integer", "description": "Seconds."},
            },
            ("captcha_id", "image", "expires_in"),
            closed=False,
        ),
        "SendCodeRequest": _object(
            {
                "phone": _string(
                    "E.164, or national with region.", minLength=1, maxLength=MAX_FIELD_LENGTH
                ),
                "region": region,
                "purpose": purpose,
                "captcha_id": _optional_string("From POST /captcha."),
                "captcha_answer": _optional_string("The characters in the captcha image."),
                "altcha": {
                    "type": ["string", "null"],
                    "maxLength": MAX_PAYLOAD_CHARS,
                    "description": "A solved proof of work (ALTCHA payload) for GET/POST /pow.",
                },
            },
            ("phone",),
        ),
        "PowRequest": _object(
            {
                "phone": _optional_string("The number the send will be for (prices its signals)."),
                "region": region,
            },
            (),
        ),
        "PowChallenge": _object(
            {
                "parameters": {
                    "type": "object",
                    "description": "ALTCHA v2 parameters (PBKDF2/SHA-256); data: level, expires.",
                },
                "signature": _string("HMAC of the parameters."),
            },
            ("parameters", "signature"),
            closed=False,
        ),
        "SendCodeAccepted": _object(
            {
                "status": {"const": "sent"},
                "phone": _string("The number, masked."),
                "purpose": _string("The flow."),
                "expires_in": {"type": "integer", "description": "Seconds the code lives."},
                "resend_after": {"type": "integer", "description": "Seconds before a resend."},
            },
            ("status", "phone", "purpose", "expires_in", "resend_after"),
            closed=False,
        ),
        "VerifyRequest": _object(
            {
                "phone": _string(
                    "The number the code was sent to.", minLength=1, maxLength=MAX_FIELD_LENGTH
                ),
                "code": _string("The code from the SMS.", pattern=f"^[0-9]{{{code_length}}}$"),
                "purpose": purpose,
                "region": region,
            },
            ("phone", "code"),
        ),
        "Approval": _object(
            {
                "status": {"const": "approved"},
                "token": _string("Signed, expiring proof of the number; check it server-side."),
                "phone": _string("The verified number, E.164."),
                "purpose": _string("The flow."),
                "expires_in": {"type": "integer", "description": "Seconds the token lives."},
            },
            ("status", "token", "phone", "purpose", "expires_in"),
            closed=False,
        ),
        "TokenCheckRequest": _object(
            {
                "token": _string("From POST /verify.", minLength=1, maxLength=MAX_FIELD_LENGTH),
                "purpose": purpose,
                "consume": {"type": ["boolean", "null"], "description": "Accept it once only."},
            },
            ("token",),
        ),
        "VerifiedClaim": _object(
            {
                "phone": _string("The verified number, E.164."),
                "purpose": _string("The flow."),
                "verified_at": {"type": "integer", "description": "Unix seconds."},
                "expires_at": {"type": "integer", "description": "Unix seconds."},
            },
            ("phone", "purpose", "verified_at", "expires_at"),
            closed=False,
        ),
        "Status": _object(
            {
                "status": _string("ok / ready."),
                "warnings": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "/readyz in production: why a restart of the store would "
                    "lose durable state (e.g. Redis without persistence). Ready all the same.",
                },
            },
            ("status",),
            closed=False,
        ),
        "ProviderCallback": {
            "type": "object",
            "description": "The provider's URL-encoded form, fields as its documentation gives.",
            "additionalProperties": {"type": "string"},
        },
        "BatchStatusReports": {
            "type": "object",
            "description": "Huawei's batch push (sms_05_0063): each report has the fields of a "
            "single one.",
            "properties": {
                "statusReportList": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": MAX_BATCH_REPORTS,
                    "items": {
                        "type": "object",
                        "required": ["smsMsgId", "status"],
                        "additionalProperties": {"type": ["string", "integer", "null"]},
                    },
                }
            },
            "required": ["statusReportList"],
        },
    }


def _json(schema: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": _REF + schema}}}


def _response(description: str, content: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "headers": {"X-Request-ID": {"$ref": "#/components/headers/X-Request-ID"}},
    }
    if content is not None:
        response["content"] = content
    return response


_PROBLEM_STATUSES = {
    400: "Invalid request, phone, captcha or code.",
    401: "Token or callback not accepted.",
    403: "Region, number type or opt-out refuses this number; a callback from a network that "
    "OTP_CALLBACK_ALLOWED_NETWORKS does not allow.",
    404: "No such resource.",
    409: "A request with the same Idempotency-Key is still running.",
    413: "Body too large.",
    415: "Not application/json.",
    422: "The message would break the provider's content rules.",
    429: "A limit refused; see limit and retry_after (and Retry-After).",
    502: "The SMS provider failed.",
    503: "The state store is unreachable (or the budget is spent); nothing was sent.",
}
_JSON_ERRORS = (400, 413, 415, 503)


def _problems(*statuses: int) -> dict[str, Any]:
    responses = {}
    for status in sorted(set(statuses)):
        response = _response(_PROBLEM_STATUSES[status], {PROBLEM_MEDIA_TYPE: _problem_ref()})
        if status in (409, 429, 503):
            response["headers"]["Retry-After"] = {
                "description": "Seconds to wait (when known).",
                "schema": {"type": "string"},
            }
        responses[str(status)] = response
    return responses


def _rate_limited(response: dict[str, Any]) -> dict[str, Any]:
    """Add the ``RateLimit-*`` headers a success carries for the caller's tightest window."""
    meanings = {
        "RateLimit-Limit": "Requests the tightest address window allows.",
        "RateLimit-Remaining": "Requests left in it.",
        "RateLimit-Reset": "Seconds until its oldest counted request leaves it.",
    }
    for name, description in meanings.items():
        response["headers"][name] = {"description": description, "schema": {"type": "string"}}
    return response


def _problem_ref() -> dict[str, Any]:
    return {"schema": {"$ref": _REF + "Problem"}}


@dataclass(frozen=True, slots=True)
class _Operation:
    rule: str
    method: str
    spec: dict[str, Any]


def _operations() -> list[_Operation]:
    body_required = {"required": True}
    idempotency_key = {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "description": "A repeat within the resend interval replays the first answer; no SMS.",
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,64}$"},
    }
    challenge_id = {
        "name": "challenge_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
    }
    json_object = {"application/json": {"schema": {"type": "object"}}}
    form_body = {
        **body_required,
        "content": {
            "application/x-www-form-urlencoded": {"schema": {"$ref": _REF + "ProviderCallback"}}
        },
    }
    return [
        _Operation(
            "/captcha",
            "post",
            {
                "summary": "Create a captcha challenge",
                "operationId": "createCaptcha",
                "requestBody": {"required": False, "content": _json("CaptchaRequest")},
                "responses": {
                    "201": _response("A new one-time challenge.", _json("Captcha")),
                    **_problems(*_JSON_ERRORS, 429),
                },
            },
        ),
        _Operation(
            "/pow",
            "get",
            {
                "summary": "A proof-of-work challenge priced by the client's address",
                "operationId": "getPowChallenge",
                "responses": {
                    "200": _response("An ALTCHA v2 challenge.", _json("PowChallenge")),
                    **_problems(429, 503),
                },
            },
        ),
        _Operation(
            "/pow",
            "post",
            {
                "summary": "A proof-of-work challenge priced by the address and the number",
                "operationId": "createPowChallenge",
                "requestBody": {"required": False, "content": _json("PowRequest")},
                "responses": {
                    "201": _response("An ALTCHA v2 challenge.", _json("PowChallenge")),
                    **_problems(*_JSON_ERRORS, 403, 429),
                },
            },
        ),
        _Operation(
            "/captcha/<challenge_id>.png",
            "get",
            {
                "summary": "The image of a live challenge",
                "operationId": "getCaptchaImage",
                "parameters": [challenge_id],
                "responses": {
                    "200": _response("PNG image.", {"image/png": {"schema": {"type": "string"}}}),
                    **_problems(404, 503),
                },
            },
        ),
        _Operation(
            "/captcha/<challenge_id>.wav",
            "get",
            {
                "summary": "An audio variant of a live challenge (accessibility)",
                "description": "The first request for a challenge's audio brings a solved "
                "proof of work (GET /pow) as altcha, unless OTP_CAPTCHA_AUDIO_POW is off.",
                "operationId": "getCaptchaAudio",
                "parameters": [
                    challenge_id,
                    {
                        "name": "altcha",
                        "in": "query",
                        "required": False,
                        "description": "A solved ALTCHA payload, as /send-code takes it.",
                        "schema": {"type": "string", "maxLength": MAX_PAYLOAD_CHARS},
                    },
                ],
                "responses": {
                    "200": _response("WAV audio.", {"audio/wav": {"schema": {"type": "string"}}}),
                    **_problems(400, 404, 429, 503),
                },
            },
        ),
        _Operation(
            "/send-code",
            "post",
            {
                "summary": "Send a verification code by SMS",
                "operationId": "sendCode",
                "parameters": [idempotency_key],
                "requestBody": {**body_required, "content": _json("SendCodeRequest")},
                "responses": {
                    "202": _rate_limited(
                        _response("The code is on its way.", _json("SendCodeAccepted"))
                    ),
                    **_problems(*_JSON_ERRORS, 403, 409, 422, 429, 502),
                },
            },
        ),
        _Operation(
            "/verify",
            "post",
            {
                "summary": "Check a code; on success get a verification token",
                "operationId": "verify",
                "requestBody": {**body_required, "content": _json("VerifyRequest")},
                "responses": {
                    "200": _response("Approved.", _json("Approval")),
                    **_problems(*_JSON_ERRORS, 403, 429),
                },
            },
        ),
        _Operation(
            "/tokens/check",
            "post",
            {
                "summary": "Check a verification token (optionally consuming it)",
                "operationId": "checkToken",
                "requestBody": {**body_required, "content": _json("TokenCheckRequest")},
                "responses": {
                    "200": _response("The token's claim.", _json("VerifiedClaim")),
                    **_problems(*_JSON_ERRORS, 401),
                },
            },
        ),
        *_callback_operations(form_body),
        _Operation(
            "/healthz",
            "get",
            {
                "summary": "Liveness: the process answers",
                "operationId": "healthz",
                "responses": {"200": _response("Alive.", _json("Status"))},
            },
        ),
        _Operation(
            "/readyz",
            "get",
            {
                "summary": "Readiness: the state store answers",
                "operationId": "readyz",
                "responses": {"200": _response("Ready.", _json("Status")), **_problems(503)},
            },
        ),
        _Operation(
            "/metrics",
            "get",
            {
                "summary": "Prometheus metrics (every worker's, under gunicorn)",
                "operationId": "metrics",
                "responses": {
                    "200": _response(
                        "Prometheus text exposition format.",
                        {"text/plain": {"schema": {"type": "string"}}},
                    )
                },
            },
        ),
        _Operation(
            "/problems",
            "get",
            {
                "summary": "Every problem type: what each code means and what to do",
                "operationId": "problemIndex",
                "responses": {
                    "200": _response(
                        "JSON, or an HTML page when the client prefers text/html.",
                        {**_json("ProblemIndex"), "text/html": {"schema": {"type": "string"}}},
                    )
                },
            },
        ),
        _Operation(
            "/problems/<code>",
            "get",
            {
                "summary": "The documentation a problem's type URI points at",
                "operationId": "problemDoc",
                "parameters": [
                    {
                        "name": "code",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "maxLength": MAX_FIELD_LENGTH},
                    }
                ],
                "responses": {
                    "200": _response(
                        "JSON, or an HTML page when the client prefers text/html.",
                        {**_json("ProblemDoc"), "text/html": {"schema": {"type": "string"}}},
                    ),
                    **_problems(404),
                },
            },
        ),
        _Operation(
            "/openapi.json",
            "get",
            {
                "summary": "This document",
                "operationId": "openapi",
                "responses": {
                    "200": _response("OpenAPI 3.1.", json_object),
                },
            },
        ),
    ]


def _callback_operations(form_body: dict[str, Any]) -> list[_Operation]:
    """Each provider push in its two forms: the token as a path segment (what we hand out by
    default, ``OTP_CALLBACK_URL_FORM=path``) or as the ``token`` query parameter."""
    query_token = {
        "name": "token",
        "in": "query",
        "required": False,
        "description": "The shared callback secret (OTP_CALLBACK_TOKEN).",
        "schema": {"type": "string"},
    }
    path_token = {
        "name": "token",
        "in": "path",
        "required": True,
        "description": "The shared callback secret (OTP_CALLBACK_TOKEN).",
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9._~-]+$"},
    }
    pushes = (
        (
            "status",
            "Huawei delivery report",
            "huaweiStatusCallback",
            (400, 401, 403, 404, 413, 503),
        ),
        (
            "uplink",
            "Huawei inbound SMS (opt-out replies)",
            "huaweiUplinkCallback",
            (400, 401, 403, 413, 503),
        ),
    )
    batch_body = {
        "required": True,
        "content": {
            **form_body["content"],
            "application/json": {"schema": {"$ref": _REF + "BatchStatusReports"}},
        },
    }
    operations = []
    for kind, summary, operation_id, statuses in pushes:
        for rule, parameter, suffix in (
            (f"/callbacks/huawei/{kind}", query_token, ""),
            (f"/callbacks/huawei/<token>/{kind}", path_token, "ByPath"),
        ):
            spec = {
                "summary": summary,
                "operationId": operation_id + suffix,
                "parameters": [parameter],
                "requestBody": batch_body if kind == "status" else form_body,
                "responses": {"200": _response("Recorded."), **_problems(*statuses)},
            }
            operations.append(_Operation(rule, "post", spec))
    return operations


def documented_rules() -> dict[tuple[str, str], str]:
    """``(rule, method)`` → operation id, for every operation described here."""
    return {(op.rule, op.method): op.spec["operationId"] for op in _operations()}


def _match(rule: str, operations: list[_Operation]) -> list[_Operation]:
    """Operations routed at ``rule`` or at its tail (the blueprint may sit under a prefix)."""
    found = [op for op in operations if rule == op.rule or rule.endswith(op.rule)]
    if not found:
        return []
    longest = max(len(op.rule) for op in found)
    return [op for op in found if len(op.rule) == longest]


def openapi_document(app: Flask, *, code_length: int = 6) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the operations ``app`` routes, at the paths it routes them.

    :param code_length: the deployment's ``OTP_CODE_LENGTH``, which the code pattern states.
    """
    operations = _operations()
    paths: dict[str, dict[str, Any]] = {}
    for rule in app.url_map.iter_rules():
        methods = {m.lower() for m in rule.methods or ()}
        for op in _match(rule.rule, operations):
            if op.method in methods:
                path = _RULE_ARGUMENT.sub(r"{\1}", rule.rule)
                paths.setdefault(path, {})[op.method] = copy.deepcopy(op.spec)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "otp-service",
            "version": _package_version(),
            "description": (
                "SMS verification codes with anti-abuse: captcha gate, throttles, pumping "
                "defence, content checks. Every error is application/problem+json."
            ),
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": _schemas(code_length),
            "headers": {
                "X-Request-ID": {
                    "description": "The request id: the client's (if valid) or a new one.",
                    "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,64}$"},
                }
            },
        },
    }


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("otp-service")
    except PackageNotFoundError:
        return "0+unknown"
