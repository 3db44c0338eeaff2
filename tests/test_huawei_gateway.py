"""HuaweiSmsGateway against the loopback simulator: wire format, every error path, retries."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from otp_service.errors import ConfigurationError, ProviderRejected, ProviderUnavailable
from otp_service.settings import Settings
from otp_service.sms import gateway_from_settings
from otp_service.sms._wsse import format_created, password_digest, wsse_headers
from otp_service.sms.base import SmsMessage
from otp_service.sms.huawei import PROVIDER_CODES, HuaweiSmsGateway
from tests.huawei_sim import (
    APP_KEY,
    APP_SECRET,
    INACTIVE_TEMPLATE_ID,
    INTERNATIONAL_SENDER,
    SENDER,
    SIGNATURE,
    TEMPLATE_ID,
    UNIVERSAL_TEMPLATE_ID,
    Fault,
    HuaweiSimulator,
)

PHONE = "+8613812345678"
MASKED = "+86138****5678"
CODE = "012345"

# Every code of reference §3.1-§3.3 with its documented class: P → rejected, T → unavailable,
# A → rejected unless the account state clears by itself (arrears, volume limits).
DOCUMENTED = {
    **{c: "rejected" for c in ["E000000", "E000001", "E000002", "E000003", "E000004"]},
    **{c: "rejected" for c in ["E000005", "E000006", "E000007", "E000008", "E000020"]},
    **{c: "rejected" for c in ["E000021", "E000022", "E000023", "E000024", "E000025"]},
    **{c: "rejected" for c in ["E000026", "E000027", "E000040", "E000041", "E000042"]},
    **{c: "rejected" for c in ["E000043", "E000044", "E000045", "E000101", "E000102"]},
    **{c: "rejected" for c in ["E000103", "E000104", "E000105", "E000106", "E000109"]},
    **{c: "rejected" for c in ["E000110", "E000111", "E000503", "E000510", "E000620"]},
    "E000632": "rejected",
    "E000112": "unavailable",
    "E000623": "unavailable",
    "E000630": "unavailable",
    "E200015": "unavailable",
    **{c: "rejected" for c in ["E200018", "E200019", "E200020", "E200021", "E200022"]},
    **{c: "rejected" for c in ["E200023", "E200025", "E200026", "E200027", "E200028"]},
    **{c: "rejected" for c in ["E200029", "E200030", "E200031", "E200032", "E200033"]},
    "E200034": "unavailable",
    "E200035": "rejected",
    "E200036": "rejected",
    "E200038": "unavailable",
    "MSGSMS.0001": "unavailable",
    **{c: "rejected" for c in ["MSGSMS.0002", "MSGSMS.0003", "MSGSMS.0009", "MSGSMS.0076"]},
}
ERROR_CLASS = {"rejected": ProviderRejected, "unavailable": ProviderUnavailable}


def message(to: str = PHONE, code: str = CODE) -> SmsMessage:
    return SmsMessage(
        to=to, code=code, text=f"code {code}", purpose="login", template_params=(code,)
    )


@pytest.fixture
def gateway_for(
    settings_factory: Callable[..., Settings],
) -> Iterator[Callable[..., HuaweiSmsGateway]]:
    """Gateways pointed at a simulator; every session they open is closed at teardown."""
    made: list[HuaweiSmsGateway] = []

    def make(
        sim: HuaweiSimulator, settings: dict[str, Any] | None = None, **kw: Any
    ) -> HuaweiSmsGateway:
        values = sim.settings_overrides(
            public_url="https://otp.example.com", callback_token="cb-token"
        )
        values.update(settings or {})
        gateway = HuaweiSmsGateway.from_settings(settings_factory(**values), **kw)
        made.append(gateway)
        return gateway

    try:
        yield make
    finally:
        for gateway in made:
            gateway.close()


# -- WSSE ------------------------------------------------------------------------------------


def test_digest_matches_hand_computed_vector() -> None:
    # sha256("66C9…ED1F" "2018-02-12T15:30:20Z" "c8ba…ef1d") computed with coreutils sha256sum,
    # then its 64-char lowercase hex string Base64-encoded with coreutils base64.
    digest = password_digest(
        "66C92B11FF8A425FB8D4CCFE0ED9ED1F",
        "2018-02-12T15:30:20Z",
        "c8ba3e0ad0254c79b5a3dc3bb2f6ef1d",
    )
    assert digest == (
        "N2E1Njg1ZTI2NWNlYzE2ZWJiMzMxYWIwNmMzNzU2ZWYyOTkxMmQ2YTk4MTU0ODAwZjMwYWQwMDA4MmRhMTI1OA=="
    )
    assert len(digest) == 88
    assert base64.b64decode(digest).decode() == (
        "7a5685e265cec16ebb331ab06c3756ef29912d6a98154800f30ad00082da1258"
    )


def test_wsse_headers_are_exactly_as_documented() -> None:
    headers = wsse_headers(
        "myAppKey",
        "c8ba3e0ad0254c79b5a3dc3bb2f6ef1d",
        nonce="66C92B11FF8A425FB8D4CCFE0ED9ED1F",
        now=1518449420.9,
    )
    assert headers == {
        "Authorization": 'WSSE realm="SDP",profile="UsernameToken",type="Appkey"',
        "X-WSSE": (
            'UsernameToken Username="myAppKey",'
            'PasswordDigest="N2E1Njg1ZTI2NWNlYzE2ZWJiMzMxYWIwNmMzNzU2ZWYyOTkxMmQ2YTk4MTU0ODAwZjMwYWQwMDA4MmRhMTI1OA==",'
            'Nonce="66C92B11FF8A425FB8D4CCFE0ED9ED1F",Created="2018-02-12T15:30:20Z"'
        ),
    }


def test_created_is_utc_whatever_the_local_zone() -> None:
    assert format_created(0) == "1970-01-01T00:00:00Z"


@pytest.mark.parametrize("nonce", ["", "has-dash", "x" * 129, "空"])
def test_wsse_refuses_nonce_outside_the_documented_alphabet(nonce: str) -> None:
    with pytest.raises(ValueError, match="nonce"):
        wsse_headers("key", "secret", nonce=nonce, now=0)


def test_wsse_refuses_app_key_that_would_break_the_header() -> None:
    with pytest.raises(ValueError, match="App Key"):
        wsse_headers('ke"y', "secret", nonce="abc", now=0)


# -- the request on the wire ---------------------------------------------------------------------


def test_send_is_recorded_with_the_documented_fields(
    huawei_sim: HuaweiSimulator, gateway_for: Callable[..., HuaweiSmsGateway]
) -> None:
    result = gateway_for(huawei_sim).send(message())

    [sent] = huawei_sim.messages
    assert result.provider == "huawei"
    assert result.message_id == sent.sms_msg_id
    assert (sent.sender, sent.to, sent.template_id) == (SENDER, PHONE, TEMPLATE_ID)
    assert sent.params == [CODE]  # a string: the leading zero survives
    assert huawei_sim.last_code(PHONE) == CODE
    assert sent.signature is None  # not a universal template
    # The token rides in the path by default: it survives a platform that drops the query.
    assert sent.status_callback == "https://otp.example.com/callbacks/huawei/cb-token/status"


def test_form_encodes_template_paras_as_a_json_array_of_strings(
    huawei_sim: HuaweiSimulator, gateway_for: Callable[..., HuaweiSmsGateway]
) -> None:
    form = gateway_for(huawei_sim).form(message(code="002569"))
    assert form["templateParas"] == '["002569"]'
    assert json.loads(form["templateParas"]) == ["002569"]


def test_status_callback_carries_the_token_unchanged(
    huawei_sim: HuaweiSimulator, gateway_for: Callable[..., HuaweiSmsGateway]
) -> None:
    # Settings admit only URL-safe tokens, so the same text works typed raw into the console.
    gateway = gateway_for(huawei_sim, {"callback_token": "a-b.c_d~e"})
    assert gateway.form(message())["statusCallback"].endswith("/a-b.c_d~e/status")


def test_query_form_status_callback_on_request(
    huawei_sim: HuaweiSimulator, gateway_for: Callable[..., HuaweiSmsGateway]
) -> None:
    gateway = gateway_for(huawei_sim, {"callback_url_form": "query"})
    assert gateway.form(message())["statusCallback"] == (
        "https://otp.example.com/callbacks/huawei/status?token=cb-token"
    )


def test_no_status_callback_without_public_url(
    huawei_sim: HuaweiSimulator, gateway_for: Callable[..., HuaweiSmsGateway]
) -> None:
    gateway = gateway_for(huawei_sim, {"public_url": None, "callback_token": None})
    assert "statusCallback" not in gateway.form(message())


def test_signature_is_sent_for_a_universal_template(
    huawei_sim: HuaweiSimulator, gateway_for: Callable[..., HuaweiSmsGateway]
) -> None:
    gateway = gateway_for(
        huawei_sim, {"huawei_template_id": UNIVERSAL_TEMPLATE_ID, "huawei_signature": SIGNATURE}
    )
    gateway.send(message())
    assert huawei_sim.messages[0].signature == SIGNATURE


def test_universal_template_without_signature_is_rejected(
    huawei_sim: HuaweiSimulator, gateway_for: Callable[..., HuaweiSmsGateway]
) -> None:
    gateway = gateway_for(huawei_sim, {"huawei_template_id": UNIVERSAL_TEMPLATE_ID})
    with pytest.raises(ProviderRejected) as caught:
        gateway.send(message())
    assert caught.value.provider_code == "E000503"
    assert huawei_sim.messages == []


def test_signature_is_never_sent_outside_mainland_china(
    huawei_sim: HuaweiSimulator, gateway_for: Callable[..., HuaweiSmsGateway]
) -> None:
    domestic = gateway_for(huawei_sim, {"huawei_signature": SIGNATURE})
    international = gateway_for(
        huawei_sim, {"huawei_signature": SIGNATURE, "huawei_sender": INTERNATIONAL_SENDER}
    )
    assert "signature" not in domestic.form(message(to="+447700900123"))
    assert "signature" not in international.form(message())
    assert domestic.form(message())["signature"] == SIGNATURE


# -- provider codes ----------------------------------------------------------------------------


def test_every_documented_code_has_a_mapping() -> None:
    for code, kind in DOCUMENTED.items():
        if code.startswith("MSGSMS."):
            # Management codes never reach the send path (huawei_manage.py reads them); one
            # that did would follow the HTTP-status default, which the next test checks.
            assert code not in PROVIDER_CODES
            continue
        assert PROVIDER_CODES[code].kind == kind, code


@pytest.mark.parametrize("code", sorted(DOCUMENTED))
def test_each_documented_code_becomes_the_documented_error(
    code: str, huawei_sim: HuaweiSimulator, gateway_for: Callable[..., HuaweiSmsGateway]
) -> None:
    per_number = code.startswith("E2")
    huawei_sim.inject(Fault(status=code) if per_number else Fault(code=code))

    with pytest.raises(ERROR_CLASS[DOCUMENTED[code]]) as caught:
        gateway_for(huawei_sim).send(message())

    assert caught.value.provider_code == code
    assert caught.value.extras["provider_code"] == code
    assert huawei_sim.received == 1
    assert huawei_sim.last_code(PHONE) is None


def test_whole_request_failure_reports_the_numbers_own_status(
    huawei_sim: HuaweiSimulator, gateway_for: Callable[..., HuaweiSmsGateway]
) -> None:
    huawei_sim.inject(Fault(code="E000510", status="E200015"))
    with pytest.raises(ProviderUnavailable) as caught:
        gateway_for(huawei_sim).send(message())
    assert caught.value.provider_code == "E200015"


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
def test_http_5xx_and_429_without_a_code_are_transient(
    status: int, huawei_sim: HuaweiSimulator, gateway_for: Callable[..., HuaweiSmsGateway]
) -> None:
    huawei_sim.inject(Fault(http_status=status, body=b"<html>busy</html>"))
    with pytest.raises(ProviderUnavailable) as caught:
        gateway_for(huawei_sim).send(message())
    assert caught.value.http_status == status
    assert huawei_sim.received == 1


def test_http_404_without_a_code_is_a_configuration_problem(
    huawei_sim: HuaweiSimulator, gateway_for: Callable[..., HuaweiSmsGateway]
) -> None:
    huawei_sim.inject(Fault(http_status=404))
    with pytest.raises(ProviderRejected) as caught:
        gateway_for(huawei_sim).send(message())
    assert caught.value.http_status == 404


def test_unknown_code_follows_the_http_status(
    huawei_sim: HuaweiSimulator, gateway_for: Callable[..., HuaweiSmsGateway]
) -> None:
    gateway = gateway_for(huawei_sim)
    huawei_sim.inject(
        Fault(http_status=503, body=b'{"code":"E999999","description":"?"}'),
        Fault(http_status=400, body=b'{"code":"E999998","description":"?"}'),
    )
    with pytest.raises(ProviderUnavailable):
        gateway.send(message())
    with pytest.raises(ProviderRejected):
        gateway.send(message())


def test_unreadable_success_is_unavailable_and_not_retried(
    huawei_sim: HuaweiSimulator, gateway_for: Callable[..., HuaweiSmsGateway]
) -> None:
    huawei_sim.inject(Fault(body=b"not json"))
    with pytest.raises(ProviderUnavailable):
        gateway_for(huawei_sim).send(message())
    assert huawei_sim.received == 1


# -- the simulator's own validation, reached through the real gateway ----------------------------


def test_wrong_secret_gives_password_digest_invalid(
    huawei_sim: HuaweiSimulator, gateway_for: Callable[..., HuaweiSmsGateway]
) -> None:
    gateway = gateway_for(huawei_sim, {"huawei_app_secret": "not-the-secret"})
    with pytest.raises(ProviderRejected) as caught:
        gateway.send(message())
    assert caught.value.provider_code == "E000105"
    assert huawei_sim.messages == []


def test_wrong_app_key_gives_app_key_invalid(
    huawei_sim: HuaweiSimulator, gateway_for: Callable[..., HuaweiSmsGateway]
) -> None:
    with pytest.raises(ProviderRejected) as caught:
        gateway_for(huawei_sim, {"huawei_app_key": "otherKey"}).send(message())
    assert caught.value.provider_code == "E000102"


def test_stale_created_gives_time_out_limit(
    huawei_sim: HuaweiSimulator, gateway_for: Callable[..., HuaweiSmsGateway]
) -> None:
    class SlowClock:
        def now(self) -> float:
            return huawei_sim.clock() - 24 * 3600 - 1

    with pytest.raises(ProviderRejected) as caught:
        gateway_for(huawei_sim, clock=SlowClock()).send(message())
    assert caught.value.provider_code == "E000110"


def test_reused_nonce_is_refused(
    huawei_sim: HuaweiSimulator, gateway_for: Callable[..., HuaweiSmsGateway]
) -> None:
    gateway = gateway_for(huawei_sim, nonce_factory=lambda: "SameNonceEveryTime")
    gateway.send(message())
    with pytest.raises(ProviderRejected) as caught:
        gateway.send(message())
    assert caught.value.provider_code == "E000101"
    assert len(huawei_sim.messages) == 1


def test_each_request_gets_a_fresh_nonce(
    huawei_sim: HuaweiSimulator, gateway_for: Callable[..., HuaweiSmsGateway]
) -> None:
    gateway = gateway_for(huawei_sim)
    for _ in range(3):
        gateway.send(message())
    assert len(huawei_sim.messages) == 3


@pytest.mark.parametrize(
    ("settings", "msg", "code"),
    [
        pytest.param(
            {"huawei_template_id": "unknown-template"}, message(), "E200030", id="unknown-template"
        ),
        pytest.param(
            {"huawei_template_id": INACTIVE_TEMPLATE_ID}, message(), "E200030", id="deactivated"
        ),
        pytest.param(
            {"huawei_template_id": "x" * 33}, message(), "E000503", id="template-id-too-long"
        ),
        pytest.param({}, message(code="123456789"), "E200028", id="code-too-long"),
        pytest.param({}, message(code="12.456"), "E200028", id="code-bad-charset"),
        pytest.param({}, message(code="12'456"), "E200028", id="code-quote"),
        pytest.param({}, message(to="+86 138"), "E000503", id="to-not-digits"),
        pytest.param({}, message(to="+0123"), "E000503", id="to-invalid-number"),
    ],
)
def test_simulator_validates_parameters_as_documented(
    settings: dict[str, Any],
    msg: SmsMessage,
    code: str,
    huawei_sim: HuaweiSimulator,
    gateway_for: Callable[..., HuaweiSmsGateway],
) -> None:
    with pytest.raises(ProviderRejected) as caught:
        gateway_for(huawei_sim, settings).send(msg)
    assert caught.value.provider_code == code
    assert huawei_sim.messages == []


def test_two_variable_params_are_rejected_by_a_one_variable_template(
    huawei_sim: HuaweiSimulator, gateway_for: Callable[..., HuaweiSmsGateway]
) -> None:
    msg = SmsMessage(to=PHONE, code=CODE, text="", purpose="login", template_params=(CODE, "5"))
    with pytest.raises(ProviderRejected) as caught:
        gateway_for(huawei_sim).send(msg)
    assert caught.value.provider_code == "E200028"


def test_unknown_channel_is_accepted_but_never_delivered(
    huawei_sim: HuaweiSimulator, gateway_for: Callable[..., HuaweiSmsGateway]
) -> None:
    gateway_for(huawei_sim, {"huawei_sender": "csms999999999"}).send(message())
    assert huawei_sim.messages[0].final_status == "E200018"
    assert huawei_sim.last_code(PHONE) is None


def _raw_post(sim: HuaweiSimulator, headers: dict[str, str], body: str = "") -> dict[str, Any]:
    with requests.Session() as session:
        response = session.post(
            sim.url + "/sms/batchSendSms/v1", data=body, headers=headers, timeout=5
        )
    payload: dict[str, Any] = response.json()
    payload["http_status"] = response.status_code
    return payload


def _signed(sim: HuaweiSimulator, **changes: str) -> dict[str, str]:
    headers = wsse_headers(APP_KEY, APP_SECRET, nonce=changes.pop("nonce", "n1"), now=sim.clock())
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    headers.update(changes)
    return headers


@pytest.mark.parametrize(
    ("change", "code"),
    [
        pytest.param({"Authorization": ""}, "E000001", id="no-authorization"),
        pytest.param({"Authorization": 'Basic realm="SDP"'}, "E000008", id="not-wsse"),
        pytest.param(
            {"Authorization": 'WSSE profile="UsernameToken",type="Appkey"'},
            "E000002",
            id="no-realm",
        ),
        pytest.param(
            {"Authorization": 'WSSE realm="X",profile="UsernameToken",type="Appkey"'},
            "E000004",
            id="bad-realm",
        ),
        pytest.param(
            {"Authorization": 'WSSE realm="SDP",profile="UsernameToken"'}, "E000007", id="no-type"
        ),
        pytest.param({"X-WSSE": ""}, "E000020", id="no-x-wsse"),
        pytest.param({"X-WSSE": 'Token Username="a"'}, "E000026", id="no-usernametoken"),
        pytest.param({"Content-Type": "application/json"}, "E000040", id="json-body"),
    ],
)
def test_simulator_checks_auth_headers(
    change: dict[str, str], code: str, huawei_sim: HuaweiSimulator
) -> None:
    assert _raw_post(huawei_sim, _signed(huawei_sim, **change))["code"] == code


@pytest.mark.parametrize("form", ["hex", "raw"])
def test_simulator_accepts_both_digest_forms_of_huawei_demos(
    form: str, huawei_sim: HuaweiSimulator
) -> None:
    # Python demo and the page's sample: Base64 of the hex string (88 characters); Go, Node.js
    # and Java demos: Base64 of the 32 raw bytes (44). The platform takes both demos' requests.
    created = format_created(huawei_sim.clock())
    digest = hashlib.sha256(f"n2{created}{APP_SECRET}".encode())
    value = digest.hexdigest().encode() if form == "hex" else digest.digest()
    encoded = base64.b64encode(value).decode()
    assert len(encoded) == (88 if form == "hex" else 44)
    wsse = (
        f'UsernameToken Username="{APP_KEY}",PasswordDigest="{encoded}",Nonce="n2",'
        f'Created="{created}"'
    )
    body = (
        f"from={SENDER}&to=%2B8613812345678&templateId={TEMPLATE_ID}&templateParas=%5B%221234%22%5D"
    )
    payload = _raw_post(huawei_sim, _signed(huawei_sim, **{"X-WSSE": wsse}), body)
    assert (payload["code"], payload["http_status"]) == ("000000", 200)


def test_simulator_refuses_a_wrong_digest_in_either_form(huawei_sim: HuaweiSimulator) -> None:
    created = format_created(huawei_sim.clock())
    wrong = hashlib.sha256(f"n2{created}not-the-secret".encode())
    for value in (wrong.hexdigest().encode(), wrong.digest()):
        nonce, encoded = f"n{len(value)}", base64.b64encode(value).decode()
        wsse = (
            f'UsernameToken Username="{APP_KEY}",PasswordDigest="{encoded}",'
            f'Nonce="{nonce}",Created="{created}"'
        )
        payload = _raw_post(huawei_sim, _signed(huawei_sim, **{"X-WSSE": wsse}))
        assert (payload["code"], payload["http_status"]) == ("E000105", 401)


def test_simulator_refuses_local_time_created(huawei_sim: HuaweiSimulator) -> None:
    bad = (
        f'UsernameToken Username="{APP_KEY}",PasswordDigest="x",Nonce="n3",'
        'Created="2018-02-12 15:30:20"'
    )
    assert _raw_post(huawei_sim, _signed(huawei_sim, **{"X-WSSE": bad}))["code"] == "E000025"


def test_simulator_refuses_unquoted_template_paras(huawei_sim: HuaweiSimulator) -> None:
    body = f"from={SENDER}&to=%2B8613812345678&templateId={TEMPLATE_ID}&templateParas=%5B12345%5D"
    first = _raw_post(huawei_sim, _signed(huawei_sim, nonce="n4"), body)
    assert first["code"] == "000000" and first["result"][0]["status"] == "E200028"
    broken = body.replace("%5B12345%5D", "%5B%2712345%27%5D")  # ['12345'] is not JSON
    assert _raw_post(huawei_sim, _signed(huawei_sim, nonce="n5"), broken)["code"] == "E000000"


# -- transport: one retry only when nothing was sent -------------------------------------------


def test_refused_connection_is_retried_once(
    huawei_sim_factory: Callable[..., HuaweiSimulator],
    gateway_for: Callable[..., HuaweiSmsGateway],
    caplog: pytest.LogCaptureFixture,
) -> None:
    sim = huawei_sim_factory()
    sim.bind()  # port reserved, not listening: the first connect is refused
    pauses: list[float] = []

    def come_up(seconds: float) -> None:
        pauses.append(seconds)
        sim.listen()

    with caplog.at_level(logging.WARNING, logger="otp_service.sms.huawei"):
        result = gateway_for(sim, sleep=come_up).send(message())

    assert result.message_id == sim.messages[0].sms_msg_id
    assert len(pauses) == 1
    assert sim.received == 1
    assert sum("retrying once" in r.getMessage() for r in caplog.records) == 1


def test_refused_twice_gives_up_after_one_retry(
    huawei_sim_factory: Callable[..., HuaweiSimulator],
    gateway_for: Callable[..., HuaweiSmsGateway],
) -> None:
    sim = huawei_sim_factory()
    sim.bind()
    pauses: list[float] = []
    with pytest.raises(ProviderUnavailable) as caught:
        gateway_for(sim, sleep=pauses.append).send(message())
    assert caught.value.reason == "connection_refused"
    assert caught.value.retryable  # nothing was written: an idempotent retry may send
    assert len(pauses) == 1


def test_read_timeout_is_never_retried(
    huawei_sim: HuaweiSimulator, gateway_for: Callable[..., HuaweiSmsGateway]
) -> None:
    huawei_sim.inject(Fault(delay=0.8))
    gateway = gateway_for(huawei_sim, {"huawei_timeout": 0.3})

    with pytest.raises(ProviderUnavailable) as caught:
        gateway.send(message())

    assert caught.value.reason == "timeout"
    assert not caught.value.retryable
    assert huawei_sim.received == 1
    huawei_sim.wait_idle()
    # The platform got it and may well deliver it: that is exactly why there is no retry.
    assert huawei_sim.received == 1
    assert len(huawei_sim.messages) == 1


def test_reset_after_connecting_is_not_retried(
    huawei_sim: HuaweiSimulator, gateway_for: Callable[..., HuaweiSmsGateway]
) -> None:
    huawei_sim.inject(Fault(reset=True))
    pauses: list[float] = []
    with pytest.raises(ProviderUnavailable) as caught:
        gateway_for(huawei_sim, sleep=pauses.append).send(message())
    assert caught.value.reason == "connection"
    assert huawei_sim.received == 1
    assert pauses == []


def test_latency_within_the_timeout_is_fine(
    huawei_sim: HuaweiSimulator, gateway_for: Callable[..., HuaweiSmsGateway]
) -> None:
    huawei_sim.latency = 0.1
    gateway_for(huawei_sim, {"huawei_timeout": 2.0}).send(message())
    assert huawei_sim.last_code(PHONE) == CODE


def test_connections_are_pooled(
    huawei_sim: HuaweiSimulator, gateway_for: Callable[..., HuaweiSmsGateway]
) -> None:
    gateway = gateway_for(huawei_sim)
    for _ in range(3):
        gateway.send(message())
    assert len(huawei_sim._server.open_connections) == 1


# -- logging and configuration -----------------------------------------------------------------


def test_logs_carry_msg_id_and_masked_number_never_code_number_or_secret(
    huawei_sim: HuaweiSimulator,
    gateway_for: Callable[..., HuaweiSmsGateway],
    caplog: pytest.LogCaptureFixture,
) -> None:
    gateway = gateway_for(huawei_sim)
    huawei_sim.inject(Fault(), Fault(code="E000105"))
    with caplog.at_level(logging.DEBUG):
        gateway.send(message(code="987654"))
        with pytest.raises(ProviderRejected):
            gateway.send(message(code="987654"))
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert huawei_sim.messages[0].sms_msg_id in text
    assert MASKED in text
    for secret in ("987654", PHONE, APP_SECRET, "8613812345678"):
        assert secret not in text


def test_factory_builds_the_huawei_gateway(
    huawei_sim: HuaweiSimulator, settings_factory: Callable[..., Settings]
) -> None:
    gateway = gateway_from_settings(settings_factory(**huawei_sim.settings_overrides()))
    assert isinstance(gateway, HuaweiSmsGateway)
    try:
        assert gateway.url == huawei_sim.url + "/sms/batchSendSms/v1"
        assert gateway.timeout == 2.0
    finally:
        gateway.close()


@pytest.mark.parametrize("app_key", ["my key", 'a"b', "a,b", "a\\b"])
def test_an_app_key_the_header_cannot_carry_is_refused_at_start(
    huawei_sim: HuaweiSimulator, settings_factory: Callable[..., Settings], app_key: str
) -> None:
    settings = settings_factory(**huawei_sim.settings_overrides(huawei_app_key=app_key))
    with pytest.raises(ConfigurationError, match="^OTP_HUAWEI_APP_KEY:"):
        HuaweiSmsGateway.from_settings(settings)


def test_code_longer_than_a_verify_variable_is_refused_at_start(
    huawei_sim: HuaweiSimulator, settings_factory: Callable[..., Settings]
) -> None:
    settings = settings_factory(**huawei_sim.settings_overrides(code_length=9))
    with pytest.raises(ConfigurationError, match="OTP_CODE_LENGTH"):
        HuaweiSmsGateway.from_settings(settings)


def test_public_url_without_callback_token_is_refused_at_start(
    huawei_sim: HuaweiSimulator, settings_factory: Callable[..., Settings]
) -> None:
    settings = settings_factory(**huawei_sim.settings_overrides(public_url="https://x.example"))
    with pytest.raises(ConfigurationError, match="OTP_CALLBACK_TOKEN"):
        HuaweiSmsGateway.from_settings(settings)


def test_docs_error_table_matches_the_mapping() -> None:
    text = (Path(__file__).resolve().parent.parent / "docs" / "huawei.md").read_text()
    rows = {line.split("`")[1]: line for line in text.splitlines() if line.startswith("| `E")}
    rows.update({line.split("`")[1]: line for line in text.splitlines() if "| `MSGSMS." in line})
    shown = {"rejected": "`provider_rejected`", "unavailable": "`provider_unavailable`"}
    for code, reading in PROVIDER_CODES.items():
        assert code in rows, f"docs/huawei.md lacks {code}"
        assert shown.get(reading.kind, "ignored") in rows[code], code
