"""SM4 (GB/T 32907-2016) in CFB mode, in pure Python.

kcp-go's ``NewSM4BlockCrypt`` uses github.com/tjfoc/gmsm/sm4, the standard
SM4 block cipher (128-bit block and key, 32 rounds).  pycryptodome lacks it,
so kcpsock carries its own:

* the S-box is generated from its algebraic definition, an affine map,
  inversion in GF(2^8) modulo x^8+x^7+x^6+x^5+x^4+x^2+1 (0x1F5), and the
  same affine map again (matrix rows and constant both from 0xD3); the
  result is the standard table (checked by the vectors);
* the round function T = L(tau(x)) is folded into four tables of 256 words,
  so each round is four lookups and XORs.

Invariants: big-endian words (as the standard writes them), every stored word
below 2**32; the key schedule and rounds run forward only, since kcp-go's CFB
(kcpsock._cfb.WordCFB, the base class) never inverts the cipher.  Pure module:
no I/O, no clock, no randomness.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from ._cfb import WordCFB
from .gf256 import poly_mul as _poly_mul

__all__ = ["SM4"]

_M32 = 0xFFFFFFFF
_FK = (0xA3B1BAC6, 0x56AA3350, 0x677D9197, 0xB27022DC)
# CK[i] bytes are (4i + j) * 7 mod 256 (the standard's key-schedule constants)
_CK = tuple(
    int.from_bytes(bytes(((4 * i + j) * 7) & 0xFF for j in range(4)), "big") for i in range(32)
)


def _affine(x: int) -> int:
    out = 0
    for i in range(8):
        row = ((0xD3 >> i) | (0xD3 << (8 - i))) & 0xFF
        out |= (bin(row & x).count("1") & 1) << (7 - i)
    return out ^ 0xD3


def _make_sbox() -> bytes:
    inverse = [0] * 256
    for a in range(1, 256):
        if inverse[a]:
            continue
        for b in range(1, 256):
            if _poly_mul(a, b, 0x1F5) == 1:
                inverse[a] = b
                inverse[b] = a
                break
    return bytes(_affine(inverse[_affine(x)]) for x in range(256))


SBOX = _make_sbox()


def _rol(x: int, n: int) -> int:
    return ((x << n) | (x >> (32 - n))) & _M32


def _tau(x: int) -> int:
    return (
        (SBOX[x >> 24] << 24)
        | (SBOX[(x >> 16) & 255] << 16)
        | (SBOX[(x >> 8) & 255] << 8)
        | SBOX[x & 255]
    )


def _round_tables() -> tuple[tuple[int, ...], ...]:
    tables = []
    for shift in (24, 16, 8, 0):
        t = []
        for x in range(256):
            b = SBOX[x] << shift
            t.append(b ^ _rol(b, 2) ^ _rol(b, 10) ^ _rol(b, 18) ^ _rol(b, 24))
        tables.append(tuple(t))
    return tuple(tables)


_T0, _T1, _T2, _T3 = _round_tables()


class SM4(WordCFB):
    """SM4 with a 16-byte key, and kcp-go's CFB mode.

    CFB decryption runs on all blocks at once: keystream block i is
    E(C[i-1]) (C[-1] = IV), so word j of every block is packed into one
    Python integer, one block per 64-bit lane; the round's XORs and the
    linear map L (rotations within each lane: shifts both ways, masked to
    32 bits per lane) are single big-integer operations, and the S-box is
    one ``bytes.translate`` over all lanes' bytes.  Encryption is
    sequential and stays block by block.

    Args:
        key: exactly 16 bytes.

    Raises:
        ValueError: if the key is not 16 bytes long.
    """

    _words = 4
    _order = ">"
    # Lane sizes (blocks) for the parallel decryption; 95 blocks cover 1520 bytes.
    _lane_classes = (12, 32, 95)
    # Below this many blocks the block-by-block loop is faster than the lanes.
    _lane_min_blocks = 5

    def __init__(self, key: bytes) -> None:
        if len(key) != 16:
            raise ValueError("SM4 key must be 16 bytes")
        k = [w ^ f for w, f in zip(struct.unpack(">4I", key), _FK)]
        rk = []
        for i in range(32):
            b = _tau(k[i + 1] ^ k[i + 2] ^ k[i + 3] ^ _CK[i])
            k.append(k[i] ^ b ^ _rol(b, 13) ^ _rol(b, 23))
            rk.append(k[i + 4])
        self._rk = tuple(rk)
        # four round keys per loop iteration
        self._rounds = tuple(tuple(rk[i : i + 4]) for i in range(0, 32, 4))
        self._init_cfb()

    def _block(self, x0: int, x1: int, x2: int, x3: int) -> tuple[int, int, int, int]:
        t0, t1, t2, t3 = _T0, _T1, _T2, _T3
        for r0, r1, r2, r3 in self._rounds:
            x = x1 ^ x2 ^ x3 ^ r0
            x0 ^= t0[x >> 24] ^ t1[(x >> 16) & 255] ^ t2[(x >> 8) & 255] ^ t3[x & 255]
            x = x2 ^ x3 ^ x0 ^ r1
            x1 ^= t0[x >> 24] ^ t1[(x >> 16) & 255] ^ t2[(x >> 8) & 255] ^ t3[x & 255]
            x = x3 ^ x0 ^ x1 ^ r2
            x2 ^= t0[x >> 24] ^ t1[(x >> 16) & 255] ^ t2[(x >> 8) & 255] ^ t3[x & 255]
            x = x0 ^ x1 ^ x2 ^ r3
            x3 ^= t0[x >> 24] ^ t1[(x >> 16) & 255] ^ t2[(x >> 8) & 255] ^ t3[x & 255]
        return x3, x2, x1, x0

    def _round_constants(self) -> tuple[int, ...]:
        return self._rk

    def _lanes(
        self, xs: list[int], mask: int, consts: tuple[int, ...], width: int
    ) -> Sequence[int]:
        x0, x1, x2, x3 = xs
        frombytes = int.from_bytes
        sbox = SBOX
        for rk in consts:
            x = x1 ^ x2 ^ x3 ^ rk
            # tau: the S-box on every byte of every lane at once; the zero
            # bytes between lanes come out as SBOX[0] and are masked off
            b = frombytes(x.to_bytes(width, "little").translate(sbox), "little") & mask
            # L: b ^ rol(b, 2) ^ rol(b, 10) ^ rol(b, 18) ^ rol(b, 24), per lane
            t = (
                b
                ^ (b << 2)
                ^ (b << 10)
                ^ (b << 18)
                ^ (b << 24)
                ^ (b >> 30)
                ^ (b >> 22)
                ^ (b >> 14)
                ^ (b >> 8)
            ) & mask
            x0, x1, x2, x3 = x1, x2, x3, x0 ^ t
        # the output block is (X35, X34, X33, X32)
        return x3, x2, x1, x0
