"""Hypothesis: arbitrary bytes given to KCP.input() work or raise PacketError.

- Arbitrary bytes (raw, or dressed up with our conv and real commands) either
  are accepted, or raise PacketError leaving every field of the core as it
  was; the core's invariants hold afterwards and it keeps working.
- Datagrams that are well-formed up to a bad tail (wrong conv, unknown
  command, truncated payload) are rejected as a whole: injected into a real
  transfer they change nothing, so delivery stays exact.
"""

from __future__ import annotations

import copy
import random
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from kcpsock.errors import PacketError
from kcpsock.kcp import KCP, SN
from kcpsock.segment import HEADER, timediff
from tests.fields import data_fields
from tests.kcpwire import decode_segments, encode_segment, seg_fields

CONV = 0x4B435031


def snapshot(k: KCP) -> dict[str, Any]:
    snap: dict[str, Any] = {}
    for name, value in data_fields(k).items():
        if name in ("snd_buf", "_inflight"):
            snap[name] = [seg_fields(s) for s in value]
        elif name in ("snd_queue", "rcv_queue"):
            snap[name] = [(f, bytes(d)) for f, d in value]
        elif name == "rcv_buf":
            snap[name] = {sn: (f, bytes(d)) for sn, (f, d) in value.items()}
        elif name == "_fastcand":
            snap[name] = sorted(value)
        else:
            snap[name] = copy.copy(value)
    return snap


def check_invariants(k: KCP) -> None:
    sns = [s[SN] for s in k.snd_buf]
    if sns:
        assert sns[0] == k.snd_una
        assert all(((b - a) & 0xFFFFFFFF) == 1 for a, b in zip(sns, sns[1:]))
        assert ((k.snd_nxt - sns[-1]) & 0xFFFFFFFF) == 1
    else:
        assert k.snd_una == k.snd_nxt
    assert len(k.rcv_queue) <= k.rcv_wnd
    for sn in k.rcv_buf:
        assert 0 < timediff(sn, k.rcv_nxt) < k.rcv_wnd
    for v in (k.snd_una, k.snd_nxt, k.rcv_nxt, k.cwnd, k.incr, k.ssthresh):
        assert 0 <= v <= 0xFFFFFFFF


def busy_core() -> tuple[KCP, KCP]:
    """A receiver with data in every queue, and its peer."""
    a, b = KCP(CONV), KCP(CONV)
    for k in (a, b):
        k.nodelay(1, 10, 2, 1)
    for i in range(6):
        a.send(bytes([i]) * 1000)
        b.send(bytes([100 + i]) * 50)
    out = a.flush(0)
    for d in out[:1] + out[2:]:  # lose one: rcv_buf gets out-of-order data
        b.input(d, 5)
    b.flush(6)
    return a, b


segment_st = st.builds(
    lambda conv, cmd, frg, wnd, ts, sn, una, data: encode_segment(
        conv, cmd, frg, wnd, ts, sn, una, data
    ),
    st.sampled_from([CONV, CONV, CONV, CONV ^ 1]),
    st.sampled_from([81, 82, 83, 84, 0, 85, 255]),
    st.integers(0, 255),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFFFFFF),
    st.one_of(st.integers(0, 20), st.integers(0, 0xFFFFFFFF)),
    st.one_of(st.integers(0, 20), st.integers(0, 0xFFFFFFFF)),
    st.binary(max_size=64),
)


def mangle(datagram: bytes, cut: int, lie: int) -> bytes:
    """Truncate the datagram or make its first length field lie."""
    if lie and len(datagram) >= 24:
        hdr = bytearray(datagram)
        HEADER.pack_into(hdr, 0, *HEADER.unpack_from(datagram)[:7], lie)
        return bytes(hdr)
    return datagram[: max(0, len(datagram) - cut)]


datagram_st = st.one_of(
    st.binary(max_size=200),
    st.builds(
        lambda segs, cut, lie: mangle(b"".join(segs), cut, lie),
        st.lists(segment_st, min_size=1, max_size=4),
        st.integers(0, 30),
        st.one_of(st.just(0), st.integers(0, 0xFFFFFFFF)),
    ),
)


@given(st.lists(datagram_st, min_size=1, max_size=8), st.booleans(), st.booleans())
def test_arbitrary_input_works_or_raises_packet_error(
    datagrams: list[bytes], regular: bool, ack_nodelay: bool
) -> None:
    _, b = busy_core()
    now = 10
    for d in datagrams:
        before = snapshot(b)
        try:
            out = b.input(d, now, regular=regular, ack_nodelay=ack_nodelay)
        except PacketError as e:
            assert e.counter == "KCPInErrors"
            assert snapshot(b) == before
        else:
            for o in out:
                assert len(o) <= b.mtu
                decode_segments(o)
        check_invariants(b)
        now += 7
    # the core keeps working: flush, send and receive
    for o in b.flush(now):
        assert len(o) <= b.mtu
        decode_segments(o)
    b.send(b"still alive")
    while b.recv() is not None:
        pass
    check_invariants(b)


def bad_tail(rng: random.Random) -> bytes:
    kind = rng.randrange(3)
    if kind == 0:
        return encode_segment(CONV ^ 0x100, 81, 0, 32, 0, 0, 0, b"forged")
    if kind == 1:
        return encode_segment(CONV, rng.choice([0, 80, 85, 200]), 0, 32, 0, 0, 0, b"")
    return encode_segment(CONV, 81, 0, 32, 0, 0, 0, b"truncated")[:-3]


@given(st.integers(0, 2**32 - 1), st.lists(segment_st, max_size=4))
def test_rejected_datagrams_never_corrupt_delivery(seed: int, forged: list[bytes]) -> None:
    """Valid-looking segments followed by a bad one must not be applied at all."""
    rng = random.Random(seed)
    a, b = KCP(CONV), KCP(CONV)
    for k in (a, b):
        k.nodelay(1, 10, 2, 1)
    msgs = [rng.randbytes(rng.randint(1, 3000)) for _ in range(12)]
    for m in msgs:
        a.send(m)
    # forged PUSH/ACK segments for the very sns in flight, then a bad tail
    poison = [encode_segment(CONV, 81, 0, 32, 0, sn, 0, b"EVIL") for sn in range(4)]
    poison += [encode_segment(CONV, 82, 0, 32, 0, sn, sn + 1) for sn in range(4)]
    got: list[bytes] = []
    now = 0
    for _ in range(400):
        inject = b"".join(rng.sample(poison, 3) + forged)
        for d in a.update(now):
            if rng.random() < 0.8:
                b.input(d, now)
            for target in (a, b):
                try:
                    target.input(inject + bad_tail(rng), now)
                except PacketError:
                    pass
                else:  # pragma: no cover - the bad tail makes this unreachable
                    raise AssertionError("datagram with a bad tail was accepted")
        for d in b.update(now):
            a.input(d, now)
        while True:
            msg = b.recv()
            if msg is None:
                break
            got.append(msg)
        if len(got) == len(msgs):
            break
        now += 10
    assert got == msgs
