"""``otp-service check-provider``'s account check through the real CLI, against the loopback
simulator (issue 16.6): one harmless authenticated call, the cause and the fix in words."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner, Result

from otp_service.cli import main
from otp_service.sms.huawei_probe import PROBE_TO, clock_words
from tests.huawei_manage_sim import ManagementSimulator
from tests.huawei_sim import Fault, HuaweiSimulator
from tests.test_huawei_manage import TEMPLATE, iam_settings

pytestmark = pytest.mark.memory

#: 25 h 7 min 12.4 s: past the platform's 24 h limit for Created (reference §2.1).
SKEW = 25 * 3600 + 7 * 60 + 12.4


def check(sim: HuaweiSimulator, **overrides: Any) -> Result:
    values = {**sim.settings_overrides(), **overrides}
    env = {f"OTP_{name.upper()}": str(value) for name, value in values.items()}
    return CliRunner().invoke(main, ["check-provider"], env=env)


def test_a_healthy_account_is_authenticated_and_nothing_is_sent(
    huawei_sim: HuaweiSimulator,
) -> None:
    result = check(huawei_sim)
    assert result.exit_code == 0, result.output
    assert "account: authenticated [ok]" in result.output
    assert "clock: our clock agrees with the provider's to the second" in result.output
    assert "calling from: 127.0.0.1" in result.output
    assert "template and signature state: not read" in result.output
    # One request reached the platform, and it could not become a message.
    assert huawei_sim.received == 1
    assert huawei_sim.messages == []


@pytest.mark.parametrize(
    ("offset", "words"),
    [
        pytest.param(-SKEW, "ahead of", id="our-clock-ahead"),
        pytest.param(SKEW, "behind", id="our-clock-behind"),
    ],
)
def test_clock_skew_shows_the_offset_against_the_providers_date(
    huawei_sim_factory: Callable[..., HuaweiSimulator], offset: float, words: str
) -> None:
    """E000110 judged for real: the simulator's clock is skewed, its Date header shows it."""
    sim = huawei_sim_factory(clock=lambda: time.time() + offset).start()
    result = check(sim)
    assert result.exit_code == 1, result.output
    assert "account: E000110 [BLOCKS SENDING]" in result.output
    assert re.search(rf"our clock is 25 h 7 min 1[123] s {words} the provider's", result.output)
    assert "synchronise this host's clock" in result.output
    assert sim.messages == []


def test_an_address_outside_the_whitelist_names_our_address_and_the_delay(
    huawei_sim_factory: Callable[..., HuaweiSimulator],
) -> None:
    """E000620 judged for real on the peer address; we name the local end of our connection."""
    sim = huawei_sim_factory(allowed_ips=frozenset({"192.0.2.10"})).start()
    result = check(sim)
    assert result.exit_code == 1, result.output
    assert "account: E000620 [BLOCKS SENDING]" in result.output
    assert "we call from 127.0.0.1 (the local address of our connection" in result.output
    assert "a whitelist change takes 10–15 minutes to apply" in result.output
    whitelisted = huawei_sim_factory(allowed_ips=frozenset({"127.0.0.1"})).start()
    assert check(whitelisted).exit_code == 0


@pytest.mark.parametrize(
    ("setup", "code", "words"),
    [
        pytest.param({"fault": "E000109"}, "E000109", "deactivated or not activated", id="109"),
        pytest.param({"fault": "E000112"}, "E000112", "top the account up", id="112"),
        pytest.param(
            {"huawei_app_key": "someone-elses-key"},
            "E000102",
            "does not know this App Key at this access address",
            id="102-wrong-key",
        ),
        pytest.param({"fault": "E000103"}, "E000103", "not in its normal state", id="103"),
        pytest.param(
            {"huawei_app_secret": "not-the-secret"},
            "E000105",
            "the App Secret does not match the App Key",
            id="105-wrong-secret",
        ),
        pytest.param(
            {"fault": "E000104"}, "E000104", "the App Secret does not match the App Key", id="104"
        ),
        pytest.param({"fault": "E000623"}, "E000623", "raise the limit value", id="623"),
        pytest.param({"fault": "E000106"}, "E000106", "no permission (capability)", id="106"),
    ],
)
def test_each_account_fault_names_its_cause_and_fix(
    huawei_sim: HuaweiSimulator, setup: dict[str, str], code: str, words: str
) -> None:
    overrides = dict(setup)
    fault = overrides.pop("fault", None)
    if fault is not None:
        huawei_sim.inject(Fault(code=fault))
    result = check(huawei_sim, **overrides)
    assert result.exit_code == 1, result.output
    assert f"account: {code} [BLOCKS SENDING]" in result.output
    assert words in result.output
    assert "fix: " in result.output
    assert huawei_sim.messages == []


def test_an_unreachable_provider_is_no_verdict(
    huawei_sim_factory: Callable[..., HuaweiSimulator],
) -> None:
    sim = huawei_sim_factory()
    sim.bind()  # the port is reserved but refuses every connection
    result = check(sim)
    assert result.exit_code == 2
    assert "account: not checked - the provider did not answer" in result.output


def test_with_the_management_api_both_checks_run(
    huawei_sim: HuaweiSimulator, management_sim: ManagementSimulator
) -> None:
    management_sim.set_template(TEMPLATE, "Adopted_inactive")
    result = check(huawei_sim, **iam_settings(management_sim, huawei_signature=""))
    assert result.exit_code == 1, result.output
    assert "account: authenticated [ok]" in result.output
    assert f"template {TEMPLATE}: Adopted_inactive [BLOCKS SENDING]" in result.output


def test_the_probe_number_is_refused_as_a_whole_by_the_documented_rule() -> None:
    """sms_05_0001: a ``to`` with anything but digits and ``+`` fails the whole request."""
    assert not set(PROBE_TO) <= set("+0123456789")


@pytest.mark.parametrize(
    ("offset", "words"),
    [
        (0.4, "our clock agrees with the provider's to the second"),
        (432.0, "our clock is 7 min 12 s ahead of the provider's"),
        (-3.0, "our clock is 3 s behind the provider's"),
        (7205.0, "our clock is 2 h 0 min 5 s ahead of the provider's"),
        (None, "no Date header"),
    ],
)
def test_clock_offsets_read_as_words(offset: float | None, words: str) -> None:
    assert words in clock_words(offset)
