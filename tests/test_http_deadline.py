"""``otp_service.sms._http.fetch`` against scripted loopback servers (issue 20.5).

Each server speaks raw bytes on a real socket, so the test controls exactly when each byte of
the status line, headers and body leaves: the slow answers a per-read timeout never catches.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import requests

from otp_service.sms._http import Answer, deadline_after, fetch, pooled_session

#: Seconds the call may overrun its deadline: a watchdog thread wakes, one read returns.
MARGIN = 0.5
DEADLINE = 0.6
Script = Callable[[socket.socket], None]


class ScriptedServer:
    """A loopback listener that hands each connection to ``script`` in a thread of its own.

    ``closed`` is set when a connection's peer (our client) closed it: the proof that the
    client released its socket rather than leaving it to the pool half-read.
    """

    def __init__(self, script: Script) -> None:
        self._script = script
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self.closed = threading.Event()
        self.connections = 0
        self._conns: list[socket.socket] = []
        self._accepter = threading.Thread(target=self._accept, daemon=True)
        self._accepter.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def wait(self, seconds: float) -> bool:
        """Sleep in the script unless the server is stopping (then return True)."""
        return self._stopping.wait(seconds)

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            self._conns.append(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        with conn:
            try:
                while True:  # keep-alive: one script run per request on this connection
                    _read_request(conn)
                    self._script(conn)
            except TimeoutError:
                return
            except OSError:
                self.closed.set()  # EOF, reset or broken pipe: the client closed its end

    def stop(self) -> None:
        self._stopping.set()
        for sock in (self._listener, *self._conns):
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes a blocked accept() or recv()
            except OSError:
                pass
        self._listener.close()
        self._accepter.join(timeout=5)
        for thread in self._threads:
            thread.join(timeout=5)


def _read_request(conn: socket.socket) -> None:
    """Read headers and a ``Content-Length`` body, so the whole request has arrived."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            raise OSError("client left before sending a request")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        body += conn.recv(4096)


@pytest.fixture
def serve() -> Iterator[Callable[[Script], ScriptedServer]]:
    servers: list[ScriptedServer] = []

    def make(script: Script) -> ScriptedServer:
        server = ScriptedServer(script)
        servers.append(server)
        return server

    try:
        yield make
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with pooled_session() as session:
        yield session


def _head(length: int, status: str = "200 OK") -> bytes:
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def _call(session: requests.Session, url: str, **kwargs: object) -> tuple[Answer, float]:
    started = time.monotonic()
    answer = fetch(session, "POST", url, deadline=deadline_after(DEADLINE), data=b"x", **kwargs)
    return answer, time.monotonic() - started


def _expect(error: type[requests.RequestException], session: requests.Session, url: str) -> float:
    started = time.monotonic()
    with pytest.raises(error):
        fetch(session, "POST", url, deadline=deadline_after(DEADLINE), data=b"x")
    return time.monotonic() - started


def test_a_normal_answer_is_read_whole(
    serve: Callable[[Script], ScriptedServer], session: requests.Session
) -> None:
    body = b'{"code":"000000"}'
    server = serve(lambda conn: conn.sendall(_head(len(body), "201 Created") + body))
    answer, _ = _call(session, server.url)
    assert (answer.status, answer.body, answer.oversized) == (201, body, False)
    assert answer.headers["content-type"] == "application/json"


def test_a_body_dripped_inside_every_read_timeout_is_cut_at_the_deadline(
    serve: Callable[[Script], ScriptedServer], session: requests.Session
) -> None:
    """Each byte arrives well within the per-read timeout; the call still ends on time."""
    body = b'{"code":"000000","result":[]}'

    def drip(conn: socket.socket) -> None:
        conn.sendall(_head(len(body)))
        for index in range(len(body)):
            if server.wait(0.1):
                return
            conn.sendall(body[index : index + 1])

    server = serve(drip)
    elapsed = _expect(requests.ReadTimeout, session, server.url)
    assert DEADLINE - 0.05 <= elapsed < DEADLINE + MARGIN
    # The half-read connection is closed, not returned to the pool for another call.
    assert server.closed.wait(2)


def test_a_status_line_dripped_byte_by_byte_is_cut_at_the_deadline(
    serve: Callable[[Script], ScriptedServer], session: requests.Session
) -> None:
    """The headers phase too: the request was written, so the outcome is unknown."""

    def drip(conn: socket.socket) -> None:
        for byte in _head(2):
            if server.wait(0.1):
                return
            conn.sendall(bytes([byte]))

    server = serve(drip)
    elapsed = _expect(requests.ReadTimeout, session, server.url)
    assert elapsed < DEADLINE + MARGIN


def test_a_stalled_tls_handshake_is_a_connect_timeout_nothing_was_written(
    serve: Callable[[Script], ScriptedServer], session: requests.Session
) -> None:
    """A TCP peer that never answers the TLS hello: cut at the deadline, certainly not sent
    (urllib3 completes the handshake before it writes a byte of the request)."""
    server = serve(lambda conn: None)
    url = server.url.replace("http://", "https://")
    elapsed = _expect(requests.ConnectTimeout, session, url)
    assert elapsed < DEADLINE + MARGIN


def test_an_oversized_answer_comes_back_empty_and_marked(
    serve: Callable[[Script], ScriptedServer], session: requests.Session
) -> None:
    # Far past one read: the client must stop reading and close rather than drain it.
    body = b'{"code":"000000"}' + b" " * 200_000

    def answer(conn: socket.socket) -> None:
        try:
            conn.sendall(_head(len(body)) + body)
        except OSError:
            pass

    server = serve(answer)
    started = time.monotonic()
    result = fetch(
        session, "POST", server.url, deadline=deadline_after(DEADLINE), data=b"x", max_body=1024
    )
    assert time.monotonic() - started < DEADLINE
    assert (result.status, result.body, result.oversized) == (200, b"", True)
    assert server.closed.wait(2)


def test_a_deadline_already_passed_sends_nothing(
    serve: Callable[[Script], ScriptedServer], session: requests.Session
) -> None:
    server = serve(lambda conn: conn.sendall(_head(0)))
    with pytest.raises(requests.ConnectTimeout):
        fetch(session, "POST", server.url, deadline=time.monotonic() - 0.01, data=b"x")
    assert server.connections == 0


def test_a_connection_reused_after_a_cut_call_works(
    serve: Callable[[Script], ScriptedServer], session: requests.Session
) -> None:
    """The watchdog never touches a socket after its call ended: the pool stays healthy."""
    body = b"{}"
    server = serve(lambda conn: conn.sendall(_head(len(body)) + body))
    for _ in range(3):
        answer, _ = _call(session, server.url)
        assert answer.body == body
    time.sleep(DEADLINE + 0.1)  # past every earlier call's deadline: no late cut
    answer, _ = _call(session, server.url)
    assert answer.body == body
    assert server.connections == 1
