"""smux streams over a KCP session: many socket-like streams on one ``KCPSocket``.

This is kcptun's multiplexer (xtaci/smux 1.5.16, protocol v1 or v2; see
docs/KCPTUN.md), so a
session here talks to kcptun and to any Go program using smux.  Each stream
behaves like a connected TCP ``socket.socket``: ``recv``/``recv_into``/
``send``/``sendall``, timeouts, ``makefile``, ``fileno`` for ``select``/
``selectors``, ``close`` (sends FIN), ``recv`` returning b"" after the
peer's FIN, context manager::

    import kcpsock, kcpsock.smux
    mux = kcpsock.smux.client(kcpsock.dial(("127.0.0.1", 29900)))
    with mux.open_stream() as stream:
        stream.sendall(b"hello")
        print(stream.recv(1024))

    # the other side
    conn, _ = listener.accept()
    mux = kcpsock.smux.server(conn)
    stream = mux.accept_stream()

``compress=True`` adds kcptun's snappy framing of the whole byte stream (its
default; ``--nocomp`` turns it off), fast with ``pip install kcpsock[kcptun]``.

Threads: one reader (KCP -> snappy -> :class:`~kcpsock.smux_frames.SmuxProtocol`)
and one writer (queued frames -> snappy -> KCP, and the keepalive clock) per
session; user threads block on per-stream conditions.  All protocol state is
in the pure :class:`~kcpsock.smux_frames.SmuxProtocol`, under one lock.

Invariants:

* nothing blocking runs under the session lock; the KCP socket is only
  read by the reader thread and only written by the writer thread;
* a dead KCP session, a protocol or snappy error, or a keepalive timeout
  ends every stream: their calls raise ``ConnectionResetError`` naming the
  reason, and the KCP socket is closed;
* threads never die on bad input: every error ends the session instead.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import weakref
from typing import Any, Optional

from .errors import KCPBlockingIOError, KCPClosedError, KCPTimeoutError
from .session import byte_view, wait_deadline
from .smux_frames import Changes, SmuxConfig, SmuxProtocol
from .snappy import FrameDecoder, FrameEncoder, SnappyError
from .sock import (
    SocketTimeouts,
    check_file_mode,
    check_how,
    check_timeout,
    make_file,
    park_at_exit,
    timeout_deadline,
)
from .transport import Signal

__all__ = ["SmuxSession", "SmuxStream", "client", "server"]

_log = logging.getLogger("kcpsock.smux")

_MSG_DONTWAIT = int(getattr(socket, "MSG_DONTWAIT", 0x40))
_MSG_PEEK = int(socket.MSG_PEEK)
#: Bytes asked of the KCP socket per read.
_READ_SIZE = 65536
#: Longest block in one KCP socket call of the session's threads (s).
_POLL_S = 1.0
#: How long close() lets the writer flush queued frames (FINs) before closing KCP.
_CLOSE_FLUSH_S = 2.0


def _now_ms() -> int:
    return int(time.monotonic() * 1000)


class SmuxStream(SocketTimeouts):
    """One smux stream with the interface of a connected TCP ``socket.socket``.

    Obtain streams from :meth:`SmuxSession.open_stream` and
    :meth:`SmuxSession.accept_stream`.  ``close`` sends FIN; after the
    peer's FIN, ``recv`` returns what is buffered, then b"".  Timeouts
    follow the socket module (default ``socket.getdefaulttimeout()``).
    """

    def __init__(self, session: SmuxSession, sid: int) -> None:
        """Wrap stream ``sid`` of ``session`` (internal)."""
        self._session = session
        self._sid = sid
        self._cond = threading.Condition(session._lock)
        self._timeout: Optional[float] = socket.getdefaulttimeout()
        self._closed = False
        self._real_closed = False
        self._rd_shut = False
        self._io_refs = 0
        self._readiness: Optional[Signal] = None
        self.family = session._sock.family
        self.type = socket.SOCK_STREAM
        self.proto = 0

    # -------------------------------------------------------------- basics

    @property
    def id(self) -> int:
        """The smux stream id (odd: opened by the client side)."""
        return self._sid

    @property
    def session(self) -> SmuxSession:
        """The :class:`SmuxSession` this stream belongs to."""
        return self._session

    def _check_open(self) -> None:
        if self._real_closed:
            raise KCPClosedError()

    # ---------------------------------------------------------------- data

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        """Receive up to ``bufsize`` bytes (``socket.recv``).

        Args:
            bufsize: the most bytes to return (>= 0).
            flags: 0, ``socket.MSG_DONTWAIT`` and/or ``socket.MSG_PEEK``.

        Returns:
            Data; b"" after the peer's FIN (once the buffered data is read)
            or after ``shutdown(SHUT_RD)``.

        Raises:
            TimeoutError, BlockingIOError: nothing arrived in time.
            ConnectionResetError: the smux or KCP session died (the message
                says why).
            OSError: EBADF after close.
            ValueError, TypeError: bad arguments.
        """
        if isinstance(bufsize, bool) or not isinstance(bufsize, int):
            raise TypeError(f"bufsize must be an int, not {type(bufsize).__name__}")
        if bufsize < 0:
            raise ValueError("bufsize must be >= 0 (negative buffersize in recv)")
        self._check_open()
        deadline = self._flags_deadline(flags, _MSG_DONTWAIT | _MSG_PEEK)
        if bufsize == 0:
            return b""
        peek = bool(flags & _MSG_PEEK)
        try:
            return self._session._read(self, bufsize, deadline, peek)
        except OSError:
            park_at_exit()  # (a daemon thread at interpreter exit: as TCP's, it stays blocked)
            raise

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        """Receive into a writable buffer (``socket.recv_into``).

        Args:
            buffer: a writable bytes-like object.
            nbytes: the most bytes to read; 0 means ``len(buffer)``.
            flags: as :meth:`recv`.

        Returns:
            The number of bytes stored (0 at EOF).

        Raises:
            As :meth:`recv`; ValueError if ``nbytes`` exceeds the buffer.
        """
        view = memoryview(buffer)
        if view.readonly:
            raise TypeError("buffer must be writable")
        if view.ndim != 1 or view.itemsize != 1:
            view = view.cast("B")
        if isinstance(nbytes, bool) or not isinstance(nbytes, int):
            raise TypeError(f"nbytes must be an int, not {type(nbytes).__name__}")
        if nbytes < 0:
            raise ValueError("nbytes must be >= 0 (negative buffersize in recv_into)")
        if nbytes > len(view):
            raise ValueError("nbytes is greater than the length of the buffer")
        data = self.recv(nbytes or len(view), flags)
        view[: len(data)] = data
        return len(data)

    def send(self, data: Any, flags: int = 0) -> int:
        """Send data, blocking while the send buffer (or v2 window) is full.

        Args:
            data: a bytes-like object.
            flags: 0 or ``socket.MSG_DONTWAIT``.

        Returns:
            The number of bytes queued (0 only for empty data).

        Raises:
            BrokenPipeError: after ``shutdown(SHUT_WR)``, or (v2) the peer
                closed the stream and its window is exhausted.
            TimeoutError, BlockingIOError, ConnectionResetError, OSError: as
                :meth:`recv`.
            TypeError: ``data`` is not a bytes-like object.
        """
        self._check_open()
        deadline = self._flags_deadline(flags)
        try:
            return self._session._write(self, byte_view(data), deadline)
        except OSError:
            park_at_exit()
            raise

    def sendall(self, data: Any, flags: int = 0) -> None:
        """Send all of ``data`` (``socket.sendall``); the timeout covers the whole call.

        Raises:
            As :meth:`send`.
        """
        self._check_open()
        deadline = self._flags_deadline(flags)
        view = byte_view(data)
        pos = 0
        try:
            while pos < len(view):
                pos += self._session._write(self, view[pos:], deadline)
        except OSError:
            park_at_exit()
            raise

    # --------------------------------------------------------------- files

    def makefile(
        self,
        mode: str = "r",
        buffering: Optional[int] = None,
        *,
        encoding: Optional[str] = None,
        errors: Optional[str] = None,
        newline: Optional[str] = None,
    ) -> Any:
        """Return a file object over the stream (``socket.makefile``).

        Args:
            mode: "r", "w", "rw", optionally with "b".
            buffering: as for ``open``; 0 only in binary mode.
            encoding: text mode encoding.
            errors: text mode error handling.
            newline: text mode newline handling.

        Returns:
            A ``socket.SocketIO`` (unbuffered), a buffered reader/writer/pair,
            or a ``TextIOWrapper``.

        Raises:
            ValueError: bad mode, or unbuffered text.  OSError: EBADF after close.
        """
        check_file_mode(mode)
        self._check_open()
        return make_file(self, mode, buffering, encoding, errors, newline)

    def _decref_socketios(self) -> None:
        if self._io_refs > 0:
            self._io_refs -= 1
        if self._closed:
            self.close()

    # ----------------------------------------------------------- readiness

    def fileno(self) -> int:
        """Return a descriptor for select/selectors/poll, or -1 after close.

        It is readable exactly when :meth:`recv` would not block and
        writable exactly when :meth:`send` would not block.  It is a private
        socketpair, not the UDP socket: do not read from or write to it.
        """
        if self._real_closed:
            return -1
        return self._session._fileno(self)

    # ----------------------------------------------------------- lifecycle

    def shutdown(self, how: int) -> None:
        """Shut down reading and/or writing (``socket.shutdown``).

        ``SHUT_WR`` sends FIN: a kcpsock peer reads EOF and may still send;
        a Go smux peer (kcptun) forgets the stream, so there it is a close.
        ``SHUT_RD`` only makes :meth:`recv` return b"" here.

        Raises:
            ValueError: bad ``how``; TypeError: ``how`` is not an int.
            OSError: EBADF after close; ConnectionResetError: the session died.
        """
        check_how(how)
        self._check_open()
        self._session._shutdown(self, how)

    def close(self) -> None:
        """Close the stream: FIN to the peer, unread data dropped.  Idempotent.

        While files from :meth:`makefile` are open, the stream stays usable
        through them and closes with the last one.
        """
        self._closed = True
        if self._io_refs <= 0 and not self._real_closed:
            self._real_closed = True
            self._session._close_stream(self)

    def __enter__(self) -> SmuxStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if not self._real_closed:
                self._real_closed = True
                self._session._close_stream(self, wait=False)
        except Exception:
            pass

    @property
    def closed(self) -> bool:
        """True once the stream is closed on this side."""
        return self._real_closed

    def getpeername(self) -> Any:
        """The KCP session's remote address."""
        return self._session._sock.getpeername()

    def getsockname(self) -> Any:
        """The KCP session's local address."""
        return self._session._sock.getsockname()

    def __repr__(self) -> str:
        state = "closed" if self._real_closed else self._session._describe(self._sid)
        try:
            peer = f" raddr={self.getpeername()}"
        except OSError:
            peer = ""
        return f"<kcpsock.smux.SmuxStream id={self._sid} {state} v{self._session.version}{peer}>"


class SmuxSession:
    """One smux session over a :class:`~kcpsock.KCPSocket` (use :func:`client`/:func:`server`).

    The session owns the KCP socket: closing the session closes it, and the
    session ends (with every stream) when the KCP session dies.
    """

    def __init__(
        self,
        sock: Any,
        config: SmuxConfig,
        *,
        client: bool,
        compress: bool = False,
    ) -> None:
        """Start the session's threads on ``sock`` (see :func:`client`)."""
        if not isinstance(config, SmuxConfig):
            raise TypeError(f"config must be an SmuxConfig, not {type(config).__name__}")
        for name in ("recv", "send", "close", "settimeout"):
            if not callable(getattr(sock, name, None)):
                raise TypeError(f"sock must be a KCPSocket (no {name}())")
        self._sock = sock
        set_gone = getattr(sock, "set_gone_timeout", None)
        if callable(set_gone):
            # smux carries each stream's end (FIN) and ends a silent session
            # with its keep-alive, as Go's smux over kcp-go: the KCP socket's
            # reader-side "peer gone" EOF would end every stream after about
            # a second of silence (a pause, a link down), which kcptun rides out
            try:
                set_gone(0)
            except OSError:
                pass  # closed already: the session ends at its first read
        self.config = config
        self.client = client
        self._lock = threading.Lock()
        self._accept_cond = threading.Condition(self._lock)
        self._reader_cond = threading.Condition(self._lock)
        self._writer_cond = threading.Condition(self._lock)
        self._proto = SmuxProtocol(config, client=client, now_ms=_now_ms())
        self._accept_readiness: Optional[Signal] = None
        self._streams: weakref.WeakValueDictionary[int, SmuxStream] = weakref.WeakValueDictionary()
        self._closing = False
        self._closed = False
        self._encoder = FrameEncoder() if compress else None
        self._decoder = FrameDecoder() if compress else None
        self.compress = compress
        # our threads block at most this long in the KCP socket, then look at
        # the session (the keepalive clock runs even while the KCP window is full)
        poll = _POLL_S
        if not config.keepalive_disabled:
            poll = min(poll, config.keepalive_interval_ms / 2000.0)
        sock.settimeout(poll)
        self._timer_wait: Optional[float] = None
        self._reader = threading.Thread(
            target=self._read_loop, name="kcpsock-smux-reader", daemon=True
        )
        self._writer = threading.Thread(
            target=self._write_loop, name="kcpsock-smux-writer", daemon=True
        )
        self._reader.start()
        self._writer.start()

    # ------------------------------------------------------------ public

    @property
    def version(self) -> int:
        """The smux protocol version (1 or 2)."""
        return self.config.version

    @property
    def sock(self) -> Any:
        """The KCP socket carrying the session."""
        return self._sock

    @property
    def alive(self) -> bool:
        """False once the session ended (see :attr:`error`)."""
        return self._proto.alive

    @property
    def error(self) -> Optional[str]:
        """Why the session ended, or None while it runs."""
        return self._proto.error

    @property
    def stream_count(self) -> int:
        """Streams open on this side."""
        with self._lock:
            return len(self._proto.stream_ids)

    def open_stream(self) -> SmuxStream:
        """Open a new stream (sends SYN; never blocks).

        Returns:
            The :class:`SmuxStream`.

        Raises:
            ConnectionResetError: the session ended (the message says why).
            ConnectionRefusedError: stream ids exhausted (open a new session).
        """
        with self._lock:
            if self._closing:
                raise KCPClosedError("smux session is closed")
            sid = self._proto.open_stream()
            stream = SmuxStream(self, sid)
            self._streams[sid] = stream
            self._writer_cond.notify()
        return stream

    def accept_stream(self, timeout: Optional[float] = None) -> SmuxStream:
        """Wait for a stream opened by the peer.

        Args:
            timeout: seconds to wait (None: without limit; 0: do not block).

        Returns:
            The :class:`SmuxStream`.

        Raises:
            TimeoutError, BlockingIOError: none arrived in time.
            ConnectionResetError: the session ended (the message says why).
        """
        deadline = timeout_deadline(check_timeout(timeout))
        try:
            return self._accept_stream(deadline)
        except OSError:
            park_at_exit()
            raise

    def _accept_stream(self, deadline: Optional[float]) -> SmuxStream:
        with self._lock:
            while True:
                sid = self._proto.accept_stream()
                if sid is not None:
                    stream = SmuxStream(self, sid)
                    self._streams[sid] = stream
                    self._reader_cond.notify()  # the backlog may have stopped the reader
                    self._refresh_accept()
                    return stream
                if deadline == 0:
                    raise KCPBlockingIOError()
                if not wait_deadline(self._accept_cond, deadline):
                    raise KCPTimeoutError()

    def close(self) -> None:
        """End the session: flush queued frames (bounded), close the KCP socket.

        Streams still open end with ``ConnectionResetError`` ("closed on
        this side").  Idempotent.
        """
        with self._lock:
            if self._closing:
                already = True
            else:
                already = False
                self._closing = True
                self._writer_cond.notify()
        if not already and threading.current_thread() is not self._writer:
            self._writer.join(_CLOSE_FLUSH_S)
        self._end("smux session closed on this side")
        with self._lock:
            sig, self._accept_readiness = self._accept_readiness, None
        if sig is not None:
            sig.close()
        if threading.current_thread() not in (self._reader, self._writer):
            self._reader.join(_CLOSE_FLUSH_S)
            self._writer.join(_CLOSE_FLUSH_S)

    def __enter__(self) -> SmuxSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        side = "client" if self.client else "server"
        state = "alive" if self.alive else f"ended ({self.error})"
        comp = ", snappy" if self.compress else ""
        return (
            f"<kcpsock.smux.SmuxSession {side} v{self.version}{comp} "
            f"streams={len(self._proto.stream_ids)} {state}>"
        )

    # ---------------------------------------------------------- internals

    def _apply(self, changes: Changes) -> None:
        """Wake whoever the changes concern (lock held)."""
        streams = self._streams
        if changes.writable:
            for stream in list(streams.values()):
                stream._cond.notify_all()
                self._refresh(stream)
        else:
            for sid in changes.streams:
                found = streams.get(sid)
                if found is not None:
                    found._cond.notify_all()
                    self._refresh(found)
        if changes.accepted:
            self._accept_cond.notify_all()
            self._refresh_accept()
        if changes.terminated:
            self._accept_cond.notify_all()
            self._refresh_accept()
            self._reader_cond.notify_all()
            self._writer_cond.notify_all()
        if self._proto.has_data_to_send():
            self._writer_cond.notify()

    def _refresh_accept(self) -> None:
        sig = self._accept_readiness
        if sig is not None:
            proto = self._proto
            sig.update(not proto.alive or proto.accept_pending > 0, True)

    def fileno(self) -> int:
        """Return a descriptor readable while :meth:`accept_stream` would not block.

        That is while a stream waits or once the session ended; -1 after
        :meth:`close`.
        """
        with self._lock:
            if self._closing:
                return -1
            if self._accept_readiness is None:
                self._accept_readiness = Signal()
                self._refresh_accept()
            return self._accept_readiness.fileno()

    def _refresh(self, stream: SmuxStream) -> None:
        sig = stream._readiness
        if sig is not None:
            proto = self._proto
            sid = stream._sid
            sig.update(stream._rd_shut or proto.readable(sid), proto.writable(sid))

    def _fileno(self, stream: SmuxStream) -> int:
        with self._lock:
            if stream._readiness is None:
                stream._readiness = Signal()
                self._refresh(stream)
            return stream._readiness.fileno()

    def _describe(self, sid: int) -> str:
        with self._lock:
            return self._proto.describe(sid)

    def _end(self, reason: str) -> None:
        """Kill the session (any thread) and close the KCP socket."""
        with self._lock:
            changes = self._proto.terminate(reason)
            self._apply(changes)
            if self._closed:
                return
            self._closed = True
        if changes.terminated and reason != "smux session closed on this side":
            _log.info("smux session ended: %s", reason)
        try:
            self._sock.close()
        except OSError:
            pass

    def _read(
        self, stream: SmuxStream, bufsize: int, deadline: Optional[float], peek: bool
    ) -> bytes:
        proto = self._proto
        sid = stream._sid
        with self._lock:
            while True:
                if stream._rd_shut and not proto.buffered(sid):
                    return b""
                data = proto.read(sid, bufsize, peek=peek)
                if data is not None:
                    if not peek:
                        if proto.has_data_to_send():  # v2 UPD
                            self._writer_cond.notify()
                        if not proto.reading_paused:
                            self._reader_cond.notify()
                        self._refresh(stream)
                    return data
                if deadline == 0:
                    raise KCPBlockingIOError()
                if not wait_deadline(stream._cond, deadline):
                    raise KCPTimeoutError()

    def _write(self, stream: SmuxStream, data: Any, deadline: Optional[float]) -> int:
        proto = self._proto
        sid = stream._sid
        with self._lock:
            while True:
                n = proto.write(sid, data)
                if n or not len(data):
                    self._writer_cond.notify()
                    if stream._readiness is not None:
                        self._refresh(stream)
                    return n
                if stream._readiness is not None:
                    self._refresh(stream)
                if deadline == 0:
                    raise KCPBlockingIOError()
                if not wait_deadline(stream._cond, deadline):
                    raise KCPTimeoutError()

    def _shutdown(self, stream: SmuxStream, how: int) -> None:
        with self._lock:
            if how in (socket.SHUT_RD, socket.SHUT_RDWR):
                stream._rd_shut = True
            if how in (socket.SHUT_WR, socket.SHUT_RDWR):
                self._proto.shutdown_write(stream._sid)
            stream._cond.notify_all()
            self._refresh(stream)
            self._writer_cond.notify()

    def _close_stream(self, stream: SmuxStream, wait: bool = True) -> None:
        lock = self._lock
        if not lock.acquire(blocking=wait):
            return  # a finalizer on a thread holding our lock: leave it to the session's end
        try:
            self._proto.close_stream(stream._sid)
            self._streams.pop(stream._sid, None)
            stream._cond.notify_all()
            if not self._proto.reading_paused:
                self._reader_cond.notify()  # unread bytes went back to the bucket
            if self._proto.has_data_to_send():
                self._writer_cond.notify()  # our FIN
            sig, stream._readiness = stream._readiness, None
        finally:
            lock.release()
        if sig is not None:
            sig.close()

    # ------------------------------------------------------------ threads

    def _read_loop(self) -> None:
        sock = self._sock
        proto = self._proto
        decoder = self._decoder
        reason = "the KCP session was closed"
        try:
            while True:
                with self._lock:
                    while proto.alive and proto.reading_paused:
                        self._reader_cond.wait()
                    if not proto.alive:
                        reason = proto.error or reason
                        break
                try:
                    data = sock.recv(_READ_SIZE)
                except TimeoutError:
                    continue  # the poll period: look at the session state again
                if not data:
                    # a gone peer reads as the end of the KCP stream: say why
                    failure = getattr(getattr(sock, "session", None), "failure", None)
                    if failure:
                        reason = f"KCP session failed: the link is dead ({failure})"
                    break
                if decoder is not None:
                    data = decoder.feed(data)
                    if not data:
                        continue
                with self._lock:
                    changes = proto.receive_data(data, _now_ms())
                    self._apply(changes)
                    if changes.terminated:
                        reason = proto.error or reason
                        break
        except SnappyError as exc:
            reason = str(exc)
        except KCPClosedError:
            pass
        except OSError as exc:
            reason = f"KCP session failed: {exc.strerror or exc}"
        except Exception as exc:  # never let a bug kill the thread silently
            _log.exception("smux reader failed")
            reason = f"internal error: {type(exc).__name__}: {exc}"
        self._end(reason)

    def _run_timers(self) -> bool:
        """Run the keepalive clock if due (lock held); False once the session is dead.

        Returns the seconds until the next timer through ``self._timer_wait``.
        """
        proto = self._proto
        now = _now_ms()
        due = proto.next_timer_ms()
        if due is not None and now >= due:
            self._apply(proto.handle_timer(now))
            due = proto.next_timer_ms()
        self._timer_wait = None if due is None else max(due - now, 0) / 1000.0
        return proto.alive

    def _write_loop(self) -> None:
        sock = self._sock
        proto = self._proto
        encoder = self._encoder
        reason = "the KCP session was closed"
        try:
            while True:
                with self._lock:
                    while True:
                        if not self._run_timers():
                            raise _SessionDead()
                        if proto.has_data_to_send():
                            break
                        if self._closing:
                            return  # flushed: close() takes over
                        self._writer_cond.wait(self._timer_wait)
                    data = proto.data_to_send()
                    self._apply(Changes(writable=True))
                if encoder is not None:
                    data = encoder.encode(data)
                # send() with the socket's poll timeout, not sendall(): a KCP
                # window that stays full (a silent peer) must not stop the
                # keepalive clock, which ends such a session after 30 s.
                view = memoryview(data)
                pos = 0
                while pos < len(view):
                    try:
                        pos += sock.send(view[pos:])
                    except TimeoutError:
                        with self._lock:
                            if not self._run_timers():
                                raise _SessionDead() from None
        except _SessionDead:
            reason = proto.error or reason
        except KCPClosedError:
            pass
        except OSError as exc:
            reason = f"KCP session failed: {exc.strerror or exc}"
        except Exception as exc:
            _log.exception("smux writer failed")
            reason = f"internal error: {type(exc).__name__}: {exc}"
        self._end(reason)


class _SessionDead(Exception):
    """The protocol machine died (keepalive timeout): leave the writer loop."""


def _make_config(config: Optional[SmuxConfig], options: dict[str, Any]) -> SmuxConfig:
    if config is not None and not isinstance(config, SmuxConfig):
        raise TypeError(f"config must be an SmuxConfig, not {type(config).__name__}")
    fields: dict[str, Any] = {}
    if "keepalive" in options:
        keepalive = options.pop("keepalive")
        if isinstance(keepalive, bool) or not isinstance(keepalive, (int, float)):
            raise TypeError(f"keepalive must be a number of seconds, not {keepalive!r}")
        fields["keepalive_interval_ms"] = int(keepalive * 1000)
    if "keepalive_timeout" in options:
        timeout = options.pop("keepalive_timeout")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            raise TypeError(f"keepalive_timeout must be a number of seconds, not {timeout!r}")
        fields["keepalive_timeout_ms"] = int(timeout * 1000)
    fields.update(options)
    base = config or SmuxConfig()
    try:
        return SmuxConfig(**{**base.__dict__, **fields})
    except TypeError as exc:
        if "unexpected keyword" in str(exc):
            raise TypeError(f"unknown smux option: {exc}") from None
        raise


def client(
    sock: Any,
    *,
    version: Optional[int] = None,
    compress: bool = False,
    config: Optional[SmuxConfig] = None,
    **options: Any,
) -> SmuxSession:
    """Start the client side of an smux session over a KCP socket (smux ``Client``).

    Args:
        sock: a connected :class:`~kcpsock.KCPSocket` (stream mode, as kcptun
            uses); the session owns it from now on, and turns its
            ``gone_timeout`` off (smux's keep-alive ends a dead session).
        version: smux protocol version, 1 (default) or 2; must match the peer.
        compress: wrap the byte stream in snappy framing (kcptun's default;
            kcptun's ``--nocomp`` means False); must match the peer.
        config: an :class:`~kcpsock.smux_frames.SmuxConfig` (smux's defaults).
        **options: :class:`~kcpsock.smux_frames.SmuxConfig` fields overriding
            ``config``, plus ``keepalive`` and ``keepalive_timeout`` in seconds.

    Returns:
        The :class:`SmuxSession`; streams opened here have odd ids.

    Raises:
        TypeError, ValueError: bad arguments (naming them).
    """
    if version is not None:
        options["version"] = version
    return SmuxSession(sock, _make_config(config, options), client=True, compress=compress)


def server(
    sock: Any,
    *,
    version: Optional[int] = None,
    compress: bool = False,
    config: Optional[SmuxConfig] = None,
    **options: Any,
) -> SmuxSession:
    """Start the server side of an smux session over a KCP socket (smux ``Server``).

    Args:
        sock: a :class:`~kcpsock.KCPSocket` from ``Listener.accept`` (owned
            and set up as :func:`client` says).
        version: as :func:`client`.
        compress: as :func:`client`.
        config: as :func:`client`.
        **options: as :func:`client`.

    Returns:
        The :class:`SmuxSession`; :meth:`SmuxSession.accept_stream` returns
        the streams the client opens.

    Raises:
        TypeError, ValueError: bad arguments.
    """
    if version is not None:
        options["version"] = version
    return SmuxSession(sock, _make_config(config, options), client=False, compress=compress)
