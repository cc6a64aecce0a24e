"""kcpsock.socketserver with the standard library's handlers, unchanged.

Servers listen on 127.0.0.1 port 0; serve_forever runs in a thread that is
shut down and joined by each test.
"""

from __future__ import annotations

import selectors
import socketserver
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

import kcpsock
from kcpsock.config import KCPConfig
from kcpsock.relay import Relay
from kcpsock.socketserver import KCPServer, ThreadingKCPServer

FAST = KCPConfig(nodelay=1, interval=10, resend=2, nc=True, sndwnd=128, rcvwnd=128)
TIMEOUT = 20.0


class UpperLines(socketserver.StreamRequestHandler):
    """Reads lines through makefile('rb'), answers them upper-cased; stops at QUIT."""

    timeout = TIMEOUT

    def handle(self) -> None:
        for line in self.rfile:
            if line.strip() == b"QUIT":
                self.wfile.write(b"BYE\n")
                return
            self.wfile.write(line.upper())


class Echo(socketserver.BaseRequestHandler):
    """Echoes one message back (BaseRequestHandler: the raw request)."""

    def handle(self) -> None:
        self.request.settimeout(TIMEOUT)
        data = self.request.recv(65536)
        self.request.sendall(data)


class BigReply(socketserver.BaseRequestHandler):
    """Answers a request line with `n` bytes, then returns at once."""

    def handle(self) -> None:
        self.request.settimeout(TIMEOUT)
        n = int(self.request.recv(100))
        self.request.sendall(bytes(i & 0xFF for i in range(n)))


@contextmanager
def serving(server: KCPServer) -> Iterator[KCPServer]:
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.5}, daemon=True)
    t.start()
    try:
        yield server
    finally:
        server.shutdown()
        t.join(TIMEOUT)
        server.server_close()
        assert not t.is_alive()


def address(server: KCPServer) -> tuple[str, int]:
    """The (host, port) the server listens on."""
    addr = server.server_address
    assert isinstance(addr, tuple)
    return str(addr[0]), int(addr[1])


def dial(server: KCPServer, **options: Any) -> Any:
    options.setdefault("config", FAST)
    sock = kcpsock.dial(address(server), **options)
    sock.settimeout(TIMEOUT)
    return sock


def test_stream_handler_reads_lines_through_makefile() -> None:
    with serving(ThreadingKCPServer(("127.0.0.1", 0), UpperLines, config=FAST)) as server:
        assert address(server)[1] != 0
        sock = dial(server)
        try:
            rfile = sock.makefile("rb")
            wfile = sock.makefile("wb", buffering=0)
            for i in range(20):
                wfile.write(b"hello %d\n" % i)
                assert rfile.readline() == b"HELLO %d\n" % i
            wfile.write(b"QUIT\n")
            assert rfile.readline() == b"BYE\n"
            rfile.close()
            wfile.close()
        finally:
            sock.close()


def test_text_mode_client_against_stream_handler() -> None:
    with serving(ThreadingKCPServer(("127.0.0.1", 0), UpperLines, config=FAST)) as server:
        sock = dial(server)
        try:
            f = sock.makefile("rw", encoding="utf-8", newline="\n")
            f.write("grüße\nzwei\n")
            f.flush()
            assert f.readline() == "GRüßE\n"  # bytes.upper: ASCII only
            assert f.readline() == "ZWEI\n"
            f.write("QUIT\n")
            f.flush()
            assert f.readline() == "BYE\n"
            f.close()
        finally:
            sock.close()


def test_threading_server_many_concurrent_clients() -> None:
    n = 8
    results: dict[int, list[bytes]] = {}
    errors: list[BaseException] = []

    def client(i: int) -> None:
        try:
            sock = dial(server)
            try:
                rfile, wfile = sock.makefile("rb"), sock.makefile("wb", buffering=0)
                got = []
                for j in range(5):
                    wfile.write(b"c%d line %d\n" % (i, j))
                    got.append(rfile.readline())
                wfile.write(b"QUIT\n")
                assert rfile.readline() == b"BYE\n"
                rfile.close()
                wfile.close()
                results[i] = got
            finally:
                sock.close()
        except BaseException as exc:
            errors.append(exc)

    with serving(ThreadingKCPServer(("127.0.0.1", 0), UpperLines, config=FAST)) as server:
        threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT)
    assert not errors, errors
    assert sorted(results) == list(range(n))
    for i, got in results.items():
        assert got == [b"C%d LINE %d\n" % (i, j) for j in range(5)]


def _readline(sock: Any) -> bytes:
    line = bytearray()
    while not line.endswith(b"\n"):
        b = sock.recv(1)
        assert b, "EOF before end of line"
        line += b
    return bytes(line)


def test_plain_server_serves_clients_one_after_another() -> None:
    with serving(KCPServer(("127.0.0.1", 0), Echo, config=FAST)) as server:
        for i in range(3):
            sock = dial(server)
            try:
                sock.sendall(b"message %d" % i)
                assert sock.recv(100) == b"message %d" % i
            finally:
                sock.close()


def test_handle_request_serves_one_request() -> None:
    server = KCPServer(("127.0.0.1", 0), Echo, config=FAST)
    try:
        server.timeout = TIMEOUT
        sock = dial(server)
        try:
            sock.sendall(b"once")
            server.handle_request()
            assert sock.recv(100) == b"once"
        finally:
            sock.close()
    finally:
        server.server_close()


def test_handle_request_times_out() -> None:
    timeouts: list[float] = []

    class Server(KCPServer):
        timeout = 0.2

        def handle_timeout(self) -> None:
            timeouts.append(time.monotonic())

    server = Server(("127.0.0.1", 0), Echo, config=FAST)
    try:
        t0 = time.monotonic()
        server.handle_request()
        elapsed = time.monotonic() - t0
    finally:
        server.server_close()
    assert len(timeouts) == 1
    assert 0.15 <= elapsed < 5.0


def test_fileno_is_selectable_and_readable_when_a_session_waits() -> None:
    server = KCPServer(("127.0.0.1", 0), Echo, config=FAST)
    sock = None
    try:
        sel = selectors.DefaultSelector()
        sel.register(server, selectors.EVENT_READ)
        assert sel.select(0) == []
        sock = dial(server)
        sock.sendall(b"knock")
        assert sel.select(TIMEOUT), "listener never became readable"
        request, addr = server.get_request()
        try:
            assert addr[:2] == sock.getsockname()[:2]
            assert request.recv(100) == b"knock"
        finally:
            request.close()
        sel.close()
    finally:
        if sock is not None:
            sock.close()
        server.server_close()


def test_options_pass_through_crypto_and_fec() -> None:
    key = kcpsock.derive_key("socketserver")
    with serving(
        ThreadingKCPServer(
            ("127.0.0.1", 0),
            UpperLines,
            config=FAST,
            block=kcpsock.new_block_crypt("aes", key),
            data_shards=10,
            parity_shards=3,
        )
    ) as server:
        sock = dial(
            server, block=kcpsock.new_block_crypt("aes", key), data_shards=10, parity_shards=3
        )
        try:
            sock.sendall(b"secret\n")
            assert _readline(sock) == b"SECRET\n"
            sock.sendall(b"QUIT\n")
            assert _readline(sock) == b"BYE\n"
        finally:
            sock.close()
        # A client with the wrong key gets nothing back.
        other = dial(
            server,
            block=kcpsock.new_block_crypt("aes", kcpsock.derive_key("x")),
            data_shards=10,
            parity_shards=3,
        )
        try:
            other.settimeout(0.5)
            other.sendall(b"secret\n")
            with pytest.raises(TimeoutError):
                other.recv(100)
        finally:
            other.close()


def test_reply_written_before_handle_returns_survives_loss() -> None:
    """KCP has no FIN: the server lingers until the reply is acknowledged."""
    n = 60_000
    with (
        serving(ThreadingKCPServer(("127.0.0.1", 0), BigReply, config=FAST)) as server,
        Relay(target=address(server), loss=0.2, seed=17) as relay,
    ):
        sock = kcpsock.dial(relay.address, config=FAST)
        sock.settimeout(TIMEOUT)
        try:
            sock.sendall(b"%d" % n)
            got = bytearray()
            while len(got) < n:
                try:
                    piece = sock.recv(65536)
                except TimeoutError:
                    raise AssertionError(
                        f"stalled at {len(got)} of {n}: {relay.stats()} {sock.figures()}"
                    ) from None
                assert piece
                got += piece
        finally:
            sock.close()
        assert relay.down.dropped > 0
    assert bytes(got) == bytes(i & 0xFF for i in range(n))


def test_bind_and_activate_false_and_context_manager() -> None:
    server = KCPServer(("127.0.0.1", 0), Echo, bind_and_activate=False, config=FAST)
    assert server.socket is None
    with server:
        server.server_bind()
        server.server_activate()
        assert server.fileno() >= 0
        assert address(server)[1] != 0
    assert server.fileno() == -1  # server_close closed the listener


def test_bad_listen_option_is_reported_and_nothing_leaks() -> None:
    with pytest.raises((TypeError, ValueError)):
        KCPServer(("127.0.0.1", 0), Echo, data_shards=-1, parity_shards=3)


def test_handler_closing_its_request_does_not_linger() -> None:
    done = threading.Event()

    class CloseEarly(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            self.request.settimeout(TIMEOUT)
            self.request.recv(100)
            # 12 segments against the client's 8-segment receive window: the
            # last 4 stay queued (unacknowledged) since the client never reads
            self.request.sendall(b"x" * (12 * 1376))
            self.request.close()

    class Server(ThreadingKCPServer):
        def shutdown_request(self, request: Any) -> None:
            super().shutdown_request(request)
            done.set()

    # The client never reads: the reply stays unacknowledged.
    small = FAST.replace(sndwnd=8, rcvwnd=8)
    with serving(Server(("127.0.0.1", 0), CloseEarly, config=small)) as server:
        sock = dial(server, config=small)
        try:
            t0 = time.monotonic()
            sock.sendall(b"go")
            assert done.wait(TIMEOUT)
            assert time.monotonic() - t0 < 5.0  # no lingering for a reply nobody reads
        finally:
            sock.close()


def test_linger_is_bounded_when_the_peer_is_gone() -> None:
    done = threading.Event()
    got_request = threading.Event()
    gone = threading.Event()
    lingered: list[float] = []

    class Reply(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            self.request.recv(100)
            got_request.set()
            assert gone.wait(TIMEOUT)
            self.request.sendall(b"y" * 10_000)  # nobody will acknowledge it

    class Server(ThreadingKCPServer):
        close_linger = 0.5

        def shutdown_request(self, request: Any) -> None:
            t0 = time.monotonic()
            super().shutdown_request(request)
            lingered.append(time.monotonic() - t0)
            done.set()

    with serving(Server(("127.0.0.1", 0), Reply, config=FAST)) as server:
        sock = dial(server)
        sock.sendall(b"go")
        assert got_request.wait(TIMEOUT)
        # "go" acknowledged first: a client closed with data in flight keeps
        # delivering (and acknowledging the server's reply) in the background,
        # which would end the server's linger early on a loaded machine
        assert sock.drain(TIMEOUT)
        sock.close()
        gone.set()
        assert done.wait(TIMEOUT)
    # lingered for close_linger, not until the link is declared dead; the
    # upper bound is generous (we never assert speed)
    assert 0.45 <= lingered[0] < 10.0


@pytest.mark.parametrize("block_on_close", [True, False])
def test_server_close_ends_handlers_of_silent_clients(block_on_close: bool) -> None:
    """No FIN in KCP: a client that just closes leaves its handler blocked in
    recv; server_close must still return, and the handler sees EOF.
    """
    eof = threading.Event()
    started = threading.Event()

    class WaitForEOF(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            started.set()
            for _ in self.rfile:
                pass
            eof.set()

    class Server(ThreadingKCPServer):
        close_grace = 0.3

    Server.block_on_close = block_on_close
    server = Server(("127.0.0.1", 0), WaitForEOF, config=FAST)
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.5}, daemon=True)
    t.start()
    sock = dial(server)
    try:
        sock.sendall(b"one line\n")
        assert started.wait(TIMEOUT)
    finally:
        sock.close()  # the server is not told
    server.shutdown()
    t.join(TIMEOUT)
    t0 = time.monotonic()
    server.server_close()
    assert time.monotonic() - t0 < 0.3 + 5.0
    if block_on_close:
        assert eof.is_set()  # the handler was ended and joined
    else:
        assert not eof.is_set()  # left running, as TCP would
        assert server.close_active_requests() == 1
        assert eof.wait(TIMEOUT)
