"""Phone numbers: parse to E.164, enforce the region allow-list and mobile-capable types, mask.

Parsing and metadata come from ``phonenumbers`` (Google's libphonenumber): it knows every
country's numbering plan, which no hand-written regex does.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberType

from otp_service.errors import InvalidPhone, PhoneTypeNotAllowed, RegionNotAllowed

#: Types that can receive an SMS. ``FIXED_LINE_OR_MOBILE`` covers plans (US, CA …) where the
#: metadata cannot tell the two apart. Everything else — fixed line, VoIP, premium rate, shared
#: cost, toll free, pager, UAN, voicemail, personal numbers, unknown — is refused: those are the
#: ranges SMS pumping rings rent.
SMS_CAPABLE_TYPES = frozenset({PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE})
MAX_PHONE_INPUT = 32
#: Digits hidden by :func:`number_prefix`: a number range is a number without its last four.
RANGE_SUFFIX_DIGITS = 4


@dataclass(frozen=True, slots=True)
class Phone:
    """A validated destination."""

    e164: str
    region: str
    type_name: str

    @property
    def masked(self) -> str:
        return mask_phone(self.e164)

    @property
    def prefix(self) -> str:
        return number_prefix(self.e164)


def parse_phone(raw: str, *, default_region: str, allowed_regions: tuple[str, ...]) -> Phone:
    """Normalise ``raw`` to a :class:`Phone` or raise.

    :raises InvalidPhone: not a valid number of any plan.
    :raises RegionNotAllowed: valid, but its region is not in ``allowed_regions`` (``*`` = all).
    :raises PhoneTypeNotAllowed: valid, but not a number that can receive SMS.
    """
    if not raw or len(raw) > MAX_PHONE_INPUT:
        raise InvalidPhone("The phone number is empty or too long.")
    e164, region, number_type = _placed(raw, default_region)
    if "*" not in allowed_regions and region not in allowed_regions:
        raise RegionNotAllowed(f"Numbers in region {region} are not accepted.", region=region)
    if number_type not in SMS_CAPABLE_TYPES:
        type_name = _type_name(number_type)
        raise PhoneTypeNotAllowed(
            f"Numbers of type {type_name} cannot receive verification codes.", phone_type=type_name
        )
    return Phone(e164=e164, region=region, type_name=_type_name(number_type))


@lru_cache(maxsize=4096)
def _placed(raw: str, default_region: str) -> tuple[str, str, int]:
    """E.164 form, region and type of a valid number.

    Cached (valid numbers only: an exception is never cached) because a number comes back: its
    verify follows its send, and a flood on one victim's number repeats it thousands of times;
    parsing was the largest single cost of refusing such a flood. The result depends on nothing
    but the input and the metadata, so a cached answer is the answer.
    """
    try:
        number = phonenumbers.parse(raw, default_region)
    except NumberParseException:
        raise InvalidPhone("The phone number could not be parsed.") from None
    # ``number_type`` is UNKNOWN exactly when ``is_valid_number`` is false: both match the
    # number against its own region's patterns, so one call does the work of both.
    number_type = phonenumbers.number_type(number)
    if number_type == PhoneNumberType.UNKNOWN:
        raise InvalidPhone("The phone number is not valid.")
    region = phonenumbers.region_code_for_number(number) or "ZZ"
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return e164, region, number_type


def _type_name(number_type: int) -> str:
    for name, value in vars(PhoneNumberType).items():
        if value == number_type and name.isupper():
            return name.lower()
    return "unknown"


def mask_phone(e164: str) -> str:
    """``+8613812345678`` → ``+86138****5678``: enough to recognise, not enough to dial."""
    if len(e164) < 8:
        return "*" * len(e164)
    head = 6 if len(e164) >= 12 else 4
    return e164[:head] + "*" * (len(e164) - head - 4) + e164[-4:]


def mask_range(prefix: str) -> str:
    """``+861381234`` → ``+86138****``: no more of a range than :func:`mask_phone` shows of the
    start of its numbers, so the two together never cover every digit (the masked number gives
    the last four, the range only what the number showed already)."""
    number_length = len(prefix) + RANGE_SUFFIX_DIGITS
    if number_length < 8:
        return "*" * len(prefix)
    head = 6 if number_length >= 12 else 4
    return prefix[:head] + "*" * (len(prefix) - head)


def number_prefix(e164: str) -> str:
    """The number range: E.164 without its last four digits."""
    return e164[:-RANGE_SUFFIX_DIGITS]
