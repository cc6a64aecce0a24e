"""kcpsock.replay: the nonce cache's window, bounds and the wire-prefix key."""

from __future__ import annotations

import os
from typing import Any

import pytest

from kcpsock.codec import PacketCodec
from kcpsock.crypt import CIPHERS, derive_key, new_block_crypt
from kcpsock.replay import (
    AEAD_NONCE_SIZE,
    CLASSIC_NONCE_SIZE,
    DEFAULT_CAPACITY,
    DEFAULT_WINDOW_MS,
    ReplayCache,
    nonce_key,
)
from tests.helpers import kcp_datagrams

KEY = derive_key("it's a secrect")
#: peer addresses (the inbound pipeline checks their type when compiled)
X, Y, Z = ("127.0.0.1", 1001), ("127.0.0.1", 1002), ("127.0.0.1", 1003)


def test_seen_twice_is_a_replay() -> None:
    c = ReplayCache(8, 1000)
    assert not c.seen(b"a" * 16, 0)
    assert c.seen(b"a" * 16, 1)
    assert c.replays == 1
    assert c.contains(b"a" * 16)
    assert not c.contains(b"b" * 16)


def test_sent_nonce_blocks_reflection() -> None:
    c = ReplayCache()
    c.add_many([b"x" * 12, b"y" * 12], 0)
    assert c.seen(b"y" * 12, 5)
    assert not c.seen(b"z" * 12, 5)


def test_remembered_for_the_window_when_traffic_is_light() -> None:
    c = ReplayCache(capacity=1000, window_ms=100)
    c.add(b"first", 0)
    for t in range(1, 100):
        c.add(t.to_bytes(4, "little"), t)
    assert c.contains(b"first")  # 99 ms later, 99 nonces later
    c.add(b"x", 150)  # rotation 1: "first" is in the old generation
    assert c.contains(b"first")
    c.add(b"y", 260)  # rotation 2: forgotten after > window_ms
    assert not c.contains(b"first")


def test_remembered_for_half_the_capacity_when_traffic_is_heavy() -> None:
    c = ReplayCache(capacity=100, window_ms=10**9)
    c.add(b"first", 0)
    for i in range(50):
        c.add(i.to_bytes(4, "little"), 0)
        assert c.contains(b"first"), i
    assert len(c) <= 100
    for i in range(50, 200):
        c.add(i.to_bytes(4, "little"), 0)
        assert len(c) <= 100
    assert not c.contains(b"first")


def test_memory_is_bounded_under_a_flood() -> None:
    c = ReplayCache(capacity=64, window_ms=1000)
    for i in range(10_000):
        c.seen(os.urandom(16), i)
        assert len(c) <= 64
    assert c.rotations > 100


def test_idle_cache_forgets_nothing_and_old_generations_expire_together() -> None:
    c = ReplayCache(capacity=100, window_ms=10)
    c.add(b"a", 0)
    assert c.contains(b"a")  # no add since: nothing rotates
    c.add(b"b", 1000)  # two windows later: "a" is older than the window, gone
    assert not c.contains(b"a")
    assert c.contains(b"b")


def test_clock_going_backwards_rotates_rather_than_sticks() -> None:
    c = ReplayCache(capacity=100, window_ms=10)
    c.add(b"a", 1000)
    c.add(b"b", 0)
    assert c.contains(b"a") and c.contains(b"b")


@pytest.mark.parametrize(
    ("kwargs", "exc"),
    [
        ({"capacity": 1}, ValueError),
        ({"capacity": 1.5}, TypeError),
        ({"capacity": True}, TypeError),
        ({"window_ms": 0}, ValueError),
        ({"window_ms": "1"}, TypeError),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], exc: type[Exception]) -> None:
    with pytest.raises(exc, match=next(iter(kwargs))):
        ReplayCache(**kwargs)


def test_defaults_and_repr() -> None:
    c = ReplayCache()
    assert (c.capacity, c.window_ms) == (DEFAULT_CAPACITY, DEFAULT_WINDOW_MS)
    c.seen(b"n", 0)
    c.seen(b"n", 0)
    assert "replays=1" in repr(c)
    c.clear()
    assert not c.contains(b"n") and c.replays == 1


def test_nonce_key() -> None:
    assert nonce_key(b"abcdefghijklmnopq", 16) == b"abcdefghijklmnop"
    assert nonce_key(memoryview(b"abcdefghijklmnop"), 12) == b"abcdefghijkl"
    assert nonce_key(b"short", 16) is None
    assert nonce_key(b"anything at all here", 0) is None


@pytest.mark.parametrize("name", CIPHERS)
def test_wire_prefix_identifies_the_nonce(name: str) -> None:
    """Same nonce -> same wire prefix, whatever the body; another nonce -> another prefix.

    This is what lets the filter work on encrypted bytes (module doc).
    """
    block = new_block_crypt(name, KEY)
    nonces = iter([b"N" * 16, b"N" * 16, b"M" * 16, b"N" * 16])
    codec = PacketCodec(block, random_bytes=lambda n: next(nonces)[:n])
    size = codec.nonce_size
    assert size == (AEAD_NONCE_SIZE if "gcm" in name else CLASSIC_NONCE_SIZE)
    a = codec.encode(os.urandom(100))[0]
    b = codec.encode(os.urandom(300))[0]
    c = codec.encode(a[:50])[0]
    assert nonce_key(a, size) == nonce_key(b, size)
    assert nonce_key(a, size) != nonce_key(c, size)


def test_plain_codec_has_no_nonce() -> None:
    assert PacketCodec(None, 10, 3).nonce_size == 0


# ------------------------------------------------ the filter in the pipeline


def _pipeline(name: str = "aes", install: bool = False) -> tuple[Any, Any, Any]:
    from kcpsock.inbound import Inbound, Route
    from kcpsock.replay import ReplayFilter

    block = new_block_crypt(name, KEY if "gcm" not in name else KEY[:16])
    codec = PacketCodec(block)
    clock = [0]
    filt = ReplayFilter(codec.nonce_size, lambda: clock[0], capacity=1000, window_ms=10_000)
    inbound = Inbound.for_session(Route(None, codec), codec)
    if install:
        filt.install(inbound)  # post_later + commit per batch, as sessions run it
    else:
        inbound.pre_filters.append(filt.pre)
        inbound.post_filters.append(filt.post)
    return codec, filt, inbound


def _dg(sn: int) -> bytes:
    import struct

    return struct.pack("<IBBHIIII", 1, 81, 0, 32, 0, sn, 0, 5) + b"hello"


@pytest.mark.parametrize("install", [False, True])
@pytest.mark.parametrize("name", ["aes", "salsa20", "aes-128-gcm"])
def test_filter_drops_replays_within_a_batch_and_across_batches(name: str, install: bool) -> None:
    codec, filt, inbound = _pipeline(name, install)
    a, b = codec.encode(_dg(0))[0], codec.encode(_dg(1))[0]
    r1 = inbound.process([(a, X), (a, Y), (b, X)])
    assert r1.errors == {"InReplays": 1}
    assert kcp_datagrams(r1.deliveries[0]) == [_dg(0), _dg(1)]
    r2 = inbound.process([(b, Z), (a, Z)])
    assert r2.errors == {"InReplays": 2} and r2.deliveries == []
    assert filt.cache.replays == 3


@pytest.mark.parametrize("install", [False, True])
def test_filter_drops_reflections_of_what_was_sent(install: bool) -> None:
    codec, filt, inbound = _pipeline(install=install)
    out = codec.encode(_dg(0))
    filt.sent(out)
    r = inbound.process([(p, X) for p in out])
    assert r.errors == {"InReplays": len(out)} and r.deliveries == []


@pytest.mark.parametrize("install", [False, True])
def test_garbage_does_not_fill_the_cache(install: bool) -> None:
    _codec, filt, inbound = _pipeline(install=install)
    junk = [os.urandom(100) for _ in range(50)]
    r = inbound.process([(j, X) for j in junk])
    assert r.errors == {"InCsumErrors": 50}
    assert len(filt.cache) == 0  # only authenticated datagrams are remembered
    # and the same junk again is a CRC failure, not a "replay"
    r = inbound.process([(junk[0], X)])
    assert r.errors == {"InCsumErrors": 1}


def test_filter_needs_a_nonce() -> None:
    from kcpsock.replay import ReplayFilter

    with pytest.raises(ValueError, match="nonce_size"):
        ReplayFilter(0, lambda: 0)


def test_installed_filter_commits_each_batch_once() -> None:
    codec, filt, inbound = _pipeline(install=True)
    wire = [codec.encode(_dg(i))[0] for i in range(5)]
    r = inbound.process([(p, X) for p in wire])
    assert r.errors == {} and len(r.deliveries[0].datagrams) == 5
    assert len(filt.cache) == 5 and not filt._pending  # committed at the end of the batch
    assert inbound.after_batch == [filt.commit]
    # called by the pipeline directly, after its own filters; one filter per pipeline
    assert inbound.replay is filt and inbound.pre_filters == inbound.post_filters == []
    with pytest.raises(ValueError, match="replay filter already"):
        filt.install(inbound)


def test_installed_filter_runs_after_the_pipelines_own_filters() -> None:
    """A datagram a source filter drops is not a replay, and its nonce is not remembered."""
    from kcpsock.inbound import Inbound, Route
    from kcpsock.replay import ReplayFilter

    codec = PacketCodec(new_block_crypt("aes", KEY))
    filt = ReplayFilter(codec.nonce_size, lambda: 0)
    inbound = Inbound.for_session(Route(None, codec), codec, remote=X)
    filt.install(inbound)
    drops: list[bytes] = []

    def drop(p: bytes, payload: bytes, addr: object) -> str:
        drops.append(p)
        return "Dropped"

    inbound.post_filters.append(drop)
    a = codec.encode(_dg(0))[0]
    r = inbound.process([(a, Y), (a, Y)])  # not from the peer: InErrs twice, not InReplays
    assert r.errors == {"InErrs": 2} and len(filt.cache) == 0
    r = inbound.process([(a, X)])  # a post filter drops it: post_later never sees it
    assert r.errors == {"Dropped": 1} and drops == [a] and len(filt.cache) == 0
    inbound.post_filters.clear()
    r = inbound.process([(a, X), (a, X)])
    assert r.errors == {"InReplays": 1} and len(r.deliveries[0].datagrams) == 1
    assert filt.cache.contains(a[:16])


def test_add_many_of_a_set_rotates_as_one_by_one() -> None:
    """A set or list added at once (a batch) ends as adding each key in turn."""
    import random

    rng = random.Random(3)
    for _ in range(200):
        capacity = rng.randrange(2, 40)
        fast, slow = ReplayCache(capacity, 1000), ReplayCache(capacity, 1000)
        now = 0
        for _ in range(6):
            keys: Any = [rng.randrange(60).to_bytes(2, "little") for _ in range(rng.randrange(25))]
            if rng.random() < 0.5:
                keys = set(keys)
            now += rng.randrange(0, 400)
            fast.add_many(keys, now)
            slow.add_many(iter(list(keys)), now)  # (an iterator: the per-key path)
            assert (fast._cur, fast._old, fast.rotations) == (slow._cur, slow._old, slow.rotations)


def test_post_later_takes_the_nonce_of_its_own_packet() -> None:
    """post_later reuses pre()'s key only for the packet pre() passed last."""
    from kcpsock.replay import ReplayFilter

    filt = ReplayFilter(16, lambda: 0)
    a, b = bytes(16) + b"payload-a", bytes([1] * 16) + b"payload-b"
    assert filt.pre(a, X) is None and filt.pre(b, X) is None
    filt.post_later(a, b"", X)  # not the last packet pre() saw: its own nonce
    filt.post_later(b, b"", X)
    assert filt._pending == {a[:16], b[:16]}
    filt.commit()
    assert filt.cache.contains(a[:16]) and filt.cache.contains(b[:16])
    assert filt._last_packet is None  # no packet held past the batch
    assert filt.pre(a, Y) == "InReplays"


# ------------------------------------------- sent nonces: no lock per send


@pytest.mark.parametrize("install", [False, True])
def test_sent_nonces_wait_for_the_receiver_then_reach_the_cache(install: bool) -> None:
    """sent() takes no lock and reads no clock; the next pre() takes its nonces."""
    import threading

    codec, filt, inbound = _pipeline(install=install)
    locks = []

    class CountingLock:
        def __enter__(self) -> None:
            locks.append(threading.get_ident())

        def __exit__(self, *exc: object) -> None:
            pass

    filt._lock = CountingLock()
    clock_reads: list[int] = []

    def clock() -> int:
        clock_reads.append(1)
        return 0

    filt._clock = clock
    out = [p for i in range(4) for p in codec.encode(_dg(i))]
    filt.sent(out[:2])
    filt.sent(out[2:])
    assert (locks, clock_reads, len(filt.cache)) == ([], [], 0)
    # a batch with one reflected packet among fresh ones
    fresh = codec.encode(_dg(9))[0]
    r = inbound.process([(fresh, X), (out[3], X)])
    assert r.errors == {"InReplays": 1} and len(r.deliveries[0].datagrams) == 1
    assert not filt._waiting
    # every sent nonce and the received one are in the cache now, once locked
    assert all(filt.cache.contains(p[:16]) for p in [*out, fresh])
    if install:
        assert len(locks) == 1 and not filt._pending  # one lock per batch, at commit
    r = inbound.process([(p, Y) for p in out])
    assert r.errors == {"InReplays": 4} and r.deliveries == []


def test_sent_nonces_go_to_the_cache_when_no_receiver_takes_them() -> None:
    from kcpsock.replay import SENT_WAIT_MAX, ReplayFilter

    filt = ReplayFilter(16, lambda: 0)
    keys = [i.to_bytes(16, "little") for i in range(SENT_WAIT_MAX + 300)]
    for i in range(0, len(keys), 100):
        filt.sent([k + b"body" for k in keys[i : i + 100]])
    # the list stays bounded; the rest went to the cache directly
    assert SENT_WAIT_MAX <= len(filt._waiting) < SENT_WAIT_MAX + 100
    assert len(filt._waiting) + len(filt.cache) == len(keys)
    # and the receiver sees every one of them
    assert all(filt.pre(k + b"reflected", X) == "InReplays" for k in keys)
    assert not filt._waiting and len(filt.cache) == len(keys)


def test_sent_from_many_threads_while_the_receiver_runs_loses_no_nonce() -> None:
    """Senders extend the list while the receiver takes from it: every nonce arrives once."""
    import threading

    from kcpsock.replay import ReplayFilter

    filt = ReplayFilter(16, lambda: 0, capacity=1 << 20, lock=threading.Lock())
    per_thread, threads_n = 3000, 4
    start = threading.Barrier(threads_n + 1, timeout=30)
    done = threading.Event()

    def sender(t: int) -> None:
        start.wait()
        for i in range(0, per_thread, 3):
            filt.sent([(t << 32 | (i + j)).to_bytes(16, "little") for j in range(3)])

    def receiver() -> None:
        start.wait()
        n = 0
        while not done.is_set():
            # a batch: pre on a nonce never sent, then commit
            n += 1
            assert filt.pre((1 << 100 | n).to_bytes(16, "little"), X) is None
            filt.commit()

    filt._installed = True  # run pre/commit as an installed filter does
    threads = [threading.Thread(target=sender, args=(t,)) for t in range(threads_n)]
    rx = threading.Thread(target=receiver)
    for th in [*threads, rx]:
        th.start()
    for th in threads:
        th.join(timeout=30)
        assert not th.is_alive()
    done.set()
    rx.join(timeout=30)
    assert not rx.is_alive()
    filt.pre(bytes(16), X)  # the last ones still waiting
    filt.commit()
    want = {
        (t << 32 | i).to_bytes(16, "little") for t in range(threads_n) for i in range(per_thread)
    }
    assert want <= filt.cache._cur | filt.cache._old
    assert not filt._waiting and not filt._pending
