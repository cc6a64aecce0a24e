"""Read until EOF: a peer that closed reads as the end of the stream soon, not after 30 s.

KCP has no FIN.  A reader waiting for data probes its silent peer (KCP
window probes, which every KCP answers) and counts it as gone once a run of
probes went unanswered (``KCPConfig.gone_timeout``, ``Session._watch``).
These tests run the standard library's read-until-EOF idioms (HTTP/1.0
without Content-Length, ``makefile().read()``, iterating lines,
``shutil.copyfileobj``, selectors) against servers that write and close,
with kcpsock's defaults; that the end came from this mechanism and not from
the 30 s keep-alive is checked through ``session.failure`` ("gone") and the
readers' 10 s timeouts.  A live peer, busy or behind 20 % loss, is never
taken for gone.  Loopback only; every wait is bounded.
"""

from __future__ import annotations

import http.server
import io
import selectors
import shutil
import socketserver
import threading
from typing import Any, Callable

import pytest

import kcpsock
from kcpsock.relay import Relay
from kcpsock.socketserver import ThreadingKCPServer
from tests.helpers import has_ipv6_loopback, recv_exact, server_address

BODY = bytes(range(256)) * 800  # 200 kB
IO_TIMEOUT = 10.0  # far below keepalive_timeout (30 s): an EOF before it is ours


pytestmark = pytest.mark.usefixtures("finish_background_closes")


def _serve_once(
    reply: bytes, host: str = "127.0.0.1", **options: Any
) -> tuple[Any, threading.Thread]:
    """A kcpsock listener whose one session reads a request, writes ``reply`` and closes."""
    ln = kcpsock.listen((host, 0), **options)
    ln.settimeout(IO_TIMEOUT)

    def run() -> None:
        conn, _ = ln.accept()
        conn.settimeout(IO_TIMEOUT)
        conn.recv(100)
        conn.sendall(reply)
        conn.close()  # returns at once; delivers in the background

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return ln, t


def _serve_first(
    then: Callable[[Any], None], **options: Any
) -> tuple[Any, threading.Thread, threading.Event]:
    """A listener whose one session reads a request, writes b"first", then waits.

    When the returned event is set, the session runs ``then(conn)`` and closes.
    """
    go = threading.Event()
    ln = kcpsock.listen(("127.0.0.1", 0), **options)
    ln.settimeout(IO_TIMEOUT)

    def run() -> None:
        conn, _ = ln.accept()
        with conn:
            conn.settimeout(IO_TIMEOUT)
            conn.recv(100)
            conn.sendall(b"first")
            go.wait(IO_TIMEOUT)
            then(conn)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return ln, t, go


def _read_all(sock: Any) -> bytes:
    with sock.makefile("rb") as f:
        return bytes(f.read())


def _read_lines(sock: Any) -> bytes:
    with sock.makefile("r", encoding="latin-1", newline="") as f:
        return "".join(line for line in f).encode("latin-1")


def _copy(sock: Any) -> bytes:
    out = io.BytesIO()
    with sock.makefile("rb") as f:
        shutil.copyfileobj(f, out)
    return out.getvalue()


def _select_loop(sock: Any) -> bytes:
    """A selectors reader (non-blocking recv on EVENT_READ), as event loops read."""
    sock.setblocking(False)
    buf = bytearray()
    with selectors.DefaultSelector() as sel:
        sel.register(sock, selectors.EVENT_READ)
        while True:
            assert sel.select(IO_TIMEOUT), "no readiness within the timeout"
            try:
                chunk = sock.recv(65536)
            except BlockingIOError:
                continue
            if not chunk:
                return bytes(buf)
            buf += chunk


@pytest.mark.parametrize(
    "reader",
    [_read_all, _read_lines, _copy, _select_loop],
    ids=["makefile-read", "iterate-lines", "copyfileobj", "selectors"],
)
def test_reader_sees_eof_after_the_server_wrote_and_closed(reader: Callable[[Any], bytes]) -> None:
    ln, t = _serve_once(BODY)
    try:
        sock = kcpsock.create_connection(ln.getsockname(), timeout=IO_TIMEOUT)
        try:
            sock.sendall(b"request")
            assert reader(sock) == BODY
            assert sock.session.failure == "gone"  # probes, not the 30 s keep-alive
            with pytest.raises(ConnectionResetError, match="closed or vanished"):
                sock.send(b"more")
        finally:
            sock.close()
        t.join(IO_TIMEOUT)
    finally:
        ln.close()


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback")
def test_eof_over_ipv6_loopback() -> None:
    ln, t = _serve_once(BODY, host="::1")
    try:
        host, port = ln.getsockname()[:2]
        with kcpsock.create_connection((host, port), timeout=IO_TIMEOUT) as sock:
            sock.sendall(b"request")
            assert _read_all(sock) == BODY
            assert sock.session.failure == "gone"
        t.join(IO_TIMEOUT)
    finally:
        ln.close()


def test_server_reads_until_the_client_closed() -> None:
    """The upload pattern: the client writes and closes, the handler reads to EOF."""
    got: list[bytes] = []
    done = threading.Event()

    class Sink(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            got.append(self.rfile.read())
            done.set()

    with ThreadingKCPServer(("127.0.0.1", 0), Sink) as srv:
        threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True).start()
        try:
            with kcpsock.create_connection(server_address(srv), timeout=IO_TIMEOUT) as sock:
                sock.sendall(BODY)
            assert done.wait(IO_TIMEOUT)
            assert got == [BODY]
        finally:
            srv.shutdown()


def test_http10_response_read_until_the_server_closes() -> None:
    """http.server speaking HTTP/1.0 without Content-Length behind ThreadingKCPServer."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()  # no Content-Length: the body ends with the connection
            self.wfile.write(BODY)

        def log_message(self, *args: Any) -> None:
            pass

    with ThreadingKCPServer(("127.0.0.1", 0), Handler) as srv:
        threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True).start()
        try:
            sock = kcpsock.create_connection(server_address(srv), timeout=IO_TIMEOUT)
            try:
                sock.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
                response = _read_all(sock)
                assert sock.session.failure == "gone"
            finally:
                sock.close()
        finally:
            srv.shutdown()
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200")
    assert b"content-length" not in head.lower()
    assert body == BODY


def test_gone_timeout_zero_leaves_only_the_keepalive() -> None:
    ln, t = _serve_once(b"reply", gone_timeout=0)
    try:
        sock = kcpsock.create_connection(ln.getsockname(), timeout=IO_TIMEOUT, gone_timeout=0)
        try:
            sock.sendall(b"request")
            assert recv_exact(sock, 5) == b"reply"
            t.join(IO_TIMEOUT)
            sock.settimeout(1.5)  # several times what the probes need
            with pytest.raises(TimeoutError):
                sock.recv(10)
            assert sock.session.failure is None
        finally:
            sock.close()
    finally:
        ln.close()


def test_a_busy_live_peer_is_not_gone_and_probes_space_out() -> None:
    """The server's application says nothing for 3 s; its KCP answers the probes."""

    def then(conn: Any) -> None:
        conn.sendall(b"second")
        conn.recv(100)

    ln, t, go = _serve_first(then)
    try:
        with kcpsock.create_connection(ln.getsockname(), timeout=IO_TIMEOUT) as sock:
            sock.sendall(b"request")
            assert recv_exact(sock, 5) == b"first"
            sent, answered = sock.segments_sent, sock.segments_received
            sock.settimeout(3.0)  # a reader waiting six gone_timeouts
            with pytest.raises(TimeoutError):
                sock.recv(10)
            assert sock.session.failure is None
            probes = sock.segments_sent - sent
            assert sock.segments_received - answered >= 3  # WINS answers
            # doubling gaps while the peer answers: about log2(3 s / RTO) probes,
            # not one per RTO (100 here)
            assert 3 <= probes <= 15, probes
            go.set()
            sock.settimeout(IO_TIMEOUT)
            assert recv_exact(sock, 6) == b"second"
            sock.sendall(b"bye")
        t.join(IO_TIMEOUT)
    finally:
        go.set()
        ln.close()


def test_no_false_end_under_20_percent_loss() -> None:
    """A live peer trickling data through a 20 % lossy relay is never taken for gone.

    Every pause restarts the close watch (one answer time of silence, then
    probes), so each client goes through dozens of probe rounds, a third of
    which lose the probe or its answer; a rule that gave up after a few
    unanswered probes would end some of these conversations early.
    """
    pieces, pause = 15, 0.15
    ln = kcpsock.listen(("127.0.0.1", 0))
    ln.settimeout(IO_TIMEOUT)
    clients = 4
    errors: list[BaseException] = []

    def trickle(conn: Any) -> None:
        stop = threading.Event()
        try:
            with conn:
                conn.settimeout(IO_TIMEOUT)
                conn.recv(100)
                for i in range(pieces):
                    conn.sendall(b"%02d" % i)
                    stop.wait(pause)  # the application pauses; KCP keeps answering
                conn.sendall(b"end")
                conn.recv(100)  # until the client says it got everything
        except BaseException as exc:
            errors.append(exc)

    def accept_all() -> None:
        for _ in range(clients):
            conn, _ = ln.accept()
            threading.Thread(target=trickle, args=(conn,), daemon=True).start()

    threading.Thread(target=accept_all, daemon=True).start()
    expected = b"".join(b"%02d" % i for i in range(pieces)) + b"end"
    results: list[Any] = [None] * clients

    def client(k: int) -> None:
        try:
            with Relay(target=ln.getsockname(), loss=0.2, seed=100 + k) as relay:
                with kcpsock.create_connection(relay.address, timeout=IO_TIMEOUT) as sock:
                    sock.sendall(b"go")
                    got = bytearray()
                    while not got.endswith(b"end"):
                        chunk = sock.recv(100)
                        if not chunk:
                            break  # taken for gone: the failure under test
                        got += chunk
                    results[k] = (bytes(got), sock.session.failure)
                    if got == expected:
                        sock.sendall(b"thanks")
                        sock.drain(IO_TIMEOUT)
                dropped = relay.up.dropped + relay.down.dropped
                assert dropped > 0
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(4 * IO_TIMEOUT)
    ln.close()
    assert not errors, errors
    assert results == [(expected, None)] * clients


def test_the_watch_leaves_a_long_quiet_answering_peer_to_the_keepalive(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After its window the close watch sends no probes; keep-alive probes remain.

    Waiting readers on live, quiet peers (a server's handler threads in
    ``recv``) must cost no more probes than idle sessions do (issue 9).
    """
    monkeypatch.setattr(kcpsock.session, "GONE_WINDOW_MS", 300)
    ln, t, done = _serve_first(lambda conn: None, keepalive_interval=3.0)
    try:
        with kcpsock.create_connection(
            ln.getsockname(), timeout=IO_TIMEOUT, keepalive_interval=3.0
        ) as sock:
            sock.sendall(b"request")
            assert recv_exact(sock, 5) == b"first"
            sent = sock.segments_sent
            later: list[int] = []

            def sample() -> None:
                threading.Event().wait(0.8)  # a moment past the window (a measurement)
                later.append(sock.segments_sent)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            sock.settimeout(2.5)  # under keepalive_interval: no keep-alive probe yet
            with pytest.raises(TimeoutError):
                sock.recv(10)
            sampler.join(IO_TIMEOUT)
            assert sock.session.failure is None
            probes = sock.segments_sent - sent
            # the window's probes (one answer time, then doubling gaps) and no more
            assert 1 <= probes <= 4, probes
            assert later and sock.segments_sent == later[0]  # none after the window
    finally:
        done.set()
        t.join(IO_TIMEOUT)
        ln.close()


def test_a_peer_that_closes_after_the_window_still_reads_as_eof(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An unanswered keep-alive probe opens the watch's run: EOF, not keepalive_timeout."""
    monkeypatch.setattr(kcpsock.session, "GONE_WINDOW_MS", 300)
    ln, t, go = _serve_first(lambda conn: None)  # then closes
    try:
        with kcpsock.create_connection(
            ln.getsockname(), timeout=IO_TIMEOUT, keepalive_interval=1.0
        ) as sock:
            sock.sendall(b"request")
            assert recv_exact(sock, 5) == b"first"
            sock.settimeout(0.6)  # past the window: the watch is dormant
            with pytest.raises(TimeoutError):
                sock.recv(10)
            go.set()  # the server closes now, long after its last data
            sock.settimeout(IO_TIMEOUT)  # far below keepalive_timeout (30 s)
            assert sock.recv(10) == b""
            assert sock.session.failure == "gone"
        t.join(IO_TIMEOUT)
    finally:
        go.set()
        ln.close()
