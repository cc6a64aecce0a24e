"""kcpsock._mmsg: batched sendmmsg/recvmmsg against Python's own socket calls.

Real UDP on 127.0.0.1 and ::1 only; every read is non-blocking (the data is
queued on loopback before ``send`` returns) or bounded by a timeout.
"""

from __future__ import annotations

import ctypes
import errno
import select
import socket
import sys
import threading
from collections import deque
from collections.abc import Iterator
from typing import Any

import pytest

import kcpsock
from kcpsock import _mmsg
from kcpsock.transport import RECV_SIZE, Receiver, Transport
from tests.helpers import echo_roundtrip, has_ipv6_loopback

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not _mmsg.enabled(),
    reason="sendmmsg/recvmmsg: Linux only",
)


FAMILIES = [
    pytest.param((socket.AF_INET, "127.0.0.1"), id="ipv4"),
    pytest.param(
        (socket.AF_INET6, "::1"),
        id="ipv6",
        marks=pytest.mark.skipif(not has_ipv6_loopback(), reason="no ::1 here"),
    ),
]


@pytest.fixture(autouse=True, params=["ctypes", "c"])
def io_path(request: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs on the ctypes path and on the C helper kcpsock._udpio (if built)."""
    if request.param == "ctypes":
        monkeypatch.setattr(_mmsg, "_udpio", lambda: None)
    elif _mmsg._udpio() is None:
        pytest.skip("kcpsock._udpio is not built (or KCPSOCK_PURE is set)")
    return str(request.param)


@pytest.fixture(params=FAMILIES)
def pair(request: Any) -> Iterator[tuple[socket.socket, socket.socket]]:
    """(sender, receiver): two UDP sockets on one loopback address."""
    family, host = request.param
    a = socket.socket(family, socket.SOCK_DGRAM)
    b = socket.socket(family, socket.SOCK_DGRAM)
    try:
        b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
        a.bind((host, 0))
        b.bind((host, 0))
        yield a, b
    finally:
        a.close()
        b.close()


def _packets(n: int) -> list[bytes]:
    return [bytes([i % 256]) * (1 + i % 97) for i in range(n)]


def _drain(sock: socket.socket) -> list[tuple[bytes, Any]]:
    out = []
    try:
        while True:
            out.append(sock.recvfrom(RECV_SIZE, socket.MSG_DONTWAIT))
    except BlockingIOError:
        return out


@pytest.mark.parametrize("n", [1, 2, 64, 150])
def test_unconnected_batches_arrive_whole_and_in_order(
    pair: tuple[socket.socket, socket.socket], n: int
) -> None:
    a, b = pair
    packets = _packets(n)
    sender = _mmsg.sender(a, connected=False)
    assert sender is not None
    assert sender.send(packets, b.getsockname()) == (n, sum(map(len, packets)))
    got = _drain(b)
    assert [p for p, _ in got] == packets
    assert {addr for _, addr in got} == {a.getsockname()}


def test_reader_gives_what_recvfrom_gives(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    packets = _packets(100)
    for p in packets:
        a.sendto(p, b.getsockname())
    fill = _mmsg.reader(b, RECV_SIZE, 16, connected=False)
    assert fill is not None
    out: deque[tuple[bytes, Any]] = deque()
    fill(out, 30)  # a partial read: 30 of 100, in two calls of 16 and one of... 14
    assert len(out) == 30
    fill(out, 30)  # full already: reads nothing
    assert len(out) == 30
    fill(out, 1000)  # the rest, then EAGAIN ends it quietly
    assert [p for p, _ in out] == packets
    # the same address tuple recvfrom returns (IPv6: host, port, flowinfo, scope_id)
    a.sendto(b"x", b.getsockname())
    ref = b.recvfrom(16)[1]
    assert all(addr == ref for _, addr in out)
    fill(out, 2000)  # nothing queued: no error
    assert len(out) == 100


def test_connected_sockets(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    a.connect(b.getsockname())
    b.connect(a.getsockname())
    sender = _mmsg.sender(a, connected=True)
    fill = _mmsg.reader(b, RECV_SIZE, 8, connected=True)
    assert sender is not None and fill is not None
    packets = _packets(20)
    assert sender.send(packets, None) == (20, sum(map(len, packets)))
    out: list[tuple[bytes, Any]] = []
    fill(out, 100)
    assert out == [(p, a.getsockname()) for p in packets]


def test_empty_batch(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    sender = _mmsg.sender(a, connected=False)
    assert sender is not None
    assert sender.send([], b.getsockname()) == (0, 0)
    assert Transport(a, owned=False, connected=False).send([], b.getsockname()) == (0, 0)
    fill = _mmsg.reader(b, RECV_SIZE, 8, connected=False)
    assert fill is not None
    out: list[tuple[bytes, Any]] = []
    fill(out, 0)
    fill(out, 5)
    assert out == []


def test_partial_sends_continue(pair: tuple[socket.socket, socket.socket]) -> None:
    """sendmmsg taking fewer than asked, or refusing one: the rest still goes."""
    a, b = pair
    sender = _mmsg.sender(a, connected=False)
    assert sender is not None
    sender._c = None  # the C helper has no ctypes call to stub
    real = sender._call
    calls: list[int] = []

    def stingy(fd: int, msgs: Any, n: int, flags: int) -> int:
        calls.append(n)
        if len(calls) == 2:  # the second call: the kernel refuses the datagram at hand
            ctypes.set_errno(errno.EAGAIN)
            return -1
        return real(fd, msgs, min(n, 3), flags)

    sender._call = stingy
    packets = _packets(10)
    sent, nbytes = sender.send(packets, b.getsockname()) or (-1, -1)
    expected = packets[:3] + packets[4:]  # the fourth was refused and skipped
    assert (sent, nbytes) == (9, sum(map(len, expected)))
    assert [p for p, _ in _drain(b)] == expected
    assert calls[:3] == [10, 7, 6]


def test_a_closed_socket_sends_nothing() -> None:
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender = _mmsg.sender(a, connected=False)
    assert sender is not None
    a.close()
    assert sender.send([b"a", b"b"], ("127.0.0.1", 9)) == (0, 0)


def test_refused_is_raised_like_recvfrom() -> None:
    """ICMP port unreachable on a connected socket: ConnectionRefusedError, as today."""
    gone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    gone.bind(("127.0.0.1", 0))
    dead = gone.getsockname()
    gone.close()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(dead)
        sender = _mmsg.sender(s, connected=True)
        fill = _mmsg.reader(s, RECV_SIZE, 8, connected=True)
        assert sender is not None and fill is not None
        sent, _ = sender.send([b"a", b"b", b"c"], None) or (-1, -1)
        # the first goes; its ICMP answer may refuse a later one (skipped)
        assert 2 <= sent <= 3
        # a pending socket error makes the socket readable (POLLERR)
        assert select.select([s], [], [], 5.0)[0]
        with pytest.raises(ConnectionRefusedError):
            fill([], 8)


def test_oversize_datagrams_are_truncated_as_recvfrom_does(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    big = bytes(range(256)) * 10  # 2560 bytes > RECV_SIZE
    a.sendto(big, b.getsockname())
    ref = b.recvfrom(RECV_SIZE)[0]
    assert len(ref) == RECV_SIZE
    sender = _mmsg.sender(a, connected=False)
    assert sender is not None
    sender.send([big, b"small"], b.getsockname())
    fill = _mmsg.reader(b, RECV_SIZE, 8, connected=False)
    assert fill is not None
    out: list[tuple[bytes, Any]] = []
    fill(out, 8)
    assert [p for p, _ in out] == [ref, b"small"]


def test_names_fall_back_to_sendto(pair: tuple[socket.socket, socket.socket]) -> None:
    """A hostname (not a numeric address) or a socket timeout: the per-datagram loop."""
    a, b = pair
    sender = _mmsg.sender(a, connected=False)
    assert sender is not None
    port = b.getsockname()[1]
    host = "localhost"
    assert sender.send([b"1", b"2"], (host, port)) is None
    transport = Transport(a, owned=False, connected=False)
    if a.family == socket.AF_INET:  # "localhost" resolves to 127.0.0.1 for IPv4
        assert transport.send([b"1", b"2"], (host, port)) == (2, 2)
        assert [p for p, _ in _drain(b)] == [b"1", b"2"]
    a.settimeout(1.0)
    assert sender.send([b"3", b"4"], b.getsockname()) is None
    assert transport.send([b"3", b"4"], b.getsockname()) == (2, 2)
    assert [p for p, _ in _drain(b)] == [b"3", b"4"]


def test_address_conversion_matches_the_socket_module() -> None:
    raw4 = _mmsg._sockaddr(socket.AF_INET, ("10.1.2.3", 4242))
    assert raw4 is not None and len(raw4) == 16
    assert _mmsg._address(raw4) == ("10.1.2.3", 4242)
    raw6 = _mmsg._sockaddr(socket.AF_INET6, ("2001:db8::5", 53, 7, 0))
    assert raw6 is not None and len(raw6) == 28
    assert _mmsg._address(raw6) == ("2001:db8::5", 53, 7, 0)
    # a link-local address with a scope id: recvfrom shows "%scope" (getnameinfo's form)
    raw = _mmsg._sockaddr(socket.AF_INET6, ("fe80::1", 9, 0, 1))
    assert raw is not None
    host, port, flow, scope = _mmsg._address(raw)
    assert host.startswith("fe80::1%") and (port, flow, scope) == (9, 0, 1)
    assert _mmsg._sockaddr(socket.AF_INET, ("localhost", 1)) is None
    assert _mmsg._address(_mmsg._sockaddr(socket.AF_INET6, (host, 9, 0, 1)) or b"") == (
        host,
        9,
        0,
        1,
    )  # the tuple recvfrom gave goes back out as the same sockaddr
    assert _mmsg._sockaddr(socket.AF_INET6, ("fe80::1%lo", 1)) is None  # sendto resolves it


def test_the_off_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(_mmsg.ENV_SWITCH, "1")
    assert not _mmsg.enabled()
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        a.bind(("127.0.0.1", 0))
        b.bind(("127.0.0.1", 0))
        assert _mmsg.sender(a, connected=False) is None
        assert _mmsg.reader(b, RECV_SIZE, 8, connected=False) is None
        transport = Transport(a, owned=False, connected=False)
        assert transport._batcher is None
        packets = _packets(5)
        assert transport.send(packets, b.getsockname()) == (5, sum(map(len, packets)))
        # the receiver's read-ahead is the recvfrom loop: EAGAIN ends it as an exception
        recv = Receiver(Transport(b, owned=False, connected=False), lambda batch: None, "t")
        out: list[tuple[bytes, Any]] = []
        with pytest.raises(BlockingIOError):
            recv._fill(out, 64)
        assert [p for p, _ in out] == packets
        recv.stop()
    finally:
        a.close()
        b.close()
    monkeypatch.setenv(_mmsg.ENV_SWITCH, "0")
    assert _mmsg.enabled()


@pytest.mark.parametrize("off", ["0", "1"], ids=["batched", "switched-off"])
@pytest.mark.parametrize("host", ["127.0.0.1", "::1"], ids=["ipv4", "ipv6"])
def test_sessions_talk_either_way(monkeypatch: pytest.MonkeyPatch, off: str, host: str) -> None:
    """A listener and a dialed session echo 300 kB with batched I/O on, and switched off."""
    if host == "::1" and not has_ipv6_loopback():
        pytest.skip("no ::1 here")
    monkeypatch.setenv(_mmsg.ENV_SWITCH, off)

    data = bytes(range(256)) * 1200
    with kcpsock.listen((host, 0)) as lst:
        errors: list[BaseException] = []

        def serve() -> None:
            try:
                conn, _ = lst.accept()
                conn.settimeout(20.0)
                with conn:
                    while chunk := conn.recv(65536):
                        conn.sendall(chunk)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        with kcpsock.dial(lst.getsockname()[:2]) as sock:
            sock.settimeout(20.0)
            assert (sock._session.transport._batcher is None) == (off == "1")
            assert echo_roundtrip(sock, data) == data
        thread.join(10.0)
        assert not thread.is_alive() and not errors


# --- UDP segmentation offload (GSO) -------------------------------------------

needs_gso = pytest.mark.skipif(
    _mmsg.gso_sender(socket.socket(socket.AF_INET, socket.SOCK_DGRAM), False) is None,
    reason="no UDP_SEGMENT in this kernel",
)


def _gso_batch() -> list[bytes]:
    """A flush's shape: an ACK, full segments, a short one, more runs, singles."""
    full = [bytes([i]) * 1400 for i in range(50)]  # longer than one GSO call (46 x 1400)
    return [
        b"\x01" * 24,
        *full,
        b"\x02" * 700,
        b"\x03" * 1400,
        b"\x04" * 30,
        *[bytes([i]) * 1000 for i in range(70)],  # more than GSO_MAX_SEGMENTS
        b"\x05" * 24,
    ]


@needs_gso
@pytest.mark.parametrize("connected", [False, True], ids=["unconnected", "connected"])
def test_gso_sends_the_same_datagrams_in_order(
    pair: tuple[socket.socket, socket.socket], connected: bool
) -> None:
    """Runs of equal datagrams leave in one sendmsg each; the peer sees every datagram as sent."""
    a, b = pair
    if connected:
        a.connect(b.getsockname())
    transport = Transport(a, owned=False, connected=connected)
    assert transport._gso is not None and transport._gso.enabled
    packets = _gso_batch()
    assert transport.send(packets, b.getsockname()) == (len(packets), sum(map(len, packets)))
    got = _drain(b)
    assert [p for p, _ in got] == packets
    assert {addr for _, addr in got} == {a.getsockname()}
    assert transport._gso.enabled


class _NoOffload(socket.socket):
    """A UDP socket whose GSO sends fail as on a device without checksum offload."""

    gso_calls = 0

    def sendmsg(self, buffers: Any, ancdata: Any = (), *args: Any) -> int:
        if ancdata:
            type(self).gso_calls += 1
            raise OSError(errno.EIO, "Input/output error")
        return super().sendmsg(buffers, ancdata, *args)


@needs_gso
def test_gso_refused_by_the_kernel_falls_back_for_good() -> None:
    _NoOffload.gso_calls = 0  # (counted per class: the test runs once per I/O path)
    a = _NoOffload(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
        a.bind(("127.0.0.1", 0))
        b.bind(("127.0.0.1", 0))
        transport = Transport(a, owned=False, connected=False)
        packets = _gso_batch()
        total = (len(packets), sum(map(len, packets)))
        assert transport.send(packets, b.getsockname()) == total
        assert [p for p, _ in _drain(b)] == packets  # nothing lost, order kept
        assert _NoOffload.gso_calls == 1
        assert transport.send(packets, b.getsockname()) == total
        assert [p for p, _ in _drain(b)] == packets
        assert _NoOffload.gso_calls == 1  # never tried again
        assert transport._gso is None
    finally:
        a.close()
        b.close()


def test_gso_off_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        monkeypatch.setenv(_mmsg.GSO_ENV_SWITCH, "1")
        assert _mmsg.gso_sender(a, False) is None
        assert Transport(a, owned=False, connected=False)._gso is None
        monkeypatch.setenv(_mmsg.GSO_ENV_SWITCH, "0")
        monkeypatch.setenv(_mmsg.ENV_SWITCH, "1")  # batched I/O off: GSO too
        assert _mmsg.gso_sender(a, False) is None
    finally:
        a.close()
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        assert _mmsg.gso_sender(unix, False) is None  # IP datagram sockets only
    finally:
        unix.close()


# --- many destinations in one call (a listener's gathered answers) ----------


@pytest.fixture(params=FAMILIES)
def trio(request: Any) -> Iterator[tuple[socket.socket, socket.socket, socket.socket]]:
    """(sender, receiver 1, receiver 2) on one loopback address."""
    family, host = request.param
    socks = [socket.socket(family, socket.SOCK_DGRAM) for _ in range(3)]
    try:
        for s in socks:
            s.bind((host, 0))
        yield socks[0], socks[1], socks[2]
    finally:
        for s in socks:
            s.close()


@pytest.mark.parametrize("n", [1, 3, 64, 150])
def test_send_each_reaches_every_destination_in_order(
    trio: tuple[socket.socket, socket.socket, socket.socket], n: int
) -> None:
    a, b, c = trio
    packets = _packets(n)
    remotes = [b.getsockname() if i % 3 else c.getsockname() for i in range(n)]
    sender = _mmsg.sender(a, connected=False)
    assert sender is not None
    assert sender.send_each(packets, remotes) == bytearray([1]) * n
    assert [p for p, _ in _drain(b)] == [p for i, p in enumerate(packets) if i % 3]
    assert [p for p, _ in _drain(c)] == [p for i, p in enumerate(packets) if not i % 3]
    # a one-destination send after it sets every destination again
    more = _packets(5)
    assert sender.send(more, b.getsockname()) == (5, sum(map(len, more)))
    assert [p for p, _ in _drain(b)] == more
    assert _drain(c) == []


def test_send_each_flags_what_was_refused(
    trio: tuple[socket.socket, socket.socket, socket.socket],
) -> None:
    a, b, c = trio
    sender = _mmsg.sender(a, connected=False)
    assert sender is not None
    sender._c = None  # the C helper has no ctypes call to stub
    real = sender._call
    calls: list[int] = []

    def stingy(fd: int, msgs: Any, n: int, flags: int) -> int:
        calls.append(n)
        if len(calls) == 2:
            ctypes.set_errno(errno.EAGAIN)
            return -1
        return real(fd, msgs, min(n, 2), flags)

    sender._call = stingy
    packets = _packets(6)
    remotes = [b.getsockname(), c.getsockname()] * 3
    assert sender.send_each(packets, remotes) == bytearray([1, 1, 0, 1, 1, 1])
    assert [p for p, _ in _drain(b)] == [packets[0], packets[4]]
    assert [p for p, _ in _drain(c)] == [packets[1], packets[3], packets[5]]


def test_send_each_falls_back_on_names_and_timeouts(
    trio: tuple[socket.socket, socket.socket, socket.socket],
) -> None:
    a, b, c = trio
    sender = _mmsg.sender(a, connected=False)
    assert sender is not None
    assert sender.send_each([b"1"], [("localhost", b.getsockname()[1])]) is None
    a.settimeout(1.0)
    assert sender.send_each([b"1"], [b.getsockname()]) is None
    a.close()
    a2 = socket.socket(a.family, socket.SOCK_DGRAM)
    s2 = _mmsg.sender(a2, connected=False)
    assert s2 is not None
    a2.close()
    assert s2.send_each([b"x", b"y"], [b.getsockname(), c.getsockname()]) == bytearray(2)


def _gather_of(transport: Transport) -> Any:
    """The gather in progress (a call: mypy keeps no narrowing across begin/end)."""
    return transport.gather


@pytest.mark.parametrize("off", ["", "1"])
def test_transport_gather_sends_once_and_releases_every_owner(
    monkeypatch: pytest.MonkeyPatch,
    trio: tuple[socket.socket, socket.socket, socket.socket],
    off: str,
) -> None:
    """Transport.begin_gather/end_gather: every owner's datagrams, in order, then its callback."""
    monkeypatch.setenv(_mmsg.ENV_SWITCH, off)
    a, b, c = trio
    transport = Transport(a, owned=False, connected=False)
    assert _gather_of(transport) is None
    transport.begin_gather()
    g = _gather_of(transport)
    assert g is not None and g.thread == threading.get_ident()
    results: dict[str, tuple[int, int]] = {}
    i1 = g.hold(1, lambda n, nb: results.__setitem__("one", (n, nb)))
    i2 = g.hold(2, lambda n, nb: results.__setitem__("two", (n, nb)))
    assert (g.owner(1), g.owner(2), g.owner(3)) == (i1, i2, -1)
    g.add(i1, [b"a1", b"a2"], b.getsockname())
    g.add(i2, [b"b1"], c.getsockname())
    g.add(i1, [b"a3"], b.getsockname())
    assert _drain(b) == [] and _drain(c) == []  # nothing leaves before the end
    transport.end_gather()
    assert _gather_of(transport) is None
    assert results == {"one": (3, 6), "two": (1, 2)}
    assert [p for p, _ in _drain(b)] == [b"a1", b"a2", b"a3"]
    assert [p for p, _ in _drain(c)] == [b"b1"]
    transport.end_gather()  # none in progress: nothing happens


def test_transport_gather_releases_owners_when_a_callback_fails(
    trio: tuple[socket.socket, socket.socket, socket.socket],
) -> None:
    a, b, _ = trio
    transport = Transport(a, owned=False, connected=False)
    transport.begin_gather()
    g = transport.gather
    assert g is not None
    seen: list[int] = []

    def bad(n: int, nb: int) -> None:
        raise RuntimeError("boom")

    g.add(g.hold(1, bad), [b"x"], b.getsockname())
    g.add(g.hold(2, lambda n, nb: seen.append(n)), [b"y"], b.getsockname())
    transport.end_gather()  # logged, not raised
    assert seen == [1]
    assert [p for p, _ in _drain(b)] == [b"x", b"y"]


@needs_gso
def test_gso_gathered_batch_keeps_each_destinations_order() -> None:
    """A listener's gathered batch (several destinations): runs per destination, order kept."""
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for s in (a, b, c):
            s.bind(("127.0.0.1", 0))
        for s in (b, c):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
        transport = Transport(a, owned=False, connected=False)
        to_b = _gso_batch()
        to_c = [bytes([i]) * 1400 for i in range(10)] + [b"\x09" * 24]
        packets = [*to_b[:30], *to_c[:5], *to_b[30:], *to_c[5:]]
        remotes = [b.getsockname()] * 30 + [c.getsockname()] * 5
        remotes += [b.getsockname()] * (len(to_b) - 30) + [c.getsockname()] * (len(to_c) - 5)
        flags = transport._send_each(packets, remotes)
        assert flags == bytearray(b"\x01" * len(packets))
        assert [p for p, _ in _drain(b)] == to_b
        assert [p for p, _ in _drain(c)] == to_c
        assert transport._gso is not None and transport._gso.enabled
        # refused as unsupported: the same batch goes the plain way, nothing lost
        d = _NoOffload(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            d.bind(("127.0.0.1", 0))
            calls = _NoOffload.gso_calls
            refused = Transport(d, owned=False, connected=False)
            assert refused._send_each(packets, remotes) == flags
            assert [p for p, _ in _drain(b)] == to_b
            assert [p for p, _ in _drain(c)] == to_c
            assert _NoOffload.gso_calls == calls + 1
        finally:
            d.close()
    finally:
        for s in (a, b, c):
            s.close()


def test_single_datagrams_go_through_send_now(
    io_path: str, pair: tuple[socket.socket, socket.socket]
) -> None:
    """One datagram: sent at once holding the GIL (C helper), or the usual way (ctypes)."""
    a, b = pair
    batcher = _mmsg.BatchSender(a, connected=False)
    done = batcher.send_now(b"one", b.getsockname())
    assert done == ((1, 3) if io_path == "c" else None)
    transport = Transport(a, owned=False, connected=False)
    for i in range(20):  # the transport's single sends, either path
        assert transport.send([bytes([i]) * (i + 1)], b.getsockname()) == (1, i + 1)
    assert select.select([b], [], [], 5.0)[0]
    got = _drain(b)
    expect = ([b"one"] if io_path == "c" else []) + [bytes([i]) * (i + 1) for i in range(20)]
    assert [p for p, _ in got] == expect
    assert {s for _, s in got} == {a.getsockname()}


def test_blocking_wait_read_of_a_receiver(io_path: str) -> None:
    """An owned socket's receiver waits in one recvmmsg (C helper) and delivers every datagram."""
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    a.bind(("127.0.0.1", 0))
    b.bind(("127.0.0.1", 0))
    b.connect(a.getsockname())
    got: list[bytes] = []
    cond = threading.Condition()

    def handler(batch: list[tuple[bytes, Any]]) -> None:
        with cond:
            got.extend(p for p, _ in batch)
            cond.notify_all()

    recv = Receiver(Transport(b, owned=True, connected=True), handler, "t")
    assert (recv._wait_read is not None) == (io_path == "c")
    recv.start()
    expected: list[bytes] = []
    try:
        for rnd in range(30):  # one at a time (a waiting read each), then bursts
            packets = [bytes([rnd, i]) for i in range(1 if rnd < 20 else 3 + rnd)]
            expected.extend(packets)
            for p in packets:
                a.sendto(p, b.getsockname())
            with cond:
                assert cond.wait_for(lambda: len(got) >= len(expected), 5.0)
            assert got == expected
    finally:
        recv.stop()
        a.close()
    assert not recv.thread.is_alive()
