from __future__ import annotations

import pytest

from otp_service.core.phone import mask_phone, mask_range, number_prefix, parse_phone
from otp_service.errors import InvalidPhone, PhoneTypeNotAllowed, RegionNotAllowed

CN = ("CN",)


@pytest.mark.parametrize(
    ("raw", "region", "e164"),
    [
        pytest.param("+8613812345678", "CN", "+8613812345678", id="e164"),
        pytest.param("138 1234 5678", "CN", "+8613812345678", id="national-with-spaces"),
        pytest.param("+86 138-1234-5678", "US", "+8613812345678", id="plus-wins-over-region"),
        pytest.param(
            "００８６１３８１２３４５６７８", "CN", "+8613812345678", id="full-width-digits"
        ),
    ],
)
def test_valid_mobile_numbers_normalise_to_e164(raw: str, region: str, e164: str) -> None:
    assert parse_phone(raw, default_region=region, allowed_regions=CN).e164 == e164


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("", id="empty"),
        pytest.param("hello", id="letters"),
        pytest.param("+86123", id="too-short"),
        pytest.param("1" * 40, id="too-long"),
        pytest.param("+861381234567890123", id="too-many-digits"),
    ],
)
def test_invalid_numbers_are_refused(raw: str) -> None:
    with pytest.raises(InvalidPhone):
        parse_phone(raw, default_region="CN", allowed_regions=CN)


def test_region_outside_allow_list_is_refused() -> None:
    with pytest.raises(RegionNotAllowed) as info:
        parse_phone("+447400123456", default_region="CN", allowed_regions=CN)
    assert info.value.extras["region"] == "GB"


def test_star_allows_every_region() -> None:
    assert parse_phone("+447400123456", default_region="CN", allowed_regions=("*",)).region == "GB"


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        pytest.param("+861012345678", "fixed_line", id="cn-fixed-line"),
        pytest.param("+448001234567", "toll_free", id="gb-toll-free"),
        pytest.param("+449012345678", "premium_rate", id="gb-premium-rate"),
        pytest.param("+445612345678", "voip", id="gb-voip"),
        pytest.param("+447640123456", "pager", id="gb-pager"),
    ],
)
def test_numbers_that_cannot_receive_sms_are_refused(raw: str, kind: str) -> None:
    with pytest.raises(PhoneTypeNotAllowed) as info:
        parse_phone(raw, default_region="CN", allowed_regions=("*",))
    assert info.value.extras["phone_type"] == kind


def test_fixed_line_or_mobile_plans_are_accepted() -> None:
    phone = parse_phone("+12015550123", default_region="US", allowed_regions=("US",))
    assert phone.type_name == "fixed_line_or_mobile"


def test_masking_keeps_country_head_and_last_four() -> None:
    assert mask_phone("+8613812345678") == "+86138****5678"
    assert "12345678" not in mask_phone("+8613812345678")


def test_prefix_drops_the_last_four_digits() -> None:
    assert number_prefix("+8613812345678") == "+861381234"


@pytest.mark.parametrize(
    "e164", ["+8613812345678", "+14155550123", "+447700900123", "+3912345678", "+12345678"]
)
def test_a_masked_range_shows_nothing_the_masked_number_hides(e164: str) -> None:
    masked_number, masked_range = mask_phone(e164), mask_range(number_prefix(e164))
    number_shows = {i for i, c in enumerate(masked_number) if c != "*"}
    range_shows = {i for i, c in enumerate(masked_range) if c != "*"}
    assert range_shows <= number_shows
    assert masked_number.startswith(masked_range.rstrip("*"))
