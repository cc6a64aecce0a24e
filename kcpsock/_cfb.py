"""kcp-go's CFB mode over kcpsock's pure-Python block ciphers.

kcp-go (crypt.go ``encrypt``/``decrypt``, ``encrypt8``/``decrypt8``,
``encrypt16``/``decrypt16``) runs every block cipher in CFB mode with a
fixed IV that restarts for each packet, feeds the ciphertext back, and
XORs a trailing partial block with a truncated keystream block.  TEA, XTEA,
Twofish and SM4 share that machinery here; each cipher supplies its block
function on 32-bit words and, for decryption, the same function on "lanes"
(see :class:`WordCFB`).

Invariants:
    * Blocks are 2 or 4 32-bit words (8 or 16 bytes), read in the cipher's
      byte order (big-endian for TEA/XTEA/SM4, little-endian for Twofish);
      8-byte ciphers use the first 8 bytes of the IV (kcp-go ``encrypt8``).
    * Only the cipher's encryption direction is used: CFB never needs the
      inverse.
    * Output has the input's length; the state restarts at the IV for every
      call (docs/CRYPTO.md §2).

Pure module: no I/O, no clock, no randomness.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Callable

__all__ = ["IV", "WordCFB"]

#: kcp-go ``initialVector``: the fixed CFB IV (8-byte-block ciphers use [:8]).
IV = bytes((167, 115, 79, 156, 18, 172, 27, 1, 164, 21, 242, 193, 252, 120, 230, 107))

_M32 = 0xFFFFFFFF


class WordCFB:
    """kcp-go's CFB over a block cipher given as functions on 32-bit words.

    A subclass sets the class attributes below, defines ``_block`` (one
    block: words in, words out), ``_round_constants`` and ``_lanes``, and
    calls :meth:`_init_cfb` at the end of its ``__init__``.

    Encryption is sequential (each block's cipher input is the previous
    ciphertext block) and runs block by block.  Decryption runs on all
    blocks at once ("SIMD within a register"): keystream block i is
    E(C[i-1]) (C[-1] = IV), which needs no earlier output, so word j of every
    block is packed into one Python integer, one block per 64-bit lane, and
    ``_lanes`` applies the cipher to all lanes with big-integer operations
    (its constants replicated in every lane, its results masked to 32 bits
    per lane, so no carry crosses a lane).  Below ``_lane_min_blocks``
    blocks, or above the largest lane class, the block-by-block loop is used
    (faster for a few blocks; the lane classes bound the cached constants).

    Attributes (class level):
        _words: words per block, 2 or 4.
        _order: struct byte order of the words, ``">"`` or ``"<"``.
        _lane_classes: lane counts the constants are built for, increasing;
            the last one is the largest packet (in blocks) decrypted in lanes.
        _lane_min_blocks: fewest blocks decrypted in lanes.
    """

    _words = 4
    _order = ">"
    _lane_classes: tuple[int, ...] = (95,)
    _lane_min_blocks = 2

    #: The block function: ``_words`` words in, ``_words`` words out.
    _block: Callable[..., tuple[int, ...]]
    _iv_words: tuple[int, ...]
    _ks0: tuple[int, ...]  # E(IV), the first keystream block
    _lane_cache: dict[int, tuple[int, tuple[int, ...]]]

    def _round_constants(self) -> tuple[int, ...]:  # pragma: no cover - abstract
        """The key-dependent constants ``_lanes`` needs, one 32-bit int each."""
        raise NotImplementedError

    def _lanes(
        self, xs: list[int], mask: int, consts: tuple[int, ...], width: int
    ) -> Sequence[int]:  # pragma: no cover - abstract
        """The block function on every lane.

        Args:
            xs: the ``_words`` input words, each an int holding that word of
                every block, one per 64-bit lane (little-endian lanes).
            mask: 0xFFFFFFFF in every lane.
            consts: ``_round_constants()`` replicated in every lane.
            width: the byte length of a lane int (8 * lanes).

        Returns:
            The ``_words`` output words, packed the same way (bits above
            32 in a lane must be 0).
        """
        raise NotImplementedError

    def _init_cfb(self) -> None:
        """Precompute E(IV); call once the key schedule is ready."""
        w = self._words
        self._iv_words = struct.unpack(f"{self._order}{w}I", IV[: 4 * w])
        self._ks0 = tuple(self._block(*self._iv_words))
        self._lane_cache = {}

    def _lane_constants(self, lanes: int) -> tuple[int, tuple[int, ...]]:
        """(32-bit mask per lane, round constants replicated in every lane)."""
        found = self._lane_cache.get(lanes)
        if found is None:
            # the integer with a 1 at bit 64*i for every lane i < lanes
            rep = ((1 << (64 * lanes)) - 1) // ((1 << 64) - 1)
            found = (_M32 * rep, tuple(c * rep for c in self._round_constants()))
            self._lane_cache[lanes] = found
        return found

    def encrypt_block(self, block: bytes) -> bytes:
        """Encrypt one block (ECB, for tests).

        Args:
            block: exactly one block (8 or 16 bytes, the cipher's size).

        Returns:
            The ciphertext block.

        Raises:
            ValueError: if ``block`` does not have the block size.
        """
        size = 4 * self._words
        if len(block) != size:
            raise ValueError(f"block must be {size} bytes")
        fmt = f"{self._order}{self._words}I"
        return struct.pack(fmt, *self._block(*struct.unpack(fmt, block)))

    def cfb(self, data: bytes, decrypt: bool) -> bytes:
        """Apply kcp-go's CFB (fixed IV, truncated tail) to one whole packet.

        Args:
            data: the packet.
            decrypt: False to encrypt, True to decrypt.

        Returns:
            The transformed packet, same length.
        """
        n = len(data)
        w = self._words
        size = 4 * w
        if decrypt:
            nb = -(-n // size)
            if self._lane_min_blocks <= nb <= self._lane_classes[-1]:
                return self._decrypt_lanes(bytes(data), nb)
        nw = (n // size) * w
        order = self._order
        words = struct.unpack_from(f"{order}{nw}I", data)
        out = [0] * nw
        block = self._block
        # kcp-go encrypt8/16, decrypt8/16: the ciphertext is fed back, i.e.
        # the output when encrypting, the input when decrypting.
        if w == 2:
            k0, k1 = self._ks0
            for i in range(0, nw, 2):
                w0 = words[i]
                w1 = words[i + 1]
                x0 = w0 ^ k0
                x1 = w1 ^ k1
                out[i] = x0
                out[i + 1] = x1
                if decrypt:
                    k0, k1 = block(w0, w1)
                else:
                    k0, k1 = block(x0, x1)
            ks: tuple[int, ...] = (k0, k1)
        else:
            k0, k1, k2, k3 = self._ks0
            for i in range(0, nw, 4):
                w0, w1, w2, w3 = words[i : i + 4]
                x0, x1, x2, x3 = w0 ^ k0, w1 ^ k1, w2 ^ k2, w3 ^ k3
                out[i : i + 4] = x0, x1, x2, x3
                if decrypt:
                    k0, k1, k2, k3 = block(w0, w1, w2, w3)
                else:
                    k0, k1, k2, k3 = block(x0, x1, x2, x3)
            ks = (k0, k1, k2, k3)
        head = struct.pack(f"{order}{nw}I", *out)
        r = n - 4 * nw
        if not r:
            return head
        # kcp-go: the last partial block is XORed with a truncated keystream
        pad = struct.pack(f"{order}{w}I", *ks)
        tail = int.from_bytes(data[n - r :], "big") ^ int.from_bytes(pad[:r], "big")
        return head + tail.to_bytes(r, "big")

    def _decrypt_lanes(self, data: bytes, nb: int) -> bytes:
        """CFB decryption of all ``nb`` blocks at once (see the class docstring)."""
        n = len(data)
        w = self._words
        lanes = next(c for c in self._lane_classes if c >= nb)
        mask, consts = self._lane_constants(lanes)
        fmt = f"{self._order}{w * nb}I"
        words = struct.unpack(fmt, data + bytes(4 * w * nb - n))
        pack = struct.Struct(f"<{nb}Q").pack
        frombytes = int.from_bytes
        ivw = self._iv_words
        last = w * nb - w
        # cipher input, word j of: IV, C[0] .. C[nb-2]; one block per lane
        xs = [frombytes(pack(ivw[j], *words[j:last:w]), "little") for j in range(w)]
        ks = self._lanes(xs, mask, consts, 8 * lanes)
        keep = (1 << (64 * nb)) - 1  # lanes beyond nb worked on zeros: drop them
        unpack = struct.Struct(f"<{nb}Q").unpack
        out: list[int] = [0] * (w * nb)
        for j in range(w):
            y = frombytes(pack(*words[j::w]), "little") ^ (ks[j] & keep)
            out[j::w] = unpack(y.to_bytes(8 * nb, "little"))
        return struct.pack(fmt, *out)[:n]
