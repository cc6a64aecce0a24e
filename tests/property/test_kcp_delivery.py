"""Hypothesis: exactly-once, in-order delivery for arbitrary link and core settings.

Any nodelay profile, window, MTU, mode, message sizes and link (loss up to
30 %, duplication, reordering, jitter, bandwidth limit), on the seeded link
simulator: every message arrives once, intact and in order, in both
directions, and nothing is left in flight afterwards.
"""

from __future__ import annotations

import random
from typing import Optional

from hypothesis import given
from hypothesis import strategies as st

from kcpsock.kcp import KCP
from tests.netsim import FakeClock, KCPPair, LossyLink

CONV = 0x600D


@given(
    nodelay=st.sampled_from([0, 1, 2]),
    interval=st.sampled_from([10, 20, 40, 100]),
    resend=st.sampled_from([0, 1, 2, 3]),
    nc=st.sampled_from([0, 1]),
    wnd=st.sampled_from([4, 16, 128]),
    mtu=st.sampled_from([60, 200, 576, 1400]),
    stream=st.booleans(),
    loss=st.sampled_from([0.0, 0.05, 0.3]),
    dup=st.sampled_from([0.0, 0.1]),
    reorder=st.sampled_from([0.0, 0.2]),
    bandwidth=st.sampled_from([None, 200_000]),
    sizes=st.lists(st.integers(1, 3000), min_size=1, max_size=12),
    seed=st.integers(0, 2**16),
)
def test_exactly_once_in_order(
    nodelay: int,
    interval: int,
    resend: int,
    nc: int,
    wnd: int,
    mtu: int,
    stream: bool,
    loss: float,
    dup: float,
    reorder: float,
    bandwidth: Optional[int],
    sizes: list[int],
    seed: int,
) -> None:
    rng = random.Random(seed)
    clock = FakeClock(rng.randrange(2**32))  # any epoch, wrap included
    a, b = KCP(CONV), KCP(CONV)
    for k in (a, b):
        k.nodelay(nodelay, interval, resend, nc)
        k.setmtu(mtu)
        k.stream = stream
        # a message needs rcv_wnd >= its fragment count (docs/KCP.md §14, hazard 2)
        k.wndsize(wnd, max(wnd, 3000 // (mtu - 24) + 1))

    def link(link_seed: int) -> LossyLink:
        return LossyLink(
            clock,
            seed=link_seed,
            loss=loss,
            dup=dup,
            reorder=reorder,
            delay_ms=10,
            jitter_ms=5,
            bandwidth=bandwidth,
        )

    pair = KCPPair(a, b, clock, link(seed), link(seed + 1))
    msgs = [rng.randbytes(n) for n in sizes]
    back = [m[::-1] for m in msgs[:3]]
    for m in msgs:
        a.send(m)
    for m in back:
        b.send(m)
    got_b: list[bytes] = []
    got_a: list[bytes] = []

    def drained() -> bool:
        for k, into in ((a, got_a), (b, got_b)):
            while True:
                m = k.recv()
                if m is None:
                    break
                into.append(m)
        return sum(map(len, got_b)) >= sum(map(len, msgs)) and sum(map(len, got_a)) >= sum(
            map(len, back)
        )

    assert pair.run_until(drained, 600_000, tick=5)
    if stream:
        assert b"".join(got_b) == b"".join(msgs)
        assert b"".join(got_a) == b"".join(back)
    else:
        assert got_b == msgs
        assert got_a == back
    pair.run_until(lambda: a.waitsnd() == 0 and b.waitsnd() == 0, 120_000, tick=5)
    assert a.waitsnd() == 0 and b.waitsnd() == 0
    assert a.recv() is None and b.recv() is None
