"""A strict loopback simulator of Huawei's ``POST /sms/batchSendSms/v1`` (reference §1-§3, §6.3).

A real :class:`http.server.ThreadingHTTPServer` on 127.0.0.1 (free port) in a thread. It checks
what the platform documents, so a wire mistake in the gateway fails a test instead of a launch:

* ``Authorization`` realm/profile/type and every ``X-WSSE`` field, with the digest recomputed
  here independently of ``otp_service.sms._wsse``, in both forms Huawei's own demos send
  (Base64 of the *hex* SHA-256 string, or of the 32 raw bytes); a wrong digest gives
  ``E000105``, ``Created`` 24 h or more away ``E000110``, a reused nonce ``E000101`` (replay
  checks are undocumented at Huawei; we are stricter on purpose, and say so at the check);
* form encoding (``E000040``), ``from``/``to``/``templateId`` shape (``E000503``), the
  ``templateParas`` JSON (``E000000``) and its variable rules (per-number ``E200028``),
  signatures for universal templates, ``statusCallback`` and ``extend``.

Where Huawei documents no code for a case, the choice is ours and a comment at the check says
so: the simulator must never be stricter than the platform without saying where.

It also plays the platform's pushes against a real server
(:meth:`HuaweiSimulator.push_status_report`, :meth:`~HuaweiSimulator.push_batch_reports`,
:meth:`~HuaweiSimulator.push_uplink`): per-request reports as forms, batch reports as JSON in
pushes of at most 50 (sms_05_0063), and uplinks percent-encoded, as raw UTF-8 or GB18030 bytes,
or in the ISO-8859-1 mis-decoding (sms_05_0004).

Accepted messages are recorded (tests read the code from what was "sent"); a message whose
channel cannot carry it is accepted but never reaches the phone, as on the real platform, so
:meth:`HuaweiSimulator.last_code` ignores it. :meth:`HuaweiSimulator.inject` queues faults:
any code, HTTP 5xx, latency, a timeout (latency past the client's timeout), a connection reset,
an unreadable body (raw bytes, or JSON nested past any parser's recursion limit), a body dripped
a byte at a time after prompt headers (``drip``), an oversized body (``pad``). Two account
faults are judged for real rather than injected: ``clock`` is the platform's time, so a skewed
one refuses ``Created`` with ``E000110`` and shows in every answer's ``Date`` header, and
``allowed_ips`` is the application's IP whitelist (``E000620`` for any other peer address).

Use it through the ``huawei_sim`` / ``huawei_sim_factory`` fixtures, or by hand:
``python -m tests.huawei_sim --port 8765``.
"""

from __future__ import annotations

import argparse
import base64
import calendar
import hashlib
import hmac
import json
import re
import socket
import struct
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, quote_plus, urlencode, urlsplit

import pytest

SEND_PATH = "/sms/batchSendSms/v1"
DIFF_PATH = "/sms/batchSendDiffSms/v1"
#: batchSendDiffSms: the whole body must stay under 64 KB (reference §1.3).
MAX_DIFF_BODY = 64 * 1024
APP_KEY = "c8RWg3ggEcyd4D3p94bf3Y7x1Ile"
APP_SECRET = "q4Ii87BhST9vcs8wvrzN80SfD7Al"
SENDER = "csms100000001"
INTERNATIONAL_SENDER = "isms100000001"
NOTIFY_SENDER = "csms100000002"
TEMPLATE_ID = "8ff55eac1d0b478ab3c06c3c6a492300"
UNIVERSAL_TEMPLATE_ID = "1f2c7e1a9b3d4c5e8f60718293a4b5c6"
TWO_VARIABLE_TEMPLATE_ID = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
INACTIVE_TEMPLATE_ID = "deadbeefdeadbeefdeadbeefdeadbeef"
SIGNATURE = "云服务验证"
MAX_SKEW_SECONDS = 24 * 3600
ACCEPTED = "000000"
FORM = "application/x-www-form-urlencoded"
#: The platform aggregates batch reports into pushes of at most this many (sms_05_0063).
MAX_BATCH_REPORTS = 50

_PARAM = re.compile(r'\s*([A-Za-z]+)="([^"]*)"\s*')
_CREATED = "%Y-%m-%dT%H:%M:%SZ"
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_DOMESTIC = re.compile(r"1[0-9]{10}")  # domestic mobiles may omit +86 (§1.2)
_NONCE = re.compile(r"[0-9A-Za-z]{1,128}")


@dataclass(frozen=True, slots=True)
class SimTemplate:
    """An approved template: one attribute and one maximum length per variable (§6.3)."""

    template_id: str
    variables: tuple[str, ...] = ("CHARDIGIT",)
    max_lengths: tuple[int, ...] = (8,)
    template_type: str = "VERIFY_CODE_TYPE"
    universal: bool = False
    active: bool = True


@dataclass(frozen=True, slots=True)
class SimChannel:
    """A channel number (``from``) and the template type its signature carries."""

    number: str
    template_type: str = "VERIFY_CODE_TYPE"
    international: bool = False


DEFAULT_TEMPLATES = (
    SimTemplate(TEMPLATE_ID),
    SimTemplate(UNIVERSAL_TEMPLATE_ID, universal=True),
    SimTemplate(TWO_VARIABLE_TEMPLATE_ID, ("CHARDIGIT", "TEXT"), (8, 20), "NOTIFY_TYPE"),
    SimTemplate(INACTIVE_TEMPLATE_ID, active=False),
)
DEFAULT_CHANNELS = (
    SimChannel(SENDER),
    SimChannel(NOTIFY_SENDER, template_type="NOTIFY_TYPE"),
    SimChannel(INTERNATIONAL_SENDER, international=True),
)


@dataclass(frozen=True, slots=True)
class Fault:
    """One injected misbehaviour, consumed by the next request.

    :param code: answer this whole-request code (after auth passed, as the platform would).
    :param http_status: answer this HTTP status with ``body`` (or an empty body).
    :param status: accept the request but give every number this per-number status.
    :param delay: seconds to wait before answering; past the client's timeout it is a timeout
        after which the message is still recorded (it may have been delivered).
    :param body: a raw body for the answer (e.g. unreadable JSON).
    :param reset: read the request, then reset the connection without answering.
    :param nesting: answer 200 with a JSON array nested this deep (``[[[…]]]``), past Python's
        recursion limit when large: valid-looking JSON that no ordinary parser can read.
    :param drip: seconds between body bytes: the status line and headers go out at once (with
        the real ``Content-Length``), then the body one byte at a time, so every socket read
        succeeds well within a per-read timeout while the answer takes ``len(body) × drip``.
        The message is recorded before the first byte, as the platform would have accepted it.
    :param pad: bytes of JSON whitespace appended to the answer's body (an oversized answer
        that is still valid JSON).
    """

    code: str | None = None
    http_status: int | None = None
    status: str | None = None
    delay: float = 0.0
    body: bytes | None = None
    reset: bool = False
    nesting: int = 0
    drip: float = 0.0
    pad: int = 0


@dataclass(slots=True)
class SentMessage:
    """A message the simulator accepted for one number."""

    sms_msg_id: str
    sender: str
    to: str
    template_id: str
    params: list[str]
    signature: str | None
    status_callback: str | None
    extend: str | None
    create_time: str
    final_status: str = "DELIVRD"

    @property
    def code(self) -> str:
        return self.params[0]


class _Rejection(Exception):
    def __init__(self, code: str, description: str) -> None:
        super().__init__(code)
        self.code = code
        self.description = description


def expected_digest(nonce: str, created: str, secret: str) -> str:
    """The platform's side of §2.1, written apart from the client's code on purpose.

    Base64 of the *hex* SHA-256 string (88 characters): Huawei's Python demo and the sample
    in the authentication page (sms_05_0046). Our gateway sends this form.
    """
    text = f"{nonce}{created}{secret}".encode()
    return base64.b64encode(hashlib.sha256(text).hexdigest().encode()).decode()


def expected_digests(nonce: str, created: str, secret: str) -> tuple[str, str]:
    """Both digests the platform's own demos send: hex-string form and raw-bytes form.

    Huawei's Go, Node.js and Java demos Base64 the 32 raw bytes (44 characters); the Python
    demo and the page's sample Base64 the hex string. The simulator accepts either, so it is
    never stricter than the platform those demos are written against.
    """
    raw = hashlib.sha256(f"{nonce}{created}{secret}".encode()).digest()
    return expected_digest(nonce, created, secret), base64.b64encode(raw).decode()


def http_status_for(code: str) -> int:
    """HTTP status per code family (§1.4, sms_05_0050).

    400 and 403 (E000620) are documented; 401 for E0001xx is the likely, undocumented value,
    and 500 for MSGSMS.0001 our reading of "internal server error".
    """
    if code == "E000620":
        return 403
    if code.startswith("E0001"):
        return 401
    if code == "MSGSMS.0001":
        return 500
    return 400


class _Server(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True

    def __init__(self, sim: HuaweiSimulator, address: tuple[str, int]) -> None:
        self.sim = sim
        self.open_connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler, bind_and_activate=False)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.connections_lock:
            self.open_connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.open_connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out and left is part of the test, not a simulator failure.
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    #: Set per request from its fault (:attr:`Fault.drip`, :attr:`Fault.pad`).
    drip = 0.0
    pad = 0

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def date_time_string(self, timestamp: float | None = None) -> str:
        # Every answer's ``Date`` comes from the simulated platform's clock, the one ``Created``
        # is judged against, so a skewed ``clock`` shows in both as it would at Huawei.
        return super().date_time_string(self.server.sim.clock() if timestamp is None else timestamp)

    def do_POST(self) -> None:
        sim = self.server.sim
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        sim._begin()
        try:
            path = urlsplit(self.path).path
            if path not in (SEND_PATH, DIFF_PATH):
                self._send(404, b"Not Found", "text/plain")
                return
            status, body = sim._handle(
                dict(self.headers.items()), raw, self, diff=path == DIFF_PATH
            )
            if status == 0:
                return
            body += b" " * self.pad
            self._send(status, body, "application/json;charset=UTF-8", drip=self.drip)
        finally:
            sim._end()

    def _send(self, status: int, body: bytes, content_type: str, *, drip: float = 0.0) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not drip:
            self.wfile.write(body)
            return
        self.wfile.flush()
        stopping = self.server.sim._stopping
        for index in range(len(body)):
            if stopping.wait(drip):
                return
            try:
                self.wfile.write(body[index : index + 1])
                self.wfile.flush()
            except OSError:
                return  # the client gave up (its deadline): nothing more to drip

    def reset_connection(self) -> None:
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True


class HuaweiSimulator:
    """The simulated platform. Start with :meth:`start` (or a ``with`` block), stop with
    :meth:`stop`; :attr:`url` is the APP access address to configure."""

    def __init__(
        self,
        *,
        app_key: str = APP_KEY,
        app_secret: str = APP_SECRET,
        templates: tuple[SimTemplate, ...] = DEFAULT_TEMPLATES,
        channels: tuple[SimChannel, ...] = DEFAULT_CHANNELS,
        signatures: frozenset[str] = frozenset({SIGNATURE}),
        clock: Callable[[], float] = time.time,
        allowed_ips: frozenset[str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.app_key = app_key
        self.app_secret = app_secret
        self.templates = {t.template_id: t for t in templates}
        self.channels = {c.number: c for c in channels}
        self.signatures = signatures
        #: The platform's time: ``Created`` is judged against it (E000110, really, not forced)
        #: and every answer's ``Date`` header shows it. Pass ``time.time() + offset`` to skew.
        self.clock = clock
        #: The application's IP whitelist (None: no whitelist, as by default at Huawei). A
        #: client address outside it gets 403 E000620, judged on the real peer address.
        self.allowed_ips = allowed_ips
        #: Extra seconds added to every answer.
        self.latency = 0.0
        self._server = _Server(self, (host, port))
        self._thread: threading.Thread | None = None
        self._lock = threading.Condition()
        self._faults: deque[Fault] = deque()
        self._nonces: set[str] = set()
        self._messages: list[SentMessage] = []
        self._received = 0
        self._in_flight = 0
        self._stopping = threading.Event()
        self._bound = False

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def bind(self) -> None:
        """Reserve the port without listening: connections are *refused* until :meth:`listen`."""
        if not self._bound:
            self._server.server_bind()
            self._bound = True

    def listen(self) -> None:
        """Start accepting connections and serving in a background thread."""
        self.bind()
        if self._thread is not None:
            return
        self._server.server_activate()
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def start(self) -> HuaweiSimulator:
        self.listen()
        return self

    def stop(self) -> None:
        """Stop serving, cut idle keep-alive connections, join every handler thread."""
        self._stopping.set()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        with self._server.connections_lock:
            for conn in list(self._server.open_connections):
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self._server.server_close()

    def __enter__(self) -> HuaweiSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- controls and observations -----------------------------------------------------------

    def inject(self, *faults: Fault) -> None:
        """Queue faults; each request consumes one, in order."""
        with self._lock:
            self._faults.extend(faults)

    @property
    def received(self) -> int:
        """POST requests that reached the simulator (accepted or not)."""
        with self._lock:
            return self._received

    @property
    def messages(self) -> list[SentMessage]:
        """Every message accepted so far, oldest first."""
        with self._lock:
            return list(self._messages)

    def delivered_to(self, to: str) -> list[SentMessage]:
        """Accepted messages to ``to`` that reach the handset (``DELIVRD``)."""
        return [m for m in self.messages if m.to == to and m.final_status == "DELIVRD"]

    def last_code(self, to: str) -> str | None:
        """The code in the newest message that reached ``to``'s handset."""
        delivered = self.delivered_to(to)
        return delivered[-1].code if delivered else None

    def wait_idle(self, timeout: float = 5.0) -> None:
        """Block until no request is being handled (a delayed answer has been recorded)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._in_flight:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("simulator still busy")
                self._lock.wait(left)

    def settings_overrides(self, **extra: Any) -> dict[str, Any]:
        """``Settings`` keyword arguments pointing the Huawei gateway at this simulator."""
        values: dict[str, Any] = {
            "sms_gateway": "huawei",
            "huawei_endpoint": self.url,
            "huawei_app_key": self.app_key,
            "huawei_app_secret": self.app_secret,
            "huawei_sender": SENDER,
            "huawei_template_id": TEMPLATE_ID,
            "huawei_timeout": 2.0,
        }
        values.update(extra)
        return values

    def status_report(self, message: SentMessage, status: str | None = None) -> dict[str, str]:
        """The form the platform would push to ``message.status_callback`` (§4.1)."""
        return {
            "sequence": "1",
            "total": "1",
            "orgCode": "000",
            "updateTime": time.strftime(_CREATED, time.gmtime(self.clock())),
            "source": "2",
            "smsMsgId": message.sms_msg_id,
            "status": status or message.final_status,
        }

    def uplink(self, sender: str, body: str, *, to: str = SENDER) -> dict[str, str]:
        """The form the platform would push to the application's uplink URL (§5)."""
        return {"smsMsgId": f"{uuid.uuid4()}_up", "from": sender, "to": to, "body": body}

    # -- pushes to the application, over HTTP ------------------------------------------------

    def push(self, url: str, body: bytes, content_type: str) -> int:
        """POST ``body`` to ``url`` as the platform pushes; the answer's HTTP status."""
        if urlsplit(url).scheme not in {"http", "https"}:
            raise ValueError(f"not an http(s) URL: {url!r}")
        request = urllib.request.Request(  # noqa: S310 - scheme checked above
            url, data=body, method="POST", headers={"Content-Type": content_type}
        )
        # No proxy from the environment: the application listens on loopback.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=5) as response:
                response.read()
                return int(response.status)
        except urllib.error.HTTPError as exc:
            exc.read()
            exc.close()
            return int(exc.code)

    def push_status_report(self, message: SentMessage, status: str | None = None) -> int:
        """Push one report to the message's ``statusCallback`` (§4.1, sms_05_0003)."""
        if message.status_callback is None:
            raise ValueError("the message carried no statusCallback: use push_batch_reports")
        body = urlencode(self.status_report(message, status)).encode()
        return self.push(message.status_callback, body, FORM)

    def push_batch_reports(
        self, url: str, messages: list[SentMessage], status: str | None = None
    ) -> list[int]:
        """Push reports as the platform aggregates them: JSON, at most 50 a push (sms_05_0063).

        :returns: the HTTP status of each push, in order.
        """
        statuses = []
        for start in range(0, len(messages), MAX_BATCH_REPORTS):
            chunk = messages[start : start + MAX_BATCH_REPORTS]
            reports = [self.status_report(m, status) for m in chunk]
            body = json.dumps({"statusReportList": reports}, ensure_ascii=False).encode()
            statuses.append(self.push(url, body, "application/json"))
        return statuses

    def push_uplink(
        self, url: str, sender: str, text: str, *, encoding: str = "percent", to: str = SENDER
    ) -> int:
        """Push an inbound SMS to the uplink URL (§5, sms_05_0004) with ``body`` encoded as:

        ``percent`` (percent-encoded UTF-8), ``raw`` (raw UTF-8 bytes), ``gb18030`` (raw
        GB18030 bytes), or ``latin1`` (the mis-decoding Huawei's FAQ describes: UTF-8 text read
        as ISO-8859-1, re-encoded as UTF-8, percent-encoded).
        """
        form = self.uplink(sender, text, to=to)
        head = urlencode({k: v for k, v in form.items() if k != "body"}).encode()
        if encoding == "percent":
            value = quote_plus(text).encode()
        elif encoding == "raw":
            value = text.encode()
        elif encoding == "gb18030":
            value = text.encode("gb18030")
        elif encoding == "latin1":
            value = quote_plus(text.encode().decode("latin-1")).encode()
        else:
            raise ValueError(f"unknown uplink encoding {encoding!r}")
        return self.push(url, head + b"&body=" + value, FORM)

    # -- the platform --------------------------------------------------------------------------

    def _begin(self) -> None:
        with self._lock:
            self._received += 1
            self._in_flight += 1

    def _end(self) -> None:
        with self._lock:
            self._in_flight -= 1
            self._lock.notify_all()

    def _handle(
        self, headers: dict[str, str], raw: bytes, handler: _Handler, *, diff: bool = False
    ) -> tuple[int, bytes]:
        with self._lock:
            fault = self._faults.popleft() if self._faults else Fault()
        handler.drip, handler.pad = fault.drip, fault.pad
        delay = self.latency + fault.delay
        if delay > 0:
            self._stopping.wait(delay)
        if fault.reset:
            handler.reset_connection()
            return 0, b""
        if fault.http_status is not None:
            body = fault.body
            if body is None and fault.code is not None:
                body = _error(fault.code, "injected")[1]
            return fault.http_status, body or b""
        if fault.body is not None:
            return 200, fault.body
        if fault.nesting:
            return 200, b"[" * fault.nesting + b"]" * fault.nesting
        try:
            if self.allowed_ips is not None and handler.client_address[0] not in self.allowed_ips:
                # Huawei documents E000620 with HTTP 403 (sms_05_0050) but not where it comes
                # among the checks; before authentication is our choice (an address is known
                # before any header is read).
                raise _Rejection("E000620", "client IP not in the whitelist")
            self._authenticate(headers)
            if fault.code is not None and fault.code != "E000510":
                return _error(fault.code, "injected")
            if diff:
                return self._send_diff(headers, raw, fault)
            form = self._form(headers, raw)
            return self._send(form, fault)
        except _Rejection as rejection:
            return _error(rejection.code, rejection.description)

    def _authenticate(self, headers: dict[str, str]) -> None:
        lower = {k.lower(): v for k, v in headers.items()}
        authorization = lower.get("authorization")
        if not authorization:
            raise _Rejection("E000001", "Authorization header missing")
        scheme, _, rest = authorization.partition(" ")
        if scheme != "WSSE":
            raise _Rejection("E000008", "Authorization does not contain WSSE")
        params = _params(rest)
        if "realm" not in params:
            raise _Rejection("E000002", "realm missing")
        if "profile" not in params:
            raise _Rejection("E000003", "profile missing")
        if params["realm"] != "SDP":
            raise _Rejection("E000004", "realm is not SDP")
        if params["profile"] != "UsernameToken":
            raise _Rejection("E000005", "profile is not UsernameToken")
        if "type" not in params:
            raise _Rejection("E000007", "type missing")
        if params["type"] != "Appkey":
            raise _Rejection("E000006", "type is not Appkey")

        wsse = lower.get("x-wsse")
        if not wsse:
            raise _Rejection("E000020", "X-WSSE header missing")
        kind, _, rest = wsse.partition(" ")
        if kind != "UsernameToken":
            raise _Rejection("E000026", "X-WSSE lacks UsernameToken")
        token = _params(rest)
        for name, code in (
            ("Username", "E000021"),
            ("Nonce", "E000022"),
            ("Created", "E000023"),
            ("PasswordDigest", "E000024"),
        ):
            if not token.get(name):
                raise _Rejection(code, f"X-WSSE lacks {name}")
        try:
            created = calendar.timegm(time.strptime(token["Created"], _CREATED))
        except ValueError:
            raise _Rejection("E000025", "bad Created format") from None
        if token["Username"] != self.app_key:
            raise _Rejection("E000102", "app_key invalid")
        if not _NONCE.fullmatch(token["Nonce"]):
            # The alphabet is documented (sms_05_0046), the code for breaking it is not: ours.
            raise _Rejection("E000027", "illegal request: bad nonce")
        given = token["PasswordDigest"].encode()
        digests = expected_digests(token["Nonce"], token["Created"], self.app_secret)
        # Both compared, always, so the answer's timing does not tell which form was tried.
        matches = [hmac.compare_digest(d.encode(), given) for d in digests]
        if not any(matches):
            raise _Rejection("E000105", "PasswordDigest invalid")
        if abs(self.clock() - created) >= MAX_SKEW_SECONDS:
            raise _Rejection("E000110", "Time out limit")
        with self._lock:
            # Whether the platform detects replays is undocumented (sms_05_0046), and so is the
            # code it would answer: E000101 here is our choice, kept so a gateway that reuses
            # nonces fails a test rather than a platform that may start checking.
            if token["Nonce"] in self._nonces:
                raise _Rejection("E000101", "Authentication failed: nonce reused")
            self._nonces.add(token["Nonce"])

    def _form(self, headers: dict[str, str], raw: bytes) -> dict[str, str]:
        content_type = {k.lower(): v for k, v in headers.items()}.get("content-type", "")
        if content_type.split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
            raise _Rejection("E000040", "Content-Type must be application/x-www-form-urlencoded")
        try:
            pairs = parse_qsl(raw.decode("ascii"), keep_blank_values=True, errors="strict")
        except (UnicodeDecodeError, ValueError):
            # E000000 is documented for an unparsable request (sms_05_0050); that raw non-ASCII
            # bytes are unparsable to the platform is our assumption (every value "must be
            # URL-encoded", sms_05_0001).
            raise _Rejection("E000000", "System error: body could not be parsed") from None
        form: dict[str, str] = {}
        for name, value in pairs:
            if name in form:
                # Huawei documents no code for a repeated field: E000503 is ours.
                raise _Rejection("E000503", f"{name} given twice")
            form[name] = value
        return form

    def _send(self, form: dict[str, str], fault: Fault) -> tuple[int, bytes]:
        sender = form.get("from", "")
        if not 1 <= len(sender) <= 21:
            raise _Rejection("E000503", "from missing or longer than 21")
        to_field = form.get("to", "")
        if not to_field or len(to_field) > 21999:
            raise _Rejection("E000503", "to missing")
        numbers = to_field.split(",")
        if len(numbers) > 500:
            raise _Rejection("E000503", "more than 500 numbers")
        if any(not n or len(n) > 21 or not set(n) <= set("+0123456789") for n in numbers):
            raise _Rejection("E000503", "bad number format")
        template_id = form.get("templateId", "")
        if not 1 <= len(template_id) <= 32:
            raise _Rejection("E000503", "templateId must be 1-32 chars")
        template = self.templates.get(template_id)
        signature = form.get("signature") or None
        if template is not None and template.universal:
            if signature is None or signature not in self.signatures:
                # Mandatory per sms_05_0001, which documents no code for its absence: E000503
                # (parameter error) is our choice.
                raise _Rejection("E000503", "universal template needs an approved signature")
        callback = form.get("statusCallback")
        if callback is not None:
            parts = urlsplit(callback)
            if parts.scheme not in {"http", "https"} or not parts.netloc:
                raise _Rejection("E000503", "statusCallback is not a URL")
        extend = form.get("extend")
        if extend is not None and (not 1 <= len(extend) <= 128 or set(extend) & set("{}")):
            raise _Rejection("E000503", "extend must be 1-128 chars without braces")
        params = self._params_of(form)

        # Per-number outcome: the template and its variables are checked for every number.
        template_status = ACCEPTED
        if template is None or not template.active:
            # E200030 is documented for a deactivated template (sms_05_0050); for an unknown
            # templateId Huawei documents no code, and E200030 there is our choice.
            template_status = "E200030"
        elif not _params_valid(template, params):
            template_status = "E200028"
        channel = self.channels.get(sender)
        if channel is None:
            final = "E200018"  # asynchronous failure: accepted, never delivered (§3.2)
        elif template is not None and channel.template_type != template.template_type:
            final = "E200019"
        else:
            final = "DELIVRD"

        created = time.strftime(_CREATED, time.gmtime(self.clock()))
        result = []
        seen: set[str] = set()
        accepted: list[SentMessage] = []
        for number in numbers:
            status = fault.status or template_status
            if number in seen:
                status = "E200041"
            elif not (_E164.fullmatch(number) or _DOMESTIC.fullmatch(number)):
                # An invalid number fails on its own (sms_05_0001); Huawei documents no code
                # for that per-number status, E000503 is our choice.
                status = "E000503"
            seen.add(number)
            msg_id = f"{uuid.uuid4()}_{len(self._messages) + len(accepted) + 1}"
            result.append(
                {
                    "smsMsgId": msg_id,
                    "from": sender,
                    "originTo": number,
                    "status": status,
                    "createTime": created,
                    "total": 1,
                }
            )
            if status == ACCEPTED and fault.code != "E000510":  # E000510: nothing was sent
                assert params is not None
                accepted.append(
                    SentMessage(
                        msg_id,
                        sender,
                        number,
                        template_id,
                        params,
                        signature,
                        callback,
                        extend,
                        created,
                        final,
                    )
                )
        with self._lock:
            self._messages.extend(accepted)
        if fault.code == "E000510":
            body = {"code": "E000510", "description": "Send failed", "result": result}
            return 200, json.dumps(body).encode()
        body = {"code": ACCEPTED, "description": "Success", "result": result}
        return 200, json.dumps(body).encode()

    def _send_diff(self, headers: dict[str, str], raw: bytes, fault: Fault) -> tuple[int, bytes]:
        """batchSendDiffSms (§1.3): JSON, one ``to`` array per content, real-array params.

        Each content goes through the same checks as a batchSendSms form, so both paths are
        exactly as strict; the answers are joined into one ``result`` list.
        """
        content_type = {k.lower(): v for k, v in headers.items()}.get("content-type", "")
        if content_type.split(";")[0].strip().lower() != "application/json":
            raise _Rejection("E000040", "Content-Type must be application/json")
        if len(raw) >= MAX_DIFF_BODY:
            raise _Rejection("E000503", "body must stay under 64 KB")  # our choice of code
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise _Rejection("E000000", "System error: body is not JSON") from None
        contents = body.get("smsContent") if isinstance(body, dict) else None
        if not isinstance(contents, list) or not contents:
            raise _Rejection("E000503", "smsContent missing")
        forms = []
        for content in contents:
            if not isinstance(content, dict):
                raise _Rejection("E000503", "smsContent entry is not an object")
            to, params = content.get("to"), content.get("templateParas", [])
            if not isinstance(to, list) or not all(isinstance(n, str) for n in to):
                raise _Rejection("E000503", "to must be an array of strings")
            if not isinstance(params, list):
                raise _Rejection("E000000", "System error: templateParas is not an array")
            form = {
                "from": body.get("from", ""),
                "to": ",".join(to),
                "templateId": content.get("templateId", ""),
                "templateParas": json.dumps(params, ensure_ascii=False),
            }
            for name, value in (
                ("signature", content.get("signature")),
                ("statusCallback", body.get("statusCallback")),
                ("extend", body.get("extend")),
            ):
                if value is not None:
                    form[name] = str(value)
            forms.append(form)
        results: list[Any] = []
        code = ACCEPTED
        for form in forms:
            answer = json.loads(self._send(form, fault)[1])
            results.extend(answer["result"])
            code = answer["code"]
        description = "Success" if code == ACCEPTED else "Send failed"
        return 200, json.dumps(
            {"code": code, "description": description, "result": results}
        ).encode()

    def _params_of(self, form: dict[str, str]) -> list[str] | None:
        raw = form.get("templateParas")
        if raw is None or raw == "":
            return []
        try:
            value = json.loads(raw)
        except ValueError:
            raise _Rejection("E000000", "System error: templateParas is not JSON") from None
        if not isinstance(value, list):
            raise _Rejection("E000000", "System error: templateParas is not an array")
        if not all(isinstance(item, str) for item in value):
            # Numbers instead of strings: Huawei documents only that leading zeros are lost
            # (sms_05_0001); failing the variable check (E200028) is our stricter choice.
            return None
        return value


def _params_valid(template: SimTemplate, params: list[str] | None) -> bool:
    """§6.3: count equals variables, each non-empty, within its length, in its character set."""
    if params is None or len(params) != len(template.variables):
        return False
    for value, kind, max_len in zip(params, template.variables, template.max_lengths, strict=True):
        if not 1 <= len(value) <= max_len or set(value) & set("'{}"):
            return False
        if kind == "CHARDIGIT" and not re.fullmatch(r"[A-Za-z0-9_]+", value):
            return False
        if kind == "TEXT" and set(value) & set(".。'<>{}"):
            return False
    return True


def _params(text: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for part in text.split(","):
        match = _PARAM.fullmatch(part)
        if match:
            found[match.group(1)] = match.group(2)
    return found


def _error(code: str, description: str) -> tuple[int, bytes]:
    if code.startswith("MSGSMS."):
        body = {"error_code": code, "error_msg": description}
    else:
        body = {"code": code, "description": description}
    return http_status_for(code), json.dumps(body).encode()


# -- pytest plugin -------------------------------------------------------------------------------


@pytest.fixture
def huawei_sim() -> Iterator[HuaweiSimulator]:
    """A running simulator for one test, stopped even when the test fails."""
    sim = HuaweiSimulator()
    sim.start()
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture
def huawei_sim_factory() -> Iterator[Callable[..., HuaweiSimulator]]:
    """Build simulators (not started) with custom options; all are stopped at teardown."""
    made: list[HuaweiSimulator] = []

    def make(**options: Any) -> HuaweiSimulator:
        sim = HuaweiSimulator(**options)
        made.append(sim)
        return sim

    try:
        yield make
    finally:
        for sim in made:
            sim.stop()


def main(argv: list[str] | None = None) -> None:
    """Serve until interrupted, printing each accepted message (codes included: it is fake)."""
    parser = argparse.ArgumentParser(prog="python -m tests.huawei_sim", description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--app-key", default=APP_KEY)
    parser.add_argument("--app-secret", default=APP_SECRET)
    args = parser.parse_args(argv)
    sim = HuaweiSimulator(app_key=args.app_key, app_secret=args.app_secret, port=args.port)
    sim.start()
    print(f"Huawei SMS simulator on {sim.url}")
    for name, value in sim.settings_overrides().items():
        print(f"  OTP_{name.upper()}={value}")
    shown = 0
    try:
        while True:
            time.sleep(0.5)
            messages = sim.messages
            for message in messages[shown:]:
                print(f"sent {message.sms_msg_id} to {message.to}: {message.params}", flush=True)
            shown = len(messages)
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()


if __name__ == "__main__":
    main()
