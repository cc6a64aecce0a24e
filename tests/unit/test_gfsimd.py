"""The C helper kcpsock._gfsimd against the translate paths of kcpsock.gf256 (same bytes).

Every kernel the CPU can run (AVX2, SSSE3, the portable scalar one) is
pinned in turn and compared with ``bytearray.translate`` and
:meth:`ReedSolomon.encode_translate`: random shard counts up to 255 in
all, lengths around the 16- and 32-byte vector widths, every coefficient,
unaligned buffers.  Bad arguments raise TypeError/ValueError naming the
argument and write nothing.  The FEC encoder and decoder take the C path
when the helper is there and the Python paths when ``kcpsock._accel.native``
returns None (KCPSOCK_PURE, no build), with the same bytes.

Without the extension (``KCPSOCK_PURE=1``, Python 3.9's pure run) only the
fallback tests run, unless ``KCPSOCK_REQUIRE_COMPILED=1`` asks for it.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from types import ModuleType
from typing import Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kcpsock import _accel, _fastcrypt
from kcpsock.fec import FECDecoder, FECEncoder
from kcpsock.gf256 import MUL_TABLES, ReedSolomon, native_encode

GF: Optional[ModuleType] = _accel.native("_gfsimd")
needs_gf = pytest.mark.skipif(GF is None, reason="kcpsock._gfsimd is not built (or KCPSOCK_PURE)")
LENGTHS = [0, 1, 2, 15, 16, 17, 31, 32, 33, 47, 48, 63, 64, 65, 100, 1371, 1372, 1400]


def _gf() -> ModuleType:
    assert GF is not None
    return GF


def _backends() -> list[str]:
    return list(GF.backends()) if GF is not None else ["none"]


@pytest.fixture(params=_backends())
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """Each kernel this CPU runs, pinned for one test."""
    name = str(request.param)
    if GF is None:
        pytest.skip("kcpsock._gfsimd is not built (or KCPSOCK_PURE)")
    old = GF._set_backend(name)
    try:
        yield name
    finally:
        GF._set_backend(old)


def _mul_acc_ref(dst: bytearray, src: bytes, coef: int) -> None:
    image = bytearray(src).translate(MUL_TABLES[coef])
    for i, v in enumerate(image):
        dst[i] ^= v


def test_required_when_compiled() -> None:
    """`make test` (KCPSOCK_REQUIRE_COMPILED=1) runs with the helper built, as it does mypyc's."""
    if _accel.pure_requested() or os.environ.get("KCPSOCK_REQUIRE_COMPILED", "") in ("", "0"):
        pytest.skip("the helper is optional here")
    assert GF is not None, "kcpsock._gfsimd did not build: run `make compiled`"
    assert native_encode() is not None


@needs_gf
def test_backends_and_selection() -> None:
    gf = _gf()
    names = gf.backends()
    assert names[-1] == "scalar" and gf.backend() == names[0]
    with pytest.raises(ValueError, match="name"):
        gf._set_backend("mmx")
    with pytest.raises(TypeError, match="name"):
        gf._set_backend(3)


@needs_gf
@pytest.mark.parametrize("length", LENGTHS)
def test_mul_acc_every_coefficient(backend: str, length: int) -> None:
    gf = _gf()
    rng = random.Random(length)
    src = rng.randbytes(length)
    start = rng.randbytes(length + 7)
    for coef in range(256):
        dst = bytearray(start)
        gf.mul_acc(dst, src, coef)
        want = bytearray(start)
        _mul_acc_ref(want, src, coef)
        assert dst == want, (backend, length, coef)


@needs_gf
@settings(max_examples=150, deadline=None)
@given(
    length=st.sampled_from(LENGTHS) | st.integers(0, 600),
    coef=st.integers(0, 255),
    src_off=st.integers(0, 31),
    dst_off=st.integers(0, 31),
    seed=st.integers(0, 2**32),
)
def test_mul_acc_unaligned_never_writes_outside(
    length: int, coef: int, src_off: int, dst_off: int, seed: int
) -> None:
    gf = _gf()
    rng = random.Random(seed)
    for name in gf.backends():
        old = gf._set_backend(name)
        try:
            src_buf = rng.randbytes(src_off + length + 40)
            src = memoryview(src_buf)[src_off : src_off + length]
            big = bytearray(rng.randbytes(dst_off + length + 40))
            before = bytes(big)
            # dst is a window of big: the bytes around it must stay as they were
            gf.mul_acc(memoryview(big)[dst_off : dst_off + length], src, coef)
            want = bytearray(before)
            window = want[dst_off : dst_off + length]
            _mul_acc_ref(window, bytes(src), coef)
            want[dst_off : dst_off + length] = window
            assert big == want, (name, length, coef, src_off, dst_off)
        finally:
            gf._set_backend(old)


@needs_gf
@pytest.mark.parametrize("shift", [-17, -1, 0, 1, 16, 33])
def test_mul_acc_overlapping_buffers(backend: str, shift: int) -> None:
    """src may be dst or overlap it: the result is as if src were read first."""
    gf = _gf()
    rng = random.Random(shift)
    buf = bytearray(rng.randbytes(300))
    a, b = 50, 50 + shift
    src = bytes(buf[b : b + 200])
    want = bytearray(buf)
    window = want[a : a + 200]
    _mul_acc_ref(window, src, 0x53)
    want[a : a + 200] = window
    view = memoryview(buf)
    gf.mul_acc(view[a : a + 200], view[b : b + 200], 0x53)
    assert buf == want


def _coefs_ref(shards: list[bytes], coefs: bytes, length: int) -> list[bytes]:
    """The outputs by translate tables and int XOR (ReedSolomon.accumulate's way)."""
    d = len(shards)
    p = len(coefs) // d
    out = []
    for j in range(p):
        acc = 0
        for i, shard in enumerate(shards):
            acc ^= int.from_bytes(
                bytearray(shard).translate(MUL_TABLES[coefs[j * d + i]]), "little"
            )
        out.append(acc.to_bytes(length, "little"))
    return out


@needs_gf
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_encode_equals_reed_solomon_translate(data: st.DataObject) -> None:
    gf = _gf()
    total = data.draw(st.sampled_from([2, 3, 4, 13, 17, 40, 100, 255]), label="total")
    d = data.draw(st.integers(1, total - 1), label="d")
    p = total - d
    rs = ReedSolomon(d, p)
    lengths = st.sampled_from(LENGTHS[:12]) | st.integers(0, 80)
    shards = [os.urandom(data.draw(lengths)) for _ in range(d)]
    length = max(len(s) for s in shards) + data.draw(st.integers(0, 5), label="pad")
    want = rs.encode_translate([s + bytes(length - len(s)) for s in shards])
    for name in gf.backends():
        old = gf._set_backend(name)
        try:
            assert gf.encode(shards, rs.parity_coefs, length) == want, name
            assert gf.encode(tuple(shards), rs.parity_coefs, length, 0, False) == want, name
        finally:
            gf._set_backend(old)


@needs_gf
@settings(max_examples=100, deadline=None)
@given(
    d=st.integers(1, 40),
    p=st.integers(1, 12),
    skip=st.integers(0, 9),
    seed=st.integers(0, 2**32),
)
def test_encode_skip_sized_and_any_coefficients(d: int, p: int, skip: int, seed: int) -> None:
    gf = _gf()
    rng = random.Random(seed)
    coefs = bytes(rng.choice([0, 1, rng.randrange(256)]) for _ in range(p * d))
    bodies = [rng.randbytes(rng.choice(LENGTHS[:14])) for _ in range(d)]
    heads = [rng.randbytes(skip) for _ in range(d)]
    # unaligned buffers: windows at odd offsets of larger ones
    bufs = [
        memoryview(b"?" * (i % 5) + h + b)[i % 5 :] for i, (h, b) in enumerate(zip(heads, bodies))
    ]
    length = max(len(b) for b in bodies) + rng.randrange(3)
    sized = [(len(b) + 2).to_bytes(2, "little") + b for b in bodies]
    for name in gf.backends():
        old = gf._set_backend(name)
        try:
            assert gf.encode(bufs, coefs, length, skip) == _coefs_ref(bodies, coefs, length)
            assert gf.encode(bodies, coefs, length + 2, 0, True) == _coefs_ref(
                sized, coefs, length + 2
            )
        finally:
            gf._set_backend(old)


@needs_gf
def test_bad_arguments_name_the_argument_and_write_nothing() -> None:
    gf = _gf()
    dst = bytearray(4)
    cases: list[tuple[object, type[Exception], str]] = [
        (lambda: gf.mul_acc(b"abcd", b"ab", 3), TypeError, "dst"),
        (lambda: gf.mul_acc(dst, "ab", 3), TypeError, "src"),
        (lambda: gf.mul_acc(dst, b"abcde", 3), ValueError, "dst"),
        (lambda: gf.mul_acc(dst, b"ab", 256), ValueError, "coef"),
        (lambda: gf.mul_acc(dst, b"ab", -1), ValueError, "coef"),
        (lambda: gf.mul_acc(dst, b"ab", 2**70), ValueError, "coef"),
        (lambda: gf.mul_acc(dst, b"ab", 1.0), TypeError, "coef"),
        (lambda: gf.mul_acc(dst, b"ab", True), TypeError, "coef"),
        (lambda: gf.mul_acc(dst, b"ab"), TypeError, "mul_acc"),
        (lambda: gf.encode(b"ab", b"\x01", 4), TypeError, "shards"),
        (lambda: gf.encode(5, b"\x01", 4), TypeError, "shards"),
        (lambda: gf.encode([], b"\x01", 4), ValueError, "shards"),
        (lambda: gf.encode([b"a", 7], b"\x01\x01", 4), TypeError, r"shards\[1\]"),
        (lambda: gf.encode([b"a", b"b"], b"\x01", 4), ValueError, "coefs"),
        (lambda: gf.encode([b"a", b"b"], b"", 4), ValueError, "coefs"),
        (lambda: gf.encode([b"a"], "x", 4), TypeError, "coefs"),
        (lambda: gf.encode([b"a"], b"\x01", -1), ValueError, "length"),
        (lambda: gf.encode([b"a"], b"\x01", "4"), TypeError, "length"),
        (lambda: gf.encode([b"abcde"], b"\x01", 4), ValueError, r"shards\[0\].*length"),
        (lambda: gf.encode([b"abc"], b"\x01", 4, 0, True), ValueError, r"shards\[0\].*length"),
        (lambda: gf.encode([b"a"], b"\x01", 4, 2), ValueError, r"shards\[0\].*skip"),
        (lambda: gf.encode([b"a"], b"\x01", 4, -2), ValueError, "skip"),
        (lambda: gf.encode([b"a"], b"\x01", 4, 0, 1), TypeError, "sized"),
        (lambda: gf.encode([b"a" * 65534], b"\x01", 70000, 0, True), ValueError, "size"),
        (lambda: gf.encode([b"a"], b"\x01", 4, 0, False, 9), TypeError, "encode"),
    ]
    for call, exc, match in cases:
        with pytest.raises(exc, match=match):
            call()  # type: ignore[operator]
    assert dst == bytearray(4)


@needs_gf
def test_encoder_and_decoder_take_the_c_path() -> None:
    enc, dec = FECEncoder(10, 3), FECDecoder(10, 3)
    assert enc._native is not None and enc._cacc is None and dec._native is not None
    assert FECEncoder(10, 3, accelerate=False)._native is None
    assert FECDecoder(10, 3, accelerate=False)._native is None


def test_fallback_when_native_returns_none(monkeypatch: pytest.MonkeyPatch) -> None:
    """native() -> None (KCPSOCK_PURE, no build, a stale build): the Python paths, same bytes."""
    rng = random.Random(5)
    dgs = [rng.randbytes(rng.choice([0, 1, 17, 33, 500, 1372])) for _ in range(10 * 13)]
    before = [FECEncoder(10, 3), FECDecoder(10, 3)]
    monkeypatch.setattr(_accel, "native", lambda name: None)
    assert native_encode() is None
    enc, dec = FECEncoder(10, 3), FECDecoder(10, 3)
    assert enc._native is None and dec._native is None
    xor = _fastcrypt.xor_function()
    assert (enc._cacc is not None) == (xor is not None)
    ref = FECEncoder(10, 3, accelerate=False)
    fast = before[0]
    assert isinstance(fast, FECEncoder)
    want = [pkt for dg in dgs for pkt in ref.encode(dg)]
    assert [pkt for dg in dgs for pkt in enc.encode(dg)] == want
    assert [pkt for dg in dgs for pkt in fast.encode(dg)] == want
    # recovery: 3 data packets of each group lost
    decs = [dec, before[1], FECDecoder(10, 3, accelerate=False)]
    got: list[list[bytes]] = [[], [], []]
    for g in range(0, len(want), 13):
        for i, pkt in enumerate(want[g : g + 13]):
            if i in (0, 4, 9):
                continue
            for k, dk in enumerate(decs):
                assert isinstance(dk, FECDecoder)
                got[k].extend(dk.decode(pkt))
    assert got[0] == got[1] == got[2]
    assert len(got[0]) == len(dgs) and set(got[0]) == set(dgs)
    assert [dk.recovered for dk in decs if isinstance(dk, FECDecoder)] == [39] * 3  # 13 groups
