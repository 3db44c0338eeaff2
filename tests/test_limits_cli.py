"""``otp-service limits show|reset`` through click's runner, against a private Redis."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from otp_service import ConsoleGateway, OtpService, RateLimited
from otp_service.cli import main
from otp_service.settings import Settings
from otp_service.store.redis import RedisStore
from tests.conftest import TEST_SECRET

PHONE = "+8613812345678"
IP = "203.0.113.9"


@pytest.fixture
def env(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {
        "OTP_ENV": "testing",
        "OTP_SECRET_KEY": TEST_SECRET,
        "OTP_REDIS_URL": redis_url,
        "OTP_CAPTCHA_MODE": "off",
        "OTP_LIMITS_IP": "2/minute;100/hour",
        # A worker's refusal memo would hold a reset made by another process for up to its
        # hold (1 s); tests/test_refusal_memo.py covers that with a clock. Here: the store alone.
        "OTP_REFUSAL_MEMO_SECONDS": "0",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


@pytest.fixture
def service(env: dict[str, str], redis_url: str) -> OtpService:
    """The running service's twin: same settings and Redis, the real clock like the CLI's."""
    store = RedisStore.from_url(redis_url)
    return OtpService(Settings.from_env(), store=store, gateway=ConsoleGateway())


def run(*args: str) -> str:
    result = CliRunner().invoke(main, ["limits", *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_show_prints_each_window_with_the_number_masked(service: OtpService) -> None:
    service.send_code(PHONE, client_ip=IP)
    out = run("show", "--phone", PHONE, "--ip", IP)
    assert PHONE not in out
    assert "number +86138****5678 (purpose default)" in out
    assert f"address {IP}" in out
    assert re.search(r"number\s+1/minute\s+used 1  FULL until \S+Z \((59|60) s\)", out)
    assert re.search(r"number\s+5/hour\s+used 1  next frees \S+Z", out)
    assert re.search(r"ip\s+2/minute\s+used 1  next frees", out)
    assert re.search(r"subnet\s+30/minute\s+used 1", out)
    assert re.search(r"prefix\s+50/hour\s+used 1", out)
    assert re.search(r"verify_ip\s+30/minute\s+used 0\n", out)
    assert re.search(r"global\s+1000/hour\s+used 1", out)


def test_reset_clears_a_numbers_windows_and_an_address(service: OtpService) -> None:
    service.send_code(PHONE, client_ip=IP)
    with pytest.raises(RateLimited):
        service.send_code(PHONE, client_ip=IP)
    # The cooldown, two windows of the purpose, three across purposes, one of the range.
    assert run("reset", "--phone", PHONE) == "cleared 7 windows\n"
    service.send_code(PHONE, client_ip=IP)
    with pytest.raises(RateLimited) as info:
        service.send_code("+8613912345678", client_ip=IP)
    assert info.value.extras["limit"] == "ip"
    assert run("reset", "--ip", IP) == "cleared 4 windows\n"
    service.send_code("+8613912345678", client_ip=IP)
    # Refused sends spend nothing: three sent, three counted.
    assert re.search(r"global\s+1000/hour\s+used 3", run("show", "--ip", IP))


def test_a_missing_or_bad_subject_is_refused(env: dict[str, str]) -> None:
    result = CliRunner().invoke(main, ["limits", "show"])
    assert result.exit_code == 2
    assert "phone number" in result.output
    result = CliRunner().invoke(main, ["limits", "reset", "--ip", "300.1.1.1"])
    assert result.exit_code == 2
    assert "client_ip" in result.output
