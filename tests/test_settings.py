from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from otp_service.errors import ConfigurationError
from otp_service.settings import Settings, settings_table

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
