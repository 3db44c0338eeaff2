"""The captcha gate over HTTP, on both stores: challenge, image, audio, answer, modes, limits."""

from __future__ import annotations

import base64
import io
import threading
import wave
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from otp_service.app import create_app
from otp_service.captcha_render import AudioRenderer, ImageRenderer
from otp_service.errors import CaptchaInvalid, ConfigurationError
from otp_service.service import OtpService
from otp_service.settings import Settings
from otp_service.sms.console import ConsoleGateway
from otp_service.store import Store
from tests.conftest import FakeClock, RecordingRenderer

PHONE = "+8613812345678"
OTHER_PHONE = "+8613812345679"
#: Another number range (a number without its last four digits differs).
FAR_PHONE = "+8613998765432"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class AudibleRecorder(RecordingRenderer):
    """Real images and real audio, remembering texts and counting audio renders."""

    def __init__(self) -> None:
        super().__init__(ImageRenderer())
        self.audio_renders = 0
        self._audio = AudioRenderer()

    def render_audio(self, text: str) -> bytes:
        self.audio_renders += 1
        return self._audio.render_audio(text)


@dataclass
class Harness:
    client: FlaskClient
    gateway: ConsoleGateway
    renderer: RecordingRenderer
    service: OtpService

    def new_captcha(self, ip: str = "127.0.0.1") -> tuple[str, str]:
        """A fresh challenge's id and (read from the test renderer) its answer."""
        response = self.client.post("/captcha", environ_base={"REMOTE_ADDR": ip})
        assert response.status_code == 201, response.json
        assert response.json is not None
        return response.json["captcha_id"], self.renderer.last_answer

    def send(self, phone: str = PHONE, ip: str = "127.0.0.1", **fields: Any) -> TestResponse:
        return self.client.post(
            "/send-code", json={"phone": phone, **fields}, environ_base={"REMOTE_ADDR": ip}
        )

    def send_solved(self, phone: str = PHONE, ip: str = "127.0.0.1") -> TestResponse:
        captcha_id, answer = self.new_captcha(ip)
        return self.send(phone, ip, captcha_id=captcha_id, captcha_answer=answer)

    def verify(self, phone: str, code: str, ip: str = "127.0.0.1") -> TestResponse:
        return self.client.post(
            "/verify", json={"phone": phone, "code": code}, environ_base={"REMOTE_ADDR": ip}
        )


MakeHarness = Callable[..., Harness]


@pytest.fixture
def make_harness(
    store: Store, fake_clock: FakeClock, settings_factory: Callable[..., Any]
) -> MakeHarness:
    """An app on the parametrized store asking for the image alone, ``always`` unless
    overridden. Proofs of work (``auto`` adds one under risk, the audio's own) are tested in
    test_pow; these tests are about the image and the audio."""

    def make(renderer: RecordingRenderer | None = None, **overrides: Any) -> Harness:
        settings = settings_factory(
            **{
                "captcha_mode": "always",
                "captcha_kind": "image",
                "captcha_audio_pow": False,
                **overrides,
            }
        )
        gateway = ConsoleGateway()
        renderer = renderer or RecordingRenderer()
        app = create_app(
            settings, store=store, gateway=gateway, clock=fake_clock, captcha_renderer=renderer
        )
        return Harness(app.test_client(), gateway, renderer, app.extensions["otp_service"])

    return make


def adaptive(**overrides: Any) -> dict[str, Any]:
    """Adaptive mode with every signal off, so a test turns on only the one it is about."""
    settings: dict[str, Any] = {
        "captcha_mode": "adaptive",
        "captcha_adaptive_ip": "",
        "captcha_adaptive_subnet": "",
        "captcha_adaptive_ipv6_site": "",
        "captcha_adaptive_ip_failures": "",
        "captcha_adaptive_subnet_failures": "",
        "captcha_adaptive_number_failures": "",
        "captcha_adaptive_new_range": False,
        "captcha_adaptive_global": 0.0,
    }
    settings.update(overrides)
    return settings


def full_width_lower(text: str) -> str:
    """``AB3`` → ``ａｂ３``: what an IME in full-width mode types."""
    return "".join(chr(ord(ch) + 0xFEE0) for ch in text.lower())


def code(response: TestResponse) -> str | None:
    assert response.json is not None
    return response.json.get("code")


# -- challenges --------------------------------------------------------------------------------


def test_new_challenge_has_image_audio_link_and_expiry(make_harness: MakeHarness) -> None:
    h = make_harness(AudibleRecorder())
    response = h.client.post("/captcha")
    assert response.status_code == 201
    body = response.json
    assert body is not None
    captcha_id = body["captcha_id"]
    prefix = "data:image/png;base64,"
    assert body["image"].startswith(prefix)
    image = base64.b64decode(body["image"][len(prefix) :])
    assert image.startswith(PNG_MAGIC)
    assert body["image_url"] == f"/captcha/{captcha_id}.png"
    assert body["audio_url"] == f"/captcha/{captcha_id}.wav"
    assert body["expires_in"] == 120
    png = h.client.get(body["image_url"])
    assert png.status_code == 200 and png.mimetype == "image/png"
    assert png.data == image
    assert png.headers["Cache-Control"] == "no-store"


def test_answer_is_never_in_a_response_or_the_store_in_clear(
    make_harness: MakeHarness, store: Store
) -> None:
    h = make_harness()
    response = h.client.post("/captcha")
    answer = h.renderer.last_answer
    assert answer.encode() not in response.data
    raw = store.get(h.service.keys.captcha(response.json["captcha_id"]), now=0)  # type: ignore[index]
    assert raw is not None and answer.encode() not in raw


def test_audio_is_a_valid_wav_of_the_same_challenge_rendered_once(
    make_harness: MakeHarness,
) -> None:
    h = make_harness(AudibleRecorder())
    captcha_id, answer = h.new_captcha()
    first = h.client.get(f"/captcha/{captcha_id}.wav")
    assert first.status_code == 200 and first.mimetype == "audio/wav"
    with wave.open(io.BytesIO(first.data)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 1, 8000)
        # Three beeps, then each character with pauses of at least a second: several seconds.
        assert wav.getnframes() / wav.getframerate() > 5
    second = h.client.get(f"/captcha/{captcha_id}.wav")
    assert second.data == first.data
    assert h.renderer.audio_renders == 1
    # The audio belongs to the challenge: answering it works, and then the audio is gone.
    assert h.send(captcha_id=captcha_id, captcha_answer=answer).status_code == 202
    assert h.client.get(f"/captcha/{captcha_id}.wav").status_code == 404


@pytest.mark.parametrize("suffix", ["png", "wav"])
@pytest.mark.parametrize(
    "challenge_id", ["nope", "a" * 36, "../../etc/passwd", "%00" * 20, "a" * 300]
)
def test_unknown_or_malformed_ids_are_404_problems(
    make_harness: MakeHarness, challenge_id: str, suffix: str
) -> None:
    h = make_harness()
    response = h.client.get(f"/captcha/{challenge_id}.{suffix}")
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
    assert code(response) == "not_found"


def test_expired_challenge_has_no_image_or_audio(
    make_harness: MakeHarness, fake_clock: FakeClock
) -> None:
    h = make_harness(AudibleRecorder())
    captcha_id, _ = h.new_captcha()
    fake_clock.advance(121)
    assert h.client.get(f"/captcha/{captcha_id}.png").status_code == 404
    assert h.client.get(f"/captcha/{captcha_id}.wav").status_code == 404
    assert h.renderer.audio_renders == 0


def test_challenge_creation_is_rate_limited_per_ip(
    make_harness: MakeHarness, fake_clock: FakeClock
) -> None:
    h = make_harness(limits_captcha_ip="3/minute")
    for _ in range(3):
        h.new_captcha("198.51.100.7")
    refused = h.client.post("/captcha", environ_base={"REMOTE_ADDR": "198.51.100.7"})
    assert refused.status_code == 429
    assert refused.json is not None
    assert refused.json["limit"] == "captcha_ip"
    assert refused.headers["Retry-After"] == str(refused.json["retry_after"]) == "60"
    # Another address is not affected, and the window moves on.
    h.new_captcha("198.51.100.8")
    fake_clock.advance(60.5)
    h.new_captcha("198.51.100.7")


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"x" * (17 * 1024), "application/json", 413),
        (b"{not json", "application/json", 400),
        (b'{"purpose": 5}', "application/json", 400),
        (b'{"extra": "field"}', "application/json", 400),
        (b"purpose=x", "application/x-www-form-urlencoded", 415),
    ],
)
def test_bad_bodies_are_4xx_problems(
    make_harness: MakeHarness, body: bytes, content_type: str, status: int
) -> None:
    h = make_harness()
    response = h.client.post("/captcha", data=body, content_type=content_type)
    assert response.status_code == status
    assert response.mimetype == "application/problem+json"
    assert h.renderer.texts == []


# -- the gate ----------------------------------------------------------------------------------


def test_right_answer_sends(make_harness: MakeHarness) -> None:
    h = make_harness()
    response = h.send_solved()
    assert response.status_code == 202, response.json
    assert h.gateway.last_code(PHONE) is not None


def test_missing_captcha_is_required(make_harness: MakeHarness) -> None:
    h = make_harness()
    for fields in ({}, {"captcha_id": "x" * 36}, {"captcha_answer": "ACDEF"}):
        response = h.send(**fields)
        assert response.status_code == 400
        assert code(response) == "captcha_required"
    assert h.gateway.sent == []


def test_wrong_answer_is_refused_and_burns_the_challenge(make_harness: MakeHarness) -> None:
    h = make_harness()
    captcha_id, answer = h.new_captcha()
    wrong = "".join("A" if ch != "A" else "C" for ch in answer)
    assert code(h.send(captcha_id=captcha_id, captcha_answer=wrong)) == "captcha_invalid"
    # The right answer afterwards is refused with the same code: nothing tells them apart.
    assert code(h.send(captcha_id=captcha_id, captcha_answer=answer)) == "captcha_invalid"
    assert h.client.get(f"/captcha/{captcha_id}.png").status_code == 404
    assert h.gateway.sent == []


@pytest.mark.parametrize("odd", ["\ud800", "A\udfffB", "\U0001f600" * 3, "\x00"])
def test_an_unencodable_or_odd_answer_is_just_wrong(make_harness: MakeHarness, odd: str) -> None:
    h = make_harness()
    captcha_id, _ = h.new_captcha()
    response = h.send(captcha_id=captcha_id, captcha_answer=odd)
    assert (response.status_code, code(response)) == (400, "captcha_invalid")
    assert h.gateway.sent == []


def test_a_challenge_works_once(make_harness: MakeHarness) -> None:
    h = make_harness()
    captcha_id, answer = h.new_captcha()
    assert h.send(captcha_id=captcha_id, captcha_answer=answer).status_code == 202
    again = h.send(OTHER_PHONE, captcha_id=captcha_id, captcha_answer=answer)
    assert code(again) == "captcha_invalid"
    assert h.gateway.last_code(OTHER_PHONE) is None


def test_a_challenge_answers_only_for_the_purpose_it_was_made_for(
    make_harness: MakeHarness,
) -> None:
    h = make_harness()
    made = h.client.post("/captcha", json={"purpose": "signup"})
    assert made.status_code == 201
    assert made.json is not None
    captcha_id, answer = made.json["captcha_id"], h.renderer.last_answer
    login = h.send(purpose="login", captcha_id=captcha_id, captcha_answer=answer)
    assert (login.status_code, code(login)) == (400, "captcha_invalid")
    # Refused like a wrong answer: the challenge is burnt for its own purpose too.
    again = h.send(purpose="signup", captcha_id=captcha_id, captcha_answer=answer)
    assert code(again) == "captcha_invalid"
    assert h.gateway.sent == []

    made = h.client.post("/captcha", json={"purpose": "signup"})
    assert made.json is not None
    signup = h.send(
        purpose="signup",
        captcha_id=made.json["captcha_id"],
        captcha_answer=(h.renderer.last_answer),
    )
    assert signup.status_code == 202, signup.json


def test_a_challenge_made_without_purpose_is_for_the_default_purpose(
    make_harness: MakeHarness,
) -> None:
    h = make_harness()
    captcha_id, answer = h.new_captcha()
    refused = h.send(purpose="signup", captcha_id=captcha_id, captcha_answer=answer)
    assert code(refused) == "captcha_invalid"
    assert h.send_solved().status_code == 202
    made = h.client.post("/captcha", json={"purpose": "default"})
    assert made.json is not None
    sent = h.send(
        OTHER_PHONE, captcha_id=made.json["captcha_id"], captcha_answer=(h.renderer.last_answer)
    )
    assert sent.status_code == 202


@pytest.mark.parametrize("purpose", ["", "Signup", "a" * 33, "sign up"])
def test_a_malformed_captcha_purpose_is_invalid(make_harness: MakeHarness, purpose: str) -> None:
    h = make_harness()
    response = h.client.post("/captcha", json={"purpose": purpose})
    assert (response.status_code, code(response)) == (400, "invalid_request")
    assert h.renderer.texts == []


def test_expired_challenge_is_refused(make_harness: MakeHarness, fake_clock: FakeClock) -> None:
    h = make_harness()
    captcha_id, answer = h.new_captcha()
    fake_clock.advance(120)
    assert code(h.send(captcha_id=captcha_id, captcha_answer=answer)) == "captcha_invalid"
    assert h.gateway.sent == []


def test_unknown_challenge_id_is_invalid(make_harness: MakeHarness) -> None:
    h = make_harness()
    for captcha_id in ("a" * 36, "../x", "é" * 20):
        response = h.send(captcha_id=captcha_id, captcha_answer="ACDEF")
        assert code(response) == "captcha_invalid"


@pytest.mark.parametrize(
    "transform",
    [str.lower, full_width_lower, lambda t: f"  {t[:2]} {t[2:]} "],
    ids=["lowercase", "full-width", "spaces"],
)
def test_answers_are_case_width_and_space_insensitive(
    make_harness: MakeHarness, transform: Callable[[str], str]
) -> None:
    h = make_harness()
    captcha_id, answer = h.new_captcha()
    response = h.send(captcha_id=captcha_id, captcha_answer=transform(answer))
    assert response.status_code == 202, response.json


def test_off_mode_sends_without_a_captcha(make_harness: MakeHarness) -> None:
    h = make_harness(captcha_mode="off")
    assert h.send().status_code == 202


def test_answers_survive_a_key_rotation(
    make_harness: MakeHarness, store: Store, fake_clock: FakeClock, settings_factory: Any
) -> None:
    h = make_harness(AudibleRecorder())
    captcha_id, answer = h.new_captcha()
    old_secret = h.service.settings.secret_key
    rotated = create_app(
        settings_factory(
            captcha_mode="always",
            captcha_audio_pow=False,
            secret_key="a-brand-new-secret-key-0123456789-abcdefghij",
            secret_key_fallbacks=(old_secret,),
        ),
        store=store,
        gateway=h.gateway,
        clock=fake_clock,
        captcha_renderer=h.renderer,
    ).test_client()
    assert rotated.get(f"/captcha/{captcha_id}.wav").status_code == 200
    response = rotated.post(
        "/send-code", json={"phone": PHONE, "captcha_id": captcha_id, "captcha_answer": answer}
    )
    assert response.status_code == 202, response.json


# -- adaptive mode -----------------------------------------------------------------------------


def test_adaptive_asks_after_an_ip_sends_its_free_quota_and_clears_later(
    make_harness: MakeHarness, fake_clock: FakeClock
) -> None:
    h = make_harness(**adaptive(captcha_adaptive_ip="2/hour"))
    ip = "203.0.113.9"
    assert h.send("+8613812340001", ip).status_code == 202
    assert h.send("+8613812340002", ip).status_code == 202
    refused = h.send("+8613812340003", ip)
    assert refused.status_code == 400 and code(refused) == "captcha_required"
    # Another address is not asked; a solved captcha lets this one through (and counts too).
    assert h.send("+8613812340004", "203.0.113.200").status_code == 202
    assert h.send_solved("+8613812340003", ip).status_code == 202
    fake_clock.advance(3599)
    assert code(h.send("+8613812340005", ip)) == "captcha_required"
    fake_clock.advance(1)  # the window has moved past every counted send
    assert h.send("+8613812340005", ip).status_code == 202


def test_adaptive_subnet_signal_covers_neighbours(make_harness: MakeHarness) -> None:
    h = make_harness(**adaptive(captcha_adaptive_subnet="2/hour"))
    assert h.send("+8613812340001", "203.0.113.1").status_code == 202
    assert h.send("+8613812340002", "203.0.113.2").status_code == 202
    assert code(h.send("+8613812340003", "203.0.113.3")) == "captcha_required"
    assert h.send("+8613812340003", "198.51.100.3").status_code == 202


def test_adaptive_ipv6_site_signal_covers_the_64s_of_one_48(make_harness: MakeHarness) -> None:
    h = make_harness(**adaptive(captcha_adaptive_ipv6_site="2/hour"))
    assert h.send("+8613812340001", "2001:db8:7:1::1").status_code == 202
    assert h.send("+8613812340002", "2001:db8:7:2::1").status_code == 202
    assert code(h.send("+8613812340003", "2001:db8:7:3::1")) == "captcha_required"
    assert h.send("+8613812340003", "2001:db8:8:3::1").status_code == 202


@pytest.mark.parametrize(
    ("addresses", "axis"),
    [
        pytest.param([f"2001:db8:9:1::{i:x}" for i in range(300)], "captcha_subnet", id="one-64"),
        pytest.param([f"198.51.100.{i}" for i in range(1, 255)], "captcha_subnet", id="one-24"),
        pytest.param(
            [f"2001:db8:9:{i:x}::1" for i in range(300)], "captcha_ipv6_site", id="one-48"
        ),
    ],
)
def test_rotating_addresses_inside_a_network_cannot_mass_create_challenges(
    make_harness: MakeHarness, fake_clock: FakeClock, addresses: list[str], axis: str
) -> None:
    # The per-process drawing budget is off: the network's own limit is what must hold.
    h = make_harness(captcha_render_images="")
    responses = [h.client.post("/captcha", environ_base={"REMOTE_ADDR": a}) for a in addresses]
    statuses = [r.status_code for r in responses]
    # 60/minute per /24, /64 and /48 by default, whatever each address's own 20/minute allows.
    assert statuses == [201] * 60 + [429] * (len(addresses) - 60)
    assert {r.json["limit"] for r in responses[60:] if r.json} == {axis}
    assert len(h.renderer.texts) == 60
    # A neighbouring network is someone else's, and the window moves on.
    assert (
        h.client.post("/captcha", environ_base={"REMOTE_ADDR": "2001:db8:a::1"}).status_code == 201
    )
    fake_clock.advance(60.5)
    assert h.client.post("/captcha", environ_base={"REMOTE_ADDR": addresses[-1]}).status_code == 201


def test_audio_rendering_is_bounded_per_network(make_harness: MakeHarness) -> None:
    h = make_harness(captcha_render_audio="", limits_captcha_audio="10/minute")
    ids = [h.new_captcha(f"198.51.{i}.1")[0] for i in range(15)]
    statuses = [
        h.client.get(
            f"/captcha/{challenge_id}.wav", environ_base={"REMOTE_ADDR": f"2001:db8:9:1::{i:x}"}
        ).status_code
        for i, challenge_id in enumerate(ids)
    ]
    assert statuses == [200] * 10 + [429] * 5
    refused = h.client.get(
        f"/captcha/{ids[-1]}.wav", environ_base={"REMOTE_ADDR": "2001:db8:9:1::ff"}
    )
    assert refused.json is not None and refused.json["limit"] == "captcha_audio_subnet"
    # A rendered challenge is served from the store: asking again costs no render and no quota.
    again = h.client.get(f"/captcha/{ids[0]}.wav", environ_base={"REMOTE_ADDR": "2001:db8:9:1::1"})
    assert again.status_code == 200
    other = h.client.get(f"/captcha/{ids[-1]}.wav", environ_base={"REMOTE_ADDR": "2001:db8:a::1"})
    assert other.status_code == 200


@pytest.mark.parametrize(
    ("signal", "allowance", "address_of"),
    [
        pytest.param("captcha_adaptive_ip", 3, lambda i: "203.0.113.9", id="one-address"),
        pytest.param("captcha_adaptive_subnet", 10, lambda i: f"203.0.113.{i}", id="one-24"),
        pytest.param(
            "captcha_adaptive_ipv6_site", 10, lambda i: f"2001:db8:7:{i:x}::1", id="one-48"
        ),
    ],
)
def test_parallel_captcha_less_sends_pass_at_most_the_signals_allowance(
    make_harness: MakeHarness, signal: str, allowance: int, address_of: Callable[[int], str]
) -> None:
    h = make_harness(**adaptive(**{signal: f"{allowance}/hour"}))
    workers = 30
    barrier = threading.Barrier(workers)
    statuses: list[int] = []
    lock = threading.Lock()

    def send_without_captcha(index: int) -> None:
        client = h.client.application.test_client()
        barrier.wait(timeout=10)
        response = client.post(
            "/send-code",
            json={"phone": f"+86139{index:04d}5678"},
            environ_base={"REMOTE_ADDR": address_of(index)},
        )
        with lock:
            statuses.append(response.status_code)

    threads = [threading.Thread(target=send_without_captcha, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    passed = statuses.count(202)
    # At most the allowance, never more. (On a cluster a send may also meet hits that parallel
    # sends took in another slot and then gave back: refused early, never admitted too often.)
    assert 1 <= passed <= allowance
    assert set(statuses) - {202} <= {400, 429}
    assert len(h.gateway.sent) == passed


def test_adaptive_asks_after_failed_verifies_for_a_number(make_harness: MakeHarness) -> None:
    h = make_harness(**adaptive(captcha_adaptive_number_failures="2/hour"))
    assert h.send(PHONE, "203.0.113.1").status_code == 202
    assert code(h.verify(PHONE, "000000", "198.51.100.1")) in {"code_invalid", "code_expired"}
    assert h.send(PHONE, "203.0.113.2").status_code != 400  # one failure: still no captcha
    assert code(h.verify(PHONE, "000001", "198.51.100.2")) in {"code_invalid", "code_expired"}
    refused = h.send(PHONE, "203.0.113.3")
    assert code(refused) == "captcha_required"
    assert h.send(OTHER_PHONE, "203.0.113.3").status_code == 202


def test_adaptive_counts_wrong_captchas_and_failed_verifies_per_ip(
    make_harness: MakeHarness,
) -> None:
    h = make_harness(**adaptive(captcha_adaptive_ip_failures="2/hour"))
    ip = "203.0.113.50"
    captcha_id, _ = h.new_captcha(ip)
    wrong = h.send(PHONE, ip, captcha_id=captcha_id, captcha_answer="WRONG")
    assert code(wrong) == "captcha_invalid"
    assert h.send(PHONE, ip).status_code == 202
    assert code(h.verify(PHONE, "000000", ip)) == "code_invalid"
    assert code(h.send(OTHER_PHONE, ip)) == "captcha_required"


def test_adaptive_asks_for_a_new_range_until_someone_verifies_in_it(
    make_harness: MakeHarness,
) -> None:
    h = make_harness(**adaptive(captcha_adaptive_new_range=True))
    assert code(h.send(PHONE)) == "captcha_required"
    assert h.send_solved(PHONE).status_code == 202
    sent = h.gateway.last_code(PHONE)
    assert sent is not None
    assert h.verify(PHONE, sent).status_code == 200
    # Same range (only the last four digits differ): known now. Another range: still new.
    assert h.send(OTHER_PHONE).status_code == 202
    assert code(h.send(FAR_PHONE)) == "captcha_required"


def test_adaptive_asks_everyone_when_the_global_budget_runs_high(
    make_harness: MakeHarness,
) -> None:
    h = make_harness(**adaptive(captcha_adaptive_global=0.5), limits_global="6/hour")
    for i in range(3):
        assert h.send(f"+861381234000{i}", f"203.0.113.{i}").status_code == 202
    assert code(h.send("+8613812340009", "198.51.100.1")) == "captcha_required"


def test_adaptive_checks_a_captcha_that_is_sent_anyway(make_harness: MakeHarness) -> None:
    h = make_harness(**adaptive())
    captcha_id, answer = h.new_captcha()
    assert code(h.send(captcha_id=captcha_id, captcha_answer="WRONG")) == "captcha_invalid"
    assert h.send_solved().status_code == 202


def test_adaptive_default_signals_leave_a_first_send_in_a_known_range_free(
    make_harness: MakeHarness,
) -> None:
    h = make_harness(captcha_mode="adaptive")
    assert code(h.send(PHONE)) == "captcha_required"  # new range, by default
    assert h.send_solved(PHONE).status_code == 202
    sent = h.gateway.last_code(PHONE)
    assert sent is not None and h.verify(PHONE, sent).status_code == 200
    assert h.send(OTHER_PHONE, "198.51.100.77").status_code == 202


# -- concurrency -------------------------------------------------------------------------------


def test_parallel_answers_to_one_challenge_accept_exactly_one(
    store: Store, fake_clock: FakeClock, settings_factory: Callable[..., Any]
) -> None:
    renderer = RecordingRenderer()
    gateway = ConsoleGateway()
    service = OtpService(
        settings_factory(captcha_mode="always"),
        store=store,
        gateway=gateway,
        clock=fake_clock,
        captcha_renderer=renderer,
    )
    challenge = service.create_captcha()
    answer = renderer.last_answer
    workers = 8
    barrier = threading.Barrier(workers)
    outcomes: list[str] = []
    lock = threading.Lock()

    def answer_it(index: int) -> None:
        barrier.wait(timeout=10)
        try:
            service.send_code(
                f"+861381234{index:04d}",
                client_ip=f"203.0.113.{index}",
                captcha_id=challenge.challenge_id,
                captcha_answer=answer,
            )
            outcome = "sent"
        except CaptchaInvalid:
            outcome = "refused"
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=answer_it, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    assert sorted(outcomes) == ["refused"] * (workers - 1) + ["sent"]
    assert len(gateway.sent) == 1


def test_parallel_audio_requests_draw_the_audio_once(
    store: Store, fake_clock: FakeClock, settings_factory: Callable[..., Any]
) -> None:
    renderer = AudibleRecorder()
    app = create_app(
        settings_factory(captcha_mode="always", captcha_audio_pow=False),
        store=store,
        gateway=ConsoleGateway(),
        clock=fake_clock,
        captcha_renderer=renderer,
    )
    created = app.test_client().post("/captcha").json
    assert created is not None
    workers = 4
    barrier = threading.Barrier(workers)
    bodies: list[bytes] = []
    lock = threading.Lock()

    def fetch() -> None:
        client = app.test_client()
        barrier.wait(timeout=10)
        response = client.get(created["audio_url"])
        assert response.status_code == 200
        with lock:
            bodies.append(response.data)

    threads = [threading.Thread(target=fetch) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    assert len(bodies) == workers and len(set(bodies)) == 1
    assert renderer.audio_renders == 1


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("OTP_LIMITS_CAPTCHA_IP", "lots"),
        ("OTP_CAPTCHA_ADAPTIVE_IP", "3/fortnight"),
        ("OTP_CAPTCHA_ADAPTIVE_GLOBAL", "1.5"),
        ("OTP_CAPTCHA_ADAPTIVE_NEW_RANGE", "maybe"),
        ("OTP_CAPTCHA_ADAPTIVE_RANGE_MEMORY", "60"),
    ],
)
def test_bad_captcha_settings_name_their_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=f"^{variable}:"):
        Settings.from_env({variable: value})


def test_captcha_settings_parse_from_the_environment() -> None:
    settings = Settings.from_env(
        {
            "OTP_CAPTCHA_MODE": "adaptive",
            "OTP_LIMITS_CAPTCHA_IP": "5/minute",
            "OTP_CAPTCHA_ADAPTIVE_IP": "",
            "OTP_CAPTCHA_ADAPTIVE_GLOBAL": "0.8",
            "OTP_CAPTCHA_ADAPTIVE_NEW_RANGE": "false",
        }
    )
    assert settings.captcha_mode == "adaptive"
    assert settings.limits_captcha_ip == "5/minute"
    assert settings.captcha_adaptive_ip == ""
    assert settings.captcha_adaptive_global == 0.8
    assert settings.captcha_adaptive_new_range is False


# -- render budget -----------------------------------------------------------------------------


def test_a_flood_from_many_addresses_meets_the_per_process_image_budget(
    make_harness: MakeHarness,
) -> None:
    h = make_harness(captcha_render_images="3/minute")
    statuses = [
        h.client.post("/captcha", environ_base={"REMOTE_ADDR": f"198.51.{i}.1"}).status_code
        for i in range(5)
    ]
    assert statuses == [201, 201, 201, 429, 429]
    refused = h.client.post("/captcha", environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert refused.json is not None
    assert refused.json["limit"] == "captcha_render"
    assert 1 <= refused.json["retry_after"] <= 60
    assert int(refused.headers["Retry-After"]) == refused.json["retry_after"]
    assert len(h.renderer.texts) == 3


def test_audio_past_its_budget_is_refused_but_a_spoken_challenge_stays_served(
    make_harness: MakeHarness,
) -> None:
    h = make_harness(AudibleRecorder(), captcha_render_audio="1/minute")
    first, _ = h.new_captcha("198.51.100.1")
    second, _ = h.new_captcha("198.51.100.2")
    assert h.client.get(f"/captcha/{first}.wav").status_code == 200
    refused = h.client.get(f"/captcha/{second}.wav")
    assert refused.status_code == 429
    assert refused.json is not None and refused.json["limit"] == "captcha_render"
    assert h.client.get(f"/captcha/{first}.wav").status_code == 200  # cached: no new render
    renderer = h.renderer
    assert isinstance(renderer, AudibleRecorder) and renderer.audio_renders == 1
