"""The KCP wire constants: the 24-byte segment header, the commands, uint32 time.

This module is the single source of the header layout, its size, the command
numbers and the signed 32-bit difference every other module uses.

Layout (all integers little-endian, unsigned; kcp-go ``segment.encode``;
docs/KCP.md)::

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
from typing import Final

__all__ = [
    "CMD_ACK",
    "CMD_PUSH",
    "CMD_WASK",
    "CMD_WINS",
    "HEADER",
    "OVERHEAD",
    "SN_OFFSET",
    "U32",
    "Command",
    "timediff",
]

#: Size of the segment header in bytes (kcp-go ``IKCP_OVERHEAD``).
OVERHEAD: Final = 24
#: Offset of ``sn`` inside the header (kcp-go ``IKCP_SN_OFFSET``).
SN_OFFSET: Final = 12
#: Mask of a uint32.
U32: Final = 0xFFFFFFFF

#: conv, cmd, frg, wnd, ts, sn, una, len.
HEADER: Final = struct.Struct("<IBBHIIII")


class Command(enum.IntEnum):
    """The four KCP commands (kcp-go ``IKCP_CMD_*``)."""

    PUSH = 81
    ACK = 82
    WASK = 83
    WINS = 84


# Plain-int copies of the commands for hot paths (an IntEnum member costs an
# attribute lookup and an enum comparison per use).
#: :attr:`Command.PUSH` as an int: data.
CMD_PUSH: Final = 81
#: :attr:`Command.ACK` as an int: acknowledgement of one sn.
CMD_ACK: Final = 82
#: :attr:`Command.WASK` as an int: window probe (ask).
CMD_WASK: Final = 83
#: :attr:`Command.WINS` as an int: window size (tell).
CMD_WINS: Final = 84

assert tuple(Command) == (CMD_PUSH, CMD_ACK, CMD_WASK, CMD_WINS)


def timediff(later: int, earlier: int) -> int:
    """Signed 32-bit difference ``later - earlier`` (kcp-go ``_itimediff``).

    Args:
        later: a uint32 (larger values are reduced mod 2**32).
        earlier: a uint32.

    Returns:
        The difference as a signed int in [-2**31, 2**31).
    """
    return ((later - earlier + 0x80000000) & U32) - 0x80000000
