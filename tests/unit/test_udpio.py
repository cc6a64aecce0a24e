"""kcpsock._udpio, the C helper of kcpsock._mmsg: argument checks and error paths.

tests/integration/test_mmsg.py runs every batch test through both paths
(ctypes and this helper); these cover what only the helper's own calls show.
"""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
from collections import deque
from collections.abc import Iterator
from typing import Any

import pytest

from kcpsock import _accel, _mmsg

udpio: Any = _accel.native("_udpio")
pytestmark = pytest.mark.skipif(udpio is None, reason="kcpsock._udpio is not built")


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        a.bind(("127.0.0.1", 0))
        b.bind(("127.0.0.1", 0))
        yield a, b
    finally:
        a.close()
        b.close()


class _Resolver:
    """The ``resolve`` callback of ``udpio.recv``: fills ``cache``, notes each key in ``seen``."""

    def __init__(self) -> None:
        self.cache: dict[bytes, Any] = {}
        self.seen: list[bytes] = []

    def __call__(self, key: bytes) -> Any:
        self.seen.append(key)
        self.cache[key] = _mmsg._address(key)
        return self.cache[key]


def _raw(addr: Any) -> bytes:
    raw = _mmsg._sockaddr(socket.AF_INET, addr)
    assert raw is not None
    return raw


def test_send_and_recv_round_trip_into_a_deque(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    packets = [bytes([i]) * (i + 1) for i in range(100)]  # two sendmmsg chunks
    packets[3] = bytearray(packets[3])  # type: ignore[call-overload]
    assert udpio.send(a.fileno(), packets, _raw(b.getsockname())) == (
        100,
        sum(map(len, packets)),
    )
    assert select.select([b], [], [], 5.0)[0]
    out: deque[tuple[bytes, Any]] = deque()
    resolve = _Resolver()
    udpio.recv(b.fileno(), 2048, 16, 100, 16, out, None, resolve.cache, resolve)
    assert [p for p, _ in out] == [bytes(p) for p in packets]
    assert {addr for _, addr in out} == {a.getsockname()}
    assert len(resolve.seen) == 1  # converted once, then taken from the cache
    assert all(type(p) is bytes for p, _ in out)


def test_recv_gives_each_datagram_its_own_source_when_sources_alternate() -> None:
    # (a run from one source looks its address up once: the reuse must never
    # hand one source's address to another's datagram)
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(4)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        b, senders = socks[0], socks[1:]
        order = [0, 0, 1, 0, 2, 2, 2, 1, 0, 1]
        for k, i in enumerate(order):
            senders[i].sendto(bytes([k]), b.getsockname())
        out: list[tuple[bytes, Any]] = []
        resolve = _Resolver()
        while len(out) < len(order):
            assert select.select([b], [], [], 5.0)[0]
            udpio.recv(
                b.fileno(), 2048, 16, len(order) - len(out), 16, out, None, resolve.cache, resolve
            )
        assert [p for p, _ in out] == [bytes([k]) for k in range(len(order))]
        assert [addr for _, addr in out] == [senders[i].getsockname() for i in order]
        assert len(resolve.seen) == 3  # one conversion per source
    finally:
        for s in socks:
            s.close()


def test_recv_on_an_empty_socket_returns_nothing(pair: tuple[socket.socket, socket.socket]) -> None:
    out: list[Any] = []
    udpio.recv(pair[1].fileno(), 1500, 8, 8, 0, out, ("x", 1), {}, None)
    assert out == []


def refused(pair: tuple[socket.socket, socket.socket]) -> socket.socket:
    """``pair[0]`` connected to ``pair[1]``'s port, closed: its next send is refused.

    The ICMP answer to a first datagram for the closed port refuses the next
    one (waited for with a bounded select).
    """
    a, b = pair
    dead = b.getsockname()
    b.close()
    a.connect(dead)
    a.send(b"first")
    assert select.select([a], [], [], 5.0)[0]
    return a


def test_send_each_to_a_refused_connected_peer_skips(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a = refused(pair)
    flags = udpio.send_each(a.fileno(), [b"1", b"2", b"3"], None)
    assert flags.count(1) == 2 and flags[0] == 0  # the refused one skipped, the rest sent


def test_closed_fd_is_ebadf_like_recvfrom(pair: tuple[socket.socket, socket.socket]) -> None:
    with pytest.raises(OSError):
        udpio.recv(-1, 1500, 8, 8, 0, [], ("x", 1), {}, None)
    assert udpio.send(-1, [b"a"], None) == (0, 0)  # any send error ends the call quietly


@pytest.mark.parametrize(
    ("args", "exc"),
    [
        (("x", 1500, 8, 8, 0, [], ("h", 1), {}, None), TypeError),
        ((0, 0, 8, 8, 0, [], ("h", 1), {}, None), ValueError),
        ((0, 1500, 0, 8, 0, [], ("h", 1), {}, None), ValueError),
        ((0, 1500, 2000, 8, 0, [], ("h", 1), {}, None), ValueError),
        ((0, 1500, 8, 8, 29, [], ("h", 1), {}, None), ValueError),
        ((0, 1500, 8, 8, 16, [], None, [], len), TypeError),
        ((0, 1500, 8, 8, 16, [], None, {}, 3), TypeError),
        ((0, 1500, 8, 8, 0, [], None, {}, len), ValueError),
        ((0, 1500, 8), TypeError),
    ],
)
def test_recv_rejects_bad_arguments(args: tuple[Any, ...], exc: type[Exception]) -> None:
    with pytest.raises(exc):
        udpio.recv(*args)


def test_send_rejects_bad_arguments(pair: tuple[socket.socket, socket.socket]) -> None:
    fd = pair[0].fileno()
    name = _raw(pair[1].getsockname())
    with pytest.raises(TypeError):
        udpio.send(fd, [b"a", 3], name)
    with pytest.raises(TypeError):
        udpio.send(fd, 5, name)
    with pytest.raises(TypeError):
        udpio.send(fd, [b"a"], b"short")
    with pytest.raises(TypeError):
        udpio.send(fd, [b"a"], "not bytes")
    with pytest.raises(ValueError, match="names must be as long"):
        udpio.send_each(fd, [b"a", b"b"], [name])
    with pytest.raises(TypeError):
        udpio.send_each(fd, [b"a"], [None])
    with pytest.raises(ValueError, match="fd must be"):
        udpio.send(1 << 40, [b"a"], name)
    with pytest.raises(TypeError):
        udpio.send(fd, [b"a"])


def test_pooled_buffers_keep_each_call_s_datagrams_apart(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    """Reused receive blocks never leak a previous call's bytes or lengths into a result."""
    a, b = pair
    dest = b.getsockname()
    peer = a.getsockname()
    for rnd in range(40):
        # alternate long and short datagrams, big and small calls: a block
        # reused from a call with longer datagrams still reads exact lengths
        size, batch = (2048, 16) if rnd % 2 else (300, 3)
        packets = [bytes([rnd, i]) * (200 if (rnd + i) % 3 else 1) for i in range(5)]
        for p in packets:
            a.sendto(p, dest)
        out: list[tuple[bytes, Any]] = []
        assert wait_readable(b)
        while len(out) < len(packets):
            udpio.recv(b.fileno(), size, batch, 64, 0, out, peer, {}, None)
            if len(out) < len(packets):
                assert wait_readable(b)
        assert [p for p, _ in out] == [p[:size] for p in packets]


def wait_readable(sock: socket.socket) -> bool:
    return bool(select.select([sock], [], [], 5.0)[0])


def test_pooled_buffers_across_threads() -> None:
    """Threads reading their own sockets at once each get exactly their own datagrams."""
    import threading

    errors: list[str] = []

    def worker(tag: int) -> None:
        with (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a,
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b,
        ):
            a.bind(("127.0.0.1", 0))
            b.bind(("127.0.0.1", 0))
            resolve = _Resolver()
            for rnd in range(100):
                packets = [bytes([tag, rnd % 256, i]) * (1 + (rnd * 7 + i) % 300) for i in range(3)]
                for p in packets:
                    a.sendto(p, b.getsockname())
                out: list[tuple[bytes, Any]] = []
                while len(out) < 3:
                    if not wait_readable(b):
                        errors.append(f"thread {tag}: nothing to read")
                        return
                    udpio.recv(
                        b.fileno(), 1500, 8, 3 - len(out), 16, out, None, resolve.cache, resolve
                    )
                if [p for p, _ in out] != packets or {s for _, s in out} != {a.getsockname()}:
                    errors.append(f"thread {tag} round {rnd}: {out!r:.200}")
                    return

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30.0)
    assert not any(t.is_alive() for t in threads)
    assert errors == []


def test_wait_blocks_for_the_first_datagram_and_takes_what_queued_behind_it(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    import threading

    a, b = pair
    out: list[tuple[bytes, Any]] = []
    started = threading.Event()

    def reader() -> None:
        started.set()
        udpio.recv(b.fileno(), 1500, 4, 4, 16, out, ("peer", 1), {}, None, 1)

    t = threading.Thread(target=reader)
    t.start()
    assert started.wait(5.0)
    a.sendto(b"late", b.getsockname())  # before or after the thread blocks: either way
    t.join(5.0)
    assert not t.is_alive()
    assert out == [(b"late", ("peer", 1))]
    # queued datagrams: one waiting call takes up to `batch` of them, the rest stay
    for i in range(6):
        a.sendto(bytes([i]), b.getsockname())
    assert wait_readable(b)
    # (loopback queues them all before the sends return)
    out.clear()
    udpio.recv(b.fileno(), 1500, 4, 4, 16, out, ("peer", 1), {}, None, 1)
    assert [p for p, _ in out] == [bytes([i]) for i in range(4)]
    out.clear()
    udpio.recv(b.fileno(), 1500, 4, 4, 16, out, ("peer", 1), {}, None, 1)
    assert [p for p, _ in out] == [b"\x04", b"\x05"]


def test_wait_returns_at_shutdown(pair: tuple[socket.socket, socket.socket]) -> None:
    """A blocked waiting read ends when the socket is shut down (how receivers stop)."""
    import threading

    a, b = pair
    b.connect(a.getsockname())
    out: list[tuple[bytes, Any]] = []
    errors: list[BaseException] = []
    started = threading.Event()

    def reader() -> None:
        started.set()
        try:
            udpio.recv(b.fileno(), 1500, 4, 4, 0, out, ("peer", 1), {}, None, 1)
        except OSError as exc:  # pragma: no cover - depends on the kernel
            errors.append(exc)

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    assert started.wait(5.0)
    # (if the thread has not entered recvmmsg yet, the read finds the socket
    # shut down and returns at once)
    b.shutdown(socket.SHUT_RD)
    t.join(5.0)
    assert not t.is_alive()
    assert errors == []
    assert all(p == b"" for p, _ in out)  # nothing but the kernel's end marker, if any


def test_send_now_sends_one_datagram(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    assert udpio.send_now(a.fileno(), b"hello", _raw(b.getsockname())) == 5
    assert udpio.send_now(a.fileno(), memoryview(b"xy"), _raw(b.getsockname())) == 2
    assert wait_readable(b)
    assert b.recvfrom(100) == (b"hello", a.getsockname())
    assert b.recvfrom(100) == (b"xy", a.getsockname())
    a.connect(b.getsockname())
    assert udpio.send_now(a.fileno(), b"", None) == 0  # an empty datagram is a datagram
    assert udpio.send_now(a.fileno(), b"c", None) == 1
    assert wait_readable(b)
    assert b.recv(100) == b""
    assert b.recv(100) == b"c"


def test_send_now_says_would_block_refused_and_failed(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a = refused(pair)
    assert udpio.send_now(a.fileno(), b"x", None) == -2
    assert udpio.send_now(a.fileno(), b"y", None) == 1  # the error was taken: sent
    assert udpio.send_now(-1, b"x", None) == -3  # EBADF: give up
    # would block: a datagram socket whose peer's queue is full (AF_UNIX:
    # loopback UDP never makes a sender wait)
    u, v = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        results = [udpio.send_now(u.fileno(), bytes(1000), None) for _ in range(2000)]
        assert results[0] == 1000
        assert results[-1] == -1  # the queue filled up: left to a waiting send
        assert set(results) == {1000, -1}
    finally:
        u.close()
        v.close()


def test_send_now_rejects_bad_arguments(pair: tuple[socket.socket, socket.socket]) -> None:
    a, _ = pair
    with pytest.raises(TypeError):
        udpio.send_now(a.fileno(), b"x")
    with pytest.raises(TypeError):
        udpio.send_now(a.fileno(), "text", None)
    with pytest.raises(TypeError):
        udpio.send_now(a.fileno(), b"x", b"short")
    with pytest.raises(ValueError, match="file descriptor"):
        udpio.send_now(1 << 40, b"x", None)


def test_send_to_looks_addresses_up_in_the_cache_then_resolves(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        c.bind(("127.0.0.1", 0))
        to_b, to_c = b.getsockname(), c.getsockname()
        cache: dict[Any, bytes] = {to_b: _raw(to_b)}
        asked: list[Any] = []

        def resolve(remote: Any) -> Any:
            asked.append(remote)
            cache.clear()  # (as _raw_name may: the names already taken stay alive)
            cache[remote] = _raw(remote)
            return cache[remote]

        packets = [bytes([i]) * (i + 1) for i in range(130)]  # three sendmmsg chunks
        remotes = [to_b if i % 3 else to_c for i in range(130)]
        flags = udpio.send_to(a.fileno(), packets, remotes, cache, resolve)
        assert flags == bytearray([1]) * 130
        assert asked and set(asked) <= {to_b, to_c}
        assert wait_readable(b) and wait_readable(c)
        assert [p for p, _ in _drain_all(b)] == [p for p, r in zip(packets, remotes) if r == to_b]
        assert [p for p, _ in _drain_all(c)] == [p for p, r in zip(packets, remotes) if r == to_c]
        # a run to one remote is looked up once
        asked.clear()
        cache.clear()
        assert (
            udpio.send_to(a.fileno(), [b"x"] * 10, [to_b] * 10, cache, resolve)
            == bytearray([1]) * 10
        )
        assert asked == [to_b]
        _drain_all(b)
    finally:
        c.close()


def _drain_all(sock: socket.socket) -> list[tuple[bytes, Any]]:
    out = []
    try:
        while True:
            out.append(sock.recvfrom(2048, socket.MSG_DONTWAIT))
    except BlockingIOError:
        return out


def test_send_to_sends_nothing_when_an_address_does_not_resolve(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    to_b = b.getsockname()
    cache = {to_b: _raw(to_b)}
    got = udpio.send_to(a.fileno(), [b"1", b"2"], [to_b, ("host.name", 9)], cache, lambda r: None)
    assert got is None
    assert not select.select([b], [], [], 0.2)[0]  # nothing left before the refusal


def test_send_to_rejects_bad_arguments(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    to_b = b.getsockname()
    fd = a.fileno()
    with pytest.raises(TypeError, match="5 arguments"):
        udpio.send_to(fd, [b"x"], [to_b], {})
    with pytest.raises(TypeError, match="cache must be a dict"):
        udpio.send_to(fd, [b"x"], [to_b], [], len)
    with pytest.raises(ValueError, match="as long as packets"):
        udpio.send_to(fd, [b"x", b"y"], [to_b], {}, len)
    with pytest.raises(TypeError, match="C sockaddr"):
        udpio.send_to(fd, [b"x"], [to_b], {to_b: b"short"}, len)
    with pytest.raises(ZeroDivisionError):
        udpio.send_to(fd, [b"x"], [to_b], {}, lambda r: 1 / 0)


def test_gil_stats_are_off_unless_switched_on_at_import() -> None:
    if os.environ.get("KCPSOCK_UDPIO_GILSTAT", "") not in ("", "0"):
        pytest.skip("KCPSOCK_UDPIO_GILSTAT is set in this process")
    assert udpio.gil_stats() is None


def test_gil_stats_count_each_kind_of_call_and_reset() -> None:
    # a child process: the switch is read once, when the module is imported
    code = """
import json, socket
from kcpsock import _accel, _mmsg
u = _accel.native("_udpio")
a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
a.bind(("127.0.0.1", 0))
b.bind(("127.0.0.1", 0))
raw = _mmsg._sockaddr(socket.AF_INET, b.getsockname())
u.send(a.fileno(), [b"x", b"yz"], raw)
out = []
u.recv(b.fileno(), 64, 8, 8, 8, out, None, {}, _mmsg._address, 1)
u.recv(b.fileno(), 64, 8, 8, 8, out, None, {}, _mmsg._address)
first = u.gil_stats(True)
print(json.dumps([len(out), first, u.gil_stats()]))
"""
    run = subprocess.run(
        [sys.executable, "-W", "error::RuntimeWarning", "-c", code],
        env={**os.environ, "KCPSOCK_UDPIO_GILSTAT": "1"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    got, first, after = json.loads(run.stdout)
    assert got == 2
    # [calls, ns in calls, ns to get the GIL back, longest, > 1 ms, > 5 ms]
    assert first["send"][0] == 1
    assert first["wait"][0] == 1  # it found both datagrams queued
    assert first["nowait"][0] == 1  # the empty socket: EAGAIN
    assert all(v[1] > 0 and v[2] >= 0 and v[3] <= v[2] for v in first.values())
    assert after == {k: [0] * 6 for k in ("wait", "nowait", "send")}
