"""Operator commands on shared state refuse what would only pretend to work."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from otp_service.cli import main
from tests.conftest import TEST_SECRET

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
