"""Type stub of kcpsock._gfsimd, the optional C helper of kcpsock.gf256 (source: _gfsimd.c).

GF(2^8) multiply-accumulate over whole buffers in klauspost/reedsolomon's
field (polynomial 0x11D), with SSSE3/AVX2 byte shuffles where the CPU has
them.  Reach it through ``kcpsock._accel.native("_gfsimd")``, which is None
when the extension is not built or ``KCPSOCK_PURE`` is set.
"""

from collections.abc import Sequence
from typing import Union

_Bytes = Union[bytes, bytearray, memoryview]

def mul_acc(dst: Union[bytearray, memoryview], src: _Bytes, coef: int, /) -> None:
    """``dst[i] ^= coef * src[i]`` for ``i < len(src)`` (dst writable, at least as long)."""

def encode(
    shards: Sequence[_Bytes],
    coefs: _Bytes,
    length: int,
    skip: int = 0,
    sized: bool = False,
    /,
) -> list[bytes]:
    """The p outputs ``XOR_i coefs[j * d + i] * shards[i]`` of ``length`` bytes (zero-padded).

    ``skip`` leading bytes of every buffer are not part of its shard; with
    ``sized`` a shard is kcp-go's FEC data shard of the buffer (its 2-byte
    little-endian size field, 2 + its length, then the buffer).
    """

def backend() -> str:
    """The kernel in use: ``"avx2"``, ``"ssse3"`` or ``"scalar"``."""

def backends() -> tuple[str, ...]:
    """The kernels this CPU can run, fastest first."""

def _set_backend(name: str, /) -> str:
    """Use kernel ``name`` (one of :func:`backends`); returns the previous one (tests)."""
