"""Session.recv_into copies each byte once and returns exactly what recv would.

Two unstarted sessions on 127.0.0.1 are fed the same PUSH segments (as a
receiver would, ``Session.deliver``); one is read with ``recv``, the other
with ``recv_into`` (deadline 0, no blocking), with the same sequence of
sizes.  What is checked after every read: the bytes, nothing written
beyond them in the buffer, and the same session state (the pending
payload and its offset, the receive queue, the window-reopened notice,
the byte count), in stream and message mode, for reads of every size
around segment and message boundaries, peeks, partial messages, with
bytearrays, memoryviews, a cast memoryview and a strided view, with and
without the C copier (``kcpsock._udpio.gather``).
"""

from __future__ import annotations

import array
import contextlib
import random
import struct
from collections.abc import Iterator
from typing import Any, Callable

import pytest

from kcpsock.errors import KCPBlockingIOError
from kcpsock.inbound import Delivery
from kcpsock.session import Session
from tests.helpers import unstarted_session

CONV = 93
FILL = 0xA5


def feed(s: Session, messages: list[list[bytes]], first_sn: int = 0) -> None:
    """Deliver ``messages`` (each a list of fragments) as PUSH segments, in order."""
    d = Delivery(s.route)
    sn = first_sn
    for frags in messages:
        for i, payload in enumerate(frags):
            frg = len(frags) - 1 - i
            hdr = struct.pack("<IBBHIIII", CONV, 81, frg, 128, 1000, sn, 0, len(payload))
            d.datagrams.append(hdr + payload)
            d.packets += 1
            d.nbytes += len(hdr) + len(payload)
            sn += 1
    s.deliver(d)


def state(s: Session) -> tuple[Any, ...]:
    kcp = s.kcp
    return (
        s._pending,
        s._poff,
        [bytes(d) for _, d in kcp.rcv_queue],
        kcp.probe,
        s.bytes_received,
        s._w_due,
    )


@contextlib.contextmanager
def pair(stream: bool, native: bool) -> Iterator[tuple[Session, Session]]:
    with contextlib.ExitStack() as stack:
        a, _ = stack.enter_context(unstarted_session(CONV, stream=stream))
        b, _ = stack.enter_context(unstarted_session(CONV, stream=stream))
        if not native:
            b._gather = None  # the pure path: join, cut, copy
        yield a, b


def payloads(rng: random.Random, mss: int, stream: bool) -> list[list[bytes]]:
    """Messages of sizes around the boundaries (stream mode: one segment each)."""
    sizes = [1, 2, mss - 1, mss, 7, mss, 300, mss - 2, 1, mss, 5]
    out: list[list[bytes]] = []
    for size in sizes:
        out.append([rng.randbytes(size)])
        if not stream and size == 300:
            # a message of three fragments, and one of two
            out.append([rng.randbytes(mss), rng.randbytes(mss), rng.randbytes(11)])
            out.append([rng.randbytes(mss), rng.randbytes(1)])
    return out


def read_both(
    a: Session, b: Session, size: int, make: Callable[[int], Any], peek: bool = False
) -> int:
    """One read of ``size`` bytes from each; both agree; returns the count (-1: nothing)."""
    try:
        want = a.recv(size, 0, peek)
    except KCPBlockingIOError:
        with pytest.raises(KCPBlockingIOError):
            b.recv_into(make(size + 5), size, 0, peek)
        return -1
    buf = make(size + 5)
    n = b.recv_into(buf, size, 0, peek)
    got = memoryview(buf)  # one-dimensional bytes, strided or not
    assert n == len(want)
    assert bytes(got[:n]) == want
    assert bytes(got[n:]) == bytes([FILL]) * (len(got) - n)  # nothing beyond
    assert state(a) == state(b)
    return n


def bytearray_buf(n: int) -> Any:
    return bytearray([FILL]) * n


def view_buf(n: int) -> Any:
    return memoryview(bytearray([FILL]) * n)


def cast_buf(n: int) -> Any:
    # a memoryview cast to bytes from 16-bit items (what KCPSocket.recv_into passes on)
    items = array.array("H", [FILL * 0x101]) * ((n + 1) // 2)
    return memoryview(items).cast("B")[:n]


def strided_buf(n: int) -> Any:
    # every other byte: no C copier can write it (the pure path's copy)
    return memoryview(bytearray([FILL]) * (2 * n))[::2]


BUFFERS = [bytearray_buf, view_buf, cast_buf, strided_buf]


@pytest.mark.parametrize("native", [True, False], ids=["gather", "pure"])
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "message"])
def test_every_read_size_around_the_boundaries(stream: bool, native: bool) -> None:
    rng = random.Random(12)
    with pair(stream, native) as (a, b):
        mss = a.kcp.mss
        sizes = sorted(
            {*range(1, 12), *range(mss - 3, mss + 4), *range(2 * mss - 3, 2 * mss + 4)}
            | {295, 299, 300, 301, 3 * mss + 11, 3 * mss + 12, 1 << 16}
        )
        for size in sizes:
            msgs = payloads(rng, mss, stream)
            total = sum(len(f) for m in msgs for f in m)
            feed(a, msgs, a.kcp.rcv_nxt)
            feed(b, msgs, b.kcp.rcv_nxt)
            make = BUFFERS[size % len(BUFFERS)]
            seen = 0
            for _ in range(total + 2):  # bounded: each read returns >= 1 byte
                n = read_both(a, b, size, make)
                if n < 0:
                    break
                seen += n
            assert seen == total


@pytest.mark.parametrize("native", [True, False], ids=["gather", "pure"])
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "message"])
def test_mixed_sizes_and_peeks(stream: bool, native: bool) -> None:
    rng = random.Random(7 + stream)
    with pair(stream, native) as (a, b):
        mss = a.kcp.mss
        for round_ in range(30):
            msgs = payloads(rng, mss, stream)
            total = sum(len(f) for m in msgs for f in m)
            feed(a, msgs, a.kcp.rcv_nxt)
            feed(b, msgs, b.kcp.rcv_nxt)
            seen = 0
            for _ in range(total + 2):
                size = rng.choice([1, 3, 299, 300, mss - 1, mss, mss + 1, 2 * mss + 5, 5000])
                make = rng.choice(BUFFERS)
                if rng.random() < 0.25:
                    read_both(a, b, size, make, peek=True)  # changes nothing but _pending
                n = read_both(a, b, size, make)
                if n < 0:
                    break
                seen += n
            assert seen == total, round_


def test_a_cut_message_keeps_its_tail_with_an_offset_not_a_copy() -> None:
    with unstarted_session(CONV, stream=False) as (s, _):
        mss = s.kcp.mss
        frags = [bytes([1]) * mss, bytes([2]) * mss, bytes([3]) * 9]
        feed(s, [frags])
        buf = bytearray(100)
        assert s.recv_into(buf, 100, 0) == 100
        assert buf == bytes([1]) * 100
        assert s._pending == b"".join(frags) and s._poff == 100
        rest = bytearray(4 * mss)
        n = s.recv_into(rest, len(rest), 0)
        assert rest[:n] == b"".join(frags)[100:]
        assert not s._pending and s._poff == 0
        assert s.bytes_received == 2 * mss + 9


def test_a_stream_read_copies_from_the_segments_themselves() -> None:
    # the C copier is given the queued payloads, not a joined copy of them
    with unstarted_session(CONV, stream=True) as (s, _):
        if s._gather is None:
            pytest.skip("kcpsock._udpio is not built")
        mss = s.kcp.mss
        segs = [bytes([i]) * mss for i in range(5)]
        feed(s, [[x] for x in segs])
        calls: list[tuple[int, list[int], int, int]] = []
        real = s._gather

        def spy(buffer: Any, pos: int, parts: Any, skip: int, drop: int) -> bool:
            sizes = [len(parts)] if type(parts) is bytes else [len(p) for p in parts]
            calls.append((pos, sizes, skip, drop))
            return real(buffer, pos, parts, skip, drop)

        s._gather = spy
        buf = bytearray(2 * mss + 10)
        assert s.recv_into(buf, len(buf), 0) == len(buf)
        assert calls == [(0, [mss, mss, mss], 0, mss - 10)]
        assert s._pending == segs[2] and s._poff == 10
        buf = bytearray(5 * mss)
        assert s.recv_into(buf, len(buf), 0) == 3 * mss - 10
        # the cut segment's tail, then the queue behind it
        assert calls[1:] == [(0, [mss], 10, 0), (mss - 10, [mss, mss], 0, 0)]
        assert bytes(buf[: 3 * mss - 10]) == b"".join(segs)[2 * mss + 10 :]
