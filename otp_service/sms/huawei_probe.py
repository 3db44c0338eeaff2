"""One harmless authenticated call to Huawei's send API, and what its answer says about the account.

``otp-service check-provider`` needs to know, before users do, whether the account can send at
all: a deactivated subscriber (E000109), a clock the platform refuses (E000110), a server address
missing from the application's IP whitelist (E000620), a wrong App Key or Secret, a volume limit
or a missing capability. Only the send API answers those, so the check sends it one request that
cannot become a message:

* ``to`` is :data:`PROBE_TO`, which has letters in it. Huawei documents that a ``to`` holding
  anything but digits and ``+`` fails the *whole request* (sms_05_0001, reference §1.2), so
  there is no number the platform could deliver to, whatever order it checks things in;
* no ``templateParas``, no ``statusCallback``, no signature.

A healthy account gets ``E000503`` (parameter format error). Huawei does not document the order
of its checks. :func:`judge` assumes that the credentials (E0001xx) and the whitelist (E000620)
are checked before the parameters — the platform cannot judge a request it has not yet
authenticated, and its table lists them as whole-request failures (sms_05_0050) — and so reads
``E000503`` as "authenticated". Were that wrong, a fault would hide behind ``E000503``; no
message could be sent either way. Whether the volume limit (E000623) and the capability check
(E000106) come before the parameters is not documented either: when they come they are named,
but ``E000503`` does not prove the volume limit is not reached (docs/huawei.md, section 9).

The answer's ``Date`` header gives the offset between our clock and the provider's, and the
connection's own socket the local address we call from (what the whitelist must allow, unless a
NAT or proxy sits in between).
"""

from __future__ import annotations

import ipaddress
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Literal
from urllib.parse import urlencode

import requests
import urllib3.connection
import urllib3.connectionpool
from requests.adapters import HTTPAdapter

from otp_service.settings import Settings
from otp_service.sms._wsse import valid_app_key, wsse_headers
from otp_service.sms.huawei import ACCEPTED, PROVIDER_CODES, SEND_PATH

#: The probe's ``to``: not a number (letters), so the whole request fails (sms_05_0001).
PROBE_TO = "otp-service-check"
#: The answer of an account that passed authentication and the whitelist.
PARAMETERS_REFUSED = "E000503"
#: How long a whitelist change takes to apply (Huawei user guide, "Creating an SMS
#: Application": "It takes about 10 to 15 minutes for the IP whitelist to take effect").
WHITELIST_DELAY = "10–15 minutes"

Verdict = Literal["ok", "fault", "unknown"]


class ProbeFailed(Exception):
    """The provider could not be reached or did not answer; nothing is known of the account."""


@dataclass(frozen=True, slots=True)
class ProbeAnswer:
    """What the provider answered to the probe."""

    http_status: int
    #: The whole-request ``code`` (``error_code`` for the API gateway's answers), if readable.
    code: str | None
    #: Our clock minus the provider's (its ``Date`` header), in seconds; None without one.
    clock_offset: float | None
    #: The local address of our connection to the provider; None through an HTTP proxy.
    local_address: str | None


@dataclass(frozen=True, slots=True)
class AccountFinding:
    """The account check's conclusion, in words an operator can act on."""

    verdict: Verdict
    state: str
    cause: str
    fix: str


def probe_problems(settings: Settings) -> list[str]:
    """The send-API settings the probe needs and lacks (the IAM settings are not needed)."""
    needed = (
        ("OTP_HUAWEI_ENDPOINT", settings.huawei_endpoint),
        ("OTP_HUAWEI_APP_KEY", settings.huawei_app_key),
        ("OTP_HUAWEI_APP_SECRET", settings.huawei_app_secret),
        ("OTP_HUAWEI_SENDER", settings.huawei_sender),
        ("OTP_HUAWEI_TEMPLATE_ID", settings.huawei_template_id),
    )
    missing = [name for name, value in needed if not value]
    if settings.huawei_app_key and not valid_app_key(settings.huawei_app_key):
        missing.append("OTP_HUAWEI_APP_KEY (must not contain quotes, commas or spaces)")
    return missing


def probe_account(
    settings: Settings,
    *,
    now: Callable[[], float] = time.time,
    nonce: Callable[[], str] = lambda: uuid.uuid4().hex,
) -> ProbeAnswer:
    """Send the probe with the configured credentials; see the module docstring for why it
    cannot deliver a message.

    :raises ProbeFailed: no answer (connection refused, timeout, TLS).
    """
    endpoint, key, secret = (
        settings.huawei_endpoint,
        settings.huawei_app_key,
        settings.huawei_app_secret,
    )
    if not (endpoint and key and secret) or probe_problems(settings):
        raise ProbeFailed("the send-API settings are incomplete")
    form = {
        "from": settings.huawei_sender or "",
        "to": PROBE_TO,
        "templateId": settings.huawei_template_id or "",
    }
    adapter = _AddressRecordingAdapter()
    with requests.Session() as session:
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        sent = now()
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
            **wsse_headers(key, secret, nonce=nonce(), now=sent),
        }
        try:
            response = session.post(
                endpoint.rstrip("/") + SEND_PATH,
                data=urlencode(form),
                headers=headers,
                timeout=(settings.huawei_timeout, settings.huawei_timeout),
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise ProbeFailed(f"the provider did not answer ({type(exc).__name__})") from None
        answered = now()
    return ProbeAnswer(
        http_status=response.status_code,
        code=_code(response),
        clock_offset=_offset((sent + answered) / 2, response.headers.get("Date")),
        local_address=adapter.local_address,
    )


def judge(answer: ProbeAnswer) -> AccountFinding:
    """What ``answer`` says about the account, with the cause and the fix. Pure."""
    code = answer.code
    if code in (PARAMETERS_REFUSED, ACCEPTED):
        return AccountFinding(
            "ok",
            "authenticated",
            "the platform accepted the App Key, the App Secret, our clock and this server's "
            f"address, then refused the check's deliberately invalid number ({code})",
            "nothing to do",
        )
    if code is None:
        return AccountFinding(
            "unknown",
            f"HTTP {answer.http_status}",
            "the provider's answer carried no error code",
            "check OTP_HUAWEI_ENDPOINT: it must be the application's APP access address "
            "(a 404 almost always means a wrong address)",
        )
    if code == "E000110":
        return AccountFinding(
            "fault",
            code,
            "the platform refused the WSSE Created timestamp as too far from its own time: "
            + clock_words(answer.clock_offset),
            "synchronise this host's clock (NTP: chronyd or systemd-timesyncd) and keep it in "
            "UTC; sends work again as soon as the clock is right",
        )
    if code == "E000620":
        return AccountFinding(
            "fault",
            code,
            "this server's address is not in the application's IP whitelist; we call from "
            + address_words(answer.local_address),
            "add the server's public address to the application's IP whitelist (console: "
            "Application Management, the application, IP whitelist); a whitelist change takes "
            f"{WHITELIST_DELAY} to apply, so run check-provider again after that",
        )
    family = _FAMILIES.get(code)
    if family is not None:
        cause, fix = family
        if code == "E000001":
            # Also Huawei's answer for a Created more than 24 h off (reference §3.1).
            cause += f", or our clock is a day off ({clock_words(answer.clock_offset)})"
        return AccountFinding("fault", code, cause, fix)
    known = PROVIDER_CODES.get(code)
    if known is not None:
        return AccountFinding(
            "fault",
            code,
            known.meaning,
            "see the code in docs/huawei.md, section 5 (Huawei's error-code page sms_05_0050)",
        )
    return AccountFinding(
        "unknown",
        code,
        f"an undocumented answer (HTTP {answer.http_status})",
        "look the code up on Huawei's error-code page sms_05_0050",
    )


def clock_words(offset: float | None) -> str:
    """``offset`` (ours minus the provider's) in words: "our clock is 7 min 12 s ahead of the
    provider's". The ``Date`` header has whole seconds, so one second either way is noise."""
    if offset is None:
        return "the provider's answer had no Date header, so the offset is unknown"
    seconds = round(abs(offset))
    if seconds < 1:
        return "our clock agrees with the provider's to the second"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours} h"] if hours else []
    if hours or minutes:
        parts.append(f"{minutes} min")
    parts.append(f"{secs} s")
    side = "ahead of" if offset > 0 else "behind"
    return f"our clock is {' '.join(parts)} {side} the provider's"


def address_words(address: str | None) -> str:
    """The local address we call from, with the NAT caveat where it is a private one."""
    if address is None:
        return "an address this check could not read (an HTTP proxy in between?)"
    words = f"{address} (the local address of our connection to the provider)"
    if ipaddress.ip_address(address.split("%")[0]).is_private:
        words += (
            "; it is a private address: behind a NAT gateway or a proxy the provider sees that "
            "one's public address, and that is the one to whitelist"
        )
    return words


#: Codes whose cause is the same whatever the request: (cause, fix). E000110 and E000620 need
#: the answer's details and are worded in :func:`judge`.
_FAMILIES: dict[str, tuple[str, str]] = {
    "E000109": (
        "the Huawei Cloud account (subscriber) behind the application is deactivated or not "
        "activated",
        "check the account in the Huawei Cloud console (real-name authentication, arrears, the "
        "Message & SMS service enabled) and activate it; nothing changes here",
    ),
    "E000112": (
        "the account is frozen, for arrears or for a violation",
        "top the account up (an arrears freeze lifts by itself) or remedy the violation and ask "
        "Huawei to unfreeze it",
    ),
    **dict.fromkeys(
        ("E000102", "E000111"),
        (
            "the platform does not know this App Key at this access address",
            "copy the App Key and the APP access address from the console's Application "
            "Management page into OTP_HUAWEI_APP_KEY and OTP_HUAWEI_ENDPOINT (a wrong address "
            "is the usual cause, not a wrong key)",
        ),
    ),
    "E000103": (
        "the App Key is known but unavailable: the application is not in its normal state",
        "check the application's state on the console's Application Management page",
    ),
    **dict.fromkeys(
        ("E000001", "E000101", "E000104", "E000105"),
        (
            "the App Secret does not match the App Key (the PasswordDigest is computed from it)",
            "copy the App Secret again from the console's Application Management page into "
            "OTP_HUAWEI_APP_SECRET (reset it there if it was lost), without spaces or quotes",
        ),
    ),
    **dict.fromkeys(
        ("E000623", "E000630"),
        (
            "sending is suspended: the volume reached the limit value of the traffic threshold "
            "configured in the console (daily or monthly, counted in UTC)",
            "raise the limit value (console: General Management, Settings, traffic threshold) "
            "or wait for the next UTC day or month",
        ),
    ),
    "E000106": (
        "the application has no permission (capability) to call the send API",
        "check in the console that the application may send (domestic or international, as "
        "the access address) and that the SMS service is enabled; Huawei support can enable it",
    ),
}


class _AddressRecordingAdapter(HTTPAdapter):
    """A requests adapter that notes the local address of each connection it opens.

    Read from the connection's socket right after the connect, so it is known even when the
    provider closes the connection with its answer. Through an HTTP proxy (a different pool
    manager) nothing is recorded, and the check says the address is unknown.
    """

    def __init__(self) -> None:
        self.local_address: str | None = None
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        adapter = self

        class Plain(urllib3.connection.HTTPConnection):
            def connect(self) -> None:
                super().connect()
                adapter.local_address = str(self.sock.getsockname()[0])

        class Tls(urllib3.connection.HTTPSConnection):
            def connect(self) -> None:
                super().connect()
                adapter.local_address = str(self.sock.getsockname()[0])

        class PlainPool(urllib3.connectionpool.HTTPConnectionPool):
            ConnectionCls = Plain

        class TlsPool(urllib3.connectionpool.HTTPSConnectionPool):
            ConnectionCls = Tls

        self.poolmanager.pool_classes_by_scheme = {"http": PlainPool, "https": TlsPool}


def _code(response: requests.Response) -> str | None:
    try:
        payload = response.json()
    except (ValueError, RecursionError):
        return None
    if not isinstance(payload, dict):
        return None
    raw = payload.get("code", payload.get("error_code"))
    return raw if isinstance(raw, str) and raw else None


def _offset(ours: float, date: str | None) -> float | None:
    """Our time minus the ``Date`` header's (RFC 9110 IMF-fixdate); None if absent or bad."""
    if not date:
        return None
    try:
        theirs = parsedate_to_datetime(date).timestamp()
    except (TypeError, ValueError, IndexError):
        return None
    # The header truncates to the second: on average the provider's time was half a second on.
    return ours - (theirs + 0.5)
