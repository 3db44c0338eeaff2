"""Huawei's pushes over loopback HTTP: the simulator POSTs to the service on a real socket.

The service runs under werkzeug's server on a free port with the Huawei gateway pointed at the
simulator, so a code is sent through ``batchSendSms`` and its report, a batch of reports and
the subscriber's ``退订`` reply come back the way the platform delivers them (sms_05_0003,
sms_05_0063, sms_05_0004), on every store backend.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from flask import Flask
from werkzeug.serving import make_server

from otp_service.app import create_app
from otp_service.callbacks import delivery_state, record_sent
from otp_service.core.codes import derive_key
from otp_service.core.keys import Keys, phone_tag
from otp_service.settings import Settings
from otp_service.sms.huawei import HuaweiSmsGateway
from otp_service.store import Store
from tests.conftest import TEST_SECRET, FakeClock
from tests.huawei_sim import FORM, SENDER, HuaweiSimulator, SentMessage

TOKEN = "push-token-0123456789abcdef"
PHONE = "+8613812345678"
KEYS = Keys("otp:")
TAG = phone_tag(derive_key(TEST_SECRET, "phone-tag"), PHONE)


@dataclass
class LiveService:
    """The service on a socket: its base URL, its store and its app."""

    url: str
    store: Store
    app: Flask

    @property
    def status_url(self) -> str:
        return f"{self.url}/callbacks/huawei/{TOKEN}/status"

    @property
    def uplink_url(self) -> str:
        return f"{self.url}/callbacks/huawei/{TOKEN}/uplink"

    def send_code(self, phone: str = PHONE) -> requests.Response:
        return requests.post(f"{self.url}/send-code", json={"phone": phone}, timeout=10)


@pytest.fixture
def live_service(
    store: Store,
    huawei_sim: HuaweiSimulator,
    settings_factory: Callable[..., Settings],
    fake_clock: FakeClock,
) -> Iterator[LiveService]:
    """The service listening on loopback; stopped (server and gateway) even on failure."""
    apps: list[Flask] = []

    def dispatch(environ: dict[str, Any], start_response: Any) -> Any:
        return apps[0](environ, start_response)

    # The port must be known before the settings: the statusCallback URL names it.
    server = make_server("127.0.0.1", 0, dispatch, threaded=True)
    url = f"http://127.0.0.1:{server.server_port}"
    settings = settings_factory(
        **huawei_sim.settings_overrides(public_url=url), callback_token=TOKEN
    )
    gateway = HuaweiSmsGateway.from_settings(settings)
    apps.append(create_app(settings, store=store, gateway=gateway, clock=fake_clock))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield LiveService(url, store, apps[0])
    finally:
        server.shutdown()
        thread.join(timeout=5)
        server.server_close()
        gateway.close()


def test_a_sent_codes_report_reaches_the_path_form_url(
    live_service: LiveService, huawei_sim: HuaweiSimulator, fake_clock: FakeClock
) -> None:
    assert live_service.send_code().status_code == 202
    [message] = huawei_sim.messages
    assert message.status_callback == live_service.status_url
    assert huawei_sim.push_status_report(message) == 200
    assert huawei_sim.push_status_report(message) == 200  # redelivered: still fine
    state = delivery_state(live_service.store, KEYS, message.sms_msg_id, now=fake_clock.now())
    assert state is not None and state.delivered


def fake_sent(store: Store, count: int, now: float) -> list[SentMessage]:
    """Messages the platform accepted earlier (recorded as our send pipeline records them)."""
    messages = []
    for i in range(count):
        message_id = f"batch-{i:03d}_{i}"
        record_sent(store, KEYS, message_id=message_id, phone_tag=TAG, purpose="login", now=now)
        messages.append(
            SentMessage(
                message_id, SENDER, PHONE, "t", ["1234"], None, None, None, "2026-01-01T00:00:00Z"
            )
        )
    return messages


def test_batch_reports_arrive_in_pushes_of_fifty(
    live_service: LiveService, huawei_sim: HuaweiSimulator, fake_clock: FakeClock
) -> None:
    assert live_service.send_code().status_code == 202
    messages = [*huawei_sim.messages, *fake_sent(live_service.store, 59, fake_clock.now())]
    assert huawei_sim.push_batch_reports(live_service.status_url, messages) == [200, 200]
    now = fake_clock.now()
    for message in messages:
        state = delivery_state(live_service.store, KEYS, message.sms_msg_id, now=now)
        assert state is not None and state.delivered, message.sms_msg_id


def test_a_blacklist_status_in_a_batch_suppresses_the_number(
    live_service: LiveService, huawei_sim: HuaweiSimulator, fake_clock: FakeClock
) -> None:
    messages = fake_sent(live_service.store, 2, fake_clock.now())
    assert huawei_sim.push_batch_reports(live_service.status_url, messages, "TDBLACK") == [200]
    refused = live_service.send_code()
    assert refused.json()["code"] == "number_opted_out"


@pytest.mark.parametrize("encoding", ["percent", "raw", "gb18030", "latin1"])
def test_an_optout_reply_in_any_encoding_suppresses_the_number(
    encoding: str, live_service: LiveService, huawei_sim: HuaweiSimulator
) -> None:
    status = huawei_sim.push_uplink(
        live_service.uplink_url, "8613812345678", "退订", encoding=encoding
    )
    assert status == 200
    refused = live_service.send_code()
    assert (refused.status_code, refused.json()["code"]) == (403, "number_opted_out")
    assert huawei_sim.messages == []


def test_an_unreadable_uplink_is_refused_over_http(
    live_service: LiveService, huawei_sim: HuaweiSimulator
) -> None:
    body = b"smsMsgId=up-x&from=8613812345678&to=1069&body=\xff\xfe"
    assert huawei_sim.push(live_service.uplink_url, body, FORM) == 400
    assert live_service.send_code().status_code == 202
