"""Stream-mode reads take only the segments that fit (KCP.recv_stream via Session.recv).

An unstarted session on 127.0.0.1 is fed PUSH segments as a receiver would
(``Session.deliver``); the test reads with ``recv``/``recv_into`` and no
blocking (deadline 0).  What is checked: the bytes, their order across the
cut a short buffer makes, and that the rest stays queued, not copied.
"""

from __future__ import annotations

import struct

import pytest

from kcpsock.errors import KCPBlockingIOError
from kcpsock.inbound import Delivery
from kcpsock.session import Session
from tests.helpers import unstarted_session

CONV = 91


def feed(s: Session, payloads: list[bytes], first_sn: int = 0) -> None:
    d = Delivery(s.route)
    for i, payload in enumerate(payloads):
        hdr = struct.pack("<IBBHIIII", CONV, 81, 0, 128, 1000, first_sn + i, 0, len(payload))
        d.datagrams.append(hdr + payload)
        d.packets += 1
        d.nbytes += len(hdr) + len(payload)
    s.deliver(d)


def segments(n: int, size: int) -> list[bytes]:
    return [bytes([i % 251]) * size for i in range(n)]


def test_a_short_read_cuts_one_segment_and_leaves_the_rest_queued() -> None:
    with unstarted_session(CONV, stream=True) as (s, _):
        mss = s.kcp.mss
        segs = segments(10, mss)
        feed(s, segs)
        want = b"".join(segs)
        buf = bytearray(3 * mss + 100)
        n = s.recv_into(buf, len(buf), 0)
        assert n == len(buf) and bytes(buf) == want[:n]
        # the rest: the cut segment's tail (kept whole, an offset) and 6 queued segments
        assert len(s.kcp.rcv_queue) == 6
        assert s._pending == segs[3] and s._poff == 100
        got = s.recv(1 << 20, 0)
        assert got == want[n:]  # the tail, then the queue, in one read
        assert not s._pending and not s.kcp.rcv_queue
        with pytest.raises(KCPBlockingIOError):
            s.recv(10, 0)
        assert s.bytes_received == len(want)


@pytest.mark.parametrize("size", [1, 100, 1376, 4096, 65536])
def test_reads_of_any_size_return_the_stream_in_order(size: int) -> None:
    with unstarted_session(CONV, stream=True) as (s, _):
        mss = s.kcp.mss
        segs = [*segments(40, mss)[:-1], b"e" * 77]
        feed(s, segs)
        want = b"".join(segs)
        buf = bytearray(size)
        out = bytearray()
        while len(out) < len(want):
            n = s.recv_into_short(buf, 0, 0)
            assert 0 < n <= size
            out += buf[:n]
        assert out == want
