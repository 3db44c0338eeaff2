"""Captcha challenge rules: alphabet, normalisation, answer digests, sealing, stored records."""

from __future__ import annotations

import pytest

from otp_service.core.captcha import (
    ALPHABET,
    ChallengeRecord,
    answer_digest,
    generate_challenge,
    normalize_answer,
    open_text,
    seal_text,
)
from otp_service.core.codes import derive_key
from tests.conftest import SeededRandom

KEY = derive_key("test-secret", "captcha")
SEAL_KEY = derive_key("test-secret", "captcha-seal")
NONCE = bytes(range(12))
CHALLENGE_ID = "ab" * 18


def test_alphabet_has_no_look_alikes() -> None:
    for confusable in "0O1IlL5S2Z8B6b":
        assert confusable not in ALPHABET
    assert len(set(ALPHABET)) == len(ALPHABET)


def test_challenges_use_the_alphabet_and_the_random_source() -> None:
    texts = [generate_challenge(SeededRandom(seed), 6) for seed in range(50)]
    assert all(len(t) == 6 and set(t) <= set(ALPHABET) for t in texts)
    assert len(set(texts)) == 50
    assert generate_challenge(SeededRandom(3), 6) == generate_challenge(SeededRandom(3), 6)


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        pytest.param("acd3f", "ACD3F", id="lowercase"),
        pytest.param("ＡＣＤ３Ｆ", "ACD3F", id="full-width"),
        pytest.param("ａｃｄ３ｆ", "ACD3F", id="full-width-lowercase"),
        pytest.param(" AC D3F\t", "ACD3F", id="spaces"),
        pytest.param("AC\u3000D3F", "ACD3F", id="ideographic-space"),
    ],
)
def test_answers_normalise_case_width_and_spaces(typed: str, expected: str) -> None:
    assert normalize_answer(typed) == expected
    assert answer_digest(KEY, CHALLENGE_ID, typed, purpose="signup") == answer_digest(
        KEY, CHALLENGE_ID, expected, purpose="signup"
    )


def test_overlong_answers_are_cut_before_normalising() -> None:
    assert len(normalize_answer("A" * 10_000)) == 32


def test_digest_is_bound_to_the_challenge_and_the_key() -> None:
    digest = answer_digest(KEY, CHALLENGE_ID, "ACD3F", purpose="signup")
    assert digest != answer_digest(KEY, "cd" * 18, "ACD3F", purpose="signup")
    assert digest != answer_digest(
        derive_key("other", "captcha"), CHALLENGE_ID, "ACD3F", purpose="signup"
    )
    assert digest != answer_digest(KEY, CHALLENGE_ID, "ACD3E", purpose="signup")


def test_sealed_text_opens_only_with_its_key_and_challenge() -> None:
    sealed = seal_text(SEAL_KEY, CHALLENGE_ID, "ACD3F", NONCE)
    assert b"ACD3F" not in sealed
    assert open_text(SEAL_KEY, CHALLENGE_ID, sealed) == "ACD3F"
    assert open_text(SEAL_KEY, "cd" * 18, sealed) is None
    assert open_text(derive_key("other", "captcha-seal"), CHALLENGE_ID, sealed) is None
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    assert open_text(SEAL_KEY, CHALLENGE_ID, tampered) is None
    assert open_text(SEAL_KEY, CHALLENGE_ID, b"short") is None


def test_seal_refuses_a_wrong_size_nonce() -> None:
    with pytest.raises(ValueError, match="nonce"):
        seal_text(SEAL_KEY, CHALLENGE_ID, "ACD3F", b"123")


def test_record_round_trips_and_rejects_foreign_bytes() -> None:
    record = ChallengeRecord(
        digest=answer_digest(KEY, CHALLENGE_ID, "ACD3F", purpose="signup"),
        sealed=seal_text(SEAL_KEY, CHALLENGE_ID, "ACD3F", NONCE),
        image_png=b"\x89PNG image bytes",
    )
    assert ChallengeRecord.decode(record.encode()) == record
    assert ChallengeRecord.decode(b"") is None
    assert ChallengeRecord.decode(record.digest) is None  # the pre-record format: a bare digest
    assert ChallengeRecord.decode(record.encode()[:40]) is None
