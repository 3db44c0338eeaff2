"""``otp-service notify`` (issue 16.5) through CliRunner against the Huawei simulator."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from otp_service.callbacks import _optout_keys
from otp_service.cli import main
from otp_service.settings import Settings
from otp_service.store.redis import RedisStore
from tests.conftest import TEST_SECRET
from tests.huawei_sim import NOTIFY_SENDER, TWO_VARIABLE_TEMPLATE_ID, HuaweiSimulator

NUMBERS = ["+8613800000001", "+8613800000002", "+8613800000003"]
ARGS = ["notify", "--template-id", TWO_VARIABLE_TEMPLATE_ID, "--param", "0930"]


@pytest.fixture
def numbers(tmp_path: Path) -> str:
    path = tmp_path / "numbers.txt"
    path.write_text("\n".join([*NUMBERS, "not a number", ""]), encoding="utf-8")
    return str(path)


@pytest.fixture
def huawei_env(huawei_sim: HuaweiSimulator, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "OTP_ENV": "testing",
        "OTP_CAPTCHA_MODE": "off",
        "OTP_HUAWEI_ENDPOINT": huawei_sim.url,
        "OTP_HUAWEI_APP_KEY": huawei_sim.app_key,
        "OTP_HUAWEI_APP_SECRET": huawei_sim.app_secret,
        "OTP_HUAWEI_SENDER": NOTIFY_SENDER,
        "OTP_HUAWEI_TEMPLATE_ID": TWO_VARIABLE_TEMPLATE_ID,
    }.items():
        monkeypatch.setenv(name, value)


def test_sends_in_groups_and_prints_only_masked_numbers(
    huawei_env: None, huawei_sim: HuaweiSimulator, numbers: str
) -> None:
    args = [*ARGS, "--param", "维护通知", "--numbers", numbers, "--group-size", "2"]
    result = CliRunner().invoke(main, [*args, "--ignore-optouts"])
    assert result.exit_code == 0, result.output
    assert "sent 3, refused 0, unknown outcome 0" in result.output
    assert "line 4: skipped" in result.output
    assert huawei_sim.received == 2
    assert sorted(m.to for m in huawei_sim.messages) == NUMBERS
    assert not any(n in result.output for n in NUMBERS)


def test_refused_numbers_are_counted(
    huawei_env: None, huawei_sim: HuaweiSimulator, numbers: str
) -> None:
    result = CliRunner().invoke(main, [*ARGS, "--numbers", numbers, "--ignore-optouts"])
    assert "sent 0, refused 3" in result.output
    assert huawei_sim.messages == []


def test_dry_run_sends_nothing(huawei_env: None, huawei_sim: HuaweiSimulator, numbers: str) -> None:
    args = [*ARGS, "--numbers", numbers, "--dry-run", "--ignore-optouts"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "nothing sent" in result.output
    assert huawei_sim.received == 0


def test_opt_out_store_unreadable_needs_the_flag(huawei_env: None, numbers: str) -> None:
    result = CliRunner().invoke(main, [*ARGS, "--numbers", numbers, "--dry-run"])
    assert result.exit_code == 2
    assert "--ignore-optouts" in result.output


def test_missing_huawei_settings_are_refused(numbers: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTP_ENV", "testing")
    result = CliRunner().invoke(main, [*ARGS, "--numbers", numbers, "--dry-run"])
    assert result.exit_code == 2
    assert "OTP_HUAWEI_ENDPOINT" in result.output


def test_opted_out_numbers_are_skipped(
    huawei_env: None,
    huawei_sim: HuaweiSimulator,
    numbers: str,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTP_REDIS_URL", redis_url)
    monkeypatch.setenv("OTP_SECRET_KEY", TEST_SECRET)
    settings = Settings.from_env()
    store = RedisStore.from_url(redis_url)
    key = _optout_keys(settings, NUMBERS[0])[0][0]
    # The CLI reads with the system clock, so the record is written at the real time.
    try:
        store.put_new(key, b'{"reason": "TD", "at": 0}', ttl=3600, now=time.time())
    finally:
        store.close()
    args = [*ARGS, "--param", "维护通知", "--numbers", numbers]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "sent 2" in result.output and "opted out 1" in result.output
    assert sorted(m.to for m in huawei_sim.messages) == NUMBERS[1:]


def test_blocked_content_is_refused_before_sending(
    huawei_env: None, huawei_sim: HuaweiSimulator, numbers: str
) -> None:
    text = "【云服务验证】${1} 维护，详情访问 http://bit.ly/x ${2}"
    args = [*ARGS, "--param", "维护通知", "--numbers", numbers, "--ignore-optouts"]
    result = CliRunner().invoke(main, [*args, "--text", text])
    assert result.exit_code == 2, result.output
    assert "content blocked" in result.output
    assert huawei_sim.received == 0


def test_clean_content_is_rendered_and_sent(
    huawei_env: None, huawei_sim: HuaweiSimulator, numbers: str
) -> None:
    text = "【云服务验证】系统将于${1}进行${2}。"
    args = [*ARGS, "--param", "维护通知", "--numbers", numbers, "--ignore-optouts"]
    result = CliRunner().invoke(main, [*args, "--text", text, "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "系统将于0930进行维护通知" in result.output
