"""KCP.stale_wins: a WINS with una 0 after the peer acknowledged data is a fresh session's.

kcp-go's listener opens a new session for a datagram that arrives after it
closed one; that session answers a probe with una 0.  Only such an answer
counts: an old WINS overtaken by newer datagrams (una behind but not 0), one
recovered by FEC (possibly long after it was sent) and WINS seen before any
of our data was acknowledged do not.
"""

from __future__ import annotations

from kcpsock.kcp import KCP
from kcpsock.segment import Command
from tests.kcpwire import encode_segment

CONV = 0x1234


def _acked(n: int) -> KCP:
    """A KCP whose first ``n`` segments the peer has acknowledged (una = n)."""
    k = KCP(CONV)
    k.nodelay(1, 10, 2, 1)
    for i in range(n):
        k.send(b"x%d" % i)
    k.flush(0)
    k.input(encode_segment(CONV, Command.ACK, 0, 128, 0, n - 1, n), 5, regular=True)
    assert k.snd_una == n and not k.snd_buf
    return k


def _wins(una: int) -> bytes:
    return encode_segment(CONV, Command.WINS, 0, 128, 0, 0, una)


def test_a_fresh_sessions_answer_counts() -> None:
    k = _acked(3)
    k.input(_wins(0), 10, regular=True)
    assert k.stale_wins == 1


def test_an_answer_of_the_live_peer_does_not() -> None:
    k = _acked(3)
    k.input(_wins(3), 10, regular=True)
    k.input(_wins(2), 10, regular=True)  # old, overtaken: behind but not 0
    assert k.stale_wins == 0


def test_fec_recovered_and_early_answers_do_not() -> None:
    k = _acked(3)
    k.input(_wins(0), 10, regular=False)  # recovered from parity, maybe seconds old
    assert k.stale_wins == 0
    fresh = KCP(CONV)
    fresh.input(_wins(0), 10, regular=True)  # nothing of ours acknowledged yet
    assert fresh.stale_wins == 0
