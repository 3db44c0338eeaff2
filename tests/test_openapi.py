"""The served OpenAPI document: complete, true to real responses, fuzzed clean by schemathesis."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
import schemathesis
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate as validate_openapi
from schemathesis import Case

from otp_service import ConsoleGateway, MemoryStore, OtpService, Settings, create_app
from otp_service.api import bp
from otp_service.errors import all_error_classes
from otp_service.openapi import documented_rules, openapi_document
from tests.conftest import TEST_SECRET

TEST_PHONE = "+8613800000000"
TEST_CODE = "135790"
#: Flask adds ``/static`` to every app; the service serves no files from it.
UNDOCUMENTED_ENDPOINTS = {"static"}


def fuzz_app() -> Flask:
    """The sidecar as a fuzzer meets it: captcha off, a test number, roomy limits, memory store."""
    settings = Settings(
        env="testing",
        secret_key=TEST_SECRET,
        captcha_mode="off",
        test_numbers=((TEST_PHONE, TEST_CODE),),
        limits_ip="1000/minute",
        limits_subnet="1000/minute",
        limits_ipv6_site="1000/minute",
        limits_verify_ip="1000/minute",
        limits_verify_subnet="1000/minute",
        limits_verify_ipv6_site="1000/minute",
    )
    return create_app(settings, store=MemoryStore(), gateway=ConsoleGateway())


@pytest.fixture
def app() -> Flask:
    return fuzz_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def spec(client: FlaskClient) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.get_json()
    return document


def response_schema(spec: dict[str, Any], path: str, method: str, status: int) -> dict[str, Any]:
    """The documented body schema of one response, with the document's components to resolve."""
    response = spec["paths"][path][method]["responses"][str(status)]
    (media,) = response["content"].values()
    return {**media["schema"], "components": spec["components"]}


def assert_conforms(spec: dict[str, Any], path: str, method: str, response: Any) -> None:
    schema = response_schema(spec, path, method, response.status_code)
    jsonschema.Draft202012Validator(schema).validate(response.get_json())


def test_the_document_is_openapi_3_1_with_every_error_code(spec: dict[str, Any]) -> None:
    assert spec["openapi"].startswith("3.1")
    validate_openapi(spec)
    codes = spec["components"]["schemas"]["Problem"]["properties"]["code"]["enum"]
    assert set(codes) == {cls.code for cls in all_error_classes()}
    jsonschema.Draft202012Validator.check_schema(spec["components"]["schemas"]["Problem"])


def test_every_route_is_documented_and_every_documented_route_is_served(app: Flask) -> None:
    spec = openapi_document(app)
    served = {
        (rule.rule, method.lower())
        for rule in app.url_map.iter_rules()
        if rule.endpoint not in UNDOCUMENTED_ENDPOINTS
        for method in rule.methods or ()
        if method not in {"HEAD", "OPTIONS"}
    }
    documented_here = {
        (path, method) for path, operations in spec["paths"].items() for method in operations
    }
    as_openapi = {(rule.replace("<", "{").replace(">", "}"), m) for rule, m in served}
    assert as_openapi == documented_here
    assert {rule for rule, _ in served} <= {rule for rule, _ in documented_rules()}


def test_a_prefixed_mount_is_documented_at_its_prefix() -> None:
    service = OtpService(Settings(env="testing", secret_key=TEST_SECRET), store=MemoryStore())
    host = Flask("host")
    host.extensions["otp_service"] = service
    host.register_blueprint(bp, url_prefix="/otp")
    host.add_url_rule("/otp-unrelated", "unrelated", lambda: "")
    paths = openapi_document(host)["paths"]
    assert "/otp/send-code" in paths and "/otp/captcha/{challenge_id}.png" in paths
    assert "/send-code" not in paths and "/otp-unrelated" not in paths
    assert paths["/otp/verify"]["post"]["operationId"] == "verify"


def test_real_responses_match_the_document(client: FlaskClient, spec: dict[str, Any]) -> None:
    sent = client.post("/send-code", json={"phone": TEST_PHONE, "purpose": "signup"})
    assert sent.status_code == 202
    assert_conforms(spec, "/send-code", "post", sent)
    wrong = client.post(
        "/verify", json={"phone": TEST_PHONE, "code": "000000", "purpose": "signup"}
    )
    assert wrong.status_code == 400
    assert_conforms(spec, "/verify", "post", wrong)
    approved = client.post(
        "/verify", json={"phone": TEST_PHONE, "code": TEST_CODE, "purpose": "signup"}
    )
    assert approved.status_code == 200
    assert_conforms(spec, "/verify", "post", approved)
    checked = client.post("/tokens/check", json={"token": approved.get_json()["token"]})
    assert checked.status_code == 200
    assert_conforms(spec, "/tokens/check", "post", checked)
    again = client.post("/send-code", json={"phone": TEST_PHONE, "purpose": "signup"})
    assert again.status_code == 429
    assert_conforms(spec, "/send-code", "post", again)
    captcha = client.post("/captcha")
    assert captcha.status_code == 201
    assert_conforms(spec, "/captcha", "post", captcha)
    for path in ("/healthz", "/readyz"):
        assert_conforms(spec, path, "get", client.get(path))


def test_a_response_that_breaks_the_document_is_caught(spec: dict[str, Any]) -> None:
    """The validation above can fail: a problem without its code is refused."""
    schema = response_schema(spec, "/verify", "post", 400)
    body = {"type": "about:blank", "title": "x", "status": 400, "detail": "x"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema).validate(body)


schema = schemathesis.pytest.from_fixture("fuzz_schema")


@pytest.fixture
def fuzz_schema() -> Any:
    return schemathesis.openapi.from_wsgi("/openapi.json", fuzz_app())


@pytest.mark.slow
@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_fuzzing_finds_no_server_error_and_no_undocumented_response(case: Case) -> None:
    # Every other check runs, and the positive-data check in the form that fits this API: a
    # schema-valid request may be refused by design (an invalid number, a wrong code, a missing
    # captcha) — those are answers — but never as malformed, which would mean the spec is looser
    # than the service.
    case.call_and_validate(
        excluded_checks=[schemathesis.checks.positive_data_acceptance],
        additional_checks=[schema_valid_data_is_never_refused_as_malformed],
    )


MALFORMED_CODES = frozenset({"invalid_request", "unsupported_media_type"})


def schema_valid_data_is_never_refused_as_malformed(
    ctx: Any, response: Any, case: Case
) -> bool | None:
    """Schemathesis check: a request its generator made schema-valid is not "invalid_request"."""
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return None
    if response.status_code in (400, 415, 422):
        code = response.json().get("code")
        assert code not in MALFORMED_CODES, (
            f"schema-valid request refused as {code}: {response.json().get('detail')!r}"
        )
    return None


def test_the_malformed_check_can_fail() -> None:
    """The check above fires on a positive case the service calls malformed."""

    class Positive:
        meta = type(
            "M", (), {"generation": type("G", (), {"mode": type("Mo", (), {"is_positive": True})})}
        )

    class Refused:
        status_code = 400

        @staticmethod
        def json() -> dict[str, str]:
            return {"code": "invalid_request", "detail": "phone: required."}

    with pytest.raises(AssertionError, match="invalid_request"):
        schema_valid_data_is_never_refused_as_malformed(None, Refused(), Positive())  # type: ignore[arg-type]


def request_validator(spec: dict[str, Any], name: str) -> jsonschema.Draft202012Validator:
    schema = {"$ref": f"#/components/schemas/{name}", "components": spec["components"]}
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize(
    ("schema_name", "path", "body"),
    [
        ("SendCodeRequest", "/send-code", {"phone": ""}),
        ("VerifyRequest", "/verify", {"phone": "", "code": TEST_CODE}),
        ("VerifyRequest", "/verify", {"phone": TEST_PHONE, "code": "12"}),
        ("TokenCheckRequest", "/tokens/check", {"token": ""}),
    ],
)
def test_the_spec_refuses_what_the_service_refuses(
    spec: dict[str, Any], client: FlaskClient, schema_name: str, path: str, body: dict[str, str]
) -> None:
    """Issue 17.4: `"phone": ""` was schema-valid; each body here is refused by both."""
    assert not request_validator(spec, schema_name).is_valid(body)
    assert client.post(path, json=body).status_code in (400, 401)


def test_the_code_pattern_follows_the_code_length() -> None:
    settings = Settings(env="testing", secret_key=TEST_SECRET, code_length=8)
    app = create_app(settings, store=MemoryStore(), gateway=ConsoleGateway())
    spec = app.test_client().get("/openapi.json").get_json()
    validator = request_validator(spec, "VerifyRequest")
    assert validator.is_valid({"phone": TEST_PHONE, "code": "12345678"})
    assert not validator.is_valid({"phone": TEST_PHONE, "code": "123456"})
