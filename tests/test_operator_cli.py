"""Operator commands on shared state refuse what would only pretend to work."""

from __future__ import annotations

import pytest
import redis
from click.testing import CliRunner

from otp_service import ConsoleGateway, OtpService, Settings
from otp_service.callbacks import opt_out
from otp_service.cli import main
from otp_service.core.codes import key_id
from otp_service.core.keys import phone_tag
from tests.conftest import TEST_SECRET
from tests.test_cli import _fresh_process

PHONE = "+8613812345678"

#: Every command that reads or changes the service's shared state.
SHARED_STATE_COMMANDS = [
    pytest.param(["abuse", "allow", "number", PHONE], id="abuse-allow-number"),
    pytest.param(["abuse", "allow", "subnet", "10.0.0.1"], id="abuse-allow-subnet"),
    pytest.param(["abuse", "disallow", "number", PHONE], id="abuse-disallow-number"),
    pytest.param(["abuse", "blocks"], id="abuse-blocks"),
    pytest.param(["abuse", "lift", "prefix", "+86138123"], id="abuse-lift"),
    pytest.param(["abuse", "budget"], id="abuse-budget"),
    pytest.param(["limits", "show", "--phone", PHONE], id="limits-show"),
    pytest.param(["limits", "reset", "--ip", "10.0.0.1"], id="limits-reset"),
    pytest.param(["optout", "show", PHONE], id="optout-show"),
    pytest.param(["optout", "clear", PHONE], id="optout-clear"),
]


@pytest.mark.parametrize("store_url", [None, "memory://"], ids=["unset", "memory"])
@pytest.mark.parametrize("args", SHARED_STATE_COMMANDS)
def test_shared_state_commands_refuse_without_a_shared_store(
    args: list[str], store_url: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTP_SECRET_KEY", TEST_SECRET)
    if store_url is not None:
        monkeypatch.setenv("OTP_REDIS_URL", store_url)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert result.output.startswith("configuration error: OTP_REDIS_URL: ")
    assert len(result.output.splitlines()) == 1


OLD_SECRET = "an-older-test-secret-key-long-enough-9876543210"

#: The commands that find a number's state under its keyed hash.
NUMBER_COMMANDS = [
    pytest.param(["abuse", "allow", "number", PHONE], id="abuse-allow-number"),
    pytest.param(["abuse", "disallow", "number", PHONE], id="abuse-disallow-number"),
    pytest.param(["limits", "show", "--phone", PHONE], id="limits-show"),
    pytest.param(["limits", "reset", "--phone", PHONE], id="limits-reset"),
    pytest.param(["optout", "show", PHONE], id="optout-show"),
    pytest.param(["optout", "clear", PHONE], id="optout-clear"),
]


@pytest.fixture
def redis_env(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The private Redis as OTP_REDIS_URL, and no secret yet."""
    monkeypatch.setenv("OTP_ENV", "testing")
    monkeypatch.setenv("OTP_REDIS_URL", redis_url)
    monkeypatch.setenv("OTP_CAPTCHA_MODE", "off")
    return redis_url


@pytest.mark.redis
@pytest.mark.parametrize("args", NUMBER_COMMANDS)
def test_number_commands_refuse_without_the_services_secret(
    args: list[str], redis_env: str
) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert result.output.startswith("configuration error: OTP_SECRET_KEY: ")
    assert "random key for this process" not in result.output
    assert redis.Redis.from_url(redis_env).dbsize() == 0  # no orphan entry written


@pytest.mark.redis
def test_commands_without_numbers_need_no_secret(redis_env: str) -> None:
    result = CliRunner().invoke(main, ["abuse", "blocks"])
    assert (result.exit_code, result.output.splitlines()[-1]) == (0, "no scope is blocked")


def _service_under(secret: str) -> OtpService:
    return OtpService(Settings.from_env(secret_key=secret), gateway=ConsoleGateway())


def _opt_out(service: OtpService) -> None:
    tag = phone_tag(service._tag_key, PHONE)
    opt_out(service.store, service.keys, tag, now=service.clock.now(), ttl=3600, reason="STOP")


def run(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.output.strip()


@pytest.mark.redis
def test_optout_show_names_the_key_id_it_found_the_state_under(
    redis_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _opt_out(_service_under(TEST_SECRET))
    monkeypatch.setenv("OTP_SECRET_KEY", TEST_SECRET)
    shown = run("optout", "show", PHONE)
    assert shown.startswith("opted out: ")
    assert shown.endswith(f"(under key id {key_id(TEST_SECRET)}, OTP_SECRET_KEY)")


@pytest.mark.redis
def test_after_a_rotation_optout_commands_find_state_under_the_fallback_key(
    redis_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _opt_out(_service_under(OLD_SECRET))
    monkeypatch.setenv("OTP_SECRET_KEY", TEST_SECRET)
    monkeypatch.setenv("OTP_SECRET_KEY_FALLBACKS", OLD_SECRET)
    old = f"key id {key_id(OLD_SECRET)}, OTP_SECRET_KEY_FALLBACKS entry 1"
    shown = run("optout", "show", PHONE)
    assert shown.startswith("opted out under an old key only: ")
    assert f"(under {old}); the service matches numbers under key id {key_id(TEST_SECRET)}" in (
        shown
    )
    assert run("optout", "clear", PHONE) == f"opt-out cleared (it was under {old})"
    assert run("optout", "show", PHONE) == "not opted out"
    assert run("optout", "clear", PHONE) == "no opt-out was recorded"


@pytest.mark.redis
def test_after_a_rotation_disallow_removes_the_entry_under_the_fallback_key(
    redis_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTP_SECRET_KEY", OLD_SECRET)
    assert run("abuse", "allow", "number", PHONE) == "allow-listed for 90 days"
    monkeypatch.setenv("OTP_SECRET_KEY", TEST_SECRET)
    monkeypatch.setenv("OTP_SECRET_KEY_FALLBACKS", OLD_SECRET)
    assert run("abuse", "disallow", "number", PHONE) == (
        f"removed (it was under key id {key_id(OLD_SECRET)}, OTP_SECRET_KEY_FALLBACKS entry 1)"
    )
    assert run("abuse", "disallow", "number", PHONE) == "was not allow-listed"
    assert redis.Redis.from_url(redis_env).dbsize() == 0


@pytest.mark.redis
def test_limits_show_names_the_key_id_of_the_number(
    redis_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTP_SECRET_KEY", TEST_SECRET)
    shown = run("limits", "show", "--phone", PHONE)
    assert (
        f"number +86138****5678 (purpose default) under key id {key_id(TEST_SECRET)}, "
        "OTP_SECRET_KEY"
    ) in shown


@pytest.mark.redis
def test_a_refused_number_command_makes_no_random_key(redis_env: str) -> None:
    # A process of its own, so the settings' one-per-process warning would show if it were made.
    result = _fresh_process(
        "optout", "show", PHONE, environ={"OTP_REDIS_URL": redis_env, "OTP_ENV": "testing"}
    )
    assert result.returncode == 2
    assert result.stderr.startswith("configuration error: OTP_SECRET_KEY: ")
    assert "OTP_SECRET_KEY is not set" not in result.stderr


def test_content_check_builds_no_secret() -> None:
    result = _fresh_process("content", "check", "Your code is 123456", environ={})
    assert result.returncode == 1, result.stderr  # flags only: no signature configured
    assert "OTP_SECRET_KEY" not in result.stderr
