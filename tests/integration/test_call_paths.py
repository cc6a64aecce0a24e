"""The short paths of the per-call API (send, sendall, recv, recv_into) give the long paths' results.

Each data call has a common-case path (no flags, an open socket, a small
bytes-like argument) that skips checks the general path makes; these tests
reach both with the same data and compare.  ``make test`` runs them on the
compiled core and ``make compat`` on the pure one (KCPSOCK_PURE=1).

Real UDP on 127.0.0.1 only; every wait is bounded.
"""

from __future__ import annotations

import array
import errno
import socket
from collections.abc import Iterator
from typing import Any

import pytest

import kcpsock
from tests.helpers import recv_exact

FAST: dict[str, Any] = {"nodelay": 1, "interval": 10, "resend": 2, "nc": True}


def _pair(stream: bool) -> tuple[kcpsock.Listener, kcpsock.KCPSocket, kcpsock.KCPSocket]:
    ln = kcpsock.listen(("127.0.0.1", 0), stream=stream, **FAST)
    ln.settimeout(5)
    c = kcpsock.dial(ln.getsockname(), timeout=5, stream=stream, **FAST)
    c.sendall(b"hi")
    s, _ = ln.accept()
    s.settimeout(5)
    assert s.recv(10) == b"hi"
    return ln, c, s


@pytest.fixture(params=[True, False], ids=["stream", "message"])
def pair(request: Any) -> Iterator[tuple[kcpsock.KCPSocket, kcpsock.KCPSocket]]:
    ln, c, s = _pair(request.param)
    yield c, s
    c.close()
    s.close()
    ln.close()


def _kinds(data: bytes) -> list[Any]:
    """``data`` as every kind of argument the send paths tell apart."""
    buf = bytearray(data)
    return [
        data,  # bytes
        buf,  # bytearray
        memoryview(buf),  # a contiguous byte view: copied to bytes
        array.array("B", data),  # another buffer type
        memoryview(array.array("H", data[: len(data) // 2 * 2])),  # a view with itemsize 2
    ]


@pytest.mark.parametrize("timeout", [None, 5.0])
def test_sendall_every_kind_arrives_unchanged(
    pair: tuple[kcpsock.KCPSocket, kcpsock.KCPSocket], timeout: float
) -> None:
    c, s = pair
    c.settimeout(timeout)
    data = bytes(range(256)) * 7  # more than one segment
    for arg in _kinds(data):
        want = memoryview(arg).tobytes()
        c.sendall(arg)
        assert recv_exact(s, len(want)) == want
    with pytest.raises(BufferError):  # as socket.sendall: a strided view is refused
        c.sendall(memoryview(bytearray(data))[::2])


def test_send_returns_the_count_for_every_kind(
    pair: tuple[kcpsock.KCPSocket, kcpsock.KCPSocket],
) -> None:
    c, s = pair
    data = b"0123456789" * 10
    for arg in _kinds(data):
        want = memoryview(arg).tobytes()
        assert c.send(arg) == len(want)
        assert recv_exact(s, len(want)) == want
    assert c.send(b"") == 0


def test_recv_into_short_and_long_paths_agree(
    pair: tuple[kcpsock.KCPSocket, kcpsock.KCPSocket],
) -> None:
    c, s = pair
    c.sendall(b"abcdef")
    buf = bytearray(64)
    assert s.recv_into(buf) == 6  # the common call: a bytearray, no nbytes, no flags
    assert buf[:6] == b"abcdef"
    c.sendall(b"ghijkl")
    view = memoryview(bytearray(64))
    assert s.recv_into(view, 3) == 3  # the general path: a view, nbytes
    assert view[:3].tobytes() == b"ghi"
    assert s.recv_into(buf, 0, 0) == 3
    assert buf[:3] == b"jkl"
    s.setblocking(False)
    with pytest.raises(BlockingIOError):
        s.recv_into(buf)
    with pytest.raises(BlockingIOError):
        s.recv(10)
    s.settimeout(0.05)
    with pytest.raises(TimeoutError):
        s.recv_into(buf)


def test_recv_into_with_nbytes_short_and_long_paths_agree(
    pair: tuple[kcpsock.KCPSocket, kcpsock.KCPSocket],
) -> None:
    # a bytearray with an nbytes in range takes the short path (a sink
    # reading at most what it still expects), a view the checked one
    c, s = pair
    buf = bytearray(b"." * 16)
    view = memoryview(bytearray(b"." * 16))
    c.sendall(b"abcdef")
    assert s.recv_into(buf, 4) == 4
    assert buf == b"abcd" + b"." * 12  # nothing beyond nbytes written
    assert s.recv_into(view, 4) == 2
    assert view.tobytes() == b"ef" + b"." * 14
    c.sendall(b"ghi")
    assert s.recv_into(buf, 16) == 3  # nbytes == len(buffer)
    assert buf[:4] == b"ghid"
    # out of range or of the wrong type: the checked path says what is wrong
    with pytest.raises(ValueError, match="greater than the length"):
        s.recv_into(buf, 17)
    with pytest.raises(ValueError, match="nbytes must be >= 0"):
        s.recv_into(buf, -1)
    with pytest.raises(TypeError, match="nbytes must be an int"):
        s.recv_into(buf, True)
    with pytest.raises(TypeError, match="nbytes must be an int"):
        s.recv_into(buf, 2.0)  # type: ignore[arg-type]
    c.sendall(b"jk")
    assert s.recv_into(buf, 0) == 2  # 0: the whole buffer
    assert buf[:4] == b"jkid"
    assert s.recv_into(bytearray(), 0) == 0  # an empty buffer reads nothing, waits for nothing
    c.sendall(b"st")
    strided = bytearray(b".") * 6
    assert s.recv_into(memoryview(strided)[::2]) == 2  # a strided view: item by item
    assert strided == b"s.t..."
    # the compiled short call leaves every unusual argument to the checks, untouched
    session = s._session
    c.sendall(b"mn")
    for nbytes in (-1, 17, True, 2.0, None):
        assert session.recv_into_short(buf, nbytes, None) == -1
    assert session.recv_into_short(bytearray(), 0, None) == -1
    assert session.recv_into_short(buf, 1, None) == 1 and buf[:1] == b"m"
    assert session.recv_into_short(buf, 0, None) == 1 and buf[:1] == b"n"


def test_closed_socket_takes_the_checked_path(
    pair: tuple[kcpsock.KCPSocket, kcpsock.KCPSocket],
) -> None:
    c, _ = pair
    c.close()
    for call in (
        lambda: c.sendall(b"x"),
        lambda: c.sendall(memoryview(b"x")),
        lambda: c.send(b"x"),
        lambda: c.recv(1),
        lambda: c.recv_into(bytearray(1)),
    ):
        with pytest.raises(OSError) as info:
            call()
        assert info.value.errno == errno.EBADF


def test_flags_take_the_checked_path(pair: tuple[kcpsock.KCPSocket, kcpsock.KCPSocket]) -> None:
    c, s = pair
    c.sendall(b"xyz", socket.MSG_DONTWAIT)
    assert s.recv(3, socket.MSG_PEEK) == b"xyz"
    assert recv_exact(s, 3) == b"xyz"
    with pytest.raises(ValueError, match="flags"):
        c.sendall(b"x", socket.MSG_OOB)
    with pytest.raises(TypeError):
        c.sendall("text")  # type: ignore[arg-type]  # deliberate: a str is refused
