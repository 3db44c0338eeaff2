from __future__ import annotations

import dataclasses
import re
import time
from pathlib import Path

import pytest

from otp_service.errors import ConfigurationError
from otp_service.settings import SHADOWABLE_RULES, Settings, settings_table

GOOD_SECRET = "a-production-secret-that-is-long-enough-1234"
ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def test_defaults_follow_the_design() -> None:
    s = Settings.from_env({})
    assert (s.env, s.code_length, s.code_ttl, s.max_attempts, s.resend_interval) == (
        "development",
        6,
        300,
        5,
        60,
    )
    assert (s.allowed_regions, s.captcha_mode, s.sms_gateway, s.redis_url) == (
        ("CN",),
        "always",
        "console",
        None,
    )
    assert s.secret_key and len(s.secret_key) >= 32


def test_environment_values_are_parsed_by_type() -> None:
    s = Settings.from_env(
        {
            "OTP_CODE_LENGTH": "8",
            "OTP_ALLOWED_REGIONS": "cn, hk",
            "OTP_TRUSTED_PROXIES": "10.0.0.0/8,::1/128",
            "OTP_TEST_NUMBERS": "+8613800000000:12345678",
            "OTP_SHADOW_RULES": "prefix,global",
            "OTP_HUAWEI_TIMEOUT": "2.5",
        }
    )
    assert s.code_length == 8
    assert s.allowed_regions == ("CN", "HK")
    assert s.trusted_proxies == ("10.0.0.0/8", "::1/128")
    assert s.test_codes == {"+8613800000000": "12345678"}
    assert s.shadow_rules == frozenset({"prefix", "global"})
    assert s.huawei_timeout == 2.5


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("OTP_CODE_LENGTH", "abc"),
        ("OTP_CODE_LENGTH", "3"),
        ("OTP_CODE_TTL", "601"),
        ("OTP_MAX_ATTEMPTS", "0"),
        ("OTP_ENV", "prod"),
        ("OTP_CAPTCHA_MODE", "sometimes"),
        ("OTP_SMS_GATEWAY", "twilio"),
        ("OTP_LIMITS_IP", "ten per minute"),
        ("OTP_ALLOWED_REGIONS", "CN,XX"),
        ("OTP_DEFAULT_REGION", "XX"),
        ("OTP_TRUSTED_PROXIES", "not-a-cidr"),
        ("OTP_REDIS_URL", "http://localhost"),
        ("OTP_TEST_NUMBERS", "+8613800000000"),
        ("OTP_TEST_NUMBERS", "13800138000:123456"),
        ("OTP_TEST_NUMBERS", "+8613800138000:12345"),
        ("OTP_TEST_NUMBERS", "+8613800138000:12345a"),
        ("OTP_HUAWEI_TIMEOUT", "fast"),
        ("OTP_LIMITS_IP", "0/minute"),
        ("OTP_LIMITS_NUMBER_TOTAL", "5/hour;0/day"),
        ("OTP_MESSAGE_TEMPLATE", "Your code."),
        ("OTP_MESSAGE_TEMPLATE", "Hi {name}, your code is {code}"),
        ("OTP_MESSAGE_TEMPLATE", "{code} {}"),
        ("OTP_MESSAGE_TEMPLATE", "{code.__class__.__mro__}"),
        ("OTP_MESSAGE_TEMPLATE", "{code} {minutes[0]}"),
        ("OTP_MESSAGE_TEMPLATE", "{code"),
        ("OTP_SHADOW_RULES", "prefix,bogus"),
        ("OTP_CALLBACK_TOKEN", "Zm9v+YmFy/YmF6=="),
    ],
)
def test_invalid_values_fail_naming_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=f"^{variable}:"):
        Settings.from_env({variable: value})


def test_test_numbers_are_normalised_and_templates_may_format_the_code() -> None:
    settings = Settings.from_env(
        {
            "OTP_TEST_NUMBERS": "+86 138 0013 8000:123456",
            "OTP_MESSAGE_TEMPLATE": "[{code:>8}] valid for {minutes} min",
        }
    )
    assert settings.test_codes == {"+8613800138000": "123456"}


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({}, "OTP_SECRET_KEY"),
        ({"OTP_SECRET_KEY": "short"}, "OTP_SECRET_KEY"),
        ({"OTP_SECRET_KEY": "change-me"}, "OTP_SECRET_KEY"),
        ({"OTP_SECRET_KEY": GOOD_SECRET}, "OTP_SMS_GATEWAY"),
    ],
)
def test_production_refuses_unsafe_settings(overrides: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigurationError, match=f"^{variable}:"):
        Settings.from_env({"OTP_ENV": "production", **overrides})


def test_production_refuses_test_numbers() -> None:
    with pytest.raises(ConfigurationError, match="^OTP_TEST_NUMBERS:"):
        Settings(env="production", secret_key=GOOD_SECRET, test_numbers=(("+8613800000000", "1"),))


def test_huawei_gateway_requires_its_credentials() -> None:
    with pytest.raises(ConfigurationError, match="OTP_HUAWEI_ENDPOINT"):
        Settings.from_env({"OTP_SMS_GATEWAY": "huawei"})


def test_explicit_overrides_win_over_the_mapping() -> None:
    s = Settings.from_mapping({"OTP_CODE_LENGTH": 8}, code_length=4)
    assert s.code_length == 4


def test_typed_values_from_a_flask_config_are_checked_too() -> None:
    with pytest.raises(ConfigurationError, match="^OTP_CODE_TTL:"):
        Settings.from_mapping({"OTP_CODE_TTL": 3600})


def test_describe_hides_secrets() -> None:
    shown = Settings.from_env({"OTP_SECRET_KEY": GOOD_SECRET, "OTP_CALLBACK_TOKEN": "cb-secret"})
    text = repr(shown.describe())
    assert GOOD_SECRET not in text and "cb-secret" not in text
    assert shown.describe()["OTP_SECRET_KEY"] == "<set>"


def test_readme_settings_table_is_generated_from_settings() -> None:
    from scripts.readme_settings import END, START, render

    table = README.read_text().partition(START)[2].partition(END)[0].strip()
    assert table == render(), "run `python scripts/readme_settings.py` to refresh the README"
    assert len(settings_table()) == len(dataclasses.fields(Settings))


def test_describe_prints_every_kind_of_value_as_it_is_written() -> None:
    shown = Settings.from_env(
        {
            "OTP_BUDGET_COSTS": "CN:0.05,*:0.1",
            "OTP_SHADOW_RULES": "prefix,global",
            "OTP_TEST_NUMBERS": "+8613800138000:123456",
        }
    ).describe()
    assert shown["OTP_BUDGET_COSTS"] == "CN:0.05,*:0.1"
    assert shown["OTP_SHADOW_RULES"] == "global,prefix"
    assert shown["OTP_TEST_NUMBERS"] == "<1 numbers>"


def documented_secrets() -> set[str]:
    """Every secret the docs, examples and compose file show, as people would copy it."""
    patterns = [
        r'secret_key="([^"]+)"',
        r'OTP_SECRET_KEY"\] = "([^"]+)"',
        r"OTP_SECRET_KEY:-([^}]+)\}",
        r"OTP_SECRET_KEY=([^\s`'\"]+)",
    ]
    found: set[str] = set()
    for path in [
        ROOT / "README.md",
        *ROOT.glob("docs/*.md"),
        *ROOT.glob("examples/**/*.py"),
        ROOT / "docker" / "compose.yaml",
    ]:
        text = path.read_text()
        for pattern in patterns:
            found.update(re.findall(pattern, text))
    return found


def test_production_refuses_every_secret_the_docs_show() -> None:
    secrets_shown = documented_secrets()
    assert "use-at-least-32-random-bytes-from-your-vault" in secrets_shown
    for secret in secrets_shown:
        with pytest.raises(ConfigurationError, match="^OTP_SECRET_KEY:"):
            Settings.from_env({"OTP_ENV": "production", "OTP_SECRET_KEY": secret})


#: A production environment every rule accepts; tests change one thing at a time.
PRODUCTION = {
    "OTP_ENV": "production",
    "OTP_SECRET_KEY": GOOD_SECRET,
    "OTP_REDIS_URL": "redis://redis.internal:6379/0",
    "OTP_SMS_GATEWAY": "huawei",
    "OTP_HUAWEI_ENDPOINT": "https://smsapi.cn-north-4.myhuaweicloud.com:443",
    "OTP_HUAWEI_APP_KEY": "huawei-app-key",
    "OTP_HUAWEI_APP_SECRET": "huawei-app-secret-issued-by-the-console",
    "OTP_HUAWEI_SENDER": "csms100000001",
    "OTP_HUAWEI_TEMPLATE_ID": "8ff55eac1d0b478ab3c06c3c6a492300",
    "OTP_PUBLIC_URL": "https://otp.example.com",
    "OTP_CALLBACK_TOKEN": "4f1c9a0e7b2d48e3a6c5f0b19d8e7a62",
}
OLD_KEY = "8b1e6f0c2a9d47e5b3f8c1a60d2e9b74"


def production(**changes: str) -> dict[str, str]:
    return {**PRODUCTION, **changes}


def test_the_production_baseline_is_accepted() -> None:
    settings = Settings.from_env(production(OTP_SECRET_KEY_FALLBACKS=OLD_KEY))
    assert settings.signing_keys == [OLD_KEY, GOOD_SECRET]
    assert settings.warnings() == []


@pytest.mark.parametrize(
    "fallbacks",
    [
        pytest.param("changeme", id="example"),
        pytest.param("x", id="one-byte"),
        pytest.param(f"{OLD_KEY},Change-Me-Before-Going-Live-0123456789", id="second-entry"),
        pytest.param("x" * 32, id="one-character-repeated"),
        pytest.param("password" * 4, id="word-repeated"),
        pytest.param(GOOD_SECRET, id="same-as-the-key"),
        pytest.param(PRODUCTION["OTP_HUAWEI_APP_SECRET"], id="same-as-the-app-secret"),
    ],
)
def test_production_refuses_weak_or_reused_fallback_keys(fallbacks: str) -> None:
    with pytest.raises(ConfigurationError, match="^OTP_SECRET_KEY_FALLBACKS: entry"):
        Settings.from_env(production(OTP_SECRET_KEY_FALLBACKS=fallbacks))


def test_a_token_signed_under_a_weak_fallback_finds_no_production_service() -> None:
    """The attack: sign a token with itsdangerous under `changeme` and the token salt."""
    from itsdangerous import URLSafeSerializer

    from otp_service.app import create_app
    from otp_service.core.tokens import SALT

    now = int(time.time())
    payload = {"p": "+8613812345678", "u": "signup", "j": "forged", "t": now, "e": now + 600}
    forged = URLSafeSerializer("changeme", salt=SALT).dumps(payload)
    weak = {"OTP_SECRET_KEY_FALLBACKS": "changeme", "OTP_CAPTCHA_MODE": "off"}

    # The forgery is real: where such settings are allowed (development), it is accepted.
    lab = create_app(Settings.from_env({"OTP_SECRET_KEY": GOOD_SECRET, **weak}))
    checked = lab.test_client().post("/tokens/check", json={"token": forged, "consume": True})
    assert checked.status_code == 200 and checked.get_json()["phone"] == "+8613812345678"

    # Production cannot be built with them, so no production service can accept it.
    with pytest.raises(ConfigurationError, match="^OTP_SECRET_KEY_FALLBACKS: entry 1"):
        create_app(Settings.from_env(production(**weak)))


@pytest.mark.parametrize(
    ("changes", "variable"),
    [
        pytest.param({"OTP_SECRET_KEY": "x" * 32}, "OTP_SECRET_KEY", id="key-one-character"),
        pytest.param({"OTP_SECRET_KEY": "abcd" * 8}, "OTP_SECRET_KEY", id="key-repeated-word"),
        pytest.param(
            {"OTP_SECRET_KEY": "0101100101011010011010100101101001011010"},
            "OTP_SECRET_KEY",
            id="key-two-characters",
        ),
        pytest.param(
            {"OTP_SECRET_KEY": "our-production-key-changeme-2024-xyz"},
            "OTP_SECRET_KEY",
            id="key-with-changeme",
        ),
        pytest.param({"OTP_CALLBACK_TOKEN": "a"}, "OTP_CALLBACK_TOKEN", id="token-1-char"),
        pytest.param(
            {"OTP_CALLBACK_TOKEN": "4f1c9a0e7b2d48e3a6c5f0b19d8e7a6"},
            "OTP_CALLBACK_TOKEN",
            id="token-31-chars",
        ),
        pytest.param({"OTP_CALLBACK_TOKEN": "changeme"}, "OTP_CALLBACK_TOKEN", id="token-example"),
        pytest.param(
            {"OTP_CALLBACK_TOKEN": GOOD_SECRET}, "OTP_CALLBACK_TOKEN", id="token-is-the-key"
        ),
        pytest.param(
            {"OTP_HUAWEI_APP_SECRET": GOOD_SECRET}, "OTP_SECRET_KEY", id="key-is-the-app-secret"
        ),
        pytest.param(
            {"OTP_HUAWEI_ENDPOINT": "http://smsapi.cn-north-4.myhuaweicloud.com"},
            "OTP_HUAWEI_ENDPOINT",
            id="plain-http-endpoint",
        ),
        pytest.param(
            {"OTP_PUBLIC_URL": "http://otp.example.com"}, "OTP_PUBLIC_URL", id="plain-http-public"
        ),
        pytest.param({"OTP_TRUSTED_PROXIES": "0.0.0.0/0"}, "OTP_TRUSTED_PROXIES", id="v4-all"),
        pytest.param({"OTP_TRUSTED_PROXIES": "::/0"}, "OTP_TRUSTED_PROXIES", id="v6-all"),
        pytest.param(
            {"OTP_TRUSTED_PROXIES": "10.0.0.0/8,0.0.0.0/1,128.0.0.0/1"},
            "OTP_TRUSTED_PROXIES",
            id="v4-all-in-halves",
        ),
        pytest.param({"OTP_REDIS_URL": ""}, "OTP_REDIS_URL", id="no-redis"),
        pytest.param({"OTP_REDIS_URL": "memory://"}, "OTP_REDIS_URL", id="memory-store"),
    ],
)
def test_production_refuses_what_lets_anyone_forge_or_forget(
    changes: dict[str, str], variable: str
) -> None:
    with pytest.raises(ConfigurationError, match=f"^{variable}:") as raised:
        Settings.from_env(production(**changes))
    secret = {"OTP_SECRET_KEY", "OTP_CALLBACK_TOKEN", "OTP_HUAWEI_APP_SECRET"}
    shown = [value for name, value in changes.items() if name in secret and len(value) > 8]
    assert not any(value in raised.value.detail for value in shown)


def test_production_accepts_random_secrets_and_proxy_ranges() -> None:
    import secrets

    for _ in range(200):
        Settings.from_env(
            production(
                OTP_SECRET_KEY=secrets.token_hex(16),
                OTP_SECRET_KEY_FALLBACKS=secrets.token_urlsafe(24),
                OTP_CALLBACK_TOKEN="".join(secrets.choice("0123456789") for _ in range(32)),
                OTP_TRUSTED_PROXIES="10.0.0.0/8,172.16.0.0/12,fd00::/8",
            )
        )


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigurationError) as raised:
        Settings.from_env(
            production(
                OTP_CODE_TTL="soon",
                OTP_MAX_ATTEMPTS="0",
                OTP_SECRET_KEY_FALLBACKS="changeme",
                OTP_CALLBACK_TOKEN="a",
                OTP_TRUSTED_PROXIES="0.0.0.0/0,::/0",
                OTP_REDIS_URL="",
            )
        )
    named = [problem.partition(":")[0] for problem in raised.value.problems]
    assert named == [
        "OTP_CODE_TTL",
        "OTP_MAX_ATTEMPTS",
        "OTP_SECRET_KEY_FALLBACKS",
        "OTP_CALLBACK_TOKEN",
        "OTP_TRUSTED_PROXIES",
        "OTP_TRUSTED_PROXIES",
        "OTP_REDIS_URL",
    ]
    assert raised.value.detail == "; ".join(raised.value.problems)


def test_unsafe_choices_outside_production_are_warnings_naming_the_variable() -> None:
    settings = Settings.from_env(
        {
            "OTP_TRUSTED_PROXIES": "0.0.0.0/0,::/0",
            "OTP_CALLBACK_TOKEN": "a",
            "OTP_SECRET_KEY_FALLBACKS": "changeme",
            "OTP_SHADOW_RULES": ",".join(sorted(SHADOWABLE_RULES)),
        }
    )
    warnings = settings.warnings()
    assert [w.partition(":")[0] for w in warnings] == [
        "OTP_SECRET_KEY_FALLBACKS",
        "OTP_CALLBACK_TOKEN",
        "OTP_TRUSTED_PROXIES",
        "OTP_TRUSTED_PROXIES",
        "OTP_SHADOW_RULES",
    ]
    assert "nothing is throttled" in warnings[-1]
    assert Settings.from_env({}).warnings() == []


def test_describe_says_when_the_secret_key_is_not_set() -> None:
    assert Settings.from_env({}).describe()["OTP_SECRET_KEY"] == "<unset: random for this process>"
    assert Settings.from_env({}).secret_key == Settings.from_env({}).secret_key
    shown = Settings.from_env({"OTP_SECRET_KEY": GOOD_SECRET}).describe()
    assert shown["OTP_SECRET_KEY"] == "<set>"
