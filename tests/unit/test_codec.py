"""Unit tests of kcpsock.codec.PacketCodec (pure: no sockets, seeded randomness)."""

from __future__ import annotations

import random
import struct
import zlib
from typing import Optional

import pytest

from kcpsock.codec import MTU_LIMIT, PacketCodec
from kcpsock.crypt import derive_key, new_block_crypt
from kcpsock.errors import PacketError
from kcpsock.fec import FECDecoder

KEY = derive_key("it's a secrect")


def _rng_bytes(seed: int = 0):  # type: ignore[no-untyped-def]
    rng = random.Random(seed)
    calls: list[int] = []

    def random_bytes(n: int) -> bytes:
        calls.append(n)
        return bytes(rng.getrandbits(8) for _ in range(n))

    random_bytes.calls = calls  # type: ignore[attr-defined]
    return random_bytes


def _kcp_datagram(conv: int = 0x11223344, sn: int = 0, payload: bytes = b"x" * 10) -> bytes:
    """A KCP push segment: conv, cmd 81, frg, wnd, ts, sn, una, len, data."""
    return struct.pack("<IBBHIIII", conv, 81, 0, 128, 1000, sn, 0, len(payload)) + payload


def _codec(cipher: Optional[str], d: int = 0, p: int = 0, seed: int = 0) -> PacketCodec:
    block = new_block_crypt(cipher, KEY) if cipher else None
    return PacketCodec(block, d, p, random_bytes=_rng_bytes(seed))


# --- header sizes and MTU (docs/SESSION.md §1) -------------------------------


@pytest.mark.parametrize(
    ("cipher", "d", "p", "overhead", "mtu"),
    [
        (None, 0, 0, 0, 1400),
        ("aes", 0, 0, 20, 1380),
        ("none", 0, 0, 20, 1380),
        ("salsa20", 0, 0, 20, 1380),
        (None, 10, 3, 8, 1392),
        ("aes", 10, 3, 28, 1372),
        ("aes-gcm", 0, 0, 28, 1372),
        ("aes-gcm", 10, 3, 36, 1364),
    ],
)
def test_overhead_and_kcp_mtu(
    cipher: Optional[str], d: int, p: int, overhead: int, mtu: int
) -> None:
    codec = _codec(cipher, d, p)
    assert codec.overhead == overhead
    assert codec.kcp_mtu() == mtu
    assert codec.kcp_mtu(1500) == 1500 - overhead


def test_kcp_mtu_bounds() -> None:
    codec = _codec("aes", 10, 3)
    with pytest.raises(ValueError, match="1500"):
        codec.kcp_mtu(1501)
    with pytest.raises(ValueError, match="too small"):
        codec.kcp_mtu(77)
    assert codec.kcp_mtu(78) == 50
    with pytest.raises(TypeError, match="mtu"):
        codec.kcp_mtu(1400.0)


def test_wire_size_stays_within_mtu() -> None:
    for cipher in (None, "aes", "aes-gcm"):
        codec = _codec(cipher, 3, 2)
        dg = _kcp_datagram(payload=bytes(codec.kcp_mtu() - 24))
        out = []
        for _ in range(3):
            out += codec.encode(dg)
        assert len(out) == 5
        assert all(len(w) == 1400 for w in out)


# --- layout -----------------------------------------------------------------------


def test_layout_with_none_cipher_is_visible() -> None:
    rb = _rng_bytes(7)
    codec = PacketCodec(new_block_crypt("none", b""), 2, 1, random_bytes=rb)
    dg = _kcp_datagram()
    (wire,) = codec.encode(dg)
    nonce = _rng_bytes(7)(16)
    assert wire[:16] == nonce
    assert wire[16:20] == zlib.crc32(wire[20:]).to_bytes(4, "little")
    seqid, flag, size = struct.unpack_from("<IHH", wire, 20)
    assert (seqid, flag, size) == (0, 0xF1, len(dg) + 2)
    assert wire[28:] == dg
    assert rb.calls == [16]


def _decoder(codec: PacketCodec) -> Optional[FECDecoder]:
    """codec.decoder, read through a call (mypy keeps no narrowing across it)."""
    return codec.decoder


def test_each_packet_gets_a_fresh_nonce() -> None:
    rb = _rng_bytes(1)
    codec = PacketCodec(new_block_crypt("none", b""), 1, 2, random_bytes=rb)
    out = codec.encode(_kcp_datagram())
    assert len(out) == 3 and len({w[:16] for w in out}) == 3
    assert rb.calls == [16, 16, 16]


def test_identical_datagrams_encrypt_differently() -> None:
    codec = _codec("aes", seed=3)
    dg = _kcp_datagram()
    assert codec.encode(dg) != codec.encode(dg)


def test_gcm_layout() -> None:
    rb = _rng_bytes(2)
    codec = PacketCodec(new_block_crypt("aes-gcm", KEY), random_bytes=rb)
    dg = _kcp_datagram()
    (wire,) = codec.encode(dg)
    assert len(wire) == 12 + len(dg) + 16
    assert wire[:12] == _rng_bytes(2)(12)
    assert codec.open(wire) == dg


def test_random_bytes_wrong_length() -> None:
    codec = PacketCodec(new_block_crypt("aes", KEY), random_bytes=lambda n: b"short")
    with pytest.raises(ValueError, match="random_bytes"):
        codec.encode(_kcp_datagram())


def test_plain_codec_passes_through() -> None:
    codec = PacketCodec()
    dg = _kcp_datagram()
    assert codec.encode(dg) == [dg]
    assert codec.decode(dg) == (dg, [])
    assert codec.overhead == 0


# --- round trips and recovery ----------------------------------------------------


@pytest.mark.parametrize("cipher", [None, "aes", "salsa20", "xor", "none", "tea", "aes-gcm"])
@pytest.mark.parametrize(("d", "p"), [(0, 0), (1, 1), (3, 2), (10, 3)])
def test_round_trip(cipher: Optional[str], d: int, p: int) -> None:
    tx, rx = _codec(cipher, d, p, 1), _codec(cipher, d, p, 2)
    sent = [_kcp_datagram(sn=i, payload=bytes([i]) * (i * 37 % 300)) for i in range(25)]
    got: list[bytes] = []
    for dg in sent:
        for wire in tx.encode(dg):
            reg, rec = rx.decode(wire)
            assert rec == [] or d == 1  # d = 1: parity "recovers" a copy
            if reg is not None:
                got.append(reg)
    assert got == sent


@pytest.mark.parametrize("cipher", [None, "aes"])
def test_recovery_of_lost_data_packets(cipher: Optional[str]) -> None:
    d, p = 10, 3
    tx, rx = _codec(cipher, d, p, 1), _codec(cipher, d, p, 2)
    sent = [_kcp_datagram(sn=i, payload=bytes([i]) * (50 + i)) for i in range(40)]
    wires = [w for dg in sent for w in tx.encode(dg)]
    assert len(wires) == 40 + 4 * 3
    # groups of 13 (10 data + 3 parity): 3 data lost in groups 0 and 1, a
    # parity in 2 and 3
    lost = {0, 5, 9, 13, 14, 15, 36, 51}
    regular, recovered = [], []
    for i, wire in enumerate(wires):
        if i in lost:
            continue
        reg, rec = rx.decode(wire)
        if reg is not None:
            regular.append(reg)
        recovered += rec
    assert sorted(regular + recovered) == sorted(sent)
    assert rx.fec_recovered == len(recovered) == 6
    assert rx.fec_parity_shards > 0
    counters = rx.fec_counters()
    assert counters["FECRecovered"] == 6 and counters["FECErrs"] == 0


# --- malformed input -------------------------------------------------------------


def _raises(counter: str, fn, *args) -> PacketError:  # type: ignore[no-untyped-def]
    with pytest.raises(PacketError) as info:
        fn(*args)
    assert info.value.counter == counter
    return info.value


@pytest.mark.parametrize("cipher", ["aes", "twofish", "salsa20", "xor", "none"])
def test_open_too_short_and_oversized(cipher: str) -> None:
    codec = _codec(cipher, 3, 2)
    _raises("InErrs", codec.open, bytes(19))
    _raises("InErrs", codec.open, bytes(MTU_LIMIT + 1))
    _raises("InErrs", PacketCodec().open, bytes(MTU_LIMIT + 1))


def test_open_bad_crc() -> None:
    codec = _codec("aes")
    (wire,) = codec.encode(_kcp_datagram())
    for i in (0, 17, 25, len(wire) - 1):
        bad = bytearray(wire)
        bad[i] ^= 0x40
        if i < 16:
            # the nonce block: CFB garbles the next block too, CRC catches it
            pass
        err = _raises("InCsumErrors", codec.open, bytes(bad))
        assert "CRC" in err.reason
    assert codec.open(wire) == _kcp_datagram()


def test_other_key_fails_crc() -> None:
    tx = _codec("aes")
    rx = PacketCodec(new_block_crypt("aes", derive_key("another")))
    for wire in tx.encode(_kcp_datagram()):
        _raises("InCsumErrors", rx.open, wire)
    rx2 = PacketCodec(new_block_crypt("blowfish", KEY))
    for wire in tx.encode(_kcp_datagram()):
        _raises("InCsumErrors", rx2.open, wire)


def test_gcm_errors() -> None:
    codec = _codec("aes-gcm")
    (wire,) = codec.encode(_kcp_datagram())
    _raises("InErrs", codec.open, wire[:27])
    _raises("InCsumErrors", codec.open, wire[:-1] + bytes([wire[-1] ^ 1]))


def test_decode_payload_too_short() -> None:
    codec = _codec(None, 3, 2)
    _raises("InErrs", codec.decode_payload, bytes(23))
    _raises("InErrs", codec.peek_conv, bytes(23))


def test_errors_leave_state_unchanged() -> None:
    tx, rx = _codec("aes", 3, 2, 1), _codec("aes", 3, 2, 2)
    wires = [w for i in range(3) for w in tx.encode(_kcp_datagram(sn=i))]
    rx.decode(wires[0])
    before = (rx.fec_counters(), rx.decoder.shard_sets if rx.decoder else None)
    for bad in (bytes(10), bytes(1501), wires[1][:-1] + b"\0", bytes(200)):
        with pytest.raises(PacketError):
            rx.decode(bad)
    # an FEC packet with a bad size field passes the CRC but not the decoder
    assert (rx.fec_counters(), rx.decoder.shard_sets if rx.decoder else None) == before
    # the group still recovers the lost second packet afterwards
    rx.decode(wires[2])
    reg, rec = rx.decode(wires[3])
    assert reg is None and rec == [_kcp_datagram(sn=1)]


# --- classification (kcp-go kcpInput) -----------------------------------------------


def test_peek_conv() -> None:
    tx = _codec(None, 2, 1)
    dg = _kcp_datagram(conv=0xDEADBEEF)
    (data,) = tx.encode(dg)
    (_, par) = tx.encode(dg)
    rx = _codec(None, 2, 1)
    assert rx.peek_conv(data) == 0xDEADBEEF
    assert rx.peek_conv(par) is None
    assert rx.peek_conv(dg) == 0xDEADBEEF
    # an FEC data packet too short for a KCP header carries no conv
    short = struct.pack("<IHH", 0, 0xF1, 18) + bytes(16)
    assert rx.peek_conv(short) is None


def test_plain_kcp_datagram_reaches_kcp_with_fec_configured() -> None:
    rx = _codec(None, 3, 2)
    dg = _kcp_datagram()
    assert rx.decode_payload(dg) == (dg, [])


def test_fec_packet_without_fec_configured_creates_decoder() -> None:
    tx = _codec("aes", 1, 1)
    rx = _codec("aes")
    assert rx.decoder is None
    assert rx.fec_counters()["FECParityShards"] == 0
    data, parity = tx.encode(_kcp_datagram())
    assert rx.decode(data)[0] == _kcp_datagram()
    assert _decoder(rx) is not None
    rx.decode(parity)
    assert rx.fec_parity_shards == 1


def test_plain_payloads_create_no_decoder() -> None:
    rx = PacketCodec(new_block_crypt("aes", KEY))
    dg = _kcp_datagram()
    assert rx.decode_payload(dg) == (dg, [])
    with pytest.raises(PacketError):
        rx.decode_payload(bytes(5))
    assert rx.decoder is None


# --- arguments ----------------------------------------------------------------------


def test_constructor_arguments() -> None:
    with pytest.raises(TypeError, match="block"):
        PacketCodec(object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="random_bytes"):
        PacketCodec(None, random_bytes=b"x")  # type: ignore[arg-type]
    for d, p in ((-1, 1), (1, 0), (0, 1), (200, 56)):
        with pytest.raises(ValueError, match="data_shards"):
            PacketCodec(None, d, p)
    # named in both forms (compiled, an int-typed parameter raised mypyc's own
    # "int object expected; got float", which names nothing)
    with pytest.raises(TypeError, match="data_shards"):
        PacketCodec(None, 1.5, 1)
    with pytest.raises(TypeError, match="parity_shards"):
        PacketCodec(None, 3, "1")


def test_type_errors() -> None:
    codec = _codec("aes")
    with pytest.raises(TypeError, match="packet"):
        codec.open("text")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="payload"):
        codec.decode_payload(123)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="datagram"):
        codec.encode("text")  # type: ignore[arg-type]


def test_bytes_like_inputs() -> None:
    codec = _codec("aes", 3, 2)
    dg = _kcp_datagram()
    (wire,) = codec.encode(bytearray(dg))
    assert codec.decode(memoryview(wire))[0] == dg
    assert "PacketCodec(block=" in repr(codec)


def test_default_nonces_are_distinct_across_urandom_batches() -> None:
    codec = PacketCodec(new_block_crypt("none", b""), 10, 3)  # default os.urandom
    nonces = []
    for i in range(600):  # 780 packets: crosses several 4 KiB urandom batches
        for wire in codec.encode(_kcp_datagram(sn=i)):
            assert wire[16:20] == zlib.crc32(wire[20:]).to_bytes(4, "little")
            nonces.append(wire[:16])
    assert len(nonces) == 780
    assert len(set(nonces)) == 780


# --- the batch paths: encode_many, open_many (same bytes as one by one) -------

_CFB_CIPHERS = ["aes", "aes-128", "blowfish", "cast5", "3des", "tea", "salsa20", "xor", "none"]


@pytest.mark.parametrize("cipher", [*_CFB_CIPHERS, "aes-gcm", None])
@pytest.mark.parametrize(("d", "p"), [(0, 0), (10, 3), (3, 2)])
def test_encode_many_equals_encode_one_by_one(cipher: Optional[str], d: int, p: int) -> None:
    if cipher is None and d == 0:
        pytest.skip("plain mode has no codec")
    rng = random.Random(7)
    dgs = [
        _kcp_datagram(sn=i, payload=bytes(rng.getrandbits(8) for _ in range(n)))
        for i, n in enumerate([0, 1, 1200, 5, 1300, 7, 16, 900, 33, 1000, 2, 64, 77, 1348])
    ]
    one = _codec(cipher, d, p, seed=3)
    many = _codec(cipher, d, p, seed=3)
    expected = [w for dg in dgs for w in one.encode(dg, 1000)]
    assert many.encode_many(dgs[:5], 1000) + many.encode_many(dgs[5:], 1000) == expected
    # and the receiver gets every datagram back
    rx = _codec(cipher, d, p)
    got = [rx.decode(w)[0] for w in expected]
    assert [g for g in got if g is not None] == dgs


def test_encode_many_default_nonces() -> None:
    codec = PacketCodec(new_block_crypt("aes", KEY), 10, 3)
    dgs = [_kcp_datagram(sn=i) for i in range(600)]  # > one 4 KiB urandom batch of nonces
    wire = codec.encode_many(dgs)
    assert len(wire) == 600 + 60 * 3
    assert len({w[:16] for w in wire}) == len(wire)
    rx = PacketCodec(new_block_crypt("aes", KEY), 10, 3)
    assert [rx.decode(w)[0] for w in wire if rx.peek_conv(rx.open(w)) is not None] == dgs


@pytest.mark.parametrize("cipher", [*_CFB_CIPHERS, "aes-gcm"])
def test_open_many_equals_open(cipher: str) -> None:
    codec = _codec(cipher, 10, 3)
    wire = codec.encode_many(
        [_kcp_datagram(sn=i, payload=b"y" * (i * 97 % 1300)) for i in range(12)]
    )
    bad = bytearray(wire[3])
    bad[30] ^= 1
    packets = [*wire, bytes(bad), bytes(19), bytes(MTU_LIMIT + 1), wire[0][:20], b""]
    got = codec.open_many(packets)
    assert len(got) == len(packets)
    for packet, result in zip(packets, got):
        expected: object
        try:
            expected = codec.open(packet)
        except PacketError as exc:
            expected = exc.counter
        assert (result.counter if isinstance(result, PacketError) else result) == expected
    assert codec.open_many([]) == []
    assert [type(r) for r in codec.open_many([bytearray(wire[0])])] == [bytes]


def test_open_many_large_batch_in_chunks() -> None:
    codec = _codec("aes", 10, 3)
    wire = codec.encode_many([_kcp_datagram(sn=i, payload=b"z" * (i % 1300)) for i in range(300)])
    wire[77] = wire[77][:30] + bytes([wire[77][30] ^ 1]) + wire[77][31:]
    got = codec.open_many(wire)
    assert isinstance(got[77], PacketError) and got[77].counter == "InCsumErrors"
    assert [g for i, g in enumerate(got) if i != 77] == [
        codec.open(w) for i, w in enumerate(wire) if i != 77
    ]


# --- decode_framed: the FEC stage without the copy of the KCP datagram -------


@pytest.mark.parametrize(("d", "p"), [(3, 2), (10, 3), (1, 1)])
def test_decode_framed_is_decode_payload_without_the_copy(d: int, p: int) -> None:
    """Two receivers in step over a lossy stream: one decode_payload, one decode_framed."""
    rng = random.Random(d * 10 + p)
    tx = _codec(None, d, p)
    rx1, rx2 = _codec(None, d, p), _codec(None, d, p)
    seen = {"data": 0, "parity": 0, "recovered": 0}
    for sn in range(300):
        for payload in tx.encode(_kcp_datagram(sn=sn, payload=rng.randbytes(rng.randrange(0, 90)))):
            if rng.random() < 0.15:
                continue  # lost
            regular, recovered = rx1.decode_payload(payload)
            framed, skip, recovered2 = rx2.decode_framed(payload)
            assert recovered2 == recovered
            if regular is None:
                assert (framed, skip) == (None, 0)
                seen["parity"] += 1
            else:
                # an FEC data packet comes back whole, its KCP datagram behind the header
                assert framed is payload and skip == 8
                assert framed[skip:] == regular
                seen["data"] += 1
            seen["recovered"] += len(recovered)
    assert rx1.fec_counters() == rx2.fec_counters()
    assert min(seen.values()) > 0


def test_decode_framed_of_plain_datagrams_and_a_first_fec_packet() -> None:
    # a plain KCP datagram with FEC configured: as it is, nothing to skip
    rx = _codec(None, 3, 2)
    dg = _kcp_datagram()
    assert rx.decode_framed(dg) == (dg, 0, [])
    # an FEC packet without FEC configured: the decoder made for it (kcp-go's
    # default) answers this one packet with the datagram alone (skip 0)
    tx = _codec(None, 1, 1)
    rx = _codec(None)
    data, parity = tx.encode(dg)
    assert rx.decode_framed(data) == (dg, 0, [])
    assert rx.decoder is not None
    assert rx.decode_framed(parity)[:2] == (None, 0)
    data2, _ = tx.encode(dg)
    assert rx.decode_framed(data2) == (data2, 8, [])
    with pytest.raises(PacketError):
        rx.decode_framed(bytes(23))
    with pytest.raises(TypeError):
        rx.decode_framed(123)  # type: ignore[arg-type]
