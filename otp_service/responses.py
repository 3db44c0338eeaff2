"""One response path for every mount of the API: JSON bodies and request ids.

The sidecar (``create_app``) and a host app mounting the API through ``OtpGuard`` must answer
byte for byte alike, whatever the host's JSON provider sorts or indents and whatever hooks it
has. So bodies are serialised here, not by ``flask.jsonify``, and the request-id hooks are
installed by the same function on both.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping

from flask import Flask, Response, request

from otp_service.audit import request_id_var

JSON_MIMETYPE = "application/json"
PROBLEM_MIMETYPE = "application/problem+json"
#: A client's own id is echoed only if it is short and plain; otherwise we make one.
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def json_response(
    body: Mapping[str, object], status: int = 200, *, mimetype: str = JSON_MIMETYPE
) -> Response:
    """``body`` in the service's one serialisation: keys in the order written, compact, ASCII."""
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=True, default=str) + "\n"
    return Response(text, status=status, mimetype=mimetype)


def install_request_ids(app: Flask, *, blueprint: str | None = None) -> None:
    """Bind a request id for each request (the client's ``X-Request-ID`` or a fresh one), put
    it in audit lines and problems, echo it in the response, and forget it afterwards.

    :param blueprint: only that blueprint's requests (a host app keeps its other routes as
        they are); ``None`` for every request of the app.
    """
    app.before_request_funcs.setdefault(blueprint, []).append(_bind_request_id)
    app.after_request_funcs.setdefault(blueprint, []).append(_echo_request_id)
    app.teardown_request_funcs.setdefault(blueprint, []).append(_forget_request_id)


def _bind_request_id() -> None:
    supplied = request.headers.get("X-Request-ID", "")
    valid = REQUEST_ID_PATTERN.fullmatch(supplied) is not None
    request_id_var.set(supplied if valid else uuid.uuid4().hex)


def _echo_request_id(response: Response) -> Response:
    request_id = request_id_var.get()
    if request_id:
        response.headers["X-Request-ID"] = request_id
    return response


def _forget_request_id(_exc: BaseException | None) -> None:
    # A sync worker serves the next request in the same context: no id may carry over.
    request_id_var.set(None)
