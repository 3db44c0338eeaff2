"""batchSendDiffSms (issue 16.5) over HTTP against the strict simulator."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from otp_service.settings import Settings
from otp_service.sms.huawei import HuaweiSmsGateway
from otp_service.sms.huawei_diff import (
    MAX_BODY_BYTES,
    DiffBatch,
    diff_body,
    encode,
    send_diff,
    split_batch,
)
from tests.huawei_sim import (
    NOTIFY_SENDER,
    TWO_VARIABLE_TEMPLATE_ID,
    Fault,
    HuaweiSimulator,
)

NUMBERS = ["+8613800000001", "+8613800000002", "+8613800000003"]


@pytest.fixture
def gateway(
    huawei_sim: HuaweiSimulator, settings_factory: Callable[..., Settings]
) -> Iterator[HuaweiSmsGateway]:
    values: dict[str, Any] = huawei_sim.settings_overrides(
        huawei_sender=NOTIFY_SENDER, huawei_timeout=0.5
    )
    made = HuaweiSmsGateway.from_settings(settings_factory(**values))
    try:
        yield made
    finally:
        made.close()


def batch(numbers: list[str] | None = None, params: list[str] | None = None) -> DiffBatch:
    return DiffBatch(numbers or NUMBERS, TWO_VARIABLE_TEMPLATE_ID, params or ["0930", "维护通知"])


def test_success_gives_each_number_its_message_id(
    huawei_sim: HuaweiSimulator, gateway: HuaweiSmsGateway
) -> None:
    results = send_diff(gateway, batch())
    assert [r.outcome for r in results] == ["sent"] * 3
    assert {r.message_id for r in results} == {m.sms_msg_id for m in huawei_sim.messages}
    assert [m.params for m in huawei_sim.messages] == [["0930", "维护通知"]] * 3
    assert all("*" in r.masked for r in results)


def test_body_carries_template_paras_as_a_real_array(gateway: HuaweiSmsGateway) -> None:
    body = diff_body(gateway, batch())
    assert body["from"] == NOTIFY_SENDER
    [content] = body["smsContent"]  # type: ignore[misc]
    assert content["templateParas"] == ["0930", "维护通知"]
    assert content["to"] == NUMBERS


def test_a_bad_number_is_refused_alone(
    huawei_sim: HuaweiSimulator, gateway: HuaweiSmsGateway
) -> None:
    results = send_diff(gateway, batch([NUMBERS[0], "+0123"]))
    assert [r.outcome for r in results] == ["sent", "refused"]
    assert results[1].code == "E000503"
    assert len(huawei_sim.messages) == 1


def test_whole_request_refusal_refuses_every_number(
    huawei_sim: HuaweiSimulator, gateway: HuaweiSmsGateway
) -> None:
    huawei_sim.inject(Fault(code="E000620"))
    results = send_diff(gateway, batch())
    assert {(r.outcome, r.code) for r in results} == {("refused", "E000620")}
    assert huawei_sim.messages == []


def test_template_variable_failure_is_a_refusal(
    huawei_sim: HuaweiSimulator, gateway: HuaweiSmsGateway
) -> None:
    results = send_diff(gateway, batch(params=["0930"]))
    assert {(r.outcome, r.code) for r in results} == {("refused", "E200028")}


def test_timeout_is_unknown_and_never_retried(
    huawei_sim: HuaweiSimulator, gateway: HuaweiSmsGateway
) -> None:
    huawei_sim.inject(Fault(delay=1.5))
    results = send_diff(gateway, batch())
    assert {r.outcome for r in results} == {"unknown"}
    huawei_sim.wait_idle()
    assert huawei_sim.received == 1
    assert len(huawei_sim.messages) == 3  # the platform did send: no second request


def test_simulator_refuses_a_string_template_paras(
    huawei_sim: HuaweiSimulator, gateway: HuaweiSmsGateway
) -> None:
    body = diff_body(gateway, batch())
    body["smsContent"][0]["templateParas"] = '["0930","x"]'  # type: ignore[index]
    response = gateway._session.post(
        huawei_sim.url + "/sms/batchSendDiffSms/v1",
        data=encode(body),
        headers={"Content-Type": "application/json"},
        auth=gateway._auth,
        timeout=2,
    )
    assert response.json()["code"] == "E000000"
    assert huawei_sim.messages == []


def test_split_keeps_each_request_under_64_kb_and_the_group_size(
    gateway: HuaweiSmsGateway,
) -> None:
    many = [f"+86138{i:08d}" for i in range(1200)]
    groups = list(split_batch(gateway, batch(many), group_size=450))
    assert [n for g in groups for n in g.numbers] == many
    assert all(len(g.numbers) <= 450 for g in groups)
    assert all(len(encode(diff_body(gateway, g))) <= MAX_BODY_BYTES for g in groups)
    long_params = ["0930", "x" * 60_000]
    big = list(split_batch(gateway, batch(many[:500], long_params)))
    assert len(big) > 1
    assert all(len(encode(diff_body(gateway, g))) <= MAX_BODY_BYTES for g in big)
