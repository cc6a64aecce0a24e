"""Twofish (the AES-finalist block cipher) in CFB mode, in pure Python.

kcp-go's ``NewTwofishBlockCrypt`` uses golang.org/x/crypto/twofish, the
standard Twofish of Schneier et al. (1998), with 128/192/256-bit keys.
pycryptodome lacks it, so kcpsock carries its own, built from the paper's
definitions:

* the fixed permutations q0 and q1 are generated from their 4-bit tables
  (paper section 4.3.5) instead of being spelled out as 512 bytes;
* the key-dependent S-boxes are folded with the MDS matrix into four tables
  of 256 32-bit words, so the g function is four lookups and three XORs;
* the rotation of the second g input is folded into the table order.

Invariants: the paper's little-endian words, each reduced modulo 2**32 when
stored; no decryption direction (CFB needs none).  The CFB mode itself lives
in kcpsock._cfb.  Pure module: no I/O, no clock, no randomness.
"""

from __future__ import annotations

from collections.abc import Sequence

from ._cfb import WordCFB
from .gf256 import poly_mul as _poly_mul

__all__ = ["Twofish"]

_M32 = 0xFFFFFFFF

# 4-bit permutation tables t0..t3 of q0 and q1 (Twofish paper, section 4.3.5).
_Q_TABLES = (
    (
        (0x8, 0x1, 0x7, 0xD, 0x6, 0xF, 0x3, 0x2, 0x0, 0xB, 0x5, 0x9, 0xE, 0xC, 0xA, 0x4),
        (0xE, 0xC, 0xB, 0x8, 0x1, 0x2, 0x3, 0x5, 0xF, 0x4, 0xA, 0x6, 0x7, 0x0, 0x9, 0xD),
        (0xB, 0xA, 0x5, 0xE, 0x6, 0xD, 0x9, 0x0, 0xC, 0x8, 0xF, 0x3, 0x2, 0x4, 0x7, 0x1),
        (0xD, 0x7, 0xF, 0x4, 0x1, 0x2, 0x6, 0xE, 0x9, 0xB, 0x3, 0x0, 0x8, 0x5, 0xC, 0xA),
    ),
    (
        (0x2, 0x8, 0xB, 0xD, 0xF, 0x7, 0x6, 0xE, 0x3, 0x1, 0x9, 0x4, 0x0, 0xA, 0xC, 0x5),
        (0x1, 0xE, 0x2, 0xB, 0x4, 0xC, 0x3, 0x7, 0x6, 0xD, 0xA, 0x5, 0xF, 0x9, 0x0, 0x8),
        (0x4, 0xC, 0x7, 0x5, 0x1, 0x6, 0x9, 0xA, 0x0, 0xE, 0xD, 0x8, 0x2, 0xB, 0x3, 0xF),
        (0xB, 0x9, 0x5, 0x1, 0xC, 0x3, 0xD, 0xE, 0x6, 0x4, 0x7, 0xF, 0x2, 0x0, 0x8, 0xA),
    ),
)


def _ror4(x: int) -> int:
    return ((x >> 1) | (x << 3)) & 0xF


def _make_q(t: tuple[tuple[int, ...], ...]) -> bytes:
    out = bytearray(256)
    for x in range(256):
        a0, b0 = x >> 4, x & 0xF
        a1 = a0 ^ b0
        b1 = a0 ^ _ror4(b0) ^ ((a0 << 3) & 0xF)
        a2, b2 = t[0][a1], t[1][b1]
        a3 = a2 ^ b2
        b3 = a2 ^ _ror4(b2) ^ ((a2 << 3) & 0xF)
        out[x] = (t[3][b3] << 4) | t[2][a3]
    return bytes(out)


Q0 = _make_q(_Q_TABLES[0])
Q1 = _make_q(_Q_TABLES[1])


_MDS_POLY = 0x169  # x^8 + x^6 + x^5 + x^3 + 1 (paper section 4.2)
_RS_POLY = 0x14D  # x^8 + x^6 + x^3 + x^2 + 1 (paper section 4.3)
_MDS = (
    (0x01, 0xEF, 0x5B, 0x5B),
    (0x5B, 0xEF, 0xEF, 0x01),
    (0xEF, 0x5B, 0x01, 0xEF),
    (0xEF, 0x01, 0xEF, 0x5B),
)
_RS = (
    (0x01, 0xA4, 0x55, 0x87, 0x5A, 0x58, 0xDB, 0x9E),
    (0xA4, 0x56, 0x82, 0xF3, 0x1E, 0xC6, 0x68, 0xE5),
    (0x02, 0xA1, 0xFC, 0xC1, 0x47, 0xAE, 0x3D, 0x19),
    (0xA4, 0x55, 0x87, 0x5A, 0x58, 0xDB, 0x9E, 0x03),
)


def _mds_column(col: int, y: int) -> int:
    """MDS matrix column ``col`` times the byte ``y``, as a little-endian word."""
    w = 0
    for row in range(4):
        w |= _poly_mul(_MDS[row][col], y, _MDS_POLY) << (8 * row)
    return w


def _h_bytes(x: int, lst: list[bytes]) -> tuple[int, int, int, int]:
    """The byte-substitution part of h (paper section 4.3.2) for the word list ``lst``.

    ``x`` is replicated into all four input bytes when called for subkeys; the
    S-box tables call it per byte position instead (see ``Twofish.__init__``).
    """
    y0 = y1 = y2 = y3 = x
    k = len(lst)
    if k == 4:
        y0, y1, y2, y3 = (
            Q1[y0] ^ lst[3][0],
            Q0[y1] ^ lst[3][1],
            Q0[y2] ^ lst[3][2],
            Q1[y3] ^ lst[3][3],
        )
    if k >= 3:
        y0, y1, y2, y3 = (
            Q1[y0] ^ lst[2][0],
            Q1[y1] ^ lst[2][1],
            Q0[y2] ^ lst[2][2],
            Q0[y3] ^ lst[2][3],
        )
    y0 = Q1[Q0[Q0[y0] ^ lst[1][0]] ^ lst[0][0]]
    y1 = Q0[Q0[Q1[y1] ^ lst[1][1]] ^ lst[0][1]]
    y2 = Q1[Q1[Q0[y2] ^ lst[1][2]] ^ lst[0][2]]
    y3 = Q0[Q1[Q1[y3] ^ lst[1][3]] ^ lst[0][3]]
    return y0, y1, y2, y3


def _h(x: int, lst: list[bytes]) -> int:
    y = _h_bytes(x, lst)
    return _mds_column(0, y[0]) ^ _mds_column(1, y[1]) ^ _mds_column(2, y[2]) ^ _mds_column(3, y[3])


def _rol(x: int, n: int) -> int:
    return ((x << n) | (x >> (32 - n))) & _M32


class Twofish(WordCFB):
    """Twofish with a 16, 24 or 32-byte key, and kcp-go's CFB mode.

    CFB decryption runs on all blocks at once: keystream block i is
    E(C[i-1]) (C[-1] = IV), so word j of every block is packed into one
    Python integer, one block per 64-bit lane; additions, XORs and
    rotations are single big-integer operations (masked to 32 bits per
    lane), and g is sixteen ``bytes.translate`` calls over byte planes (the
    key-dependent S-box and MDS column folded into byte tables).
    Encryption is sequential and stays block by block.

    Args:
        key: 16, 24 or 32 bytes.

    Raises:
        ValueError: for any other key length.
    """

    _words = 4
    _order = "<"
    # Lane sizes (blocks) for the parallel decryption; 95 blocks cover 1520 bytes.
    _lane_classes = (32, 95)
    # Below this many blocks the block-by-block loop is faster than the lanes.
    _lane_min_blocks = 16

    def __init__(self, key: bytes) -> None:
        if len(key) not in (16, 24, 32):
            raise ValueError("Twofish key must be 16, 24 or 32 bytes")
        k = len(key) // 8
        words = [key[4 * i : 4 * i + 4] for i in range(2 * k)]
        me = words[0::2]
        mo = words[1::2]
        # S vector: RS code of each 8 key bytes; h uses them in reverse order.
        s_words = []
        for i in range(k):
            chunk = key[8 * i : 8 * i + 8]
            s_word = bytearray(4)
            for row in range(4):
                for j in range(8):
                    s_word[row] ^= _poly_mul(chunk[j], _RS[row][j], _RS_POLY)
            s_words.append(bytes(s_word))
        s_list = s_words[::-1]
        subkeys = []
        for i in range(20):
            a = _h(2 * i, me)
            b = _rol(_h(2 * i + 1, mo), 8)
            subkeys.append((a + b) & _M32)
            subkeys.append(_rol((a + 2 * b) & _M32, 9))
        self._k = tuple(subkeys)
        # round subkeys K[8..39], four per double round
        self._rounds = tuple(tuple(subkeys[r : r + 4]) for r in range(8, 40, 4))
        # Key-dependent S-boxes folded with the MDS columns:
        # g(X) = T0[x0] ^ T1[x1] ^ T2[x2] ^ T3[x3].
        tables: list[list[int]] = [[0] * 256 for _ in range(4)]
        for x in range(256):
            y = _h_bytes(x, s_list)
            for col in range(4):
                tables[col][x] = _mds_column(col, y[col])
        self._t = tuple(tuple(t) for t in tables)
        # The same tables as byte maps for the parallel decryption:
        # byte_tables[i][r][x] = byte r of T_i[x]; the rotated variant feeds
        # byte i of b to T_(i+1)%4, which is g(rol(b, 8)).
        split = tuple(
            tuple(bytes((t[x] >> (8 * r)) & 255 for x in range(256)) for r in range(4))
            for t in tables
        )
        self._byte_tables = (split, tuple(split[(i + 1) % 4] for i in range(4)))
        self._init_cfb()

    def _block(self, a: int, b: int, c: int, d: int) -> tuple[int, int, int, int]:
        t0, t1, t2, t3 = self._t
        k = self._k
        a ^= k[0]
        b ^= k[1]
        c ^= k[2]
        d ^= k[3]
        m = _M32
        for k0, k1, k2, k3 in self._rounds:
            x = t0[a & 255] ^ t1[(a >> 8) & 255] ^ t2[(a >> 16) & 255] ^ t3[a >> 24]
            # g(rol(b, 8)) without the rotation: shift the table order
            y = t0[b >> 24] ^ t1[b & 255] ^ t2[(b >> 8) & 255] ^ t3[(b >> 16) & 255]
            c ^= (x + y + k0) & m
            c = ((c >> 1) | (c << 31)) & m
            # rol(d, 1) ^ F1, masked once (masking commutes with XOR)
            d = ((d << 1) ^ (d >> 31) ^ (x + 2 * y + k1)) & m
            x = t0[c & 255] ^ t1[(c >> 8) & 255] ^ t2[(c >> 16) & 255] ^ t3[c >> 24]
            y = t0[d >> 24] ^ t1[d & 255] ^ t2[(d >> 8) & 255] ^ t3[(d >> 16) & 255]
            a ^= (x + y + k2) & m
            a = ((a >> 1) | (a << 31)) & m
            b = ((b << 1) ^ (b >> 31) ^ (x + 2 * y + k3)) & m
        return c ^ k[4], d ^ k[5], a ^ k[6], b ^ k[7]

    def _round_constants(self) -> tuple[int, ...]:
        return self._k

    def _g_lanes(self, x: int, width: int, tables: tuple[tuple[bytes, ...], ...]) -> int:
        """g on every lane: byte i of each lane through its four byte tables."""
        raw = x.to_bytes(width, "little")
        acc = 0
        frombytes = int.from_bytes
        for i in range(4):
            plane = raw[i::8]
            t = tables[i]
            buf = bytearray(width)
            buf[0::8] = plane.translate(t[0])
            buf[1::8] = plane.translate(t[1])
            buf[2::8] = plane.translate(t[2])
            buf[3::8] = plane.translate(t[3])
            acc ^= frombytes(buf, "little")
        return acc

    def _lanes(
        self, xs: list[int], mask: int, consts: tuple[int, ...], width: int
    ) -> Sequence[int]:
        k = consts
        a, b, c, d = xs
        a ^= k[0]
        b ^= k[1]
        c ^= k[2]
        d ^= k[3]
        g = self._g_lanes
        t_plain, t_rot = self._byte_tables
        for r in range(8, 40, 4):
            x = g(a, width, t_plain)
            y = g(b, width, t_rot)  # g(rol(b, 8)): the table order shifted
            c = c ^ ((x + y + k[r]) & mask)
            c = ((c >> 1) | (c << 31)) & mask
            d = ((d << 1) ^ (d >> 31) ^ (x + (y << 1) + k[r + 1])) & mask
            x = g(c, width, t_plain)
            y = g(d, width, t_rot)
            a = a ^ ((x + y + k[r + 2]) & mask)
            a = ((a >> 1) | (a << 31)) & mask
            b = ((b << 1) ^ (b >> 31) ^ (x + (y << 1) + k[r + 3])) & mask
        return c ^ k[4], d ^ k[5], a ^ k[6], b ^ k[7]
