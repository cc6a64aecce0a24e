"""``KCP.send_flush`` does exactly what ``send`` then ``flush`` do, or nothing.

Twin control blocks are driven through the same random conversation (sends
of random sizes in both directions, losses, time steps, timer flushes,
``hold_rto``) with a peer each: one writes with ``send_flush`` (falling back
to ``send`` + ``flush`` when it declines), the other always with ``send`` +
``flush``.  Every datagram and the whole sender state must stay identical.
``make test`` runs this on the compiled core, ``make compat`` on the pure one.
"""

from __future__ import annotations

import random
from typing import Any, cast

import pytest

from kcpsock.kcp import KCP

STATE = (
    "snd_una",
    "snd_nxt",
    "rcv_nxt",
    "cwnd",
    "incr",
    "ssthresh",
    "rx_rto",
    "rx_srtt",
    "ts_flush",
    "updated",
    "next_update_ms",
    "_min_resend",
    "_unsent",
    "out_segs",
    "lost_segs",
    "fast_retrans_segs",
    "early_retrans_segs",
    "probe",
    "ts_probe",
    "probe_wait",
    "state",
    "acklist",
)


def _state(k: KCP) -> tuple[Any, ...]:
    return (
        tuple(getattr(k, name) for name in STATE),
        [list(seg) for seg in cast("list[list[Any]]", list(k.snd_buf))],
        [seg[0] for seg in k._inflight],
        sorted(k._fastcand),
        list(k.snd_queue),
    )


def _kcp(stream: bool, nocwnd: bool, dead_link: int) -> KCP:
    k = KCP(0x11223344)
    k.set_nodelay(1, 10, 2, 1 if nocwnd else 0)
    k.wndsize(64, 64)
    k.setmtu(200)
    k.stream = stream
    k.dead_link = dead_link
    return k


def _run(seed: int, stream: bool, nocwnd: bool) -> tuple[int, int]:
    rng = random.Random(seed)
    dead_link = rng.choice([20, 20, 20, 1])
    # (with congestion control, losses keep the window shut: fewer of them)
    loss = 0.15 if nocwnd else 0.01
    fast, slow = _kcp(stream, nocwnd, dead_link), _kcp(stream, nocwnd, dead_link)
    peers = [_kcp(stream, nocwnd, 20), _kcp(stream, nocwnd, 20)]
    now = 1000
    used = declined = 0
    to_peer: list[list[bytes]] = [[], []]
    to_me: list[list[bytes]] = [[], []]
    for _ in range(400):
        op = rng.random()
        if op < 0.4:
            size = rng.choice([1, 10, 100, fast.mss, fast.mss + 1, 3 * fast.mss])
            data = bytes([rng.randrange(256)]) * size
            hold = rng.random() < 0.2
            fast.hold_rto = slow.hold_rto = hold
            got = fast.send_flush(data, now) if size <= fast.mss else None
            if got is None:
                declined += 1
                fast.send(data)
                got = fast.flush(now)
            else:
                used += 1
            slow.send(data)
            want = slow.flush(now)
            fast.hold_rto = slow.hold_rto = False
            assert got == want
            to_peer[0] += got
            to_peer[1] += want
        elif op < 0.6:
            # the peers read what arrived (same losses for both) and answer
            keep = [rng.random() > loss for _ in to_peer[0]]
            replies = []
            reply = b"r" * rng.choice([5, 50, 150]) if rng.random() < 0.5 else b""
            for i, peer in enumerate(peers):
                out: list[bytes] = []
                for dg, ok in zip(to_peer[i], keep):
                    if ok:
                        out += peer.input(dg, now)
                while peer.recv() is not None:
                    pass
                if reply:
                    peer.send(reply)
                out += peer.flush(now)
                replies.append(out)
                to_peer[i] = []
            assert replies[0] == replies[1]
            lost = [rng.random() > loss for _ in replies[0]]
            for i in range(2):
                to_me[i] += [dg for dg, ok in zip(replies[i], lost) if ok]
        elif op < 0.8:
            outs = []
            for i, k in enumerate((fast, slow)):
                out = []
                for dg in to_me[i]:
                    out += k.input(dg, now, regular=True, ack_nodelay=False)
                to_me[i] = []
                outs.append(out)
            assert outs[0] == outs[1]
            to_peer[0] += outs[0]
            to_peer[1] += outs[1]
        elif op < 0.9:
            now += rng.choice([1, 5, 20, 60, 200])
        else:
            a, b = fast.flush(now), slow.flush(now)
            assert a == b
            to_peer[0] += a
            to_peer[1] += b
        while fast.recv() is not None:
            pass
        while slow.recv() is not None:
            pass
        assert _state(fast) == _state(slow)
    return used, declined


@pytest.mark.parametrize("stream", [False, True], ids=["message", "stream"])
@pytest.mark.parametrize("nocwnd", [True, False], ids=["nocwnd", "cwnd"])
def test_send_flush_equals_send_then_flush(stream: bool, nocwnd: bool) -> None:
    used = declined = 0
    for seed in range(12):
        u, d = _run(seed, stream, nocwnd)
        used += u
        declined += d
    # both ways were taken, many times (with congestion control the window
    # is mostly full: the segment would queue, and it declines)
    assert used > (100 if nocwnd else 5)
    assert declined > 100


def test_send_flush_declines_without_changing_anything() -> None:
    k = _kcp(False, True, 20)
    before = _state(k)
    # the first flush (kcp-go: cwnd 0, nothing moves) and an empty or oversized message
    assert k.send_flush(b"x" * (k.mss + 1), 1000) is None
    assert k.send_flush(b"", 1000) is None
    k.send(b"queued")
    before = _state(k)
    assert k.send_flush(b"y", 1000) is None  # something queued: it would go first
    assert _state(k) == before


def test_boxed_header_fields_follow_their_values() -> None:
    # pack's objects for the window and the payload length are reused while
    # the value repeats; every header still carries the current value
    import struct

    k = _kcp(False, True, 20)
    a = k._boxed_wnd(1000)
    assert a == 1000 and k._boxed_wnd(1000) is a  # the same object while it repeats
    assert k._boxed_wnd(999) == 999
    assert k._boxed_wnd(1000) == 1000
    k.flush(1000)  # the first flush: cwnd opens
    peer = _kcp(False, True, 20)
    now = 1000
    for size, queued in ((100, 0), (100, 0), (7, 3), (7, 3), (100, 10), (k.mss, 0)):
        # the receive queue sets the window advertised (rcv_wnd 64)
        k.rcv_queue.clear()
        k.rcv_queue.extend((0, b"q") for _ in range(queued))
        for path in ("send_flush", "flush"):
            data = bytes([size & 0xFF]) * size
            if path == "send_flush":
                out = k.send_flush(data, now)
                assert out is not None
            else:
                k.send(data)
                out = k.flush(now)
            (dg,) = out
            _, cmd, _, wnd, _, _, _, length = struct.unpack_from("<IBBHIIII", dg)
            assert (cmd, wnd, length) == (81, 64 - queued, size)
            assert dg[24:] == data
            back = peer.input(dg, now)
            back += peer.flush(now)
            for ack in back:  # acknowledged: the window stays open, no timer due
                k.input(ack, now)
            assert not k.snd_buf
            now += 1
