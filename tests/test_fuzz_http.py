"""Property tests: any body of any shape sent to a JSON endpoint gets a problem, never a 5xx.

``tests/test_api.py`` checks a table of known bad inputs; here hypothesis generates them —
random JSON of every type (huge and non-BMP strings, deep structures, unknown and known field
names), raw bytes, duplicate keys, hostile nesting and wrong content types — and the service
must stay up afterwards.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otp_service import ConsoleGateway, create_app
from otp_service.settings import Settings
from otp_service.store import MemoryStore
from tests.conftest import TEST_SECRET

ENDPOINTS = {
    "/send-code": ("phone", "region", "purpose", "captcha_id", "captcha_answer"),
    "/verify": ("phone", "code", "purpose", "region"),
    "/tokens/check": ("token", "purpose", "consume"),
    "/captcha": ("purpose",),
}
FIELDS = sorted({name for names in ENDPOINTS.values() for name in names})
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

texts = st.text(max_size=40) | st.text(min_size=300, max_size=5000)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**20, max_value=10**40)
    | st.floats(allow_nan=False)
    | texts,
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)
#: Objects over the endpoints' own field names, so values reach the per-field checks.
field_objects = st.dictionaries(st.sampled_from(FIELDS), json_values, min_size=1, max_size=5)
paths = st.sampled_from(sorted(ENDPOINTS))


@pytest.fixture(scope="module")
def client() -> Iterator[FlaskClient]:
    """One app for every example; limits high so every example reaches validation."""
    settings_ = Settings(
        env="testing",
        secret_key=TEST_SECRET,
        captcha_mode="off",
        limits_ip="1000000/minute",
        limits_subnet="1000000/minute",
        limits_ipv6_site="1000000/minute",
        limits_verify_ip="1000000/minute",
        limits_verify_subnet="1000000/minute",
        limits_verify_ipv6_site="1000000/minute",
        limits_captcha_ip="1000000/minute",
        limits_captcha_subnet="1000000/minute",
        limits_captcha_ipv6_site="1000000/minute",
    )
    app = create_app(settings_, store=MemoryStore(), gateway=ConsoleGateway())
    yield app.test_client()


def assert_client_error(response: Any) -> None:
    """A 4xx problem body with a stable code (a 2xx only where the input happened to be valid)."""
    assert response.status_code < 500, response.get_data(as_text=True)[:500]
    assert b"Traceback" not in response.get_data()
    if response.status_code >= 400:
        assert response.mimetype == "application/problem+json"
        body = response.get_json()
        assert body["status"] == response.status_code
        assert isinstance(body["code"], str) and body["code"]


def assert_still_up(client: FlaskClient) -> None:
    assert client.get("/healthz").status_code == 200


@FUZZ
@given(path=paths, body=json_values | field_objects)
def test_any_json_value_is_a_client_error(client: FlaskClient, path: str, body: object) -> None:
    response = client.post(path, data=json.dumps(body), content_type="application/json")
    assert_client_error(response)
    if path != "/captcha":
        assert 400 <= response.status_code < 500
    assert_still_up(client)


@FUZZ
@given(path=paths, raw=st.binary(max_size=2000))
def test_raw_bytes_are_a_client_error(client: FlaskClient, path: str, raw: bytes) -> None:
    response = client.post(path, data=raw, content_type="application/json")
    assert_client_error(response)
    if path != "/captcha" or raw.strip():
        assert 400 <= response.status_code < 500
    assert_still_up(client)


@FUZZ
@given(
    path=paths,
    name=st.sampled_from(FIELDS),
    first=json_values,
    second=json_values,
)
def test_duplicate_keys_are_a_client_error(
    client: FlaskClient, path: str, name: str, first: object, second: object
) -> None:
    raw = f'{{"{name}": {json.dumps(first)}, "{name}": {json.dumps(second)}}}'
    response = client.post(path, data=raw, content_type="application/json")
    assert_client_error(response)
    assert_still_up(client)


@FUZZ
@given(
    path=paths,
    depth=st.integers(min_value=50, max_value=20_000),
    opener=st.sampled_from(["[", '{"phone": ']),
)
def test_deep_nesting_is_a_client_error(
    client: FlaskClient, path: str, depth: int, opener: str
) -> None:
    closer = "]" if opener == "[" else "}"
    raw = opener * depth + "1" + closer * depth
    response = client.post(path, data=raw, content_type="application/json")
    assert_client_error(response)
    assert 400 <= response.status_code < 500
    assert_still_up(client)


@FUZZ
@given(
    path=paths,
    content_type=st.sampled_from(
        [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/xml",
            "application/jsonx",
            "",
        ]
    ),
    body=field_objects,
)
def test_wrong_content_types_are_a_client_error(
    client: FlaskClient, path: str, content_type: str, body: object
) -> None:
    response = client.post(path, data=json.dumps(body), content_type=content_type)
    assert_client_error(response)
    assert 400 <= response.status_code < 500
    assert_still_up(client)
