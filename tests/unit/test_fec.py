"""FEC framing, encoder and decoder (kcpsock.fec), beyond the kcp-go vectors."""

from __future__ import annotations

import copy
import random
import struct

import pytest

from kcpsock.errors import PacketError
from kcpsock.fec import (
    FEC_HEADER_SIZE,
    FEC_HEADER_SIZE_PLUS2,
    TYPE_DATA,
    TYPE_PARITY,
    FECDecoder,
    FECEncoder,
    paws_for,
)
from kcpsock.gf256 import ReedSolomon, gf_div, gf_mul
from tests.fields import data_fields


def datagrams(rng: random.Random, count: int, lo: int = 24, hi: int = 200) -> list[bytes]:
    return [rng.randbytes(rng.randrange(lo, hi)) for _ in range(count)]


def encode_all(enc: FECEncoder, dgs: list[bytes]) -> list[bytes]:
    out: list[bytes] = []
    for dg in dgs:
        out.extend(enc.encode(dg))
    return out


def state(dec: FECDecoder) -> object:
    """A comparable snapshot of everything the decoder holds."""
    snap = {k: v for k, v in data_fields(dec).items() if k not in ("_rs", "_autotune")}
    tuner = dec._autotune
    snap["samples"] = None if tuner is None else list(tuner.samples)
    return copy.deepcopy(snap)


# -- constants and constructor checks ------------------------------------


def test_constants() -> None:
    assert (FEC_HEADER_SIZE, FEC_HEADER_SIZE_PLUS2, TYPE_DATA, TYPE_PARITY) == (6, 8, 0xF1, 0xF2)
    assert paws_for(13) == 4294967287
    assert paws_for(5) == 4294967295
    assert paws_for(2) == 4294967294


@pytest.mark.parametrize("cls", [FECEncoder, FECDecoder])
@pytest.mark.parametrize(
    ("d", "p", "match"),
    [
        (-1, 1, "data_shards"),
        (1, -1, "parity_shards"),
        (0, 1, "both"),
        (3, 0, "both"),
        (200, 56, "255"),
    ],
)
def test_bad_shard_counts(cls: type, d: int, p: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        cls(d, p)


@pytest.mark.parametrize("cls", [FECEncoder, FECDecoder])
def test_shard_counts_must_be_ints(cls: type) -> None:
    with pytest.raises(TypeError, match="data_shards"):
        cls("10", 3)
    with pytest.raises(TypeError, match="parity_shards"):
        cls(10, 3.0)


def test_flags_checked_by_name() -> None:
    # named in both forms (compiled, a bool-typed parameter raised mypyc's own
    # "bool object expected; got str"; pure Python took any truthy value)
    with pytest.raises(TypeError, match="accelerate"):
        FECEncoder(10, 3, accelerate="no")
    with pytest.raises(TypeError, match="accelerate"):
        FECDecoder(10, 3, accelerate=None)
    with pytest.raises(TypeError, match="autotune"):
        FECDecoder(10, 3, autotune="yes")
    with pytest.raises(ValueError, match="autotune"):
        FECDecoder(10, 3, autotune=2)
    assert FECDecoder(10, 3, autotune=0, accelerate=1).shard_counts == (10, 3)


def test_start_seqid_checked() -> None:
    with pytest.raises(ValueError, match="start_seqid"):
        FECEncoder(10, 3, start_seqid=5)
    with pytest.raises(ValueError, match="start_seqid"):
        FECEncoder(10, 3, start_seqid=paws_for(13))
    with pytest.raises(ValueError, match="start_seqid"):
        FECEncoder(0, 0, start_seqid=13)
    with pytest.raises(TypeError, match="start_seqid"):
        FECEncoder(10, 3, start_seqid=None)
    assert FECEncoder(10, 3, start_seqid=26).next_seqid == 26


def test_pass_through_when_off() -> None:
    enc, dec = FECEncoder(0, 0), FECDecoder(0, 0)
    assert not enc.enabled and not dec.enabled and enc.overhead == 0
    assert enc.encode(b"abc") == [b"abc"]
    assert enc.encode(bytearray(b"xy")) == [b"xy"]
    assert dec.decode(b"\xf1") == [b"\xf1"]
    assert dec.decode_parts(memoryview(b"12345678")) == (b"12345678", [])


# -- encoder -----------------------------------------------------------------


def test_data_packet_layout() -> None:
    enc = FECEncoder(3, 2)
    assert enc.overhead == 8
    out = enc.encode(b"hello")
    assert out == [struct.pack("<IHH", 0, TYPE_DATA, 7) + b"hello"]
    assert enc.next_seqid == 1


def test_spec_worked_example_packets() -> None:
    enc = FECEncoder(3, 2)
    dgs = [bytes(range(0, 24)), bytes(range(0x10, 0x2E)), bytes(range(0x20, 0x3B))]
    out = encode_all(enc, dgs)
    want = [
        "00000000f1001a00000102030405060708090a0b0c0d0e0f1011121314151617",
        "01000000f1002000101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d",
        "02000000f1001d00202122232425262728292a2b2c2d2e2f303132333435363738393a",
        "03000000f2002700303132333435363738393a3b3c3d3e3f00010203040506071010102b2c2d",
        "04000000f200c500404142434445464748494a4b4c4d4e4f4d4c4f4e49484b4acdc3d1457d75",
    ]
    assert [p.hex() for p in out] == want


def test_parity_is_reed_solomon_of_padded_shards() -> None:
    rng = random.Random(5)
    d, p = 4, 2
    enc = FECEncoder(d, p)
    dgs = datagrams(rng, d)
    out = encode_all(enc, dgs)
    assert len(out) == d + p
    shards = [pkt[6:] for pkt in out[:d]]
    parity = ReedSolomon(d, p).encode(shards)
    length = max(map(len, shards))
    for j in range(p):
        pkt = out[d + j]
        assert struct.unpack_from("<IH", pkt) == (d + j, TYPE_PARITY)
        assert len(pkt) == 6 + length
        assert pkt[6:] == parity[j]


def test_groups_and_seqids() -> None:
    enc = FECEncoder(2, 1)
    out = encode_all(enc, [b"a" * 30] * 7)
    seqids = [struct.unpack_from("<I", pkt)[0] for pkt in out]
    types = [struct.unpack_from("<H", pkt, 4)[0] for pkt in out]
    assert seqids == list(range(10))
    assert types == [TYPE_DATA, TYPE_DATA, TYPE_PARITY] * 3 + [TYPE_DATA]


def test_wraps_at_paws() -> None:
    n = 3
    paws = paws_for(n)
    enc = FECEncoder(2, 1, start_seqid=paws - 2 * n)
    out = encode_all(enc, [b"x" * 25] * 6)
    seqids = [struct.unpack_from("<I", pkt)[0] for pkt in out]
    assert seqids == [paws - 6, paws - 5, paws - 4, paws - 3, paws - 2, paws - 1, 0, 1, 2]


def test_parity_skipping_with_now_ms() -> None:
    enc = FECEncoder(2, 1)
    assert len(enc.encode(b"a" * 30, now_ms=1000)) == 1
    # 499 ms gap: continuous, parity produced.
    assert len(enc.encode(b"b" * 30, now_ms=1499)) == 2
    assert enc.encode(b"c" * 30, now_ms=1500)[0][:4] == (3).to_bytes(4, "little")
    # 500 ms gap on the group's last packet: no parity, seqid still advances.
    assert len(enc.encode(b"d" * 30, now_ms=2000)) == 1
    assert enc.parity_skipped == 1
    assert enc.next_seqid == 6
    # without times, parity is always produced
    enc.encode(b"e" * 30)
    assert len(enc.encode(b"f" * 30)) == 2


def test_encode_argument_errors() -> None:
    enc = FECEncoder(2, 1)
    with pytest.raises(TypeError, match="datagram"):
        enc.encode("text")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="too long"):
        enc.encode(bytes(65534))
    assert enc.next_seqid == 0
    assert len(enc.encode(bytes(65533))[0]) == 65541


def test_encoder_accepts_bytearray_and_memoryview() -> None:
    a, b = FECEncoder(2, 1), FECEncoder(2, 1)
    dgs = [b"q" * 40, b"r" * 33]
    assert encode_all(a, dgs) == [*b.encode(bytearray(dgs[0])), *b.encode(memoryview(dgs[1]))]


# -- decoder -----------------------------------------------------------------


def test_decoder_rejects_short_and_bad_type_without_state_change() -> None:
    rng = random.Random(6)
    enc, dec = FECEncoder(3, 2), FECDecoder(3, 2)
    pkts = encode_all(enc, datagrams(rng, 3))
    dec.decode(pkts[0])
    before = state(dec)
    for bad in (b"", b"\x00" * 7, pkts[1][:7]):
        with pytest.raises(PacketError) as info:
            dec.decode(bad)
        assert info.value.counter == "InErrs"
        assert "short" in info.value.reason
    for flag in (0x0051, 0x00F3, 0x01F1, 0xF100):
        bad = pkts[1][:4] + struct.pack("<H", flag) + pkts[1][6:]
        with pytest.raises(PacketError, match="type") as info:
            dec.decode_parts(bad)
        assert info.value.counter == "InErrs"
    assert state(dec) == before
    with pytest.raises(TypeError, match="packet"):
        dec.decode(123)  # type: ignore[arg-type]


def test_regular_datagram_is_bytes_8_to_end() -> None:
    dec = FECDecoder(3, 2)
    # kcp-go feeds bytes 8.. to KCP whatever the size field says.
    pkt = struct.pack("<IHH", 0, TYPE_DATA, 3) + b"abcdef"
    assert dec.decode_parts(bytearray(pkt)) == (b"abcdef", [])
    assert dec.decode(struct.pack("<IHH", 1, TYPE_DATA, 2)) == [b""]


def test_no_loss_returns_only_regular_and_counts_full_sets() -> None:
    rng = random.Random(7)
    enc, dec = FECEncoder(4, 2), FECDecoder(4, 2)
    dgs = datagrams(rng, 40)
    got = [dg for pkt in encode_all(enc, dgs) for dg in dec.decode(pkt)]
    assert got == dgs
    assert dec.full_shard_sets == 10
    assert dec.parity_shards == 20
    assert dec.recovered == 0 and dec.errors == 0


def test_recovers_with_reordering() -> None:
    rng = random.Random(8)
    d, p = 5, 3
    enc, dec = FECEncoder(d, p), FECDecoder(d, p)
    dgs = datagrams(rng, d)
    pkts = encode_all(enc, dgs)
    keep = [pkts[i] for i in (7, 1, 6, 3, 5)]  # lose data 0, 2, 4
    regular, recovered = [], []
    for pkt in keep:
        r, rec = dec.decode_parts(pkt)
        if r is not None:
            regular.append(r)
        recovered.extend(rec)
    assert regular == [dgs[1], dgs[3]]
    assert recovered == [dgs[0], dgs[2], dgs[4]]
    assert dec.recovered == 3


def test_duplicates_are_ignored() -> None:
    rng = random.Random(9)
    enc, dec = FECEncoder(3, 1), FECDecoder(3, 1)
    pkts = encode_all(enc, datagrams(rng, 3))
    dec.decode(pkts[0])
    assert dec.decode(pkts[0]) == [pkts[0][8:]]  # data still reaches KCP
    dec.decode(pkts[3])
    assert dec.decode(pkts[3]) == []
    assert dec.parity_shards == 1
    assert dec.ignored == 2
    # the duplicates did not count as shards: the group still needs one more
    assert dec.decode(pkts[2]) == [pkts[2][8:], pkts[1][8:]]


def test_one_one_redelivers_like_kcp_go() -> None:
    enc, dec = FECEncoder(1, 1), FECDecoder(1, 1)
    data, parity = encode_all(enc, [b"k" * 30])
    assert dec.decode(data) == [b"k" * 30]
    assert dec.decode(parity) == [b"k" * 30]  # kcp-go: the set was emptied


def test_seqid_at_or_above_paws_is_not_stored() -> None:
    dec = FECDecoder(2, 1)
    paws = paws_for(3)
    pkt = struct.pack("<IHH", paws, TYPE_DATA, 4) + b"zz"
    assert dec.decode(pkt) == [b"zz"]
    assert dec.shard_sets == 0 and dec.ignored == 1


def test_stale_groups_are_discarded() -> None:
    rng = random.Random(10)
    d, p = 3, 2
    n = d + p
    enc, dec = FECEncoder(d, p), FECDecoder(d, p)
    pkts = encode_all(enc, datagrams(rng, 3 * 8))
    dec.decode(pkts[0])  # group 0, one shard, waits
    for g in range(1, 4):
        dec.decode(pkts[g * n])
    assert dec.shard_sets == 4
    dec.decode(pkts[4 * n])  # newest = 4: group 0 is more than 3 groups behind
    assert dec.shard_sets == 4
    # a late packet of group 0 starts no recovery and is dropped at once
    assert dec.decode(pkts[1]) == [pkts[1][8:]]
    assert dec.decode(pkts[3]) == []
    assert dec.shard_sets == 4 and dec.recovered == 0


def test_size_prefix_failure_counts_error_and_drops() -> None:
    rng = random.Random(11)
    d, p = 2, 1
    enc = FECEncoder(d, p)
    dgs = datagrams(rng, 2, 40, 41)
    pkts = encode_all(enc, dgs)
    # Corrupt the parity's first two bytes so that the rebuilt size of data 0
    # becomes 0xFFFF (> shard length).
    forged = bytearray(pkts[2])
    rebuilt_size = (len(dgs[0]) + 2) ^ 0xFFFF
    forged[6:8] = (int.from_bytes(forged[6:8], "little") ^ rebuilt_size).to_bytes(2, "little")
    dec = FECDecoder(d, p)
    dec.decode(pkts[1])
    assert dec.decode(bytes(forged)) == []
    assert dec.errors == 1 and dec.recovered == 0
    # a rebuilt size below 2 fails as well
    forged2 = bytearray(pkts[2])
    forged2[6:8] = (int.from_bytes(forged2[6:8], "little") ^ (len(dgs[0]) + 2) ^ 1).to_bytes(
        2, "little"
    )
    dec2 = FECDecoder(d, p)
    dec2.decode(pkts[1])
    assert dec2.decode(bytes(forged2)) == []
    assert dec2.errors == 1


def test_only_failing_shard_is_dropped() -> None:
    """A bad recovered shard is dropped; the other recovered one still returns."""
    d, p = 2, 2
    enc = FECEncoder(d, p)
    dgs = [b"A" * 30, b"B" * 30]
    pkts = encode_all(enc, dgs)
    rows = ReedSolomon(d, p).decode_rows((2, 3))
    # Both data shards are lost; they are rebuilt from the two parity shards
    # as shard_i = rows[i][0]*P0 + rows[i][1]*P1.  Change byte 0 of P0 by a and
    # of P1 by b with rows[1][0]*a + rows[1][1]*b = 0 (shard 1 unchanged) and
    # rows[0][0]*a + rows[0][1]*b = 0x20 (shard 0's size 32 becomes 0).
    for a in range(1, 256):
        b = gf_div(gf_mul(rows[1][0], a), rows[1][1])
        if gf_mul(rows[0][0], a) ^ gf_mul(rows[0][1], b) == 0x20:
            break
    p0, p1 = bytearray(pkts[2]), bytearray(pkts[3])
    p0[6] ^= a
    p1[6] ^= b
    dec = FECDecoder(d, p)
    assert dec.decode(bytes(p0)) == []
    assert dec.decode(bytes(p1)) == [dgs[1]]
    assert dec.errors == 1 and dec.recovered == 1


def test_autotune_follows_sender_parameters() -> None:
    rng = random.Random(12)
    enc = FECEncoder(4, 2)
    dec = FECDecoder(3, 1)
    pkts = encode_all(enc, datagrams(rng, 4 * 40))
    regular = 0
    for pkt in pkts:
        r, _ = dec.decode_parts(pkt)
        regular += r is not None
    assert regular == 160  # data always reaches KCP
    assert dec.shard_counts == (4, 2) and dec.retuned == 1
    assert dec.paws == paws_for(6)
    # with the right parameters, recovery works again
    more = encode_all(enc, datagrams(rng, 4))
    got = [dg for pkt in more[1:] for dg in dec.decode(pkt)]
    assert sorted(got) == sorted(pkt[8:] for pkt in more[:4])


def test_autotune_off_ignores_mismatched_packets() -> None:
    rng = random.Random(13)
    enc = FECEncoder(4, 2)
    dec = FECDecoder(3, 1, autotune=False)
    for pkt in encode_all(enc, datagrams(rng, 40)):
        dec.decode(pkt)
    assert dec.shard_counts == (3, 1) and dec.ignored > 0


def test_lossy_link_recovers_everything_recoverable() -> None:
    rng = random.Random(14)
    d, p = 10, 3
    enc, dec = FECEncoder(d, p), FECDecoder(d, p)
    dgs = datagrams(rng, 200, 24, 1400)
    pkts = encode_all(enc, dgs)
    n = d + p
    delivered: set[bytes] = set()
    lost_data = 0
    for g in range(0, len(pkts) - len(pkts) % n, n):
        group = pkts[g : g + n]
        drop = set(rng.sample(range(n), rng.randrange(p + 1)))
        lost_data += sum(1 for i in drop if i < d)
        for i, pkt in enumerate(group):
            if i not in drop:
                delivered.update(dec.decode(pkt))
    assert delivered == set(dgs)
    assert dec.recovered == lost_data > 0


@pytest.mark.parametrize(("d", "p"), [(30, 4), (3, 9), (10, 3)])
def test_both_encoder_paths_match_reed_solomon(d: int, p: int) -> None:
    """Bit-sliced (small codes) and translate (large codes) paths give RS parity."""
    rng = random.Random(d + 100 * p)
    enc = FECEncoder(d, p)
    dgs = datagrams(rng, d)
    out = encode_all(enc, dgs)
    rs = ReedSolomon(d, p)
    assert rs.bitsliced == (d <= 24 and p <= 8)
    assert [pkt[6:] for pkt in out[d:]] == rs.encode_translate([pkt[6:] for pkt in out[:d]])
    dec = FECDecoder(d, p)
    lost = set(rng.sample(range(d), min(p, d)))
    got = [dg for i, pkt in enumerate(out) if i not in lost for dg in dec.decode(pkt)]
    assert set(got) == set(dgs)  # (p >= d re-delivers copies, as kcp-go)
    assert dec.recovered >= len(lost)


def test_translate_path_parity_skipping_resets_state() -> None:
    enc = FECEncoder(30, 1)
    for t in range(29):
        enc.encode(b"x" * 30, now_ms=t)
    assert len(enc.encode(b"y" * 30, now_ms=1000)) == 1
    dgs = [bytes([i]) * 40 for i in range(30)]
    out = encode_all(enc, dgs)
    assert out[-1][6:] == ReedSolomon(30, 1).encode([pkt[6:] for pkt in out[:30]])[0]


def test_find_period_needs_an_unbroken_stretch() -> None:
    from kcpsock.fec import _Autotune

    tuner = _Autotune()
    assert tuner.find_period(True) == -1
    kinds = ([True] * 4 + [False] * 2) * 4  # d = 4, p = 2, seqids 0..23
    for seq, kind in enumerate(kinds):
        tuner.add(seq, kind)
    assert (tuner.find_period(True), tuner.find_period(False)) == (4, 2)
    # a loss before the right edge defeats detection
    broken = _Autotune()
    for seq, kind in enumerate(kinds):
        if seq != 3:
            broken.add(seq, kind)
    assert broken.find_period(True) == -1
    # seqids wrapping around 2**32 are still consecutive
    wrapped = _Autotune()
    for i, kind in enumerate(kinds):
        wrapped.add((0xFFFFFFF0 + i) & 0xFFFFFFFF, kind)
    assert wrapped.find_period(False) == 2


def test_mismatch_with_same_parameters_resumes_recovery() -> None:
    rng = random.Random(18)
    d, p = 4, 2
    enc, dec = FECEncoder(d, p), FECDecoder(d, p)
    dgs = datagrams(rng, 4 * 12)
    pkts = encode_all(enc, dgs)
    # A stray packet whose kind does not match its position pauses recovery.
    stray = struct.pack("<IHH", 4, TYPE_DATA, 4) + b"zz"
    assert dec.decode(stray) == [b"zz"]
    assert dec.ignored == 1
    for pkt in pkts[:60]:
        dec.decode(pkt)
    assert dec.shard_counts == (d, p) and dec.retuned == 0
    # detection found (4, 2) again: recovery is back
    tail = pkts[60:72]
    got = [dg for i, pkt in enumerate(tail) if i != 1 for dg in dec.decode(pkt)]
    assert tail[1][8:] in got
