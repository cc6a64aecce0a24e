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
# kcp-go's fixed IV, first 8 bytes, as two big-endian words
_IV0, _IV1 = 0xA7734F9C, 0x12AC1B01


# Lane sizes (blocks) for the parallel decryption; 190 blocks cover 1520 bytes.
_LANE_CLASSES = (8, 24, 64, 190)
# Below this many blocks the block-by-block loop is faster than the lanes.
_LANE_MIN_BLOCKS = 2


def _replicator(lanes: int) -> int:
    """The integer with a 1 at bit 64*i for every lane i < ``lanes``."""
    return ((1 << (64 * lanes)) - 1) // ((1 << 64) - 1)


class _Cfb64:
    """kcp-go's CFB over a 64-bit block cipher given as a word function.

    Decryption runs on all blocks at once ("SIMD within a register"): CFB
    keystream block i is E(C[i-1]) (C[-1] = IV), which needs no earlier
    output, so the cipher's 32-bit half-words of every block are packed
    into one Python integer, one block per 64-bit lane, and each ARX step
    (add, xor, shift) is one big-integer operation for all lanes.  Lanes
    never interfere: every value stays below 2**38 inside its 64-bit slot
    (no carry crosses a lane), right shifts are masked back to 32 bits per
    lane, and every stored word is masked to 32 bits.  Encryption is
    sequential (each block needs the previous ciphertext) and stays
    block by block.
    """

    _iv0: int  # E(IV), the first keystream block
    _iv1: int

    def _block(self, v0: int, v1: int) -> tuple[int, int]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _round_constants(self) -> tuple[int, ...]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _lanes(self, v0: int, v1: int, mask: int,
               consts: tuple[int, ...]) -> tuple[int, int]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _lane_constants(self, lanes: int) -> tuple[int, tuple[int, ...]]:
        """(32-bit mask per lane, round constants replicated in every lane)."""
        cache: dict[int, tuple[int, tuple[int, ...]]] = self.__dict__.setdefault("_lane_cache", {})
        found = cache.get(lanes)
        if found is None:
            rep = _replicator(lanes)
            found = (0xFFFFFFFF * rep, tuple(c * rep for c in self._round_constants()))
            cache[lanes] = found
        return found

    def _decrypt_lanes(self, data: bytes, nb: int) -> bytes:
        n = len(data)
        lanes = next(c for c in _LANE_CLASSES if c >= nb)
        mask, consts = self._lane_constants(lanes)
        words = struct.unpack(f">{2 * nb}I", data + bytes(8 * nb - n))
        # cipher input: IV, C[0] .. C[nb-2]; XOR input: C[0] .. C[nb-1]
        pack = struct.Struct(f"<{nb}Q").pack
        x0 = int.from_bytes(pack(_IV0, *words[0:2 * nb - 2:2]), "little")
        x1 = int.from_bytes(pack(_IV1, *words[1:2 * nb - 2:2]), "little")
        k0, k1 = self._lanes(x0, x1, mask, consts)
        keep = (1 << (64 * nb)) - 1  # lanes beyond nb worked on zeros: drop them
        y0 = int.from_bytes(pack(*words[0::2]), "little") ^ (k0 & keep)
        y1 = int.from_bytes(pack(*words[1::2]), "little") ^ (k1 & keep)
        unpack = struct.Struct(f"<{nb}Q").unpack
        out: list[int] = [0] * (2 * nb)
        out[0::2] = unpack(y0.to_bytes(8 * nb, "little"))
        out[1::2] = unpack(y1.to_bytes(8 * nb, "little"))
        return struct.pack(f">{2 * nb}I", *out)[:n]

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
        if decrypt:
            nb = (n + 7) >> 3
            if _LANE_MIN_BLOCKS <= nb <= _LANE_CLASSES[-1]:
                return self._decrypt_lanes(bytes(data), nb)
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
        self._iv0, self._iv1 = self._block(_IV0, _IV1)

    def _round_constants(self) -> tuple[int, ...]:
        return (*self._k, *self._sums)

    def _lanes(self, v0: int, v1: int, mask: int,
               consts: tuple[int, ...]) -> tuple[int, int]:
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
        self._iv0, self._iv1 = self._block(_IV0, _IV1)

    def _round_constants(self) -> tuple[int, ...]:
        return tuple(c for pair in self._pairs for c in pair)

    def _lanes(self, v0: int, v1: int, mask: int,
               consts: tuple[int, ...]) -> tuple[int, int]:
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
