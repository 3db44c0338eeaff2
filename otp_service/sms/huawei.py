"""Huawei Cloud Message & SMS: ``batchSendSms`` with X-WSSE auth, provider codes → our errors.

Facts come from ``reference/huawei-sms.md`` (§ numbers below). Two rules shape this module:

* **Never two SMS for one call.** The only retry is after a connection was *refused*: the TCP
  handshake failed, so not one byte of the request left this process. A read timeout, a reset
  after connecting, or an unreadable answer may all follow a message the platform accepted, so
  they become :class:`ProviderUnavailable` and are not retried.
* **Every provider code has a class.** Permanent problems (configuration, template, number) are
  :class:`ProviderRejected`; transient ones (5xx, throttling, frozen account awaiting top-up) are
  :class:`ProviderUnavailable`. Both carry ``provider_code`` (or ``http_status``) for the caller.

Logs carry the provider's ``smsMsgId`` and the masked number, never the code, the number or the
App Secret.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote, urlencode

import requests
import urllib3.exceptions
from requests.auth import AuthBase

from otp_service.clock import Clock, SystemClock
from otp_service.core.phone import mask_phone
from otp_service.errors import (
    ConfigurationError,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
)
from otp_service.settings import Settings
from otp_service.sms._http import Answer, deadline_after, fetch, pooled_session
from otp_service.sms._wsse import valid_app_key, wsse_headers
from otp_service.sms.base import SendResult, SmsMessage

log = logging.getLogger(__name__)

# Transport failures before the request was written: the provider provably has nothing, so an
# idempotent retry may run the send again.
NEVER_WRITTEN = frozenset({"connect_timeout", "connection_refused", "tls"})

SEND_PATH = "/sms/batchSendSms/v1"
#: Route of our status-report callback (``api_callbacks.py``), appended to ``OTP_PUBLIC_URL``.
STATUS_CALLBACK_PATH = "/callbacks/huawei/status"
#: Where the path form puts the token: ``{CALLBACK_PREFIX}/<token>/status`` (and ``/uplink``).
CALLBACK_PREFIX = "/callbacks/huawei"
ACCEPTED = "000000"
#: A verification template's single variable holds at most 8 characters (§6.2, §9).
MAX_VERIFY_VARIABLE = 8
#: Pause before the single retry after a refused connection (a restarting proxy, a DNS flip).
RETRY_PAUSE_SECONDS = 0.05

Kind = Literal["rejected", "unavailable", "ignore"]


@dataclass(frozen=True, slots=True)
class ProviderCode:
    """Our reading of one Huawei code: what it means and which error it becomes.

    ``account`` marks operator problems: account-state codes (reference: "A") and the account
    or configuration faults no caller can cause or fix — our clock (E000110), our server's
    address missing from the application's whitelist (E000620). Ops must act, so they log as
    errors, and the error's ``operator_problem`` carries it to the audit line and the metrics.
    """

    kind: Kind
    meaning: str
    account: bool = False


def _rej(meaning: str, *, account: bool = False) -> ProviderCode:
    return ProviderCode("rejected", meaning, account)


def _unav(meaning: str, *, account: bool = False) -> ProviderCode:
    return ProviderCode("unavailable", meaning, account)


#: Whole-request ``code`` values (§3.1) and per-number ``status`` values (§3.2): what the send
#: APIs answer. The management API's MSGSMS.* codes (§3.3) never come here; they are read in
#: ``huawei_manage.py``. ``docs/huawei.md`` renders this table.
PROVIDER_CODES: dict[str, ProviderCode] = {
    "E000000": _rej("platform could not parse the request (often templateParas quoting)"),
    "E000001": _rej("Authorization header missing, or bad secret / digest / Created"),
    "E000002": _rej("realm missing in Authorization"),
    "E000003": _rej("profile missing in Authorization"),
    "E000004": _rej("realm is not SDP"),
    "E000005": _rej("profile is not UsernameToken"),
    "E000006": _rej("type is not Appkey"),
    "E000007": _rej("type missing in Authorization"),
    "E000008": _rej("Authorization does not contain WSSE"),
    "E000020": _rej("X-WSSE header missing"),
    "E000021": _rej("X-WSSE lacks Username"),
    "E000022": _rej("X-WSSE lacks Nonce"),
    "E000023": _rej("X-WSSE lacks Created"),
    "E000024": _rej("X-WSSE lacks PasswordDigest"),
    "E000025": _rej("bad Created format"),
    "E000026": _rej("X-WSSE lacks UsernameToken"),
    "E000027": _rej("illegal request"),
    "E000040": _rej("wrong Content-Type"),
    "E000041": _rej("X-Sdk-Date empty"),
    "E000042": _rej("X-Sdk-Date malformed"),
    "E000043": _rej("Authorization malformed (AK/SK)"),
    "E000044": _rej("X-Sdk-Date expired (fix the clock)"),
    "E000045": _rej("AK/SK signature check failed"),
    "E000101": _rej("authentication failed", account=True),
    "E000102": _rej("app_key invalid (or wrong access address)", account=True),
    "E000103": _rej("app_key unavailable (application state not normal)", account=True),
    "E000104": _rej("app_secret invalid", account=True),
    "E000105": _rej("PasswordDigest invalid", account=True),
    "E000106": _rej("app_key has no permission for this API", account=True),
    "E000107": _rej("undocumented authentication error"),
    "E000108": _rej("undocumented authentication error"),
    "E000109": _rej("subscriber not activated", account=True),
    "E000110": _rej("Created too far from server time (fix the clock)", account=True),
    "E000111": _rej("no user found for the app_key", account=True),
    "E000112": _unav("subscriber frozen (arrears or violation)", account=True),
    "E000503": _rej("parameter format error"),
    "E000510": _rej("send failed, see per-number status"),
    "E000620": _rej("client IP not in the application's whitelist", account=True),
    "E000623": _unav("sending volume hit the configured limit", account=True),
    "E000630": _unav("country or region volume limit reached", account=True),
    "E000632": _rej("receiver is in a configured number blacklist"),
    "E200015": _unav("too many messages pending"),
    "E200018": _rej("sender channel check failed"),
    "E200019": _rej("sender channel match failed"),
    "E200020": _rej("signature channel check failed"),
    "E200021": _rej("signature channel match failed"),
    "E200022": _rej("receiver channel check failed"),
    "E200023": _rej("receiver channel match failed"),
    "E200025": _rej("international receiver channel check failed"),
    "E200026": _rej("international receiver channel match failed"),
    "E200027": _rej("no gateway matched"),
    "E200028": _rej("template variable check failed"),
    "E200029": _rej("template type check failed"),
    "E200030": _rej("template not activated"),
    "E200031": _rej("protocol check failed"),
    "E200032": _rej("message requires a template"),
    "E200033": _rej("template type incorrect"),
    "E200034": _unav("retransmission timed out"),
    "E200035": _rej("protocol field replacement failed"),
    "E200036": _rej("southbound rate configured as 0", account=True),
    "E200037": _rej("send failed"),
    "E200038": _unav("long-message parts incomplete"),
    "E200041": ProviderCode("ignore", "duplicate number in the request"),
}


def classify(code: str, http_status: int) -> ProviderCode:
    """Our reading of ``code``; unknown codes follow the HTTP status (5xx → transient)."""
    known = PROVIDER_CODES.get(code)
    if known is not None:
        return known
    if http_status >= 500 or http_status == 429:
        return _unav("unknown provider code")
    return _rej("unknown provider code")


def provider_error(code: str, http_status: int) -> ProviderError:
    """The error a caller sees for ``code``; the detail names our meaning, never the message."""
    reading = classify(code, http_status)
    detail = f"Huawei SMS answered {code}: {reading.meaning}."
    error: ProviderError
    if reading.kind == "unavailable":
        error = ProviderUnavailable(detail, provider_code=code, http_status=http_status)
    else:
        error = ProviderRejected(detail, provider_code=code, http_status=http_status)
    error.operator_problem = reading.account
    return error


class _WsseAuth(AuthBase):
    """Signs each prepared request with a fresh nonce and ``Created``.

    Being the request's ``auth`` also stops requests from substituting ``~/.netrc`` credentials
    for our headers, while proxy variables from the environment keep working.
    """

    def __init__(self, gateway: HuaweiSmsGateway) -> None:
        self._gateway = gateway

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        g = self._gateway
        r.headers.update(
            wsse_headers(g.app_key, g._app_secret, nonce=g._new_nonce(), now=g._clock.now())
        )
        return r


class HuaweiSmsGateway:
    """Sends one verification code per call through ``batchSendSms`` (§1.2).

    :param endpoint: the application's APP access address, e.g.
        ``https://smsapi.cn-north-4.myhuaweicloud.com:443``.
    :param sender: channel number (``from``), ``csms…``/``1069…`` domestic or ``isms…``.
    :param template_id: approved verification template with exactly one variable (the code).
    :param signature: sent only for a universal (通用) template on a domestic channel (§1.2).
    :param status_callback: URL for delivery reports, token included (see :meth:`from_settings`).
    :param timeout: seconds for the whole call (connect, request, the complete answer, and the
        retry after a refused connection); passing it after the request was written is final.
    :param clock: time source for ``Created``; nonce_factory: fresh nonce per request.
    :param session: a pooled session to reuse (one is built with no transport retries).
    :param sleep: pause before the single refused-connection retry (tests hook it).
    """

    name = "huawei"

    def __init__(
        self,
        *,
        endpoint: str,
        app_key: str,
        app_secret: str,
        sender: str,
        template_id: str,
        signature: str | None = None,
        status_callback: str | None = None,
        timeout: float = 5.0,
        clock: Clock | None = None,
        nonce_factory: Callable[[], str] | None = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = endpoint.rstrip("/") + SEND_PATH
        self.app_key = app_key
        self._app_secret = app_secret
        self.sender = sender
        self.template_id = template_id
        self.signature = signature
        self.status_callback = status_callback
        self.timeout = timeout
        self._clock = clock or SystemClock()
        self._new_nonce = nonce_factory or (lambda: uuid.uuid4().hex)
        self._sleep = sleep
        self._auth = _WsseAuth(self)
        self._session = session or pooled_session()

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: object) -> HuaweiSmsGateway:
        """Build from ``OTP_HUAWEI_*``, ``OTP_PUBLIC_URL`` and ``OTP_CALLBACK_TOKEN``.

        The callback secret travels in the ``statusCallback`` URL, as a path segment by default
        (``OTP_CALLBACK_URL_FORM``): Huawei's per-request push has no authentication of its own
        unless push AK/SK is enabled in the console, and the URL is the one thing we control.

        :raises ConfigurationError: missing settings, or a code longer than a verification
            template's variable allows.
        """
        missing = [
            name
            for name, value in (
                ("OTP_HUAWEI_ENDPOINT", settings.huawei_endpoint),
                ("OTP_HUAWEI_APP_KEY", settings.huawei_app_key),
                ("OTP_HUAWEI_APP_SECRET", settings.huawei_app_secret),
                ("OTP_HUAWEI_SENDER", settings.huawei_sender),
                ("OTP_HUAWEI_TEMPLATE_ID", settings.huawei_template_id),
            )
            if not value
        ]
        if missing:
            raise ConfigurationError(f"{', '.join(missing)}: required for the Huawei gateway")
        if not valid_app_key(settings.huawei_app_key or ""):
            raise ConfigurationError(
                "OTP_HUAWEI_APP_KEY: must not contain quotes, commas, backslashes or spaces"
            )
        if settings.code_length > MAX_VERIFY_VARIABLE:
            raise ConfigurationError(
                f"OTP_CODE_LENGTH: Huawei verification templates allow at most "
                f"{MAX_VERIFY_VARIABLE} characters"
            )
        status_callback = None
        if settings.public_url:
            if not settings.callback_token:
                raise ConfigurationError(
                    "OTP_CALLBACK_TOKEN: required when OTP_PUBLIC_URL is set, or every delivery "
                    "report would be refused"
                )
            status_callback = status_callback_url(
                settings.public_url, settings.callback_token, settings.callback_url_form
            )
        assert settings.huawei_endpoint and settings.huawei_app_key  # noqa: S101 - checked above
        assert settings.huawei_app_secret and settings.huawei_sender  # noqa: S101
        assert settings.huawei_template_id  # noqa: S101
        return cls(
            endpoint=settings.huawei_endpoint,
            app_key=settings.huawei_app_key,
            app_secret=settings.huawei_app_secret,
            sender=settings.huawei_sender,
            template_id=settings.huawei_template_id,
            signature=settings.huawei_signature,
            status_callback=status_callback,
            timeout=settings.huawei_timeout,
            **overrides,  # type: ignore[arg-type]
        )

    def close(self) -> None:
        """Release pooled connections."""
        self._session.close()

    def form(self, message: SmsMessage) -> dict[str, str]:
        """The ``batchSendSms`` form fields for ``message`` (public for docs and tests)."""
        params = list(message.template_params) or [message.code]
        form = {
            "from": self.sender,
            "to": message.to,
            "templateId": self.template_id,
            # A JSON array *of strings*, so a code like 002569 keeps its leading zeros (§1.2).
            "templateParas": json.dumps(params, separators=(",", ":"), ensure_ascii=False),
        }
        if self._wants_signature(message.to):
            assert self.signature is not None  # noqa: S101 - checked by _wants_signature
            form["signature"] = self.signature
        if self.status_callback:
            form["statusCallback"] = self.status_callback
        return form

    def _wants_signature(self, to: str) -> bool:
        # Signatures exist only for Chinese-mainland SMS on a domestic channel, and matter only
        # for universal templates — configuring OTP_HUAWEI_SIGNATURE is how the operator says so.
        return bool(self.signature) and to.startswith("+86") and not self.sender.startswith("isms")

    def send(self, message: SmsMessage) -> SendResult:
        """Send ``message``; at most one request can reach the provider.

        :raises ProviderRejected: the provider refused it for good (config, template, number).
        :raises ProviderUnavailable: transient failure, timeout, or an unreadable answer.
        """
        masked = mask_phone(message.to)
        response = self._post(self.form(message), masked)
        return self._interpret(response, message.to, masked)

    def _post(self, form: Mapping[str, str], masked: str) -> Answer:
        body = urlencode(form)
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
        }
        # One deadline for the whole call, the retry after a refused connection included.
        deadline = deadline_after(self.timeout)
        for attempt in (1, 2):
            try:
                return fetch(
                    self._session,
                    "POST",
                    self.url,
                    deadline=deadline,
                    data=body,
                    headers=headers,
                    auth=self._auth,
                )
            except requests.ConnectTimeout as exc:
                raise self._network_error("connect_timeout", masked) from exc
            except requests.ReadTimeout as exc:
                # The request was written (a read timed out, or the call's deadline passed): it
                # may have been accepted and billed. Never retry.
                raise self._network_error("timeout", masked) from exc
            except requests.exceptions.SSLError as exc:
                raise self._network_error("tls", masked) from exc
            except requests.ConnectionError as exc:
                if attempt == 1 and refused_before_sending(exc):
                    log.warning(
                        "huawei sms: connection refused for %s; retrying once",
                        masked,
                        extra={"phone": masked},
                    )
                    self._sleep(RETRY_PAUSE_SECONDS)
                    continue
                reason = "connection_refused" if refused_before_sending(exc) else "connection"
                raise self._network_error(reason, masked) from exc
            except requests.RequestException as exc:
                raise self._network_error("request", masked) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _network_error(self, reason: str, masked: str) -> ProviderUnavailable:
        """The caller's error for a transport failure; ``retryable`` when nothing was written."""
        log.error(
            "huawei sms: %s sending to %s (not retried)", reason, masked, extra={"phone": masked}
        )
        details = {
            "timeout": "The SMS provider did not answer in time; the message may still arrive.",
            "connect_timeout": "The SMS provider could not be reached in time.",
            "connection_refused": "The SMS provider refused the connection.",
            "tls": "The SMS provider's TLS certificate could not be verified.",
        }
        detail = details.get(reason, "The connection to the SMS provider failed.")
        error = ProviderUnavailable(detail, reason=reason)
        error.retryable = reason in NEVER_WRITTEN
        return error

    def _interpret(self, response: Answer, to: str, masked: str) -> SendResult:
        status = response.status
        payload = _json_object(response.body)
        code = None
        if payload is not None:
            raw = payload.get("code", payload.get("error_code"))
            code = raw if isinstance(raw, str) and raw else None
        if code is None or (code == ACCEPTED and status != 200):
            raise self._http_error(status, masked)
        if code != ACCEPTED:
            assert payload is not None  # noqa: S101 - code came from it
            if code == "E000510":
                # Whole request failed "see per-number status": the number's own code says why.
                entry = _entry_for(payload, to)
                if entry is not None and entry.get("status") not in (None, ACCEPTED):
                    code = str(entry["status"])
            raise self._code_error(code, status, masked)
        assert payload is not None  # noqa: S101 - code came from it
        entry = _entry_for(payload, to)
        if entry is None:
            # Accepted but no per-number entry: treat as accepted, the report will tell.
            log.warning("huawei sms: accepted for %s without a result entry", masked)
            return SendResult(provider=self.name, message_id=None)
        number_status = str(entry.get("status", ACCEPTED))
        if number_status != ACCEPTED:
            raise self._code_error(number_status, status, masked)
        message_id = entry.get("smsMsgId")
        message_id = str(message_id) if message_id else None
        log.info(
            "huawei sms: accepted smsMsgId=%s to %s",
            message_id,
            masked,
            extra={"sms_msg_id": message_id, "phone": masked},
        )
        return SendResult(provider=self.name, message_id=message_id)

    def _http_error(self, status: int, masked: str) -> ProviderError:
        log.error("huawei sms: HTTP %s without a usable code for %s", status, masked)
        if status == 200:
            # The platform answered but we cannot read it: it may have accepted the message.
            return ProviderUnavailable(
                "The SMS provider's answer could not be read.", http_status=status
            )
        if status >= 500 or status == 429:
            return ProviderUnavailable(
                f"The SMS provider answered HTTP {status}.", http_status=status
            )
        # 404 almost always means a wrong access address (§1.1): configuration, not luck.
        return ProviderRejected(f"The SMS provider answered HTTP {status}.", http_status=status)

    def _code_error(self, code: str, status: int, masked: str) -> ProviderError:
        reading = classify(code, status)
        level = logging.ERROR if reading.account or reading.kind == "rejected" else logging.WARNING
        log.log(
            level,
            "huawei sms: %s (%s) for %s%s",
            code,
            reading.meaning,
            masked,
            " - account needs attention" if reading.account else "",
            extra={"provider_code": code, "phone": masked},
        )
        return provider_error(code, status)


def status_callback_url(public_url: str, token: str, form: str = "path") -> str:
    """The ``statusCallback`` we send; the URL carries the shared secret.

    ``path``: ``{public_url}/callbacks/huawei/{token}/status`` — nothing is lost if the platform
    drops a query string (whether it keeps one is undocumented, sms_05_0001). ``query``:
    ``{public_url}/callbacks/huawei/status?token=…``, the form earlier versions sent.
    """
    base = public_url.rstrip("/")
    if form == "query":
        return base + STATUS_CALLBACK_PATH + "?" + urlencode({"token": token})
    return f"{base}{CALLBACK_PREFIX}/{quote(token, safe='')}/status"


def refused_before_sending(exc: BaseException) -> bool:
    """True only if the TCP connect itself was refused, so no byte of the request was written.

    requests wraps this as ``ConnectionError(MaxRetryError(reason=NewConnectionError))`` with a
    ``ConnectionRefusedError`` underneath; a reset or disconnect after connecting also becomes a
    ``ConnectionError`` and must *not* count.
    """
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    new_connection = refused = False
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        new_connection |= isinstance(current, urllib3.exceptions.NewConnectionError)
        refused |= isinstance(current, ConnectionRefusedError)
        linked = (
            current.__cause__,
            current.__context__,
            getattr(current, "reason", None),
            *current.args,
        )
        stack.extend(item for item in linked if isinstance(item, BaseException))
    return new_connection and refused


def _json_object(body: bytes) -> dict[str, object] | None:
    """The answer as a JSON object, or None for anything unreadable.

    Unreadable includes nesting past the recursion limit (``RecursionError``, not a
    ``ValueError``): left uncaught it became a 500 although the platform may have accepted the
    message, so it must reach the caller as an unknown outcome like any other unreadable answer.
    """
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return payload if isinstance(payload, dict) else None


def _entry_for(payload: Mapping[str, object], to: str) -> Mapping[str, object] | None:
    """Our number's ``result`` entry; a duplicate's ``E200041`` copy is never preferred."""
    result = payload.get("result")
    if not isinstance(result, list):
        return None
    entries = [e for e in result if isinstance(e, dict)]
    bare = to.lstrip("+")
    mine = [e for e in entries if str(e.get("originTo", "")).lstrip("+") in (bare, bare[2:])]
    candidates = mine or entries
    for entry in candidates:
        if entry.get("status") != "E200041":
            return entry
    return candidates[0] if candidates else None
