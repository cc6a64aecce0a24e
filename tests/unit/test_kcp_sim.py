"""The KCP core over the deterministic link simulator (tests/netsim.py).

Exactly-once, in-order delivery under loss, duplication, reordering, jitter
and a bandwidth limit for every nodelay profile, in message and stream mode;
the fragment limit end to end; window probing when the reader stops and
resumes; sequence-number and timestamp wrap-around; the dead-link flag.
"""

from __future__ import annotations

import random
import zlib
from typing import Optional

import pytest

from kcpsock.kcp import ACKED, IKCP_PROBE_INIT, KCP, RESENDTS, XMIT
from tests.kcpwire import decode_segments
from tests.netsim import FakeClock, KCPPair, LossyLink

CONV = 0x11223344

#: (nodelay, interval, resend, nc): ikcp default/normal/fast, kcptun's presets.
PROFILES = {
    "default": (0, 10, 0, 0),
    "normal": (0, 10, 0, 1),
    "fast": (2, 10, 2, 1),
    "kcptun-normal": (0, 40, 2, 1),
    "kcptun-fast": (0, 30, 2, 1),
    "kcptun-fast2": (1, 20, 2, 1),
    "kcptun-fast3": (1, 10, 2, 1),
    "cc-fast": (1, 10, 2, 0),
}


def make_pair(
    profile: tuple[int, int, int, int],
    *,
    loss: float,
    seed: int,
    wnd: int = 128,
    stream: bool = False,
    start_ms: int = 0,
    dup: float = 0.05,
    reorder: float = 0.05,
    bandwidth: Optional[int] = 2_000_000,
) -> KCPPair:
    clock = FakeClock(start_ms)
    a, b = KCP(CONV), KCP(CONV)
    for k in (a, b):
        k.nodelay(*profile)
        k.wndsize(wnd, wnd)
        k.stream = stream
    ab = LossyLink(
        clock,
        seed=seed,
        loss=loss,
        dup=dup,
        reorder=reorder,
        delay_ms=15,
        jitter_ms=10,
        bandwidth=bandwidth,
    )
    ba = LossyLink(
        clock,
        seed=seed + 1000,
        loss=loss,
        dup=dup,
        reorder=reorder,
        delay_ms=15,
        jitter_ms=10,
        bandwidth=bandwidth,
    )
    return KCPPair(a, b, clock, ab, ba)


def drain(k: KCP, into: list[bytes]) -> int:
    """Receive every complete message of ``k`` into ``into``; return how many."""
    start = len(into)
    while True:
        m = k.recv()
        if m is None:
            return len(into) - start
        into.append(m)


def random_messages(rng: random.Random, count: int, max_len: int) -> list[bytes]:
    out = []
    for i in range(count):
        n = rng.choice([1, 7, rng.randint(1, max_len), 1376, 1377])
        out.append(i.to_bytes(4, "big") + rng.randbytes(n) if n > 4 else rng.randbytes(n))
    return out


@pytest.mark.parametrize("loss", [0.0, 0.1, 0.2, 0.3])
@pytest.mark.parametrize("profile", list(PROFILES), ids=list(PROFILES))
def test_exactly_once_in_order_message_mode(profile: str, loss: float) -> None:
    rng = random.Random(zlib.crc32(repr((profile, loss)).encode()))  # stable across runs
    pair = make_pair(PROFILES[profile], loss=loss, seed=rng.randint(0, 10**6))
    msgs = random_messages(rng, 80, 4000)
    back = random_messages(rng, 20, 300)
    for m in msgs:
        pair.a.send(m)
    for m in back:
        pair.b.send(m)
    got_b: list[bytes] = []
    got_a: list[bytes] = []

    def done() -> bool:
        drain(pair.b, got_b)
        drain(pair.a, got_a)
        return len(got_b) >= len(msgs) and len(got_a) >= len(back)

    assert pair.run_until(done, 600_000, tick=5), (len(got_b), len(got_a))
    assert got_b == msgs  # every message once, in order, intact
    assert got_a == back
    assert pair.ab.dropped > 0 or loss == 0
    # everything gets acknowledged, and nothing more arrives (no duplicate delivery)
    assert pair.run_until(lambda: pair.a.waitsnd() == 0 and pair.b.waitsnd() == 0, 120_000, tick=5)
    pair.run_until(lambda: False, 2000, tick=5)
    assert pair.b.recv() is None and pair.a.recv() is None
    assert not pair.a.is_dead and not pair.b.is_dead


@pytest.mark.parametrize("loss", [0.0, 0.15, 0.3])
@pytest.mark.parametrize("profile", ["default", "fast", "kcptun-fast3"])
def test_exactly_once_in_order_stream_mode(profile: str, loss: float) -> None:
    rng = random.Random(7 + int(loss * 100))
    pair = make_pair(PROFILES[profile], loss=loss, seed=rng.randint(0, 10**6), stream=True)
    blob = rng.randbytes(300_000)
    pos = 0
    got = bytearray()

    def feed_and_read() -> bool:
        nonlocal pos
        # the writer keeps at most 2 windows queued, writing odd-sized pieces
        while pos < len(blob) and pair.a.waitsnd() < 2 * pair.a.snd_wnd:
            n = rng.randint(1, 5000)
            pair.a.send(blob[pos : pos + n])
            pos += n
        while True:
            chunk = pair.b.recv()
            if chunk is None:
                break
            got.extend(chunk)
        return len(got) >= len(blob)

    assert pair.run_until(feed_and_read, 900_000, tick=5)
    assert bytes(got) == blob
    # stream mode packs full segments: at most one short segment per write burst
    assert pair.b.in_segs > 0


def test_fragment_limit_end_to_end() -> None:
    pair = make_pair(PROFILES["fast"], loss=0.1, seed=3, wnd=300)
    big = random.Random(1).randbytes(255 * pair.a.mss)
    pair.a.send(big)
    pair.a.send(b"after")
    with pytest.raises(ValueError, match="at most 255 are allowed"):
        pair.a.send(big + b"!")
    got: list[bytes] = []
    assert pair.run_until(lambda: (drain(pair.b, got), len(got) >= 2)[1], 120_000, tick=5)
    assert got == [big, b"after"]


def test_message_needing_more_fragments_than_rcv_wnd_waits_for_room() -> None:
    """docs/KCP.md §14, hazard 2: a message of N fragments needs rcv_wnd >= N to be delivered."""
    pair = make_pair(PROFILES["fast"], loss=0.0, seed=4, wnd=32)
    msg = bytes(40 * pair.a.mss)
    pair.a.send(msg)
    got: list[bytes] = []
    assert not pair.run_until(lambda: (drain(pair.b, got), bool(got))[1], 3000, tick=5)
    assert pair.b.peek_size() == -1  # stuck: 32 of 40 fragments queued
    pair.b.wndsize(0, 64)
    assert pair.run_until(lambda: (drain(pair.b, got), bool(got))[1], 10_000, tick=5)
    assert got == [msg]


def test_window_probing_when_reader_stops_and_resumes() -> None:
    pair = make_pair(PROFILES["kcptun-fast3"], loss=0.0, seed=5, wnd=16, dup=0, reorder=0)
    a, b = pair.a, pair.b
    sent_cmds: list[tuple[int, int]] = []  # (time, cmd) of a's WASKs
    wins_from_b: list[int] = []
    drop_wins = {"on": True}

    def watch_ab(d: bytes) -> bool:
        for h, _ in decode_segments(d):
            if h.cmd == 83:
                sent_cmds.append((pair.clock.now_ms, h.cmd))
        return True

    def watch_ba(d: bytes) -> bool:
        cmds = [h.cmd for h, _ in decode_segments(d)]
        if 84 in cmds:
            wins_from_b.append(pair.clock.now_ms)
            if drop_wins["on"] and cmds == [84]:
                return False  # lose the window update: a must probe
        return True

    pair.ab.filter = watch_ab
    pair.ba.filter = watch_ba
    msgs = [bytes([i]) * 100 for i in range(60)]
    for m in msgs:
        a.send(m)
    # the reader does not read: b's queue fills and it advertises a zero window
    pair.run_until(lambda: a.rmt_wnd == 0 and a.waitsnd() == 60 - 16, 5000)
    assert a.rmt_wnd == 0 and len(b.rcv_queue) == 16
    t_zero = pair.clock.now_ms
    pair.run_until(lambda: len(sent_cmds) >= 3, 10_000)
    times = [t - t_zero for t, _ in sent_cmds]
    # first WASK about PROBE_INIT after the zero window was seen, then x1.5 intervals
    assert IKCP_PROBE_INIT - 50 <= times[0] <= IKCP_PROBE_INIT + 50
    assert times[1] - times[0] == pytest.approx(750, abs=30)
    assert times[2] - times[1] == pytest.approx(1125, abs=30)
    pair.run_until(lambda: False, 100)  # let the last probe be answered
    assert len(wins_from_b) >= 3  # each probe answered with a WINS (still zero window)
    # the reader resumes: b tells its window (WINS) and the data flows again
    drop_wins["on"] = False
    got: list[bytes] = []
    assert pair.run_until(lambda: (drain(b, got), len(got) >= 60)[1], 20_000)
    assert got == msgs


def test_window_reopen_is_told_without_probe() -> None:
    """kcp-go Recv 'fast recover': draining a full queue sends a WINS at once."""
    pair = make_pair(PROFILES["kcptun-fast3"], loss=0.0, seed=6, wnd=8, dup=0, reorder=0)
    a, b = pair.a, pair.b
    for i in range(20):
        a.send(bytes([i]) * 10)
    pair.run_until(lambda: a.rmt_wnd == 0, 5000)
    got: list[bytes] = []
    t0 = pair.clock.now_ms
    assert pair.run_until(lambda: (drain(b, got), len(got) >= 20)[1], 5000)
    # well before the first probe would have left
    assert pair.clock.now_ms - t0 < IKCP_PROBE_INIT


@pytest.mark.parametrize("loss", [0.0, 0.2])
def test_sequence_and_timestamp_wrap_around(loss: float) -> None:
    start = 2**32 - 200  # the clock crosses 2**32 after 0.2 s, mid-transfer
    pair = make_pair(PROFILES["kcptun-fast3"], loss=loss, seed=8, start_ms=start)
    near = 2**32 - 40
    for k in (pair.a, pair.b):
        k.snd_una = k.snd_nxt = k.rcv_nxt = near
    rng = random.Random(9)
    msgs = random_messages(rng, 200, 2000)
    for m in msgs:
        pair.a.send(m)
    got: list[bytes] = []
    assert pair.run_until(lambda: (drain(pair.b, got), len(got) >= len(msgs))[1], 300_000, tick=5)
    assert got == msgs
    assert pair.clock.now_ms > 2**32
    assert 0 < pair.a.snd_nxt < 1000 and pair.b.rcv_nxt == pair.a.snd_nxt
    assert 0 < pair.a.rx_srtt < 1000  # RTT samples across the ts wrap stay sane
    assert pair.a.check(pair.clock.now_ms) - pair.clock.now_ms in range(0, 101)


def test_dead_link_after_repeated_loss() -> None:
    clock = FakeClock()
    a, b = KCP(CONV), KCP(CONV)
    a.nodelay(1, 10, 2, 1)
    pair = KCPPair(a, b, clock, LossyLink(clock, loss=1.0), LossyLink(clock))
    a.send(b"into the void")
    assert not pair.run_until(lambda: a.is_dead, 1000, tick=10)
    assert pair.run_until(lambda: a.is_dead, 120_000, tick=10)
    assert a.state == 0xFFFFFFFF and a.snd_buf[0][XMIT] == a.dead_link == 20
    assert a.lost_segs == 19 and a.retrans_segs == 19


def test_flush_and_check_schedule_like_a_session() -> None:
    """Drive two cores only with flush()/check() (as the session layer does)."""
    clock = FakeClock(10_000)
    a, b = KCP(CONV), KCP(CONV)
    for k in (a, b):
        k.nodelay(1, 20, 2, 1)
    ab = LossyLink(clock, seed=1, loss=0.1, delay_ms=20)
    ba = LossyLink(clock, seed=2, loss=0.1, delay_ms=20)
    msgs = [bytes([i]) * 500 for i in range(50)]
    for m in msgs:
        a.send(m)
    due = {id(a): clock.now_ms, id(b): clock.now_ms}
    got: list[bytes] = []
    for _ in range(100_000):
        now = clock.now_ms
        for k, link in ((a, ab), (b, ba)):
            other_link = ba if link is ab else ab
            for d in other_link.receive():
                for r in k.input(d, now):
                    link.send(r)
            if now >= due[id(k)]:
                for d in k.flush(now):
                    link.send(d)
            nxt = k.check(now)
            assert now <= nxt <= now + k.interval
            due[id(k)] = nxt
        drain(b, got)
        if len(got) == len(msgs):
            break
        # jump to the next event, as a timer thread would
        candidates = [due[id(a)], due[id(b)]] + [
            t for t in (ab.next_due(), ba.next_due()) if t is not None
        ]
        clock.advance(max(1, min(candidates) - now))
    assert got == msgs


@pytest.mark.parametrize("profile", ["default", "normal", "fast", "kcptun-normal", "cc-fast"])
def test_flush_shortcut_matches_kcp_go_full_scan(profile: str) -> None:
    """The flush shortcut (no snd_buf scan while no timer can have expired) sends
    exactly what kcp-go's scan of the whole snd_buf sends, datagram for datagram.
    """

    def trace(scan_always: bool) -> list[bytes]:
        pair = make_pair(PROFILES[profile], loss=0.15, seed=11, wnd=64)
        for k in (pair.a, pair.b):
            k.scan_always = scan_always
        sent: list[bytes] = []

        def record(d: bytes) -> bool:
            sent.append(d)
            return True

        for link in (pair.ab, pair.ba):
            link.filter = record
        rng = random.Random(12)
        msgs = random_messages(rng, 150, 3000)
        for m in msgs[:100]:
            pair.a.send(m)
        for m in msgs[100:]:
            pair.b.send(m)
        got: list[bytes] = []
        pair.run_until(
            lambda: (drain(pair.b, got), drain(pair.a, got), len(got) >= 150)[2], 300_000, tick=3
        )
        assert sorted(got) == sorted(msgs)
        counters = [
            (k.lost_segs, k.fast_retrans_segs, k.early_retrans_segs) for k in (pair.a, pair.b)
        ]
        return [*sent, repr(counters).encode()]

    fast, full = trace(False), trace(True)
    assert len(fast) > 200
    assert fast == full


def test_check_is_never_later_than_the_exact_ikcp_check() -> None:
    """check() uses a kept lower bound of the resend times instead of a scan."""
    pair = make_pair(PROFILES["kcptun-fast2"], loss=0.2, seed=13, wnd=64)
    a = pair.a
    for m in random_messages(random.Random(14), 120, 3000):
        a.send(m)

    def exact(now: int) -> int:
        ts_flush = a.ts_flush
        if not a.updated or ((now - ts_flush) & 0xFFFFFFFF) < 0x80000000:
            return now
        minimal = (ts_flush - now) & 0xFFFFFFFF
        for seg in a.snd_buf:
            if seg[ACKED]:
                continue
            d = ((seg[RESENDTS] - now + 0x80000000) & 0xFFFFFFFF) - 0x80000000
            if seg[XMIT] == 0 or d <= 0:
                return now
            minimal = min(minimal, d)
        return int(now + min(minimal, a.interval))

    checked = 0
    for _ in range(3000):
        pair.step(2)
        now = pair.clock.now_ms
        got, want = a.check(now), exact(now)
        assert now <= got <= want
        checked += got == want
    assert checked > 2000  # and almost always exactly ikcp's answer


@pytest.mark.parametrize("seed", range(6))
def test_flush_shortcut_matches_full_scan_with_odd_acks(seed: int) -> None:
    """Same comparison, the sender also fed random ACKs (stale, duplicate, future,
    for segments not sent yet) between ACK-only and full flushes.
    """
    from tests.kcpwire import encode_segment

    def trace(scan_always: bool) -> list[bytes]:
        rng = random.Random(seed)
        a = KCP(CONV)
        a.nodelay(rng.choice([0, 1]), 10, rng.choice([0, 1, 2]), rng.choice([0, 1]))
        a.wndsize(32, 32)
        a.scan_always = scan_always
        out: list[bytes] = []
        now = 1000
        for step in range(400):
            if rng.random() < 0.3:
                a.send(rng.randbytes(rng.randint(1, 3000)))
            r = rng.random()
            if r < 0.4:
                sn = (a.snd_una + rng.randint(-3, a.snd_nxt - a.snd_una + 3)) & 0xFFFFFFFF
                una = (a.snd_una + rng.choice([0, 0, 0, 1, 2])) & 0xFFFFFFFF
                ts = (now - rng.randint(0, 300)) & 0xFFFFFFFF
                out += a.input(encode_segment(CONV, 82, 0, rng.choice([0, 32]), ts, sn, una), now)
            elif r < 0.5:
                out += a.flush_acks(now)
            elif r < 0.8:
                out += a.flush(now)
            else:
                out += a.update(now)
            out.append(
                repr(
                    (
                        step,
                        a.snd_una,
                        a.snd_nxt,
                        a.cwnd,
                        a.ssthresh,
                        a.state,
                        a.lost_segs,
                        a.fast_retrans_segs,
                        a.early_retrans_segs,
                        a.waitsnd(),
                    )
                ).encode()
            )
            now += rng.randint(0, 60)
        return out

    fast = trace(False)
    assert fast == trace(True)
    last = fast[-1].decode()  # the final state line: retransmissions did happen
    assert sum(int(x) for x in last.strip("()").split(", ")[6:9]) > 0, last
