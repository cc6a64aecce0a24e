"""``KCP.rto_ordered``: no RTO storm when the receiver is starved, loss still recovered.

A fake clock and a one-path, order-keeping link of 1 ms each way; the receiver
drains at most ``RATE`` datagrams a millisecond (a queue builds, as on a
loaded loopback) and can be stalled (it reads nothing) for a while.  kcp-go's
rule (``rto_ordered = False``) resends the whole in-flight window when the
stall outlasts the RTO; the new rule resends at most one segment per RTO
while the peer is silent, and a segment really lost is resent as early as
before (later ACKs pass it).
"""

from __future__ import annotations

import random
from collections import deque
from typing import Optional

import pytest

from kcpsock.kcp import KCP
from tests.unit.test_kcp_sim import PROFILES, drain, make_pair, random_messages

CONV = 0x5EED
RATE = 20  # datagrams the receiver reads per ms
U32 = 0x100000000


class Run:
    """One sender, one receiver, two links, driven 1 ms at a time."""

    def __init__(self, *, ordered: bool, start_ms: int = 0, wnd: int = 512) -> None:
        self.t = start_ms
        self.a, self.b = KCP(CONV), KCP(CONV)
        for k in (self.a, self.b):
            k.set_nodelay(1, 10, 2, 1)  # kcptun fast3, the bench's profile
            k.wndsize(wnd, wnd)
            k.rto_ordered = ordered
        self.ab: deque[tuple[int, bytes]] = deque()  # (arrival ms, datagram), in order
        self.ba: deque[tuple[int, bytes]] = deque()
        self.rx: deque[bytes] = deque()  # arrived at the receiver, not read yet
        self.stalled: Optional[tuple[int, int]] = None  # [from, to) ms: the receiver reads nothing
        self.drop: set[int] = set()  # sns whose first copy the link drops
        self.sent_sns: set[int] = set()
        self.delivered = 0
        self.delivered_at: dict[int, int] = {}  # sn -> ms it became in order at the receiver
        self.lost_at: dict[int, int] = {}  # RTO resends counted per ms
        self.flushes = 0  # the sender's timer flushes

    def _to_b(self, out: list[bytes]) -> None:
        for d in out:
            sn = int.from_bytes(d[12:16], "little")
            if d[4] == 81 and sn in self.drop and sn not in self.sent_sns:
                self.sent_sns.add(sn)  # the first copy of a dropped sn is lost
                continue
            self.ab.append((self.t + 1, d))

    def step(self) -> None:
        t = self.t
        a, b = self.a, self.b
        while self.ba and self.ba[0][0] <= t:
            self._to_b(a.input(self.ba.popleft()[1], t))
        lost = a.lost_segs
        if a.check(t) <= t:  # as the session: a flush whenever check() says one is due
            self.flushes += 1
            self._to_b(a.flush(t))
        if a.lost_segs != lost:
            self.lost_at[t] = self.lost_at.get(t, 0) + a.lost_segs - lost
        while self.ab and self.ab[0][0] <= t:
            self.rx.append(self.ab.popleft()[1])
        if not (self.stalled and self.stalled[0] <= t < self.stalled[1]):
            for _ in range(min(RATE, len(self.rx))):
                nxt = b.rcv_nxt
                self.ba.extend((t + 1, d) for d in b.input(self.rx.popleft(), t))
                while nxt != b.rcv_nxt:
                    self.delivered_at[nxt] = t
                    nxt = (nxt + 1) % U32
            while b.recv() is not None:
                self.delivered += 1
        if b.check(t) <= t:
            self.ba.extend((t + 1, d) for d in b.flush(t))
        self.t = t + 1

    def transfer(self, count: int, limit_ms: int = 20_000) -> int:
        """Send ``count`` full segments; return the ms it took until all were read."""
        start = self.t
        for _ in range(count):
            self.a.send(bytes(self.a.mss))
        while self.delivered < count:
            assert self.t - start < limit_ms, "transfer did not finish"
            self.step()
        return self.t - start


@pytest.mark.parametrize("start_ms", [0, U32 - 150])  # the stall across the 32-bit wrap
def test_a_stalled_receiver_gets_one_probe_per_rto_not_the_window(start_ms: int) -> None:
    results = {}
    for ordered in (False, True):
        run = Run(ordered=ordered, start_ms=start_ms)
        run.stalled = (start_ms + 100, start_ms + 140)  # 40 ms, above the 30 ms minimum RTO
        ms = run.transfer(4000)
        during = sum(n for when, n in run.lost_at.items() if when - start_ms < 260)
        results[ordered] = (run.a.lost_segs, during, ms)
    _, kcpgo_during, kcpgo_ms = results[False]
    lost, during, ms = results[True]
    assert kcpgo_during > 100  # kcp-go's rule resends (most of) the window
    # the new rule: at most one probe per minimum RTO while the peer is silent
    assert lost == during <= 40 // 30 + 1
    assert ms <= kcpgo_ms


@pytest.mark.parametrize("start_ms", [0, U32 - 150])
@pytest.mark.parametrize("drop", [[300], [300, 301, 302, 303], list(range(300, 340, 3))])
def test_a_lost_segment_is_resent_as_early_as_with_kcp_gos_rule(
    start_ms: int, drop: list[int]
) -> None:
    """Single, burst and spread losses: delivered at the same time under both rules."""
    at = {}
    for ordered in (False, True):
        run = Run(ordered=ordered, start_ms=start_ms)
        run.drop = set(drop)
        run.transfer(2000)
        at[ordered] = [run.delivered_at[sn] for sn in drop]
        assert run.a.lost_segs + run.a.fast_retrans_segs + run.a.early_retrans_segs >= len(drop)
    assert at[True] <= at[False] or all(n <= o for n, o in zip(at[True], at[False]))


def test_a_lost_segment_during_a_stall_is_recovered() -> None:
    """A segment lost while the receiver is starved: the probe's ACK frees it."""
    for ordered in (False, True):
        run = Run(ordered=ordered)
        run.drop = {500}
        run.stalled = (100, 150)
        run.transfer(3000)
        assert run.delivered == 3000


@pytest.mark.parametrize("drop", [[1999], [1996, 1997, 1998, 1999]])
def test_a_tail_loss_is_recovered_by_the_probe(drop: list[int]) -> None:
    """The last segments lost: no later ACK passes them; the silent peer gets a probe.

    The probe goes once the peer has been silent for half the RTO, so the
    tail comes at most about half a minimum RTO (15 ms) after kcp-go's rule
    resends it (with the whole RTO it came 24-33 ms later).
    """
    times = {}
    for ordered in (False, True):
        run = Run(ordered=ordered)
        run.drop = set(drop)
        times[ordered] = run.transfer(2000)
        assert run.delivered == 2000
    assert times[True] <= times[False] + 15


def test_held_segments_do_not_make_check_spin() -> None:
    """While segments are held, check() says when to look again, not 'now' at every ms."""
    flushes = {}
    for ordered in (False, True):
        run = Run(ordered=ordered)
        run.stalled = (100, 200)
        for _ in range(3000):
            run.a.send(bytes(run.a.mss))
        while run.t < 110:
            run.step()
        before = run.flushes
        held = 0
        while run.t < 200:
            run.step()
            held += run.a._held_ts >= 0
        assert held > 50 or not ordered  # segments were held during the stall
        flushes[ordered] = run.flushes - before
    # the interval's flushes and the window's resend times, as with kcp-go's
    # rule, not one per ms
    assert flushes[True] <= flushes[False] < 45


def test_after_a_loss_a_stall_gets_kcp_gos_rule() -> None:
    """For a second after a segment was found lost, silence counts as loss, not a stall."""
    lost = {}
    for ordered in (False, True):
        run = Run(ordered=ordered)
        run.drop = {50}
        run.stalled = (100, 140)
        run.transfer(4000)
        lost[ordered] = run.a.lost_segs
    assert lost[True] > 100 and lost[True] >= lost[False] // 2


@pytest.mark.parametrize("loss", [0.02, 0.1, 0.3])
def test_random_loss_is_recovered_as_fast_as_with_kcp_gos_rule(loss: float) -> None:
    """tests/netsim's seeded lossy link (both ways, in order): the same time to deliver."""
    took = {}
    for ordered in (False, True):
        total = 0
        for seed in range(4):
            pair = make_pair(
                PROFILES["kcptun-fast3"], loss=loss, seed=seed, wnd=256, dup=0.0, reorder=0.0
            )
            pair.ab.fifo = pair.ba.fifo = True
            for k in (pair.a, pair.b):
                k.rto_ordered = ordered
            msgs = random_messages(random.Random(seed), 300, 3000)
            for m in msgs:
                pair.a.send(m)
            got: list[bytes] = []
            start = pair.clock.now_ms
            receiver, want = pair.b, len(msgs)

            def done(receiver: KCP = receiver, got: list[bytes] = got, want: int = want) -> bool:
                drain(receiver, got)
                return len(got) >= want

            assert pair.run_until(done, 600_000)
            assert got == msgs
            total += pair.clock.now_ms - start
        took[ordered] = total
    assert took[True] <= took[False] * 1.05
