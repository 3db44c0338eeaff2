"""The proof-of-work gate over HTTP, on both stores: issue, solve, spend once, price by risk."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from altcha import v2 as altcha
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from otp_service.app import create_app
from otp_service.core import pow as pow_core
from otp_service.service import OtpService
from otp_service.sms.console import ConsoleGateway
from otp_service.store import Store
from tests.conftest import FakeClock, RecordingRenderer

PHONE = "+8613812345678"
OTHER_PHONE = "+8613812345679"
#: The cheapest work the settings allow, so solving in Python keeps the suite fast.
CHEAP = {"pow_cost": 1000, "pow_levels": (3, 30, 300)}


@dataclass
class Harness:
    client: FlaskClient
    gateway: ConsoleGateway
    renderer: RecordingRenderer
    service: OtpService

    def challenge(self, ip: str = "127.0.0.1", **body: Any) -> dict[str, Any]:
        if body:
            response = self.client.post("/pow", json=body, environ_base={"REMOTE_ADDR": ip})
            assert response.status_code == 201, response.json
        else:
            response = self.client.get("/pow", environ_base={"REMOTE_ADDR": ip})
            assert response.status_code == 200, response.json
        assert response.json is not None
        return response.json

    def solved(self, ip: str = "127.0.0.1", **body: Any) -> str:
        return solve(self.challenge(ip, **body))

    def send(self, phone: str = PHONE, ip: str = "127.0.0.1", **fields: Any) -> TestResponse:
        return self.client.post(
            "/send-code", json={"phone": phone, **fields}, environ_base={"REMOTE_ADDR": ip}
        )


def solve(challenge: dict[str, Any]) -> str:
    """What a browser sends: the ALTCHA payload of a solved challenge."""
    parsed = altcha.Challenge.from_dict(challenge)
    solution = altcha.solve_challenge(parsed, timeout=30)
    assert solution is not None
    return altcha.Payload(parsed, solution).to_base64()


def level_of(challenge: dict[str, Any]) -> int:
    level = challenge["parameters"]["data"]["level"]
    assert isinstance(level, int)
    return level


def problem(response: TestResponse) -> dict[str, Any]:
    assert response.json is not None
    assert response.mimetype == "application/problem+json"
    return response.json


MakeHarness = Callable[..., Harness]


@pytest.fixture
def make_harness(
    store: Store, fake_clock: FakeClock, settings_factory: Callable[..., Any]
) -> MakeHarness:
    """An app on the parametrized store asking for a proof of work on every send."""

    def make(**overrides: Any) -> Harness:
        settings = settings_factory(
            **{"captcha_mode": "always", "captcha_kind": "pow", **CHEAP, **overrides}
        )
        gateway = ConsoleGateway()
        renderer = RecordingRenderer()
        app = create_app(
            settings, store=store, gateway=gateway, clock=fake_clock, captcha_renderer=renderer
        )
        return Harness(app.test_client(), gateway, renderer, app.extensions["otp_service"])

    return make


def adaptive(**overrides: Any) -> dict[str, Any]:
    """Adaptive mode with every signal off, so a test turns on only the ones it is about."""
    settings: dict[str, Any] = {
        "captcha_mode": "adaptive",
        "captcha_adaptive_ip": "",
        "captcha_adaptive_subnet": "",
        "captcha_adaptive_ip_failures": "",
        "captcha_adaptive_subnet_failures": "",
        "captcha_adaptive_number_failures": "",
        "captcha_adaptive_new_range": False,
        "captcha_adaptive_global": 0.0,
    }
    settings.update(overrides)
    return settings


# -- the challenge ------------------------------------------------------------------------------


def test_a_challenge_is_what_the_altcha_widget_expects(make_harness: MakeHarness) -> None:
    h = make_harness()
    response = h.client.get("/pow")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json
    assert body is not None
    assert set(body) == {"parameters", "signature"}
    parameters = body["parameters"]
    assert parameters["algorithm"] == "PBKDF2/SHA-256"
    assert parameters["cost"] == 1000
    assert parameters["data"] == {"level": 0, "expires": int(h.service.clock.now()) + 120}
    # Deterministic mode: the key signature lets the server check a solution with one HMAC.
    assert parameters["keySignature"]


def test_challenges_count_against_the_address_like_captchas(make_harness: MakeHarness) -> None:
    h = make_harness(limits_captcha_ip="2/minute")
    assert h.client.get("/pow").status_code == 200
    assert h.client.post("/captcha").status_code == 201
    refused = h.client.get("/pow")
    assert refused.status_code == 429
    assert problem(refused)["limit"] == "captcha_ip"


def test_a_challenge_for_a_refused_number_is_refused(make_harness: MakeHarness) -> None:
    h = make_harness()
    response = h.client.post("/pow", json={"phone": "12"})
    assert response.status_code == 400
    assert problem(response)["code"] == "invalid_phone"


# -- spending -----------------------------------------------------------------------------------


def test_a_solved_challenge_sends_once(make_harness: MakeHarness) -> None:
    h = make_harness()
    payload = h.solved()
    assert h.send(altcha=payload).status_code == 202
    replay = h.send(OTHER_PHONE, altcha=payload)
    assert replay.status_code == 400
    assert problem(replay)["code"] == "captcha_invalid"
    assert problem(replay)["captcha_kind"] == "pow"
    assert len(h.gateway.sent) == 1


def test_a_send_without_work_says_what_to_bring(make_harness: MakeHarness) -> None:
    h = make_harness()
    body = problem(h.send())
    assert body["code"] == "captcha_required"
    assert body["captcha_kinds"] == ["pow"]
    assert body["pow_level"] == 0
    assert "POST /pow" in body["detail"]


def _tampered(payload: str, change: Callable[[dict[str, Any]], None]) -> str:
    data = json.loads(base64.b64decode(payload))
    change(data)
    return base64.b64encode(json.dumps(data).encode()).decode()


def _wrong_key(data: dict[str, Any]) -> None:
    data["solution"]["derivedKey"] = "00" * 32


def _raised_level(data: dict[str, Any]) -> None:
    data["challenge"]["parameters"]["data"]["level"] = 2


def _longer_life(data: dict[str, Any]) -> None:
    data["challenge"]["parameters"]["data"]["expires"] += 3600


def _unsigned(data: dict[str, Any]) -> None:
    del data["challenge"]["signature"]


@pytest.mark.parametrize("change", [_wrong_key, _raised_level, _longer_life, _unsigned])
def test_a_tampered_solution_is_refused_and_sends_nothing(
    make_harness: MakeHarness, change: Callable[[dict[str, Any]], None]
) -> None:
    h = make_harness()
    response = h.send(altcha=_tampered(h.solved(), change))
    assert problem(response)["code"] == "captcha_invalid"
    assert h.gateway.sent == []


@pytest.mark.parametrize(
    "payload",
    ["", "not base64!", base64.b64encode(b"[1, 2]").decode(), base64.b64encode(b"{}").decode()],
)
def test_garbage_is_refused_as_a_wrong_proof_never_a_500(
    make_harness: MakeHarness, payload: str
) -> None:
    h = make_harness()
    response = h.send(altcha=payload)
    assert response.status_code == 400
    assert problem(response)["code"] in {"captcha_invalid", "captcha_required"}


def test_an_oversized_payload_is_an_invalid_request(make_harness: MakeHarness) -> None:
    h = make_harness()
    response = h.send(altcha="A" * (pow_core.MAX_PAYLOAD_CHARS + 1))
    assert problem(response)["code"] == "invalid_request"
    assert problem(response)["field"] == "altcha"


def test_a_challenge_expires_by_the_injected_clock(
    make_harness: MakeHarness, fake_clock: FakeClock
) -> None:
    h = make_harness()
    payload = h.solved()
    fake_clock.advance(121)
    assert problem(h.send(altcha=payload))["code"] == "captcha_invalid"


def test_solutions_survive_a_key_rotation(
    make_harness: MakeHarness, store: Store, fake_clock: FakeClock, settings_factory: Any
) -> None:
    h = make_harness()
    payload = h.solved()
    rotated = create_app(
        settings_factory(
            captcha_mode="always",
            captcha_kind="pow",
            secret_key="a-brand-new-secret-key-0123456789-abcdefghij",
            secret_key_fallbacks=(h.service.settings.secret_key,),
            **CHEAP,
        ),
        store=store,
        gateway=h.gateway,
        clock=fake_clock,
    ).test_client()
    assert rotated.post("/send-code", json={"phone": PHONE, "altcha": payload}).status_code == 202


def test_parallel_replays_of_one_solution_pass_exactly_once(make_harness: MakeHarness) -> None:
    h = make_harness()
    payload = h.solved()
    workers = 20
    barrier = threading.Barrier(workers)
    statuses: list[int] = []
    lock = threading.Lock()

    def replay(index: int) -> None:
        client = h.client.application.test_client()
        barrier.wait(timeout=10)
        response = client.post(
            "/send-code",
            json={"phone": f"+861381234{index:04d}", "altcha": payload},
            environ_base={"REMOTE_ADDR": f"203.0.113.{index}"},
        )
        with lock:
            statuses.append(response.status_code)

    threads = [threading.Thread(target=replay, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    assert sorted(statuses) == [202] + [400] * (workers - 1)
    assert len(h.gateway.sent) == 1


# -- difficulty follows risk --------------------------------------------------------------------


def test_difficulty_rises_when_a_signal_trips_and_falls_back_when_it_clears(
    make_harness: MakeHarness, fake_clock: FakeClock
) -> None:
    h = make_harness(**adaptive(captcha_adaptive_ip="1/hour"))
    assert h.send().status_code == 202  # the free send: nothing tripped, nothing asked
    assert level_of(h.challenge()) == 1
    easy = solve(h.challenge("198.51.100.7"))  # another address: level 0
    harder = problem(h.send(OTHER_PHONE, altcha=easy))
    assert harder["code"] == "captcha_required"
    assert harder["pow_level"] == 1
    assert h.send(OTHER_PHONE, altcha=h.solved()).status_code == 202
    fake_clock.advance(3601)
    assert level_of(h.challenge()) == 0


def test_each_tripped_signal_raises_the_level_up_to_the_hardest(
    make_harness: MakeHarness,
) -> None:
    h = make_harness(
        **adaptive(captcha_adaptive_ip="1/hour", captcha_adaptive_subnet="1/hour"),
    )
    assert h.send().status_code == 202
    assert level_of(h.challenge()) == 2
    assert level_of(h.challenge("127.0.0.9")) == 1  # same /24, another address


def test_a_challenge_asked_with_the_number_is_priced_by_its_signals(
    make_harness: MakeHarness, fake_clock: FakeClock
) -> None:
    h = make_harness(**adaptive(captcha_adaptive_number_failures="1/hour"))
    assert h.send().status_code == 202
    wrong = h.client.post("/verify", json={"phone": PHONE, "code": "000000"})
    assert wrong.status_code == 400
    assert level_of(h.challenge()) == 0  # the address alone looks clean
    assert level_of(h.challenge(phone=PHONE)) == 1
    fake_clock.advance(61)  # past the resend cooldown
    assert h.send(altcha=h.solved(phone=PHONE)).status_code == 202


def test_auto_adds_a_proof_of_work_to_the_image_once_a_signal_trips(
    make_harness: MakeHarness, fake_clock: FakeClock
) -> None:
    """The default kind: a trained reader solves most images, so under risk work is asked too."""
    h = make_harness(captcha_kind="auto", **adaptive(captcha_adaptive_ip="1/hour"))
    assert h.send().status_code == 202  # nothing tripped: nothing asked
    captcha_id = _new_image_challenge(h)
    image = {"captcha_id": captcha_id, "captcha_answer": h.renderer.last_answer}
    closed = problem(h.send(OTHER_PHONE, **image))
    assert (closed["code"], closed["captcha_kinds"], closed["pow_level"]) == (
        "captcha_required",
        ["image", "pow"],
        1,
    )
    # The refusal consumed neither the image nor any work: both together now pass.
    assert h.send(OTHER_PHONE, altcha=h.solved(), **image).status_code == 202
    fake_clock.advance(3601)
    assert h.send("+8613812345670").status_code == 202  # the signal cleared: free again


def test_auto_asks_for_the_image_alone_in_always_mode(make_harness: MakeHarness) -> None:
    h = make_harness(captcha_kind="auto")
    assert problem(h.send())["captcha_kinds"] == ["image"]
    captcha_id = _new_image_challenge(h)
    answer = {"captcha_id": captcha_id, "captcha_answer": h.renderer.last_answer}
    assert h.send(**answer).status_code == 202


def test_adaptive_without_a_tripped_signal_asks_for_nothing(make_harness: MakeHarness) -> None:
    h = make_harness(**adaptive(captcha_adaptive_ip="5/hour"))
    assert h.send().status_code == 202
    assert h.gateway.sent


# -- image and proof of work together ----------------------------------------------------------


def test_both_kinds_need_both_and_a_wrong_answer_spends_no_work(
    make_harness: MakeHarness,
) -> None:
    h = make_harness(captcha_kind="both")
    payload = h.solved()

    def new_captcha() -> tuple[str, str]:
        response = h.client.post("/captcha")
        assert response.json is not None
        return response.json["captcha_id"], h.renderer.last_answer

    captcha_id, answer = new_captcha()
    image_only = {"captcha_id": captcha_id, "captcha_answer": answer}
    for fields in ({"altcha": payload}, image_only):
        body = problem(h.send(**fields))
        assert body["code"] == "captcha_required"
        assert body["captcha_kinds"] == ["image", "pow"]
    captcha_id, _ = new_captcha()
    wrong = problem(h.send(altcha=payload, captcha_id=captcha_id, captcha_answer="WRONG"))
    assert wrong["code"] == "captcha_invalid"
    captcha_id, answer = new_captcha()
    sent = h.send(altcha=payload, captcha_id=captcha_id, captcha_answer=answer)
    assert sent.status_code == 202, sent.json
    assert len(h.gateway.sent) == 1


def test_image_kind_ignores_no_work_and_asks_for_an_image(make_harness: MakeHarness) -> None:
    h = make_harness(captcha_kind="image")
    body = problem(h.send(altcha=h.solved()))
    assert body["code"] == "captcha_required"
    assert body["captcha_kinds"] == ["image"]
    assert "pow_level" not in body


# -- the audio's proof of work ------------------------------------------------------------------


def _new_image_challenge(h: Harness, ip: str = "127.0.0.1") -> str:
    created = h.client.post("/captcha", environ_base={"REMOTE_ADDR": ip})
    assert created.status_code == 201
    assert created.json is not None
    return str(created.json["captcha_id"])


def test_audio_is_spoken_only_after_a_proof_of_work_spent_once(make_harness: MakeHarness) -> None:
    """Recording matching reads the audio, so it must cost what a proof of work costs."""
    h = make_harness(captcha_kind="image")
    first, second = _new_image_challenge(h), _new_image_challenge(h)
    refused = problem(h.client.get(f"/captcha/{first}.wav"))
    assert (refused["code"], refused["captcha_kinds"], refused["pow_level"]) == (
        "captcha_required",
        ["pow"],
        0,
    )
    work = h.solved()
    spoken = h.client.get(f"/captcha/{first}.wav", query_string={"altcha": work})
    assert spoken.status_code == 200 and spoken.mimetype == "audio/wav"
    # Listening again to the same challenge needs no new work: it is already spoken.
    assert h.client.get(f"/captcha/{first}.wav").data == spoken.data
    # The same work does not buy a second challenge's audio.
    replayed = problem(h.client.get(f"/captcha/{second}.wav", query_string={"altcha": work}))
    assert (replayed["code"], replayed["captcha_kind"]) == ("captcha_invalid", "pow")
    garbage = problem(h.client.get(f"/captcha/{second}.wav", query_string={"altcha": "x"}))
    assert garbage["code"] == "captcha_invalid"


def test_audio_work_follows_the_addresses_risk(make_harness: MakeHarness) -> None:
    h = make_harness(captcha_kind="image", **adaptive(captcha_adaptive_ip="1/hour"))
    assert h.send().status_code == 202  # trips the address's send signal
    challenge = _new_image_challenge(h)
    easy = solve(h.challenge("198.51.100.7"))
    harder = problem(h.client.get(f"/captcha/{challenge}.wav", query_string={"altcha": easy}))
    assert (harder["code"], harder["pow_level"]) == ("captcha_required", 1)
    ok = h.client.get(f"/captcha/{challenge}.wav", query_string={"altcha": h.solved()})
    assert ok.status_code == 200


def test_audio_without_work_when_the_operator_turns_it_off(make_harness: MakeHarness) -> None:
    h = make_harness(captcha_kind="image", captcha_audio_pow=False)
    assert h.client.get(f"/captcha/{_new_image_challenge(h)}.wav").status_code == 200


def test_an_oversized_audio_payload_is_an_invalid_request(make_harness: MakeHarness) -> None:
    h = make_harness(captcha_kind="image")
    too_long = "A" * (pow_core.MAX_PAYLOAD_CHARS + 1)
    response = h.client.get(
        f"/captcha/{_new_image_challenge(h)}.wav", query_string={"altcha": too_long}
    )
    assert problem(response)["code"] == "invalid_request"
