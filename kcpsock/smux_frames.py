"""smux (xtaci/smux 1.5.16, v1 and v2) as a pure state machine: bytes in, bytes out.

The protocol facts are summarised in docs/KCPTUN.md §2-§5.

kcptun multiplexes TCP connections over one KCP session with smux.  Every
frame starts with an 8-byte little-endian header::

    +---------+-----+--------+-----------+
    | version | cmd | length | stream id |      then `length` bytes (PSH),
    |  1 byte |  1  | 2 (LE) |  4 (LE)   |      or 8 bytes (UPD), or nothing
    +---------+-----+--------+-----------+

    cmd: 0 SYN (open)  1 FIN (close)  2 PSH (data)  3 NOP (keepalive)
         4 UPD (v2 window update: consumed uint32 LE, window uint32 LE)

Receiver rules, exactly as smux's ``recvLoop`` applies them: SYN, FIN and
NOP are the 8 header bytes only (their length field is ignored); PSH carries
``length`` bytes; UPD carries 8 bytes whatever its length field says; a
version byte other than ours, or a cmd above 4, is a protocol error that ends
the session.  SYN for an open id is ignored; PSH, FIN and UPD for an unknown
id are dropped (counted in :attr:`SmuxProtocol.dropped`).

:class:`SmuxProtocol` is one session: no sockets, threads or clocks (time is
passed in as ``now_ms``).  The I/O layer (:mod:`kcpsock.smux`) feeds it the
bytes read from the KCP session with :meth:`~SmuxProtocol.receive_data`,
sends what :meth:`~SmuxProtocol.data_to_send` returns, and calls
:meth:`~SmuxProtocol.handle_timer` at :meth:`~SmuxProtocol.next_timer_ms`.

Invariants:

* Client stream ids are odd (3, 5, ...), server ids even; NOP uses id 0.
* Flow control: v1 has one session-wide token bucket (``max_receive_buffer``
  bytes received but not yet read); while it is exhausted
  :attr:`~SmuxProtocol.reading_paused` tells the I/O layer to stop reading
  (back-pressure through KCP's window, as smux).  v2 adds per-stream windows:
  we send at most ``peer_window`` bytes beyond what the peer reported as
  consumed (initially 262144), and report our own reads with UPD (on the
  first read and after every half ``max_stream_buffer``).
* Buffering is bounded whatever the peer does: frames waiting to be sent are
  at most ``max_send_buffer`` bytes of data (plus small control frames), and
  received data at most ``max_receive_buffer`` plus one read of the I/O layer.
* Each stream's frames leave in the order they were queued (one FIFO).
* Once dead (protocol error, keepalive timeout, :meth:`~SmuxProtocol.terminate`)
  the session stays dead; every stream call raises
  :class:`~kcpsock.errors.KCPConnectionResetError` with the reason.
"""

from __future__ import annotations

import enum
import struct
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Optional

from .errors import KCPClosedError, KCPConnectionResetError, PacketError

__all__ = [
    "HEADER_SIZE",
    "INITIAL_PEER_WINDOW",
    "Changes",
    "Cmd",
    "Frame",
    "FrameParser",
    "SmuxConfig",
    "SmuxProtocol",
    "SmuxProtocolError",
    "encode_frame",
    "encode_update",
]

#: Bytes of a frame header.
HEADER_SIZE = 8
#: The window a v2 sender assumes before the first UPD (smux initialPeerWindow).
INITIAL_PEER_WINDOW = 262144
_HDR = struct.Struct("<BBHI")
_UPD = struct.Struct("<II")
_M32 = 0xFFFFFFFF


class Cmd(enum.IntEnum):
    """Frame commands (smux frame.go)."""

    SYN = 0
    """Open a stream."""
    FIN = 1
    """Close a stream (the sender forgets it; reads at the receiver end in EOF)."""
    PSH = 2
    """Stream data."""
    NOP = 3
    """Keepalive (stream id 0)."""
    UPD = 4
    """v2 window update: bytes consumed and window, uint32 LE each."""


class SmuxProtocolError(PacketError):
    """The peer sent something that is not smux of our version: the session ends."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"smux protocol error: {reason}", "InErrs")


def _int32(value: int) -> int:
    value &= _M32
    return value - (1 << 32) if value & 0x80000000 else value


@dataclass(frozen=True)
class SmuxConfig:
    """Configuration of one smux session (smux ``Config``; defaults are smux's).

    kcptun sets ``max_receive_buffer`` (``--smuxbuf``, default 4194304),
    ``max_stream_buffer`` (``--streambuf``, default 2097152) and the
    keepalive interval (``--keepalive`` seconds, default 10).

    Attributes:
        version: 1 or 2; both ends must use the same.
        keepalive_interval_ms: a NOP is sent this often (ms).
        keepalive_timeout_ms: the session dies when no frame arrived during
            such a period (ms; smux checks every period, at fixed times).
        keepalive_disabled: neither NOPs nor the timeout.
        max_frame_size: most data bytes per PSH frame (1..65535).
        max_receive_buffer: bytes received but not yet read, session-wide,
            before we stop reading the KCP session (smux's token bucket).
        max_stream_buffer: v2: the window advertised per stream (bytes);
            at most ``max_receive_buffer``.
        max_send_buffer: ours: data bytes queued for the KCP session, all
            streams together, before writers block.
        accept_backlog: streams opened by the peer and not yet accepted
            before we stop reading (smux: 1024).
    """

    version: int = 1
    keepalive_interval_ms: int = 10_000
    keepalive_timeout_ms: int = 30_000
    keepalive_disabled: bool = False
    max_frame_size: int = 32768
    max_receive_buffer: int = 4_194_304
    max_stream_buffer: int = 65536
    max_send_buffer: int = 262_144
    accept_backlog: int = 1024

    def __post_init__(self) -> None:
        for name in (
            "version",
            "keepalive_interval_ms",
            "keepalive_timeout_ms",
            "max_frame_size",
            "max_receive_buffer",
            "max_stream_buffer",
            "max_send_buffer",
            "accept_backlog",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, not {type(value).__name__}")
        if self.version not in (1, 2):
            raise ValueError(f"version must be 1 or 2 (smux), not {self.version}")
        if not self.keepalive_disabled:
            if self.keepalive_interval_ms <= 0:
                raise ValueError("keepalive_interval_ms must be positive")
            if self.keepalive_timeout_ms < self.keepalive_interval_ms:
                raise ValueError(
                    "keepalive_timeout_ms must be at least keepalive_interval_ms "
                    f"({self.keepalive_timeout_ms} < {self.keepalive_interval_ms})"
                )
        if not 1 <= self.max_frame_size <= 65535:
            raise ValueError(f"max_frame_size must be 1..65535, not {self.max_frame_size}")
        if self.max_receive_buffer <= 0 or self.max_receive_buffer > 0x7FFFFFFF:
            raise ValueError("max_receive_buffer must be 1..2**31-1")
        if self.max_stream_buffer <= 0:
            raise ValueError("max_stream_buffer must be positive")
        if self.max_stream_buffer > self.max_receive_buffer:
            raise ValueError(
                "max_stream_buffer must not be larger than max_receive_buffer "
                f"({self.max_stream_buffer} > {self.max_receive_buffer})"
            )
        if self.max_send_buffer <= 0:
            raise ValueError("max_send_buffer must be positive")
        if self.accept_backlog <= 0:
            raise ValueError("accept_backlog must be positive")


# ------------------------------------------------------------------ frames


@dataclass(frozen=True)
class Frame:
    """One received frame.

    Attributes:
        cmd: the command.
        sid: the stream id.
        data: PSH payload, or UPD's 8 bytes; b"" otherwise.
    """

    cmd: Cmd
    sid: int
    data: bytes = b""


def encode_frame(version: int, cmd: int, sid: int, data: Any = b"") -> bytes:
    """Return one frame's bytes (header then ``data``).

    Args:
        version: 1 or 2.
        cmd: a :class:`Cmd`.
        sid: the stream id (0..2**32-1).
        data: the payload (PSH: at most 65535 bytes).

    Raises:
        ValueError: a payload longer than 65535 bytes or a bad field.
    """
    if len(data) > 0xFFFF:
        raise ValueError(f"data: a frame carries at most 65535 bytes, not {len(data)}")
    if not 0 <= sid <= _M32:
        raise ValueError(f"sid must be 0..2**32-1, not {sid}")
    return _HDR.pack(version, cmd, len(data), sid) + bytes(data)


def encode_update(version: int, sid: int, consumed: int, window: int) -> bytes:
    """Return a UPD frame: ``consumed`` bytes read so far, ``window`` advertised."""
    return _HDR.pack(version, Cmd.UPD, 8, sid) + _UPD.pack(consumed & _M32, window & _M32)


class FrameParser:
    """Cuts a byte stream into frames by smux's receiver rules (incremental)."""

    def __init__(self, version: int) -> None:
        """Parse frames of ``version`` (1 or 2); any other version byte is an error."""
        self.version = version
        self._buf = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete frame kept for the next :meth:`feed`."""
        return len(self._buf)

    def feed(self, data: Any) -> list[Frame]:
        """Add bytes; return the frames now complete.

        Raises:
            SmuxProtocolError: a wrong version byte or an unknown cmd (the
                frames before it are lost with the session, as in smux).
        """
        buf = self._buf
        buf += data
        frames: list[Frame] = []
        pos = 0
        end = len(buf)
        version = self.version
        while end - pos >= HEADER_SIZE:
            ver, cmd, length, sid = _HDR.unpack_from(buf, pos)
            if ver != version:
                raise SmuxProtocolError(f"version byte {ver}, expected {version} (--smuxver)")
            if cmd == Cmd.PSH:
                size = length
            elif cmd == Cmd.UPD:
                size = 8  # docs/KCPTUN.md §2: 8 bytes whatever the length says
            elif cmd <= Cmd.UPD:
                size = 0  # SYN, FIN, NOP: the length field is ignored
            else:
                raise SmuxProtocolError(f"unknown cmd {cmd}")
            if end - pos - HEADER_SIZE < size:
                break
            start = pos + HEADER_SIZE
            frames.append(Frame(Cmd(cmd), sid, bytes(buf[start : start + size])))
            pos = start + size
        if pos:
            del buf[:pos]
        return frames


# ----------------------------------------------------------------- streams


@dataclass
class _Stream:
    sid: int
    chunks: deque[bytes] = field(default_factory=deque)
    offset: int = 0  # into chunks[0]
    buffered: int = 0
    fin_received: bool = False
    fin_sent: bool = False
    error: Optional[str] = None
    # v2
    num_read: int = 0
    incr: int = 0
    num_written: int = 0
    peer_consumed: int = 0
    peer_window: int = INITIAL_PEER_WINDOW


@dataclass
class Changes:
    """What one call changed, for the I/O layer to wake the right waiters.

    Attributes:
        streams: ids whose readability or writability may have changed.
        accepted: a stream opened by the peer is waiting in the accept queue.
        writable: every writer may proceed (send buffer drained).
        terminated: the session died in this call.
    """

    streams: set[int] = field(default_factory=set)
    accepted: bool = False
    writable: bool = False
    terminated: bool = False


class SmuxProtocol:
    """One smux session, sans I/O.

    Args:
        config: an :class:`SmuxConfig`.
        client: True for the dialing side (odd stream ids), False for the
            accepting side (even).
        now_ms: the current time in ms (starts the keepalive clocks).
    """

    def __init__(self, config: SmuxConfig, *, client: bool, now_ms: int) -> None:
        """Create a session (see the class docstring)."""
        if not isinstance(config, SmuxConfig):
            raise TypeError(f"config must be an SmuxConfig, not {type(config).__name__}")
        self.config = config
        self.client = bool(client)
        self._version = config.version
        self._parser = FrameParser(config.version)
        self._streams: dict[int, _Stream] = {}
        self._accept: deque[int] = deque()
        self._next_sid = 1 if client else 0
        self._go_away = False
        self._out: list[bytes] = []
        self._out_data = 0  # PSH payload bytes in _out
        #: Session token bucket (smux ``bucket``).
        self.bucket = config.max_receive_buffer
        self._data_ready = False
        self._next_ping = now_ms + config.keepalive_interval_ms
        self._next_check = now_ms + config.keepalive_timeout_ms
        #: Why the session died (None while alive).
        self.error: Optional[str] = None
        #: Frames dropped because their stream id is unknown.
        self.dropped = 0
        #: Frames received (any kind).
        self.frames_received = 0

    # ------------------------------------------------------------- state

    @property
    def alive(self) -> bool:
        """False once the session died."""
        return self.error is None

    @property
    def reading_paused(self) -> bool:
        """True while the I/O layer must not read the KCP session (buffers full)."""
        return self.bucket <= 0 or len(self._accept) >= self.config.accept_backlog

    @property
    def stream_ids(self) -> list[int]:
        """Ids of the streams this side has not closed."""
        return list(self._streams)

    def _dead_error(self) -> KCPConnectionResetError:
        return KCPConnectionResetError(f"smux session ended: {self.error}")

    def _check_alive(self) -> None:
        if self.error is not None:
            raise self._dead_error()

    def terminate(self, reason: str) -> Changes:
        """Kill the session (the KCP session died, or we close it).

        Args:
            reason: what every stream call will report from now on.

        Returns:
            Every stream changed, ``terminated`` set (empty if already dead).
        """
        if self.error is not None:
            return Changes()
        self.error = reason
        self._out.clear()
        self._out_data = 0
        return Changes(streams=set(self._streams), accepted=True, writable=True, terminated=True)

    # ------------------------------------------------------------ output

    def _queue(self, frame: bytes) -> None:
        self._out.append(frame)

    @property
    def send_buffered(self) -> int:
        """Data bytes waiting in :meth:`data_to_send`."""
        return self._out_data

    def has_data_to_send(self) -> bool:
        """True when :meth:`data_to_send` would return something."""
        return bool(self._out)

    def data_to_send(self) -> bytes:
        """Take every queued frame, in order, as one bytes object (b"" if none)."""
        if not self._out:
            return b""
        out = b"".join(self._out)
        self._out.clear()
        self._out_data = 0
        return out

    # ------------------------------------------------------------- input

    def receive_data(self, data: Any, now_ms: int) -> Changes:
        """Process bytes read from the KCP session.

        Args:
            data: the next bytes of the (decompressed) byte stream.
            now_ms: the current time in ms.

        Returns:
            What changed.  A protocol error kills the session (see
            :attr:`error`; ``terminated`` is set) instead of raising.
        """
        changes = Changes()
        if self.error is not None:
            return changes
        try:
            frames = self._parser.feed(data)
        except SmuxProtocolError as exc:
            return self.terminate(str(exc))
        if frames:
            self._data_ready = True
            self.frames_received += len(frames)
        streams = self._streams
        for frame in frames:
            cmd = frame.cmd
            sid = frame.sid
            if cmd == Cmd.PSH:
                stream = streams.get(sid)
                if stream is None:
                    self.dropped += 1
                elif frame.data:
                    stream.chunks.append(frame.data)
                    stream.buffered += len(frame.data)
                    self.bucket -= len(frame.data)
                    changes.streams.add(sid)
            elif cmd == Cmd.NOP:
                pass
            elif cmd == Cmd.SYN:
                if sid not in streams:
                    streams[sid] = _Stream(sid)
                    self._accept.append(sid)
                    changes.accepted = True
            elif cmd == Cmd.FIN:
                stream = streams.get(sid)
                if stream is None:
                    self.dropped += 1
                else:
                    stream.fin_received = True
                    changes.streams.add(sid)
            else:  # UPD
                stream = streams.get(sid)
                if stream is None:
                    self.dropped += 1
                else:
                    stream.peer_consumed, stream.peer_window = _UPD.unpack(frame.data)
                    changes.streams.add(sid)
        return changes

    # ------------------------------------------------------------ timers

    def next_timer_ms(self) -> Optional[int]:
        """When :meth:`handle_timer` must run next (None: never)."""
        if self.error is not None or self.config.keepalive_disabled:
            return None
        return min(self._next_ping, self._next_check)

    def handle_timer(self, now_ms: int) -> Changes:
        """Run the keepalive clocks (smux ``keepalive``): NOP, then the timeout check.

        Args:
            now_ms: the current time in ms.

        Returns:
            What changed (``terminated`` after a keepalive timeout).
        """
        if self.error is not None or self.config.keepalive_disabled:
            return Changes()
        cfg = self.config
        if now_ms >= self._next_ping:
            self._queue(_HDR.pack(self._version, Cmd.NOP, 0, 0))
            while self._next_ping <= now_ms:
                self._next_ping += cfg.keepalive_interval_ms
        if now_ms >= self._next_check:
            while self._next_check <= now_ms:
                self._next_check += cfg.keepalive_timeout_ms
            if self._data_ready:
                self._data_ready = False
            elif self.bucket > 0:
                # docs/KCPTUN.md §4: while the bucket is empty we stopped reading
                return self.terminate(
                    f"keepalive timeout (no frame from the peer for {cfg.keepalive_timeout_ms / 1000:g} s)"
                )
        return Changes()

    # ----------------------------------------------------------- streams

    def open_stream(self) -> int:
        """Open a stream (queues SYN) and return its id.

        Raises:
            ConnectionResetError: the session is dead.
            ConnectionRefusedError: stream ids are exhausted (smux
                ``ErrGoAway``): open a new session.
        """
        self._check_alive()
        if self._go_away:
            raise ConnectionRefusedError("smux stream ids exhausted: open a new session")
        sid = (self._next_sid + 2) & _M32
        self._next_sid = sid
        if sid == sid % 2:  # wrapped
            self._go_away = True
            raise ConnectionRefusedError("smux stream ids exhausted: open a new session")
        self._streams[sid] = _Stream(sid)
        self._queue(_HDR.pack(self._version, Cmd.SYN, 0, sid))
        return sid

    def accept_stream(self) -> Optional[int]:
        """Return the id of the oldest stream the peer opened, or None.

        Raises:
            ConnectionResetError: the session is dead.
        """
        self._check_alive()
        while self._accept:
            sid = self._accept.popleft()
            if sid in self._streams:
                return sid
        return None

    @property
    def accept_pending(self) -> int:
        """Streams waiting in the accept queue."""
        return len(self._accept)

    def _get(self, sid: int) -> _Stream:
        self._check_alive()
        stream = self._streams.get(sid)
        if stream is None:
            raise KCPClosedError(f"smux stream {sid} is closed")
        if stream.error is not None:
            raise KCPConnectionResetError(f"smux stream {sid}: {stream.error}")
        return stream

    def readable(self, sid: int) -> bool:
        """True when :meth:`read` would return at once (data, EOF or an error)."""
        if self.error is not None:
            return True
        stream = self._streams.get(sid)
        return stream is None or bool(stream.buffered) or stream.fin_received or bool(stream.error)

    def buffered(self, sid: int) -> int:
        """Bytes received on the stream and not read yet (0 for an unknown id)."""
        stream = self._streams.get(sid)
        return stream.buffered if stream is not None else 0

    def read(self, sid: int, max_bytes: int, *, peek: bool = False) -> Optional[bytes]:
        """Read up to ``max_bytes`` from a stream.

        Args:
            sid: the stream.
            max_bytes: the most bytes to return (> 0).
            peek: return the bytes without consuming them.

        Returns:
            Data; b"" at EOF (the peer's FIN and nothing buffered); None when
            nothing is there yet.

        Raises:
            KCPClosedError: the stream was closed on this side.
            ConnectionResetError: the session or stream died.
        """
        stream = self._get(sid)
        if not stream.buffered:
            return b"" if stream.fin_received else None
        chunks = stream.chunks
        first = chunks[0]
        off = stream.offset
        avail = len(first) - off
        if avail >= max_bytes:
            data = first[off : off + max_bytes]
            if peek:
                return data
            if avail == max_bytes:
                chunks.popleft()
                stream.offset = 0
            else:
                stream.offset = off + max_bytes
        else:
            parts = [first[off:] if off else first]
            got = avail
            index = 1
            while got < max_bytes and index < len(chunks):
                piece = chunks[index]
                take = min(len(piece), max_bytes - got)
                parts.append(piece if take == len(piece) else piece[:take])
                got += take
                index += 1
            data = b"".join(parts)
            if peek:
                return data
            need = len(data)
            while need:
                head = chunks[0]
                left = len(head) - stream.offset
                if left <= need:
                    chunks.popleft()
                    stream.offset = 0
                    need -= left
                else:
                    stream.offset += need
                    need = 0
        n = len(data)
        stream.buffered -= n
        self.bucket += n
        if self._version == 2:
            stream.num_read = (stream.num_read + n) & _M32
            stream.incr += n
            window = self.config.max_stream_buffer
            if stream.incr >= window // 2 or stream.num_read == n:
                self._queue(encode_update(self._version, sid, stream.num_read, window))
                stream.incr = 0
        return data

    def _window(self, stream: _Stream) -> int:
        """v2: bytes the peer's window allows now (may be <= 0)."""
        inflight = _int32(stream.num_written - stream.peer_consumed)
        if inflight < 0:
            stream.error = "the peer reports more bytes consumed than were sent (ErrConsumed)"
            raise KCPConnectionResetError(f"smux stream {stream.sid}: {stream.error}")
        return _int32(stream.peer_window) - inflight

    def writable(self, sid: int) -> bool:
        """True when :meth:`write` would take at least one byte (or raise)."""
        if self.error is not None:
            return True
        stream = self._streams.get(sid)
        if stream is None or stream.error or stream.fin_sent:
            return True
        if self._out_data >= self.config.max_send_buffer:
            return False
        if self._version == 2:
            inflight = _int32(stream.num_written - stream.peer_consumed)
            return inflight < 0 or _int32(stream.peer_window) - inflight > 0 or stream.fin_received
        return True

    def write(self, sid: int, data: Any) -> int:
        """Queue stream data as PSH frames; return how many bytes were taken.

        Takes at most what the send buffer (and in v2 the peer's window)
        allows; 0 means "wait for :meth:`writable`".

        Args:
            sid: the stream.
            data: a bytes-like object.

        Raises:
            KCPClosedError: the stream was closed on this side.
            BrokenPipeError: ``shutdown`` for writing, or (v2) the peer closed
                the stream and its window is exhausted.
            ConnectionResetError: the session or stream died.
        """
        stream = self._get(sid)
        if stream.fin_sent:
            raise BrokenPipeError(f"smux stream {sid} was shut down for writing")
        view = memoryview(data).cast("B")
        room = self.config.max_send_buffer - self._out_data
        if room <= 0 or not len(view):
            return 0
        n = min(len(view), room)
        if self._version == 2:
            window = self._window(stream)
            if window <= 0:
                if stream.fin_received:  # no UPD will ever come (smux: io.EOF)
                    raise BrokenPipeError(f"smux stream {sid}: the peer closed it")
                return 0
            n = min(n, window)
            stream.num_written = (stream.num_written + n) & _M32
        size = self.config.max_frame_size
        version = self._version
        out = self._out
        for start in range(0, n, size):
            piece = view[start : min(start + size, n)]
            out.append(_HDR.pack(version, Cmd.PSH, len(piece), sid) + piece.tobytes())
        self._out_data += n
        return n

    def shutdown_write(self, sid: int) -> None:
        """Send FIN but keep the stream for reading (no-op if FIN was sent).

        A Go smux peer forgets the stream on FIN, so against it this is a
        close; a kcpsock peer keeps sending until it closes too.

        Raises:
            KCPClosedError: the stream was closed on this side.
            ConnectionResetError: the session is dead.
        """
        stream = self._get(sid)
        if not stream.fin_sent:
            stream.fin_sent = True
            self._queue(_HDR.pack(self._version, Cmd.FIN, 0, sid))

    def close_stream(self, sid: int) -> Changes:
        """Close a stream: FIN (once) and forget it; unread bytes return to the bucket.

        Idempotent; after the session died it only forgets the stream.

        Returns:
            What changed (the bucket may have refilled).
        """
        stream = self._streams.pop(sid, None)
        if stream is None:
            return Changes()
        if self.error is None and not stream.fin_sent:
            stream.fin_sent = True
            self._queue(_HDR.pack(self._version, Cmd.FIN, 0, sid))
        self.bucket += stream.buffered
        stream.buffered = 0
        stream.chunks.clear()
        return Changes(streams={sid})

    def describe(self, sid: int) -> str:
        """A short state word for a stream's repr ("open", "eof", "closed", ...)."""
        if self.error is not None:
            return "dead"
        stream = self._streams.get(sid)
        if stream is None:
            return "closed"
        if stream.error:
            return "reset"
        if stream.fin_received and stream.fin_sent:
            return "finished"
        if stream.fin_received:
            return "eof"
        if stream.fin_sent:
            return "write-shut"
        return "open"
