"""Provider callbacks: parsing, auth, idempotency, opt-out — as functions and over HTTP."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import make_server

from otp_service import callbacks
from otp_service.api_callbacks import callbacks_bp
from otp_service.app import create_app
from otp_service.callbacks import (
    DELIVERY_TTL,
    StatusReport,
    clear_optout,
    delivery_state,
    is_optout_request,
    normalize_number,
    optout_status,
    parse_form,
    parse_status_report,
    parse_uplink,
    record_sent,
    record_status,
    record_uplink,
    repair_body,
)
from otp_service.core.codes import derive_key
from otp_service.core.keys import Keys, phone_tag
from otp_service.errors import (
    CallbackUnauthorized,
    ConfigurationError,
    InvalidPhone,
    InvalidRequest,
    NotFound,
    StoreUnavailable,
)
from otp_service.log_redaction import RedactTokens, redact_tokens
from otp_service.settings import Settings
from otp_service.sms import ConsoleGateway
from otp_service.sms.huawei import HuaweiSmsGateway
from otp_service.store import MemoryStore, Store
from tests.conftest import TEST_SECRET, FakeClock
from tests.huawei_sim import Fault, HuaweiSimulator

TOKEN = "cb-token-0123456789"
PHONE = "+8613812345678"
MSG_ID = "4b4b34e7-1a9e-42ac-b309-d10997148905_85496076"
STATUS_PATH = "/callbacks/huawei/status"
UPLINK_PATH = "/callbacks/huawei/uplink"
KEYS = Keys("otp:")
TAG = phone_tag(derive_key(TEST_SECRET, "phone-tag"), PHONE)
TWO_YEARS = 2 * 365 * 86400


def report(status: str = "DELIVRD", **fields: str) -> StatusReport:
    form = {"smsMsgId": MSG_ID, "status": status, **fields}
    return parse_status_report(form)


# -- parsing -----------------------------------------------------------------------------------


def test_reference_example_report_parses() -> None:
    body = (
        "sequence=1&total=1&orgCode=000&updateTime=2018-04-13T06%3A31%3A46Z&source=2"
        f"&smsMsgId={MSG_ID}&status=DELIVRD"
    )
    parsed = parse_status_report(parse_form(body.encode()))
    assert parsed == StatusReport(
        sms_msg_id=MSG_ID,
        status="DELIVRD",
        sequence=1,
        total=1,
        source="2",
        update_time="2018-04-13T06:31:46Z",
        org_code="000",
    )
    assert parsed.delivered


@pytest.mark.parametrize(
    "form",
    [
        pytest.param({"status": "DELIVRD"}, id="no-id"),
        pytest.param({"smsMsgId": MSG_ID}, id="no-status"),
        pytest.param({"smsMsgId": "a{b}", "status": "DELIVRD"}, id="id-braces"),
        pytest.param({"smsMsgId": "x" * 51, "status": "DELIVRD"}, id="id-too-long"),
        pytest.param({"smsMsgId": MSG_ID, "status": "DEL IV"}, id="status-space"),
        pytest.param(
            {"smsMsgId": MSG_ID, "status": "DELIVRD", "sequence": "3", "total": "2"}, id="seq>total"
        ),
        pytest.param({"smsMsgId": MSG_ID, "status": "DELIVRD", "total": "x"}, id="total-nan"),
        pytest.param({"smsMsgId": MSG_ID, "status": "DELIVRD", "source": "9"}, id="source"),
        pytest.param(
            {"smsMsgId": MSG_ID, "status": "DELIVRD", "updateTime": "yesterday"}, id="time"
        ),
    ],
)
def test_malformed_reports_are_invalid(form: dict[str, str]) -> None:
    with pytest.raises(InvalidRequest):
        parse_status_report(form)


def test_form_field_given_twice_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="more than once"):
        parse_form(b"status=DELIVRD&status=UNDELIV")


def test_form_falls_back_to_gb18030() -> None:
    body = "body=" + "".join(f"%{b:02X}" for b in "退订".encode("gb18030"))
    assert parse_form(body.encode())["body"] == "退订"


def test_form_accepts_raw_utf8_bytes() -> None:
    assert parse_form("body=退订&from=%2B86138".encode()) == {"body": "退订", "from": "+86138"}


def test_form_accepts_raw_and_percent_encoded_bytes_mixed() -> None:
    assert parse_form("body=退%E8%AE%A2+ok".encode())["body"] == "退订 ok"


def test_form_value_no_encoding_can_read_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="Unreadable text in: body"):
        parse_form(b"body=%FF%FE&smsMsgId=up-1")


def test_uplink_parses_and_repairs_latin1_mojibake() -> None:
    garbled = "退订".encode().decode("latin-1")
    parsed = parse_uplink(
        {"smsMsgId": "up1", "from": "8613812345678", "to": "1069", "body": garbled}
    )
    assert parsed.body == "退订"
    assert parsed.sender == "8613812345678"


def test_repair_keeps_good_text() -> None:
    assert repair_body("退订") == "退订"
    assert repair_body("STOP") == "STOP"


@pytest.mark.parametrize(
    "body",
    [
        "TD",
        "td",
        "Td",
        "ＴＤ",
        "T",
        "t",
        "退订",
        " 退订 ",
        "【退订】",
        "STOP",
        "stop.",
        "Ｓｔｏｐ",
        "UNSUBSCRIBE",
        "unsubscribe!",
        "\tSTOP\n",
        "R",
        "ｒ",
        "退訂",
    ],
)
def test_opt_out_words(body: str) -> None:
    assert is_optout_request(body)


@pytest.mark.parametrize(
    "body", ["", "stop it", "TDD", "hello", "退订吧", "don't stop", "TT", "RR", "123456"]
)
def test_not_opt_out(body: str) -> None:
    assert not is_optout_request(body)


@pytest.mark.parametrize("raw", [PHONE, "8613812345678", "13812345678", "008613812345678"])
def test_uplink_numbers_normalise_to_the_send_pipelines_e164(raw: str) -> None:
    assert normalize_number(raw, "CN") == PHONE


def test_invalid_uplink_number() -> None:
    with pytest.raises(InvalidPhone):
        normalize_number("12", "CN")


@pytest.mark.parametrize("token", [None, "", "wrong", TOKEN + "x"])
def test_wrong_tokens_are_refused(
    token: str | None, settings_factory: Callable[..., Settings]
) -> None:
    with pytest.raises(CallbackUnauthorized):
        callbacks.authenticate(settings_factory(callback_token=TOKEN), token)


def test_callbacks_are_off_without_a_configured_token(
    settings_factory: Callable[..., Settings],
) -> None:
    with pytest.raises(CallbackUnauthorized):
        callbacks.authenticate(settings_factory(), "anything")


# -- state, on every store ---------------------------------------------------------------------


def sent(store: Store, now: float) -> None:
    record_sent(store, KEYS, message_id=MSG_ID, phone_tag=TAG, purpose="login", now=now)


def test_unknown_message_is_refused_and_nothing_stored(store: Store, fake_clock: FakeClock) -> None:
    now = fake_clock.now()
    with pytest.raises(NotFound):
        record_status(store, KEYS, report(), now=now, optout_ttl=TWO_YEARS)
    assert delivery_state(store, KEYS, MSG_ID, now=now) is None
    assert store.get(KEYS.sms_report(MSG_ID, 1, "DELIVRD"), now=now) is None


def test_report_records_delivery_with_a_ttl(store: Store, fake_clock: FakeClock) -> None:
    now = fake_clock.now()
    sent(store, now)
    outcome = record_status(
        store,
        KEYS,
        report(updateTime="2018-04-13T06:31:46Z", source="2"),
        now=now,
        optout_ttl=TWO_YEARS,
    )
    assert not outcome.duplicate
    assert outcome.purpose == "login"
    state = delivery_state(store, KEYS, MSG_ID, now=now)
    assert state is not None and state.delivered and state.status == "DELIVRD"
    assert state.updated_at == "2018-04-13T06:31:46Z"
    assert delivery_state(store, KEYS, MSG_ID, now=now + DELIVERY_TTL + 1) is None


def test_redelivered_report_changes_nothing(store: Store, fake_clock: FakeClock) -> None:
    sent(store, fake_clock.now())
    record_status(store, KEYS, report(), now=fake_clock.now(), optout_ttl=TWO_YEARS)
    first = delivery_state(store, KEYS, MSG_ID, now=fake_clock.now())
    fake_clock.advance(60)
    again = record_status(store, KEYS, report(), now=fake_clock.now(), optout_ttl=TWO_YEARS)
    assert again.duplicate
    assert delivery_state(store, KEYS, MSG_ID, now=fake_clock.now()) == first


def test_late_intermediate_report_does_not_undo_a_final_one(
    store: Store, fake_clock: FakeClock
) -> None:
    now = fake_clock.now()
    sent(store, now)
    record_status(store, KEYS, report("DELIVRD"), now=now, optout_ttl=TWO_YEARS)
    record_status(store, KEYS, report("ACCEPTD"), now=now + 1, optout_ttl=TWO_YEARS)
    state = delivery_state(store, KEYS, MSG_ID, now=now + 1)
    assert state is not None and state.status == "DELIVRD"


def test_long_message_is_delivered_when_every_segment_is(
    store: Store, fake_clock: FakeClock
) -> None:
    now = fake_clock.now()
    sent(store, now)
    record_status(store, KEYS, report(sequence="1", total="2"), now=now, optout_ttl=TWO_YEARS)
    half = delivery_state(store, KEYS, MSG_ID, now=now)
    assert half is not None and not half.delivered
    record_status(store, KEYS, report(sequence="2", total="2"), now=now, optout_ttl=TWO_YEARS)
    full = delivery_state(store, KEYS, MSG_ID, now=now)
    assert full is not None and full.delivered


def test_failed_report_is_recorded_as_failed(store: Store, fake_clock: FakeClock) -> None:
    now = fake_clock.now()
    sent(store, now)
    record_status(store, KEYS, report("UNDELIV"), now=now, optout_ttl=TWO_YEARS)
    state = delivery_state(store, KEYS, MSG_ID, now=now)
    assert state is not None and state.status == "UNDELIV" and not state.delivered
    assert store.get(KEYS.optout(TAG), now=now) is None


@pytest.mark.parametrize("status", ["BLACK", "TDBLACK", "SC:0003", "SC:0005", "SC:0016"])
def test_blacklist_report_suppresses_the_number(
    status: str, store: Store, fake_clock: FakeClock
) -> None:
    now = fake_clock.now()
    sent(store, now)
    outcome = record_status(store, KEYS, report(status), now=now, optout_ttl=TWO_YEARS)
    assert outcome.suppressed
    record = store.get(KEYS.optout(TAG), now=now)
    assert record is not None and json.loads(record)["reason"] == f"status:{status}"


def uplink(
    body: str, msg_id: str = "up-1", sender: str = "8613812345678"
) -> callbacks.UplinkMessage:
    return parse_uplink({"smsMsgId": msg_id, "from": sender, "to": "1069000", "body": body})


def test_opt_out_reply_suppresses_the_number_for_the_ttl(
    store: Store, fake_clock: FakeClock
) -> None:
    now = fake_clock.now()
    outcome = record_uplink(
        store,
        KEYS,
        uplink("ＴＤ"),
        tag_key=derive_key(TEST_SECRET, "phone-tag"),
        default_region="CN",
        now=now,
        optout_ttl=1000,
    )
    assert outcome.opted_out and outcome.e164 == PHONE
    assert store.get(KEYS.optout(TAG), now=now + 999) is not None
    assert store.get(KEYS.optout(TAG), now=now + 1001) is None


def test_other_replies_store_no_opt_out(store: Store, fake_clock: FakeClock) -> None:
    now = fake_clock.now()
    outcome = record_uplink(
        store,
        KEYS,
        uplink("thanks"),
        tag_key=derive_key(TEST_SECRET, "phone-tag"),
        default_region="CN",
        now=now,
        optout_ttl=1000,
    )
    assert not outcome.opted_out
    assert store.get(KEYS.optout(TAG), now=now) is None


def test_redelivered_uplink_is_applied_once(store: Store, fake_clock: FakeClock) -> None:
    now = fake_clock.now()
    kwargs: dict[str, Any] = {
        "tag_key": derive_key(TEST_SECRET, "phone-tag"),
        "default_region": "CN",
        "optout_ttl": 1000,
    }
    record_uplink(store, KEYS, uplink("STOP"), now=now, **kwargs)
    store.delete(KEYS.optout(TAG))  # an operator cleared it in between
    again = record_uplink(store, KEYS, uplink("STOP"), now=now + 5, **kwargs)
    assert again.duplicate and not again.opted_out
    assert store.get(KEYS.optout(TAG), now=now + 5) is None


def test_clear_and_show_opt_out(
    store: Store, fake_clock: FakeClock, settings_factory: Callable[..., Settings]
) -> None:
    settings = settings_factory()
    now = fake_clock.now()
    assert optout_status(settings, store, "138 1234 5678", now=now) is None
    callbacks.opt_out(store, KEYS, TAG, now=now, ttl=100, reason="uplink")
    assert optout_status(settings, store, PHONE, now=now) == {
        "reason": "uplink",
        "at": now,
        "until": now + 100,
    }
    assert clear_optout(settings, store, "13812345678") is True
    assert clear_optout(settings, store, PHONE) is False
    assert store.get(KEYS.optout(TAG), now=now) is None


# -- over HTTP ---------------------------------------------------------------------------------


@pytest.fixture
def app_factory(
    settings_factory: Callable[..., Settings], fake_clock: FakeClock
) -> Callable[..., Flask]:
    def make(store: Store | None = None, **settings: Any) -> Flask:
        settings.setdefault("callback_token", TOKEN)
        gateway = settings.pop("gateway", None) or ConsoleGateway()
        app = create_app(
            settings_factory(**settings),
            store=store or MemoryStore(),
            gateway=gateway,
            clock=fake_clock,
        )
        if "otp_callbacks" not in app.blueprints:  # until create_app registers it itself
            app.register_blueprint(callbacks_bp)
        return app

    return make


@pytest.fixture
def memory_store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def client(app_factory: Callable[..., Flask], memory_store: MemoryStore) -> FlaskClient:
    return app_factory(memory_store).test_client()


def post_form(
    client: FlaskClient, path: str, form: dict[str, str], token: str | None = TOKEN
) -> Any:
    query = "?" + urlencode({"token": token}) if token is not None else ""
    return client.post(
        path + query,
        data=urlencode(form),
        content_type="application/x-www-form-urlencoded",
    )


@pytest.mark.parametrize("token", [None, "wrong"])
@pytest.mark.parametrize("path", [STATUS_PATH, UPLINK_PATH])
def test_forged_callbacks_get_401_and_store_nothing(
    token: str | None, path: str, client: FlaskClient, memory_store: MemoryStore
) -> None:
    form = {"smsMsgId": MSG_ID, "status": "DELIVRD", "from": PHONE, "to": "1069", "body": "STOP"}
    response = post_form(client, path, form, token)
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["code"] == "callback_unauthorized"
    assert memory_store.keys() == []


def test_unknown_report_is_404_and_stores_nothing(
    client: FlaskClient, memory_store: MemoryStore
) -> None:
    response = post_form(client, STATUS_PATH, {"smsMsgId": MSG_ID, "status": "DELIVRD"})
    assert response.status_code == 404
    assert response.get_json()["code"] == "not_found"
    assert memory_store.keys() == []


def test_malformed_report_is_400(client: FlaskClient) -> None:
    response = post_form(client, STATUS_PATH, {"smsMsgId": MSG_ID})
    assert response.status_code == 400
    assert response.get_json()["code"] == "invalid_request"


def test_known_report_is_recorded_and_answered_with_an_empty_200(
    client: FlaskClient, memory_store: MemoryStore, fake_clock: FakeClock
) -> None:
    sent(memory_store, fake_clock.now())
    form = {"smsMsgId": MSG_ID, "status": "DELIVRD", "sequence": "1", "total": "1"}
    first = post_form(client, STATUS_PATH, form)
    again = post_form(client, STATUS_PATH, form)
    assert (first.status_code, first.data) == (200, b"")
    assert (again.status_code, again.data) == (200, b"")
    state = delivery_state(memory_store, KEYS, MSG_ID, now=fake_clock.now())
    assert state is not None and state.delivered


def test_invalid_uplink_sender_is_400_and_stores_nothing(
    client: FlaskClient, memory_store: MemoryStore
) -> None:
    form = {"smsMsgId": "up-9", "from": "12", "to": "1069", "body": "STOP"}
    assert post_form(client, UPLINK_PATH, form).status_code == 400
    assert memory_store.keys() == []


def test_stop_reply_blocks_sends_until_cleared(
    client: FlaskClient, memory_store: MemoryStore, settings_factory: Callable[..., Settings]
) -> None:
    form = {"smsMsgId": "up-1", "from": "8613812345678", "to": "1069000", "body": "退订"}
    assert post_form(client, UPLINK_PATH, form).status_code == 200

    refused = client.post("/send-code", json={"phone": PHONE})
    assert refused.status_code == 403
    assert refused.get_json()["code"] == "number_opted_out"

    assert clear_optout(settings_factory(), memory_store, PHONE)
    assert client.post("/send-code", json={"phone": PHONE}).status_code == 202


class OptOutFailsOnce(MemoryStore):
    """A store whose first opt-out write fails, as a Redis blip between two writes would."""

    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    def put_new(self, key: str, value: bytes, *, ttl: float, now: float) -> bytes | None:
        if key.endswith(":optout") and not self.failed:
            self.failed = True
            raise StoreUnavailable("blip")
        return super().put_new(key, value, ttl=ttl, now=now)


@pytest.mark.parametrize("kind", ["uplink", "status"])
def test_an_opt_out_that_failed_once_is_applied_on_redelivery(
    kind: str, app_factory: Callable[..., Flask], fake_clock: FakeClock
) -> None:
    store = OptOutFailsOnce()
    client = app_factory(store).test_client()
    if kind == "uplink":
        path, form = UPLINK_PATH, {"smsMsgId": "up-1", "from": PHONE, "to": "1069", "body": "TD"}
    else:
        sent(store, fake_clock.now())
        path, form = STATUS_PATH, {"smsMsgId": MSG_ID, "status": "TDBLACK"}
    assert post_form(client, path, form).status_code == 503
    # The provider redelivers: the opt-out must happen now, not be skipped as a duplicate.
    assert post_form(client, path, form).status_code == 200
    assert store.get(KEYS.optout(TAG), now=fake_clock.now()) is not None
    assert post_form(client, path, form).status_code == 200  # a third time: a duplicate


#: A 退订 reply in every encoding a push has been seen in (sms_05_0004 and its FAQ).
OPTOUT_BODIES = [
    pytest.param(b"body=" + urlencode({"b": "退订"})[2:].encode(), id="percent-encoded-utf8"),
    pytest.param("body=退订".encode(), id="raw-utf8"),
    pytest.param(
        b"body=" + urlencode({"b": "退订".encode().decode("latin-1")})[2:].encode(),
        id="latin1-misdecoded-percent-encoded",
    ),
    pytest.param(b"body=" + "退订".encode().decode("latin-1").encode(), id="latin1-misdecoded-raw"),
    pytest.param("body=退订".encode("gb18030"), id="raw-gb18030"),
    pytest.param(
        b"body=" + "".join(f"%{b:02X}" for b in "退订".encode("gb18030")).encode(),
        id="percent-encoded-gb18030",
    ),
]


def post_raw(client: FlaskClient, path: str, body: bytes, token: str = TOKEN) -> Any:
    return client.post(
        f"{path}?{urlencode({'token': token})}",
        data=body,
        content_type="application/x-www-form-urlencoded",
    )


@pytest.mark.parametrize("body", OPTOUT_BODIES)
def test_optout_reply_in_every_encoding_suppresses_the_number(
    body: bytes, client: FlaskClient, memory_store: MemoryStore, fake_clock: FakeClock
) -> None:
    push = b"smsMsgId=up-enc&from=8613812345678&to=1069000&" + body
    response = post_raw(client, UPLINK_PATH, push)
    assert (response.status_code, response.data) == (200, b"")
    assert memory_store.get(KEYS.optout(TAG), now=fake_clock.now()) is not None
    refused = client.post("/send-code", json={"phone": PHONE})
    assert refused.get_json()["code"] == "number_opted_out"


def test_unreadable_uplink_is_refused_and_logged_masked(
    client: FlaskClient, memory_store: MemoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    push = b"smsMsgId=up-bad&from=8613812345678&to=1069000&body=%FF%FE%FD"
    with caplog.at_level("WARNING", logger="otp_service.callbacks"):
        response = post_raw(client, UPLINK_PATH, push)
    assert response.status_code == 400
    assert response.get_json()["code"] == "invalid_request"
    assert memory_store.keys() == []
    [record] = [r for r in caplog.records if "unreadable" in r.getMessage()]
    assert "up-bad" in record.getMessage() and "+86138****5678" in record.getMessage()
    assert "8613812345678" not in caplog.text


def test_refused_uplink_sender_is_logged_masked(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    push = b"smsMsgId=up-long&from=8613812345678&to=1069000&body=" + b"x" * 200
    with caplog.at_level("WARNING", logger="otp_service.callbacks"):
        assert post_raw(client, UPLINK_PATH, push).status_code == 400
    assert "+86138****5678" in caplog.text and "8613812345678" not in caplog.text


def test_uplink_senders_without_a_country_code_are_mainland_numbers(
    app_factory: Callable[..., Flask], memory_store: MemoryStore, fake_clock: FakeClock
) -> None:
    client = app_factory(memory_store, default_region="HK").test_client()
    form = {"smsMsgId": "up-2", "from": "13812345678", "to": "1069000", "body": "退订"}
    assert post_form(client, UPLINK_PATH, form).status_code == 200
    assert memory_store.get(KEYS.optout(TAG), now=fake_clock.now()) is not None


# -- batch status reports (sms_05_0063) -------------------------------------------------------


def batch_ids(count: int) -> list[str]:
    return [f"batch-{i:03d}_{i}" for i in range(count)]


def sent_many(store: Store, ids: list[str], now: float) -> None:
    for message_id in ids:
        record_sent(store, KEYS, message_id=message_id, phone_tag=TAG, purpose="login", now=now)


def post_batch(
    client: FlaskClient, reports: object, *, path: str | None = None, raw: bytes | None = None
) -> Any:
    return client.post(
        path or f"/callbacks/huawei/{TOKEN}/status",
        data=raw if raw is not None else json.dumps({"statusReportList": reports}),
        content_type="application/json",
    )


def test_batch_reports_are_each_recorded_like_a_single_one(
    client: FlaskClient, memory_store: MemoryStore, fake_clock: FakeClock
) -> None:
    ids = batch_ids(3)
    sent_many(memory_store, ids, fake_clock.now())
    reports = [
        {"smsMsgId": ids[0], "status": "DELIVRD", "sequence": 1, "total": 1, "source": "2"},
        {"smsMsgId": ids[1], "status": "UNDELIV", "updateTime": "2018-04-13T06:31:46Z"},
        {"smsMsgId": ids[2], "status": "TDBLACK", "orgCode": "000", "statusDesc": None},
    ]
    response = post_batch(client, reports)
    assert (response.status_code, response.data) == (200, b"")
    now = fake_clock.now()
    states = [delivery_state(memory_store, KEYS, i, now=now) for i in ids]
    assert [state.status if state else None for state in states] == [
        "DELIVRD",
        "UNDELIV",
        "TDBLACK",
    ]
    assert memory_store.get(KEYS.optout(TAG), now=now) is not None  # the blacklist status
    before = sorted(memory_store.keys())
    assert post_batch(client, reports).status_code == 200  # redelivered: idempotent
    assert sorted(memory_store.keys()) == before


def test_batch_through_the_query_form_is_recorded(
    client: FlaskClient, memory_store: MemoryStore, fake_clock: FakeClock
) -> None:
    sent(memory_store, fake_clock.now())
    response = post_batch(
        client,
        [{"smsMsgId": MSG_ID, "status": "DELIVRD"}],
        path=f"{STATUS_PATH}?{urlencode({'token': TOKEN})}",
    )
    assert response.status_code == 200
    assert delivery_state(memory_store, KEYS, MSG_ID, now=fake_clock.now()) is not None


def test_batch_with_an_unknown_message_records_the_others(
    client: FlaskClient, memory_store: MemoryStore, fake_clock: FakeClock
) -> None:
    sent(memory_store, fake_clock.now())
    reports = [
        {"smsMsgId": "never-sent_1", "status": "DELIVRD"},
        {"smsMsgId": MSG_ID, "status": "DELIVRD"},
    ]
    assert post_batch(client, reports).status_code == 200
    assert delivery_state(memory_store, KEYS, MSG_ID, now=fake_clock.now()) is not None
    assert delivery_state(memory_store, KEYS, "never-sent_1", now=fake_clock.now()) is None


def test_fifty_long_reports_fit_the_batch_bound(
    client: FlaskClient, memory_store: MemoryStore, fake_clock: FakeClock
) -> None:
    ids = batch_ids(50)
    sent_many(memory_store, ids, fake_clock.now())
    reports = [{"smsMsgId": i, "status": "DELIVRD", "statusDesc": "d" * 500} for i in ids]
    body = json.dumps({"statusReportList": reports}).encode()
    assert len(body) > 16 * 1024  # past every other route's bound
    assert post_batch(client, None, raw=body).status_code == 200
    assert all(delivery_state(memory_store, KEYS, i, now=fake_clock.now()) for i in ids)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(
            json.dumps(
                {"statusReportList": [{"smsMsgId": i, "status": "DELIVRD"} for i in batch_ids(51)]}
            ).encode(),
            id="51-reports",
        ),
        pytest.param(b'{"statusReportList": []}', id="empty-list"),
        pytest.param(b'{"statusReportList": {"smsMsgId": "a"}}', id="not-a-list"),
        pytest.param(b'[{"smsMsgId": "a", "status": "DELIVRD"}]', id="bare-list"),
        pytest.param(b"smsMsgId=a&status=DELIVRD", id="form-as-json"),
        pytest.param(b"\xff\xfe", id="not-utf8"),
        pytest.param(b"[" * 100_00 + b"]" * 100_00, id="deep-nesting"),
        pytest.param(
            b'{"statusReportList": [{"smsMsgId": "batch-000_0", "status": "DELIVRD"},'
            b' {"smsMsgId": "batch-001_1"}]}',
            id="one-report-malformed",
        ),
        pytest.param(
            b'{"statusReportList": [{"smsMsgId": "batch-000_0", "status": "DELIVRD",'
            b' "status": "UNDELIV"}]}',
            id="repeated-name",
        ),
        pytest.param(
            b'{"statusReportList": [{"smsMsgId": "batch-000_0", "status": ["DELIVRD"]}]}',
            id="value-not-a-string",
        ),
        pytest.param(
            b'{"statusReportList": [{"smsMsgId": "batch-000_0", "status": "DELIVRD",'
            b' "total": true}]}',
            id="boolean",
        ),
    ],
)
def test_malformed_batches_are_400_and_apply_nothing(
    raw: bytes, client: FlaskClient, memory_store: MemoryStore, fake_clock: FakeClock
) -> None:
    ids = batch_ids(2)
    sent_many(memory_store, ids, fake_clock.now())
    before = sorted(memory_store.keys())
    response = post_batch(client, None, raw=raw)
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["code"] == "invalid_request"
    assert sorted(memory_store.keys()) == before


def test_batch_past_64_kib_is_413(client: FlaskClient) -> None:
    body = json.dumps({"statusReportList": [{"smsMsgId": "a", "status": "x" * 70_000}]})
    response = post_batch(client, None, raw=body.encode())
    assert response.status_code == 413
    assert response.get_json()["code"] == "payload_too_large"


def test_batch_with_a_wrong_token_is_401(client: FlaskClient, memory_store: MemoryStore) -> None:
    response = post_batch(
        client, [{"smsMsgId": MSG_ID, "status": "DELIVRD"}], path="/callbacks/huawei/bad/status"
    )
    assert response.status_code == 401
    assert memory_store.keys() == []


# -- the path form, source networks, logs -----------------------------------------------------


def test_path_form_report_is_recorded(
    client: FlaskClient, memory_store: MemoryStore, fake_clock: FakeClock
) -> None:
    sent(memory_store, fake_clock.now())
    response = client.post(
        f"/callbacks/huawei/{TOKEN}/status",
        data=urlencode({"smsMsgId": MSG_ID, "status": "DELIVRD"}),
        content_type="application/x-www-form-urlencoded",
    )
    assert (response.status_code, response.data) == (200, b"")
    state = delivery_state(memory_store, KEYS, MSG_ID, now=fake_clock.now())
    assert state is not None and state.delivered


def test_path_form_uplink_suppresses_the_number(
    client: FlaskClient, memory_store: MemoryStore, fake_clock: FakeClock
) -> None:
    push = "smsMsgId=up-p&from=8613812345678&to=1069000&body=退订".encode()
    response = client.post(
        f"/callbacks/huawei/{TOKEN}/uplink",
        data=push,
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 200
    assert memory_store.get(KEYS.optout(TAG), now=fake_clock.now()) is not None


@pytest.mark.parametrize("kind", ["status", "uplink"])
def test_path_form_with_a_wrong_token_is_401_even_with_a_good_query_token(
    kind: str, client: FlaskClient, memory_store: MemoryStore
) -> None:
    form = {"smsMsgId": MSG_ID, "status": "DELIVRD", "from": PHONE, "to": "1069", "body": "TD"}
    response = client.post(
        f"/callbacks/huawei/wrong-token/{kind}?{urlencode({'token': TOKEN})}",
        data=urlencode(form),
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 401
    assert memory_store.keys() == []


HUAWEI_PUSH_NETWORKS = "117.78.29.0/24,124.70.27.0/24,124.71.67.0/24,123.60.96.0/24,119.8.109.0/24"
UPLINK_FORM = {"smsMsgId": "up-n", "from": PHONE, "to": "1069000", "body": "TD"}


@pytest.mark.parametrize("path", [UPLINK_PATH, f"/callbacks/huawei/{TOKEN}/uplink"])
def test_callback_from_outside_the_allowed_networks_is_403(
    path: str, app_factory: Callable[..., Flask], memory_store: MemoryStore
) -> None:
    client = app_factory(
        memory_store, callback_allowed_networks=tuple(HUAWEI_PUSH_NETWORKS.split(","))
    ).test_client()
    # The test client's peer is 127.0.0.1; an X-Forwarded-For from an untrusted peer is ignored.
    response = client.post(
        f"{path}?{urlencode({'token': TOKEN})}",
        data=urlencode(UPLINK_FORM),
        content_type="application/x-www-form-urlencoded",
        headers={"X-Forwarded-For": "117.78.29.10"},
    )
    assert response.status_code == 403
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["code"] == "callback_forbidden"
    assert memory_store.keys() == []


def test_callback_through_a_trusted_proxy_from_huawei_is_accepted(
    app_factory: Callable[..., Flask], memory_store: MemoryStore, fake_clock: FakeClock
) -> None:
    client = app_factory(
        memory_store,
        callback_allowed_networks=tuple(HUAWEI_PUSH_NETWORKS.split(",")),
        trusted_proxies=("127.0.0.1/32",),
    ).test_client()
    response = client.post(
        f"/callbacks/huawei/{TOKEN}/uplink",
        data=urlencode(UPLINK_FORM),
        content_type="application/x-www-form-urlencoded",
        headers={"X-Forwarded-For": "203.0.113.9, 117.78.29.10"},
    )
    assert response.status_code == 200
    assert memory_store.get(KEYS.optout(TAG), now=fake_clock.now()) is not None
    forged = client.post(
        f"/callbacks/huawei/{TOKEN}/uplink",
        data=urlencode({**UPLINK_FORM, "smsMsgId": "up-forged"}),
        content_type="application/x-www-form-urlencoded",
        headers={"X-Forwarded-For": "117.78.29.10, 203.0.113.9"},
    )
    assert forged.status_code == 403


def test_allowed_networks_setting_refuses_a_non_cidr() -> None:
    with pytest.raises(ConfigurationError, match="OTP_CALLBACK_ALLOWED_NETWORKS"):
        Settings.from_env({"OTP_CALLBACK_ALLOWED_NETWORKS": "117.78.29.0/24,huawei"})


def test_url_form_setting_refuses_other_words() -> None:
    with pytest.raises(ConfigurationError, match="OTP_CALLBACK_URL_FORM"):
        Settings.from_env({"OTP_CALLBACK_URL_FORM": "header"})


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (f"/callbacks/huawei/{TOKEN}/status", "/callbacks/huawei/***/status"),
        (f"/api/callbacks/huawei/{TOKEN}/uplink", "/api/callbacks/huawei/***/uplink"),
        (f"/callbacks/huawei/{TOKEN}/statuses", "/callbacks/huawei/***/statuses"),
        (f'"POST /callbacks/huawei/status?token={TOKEN} HTTP/1.1" 200', None),
        ("/callbacks/huawei/status", "/callbacks/huawei/status"),
    ],
)
def test_tokens_are_redacted_from_request_lines(line: str, expected: str | None) -> None:
    redacted = redact_tokens(line)
    assert TOKEN not in redacted
    if expected is not None:
        assert redacted == expected


def test_the_dev_server_logs_no_path_token(
    app_factory: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    logger = logging.getLogger("werkzeug")
    redaction = RedactTokens()
    logger.addFilter(redaction)
    server = make_server("127.0.0.1", 0, app_factory(), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        with caplog.at_level("INFO", logger="werkzeug"):
            for path in (f"/callbacks/huawei/{TOKEN}/uplink", f"{UPLINK_PATH}?token={TOKEN}"):
                response = requests.post(base + path, data=UPLINK_FORM, timeout=5)
                assert response.status_code == 200
    finally:
        server.shutdown()
        thread.join(timeout=5)
        server.server_close()
        logger.removeFilter(redaction)
    assert "/callbacks/huawei/***/uplink" in caplog.text
    assert TOKEN not in caplog.text


# -- end to end through the simulator ----------------------------------------------------------


@pytest.fixture
def huawei_app(
    app_factory: Callable[..., Flask], huawei_sim: HuaweiSimulator, memory_store: MemoryStore
) -> Iterator[Flask]:
    overrides = huawei_sim.settings_overrides(public_url="https://otp.example.com")
    settings = Settings(env="testing", secret_key=TEST_SECRET, callback_token=TOKEN, **overrides)
    gateway = HuaweiSmsGateway.from_settings(settings)
    try:
        yield app_factory(memory_store, gateway=gateway, **overrides)
    finally:
        gateway.close()


def test_send_code_then_verify_with_the_code_the_simulator_received(
    huawei_app: Flask, huawei_sim: HuaweiSimulator
) -> None:
    client = huawei_app.test_client()
    sent_response = client.post("/send-code", json={"phone": PHONE})
    assert sent_response.status_code == 202, sent_response.get_json()
    assert huawei_sim.received == 1
    code = huawei_sim.last_code(PHONE)
    assert code is not None

    verified = client.post("/verify", json={"phone": PHONE, "code": code})
    assert verified.status_code == 200
    assert verified.get_json()["status"] == "approved"


def test_provider_rejection_reaches_the_caller_as_a_problem(
    huawei_app: Flask, huawei_sim: HuaweiSimulator
) -> None:
    huawei_sim.inject(Fault(code="E000623"))
    response = huawei_app.test_client().post("/send-code", json={"phone": PHONE})
    body = response.get_json()
    assert response.status_code == 502
    assert (body["code"], body["provider_code"]) == ("provider_unavailable", "E000623")
    assert huawei_sim.received == 1


@pytest.mark.parametrize("form", ["path", "query"])
def test_delivery_report_for_a_sent_code_is_recorded(
    form: str,
    app_factory: Callable[..., Flask],
    huawei_sim: HuaweiSimulator,
    memory_store: MemoryStore,
    fake_clock: FakeClock,
) -> None:
    overrides = huawei_sim.settings_overrides(
        public_url="https://otp.example.com", callback_url_form=form
    )
    settings = Settings(env="testing", secret_key=TEST_SECRET, callback_token=TOKEN, **overrides)
    gateway = HuaweiSmsGateway.from_settings(settings)
    client = app_factory(memory_store, gateway=gateway, **overrides).test_client()
    try:
        assert client.post("/send-code", json={"phone": PHONE}).status_code == 202
    finally:
        gateway.close()
    [message] = huawei_sim.messages
    assert message.status_callback is not None
    callback = urlsplit(message.status_callback)
    assert (callback.query == "") == (form == "path")
    response = client.post(
        f"{callback.path}?{callback.query}",
        data=urlencode(huawei_sim.status_report(message)),
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 200
    state = delivery_state(memory_store, KEYS, message.sms_msg_id, now=fake_clock.now())
    assert state is not None and state.delivered
