"""The ``otp-service`` command through click's runner, against a private Redis."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from otp_service import ConsoleGateway, NumberOptedOut, OtpService
from otp_service.callbacks import opt_out
from otp_service.cli import main
from otp_service.core.keys import phone_tag
from otp_service.settings import Settings
from tests.conftest import TEST_SECRET

PHONE = "+8613812345678"


@pytest.fixture
def env(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {
        "OTP_ENV": "testing",
        "OTP_SECRET_KEY": TEST_SECRET,
        "OTP_REDIS_URL": redis_url,
        "OTP_CAPTCHA_MODE": "off",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def test_check_config_prints_settings_with_secrets_hidden(env: dict[str, str]) -> None:
    result = CliRunner().invoke(main, ["check-config"])
    assert result.exit_code == 0
    assert "OTP_SECRET_KEY=<set>" in result.output
    assert TEST_SECRET not in result.output


def test_check_config_runs_the_gateways_start_up_checks(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    huawei = {
        "OTP_SMS_GATEWAY": "huawei",
        "OTP_HUAWEI_ENDPOINT": "https://sms.example.com",
        "OTP_HUAWEI_APP_KEY": "key",
        "OTP_HUAWEI_APP_SECRET": "secret",
        "OTP_HUAWEI_SENDER": "10690000",
        "OTP_HUAWEI_TEMPLATE_ID": "tpl",
        "OTP_CODE_LENGTH": "9",
    }
    for name, value in huawei.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(main, ["check-config"])
    assert result.exit_code == 2
    assert "OTP_CODE_LENGTH" in result.output and "configuration ok" not in result.output


def test_check_config_warns_what_several_workers_would_need(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTP_WORKERS", "4")
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    result = CliRunner().invoke(main, ["check-config"])
    assert result.exit_code == 0
    assert "warning: the sidecar (gunicorn) would refuse this: PROMETHEUS_MULTIPROC_DIR" in (
        result.output
    )


def test_serve_with_several_workers_refuses_before_starting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OTP_REDIS_URL", raising=False)
    result = CliRunner().invoke(main, ["serve", "--workers", "2"])
    assert result.exit_code == 2
    assert "OTP_REDIS_URL: several workers need a shared store" in result.output


def test_check_config_names_a_bad_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTP_CODE_TTL", "9999")
    result = CliRunner().invoke(main, ["check-config"])
    assert result.exit_code == 2
    assert "OTP_CODE_TTL" in result.output


@pytest.mark.redis
def test_optout_show_and_clear_lift_the_suppression(env: dict[str, str]) -> None:
    gateway = ConsoleGateway()
    service = OtpService(Settings.from_env(), gateway=gateway)
    tag = phone_tag(service._tag_key, PHONE)
    opt_out(service.store, service.keys, tag, now=service.clock.now(), ttl=3600, reason="STOP")
    with pytest.raises(NumberOptedOut):
        service.send_code(PHONE)

    shown = CliRunner().invoke(main, ["optout", "show", PHONE])
    assert shown.exit_code == 0 and "opted out" in shown.output
    cleared = CliRunner().invoke(main, ["optout", "clear", PHONE])
    assert (cleared.exit_code, cleared.output.strip()) == (0, "opt-out cleared")
    service.send_code(PHONE)
    assert len(gateway.sent) == 1
    assert CliRunner().invoke(main, ["optout", "show", PHONE]).output.strip() == "not opted out"
