"""kcpsock.smux over real KCP sessions on 127.0.0.1: streams behave like sockets.

Echo over several concurrent streams (v1/v2, with and without snappy), FIN
and EOF, timeouts and non-blocking calls, makefile, select/selectors
readiness (reading and writing), a v2 peer that never reads, and every way a
session ends: keepalive timeout, snappy corruption, protocol error, the KCP
socket closed under it.  Every wait is bounded.
"""

from __future__ import annotations

import os
import selectors
import socket
import threading
from typing import Any, Optional

import pytest

import kcpsock
from kcpsock import smux
from tests.helpers import wait_until

FAST: dict[str, Any] = {
    "nodelay": 1,
    "interval": 10,
    "resend": 2,
    "nc": True,
    "sndwnd": 512,
    "rcvwnd": 512,
}
IO_TIMEOUT = 20.0


class Pair:
    """A KCP listener and a dialed session, smux on both (server optional)."""

    def __init__(self, *, version: int = 1, compress: bool = False, **smux_opts: Any) -> None:
        self.listener = kcpsock.listen(("127.0.0.1", 0), **FAST)
        self.listener.settimeout(IO_TIMEOUT)
        self.ksock = kcpsock.dial(self.listener.getsockname(), **FAST)
        self.client = smux.client(self.ksock, version=version, compress=compress, **smux_opts)
        self.version = version
        self.compress = compress
        self.smux_opts = smux_opts
        self.server: Optional[smux.SmuxSession] = None
        self.raw_server: Any = None

    def accept_raw(self) -> Any:
        """Accept the KCP session (the client must have sent something)."""
        self.raw_server, _ = self.listener.accept()
        self.raw_server.settimeout(IO_TIMEOUT)
        return self.raw_server

    def start_server(self) -> smux.SmuxSession:
        sock = self.accept_raw()
        self.server = smux.server(
            sock, version=self.version, compress=self.compress, **self.smux_opts
        )
        return self.server

    def close(self) -> None:
        self.client.close()
        if self.server is not None:
            self.server.close()
        elif self.raw_server is not None:
            self.raw_server.close()
        self.listener.close()


@pytest.fixture
def make_pair() -> Any:
    pairs: list[Pair] = []

    def make(**kw: Any) -> Pair:
        p = Pair(**kw)
        pairs.append(p)
        return p

    yield make
    for p in pairs:
        p.close()


def echo_streams(session: smux.SmuxSession) -> threading.Thread:
    def serve() -> None:
        while True:
            try:
                st = session.accept_stream()
            except OSError:
                return

            def run(st: smux.SmuxStream = st) -> None:
                st.settimeout(IO_TIMEOUT)
                with st:
                    try:
                        while True:
                            data = st.recv(65536)
                            if not data:
                                return
                            st.sendall(data)
                    except OSError:  # the session closed at the end of the test
                        return

            threading.Thread(target=run, daemon=True).start()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return t


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("compress", [False, True], ids=["plain", "snappy"])
def test_concurrent_streams_echo(make_pair: Any, version: int, compress: bool) -> None:
    p = make_pair(version=version, compress=compress)
    first = p.client.open_stream()
    first.sendall(b"open")
    server = p.start_server()
    echo_streams(server)
    first.settimeout(IO_TIMEOUT)
    assert first.recv(10) == b"open"
    results: dict[int, bool] = {}

    def one(i: int) -> None:
        data = os.urandom(150_000) + b"compressible " * 10_000
        with p.client.open_stream() as st:
            st.settimeout(IO_TIMEOUT)
            w = threading.Thread(target=st.sendall, args=(data,), daemon=True)
            w.start()
            got = bytearray()
            while len(got) < len(data):
                piece = st.recv(65536)
                assert piece
                got += piece
            w.join(IO_TIMEOUT)
            results[i] = bytes(got) == data

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(IO_TIMEOUT * 2)
    assert results == {0: True, 1: True, 2: True, 3: True}
    assert first.id == 3
    assert p.client.alive and server.alive


def test_fin_gives_eof_after_buffered_data_and_socket_api(make_pair: Any) -> None:
    p = make_pair()
    st = p.client.open_stream()
    st.sendall(b"line one\nline two\n")
    server = p.start_server()
    peer = server.accept_stream(timeout=IO_TIMEOUT)
    assert peer.id == st.id == 3
    peer.settimeout(IO_TIMEOUT)
    with peer.makefile("rb") as f:
        assert f.readline() == b"line one\n"
        assert f.readline() == b"line two\n"
    st.close()
    assert peer.recv(100) == b""  # FIN: EOF
    assert peer.recv(100) == b""
    assert "eof" in repr(peer)
    with pytest.raises(TypeError, match="how must be an int"):
        peer.shutdown("rd")
    with pytest.raises(ValueError, match="how must be"):
        peer.shutdown(7)
    assert "closed" in repr(st)
    with pytest.raises(OSError, match="Bad file descriptor"):
        st.send(b"x")
    assert st.fileno() == -1
    peer.close()
    peer.close()  # idempotent


def test_timeouts_nonblocking_and_peek(make_pair: Any) -> None:
    p = make_pair()
    st = p.client.open_stream()
    st.sendall(b"x")
    server = p.start_server()
    peer = server.accept_stream(timeout=IO_TIMEOUT)
    peer.settimeout(IO_TIMEOUT)
    assert peer.recv(1) == b"x"
    peer.settimeout(0.05)
    with pytest.raises(TimeoutError):
        peer.recv(10)
    peer.setblocking(False)
    with pytest.raises(BlockingIOError):
        peer.recv(10)
    assert not peer.getblocking()
    with pytest.raises(BlockingIOError):
        server.accept_stream(timeout=0)
    with pytest.raises(TimeoutError):
        server.accept_stream(timeout=0.05)
    st.sendall(b"peekaboo")
    peer.settimeout(IO_TIMEOUT)

    def peeked() -> bool:
        try:
            return bool(peer.recv(8, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"peekaboo")
        except BlockingIOError:
            return False

    assert wait_until(peeked, IO_TIMEOUT)
    buf = bytearray(4)
    assert peer.recv_into(buf) == 4 and buf == b"peek"
    with pytest.raises(ValueError, match="bufsize must be >= 0"):
        peer.recv(-1)
    with pytest.raises(TypeError):
        peer.settimeout("1")


def test_selectors_readiness_read_and_write(make_pair: Any) -> None:
    p = make_pair(version=2)
    st = p.client.open_stream()
    st.sendall(b"hi")
    server = p.start_server()
    peer = server.accept_stream(timeout=IO_TIMEOUT)
    with selectors.DefaultSelector() as sel:
        sel.register(peer, selectors.EVENT_READ | selectors.EVENT_WRITE)
        events = sel.select(IO_TIMEOUT)
        assert events and events[0][1] == selectors.EVENT_READ | selectors.EVENT_WRITE
        peer.settimeout(IO_TIMEOUT)
        assert peer.recv(10) == b"hi"
        events = sel.select(0)
        assert events and events[0][1] == selectors.EVENT_WRITE  # nothing to read
    # v2: the peer's first read sent UPD(consumed 2, window 65536, smux's default);
    # as it reads nothing more, our writer stops at that window
    assert wait_until(lambda: p.client._proto._streams[st.id].peer_consumed == 2, IO_TIMEOUT)
    st.setblocking(False)
    sent = 0

    def fill() -> None:
        nonlocal sent
        while True:
            sent += st.send(b"z" * 10000)

    with pytest.raises(BlockingIOError):
        fill()
    assert sent == 65536
    with selectors.DefaultSelector() as sel:
        sel.register(st, selectors.EVENT_WRITE)
        assert sel.select(0.05) == []  # the truth: send would block
        peer.settimeout(IO_TIMEOUT)
        got = 0
        while got < 65536:
            got += len(peer.recv(65536))
        assert sel.select(IO_TIMEOUT)  # UPD arrived: writable again


def test_v2_peer_that_never_reads_bounds_our_buffering(make_pair: Any) -> None:
    p = make_pair(version=2)
    st = p.client.open_stream()
    st.settimeout(0.5)
    with pytest.raises(TimeoutError):
        st.sendall(b"q" * 2_000_000)
    peer = p.start_server().accept_stream(timeout=IO_TIMEOUT)  # accepted, never read
    assert p.client._proto.send_buffered <= 262144
    stream = p.client._proto._streams[st.id]
    assert stream.num_written == 262144
    assert not peer.closed


def test_keepalive_timeout_ends_every_stream(make_pair: Any) -> None:
    p = make_pair(keepalive=0.1, keepalive_timeout=0.3)
    st = p.client.open_stream()
    st.settimeout(IO_TIMEOUT)
    st.sendall(b"anyone?")
    p.accept_raw()  # a KCP peer that never speaks smux
    with pytest.raises(ConnectionResetError, match="keepalive timeout"):
        st.recv(10)
    assert not p.client.alive
    assert "keepalive timeout" in (p.client.error or "")
    with pytest.raises(ConnectionResetError, match="keepalive timeout"):
        p.client.open_stream()
    assert "ended" in repr(p.client)
    assert wait_until(lambda: p.ksock.closed, IO_TIMEOUT)  # the KCP session is closed too
    assert wait_until(
        lambda: not p.client._reader.is_alive() and not p.client._writer.is_alive(), IO_TIMEOUT
    )


def test_keepalive_timeout_while_the_kcp_window_is_full(make_pair: Any) -> None:
    """A KCP peer that acknowledges but never reads fills our KCP send window;
    the writer is then stuck, but the keepalive clock still ends the session.
    """
    p = make_pair(keepalive=0.5, keepalive_timeout=1.5)
    st = p.client.open_stream()
    st.sendall(b"x")
    p.accept_raw()  # never reads: its receive window fills, then ours
    st.settimeout(0.3)

    def fill() -> None:
        while True:
            st.sendall(bytes(65536))

    with pytest.raises(TimeoutError):
        fill()
    # our smux send buffer is full and the writer waits on the full KCP window
    assert p.client.alive
    assert p.client._proto.send_buffered > 0
    st.settimeout(IO_TIMEOUT)
    with pytest.raises(ConnectionResetError, match="keepalive timeout"):
        st.recv(1)
    assert wait_until(lambda: p.ksock.closed, IO_TIMEOUT)


def test_corrupt_snappy_ends_the_session_with_a_clear_error(make_pair: Any) -> None:
    p = make_pair(compress=True)
    st = p.client.open_stream()
    st.sendall(b"x")
    raw = p.accept_raw()
    raw.sendall(b"\xff\x06\x00\x00sNaPpY" + b"\x01\x0c\x00\x00BADC" + bytes(8))
    st.settimeout(IO_TIMEOUT)
    with pytest.raises(ConnectionResetError, match="snappy stream corrupt"):
        st.recv(10)
    threads = [t.name for t in threading.enumerate()]
    assert wait_until(lambda: not p.client._reader.is_alive() and not p.client._writer.is_alive())
    del threads


def test_wrong_version_is_a_protocol_error(make_pair: Any) -> None:
    p = make_pair(version=1)
    st = p.client.open_stream()
    st.sendall(b"x")
    raw = p.accept_raw()
    raw.sendall(bytes([2, 3, 0, 0, 0, 0, 0, 0]))  # a v2 NOP
    st.settimeout(IO_TIMEOUT)
    with pytest.raises(ConnectionResetError, match="version byte 2, expected 1"):
        st.recv(10)


def test_kcp_socket_closed_under_the_session(make_pair: Any) -> None:
    p = make_pair()
    st = p.client.open_stream()
    st.settimeout(IO_TIMEOUT)
    p.ksock.close()
    with pytest.raises(ConnectionResetError, match="KCP session"):
        st.recv(10)
    assert wait_until(lambda: not p.client.alive)


def test_session_close_ends_streams_and_threads(make_pair: Any) -> None:
    p = make_pair()
    st = p.client.open_stream()
    p.client.close()
    with pytest.raises(ConnectionResetError, match="closed on this side"):
        st.recv(1)
    with pytest.raises(OSError, match="smux session is closed"):
        p.client.open_stream()
    assert not p.client._reader.is_alive() and not p.client._writer.is_alive()
    assert p.ksock.closed


def test_bad_arguments() -> None:
    with pytest.raises(TypeError, match="KCPSocket"):
        smux.client(object())
    lst = kcpsock.listen(("127.0.0.1", 0))
    try:
        sock = kcpsock.dial(lst.getsockname())
        with pytest.raises(ValueError, match="version"):
            smux.client(sock, version=3)
        with pytest.raises(TypeError, match="unknown smux option"):
            smux.client(sock, bogus=1)
        sock.close()
    finally:
        lst.close()


def test_readme_smux_example_runs() -> None:
    import contextlib
    import io
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    blocks = [b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "smux" in b]
    assert blocks, "README.md lost its smux example"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(blocks[0], "README.md", "exec"), {"__name__": "readme_smux"})
    assert out.getvalue().split() == ["b'ping'", "b''"]


def test_session_fileno_is_readable_when_a_stream_waits(make_pair: Any) -> None:
    import select

    p = make_pair()
    st = p.client.open_stream()
    st.sendall(b"x")
    server = p.start_server()
    r, _, _ = select.select([server], [], [], IO_TIMEOUT)
    assert r == [server]
    server.accept_stream(timeout=0)
    assert select.select([server], [], [], 0)[0] == []
    p.ksock.close()  # the session ends: readable, accept_stream raises
    r, _, _ = select.select([server, p.client], [], [], IO_TIMEOUT)
    assert p.client in r or server in r
    assert wait_until(lambda: select.select([p.client], [], [], 0)[0] == [p.client], IO_TIMEOUT)
    with pytest.raises(ConnectionResetError):
        p.client.accept_stream(timeout=0)
    p.client.close()
    assert p.client.fileno() == -1


def test_dead_kcp_link_ends_every_stream() -> None:
    """Nothing answers: KCP declares the link dead, and each stream says so."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))  # receives, never answers
        sock = kcpsock.dial(silent.getsockname(), dead_link=2, **FAST)
        session = smux.client(sock)
        streams = [session.open_stream() for _ in range(3)]
        streams[0].sendall(b"hello?")
        for st in streams:
            st.settimeout(IO_TIMEOUT)
            with pytest.raises(ConnectionResetError, match="KCP session failed"):
                st.recv(10)
        assert not session.alive and "dead" in (session.error or "")
        session.close()


def test_v1_receiver_that_never_reads_bounds_our_buffering(make_pair: Any) -> None:
    """smux v1 has no per-stream window: the session bucket makes us stop
    reading the KCP session, so what we buffer stays bounded (back-pressure
    then reaches the sender through KCP's window).
    """
    p = make_pair(max_receive_buffer=200_000, max_stream_buffer=100_000)
    st = p.client.open_stream()
    st.settimeout(1.0)
    st.sendall(b"x")
    server = p.start_server()
    peer = server.accept_stream(timeout=IO_TIMEOUT)  # accepted, never read
    with pytest.raises(TimeoutError):
        st.sendall(bytes(20_000_000))
    assert not peer.closed
    proto = server._proto
    assert proto.reading_paused
    assert proto.buffered(st.id) <= 200_000 + 65536 + 65536  # bucket + one read + a frame


def test_shutdown_write_sends_fin_and_keeps_reading(make_pair: Any) -> None:
    """Between kcpsock peers SHUT_WR is a half-close: the peer reads EOF and
    can still answer (a Go smux peer would forget the stream instead).
    """
    p = make_pair()
    st = p.client.open_stream()
    st.sendall(b"request")
    st.shutdown(socket.SHUT_WR)
    with pytest.raises(BrokenPipeError):
        st.send(b"more")
    server = p.start_server()
    peer = server.accept_stream(timeout=IO_TIMEOUT)
    peer.settimeout(IO_TIMEOUT)
    got = b""
    while True:
        piece = peer.recv(100)
        if not piece:
            break
        got += piece
    assert got == b"request"
    peer.sendall(b"reply")
    peer.close()
    st.settimeout(IO_TIMEOUT)
    assert st.recv(100) == b"reply"
    assert st.recv(100) == b""


def test_stream_send_names_its_argument_like_kcpsocket(make_pair: Any) -> None:
    # was "memoryview: a bytes-like object is required, not 'str'"
    p = make_pair()
    st = p.client.open_stream()
    for call in (st.send, st.sendall):
        with pytest.raises(TypeError, match=r"data must be a bytes-like object, not str \(encode"):
            call("text")
        with pytest.raises(TypeError, match="data must be a bytes-like object, not int"):
            call(5)
    assert st.send(memoryview(bytearray(b"abcd")).cast("B", (2, 2))) == 4  # any bytes-like
    st.sendall(b"")


def test_a_second_of_silence_does_not_end_the_smux_session() -> None:
    # Go's smux over kcp-go rides out a peer silent for a second or two (a
    # pause, a link down): smux's keep-alive (30 s) ends a dead session.  The
    # KCP socket's reader-side "peer gone" EOF (gone_timeout 0.5 s) ended
    # every stream instead (kcptun13 found it in the CLI's kcptun mode).
    from kcpsock.relay import Relay

    listener = kcpsock.listen(("127.0.0.1", 0), **FAST)
    listener.settimeout(IO_TIMEOUT)
    with listener, Relay(target=listener.getsockname()) as relay:
        ksock = kcpsock.dial(relay.address, **FAST)
        client = smux.client(ksock)
        try:
            st = client.open_stream()
            st.settimeout(IO_TIMEOUT)
            st.sendall(b"hello")
            raw, _ = listener.accept()
            server = smux.server(raw)
            try:
                peer = server.accept_stream(timeout=IO_TIMEOUT)
                peer.settimeout(IO_TIMEOUT)
                assert peer.recv(5) == b"hello"
                relay.loss = 1.0  # the link goes silent both ways
                threading.Event().wait(1.5)  # the feature is a clock: 1.5 s of silence
                relay.loss = 0.0
                peer.sendall(b"still here")
                assert st.recv(10) == b"still here"
                st.sendall(b"and back")
                assert peer.recv(8) == b"and back"
                assert client.alive and server.alive
            finally:
                server.close()
        finally:
            client.close()


def test_smux_turns_the_sockets_gone_timeout_off_and_set_gone_timeout_checks(
    make_pair: Any,
) -> None:
    p = make_pair()
    assert p.ksock.session.gone_timeout_ms == 0  # smux.client turned it off
    assert p.ksock.gone_timeout == 0.0
    with pytest.raises(TypeError, match="seconds must be a number"):
        p.ksock.set_gone_timeout("1")
    with pytest.raises(ValueError, match="seconds must be a finite number >= 0"):
        p.ksock.set_gone_timeout(-1)
    p.ksock.set_gone_timeout(2.5)
    assert p.ksock.session.gone_timeout_ms == 2500
    assert p.ksock.gone_timeout == 2.5
