"""kcpsock._udpio, the C helper of kcpsock._mmsg: argument checks and error paths.

tests/integration/test_mmsg.py runs every batch test through both paths
(ctypes and this helper); these cover what only the helper's own calls show.
"""

from __future__ import annotations

import select
import socket
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
    cache: dict[bytes, Any] = {}
    seen: list[bytes] = []

    def resolve(key: bytes) -> Any:
        seen.append(key)
        cache[key] = _mmsg._address(key)
        return cache[key]

    udpio.recv(b.fileno(), 2048, 16, 100, 16, out, None, cache, resolve)
    assert [p for p, _ in out] == [bytes(p) for p in packets]
    assert {addr for _, addr in out} == {a.getsockname()}
    assert len(seen) == 1  # converted once, then taken from the cache
    assert all(type(p) is bytes for p, _ in out)


def test_recv_on_an_empty_socket_returns_nothing(pair: tuple[socket.socket, socket.socket]) -> None:
    out: list[Any] = []
    udpio.recv(pair[1].fileno(), 1500, 8, 8, 0, out, ("x", 1), {}, None)
    assert out == []


def test_send_each_to_a_refused_connected_peer_skips(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    dead = b.getsockname()
    b.close()
    a.connect(dead)
    a.send(b"first")  # its ICMP answer refuses a later datagram
    assert select.select([a], [], [], 5.0)[0]
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
