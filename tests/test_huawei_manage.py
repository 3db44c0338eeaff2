"""Template and signature state from the management API, over loopback HTTP (issue 16.4)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from otp_service import create_app
from otp_service.settings import Settings
from otp_service.sms.huawei_manage import (
    HuaweiManagement,
    ManagementError,
    SignatureState,
    TemplateState,
    assess,
)
from otp_service.store import MemoryStore
from tests.conftest import FakeClock
from tests.huawei_manage_sim import DOMAIN, PASSWORD, PROJECT_ID, USER, ManagementSimulator

TEMPLATE = "8ff55eac1d0b478ab3c06c3c6a492300"
SIGNATURE = "云服务验证"

pytestmark = pytest.mark.memory


def iam_settings(sim: ManagementSimulator, **overrides: Any) -> dict[str, Any]:
    return {
        "huawei_iam_endpoint": sim.url,
        "huawei_iam_domain": DOMAIN,
        "huawei_iam_user": USER,
        "huawei_iam_password": PASSWORD,
        "huawei_project_id": PROJECT_ID,
        "huawei_management_endpoint": sim.url,
        "huawei_template_id": TEMPLATE,
        "huawei_signature": SIGNATURE,
        **overrides,
    }


@pytest.mark.parametrize(
    ("flow_status", "blocking", "words"),
    [
        ("Adopted", False, "approved and active"),
        ("Adopted_inactive", True, "cannot be restored: apply for a new template"),
        ("Reviewing", True, "under review"),
        ("Reject", True, "rejected"),
        ("Disable", True, "disabled"),
        ("SomethingNew", True, "undocumented"),
    ],
)
def test_each_template_state_is_judged_with_its_fix(
    flow_status: str, blocking: bool, words: str
) -> None:
    [finding] = assess(
        TemplateState(TEMPLATE, flow_status, False), None, signature_configured=False
    )
    assert (finding.blocking, finding.state) == (blocking, flow_status)
    assert words in finding.fix


@pytest.mark.parametrize(
    ("status", "blocking", "words"),
    [
        ("REVIEW_PROCESSING_COMPLETED", False, "fully usable"),
        ("TO_BE_ACTIVATED", True, "top the account up, then activate the signature in the console"),
        ("PENDING_ACTIVATE", True, "activation under review"),
        ("REVIEW_NOT_PASS", True, "rejected"),
        ("PENDING_QUALIFICATION_REVIEW", True, "cannot send"),
    ],
)
def test_each_signature_state_is_judged_with_its_fix(
    status: str, blocking: bool, words: str
) -> None:
    findings = assess(
        TemplateState(TEMPLATE, "Adopted", False),
        SignatureState(SIGNATURE, status),
        signature_configured=True,
    )
    assert (findings[-1].blocking, findings[-1].state) == (blocking, status)
    assert words in findings[-1].fix


def test_a_universal_template_without_a_signature_is_blocking() -> None:
    findings = assess(TemplateState(TEMPLATE, "Adopted", True), None, signature_configured=False)
    assert [f.blocking for f in findings] == [False, True]
    assert "OTP_HUAWEI_SIGNATURE" in findings[1].fix


def test_states_are_read_with_one_iam_token_reused_until_near_expiry(
    management_sim: ManagementSimulator, settings_factory: Callable[..., Settings]
) -> None:
    management_sim.set_template(TEMPLATE, "Adopted_inactive", universal=True)
    management_sim.set_signature(SIGNATURE, "TO_BE_ACTIVATED")
    settings = settings_factory(**iam_settings(management_sim))
    management = HuaweiManagement.from_settings(settings, now=management_sim.now)
    assert management is not None
    template = management.template(TEMPLATE)
    assert (template.template_id, template.flow_status, template.universal) == (
        TEMPLATE,
        "Adopted_inactive",
        True,
    )
    assert [v.length for v in management.variables(template)] == [6]
    assert management.signature(SIGNATURE) == SignatureState(SIGNATURE, "TO_BE_ACTIVATED")
    assert management_sim.tokens_issued == 1
    # A token that expires within the safety margin is replaced before use.
    management_sim.token_lifetime = 60
    fresh = HuaweiManagement.from_settings(settings, now=management_sim.now)
    assert fresh is not None
    fresh.template(TEMPLATE)
    fresh.template(TEMPLATE)
    assert management_sim.tokens_issued == 3


def test_wrong_iam_credentials_and_unknown_templates_say_what_to_check(
    management_sim: ManagementSimulator, settings_factory: Callable[..., Settings]
) -> None:
    wrong = settings_factory(**iam_settings(management_sim, huawei_iam_password="not-it"))
    management = HuaweiManagement.from_settings(wrong, now=management_sim.now)
    assert management is not None
    with pytest.raises(ManagementError, match="OTP_HUAWEI_IAM_USER"):
        management.template(TEMPLATE)
    right = HuaweiManagement.from_settings(
        settings_factory(**iam_settings(management_sim)), now=management_sim.now
    )
    assert right is not None
    with pytest.raises(ManagementError, match="not in this project"):
        right.template("00000000000000000000000000000000")


def test_without_iam_settings_there_is_no_management_client(
    settings_factory: Callable[..., Settings],
) -> None:
    assert HuaweiManagement.from_settings(settings_factory(), now=lambda: 0.0) is None


def test_readyz_turns_not_ready_on_a_deactivated_template_within_the_refresh(
    management_sim: ManagementSimulator,
    settings_factory: Callable[..., Settings],
    fake_clock: FakeClock,
) -> None:
    management_sim.set_template(TEMPLATE, "Adopted")
    management_sim.set_signature(SIGNATURE, "REVIEW_PROCESSING_COMPLETED")
    settings = settings_factory(**iam_settings(management_sim, huawei_state_refresh=300))
    client = create_app(settings, store=MemoryStore(), clock=fake_clock).test_client()
    assert client.get("/readyz").status_code == 200
    management_sim.set_template(TEMPLATE, "Adopted_inactive")
    fake_clock.advance(120)
    assert client.get("/readyz").status_code == 200  # within the refresh: no new read
    reads = management_sim.reads
    fake_clock.advance(181)
    refused = client.get("/readyz")
    assert management_sim.reads == reads + 3  # template, its variables, signature: once
    body = refused.get_json()
    assert (refused.status_code, body["code"]) == (503, "provider_not_ready")
    assert body["reasons"] == [f"template {TEMPLATE}: Adopted_inactive"]
    assert "apply for a new template" in body["detail"]
    scrape = client.get("/metrics").get_data(as_text=True)
    assert 'otp_provider_state_blocking{state="Adopted_inactive",subject="template"} 1.0' in scrape
    # An unreachable management API keeps the last known state instead of guessing.
    management_sim.stop()
    fake_clock.advance(301)
    assert client.get("/readyz").status_code == 503


@pytest.mark.parametrize(
    ("lengths", "code_length", "blocking_state"),
    [
        pytest.param((6,), 6, None, id="fits"),
        pytest.param((4,), 6, "variable length 4", id="too-short"),
        pytest.param((6, 6), 6, "2 variables", id="two-variables"),
    ],
)
def test_the_templates_variable_must_fit_the_code_length(
    management_sim: ManagementSimulator,
    settings_factory: Callable[..., Settings],
    fake_clock: FakeClock,
    lengths: tuple[int, ...],
    code_length: int,
    blocking_state: str | None,
) -> None:
    """Issue 16.8: a template whose variable cannot hold the code fails every send (E200028)."""
    management_sim.set_template(TEMPLATE, "Adopted", variable_lengths=lengths)
    management_sim.set_signature(SIGNATURE, "REVIEW_PROCESSING_COMPLETED")
    settings = settings_factory(**iam_settings(management_sim), code_length=code_length)
    client = create_app(settings, store=MemoryStore(), clock=fake_clock).test_client()
    answer = client.get("/readyz")
    if blocking_state is None:
        assert answer.status_code == 200
    else:
        assert answer.get_json()["reasons"] == [f"template {TEMPLATE}: {blocking_state}"]
        assert "E200028" in answer.get_json()["detail"]


def test_check_provider_prints_each_state_with_its_fix(
    management_sim: ManagementSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 16.4 through the real CLI: a deactivated template blocks, with the fix in words."""
    from click.testing import CliRunner

    from otp_service.cli import main

    management_sim.set_template(TEMPLATE, "Adopted_inactive")
    management_sim.set_signature(SIGNATURE, "TO_BE_ACTIVATED")
    env = {
        f"OTP_{name.upper()}": str(value) for name, value in iam_settings(management_sim).items()
    }
    result = CliRunner().invoke(main, ["check-provider"], env=env)
    assert result.exit_code == 1, result.output
    assert f"template {TEMPLATE}: Adopted_inactive [BLOCKS SENDING]" in result.output
    assert "apply for a new template" in result.output
    assert "top the account up, then activate the signature in the console" in result.output
    management_sim.set_template(TEMPLATE, "Adopted")
    management_sim.set_signature(SIGNATURE, "REVIEW_PROCESSING_COMPLETED")
    assert CliRunner().invoke(main, ["check-provider"], env=env).exit_code == 0
    missing = CliRunner().invoke(main, ["check-provider"], env={"OTP_HUAWEI_IAM_USER": ""})
    assert missing.exit_code == 2 and "OTP_HUAWEI_IAM_ENDPOINT" in missing.output
