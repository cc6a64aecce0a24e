"""DrainBudget: the windows of many busy sessions together drain before their senders' RTO.

A listener paces each busy session by its own drain rate (DrainRate, never
below 32 segments) and by its share of the socket buffer (WindowShare).  With
100 busy sessions neither bounds the sum: 2,600 segments wait in front of a
receiver that drains 150 a ms, and when it slows down (a hundred reader
threads starting, a pause) every window's tail outwaits the RTO and is resent
although nothing was lost.  DrainBudget measures the receiver's own rate and
splits what it drains within a quarter of the minimum RTO among the busy
sessions.  Fake clock, no threads.
"""

from __future__ import annotations

from collections import deque
from typing import Callable, Optional

import pytest

from kcpsock.inbound import DrainBudget, DrainRate, Route, WindowShare
from kcpsock.kcp import KCP

NO_CAP = DrainBudget.NO_CAP


# ------------------------------------------------------------------ the rate


def test_first_update_only_starts_the_measurement() -> None:
    b = DrainBudget(start=100_000.0)
    b.drained(500, 0.001)  # (before any interval: not folded in)
    assert b.update(0.0) == 100_000.0
    assert (b.count, b.seconds) == (0, 0.0)


def test_measured_rate_is_folded_in_with_gain() -> None:
    b = DrainBudget(start=100_000.0, gain=0.5)
    b.update(0.0)
    # 3,000 datagrams in 20 ms of work with more waiting: 150,000 a second
    b.drained(1000, 0.010)
    b.drained(2000, 0.010)
    assert b.update(0.05) == pytest.approx(125_000.0)
    b.drained(3000, 0.020)
    assert b.update(0.10) == pytest.approx(137_500.0)


def test_interval_without_a_measurement_grows_the_rate() -> None:
    b = DrainBudget(start=100_000.0, grow=1.5)
    b.update(0.0)
    b.drained(10, 0.001)  # under MEASURE_MIN: the queue emptied at each batch
    assert b.update(0.05) == pytest.approx(150_000.0)
    for i in range(100):
        b.update(0.1 + i * 0.05)
    assert b.rate == DrainBudget.RATE_MAX


def test_stale_interval_is_not_folded_in() -> None:
    b = DrainBudget(start=100_000.0)
    b.update(0.0)
    b.drained(100, 0.010)  # 10,000 a second, measured over a long gap
    assert b.update(5.0) == 100_000.0  # the listener was not loaded meanwhile
    b.drained(0, 0.0)  # nothing counts without time
    b.drained(5, -1.0)
    assert (b.count, b.seconds) == (0, 0.0)


# ---------------------------------------------------------------- the split


def test_one_busy_session_is_left_to_drain_rate() -> None:
    b = DrainBudget()
    assert b.windows(["a"], [0], 30) == [NO_CAP]
    assert b.windows([], [], 30) == []


def test_new_sessions_get_equal_parts_of_the_total() -> None:
    b = DrainBudget(fraction=0.25, floor=4, start=160_000.0)
    # 160,000 a second * 30 ms * 0.25 = 1,200 segments for all
    keys = [f"s{i}" for i in range(100)]
    assert b.windows(keys, [0] * 100, 30) == [12] * 100
    # the total follows the minimum RTO
    assert b.windows(keys[:2], [0, 0], 100) == [2000, 2000]


def test_known_sessions_split_by_what_each_took_in_at_least_equally() -> None:
    b = DrainBudget(fraction=0.25, floor=4, start=160_000.0)
    keys = ["bulk", "a", "b", "c"]
    b.windows(keys, [0, 0, 0, 0], 30)
    # one session took in nearly everything: it gets nearly the whole total,
    # the others an equal part (what they took in would give them less)
    w = b.windows(keys, [970, 10, 10, 10], 30)
    assert w == [1164, 300, 300, 300]
    # a newcomer gets an equal part; the known ones split the rest
    w = b.windows([*keys, "new"], [1970, 20, 20, 20, 0], 30)
    assert w == [int(1200 * 4 / 5 * 1000 / 1030), 240, 240, 240, 240]


def test_a_large_part_shrinks_back_towards_the_equal_part() -> None:
    # what a session takes in follows its window: with a purely
    # proportional split the first split would stay; with the equal part as
    # the least, the largest window shrinks interval by interval
    b = DrainBudget(fraction=0.25, floor=4, start=160_000.0)
    keys = [f"s{i}" for i in range(10)]
    taken = [0] * 10
    w = b.windows(keys, taken, 30)
    w[0] = 600  # one session got a large window (say, while it was alone)
    for _ in range(30):
        taken = [t + x for t, x in zip(taken, w)]  # each takes in its window
        w = b.windows(keys, taken, 30)
    assert w == [120] * 10
    assert sum(w) == 1200


def test_split_floor_wraparound_and_forgetting() -> None:
    b = DrainBudget(fraction=0.25, floor=50, start=16_000.0)  # 120 segments in all
    b.windows(["a", "b", "c"], [0xFFFFFFF0, 0, 0], 30)
    # rcv_nxt wraps mod 2**32: "a" took in 0x40, "b" and "c" nothing
    assert b.windows(["a", "b", "c"], [0x30, 0, 0], 30) == [120, 50, 50]
    # nothing taken in by anyone: equal parts, here below the floor
    assert b.windows(["a", "b", "c"], [0x30, 0, 0], 30) == [50, 50, 50]
    b.windows(["a", "z"], [0x30, 5], 30)
    assert set(b.seen) == {"a", "z"}


def test_split_never_exceeds_the_wire_field() -> None:
    b = DrainBudget(start=DrainBudget.RATE_MAX, fraction=1.0)
    assert b.windows(["a", "b"], [0, 0], 30) == [NO_CAP, NO_CAP]


# ------------------------------------------- 100 senders into one receiver


def _pair(conv: int) -> tuple[KCP, KCP]:
    """A sender and a receiver with tools/bench.py's profile (1/10/2/1, windows 1024, MTU 1400)."""
    ends = KCP(conv), KCP(conv)
    for k in ends:
        k.set_nodelay(1, 10, 2, 1)
        k.wndsize(1024, 1024)
        k.setmtu(1400)
        k.stream = True
    return ends


def run_many(
    rate: Callable[[int], int],
    budget: Optional[DrainBudget],
    sessions: int = 100,
    total: int = 30_000_000,
    room: int = 2656,
) -> tuple[int, int, int]:
    """``sessions`` senders push ``total`` bytes together into one listener's receiver.

    The receiver takes in ``rate(ms)`` datagrams per simulated ms from one
    FIFO queue (its socket), sends each touched session's ACKs at the end of
    the ms (the listener's gathered ACKs), and caps the busy sessions'
    windows as the listener does: at a session's first datagram and every
    50 ms, by WindowShare (``room`` datagrams of socket buffer) and
    DrainRate, and with ``budget`` also by DrainBudget.

    Returns:
        (the senders' RTO resends, the simulated ms it took, the longest
        queue in front of the receiver).
    """
    pairs = [_pair(1000 + i) for i in range(sessions)]
    tx = [p[0] for p in pairs]
    rx = [p[1] for p in pairs]
    routes = [Route((("127.0.0.1", 9), 1000 + i), None) for i in range(sessions)]
    index = {r: i for i, r in enumerate(routes)}
    each = total // sessions
    sent = [0] * sessions
    got = [0] * sessions
    chunk = bytes(65536)
    inbox: deque[tuple[int, int, bytes]] = deque()  # (arrives at, session, datagram)
    acks: deque[tuple[int, int, bytes]] = deque()
    share, drain = WindowShare(), DrainRate()
    backlog = False
    longest = 0
    now = 0
    for now in range(20_000):  # bounded: 20 simulated seconds
        while acks and acks[0][0] <= now:
            _, i, dg = acks.popleft()
            for out in tx[i].input(dg, now):
                inbox.append((now + 1, i, out))
        outs = []
        for i, k in enumerate(tx):
            while sent[i] < each and k.waitsnd() < 2048:
                m = min(len(chunk), each - sent[i])
                k.send(chunk[:m])
                sent[i] += m
            outs.append(k.update(now))
        # what the senders send within one ms arrives interleaved
        for j in range(max(len(o) for o in outs)):
            for i, o in enumerate(outs):
                if j < len(o):
                    inbox.append((now + 1, i, o[j]))
        batch = []
        per = rate(now)
        while inbox and inbox[0][0] <= now and len(batch) < per:
            batch.append(inbox.popleft())
        waiting = sum(1 for x in inbox if x[0] <= now)
        longest = max(longest, waiting)
        t = now / 1000
        if budget is not None and waiting:
            budget.drained(len(batch), 0.001)
        if len(batch) >= 64 or waiting:
            backlog = True
            share.loaded(t)
        touched: dict[int, None] = {}
        new = False
        for _, i, dg in batch:
            new = new or routes[i] not in share.busy
            share.busy[routes[i]] = t
            rx[i].input(dg, now, hold_acks=True)
            touched[i] = None
        if new or t >= share.next_at:
            due = t >= share.next_at
            cap = share.update(room, t)
            drain.forget(share.busy)
            busy = list(share.busy)
            parts = [cap] * len(busy)
            if budget is not None and cap < NO_CAP and len(busy) > 1:
                if due:
                    budget.update(t)
                parts = budget.windows(busy, [rx[index[r]].rcv_nxt for r in busy], 30)
            for r, part in zip(busy, parts):
                k = rx[index[r]]
                paced = drain.window(r, t, k.rcv_nxt, k.rx_minrto, backlog, k.snd_nxt)
                k.wnd_cap = min(cap, paced, part)
            backlog = False
        for i in touched:
            for out in rx[i].flush_acks(now):
                acks.append((now + 1, i, out))
            while (msg := rx[i].recv()) is not None:
                got[i] += len(msg)
        if all(g >= each for g in got) and not any(k.waitsnd() for k in tx):
            break
    assert got == [each] * sessions
    return sum(k.lost_segs for k in tx), now, longest


def _slow_start(ms: int) -> int:
    # 150 datagrams a ms, but 30 a ms from 80 to 140 ms (a hundred reader
    # threads starting, as at the start of tools/bench.py's 'many' run)
    return 30 if 80 <= ms < 140 else 150


def test_drain_budget_resends_nothing_and_is_no_slower() -> None:
    # the old rule: 26 segments each (the buffer share), 2,600 in all, wait
    # 17 ms in front of the receiver; at a fifth of its rate 87 ms
    lost0, ms0, _ = run_many(_slow_start, None)
    assert lost0 > 1000
    lost, ms, _ = run_many(_slow_start, DrainBudget())
    assert lost == 0
    assert ms <= ms0
    # at a steady rate the budget costs no time either
    _, flat0, _ = run_many(lambda ms: 150, None)
    lost, flat, _ = run_many(lambda ms: 150, DrainBudget())
    assert lost == 0
    assert flat <= flat0 + 5
