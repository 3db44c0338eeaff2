"""The content check inside the send pipeline: a block sends nothing and says only rule/group."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

from otp_service import ConsoleGateway, OtpService
from otp_service.app import create_app
from otp_service.audit import FIELDS_ATTRIBUTE
from otp_service.content_rules import parse_rules, shipped_rules_text
from otp_service.core.content import ContentPolicy
from otp_service.errors import CodeExpired, ContentBlocked
from otp_service.settings import Settings
from otp_service.store import MemoryStore
from tests.conftest import FakeClock

PHONE = "+8613812345678"
BANNED_TEMPLATE = "您的验证码是{code}，{minutes}分钟内有效。澳门赌场首充送彩金！"


@pytest.fixture
def gateway() -> ConsoleGateway:
    return ConsoleGateway()


@pytest.fixture
def make_service(
    gateway: ConsoleGateway, fake_clock: FakeClock, settings_factory: Callable[..., Settings]
) -> Callable[..., OtpService]:
    store = MemoryStore()  # shared, so a second service sees what the first one stored

    def make(content_policy: ContentPolicy | None = None, **overrides: Any) -> OtpService:
        return OtpService(
            settings_factory(**overrides),
            store=store,
            gateway=gateway,
            clock=fake_clock,
            content_policy=content_policy,
        )

    return make


def audit_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    return [getattr(r, FIELDS_ATTRIBUTE) for r in caplog.records if hasattr(r, FIELDS_ATTRIBUTE)]


def test_blocked_message_is_never_sent_nor_stored(
    make_service: Callable[..., OtpService],
    gateway: ConsoleGateway,
    caplog: pytest.LogCaptureFixture,
) -> None:
    service = make_service(message_template=BANNED_TEMPLATE, huawei_signature="示例科技")
    caplog.set_level(logging.INFO, logger="otp_service.audit")
    with pytest.raises(ContentBlocked) as info:
        service.send_code(PHONE)
    assert info.value.extras == {"rule": "gambling.betting", "group": "gambling"}
    assert "赌" not in info.value.detail
    assert gateway.sent == []
    (line,) = [x for x in audit_lines(caplog) if x["event"] == "send"]
    assert (line["outcome"], line["reason"], line["rule"]) == (
        "refused",
        "content_blocked",
        "gambling.betting",
    )
    assert "赌" not in repr(line)
    # No code was stored: there is nothing to verify.
    with pytest.raises(CodeExpired):
        service.verify(PHONE, "123456")


def test_flag_sends_and_records_rule_ids_only(
    make_service: Callable[..., OtpService],
    gateway: ConsoleGateway,
    caplog: pytest.LogCaptureFixture,
) -> None:
    service = make_service(
        message_template="您的验证码是{code}，用于医院挂号，{minutes}分钟内有效。"
    )
    caplog.set_level(logging.INFO, logger="otp_service.audit")
    service.send_code(PHONE)
    assert len(gateway.sent) == 1
    (line,) = [x for x in audit_lines(caplog) if x["event"] == "send"]
    assert line["outcome"] == "accepted"
    assert line["content_flags"] == ["medical.health", "structure.signature_missing"]
    assert "医院" not in repr(line)


def test_default_template_passes(
    make_service: Callable[..., OtpService], gateway: ConsoleGateway
) -> None:
    make_service(huawei_signature="示例科技").send_code(PHONE)
    assert len(gateway.sent) == 1


def test_injected_policy_is_used(
    make_service: Callable[..., OtpService], gateway: ConsoleGateway
) -> None:
    operator = """
schema = 1
[[group.acme.rules]]
id = "acme.words"
row = 6
action = "block"
keywords = ["verification code"]
"""
    policy = ContentPolicy.from_rules(parse_rules(shipped_rules_text(), operator))
    service = make_service(content_policy=policy)
    assert service.content_policy is policy
    with pytest.raises(ContentBlocked) as info:
        service.send_code(PHONE)
    assert info.value.extras == {"rule": "acme.words", "group": "acme"}
    assert gateway.sent == []


def test_http_422_problem_names_rule_and_group_only(
    gateway: ConsoleGateway, fake_clock: FakeClock, settings_factory: Callable[..., Settings]
) -> None:
    app = create_app(
        settings_factory(message_template=BANNED_TEMPLATE),
        store=MemoryStore(),
        gateway=gateway,
        clock=fake_clock,
    )
    response = app.test_client().post("/send-code", json={"phone": PHONE})
    assert response.status_code == 422
    body = response.get_json()
    assert (body["code"], body["rule"], body["group"]) == (
        "content_blocked",
        "gambling.betting",
        "gambling",
    )
    assert "赌" not in response.get_data(as_text=True)
    assert gateway.sent == []
