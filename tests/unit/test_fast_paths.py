"""The sender's C-speed paths against the slow references (same bytes, seeded).

* :class:`kcpsock.gf256.ParityAccumulator` (translate + one C XOR per shard)
  against :meth:`ReedSolomon.encode` of the zero-padded shards;
* :class:`kcpsock.fec.FECEncoder` with ``accelerate`` on and off, one
  datagram at a time and through :meth:`FECEncoder.frame_many`, with the C
  helper (kcpsock._gfsimd) and without it (translate + C XOR);
* ``RawCFB.encrypt_pairs`` against pycryptodome's public CFB;
* :meth:`PacketCodec.encode_many` with the fast paths against the same codec
  built with ``KCPSOCK_NO_FASTCRYPT=1`` (pycryptodome's public API only).
"""

from __future__ import annotations

import os
import random
from typing import Callable, Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kcpsock import PacketCodec, _accel, _fastcrypt, new_block_crypt
from kcpsock.crypt import derive_key
from kcpsock.fec import FECDecoder, FECEncoder
from kcpsock.gf256 import ParityAccumulator, ReedSolomon

KEY = derive_key("fast paths")
XOR = _fastcrypt.xor_function()
needs_c = pytest.mark.skipif(XOR is None, reason="pycryptodome's C strxor is not reachable")


@pytest.fixture
def ctypes_cfb(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ctypes CFB (RawCFB) instead of the C helper kcpsock._cfbc."""
    monkeypatch.setattr(_accel, "native", lambda name: None)


def _rng_bytes(seed: int) -> Callable[[int], bytes]:
    rng = random.Random(seed)
    return lambda n: rng.randbytes(n)


@needs_c
@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from([(1, 1), (2, 3), (3, 9), (10, 3), (11, 3), (13, 7), (30, 4), (60, 20)]),
    st.data(),
)
def test_accumulator_equals_reed_solomon(counts: tuple[int, int], data: st.DataObject) -> None:
    d, p = counts
    rs = ReedSolomon(d, p)
    assert XOR is not None
    acc = ParityAccumulator(rs, XOR)
    for _ in range(2):  # the slots are clean again after take()
        shards = data.draw(st.lists(st.binary(max_size=200), min_size=d, max_size=d))
        for i, shard in enumerate(shards):
            acc.add(i, bytearray(shard))
        length = max(len(s) for s in shards)
        assert acc.used == length
        assert acc.take(length) == rs.encode(shards)
        assert acc.used == 0


@needs_c
def test_accumulator_grows_past_its_slots_and_resets() -> None:
    rng = random.Random(5)
    rs = ReedSolomon(4, 3)
    assert XOR is not None
    acc = ParityAccumulator(rs, XOR)
    shards = [rng.randbytes(n) for n in (100, 1600, 5000, 3)]  # > the 1536-byte slots
    for i, shard in enumerate(shards):
        acc.add(i, bytearray(shard))
    assert acc.take(5000) == rs.encode(shards)
    acc.add(0, bytearray(b"junk" * 50))
    acc.reset()  # a skipped group leaves nothing behind
    small = [rng.randbytes(30) for _ in range(4)]
    for i, shard in enumerate(small):
        acc.add(i, bytearray(shard))
    assert acc.take(40) == rs.encode([s + bytes(10) for s in small])


@needs_c
@pytest.mark.parametrize(("d", "p"), [(10, 3), (1, 1), (3, 9), (30, 4), (5, 2)])
def test_accelerated_encoder_equals_int_paths(d: int, p: int, gf_path: str) -> None:
    rng = random.Random(d * 31 + p)
    fast, slow, batch = FECEncoder(d, p), FECEncoder(d, p, accelerate=False), FECEncoder(d, p)
    if gf_path == "native":
        assert fast._native is not None and fast._cacc is None
    else:
        assert fast._native is None and fast._cacc is not None
    assert slow._cacc is None and slow._native is None
    for k in range(120):
        sizes = [0, 1, 5, 100, 1372, 1372, 1500, 3000]
        dgs = [rng.randbytes(rng.choice(sizes)) for _ in range(rng.randrange(0, 25))]
        now = rng.choice([None, k * 10, k * 300])  # k * 300: some groups skip parity
        expected = [pkt for dg in dgs for pkt in slow.encode(dg, now)]
        assert [pkt for dg in dgs for pkt in fast.encode(dg, now)] == expected
        heads, bodies = batch.frame_many(dgs, now)
        assert [h + b for h, b in zip(heads, bodies)] == expected
    assert fast.parity_skipped == slow.parity_skipped == batch.parity_skipped > 0
    assert fast.next_seqid == slow.next_seqid == batch.next_seqid


def _tag_head(tag: int, body: bytes) -> bytes:
    """The FEC header a frame_many_tagged tag stands for (written out by hand)."""
    if tag >= 1 << 32:
        return (tag - (1 << 32)).to_bytes(4, "little") + bytes([0xF2, 0])
    return tag.to_bytes(4, "little") + bytes([0xF1, 0]) + (len(body) + 2).to_bytes(2, "little")


@pytest.mark.parametrize(("d", "p"), [(10, 3), (1, 1), (3, 2), (20, 1)])
def test_frame_many_tagged_equals_frame_many(d: int, p: int) -> None:
    """Tags stand for frame_many's headers, parity skips and the seqid wrap included."""
    probe = FECEncoder(d, p)
    if not probe.taggable:
        pytest.skip("kcpsock._gfsimd is not built (or KCPSOCK_PURE)")
    n = d + p
    start = (probe.paws // n - 3) * n  # three groups before the wrap
    rng = random.Random(d * 7 + p)
    tagged, packed = FECEncoder(d, p, start_seqid=start), FECEncoder(d, p, start_seqid=start)
    wrapped = False
    for k in range(150):
        sizes = [0, 1, 5, 100, 1372, 1372, 1500, 3000]
        dgs = [rng.randbytes(rng.choice(sizes)) for _ in range(rng.randrange(0, 25))]
        now = rng.choice([None, k * 10, k * 300])  # k * 300: some groups skip parity
        tags, bodies = tagged.frame_many_tagged(dgs, now)
        heads, expected = packed.frame_many(dgs, now)
        assert bodies == expected
        assert [_tag_head(t, b) for t, b in zip(tags, bodies)] == heads
        wrapped = wrapped or any(t & 0xFFFFFFFF < start for t in tags)
        assert tagged.next_seqid == packed.next_seqid
    assert wrapped and tagged.parity_skipped == packed.parity_skipped > 0


def test_frame_many_tagged_checks_like_frame_many() -> None:
    enc = FECEncoder(3, 2)
    if not enc.taggable:
        pytest.skip("kcpsock._gfsimd is not built (or KCPSOCK_PURE)")
    with pytest.raises(TypeError, match="datagram"):
        enc.frame_many_tagged(["text"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="too long"):
        enc.frame_many_tagged([b"x" * 70000])
    assert enc.next_seqid == 0  # nothing framed
    assert enc.frame_many_tagged([bytearray(b"ab"), memoryview(b"cd")]) == ([0, 1], [b"ab", b"cd"])
    for off in (FECEncoder(0, 0), FECEncoder(3, 2, accelerate=False)):
        assert not off.taggable
        with pytest.raises(ValueError, match="taggable"):
            off.frame_many_tagged([b"x"])


def test_frame_many_checks_like_frame() -> None:
    enc = FECEncoder(3, 2)
    with pytest.raises(TypeError, match="datagram"):
        enc.frame_many(["text"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="too long"):
        enc.frame_many([b"x" * 70000])
    assert enc.next_seqid == 0  # nothing framed
    heads, bodies = enc.frame_many([bytearray(b"ab"), memoryview(b"cd")])
    assert [len(h) for h in heads] == [8, 8]
    assert bodies == [b"ab", b"cd"] and all(type(b) is bytes for b in bodies)


@needs_c
def test_lossy_round_trip_through_the_fast_encoder() -> None:
    rng = random.Random(11)
    enc, dec = FECEncoder(10, 3), FECDecoder(10, 3)
    dgs = [rng.randbytes(rng.randrange(20, 1372)) for _ in range(400)]
    heads, bodies = enc.frame_many(dgs)
    packets = [h + b for h, b in zip(heads, bodies)]
    delivered: set[bytes] = set()
    for g in range(0, len(packets), 13):
        lost = set(rng.sample(range(13), rng.randrange(4)))
        for i, pkt in enumerate(packets[g : g + 13]):
            if i not in lost:
                delivered.update(dec.decode(pkt))
    assert delivered == set(dgs)


def _public_cfb(data: bytes) -> bytes:
    from Crypto.Cipher import AES

    from kcpsock.crypt import IV

    pad = -len(data) % 16
    return AES.new(KEY, AES.MODE_CFB, iv=IV, segment_size=128).encrypt(data + bytes(pad))[
        : len(data)
    ]


def test_encrypt_pairs_equals_public_cfb(ctypes_cfb: None) -> None:
    block = new_block_crypt("aes", KEY)
    pairs = getattr(block, "encrypt_pairs", None)
    if pairs is None:
        pytest.skip("the direct-C CFB is not in use")
    rng = random.Random(3)
    heads = [rng.randbytes(rng.choice([0, 20, 28, 26])) for _ in range(40)]
    lengths = [0, 1, 3, 15, 16, 17, 100, 1372, 1480, 1500, 1516, 1600, 4000]
    bodies = [rng.randbytes(rng.choice(lengths)) for _ in range(40)]
    got = pairs(heads, bodies)
    assert got == [_public_cfb(h + b) for h, b in zip(heads, bodies)]
    assert pairs([], []) == []


@pytest.mark.parametrize("cipher", ["aes", "aes-128", "aes-192", "blowfish", "cast5", "3des"])
def test_iv_restart_by_write_equals_two_call_restart(cipher: str, ctypes_cfb: None) -> None:
    """The one-call restart (IV written into the CFB state) gives the two-call bytes."""
    fast = new_block_crypt(cipher, KEY)
    if not isinstance(fast, _fastcrypt.RawCFB):
        pytest.skip("the direct-C CFB is not in use")
    slow = new_block_crypt(cipher, KEY)
    assert isinstance(slow, _fastcrypt.RawCFB)
    fast._pool.clear()
    slow._pool.clear()
    slow._next_iv_view = lambda state, out: None  # type: ignore[method-assign]
    rng = random.Random(17)
    b = fast._b
    lengths = [1, b - 1, b, b + 1, 2 * b, 3 * b + 5, 44, 227, 228, 229, 1371, 1400, 1500, 1600]
    heads = [rng.randbytes(rng.choice([0, 3, 20, 26, 28])) for _ in range(60)]
    bodies = [rng.randbytes(rng.choice(lengths)) for _ in range(60)]
    expected = [slow.encrypt(h + bd) for h, bd in zip(heads, bodies)]
    for _ in range(2):  # the restarted state carries nothing over
        assert fast.encrypt_pairs(heads, bodies) == expected
        assert [fast.encrypt_pair(h, bd) for h, bd in zip(heads, bodies)] == expected
        assert [fast.encrypt(h + bd) for h, bd in zip(heads, bodies)] == expected
    assert [e[6] is not None for e in fast._pool] == [True] * len(fast._pool)
    assert [e[6] is None for e in slow._pool] == [True] * len(slow._pool)
    assert slow.encrypt_pairs(heads, bodies) == expected
    # decrypt: short packets one CFB call from a restarted state, longer ECB + XOR
    for block in (fast, slow):
        assert [block.decrypt(c) for c in expected] == [h + bd for h, bd in zip(heads, bodies)]


def test_iv_restart_refuses_an_unexpected_state_layout(ctypes_cfb: None) -> None:
    import ctypes

    block = new_block_crypt("aes", KEY)
    if not isinstance(block, _fastcrypt.RawCFB):
        pytest.skip("the direct-C CFB is not in use")
    out = ctypes.create_string_buffer(64)
    # plain fields that do not match (segment length, bytes used): no pointer is followed
    for words in ([0, 8, 0, 1 << 40, 1 << 40], [0, 16, 3, 1 << 40, 1 << 40], [0, 16, 0, 0, 0]):
        fake = (ctypes.c_size_t * 5)(*words)
        assert block._next_iv_view(ctypes.c_void_p(ctypes.addressof(fake)), out) is None
    # pointers to the wrong bytes (the keystream buffer is not E(IV))
    junk = ctypes.create_string_buffer(b"\x55" * 16)
    addr = ctypes.addressof(junk)
    fake = (ctypes.c_size_t * 5)(0, 16, 0, addr, addr)
    assert block._next_iv_view(ctypes.c_void_p(ctypes.addressof(fake)), out) is None


@pytest.mark.parametrize("cipher", ["aes", "aes-128", "blowfish", "cast5", "3des", "tea"])
@pytest.mark.parametrize(("d", "p"), [(0, 0), (10, 3), (1, 1)])
@pytest.mark.parametrize("native", [True, False], ids=["cfbc", "ctypes"])
def test_encode_many_equals_public_api_codec(
    cipher: str, d: int, p: int, native: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not native:
        monkeypatch.setattr(_accel, "native", lambda name: None)
    rng = random.Random(9)
    dgs = [rng.randbytes(rng.choice([24, 25, 100, 1000, 1372])) for _ in range(57)]
    fast = PacketCodec(new_block_crypt(cipher, KEY), d, p, random_bytes=_rng_bytes(1))
    monkeypatch.setenv(_fastcrypt.ENV_SWITCH, "1")
    slow_block = new_block_crypt(cipher, KEY)
    slow = PacketCodec(slow_block, d, p, random_bytes=_rng_bytes(1))
    assert slow._pairs is None and (slow.encoder._cacc is None)
    for now in (1000, 1010, 1020):
        assert fast.encode_many(dgs[:20], now) + fast.encode_many(dgs[20:], now) == (
            slow.encode_many(dgs[:20], now) + slow.encode_many(dgs[20:], now)
        )
    for size in (1, 2, 3, 4, 5):  # both sides of the batch path's threshold
        assert fast.encode_many(iter(dgs[:size]), 1030) == slow.encode_many(dgs[:size], 1030)


def test_default_nonces_in_batches_are_distinct() -> None:
    codec = PacketCodec(new_block_crypt("aes", KEY), 10, 3)
    wire: list[bytes] = []
    for _ in range(5):
        wire += codec.encode_many([os.urandom(100) for _ in range(300)])
    assert len({w[:16] for w in wire}) == len(wire) == 5 * (300 + 30 * 3)
    rx = PacketCodec(new_block_crypt("aes", KEY), 10, 3)
    opened: list[Optional[bytes]] = [rx.open(w) for w in wire]
    assert all(o is not None for o in opened)


@needs_c
@pytest.mark.parametrize(("d", "p"), [(10, 3), (1, 1), (3, 9), (30, 4), (4, 2)])
def test_accelerated_recovery_equals_int_path(d: int, p: int, gf_path: str) -> None:
    """Random losses (and corrupted parity): same datagrams, same counters."""
    rng = random.Random(d * 7 + p)
    enc = FECEncoder(d, p)
    dgs = [rng.randbytes(rng.choice([0, 1, 30, 500, 1372])) for _ in range(d * 40)]
    packets = [pkt for dg in dgs for pkt in enc.encode(dg)]
    fast, slow = FECDecoder(d, p), FECDecoder(d, p, accelerate=False)
    assert fast._accelerate and not slow._accelerate
    assert (fast._native is not None) == (gf_path == "native") and slow._native is None
    n = d + p
    for g in range(0, len(packets), n):
        group = packets[g : g + n]
        lost = set(rng.sample(range(n), rng.randrange(p + 1)))
        for i, pkt in enumerate(group):
            if i in lost:
                continue
            if i >= d and rng.random() < 0.1:  # a corrupted parity shard
                pkt = pkt[:6] + rng.randbytes(len(pkt) - 6)
            assert fast.decode(pkt) == slow.decode(pkt)
    assert (fast.recovered, fast.errors, fast.full_shard_sets) == (
        slow.recovered,
        slow.errors,
        slow.full_shard_sets,
    )
    assert fast.recovered > 0


def test_small_bytes_copies_only_small_flat_buffers() -> None:
    """send/sendall's one copy: small bytearrays and contiguous views become bytes, nothing else."""
    from kcpsock.session import SENDALL_COPY_MAX, small_bytes

    data = bytes(range(256)) * 4
    for buf in (bytearray(data), memoryview(data), memoryview(bytearray(data))[10:500]):
        got = small_bytes(buf)
        assert type(got) is bytes and got == bytes(buf)
    strided = memoryview(data)[::2]
    assert small_bytes(strided) is strided  # not contiguous: sent through a view
    big = bytearray(SENDALL_COPY_MAX + 1)
    assert small_bytes(big) is big
    assert (
        small_bytes(memoryview(big)) is not big and type(small_bytes(memoryview(big))) is memoryview
    )
    assert small_bytes(data) is data
