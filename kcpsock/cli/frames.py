"""A tiny framing used by ``serve``, ``connect``, ``tunnel`` and ``bench``.

KCP has no FIN: a session never learns that its peer finished sending (kcp-go
sessions just time out).  The command-line tools need that signal to carry a
TCP half-close through a tunnel, to end ``connect`` after the echo of its
input, and to end a ``bench`` run, so they frame the byte stream:

    +------+-----------------+-----------------+
    | type | length (3 bytes, big endian)      | payload (length bytes)
    +------+-----------------+-----------------+

Types: DATA (bytes of the stream), FIN (the sender will send no more DATA),
JSON (a control message, UTF-8 JSON object), PING/PONG (bench --rtt).

Invariants: a frame's payload is at most :data:`MAX_PAYLOAD` bytes; frames
are written with ``sendall`` under one lock per writer so frames never
interleave; a reader returns None only at local EOF (the session closed).
"""

from __future__ import annotations

import json
import struct
import threading
from typing import Any, Optional

__all__ = [
    "CHUNK",
    "DATA",
    "ERROR_KEY",
    "FIN",
    "HEADER",
    "JSON",
    "MAX_PAYLOAD",
    "PING",
    "PONG",
    "FrameReader",
    "FrameWriter",
    "ProtocolError",
    "error_frame",
    "error_prefix",
    "parse_error_frame",
]

DATA = 1
FIN = 2
JSON = 3
PING = 4
PONG = 5

HEADER = struct.Struct(">I")
MAX_PAYLOAD = (1 << 24) - 1
#: Chunk size used by the pumps: large enough to amortise per-call costs.
CHUNK = 65536

Frame = tuple[int, bytes]


#: Key of the JSON frame a kcpsock server sends when it fails a session.
ERROR_KEY = "kcpsock_error"


def error_frame(message: str) -> bytes:
    """Return the bytes of the JSON frame that reports a server-side failure.

    ``connect`` recognises it in framed and in ``--raw`` mode (a raw client
    sees it as the first bytes of the stream), so it can exit non-zero with
    the server's one-line reason.
    """
    payload = json.dumps({ERROR_KEY: message}).encode()
    return HEADER.pack((JSON << 24) | len(payload)) + payload


def error_prefix(payload: bytes) -> bytes:
    """Rebuild a JSON frame's bytes from its payload (for :func:`parse_error_frame`)."""
    return HEADER.pack((JSON << 24) | len(payload)) + payload


def parse_error_frame(data: bytes) -> Optional[str]:
    """Return the message if ``data`` starts with a complete :func:`error_frame`."""
    if len(data) < HEADER.size or data[0] != JSON:
        return None
    (word,) = HEADER.unpack_from(data)
    end = HEADER.size + (word & MAX_PAYLOAD)
    if len(data) < end:
        return None
    try:
        obj = json.loads(data[HEADER.size : end])
    except ValueError:
        return None
    if isinstance(obj, dict) and isinstance(obj.get(ERROR_KEY), str):
        return str(obj[ERROR_KEY])
    return None


class ProtocolError(Exception):
    """The peer sent something that is not a frame stream."""


class FrameWriter:
    """Writes frames to a socket-like object with ``sendall``; thread-safe."""

    def __init__(self, sock: Any) -> None:
        """Wrap ``sock`` (anything with ``sendall``)."""
        self._sock = sock
        self._lock = threading.Lock()

    def send(self, kind: int, payload: bytes = b"") -> None:
        """Send one frame.

        Args:
            kind: the frame type.
            payload: its payload (at most MAX_PAYLOAD bytes).

        Raises:
            ValueError: if the payload is too long.
            OSError: from the socket.
        """
        if len(payload) > MAX_PAYLOAD:
            raise ValueError("payload too long for one frame")
        head = HEADER.pack((kind << 24) | len(payload))
        with self._lock:
            if len(payload) <= 4096:
                self._sock.sendall(head + payload)
            else:
                self._sock.sendall(head)
                self._sock.sendall(payload)

    def data(self, payload: bytes) -> None:
        """Send bytes of the stream as DATA frames (nothing for empty bytes)."""
        view = memoryview(payload)
        for start in range(0, len(view), MAX_PAYLOAD):
            self.send(DATA, bytes(view[start : start + MAX_PAYLOAD]))

    def fin(self) -> None:
        """Send FIN: no more DATA from this side."""
        self.send(FIN)

    def json(self, obj: Any) -> None:
        """Send a JSON control frame."""
        self.send(JSON, json.dumps(obj).encode())


class FrameReader:
    """Reads frames from a socket-like object with ``recv``."""

    def __init__(self, sock: Any, bufsize: int = 262144) -> None:
        """Wrap ``sock`` (anything with ``recv``)."""
        self._sock = sock
        self._bufsize = bufsize
        self._buf = bytearray()
        self._pos = 0

    def _fill(self) -> bool:
        chunk = self._sock.recv(self._bufsize)
        if not chunk:
            return False
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += chunk
        return True

    def read(self) -> Optional[Frame]:
        """Return the next (type, payload), or None at local EOF.

        Raises:
            ProtocolError: on an unknown frame type.
            OSError: from the socket (TimeoutError, ConnectionResetError, ...).
        """
        while len(self._buf) - self._pos < HEADER.size:
            if not self._fill():
                return None
            # the type byte alone tells a stranger (e.g. connect --raw) apart
            kind = self._buf[self._pos]
            if kind not in (DATA, FIN, JSON, PING, PONG):
                raise ProtocolError(f"unknown frame type {kind} (is the peer a kcpsock tool?)")
        (word,) = HEADER.unpack_from(self._buf, self._pos)
        kind, length = word >> 24, word & MAX_PAYLOAD
        if kind not in (DATA, FIN, JSON, PING, PONG):
            raise ProtocolError(f"unknown frame type {kind} (is the peer a kcpsock tool?)")
        end = self._pos + HEADER.size + length
        while len(self._buf) < end:
            if not self._fill():
                return None
            end = self._pos + HEADER.size + length
        payload = bytes(self._buf[self._pos + HEADER.size : end])
        self._pos = end
        if self._pos > 1 << 20:
            del self._buf[: self._pos]
            self._pos = 0
        return kind, payload

    def read_json(self) -> Any:
        """Read one frame that must be JSON and return the decoded object.

        Raises:
            ProtocolError: if the next frame is not a JSON frame or EOF came first.
        """
        frame = self.read()
        if frame is None or frame[0] != JSON:
            raise ProtocolError("expected a JSON control frame")
        try:
            return json.loads(frame[1])
        except ValueError as exc:
            raise ProtocolError(f"bad JSON control frame: {exc}") from None
