"""A loopback simulator of Huawei IAM's token API and the MSGSMS management reads (reference §2.4).

``POST /v3/auth/tokens`` checks the password identity and the project scope and answers 201 with
the token in ``X-Subject-Token`` and ``token.expires_at`` in the body, as IAM does. The reads
(``GET /v2/{project_id}/msgsms/templates|signatures``) need a live ``X-Auth-Token`` and answer
``{"results": [...], "total": n}`` filtered by ``template_id`` / ``signature_name``, as the SDK's
list operations do. A missing or expired token gives 401 ``APIGW.0301`` (the API gateway's code;
its exact text is ours). Tests change :attr:`ManagementSimulator.templates` and
:attr:`ManagementSimulator.signatures` to put the account in any state.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

DOMAIN = "example-account"
USER = "otp-readonly"
PASSWORD = "iam-password-for-tests-only"
PROJECT_ID = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"


class ManagementSimulator:
    """IAM and the management API on one free loopback port, in a thread."""

    def __init__(self, *, token_lifetime: float = 24 * 3600) -> None:
        self.token_lifetime = token_lifetime
        self.templates: dict[str, dict[str, Any]] = {}
        self.signatures: dict[str, dict[str, Any]] = {}
        self.variables: dict[str, list[dict[str, Any]]] = {}
        self.tokens_issued = 0
        self.reads = 0
        self._tokens: dict[str, float] = {}
        self._lock = threading.Lock()
        self.now = lambda: datetime.now(UTC).timestamp()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def start(self) -> ManagementSimulator:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def set_template(
        self,
        template_id: str,
        flow_status: str,
        *,
        universal: bool = False,
        variable_lengths: tuple[int, ...] = (6,),
    ) -> None:
        key = str(len(self.templates) + 1000)
        self.templates[template_id] = {
            "id": key,
            "template_id": template_id,
            "flow_status": flow_status,
            "universal_template": 1 if universal else 0,
            "status": "Normal",
        }
        self.variables[key] = [
            {"variable_index": i + 1, "variable_type": "VERIFY_CODE", "variable_length": length}
            for i, length in enumerate(variable_lengths)
        ]

    def set_signature(self, name: str, status: str) -> None:
        self.signatures[name] = {"signature_name": name, "status": status, "id": uuid.uuid4().hex}

    def _issue(self, body: dict[str, Any]) -> tuple[int, dict[str, str], dict[str, Any]]:
        try:
            user = body["auth"]["identity"]["password"]["user"]
            project = body["auth"]["scope"]["project"]["id"]
            methods = body["auth"]["identity"]["methods"]
        except (KeyError, TypeError):
            return 400, {}, {"error": {"code": 400, "message": "The request body is invalid"}}
        good = (
            methods == ["password"]
            and user.get("name") == USER
            and user.get("password") == PASSWORD
            and user.get("domain", {}).get("name") == DOMAIN
            and project == PROJECT_ID
        )
        if not good:
            return 401, {}, {"error": {"code": 401, "message": "The username or password is wrong"}}
        token = "MIIT" + uuid.uuid4().hex
        expires = self.now() + self.token_lifetime
        with self._lock:
            self._tokens[token] = expires
            self.tokens_issued += 1
        expires_at = datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return 201, {"X-Subject-Token": token}, {"token": {"expires_at": expires_at}}

    def _read(self, path: str, query: dict[str, str], token: str | None) -> tuple[int, Any]:
        with self._lock:
            live = token is not None and self._tokens.get(token, 0) > self.now()
            self.reads += 1
        if not live:
            return 401, {"error_code": "APIGW.0301", "error_msg": "Incorrect IAM authentication"}
        prefix = f"/v2/{PROJECT_ID}/msgsms/"
        if not path.startswith(prefix):
            return 404, {"error_code": "MSGSMS.0076", "error_msg": "app not exist"}
        resource = path.removeprefix(prefix)
        if resource == "templates":
            found = [
                t for t in self.templates.values() if t["template_id"] == query.get("template_id")
            ]
        elif resource.startswith("templates/") and resource.endswith("/varilable"):
            key = resource.removeprefix("templates/").removesuffix("/varilable")
            if key not in self.variables:
                return 404, {"error_code": "MSGSMS.0009", "error_msg": "template not exist"}
            found = self.variables[key]
        elif resource == "signatures":
            found = [
                s
                for s in self.signatures.values()
                if s["signature_name"] == query.get("signature_name")
            ]
        else:
            return 404, {"error_code": "MSGSMS.0002", "error_msg": "Invalid parameter"}
        return 200, {"results": found, "total": len(found)}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        sim = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the test output is for assertions."""

            def _answer(
                self, status: int, body: Any, headers: dict[str, str] | None = None
            ) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json;charset=UTF-8")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if urlsplit(self.path).path != "/v3/auth/tokens":
                    self._answer(404, {"error": {"code": 404}})
                    return
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = {}
                status, headers, answer = sim._issue(body if isinstance(body, dict) else {})
                self._answer(status, answer, headers)

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                status, answer = sim._read(
                    parts.path, dict(parse_qsl(parts.query)), self.headers.get("X-Auth-Token")
                )
                self._answer(status, answer)

        return Handler


@pytest.fixture
def management_sim() -> Iterator[ManagementSimulator]:
    """A running simulator, stopped even when the test fails."""
    sim = ManagementSimulator().start()
    try:
        yield sim
    finally:
        sim.stop()
