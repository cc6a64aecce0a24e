"""GF(2^8) and the klauspost Reed-Solomon code (kcpsock.gf256)."""

from __future__ import annotations

import itertools
import random

import pytest
import reedsolo

from kcpsock import gf256
from kcpsock.gf256 import (
    EXP,
    LOG,
    MUL_TABLES,
    ReedSolomon,
    build_matrix,
    gf_div,
    gf_exp,
    gf_inv,
    gf_mul,
    invert_matrix,
    matrix_multiply,
    vandermonde,
)


def slow_mul(a: int, b: int) -> int:
    """Carry-less multiplication reduced by 0x11D, bit by bit."""
    r = 0
    while b:
        if b & 1:
            r ^= a
        b >>= 1
        a <<= 1
        if a & 0x100:
            a ^= 0x11D
    return r


def test_exp_table_start_matches_spec() -> None:
    want = "01 02 04 08 10 20 40 80 1d 3a 74 e8 cd 87 13 26 4c 98 2d 5a b4 75 ea c9 8f 03 06 0c"
    assert bytes(EXP[:28]).hex(" ") == want
    assert EXP[255] == 1
    assert sorted(EXP[:255]) == list(range(1, 256))


def test_tables_agree_with_reedsolo() -> None:
    # reedsolo builds its own tables for the same field (prim 0x11d, generator 2).
    reedsolo.init_tables(prim=0x11D, generator=2, c_exp=8)
    assert list(EXP[:255]) == list(reedsolo.gf_exp[:255])
    assert [LOG[a] for a in range(1, 256)] == [reedsolo.gf_log[a] for a in range(1, 256)]
    rng = random.Random(1)
    for _ in range(500):
        a, b = rng.randrange(256), rng.randrange(256)
        assert gf_mul(a, b) == reedsolo.gf_mul(a, b)


def test_mul_exhaustive_against_bitwise() -> None:
    for a in range(256):
        table = MUL_TABLES[a]
        for b in range(256):
            want = slow_mul(a, b)
            assert gf_mul(a, b) == want
            assert table[b] == want


def test_inverse_and_division() -> None:
    assert [gf_inv(a) for a in range(1, 6)] == [0x01, 0x8E, 0xF4, 0x47, 0xA7]
    for a in range(1, 256):
        assert gf_mul(a, gf_inv(a)) == 1
        for b in (1, 2, 0x53, 0xFF):
            assert gf_mul(gf_div(a, b), b) == a
    with pytest.raises(ZeroDivisionError):
        gf_inv(0)
    with pytest.raises(ZeroDivisionError):
        gf_div(3, 0)
    assert gf_div(0, 7) == 0


def test_gf_exp_conventions() -> None:
    assert gf_exp(0, 0) == 1
    assert gf_exp(0, 5) == 0
    assert gf_exp(2, 8) == 0x1D
    for a in (3, 7, 200):
        acc = 1
        for e in range(20):
            assert gf_exp(a, e) == acc
            acc = gf_mul(acc, a)


def test_spec_worked_example_3_2() -> None:
    assert vandermonde(5, 3) == [[1, 0, 0], [1, 1, 1], [1, 2, 4], [1, 3, 5], [1, 4, 16]]
    assert invert_matrix(vandermonde(3, 3)) == [[1, 0, 0], [143, 245, 122], [142, 244, 122]]
    rs = ReedSolomon(3, 2)
    assert rs.parity_rows == ((1, 1, 1), (15, 8, 6))
    data = [bytes.fromhex("01020304"), bytes.fromhex("10203040"), bytes.fromhex("aabbccdd")]
    assert [p.hex() for p in rs.encode(data)] == ["bb99ff99", "54be1ef2"]


def test_spec_parity_rows_10_3() -> None:
    assert ReedSolomon(10, 3).parity_rows == (
        (129, 150, 175, 184, 210, 196, 254, 232, 3, 2),
        (150, 129, 184, 175, 196, 210, 232, 254, 2, 3),
        (191, 214, 98, 10, 6, 111, 223, 183, 5, 4),
    )


@pytest.mark.parametrize(("d", "p"), [(1, 1), (3, 2), (10, 3), (20, 5), (7, 9)])
def test_matrix_is_systematic(d: int, p: int) -> None:
    m = build_matrix(d, d + p)
    assert len(m) == d + p
    assert m[:d] == [[1 if i == j else 0 for j in range(d)] for i in range(d)]


def test_invert_matrix_roundtrip_and_singular() -> None:
    rng = random.Random(2)
    for size in (1, 2, 5, 9):
        for _ in range(5):
            m = [[rng.randrange(256) for _ in range(size)] for _ in range(size)]
            try:
                inv = invert_matrix(m)
            except ValueError:
                continue
            ident = [[1 if i == j else 0 for j in range(size)] for i in range(size)]
            assert matrix_multiply(m, inv) == ident
            assert matrix_multiply(inv, m) == ident
    with pytest.raises(ValueError, match="singular"):
        invert_matrix([[1, 2], [1, 2]])
    with pytest.raises(ValueError, match="square"):
        invert_matrix([[1, 2, 3], [4, 5, 6]])
    with pytest.raises(ValueError, match="inner dimensions differ"):
        matrix_multiply([[1, 2]], [[1, 2]])


def reference_parity(rs: ReedSolomon, data: list[bytes]) -> list[bytes]:
    """Byte-by-byte definition (docs/FEC.md §5, step 4), zero padding made explicit."""
    length = max(len(s) for s in data)
    padded = [s + bytes(length - len(s)) for s in data]
    out = []
    for row in rs.parity_rows:
        shard = bytearray(length)
        for k in range(length):
            v = 0
            for coef, s in zip(row, padded):
                v ^= gf_mul(coef, s[k])
            shard[k] = v
        out.append(bytes(shard))
    return out


@pytest.mark.parametrize(("d", "p"), [(1, 1), (2, 1), (3, 2), (10, 3), (4, 4)])
def test_encode_matches_definition(d: int, p: int) -> None:
    rng = random.Random(d * 100 + p)
    rs = ReedSolomon(d, p)
    for _ in range(5):
        data = [rng.randbytes(rng.randrange(1, 60)) for _ in range(d)]
        assert rs.encode(data) == reference_parity(rs, data)


def test_accumulate_finish_equals_encode() -> None:
    rng = random.Random(3)
    rs = ReedSolomon(5, 3)
    data = [rng.randbytes(rng.randrange(1, 100)) for _ in range(5)]
    acc = [0] * 3
    for i, s in enumerate(data):
        rs.accumulate(acc, i, bytearray(s) if i % 2 else s)
    assert rs.finish(acc, max(map(len, data))) == rs.encode(data)


def test_encode_rejects_wrong_shard_count() -> None:
    with pytest.raises(ValueError, match="3 shards"):
        ReedSolomon(3, 1).encode([b"a", b"b"])


def test_reconstruct_every_erasure_pattern_4_3() -> None:
    rng = random.Random(4)
    d, p = 4, 3
    rs = ReedSolomon(d, p)
    data = [rng.randbytes(rng.randrange(2, 40)) for _ in range(d)]
    length = max(map(len, data))
    full = [s + bytes(length - len(s)) for s in data] + rs.encode(data)
    for lost in range(1, p + 1):
        for gone in itertools.combinations(range(d + p), lost):
            shards: list[bytes | None] = [None if i in gone else full[i] for i in range(d + p)]
            got = rs.reconstruct_data(shards)
            assert got == {i: full[i] for i in gone if i < d}


def test_reconstruct_pads_and_respects_length() -> None:
    rs = ReedSolomon(2, 1)
    parity = rs.encode([b"\x01\x02\x03", b"\x09"])
    got = rs.reconstruct_data([None, b"\x09", parity[0]], length=5)
    assert got == {0: b"\x01\x02\x03\x00\x00"}
    with pytest.raises(ValueError, match="shorter"):
        rs.reconstruct_data([None, b"\x09", parity[0]], length=2)
    with pytest.raises(ValueError, match="too few"):
        rs.reconstruct_data([None, None, parity[0]])
    with pytest.raises(ValueError, match="3 entries"):
        rs.reconstruct_data([None, b"x"])
    assert rs.reconstruct_data([b"a", b"b", None]) == {}


def test_decode_rows_cache_is_bounded_and_checked() -> None:
    rs = ReedSolomon(2, 6)
    rs.DECODE_CACHE_SIZE = 4
    rs._decode_cache.clear()  # shared with other (2, 6) codes built earlier
    for pattern in itertools.combinations(range(8), 2):
        rows = rs.decode_rows(pattern)
        sub = [list(rs.matrix[i]) for i in pattern]
        assert matrix_multiply([list(r) for r in rows], sub) == [[1, 0], [0, 1]]
    assert len(rs._decode_cache) <= 4
    with pytest.raises(ValueError, match="distinct"):
        rs.decode_rows((1, 1))
    with pytest.raises(ValueError, match="out of range"):
        rs.decode_rows((0, 9))


def test_codes_of_one_shape_share_what_depends_only_on_the_shape() -> None:
    first, second = ReedSolomon(7, 4), ReedSolomon(7, 4)
    other = ReedSolomon(7, 5)
    assert first.matrix is second.matrix
    assert first.column_tables is second.column_tables
    assert other.matrix is not first.matrix
    rows = first.decode_rows((0, 1, 2, 3, 4, 7, 9))
    # the second code finds the first one's inverse instead of computing its own
    assert second.decode_rows((0, 1, 2, 3, 4, 7, 9)) is rows
    assert (0, 1, 2, 3, 4, 7, 9) not in other._decode_cache
    # and the parity program compiled for one serves the other, same bytes
    data = [bytes([i + 1]) * 9 for i in range(7)]
    assert first.encode(data) == second.encode(data) == second.encode_translate(data)


@pytest.mark.parametrize(
    ("d", "p", "exc"),
    [
        (0, 1, ValueError),
        (1, 0, ValueError),
        (200, 56, ValueError),
        (1.0, 1, TypeError),
        (True, 1, TypeError),
    ],
)
def test_bad_counts(d: object, p: object, exc: type[Exception]) -> None:
    with pytest.raises(exc, match="shards"):
        ReedSolomon(d, p)


def test_largest_code_builds() -> None:
    rs = ReedSolomon(20, 235)  # n = 255, the most every kcp-go version accepts
    assert rs.total_shards == 255 and len(rs.matrix) == 255
    data = [bytes([i]) * 3 for i in range(20)]
    parity = rs.encode(data)
    shards: list[bytes | None] = [*data, *parity]
    for i in range(20):
        shards[i] = None
    assert rs.reconstruct_data(shards) == {i: data[i] for i in range(20)}
    assert gf256.POLYNOMIAL == 0x11D


@pytest.mark.parametrize(("d", "p"), [(1, 1), (3, 2), (10, 3), (20, 5), (24, 8), (5, 1)])
def test_bitsliced_program_equals_translate_path(d: int, p: int) -> None:
    rng = random.Random(d * 7 + p)
    rs = ReedSolomon(d, p)
    assert rs.bitsliced
    data = [rng.randbytes(rng.randrange(1, 80)) for _ in range(d)]
    assert rs.encode(data) == rs.encode_translate(data)
    if d <= 10:
        assert rs.encode(data) == reference_parity(rs, data)


def test_parity_ints_tolerates_junk_below_the_shards() -> None:
    """Header bytes below the shard only affect the same low bytes."""
    rng = random.Random(15)
    rs = ReedSolomon(10, 3)
    data = [rng.randbytes(rng.randrange(10, 60)) for _ in range(10)]
    length = max(map(len, data))
    with_junk = [int.from_bytes(rng.randbytes(6) + s, "little") for s in data]
    got = [(v >> 48).to_bytes(length, "little") for v in rs.parity_ints(with_junk, length + 6)]
    assert got == rs.encode_translate(data)


def test_large_codes_use_translate_path() -> None:
    rs = ReedSolomon(30, 4)
    assert not rs.bitsliced
    with pytest.raises(ValueError, match="bit-sliced"):
        rs.parity_ints([0] * 30, 10)
    rng = random.Random(16)
    data = [rng.randbytes(rng.randrange(1, 20)) for _ in range(30)]
    assert rs.encode(data) == rs.encode_translate(data)
    with pytest.raises(ValueError, match="values"):
        ReedSolomon(3, 2).parity_ints([1, 2], 4)
    with pytest.raises(ValueError, match="shards"):
        rs.encode_translate(data[:3])


def test_shared_pairs_preserve_every_sum() -> None:
    rng = random.Random(17)
    targets = [set(rng.sample(range(12), rng.randrange(0, 12))) for _ in range(30)]
    original = [set(t) for t in targets]
    pairs = gf256._share_pairs(targets, 12)
    # Expand every signal back to its set of inputs (XOR = symmetric difference).
    expand: dict[int, frozenset[int]] = {i: frozenset([i]) for i in range(12)}
    for k, (a, b) in enumerate(pairs):
        expand[12 + k] = expand[a] ^ expand[b]
    for t, want in zip(targets, original):
        acc: frozenset[int] = frozenset()
        for x in t:
            acc = acc ^ expand[x]
        assert acc == want
    naive = sum(max(len(t) - 1, 0) for t in original)
    shared = len(pairs) + sum(max(len(t) - 1, 0) for t in targets)
    assert shared < naive


def test_mask01() -> None:
    assert gf256.mask01(3) == 0x010101
    assert gf256.mask01(0) == 0


def test_poly_mul_agrees_with_the_table_field_and_other_polynomials() -> None:
    for a in range(256):
        for b in range(0, 256, 7):
            assert gf256.poly_mul(a, b, 0x11D) == gf_mul(a, b)
    # Twofish's MDS field (0x169): 0x80 * 2 = x^8 = x^6 + x^5 + x^3 + 1
    assert gf256.poly_mul(0x80, 0x02, 0x169) == 0x69
    # SM4's field (0x1F5): multiplication is commutative and 1 is neutral
    assert gf256.poly_mul(0x53, 0xCA, 0x1F5) == gf256.poly_mul(0xCA, 0x53, 0x1F5)
    assert gf256.poly_mul(0xD3, 1, 0x1F5) == 0xD3
