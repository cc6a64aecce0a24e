"""TEA (kcp-go's 16-round variant) and XTEA, in CFB mode, in pure Python.

pycryptodome has neither cipher, so kcpsock carries its own.  Both are the
golang.org/x/crypto versions kcp-go uses (``tea.NewCipherWithRounds(key, 16)``
and ``xtea.NewCipher``): 64-bit blocks read as two big-endian 32-bit words,
128-bit keys read as four big-endian words.

Invariants:
    * Only the encryption direction of each block cipher exists here: kcp-go's
      CFB mode (kcp-go ``encrypt8``/``decrypt8``) never calls the inverse.
    * Every word is reduced modulo 2**32 when it is stored; the intermediate
      values may carry bits above 32, which neither XOR nor addition lets
      leak into the low 32 bits.
    * kcp-go's CFB mode (the IV restarts for every packet, a trailing partial
      block gets a truncated keystream block) is kcpsock._cfb's, shared with
      SM4 and Twofish.

Pure module: no I/O, no clock, no randomness.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from ._cfb import WordCFB

__all__ = ["TEA", "XTEA"]

_M32 = 0xFFFFFFFF
_DELTA = 0x9E3779B9


class _Tea64(WordCFB):
    """CFB settings shared by TEA and XTEA (see :class:`kcpsock._cfb.WordCFB`).

    In the lane form every value stays below 2**38 inside its 64-bit slot
    (no carry crosses a lane), right shifts are masked back to 32 bits per
    lane, and every stored word is masked to 32 bits.
    """

    _words = 2
    _order = ">"
    # Lane sizes (blocks) for the parallel decryption; 190 blocks cover 1520 bytes.
    _lane_classes = (8, 24, 64, 190)
    # Below this many blocks the block-by-block loop is faster than the lanes.
    _lane_min_blocks = 2

    @staticmethod
    def _key_words(key: bytes, name: str) -> tuple[int, ...]:
        """The 16-byte key as four big-endian words; ValueError naming ``name`` otherwise."""
        if len(key) != 16:
            raise ValueError(f"{name} key must be 16 bytes")
        return struct.unpack(">4I", key)


class TEA(_Tea64):
    """TEA with 16 rounds (8 cycles), as kcp-go's ``NewTEABlockCrypt``.

    Args:
        key: exactly 16 bytes.

    Raises:
        ValueError: if the key is not 16 bytes long.
    """

    def __init__(self, key: bytes) -> None:
        self._k = self._key_words(key, "TEA")
        # sum after each of the 8 cycles
        self._sums = tuple((_DELTA * (i + 1)) & _M32 for i in range(8))
        self._init_cfb()

    def _round_constants(self) -> tuple[int, ...]:
        return (*self._k, *self._sums)

    def _lanes(
        self, xs: list[int], mask: int, consts: tuple[int, ...], width: int
    ) -> Sequence[int]:
        v0, v1 = xs
        k0, k1, k2, k3 = consts[:4]
        for s in consts[4:]:
            v0 = (v0 + (((v1 << 4) + k0) ^ (v1 + s) ^ (((v1 >> 5) & mask) + k1))) & mask
            v1 = (v1 + (((v0 << 4) + k2) ^ (v0 + s) ^ (((v0 >> 5) & mask) + k3))) & mask
        return v0, v1

    def _block(self, v0: int, v1: int) -> tuple[int, int]:
        k0, k1, k2, k3 = self._k
        for s in self._sums:
            v0 = (v0 + (((v1 << 4) + k0) ^ (v1 + s) ^ ((v1 >> 5) + k1))) & _M32
            v1 = (v1 + (((v0 << 4) + k2) ^ (v0 + s) ^ ((v0 >> 5) + k3))) & _M32
        return v0, v1


class XTEA(_Tea64):
    """XTEA (64 Feistel rounds), as kcp-go's ``NewXTEABlockCrypt``.

    Args:
        key: exactly 16 bytes.

    Raises:
        ValueError: if the key is not 16 bytes long.
    """

    def __init__(self, key: bytes) -> None:
        k = self._key_words(key, "XTEA")
        # The key-dependent round constants (sum + k[...]) do not depend on
        # the data, so they are computed once, in pairs (one per cycle).
        pairs = []
        s = 0
        for _ in range(32):
            a = (s + k[s & 3]) & _M32
            s = (s + _DELTA) & _M32
            b = (s + k[(s >> 11) & 3]) & _M32
            pairs.append((a, b))
        self._pairs = tuple(pairs)
        self._init_cfb()

    def _round_constants(self) -> tuple[int, ...]:
        return tuple(c for pair in self._pairs for c in pair)

    def _lanes(
        self, xs: list[int], mask: int, consts: tuple[int, ...], width: int
    ) -> Sequence[int]:
        v0, v1 = xs
        it = iter(consts)
        for a in it:
            b = next(it)
            v0 = (v0 + ((((v1 << 4) ^ ((v1 >> 5) & mask)) + v1) ^ a)) & mask
            v1 = (v1 + ((((v0 << 4) ^ ((v0 >> 5) & mask)) + v0) ^ b)) & mask
        return v0, v1

    def _block(self, v0: int, v1: int) -> tuple[int, int]:
        for a, b in self._pairs:
            v0 = (v0 + ((((v1 << 4) ^ (v1 >> 5)) + v1) ^ a)) & _M32
            v1 = (v1 + ((((v0 << 4) ^ (v0 >> 5)) + v0) ^ b)) & _M32
        return v0, v1
