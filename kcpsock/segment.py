"""The 24-byte KCP segment header and wrapping uint32 arithmetic.

Layout (all integers little-endian, unsigned; kcp-go ``segment.encode``)::

    0      4     5     6      8      12     16     20     24
    | conv | cmd | frg | wnd  |  ts  |  sn  | una  | len  | data (len bytes) ...

Invariants:
- :data:`HEADER` is the one precompiled :class:`struct.Struct` for the header;
  every encoder and decoder in kcpsock uses it.
- Sequence numbers and timestamps are uint32 and wrap; "later" is decided by
  the signed 32-bit difference (:func:`timediff`), never by ``<`` on raw values.
- This module is pure: no I/O, no clock.
"""

from __future__ import annotations

import enum
import struct
from typing import NamedTuple

from .errors import PacketError

__all__ = [
    "HEADER",
    "OVERHEAD",
    "SN_OFFSET",
    "U32",
    "Command",
    "Header",
    "decode_segments",
    "encode_segment",
    "timediff",
    "u32",
]

#: Size of the segment header in bytes (kcp-go ``IKCP_OVERHEAD``).
OVERHEAD = 24
#: Offset of ``sn`` inside the header (kcp-go ``IKCP_SN_OFFSET``).
SN_OFFSET = 12
#: Mask of a uint32.
U32 = 0xFFFFFFFF

#: conv, cmd, frg, wnd, ts, sn, una, len.
HEADER = struct.Struct("<IBBHIIII")


class Command(enum.IntEnum):
    """The four KCP commands (kcp-go ``IKCP_CMD_*``)."""

    PUSH = 81
    ACK = 82
    WASK = 83
    WINS = 84


class Header(NamedTuple):
    """One decoded segment header (the payload length is ``length``)."""

    conv: int
    cmd: int
    frg: int
    wnd: int
    ts: int
    sn: int
    una: int
    length: int


def u32(value: int) -> int:
    """Reduce ``value`` modulo 2**32.

    Args:
        value: any int.

    Returns:
        ``value & 0xFFFFFFFF``.
    """
    return value & U32


def timediff(later: int, earlier: int) -> int:
    """Signed 32-bit difference ``later - earlier`` (kcp-go ``_itimediff``).

    Args:
        later: a uint32 (larger values are reduced mod 2**32).
        earlier: a uint32.

    Returns:
        The difference as a signed int in [-2**31, 2**31).
    """
    return ((later - earlier + 0x80000000) & U32) - 0x80000000


def encode_segment(
    conv: int, cmd: int, frg: int, wnd: int, ts: int, sn: int, una: int, data: bytes = b""
) -> bytes:
    """Encode one segment (header + payload).

    Args:
        conv: conversation id (uint32).
        cmd: command (81..84).
        frg: fragment countdown (0..255).
        wnd: window (0..65535).
        ts: timestamp (uint32).
        sn: sequence number (uint32).
        una: cumulative ack (uint32).
        data: payload.

    Returns:
        The encoded bytes.

    Raises:
        struct.error: if a field is out of range.
    """
    return HEADER.pack(conv, cmd, frg, wnd, ts, sn, una, len(data)) + bytes(data)


def decode_segments(datagram: bytes) -> list[tuple[Header, bytes]]:
    """Decode every segment of a datagram exactly as kcp-go's ``Input`` parses it.

    A trailing remainder shorter than 24 bytes is ignored (as kcp-go does).

    Args:
        datagram: one KCP datagram.

    Returns:
        A list of (header, payload).

    Raises:
        PacketError: shorter than 24 bytes, truncated payload, or unknown command.
    """
    n = len(datagram)
    if n < OVERHEAD:
        raise PacketError(
            f"KCP datagram of {n} bytes is shorter than the 24-byte header", "KCPInErrors"
        )
    out: list[tuple[Header, bytes]] = []
    off = 0
    while n - off >= OVERHEAD:
        hdr = Header(*HEADER.unpack_from(datagram, off))
        off += OVERHEAD
        if n - off < hdr.length:
            raise PacketError(
                f"KCP segment claims {hdr.length} payload bytes, {n - off} present", "KCPInErrors"
            )
        if not 81 <= hdr.cmd <= 84:
            raise PacketError(f"unknown KCP command {hdr.cmd}", "KCPInErrors")
        out.append((hdr, bytes(datagram[off : off + hdr.length])))
        off += hdr.length
    return out
