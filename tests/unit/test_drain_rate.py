"""DrainRate: a slow receiver's advertised window drains before the sender's RTO.

A KCP sender with kcp-go's fast profile (nodelay 1/10/2/nc, windows 1024,
minimum RTO 30 ms) keeps a whole window in flight.  On a lossless link a
receiver that takes in only a few segments per millisecond (a Python
receiver with a cipher and FEC) makes the tail of each window wait longer
than the RTO: the sender resends it although nothing was lost.  With the
window capped by :class:`kcpsock.inbound.DrainRate`, as the listener does,
nothing is resent.  Fake clock, no threads.
"""

from __future__ import annotations

from collections import deque
from typing import Optional

import pytest

from kcpsock.inbound import DrainRate
from kcpsock.kcp import KCP
from tests.netsim import FakeClock, LossyLink

CONV = 0x5EED


def bench_pair(rto_ordered: bool = False) -> tuple[KCP, KCP]:
    """Two stream-mode KCP ends with tools/bench.py's profile (1/10/2/1, windows 1024, MTU 1400).

    The senders resend on timeout by kcp-go's rule unless ``rto_ordered``: the
    window a kcpsock receiver advertises is what protects it from a kcp-go
    sender (a kcpsock sender holds what the receiver has not reached yet).
    """
    ends = KCP(CONV), KCP(CONV)
    for k in ends:
        k.rto_ordered = rto_ordered
        k.set_nodelay(1, 10, 2, 1)
        k.wndsize(1024, 1024)
        k.setmtu(1400)
        k.stream = True
    return ends


def run_slow_receiver(
    per_ms: int,
    drain: Optional[DrainRate],
    total: int = 4_000_000,
    interval_ms: int = 50,
    rto_ordered: bool = False,
) -> tuple[int, int, bytes, int]:
    """Send ``total`` bytes to a receiver that inputs ``per_ms`` datagrams a ms.

    Returns:
        (the sender's RTO retransmissions, the receiver's duplicate
        segments, the bytes received, the simulated ms it took).
    """
    clock = FakeClock()
    tx, rx = bench_pair(rto_ordered)
    ab = LossyLink(clock, seed=1, delay_ms=1, fifo=True)  # lossless
    ba = LossyLink(clock, seed=2, delay_ms=1, fifo=True)
    inbox: deque[bytes] = deque()  # the receiver's backlog (kernel buffer + queue)
    data = bytes(i % 251 for i in range(total))
    sent = 0
    got = bytearray()
    backlog = False
    next_share = 0
    for now in range(60_000):  # bounded: 60 simulated seconds
        clock.now_ms = now
        # the sender: keep its queue topped up, flush on its interval
        while sent < total and tx.waitsnd() < 2048:
            chunk = data[sent : sent + 65536]
            tx.send(chunk)
            sent += len(chunk)
        for dg in ba.receive():
            for out in tx.input(dg, now):
                ab.send(out)
        for out in tx.update(now):
            ab.send(out)
        # the slow receiver: at most per_ms datagrams a millisecond
        inbox.extend(ab.receive())
        if len(inbox) > per_ms:
            backlog = True
        for _ in range(min(per_ms, len(inbox))):
            for out in rx.input(inbox.popleft(), now):
                ba.send(out)
        for out in rx.update(now):
            ba.send(out)
        while (msg := rx.recv()) is not None:
            got += msg
        if drain is not None and now >= next_share:
            # what the listener's receiver does between batches
            rx.wnd_cap = drain.window("s", now / 1000, rx.rcv_nxt, rx.rx_minrto, backlog)
            backlog = False
            next_share = now + interval_ms
        if len(got) == total and not tx.waitsnd():
            break
    return tx.lost_segs, rx.repeat_segs, bytes(got), clock.now_ms


def test_slow_receiver_without_cap_gets_window_tails_resent() -> None:
    # 20 datagrams a ms: a 1024-segment window takes ~50 ms to drain > 30 ms RTO
    lost, repeat, got, _ = run_slow_receiver(20, None)
    assert len(got) == 4_000_000
    assert lost > 200
    assert repeat > 200


def test_slow_receiver_without_cap_and_a_kcpsock_sender_gets_no_tails_resent() -> None:
    # the same receiver: rto_ordered holds the segments it has not reached
    lost0, _, _, ms0 = run_slow_receiver(20, None)
    lost, repeat, got, ms = run_slow_receiver(20, None, rto_ordered=True)
    assert len(got) == 4_000_000
    assert lost < 20 < lost0
    assert repeat < 20
    assert ms <= ms0


@pytest.mark.parametrize("per_ms", [10, 20, 30])
def test_slow_receiver_with_drain_rate_resends_nothing(per_ms: int) -> None:
    drain = DrainRate()
    lost, repeat, got, _ = run_slow_receiver(per_ms, drain)
    assert got == bytes(i % 251 for i in range(4_000_000))
    assert lost == 0
    assert repeat == 0
    # the window settled near what drains in half the 30 ms minimum RTO
    wnd = drain.seen["s"][2]
    assert 0.5 * per_ms * 15 <= wnd <= 2 * per_ms * 15


def test_very_slow_receiver_loses_at_most_the_unmeasured_first_window() -> None:
    # 5 datagrams a ms: even the first window (256, before any measurement)
    # outlasts the RTO; after the first measurement nothing more is resent
    lost0, _, _, _ = run_slow_receiver(5, None)
    drain = DrainRate()
    lost, _, got, _ = run_slow_receiver(5, drain)
    assert len(got) == 4_000_000
    assert lost < 2 * drain.start  # its tail, resent at most twice
    assert lost < lost0 / 4


def test_fast_receiver_is_not_slowed_down() -> None:
    # 400 datagrams a ms drain a 1024 window in ~3 ms: the window grows from
    # its unmeasured start at the first measurement; the start costs at most
    # the first interval (here the ACKs leave on the 10 ms ticks, so 256
    # segments a tick bound that interval; on loopback they leave at once)
    _, _, _, ms0 = run_slow_receiver(400, None, total=10_000_000)
    drain = DrainRate()
    lost, _, got, ms = run_slow_receiver(400, drain, total=10_000_000)
    assert len(got) == 10_000_000
    assert lost == 0
    assert ms <= ms0 + 50
    assert drain.seen["s"][2] > drain.start


def test_window_measures_only_under_backlog_and_grows_back() -> None:
    d = DrainRate(fraction=0.5, floor=32, grow=1.5, gain=1.0, start=256)
    assert d.window("k", 0.0, 0, 30, backlog=False) == 256  # not measured yet
    # 1,000 segments in 50 ms under backlog: 20/ms * 15 ms = 300
    assert d.window("k", 0.05, 1000, 30, backlog=True) == 300
    # keeping up: grows by half per interval, then the cap is lifted
    assert d.window("k", 0.10, 1100, 30, backlog=False) == 451
    w = 451
    for i in range(20):
        w = d.window("k", 0.15 + i * 0.05, 1200, 30, backlog=False)
    assert w == DrainRate.NO_CAP
    # a very slow receiver still advertises the floor; rcv_nxt wraps mod 2**32
    d.window("w", 0.0, 0xFFFFFFF0, 30, backlog=False)
    assert d.window("w", 1.0, 0x30, 30, backlog=True) == 32
    # a backlog of ACKs (this side sends, almost no data arrives) measures nothing
    assert d.window("w", 1.05, 0x31, 30, backlog=True) == 49
    d.forget(["w"])
    assert list(d.seen) == ["w"]


def test_window_of_a_session_that_also_sends_takes_a_third() -> None:
    d = DrainRate(fraction=0.5, floor=32, grow=1.5, gain=1.0, start=256)
    d.window("one", 0.0, 0, 30, backlog=False, sent=0)
    d.window("two", 0.0, 0, 30, backlog=False, sent=0)
    # 1,000 segments in 50 ms under backlog: 20/ms * 15 ms = 300 one-way ...
    assert d.window("one", 0.05, 1000, 30, backlog=True, sent=10) == 300
    # ... and a third of that while the session sent a window's worth meanwhile
    both = int(20_000 * 0.030 * 0.5 * DrainRate.BOTH_SHARE)
    assert 90 <= both <= 100
    assert d.window("two", 0.05, 1000, 30, backlog=True, sent=1000) == both
    # snd_nxt wraps mod 2**32; -1 (not known) never counts as sending
    d.window("w", 0.0, 0, 30, backlog=False, sent=0xFFFFFFF0)
    assert d.window("w", 0.05, 1000, 30, backlog=True, sent=0x30) == both
    d.window("u", 0.0, 0, 30, backlog=False)
    assert d.window("u", 0.05, 1000, 30, backlog=True) == 300


def run_two_way(
    aware: bool, per_ms: int = 20, total: int = 20_000_000, stall: tuple[int, int] = (18, 300)
) -> tuple[int, int, int]:
    """Both sides send ``total`` bytes at once through receivers of ``per_ms`` datagrams a ms.

    Each side's ACKs wait in the other's backlog behind its data, so each
    sender's RTT holds both backlogs.  Side b's receiver stalls ``stall[0]``
    ms every ``stall[1]`` ms (a process off the CPU).  Both windows are
    paced by a DrainRate every 50 ms, told what each side sent if ``aware``.

    Returns:
        (a's RTO resends, b's RTO resends, the simulated ms it took).
    """
    clock = FakeClock()
    a, b = bench_pair()
    sides = (a, b)
    to = [
        LossyLink(clock, seed=1, delay_ms=1, fifo=True),
        LossyLink(clock, seed=2, delay_ms=1, fifo=True),
    ]
    inbox: list[deque[bytes]] = [deque(), deque()]
    drain = [DrainRate(), DrainRate()]
    backlog = [False, False]
    sent, got = [0, 0], [0, 0]
    data = bytes(i % 251 for i in range(65536))
    next_share = 0
    now = 0
    for now in range(60_000):  # bounded: 60 simulated seconds
        clock.now_ms = now
        for i, me in enumerate(sides):
            while sent[i] < total and me.waitsnd() < 2048:
                me.send(data)
                sent[i] += len(data)
            inbox[i].extend(to[i].receive())
            if i == 0 or now % stall[1] >= stall[0]:
                backlog[i] = backlog[i] or len(inbox[i]) > per_ms
                for _ in range(min(per_ms, len(inbox[i]))):
                    for out in me.input(inbox[i].popleft(), now):
                        to[1 - i].send(out)
            for out in me.update(now):
                to[1 - i].send(out)
            while (msg := me.recv()) is not None:
                got[i] += len(msg)
        if now >= next_share:
            for i, k in enumerate(sides):
                k.wnd_cap = drain[i].window(
                    "s", now / 1000, k.rcv_nxt, k.rx_minrto, backlog[i], k.snd_nxt if aware else -1
                )
                backlog[i] = False
            next_share = now + 50
        if min(got) >= total and not a.waitsnd() and not b.waitsnd():
            break
    assert min(got) >= total
    return a.lost_segs, b.lost_segs, now


def test_two_way_windows_leave_room_for_a_stall() -> None:
    # half the RTO for each backlog: both together fill the 30 ms minimum RTO,
    # and an 18 ms stall of one receiver makes both sides resend on timeout
    a0, b0, ms0 = run_two_way(aware=False)
    assert a0 + b0 > 200
    # a sixth each: the stall fits, nothing is resent, and it is no slower
    a1, b1, ms1 = run_two_way(aware=True)
    assert (a1, b1) == (0, 0)
    assert ms1 <= ms0
