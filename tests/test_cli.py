"""The ``otp-service`` command through click's runner, against a private Redis."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from otp_service import ConsoleGateway, NumberOptedOut, OtpService
from otp_service.callbacks import opt_out
from otp_service.cli import main
from otp_service.core.keys import phone_tag
from otp_service.settings import Settings
from tests.conftest import TEST_SECRET
from tests.processes import child_environ, stop_and_read
from tests.redis_server import free_port
from tests.test_settings import PRODUCTION

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


@pytest.fixture
def production_env(
    env: dict[str, str], durable_redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """A production environment every check accepts, on a private Redis with AOF."""
    values = {**PRODUCTION, "OTP_REDIS_URL": durable_redis_url}
    values["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "metrics")
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def test_check_config_accepts_the_production_baseline(production_env: dict[str, str]) -> None:
    result = CliRunner().invoke(main, ["check-config"])
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output
    assert result.output.rstrip().endswith("configuration ok")


def test_check_config_refuses_a_weak_fallback_key_in_production(
    production_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTP_SECRET_KEY_FALLBACKS", "changeme")
    result = CliRunner().invoke(main, ["check-config"])
    assert result.exit_code == 2
    assert "configuration error: OTP_SECRET_KEY_FALLBACKS: entry 1 is an example value" in (
        result.output
    )
    assert "configuration ok" not in result.output and "changeme" not in result.output


def test_check_config_lists_every_production_problem_in_one_run(
    production_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OTP_REDIS_URL")
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    for name, value in {
        "OTP_TRUSTED_PROXIES": "0.0.0.0/0,::/0",
        "OTP_CALLBACK_TOKEN": "a",
        "OTP_CODE_TTL": "9999",
    }.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(main, ["check-config"])
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("configuration e")]
    assert [line.split(":")[1].strip() for line in errors] == [
        "OTP_CODE_TTL",
        "OTP_CALLBACK_TOKEN",
        "OTP_TRUSTED_PROXIES",
        "OTP_TRUSTED_PROXIES",
        "OTP_REDIS_URL",
    ]
    assert "configuration ok" not in result.output


def test_check_config_in_production_fails_what_the_sidecar_would_refuse(
    production_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    result = CliRunner().invoke(main, ["check-config"])
    assert result.exit_code == 2
    assert (
        "configuration error: PROMETHEUS_MULTIPROC_DIR: several workers need a metrics "
        "directory; set it to a path every worker can write"
    ) in result.output


def test_check_config_warns_about_unsafe_choices_in_every_environment(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTP_WORKERS", "1")
    for name, value in {
        "OTP_TRUSTED_PROXIES": "0.0.0.0/0,::/0",
        "OTP_CALLBACK_TOKEN": "a",
        "OTP_SHADOW_RULES": "number,ip,subnet,prefix,global,verify_ip,captcha_ip,"
        "pumping_prefix,pumping_country,pumping_subnet",
    }.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(main, ["check-config"])
    assert result.exit_code == 0
    warned = [
        line.split(":")[1].strip()
        for line in result.output.splitlines()
        if line.startswith("warning:")
    ]
    assert warned == [
        "OTP_SECRET_KEY",  # TEST_SECRET is one the docs show
        "OTP_CALLBACK_TOKEN",
        "OTP_TRUSTED_PROXIES",
        "OTP_TRUSTED_PROXIES",
        "OTP_SHADOW_RULES",
    ]
    assert "configuration ok (5 warnings)" in result.output


def _fresh_process(
    *args: str, environ: dict[str, str], timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """``python -m otp_service ARGS`` in a process of its own, with only ``environ`` set."""
    return subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "otp_service", *args],
        env=child_environ(environ),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_check_config_without_a_secret_key_says_so_once() -> None:
    result = _fresh_process("check-config", environ={"OTP_WORKERS": "1"})
    assert result.returncode == 0, result.stderr
    assert "OTP_SECRET_KEY=<unset: random for this process>" in result.stdout
    assert "OTP_SECRET_KEY=<set>" not in result.stdout
    assert result.stderr.count("OTP_SECRET_KEY is not set") == 1


def test_serve_in_production_refuses_the_development_server(
    production_env: dict[str, str],
) -> None:
    # A process of its own with a deadline: without the check it would start serving.
    result = _fresh_process("serve", "--port", str(free_port()), environ=production_env)
    assert result.returncode == 2
    assert "configuration error: OTP_ENV: production refuses Flask's development server" in (
        result.stderr
    )


def test_serve_lists_the_development_server_with_the_settings_problems(
    production_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OTP_REDIS_URL")
    monkeypatch.setenv("OTP_SECRET_KEY_FALLBACKS", "x")
    result = CliRunner().invoke(main, ["serve"])
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("configuration e")]
    assert [line.split(":")[1].strip() for line in errors] == [
        "OTP_ENV",
        "OTP_SECRET_KEY_FALLBACKS",
        "OTP_REDIS_URL",
    ]


def _serving(args: list[str], environ: dict[str, str], port: int) -> tuple[int, str]:
    """Start ``python -m otp_service ARGS``, wait for ``/healthz`` on ``port``, stop it by PID.

    Returns the health answer's status (0 if the process exited before answering) and the
    process's output.
    """
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "otp_service", *args],
        env=child_environ(environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    status = 0
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/healthz", timeout=2
                ) as answer:  # noqa: S310
                    status = answer.status
                    break
            except OSError:
                time.sleep(0.1)
    finally:
        output = stop_and_read(process, grace=15)
    return status, output


def test_serve_with_one_gunicorn_worker_starts_on_the_embedded_defaults() -> None:
    """``--workers 1`` is what gunicorn's config module judges, not ``OTP_WORKERS`` (default 2):
    one worker needs no shared key, store or metrics directory."""
    port = free_port()
    status, output = _serving(["serve", "--workers", "1", "--port", str(port)], {}, port)
    assert status == 200, output
    assert "several workers need" not in output


def test_serve_with_two_gunicorn_workers_refuses_without_shared_state() -> None:
    port = free_port()
    status, output = _serving(
        ["serve", "--workers", "2", "--port", str(port)], {"OTP_WORKERS": "1"}, port
    )
    assert status == 0
    assert "OTP_SECRET_KEY: several workers need one shared secret key" in output
    assert "OTP_REDIS_URL: several workers need a shared store" in output


def test_serve_with_two_gunicorn_workers_starts_with_shared_state(
    redis_url: str, tmp_path: Path
) -> None:
    port = free_port()
    environ = {
        "OTP_SECRET_KEY": TEST_SECRET,
        "OTP_REDIS_URL": redis_url,
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
        "OTP_WORKERS": "1",
    }
    status, output = _serving(["serve", "--workers", "2", "--port", str(port)], environ, port)
    assert status == 200, output
    assert output.count("Booting worker") == 2, output
