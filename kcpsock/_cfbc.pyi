"""Types of the C helper kcpsock._cfbc (source: kcpsock/_cfbc.c).

kcp-go's packet CFB (fixed IV, restarted per packet) and classic crypto
header (16-byte nonce + CRC-32) over a pycryptodome ECB object's block
cipher.  Used through :class:`kcpsock._fastcrypt.NativeCFB`.
"""

from collections.abc import Sequence
from typing import Optional, TypeVar, Union, overload

_Bytes = Union[bytes, bytearray, memoryview]
_T = TypeVar("_T")

#: Packets a batch encrypts side by side (one block cipher call per round).
LANES: int

class CFB:
    """kcp-go's packet CFB over a pycryptodome ECB object's cipher.

    ``CFB(ecb, iv)``: ``ecb`` a pycryptodome ECB-mode cipher object (ctypes
    backend), ``iv`` kcp-go's IV cut to the block size (8 or 16 bytes).
    Raises TypeError or ValueError when ``ecb`` is not usable.
    """

    def __new__(cls, ecb: object, iv: _Bytes) -> CFB: ...
    @property
    def block_size(self) -> int:
        """The block size in bytes (8 or 16)."""
    @property
    def ecb(self) -> object:
        """The ECB object whose cipher is used."""
    def encrypt(self, data: _Bytes, /) -> bytes:
        """One packet, kcp-go ``encrypt``."""
    def decrypt(self, data: _Bytes, /) -> bytes:
        """One packet, kcp-go ``decrypt``."""
    def encrypt_pair(self, head: _Bytes, body: _Bytes, /) -> bytes:
        """``encrypt(head + body)`` without the join."""
    def seal(
        self, nonces: _Bytes, heads: Sequence[_Bytes], bodies: Sequence[_Bytes], /
    ) -> list[bytes]:
        """Packet i: ``encrypt(nonce_i + crc32(head_i + body_i) + head_i + body_i)``."""
    def open(self, packet: _Bytes, /) -> Optional[bytes]:
        """Decrypt and check the CRC: the bytes after the header, or None."""
    @overload
    def open_many(self, packets: Sequence[_Bytes], /) -> list[Optional[bytes]]: ...
    @overload
    def open_many(self, packets: Sequence[_Bytes], bad: _T, /) -> list[Union[bytes, _T]]:
        """:meth:`open` for each packet; ``bad`` (default None) for a bad CRC."""

def crc32(data: _Bytes, /) -> int:
    """zlib's CRC-32 of ``data``, as the module computes it."""
