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
#: ``seal``: an int head is an FEC header's tag; this + a seqid is a parity packet's.
PARITY_TAG: int

class CFB:
    """kcp-go's packet CFB over a pycryptodome ECB object's cipher.

    ``CFB(ecb, iv, key=b"")``: ``ecb`` a pycryptodome ECB-mode cipher object
    (ctypes backend), ``iv`` kcp-go's IV cut to the block size (8 or 16
    bytes), ``key`` optionally ``ecb``'s key: for AES on a CPU with AES-NI
    the CFB chains of encryption then run on the module's own AES-NI code
    (:attr:`aesni`), once it has encrypted test packets exactly as ``ecb``.
    Raises TypeError or ValueError when ``ecb`` is not usable.
    """

    def __new__(cls, ecb: object, iv: _Bytes, key: _Bytes = ...) -> CFB: ...
    @property
    def aesni(self) -> bool:
        """True if encryption runs on the module's own AES-NI code (else pycryptodome's cipher)."""
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
        self, nonces: _Bytes, heads: Sequence[Union[_Bytes, int]], bodies: Sequence[_Bytes], /
    ) -> list[bytes]:
        """Packet i: ``encrypt(nonce_i + crc32(head_i + body_i) + head_i + body_i)``.

        An int ``head_i`` is an FEC header's tag: a seqid (< 2**32) for a data
        packet's 8-byte header (type 0xF1, size 2 + ``len(body_i)``),
        :data:`PARITY_TAG` + a seqid for a parity packet's 6-byte header.
        """
    def open(self, packet: _Bytes, /) -> Optional[bytes]:
        """Decrypt and check the CRC: the bytes after the header, or None."""
    @overload
    def open_many(self, packets: Sequence[_Bytes], /) -> list[Optional[bytes]]: ...
    @overload
    def open_many(self, packets: Sequence[_Bytes], bad: _T, /) -> list[Union[bytes, _T]]:
        """:meth:`open` for each packet; ``bad`` (default None) for a bad CRC."""

def crc32(data: _Bytes, /) -> int:
    """zlib's CRC-32 of ``data``, as the module computes it."""
