"""KCPSocket as a drop-in socket: data, timeouts, blocking modes, close, files.

Real UDP on 127.0.0.1 only.  Every wait is bounded; nothing sleeps to
synchronise (threads are joined, conditions are awaited with timeouts).
"""

from __future__ import annotations

import errno
import hashlib
import os
import select
import selectors
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any, Callable

import pytest

import kcpsock
from kcpsock import KCPConfig
from tests.helpers import wait_until

FAST: dict[str, Any] = {"nodelay": 1, "interval": 10, "resend": 2, "nc": True}


@pytest.fixture
def listener() -> Iterator[kcpsock.Listener]:
    ln = kcpsock.listen(("127.0.0.1", 0), **FAST)
    ln.settimeout(5)
    yield ln
    ln.close()


def connect(ln: kcpsock.Listener, **opts: object) -> tuple[kcpsock.KCPSocket, kcpsock.KCPSocket]:
    """Dial the listener, say hello, accept: a (client, server) pair, timeouts 5 s."""
    opts = {**FAST, **opts}
    c = kcpsock.dial(ln.getsockname(), timeout=5, **opts)  # type: ignore[arg-type]
    c.sendall(b"hi")
    s, addr = ln.accept()
    s.settimeout(5)
    assert addr == c.getsockname()
    assert s.recv(10) == b"hi"
    return c, s


@pytest.fixture
def pair(listener: kcpsock.Listener) -> Iterator[tuple[kcpsock.KCPSocket, kcpsock.KCPSocket]]:
    c, s = connect(listener)
    yield c, s
    c.close()
    s.close()


@pytest.fixture
def message_pair() -> Iterator[tuple[kcpsock.KCPSocket, kcpsock.KCPSocket]]:
    """A (client, server) pair in message mode (kcp-go's default; ours is stream mode)."""
    ln = kcpsock.listen(("127.0.0.1", 0), stream=False, **FAST)
    ln.settimeout(5)
    c, s = connect(ln, stream=False)
    yield c, s
    c.close()
    s.close()
    ln.close()


def recv_exact(sock: kcpsock.KCPSocket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        assert chunk, "unexpected EOF"
        buf += chunk
    return bytes(buf)


# ---------------------------------------------------------------- data


def test_echo_both_ways(pair: tuple[kcpsock.KCPSocket, kcpsock.KCPSocket]) -> None:
    c, s = pair
    c.sendall(b"ping")
    assert s.recv(100) == b"ping"
    s.sendall(b"pong")
    assert c.recv(100) == b"pong"


def test_send_and_sendall_take_every_bytes_like_as_socket_does(
    message_pair: tuple[kcpsock.KCPSocket, kcpsock.KCPSocket],
) -> None:
    import array

    c, s = message_pair
    words = array.array("I", [1, 2, 3])
    big = bytearray(os.urandom(70000))  # above the size send copies whole
    cases: list[tuple[Any, bytes]] = [
        (bytearray(b"abc"), b"abc"),
        (memoryview(b"0123456789")[2:6], b"2345"),
        (memoryview(words), words.tobytes()),  # counted in bytes, as socket.send
    ]
    for data, wire in cases:
        assert c.send(data) == len(wire)
        assert s.recv(100) == wire
        c.sendall(data)
        assert s.recv(100) == wire
    c.sendall(memoryview(big))
    got = b"".join(s.recv(100000) for _ in range(-(-len(big) // c.session.kcp.mss)))
    assert got == bytes(big)
    with pytest.raises(BufferError):  # as socket.sendall
        c.sendall(memoryview(b"abcdef")[::2])
    with pytest.raises(TypeError, match="encode"):
        c.sendall("text")  # type: ignore[arg-type]


def test_message_boundaries_kept_in_message_mode(
    message_pair: tuple[kcpsock.KCPSocket, kcpsock.KCPSocket],
) -> None:
    c, s = message_pair
    for msg in (b"a", b"bb", b"ccc"):
        c.sendall(msg)
    assert [s.recv(100) for _ in range(3)] == [b"a", b"bb", b"ccc"]


def test_short_recv_delivers_the_rest_later(
    pair: tuple[kcpsock.KCPSocket, kcpsock.KCPSocket],
) -> None:
    c, s = pair
    c.sendall(b"0123456789")
    assert s.recv(3) == b"012"
    assert s.recv(3) == b"345"
    assert s.recv(100) == b"6789"


def test_bulk_transfer_integrity_recv_into(listener: kcpsock.Listener) -> None:
    c, s = connect(listener, sndwnd=256, rcvwnd=256)
    try:
        data = os.urandom(2 * 1024 * 1024 + 17)
        t = threading.Thread(target=c.sendall, args=(data,))
        t.start()
        h = hashlib.sha256()
        buf = bytearray(40000)
        got = 0
        while got < len(data):
            n = s.recv_into(buf)
            assert n > 0
            h.update(memoryview(buf)[:n])
            got += n
        t.join(10)
        assert got == len(data)
        assert h.digest() == hashlib.sha256(data).digest()
        assert c.bytes_sent == len(data) + 2
        assert s.bytes_received == len(data) + 2
    finally:
        c.close()
        s.close()


def test_stream_mode_merges_and_delivers_everything(listener: kcpsock.Listener) -> None:
    c, s = connect(listener, stream=True)
    s.set_stream_mode(True)
    try:
        parts = [os.urandom(n) for n in (1, 500, 3000, 7, 20000)]
        for p in parts:
            c.sendall(p)
        want = b"".join(parts)
        assert recv_exact(s, len(want)) == want
    finally:
        c.close()
        s.close()


def test_recv_into_nbytes_and_errors(pair: tuple[kcpsock.KCPSocket, kcpsock.KCPSocket]) -> None:
    c, s = pair
    c.sendall(b"abcdef")
    buf = bytearray(10)
    assert s.recv_into(buf, 4) == 4
    assert bytes(buf[:4]) == b"abcd"
    with pytest.raises(ValueError, match="nbytes is greater"):
        s.recv_into(buf, 11)
    with pytest.raises(TypeError):
        s.recv_into(b"readonly")
    with pytest.raises(ValueError, match="bufsize must be >= 0"):
        s.recv(-1)
    assert s.recv(0) == b""


def test_send_empty_sends_nothing(pair: tuple[kcpsock.KCPSocket, kcpsock.KCPSocket]) -> None:
    c, s = pair
    assert c.send(b"") == 0
    c.sendall(b"")
    c.sendall(b"x")
    assert s.recv(10) == b"x"  # no zero-length message came first


def test_send_takes_at_most_the_free_send_buffer(listener: kcpsock.Listener) -> None:
    c, s = connect(listener, sndwnd=8, rcvwnd=8, send_buffer=8 * 1376)
    try:
        big = b"z" * (100 * 1400)
        n = c.send(big)
        assert 0 < n <= 8 * 1376
        f = c.figures()
        assert f["queued_bytes"] <= f["send_buffer"] == 8 * 1376
    finally:
        c.close()
        s.close()


# ------------------------------------------------------------ blocking


def test_recv_timeout(pair: tuple[kcpsock.KCPSocket, kcpsock.KCPSocket]) -> None:
    _, s = pair
    s.settimeout(0.2)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError) as info:
        s.recv(10)
    assert 0.15 < time.monotonic() - t0 < 10  # generous: only a timeout ignored fails
    assert isinstance(info.value, kcpsock.KCPTimeoutError)
    assert isinstance(info.value, OSError)


def test_non_blocking_recv_and_send(pair: tuple[kcpsock.KCPSocket, kcpsock.KCPSocket]) -> None:
    c, s = pair
    s.setblocking(False)
    assert s.gettimeout() == 0.0 and not s.getblocking()
    with pytest.raises(BlockingIOError) as info:
        s.recv(10)
    assert info.value.errno == errno.EAGAIN
    with pytest.raises(BlockingIOError):
        c.recv(10, socket.MSG_DONTWAIT)
    s.setblocking(True)
    assert s.gettimeout() is None and s.getblocking()


def test_default_timeout_is_socket_default(listener: kcpsock.Listener) -> None:
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(3.5)
    try:
        c = kcpsock.dial(listener.getsockname())
        assert c.gettimeout() == 3.5
        c.close()
    finally:
        socket.setdefaulttimeout(old)
    with pytest.raises(ValueError, match="timeout must be a non-negative"):
        c.settimeout(-1)
    with pytest.raises(TypeError):
        c.settimeout("1")  # type: ignore[arg-type]


def test_send_blocks_while_window_full_then_times_out(listener: kcpsock.Listener) -> None:
    # the server never reads: its receive window fills, ours stays full
    c, s = connect(listener, sndwnd=4, rcvwnd=4, send_buffer=20_000)
    s.set_window_size(4, 4)
    try:
        c.settimeout(0.5)
        payload = b"q" * 1000

        def fill() -> None:
            for _ in range(1000):
                c.sendall(payload)

        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            fill()
        assert time.monotonic() - t0 < 10
        f = c.figures()
        # (send takes at least a segment's worth when there is any room)
        assert f["queued_bytes"] <= 20_000 + f["mss"]
        assert f["waitsnd"] <= 4 + 20_000 // f["mss"] + 2
        c.settimeout(0)
        with pytest.raises(BlockingIOError):
            c.send(payload)
    finally:
        c.close()
        s.close()


def test_sendall_timeout_covers_the_whole_call(listener: kcpsock.Listener) -> None:
    c, s = connect(listener, sndwnd=4, rcvwnd=4, send_buffer=20_000)
    s.set_window_size(4, 4)
    try:
        c.settimeout(0.4)
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            c.sendall(b"w" * 1_000_000)
        assert time.monotonic() - t0 < 10  # generous: one 0.4 s timeout, not one per chunk
    finally:
        c.close()
        s.close()


def test_blocked_send_resumes_when_peer_reads(listener: kcpsock.Listener) -> None:
    c, s = connect(listener, sndwnd=4, rcvwnd=4)
    s.set_window_size(4, 4)
    try:
        data = os.urandom(200_000)
        t = threading.Thread(target=c.sendall, args=(data,))
        t.start()
        assert recv_exact(s, len(data)) == data
        t.join(10)
        assert not t.is_alive()
    finally:
        c.close()
        s.close()


# ------------------------------------------------------------ close


def test_calls_after_close_raise_ebadf(pair: tuple[kcpsock.KCPSocket, kcpsock.KCPSocket]) -> None:
    c, _ = pair
    c.close()
    c.close()  # idempotent
    assert c.fileno() == -1
    for call in (
        lambda: c.recv(1),
        lambda: c.send(b"x"),
        lambda: c.sendall(b"x"),
        c.getpeername,
        c.getsockname,
        lambda: c.shutdown(socket.SHUT_RD),
        lambda: c.recv_into(bytearray(4)),
        lambda: c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16),
    ):
        with pytest.raises(OSError) as info:
            call()
        assert info.value.errno == errno.EBADF
    assert "closed" in repr(c)


def test_close_flushes_queued_data(listener: kcpsock.Listener) -> None:
    c, s = connect(listener)
    c.set_write_delay(True)
    c.sendall(b"last words")
    c.close()
    assert s.recv(100) == b"last words"
    s.close()


def test_close_from_other_thread_wakes_blocked_recv(
    pair: tuple[kcpsock.KCPSocket, kcpsock.KCPSocket],
) -> None:
    _, s = pair
    s.settimeout(10)
    result: list[object] = []
    started = threading.Event()

    def reader() -> None:
        started.set()
        try:
            result.append(s.recv(10))
        except Exception as exc:  # pragma: no cover - reported below
            result.append(exc)

    t = threading.Thread(target=reader)
    t.start()
    assert started.wait(5)
    assert wait_until(lambda: s.session.waiting_readers == 1)
    s.close()
    t.join(5)
    assert result == [b""]


def test_shutdown_rd_gives_eof_not_silence(
    pair: tuple[kcpsock.KCPSocket, kcpsock.KCPSocket],
) -> None:
    c, s = pair
    s.settimeout(0.3)
    with pytest.raises(TimeoutError):  # silence is not EOF
        s.recv(10)
    s.shutdown(socket.SHUT_RD)
    assert s.recv(10) == b""
    c.shutdown(socket.SHUT_WR)
    with pytest.raises(BrokenPipeError):
        c.send(b"x")
    with pytest.raises(ValueError, match="how must be"):
        c.shutdown(7)


def test_context_manager_closes(listener: kcpsock.Listener) -> None:
    with kcpsock.dial(listener.getsockname()) as c:
        assert c.fileno() >= 0
    assert c.closed and c.fileno() == -1
    with kcpsock.listen(("127.0.0.1", 0)) as ln:
        assert ln.fileno() >= 0
    assert ln.closed and ln.fileno() == -1


def test_dead_link_reads_as_end_of_stream_and_send_raises() -> None:
    # a socket that swallows everything: every segment is retransmitted until dead_link
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as hole:
        hole.bind(("127.0.0.1", 0))
        c = kcpsock.dial(
            hole.getsockname(), config=KCPConfig(nodelay=1, interval=10, dead_link=3), timeout=10
        )
        try:
            c.sendall(b"anyone?")
            assert c.recv(10) == b""  # the peer is gone: end of stream (README)
            assert c.state == "dead" and c.session.failure == "dead_link"
            with pytest.raises(ConnectionResetError):
                c.send(b"x")
            assert "dead" in repr(c)
        finally:
            c.close()


def test_icmp_port_unreachable_is_connection_refused() -> None:
    # nobody listens there: the kernel reports ICMP port unreachable
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    addr = probe.getsockname()
    probe.close()
    c = kcpsock.dial(addr, timeout=10)
    try:
        c.sendall(b"anyone?")
        with pytest.raises(ConnectionRefusedError, match="nothing listens"):
            c.recv(10)
        with pytest.raises(ConnectionRefusedError):
            c.send(b"x")
        assert c.state == "dead" and c.session.failure == "refused"
    finally:
        c.close()


# ------------------------------------------------------------ select / files


def test_fileno_select_readiness(pair: tuple[kcpsock.KCPSocket, kcpsock.KCPSocket]) -> None:
    c, s = pair
    fd = s.fileno()
    assert fd >= 0
    assert select.select([s], [], [], 0)[0] == []
    c.sendall(b"ready?")
    r, _, _ = select.select([s], [], [], 5)
    assert r == [s]
    assert s.recv(100) == b"ready?"
    assert select.select([s], [], [], 0)[0] == []
    # selectors and poll accept it as well
    c.sendall(b"again")
    with selectors.DefaultSelector() as sel:
        sel.register(s, selectors.EVENT_READ)
        events = sel.select(5)
        assert len(events) == 1
    p = select.poll()
    p.register(s.fileno(), select.POLLIN)
    assert p.poll(5000)
    assert s.recv(100) == b"again"


def test_listener_fileno_readable_when_accept_wont_block(listener: kcpsock.Listener) -> None:
    assert select.select([listener], [], [], 0)[0] == []
    c = kcpsock.dial(listener.getsockname())
    c.sendall(b"knock")
    assert select.select([listener], [], [], 5)[0] == [listener]
    s, _ = listener.accept()
    assert select.select([listener], [], [], 0)[0] == []
    listener.setblocking(False)
    with pytest.raises(BlockingIOError):
        listener.accept()
    c.close()
    s.close()


def test_makefile_binary_lines(pair: tuple[kcpsock.KCPSocket, kcpsock.KCPSocket]) -> None:
    c, s = pair
    rfile = s.makefile("rb", -1)
    wfile = c.makefile("wb", 0)
    wfile.write(b"line one\nline two\n")
    assert rfile.readline() == b"line one\n"
    assert rfile.readline() == b"line two\n"
    rfile.close()
    wfile.close()


def test_makefile_text_mode_and_close_refcount(
    pair: tuple[kcpsock.KCPSocket, kcpsock.KCPSocket],
) -> None:
    c, s = pair
    w = c.makefile("w", encoding="utf-8", newline="\n")
    r = s.makefile("r", encoding="utf-8")
    c.close()  # deferred: a file is still open (socket.socket semantics)
    w.write("héllo\n")
    w.flush()
    assert r.readline() == "héllo\n"
    w.close()
    assert c.fileno() == -1
    with pytest.raises(ValueError, match="unbuffered streams must be binary"):
        s.makefile("r", buffering=0)
    with pytest.raises(ValueError, match="invalid mode"):
        s.makefile("x")
    r.close()


def test_makefile_timeout(pair: tuple[kcpsock.KCPSocket, kcpsock.KCPSocket]) -> None:
    _, s = pair
    s.settimeout(0.2)
    f = s.makefile("rb")
    with pytest.raises(TimeoutError):
        f.readline()
    f.close()


# ---------------------------------------------------------- addresses, knobs


def test_addresses_family_type(pair: tuple[kcpsock.KCPSocket, kcpsock.KCPSocket]) -> None:
    c, s = pair
    assert c.getpeername() == s.getsockname()
    assert s.getpeername() == c.getsockname()
    assert c.family == socket.AF_INET
    assert c.type == socket.SOCK_STREAM
    assert c.proto == socket.IPPROTO_UDP
    # the enums socket.socket shows in a REPL, not bare ints
    assert isinstance(c.family, socket.AddressFamily) and isinstance(s.family, socket.AddressFamily)
    assert isinstance(c.type, socket.SocketKind)
    assert c.conv == s.conv


def test_sockopts_reach_the_udp_socket(pair: tuple[kcpsock.KCPSocket, kcpsock.KCPSocket]) -> None:
    c, _ = pair
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    assert c.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) >= 65536
    # the socket says what it behaves as (asyncio checks SO_TYPE), not UDP
    assert c.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE) == socket.SOCK_STREAM
    c.set_read_buffer(1 << 17)
    c.set_write_buffer(1 << 17)
    assert c.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) >= 1 << 17
    c.set_dscp(46)
    assert c.getsockopt(socket.IPPROTO_IP, socket.IP_TOS) == 46 << 2
    # code written for TCP disables Nagle: that is kcp-go's write delay
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    assert c.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    assert not c.session.write_delay
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)
    assert write_delay_of(c) and c.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with pytest.raises(OSError):
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 1000)


def write_delay_of(sock: kcpsock.KCPSocket) -> bool:
    """The session's write-delay flag, read through a call (no narrowing kept by mypy)."""
    return sock.session.write_delay


def test_accepted_session_refuses_socket_knobs(
    pair: tuple[kcpsock.KCPSocket, kcpsock.KCPSocket],
) -> None:
    _, s = pair
    calls: list[Callable[[], None]] = [
        lambda: s.set_dscp(1),
        lambda: s.set_read_buffer(1 << 16),
        lambda: s.set_write_buffer(1 << 16),
    ]
    for call in calls:
        with pytest.raises(OSError) as info:
            call()
        assert info.value.errno == errno.EINVAL


def test_kcp_knobs(pair: tuple[kcpsock.KCPSocket, kcpsock.KCPSocket]) -> None:
    c, s = pair
    c.set_nodelay(1, 20, 2, 1)
    k = c.session.kcp
    assert (k.interval, k.fastresend, k.nocwnd, k.rx_minrto) == (20, 2, 1, 30)
    c.set_window_size(100, 200)
    assert (k.snd_wnd, k.rcv_wnd) == (100, 200)
    with pytest.raises(ValueError, match="sndwnd must be <= 65535"):
        c.set_window_size(70000, 1)
    assert c.set_mtu(1501) is False
    assert c.set_mtu(1200) is True and k.mtu == 1200
    assert c.set_mtu(10) is False
    c.set_stream_mode(True)
    assert k.stream
    c.set_stream_mode(False)
    c.set_ack_nodelay(True)
    c.set_write_delay(False)
    with pytest.raises(ValueError, match=r"dup must be 0\.\.16"):
        c.set_dup(-1)
    c.sendall(b"after knobs")
    assert s.recv(100) == b"after knobs"


def test_dup_sends_duplicates(pair: tuple[kcpsock.KCPSocket, kcpsock.KCPSocket]) -> None:
    c, s = pair
    before = s.figures()["repeat_segs"]
    c.set_dup(2)
    for i in range(5):
        c.sendall(b"dup %d" % i)
        assert s.recv(100) == b"dup %d" % i
    deadline = time.monotonic() + 5
    while s.figures()["repeat_segs"] < before + 10 and time.monotonic() < deadline:
        threading.Event().wait(0.01)
    assert s.figures()["repeat_segs"] >= before + 10


def test_figures_and_repr(pair: tuple[kcpsock.KCPSocket, kcpsock.KCPSocket]) -> None:
    c, s = pair
    for _ in range(3):
        c.sendall(b"x" * 100)
        s.recv(1000)
        s.sendall(b"y")
        c.recv(10)
    f = c.figures()
    assert f["segments_out"] > 0 and f["segments_in"] > 0
    assert c.segments_sent == c.session.kcp.out_segs
    assert c.rto > 0 and c.srtt >= 0 and c.rttvar >= 0
    assert c.retransmissions >= 0
    r = repr(c)
    assert f"conv={c.conv:#010x}" in r and "raddr=" in r and "laddr=" in r and "srtt=" in r
    assert "state=open" in r
    assert "Listener" in repr(kcpsock.listen(("127.0.0.1", 0)))


def test_bad_arguments_name_the_argument(listener: kcpsock.Listener) -> None:
    with pytest.raises(TypeError, match="address"):
        kcpsock.dial(["127.0.0.1", 1])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="address"):
        kcpsock.dial("127.0.0.1")
    with pytest.raises(ValueError, match="brackets"):
        kcpsock.dial("::1:80")
    with pytest.raises(TypeError, match="address port"):
        kcpsock.dial(("127.0.0.1", "x"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="port"):
        kcpsock.dial(("127.0.0.1", 70000))
    with pytest.raises(TypeError, match="conv"):
        kcpsock.dial(listener.getsockname(), conv="1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="conv"):
        kcpsock.dial(listener.getsockname(), conv=-1)
    with pytest.raises(ValueError, match="shards"):
        kcpsock.dial(listener.getsockname(), data_shards=1, parity_shards=0)
    with pytest.raises(TypeError):
        kcpsock.dial(listener.getsockname(), no_such_option=1)
    with pytest.raises(ValueError, match="sndwnd"):
        kcpsock.dial(listener.getsockname(), sndwnd=0)
    with pytest.raises(TypeError, match="sock"):
        kcpsock.listen(None, sock=object())  # type: ignore[arg-type]


# ------------------------------------------------------------ factories


def test_create_connection_and_create_server() -> None:
    with kcpsock.create_server(("127.0.0.1", 0), backlog=4, **FAST) as ln:
        ln.settimeout(5)
        c = kcpsock.create_connection(ln.getsockname(), 2.5, ("127.0.0.1", 0))
        assert c.gettimeout() == 2.5
        c.sendall(b"cc")
        s, _ = ln.accept()
        s.settimeout(5)
        assert s.recv(10) == b"cc"
        c.close()
        s.close()


def test_hostname_resolution() -> None:
    with kcpsock.listen(("localhost", 0)) as ln:
        ln.settimeout(5)
        port = ln.getsockname()[1]
        with kcpsock.dial(("localhost", port), timeout=5) as c:
            c.sendall(b"by name")
            s, _ = ln.accept()
            s.settimeout(5)
            assert s.recv(20) == b"by name"
            s.close()


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6 support")
def test_ipv6_loopback() -> None:
    try:
        ln = kcpsock.listen(("::1", 0), **FAST)
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback: {exc}")
    with ln:
        ln.settimeout(5)
        with kcpsock.dial(ln.getsockname()[:2], timeout=5, **FAST) as c:
            assert c.family == socket.AF_INET6
            c.sendall(b"six")
            s, addr = ln.accept()
            s.settimeout(5)
            assert addr[0] == "::1"
            assert s.recv(10) == b"six"
            s.sendall(b"back")
            assert c.recv(10) == b"back"
            s.close()


def test_stdlib_stream_request_handler_runs_unchanged(
    pair: tuple[kcpsock.KCPSocket, kcpsock.KCPSocket],
) -> None:
    import socketserver

    c, s = pair
    seen: list[bytes] = []

    class Upper(socketserver.StreamRequestHandler):
        timeout = 5
        disable_nagle_algorithm = True  # setsockopt(IPPROTO_TCP, TCP_NODELAY)

        def handle(self) -> None:
            for _ in range(3):
                line = self.rfile.readline()
                seen.append(line)
                self.wfile.write(line.upper())

    class FakeServer:
        pass

    t = threading.Thread(target=Upper, args=(s, c.getsockname(), FakeServer()))
    t.start()
    rfile = c.makefile("rb")
    for word in (b"alpha\n", b"beta\n", b"gamma\n"):
        c.sendall(word)
        assert rfile.readline() == word.upper()
    t.join(5)
    assert not t.is_alive()
    assert seen == [b"alpha\n", b"beta\n", b"gamma\n"]
    rfile.close()


def test_linger_close_waits_for_acknowledgement(listener: kcpsock.Listener) -> None:
    # sendall only queues; with linger, close() returns once the peer has it all
    c, s = connect(listener, sndwnd=64, rcvwnd=64, linger=10.0)
    s.set_window_size(64, 64)
    data = os.urandom(600_000)
    got = bytearray()

    def reader() -> None:
        while len(got) < len(data):
            chunk = s.recv(65536)
            if not chunk:
                return
            got.extend(chunk)

    t = threading.Thread(target=reader)
    t.start()
    c.sendall(data)
    c.close()  # waits for the ACKs
    assert c.session.kcp.waitsnd() == 0
    t.join(10)
    assert bytes(got) == data
    s.close()


def test_so_linger_option(pair: tuple[kcpsock.KCPSocket, kcpsock.KCPSocket]) -> None:
    import struct

    c, _ = pair
    assert c.getsockopt(socket.SOL_SOCKET, socket.SO_LINGER) == 0
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 3))
    assert c.session.linger == 3.0
    assert struct.unpack("ii", c.getsockopt(socket.SOL_SOCKET, socket.SO_LINGER, 8)) == (1, 3)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    assert c.session.linger == 0.0  # kcp-go's close: drop what is unacknowledged
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 0, 0))
    assert c.session.linger is None  # the default: deliver in the background


def test_bad_arguments_say_what_to_do(pair: tuple[kcpsock.KCPSocket, kcpsock.KCPSocket]) -> None:
    c, _ = pair
    addr = c.getpeername()
    # a cipher name instead of a cipher: point at new_block_crypt
    for factory in (kcpsock.dial, kcpsock.listen):
        with pytest.raises(TypeError, match=r"new_block_crypt\('aes', key\)"):
            factory(addr, block="aes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="data_shards must be >= 0"):
        kcpsock.dial(addr, data_shards=-1, parity_shards=3)
    with pytest.raises(ValueError, match="parity_shards=300"):
        kcpsock.dial(addr, data_shards=10, parity_shards=300)
    # an unknown option is called unknown; a bad value of a known one is not
    with pytest.raises(TypeError, match=r"unknown option.*no_such_thing"):
        kcpsock.dial(addr, no_such_thing=1)
    with pytest.raises(TypeError) as info:
        kcpsock.dial(addr, nodelay="x")
    assert "nodelay" in str(info.value) and "unknown" not in str(info.value)
    with pytest.raises(ValueError, match="timeout"):
        c.settimeout(-1)
    with pytest.raises(ValueError, match="bufsize"):
        c.recv(-1)
    for call in (c.send, c.sendall):
        with pytest.raises(TypeError, match=r"data must be a bytes-like object, not str.*encode"):
            call("text")  # type: ignore[arg-type]
    assert c.gettimeout() == 5  # nothing above changed the socket


def test_host_port_strings_as_kcp_go(listener: kcpsock.Listener) -> None:
    port = listener.getsockname()[1]
    with kcpsock.dial(f"127.0.0.1:{port}", timeout=5) as c:
        assert c.getpeername() == ("127.0.0.1", port)
        c.sendall(b"str")
        s, _ = listener.accept()
        with s:
            s.settimeout(5)
            assert s.recv(10) == b"str"
    with kcpsock.listen("127.0.0.1:0") as ln:
        assert ln.getsockname()[0] == "127.0.0.1"
    # unknown names fail in getaddrinfo, as with socket
    with pytest.raises(socket.gaierror):
        kcpsock.dial("nohost.invalid:1")
    with pytest.raises(socket.gaierror):
        kcpsock.dial(("nohost.invalid", 1))


def test_setters_after_close_raise_ebadf(listener: kcpsock.Listener) -> None:
    c = kcpsock.dial(listener.getsockname())
    c.close()
    listener.close()
    for call in (
        lambda: c.settimeout(1),
        lambda: c.setblocking(False),
        lambda: listener.settimeout(1),
        lambda: listener.setblocking(True),
        lambda: listener.set_read_buffer(65536),
        lambda: listener.getsockname(),
    ):
        with pytest.raises(OSError) as info:
            call()
        assert info.value.errno == errno.EBADF
    # as socket.socket: reading the timeout of a closed socket still works
    assert c.gettimeout() is None or c.gettimeout() == socket.getdefaulttimeout()


def test_settimeout_zero_is_setblocking_false(
    pair: tuple[kcpsock.KCPSocket, kcpsock.KCPSocket],
) -> None:
    c, _ = pair
    c.settimeout(0)
    assert c.getblocking() is False and c.gettimeout() == 0.0
    with pytest.raises(BlockingIOError):
        c.recv(10)
    c.setblocking(True)
    assert c.getblocking() is True and c.gettimeout() is None
    c.setblocking(False)
    assert c.gettimeout() == 0.0


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6 support")
def test_ipv6_names_are_4_tuples_and_bracket_strings() -> None:
    try:
        ln = kcpsock.listen("[::1]:0", **FAST)
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback: {exc}")
    with ln:
        ln.settimeout(5)
        local = ln.getsockname()
        assert len(local) == 4 and local[0] == "::1"
        with kcpsock.dial(f"[::1]:{local[1]}", timeout=5, **FAST) as c:
            assert c.getpeername() == ("::1", local[1], 0, 0)
            assert len(c.getsockname()) == 4
            c.sendall(b"v6")
            s, addr = ln.accept()
            with s:
                assert addr == c.getsockname() == s.getpeername()
                assert s.getsockname() == local


def test_makefile_modes_and_selectors(listener: kcpsock.Listener) -> None:
    c, s = connect(listener)
    with c, s, selectors.DefaultSelector() as sel:
        sel.register(s, selectors.EVENT_READ, "session")
        sel.register(listener, selectors.EVENT_READ, "listener")
        assert sel.select(0) == []
        w = c.makefile("wb", 0)
        assert w.write(b"one\n") == 4
        w.flush()
        events = sel.select(5)
        assert [key.data for key, _ in events] == ["session"]
        rb = s.makefile("rb")
        assert rb.readline() == b"one\n"
        c.sendall(b"zwei\r\ndrei\n")
        text = s.makefile("r", encoding="utf-8", newline="")
        # rb holds no data (it read one message); the text file gets the rest
        assert text.readline() == "zwei\r\n"
        assert next(iter(text)) == "drei\n"
        c2 = kcpsock.dial(listener.getsockname(), timeout=5)
        with c2:
            c2.send(b"x")
            assert [key.data for key, _ in sel.select(5)] == ["listener"]
            listener.accept()[0].close()
        for f in (w, rb, text):
            f.close()


def test_shut_wr_flushes_queued_data_but_sends_no_eof(
    pair: tuple[kcpsock.KCPSocket, kcpsock.KCPSocket],
) -> None:
    c, s = pair
    c.sendall(b"last words")
    c.shutdown(socket.SHUT_WR)
    assert s.recv(100) == b"last words"  # what was queued still arrives
    s.settimeout(0.3)
    with pytest.raises(TimeoutError):  # ... but no FIN: the peer sees no EOF
        s.recv(100)
    s.sendall(b"reply")  # the other direction still works
    assert c.recv(100) == b"reply"
    c.shutdown(socket.SHUT_RD)
    assert c.recv(100) == b""  # nothing buffered: EOF, no blocking
    assert "FIN" in (kcpsock.KCPSocket.shutdown.__doc__ or "")


def test_names_resolve_ipv4_first_as_kcp_go(
    listener: kcpsock.Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a name that resolves to ::1 first (Debian's /etc/hosts does this for
    # "localhost"): UDP cannot fall back after a refused connect, so dial must
    # pick the IPv4 address, where the listener is
    port = listener.getsockname()[1]
    real = socket.getaddrinfo

    def fake(host: object, *args: object, **kwargs: object) -> list:  # type: ignore[type-arg]
        if host == "dual.test":
            v6 = (socket.AF_INET6, socket.SOCK_DGRAM, 17, "", ("::1", port, 0, 0))
            v4 = (socket.AF_INET, socket.SOCK_DGRAM, 17, "", ("127.0.0.1", port))
            return [v6, v4]
        return real(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    with kcpsock.dial(("dual.test", port), timeout=5) as c:
        assert c.family == socket.AF_INET
        assert c.getpeername() == ("127.0.0.1", port)
        c.sendall(b"v4")
        s, _ = listener.accept()
        with s:
            s.settimeout(5)
            assert s.recv(10) == b"v4"


def test_create_connection_signature_matches_socket() -> None:
    import inspect

    ours = inspect.signature(kcpsock.create_connection).parameters
    theirs = inspect.signature(socket.create_connection).parameters
    for name, param in theirs.items():
        assert name in ours, name
        assert ours[name].kind == param.kind, name
        if name != "timeout":  # both a private sentinel, not the same object
            assert ours[name].default == param.default, name
    assert list(ours)[:3] == ["address", "timeout", "source_address"]


def test_msg_peek_leaves_the_data(
    message_pair: tuple[kcpsock.KCPSocket, kcpsock.KCPSocket],
) -> None:
    c, s = message_pair
    c.sendall(b"first message")
    c.sendall(b"second")
    assert s.recv(5, socket.MSG_PEEK) == b"first"
    assert s.recv(100, socket.MSG_PEEK) == b"first message"  # one message at most
    buf = bytearray(5)
    assert s.recv_into(buf, 0, socket.MSG_PEEK) == 5 and buf == b"first"
    r, _, _ = select.select([s], [], [], 0)
    assert r == [s]  # peeked data keeps the socket readable
    assert s.recv(6) == b"first "
    assert s.recv(100, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"message"
    assert s.recv(100) == b"message"
    assert s.recv(100) == b"second"
    with pytest.raises(BlockingIOError):
        s.recv(10, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    assert s.bytes_received == 2 + len(b"first messagesecond")  # peeks not counted
    with pytest.raises(ValueError, match="MSG_DONTWAIT is supported"):
        c.send(b"x", socket.MSG_PEEK)
    with pytest.raises(ValueError, match="MSG_PEEK"):
        s.recv(10, socket.MSG_OOB)


def test_listener_shutdown_wakes_a_blocked_accept_like_tcp(listener: kcpsock.Listener) -> None:
    # The usual way to stop a thread blocked in accept() on a TCP server is
    # listener.shutdown(SHUT_RDWR) (then close()); it was an AttributeError.
    with pytest.raises(TypeError, match="how"):
        listener.shutdown("rd")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="how"):
        listener.shutdown(7)
    listener.shutdown(socket.SHUT_WR)  # as on a listening TCP socket: nothing
    listener.settimeout(0)
    with pytest.raises(BlockingIOError):
        listener.accept()  # still accepting
    listener.settimeout(None)
    started = threading.Event()
    errors: list[BaseException] = []

    def accept() -> None:
        started.set()
        try:
            listener.accept()
        except OSError as exc:
            errors.append(exc)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    assert started.wait(10)
    listener.shutdown(socket.SHUT_RDWR)
    thread.join(10)
    assert not thread.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], OSError)
    with pytest.raises(OSError):
        listener.accept()
    listener.close()  # still fine afterwards
    with pytest.raises(OSError, match="Bad file descriptor"):
        listener.shutdown(socket.SHUT_RDWR)  # after close: EBADF, as socket


def test_listener_getpeername_is_not_connected_like_tcp(listener: kcpsock.Listener) -> None:
    # generic code that logs sock.getpeername() expects OSError (ENOTCONN) from
    # a listening socket, not AttributeError
    with pytest.raises(OSError) as info:
        listener.getpeername()
    assert info.value.errno == errno.ENOTCONN
    listener.close()
    with pytest.raises(OSError) as info:
        listener.getpeername()
    assert info.value.errno == errno.EBADF
