"""The bot gate's pure decisions: what a send must prove for each mode, kind, signals and proof."""

from __future__ import annotations

import pytest

from otp_service.core.bot_gate import (
    BotProof,
    Demand,
    closed_detail,
    demand,
    kinds_for,
    lacks,
    reads_signals,
)
from otp_service.core.captcha import well_formed_id
from otp_service.core.purpose import DEFAULT_PURPOSE, validate_purpose
from otp_service.errors import InvalidRequest

LEVELS = (20, 200, 2000)
NOTHING = BotProof()
IMAGE = BotProof(captcha_id="ab" * 18, captcha_answer="ACD3F")
WORK = BotProof(altcha="payload")
BOTH = BotProof(captcha_id="ab" * 18, captcha_answer="ACD3F", altcha="payload")


@pytest.mark.parametrize(
    ("kind", "signals", "kinds"),
    [
        ("image", (), ("image",)),
        ("image", ("ip_sends",), ("image",)),
        ("pow", (), ("pow",)),
        ("both", (), ("image", "pow")),
        ("auto", (), ("image",)),
        ("auto", ("new_range",), ("image", "pow")),
    ],
)
def test_kinds_follow_the_setting_and_auto_adds_work_under_risk(
    kind: str, signals: tuple[str, ...], kinds: tuple[str, ...]
) -> None:
    assert kinds_for(kind, signals) == kinds


@pytest.mark.parametrize("kind", ["image", "pow", "both", "auto"])
@pytest.mark.parametrize("proof", [NOTHING, IMAGE, WORK, BOTH])
def test_off_asks_nothing_and_waives_nothing(kind: str, proof: BotProof) -> None:
    assert not reads_signals("off", kind, proof)
    assert demand("off", kind, ("ip_sends",), proof, LEVELS) == Demand(kinds=())


@pytest.mark.parametrize("kind", ["image", "pow", "both", "auto"])
def test_always_asks_its_kinds_at_level_zero_without_reading_signals(kind: str) -> None:
    assert not reads_signals("always", kind, NOTHING)
    assert demand("always", kind, (), NOTHING, LEVELS) == Demand(kinds=kinds_for(kind), level=0)


def test_adaptive_reads_signals_for_a_bare_request_or_when_work_may_be_wanted() -> None:
    assert reads_signals("adaptive", "image", NOTHING)
    # An image answer under an image-only kind is checked whatever the signals say.
    assert not reads_signals("adaptive", "image", IMAGE)
    for kind in ("pow", "both", "auto"):
        assert reads_signals("adaptive", kind, IMAGE)
        assert reads_signals("adaptive", kind, WORK)


def test_adaptive_waives_a_bare_request_while_no_signal_trips() -> None:
    waived = demand("adaptive", "both", (), NOTHING, LEVELS)
    assert waived == Demand(kinds=(), waived=True)


def test_adaptive_checks_a_proof_brought_even_with_no_signal() -> None:
    assert demand("adaptive", "image", (), IMAGE, LEVELS) == Demand(kinds=("image",), level=0)


@pytest.mark.parametrize(("signals", "level"), [(("a",), 1), (("a", "b"), 2), (("a", "b", "c"), 2)])
def test_each_tripped_signal_raises_the_level_up_to_the_hardest(
    signals: tuple[str, ...], level: int
) -> None:
    got = demand("adaptive", "auto", signals, NOTHING, LEVELS)
    assert got == Demand(kinds=("image", "pow"), level=level)


@pytest.mark.parametrize(
    ("kinds", "proof", "missing"),
    [
        (("image",), NOTHING, True),
        (("image",), BotProof(captcha_id="ab" * 18), True),
        (("image",), IMAGE, False),
        (("pow",), IMAGE, True),
        (("pow",), WORK, False),
        (("image", "pow"), WORK, True),
        (("image", "pow"), IMAGE, True),
        (("image", "pow"), BOTH, False),
    ],
)
def test_a_proof_lacks_any_kind_it_does_not_carry(
    kinds: tuple[str, ...], proof: BotProof, missing: bool
) -> None:
    assert lacks(kinds, proof) is missing


def test_the_refusal_names_what_to_fetch() -> None:
    assert "POST /captcha" in closed_detail(("image",))
    assert "POST /pow" in closed_detail(("pow",))
    both = closed_detail(("image", "pow"))
    assert "POST /captcha" in both and "POST /pow" in both


def test_only_well_formed_challenge_ids_reach_the_store() -> None:
    assert well_formed_id("ab" * 18)
    assert not well_formed_id("short")
    assert not well_formed_id("ab" * 18 + "/")
    assert not well_formed_id("a" * 65)


def test_purpose_defaults_and_refuses_malformed_names() -> None:
    assert validate_purpose(None) == DEFAULT_PURPOSE
    assert validate_purpose("sign_up-2") == "sign_up-2"
    for bad in ("", "Login", "1st", "a" * 33, "log in"):
        with pytest.raises(InvalidRequest):
            validate_purpose(bad)
