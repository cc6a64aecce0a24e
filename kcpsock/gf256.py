"""GF(2^8) arithmetic and the Reed-Solomon erasure code of klauspost/reedsolomon.

kcp-go protects its datagrams with ``reedsolomon.New(d, p)`` from
klauspost/reedsolomon, default options.  This module reproduces that code
byte for byte:

* the field is GF(2^8) with reduction polynomial x^8 + x^4 + x^3 + x^2 + 1
  (0x11D) and generator 2 (klauspost galois.go, "generating polynomial 29");
* the encoding matrix is klauspost's ``buildMatrix``: the n x d Vandermonde
  matrix ``V[r][c] = r**c`` multiplied by the inverse of its top d x d square,
  so the top d rows are the identity (systematic code) and rows d..n-1 give
  the parity shards;
* reconstruction (klauspost ``ReconstructData``) takes the first d present
  shards in index order, inverts the matching rows of the encoding matrix and
  rebuilds the missing data shards; parity shards are never rebuilt.

Invariants:

* Pure: no I/O, no clock, no randomness; every function is deterministic.
* Shards are byte strings.  Shards of unequal length are treated as if
  zero-padded at the end to the longest one (kcp-go pads with zeros before
  calling reedsolomon), and every output shard has that common length.
* The hot path never loops over bytes in Python: multiplying a shard by a
  constant is ``bytearray.translate`` with a precomputed 256-byte table, and
  adding shards is XOR of whole shards as little-endian integers
  (``int.from_bytes``), both at C speed.  Little-endian keeps zero padding at
  the end of a shard as high-order zero bytes, so padding costs nothing.
* For small codes (d <= 24 and p <= 8, kcptun's 10/3 included) parity is computed
  bit-sliced instead: each data shard is converted to an int once, and the
  parity is a fixed sequence of whole-shard XORs plus seven "divide every
  byte by 2" steps per parity shard (Horner's rule over the 8 bit planes of
  the coefficients times x^7).  The sequence is generated once per (d, p), with common
  subexpressions shared (greedy pairing, Paar 1997), and compiled into a
  Python function, so no per-op interpretation is left.  This converts d
  shards instead of d * p translated images per group (``int.from_bytes`` is
  the dominant cost), about 25-40 % faster; the result is identical (tests
  compare both paths).
* Without the C helper (below), encoders with pycryptodome's C ``strxor``
  at hand use neither: :class:`ParityAccumulator` adds each data shard to the p parity
  shards with p translates, one join and one C XOR call into a ctypes
  buffer, as the shard arrives.  No int conversion is left (``from_bytes``
  and ``to_bytes`` were a third of the bit-sliced cost): about 40 % fewer
  instructions per group for 10/3; the int paths stay as the reference and
  the fallback (``KCPSOCK_NO_FASTCRYPT``).
* Fastest of all, and used by kcpsock.fec whenever it is there: the C
  helper ``kcpsock._gfsimd`` (kcpsock/_gfsimd.c, a hand-written extension
  built with the mypyc modules; :func:`native_encode`).  One call computes a
  whole group's parity from the held datagrams (it adds kcp-go's 2-byte
  size fields itself) or rebuilds a group's lost shards from the received
  packets (skipping their 6-byte headers): no per-shard Python work, no
  copies.  It multiplies 32 bytes at a time with AVX2 (16 with SSSE3) by
  the split-nibble technique -- ``c * x = c * (x & 0x0F) ^ c * (x & 0xF0)``,
  two 16-entry tables per coefficient looked up by a byte shuffle
  (``pshufb``) -- chosen at import from what the CPU supports, with a
  portable table-lookup kernel for any other CPU.  (GFNI's ``gf2p8mulb``
  is not used: its field is the AES polynomial 0x11B.)  Everything above
  stays as the fallback, with the same bytes (tests compare the paths):
  ``KCPSOCK_PURE=1``, no C compiler at install, Python 3.9's pure run.
* What depends only on (d, p) -- the encoding matrix, the compiled parity
  program, the decode matrices per erasure pattern (at most 512 patterns per
  shape, 64 shapes) -- is built once per process and shared by every code of
  that shape, so creating a second code of the same shape is cheap.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Sequence
from typing import Callable, NoReturn, Optional, Union, cast

from . import _accel

__all__ = [
    "EXP",
    "LOG",
    "MUL_TABLES",
    "POLYNOMIAL",
    "BytesLike",
    "Matrix",
    "NativeEncode",
    "ParityAccumulator",
    "ReedSolomon",
    "build_matrix",
    "gf_div",
    "gf_exp",
    "gf_inv",
    "gf_mul",
    "invert_matrix",
    "mask01",
    "matrix_multiply",
    "native_encode",
    "poly_mul",
    "vandermonde",
]

#: The reduction polynomial x^8 + x^4 + x^3 + x^2 + 1 (klauspost: 29 + x^8).
POLYNOMIAL = 0x11D

#: A matrix over GF(2^8): a list of rows, each a list of ints 0..255.
Matrix = list[list[int]]

#: Byte strings accepted as shards.
BytesLike = Union[bytes, bytearray, memoryview]


def _build_tables() -> tuple[tuple[int, ...], tuple[int, ...]]:
    # exp[i] = 2**i, reduced by 0x11D; doubled to 510 entries so that
    # exp[log a + log b] needs no "mod 255" (klauspost galois.go expTable).
    exp = [0] * 510
    log = [0] * 256
    x = 1
    for i in range(255):
        exp[i] = x
        log[x] = i
        x <<= 1
        if x & 0x100:
            x ^= POLYNOMIAL
    for i in range(255, 510):
        exp[i] = exp[i - 255]
    return tuple(exp), tuple(log)


#: EXP[i] = 2**i in GF(2^8), for i in 0..509 (EXP[i + 255] == EXP[i]).
#: LOG[a] = i with 2**i == a, for a in 1..255 (LOG[0] is meaningless, 0).
EXP, LOG = _build_tables()


def gf_mul(a: int, b: int) -> int:
    """Multiply two field elements.

    Args:
        a: an element, 0..255.
        b: an element, 0..255.

    Returns:
        a * b in GF(2^8).
    """
    if a == 0 or b == 0:
        return 0
    return EXP[LOG[a] + LOG[b]]


def gf_inv(a: int) -> int:
    """Multiplicative inverse of a non-zero element.

    Args:
        a: an element, 1..255.

    Returns:
        The element b with a * b == 1.

    Raises:
        ZeroDivisionError: if ``a`` is 0.
    """
    if a == 0:
        raise ZeroDivisionError("0 has no inverse in GF(2^8)")
    return EXP[(255 - LOG[a]) % 255]


def gf_div(a: int, b: int) -> int:
    """Divide a by b (klauspost galDivide).

    Args:
        a: the dividend, 0..255.
        b: the divisor, 1..255.

    Returns:
        a / b in GF(2^8).

    Raises:
        ZeroDivisionError: if ``b`` is 0.
    """
    if b == 0:
        raise ZeroDivisionError("division by 0 in GF(2^8)")
    if a == 0:
        return 0
    return EXP[(LOG[a] - LOG[b]) % 255]


def gf_exp(a: int, n: int) -> int:
    """Raise a to the power n, as klauspost galExp does (0**0 == 1).

    Args:
        a: the base, 0..255.
        n: the exponent, >= 0.

    Returns:
        a**n in GF(2^8).
    """
    if n == 0:
        return 1
    if a == 0:
        return 0
    return EXP[(LOG[a] * n) % 255]


def poly_mul(a: int, b: int, poly: int) -> int:
    """Multiply two bytes in GF(2^8) modulo any degree-8 polynomial (shift and add).

    For the other fields kcp-go's ciphers use (SM4's S-box, 0x1F5; Twofish's
    MDS and RS codes, 0x169 and 0x14D); this module's own field has the
    faster :func:`gf_mul`.  Not for hot paths.

    Args:
        a: an element, 0..255.
        b: an element, 0..255.
        poly: the reduction polynomial with its x^8 bit, 0x100..0x1FF.

    Returns:
        a * b modulo ``poly``.
    """
    r = 0
    while b:
        if b & 1:
            r ^= a
        a <<= 1
        if a & 0x100:
            a ^= poly
        b >>= 1
    return r


#: MUL_TABLES[c] is the 256-byte translation table of "multiply by c":
#: ``shard.translate(MUL_TABLES[c])`` multiplies every byte of shard by c.
MUL_TABLES: tuple[bytes, ...] = tuple(bytes(gf_mul(c, v) for v in range(256)) for c in range(256))


#: ``kcpsock._gfsimd.encode(shards, coefs, length, skip, sized)``: the p
#: outputs ``XOR_i coefs[j * d + i] * shards[i]`` of ``length`` bytes in one C
#: call (see kcpsock/_gfsimd.pyi).
NativeEncode = Callable[[Sequence[BytesLike], BytesLike, int, int, bool], "list[bytes]"]


def native_encode() -> Optional[NativeEncode]:
    """The C helper's ``encode`` (kcpsock._gfsimd), or None to use the Python paths.

    None when the extension is not built, ``KCPSOCK_PURE`` is set, or its
    source is newer than the built file (``kcpsock._accel.native``).  Looked
    up by the encoders and decoders when they are created.
    """
    module = _accel.native("_gfsimd")
    if module is None:
        return None
    return cast(NativeEncode, module.encode)


def matrix_multiply(a: Matrix, b: Matrix) -> Matrix:
    """Multiply two matrices over GF(2^8).

    Args:
        a: an r x k matrix.
        b: a k x c matrix.

    Returns:
        The r x c product.

    Raises:
        ValueError: if the inner dimensions differ.
    """
    if not a or not b or len(a[0]) != len(b):
        raise ValueError("matrix_multiply: inner dimensions differ")
    cols = len(b[0])
    out: Matrix = []
    for row in a:
        res = [0] * cols
        for k, coef in enumerate(row):
            if coef == 0:
                continue
            brow = b[k]
            lc = LOG[coef]
            for c in range(cols):
                v = brow[c]
                if v:
                    res[c] ^= EXP[lc + LOG[v]]
        out.append(res)
    return out


def invert_matrix(m: Sequence[Sequence[int]]) -> Matrix:
    """Invert a square matrix over GF(2^8) by Gauss-Jordan elimination.

    The inverse of a non-singular matrix is unique, so the result equals
    klauspost's ``Matrix.Invert`` whatever the pivoting order.

    Args:
        m: an n x n matrix (not modified).

    Returns:
        The inverse, a new n x n matrix.

    Raises:
        ValueError: if ``m`` is not square or is singular.
    """
    size = len(m)
    if any(len(row) != size for row in m):
        raise ValueError("invert_matrix: matrix is not square")
    # Work on [m | I].
    work = [list(row) + [1 if i == j else 0 for j in range(size)] for i, row in enumerate(m)]
    width = 2 * size
    for col in range(size):
        pivot = next((r for r in range(col, size) if work[r][col]), -1)
        if pivot < 0:
            raise ValueError("invert_matrix: matrix is singular")
        if pivot != col:
            work[col], work[pivot] = work[pivot], work[col]
        prow = work[col]
        lead = prow[col]
        if lead != 1:
            scale = LOG[gf_inv(lead)]
            for c in range(width):
                v = prow[c]
                if v:
                    prow[c] = EXP[scale + LOG[v]]
        for r in range(size):
            if r == col:
                continue
            row = work[r]
            f = row[col]
            if f == 0:
                continue
            lf = LOG[f]
            for c in range(width):
                v = prow[c]
                if v:
                    row[c] ^= EXP[lf + LOG[v]]
    return [row[size:] for row in work]


def vandermonde(rows: int, cols: int) -> Matrix:
    """klauspost's Vandermonde matrix: entry [r][c] = r**c in GF(2^8).

    Args:
        rows: number of rows, 1..256 (r is taken as a byte value).
        cols: number of columns, >= 1.

    Returns:
        The rows x cols matrix.
    """
    return [[gf_exp(r & 0xFF, c) for c in range(cols)] for r in range(rows)]


def build_matrix(data_shards: int, total_shards: int) -> Matrix:
    """klauspost/reedsolomon's default encoding matrix (``buildMatrix``).

    Args:
        data_shards: d, >= 1.
        total_shards: n = d + p, d < n <= 256.

    Returns:
        The n x d matrix V x inverse(top d x d of V); its first d rows are the
        identity, row d + j generates parity shard j.
    """
    vm = vandermonde(total_shards, data_shards)
    top_inv = invert_matrix(vm[:data_shards])
    return matrix_multiply(vm, top_inv)


def _as_int(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    return value


def _check_counts(data_shards_arg: object, parity_shards_arg: object) -> tuple[int, int]:
    data_shards = _as_int("data_shards", data_shards_arg)
    parity_shards = _as_int("parity_shards", parity_shards_arg)
    if data_shards < 1:
        raise ValueError(f"data_shards must be >= 1, got {data_shards}")
    if parity_shards < 1:
        raise ValueError(f"parity_shards must be >= 1, got {parity_shards}")
    if data_shards + parity_shards > 255:
        raise ValueError(
            f"data_shards + parity_shards must be <= 255, got {data_shards + parity_shards}"
        )
    return data_shards, parity_shards


#: Codes with d and p at most these use the generated bit-sliced parity
#: program (generating it costs milliseconds, growing with d^2 * p).
BITSLICE_MAX_DATA = 24
BITSLICE_MAX_PARITY = 8

_ParityProgram = Callable[[Sequence[int], int], "list[int]"]


def _share_pairs(targets: list[set[int]], first_new: int) -> list[tuple[int, int]]:
    """Greedy common-subexpression elimination over XOR sums (Paar 1997).

    Each target is a set of signal ids whose XOR is wanted.  Repeatedly takes
    the pair of signals appearing together in the most targets (ties: the
    smallest ids, so the result is deterministic), makes it a new signal and
    substitutes it, until no pair is shared.  ``targets`` is updated in place.

    Returns:
        The new signals in creation order, as (a, b) pairs; signal
        ``first_new + i`` is ``a ^ b`` of the i-th pair.
    """
    pairs: list[tuple[int, int]] = []
    while True:
        counts: dict[tuple[int, int], int] = {}
        for t in targets:
            ids = sorted(t)
            for x in range(len(ids)):
                a = ids[x]
                for b in ids[x + 1 :]:
                    counts[(a, b)] = counts.get((a, b), 0) + 1
        if not counts:
            return pairs
        best, hits = min(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        if hits < 2:
            return pairs
        new = first_new + len(pairs)
        pairs.append(best)
        for t in targets:
            if best[0] in t and best[1] in t:
                t.discard(best[0])
                t.discard(best[1])
                t.add(new)


@functools.lru_cache(maxsize=32)
def _parity_program(parity_rows: tuple[tuple[int, ...], ...]) -> _ParityProgram:
    """Compile the bit-sliced parity computation for one encoding matrix.

    The generated function takes the d data shards as little-endian ints and
    a mask with 0x01 in every byte (at least as long as the shards) and
    returns the p parity shards as ints.

    Parity j is ``XOR_i c[j][i] * S_i``.  With ``c' = c * x^7`` and
    ``B[j][k]`` = XOR of the shards whose c' in row j has bit k set, that is
    ``x^-7 * XOR_k x^k * B[j][k]``, evaluated by Horner's rule from plane 0
    up with "divide every byte by x" steps.  Halving is cheaper than
    doubling on a packed int (klauspost doubles, the result is the same
    field element): clear bit 0 of each byte, shift right by one, and add
    0x8E (= x^-1) where bit 0 was set -- five big-int operations, no carry
    crosses a byte, so bytes never mix (and junk bytes below the shard, e.g.
    a packet header, stay where they are).
    """
    d = len(parity_rows[0])
    x7 = EXP[7]
    targets = [
        {i for i in range(d) if gf_mul(row[i], x7) >> k & 1}
        for row in parity_rows
        for k in range(8)
    ]
    pairs = _share_pairs(targets, d)
    lines = ["def parity(shards, m01):"]
    names = [f"v{i}" for i in range(d + len(pairs))]
    lines.append(f"    {', '.join(names[:d])}, = shards")
    for i, (a, b) in enumerate(pairs):
        lines.append(f"    {names[d + i]} = {names[a]} ^ {names[b]}")
    half = EXP[254]  # x^-1 = 0x8E
    results = []
    for j in range(len(parity_rows)):
        acc = None  # Horner accumulator; None while the low planes are empty
        for k in range(8):
            plane = " ^ ".join(names[x] for x in sorted(targets[j * 8 + k]))
            if acc is None:
                if plane:
                    acc = f"p{j}"
                    lines.append(f"    {acc} = {plane}")
                continue
            lines.append(f"    low = {acc} & m01")
            step = f"(({acc} ^ low) >> 1) ^ (low * {half})"
            lines.append(f"    {acc} = {step}" + (f" ^ {plane}" if plane else ""))
        results.append(acc or "0")
    lines.append(f"    return [{', '.join(results)}]")
    namespace: dict[str, object] = {}
    # The source is built from integers only (no outside text); compiling it
    # removes the interpreter loop around some 150 big-int operations per
    # group, which is most of the remaining cost.
    exec(compile("\n".join(lines), f"<gf256 parity {d}/{len(parity_rows)}>", "exec"), namespace)
    return cast(_ParityProgram, namespace["parity"])


_MASK01: dict[int, int] = {}


def mask01(length: int) -> int:
    r"""An int with byte 0x01 in each of its ``length`` low bytes (cached).

    Args:
        length: number of bytes, >= 0.

    Returns:
        ``int.from_bytes(b"\x01" * length, "little")``.
    """
    m = _MASK01.get(length)
    if m is None:
        if len(_MASK01) >= 64:
            _MASK01.clear()
        m = _MASK01[length] = int.from_bytes(b"\x01" * length, "little")
    return m


class _Shape:
    """Everything that depends only on (d, p), shared by every code of that shape.

    Built once per process and shape (see :func:`_shape`): the encoding
    matrix costs about 0.3 ms (Python Gauss-Jordan) and the parity program
    milliseconds, more than a session should pay each time it is created.
    All of it is immutable except ``decode_cache``, a dict whose entries are
    immutable and whose updates are single dict operations (safe without a
    lock under the GIL; see :meth:`ReedSolomon.decode_rows` for eviction).
    """

    __slots__ = (
        "column_tables",
        "decode_cache",
        "matrix",
        "parity_coefs",
        "parity_rows",
        "program",
    )

    def __init__(self, data_shards: int, parity_shards: int) -> None:
        matrix = build_matrix(data_shards, data_shards + parity_shards)
        self.matrix: tuple[tuple[int, ...], ...] = tuple(tuple(row) for row in matrix)
        self.parity_rows: tuple[tuple[int, ...], ...] = self.matrix[data_shards:]
        # the parity rows as p * d bytes, row after row (kcpsock._gfsimd.encode's coefs)
        self.parity_coefs = bytes(c for row in self.parity_rows for c in row)
        # column_tables[i][j]: the "multiply by E[d + j][i]" table, i.e. what
        # data shard i contributes to parity shard j.
        self.column_tables: tuple[tuple[bytes, ...], ...] = tuple(
            tuple(MUL_TABLES[row[i]] for row in self.parity_rows) for i in range(data_shards)
        )
        # present shard indexes -> inverse of those rows (ReedSolomon.decode_rows)
        self.decode_cache: dict[tuple[int, ...], tuple[tuple[int, ...], ...]] = {}
        # the bit-sliced parity program, compiled on first use (encoders only)
        self.program: Optional[_ParityProgram] = None


@functools.lru_cache(maxsize=64)
def _shape(data_shards: int, parity_shards: int) -> _Shape:
    """The shared :class:`_Shape` of (d, p); at most 64 shapes are kept."""
    return _Shape(data_shards, parity_shards)


class ReedSolomon:
    """klauspost/reedsolomon ``New(d, p)``: encoder and data reconstructor.

    Attributes:
        data_shards: d.
        parity_shards: p.
        total_shards: n = d + p.
        matrix: the n x d encoding matrix (tuple of tuples; top d rows = I).
        parity_rows: rows d..n-1 of ``matrix``.
        parity_coefs: ``parity_rows`` as p * d bytes, row after row (the
            ``coefs`` of :data:`NativeEncode`).
        bitsliced: True if :meth:`parity_ints` (the generated bit-sliced
            program) is available: d <= 24 and p <= 8.
    """

    #: Number of erasure patterns whose decode matrix is kept.
    DECODE_CACHE_SIZE = 512

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        # live protocol state: copy.copy/deepcopy/pickle raise, in both forms
        # (compiled, mypyc's classes could not be copied anyway)
        raise TypeError(f"cannot pickle {type(self).__name__!r} object: create a new one")

    def __init__(self, data_shards: object, parity_shards: object) -> None:
        """Build the code.

        Args:
            data_shards: d, 1 <= d.
            parity_shards: p, 1 <= p, with d + p <= 255 (the range every
                kcp-go version accepts; klauspost switches to another code
                above 256 shards).

        Raises:
            TypeError: if a count is not an int.
            ValueError: if a count is out of range (the message names it).
        """
        d, p = _check_counts(data_shards, parity_shards)
        self.data_shards = d
        self.parity_shards = p
        self.total_shards = d + p
        shape = _shape(d, p)
        self._shape = shape
        self.matrix: tuple[tuple[int, ...], ...] = shape.matrix
        self.parity_rows: tuple[tuple[int, ...], ...] = shape.parity_rows
        self.parity_coefs: bytes = shape.parity_coefs
        self.column_tables: tuple[tuple[bytes, ...], ...] = shape.column_tables
        # Shared by every code of this shape (see _Shape).
        self._decode_cache = shape.decode_cache
        self.bitsliced = d <= BITSLICE_MAX_DATA and p <= BITSLICE_MAX_PARITY

    def __repr__(self) -> str:
        return f"ReedSolomon({self.data_shards}, {self.parity_shards})"

    # -- encoding -----------------------------------------------------------

    def accumulate(self, acc: list[int], index: int, shard: BytesLike) -> None:
        """Add data shard ``index``'s contribution to every parity accumulator.

        Lets an encoder spread the parity work over the data packets of a
        group instead of doing it all when the group completes.  Start with
        ``acc = [0] * p``, call this once per data shard, then
        :meth:`finish`.

        Args:
            acc: p ints, updated in place.
            index: the data shard's index, 0..d-1.
            shard: the shard bytes (any length; shorter shards act as
                zero-padded).
        """
        # bytearray.translate is faster than bytes.translate (no "unchanged"
        # scan); one copy buys three or more faster translates.
        buf = shard if isinstance(shard, bytearray) else bytearray(shard)
        frombytes = int.from_bytes
        for j, table in enumerate(self.column_tables[index]):
            acc[j] ^= frombytes(buf.translate(table), "little")

    @staticmethod
    def finish(acc: Sequence[int], length: int) -> list[bytes]:
        """Turn parity accumulators into parity shards.

        Args:
            acc: the accumulators filled by :meth:`accumulate`.
            length: the common shard length (the longest data shard).

        Returns:
            The p parity shards, each ``length`` bytes.
        """
        return [a.to_bytes(length, "little") for a in acc]

    def parity_ints(self, shards: Sequence[int], length: int) -> list[int]:
        """Parity of d shards given as little-endian ints (bit-sliced).

        Args:
            shards: the d data shards, each ``int.from_bytes(shard, "little")``
                (zero padding is implicit).  Extra bytes below the shard, e.g.
                a packet header, may be included: every operation is bytewise,
                so they only produce junk in the same low bytes of the result.
            length: a byte length at least that of every value.

        Returns:
            The p parity shards as little-endian ints.

        Raises:
            ValueError: if the code is too large for the bit-sliced program
                (see :attr:`bitsliced`) or ``shards`` does not hold d values.
        """
        if not self.bitsliced:
            raise ValueError(f"no bit-sliced program for {self.data_shards}/{self.parity_shards}")
        if len(shards) != self.data_shards:
            raise ValueError(f"shards must hold {self.data_shards} values, got {len(shards)}")
        program = self._shape.program
        if program is None:
            # compiled once per shape, on first use: decoders never need it
            program = self._shape.program = _parity_program(self.parity_rows)
        return program(shards, mask01(length))

    def encode(self, data: Sequence[BytesLike]) -> list[bytes]:
        """Compute the parity shards of d data shards (klauspost ``Encode``).

        Args:
            data: the d data shards; shorter ones are zero-padded to the
                longest.

        Returns:
            The p parity shards, each as long as the longest data shard
            (computed by the C helper when it is built, else by the
            bit-sliced program or :meth:`encode_translate`: the same bytes).

        Raises:
            ValueError: if ``data`` does not hold exactly d shards.
        """
        if len(data) != self.data_shards:
            raise ValueError(f"data must hold {self.data_shards} shards, got {len(data)}")
        native = native_encode()
        if native is not None:  # the C helper: one call
            return native(data, self.parity_coefs, max(len(shard) for shard in data), 0, False)
        if self.bitsliced:
            length = max(len(shard) for shard in data)
            values = [int.from_bytes(shard, "little") for shard in data]
            return self.finish(self.parity_ints(values, length), length)
        return self.encode_translate(data)

    def encode_translate(self, data: Sequence[BytesLike]) -> list[bytes]:
        """:meth:`encode` by translate tables only (the path for large codes).

        Args:
            data: the d data shards; shorter ones are zero-padded.

        Returns:
            The p parity shards.

        Raises:
            ValueError: if ``data`` does not hold exactly d shards.
        """
        if len(data) != self.data_shards:
            raise ValueError(f"data must hold {self.data_shards} shards, got {len(data)}")
        acc = [0] * self.parity_shards
        length = 0
        for i, shard in enumerate(data):
            self.accumulate(acc, i, shard)
            length = max(length, len(shard))
        return self.finish(acc, length)

    # -- reconstruction -----------------------------------------------------

    def decode_rows(self, present: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
        """Inverse of the encoding-matrix rows ``present`` (cached).

        Args:
            present: d distinct shard indexes in increasing order.

        Returns:
            The d x d inverse; row i rebuilds data shard i from the shards
            ``present`` (in that order).

        Raises:
            ValueError: if ``present`` is not d valid indexes.
        """
        cached = self._decode_cache.get(present)
        if cached is not None:
            return cached
        if len(present) != self.data_shards or len(set(present)) != len(present):
            raise ValueError(f"present must list {self.data_shards} distinct shard indexes")
        if any(not 0 <= i < self.total_shards for i in present):
            raise ValueError("present holds a shard index out of range")
        inv = invert_matrix([self.matrix[i] for i in present])
        rows = tuple(tuple(r) for r in inv)
        cache = self._decode_cache
        if len(cache) >= self.DECODE_CACHE_SIZE:
            # Drop the oldest pattern (dicts keep insertion order).  The cache
            # is shared between threads' codes: another thread may evict at
            # the same time, which only means one entry more or less goes.
            try:
                del cache[next(iter(cache))]
            except (KeyError, RuntimeError, StopIteration):
                pass
        cache[present] = rows
        return rows

    def reconstruct_data(
        self, shards: Sequence[Optional[BytesLike]], length: Optional[int] = None
    ) -> dict[int, bytes]:
        """Rebuild the missing data shards (klauspost ``ReconstructData``).

        Uses the first d present shards in index order, as klauspost does.

        Args:
            shards: n entries, ``None`` (or empty) for a missing shard.  Present
                shards shorter than the longest are zero-padded.
            length: the length of the rebuilt shards; default: the longest
                present shard.  Must be at least that.

        Returns:
            ``{index: shard}`` for every missing data index (empty if none is
            missing), each shard ``length`` bytes.

        Raises:
            ValueError: if ``shards`` does not have n entries, fewer than d
                shards are present, or ``length`` is too short.
        """
        n = self.total_shards
        d = self.data_shards
        if len(shards) != n:
            raise ValueError(f"shards must hold {n} entries, got {len(shards)}")
        present_idx = [i for i, s in enumerate(shards) if s is not None and len(s) > 0]
        missing = [i for i in range(d) if shards[i] is None or len(shards[i] or b"") == 0]
        if not missing:
            return {}
        if len(present_idx) < d:
            raise ValueError(f"too few shards to reconstruct: {len(present_idx)} < {d}")
        longest = max(len(shards[i] or b"") for i in present_idx)
        if length is None:
            length = longest
        elif length < longest:
            raise ValueError(f"length {length} is shorter than the longest shard {longest}")
        chosen = tuple(present_idx[:d])
        values = self.rebuild_ints(chosen, [shards[i] or b"" for i in chosen], missing)
        return {i: v.to_bytes(length, "little") for i, v in zip(missing, values)}

    def rebuild_ints(
        self, present: tuple[int, ...], shards: Sequence[BytesLike], missing: Sequence[int]
    ) -> list[int]:
        """Rebuild data shards from d present shards, as little-endian ints.

        The core of :meth:`reconstruct_data`, for callers that handle the
        lengths themselves (kcpsock.fec checks a size prefix first).

        Args:
            present: d distinct shard indexes in increasing order.
            shards: the shards ``present`` names, in that order (shorter ones
                act as zero-padded).
            missing: the data shard indexes to rebuild.

        Returns:
            One int per entry of ``missing``, ``int.from_bytes(shard,
            "little")`` of the rebuilt shard.

        Raises:
            ValueError: if ``present`` is not d valid indexes.
        """
        rows = self.decode_rows(present)
        # bytearray.translate skips bytes.translate's "unchanged" scan
        bufs = [s if isinstance(s, bytearray) else bytearray(s) for s in shards]
        frombytes = int.from_bytes
        tables = MUL_TABLES
        plain: dict[int, int] = {}  # int value of present shard k, for coefficient 1
        out: list[int] = []
        for i in missing:
            acc = 0
            for k, coef in enumerate(rows[i]):
                if coef == 0:
                    continue
                if coef == 1:
                    v = plain.get(k)
                    if v is None:
                        v = plain[k] = frombytes(bufs[k], "little")
                    acc ^= v
                else:
                    acc ^= frombytes(bufs[k].translate(tables[coef]), "little")
            out.append(acc)
        return out


#: Smallest buffer per slot (an MTU-sized shard fits), bytes.
_SLOT_STRIDE = 1536
#: Slot spacing is the group's longest shard rounded up to a multiple of this.
_SLOT_ROUND = 64
#: gap length -> that many zero bytes (immutable, shared by every accumulator).
_GAPS: dict[int, bytes] = {}


def _zeros(n: int) -> bytes:
    """``n`` zero bytes (shared when short)."""
    return _ZEROS[:n] if n <= len(_ZEROS) else bytes(n)


_ZEROS = bytes(4096)


class ParityAccumulator:
    """Parity shards of one group, built shard by shard at C speed (encoders).

    For data shard i the p images ``shard * E[d + j][i]`` are made by
    ``bytearray.translate`` (:attr:`ReedSolomon.column_tables`), joined with
    zero gaps so that image j lands on slot j of one C buffer, and added to
    all p slots by a single call of a C XOR function (pycryptodome's
    ``strxor``, see :func:`kcpsock._fastcrypt.xor_function`).  No
    ``int.from_bytes``/``to_bytes`` conversion and no per-byte Python work:
    per data shard, p translates, one join and one C call.  The result is
    the same as :meth:`ReedSolomon.encode` of the zero-padded shards (tests
    compare them).

    Not thread-safe: one group at a time, driven by one encoder.

    Args:
        rs: the code (its parity), or any coefficient columns: ``rs[i][j]``
            the multiplication table (:data:`MUL_TABLES`) of what input i
            adds to output j, e.g. a decode matrix's rows for the missing
            shards (kcpsock.fec's recovery).
        xor: ``xor(a, b, out, n)`` writing ``a ^ b`` to ``out`` over ``n``
            bytes, taking ctypes pointers and a ``c_size_t`` (the handle
            :func:`kcpsock._fastcrypt.xor_function` returns).

    Attributes:
        used: the longest shard added since the last :meth:`take` or
            :meth:`reset` (0 when empty).
    """

    __slots__ = (
        "_buf",
        "_per_len",
        "_ptr",
        "_stride",
        "_tables",
        "_view",
        "_xor",
        "used",
    )

    def __init__(
        self, rs: Union[ReedSolomon, Sequence[Sequence[bytes]]], xor: Callable[..., object]
    ) -> None:
        self._tables: Sequence[Sequence[bytes]] = (
            rs.column_tables if isinstance(rs, ReedSolomon) else rs
        )
        self._xor = xor
        # The slots of the current group sit _stride bytes apart (the
        # group's longest shard rounded up: the joined images carry little
        # zero padding); 0 before the group's first shard.
        self._stride = 0
        self._buf: Optional[ctypes.Array[ctypes.c_char]] = None  # allocated on first use
        self._ptr = ctypes.c_void_p(0)
        self._view = memoryview(b"")
        # stride << 32 | shard length -> (zero gap between images, c_size_t
        # of the XOR length); at most 64 entries (bulk traffic needs one)
        self._per_len: dict[int, tuple[bytes, ctypes.c_size_t]] = {}
        self.used = 0

    def _restride(self, length: int) -> None:
        """Space the slots for shards of ``length`` bytes, keeping their contents."""
        p = len(self._tables[0]) if self._tables else 0
        stride = -(-length // _SLOT_ROUND) * _SLOT_ROUND
        used, old = self.used, self._stride
        kept = [self._view[j * old : j * old + used].tobytes() for j in range(p)] if used else []
        if self._buf is None or p * stride > len(self._view):
            size = p * max(stride, _SLOT_STRIDE)
            self._buf = buf = ctypes.create_string_buffer(size)  # zeroed
            self._view = memoryview(buf).cast("B")
            self._ptr = ctypes.c_void_p(ctypes.addressof(buf))
        elif used:
            for j in range(p):
                self._view[j * old : j * old + used] = bytes(used)
        view = self._view
        for j, data in enumerate(kept):
            view[j * stride : j * stride + used] = data
        self._stride = stride

    def add(self, index: int, shard: bytearray) -> None:
        """Add data shard ``index``'s contribution to every parity slot.

        Args:
            index: the data shard's index, 0..d-1.
            shard: the whole shard (an FEC data packet's size field and KCP
                datagram), as a bytearray (``bytearray.translate`` skips the
                "unchanged" scan of ``bytes.translate``).
        """
        n = len(shard)
        if n > self._stride:
            self._restride(n)
        elif not n:
            return  # an empty shard adds nothing
        if n > self.used:
            self.used = n
        got = self._per_len.get(self._stride << 32 | n)
        if got is None:
            got = self._per_shard_length(n)
        gap, size = got
        # image j at offset j * stride: the gaps between images are zeros
        self._xor(self._ptr, gap.join(map(shard.translate, self._tables[index])), self._ptr, size)

    def _per_shard_length(self, n: int) -> tuple[bytes, ctypes.c_size_t]:
        """(zero gap between the images, XOR length) for shards of ``n`` bytes (cached)."""
        width = self._stride - n
        size = ctypes.c_size_t(len(self._tables[0]) * self._stride - width)
        if width > len(_ZEROS):  # oversized shards (not from a codec): not kept
            return bytes(width), size
        per_len = self._per_len
        if len(per_len) >= 64:
            per_len.clear()
        gap = _GAPS.get(width)
        if gap is None:
            if len(_GAPS) >= 256:
                _GAPS.clear()
            gap = _GAPS[width] = bytes(width)  # shared by every accumulator
        got = per_len[self._stride << 32 | n] = (gap, size)
        return got

    def take(self, length: int) -> list[bytes]:
        """The p parity shards of ``length`` bytes; the slots are cleared for the next group.

        Args:
            length: the common shard length, at least :attr:`used` (the
                longest data shard; shorter ones count as zero-padded).

        Returns:
            The parity shards, as :meth:`ReedSolomon.encode` would return them.
        """
        p = len(self._tables[0]) if self._tables else 0
        used, stride, view = self.used, self._stride, self._view
        if not used:
            return [bytes(length) for _ in range(p)]
        if length <= used:
            out = [view[o : o + length].tobytes() for o in range(0, p * stride, stride)]
        else:  # zero padding beyond the longest shard
            pad = bytes(length - used)
            out = [view[o : o + used].tobytes() + pad for o in range(0, p * stride, stride)]
        self.reset()
        return out

    def reset(self) -> None:
        """Clear the slots (a group whose parity is not sent)."""
        used = self.used
        if used:
            view, stride = self._view, self._stride
            zeros = _zeros(used)
            for o in range(0, len(self._tables[0]) * stride, stride):
                view[o : o + used] = zeros
            self.used = 0
        self._stride = 0
