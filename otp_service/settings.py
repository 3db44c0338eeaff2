"""Typed, frozen configuration built from ``OTP_*`` variables, a Flask config, or arguments.

One naming rule and no table of exceptions: the field ``resend_interval`` is the environment
variable ``OTP_RESEND_INTERVAL`` and the Flask key ``app.config["OTP_RESEND_INTERVAL"]``. Each field
declares its parser and its check in its metadata, so the README's table, ``check-config`` and the
error messages all come from this one place. Invalid values fail at construction with a message
naming the variable; ``OTP_ENV=production`` additionally refuses unsafe choices.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import math
import os
import re
import secrets
import string
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import phonenumbers

from otp_service.core.codes import derive_key
from otp_service.core.policy import parse_windows
from otp_service.errors import ConfigurationError

log = logging.getLogger(__name__)
_Network = TypeVar("_Network", ipaddress.IPv4Network, ipaddress.IPv6Network)
#: Characters that stand in a URL's query unencoded (RFC 3986 "unreserved").
CALLBACK_TOKEN_PATTERN = re.compile(r"[A-Za-z0-9._~-]+")
#: Rules OTP_SHADOW_RULES may name: the limit axes and the pumping detector's rules.
SHADOWABLE_RULES = frozenset(
    {
        "number",
        "ip",
        "subnet",
        "ipv6_site",
        "prefix",
        "global",
        "verify_ip",
        "verify_subnet",
        "verify_ipv6_site",
        "captcha_ip",
        "captcha_subnet",
        "captcha_ipv6_site",
        "captcha_audio_subnet",
        "captcha_audio_ipv6_site",
        "pumping_prefix",
        "pumping_country",
        "pumping_subnet",
    }
)
#: The placeholders OTP_MESSAGE_TEMPLATE may use.
TEMPLATE_FIELDS = frozenset({"code", "minutes"})

#: Keys shipped in docs and examples; production refuses them.
#: Secrets that appear in examples (ours included: people copy them); production refuses them.
EXAMPLE_SECRETS = frozenset(
    {
        "change-me",
        "changeme",
        "secret",
        "dev",
        "development",
        "example-secret-key-change-me-now!!",
        "use-at-least-32-random-bytes-from-your-vault",
        "at-least-32-random-bytes-from-your-vault",
        "local-demo-secret-not-for-production-0123456789",
        "test-secret-key-that-is-long-enough-0123456789",
    }
)
#: Fragments that say a secret was copied from an example and never replaced.
EXAMPLE_MARKERS = ("changeme", "change-me", "change_me", "replaceme", "replace-me")
#: Length every signing key and the callback token need in production (bytes).
MIN_SECRET_BYTES = 32
#: Character-frequency entropy below which a long string is still guessable (``aaaa…ab``).
MIN_SECRET_BITS = 64
MAX_CODE_TTL = 600
ENVIRONMENTS = ("development", "production", "testing")
CAPTCHA_MODES = ("always", "adaptive", "off")
CAPTCHA_KINDS = ("auto", "image", "pow", "both")
GATEWAYS = ("console", "huawei")
#: Where the callback token rides in the URLs we hand out (docs/huawei.md §4).
CALLBACK_URL_FORMS = ("path", "query")


def _text(raw: str) -> str:
    return raw.strip()


def _optional_text(raw: str) -> str | None:
    return raw.strip() or None


def _audit_destination(raw: str) -> str:
    """``off``, ``stderr``, or a path with ``~`` expanded (the handler opens it as written)."""
    value = raw.strip() or "off"
    return value if value in ("off", "stderr") else os.path.expanduser(value)


def _int(raw: str) -> int:
    try:
        return int(raw.strip())
    except ValueError:
        raise ValueError(f"expected a whole number, got {raw!r}") from None


def _float(raw: str) -> float:
    try:
        return float(raw.strip())
    except ValueError:
        raise ValueError(f"expected a number, got {raw!r}") from None


def _bool(raw: str) -> bool:
    word = raw.strip().lower()
    if word in {"1", "true", "yes", "on"}:
        return True
    if word in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"expected true/false, got {raw!r}")


def _csv(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _upper_csv(raw: str) -> tuple[str, ...]:
    return tuple(part.upper() for part in _csv(raw))


def _int_csv(raw: str) -> tuple[int, ...]:
    return tuple(_int(part) for part in _csv(raw))


def _name_set(raw: str) -> frozenset[str]:
    return frozenset(_csv(raw))


def _test_numbers(raw: str) -> tuple[tuple[str, str], ...]:
    """``+NUMBER:CODE`` items, each number normalised to E.164 so it matches parsed requests."""
    pairs = []
    for item in _csv(raw):
        number, sep, code = item.partition(":")
        if not sep or not number.strip() or not code.strip():
            raise ValueError(f"expected +NUMBER:CODE items, got {item!r}")
        pairs.append((_international(number.strip()), code.strip()))
    return tuple(pairs)


def _international(number: str) -> str:
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        parsed = None
    if parsed is None or not phonenumbers.is_valid_number(parsed):
        raise ValueError(f"expected a valid number in international form (+…), got {number!r}")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def _template_problem(template: str, code_length: int) -> str | None:
    """Why ``template`` cannot render every message, or None.

    Only ``{code}`` and ``{minutes}`` exist; anything else (``{name}``, ``{}``, attribute or
    index access) would fail on every send or render Python internals into an SMS.
    """
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
        template.format(code="0" * code_length, minutes=1)
    except (ValueError, TypeError, IndexError, KeyError, AttributeError) as exc:
        return f"not a valid template ({type(exc).__name__}: {exc})"
    unknown = sorted(names - TEMPLATE_FIELDS)
    if unknown:
        return f"only {{code}} and {{minutes}} may appear, got {', '.join(map(repr, unknown))}"
    if "code" not in names:
        return "must contain the {code} placeholder"
    return None


def _is_code(code: str, length: int) -> bool:
    return len(code) == length and code.isascii() and code.isdigit()


def _costs(raw: str) -> tuple[tuple[str, float], ...]:
    pairs = []
    for item in _csv(raw):
        region, sep, cost = item.partition(":")
        if not sep or not region.strip():
            raise ValueError(f"expected REGION:COST items, got {item!r}")
        pairs.append((region.strip().upper(), _float(cost)))
    return tuple(pairs)


def _check_costs(value: Any) -> str | None:
    for region, cost in value:
        if region != "*" and (len(region) != 2 or not region.isalpha()):
            return f"{region!r} is not a two-letter region (or * for the rest)"
        if cost < 0:
            return f"cost of {region} must not be negative"
    return None


def _check_range(low: float, high: float) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if not low <= value <= high:
            return f"must be between {low:g} and {high:g}, got {value!r}"
        return None

    return check


def _check_choice(choices: tuple[str, ...]) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if value in choices else f"must be one of {', '.join(choices)}, got {value!r}"

    return check


def _check_names(known: frozenset[str]) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        unknown = sorted(set(value) - known)
        if unknown:
            return f"unknown names {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        return None

    return check


def _check_pow_levels(value: Any) -> str | None:
    if not value or any(not 1 <= n <= 10_000_000 for n in value):
        return f"expected whole numbers between 1 and 10000000, got {value!r}"
    if list(value) != sorted(set(value)):
        return f"each level must ask for more work than the one before, got {value!r}"
    return None


def _check_fonts(value: Any) -> str | None:
    """Each file loads as a TrueType/OpenType font that has a glyph for every challenge letter."""
    from PIL import ImageFont

    from otp_service.core.captcha import ALPHABET

    for path in value:
        try:
            font = ImageFont.truetype(path, 40)
        except OSError:
            return f"{path!r} is not a font file this machine can read"
        # A missing glyph renders as the font's ".notdef" box: every such letter looks the same.
        missing = font.getmask("\uffff").getbbox()
        if any(font.getmask(letter).getbbox() in (None, missing) for letter in ALPHABET):
            return f"{path!r} lacks glyphs for some of {ALPHABET}"
    return None


def _check_audit_log(value: Any) -> str | None:
    """``off``, ``stderr`` or a file whose directory exists (the handler opens it at start).

    The path is checked as the handler will open it, unexpanded: ``~`` is expanded when the
    variable is read, so a check that expanded it again would pass paths the handler cannot open.
    """
    if value in ("off", "stderr"):
        return None
    path = Path(value)
    if path.is_dir():
        return f"{value!r} is a directory; use off, stderr or a file path"
    if not path.parent.is_dir():
        return f"{value!r}: use off, stderr or a file path in an existing directory"
    return None


def _check_callback_token(value: Any) -> str | None:
    # The token is typed raw into Huawei's console as part of the uplink URL: a "+" there would
    # arrive as a space and every opt-out reply would be refused.
    if value is None or CALLBACK_TOKEN_PATTERN.fullmatch(value):
        return None
    return (
        "use only letters, digits and - . _ ~ (e.g. `openssl rand -hex 32`): it travels "
        "unencoded in the callback URLs"
    )


def _check_limits(value: Any) -> str | None:
    # The parser the limits are enforced with, so what passes here cannot fail at a request.
    try:
        parse_windows(value)
    except ValueError:
        return (
            f"expected limits notation such as '10/minute;100/hour', each allowing at least 1 "
            f"(leave the variable empty for none), got {value!r}"
        )
    return None


def _check_regions(value: Any) -> str | None:
    known = phonenumbers.SUPPORTED_REGIONS
    bad = [r for r in value if r != "*" and r not in known]
    return f"unknown region codes: {', '.join(bad)}" if bad else None


def _check_region(value: Any) -> str | None:
    return None if value in phonenumbers.SUPPORTED_REGIONS else f"unknown region {value!r}"


def _check_cidrs(value: Any) -> str | None:
    for cidr in value:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            return f"expected CIDRs such as 10.0.0.0/8, got {cidr!r}"
    return None


def _check_bind(value: Any) -> str | None:
    if value.startswith("unix:"):
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return f"expected HOST:PORT or unix:PATH, got {value!r}"
    return None


def _check_url(schemes: tuple[str, ...]) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if value is None:
            return None
        scheme, sep, _ = value.partition("://")
        if not sep or scheme not in schemes:
            return f"expected a URL starting with {' or '.join(s + '://' for s in schemes)}"
        return None

    return check


@dataclass(frozen=True, slots=True)
class _Secret:
    """One configured secret, with how to name it in a message (never its value)."""

    variable: str
    subject: str
    value: str = field(repr=False)
    #: Bytes it needs; None for credentials the provider issues (only their reuse is checked).
    min_bytes: int | None = None

    @property
    def where(self) -> str:
        return (
            self.variable if self.subject.startswith("the ") else f"{self.variable} {self.subject}"
        )

    def weakness(self) -> str | None:
        return None if self.min_bytes is None else _secret_weakness(self.value, self.min_bytes)


def _secret_weakness(value: str, min_bytes: int) -> str | None:
    """Why ``value`` is too weak to sign or authenticate anything, or None."""
    advice = "generate one with `openssl rand -hex 32`"
    folded = value.lower()
    if folded in EXAMPLE_SECRETS or any(marker in folded for marker in EXAMPLE_MARKERS):
        return f"is an example value; {advice}"
    size = len(value.encode())
    if size < min_bytes:
        return f"needs at least {min_bytes} bytes, has {size}; {advice}"
    if _repeats(value):
        return f"repeats one character or word; {advice}"
    if _entropy_bits(value) < MIN_SECRET_BITS:
        return f"has too little variety to be guessed only by brute force; {advice}"
    return None


def _repeats(value: str) -> bool:
    """``xxxx…``, ``wordwordword…``, or mostly a few trigrams over and over."""
    size = len(value)
    for period in range(1, size // 2 + 1):
        if (value[:period] * (size // period + 1))[:size] == value:
            return True
    trigrams = [value[i : i + 3] for i in range(size - 2)]
    return len(set(trigrams)) * 2 < len(trigrams)


def _entropy_bits(value: str) -> float:
    """Shannon estimate from character frequencies: an upper bound, enough to catch the weak."""
    size = len(value)
    counts = Counter(value)
    return -sum(n * math.log2(n / size) for n in counts.values())


def _trust_everything_problems(cidrs: tuple[str, ...]) -> list[str]:
    """OTP_TRUSTED_PROXIES ranges that together cover a whole address family.

    Then every client is a "proxy" whose ``X-Forwarded-For`` is believed: anyone can claim any
    address and step around every per-IP and per-subnet limit.
    """
    v4: list[ipaddress.IPv4Network] = []
    v6: list[ipaddress.IPv6Network] = []
    for cidr in cidrs:
        try:
            network = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            continue  # reported by the field's own check
        if isinstance(network, ipaddress.IPv4Network):
            v4.append(network)
        else:
            v6.append(network)
    return [
        f"OTP_TRUSTED_PROXIES: {ranges} covers every {family} address, so any client can forge "
        "X-Forwarded-For and take any address's limits; list only your proxies' ranges"
        for family, ranges, covered in (
            ("IPv4", ",".join(map(str, v4)), _covers_all(v4)),
            ("IPv6", ",".join(map(str, v6)), _covers_all(v6)),
        )
        if covered
    ]


def _covers_all(ranges: list[_Network]) -> bool:
    return any(n.prefixlen == 0 for n in ipaddress.collapse_addresses(ranges))


_process_key: list[str] = []
_process_key_lock = threading.Lock()


def _random_process_key() -> str:
    """The key of settings without OTP_SECRET_KEY: one per process, made and announced once.

    One per process (not per Settings) so every part of a process agrees on it, and the warning
    is said once however many times the settings are built.
    """
    with _process_key_lock:
        if not _process_key:
            log.warning(
                "OTP_SECRET_KEY is not set: using a random key for this process only; codes and "
                "tokens will not survive a restart or be shared between workers"
            )
            _process_key.append(secrets.token_urlsafe(48))
        return _process_key[0]


def _is_random_process_key(key: str) -> bool:
    return bool(_process_key) and secrets.compare_digest(key.encode(), _process_key[0].encode())


def _env(
    parse: Callable[[str], Any],
    doc: str,
    check: Callable[[Any], str | None] | None = None,
    secret: bool = False,
) -> dict[str, Any]:
    return {"parse": parse, "doc": doc, "check": check, "secret": secret}


@dataclass(frozen=True, slots=True)
class Settings:
    """Every knob of the service. Build with :meth:`from_env`, :meth:`from_mapping` or directly."""

    env: str = field(
        default="development",
        metadata=_env(
            _text,
            "`production` refuses unsafe settings (weak or example secrets, test numbers, console "
            "gateway, no Redis, plain http, proxy ranges trusting everyone)",
            _check_choice(ENVIRONMENTS),
        ),
    )
    secret_key: str | None = field(
        default=None,
        metadata=_env(
            _optional_text,
            "keys code HMACs and signs tokens; >= 32 bytes in production; "
            "development: random per process",
            secret=True,
        ),
    )
    secret_key_fallbacks: tuple[str, ...] = field(
        default=(),
        metadata=_env(
            _csv,
            "comma list of old keys still accepted (rotation); "
            "production holds each to the key's rules",
            secret=True,
        ),
    )
    redis_url: str | None = field(
        default=None,
        metadata=_env(
            _optional_text,
            "`redis://`, `rediss://`, `unix://`, `redis+cluster://`; unset: in-memory store "
            "(refused in production)",
            _check_url(("redis", "rediss", "unix", "redis+cluster", "memory")),
            secret=True,
        ),
    )
    key_prefix: str = field(default="otp:", metadata=_env(_text, "namespace of every key"))
    sms_gateway: str = field(
        default="console",
        metadata=_env(_text, "`console` (dev only) or `huawei`", _check_choice(GATEWAYS)),
    )
    huawei_endpoint: str | None = field(
        default=None,
        metadata=_env(
            _optional_text,
            "base URL (https in production); the gateway posts to `{endpoint}/sms/batchSendSms/v1`",
            _check_url(("https", "http")),
        ),
    )
    huawei_app_key: str | None = field(
        default=None, metadata=_env(_optional_text, "WSSE App Key", secret=True)
    )
    huawei_app_secret: str | None = field(
        default=None, metadata=_env(_optional_text, "WSSE App Secret", secret=True)
    )
    huawei_sender: str | None = field(
        default=None, metadata=_env(_optional_text, "channel number (`from`)")
    )
    huawei_template_id: str | None = field(
        default=None, metadata=_env(_optional_text, "verification template, one variable: the code")
    )
    huawei_signature: str | None = field(
        default=None, metadata=_env(_optional_text, "signature name (Chinese-mainland templates)")
    )
    huawei_timeout: float = field(
        default=5.0,
        metadata=_env(
            _float,
            "seconds for a whole provider call: connect, request, the complete answer",
            _check_range(0.1, 60),
        ),
    )
    huawei_iam_endpoint: str | None = field(
        default=None,
        metadata=_env(
            _optional_text,
            "IAM base URL (e.g. `https://iam.cn-north-4.myhuaweicloud.com`); with the other IAM "
            "settings, template and signature state is read from the management API",
            _check_url(("https", "http")),
        ),
    )
    huawei_iam_domain: str | None = field(
        default=None, metadata=_env(_optional_text, "IAM account (domain) name")
    )
    huawei_iam_user: str | None = field(
        default=None,
        metadata=_env(_optional_text, "IAM user with MSGSMS ReadOnlyAccess (or FullAccess)"),
    )
    huawei_iam_password: str | None = field(
        default=None, metadata=_env(_optional_text, "that IAM user's password", secret=True)
    )
    huawei_project_id: str | None = field(
        default=None, metadata=_env(_optional_text, "project id of the SMS region")
    )
    huawei_management_endpoint: str = field(
        default="https://msgsms.cn-north-4.myhuaweicloud.com",
        metadata=_env(_text, "MSGSMS management API base URL", _check_url(("https", "http"))),
    )
    huawei_state_refresh: int = field(
        default=300,
        metadata=_env(
            _int,
            "seconds `/readyz` reuses the template and signature state it read",
            _check_range(30, 86400),
        ),
    )
    public_url: str | None = field(
        default=None,
        metadata=_env(
            _optional_text,
            "where the provider reaches our callbacks (https in production)",
            _check_url(("https", "http")),
        ),
    )
    problem_base_url: str | None = field(
        default=None,
        metadata=_env(
            _optional_text,
            "where problem types are documented (a problem's type is this URL + its code); "
            "unset: /problems/<code> served by the service itself",
            _check_url(("https", "http")),
        ),
    )
    callback_token: str | None = field(
        default=None,
        metadata=_env(
            _optional_text,
            "secret the provider's callbacks must carry; URL-safe characters only; "
            ">= 32 in production",
            _check_callback_token,
            secret=True,
        ),
    )
    callback_url_form: str = field(
        default="path",
        metadata=_env(
            _text,
            "where the token rides in the `statusCallback` URL we send: `path` "
            "(`/callbacks/huawei/<token>/status`, survives a dropped query) or `query` (`?token=`)",
            _check_choice(CALLBACK_URL_FORMS),
        ),
    )
    callback_allowed_networks: tuple[str, ...] = field(
        default=(),
        metadata=_env(
            _csv,
            "CIDRs provider callbacks may come from (client address resolved through "
            "OTP_TRUSTED_PROXIES); empty: any. Huawei's push ranges: docs/huawei.md",
            _check_cidrs,
        ),
    )
    optout_ttl: int = field(
        default=2 * 365 * 86400,
        metadata=_env(
            _int,
            "seconds an opt-out (STOP/TD reply) keeps a number suppressed; default 2 years",
            _check_range(86400, 10 * 365 * 86400),
        ),
    )
    default_region: str = field(
        default="CN",
        metadata=_env(
            lambda raw: raw.strip().upper(), "region for numbers without +", _check_region
        ),
    )
    allowed_regions: tuple[str, ...] = field(
        default=("CN",),
        metadata=_env(
            _upper_csv,
            "destinations allowed (ISO codes, `*` = all); deny by default",
            _check_regions,
        ),
    )
    code_length: int = field(
        default=6, metadata=_env(_int, "digits in a code", _check_range(4, 10))
    )
    code_ttl: int = field(
        default=300,
        metadata=_env(_int, "seconds a code lives (at most 600)", _check_range(30, MAX_CODE_TTL)),
    )
    max_attempts: int = field(
        default=5, metadata=_env(_int, "wrong guesses allowed per code", _check_range(1, 20))
    )
    resend_interval: int = field(
        default=60,
        metadata=_env(
            _int, "seconds between sends to one number, whatever the purpose", _check_range(0, 3600)
        ),
    )
    limits_number: str = field(
        default="5/hour;10/day",
        metadata=_env(_text, "per number and purpose, `limits` notation", _check_limits),
    )
    limits_number_total: str = field(
        default="2/minute;8/hour;15/day",
        metadata=_env(
            _text,
            "per number across all purposes (purposes are the caller's); 2/minute is Huawei's cap",
            _check_limits,
        ),
    )
    refusal_memo_seconds: float = field(
        default=1.0,
        metadata=_env(
            _float,
            "seconds a worker refuses a just-full send window from memory (0: off)",
            _check_range(0, 10),
        ),
    )
    limits_ip: str = field(
        default="10/minute;100/hour", metadata=_env(_text, "per client IP", _check_limits)
    )
    limits_subnet: str = field(
        default="30/minute;300/hour",
        metadata=_env(_text, "per /24 (IPv4) or /64 (IPv6)", _check_limits),
    )
    limits_ipv6_site: str = field(
        default="30/minute;300/hour",
        metadata=_env(
            _text,
            "per IPv6 site network (`OTP_IPV6_SITE_BITS`, a /48), over its /64s",
            _check_limits,
        ),
    )
    ipv6_site_bits: int = field(
        default=48,
        metadata=_env(
            _int,
            "prefix length of the IPv6 site axis (wider than the /64 subnet)",
            _check_range(16, 63),
        ),
    )
    limits_prefix: str = field(
        default="50/hour",
        metadata=_env(_text, "per number range (E.164 without its last 4 digits)", _check_limits),
    )
    limits_global: str = field(
        default="1000/hour",
        metadata=_env(_text, "all sends: the budget / circuit breaker", _check_limits),
    )
    limits_verify_ip: str = field(
        default="30/minute", metadata=_env(_text, "verify calls per client IP", _check_limits)
    )
    limits_verify_subnet: str = field(
        default="90/minute",
        metadata=_env(_text, "verify calls per /24 (IPv4) or /64 (IPv6)", _check_limits),
    )
    limits_verify_ipv6_site: str = field(
        default="90/minute",
        metadata=_env(_text, "verify calls per IPv6 site network (a /48)", _check_limits),
    )
    captcha_mode: str = field(
        default="always",
        metadata=_env(_text, "`always` / `adaptive` / `off`", _check_choice(CAPTCHA_MODES)),
    )
    captcha_ttl: int = field(
        default=120,
        metadata=_env(_int, "seconds a captcha challenge lives", _check_range(10, 1800)),
    )
    captcha_length: int = field(
        default=5, metadata=_env(_int, "characters in a captcha challenge", _check_range(4, 8))
    )
    limits_captcha_ip: str = field(
        default="20/minute;200/hour",
        metadata=_env(_text, "captcha challenges created per client IP", _check_limits),
    )
    limits_captcha_subnet: str = field(
        default="60/minute;600/hour",
        metadata=_env(
            _text, "captcha challenges created per /24 (IPv4) or /64 (IPv6)", _check_limits
        ),
    )
    limits_captcha_ipv6_site: str = field(
        default="60/minute;600/hour",
        metadata=_env(
            _text, "captcha challenges created per IPv6 site network (a /48)", _check_limits
        ),
    )
    limits_captcha_audio: str = field(
        default="10/minute;100/hour",
        metadata=_env(
            _text,
            "captcha audio renders per /24 or /64, and per IPv6 site network (a /48)",
            _check_limits,
        ),
    )
    captcha_adaptive_ip: str = field(
        default="3/hour",
        metadata=_env(
            _text, "adaptive: sends from one IP before a captcha (empty: signal off)", _check_limits
        ),
    )
    captcha_adaptive_subnet: str = field(
        default="10/hour",
        metadata=_env(_text, "adaptive: sends from one /24 or /64 before a captcha", _check_limits),
    )
    captcha_adaptive_ipv6_site: str = field(
        default="10/hour",
        metadata=_env(
            _text,
            "adaptive: sends from one IPv6 site network (a /48) before a captcha",
            _check_limits,
        ),
    )
    captcha_adaptive_ip_failures: str = field(
        default="3/hour",
        metadata=_env(
            _text, "adaptive: failed verifies and wrong captchas from one IP", _check_limits
        ),
    )
    captcha_adaptive_subnet_failures: str = field(
        default="10/hour",
        metadata=_env(_text, "adaptive: failures from one /24 or /64", _check_limits),
    )
    captcha_adaptive_number_failures: str = field(
        default="3/hour",
        metadata=_env(_text, "adaptive: failed verifies for one number", _check_limits),
    )
    captcha_adaptive_new_range: bool = field(
        default=True,
        metadata=_env(_bool, "adaptive: ask for a captcha for a range with no recent verification"),
    )
    captcha_adaptive_range_memory: int = field(
        default=30 * 86400,
        metadata=_env(
            _int,
            "adaptive: seconds a verified number keeps its range known",
            _check_range(3600, 366 * 86400),
        ),
    )
    captcha_adaptive_global: float = field(
        default=0.5,
        metadata=_env(
            _float,
            "adaptive: share of a global window in use that asks everyone for a captcha (0: off)",
            _check_range(0, 1),
        ),
    )
    captcha_render_images: str = field(
        default="40/second",
        metadata=_env(
            _text, "captcha images each worker process may draw (empty: no cap)", _check_limits
        ),
    )
    captcha_render_audio: str = field(
        default="4 per 10 seconds",
        metadata=_env(
            _text, "captcha audio each worker process may speak (empty: no cap)", _check_limits
        ),
    )
    captcha_fonts: tuple[str, ...] = field(
        default=(),
        metadata=_env(
            _csv,
            "font files added to the pool the deployment's image style draws from",
            _check_fonts,
        ),
    )
    captcha_kind: str = field(
        default="auto",
        metadata=_env(
            _text,
            "what the gate asks for: `image` (or its audio), `pow` (proof of work), `both`, or "
            "`auto`: the image, and a proof of work too once an adaptive risk signal trips",
            _check_choice(CAPTCHA_KINDS),
        ),
    )
    captcha_audio_pow: bool = field(
        default=True,
        metadata=_env(
            _bool,
            "a proof of work (`GET /pow`, passed as `?altcha=`) before a challenge's audio is "
            "first spoken: recording matching reads the audio, so it must cost CPU",
        ),
    )
    pow_cost: int = field(
        default=5000,
        metadata=_env(
            _int, "proof of work: PBKDF2 iterations per attempt", _check_range(1000, 1_000_000)
        ),
    )
    pow_levels: tuple[int, ...] = field(
        default=(20, 200, 2000),
        metadata=_env(
            _int_csv,
            "proof of work: attempts range per level (no signal tripped, one, two or more)",
            _check_pow_levels,
        ),
    )
    trusted_proxies: tuple[str, ...] = field(
        default=(),
        metadata=_env(
            _csv,
            "CIDRs whose `X-Forwarded-For` is believed; "
            "production refuses ranges covering every address",
            _check_cidrs,
        ),
    )
    bind: str = field(
        default="127.0.0.1:8000",
        metadata=_env(
            _text,
            "gunicorn listen address, `HOST:PORT` or `unix:PATH` (image: 0.0.0.0:8000)",
            _check_bind,
        ),
    )
    workers: int = field(
        default=2,
        metadata=_env(
            _int, "gunicorn worker processes (`WEB_CONCURRENCY` if unset)", _check_range(1, 64)
        ),
    )
    graceful_timeout: int = field(
        default=30,
        metadata=_env(
            _int, "seconds gunicorn lets in-flight requests finish on SIGTERM", _check_range(1, 600)
        ),
    )
    audit_log: str = field(
        default="off",
        metadata=_env(
            _audit_destination,
            "`stderr` or a file path: where create_app writes audit lines as JSON when no logging "
            "set-up of yours does (`off`: leave logging to the host; the sidecar logs to stdout)",
            _check_audit_log,
        ),
    )
    token_ttl: int = field(
        default=900,
        metadata=_env(
            _int, "seconds a verification token stays valid", _check_range(30, 7 * 86400)
        ),
    )
    test_numbers: tuple[tuple[str, str], ...] = field(
        default=(),
        metadata=_env(
            _test_numbers, "`+8613800000000:123456,…` fixed codes, no SMS; refused in production"
        ),
    )
    shadow_rules: frozenset[str] = field(
        default=frozenset(),
        metadata=_env(
            _name_set,
            "anti-abuse rules that only record what they would block",
            _check_names(SHADOWABLE_RULES),
        ),
    )
    pumping_floor: int = field(
        default=20,
        metadata=_env(
            _int,
            "unverified sends a scope may have per window (docs/pumping.md); 0 = detector off",
            _check_range(0, 1_000_000),
        ),
    )
    pumping_country_floor: int = field(
        default=200,
        metadata=_env(
            _int,
            "the same floor for a whole destination country (it holds many ranges)",
            _check_range(0, 10_000_000),
        ),
    )
    pumping_ratio: float = field(
        default=1.0,
        metadata=_env(
            _float,
            "extra unverified sends allowed per verified one (1.0: trips below ~50 % conversion)",
            _check_range(0, 100),
        ),
    )
    pumping_window: int = field(
        default=3600,
        metadata=_env(
            _int,
            "seconds of sends and verifications the detector counts",
            _check_range(60, 7 * 86400),
        ),
    )
    pumping_block: int = field(
        default=900,
        metadata=_env(
            _int,
            "seconds a tripped scope is blocked; doubles on each repeat within a day",
            _check_range(10, 7 * 86400),
        ),
    )
    pumping_max_block: int = field(
        default=86400,
        metadata=_env(_int, "ceiling of an escalated block, seconds", _check_range(10, 30 * 86400)),
    )
    budget_costs: tuple[tuple[str, float], ...] = field(
        default=(),
        metadata=_env(
            _costs,
            "cost per SMS by destination, `CN:0.05,US:0.0079,*:0.1`; unlisted regions cost 0",
            _check_costs,
        ),
    )
    budget_daily: float = field(
        default=0.0,
        metadata=_env(
            _float, "spend ceiling per UTC day (cost units); 0 = none", _check_range(0, 1e12)
        ),
    )
    budget_monthly: float = field(
        default=0.0,
        metadata=_env(
            _float, "spend ceiling per UTC month (cost units); 0 = none", _check_range(0, 1e12)
        ),
    )
    message_template: str = field(
        default="Your verification code is {code}. It expires in {minutes} minutes.",
        metadata=_env(
            _text,
            "text the console gateway and the content check render; mirror your provider template",
        ),
    )
    content_rules: str | None = field(
        default=None,
        metadata=_env(
            _optional_text,
            "path of an operator rules file (TOML) extending or disabling the shipped content "
            "rules (docs/content-rules.md); the signature checked is OTP_HUAWEI_SIGNATURE",
        ),
    )

    def __post_init__(self) -> None:
        problems = self._value_problems()
        if self.env == "production":
            problems += self._production_problems()
        if self.sms_gateway == "huawei":
            problems += self._huawei_problems()
        if problems:
            raise ConfigurationError(problems=problems)
        if self.secret_key is None:
            object.__setattr__(self, "secret_key", _random_process_key())

    def _value_problems(self) -> list[str]:
        """Each field's own check, then the checks that join fields (template, test codes)."""
        problems = []
        for f in dataclasses.fields(self):
            check = f.metadata.get("check")
            problem = check(getattr(self, f.name)) if check is not None else None
            if problem:
                problems.append(f"{env_name(f.name)}: {problem}")
        if any(p.startswith("OTP_CODE_LENGTH:") for p in problems):
            return problems  # the checks below would only repeat that the length is wrong
        problem = _template_problem(self.message_template, self.code_length)
        if problem:
            problems.append(f"OTP_MESSAGE_TEMPLATE: {problem}")
        if any(not _is_code(c, self.code_length) for c in self.test_codes.values()):
            problems.append(
                f"OTP_TEST_NUMBERS: codes must be {self.code_length} digits (OTP_CODE_LENGTH)"
            )
        return problems

    def _production_problems(self) -> list[str]:
        problems = [] if self.secret_key else ["OTP_SECRET_KEY: production needs a secret key"]
        problems += self._hazards()
        if self.test_numbers:
            problems.append("OTP_TEST_NUMBERS: test numbers are refused in production")
        if self.sms_gateway == "console":
            problems.append("OTP_SMS_GATEWAY: the console gateway is refused in production")
        if self.redis_url is None or self.redis_url.startswith("memory:"):
            problems.append(
                "OTP_REDIS_URL: production needs Redis; the in-memory store forgets codes, "
                "limits and opt-outs on restart and is not shared between workers"
            )
        for name in ("huawei_endpoint", "public_url"):
            url = getattr(self, name)
            if url is not None and url.lower().startswith("http://"):
                problems.append(
                    f"{env_name(name)}: production needs https://; plain http exposes "
                    "credentials, codes and callback tokens on the wire"
                )
        return problems

    def _hazards(self) -> list[str]:
        """Choices that let someone forge tokens or client addresses, in any environment.

        Production refuses them; elsewhere :meth:`warnings` reports them (``check-config``).
        """
        return [*self._secret_problems(), *_trust_everything_problems(self.trusted_proxies)]

    def _secret_problems(self) -> list[str]:
        """Weak or shared secrets: each one alone would let an attacker sign what we accept.

        Every key in ``signing_keys`` verifies tokens, so a weak fallback is as bad as a weak
        current key; the callback token is all that authenticates the provider's callbacks.
        """
        secrets_set = self._configured_secrets()
        problems = []
        for secret in secrets_set:
            weakness = secret.weakness()
            if weakness:
                problems.append(f"{secret.variable}: {secret.subject} {weakness}")
        first_with: dict[str, _Secret] = {}
        for secret in secrets_set:
            other = first_with.setdefault(secret.value, secret)
            if other is not secret:
                problems.append(
                    f"{secret.variable}: {secret.subject} is the same as {other.where}; "
                    "every secret must be its own"
                )
        return problems

    def _configured_secrets(self) -> list[_Secret]:
        """Every secret set (not the random development key).

        The provider's credentials come first: they cannot be chosen, so a reuse is reported on
        the secret of ours that must change.
        """
        found = []
        if self.huawei_app_key:
            found.append(_Secret("OTP_HUAWEI_APP_KEY", "the app key", self.huawei_app_key))
        if self.huawei_app_secret:
            found.append(_Secret("OTP_HUAWEI_APP_SECRET", "the app secret", self.huawei_app_secret))
        if self.secret_key is not None and not _is_random_process_key(self.secret_key):
            found.append(_Secret("OTP_SECRET_KEY", "the key", self.secret_key, MIN_SECRET_BYTES))
        for index, fallback in enumerate(self.secret_key_fallbacks, start=1):
            variable = "OTP_SECRET_KEY_FALLBACKS"
            found.append(_Secret(variable, f"entry {index}", fallback, MIN_SECRET_BYTES))
        if self.callback_token:
            token = self.callback_token
            found.append(_Secret("OTP_CALLBACK_TOKEN", "the token", token, MIN_SECRET_BYTES))
        return found

    def warnings(self) -> list[str]:
        """Unsafe choices this environment accepts, each naming its variable (``check-config``).

        Outside production these are the hazards production refuses; in every environment,
        rules in ``OTP_SHADOW_RULES`` that enforce nothing.
        """
        found = [] if self.env == "production" else self._hazards()
        if self.shadow_rules:
            every = " (every rule it can name: nothing is throttled)"
            found.append(
                f"OTP_SHADOW_RULES: {', '.join(sorted(self.shadow_rules))} only record what they "
                f"would block{every if self.shadow_rules >= SHADOWABLE_RULES else ''}"
            )
        return found

    def _huawei_problems(self) -> list[str]:
        required = ("huawei_endpoint", "huawei_app_key", "huawei_app_secret", "huawei_sender")
        missing = [env_name(name) for name in required if not getattr(self, name)]
        if not self.huawei_template_id:
            missing.append(env_name("huawei_template_id"))
        if missing:
            return [f"{', '.join(missing)}: required when OTP_SMS_GATEWAY=huawei"]
        return []

    @property
    def signing_keys(self) -> list[str]:
        """Keys for itsdangerous: oldest first, the current key last (it signs)."""
        assert self.secret_key is not None  # noqa: S101 - set in __post_init__
        return [*reversed(self.secret_key_fallbacks), self.secret_key]

    @property
    def tag_keys(self) -> list[bytes]:
        """Keys of the hashes that name numbers (and ranges) in the store, current first.

        New state is written under the first; state that must outlive a rotation (opt-outs,
        allow-lists, blocks) is looked for under every one (docs/operations.md, rotation).
        """
        return [derive_key(secret, "phone-tag") for secret in reversed(self.signing_keys)]

    @property
    def test_codes(self) -> dict[str, str]:
        return dict(self.test_numbers)

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, object], **overrides: Any) -> Settings:
        """Build from ``OTP_*`` keys of a mapping (environment or ``app.config``).

        Explicit ``overrides`` (field names) win over the mapping, which wins over defaults.
        Strings are parsed; other values (ints, lists from a Flask config) are taken as typed.
        """
        values: dict[str, Any] = {}
        problems = []
        for f in dataclasses.fields(cls):
            key = env_name(f.name)
            if key not in mapping:
                continue
            raw = mapping[key]
            if isinstance(raw, str):
                try:
                    values[f.name] = f.metadata["parse"](raw)
                except ValueError as exc:
                    problems.append(f"{key}: {exc}")
            elif isinstance(raw, list):
                values[f.name] = tuple(raw)
            else:
                values[f.name] = raw
        values.update(overrides)
        unknown = sorted(k for k in mapping if k.startswith("OTP_") and k not in _ENV_NAMES)
        if unknown:
            log.warning("ignoring unknown settings: %s", ", ".join(unknown))
        try:
            settings = cls(**values)
        except ConfigurationError as exc:
            # Values that parsed are checked too (unparsed ones kept their defaults), so one
            # run reports every problem.
            raise ConfigurationError(problems=[*problems, *exc.problems]) from None
        if problems:
            raise ConfigurationError(problems=problems)
        return settings

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build from the process environment (the sidecar's way)."""
        return cls.from_mapping(os.environ if environ is None else environ, **overrides)

    def describe(self) -> dict[str, str]:
        """Every setting as ``OTP_NAME -> printable value``, with secrets hidden."""
        shown: dict[str, str] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "secret_key" and _is_random_process_key(value):
                shown[env_name(f.name)] = "<unset: random for this process>"
            elif f.metadata.get("secret") and value:
                shown[env_name(f.name)] = "<set>"
            elif f.name == "test_numbers":
                shown[env_name(f.name)] = f"<{len(value)} numbers>" if value else ""
            elif isinstance(value, tuple | frozenset):
                items = sorted(value) if isinstance(value, frozenset) else value
                # Pairs (OTP_BUDGET_COSTS) print as they are written: REGION:COST.
                shown[env_name(f.name)] = ",".join(
                    ":".join(map(str, item)) if isinstance(item, tuple) else str(item)
                    for item in items
                )
            else:
                shown[env_name(f.name)] = "" if value is None else str(value)
        return shown


def env_name(field_name: str) -> str:
    """The environment variable / Flask config key of a field."""
    return "OTP_" + field_name.upper()


_ENV_NAMES = frozenset(env_name(f.name) for f in dataclasses.fields(Settings))
_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}


def env_setting(field_name: str, environ: Mapping[str, str] | None = None) -> Any:
    """One setting from the environment, parsed and checked as :class:`Settings` does, alone.

    For commands that need a setting or two and nothing else the configuration builds: above
    all not the random development key, whose warning would say a lint command lacks a secret.

    :raises ConfigurationError: the value does not parse or fails its check (naming the variable).
    """
    f = _FIELDS[field_name]
    name = env_name(field_name)
    raw = (os.environ if environ is None else environ).get(name)
    if raw is None:
        return f.default
    try:
        value = f.metadata["parse"](raw)
    except ValueError as exc:
        raise ConfigurationError(problems=[f"{name}: {exc}"]) from None
    check = f.metadata.get("check")
    problem = check(value) if check is not None else None
    if problem:
        raise ConfigurationError(problems=[f"{name}: {problem}"])
    return value


def settings_table() -> list[tuple[str, str, str]]:
    """(variable, default, meaning) rows, for the README table and its drift test."""
    rows = []
    for f in dataclasses.fields(Settings):
        default = f.default
        if isinstance(default, tuple | frozenset):
            shown = ",".join(map(str, default)) if default else "(empty)"
        elif default is None:
            shown = "(unset)"
        else:
            shown = str(default)
        rows.append((env_name(f.name), shown, f.metadata["doc"]))
    return rows
