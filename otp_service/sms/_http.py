"""One HTTP call to Huawei with a total deadline and a body cap (issue 20.5).

requests' ``timeout`` bounds each socket operation, not the call: a provider that answers 200
and then drips its body a byte every 1.5 s kept a send busy for 28.5 s against a 2 s timeout,
and eight of them held every worker thread, so ``/verify`` starved. Every Huawei call (send,
diff send, IAM token, management reads) therefore goes through :func:`fetch`, which

* stops at a monotonic **deadline** fixed before the first attempt, so connect, writing the
  request, the status line, headers and the whole body together never outlast it. A watchdog
  timer shuts the connection's socket down at the deadline, which wakes a read blocked at any
  point — TLS handshake, header line, chunk framing, body — where a per-read timeout would be
  renewed by every byte that arrives;
* reads the body itself (streamed) and keeps at most :data:`MAX_BODY_BYTES` of it: an answer
  larger than that is not one Huawei sends, and buffering it would let a broken proxy fill the
  worker's memory. Such a body comes back empty with ``oversized`` set, so every caller's parser
  treats it as the unreadable answer it is;
* always closes what it opened, and hands back plain bytes, so no caller reads a response
  lazily after the deadline.

Expiry is reported as a requests timeout so the callers' existing mapping stays the single
place that decides what an outcome means: :class:`requests.ConnectTimeout` when the request was
certainly not written yet (nothing can have been sent), :class:`requests.ReadTimeout` once it
may have been (an unknown outcome: the platform may have accepted the message).
"""

from __future__ import annotations

import contextvars
import logging
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.response import HTTPResponse

log = logging.getLogger(__name__)

#: Largest answer we read. A batchSendDiffSms answer for 500 numbers is about 125 KB; nothing
#: Huawei documents comes near 1 MiB.
MAX_BODY_BYTES = 1024 * 1024
CHUNK_BYTES = 16 * 1024


@dataclass(frozen=True, slots=True)
class Answer:
    """A provider's complete answer, read within the deadline.

    ``body`` is empty when ``oversized``: the answer was larger than the cap, so it is
    unreadable, and a caller parsing it sees exactly that.
    """

    status: int
    headers: Mapping[str, str]
    body: bytes
    oversized: bool = False


def deadline_after(seconds: float) -> float:
    """The monotonic instant ``seconds`` from now: fix it once per provider call, retries
    included, and pass it to every :func:`fetch` of that call."""
    return time.monotonic() + seconds


def pooled_session(pool_maxsize: int = 16) -> requests.Session:
    """A session whose connections the deadline's watchdog can cut at any phase.

    No transport-level retries: the only retry a caller may make is its own, after a refused
    connection, when nothing was written.
    """
    session = requests.Session()
    session.verify = True
    adapter = _DeadlineAdapter(pool_connections=1, pool_maxsize=pool_maxsize, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def fetch(
    session: requests.Session,
    method: str,
    url: str,
    *,
    deadline: float,
    max_body: int = MAX_BODY_BYTES,
    **kwargs: Any,
) -> Answer:
    """Make one request and read its whole answer before ``deadline`` (``time.monotonic()``).

    ``kwargs`` go to :meth:`requests.Session.request` (``data``, ``json``, ``headers``,
    ``auth``, ``params``); ``timeout``, ``stream`` and ``allow_redirects`` are ours.

    :raises requests.ConnectTimeout: the deadline passed before the request was written.
    :raises requests.ReadTimeout: it passed afterwards; the outcome is unknown.
    :raises requests.RequestException: any other transport failure, unchanged.
    """
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise requests.ConnectTimeout("deadline passed before the request was sent")
    watch = _Watch(remaining)
    token = _CURRENT.set(watch)
    response: requests.Response | None = None
    try:
        response = session.request(
            method,
            url,
            timeout=(remaining, remaining),
            stream=True,
            allow_redirects=False,
            **kwargs,
        )
        # A session without our adapter (a proxy, a caller's own): the body is still watched.
        watch.attach(_socket_of(response), written=True)
        body, oversized = _read_body(response, max_body)
        if oversized:
            log.warning("provider answer to %s exceeded %s bytes: unreadable", url, max_body)
        return Answer(response.status_code, response.headers, body, oversized)
    except requests.RequestException as exc:
        # A connect that timed out on its own keeps its meaning (nothing was written); only a
        # failure the watchdog caused becomes the deadline's timeout.
        if watch.fired and not isinstance(exc, requests.ConnectTimeout):
            raise watch.expired() from exc
        raise
    finally:
        watch.stop()
        _CURRENT.reset(token)
        if response is not None:
            if watch.fired:
                response.raw.close()  # the socket is shut down: never back into the pool
            response.close()


def _read_body(response: requests.Response, max_body: int) -> tuple[bytes, bool]:
    """The decoded body, or ``(b"", True)`` as soon as it grows past ``max_body``."""
    parts: list[bytes] = []
    size = 0
    for chunk in response.iter_content(CHUNK_BYTES):
        size += len(chunk)
        if size > max_body:
            return b"", True
        parts.append(chunk)
    return b"".join(parts), False


class _Watch:
    """Cuts one call's connection at its deadline; ``stop`` guarantees it never cuts later.

    The lock orders ``fire`` against ``stop``: once ``stop`` returned, the socket (which may go
    back to the pool and serve another call) is never touched again.
    """

    def __init__(self, remaining: float) -> None:
        self.fired = False
        self._written = False
        self._sock: socket.socket | None = None
        self._done = False
        self._lock = threading.Lock()
        self._timer = threading.Timer(remaining, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def attach(self, sock: socket.socket | None, *, written: bool) -> None:
        with self._lock:
            if sock is not None:
                self._sock = sock
            self._written |= written
            if self.fired:
                _shutdown(sock)

    def expired(self) -> requests.Timeout:
        """The timeout that says whether the request can have reached the provider."""
        if self._written:
            return requests.ReadTimeout("provider call exceeded its deadline")
        return requests.ConnectTimeout("deadline passed before the request was sent")

    def stop(self) -> None:
        with self._lock:
            self._done = True
        self._timer.cancel()

    def _fire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.fired = True
            _shutdown(self._sock)


_CURRENT: contextvars.ContextVar[_Watch | None] = contextvars.ContextVar(
    "otp_http_watch", default=None
)


def _shutdown(sock: socket.socket | None) -> None:
    if sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed or never connected: nothing left to wake


def _socket_of(response: requests.Response) -> socket.socket | None:
    raw = response.raw
    connection = raw.connection if isinstance(raw, HTTPResponse) else None
    sock = getattr(connection, "sock", None)
    return sock if isinstance(sock, socket.socket) else None


class _Watched:
    """Hands each socket to the current call's watch: when it is created (so a stalled TLS
    handshake is cut too, and counts as not written) and when the request starts to go out
    (a reused connection's socket; from here on the outcome may be unknown)."""

    sock: socket.socket | None

    def _new_conn(self) -> socket.socket:
        sock: socket.socket = super()._new_conn()  # type: ignore[misc]
        watch = _CURRENT.get()
        if watch is not None:
            watch.attach(sock, written=False)
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        watch = _CURRENT.get()
        if watch is not None:
            watch.attach(self.sock, written=True)
        super().request(*args, **kwargs)  # type: ignore[misc]


class _WatchedHTTPConnection(_Watched, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_Watched, HTTPSConnection):
    pass


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class _DeadlineAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _WatchedHTTPPool,
            "https": _WatchedHTTPSPool,
        }
