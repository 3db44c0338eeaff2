"""``otp-service abuse``: operators list, lift and allow-list against a shared (Redis) store."""

from __future__ import annotations

import time

import pytest
from click.testing import CliRunner

from otp_service import ConsoleGateway, OtpService
from otp_service.cli import main
from otp_service.core.codes import derive_key
from otp_service.core.keys import range_tag
from otp_service.errors import RateLimited
from otp_service.settings import Settings
from tests.conftest import TEST_SECRET

RANGE = "+861381234"

pytestmark = pytest.mark.redis


@pytest.fixture
def env(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {
        "OTP_ENV": "testing",
        "OTP_SECRET_KEY": TEST_SECRET,
        "OTP_REDIS_URL": redis_url,
        "OTP_KEY_PREFIX": f"cli{time.monotonic_ns()}:",
        "OTP_CAPTCHA_MODE": "off",
        "OTP_PUMPING_FLOOR": "3",
        "OTP_LIMITS_PREFIX": "",
        "OTP_BUDGET_COSTS": "CN:0.05",
        "OTP_BUDGET_DAILY": "10",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


@pytest.fixture
def service(env: dict[str, str]) -> OtpService:
    """A service on the same store the CLI opens, with the real clock (as the CLI has)."""
    return OtpService(Settings.from_env(), gateway=ConsoleGateway())


def abuse(*args: str) -> str:
    result = CliRunner().invoke(main, ["abuse", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_blocks_are_listed_with_figures_then_lifted(service: OtpService) -> None:
    assert abuse("blocks") == "no scope is blocked\n"
    for i in range(4):
        service.send_code(f"{RANGE}{i:04d}", client_ip=f"198.51.{i}.1")
    shown = abuse("blocks")
    range_id = range_tag(derive_key(TEST_SECRET, "phone-tag"), RANGE)
    assert (
        f"prefix +86138**** ({range_id}): pumping_prefix — sent 4, verified 0, allowance 3.0, "
        "strike 1"
    ) in shown
    assert RANGE not in shown
    with pytest.raises(RateLimited):
        service.send_code(f"{RANGE}0100", client_ip="192.0.2.1")
    assert abuse("lift", "prefix", range_id) == "block lifted\n"
    assert abuse("lift", "prefix", range_id) == "no such block\n"
    service.send_code(f"{RANGE}0100", client_ip="192.0.2.1")


def test_a_range_block_is_lifted_by_the_range_in_clear(service: OtpService) -> None:
    for i in range(4):
        service.send_code(f"{RANGE}{i:04d}", client_ip=f"198.51.{i}.1")
    assert abuse("lift", "prefix", RANGE) == "block lifted\n"
    service.send_code(f"{RANGE}0100", client_ip="192.0.2.1")


def test_allow_listed_number_and_subnet_pass_a_block(service: OtpService) -> None:
    for i in range(4):
        service.send_code(f"{RANGE}{i:04d}", client_ip=f"198.51.{i}.1")
    assert abuse("allow", "number", "138 1234 0200") == "allow-listed for 90 days\n"
    service.send_code(f"{RANGE}0200", client_ip="192.0.2.1")
    assert abuse("allow", "subnet", "203.0.113.9", "--days", "1") == "allow-listed for 1 days\n"
    service.send_code(f"{RANGE}0201", client_ip="203.0.113.77")
    assert abuse("disallow", "subnet", "203.0.113.0/24") == "removed\n"
    with pytest.raises(RateLimited):
        service.send_code(f"{RANGE}0202", client_ip="203.0.113.78")


def test_bad_allow_list_values_exit_with_a_message(env: dict[str, str]) -> None:
    result = CliRunner().invoke(main, ["abuse", "allow", "subnet", "not-an-ip"])
    assert result.exit_code == 2
    assert "not an address or CIDR" in result.output
    result = CliRunner().invoke(main, ["abuse", "allow", "number", "12"])
    assert result.exit_code == 2
    # A width the lookup never uses would be stored and never match: refused, with the way out.
    for wider_or_narrower in ("10.20.0.0/16", "10.20.5.7/32", "2001:db8::/48"):
        result = CliRunner().invoke(main, ["abuse", "allow", "subnet", wider_or_narrower])
        assert result.exit_code == 2
        assert "one /24 (IPv4) or /64 (IPv6)" in result.output


def test_budget_shows_spend_against_ceilings(service: OtpService) -> None:
    service.send_code("+8613912345678", client_ip="192.0.2.1")
    assert abuse("budget") == "day: 0.05 of 10\nmonth: 0.05 of no ceiling\n"
