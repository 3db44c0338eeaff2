"""OtpGuard on small host apps: each decorator allowed and refused, tokens, settings, hooks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Blueprint, Flask, g, request
from flask.testing import FlaskClient

from otp_service import ConsoleGateway, OtpService, Settings
from otp_service.errors import ConfigurationError, OtpError
from otp_service.guard import OtpGuard, get_service
from otp_service.store import MemoryStore
from tests.conftest import FakeClock, RecordingRenderer

PHONE = "+8613812345678"
OTHER_PHONE = "+8613912345678"

ServiceFactory = Callable[..., OtpService]


@pytest.fixture
def gateway() -> ConsoleGateway:
    return ConsoleGateway()


@pytest.fixture
def renderer() -> RecordingRenderer:
    return RecordingRenderer()


@pytest.fixture
def make_service(
    settings_factory: Callable[..., Settings],
    fake_clock: FakeClock,
    gateway: ConsoleGateway,
    renderer: RecordingRenderer,
) -> ServiceFactory:
    def make(**overrides: Any) -> OtpService:
        return OtpService(
            settings_factory(**overrides),
            store=MemoryStore(),
            gateway=gateway,
            clock=fake_clock,
            captcha_renderer=renderer,
        )

    return make


def build_host(guard: OtpGuard, service: OtpService | None = None, **config: Any) -> Flask:
    """A host app with one route per decorator, set up by ``guard``."""
    app = Flask(__name__)
    app.config.update(config)
    guard.init_app(app, service=service)

    @app.post("/signup")
    @guard.verified_phone(purpose="signup", one_time=True)
    def signup() -> dict[str, str]:
        return {"phone": g.verified_phone, "purpose": g.otp_claim.purpose}

    @app.post("/profile")
    @guard.verified_phone(purpose="signup", one_time=False)
    def profile() -> dict[str, str]:
        return {"phone": g.verified_phone}

    @app.post("/contact")
    @guard.captcha_required
    def contact() -> str:
        return "sent"

    @app.post("/feedback")
    @guard.captcha_required()
    def feedback() -> str:
        return "thanks"

    @app.post("/reset")
    @guard.captcha_required(purpose="reset")
    def reset() -> str:
        return "reset"

    @app.get("/search")
    @guard.rate_limit("ip", "2/minute")
    def search() -> str:
        return "results"

    @app.get("/browse")
    @guard.rate_limit("ip", "2/minute")
    def browse() -> str:
        return "items"

    @app.get("/a")
    @guard.rate_limit("ip", "1/minute", scope="shared")
    def route_a() -> str:
        return "a"

    @app.get("/b")
    @guard.rate_limit("ip", "1/minute", scope="shared")
    def route_b() -> str:
        return "b"

    @app.get("/nearby")
    @guard.rate_limit("subnet", "1/minute")
    def nearby() -> str:
        return "near"

    @app.get("/budget")
    @guard.rate_limit("global", "2/minute")
    def budget() -> str:
        return "spent"

    @app.post("/login")
    @guard.rate_limit(lambda: request.form.get("email"), "1/minute", name="email")
    def login() -> str:
        return "welcome"

    @app.post("/orders")
    @guard.rate_limit(lambda: int(request.form.get("user", 0)), "2/minute;2/60 seconds")
    def orders() -> str:
        return "ordered"

    return app


def token_for(service: OtpService, gateway: ConsoleGateway, purpose: str = "signup") -> str:
    service.send_code(PHONE, purpose=purpose)
    code = gateway.last_code(PHONE)
    assert code is not None
    return service.verify(PHONE, code, purpose=purpose).token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body: dict[str, Any] = response.get_json()
    assert body["code"] == code
    return body


@pytest.fixture
def service(make_service: ServiceFactory) -> OtpService:
    return make_service()


@pytest.fixture
def client(service: OtpService) -> FlaskClient:
    return build_host(OtpGuard(), service).test_client()


# -- verified_phone ---------------------------------------------------------------------------


def test_verified_phone_gives_the_view_the_number(
    client: FlaskClient, service: OtpService, gateway: ConsoleGateway
) -> None:
    response = client.post("/signup", headers=bearer(token_for(service, gateway)))
    assert response.status_code == 200
    assert response.get_json() == {"phone": PHONE, "purpose": "signup"}


def test_one_time_token_cannot_be_replayed(
    client: FlaskClient, service: OtpService, gateway: ConsoleGateway
) -> None:
    token = token_for(service, gateway)
    assert client.post("/signup", headers=bearer(token)).status_code == 200
    assert_problem(client.post("/signup", headers=bearer(token)), 401, "token_used")


def test_reusable_token_works_until_it_expires(
    client: FlaskClient,
    service: OtpService,
    gateway: ConsoleGateway,
    fake_clock: FakeClock,
) -> None:
    token = token_for(service, gateway)
    for _ in range(3):
        assert client.post("/profile", headers=bearer(token)).status_code == 200
    fake_clock.advance(service.settings.token_ttl)
    assert_problem(client.post("/profile", headers=bearer(token)), 401, "token_expired")


def test_expired_one_time_token_is_refused(
    client: FlaskClient,
    service: OtpService,
    gateway: ConsoleGateway,
    fake_clock: FakeClock,
) -> None:
    token = token_for(service, gateway)
    fake_clock.advance(service.settings.token_ttl)
    assert_problem(client.post("/signup", headers=bearer(token)), 401, "token_expired")


def test_token_for_another_purpose_is_refused(
    client: FlaskClient, service: OtpService, gateway: ConsoleGateway
) -> None:
    token = token_for(service, gateway, purpose="login")
    assert_problem(client.post("/signup", headers=bearer(token)), 401, "token_invalid")


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="missing"),
        pytest.param({"Authorization": "Bearer not-a-token"}, id="forged"),
        pytest.param({"Authorization": "Basic dXNlcjpwYXNz"}, id="basic-auth"),
    ],
)
def test_missing_or_forged_token_is_refused(client: FlaskClient, headers: dict[str, str]) -> None:
    body = assert_problem(client.post("/signup", headers=headers), 401, "token_invalid")
    assert "token" not in body


def test_missing_token_problem_says_where_the_token_goes(
    client: FlaskClient, service: OtpService
) -> None:
    detail = assert_problem(client.post("/signup", json={"otp_token": "x"}), 401, "token_invalid")[
        "detail"
    ]
    assert "Authorization: Bearer <token>" in detail
    assert "'otp_token' form field" in detail and "'otp_token' cookie" in detail
    only_cookie = OtpGuard(token_locations=("cookie",), cookie_name="proof")
    detail = assert_problem(
        build_host(only_cookie, service).test_client().post("/signup"), 401, "token_invalid"
    )["detail"]
    assert "'proof' cookie" in detail and "Bearer" not in detail


def test_token_signed_with_another_secret_is_refused(
    client: FlaskClient, make_service: ServiceFactory, gateway: ConsoleGateway
) -> None:
    foreign = make_service(secret_key="another-secret-key-that-is-long-enough-98765")
    assert_problem(
        client.post("/signup", headers=bearer(token_for(foreign, gateway))), 401, "token_invalid"
    )


@pytest.mark.parametrize("location", ["header", "form", "cookie"])
def test_token_is_read_from_each_location(
    service: OtpService, gateway: ConsoleGateway, location: str
) -> None:
    client = build_host(OtpGuard(), service).test_client()
    token = token_for(service, gateway)
    if location == "header":
        response = client.post("/signup", headers=bearer(token))
    elif location == "form":
        response = client.post("/signup", data={"otp_token": token})
    else:
        client.set_cookie("otp_token", token)
        response = client.post("/signup")
    assert response.status_code == 200
    assert response.get_json()["phone"] == PHONE


def test_token_locations_and_names_are_configurable(
    service: OtpService, gateway: ConsoleGateway
) -> None:
    guard = OtpGuard(token_locations=("cookie",), cookie_name="proof", form_field="proof")
    client = build_host(guard, service).test_client()
    token = token_for(service, gateway)
    assert_problem(client.post("/signup", headers=bearer(token)), 401, "token_invalid")
    assert_problem(client.post("/signup", data={"proof": token}), 401, "token_invalid")
    client.set_cookie("proof", token)
    assert client.post("/signup").status_code == 200


def test_unknown_token_location_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="token_locations"):
        OtpGuard(token_locations=("query",))


def test_malformed_purpose_is_refused_at_decoration() -> None:
    with pytest.raises(ConfigurationError, match="verified_phone"):
        OtpGuard().verified_phone(purpose="Sign Up")


# -- captcha_required -------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/contact", "/feedback"], ids=["bare", "called"])
def test_captcha_required_accepts_a_correct_answer_once(
    client: FlaskClient, service: OtpService, renderer: RecordingRenderer, path: str
) -> None:
    challenge = service.create_captcha()
    answer = {"captcha_id": challenge.challenge_id, "captcha_answer": renderer.last_answer}
    response = client.post(path, json=answer)
    assert response.status_code == 200
    assert_problem(client.post(path, json=answer), 400, "captcha_invalid")


def test_captcha_required_takes_only_challenges_made_for_its_purpose(
    client: FlaskClient, service: OtpService, renderer: RecordingRenderer
) -> None:
    for made_for in ("signup", None):
        challenge = service.create_captcha(purpose=made_for)
        answer = {"captcha_id": challenge.challenge_id, "captcha_answer": renderer.last_answer}
        assert_problem(client.post("/reset", json=answer), 400, "captcha_invalid")
    challenge = service.create_captcha(purpose="reset")
    answer = {"captcha_id": challenge.challenge_id, "captcha_answer": renderer.last_answer}
    assert client.post("/reset", json=answer).get_data(as_text=True) == "reset"
    challenge = service.create_captcha(purpose="reset")
    answer = {"captcha_id": challenge.challenge_id, "captcha_answer": renderer.last_answer}
    assert_problem(client.post("/contact", json=answer), 400, "captcha_invalid")


def test_a_malformed_captcha_purpose_is_refused_at_decoration() -> None:
    with pytest.raises(ConfigurationError, match="captcha_required"):
        OtpGuard().captcha_required(purpose="Sign Up")


def test_captcha_required_reads_the_form_too(
    client: FlaskClient, service: OtpService, renderer: RecordingRenderer
) -> None:
    challenge = service.create_captcha()
    form = {"captcha_id": challenge.challenge_id, "captcha_answer": renderer.last_answer.lower()}
    assert client.post("/contact", data=form).get_data(as_text=True) == "sent"


def test_wrong_captcha_answer_burns_the_challenge(
    client: FlaskClient, service: OtpService, renderer: RecordingRenderer
) -> None:
    challenge = service.create_captcha()
    wrong = {"captcha_id": challenge.challenge_id, "captcha_answer": "nope"}
    assert_problem(client.post("/contact", json=wrong), 400, "captcha_invalid")
    right = {"captcha_id": challenge.challenge_id, "captcha_answer": renderer.last_answer}
    assert_problem(client.post("/contact", json=right), 400, "captcha_invalid")


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({}, id="nothing"),
        pytest.param({"captcha_id": "a" * 36}, id="no-answer"),
        pytest.param({"captcha_id": 5, "captcha_answer": ["x"]}, id="not-strings"),
    ],
)
def test_missing_captcha_is_required(client: FlaskClient, body: dict[str, Any]) -> None:
    assert_problem(client.post("/contact", json=body), 400, "captcha_required")


def test_captcha_required_holds_even_when_the_send_pipeline_has_captcha_off(
    client: FlaskClient, service: OtpService
) -> None:
    assert service.settings.captcha_mode == "off"
    assert_problem(client.post("/contact"), 400, "captcha_required")


def test_expired_captcha_is_invalid(
    client: FlaskClient, service: OtpService, renderer: RecordingRenderer, fake_clock: FakeClock
) -> None:
    challenge = service.create_captcha()
    fake_clock.advance(service.settings.captcha_ttl)
    answer = {"captcha_id": challenge.challenge_id, "captcha_answer": renderer.last_answer}
    assert_problem(client.post("/contact", json=answer), 400, "captcha_invalid")


# -- rate_limit -------------------------------------------------------------------------------


def test_ip_limit_refuses_with_retry_after_then_recovers(
    client: FlaskClient, fake_clock: FakeClock
) -> None:
    assert [client.get("/search").status_code for _ in range(2)] == [200, 200]
    response = client.get("/search")
    body = assert_problem(response, 429, "rate_limited")
    assert body["limit"] == "ip"
    assert 0 < body["retry_after"] <= 60
    assert response.headers["Retry-After"] == str(body["retry_after"])
    other = client.get("/search", environ_base={"REMOTE_ADDR": "192.0.2.9"})
    assert other.status_code == 200
    fake_clock.advance(60)
    assert client.get("/search").status_code == 200


def test_each_route_counts_on_its_own_unless_it_shares_a_scope(client: FlaskClient) -> None:
    for _ in range(2):
        client.get("/search")
    assert client.get("/browse").status_code == 200
    assert client.get("/a").status_code == 200
    assert_problem(client.get("/b"), 429, "rate_limited")


def test_subnet_limit_counts_neighbours_together(client: FlaskClient) -> None:
    def from_ip(ip: str) -> int:
        return client.get("/nearby", environ_base={"REMOTE_ADDR": ip}).status_code

    assert from_ip("198.51.100.7") == 200
    assert from_ip("198.51.100.8") == 429
    assert from_ip("198.51.101.7") == 200


def test_global_limit_counts_everyone(client: FlaskClient) -> None:
    statuses = [
        client.get("/budget", environ_base={"REMOTE_ADDR": f"203.0.113.{i}"}).status_code
        for i in range(3)
    ]
    assert statuses == [200, 200, 429]


def test_key_function_limit_names_its_axis_and_none_exempts(client: FlaskClient) -> None:
    assert client.post("/login", data={"email": "a@example.com"}).status_code == 200
    body = assert_problem(
        client.post("/login", data={"email": "a@example.com"}), 429, "rate_limited"
    )
    assert body["limit"] == "email"
    assert client.post("/login", data={"email": "b@example.com"}).status_code == 200
    assert [client.post("/login").status_code for _ in range(3)] == [200, 200, 200]


def test_a_numeric_key_and_a_window_written_twice_count_as_one(client: FlaskClient) -> None:
    # An int user id is counted by its text; "2/minute;2/60 seconds" is one window of 2.
    statuses = [client.post("/orders", data={"user": "7"}).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert client.post("/orders", data={"user": "8"}).status_code == 200


def test_custom_subjects_are_not_stored_in_clear(service: OtpService, client: FlaskClient) -> None:
    client.post("/login", data={"email": "a@example.com"})
    store = service.store
    assert isinstance(store, MemoryStore)
    assert not any("example.com" in key for key in vars_keys(store))


def vars_keys(store: MemoryStore) -> list[str]:
    """Every key the memory store holds (its data dicts' keys)."""
    found: list[str] = []
    for value in vars(store).values():
        if isinstance(value, dict):
            found += [str(k) for k in value]
    return found


@pytest.mark.parametrize(
    ("key", "limit"),
    [("planet", "5/minute"), ("ip", "5/fortnight"), ("ip", "five"), ("ip", "0/minute")],
)
def test_bad_limit_configuration_fails_at_decoration(key: str, limit: str) -> None:
    with pytest.raises(ConfigurationError, match="rate_limit"):
        OtpGuard().rate_limit(key, limit)


# -- refusal hook -----------------------------------------------------------------------------


def test_on_refused_renders_the_host_page_with_the_refusal_status(
    service: OtpService, fake_clock: FakeClock
) -> None:
    seen: list[OtpError] = []

    def page(error: OtpError) -> str:
        seen.append(error)
        return f"<h1>Sorry: {error.code}</h1>"

    client = build_host(OtpGuard(on_refused=page), service).test_client()
    response = client.post("/signup")
    assert response.status_code == 401
    assert response.mimetype == "text/html"
    assert response.get_data(as_text=True) == "<h1>Sorry: token_invalid</h1>"
    for _ in range(2):
        client.get("/search")
    limited = client.get("/search")
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "60")
    assert [e.code for e in seen] == ["token_invalid", "rate_limited"]


def test_refused_handler_decorator_keeps_an_explicit_status(service: OtpService) -> None:
    guard = OtpGuard()

    @guard.refused_handler
    def redirect_home(error: OtpError) -> tuple[str, int, dict[str, str]]:
        return "", 303, {"Location": "/"}

    response = build_host(guard, service).test_client().post("/signup")
    assert (response.status_code, response.headers["Location"]) == (303, "/")


# -- Blueprints -------------------------------------------------------------------------------


def test_a_decorated_blueprint_protects_all_its_views(
    service: OtpService, gateway: ConsoleGateway
) -> None:
    guard = OtpGuard()
    account = guard.verified_phone(purpose="signup", one_time=False)(Blueprint("account", __name__))

    @account.get("/me")
    def me() -> str:
        return str(g.verified_phone)

    @account.get("/settings")
    def settings() -> str:
        return "settings"

    app = Flask(__name__)
    guard.init_app(app, service=service)
    app.register_blueprint(account, url_prefix="/account")
    client = app.test_client()
    for path in ("/account/me", "/account/settings"):
        assert_problem(client.get(path), 401, "token_invalid")
    token = token_for(service, gateway)
    assert client.get("/account/me", headers=bearer(token)).get_data(as_text=True) == PHONE


# -- the extension ----------------------------------------------------------------------------


def test_api_is_mounted_under_the_prefix(service: OtpService, gateway: ConsoleGateway) -> None:
    client = build_host(OtpGuard(url_prefix="/verify-api"), service).test_client()
    captcha = client.post("/verify-api/captcha")
    assert captcha.status_code == 201
    assert captcha.get_json()["image_url"].startswith("/verify-api/captcha/")
    sent = client.post("/verify-api/send-code", json={"phone": PHONE, "purpose": "signup"})
    assert sent.status_code == 202
    code = gateway.last_code(PHONE)
    verified = client.post(
        "/verify-api/verify", json={"phone": PHONE, "code": code, "purpose": "signup"}
    )
    token = verified.get_json()["token"]
    assert client.post("/signup", headers=bearer(token)).status_code == 200
    assert client.post("/send-code", json={"phone": PHONE}).status_code == 404


def test_no_prefix_mounts_no_api(service: OtpService) -> None:
    client = build_host(OtpGuard(url_prefix=None), service).test_client()
    assert client.post("/otp/captcha").status_code == 404


def test_api_errors_are_problems_even_without_app_wide_handlers(service: OtpService) -> None:
    client = build_host(OtpGuard(register_error_handlers=False), service).test_client()
    assert_problem(client.post("/otp/send-code", data="x"), 415, "unsupported_media_type")
    not_found = client.get("/no-such-page")
    assert (not_found.status_code, not_found.mimetype) == (404, "text/html")


def test_app_wide_handlers_make_host_http_errors_problems(service: OtpService) -> None:
    client = build_host(OtpGuard(register_error_handlers=True), service).test_client()
    assert_problem(client.get("/no-such-page"), 404, "not_found")


def test_otp_errors_raised_by_host_views_are_problems(service: OtpService) -> None:
    guard = OtpGuard(register_error_handlers=False)
    app = Flask(__name__)
    guard.init_app(app, service=service)

    @app.post("/check")
    def check() -> str:
        guard.service.check_token("bogus")
        return "unreachable"

    assert_problem(app.test_client().post("/check"), 401, "token_invalid")


def test_settings_precedence_explicit_then_app_config_then_default(
    settings_factory: Callable[..., Settings],
) -> None:
    config = {"OTP_SECRET_KEY": "k" * 40, "OTP_CODE_LENGTH": "8", "OTP_TOKEN_TTL": 120}
    from_config = OtpGuard().settings_for(flask_app(config))
    assert (from_config.code_length, from_config.token_ttl, from_config.code_ttl) == (8, 120, 300)
    explicit = OtpGuard(settings={"code_length": 4}).settings_for(flask_app(config))
    assert (explicit.code_length, explicit.token_ttl) == (4, 120)
    whole = settings_factory(code_length=7)
    assert OtpGuard(settings=whole).settings_for(flask_app(config)) is whole


def test_init_app_builds_the_service_from_app_config() -> None:
    app = flask_app({"OTP_SECRET_KEY": "k" * 40, "OTP_CAPTCHA_MODE": "off", "OTP_CODE_LENGTH": 4})
    OtpGuard(app)
    with app.app_context():
        assert get_service().settings.code_length == 4
    assert app.extensions["otp_guard"] is not None


def test_invalid_app_config_fails_at_init_naming_the_variable() -> None:
    with pytest.raises(ConfigurationError, match="OTP_CODE_LENGTH"):
        OtpGuard(flask_app({"OTP_CODE_LENGTH": "six"}))


def test_one_guard_serves_two_apps_each_with_its_own_service(
    settings_factory: Callable[..., Settings], fake_clock: FakeClock, gateway: ConsoleGateway
) -> None:
    guard = OtpGuard()
    services = [
        OtpService(settings_factory(secret_key=secret * 40), clock=fake_clock, gateway=gateway)
        for secret in ("a", "b")
    ]
    app_a, app_b = (build_host(guard, s) for s in services)
    assert app_a.extensions["otp_service"] is services[0]
    assert app_b.extensions["otp_service"] is services[1]
    assert not any(isinstance(value, Flask) for value in vars(guard).values())
    token = token_for(services[0], gateway)
    assert_problem(app_b.test_client().post("/signup", headers=bearer(token)), 401, "token_invalid")
    assert app_a.test_client().post("/signup", headers=bearer(token)).status_code == 200


def test_init_app_twice_is_refused(service: OtpService) -> None:
    guard = OtpGuard()
    app = Flask(__name__)
    guard.init_app(app, service=service)
    with pytest.raises(RuntimeError, match="already"):
        guard.init_app(app, service=service)


def test_decorated_view_on_an_app_without_the_guard_fails_loudly() -> None:
    guard = OtpGuard()
    app = Flask(__name__)
    app.testing = True

    @app.get("/limited")
    @guard.rate_limit("ip", "1/minute")
    def limited() -> str:
        return "x"

    with pytest.raises(RuntimeError, match="init_app"):
        app.test_client().get("/limited")


def test_service_and_settings_together_are_refused(service: OtpService) -> None:
    with pytest.raises(TypeError):
        OtpGuard(service=service, settings={"code_length": 4})


def flask_app(config: dict[str, Any]) -> Flask:
    app = Flask(__name__)
    app.config.update(config)
    return app


@pytest.mark.redis
def test_guarded_routes_fail_closed_when_the_store_is_down(
    redis_process: Any,
    settings_factory: Callable[..., Settings],
    fake_clock: FakeClock,
    gateway: ConsoleGateway,
) -> None:
    from otp_service.store.redis import RedisStore

    store = RedisStore.from_url(redis_process.url)
    service = OtpService(settings_factory(), store=store, gateway=gateway, clock=fake_clock)
    try:
        client = build_host(OtpGuard(), service).test_client()
        assert client.get("/search").status_code == 200
        redis_process.stop()
        assert_problem(client.get("/search"), 503, "store_unavailable")
        redis_process.start()
        assert client.get("/search").status_code == 200
    finally:
        store.close()
