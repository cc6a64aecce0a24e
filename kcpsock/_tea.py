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
    * The CFB loop restarts from the fixed IV for every packet and truncates
      the keystream of a trailing partial block (CRYPTO.md section 4).

Pure module: no I/O, no clock, no randomness.
"""

from __future__ import annotations

import struct

__all__ = ["TEA", "XTEA"]

_M32 = 0xFFFFFFFF
_DELTA = 0x9E3779B9


class _Cfb64:
    """kcp-go's CFB over a 64-bit block cipher given as a word function."""

    _iv0: int
    _iv1: int

    def _block(self, v0: int, v1: int) -> tuple[int, int]:  # pragma: no cover - abstract
        raise NotImplementedError

    def encrypt_block(self, block: bytes) -> bytes:
        """Encrypt one 8-byte block (ECB, for tests).

        Args:
            block: exactly 8 bytes.

        Returns:
            The 8-byte ciphertext block.

        Raises:
            ValueError: if ``block`` is not 8 bytes long.
        """
        if len(block) != 8:
            raise ValueError("block must be 8 bytes")
        v0, v1 = struct.unpack(">II", block)
        return struct.pack(">II", *self._block(v0, v1))

    def cfb(self, data: bytes, decrypt: bool) -> bytes:
        """Apply kcp-go's CFB (fixed IV, truncated tail) to one whole packet.

        Args:
            data: the packet.
            decrypt: False to encrypt, True to decrypt.

        Returns:
            The transformed packet, same length.
        """
        n = len(data)
        nw = (n >> 3) << 1
        words = struct.unpack_from(f">{nw}I", data)
        out = [0] * nw
        block = self._block
        k0, k1 = self._iv0, self._iv1
        for i in range(0, nw, 2):
            w0 = words[i]
            w1 = words[i + 1]
            x0 = w0 ^ k0
            x1 = w1 ^ k1
            out[i] = x0
            out[i + 1] = x1
            # CFB feeds back the ciphertext: the output when encrypting, the
            # input when decrypting (kcp-go encrypt8/decrypt8).
            if decrypt:
                k0, k1 = block(w0, w1)
            else:
                k0, k1 = block(x0, x1)
        head = struct.pack(f">{nw}I", *out)
        r = n & 7
        if not r:
            return head
        ks = struct.pack(">II", k0, k1)
        tail = int.from_bytes(data[n - r:], "big") ^ int.from_bytes(ks[:r], "big")
        return head + tail.to_bytes(r, "big")


class TEA(_Cfb64):
    """TEA with 16 rounds (8 cycles), as kcp-go's ``NewTEABlockCrypt``.

    Args:
        key: exactly 16 bytes.

    Raises:
        ValueError: if the key is not 16 bytes long.
    """

    def __init__(self, key: bytes) -> None:
        if len(key) != 16:
            raise ValueError("TEA key must be 16 bytes")
        self._k = struct.unpack(">4I", key)
        # sum after each of the 8 cycles
        self._sums = tuple((_DELTA * (i + 1)) & _M32 for i in range(8))
        self._iv0, self._iv1 = self._block(0xA7734F9C, 0x12AC1B01)

    def _block(self, v0: int, v1: int) -> tuple[int, int]:
        k0, k1, k2, k3 = self._k
        for s in self._sums:
            v0 = (v0 + (((v1 << 4) + k0) ^ (v1 + s) ^ ((v1 >> 5) + k1))) & _M32
            v1 = (v1 + (((v0 << 4) + k2) ^ (v0 + s) ^ ((v0 >> 5) + k3))) & _M32
        return v0, v1


class XTEA(_Cfb64):
    """XTEA (64 Feistel rounds), as kcp-go's ``NewXTEABlockCrypt``.

    Args:
        key: exactly 16 bytes.

    Raises:
        ValueError: if the key is not 16 bytes long.
    """

    def __init__(self, key: bytes) -> None:
        if len(key) != 16:
            raise ValueError("XTEA key must be 16 bytes")
        k = struct.unpack(">4I", key)
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
        self._iv0, self._iv1 = self._block(0xA7734F9C, 0x12AC1B01)

    def _block(self, v0: int, v1: int) -> tuple[int, int]:
        for a, b in self._pairs:
            v0 = (v0 + ((((v1 << 4) ^ (v1 >> 5)) + v1) ^ a)) & _M32
            v1 = (v1 + ((((v0 << 4) ^ (v0 >> 5)) + v0) ^ b)) & _M32
        return v0, v1
