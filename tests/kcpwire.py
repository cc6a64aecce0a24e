"""Test helpers: encode and decode KCP segments independently of the KCP core.

The core parses datagrams itself (``KCP.input``); these helpers let tests
build forged or exact datagrams and read what the core emitted.
"""

from __future__ import annotations

import copy
from typing import NamedTuple

from kcpsock.errors import PacketError
from kcpsock.kcp import ACKED, DATA, FASTACK, FRG, RESENDTS, RTO, SN, TS, XMIT, Segment
from kcpsock.segment import HEADER, OVERHEAD, Command
from tests.fields import data_fields

_COMMANDS = frozenset(int(c) for c in Command)


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


def encode_segment(
    conv: int, cmd: int, frg: int, wnd: int, ts: int, sn: int, una: int, data: bytes = b""
) -> bytes:
    """Encode one segment (header + payload).

    Raises:
        struct.error: if a field is out of range.
    """
    return HEADER.pack(conv, cmd, frg, wnd, ts, sn, una, len(data)) + bytes(data)


def decode_segments(datagram: bytes) -> list[tuple[Header, bytes]]:
    """Decode every segment of a datagram as kcp-go's ``Input`` parses it.

    A trailing remainder shorter than 24 bytes is ignored (as kcp-go does).

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
        if hdr.cmd not in _COMMANDS:
            raise PacketError(f"unknown KCP command {hdr.cmd}", "KCPInErrors")
        out.append((hdr, bytes(datagram[off : off + hdr.length])))
        off += hdr.length
    return out


def seg_fields(seg: Segment) -> tuple[object, ...]:
    """Every field of a send-buffer segment, payload as bytes (for comparisons)."""
    return (
        seg[SN],
        seg[FRG],
        bytes(seg[DATA]),
        seg[TS],
        seg[RTO],
        seg[XMIT],
        seg[RESENDTS],
        seg[FASTACK],
        seg[ACKED],
    )


def kcp_state(k: object) -> dict[str, object]:
    """A comparable snapshot of every field of a KCP object (segments by field, payloads as bytes)."""
    snap: dict[str, object] = {}
    for name, value in data_fields(k).items():
        if name in ("snd_buf", "_inflight"):
            snap[name] = [seg_fields(s) for s in value]
        elif name == "_fastcand":
            snap[name] = {sn: seg_fields(s) for sn, s in value.items()}
        elif name in ("snd_queue", "rcv_queue"):
            snap[name] = [(f, bytes(d)) for f, d in value]
        elif name == "rcv_buf":
            snap[name] = {sn: (f, bytes(d)) for sn, (f, d) in value.items()}
        else:
            snap[name] = copy.copy(value)
    return snap
