from __future__ import annotations

import pytest

from otp_service.core.codes import code_digest, derive_key, generate_code
from otp_service.core.keys import Keys, phone_tag
from otp_service.core.tokens import TokenSigner
from otp_service.errors import TokenExpired, TokenInvalid
from tests.conftest import SeededRandom

NOW = 1_800_000_000.0


def test_codes_have_the_configured_length_and_keep_leading_zeros() -> None:
    rng = SeededRandom(1)
    codes = [generate_code(rng, 6) for _ in range(2000)]
    assert all(len(c) == 6 and c.isdigit() for c in codes)
    assert any(c.startswith("0") for c in codes)
    assert len(set(codes)) > 1900


def test_digest_binds_code_to_number_purpose_and_key() -> None:
    key = derive_key("secret", "code")
    base = code_digest(key, phone="+8613812345678", purpose="login", code="123456")
    assert base != code_digest(key, phone="+8613812345679", purpose="login", code="123456")
    assert base != code_digest(key, phone="+8613812345678", purpose="signup", code="123456")
    assert base != code_digest(
        derive_key("other", "code"), phone="+8613812345678", purpose="login", code="123456"
    )
    assert b"123456" not in base


def test_keys_never_contain_the_number_and_share_a_hash_tag() -> None:
    tag = phone_tag(b"k" * 32, "+8613812345678")
    keys = Keys("otp:")
    code_key, cooldown_key = keys.code(tag, "login"), keys.cooldown(tag)
    assert "13812345678" not in code_key
    assert code_key.split("}")[0] == cooldown_key.split("}")[0] == "otp:{" + tag


def test_token_round_trip_and_purpose_binding() -> None:
    signer = TokenSigner(["current-key"])
    token = signer.issue(phone="+8613812345678", purpose="signup", token_id="t1", now=NOW, ttl=60)
    claim = signer.check(token, now=NOW + 59, purpose="signup")
    assert (claim.phone, claim.purpose, claim.token_id) == ("+8613812345678", "signup", "t1")
    with pytest.raises(TokenInvalid):
        signer.check(token, now=NOW, purpose="login")


def test_token_expires_by_the_passed_clock() -> None:
    signer = TokenSigner(["current-key"])
    token = signer.issue(phone="+8613812345678", purpose="p", token_id="t", now=NOW, ttl=60)
    with pytest.raises(TokenExpired):
        signer.check(token, now=NOW + 60)


def test_rotation_keeps_old_tokens_valid_and_signs_with_the_new_key() -> None:
    old = TokenSigner(["old-key"]).issue(phone="+86", purpose="p", token_id="t", now=NOW, ttl=60)
    rotated = TokenSigner(["old-key", "new-key"])
    assert rotated.check(old, now=NOW).token_id == "t"
    fresh = rotated.issue(phone="+86", purpose="p", token_id="u", now=NOW, ttl=60)
    assert TokenSigner(["new-key"]).check(fresh, now=NOW).token_id == "u"


@pytest.mark.parametrize("token", ["", "x" * 5000, "not.a.token", "e30.AAAA"])
def test_garbage_tokens_are_invalid(token: str) -> None:
    with pytest.raises(TokenInvalid):
        TokenSigner(["k"]).check(token, now=NOW)
