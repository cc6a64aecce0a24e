"""Snappy's framing format, as kcptun compresses the KCP byte stream (pure).

The format is summarised in docs/KCPTUN.md §6.

kcptun (``--nocomp`` absent) wraps each direction of the KCP byte stream in
golang/snappy's framing format (google/snappy ``framing_format.txt``)::

    stream   = identifier chunk, then chunks
    chunk    = type (1 byte) | length (3 bytes, LE) | body (length bytes)
    0xff     stream identifier, body b"sNaPpY" (first; repeats are allowed)
    0x00     compressed:   masked CRC32C (4 bytes LE) | snappy block
    0x01     uncompressed: masked CRC32C (4 bytes LE) | raw data
    0xfe, 0x80-0xfd   skipped;   0x02-0x7f   unsupported (an error)

The CRC is CRC-32C (Castagnoli) of the *uncompressed* data, masked as
``((crc >> 15) | (crc << 17)) + 0xa282ead8``.  A chunk carries at most 65536
bytes of data; a body longer than 76494 bytes is refused (golang/snappy's
buffer size).

With the optional extra (``pip install kcpsock[kcptun]``) cramjam's Rust
codec does the work at hundreds of MB/s.  Without it this module still
interoperates: :class:`FrameEncoder` writes uncompressed chunks (valid for
every reader) and :class:`FrameDecoder` decodes compressed ones with a small
pure-Python block decoder; both then run at the speed of the pure-Python
CRC-32C (about 5-10 MB/s here).  ``KCPSOCK_NO_CRAMJAM=1`` in the environment
forces the fallback (the tests use it to prove it interoperates).

Invariants: no I/O; a decoder that raised :class:`SnappyError` stays failed
(every later call raises the same error), as golang/snappy's Reader; the
output of :meth:`FrameDecoder.feed` is a byte stream (chunk boundaries mean
nothing to the layer above).
"""

from __future__ import annotations

import importlib
import os
import struct
from typing import Any, Optional

from .errors import PacketError

__all__ = [
    "HAVE_CRAMJAM",
    "MAX_BLOCK",
    "MAX_CHUNK_BODY",
    "STREAM_IDENTIFIER",
    "FrameDecoder",
    "FrameEncoder",
    "SnappyError",
    "crc32c",
    "decode_block",
    "masked_crc32c",
]

_cramjam_snappy: Any = None
if os.environ.get("KCPSOCK_NO_CRAMJAM", "") in ("", "0"):
    try:  # the optional extra: kcpsock[kcptun]
        _cramjam_snappy = importlib.import_module("cramjam").snappy
    except ImportError:  # pragma: no cover - depends on the environment
        pass

#: True when cramjam is importable (the fast path).
HAVE_CRAMJAM = _cramjam_snappy is not None

#: The stream identifier chunk, written once per direction before any other.
STREAM_IDENTIFIER = b"\xff\x06\x00\x00sNaPpY"
#: Most uncompressed bytes in one chunk (golang/snappy maxBlockSize).
MAX_BLOCK = 65536
#: Longest chunk body accepted (golang/snappy: MaxEncodedLen(65536) + 4).
MAX_CHUNK_BODY = 76494

_COMPRESSED = 0x00
_UNCOMPRESSED = 0x01
_IDENTIFIER = 0xFF
_MASK_DELTA = 0xA282EAD8
_M32 = 0xFFFFFFFF
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


class SnappyError(PacketError):
    """The snappy stream is corrupt (bad CRC, bad length, unknown chunk type)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"snappy stream corrupt: {reason}", "InErrs")


# ----------------------------------------------------------------- CRC-32C


def _crc_tables() -> list[list[int]]:
    """Slicing-by-8 tables of CRC-32C (reflected polynomial 0x82F63B78)."""
    base = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        base.append(c)
    tables = [base]
    for _ in range(7):
        prev = tables[-1]
        tables.append([(v >> 8) ^ base[v & 0xFF] for v in prev])
    return tables


_T = _crc_tables()


def crc32c(data: Any, crc: int = 0) -> int:
    """Return the CRC-32C (Castagnoli) of ``data``, continuing from ``crc``.

    Pure Python, eight bytes per step (slicing-by-8): about 10 MB/s.

    Args:
        data: a bytes-like object.
        crc: the CRC of the preceding data (0 to start).

    Returns:
        The CRC as an unsigned 32-bit int (``crc32c(b"123456789") == 0xE3069283``).
    """
    t0, t1, t2, t3, t4, t5, t6, t7 = _T
    crc ^= _M32
    view = memoryview(data).cast("B")
    whole = len(view) & ~7
    if whole:
        for (q,) in _U64.iter_unpack(view[:whole]):
            q ^= crc
            crc = (
                t7[q & 0xFF]
                ^ t6[(q >> 8) & 0xFF]
                ^ t5[(q >> 16) & 0xFF]
                ^ t4[(q >> 24) & 0xFF]
                ^ t3[(q >> 32) & 0xFF]
                ^ t2[(q >> 40) & 0xFF]
                ^ t1[(q >> 48) & 0xFF]
                ^ t0[q >> 56]
            )
    for b in view[whole:]:
        crc = t0[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ _M32


def masked_crc32c(data: Any) -> int:
    """Return snappy's masked CRC-32C of ``data`` (framing_format.txt section 3)."""
    crc = crc32c(data)
    return ((((crc >> 15) | (crc << 17)) & _M32) + _MASK_DELTA) & _M32


# ------------------------------------------------------------ block format


def _varint(buf: Any, pos: int, end: int) -> tuple[int, int]:
    """Read the block's uncompressed-length varint (at most 5 bytes, < 2**32)."""
    value = 0
    shift = 0
    while True:
        if pos >= end or shift > 28:
            raise SnappyError("bad block length varint")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            if value > _M32:
                raise SnappyError("block length out of range")
            return value, pos
        shift += 7


def decode_block(block: Any, limit: int = MAX_BLOCK) -> bytes:
    """Decode one raw snappy block (pure Python).

    Args:
        block: the compressed block (varint length, then literals and copies).
        limit: the largest decoded length accepted.

    Returns:
        The decoded bytes.

    Raises:
        SnappyError: a malformed block, a copy reaching before the start, or
            a decoded length above ``limit`` or different from the header's.
    """
    src = memoryview(block).cast("B")
    end = len(src)
    n, pos = _varint(src, 0, end)
    if n > limit:
        raise SnappyError(f"decoded length {n} above {limit}")
    out = bytearray()
    while pos < end:
        tag = src[pos]
        kind = tag & 3
        if kind == 0:  # literal
            length = tag >> 2
            pos += 1
            if length >= 60:
                extra = length - 59
                if pos + extra > end:
                    raise SnappyError("truncated literal length")
                length = int.from_bytes(src[pos : pos + extra], "little")
                pos += extra
            length += 1
            if pos + length > end:
                raise SnappyError("literal runs past the block")
            out += src[pos : pos + length]
            pos += length
        else:
            if kind == 1:  # copy with 1-byte offset
                if pos + 2 > end:
                    raise SnappyError("truncated copy")
                length = 4 + ((tag >> 2) & 7)
                offset = ((tag & 0xE0) << 3) | src[pos + 1]
                pos += 2
            elif kind == 2:  # copy with 2-byte offset
                if pos + 3 > end:
                    raise SnappyError("truncated copy")
                length = 1 + (tag >> 2)
                offset = src[pos + 1] | (src[pos + 2] << 8)
                pos += 3
            else:  # copy with 4-byte offset
                if pos + 5 > end:
                    raise SnappyError("truncated copy")
                length = 1 + (tag >> 2)
                offset = int.from_bytes(src[pos + 1 : pos + 5], "little")
                pos += 5
            have = len(out)
            if offset <= 0 or offset > have:
                raise SnappyError("copy offset out of range")
            if len(out) + length > n:
                raise SnappyError("copy runs past the decoded length")
            start = have - offset
            if offset >= length:
                out += out[start : start + length]
            else:  # overlapping: the pattern of `offset` bytes repeats
                pattern = bytes(out[start:have])
                reps, rest = divmod(length, offset)
                out += pattern * reps + pattern[:rest]
        if len(out) > n:
            raise SnappyError("block decodes past its length")
    if len(out) != n:
        raise SnappyError(f"block decodes to {len(out)} bytes, header says {n}")
    return bytes(out)


# ----------------------------------------------------------------- framing


class FrameEncoder:
    """One direction's snappy framing writer (golang/snappy ``BufferedWriter``).

    Each :meth:`encode` call returns whole chunks (the stream identifier
    first, once); any reader may treat them as one byte stream.
    """

    def __init__(self, *, compress: Optional[bool] = None) -> None:
        """Create a writer.

        Args:
            compress: True to compress (needs cramjam), False to write
                uncompressed chunks only, None (default): compress if cramjam
                is installed.

        Raises:
            ValueError: ``compress=True`` without cramjam.
        """
        if compress is None:
            compress = HAVE_CRAMJAM
        if compress and not HAVE_CRAMJAM:
            raise ValueError("compress=True needs cramjam: pip install 'kcpsock[kcptun]'")
        self.compress = bool(compress)
        self._started = False

    def encode(self, data: Any) -> bytes:
        """Return the chunks carrying ``data`` (nothing but a header for b"").

        Args:
            data: a bytes-like object, any length (cut into 64 KiB chunks).

        Returns:
            The framed bytes.
        """
        view = memoryview(data).cast("B")
        head = b""
        if not self._started:
            self._started = True
            head = STREAM_IDENTIFIER
        if self.compress and _cramjam_snappy is not None:
            if not len(view):
                return head
            out = _cramjam_snappy.compress(view)
            # cramjam writes a whole stream: drop its identifier (ours is above).
            return head + memoryview(out)[len(STREAM_IDENTIFIER) :].tobytes()
        parts = [head] if head else []
        for start in range(0, len(view), MAX_BLOCK):
            piece = view[start : start + MAX_BLOCK]
            parts.append(
                bytes((_UNCOMPRESSED,))
                + (len(piece) + 4).to_bytes(3, "little")
                + _U32.pack(masked_crc32c(piece))
            )
            parts.append(piece.tobytes())
        return b"".join(parts)


class FrameDecoder:
    """One direction's snappy framing reader (golang/snappy ``Reader``), incremental.

    Feed it the bytes of the stream as they arrive; it returns the decoded
    bytes of every complete chunk and keeps the incomplete tail.
    """

    def __init__(self, *, use_cramjam: Optional[bool] = None) -> None:
        """Create a reader.

        Args:
            use_cramjam: None (default): cramjam if installed; False: the
                pure-Python path (tests compare both).

        Raises:
            ValueError: ``use_cramjam=True`` without cramjam.
        """
        if use_cramjam is None:
            use_cramjam = HAVE_CRAMJAM
        if use_cramjam and not HAVE_CRAMJAM:
            raise ValueError("use_cramjam=True needs cramjam: pip install 'kcpsock[kcptun]'")
        self._fast = bool(use_cramjam)
        self._buf = bytearray()
        self._seen_identifier = False
        self._error: Optional[SnappyError] = None
        #: Chunks decoded so far (data chunks only).
        self.chunks = 0

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete chunk kept for the next :meth:`feed`."""
        return len(self._buf)

    def feed(self, data: Any) -> bytes:
        """Add stream bytes; return the data of every chunk now complete.

        Args:
            data: the next bytes of the stream (any split).

        Returns:
            The decoded bytes (possibly b"").

        Raises:
            SnappyError: the stream is corrupt; the decoder stays failed.
        """
        if self._error is not None:
            raise self._error
        if self._buf:
            self._buf += data
            stream = bytes(self._buf)
        else:
            stream = bytes(data)
        try:
            out, used = self._drain(stream)
        except SnappyError as exc:
            self._error = exc
            self._buf = bytearray()
            raise
        self._buf = bytearray(memoryview(stream)[used:])
        return out

    def _drain(self, buf: bytes) -> tuple[bytes, int]:
        """Decode the whole chunks at the start of ``buf``; return (data, bytes used)."""
        total = len(buf)
        pos = 0
        out: list[bytes] = []
        batch: list[bytes] = []  # whole data chunks for one cramjam call
        while total - pos >= 4:
            kind = buf[pos]
            length = buf[pos + 1] | (buf[pos + 2] << 8) | (buf[pos + 3] << 16)
            if not self._seen_identifier and kind != _IDENTIFIER:
                raise SnappyError(f"chunk type {kind:#04x} before the stream identifier")
            if length > MAX_CHUNK_BODY:
                raise SnappyError(f"chunk of {length} bytes (most {MAX_CHUNK_BODY})")
            if 0x02 <= kind <= 0x7F:
                raise SnappyError(f"unsupported chunk type {kind:#04x}")
            if total - pos - 4 < length:
                break  # incomplete: wait for more
            if kind == _IDENTIFIER:
                if buf[pos + 4 : pos + 4 + length] != b"sNaPpY":
                    raise SnappyError("bad stream identifier")
                self._seen_identifier = True
            elif kind in (_COMPRESSED, _UNCOMPRESSED):
                if length < 4:
                    raise SnappyError("data chunk shorter than its checksum")
                self.chunks += 1
                body = buf[pos + 4 : pos + 4 + length]
                if self._fast:
                    self._check_size(kind, body)
                    batch.append(buf[pos : pos + 4 + length])
                else:
                    out.append(self._decode_chunk(kind, body))
            # else: padding (0xfe) or reserved skippable (0x80-0xfd)
            pos += 4 + length
        if batch:
            out.append(self._decode_batch(batch))
        return b"".join(out), pos

    @staticmethod
    def _check_size(kind: int, body: Any) -> None:
        if kind == _UNCOMPRESSED:
            if len(body) - 4 > MAX_BLOCK:
                raise SnappyError(f"uncompressed chunk of {len(body) - 4} bytes")
        else:
            n, _ = _varint(body, 4, len(body))
            if n > MAX_BLOCK:
                raise SnappyError(f"compressed chunk decodes to {n} bytes")

    @staticmethod
    def _decode_chunk(kind: int, body: Any) -> bytes:
        (expected,) = _U32.unpack_from(body, 0)
        if kind == _UNCOMPRESSED:
            data = bytes(body[4:])
            if len(data) > MAX_BLOCK:
                raise SnappyError(f"uncompressed chunk of {len(data)} bytes")
        else:
            data = decode_block(body[4:])
        if masked_crc32c(data) != expected:
            raise SnappyError("checksum mismatch")
        return data

    @staticmethod
    def _decode_batch(batch: list[Any]) -> bytes:
        assert _cramjam_snappy is not None
        stream = b"".join([STREAM_IDENTIFIER, *batch])
        try:
            return bytes(_cramjam_snappy.decompress(stream))
        except Exception as exc:  # cramjam.DecompressionError: CRC or block
            raise SnappyError(str(exc) or type(exc).__name__) from None
