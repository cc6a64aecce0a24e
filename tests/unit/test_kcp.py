"""Unit tests of the sans-io KCP core: API contract, parsing, estimator, flush rules."""

from __future__ import annotations

import random
import struct

import pytest

from kcpsock.errors import PacketError
from kcpsock.kcp import ACKED, KCP
from kcpsock.segment import HEADER, Command, timediff
from tests.kcpwire import decode_segments, encode_segment, kcp_state

CONV = 0x4B435031


def segs(datagrams: list[bytes]) -> list[tuple[int, int, int, int]]:
    """(cmd, frg, sn, len) of every segment in the datagrams."""
    return [(h.cmd, h.frg, h.sn, h.length) for d in datagrams for h, _ in decode_segments(d)]


def nc_pair() -> tuple[KCP, KCP]:
    a, b = KCP(CONV), KCP(CONV)
    for k in (a, b):
        k.nodelay(1, 10, 2, 1)
    return a, b


def transfer(a: KCP, b: KCP, now: int) -> None:
    """Flush both sides and deliver everything, until quiet (no loss)."""
    for _ in range(100):
        pending = [(b, d) for d in a.flush(now)] + [(a, d) for d in b.flush(now)]
        if not pending:
            return
        while pending:
            dst, d = pending.pop(0)
            other = a if dst is b else b
            pending.extend((other, r) for r in dst.input(d, now))
    raise AssertionError("ping-pong did not settle")


state_of = kcp_state


# --------------------------------------------------------------------- header


def test_header_layout_matches_spec_example() -> None:
    raw = encode_segment(0x01020304, Command.PUSH, 0, 32, 1000, 5, 3, b"abc")
    assert raw.hex() == ("0403020151002000e8030000050000000300000003000000616263")
    assert HEADER.size == 24


def test_timediff_wraps() -> None:
    assert timediff(5, 0xFFFFFFFE) == 7
    assert timediff(0xFFFFFFFE, 5) == -7
    assert timediff(0x80000000, 0) == -0x80000000


# ---------------------------------------------------------------- arguments


def test_defaults_follow_kcp_go() -> None:
    k = KCP(7)
    assert (k.mtu, k.mss, k.snd_wnd, k.rcv_wnd, k.rmt_wnd) == (1400, 1376, 32, 32, 32)
    assert (k.rx_rto, k.rx_minrto, k.interval, k.cwnd, k.ssthresh) == (200, 100, 100, 0, 2)
    assert (k.dead_link, k.fastresend, k.state, k.is_dead) == (20, 0, 0, False)
    assert k.srtt == 0 and k.rto == 200 and k.nodelay == 0


def test_send_rejects_empty_and_too_many_fragments() -> None:
    k = KCP(1)
    with pytest.raises(ValueError, match="empty"):
        k.send(b"")
    k.send(b"x" * (255 * k.mss))  # exactly 255 fragments is fine
    assert k.waitsnd() == 255
    with pytest.raises(ValueError, match="255"):
        k.send(b"x" * (255 * k.mss + 1))
    assert k.waitsnd() == 255  # nothing queued by the failed call
    k.stream = True
    k.send(b"y" * (300 * k.mss))  # stream mode: no fragment counter, no limit
    assert k.waitsnd() == 555


def test_setmtu_range() -> None:
    k = KCP(1)
    for bad in (0, 24, -1, 65536):
        with pytest.raises(ValueError, match="mtu"):
            k.setmtu(bad)
    k.setmtu(25)
    assert k.mss == 1
    with pytest.raises(TypeError, match="mtu must be an int, not str"):
        k.setmtu("1400")


def test_constructor_and_setters_validate() -> None:
    with pytest.raises(ValueError, match=r"conv must be 0\.\.4294967295"):
        KCP(-1)
    with pytest.raises(ValueError, match=r"conv must be 0\.\.4294967295"):
        KCP(2**32)
    with pytest.raises(TypeError, match="conv must be an int, not str"):
        KCP("1")
    k = KCP(1)
    with pytest.raises(ValueError, match="snd must be <= 65535"):
        k.wndsize(70000, 1)
    k.wndsize(0, 256)
    assert (k.snd_wnd, k.rcv_wnd) == (32, 256)


def test_nodelay_settings() -> None:
    k = KCP(1)
    k.nodelay(1, 5, 2, 1)
    assert (k.nodelay, k.rx_minrto, k.interval, k.fastresend, k.nocwnd) == (1, 30, 10, 2, 1)
    k.nodelay(-1, 9000, -1, -1)
    assert (k.nodelay, k.interval, k.fastresend) == (1, 5000, 2)
    k.nodelay(0, -1, -1, 0)
    assert (k.nodelay, k.rx_minrto, k.nocwnd) == (0, 100, 0)
    k.rx_minrto = 10
    k.fastresend = 1
    assert (k.rx_minrto, k.fastresend) == (10, 1)


# ------------------------------------------------------------ data transfer


def test_hello_roundtrip_and_una() -> None:
    a, b = nc_pair()
    a.send(b"hello")
    assert b.recv() is None and b.peek_size() == -1
    transfer(a, b, 0)
    assert b.peek_size() == 5
    assert b.recv() == b"hello"
    assert b.recv() is None
    assert a.snd_una == a.snd_nxt == 1 and a.waitsnd() == 0
    assert a.in_segs >= 1 and a.out_segs >= 1 and b.in_segs >= 1


def test_first_flush_with_congestion_control_sends_no_data() -> None:
    k = KCP(1)
    k.send(b"abc")
    assert segs(k.flush(0)) == []  # cwnd starts at 0 (docs/KCP.md §14, hazard 4)
    assert k.cwnd == 1
    assert segs(k.flush(1)) == [(81, 0, 0, 3)]


def test_message_mode_fragments_and_reassembly() -> None:
    a, b = nc_pair()
    a.wndsize(512, 512)
    b.wndsize(512, 512)
    msgs = [bytes(range(256)) * 20, b"z", b"q" * 1376, b"r" * 1377]
    for m in msgs:
        a.send(m)
    out = a.flush(0)
    frgs = [f for c, f, _, _ in segs(out) if c == 81]
    assert frgs == [3, 2, 1, 0, 0, 0, 1, 0]
    for d in out:
        b.input(d, 1)
    got = []
    while (msg := b.recv()) is not None:
        got.append(msg)
    assert got == msgs


def test_stream_mode_coalesces_and_recv_returns_all() -> None:
    a, b = nc_pair()
    a.stream = b.stream = True
    for i in range(10):
        a.send(bytes([65 + i]) * 100)
    out = a.flush(0)
    assert segs(out) == [(81, 0, 0, 1000)]  # appended to the last queued segment
    a.send(b"x" * 3000)
    out += a.flush(1)
    assert [ln for _, _, _, ln in segs(out)] == [1000, 1376, 1376, 248]
    for d in out:
        b.input(d, 2)
    assert b.peek_size() == 4000
    data = b.recv()
    assert data is not None and len(data) == 4000
    assert data[:100] == b"A" * 100 and data[-3000:] == b"x" * 3000


def test_recv_stream_takes_whole_segments_up_to_the_limit_and_no_more() -> None:
    a, b = nc_pair()
    a.stream = b.stream = True
    a.send(b"".join(bytes([65 + i]) * 1376 for i in range(5)) + b"t" * 100)
    for d in a.flush(0):
        b.input(d, 1)
    parts: list[bytes] = []
    # the segment that reaches the limit is taken whole (the caller cuts it)
    assert b.recv_stream(2000, parts) == 2 * 1376
    assert parts == [b"A" * 1376, b"B" * 1376]
    assert b.peek_size() == 3 * 1376 + 100
    assert b.recv_stream(1376, parts) == 1376 and parts[-1] == b"C" * 1376
    assert b.recv_stream(1 << 20, parts) == 2 * 1376 + 100
    assert parts[3:] == [b"D" * 1376, b"E" * 1376, b"t" * 100]
    assert b.recv_stream(10, parts) == 0 and len(parts) == 6
    assert b.recv() is None


def test_recv_stream_skips_empty_payloads_and_refills_from_the_buffer() -> None:
    b = KCP(CONV)
    b.stream = True
    b.wndsize(32, 2)  # two segments in the queue at most: the rest waits in rcv_buf
    empty = encode_segment(CONV, 81, 0, 128, 1, 0, 0, b"")
    rest = b"".join(
        encode_segment(CONV, 81, 0, 128, 1, sn, 0, bytes([sn]) * 10) for sn in (1, 2, 3)
    )
    b.input(empty + rest, 5)
    assert len(b.rcv_queue) == 2 and len(b.rcv_buf) == 2
    parts: list[bytes] = []
    assert b.recv_stream(1000, parts) == 30
    assert parts == [b"\x01" * 10, b"\x02" * 10, b"\x03" * 10]
    assert not b.rcv_queue and not b.rcv_buf and b.rcv_nxt == 4
    assert b.probe  # the full queue emptied: the peer hears the window reopened


def test_datagrams_respect_mtu_and_whole_segments() -> None:
    a, _ = nc_pair()
    a.setmtu(200)
    a.wndsize(64, 64)
    for n in (1, 50, 176, 10, 400):
        a.send(b"d" * n)
    out = a.flush(0)
    assert all(len(d) <= 200 for d in out)
    assert sum(ln for _, _, _, ln in segs(out)) == 1 + 50 + 176 + 10 + 400


def test_zero_length_message_from_ikcp_is_skipped() -> None:
    b = KCP(CONV)
    empty = encode_segment(CONV, 81, 0, 128, 1, 0, 0, b"")
    real = encode_segment(CONV, 81, 0, 128, 1, 1, 0, b"data")
    b.input(empty + real, 5)
    assert b.peek_size() == 4
    assert b.recv() == b"data"
    assert b.recv() is None
    # an empty message alone is consumed without being returned
    b.input(encode_segment(CONV, 81, 0, 128, 1, 2, 0, b""), 6)
    assert b.peek_size() == -1 and len(b.rcv_queue) == 1  # peek_size changes nothing
    assert b.recv() is None and not b.rcv_queue


# ---------------------------------------------------------------- bad input

BAD = [
    (b"", "shorter"),
    (b"\x00" * 23, "shorter"),
    (encode_segment(CONV + 1, 81, 0, 32, 0, 0, 0, b"x"), "conv"),
    (encode_segment(CONV, 81, 0, 32, 0, 0, 0, b"xyz")[:-1], "payload"),
    (encode_segment(CONV, 80, 0, 32, 0, 0, 0, b""), "command"),
    (
        encode_segment(CONV, 81, 0, 32, 0, 0, 0, b"ok")
        + encode_segment(CONV, 85, 0, 32, 0, 1, 0, b""),
        "command",
    ),
    (
        encode_segment(CONV, 81, 0, 32, 0, 0, 0, b"ok")
        + encode_segment(CONV ^ 1, 81, 0, 32, 0, 1, 0, b"x"),
        "conv",
    ),
]


@pytest.mark.parametrize(("datagram", "why"), BAD)
@pytest.mark.parametrize("skip", [0, 8, 3])
def test_bad_datagrams_raise_and_change_nothing(datagram: bytes, why: str, skip: int) -> None:
    # (behind an offset too: the same error, nothing changed)
    k = KCP(CONV)
    k.send(b"pending")
    k.flush(0)
    k.flush(1)
    before = state_of(k)
    with pytest.raises(PacketError, match=why) as info:
        k.input(bytes(range(skip)) + datagram, 2, offset=skip)
    assert info.value.counter == "KCPInErrors"
    assert state_of(k) == before


def test_input_offset_checks() -> None:
    k = KCP(CONV)
    dg = encode_segment(CONV, 81, 0, 32, 0, 0, 0, b"hi")
    with pytest.raises(ValueError, match="offset"):
        k.input(dg, 0, offset=-1)
    # an offset past the header leaves too few bytes: a short datagram
    for skip in (len(dg) - 23, len(dg), len(dg) + 5):
        with pytest.raises(PacketError, match="shorter"):
            k.input(dg, 0, offset=skip)
    assert state_of(k) == state_of(KCP(CONV))
    k.input(b"\xf1" * 8 + dg, 0, offset=8)
    assert k.recv() == b"hi"


@pytest.mark.parametrize("skip", [8, 5])
def test_input_at_an_offset_does_what_input_of_the_slice_does(skip: int) -> None:
    """Two receivers, one fed ``dg``, one ``prefix + dg`` with ``offset``: same replies, state, data.

    Every path of input: one PUSH (the hot path), several segments per
    datagram (ACKs with PUSHes, fragments), recovered (non-regular) input,
    out-of-order arrival (rcv_buf), duplicates and window probes.
    """
    rng = random.Random(skip)
    a = KCP(CONV)
    b1, b2 = KCP(CONV), KCP(CONV)
    for k in (a, b1, b2):
        k.nodelay(1, 10, 2, 1)
        k.wndsize(64, 64)
    now = 0
    got1: list[bytes] = []
    got2: list[bytes] = []
    for step in range(300):
        now += rng.randrange(1, 15)
        for _ in range(rng.randrange(0, 4)):
            a.send(rng.randbytes(rng.randrange(1, 3000)))
        if rng.random() < 0.3:
            # b answers: a's next datagrams carry ACKs in front of PUSHes
            reply = rng.randbytes(rng.randrange(1, 200))
            b1.send(reply)
            b2.send(reply)
        out = a.flush(now)
        rng.shuffle(out)
        if out and rng.random() < 0.2:
            out.append(out[0])  # a duplicate
        for dg in out:
            if rng.random() < 0.1:
                continue  # lost: later segments wait in rcv_buf
            regular = rng.random() < 0.9
            prefix = rng.randbytes(skip)
            r1 = b1.input(dg, now, regular=regular, hold_acks=step % 3 == 0)
            r2 = b2.input(prefix + dg, now, regular=regular, hold_acks=step % 3 == 0, offset=skip)
            assert r1 == r2
            for r in r1:
                a.input(r, now)
        replies = b1.flush(now)
        assert replies == b2.flush(now)
        assert state_of(b1) == state_of(b2)
        for r in replies:
            a.input(r, now)
        for k, got in ((b1, got1), (b2, got2)):
            while (m := k.recv()) is not None:
                got.append(m)
    assert got1 == got2 and len(got1) > 50


def test_trailing_bytes_shorter_than_a_header_are_ignored() -> None:
    k = KCP(CONV)
    k.input(encode_segment(CONV, 81, 0, 32, 0, 0, 0, b"hi") + b"\x00" * 23, 0)
    assert k.recv() == b"hi"


# ---------------------------------------------------------------- estimator


def test_rtt_estimator_worked_example() -> None:
    """docs/KCP.md §6: samples 100, 120, 80, 30, 200 (interval 100, minrto 100)."""
    k = KCP(1)
    want = [(100, 50, 300), (102, 42, 270), (99, 37, 247), (90, 38, 242), (103, 56, 327)]
    for rtt, exp in zip([100, 120, 80, 30, 200], want):
        k._update_ack(rtt)
        assert (k.rx_srtt, k.rx_rttvar, k.rx_rto) == exp


def test_one_rtt_sample_per_datagram_from_the_last_ack_regular_only() -> None:
    def sent_three() -> KCP:
        a, b = nc_pair()
        for i in range(3):
            a.send(bytes([i]))
        for d in a.flush(1000):  # ts 1000
            b.input(d, 1000)
        return a

    ack = b"".join(encode_segment(CONV, 82, 0, 32, 1000 - 40 * (2 - i), i, 0) for i in range(3))
    a, a2 = sent_three(), sent_three()
    a.input(ack, 1100, regular=False)
    assert a.rx_srtt == 0 and a.rmt_wnd == 32  # FEC-recovered: no sample, no rmt_wnd
    a2.input(ack, 1100)
    assert a2.rx_srtt == 100  # last ACK's ts (1000) only


def test_ack_nodelay_and_ack_clocking() -> None:
    a, b = nc_pair()
    a.send(b"x")
    (d,) = a.flush(0)
    assert b.input(d, 1) == []
    assert segs(b.flush_acks(1)) == [(82, 0, 0, 0)]
    a.send(b"y")
    (d,) = a.flush(2)
    assert segs(b.input(d, 3, ack_nodelay=True)) == [(82, 0, 1, 0)]
    # len(acklist) >= mtu // 24 forces an ACK-only flush
    r = KCP(CONV)
    r.setmtu(49)  # mtu // 24 == 2
    c = KCP(CONV)
    c.nodelay(1, 10, 0, 1)
    c.setmtu(49)
    c.send(b"1")
    c.send(b"2")
    raw = c.flush(10)
    assert len(raw) == 2
    assert r.input(raw[0], 11) == []
    # two ACKs pending: flushed at once; both sns are below rcv_nxt now, so
    # kcp-go's filter keeps only the last one
    assert segs(r.input(raw[1], 11)) == [(82, 0, 1, 0)]
    assert r.acklist == []


def test_selective_ack_marks_and_una_removes() -> None:
    a, _ = nc_pair()
    for i in range(4):
        a.send(bytes([i]) * 5)
    assert len(a.flush(0)) == 1
    # ACK sn 2 only (una 0): marked, kept until una passes it
    a.input(encode_segment(CONV, 82, 0, 32, 0, 2, 0), 10)
    assert a.waitsnd() == 4
    assert [s[ACKED] for s in a.snd_buf] == [False, False, True, False]
    # a full flush triggered by the skipping ACK early-retransmits sn 0 and 1
    out = a.flush(11)
    assert [sn for c, _, sn, _ in segs(out) if c == 81] == [0, 1]
    assert a.early_retrans_segs == 2 and a.retrans_segs == 2
    a.input(encode_segment(CONV, 82, 0, 32, 0, 3, 4), 12)
    assert a.waitsnd() == 0 and a.snd_una == 4


def test_fast_retransmit_once_per_rto_cycle() -> None:
    a = KCP(CONV)
    a.nodelay(1, 10, 2, 1)
    for i in range(6):
        a.send(bytes([i]))
    a.flush(0)
    for sn in (1, 2):  # two skipping ACKs for sn 0 (sent at ts 0)
        a.input(encode_segment(CONV, 82, 0, 32, 0, sn, 0), 5)
    assert a.fast_retrans_segs == 1  # input's immediate flush resent sn 0
    for sn in (3, 4, 5):
        a.input(encode_segment(CONV, 82, 0, 32, 0, sn, 0), 6)
    # sentinel: no further fast/early retransmit of sn 0 until its RTO fires
    assert a.fast_retrans_segs == 1 and a.early_retrans_segs == 0
    a.flush(10 + a.rx_rto + 100)
    assert a.lost_segs == 1


@pytest.mark.parametrize("scan_always", [False, True])
def test_hold_rto_defers_timeouts_not_acks_or_new_data(scan_always: bool) -> None:
    a = KCP(CONV)
    a.nodelay(1, 10, 2, 1)
    a.scan_always = scan_always
    a.rto_ordered = False  # kcp-go's rule: sn 2 and 3 are due although sn 1's ACK came after
    for i in range(4):
        a.send(bytes([i]))
    a.flush(0)
    late = a.rx_rto + 50
    assert not a.rto_due(1) and a.rto_due(late)
    a.hold_rto = True
    a.send(b"new")
    out = a.flush(late)
    # the new segment leaves; the timed-out ones wait, uncounted
    assert [sn for c, _, sn, _ in segs(out) if c == 81] == [4]
    assert a.lost_segs == 0 and a.rto_due(late)
    # an ACK arriving while held is sent; una advancing acknowledges sn 0 and 1
    out = a.input(encode_segment(CONV, 82, 0, 32, 0, 1, 2), late)
    assert a.lost_segs == 0 and a.snd_una == 2
    a.hold_rto = False
    out = a.flush(late + 1)
    assert [sn for c, _, sn, _ in segs(out) if c == 81] == [2, 3]  # now they are resent
    assert a.lost_segs == 2


def test_struct_is_little_endian_u32() -> None:
    raw = encode_segment(0xDEADBEEF, 82, 0, 1, 2, 3, 4)
    assert struct.unpack("<I", raw[:4])[0] == 0xDEADBEEF


def test_update_flushes_every_interval_and_check_tells_when() -> None:
    k = KCP(CONV)
    k.nodelay(0, 100, 0, 1)
    k.rx_rto = 130
    assert k.check(7) == 7  # never updated: at once
    k.send(b"a")
    assert segs(k.update(1000)) == [(81, 0, 0, 1)]  # first update flushes; resend at 1130
    assert k.update(1050) == []  # not due before 1100
    assert k.check(1050) == 1100
    k.send(b"b")
    assert k.check(1060) == 1100  # queued data waits for the next flush, as ikcp_check
    assert segs(k.update(1100)) == [(81, 0, 1, 1)]
    assert k.check(1100) == 1130  # the first segment's timeout is before the next interval
    out = k.update(1130)
    assert out == []  # ikcp_update only flushes on its interval ...
    out = k.update(1200)
    assert (81, 0, 0, 1) in segs(out) and k.lost_segs == 1  # ... then resends
    # flush() reschedules like kcp-go HEAD's session: min(interval, next resend)
    k2 = KCP(CONV)
    k2.nodelay(1, 100, 0, 1)
    k2.rx_rto = 40
    k2.send(b"c")
    k2.flush(0)
    assert k2.next_update_ms == 40 and k2.check(0) == 40
    assert k2.check(41) == 41


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("loss", [0.0, 0.2])
def test_out_segs_counts_every_segment_emitted(stream: bool, loss: float) -> None:
    """out_segs equals the segments found in everything a side emitted (flush and input)."""
    rng = random.Random(7)
    a, b = nc_pair()
    a.stream = b.stream = stream
    emitted = {id(a): 0, id(b): 0}
    for i in range(60):
        a.send(bytes([i % 251]) * (1 + 97 * i % 3000))
    now = 0
    wire: list[tuple[KCP, bytes]] = []

    def out(src: KCP, dgrams: list[bytes]) -> None:
        dst = b if src is a else a
        for d in dgrams:
            emitted[id(src)] += len(decode_segments(d))
            if rng.random() >= loss:
                wire.append((dst, d))

    for _ in range(3000):
        now += 10
        out(a, a.update(now))
        out(b, b.update(now))
        while wire:
            dst, d = wire.pop(0)
            out(dst, dst.input(d, now))
        while b.recv() is not None:
            pass
        if not a.waitsnd() and not wire:
            break
    assert a.waitsnd() == 0
    assert a.out_segs == emitted[id(a)]
    assert b.out_segs == emitted[id(b)]


def test_repr_shows_conv_and_queues() -> None:
    k = KCP(0x1234)
    k.send(b"abc")
    text = repr(k)
    assert "conv=0x00001234" in text and "snd_queue=1" in text and "rcv_queue=0" in text


# ------------------------------------------------------- advertised window cap


def test_wnd_cap_caps_the_advertised_window_but_not_what_is_accepted() -> None:
    k = KCP(7)
    k.wndsize(0, 256)
    k.wnd_cap = 20
    now = 100
    # 40 segments: beyond the cap, inside rcv_wnd; all are accepted and acked
    for sn in range(40):
        k.input(encode_segment(7, Command.PUSH, 0, 128, now, sn, 0, b"d"), now)
    assert k.rcv_nxt == 40
    acks = [h for dg in k.flush(now + 10) for h, _ in decode_segments(dg)]
    assert acks and acks[-1].una == 40
    assert {h.wnd for h in acks} == {20}
    k.wnd_cap = 0xFFFF
    k.input(encode_segment(7, Command.PUSH, 0, 128, now, 40, 0, b"d"), now)
    acks = [h for dg in k.flush(now + 20) for h, _ in decode_segments(dg)]
    # uncapped: rcv_wnd minus the 41 segments waiting in rcv_queue
    assert [h.wnd for h in acks] == [256 - 41]


def test_wnd_cap_never_raises_a_smaller_window() -> None:
    k = KCP(7)
    k.wndsize(0, 128)
    k.wnd_cap = 100
    now = 100
    for sn in range(60):
        k.input(encode_segment(7, Command.PUSH, 0, 128, now, sn, 0, b"d"), now)
    acks = [h for dg in k.flush(now + 10) for h, _ in decode_segments(dg)]
    assert {h.wnd for h in acks} == {128 - 60}


# ------------------------------------------------------------ held ACKs


def test_hold_acks_skips_only_the_flushes_that_would_carry_nothing_but_acks() -> None:
    # a ping is acknowledged by its pong: the una advance makes kcp-go HEAD
    # flush at once, which sends only the pong's ACK when nothing is queued;
    # a reader that replies soon holds it (the reply carries it)
    for hold in (False, True):
        a, b = nc_pair()
        now = 1000
        a.send(b"ping")
        (ping,) = a.flush(now)
        assert b.input(ping, now) == []
        assert b.recv() == b"ping"
        b.send(b"pong")
        (pong,) = b.flush(now)  # carries the ACK of the ping: una advances on a
        out = a.input(pong, now + 1, hold_acks=hold)
        assert a.recv() == b"pong"
        if hold:
            assert out == [] and a.acklist, "held: the ACK waits for the reply"
            a.send(b"next")
            (reply,) = a.flush(now + 2)
            assert [s[0] for s in segs([reply])] == [Command.ACK, Command.PUSH]
        else:
            assert [s[0] for s in segs(out)] == [Command.ACK]  # kcp-go HEAD's early ACK
            assert not a.acklist


def test_hold_acks_still_flushes_queued_data_when_the_window_opens() -> None:
    a, b = nc_pair()
    a.wndsize(1, 128)  # one segment in flight at most
    now = 1000
    a.send(b"one")
    a.send(b"two")
    (first,) = a.flush(now)
    assert segs([first]) == [(Command.PUSH, 0, 0, 3)]
    assert b.input(first, now) == []
    (ack,) = b.flush(now)
    out = a.input(ack, now + 1, hold_acks=True)
    # una advanced with "two" waiting: the flush sends it at once
    assert (Command.PUSH, 0, 1, 3) in segs(out)


def test_header_reads_what_the_struct_unpacks() -> None:
    # KCP.input reads headers with _header when compiled, with the struct
    # otherwise: the two must agree on every field, extremes included
    from kcpsock.kcp import _header, _header_behind_fec

    rng = random.Random(24)
    edges = [0, 1, 0x7F, 0x80, 0xFF, 0x100, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF]
    for i in range(2000):
        if i < len(edges):
            e = edges[i]
            fields = (e, e & 0xFF, e & 0xFF, e & 0xFFFF, e, e, e, e)
        else:
            fields = (
                rng.getrandbits(32),
                rng.getrandbits(8),
                rng.getrandbits(8),
                rng.getrandbits(16),
                rng.getrandbits(32),
                rng.getrandbits(32),
                rng.getrandbits(32),
                rng.getrandbits(32),
            )
        datagram = HEADER.pack(*fields) + rng.randbytes(rng.randrange(0, 64))
        assert _header(datagram) == HEADER.unpack_from(datagram, 0) == fields
        # behind an 8-byte FEC data header (a receiver's opened packet, whole)
        framed = rng.randbytes(8) + datagram
        assert _header_behind_fec(framed) == HEADER.unpack_from(framed, 8) == fields


def test_flush_headers_of_mixed_fragments_are_each_segments_own() -> None:
    """One flush of messages with and without fragments: every header as kcp-go writes it.

    The flush packs the fields its segments share once (conv, cmd, frg 0,
    wnd, ts) and each segment's sn / una / len apart; a fragment's frg is its
    own.  Checked field by field against ``HEADER`` on every segment.
    """
    k = KCP(0x77)
    k.set_nodelay(1, 10, 2, 1)
    k.wndsize(128, 128)
    mss = k.mss
    sizes = [10, mss * 3 + 5, 1, mss, mss * 2]
    msgs = [bytes([i]) * n for i, n in enumerate(sizes)]
    for m in msgs:
        k.send(m)
    out = k.flush(5000)
    segs = [seg for dg in out for seg in decode_segments(dg)]
    expect = []
    for m in msgs:
        parts = [m[j : j + mss] for j in range(0, len(m), mss)]
        expect += [(len(parts) - 1 - f, p) for f, p in enumerate(parts)]
    assert [(h.frg, d) for h, d in segs] == expect
    for sn, (h, d) in enumerate(segs):
        assert (h.conv, h.cmd, h.sn, h.una, h.ts, h.length) == (0x77, 81, sn, 0, 5000, len(d))
        assert h.wnd == segs[0][0].wnd > 0
    for dg in out:
        assert len(dg) <= k.mtu
