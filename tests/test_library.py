"""The library path end to end, without Flask: OtpService over a memory store, the console
gateway and a fake clock; and every example of ``docs/library.md`` runs and prints what it says.
"""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from otp_service import (
    CaptchaInvalid,
    CaptchaRequired,
    CodeExpired,
    ConsoleGateway,
    MemoryStore,
    OtpService,
    RateLimited,
    Settings,
    TokenExpired,
    TokenInvalid,
    TokenUsed,
)
from otp_service.store import Store
from tests.conftest import FakeClock, RecordingRenderer

PHONE = "+8613812345678"
LIBRARY_DOC = Path(__file__).resolve().parent.parent / "docs" / "library.md"


@pytest.fixture
def gateway() -> ConsoleGateway:
    return ConsoleGateway()


@pytest.fixture
def renderer() -> RecordingRenderer:
    return RecordingRenderer()


@pytest.fixture
def make_service(
    settings_factory: Callable[..., Settings],
    fake_clock: FakeClock,
    gateway: ConsoleGateway,
    renderer: RecordingRenderer,
) -> Callable[..., OtpService]:
    def make(store: Store | None = None, **overrides: object) -> OtpService:
        return OtpService(
            settings_factory(**overrides),
            store=store or MemoryStore(),
            gateway=gateway,
            clock=fake_clock,
            captcha_renderer=renderer,
        )

    return make


def test_captcha_send_verify_and_one_time_token(
    make_service: Callable[..., OtpService],
    gateway: ConsoleGateway,
    renderer: RecordingRenderer,
) -> None:
    otp = make_service(captcha_mode="always")
    with pytest.raises(CaptchaRequired):
        otp.send_code(PHONE, purpose="signup")
    assert gateway.sent == []

    challenge = otp.create_captcha(purpose="signup")
    assert otp.captcha_image(challenge.challenge_id) == challenge.image_png
    receipt = otp.send_code(
        PHONE,
        purpose="signup",
        client_ip="203.0.113.7",
        captcha_id=challenge.challenge_id,
        captcha_answer=renderer.last_answer,
    )
    assert (receipt.phone, receipt.purpose) == ("+86138****5678", "signup")
    code = gateway.last_code(PHONE)
    assert code is not None

    approval = otp.verify(PHONE, code, purpose="signup", client_ip="203.0.113.7")
    assert approval.phone == PHONE
    claim = otp.check_token(approval.token, purpose="signup", consume=True)
    assert (claim.phone, claim.purpose) == (PHONE, "signup")
    with pytest.raises(TokenUsed):
        otp.check_token(approval.token, purpose="signup", consume=True)
    with pytest.raises(TokenInvalid):
        otp.check_token(approval.token, purpose="login")


def test_token_expires_by_the_injected_clock(
    make_service: Callable[..., OtpService], gateway: ConsoleGateway, fake_clock: FakeClock
) -> None:
    otp = make_service(token_ttl=60)
    otp.send_code(PHONE)
    code = gateway.last_code(PHONE)
    assert code is not None
    token = otp.verify(PHONE, code).token
    fake_clock.advance(59)
    assert otp.check_token(token).phone == PHONE
    fake_clock.advance(1)
    with pytest.raises(TokenExpired):
        otp.check_token(token)


def test_check_captcha_is_one_time_and_ignores_the_send_mode(
    make_service: Callable[..., OtpService], renderer: RecordingRenderer
) -> None:
    otp = make_service(captcha_mode="off")
    with pytest.raises(CaptchaRequired):
        otp.check_captcha(None, None)
    challenge = otp.create_captcha()
    otp.check_captcha(challenge.challenge_id, renderer.last_answer.lower())
    with pytest.raises(CaptchaInvalid):
        otp.check_captcha(challenge.challenge_id, renderer.last_answer)


def test_wrong_captcha_answer_burns_the_challenge(
    make_service: Callable[..., OtpService], renderer: RecordingRenderer
) -> None:
    otp = make_service()
    challenge = otp.create_captcha()
    with pytest.raises(CaptchaInvalid):
        otp.check_captcha(challenge.challenge_id, "WRONG")
    with pytest.raises(CaptchaInvalid):
        otp.check_captcha(challenge.challenge_id, renderer.last_answer)


def test_hit_limits_on_every_store(
    make_service: Callable[..., OtpService], store: Store, fake_clock: FakeClock
) -> None:
    otp = make_service(store=store)
    otp.hit_limits("email", "a@example.com", "2/minute", scope="reset")
    otp.hit_limits("email", "a@example.com", "2/minute", scope="reset")
    with pytest.raises(RateLimited) as refused:
        otp.hit_limits("email", "a@example.com", "2/minute", scope="reset")
    assert (refused.value.limit, refused.value.retry_after) == ("email", 60)
    # Another subject, and the same subject in another scope, have their own counters.
    otp.hit_limits("email", "b@example.com", "2/minute", scope="reset")
    otp.hit_limits("email", "a@example.com", "2/minute", scope="login")
    fake_clock.advance(60)
    otp.hit_limits("email", "a@example.com", "2/minute", scope="reset")


def test_hit_limits_with_an_empty_spec_never_refuses(
    make_service: Callable[..., OtpService],
) -> None:
    otp = make_service()
    for _ in range(5):
        otp.hit_limits("ip", "203.0.113.7", "", hash_subject=False)


def test_guard_limits_do_not_spend_the_send_pipeline_ip_budget(
    make_service: Callable[..., OtpService], gateway: ConsoleGateway
) -> None:
    otp = make_service(limits_ip="1/minute", resend_interval=0)
    for _ in range(3):
        otp.hit_limits("ip", "203.0.113.7", "5/minute", hash_subject=False)
    otp.send_code(PHONE, client_ip="203.0.113.7")
    assert len(gateway.sent) == 1


def test_code_expires_by_the_injected_clock(
    make_service: Callable[..., OtpService], gateway: ConsoleGateway, fake_clock: FakeClock
) -> None:
    otp = make_service()
    otp.send_code(PHONE)
    fake_clock.advance(otp.settings.code_ttl)
    code = gateway.last_code(PHONE)
    assert code is not None
    with pytest.raises(CodeExpired):
        otp.verify(PHONE, code)


def doc_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", LIBRARY_DOC.read_text(), flags=re.DOTALL)


#: What each example of docs/library.md prints, in order (the comments in the page say the same).
EXPECTED_OUTPUT = [
    "",
    "+86138****5678 300 60\n+8613812345678 900\n",
    "+8613812345678 signup 900\ntoken_used 401\n",
    "captcha_required\nTrue b'\\x89PNG' 120\ncaptcha_invalid\n",
    "captcha_invalid 400\n",
    "allowed\nallowed\nrate_limited email True\n",
    "code_invalid 4 {'attempts_left': 4}\ninvalid_phone 400\n",
    "code_expired\n",
]


def test_every_library_doc_example_is_covered() -> None:
    assert len(doc_blocks()) == len(EXPECTED_OUTPUT)


@pytest.mark.parametrize("index", range(len(EXPECTED_OUTPUT)))
def test_library_doc_example_runs_and_prints_what_it_says(index: int) -> None:
    source = doc_blocks()[index]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(source, f"docs/library.md[{index}]", "exec"), {})  # noqa: S102
    assert printed.getvalue() == EXPECTED_OUTPUT[index]
