"""kcpsock.snappy: golang/snappy's framing format, cramjam path and pure fallback.

Vectors captured from kcptun 20210922 (the team's wire capture, copied here;
the rules they exercise: docs/KCPTUN.md §2, §5 and §6):

* kcptun-client's first bytes with compression (smux v1): the stream
  identifier, then an uncompressed chunk (masked CRC32C 0x2fac3944) carrying
  SYN for stream 3;
* kcptun-server (v2) answering a 5-byte PSH: an uncompressed chunk carrying
  UPD(sid 3, consumed 5, window 2097152).
"""

from __future__ import annotations

import random

import pytest

from kcpsock import snappy
from kcpsock.snappy import FrameDecoder, FrameEncoder, SnappyError, decode_block

CLIENT_FIRST = bytes.fromhex("ff060000734e61507059010c00004439ac2f0100000003000000")
CLIENT_FIRST_DATA = bytes.fromhex("0100000003000000")
SERVER_UPD = bytes.fromhex("ff060000734e6150705901140000ea99344802040800030000000500000000002000")
SERVER_UPD_DATA = bytes.fromhex("02040800030000000500000000002000")

PATHS = [pytest.param(False, id="pure")]
if snappy.HAVE_CRAMJAM:
    PATHS.append(pytest.param(True, id="cramjam"))


def test_crc32c_check_value_and_mask() -> None:
    assert snappy.crc32c(b"123456789") == 0xE3069283
    assert snappy.crc32c(b"") == 0
    # continuing a CRC equals one pass
    assert snappy.crc32c(b"6789", snappy.crc32c(b"12345")) == 0xE3069283
    assert snappy.masked_crc32c(CLIENT_FIRST_DATA) == 0x2FAC3944


def test_crc32c_all_lengths_match_bytewise() -> None:
    data = random.Random(1).randbytes(40)
    table = snappy._T[0]
    for n in range(len(data)):
        crc = 0xFFFFFFFF
        for b in data[:n]:
            crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
        assert snappy.crc32c(data[:n]) == crc ^ 0xFFFFFFFF


@pytest.mark.parametrize("fast", PATHS)
def test_kcptun_vectors_decode(fast: bool) -> None:
    for stream, data in ((CLIENT_FIRST, CLIENT_FIRST_DATA), (SERVER_UPD, SERVER_UPD_DATA)):
        dec = FrameDecoder(use_cramjam=fast)
        got = b"".join(dec.feed(stream[i : i + 3]) for i in range(0, len(stream), 3))
        assert got == data
        assert dec.buffered == 0


def test_uncompressed_writer_matches_kcptun_bytes() -> None:
    enc = FrameEncoder(compress=False)
    assert enc.encode(CLIENT_FIRST_DATA) == CLIENT_FIRST
    # the identifier is written once per direction
    assert enc.encode(SERVER_UPD_DATA) == SERVER_UPD[10:]


@pytest.mark.parametrize("compress", [False, True] if snappy.HAVE_CRAMJAM else [False])
@pytest.mark.parametrize("fast", PATHS)
def test_round_trip_large_mixed(compress: bool, fast: bool) -> None:
    rng = random.Random(7)
    data = rng.randbytes(70000) + b"abcd" * 40000 + rng.randbytes(10)
    wire = FrameEncoder(compress=compress).encode(data)
    if compress:
        assert len(wire) < len(data)
    dec = FrameDecoder(use_cramjam=fast)
    out = bytearray()
    pos = 0
    while pos < len(wire):
        step = rng.randint(1, 30000)
        out += dec.feed(wire[pos : pos + step])
        pos += step
    assert out == data


@pytest.mark.skipif(not snappy.HAVE_CRAMJAM, reason="cramjam not installed")
def test_pure_block_decoder_reads_cramjam_blocks() -> None:
    import cramjam

    rng = random.Random(3)
    for data in (
        b"",
        b"a",
        b"a" * 1000,
        b"abcabcabcabcabcabcabx" * 50,
        rng.randbytes(5000),
        bytes(range(256)) * 200,
    ):
        block = bytes(cramjam.snappy.compress_raw(data))
        assert decode_block(block) == data


def test_block_decoder_overlapping_copies_and_errors() -> None:
    # literal "ab" then copy-2 (length 6, offset 2) -> "abababab"
    block = bytes([8, (2 - 1) << 2]) + b"ab" + bytes([((6 - 1) << 2) | 2, 2, 0])
    assert decode_block(block) == b"abababab"
    # copy-1: length 4, offset 1 after literal "x"
    block = bytes([5, 0]) + b"x" + bytes([(0 << 2) | 1, 1])
    assert decode_block(block) == b"xxxxx"
    with pytest.raises(SnappyError, match="offset"):
        decode_block(bytes([4, ((4 - 1) << 2) | 2, 9, 0]))  # copy before the start
    with pytest.raises(SnappyError):
        decode_block(bytes([10, 0]) + b"a")  # says 10, gives 1
    with pytest.raises(SnappyError, match="above"):
        decode_block(bytes([0x80, 0x80, 0x05]))  # 81920 > 65536


def _chunk(kind: int, body: bytes) -> bytes:
    return bytes([kind]) + len(body).to_bytes(3, "little") + body


@pytest.mark.parametrize("fast", PATHS)
@pytest.mark.parametrize(
    ("stream", "match"),
    [
        (_chunk(1, b"\0\0\0\0abc"), "before the stream identifier"),
        (snappy.STREAM_IDENTIFIER + _chunk(1, b"\0\0\0\0abc"), "checksum|crc|corrupt"),
        (snappy.STREAM_IDENTIFIER + _chunk(2, b"x"), "unsupported chunk type"),
        (snappy.STREAM_IDENTIFIER + b"\x01\xff\xff\x01", "chunk of"),
        (snappy.STREAM_IDENTIFIER + _chunk(0, b"\1\2"), "shorter than its checksum"),
        (_chunk(0xFF, b"sNaPpX"), "bad stream identifier"),
        (
            snappy.STREAM_IDENTIFIER + _chunk(1, b"\0\0\0\0" + bytes(65537)),
            "uncompressed chunk",
        ),
    ],
)
def test_corrupt_streams_raise_and_stay_failed(fast: bool, stream: bytes, match: str) -> None:
    dec = FrameDecoder(use_cramjam=fast)
    with pytest.raises(SnappyError, match=match):
        dec.feed(stream)
    with pytest.raises(SnappyError):
        dec.feed(CLIENT_FIRST)  # stays failed, as golang/snappy's Reader


@pytest.mark.parametrize("fast", PATHS)
def test_padding_skippable_and_repeated_identifier(fast: bool) -> None:
    stream = (
        CLIENT_FIRST
        + _chunk(0xFE, b"\0" * 5)
        + _chunk(0x80, b"skip me")
        + snappy.STREAM_IDENTIFIER
        + SERVER_UPD[10:]
    )
    assert FrameDecoder(use_cramjam=fast).feed(stream) == CLIENT_FIRST_DATA + SERVER_UPD_DATA


def test_snappy_error_is_a_packet_error() -> None:
    from kcpsock.errors import PacketError

    err = SnappyError("checksum mismatch")
    assert isinstance(err, PacketError)
    assert "snappy stream corrupt: checksum mismatch" in str(err)


def test_compress_without_cramjam_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(snappy, "HAVE_CRAMJAM", False)
    with pytest.raises(ValueError, match=r"kcpsock\[kcptun\]"):
        FrameEncoder(compress=True)
    with pytest.raises(ValueError, match=r"kcpsock\[kcptun\]"):
        FrameDecoder(use_cramjam=True)
