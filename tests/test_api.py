"""The HTTP contract: JSON in and out, problem+json for every error, over both stores.

Every test runs against both mounts of the API: the sidecar (``create_app``) and a host app
with ``OtpGuard`` mounted under ``/otp``. They must answer alike, byte for byte.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import make_server

from otp_service import ConsoleGateway, OtpGuard, OtpService, create_app
from otp_service.errors import all_error_classes
from otp_service.settings import Settings
from otp_service.sms import SendResult, SmsMessage
from otp_service.store import MemoryStore, Store
from tests.conftest import FakeClock

PHONE = "+8613812345678"


@pytest.fixture
def gateway() -> ConsoleGateway:
    return ConsoleGateway()


GUARD_PREFIX = "/otp"


class PrefixedClient(FlaskClient):
    """A test client for the guard-mounted API: the tests' paths, under the mount prefix."""

    def open(self, *args: Any, **kwargs: Any) -> Any:
        if args and isinstance(args[0], str) and args[0].startswith("/"):
            args = (GUARD_PREFIX + args[0], *args[1:])
        return super().open(*args, **kwargs)


def guard_host(service: OtpService) -> Flask:
    """A host app as a user writes it: Flask's defaults (sorted JSON keys), its own route."""
    host = Flask("host_app")
    OtpGuard(host, service=service, url_prefix=GUARD_PREFIX)

    @host.get("/")
    def index() -> dict[str, str]:
        return {"page": "home"}

    host.test_client_class = PrefixedClient
    return host


@pytest.fixture(params=["standalone", "guard"])
def mount(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def app(
    mount: str,
    store: Store,
    gateway: ConsoleGateway,
    fake_clock: FakeClock,
    settings_factory: Callable[..., Settings],
) -> Flask:
    service = OtpService(settings_factory(), store=store, gateway=gateway, clock=fake_clock)
    return create_app(service=service) if mount == "standalone" else guard_host(service)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body: dict[str, Any] = response.get_json()
    assert {"type", "title", "status", "detail", "code"} <= set(body)
    assert (body["status"], body["code"]) == (status, code)
    assert "Traceback" not in response.get_data(as_text=True)
    return body


def test_send_verify_check_flow(client: FlaskClient, gateway: ConsoleGateway) -> None:
    sent = client.post("/send-code", json={"phone": PHONE, "purpose": "signup"})
    assert sent.status_code == 202
    assert sent.get_json() == {
        "status": "sent",
        "phone": "+86138****5678",
        "purpose": "signup",
        "expires_in": 300,
        "resend_after": 60,
    }
    code = gateway.last_code(PHONE)
    verified = client.post("/verify", json={"phone": PHONE, "code": code, "purpose": "signup"})
    assert verified.status_code == 200
    body = verified.get_json()
    assert (body["status"], body["phone"]) == ("approved", PHONE)
    checked = client.post("/tokens/check", json={"token": body["token"], "purpose": "signup"})
    assert checked.status_code == 200
    assert checked.get_json()["phone"] == PHONE


def test_a_code_is_verified_only_under_the_purpose_it_was_sent_for(
    client: FlaskClient, gateway: ConsoleGateway
) -> None:
    """The README's warning: a verify without ``purpose`` looks for a ``default`` code."""
    client.post("/send-code", json={"phone": PHONE, "purpose": "signup"})
    code = gateway.last_code(PHONE)
    assert_problem(client.post("/verify", json={"phone": PHONE, "code": code}), 400, "code_expired")
    verified = client.post("/verify", json={"phone": PHONE, "code": code, "purpose": "signup"})
    assert verified.status_code == 200


def test_wrong_code_is_a_problem_with_attempts_left(
    client: FlaskClient, gateway: ConsoleGateway
) -> None:
    client.post("/send-code", json={"phone": PHONE})
    code = gateway.last_code(PHONE)
    wrong = "000000" if code != "000000" else "111111"
    body = assert_problem(
        client.post("/verify", json={"phone": PHONE, "code": wrong}), 400, "code_invalid"
    )
    assert body["attempts_left"] == 4
    assert code not in json.dumps(body)


def test_rate_limited_send_has_retry_after_header_and_fields(client: FlaskClient) -> None:
    client.post("/send-code", json={"phone": PHONE})
    response = client.post("/send-code", json={"phone": PHONE})
    body = assert_problem(response, 429, "rate_limited")
    assert (body["limit"], body["retry_after"]) == ("number", 60)
    assert response.headers["Retry-After"] == "60"


def test_unknown_number_and_expired_code_answer_the_same(client: FlaskClient) -> None:
    never_sent = client.post("/verify", json={"phone": "+8613900000001", "code": "123456"})
    body = assert_problem(never_sent, 400, "code_expired")
    assert "attempts_left" not in body


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        pytest.param(
            {"data": "{", "content_type": "application/json"}, 400, "invalid_request", id="bad-json"
        ),
        pytest.param({"json": ["a"]}, 400, "invalid_request", id="not-an-object"),
        pytest.param({"json": {}}, 400, "invalid_request", id="missing-phone"),
        pytest.param({"json": {"phone": 8613812345678}}, 400, "invalid_request", id="number-type"),
        pytest.param(
            {"json": {"phone": PHONE, "extra": 1}}, 400, "invalid_request", id="unknown-field"
        ),
        pytest.param({"json": {"phone": "x" * 300}}, 400, "invalid_request", id="oversized-field"),
        pytest.param({"json": {"phone": {"a": [1]}}}, 400, "invalid_request", id="nested"),
        pytest.param(
            {"data": "phone=1", "content_type": "application/x-www-form-urlencoded"},
            415,
            "unsupported_media_type",
            id="form",
        ),
        pytest.param(
            {"data": "x" * 20000, "content_type": "application/json"},
            413,
            "payload_too_large",
            id="huge",
        ),
        pytest.param(
            {"data": "[" * 15000, "content_type": "application/json"},
            400,
            "invalid_request",
            id="deep-nesting",
        ),
        pytest.param({"json": {"phone": "hello"}}, 400, "invalid_phone", id="invalid-phone"),
        pytest.param({"json": {"phone": "+447400123456"}}, 403, "region_not_allowed", id="region"),
        pytest.param(
            {"json": {"phone": "+861012345678"}}, 403, "phone_type_not_allowed", id="fixed-line"
        ),
        pytest.param(
            {"json": {"phone": PHONE, "region": "China"}}, 400, "invalid_request", id="bad-region"
        ),
        pytest.param(
            {"json": {"phone": PHONE, "purpose": "No Spaces"}},
            400,
            "invalid_request",
            id="bad-purpose",
        ),
    ],
)
def test_bad_send_requests_are_4xx_problems(
    client: FlaskClient, kwargs: dict[str, Any], status: int, code: str
) -> None:
    assert_problem(client.post("/send-code", **kwargs), status, code)


def test_wrong_method_and_unknown_route_are_problems(client: FlaskClient) -> None:
    assert_problem(client.get("/send-code"), 405, "method_not_allowed")
    assert_problem(client.get("/nowhere"), 404, "not_found")


def test_bad_token_is_401(client: FlaskClient) -> None:
    assert_problem(
        client.post("/tokens/check", json={"token": "forged.token"}), 401, "token_invalid"
    )


@pytest.mark.parametrize("flag", ["false", "true", 0, 1, [], {}])
def test_consume_must_be_a_json_boolean_and_a_refusal_spends_nothing(
    client: FlaskClient, gateway: ConsoleGateway, flag: object
) -> None:
    client.post("/send-code", json={"phone": PHONE})
    code = gateway.last_code(PHONE)
    token = client.post("/verify", json={"phone": PHONE, "code": code}).get_json()["token"]
    refused = client.post("/tokens/check", json={"token": token, "consume": flag})
    body = assert_problem(refused, 400, "invalid_request")
    assert body["field"] == "consume"
    assert client.post("/tokens/check", json={"token": token, "consume": True}).status_code == 200


def test_request_id_is_echoed_and_put_in_problems(client: FlaskClient) -> None:
    response = client.post("/verify", json={"phone": PHONE}, headers={"X-Request-ID": "abc-123"})
    assert response.headers["X-Request-ID"] == "abc-123"
    assert response.get_json()["request_id"] == "abc-123"
    generated = client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"})
    assert generated.headers["X-Request-ID"] != "bad id with spaces"


def test_health_and_readiness(client: FlaskClient) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert client.get("/readyz").get_json() == {"status": "ready"}


class BrokenGateway(ConsoleGateway):
    """A gateway with a bug: the unexpected exception carries text that must not leak."""

    def send(self, message: SmsMessage) -> SendResult:
        raise RuntimeError("bug near secret-detail-xyz")


@pytest.mark.memory
def test_an_unexpected_error_is_a_bare_500_problem_and_logged_with_its_trace(
    fake_clock: FakeClock,
    settings_factory: Callable[..., Settings],
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = create_app(
        settings_factory(), store=MemoryStore(), gateway=BrokenGateway(), clock=fake_clock
    )
    with caplog.at_level(logging.ERROR, logger="otp_service.problems"):
        response = app.test_client().post("/send-code", json={"phone": PHONE})
    body = assert_problem(response, 500, "internal_error")
    assert "secret-detail-xyz" not in json.dumps(body)
    [record] = [r for r in caplog.records if r.name == "otp_service.problems"]
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert isinstance(record.exc_info[1], RuntimeError)


def test_error_codes_are_unique() -> None:
    codes = [cls.code for cls in all_error_classes()]
    assert len(codes) == len(set(codes))


@pytest.fixture
def live_server(app: Flask) -> Iterator[str]:
    """The app on a real loopback socket, shut down even if the test fails."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        prefix = GUARD_PREFIX if isinstance(app.test_client(), PrefixedClient) else ""
        yield f"http://127.0.0.1:{server.server_port}{prefix}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


def test_full_flow_over_a_real_socket(live_server: str, gateway: ConsoleGateway) -> None:
    with requests.Session() as http:
        assert (
            http.post(f"{live_server}/send-code", json={"phone": PHONE}, timeout=5).status_code
            == 202
        )
        code = gateway.last_code(PHONE)
        verified = http.post(
            f"{live_server}/verify", json={"phone": PHONE, "code": code}, timeout=5
        )
        assert verified.status_code == 200
        token = verified.json()["token"]
        checked = http.post(f"{live_server}/tokens/check", json={"token": token}, timeout=5)
        assert checked.json()["phone"] == PHONE


def test_every_problem_type_resolves_to_its_documentation(live_server: str) -> None:
    """A problem's ``type`` is a link integrators follow; each code's must answer (issue 17.5)."""
    with requests.Session() as http:
        refused = http.post(f"{live_server}/verify", json={"phone": "x", "code": "1"}, timeout=5)
        assert refused.json()["type"] == f"{live_server}/problems/invalid_phone"
        index = http.get(f"{live_server}/problems", timeout=5).json()["problems"]
        assert {doc["code"] for doc in index} == {cls.code for cls in all_error_classes()}
        for doc in index:
            page = http.get(f"{live_server}/problems/{doc['code']}", timeout=5)
            assert page.status_code == 200, doc["code"]
            assert page.json() == doc
            assert doc["remedy"] != doc["title"], f"{doc['code']}: say what to do about it"
        html = http.get(
            f"{live_server}/problems/rate_limited", headers={"Accept": "text/html"}, timeout=5
        )
        assert html.headers["Content-Type"].startswith("text/html")
        assert "<code>rate_limited</code>" in html.text and "Retry-After" in html.text
        unknown = http.get(f"{live_server}/problems/no_such_code", timeout=5)
        assert (unknown.status_code, unknown.json()["code"]) == (404, "not_found")


def test_an_operator_can_point_problem_types_at_their_own_docs(
    store: Store, gateway: ConsoleGateway, settings_factory: Callable[..., Settings]
) -> None:
    settings = settings_factory(problem_base_url="https://docs.example.com/otp/problems/")
    client = create_app(service=OtpService(settings, store=store, gateway=gateway)).test_client()
    body = client.post("/verify", json={"phone": "x", "code": "1"}).get_json()
    assert body["type"] == "https://docs.example.com/otp/problems/invalid_phone"


def test_a_guard_that_mounts_no_api_gives_about_blank(service_for_guard: OtpService) -> None:
    host = Flask("host_app")
    guard = OtpGuard(host, service=service_for_guard, url_prefix=None)

    @host.post("/account")
    @guard.verified_phone()
    def account() -> dict[str, str]:
        return {}

    body = host.test_client().post("/account").get_json()
    assert (body["type"], body["code"]) == ("about:blank", "token_invalid")


@pytest.fixture
def service_for_guard(
    store: Store, gateway: ConsoleGateway, settings_factory: Callable[..., Settings]
) -> OtpService:
    return OtpService(settings_factory(), store=store, gateway=gateway)


@pytest.mark.memory
def test_both_mounts_answer_byte_for_byte_alike(
    fake_clock: FakeClock, settings_factory: Callable[..., Settings]
) -> None:
    """Same bodies (key order, serialisation), same headers, for successes and problems.

    The one difference is meant: a problem's ``type`` links to the documentation under the
    mount, so the guarded one carries the prefix.
    """

    def exchange(app: Flask) -> list[tuple[int, str, bytes, str | None]]:
        client = app.test_client()
        rid = {"X-Request-ID": "req-1"}
        answers = [
            client.post("/send-code", json={"phone": PHONE}, headers=rid),
            client.post("/verify", json={"phone": PHONE, "code": "000000"}, headers=rid),
            client.post("/send-code", json={"phone": PHONE}, headers=rid),
            client.post("/tokens/check", json={"token": "x.y"}, headers=rid),
            client.get("/healthz", headers=rid),
        ]
        unprefixed = f"//localhost{GUARD_PREFIX}/problems/".encode()
        return [
            (
                r.status_code,
                r.mimetype,
                r.get_data().replace(unprefixed, b"//localhost/problems/"),
                r.headers.get("X-Request-ID"),
            )
            for r in answers
        ]

    results = []
    for build in (lambda s: create_app(service=s), guard_host):
        service = OtpService(
            settings_factory(), store=MemoryStore(), gateway=ConsoleGateway(), clock=fake_clock
        )
        results.append(exchange(build(service)))
    standalone, guarded = results
    assert standalone == guarded
    assert all(request_id == "req-1" for *_, request_id in guarded)
    assert [status for status, *_ in guarded] == [202, 400, 429, 401, 200]


@pytest.mark.memory
def test_the_guard_leaves_the_hosts_own_routes_alone(
    fake_clock: FakeClock, settings_factory: Callable[..., Settings]
) -> None:
    service = OtpService(settings_factory(), store=MemoryStore(), clock=fake_clock)
    host = guard_host(service)
    response = FlaskClient(host, host.response_class).get("/")
    assert response.get_json() == {"page": "home"}
    assert "X-Request-ID" not in response.headers
