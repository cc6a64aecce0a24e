"""The public socket API: :class:`KCPSocket`, :class:`Listener`, dial and listen.

:class:`KCPSocket` behaves like a connected ``socket.socket`` of type
``SOCK_STREAM`` (recv/send/sendall/makefile/timeouts/select readiness), so
code written for TCP sockets, ``socketserver`` handlers included, runs over
KCP unchanged.  :class:`Listener` is the listening side (``accept``).

Invariants:

* timeouts follow CPython's socket module: ``None`` blocks, ``0`` is
  non-blocking (``BlockingIOError``), ``x > 0`` raises ``TimeoutError``
  after x seconds; new sockets start at ``socket.getdefaulttimeout()``;
  ``sendall``'s timeout covers the whole call;
* every call after :meth:`KCPSocket.close` raises ``OSError(EBADF)`` and
  ``fileno()`` returns -1; ``close`` is idempotent and waits for the files
  of ``makefile`` to be closed, as ``socket.socket.close`` does;
* a UDP socket passed in by the caller (``sock=``) is never closed;
* at interpreter exit every session and listener still open is closed.
"""

from __future__ import annotations

import atexit
import errno
import io
import os
import socket
import struct
import threading
import time
from typing import TYPE_CHECKING, Any, Optional, Union

from .config import MAX_DUP, MTU_LIMIT, KCPConfig, check_int, check_seconds, check_window
from .crypt import BlockCrypt
from .errors import KCPClosedError
from .inbound import Address, make_codec
from .listener import ListenerCore
from .segment import U32
from .session import (
    Session,
    SessionState,
    Timeout,
    byte_view,
    drain_closing,
    live_listeners,
    live_sessions,
    small_bytes,
)
from .transport import Transport

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

__all__ = ["KCPSocket", "Listener", "create_connection", "create_server", "dial", "listen"]

_GLOBAL_DEFAULT = socket._GLOBAL_DEFAULT_TIMEOUT  # type: ignore[attr-defined]
# a plain int: arithmetic on the IntFlag member costs microseconds per call
_MSG_DONTWAIT = int(getattr(socket, "MSG_DONTWAIT", 0x40))
_MSG_PEEK = int(socket.MSG_PEEK)
_MSG_WAITALL = int(getattr(socket, "MSG_WAITALL", 0x100))
_RECV_FLAGS = _MSG_DONTWAIT | _MSG_PEEK | _MSG_WAITALL
#: The longest timeout a blocking call can wait (CPython's socket.settimeout
#: raises OverflowError beyond the same limit: 2**63 ns).
TIMEOUT_MAX = threading.TIMEOUT_MAX


def check_timeout(value: Optional[float]) -> Optional[float]:
    """Validate a timeout as ``socket.settimeout`` does, at the call.

    Shared by every socket-like object of kcpsock (sockets, listeners, smux
    streams).

    Raises:
        TypeError: not a number or None.
        ValueError: negative or NaN.
        OverflowError: infinite or above :data:`TIMEOUT_MAX` (as
            ``socket.settimeout(float('inf'))``); use None to block forever.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"timeout must be a number or None, not {type(value).__name__}")
    if value != value:
        raise ValueError("timeout must be a number, not NaN (None blocks without limit)")
    if value < 0 and value >= -TIMEOUT_MAX:
        raise ValueError(f"timeout must be a non-negative number or None, got {value}")
    if not -TIMEOUT_MAX <= value <= TIMEOUT_MAX:
        raise OverflowError(
            f"timeout {value} is too large (at most {TIMEOUT_MAX:.0f} s);"
            " use None to block without limit"
        )
    return float(value)


def timeout_deadline(timeout: Optional[float]) -> Optional[float]:
    """Turn a checked timeout into a ``time.monotonic()`` deadline.

    Returns:
        None (block without limit), 0 (non-blocking) or the deadline.
    """
    if timeout is None:
        return None
    if timeout == 0:
        return 0
    return time.monotonic() + timeout


def check_file_mode(mode: str) -> None:
    """Check a ``makefile`` mode: only "r", "w" and "b" (``socket.makefile``'s rule).

    Raises:
        ValueError: any other character.
    """
    if not set(mode) <= {"r", "w", "b"}:
        raise ValueError(f"invalid mode {mode!r} (only r, w, b allowed)")


def make_file(
    owner: Any,
    mode: str,
    buffering: Optional[int],
    encoding: Optional[str],
    errors: Optional[str],
    newline: Optional[str],
) -> Any:
    """``socket.makefile`` for kcpsock's socket-like objects.

    Args:
        owner: the socket-like object; as for ``socket.socket`` it counts its
            open files in ``_io_refs`` and has ``_decref_socketios`` (called
            by ``socket.SocketIO.close``).
        mode: a mode checked by :func:`check_file_mode`.
        buffering: as for ``open``; 0 only in binary mode.
        encoding: text mode: the encoding.
        errors: text mode: the error handler.
        newline: text mode: newline translation.

    Returns:
        A ``socket.SocketIO`` (unbuffered), a buffered reader/writer/pair, or
        a ``TextIOWrapper``.

    Raises:
        ValueError: unbuffered text.
    """
    writing = "w" in mode
    reading = "r" in mode or not writing
    binary = "b" in mode
    if buffering is None or buffering < 0:
        buffering = io.DEFAULT_BUFFER_SIZE
    if buffering == 0 and not binary:
        raise ValueError("unbuffered streams must be binary")
    raw = socket.SocketIO(owner, ("r" if reading else "") + ("w" if writing else ""))  # type: ignore[arg-type]
    owner._io_refs += 1
    if buffering == 0:
        return raw
    buffer: Union[io.BufferedRWPair, io.BufferedReader, io.BufferedWriter]
    if reading and writing:
        buffer = io.BufferedRWPair(raw, raw, buffering)
    elif reading:
        buffer = io.BufferedReader(raw, buffering)
    else:
        buffer = io.BufferedWriter(raw, buffering)
    if binary:
        return buffer
    text = io.TextIOWrapper(buffer, encoding, errors, newline)  # type: ignore[type-var]
    text.mode = mode  # type: ignore[misc]
    return text


def _config_from(config: Optional[KCPConfig], options: dict[str, Any]) -> KCPConfig:
    if config is None:
        config = KCPConfig()
    elif not isinstance(config, KCPConfig):
        raise TypeError(f"config must be a KCPConfig, not {type(config).__name__}")
    if options:
        fields = getattr(KCPConfig, "__dataclass_fields__", None)
        if fields is not None:
            unknown = sorted(set(options) - set(fields))
            if unknown:
                raise TypeError(
                    f"unknown option(s) {', '.join(unknown)}: not a KCPConfig"
                    f" field (see help(kcpsock.KCPConfig))"
                )
        config = config.replace(**options)
    return config


def _split_host_port(text: str, name: str) -> tuple[str, int]:
    """Parse kcp-go's address strings: "host:port", "[v6 address]:port"."""
    host, sep, port_text = text.rpartition(":")
    if not sep:
        raise ValueError(f"{name} must be (host, port) or 'host:port', got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(
            f"{name}: an IPv6 host needs brackets, e.g. '[::1]:{port_text}', got {text!r}"
        )
    if not port_text.isdigit():
        raise ValueError(f"{name} port must be a number, got {port_text!r} in {text!r}")
    return host, int(port_text)


#: What dial/listen accept: an address tuple as socket takes it, or "host:port".
AddressLike = Union[tuple[str, int], tuple[str, int, int, int], str]


def _check_address(address: object, name: str = "address") -> tuple[Any, int]:
    """Validate ``(host, port[, flowinfo, scope_id])`` or a "host:port" string.

    Returns:
        ``(host, port)``; resolution is left to ``getaddrinfo`` (so unknown
        names raise ``socket.gaierror`` as socket does).
    """
    if isinstance(address, str):
        return _split_host_port(address, name)
    if not isinstance(address, tuple) or not 2 <= len(address) <= 4:
        raise TypeError(
            f"{name} must be a (host, port) tuple (IPv6: (host, port[, flowinfo[, scope_id]])) "
            f"or a 'host:port' string, got {address!r}"
        )
    host, port = address[0], address[1]
    if isinstance(port, bool) or not isinstance(port, int):
        raise TypeError(f"{name} port must be an int, got {port!r}")
    if not 0 <= port <= 65535:
        raise ValueError(f"{name} port must be 0..65535, got {port}")
    if host is not None and not isinstance(host, (str, bytes)):
        raise TypeError(f"{name} host must be a str, got {host!r}")
    for field, value, top in zip(("flowinfo", "scope_id"), address[2:], (0xFFFFF, U32)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} {field} must be an int, got {value!r}")
        if not 0 <= value <= top:
            # (socket raises OverflowError here; ValueError is what a bad
            # argument raises in kcpsock)
            raise ValueError(f"{name} {field} must be 0..{top}, got {value}")
    return host, port


def _sockaddr(family: int, sa: Any, address: object, name: str = "address") -> Any:
    """The resolved ``sa`` for ``address`` as ``socket`` takes it.

    An IPv6 address given as ``(host, port, flowinfo[, scope_id])`` keeps
    its flowinfo and scope id (a link-local address needs the scope id);
    an IPv4 address must be a pair, as ``socket`` says.

    Raises:
        TypeError: a 3- or 4-tuple for an IPv4 address.
    """
    if not isinstance(address, tuple) or len(address) <= 2:
        return sa
    if family != socket.AF_INET6:
        raise TypeError(f"{name}: an IPv4 address must be a pair (host, port), got {address!r}")
    extra = address[2:]
    return (sa[0], sa[1], extra[0], extra[1] if len(extra) > 1 else sa[3])


def _resolve(host: Any, port: int, family: int = 0, flags: int = 0) -> list[Any]:
    """``getaddrinfo`` for UDP, IPv4 addresses first (as Go's ``ResolveUDPAddr``).

    A TCP client can try each address until one connects; a UDP "connect"
    always succeeds, so the first address is the only one ever used.  With
    the usual ``::1 localhost`` line first, ``dial(("localhost", p))`` would
    talk to ``[::1]:p`` while the listener sits on 127.0.0.1 and nothing
    would ever arrive; kcp-go resolves IPv4 first, and so do we.
    """
    infos = socket.getaddrinfo(host, port, family, socket.SOCK_DGRAM, 0, flags)
    infos.sort(key=lambda info: info[0] != socket.AF_INET)  # stable
    return infos


def check_how(how: object) -> int:
    """``shutdown``'s argument as ``socket.shutdown`` checks it.

    Raises:
        TypeError: not an int.
        ValueError: not ``SHUT_RD``, ``SHUT_WR`` or ``SHUT_RDWR``.
    """
    if isinstance(how, bool) or not isinstance(how, int):
        raise TypeError(f"how must be an int (socket.SHUT_RD, ...), not {type(how).__name__}")
    if how not in (socket.SHUT_RD, socket.SHUT_WR, socket.SHUT_RDWR):
        raise ValueError(f"how must be SHUT_RD, SHUT_WR or SHUT_RDWR, got {how!r}")
    return how


def _check_bufsize(nbytes: Any, name: str = "nbytes") -> int:
    """A socket buffer size: an int >= 1 (as ``KCPConfig.read_buffer``)."""
    # (int first: mypy 1.x, the last that targets 3.9, narrows Any only then)
    if not isinstance(nbytes, int) or isinstance(nbytes, bool):
        raise TypeError(f"{name} must be an int, not {type(nbytes).__name__}")
    if nbytes < 1:
        raise ValueError(f"{name} must be >= 1 bytes, got {nbytes}")
    return nbytes


def _check_mtu(codec: Any, cfg: KCPConfig) -> None:
    """Refuse an MTU the codec cannot use, at the call (before any socket exists).

    Raises:
        ValueError: ``cfg.mtu`` leaves KCP less than 50 bytes after the
            codec's overhead (crypto header, FEC header, AEAD tag).
    """
    if codec is not None:
        codec.kcp_mtu(cfg.mtu)


def _apply_socket_options(sock: socket.socket, config: KCPConfig) -> None:
    if config.read_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, config.read_buffer)
    if config.write_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, config.write_buffer)
    if config.dscp is not None:
        _set_dscp(sock, config.dscp)


def _set_dscp(sock: socket.socket, dscp: int) -> None:
    """kcp-go SetDSCP: IPv4 TOS = dscp << 2, IPv6 traffic class = dscp."""
    check_int("dscp", dscp, 0, 63)
    ok = False
    try:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, dscp << 2)
        ok = True
    except OSError:
        pass
    tclass = getattr(socket, "IPV6_TCLASS", None)
    if sock.family == socket.AF_INET6 and tclass is not None:
        try:
            sock.setsockopt(socket.IPPROTO_IPV6, tclass, dscp)
            ok = True
        except OSError:
            pass
    if not ok:
        raise OSError(errno.EINVAL, "cannot set DSCP on this socket")


def _linger_from(value: Any) -> Optional[float]:
    """The seconds of a packed ``struct linger`` (SO_LINGER), checked as the OS does.

    Raises:
        OSError: EINVAL: an int, a buffer shorter than the struct, or a
            negative l_linger (Linux also refuses a short option).
        TypeError: not a bytes-like object (as ``socket.setsockopt``).
    """
    if isinstance(value, int):
        raise OSError(
            errno.EINVAL,
            "SO_LINGER takes a packed struct linger, e.g. struct.pack('ii', 1, seconds),"
            f" not the int {value!r}",
        )
    try:
        raw = bytes(memoryview(value))
    except TypeError:
        raise TypeError(
            f"a bytes-like object is required for SO_LINGER, not {type(value).__name__}"
        ) from None
    if len(raw) < 8:
        raise OSError(
            errno.EINVAL,
            f"SO_LINGER needs an 8-byte struct linger (struct.pack('ii', 1, seconds)),"
            f" got {len(raw)} bytes",
        )
    onoff, secs = struct.unpack("ii", raw[:8])
    if not onoff:
        # l_onoff 0: the default, background delivery (None); 1 with 0 s: drop
        # what is unacknowledged, kcp-go's close; 1 with N s: block up to N s
        return None
    if secs < 0:
        raise OSError(errno.EINVAL, f"SO_LINGER: l_linger must be >= 0 seconds, got {secs}")
    return float(secs)


def _identity_option(sock: Any, level: int, optname: int, buflen: Optional[int]) -> Optional[int]:
    """SO_TYPE/SO_PROTOCOL/SO_DOMAIN as the object's ``type``/``proto``/``family``.

    The UDP socket underneath would say SOCK_DGRAM; code that checks the
    option (asyncio does) must see what ``.type`` says.
    """
    if level != socket.SOL_SOCKET or buflen is not None:
        return None
    if optname == socket.SO_TYPE:
        return int(sock.type)
    if optname == getattr(socket, "SO_PROTOCOL", -1):
        return int(sock.proto)
    if optname == getattr(socket, "SO_DOMAIN", -1):
        return int(sock.family)
    return None


class SocketTimeouts:
    """Timeouts as on ``socket.socket``, shared by every socket-like object of kcpsock.

    :class:`KCPSocket`, :class:`Listener` and :class:`kcpsock.smux.SmuxStream`.

    ``settimeout``, ``gettimeout``, ``setblocking``, ``getblocking`` and ``timeout``.
    """

    _timeout: Optional[float]

    def _check_open(self) -> None:
        raise NotImplementedError

    def settimeout(self, value: Optional[float]) -> None:
        """Set the timeout of blocking calls (``socket.settimeout``).

        Args:
            value: seconds (> 0: raise ``TimeoutError`` after that long), 0
                (non-blocking: ``BlockingIOError``, same as
                ``setblocking(False)``) or None (block without limit).

        Raises:
            ValueError: a negative or NaN timeout.
            TypeError: not a number or None.
            OverflowError: infinite or longer than :data:`TIMEOUT_MAX` (as
                ``socket.settimeout``; None blocks without limit).
            OSError: EBADF after close.
        """
        value = check_timeout(value)
        self._check_open()
        self._timeout = value

    def gettimeout(self) -> Optional[float]:
        """Return the timeout in seconds (None when blocking without limit; 0.0 non-blocking)."""
        return self._timeout

    def setblocking(self, flag: bool) -> None:
        """``setblocking(True)`` = ``settimeout(None)``, ``False`` = ``settimeout(0)``.

        Args:
            flag: True for blocking mode, False for non-blocking.

        Raises:
            OSError: EBADF after close.
        """
        self._check_open()
        self._timeout = None if flag else 0.0

    def getblocking(self) -> bool:
        """Return False in non-blocking mode (timeout 0), True otherwise."""
        return self._timeout != 0

    @property
    def timeout(self) -> Optional[float]:
        """The timeout in seconds (as ``socket.socket.timeout``)."""
        return self._timeout

    def _flags_deadline(self, flags: int, allowed: int = _MSG_DONTWAIT) -> Optional[float]:
        """The deadline of a call: 0 with MSG_DONTWAIT, else from the timeout."""
        if flags:
            if isinstance(flags, bool) or not isinstance(flags, int):
                raise TypeError(f"flags must be an int, not {type(flags).__name__}")
            if int(flags) & ~allowed:
                names = [
                    name
                    for bit, name in (
                        (_MSG_DONTWAIT, "MSG_DONTWAIT"),
                        (_MSG_PEEK, "MSG_PEEK"),
                        (_MSG_WAITALL, "MSG_WAITALL"),
                    )
                    if allowed & bit
                ]
                listed = (
                    f"{names[0]} is"
                    if len(names) == 1
                    else f"{', '.join(names[:-1])} and {names[-1]} are"
                )
                raise ValueError(f"flags: only {listed} supported here, got {int(flags):#x}")
            if int(flags) & _MSG_DONTWAIT:
                return 0
        return timeout_deadline(self._timeout)


class KCPSocket(SocketTimeouts):
    """A KCP session with the interface of a connected stream ``socket.socket``.

    Obtain one from :func:`dial`, :func:`create_connection` or
    :meth:`Listener.accept`.  ``family`` is the UDP socket's, ``type`` is
    ``SOCK_STREAM`` (reliable, ordered; the wire is UDP), ``proto`` is
    ``IPPROTO_UDP``.

    Per-session figures: :attr:`srtt`, :attr:`rttvar`, :attr:`rto`,
    :attr:`bytes_sent`, :attr:`bytes_received`, :attr:`segments_sent`,
    :attr:`segments_received`, :attr:`retransmissions` and :meth:`figures`.
    """

    def __init__(self, session: Session, _refs: Optional[list[int]] = None) -> None:
        """Wrap a session (internal; use :func:`dial` or :meth:`Listener.accept`)."""
        self._session = session
        # wrappers sharing the session (dup()): the last close closes it
        self._refs = _refs if _refs is not None else [0]
        self._refs[0] += 1
        self._timeout: Optional[float] = socket.getdefaulttimeout()
        self._closed = False  # close() was called
        self._real_closed = False  # ... and the session is closed
        self._io_refs = 0
        self.family = socket.AddressFamily(session.transport.family)
        self.type = socket.SOCK_STREAM
        self.proto = socket.IPPROTO_UDP

    # -------------------------------------------------------------- helpers

    def _live(self) -> Session:
        # as socket.socket: close() with makefile() files still open defers
        # the real close, and the socket keeps working until then
        if self._real_closed:
            raise KCPClosedError()
        return self._session

    def _check_open(self) -> None:
        self._live()

    # ------------------------------------------------------------- data I/O

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        """Receive up to ``bufsize`` bytes (``socket.recv``).

        Args:
            bufsize: the most bytes to return (>= 0).
            flags: 0, ``socket.MSG_DONTWAIT`` (do not block) and/or
                ``socket.MSG_PEEK`` (return data without consuming it; at
                most the first waiting message).

        Returns:
            The data (one message, or part of it if ``bufsize`` is smaller;
            several segments in stream mode); b"" after ``shutdown(SHUT_RD)``,
            a close from another thread, or once the peer is gone (the link
            died, nothing came back for ``keepalive_timeout``, or a waiting
            reader's probes went unanswered for ``gone_timeout``) and all it
            sent was read: a peer that closed or vanished reads as the end
            of the stream.

        Raises:
            OSError: EBADF after close.
            TimeoutError: the timeout expired (:class:`KCPTimeoutError`).
            BlockingIOError: non-blocking and nothing to read.
            ConnectionRefusedError: nothing listens at the peer's address.
            ValueError, TypeError: bad arguments.
        """
        if type(bufsize) is int and bufsize > 0 and not flags and not self._real_closed:
            # the common call: every check below passes
            timeout = self._timeout
            try:
                return self._session.recv(
                    bufsize, None if timeout is None else timeout_deadline(timeout)
                )
            except KCPClosedError:
                park_at_exit()
                raise
        if isinstance(bufsize, bool) or not isinstance(bufsize, int):
            raise TypeError(f"bufsize must be an int, not {type(bufsize).__name__}")
        if bufsize < 0:
            raise ValueError("bufsize must be >= 0 (negative buffersize in recv)")
        session = self._live()
        deadline = self._flags_deadline(flags, _RECV_FLAGS)
        if bufsize == 0:
            return b""
        try:
            if flags and int(flags) & _MSG_WAITALL and not int(flags) & _MSG_PEEK:
                return self._recv_waitall(session, bufsize, deadline)
            return session.recv(bufsize, deadline, peek=bool(flags and int(flags) & _MSG_PEEK))
        except KCPClosedError:
            park_at_exit()
            raise

    def _recv_waitall(self, session: Session, bufsize: int, deadline: Optional[float]) -> bytes:
        """MSG_WAITALL: collect ``bufsize`` bytes; less only at EOF, timeout or error.

        As the OS does, data already collected is returned (not lost) when
        the timeout expires or the session fails part way; the error is
        raised only when nothing was collected.
        """
        parts: list[bytes] = []
        got = 0
        while got < bufsize:
            try:
                data = session.recv(bufsize - got, deadline)
            except OSError:
                if got:
                    break
                raise
            if not data:
                break
            parts.append(data)
            got += len(data)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        """Receive into a writable buffer (``socket.recv_into``).

        Args:
            buffer: a writable bytes-like object.
            nbytes: the most bytes to read; 0 means ``len(buffer)``.
            flags: as :meth:`recv`.

        Returns:
            The number of bytes stored (0 only at EOF, see :meth:`recv`).

        Raises:
            As :meth:`recv`; ValueError if ``nbytes`` exceeds the buffer.
        """
        if type(buffer) is bytearray and not flags and not self._real_closed:
            # the common call (an echo loop, socketserver's readinto, a sink
            # reading at most what it still expects): the same outcome in
            # fewer steps, ``nbytes`` checked and the data copied in compiled
            # code; -1: an argument the checks below must look at
            timeout = self._timeout
            try:
                n = self._session.recv_into_short(
                    buffer, nbytes, None if timeout is None else timeout_deadline(timeout)
                )
            except KCPClosedError:
                park_at_exit()
                raise
            if n >= 0:
                return n
        try:
            view = memoryview(buffer)
        except TypeError:
            raise TypeError(
                f"buffer must be a writable bytes-like object (e.g. a bytearray),"
                f" not {type(buffer).__name__}"
            ) from None
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
        if nbytes == 0:
            nbytes = len(view)
        session = self._live()
        deadline = self._flags_deadline(flags, _RECV_FLAGS)
        if nbytes == 0:
            return 0
        try:
            if flags and int(flags) & _MSG_WAITALL and not int(flags) & _MSG_PEEK:
                data = self._recv_waitall(session, nbytes, deadline)
                n = len(data)
                view[:n] = data
                return n
            return session.recv_into(view, nbytes, deadline, bool(flags and int(flags) & _MSG_PEEK))
        except KCPClosedError:
            park_at_exit()
            raise

    def send(self, data: ReadableBuffer, flags: int = 0) -> int:
        """Send data, blocking while the send window is full (``socket.send``).

        Data is cut into ``mss``-sized KCP messages (as kcp-go's Write); at
        most the free send window is taken, so the return value may be
        smaller than ``len(data)``.  An empty buffer sends nothing.

        Args:
            data: a bytes-like object.
            flags: 0 or ``socket.MSG_DONTWAIT``.

        Returns:
            The number of bytes queued.

        Raises:
            OSError: EBADF after close.
            BrokenPipeError: after ``shutdown(SHUT_WR)``.
            TimeoutError, BlockingIOError, ConnectionResetError: as :meth:`recv`.
        """
        try:
            if flags or self._real_closed:
                session = self._live()
                deadline = self._flags_deadline(flags)
            else:
                session = self._session
                timeout = self._timeout
                deadline = None if timeout is None else timeout_deadline(timeout)
            return session.send(data if type(data) is bytes else small_bytes(data), deadline)
        except KCPClosedError:
            park_at_exit()
            raise

    def sendall(self, data: ReadableBuffer, flags: int = 0) -> None:
        """Send all of ``data`` (``socket.sendall``); the timeout covers the whole call.

        Args:
            data: a bytes-like object.
            flags: 0 or ``socket.MSG_DONTWAIT``.

        Raises:
            As :meth:`send`.
        """
        try:
            if flags or self._real_closed:
                self._live().sendall(data, self._flags_deadline(flags))
                return
            # the common call: no flags, open (inline: this module is interpreted;
            # the copy of a small view and the loop are the session's, compiled)
            timeout = self._timeout
            self._session.sendall(data, None if timeout is None else timeout_deadline(timeout))
        except KCPClosedError:
            park_at_exit()
            raise

    def recvfrom(self, bufsize: int, flags: int = 0) -> tuple[bytes, None]:
        """``recv`` returning ``(data, None)``, as on a connected TCP socket.

        Args:
            bufsize: as :meth:`recv`.
            flags: as :meth:`recv`.

        Returns:
            ``(data, None)``: a stream socket reports no sender address.

        Raises:
            As :meth:`recv`.
        """
        return self.recv(bufsize, flags), None

    def recvfrom_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> tuple[int, None]:
        """``recv_into`` returning ``(nbytes, None)``, as on a connected TCP socket.

        Args:
            buffer: as :meth:`recv_into`.
            nbytes: as :meth:`recv_into`.
            flags: as :meth:`recv_into`.

        Returns:
            ``(count, None)``.

        Raises:
            As :meth:`recv_into`.
        """
        return self.recv_into(buffer, nbytes, flags), None

    def sendto(self, data: Any, flags_or_address: Any, address: Any = None) -> int:
        """``send`` with an address that is ignored, as on a connected TCP socket.

        Called as ``sendto(data, address)`` or ``sendto(data, flags, address)``;
        Linux ignores the address of a connected stream socket, and so do we.

        Args:
            data: a bytes-like object.
            flags_or_address: the address, or the flags when ``address`` follows.
            address: the (ignored) address in the three-argument form.

        Returns:
            The number of bytes queued (see :meth:`send`).

        Raises:
            As :meth:`send`.
        """
        flags = flags_or_address if address is not None else 0
        return self.send(data, flags)

    def sendmsg(self, buffers: Any, ancdata: Any = (), flags: int = 0, address: Any = None) -> int:
        """Send several buffers as one ``send`` (``socket.sendmsg``; asyncio uses it).

        Args:
            buffers: an iterable of bytes-like objects.
            ancdata: must be empty (KCP carries no ancillary data).
            flags: as :meth:`send`.
            address: ignored (connected stream socket).

        Returns:
            The number of bytes queued, from the start of the concatenation.

        Raises:
            OSError: EINVAL if ``ancdata`` is not empty; as :meth:`send`.
        """
        if ancdata:
            raise OSError(errno.EINVAL, "sendmsg: ancillary data is not supported over KCP")
        data = b"".join(bytes(byte_view(b)) for b in buffers)
        if not data:
            self._live()
            return 0
        return self.send(data, flags)

    def sendfile(self, file: Any, offset: int = 0, count: Optional[int] = None) -> int:
        """Send a binary file's contents (``socket.sendfile``, by reads and sendall).

        Args:
            file: a file opened in binary mode.
            offset: where to start reading (the file is seeked there).
            count: the most bytes to send; None until end of file.

        Returns:
            The number of bytes sent.

        Raises:
            ValueError: a file not opened in binary mode, a negative
                ``offset``, a ``count`` <= 0 or a non-blocking socket (as
                ``socket.sendfile``).
            TypeError: ``offset`` or ``count`` not an int.
            As :meth:`sendall`, and whatever ``file.read`` raises.
        """
        if "b" not in getattr(file, "mode", "b"):
            raise ValueError("file should be opened in binary mode")
        if isinstance(offset, bool) or not isinstance(offset, int):
            raise TypeError(f"offset must be an int, not {type(offset).__name__}")
        if offset < 0:
            raise ValueError(f"offset must be >= 0, got {offset}")
        if count is not None:
            if isinstance(count, bool) or not isinstance(count, int):
                raise TypeError(f"count must be a positive integer (got {count!r})")
            if count <= 0:
                raise ValueError(f"count must be a positive integer (got {count!r})")
        if self._timeout == 0:
            raise ValueError("non-blocking sockets are not supported")
        if offset:
            file.seek(offset)
        total = 0
        blocksize = 65536
        while count is None or total < count:
            want = blocksize if count is None else min(blocksize, count - total)
            chunk = file.read(want)
            if not chunk:
                break
            self.sendall(chunk)
            total += len(chunk)
        return total

    # ---------------------------------------------------------------- files

    def makefile(
        self,
        mode: str = "r",
        buffering: Optional[int] = None,
        *,
        encoding: Optional[str] = None,
        errors: Optional[str] = None,
        newline: Optional[str] = None,
    ) -> Any:
        """Return a file object over the socket (``socket.makefile``).

        Args:
            mode: "r", "w", "rw", optionally with "b".
            buffering: as for ``open``; 0 only in binary mode.
            encoding: text mode: the encoding.
            errors: text mode: the error handler.
            newline: text mode: newline translation.

        Returns:
            A ``socket.SocketIO`` (unbuffered), a buffered reader/writer/pair,
            or a ``TextIOWrapper``.

        Raises:
            ValueError: bad mode, or unbuffered text.
            OSError: EBADF after close.
        """
        check_file_mode(mode)
        self._live()
        return make_file(self, mode, buffering, encoding, errors, newline)

    def _decref_socketios(self) -> None:
        # called by socket.SocketIO.close
        if self._io_refs > 0:
            self._io_refs -= 1
        if self._closed:
            self.close()

    # ------------------------------------------------------------ readiness

    def fileno(self) -> int:
        """Return a descriptor for select/selectors/poll, or -1 after close.

        The descriptor (a private socketpair, created on first call) is
        readable exactly when :meth:`recv` would not block.  It is not the
        UDP socket: do not read from it.
        """
        if self._real_closed:
            return -1
        try:
            return self._session.signal_fileno()
        except KCPClosedError:
            return -1

    # ------------------------------------------------------------ lifecycle

    def shutdown(self, how: int) -> None:
        """Shut down reading and/or writing on this side (``socket.shutdown``).

        Only this side changes: after ``SHUT_RD`` :meth:`recv` never blocks
        (it returns data already received, else b""); after ``SHUT_WR``
        :meth:`send` raises
        ``BrokenPipeError`` and what was queued is still flushed and
        retransmitted until acknowledged.

        Unlike TCP, the peer sees nothing: KCP (and kcp-go) has no FIN, so a
        peer reading "until EOF" after our ``shutdown(SHUT_WR)`` waits
        forever (or until its timeout).  Protocols that half-close must
        mark the end of a request themselves (a length prefix, a final line,
        ...), or close the session and let the peer time out.

        Args:
            how: ``socket.SHUT_RD``, ``SHUT_WR`` or ``SHUT_RDWR``.

        Raises:
            OSError: EBADF after close.
            ValueError: bad ``how``.
            TypeError: ``how`` is not an int.
        """
        self._live().shutdown(check_how(how))

    def close(self) -> None:
        """Close the socket; what was sent still reaches the peer, as with TCP.

        Returns at once.  Data not acknowledged yet is delivered in the
        background (the session's state is "closing") until the peer
        acknowledged it, the peer is gone, or ``close_timeout`` (60 s)
        passed; then threads and sockets are released.  ``SO_LINGER`` /
        ``KCPConfig.linger``: N > 0 seconds blocks up to N s for the
        acknowledgements first, 0 drops what is unacknowledged (kcp-go's
        close).  Idempotent.  While files from :meth:`makefile` (or a
        :meth:`dup`) are open the session stays usable through them; it
        closes when the last one closes.
        """
        self._closed = True
        if self._io_refs <= 0:
            self._real_closed = True
            self._release()

    def _release(self, wait: bool = True) -> None:
        """Drop this wrapper's hold on the session; the last one closes it."""
        refs = self._refs
        refs[0] -= 1
        if refs[0] <= 0:
            self._session.close(wait=wait)

    def dup(self) -> KCPSocket:
        """Return a second socket object for the same session (``socket.dup``).

        Both work independently (timeouts, makefile); the session is closed
        when the last of them is closed, as a descriptor and its duplicate.

        Returns:
            A new :class:`KCPSocket`.

        Raises:
            OSError: EBADF after close.
        """
        session = self._live()
        other = KCPSocket(session, self._refs)
        other._timeout = self._timeout
        return other

    def __reduce_ex__(self, protocol: Any) -> Any:
        # as socket.socket: copy.copy/deepcopy/pickle raise instead of
        # producing a second owner whose collection would close the session
        raise TypeError(f"cannot pickle {type(self).__name__!r} object")

    def drain(self, timeout: Optional[float] = None) -> bool:
        """Wait until the peer has acknowledged everything sent so far.

        KCP has no FIN: this is how a sender learns that its last bytes
        arrived before it closes (``close()`` with ``SO_LINGER`` does the
        same wait).  Data sent after the call started is waited for too.

        Args:
            timeout: seconds to wait at most; None waits until done (or the
                link is declared dead); 0 only checks.

        Returns:
            True when nothing is queued or unacknowledged; False when the
            timeout passed, the link died or the socket was closed first.

        Raises:
            OSError: EBADF after close.
            TypeError: ``timeout`` is not a number or None.
            ValueError: ``timeout`` is negative or NaN.
        """
        return self._live().drain(timeout_deadline(check_timeout(timeout)))

    def detach(self) -> int:
        """Not supported: a KCP session has no descriptor of its own.

        Raises:
            OSError: always (EOPNOTSUPP).
        """
        raise OSError(errno.EOPNOTSUPP, "a KCPSocket cannot be detached")

    def __enter__(self) -> KCPSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if not self._real_closed:
                self._closed = self._real_closed = True
                self._release(wait=False)  # never join threads from a finalizer
        except Exception:
            pass

    @property
    def closed(self) -> bool:
        """True once the session is closed (after :meth:`close` and its files)."""
        return self._real_closed

    # ------------------------------------------------------------ addresses

    def getpeername(self) -> Address:
        """Return the peer's address (as ``socket.getpeername``)."""
        return self._live().remote

    def getsockname(self) -> Address:
        """Return the local address of the UDP socket."""
        return self._live().local_address()

    def setsockopt(
        self, level: int, optname: int, value: Any, optlen: Optional[int] = None
    ) -> None:
        """Set an option on the underlying UDP socket (``socket.setsockopt``).

        ``IPPROTO_TCP``/``TCP_NODELAY`` (set by code written for TCP, e.g.
        ``StreamRequestHandler.disable_nagle_algorithm``) maps to
        ``set_write_delay(not value)``; ``SOL_SOCKET``/``SO_LINGER`` (a packed
        ``struct linger``) sets what :meth:`close` does with unacknowledged
        data (``KCPConfig.linger``: off = deliver in the background, on with
        0 s = drop it, on with N s = block up to N s); other TCP-level options raise
        ``OSError(ENOPROTOOPT)`` as on a UDP socket.

        Args:
            level: the protocol level, as ``socket.setsockopt``.
            optname: the option, as ``socket.setsockopt``.
            value: an int or a bytes-like object.
            optlen: with ``value`` None, the option length.

        Raises:
            OSError: EBADF after close; EINVAL for an ``SO_LINGER`` value that
                is not a packed ``struct linger`` (``struct.pack("ii", 1,
                seconds)``) or has a negative time; what the UDP socket raises.
            TypeError: ``SO_LINGER`` with a value that is not bytes-like.
        """
        session = self._live()
        if level == socket.IPPROTO_TCP and optname == socket.TCP_NODELAY:
            session.write_delay = not value
            return
        if level == socket.SOL_SOCKET and optname == socket.SO_LINGER:
            # struct linger {int l_onoff; int l_linger;}: close() waits for ACKs
            session.linger = _linger_from(value)
            return
        sock = session.transport.sock
        if optlen is None:
            sock.setsockopt(level, optname, value)
        else:
            sock.setsockopt(level, optname, value, optlen)

    def getsockopt(self, level: int, optname: int, buflen: Optional[int] = None) -> Any:
        """Read an option of the underlying UDP socket (``socket.getsockopt``).

        ``IPPROTO_TCP``/``TCP_NODELAY`` reads ``not write_delay`` (see
        :meth:`setsockopt`).

        Args:
            level: the protocol level, as ``socket.getsockopt``.
            optname: the option, as ``socket.getsockopt``.
            buflen: None for an int result, else the bytes to return.

        Returns:
            An int, or bytes when ``buflen`` is given.

        Raises:
            OSError: EBADF after close; what the UDP socket raises.
        """
        session = self._live()
        if level == socket.IPPROTO_TCP and optname == socket.TCP_NODELAY and buflen is None:
            return int(not session.write_delay)
        ident = _identity_option(self, level, optname, buflen)
        if ident is not None:
            return ident
        if level == socket.SOL_SOCKET and optname == socket.SO_LINGER:
            linger = session.linger
            onoff = 0 if linger is None else 1
            packed = struct.pack("ii", onoff, int(linger or 0))
            # as the OS: an int (l_onoff) without buflen, the struct with it
            return packed[:buflen] if buflen is not None else onoff
        sock = session.transport.sock
        if buflen is None:
            return sock.getsockopt(level, optname)
        return sock.getsockopt(level, optname, buflen)

    # ---------------------------------------------------------- kcp-go knobs

    @property
    def conv(self) -> int:
        """The conversation id (kcp-go ``GetConv``)."""
        return self._session.conv

    @property
    def session(self) -> Session:
        """The underlying :class:`kcpsock.session.Session` (advanced use)."""
        return self._session

    def set_nodelay(self, nodelay: int, interval: int, resend: int, nc: int) -> None:
        """kcp-go ``SetNoDelay``: a negative argument leaves that setting unchanged.

        Args:
            nodelay: 0 off, >= 1 on (min RTO 30 ms).
            interval: flush interval in ms (clamped to 10..5000).
            resend: fast-retransmit threshold (0 off).
            nc: 1 disables congestion control.

        Raises:
            TypeError: an argument is not an int.
            OSError: EBADF after close.
        """
        for name, v in (
            ("nodelay", nodelay),
            ("interval", interval),
            ("resend", resend),
            ("nc", nc),
        ):
            if not isinstance(v, int):
                raise TypeError(f"{name} must be an int, not {type(v).__name__}")
        self._live().set_nodelay(nodelay, interval, resend, int(nc))

    def set_window_size(self, sndwnd: int, rcvwnd: int) -> None:
        """kcp-go ``SetWindowSize``: values <= 0 leave that window unchanged.

        Args:
            sndwnd: the send window in segments (how much ``send`` queues).
            rcvwnd: the receive window in segments (advertised to the peer).

        Raises:
            ValueError: a window above 65535 (16 bits on the wire).
            TypeError: not an int.
            OSError: EBADF after close.
        """
        check_window("sndwnd", sndwnd, keep=True)
        check_window("rcvwnd", rcvwnd, keep=True)
        self._live().set_window_size(sndwnd, rcvwnd)

    def set_mtu(self, mtu: int) -> bool:
        """kcp-go ``SetMtu``: the UDP payload size (KCP MTU = mtu - codec overhead).

        Args:
            mtu: the largest UDP payload to send, in bytes.

        Returns:
            False if ``mtu`` exceeds 1500 or leaves KCP no room; True otherwise.

        Raises:
            TypeError: not an int.
            OSError: EBADF after close.
        """
        check_int("mtu", mtu)
        if mtu > MTU_LIMIT:
            return False
        return self._live().set_mtu(mtu)

    def set_stream_mode(self, enable: bool) -> None:
        """kcp-go ``SetStreamMode``: True merges writes into full segments.

        Args:
            enable: True for stream mode (no message boundaries).

        Raises:
            OSError: EBADF after close.
        """
        self._live().set_stream(bool(enable))

    def set_ack_nodelay(self, enable: bool) -> None:
        """kcp-go ``SetACKNoDelay``: True sends ACKs right after each input.

        Args:
            enable: True to send ACKs at once rather than with the next flush.

        Raises:
            OSError: EBADF after close.
        """
        self._live().ack_nodelay = bool(enable)

    def set_gone_timeout(self, seconds: float) -> None:
        """Change this session's ``gone_timeout`` (:class:`KCPConfig`); 0 turns it off.

        A waiting reader then counts a silent peer as gone (EOF) after that
        long at the least.  Turn it off for a protocol that carries its own
        end of stream and keep-alive over the session (smux does:
        :func:`kcpsock.smux.client` and :func:`~kcpsock.smux.server` turn it
        off), so that a link silent for a second does not end the whole
        session; ``keepalive_timeout`` still ends a dead one.

        Args:
            seconds: seconds (>= 0).

        Raises:
            TypeError, ValueError: ``seconds`` is not a number >= 0.
            OSError: EBADF after close.
        """
        ms = int(check_seconds("seconds", seconds) * 1000)
        self._live().gone_timeout_ms = ms

    @property
    def gone_timeout(self) -> float:
        """This session's ``gone_timeout`` in seconds (0: off); see :meth:`set_gone_timeout`."""
        return self._session.gone_timeout_ms / 1000

    def set_write_delay(self, enable: bool) -> None:
        """kcp-go ``SetWriteDelay``: True leaves flushing to the next tick.

        Args:
            enable: True to batch writes until the next update interval.

        Raises:
            OSError: EBADF after close.
        """
        self._live().write_delay = bool(enable)

    def set_send_buffer(self, nbytes: int) -> None:
        """Set how many bytes ``send`` may queue behind the window (like SO_SNDBUF).

        Args:
            nbytes: bytes, >= 1 (``KCPConfig.send_buffer``, 1 MiB by default).

        Raises:
            TypeError: not an int.
            ValueError: below 1.
            OSError: EBADF after close.
        """
        if isinstance(nbytes, bool) or not isinstance(nbytes, int):
            raise TypeError(f"nbytes must be an int, not {type(nbytes).__name__}")
        if nbytes < 1:
            raise ValueError(f"nbytes must be >= 1, got {nbytes}")
        self._live().set_send_buffer(nbytes)

    @property
    def send_buffer(self) -> int:
        """Bytes ``send`` may queue behind the window (see :meth:`set_send_buffer`)."""
        return int(self._session.send_buffer)

    def set_dup(self, dup: int) -> None:
        """kcp-go ``SetDUP``: send each data datagram ``dup`` extra times.

        Args:
            dup: extra copies per datagram, 0..16 (0: none).

        Raises:
            TypeError: not an int.
            ValueError: out of range.
            OSError: EBADF after close.
        """
        self._live().dup = check_int("dup", dup, 0, MAX_DUP)

    def _own_socket(self, what: str) -> socket.socket:
        session = self._live()
        if session.passive:
            # kcp-go: errInvalidOperation for sessions accepted from a Listener
            raise OSError(
                errno.EINVAL, f"{what}: invalid operation on a session accepted by a Listener"
            )
        return session.transport.sock

    def set_dscp(self, dscp: int) -> None:
        """kcp-go ``SetDSCP`` (dialed sessions only): IPv4 TOS = dscp << 2.

        Args:
            dscp: the DiffServ code point, 0..63.

        Raises:
            OSError: EINVAL on an accepted session or if the OS refuses.
            ValueError: dscp outside 0..63.
        """
        _set_dscp(self._own_socket("set_dscp"), dscp)

    def set_read_buffer(self, nbytes: int) -> None:
        """kcp-go ``SetReadBuffer`` (dialed sessions only): SO_RCVBUF.

        Args:
            nbytes: the kernel receive buffer size (>= 1).

        Raises:
            TypeError, ValueError: ``nbytes`` not an int >= 1.
            OSError: EBADF after close; EINVAL on an accepted session.
        """
        _check_bufsize(nbytes)
        self._own_socket("set_read_buffer").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, nbytes)

    def set_write_buffer(self, nbytes: int) -> None:
        """kcp-go ``SetWriteBuffer`` (dialed sessions only): SO_SNDBUF.

        Args:
            nbytes: the kernel send buffer size (>= 1).

        Raises:
            TypeError, ValueError: ``nbytes`` not an int >= 1.
            OSError: EBADF after close; EINVAL on an accepted session.
        """
        _check_bufsize(nbytes)
        self._own_socket("set_write_buffer").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, nbytes)

    # --------------------------------------------------------------- figures

    def figures(self) -> dict[str, int]:
        """Return this session's counters and RTT figures (see ``Session.figures``)."""
        return self._session.figures()

    @property
    def srtt(self) -> int:
        """Smoothed RTT in ms (kcp-go ``GetSRTT``)."""
        return int(self._session.kcp.rx_srtt)

    @property
    def rttvar(self) -> int:
        """RTT variation in ms (kcp-go ``GetSRTTVar``)."""
        return int(self._session.kcp.rx_rttvar)

    @property
    def rto(self) -> int:
        """Retransmission timeout in ms (kcp-go ``GetRTO``)."""
        return int(self._session.kcp.rx_rto)

    @property
    def bytes_sent(self) -> int:
        """Application bytes accepted by send."""
        return self._session.bytes_sent

    @property
    def bytes_received(self) -> int:
        """Application bytes returned by recv."""
        return self._session.bytes_received

    @property
    def segments_sent(self) -> int:
        """KCP segments written (retransmissions and ACKs included)."""
        return int(self._session.kcp.out_segs)

    @property
    def segments_received(self) -> int:
        """KCP segments received."""
        return int(self._session.kcp.in_segs)

    @property
    def retransmissions(self) -> int:
        """Segments retransmitted (lost + fast + early)."""
        k = self._session.kcp
        return int(k.lost_segs + k.fast_retrans_segs + k.early_retrans_segs)

    @property
    def state(self) -> str:
        """The session state: "open", "dead" or "closed"."""
        if self._real_closed:
            return SessionState.CLOSED.value
        return self._session.state.value

    def __repr__(self) -> str:
        s = self._session
        state = self.state
        parts = [
            f"<kcpsock.KCPSocket [{state}]" if state == "closed" else "<kcpsock.KCPSocket",
            f"state={state}",
            f"conv={s.conv:#010x}",
        ]
        if not self._real_closed and s.state is not SessionState.CLOSED:
            try:
                parts.append(f"laddr={s.local_address()!r}")
            except OSError:
                pass
        parts.append(f"raddr={s.remote!r}")
        parts.append(f"srtt={s.kcp.rx_srtt}ms")
        return " ".join(parts) + ">"


class Listener(SocketTimeouts):
    """The listening side: ``accept()`` returns a :class:`KCPSocket` per conversation.

    Obtain one from :func:`listen` or :func:`create_server`.  New
    conversations beyond ``backlog`` waiting sessions or ``max_sessions``
    live ones are dropped (counted in :attr:`refused`).  Closing the listener
    stops accepting; sessions already accepted keep working until closed.
    """

    def __init__(self, core: ListenerCore) -> None:
        """Wrap a listener engine (internal; use :func:`listen`)."""
        self._core = core
        self._timeout: Optional[float] = socket.getdefaulttimeout()
        self.family = core.sock.family
        self.type = socket.SOCK_STREAM
        self.proto = socket.IPPROTO_UDP

    def accept(self) -> tuple[KCPSocket, Address]:
        """Wait for the next new conversation (``socket.accept``).

        Returns:
            ``(KCPSocket, remote address)``.

        Raises:
            OSError: EBADF after close.
            TimeoutError: the timeout expired.
            BlockingIOError: non-blocking and nothing pending.
        """
        try:
            session = self._core.accept(timeout_deadline(self._timeout))
        except KCPClosedError:
            park_at_exit()
            raise
        return KCPSocket(session), session.remote

    def _check_open(self) -> None:
        if self._core.closed:
            raise KCPClosedError()

    def getsockname(self) -> Address:
        """Return the local address of the UDP socket (a 4-tuple for IPv6).

        Raises:
            OSError: EBADF after close.
        """
        self._check_open()
        addr: Address = self._core.sock.getsockname()
        return addr

    def getpeername(self) -> Address:
        """A listener has no peer: raises as a listening TCP socket does.

        Raises:
            OSError: ENOTCONN; EBADF after close.
        """
        self._check_open()
        raise OSError(errno.ENOTCONN, os.strerror(errno.ENOTCONN))

    @property
    def addr(self) -> Address:
        """The local address (kcp-go ``Addr``)."""
        return self.getsockname()

    def fileno(self) -> int:
        """Return a descriptor readable when :meth:`accept` will not block; -1 after close."""
        if self._core.closed:
            return -1
        try:
            return self._core.signal_fileno()
        except KCPClosedError:
            return -1

    def close(self) -> None:
        """Stop accepting (idempotent).

        Sessions not accepted yet are closed; accepted ones keep working; the
        socket is released with the last one.
        """
        self._core.close()

    def shutdown(self, how: int) -> None:
        """Stop accepting, as ``shutdown`` of a listening TCP socket does.

        ``SHUT_RD`` and ``SHUT_RDWR`` wake an ``accept()`` blocked in another
        thread with ``OSError`` (the usual way to stop a server thread) and
        act as :meth:`close` (the listener reads as closed afterwards: EBADF,
        where Linux TCP says EINVAL); ``SHUT_WR`` changes nothing, as on Linux.

        Args:
            how: ``socket.SHUT_RD``, ``SHUT_WR`` or ``SHUT_RDWR``.

        Raises:
            OSError: EBADF after close.
            ValueError: bad ``how``.
            TypeError: ``how`` is not an int.
        """
        check_how(how)
        self._check_open()
        if how != socket.SHUT_WR:
            self._core.close()

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._core.closed

    @property
    def refused(self) -> dict[str, int]:
        """New conversations dropped, by reason (``kcpsock.listener.REFUSAL_REASONS``).

        unsolicited (not a client's first datagram), blacklist, conv_in_use,
        backlog, backlog_per_address, per_address, max_sessions, and expired
        (waited longer than ``accept_timeout`` for accept).
        """
        return dict(self._core.refused)

    @property
    def session_count(self) -> int:
        """Live sessions (accepted or waiting)."""
        return self._core.session_count()

    @property
    def core(self) -> ListenerCore:
        """The listener engine (advanced use)."""
        return self._core

    def _udp(self) -> socket.socket:
        self._check_open()
        return self._core.sock

    def set_dscp(self, dscp: int) -> None:
        """kcp-go ``Listener.SetDSCP``: IPv4 TOS = dscp << 2 on the listener socket.

        Args:
            dscp: the DiffServ code point, 0..63.

        Raises:
            ValueError: outside 0..63.
            OSError: EBADF after close; EINVAL if the OS refuses.
        """
        _set_dscp(self._udp(), dscp)

    def set_read_buffer(self, nbytes: int) -> None:
        """kcp-go ``Listener.SetReadBuffer``: SO_RCVBUF of the listener socket.

        Args:
            nbytes: the kernel receive buffer size (>= 1).

        Raises:
            TypeError, ValueError: ``nbytes`` not an int >= 1.
            OSError: EBADF after close.
        """
        self._udp().setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _check_bufsize(nbytes))

    def set_write_buffer(self, nbytes: int) -> None:
        """kcp-go ``Listener.SetWriteBuffer``: SO_SNDBUF of the listener socket.

        Args:
            nbytes: the kernel send buffer size (>= 1).

        Raises:
            TypeError, ValueError: ``nbytes`` not an int >= 1.
            OSError: EBADF after close.
        """
        self._udp().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _check_bufsize(nbytes))

    def setsockopt(self, level: int, optname: int, value: Any) -> None:
        """Set an option on the listener's UDP socket (``socket.setsockopt``).

        Args:
            level: the protocol level, as ``socket.setsockopt``.
            optname: the option.
            value: its value (an int or bytes).

        Raises:
            OSError: EBADF after close; what the UDP socket raises.
        """
        self._udp().setsockopt(level, optname, value)

    def getsockopt(self, level: int, optname: int, buflen: Optional[int] = None) -> Any:
        """Read an option of the listener's UDP socket (``socket.getsockopt``).

        Args:
            level: the protocol level, as ``socket.getsockopt``.
            optname: the option, as ``socket.getsockopt``.
            buflen: None for an int result, else the bytes to return.

        Returns:
            An int, or bytes when ``buflen`` is given.

        Raises:
            OSError: EBADF after close; what the UDP socket raises.
        """
        sock = self._udp()
        ident = _identity_option(self, level, optname, buflen)
        if ident is not None:
            return ident
        if buflen is None:
            return sock.getsockopt(level, optname)
        return sock.getsockopt(level, optname, buflen)

    def listen(self, backlog: Optional[int] = None) -> None:
        """Set the accept backlog (``socket.listen``); a KCP listener always listens.

        Lets code that calls ``listen`` on a bound socket, e.g.
        ``asyncio.start_server(sock=listener)``, take a :class:`Listener`.

        Args:
            backlog: sessions waiting for :meth:`accept` at most (values
                below 1 count as 1); None keeps the current backlog.

        Raises:
            OSError: EBADF after close.
            TypeError: not an int.
        """
        self._check_open()
        if backlog is None:
            return
        if isinstance(backlog, bool) or not isinstance(backlog, int):
            raise TypeError(f"backlog must be an int, not {type(backlog).__name__}")
        self._core.admission.backlog = max(1, backlog)

    def __reduce_ex__(self, protocol: Any) -> Any:
        # as socket.socket: no copies (a copy's collection would close the listener)
        raise TypeError(f"cannot pickle {type(self).__name__!r} object")

    def __enter__(self) -> Listener:
        return self

    def __del__(self) -> None:
        # as a listening socket.socket: forgotten means closed
        try:
            self._core.close()
        except Exception:
            pass

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        core = self._core
        if core.closed:
            return f"<kcpsock.Listener [closed] sessions={core.session_count()}>"
        try:
            laddr = core.sock.getsockname()
        except OSError:
            laddr = None
        return f"<kcpsock.Listener laddr={laddr!r} sessions={core.session_count()}>"


# ------------------------------------------------------------------ factories


def _random_conv() -> int:
    return int.from_bytes(os.urandom(4), "little")


def dial(
    address: AddressLike,
    *,
    block: Optional[BlockCrypt] = None,
    data_shards: int = 0,
    parity_shards: int = 0,
    config: Optional[KCPConfig] = None,
    conv: Optional[int] = None,
    sock: Optional[socket.socket] = None,
    source_address: Optional[AddressLike] = None,
    timeout: Any = _GLOBAL_DEFAULT,
    **options: Any,
) -> KCPSocket:
    """Open a KCP session to ``address`` (kcp-go ``DialWithOptions``/``NewConn``).

    There is no handshake: the session exists at once and the peer learns of
    it from the first packet.

    Args:
        address: ``(host, port)`` or kcp-go's ``"host:port"`` /
            ``"[::1]:port"``; host names are resolved with ``getaddrinfo``,
            IPv4 addresses first (as kcp-go; UDP cannot fall back on a
            refused connect as ``socket.create_connection`` does).  An IPv6
            address may be ``(host, port, flowinfo, scope_id)``, as socket's.
        block: a cipher from :func:`kcpsock.new_block_crypt`, or None.
        data_shards: FEC data shards (0 with parity_shards 0: FEC off).
        parity_shards: FEC parity shards.
        config: a :class:`KCPConfig` (default ``KCPConfig()``).
        conv: the conversation id (default: 4 random bytes, as kcp-go).
        sock: a UDP socket of yours to send through (kcp-go ``NewConn``); it
            is never closed by kcpsock and must not be read by anyone else.
        source_address: ``(host, port)`` to bind our own socket to.
        timeout: the socket timeout (default ``socket.getdefaulttimeout()``).
        **options: :class:`KCPConfig` fields overriding ``config``:
            ``nodelay``, ``interval``, ``resend``, ``nc`` (kcp-go
            ``SetNoDelay``), ``sndwnd``, ``rcvwnd``, ``mtu``, ``stream``,
            ``ack_nodelay``, ``write_delay``, ``dup``, ``dead_link``,
            ``rto_ordered``, ``dscp``, ``read_buffer``, ``write_buffer``, ``send_buffer``,
            ``linger``, ``close_timeout``, ``keepalive_interval``,
            ``keepalive_timeout``, ``gone_timeout``, ``replay_cache``, ``replay_window``
            (the replay/reflection filter, README "Security"); e.g.
            ``dial(addr, nodelay=1, interval=10, resend=2, nc=1)``.

    Returns:
        A connected :class:`KCPSocket`.

    Raises:
        TypeError, ValueError: bad arguments (naming the argument), checked
            before any socket is created; among them an ``mtu`` the codec
            cannot use (less than 50 bytes left for KCP).
        OverflowError: an infinite or too large ``timeout`` (as
            ``socket.settimeout``).
        OSError: resolution or socket errors (``socket.gaierror``); a
            socket created for the call is closed again.
    """
    host, port = _check_address(address)
    cfg = _config_from(config, options)
    conv = _random_conv() if conv is None else check_int("conv", conv, 0, U32)
    codec = make_codec(block, data_shards, parity_shards)
    _check_mtu(codec, cfg)
    if timeout is not _GLOBAL_DEFAULT:
        check_timeout(timeout)
    if source_address is not None:
        _check_address(source_address, "source_address")
    if sock is not None:
        if not isinstance(sock, socket.socket) or sock.type != socket.SOCK_DGRAM:
            raise TypeError("sock must be a UDP socket.socket (SOCK_DGRAM)")
        infos = _resolve(host, port, sock.family)
        if not infos:
            raise OSError(f"getaddrinfo returns an empty list for {host!r}")
        remote = _sockaddr(infos[0][0], infos[0][4], address)
        transport = Transport(sock, owned=False, connected=False)
    else:
        err: Optional[OSError] = None
        usock: Optional[socket.socket] = None
        for af, socktype, proto, _, sa in _resolve(host, port):
            try:
                sa = _sockaddr(af, sa, address)
                usock = socket.socket(af, socktype, proto)
                usock.settimeout(None)
                if source_address is not None:
                    usock.bind(source_address)
                _apply_socket_options(usock, cfg)
                usock.connect(sa)  # a connected socket: the kernel filters other sources
                remote = usock.getpeername()
                err = None
                break
            except BaseException as exc:
                if usock is not None:
                    usock.close()
                    usock = None
                if not isinstance(exc, OSError):
                    raise  # a bad argument (TypeError from bind, ...): no other address helps
                err = exc
        if usock is None:
            if err is not None:
                raise err
            raise OSError("getaddrinfo returns an empty list")
        transport = Transport(usock, owned=True, connected=True)
    try:
        session = Session(conv, remote, transport, cfg, codec)
    except BaseException:
        if transport.owned:
            transport.sock.close()
        raise
    try:
        session.start_receiver()
        ks = KCPSocket(session)
        if timeout is not _GLOBAL_DEFAULT:
            ks.settimeout(timeout)
    except BaseException:
        session.close(wait=False)  # stops the receiver, closes a socket we created
        raise
    return ks


def create_connection(
    address: AddressLike,
    timeout: Any = _GLOBAL_DEFAULT,
    source_address: Optional[AddressLike] = None,
    *,
    all_errors: bool = False,
    block: Optional[BlockCrypt] = None,
    data_shards: int = 0,
    parity_shards: int = 0,
    **kwargs: Any,
) -> KCPSocket:
    """``socket.create_connection`` over KCP: returns once the peer has answered.

    The signature is ``socket.create_connection``'s, so it can be passed
    where that function is expected (``http.client``, ``smtplib``, ...).
    Like a TCP connect it waits for the peer: it calls :func:`dial`, then sends
    KCP window probes (WASK, which every KCP peer, kcp-go and kcptun
    included, answers with WINS; a listener takes the probe as the start of
    a conversation) until anything comes back.  Use :func:`dial` for
    kcp-go's behaviour (no waiting at all).

    Args:
        address: ``(host, port)`` or ``"host:port"``.
        timeout: bounds the wait for the answer, then becomes the socket's
            timeout; default ``socket.getdefaulttimeout()`` (None: wait up to
            ``keepalive_timeout``, 30 s by default).
        source_address: ``(host, port)`` to bind to first.
        all_errors: accepted for compatibility: UDP gives one address only
            (IPv4 first), so there is one error to raise.
        block: as :func:`dial`.
        data_shards: as :func:`dial`.
        parity_shards: as :func:`dial`.
        **kwargs: as :func:`dial`.

    Returns:
        A connected :class:`KCPSocket` whose peer answered.

    Raises:
        ConnectionRefusedError: nothing listens on that UDP port (ICMP).
        TimeoutError: no answer within ``timeout``: no KCP server there, or
            one with another key, cipher or FEC setting (its answers cannot
            be read, so they look like silence).
        As :func:`dial` otherwise.
    """
    sock = dial(
        address,
        block=block,
        data_shards=data_shards,
        parity_shards=parity_shards,
        source_address=source_address,
        timeout=timeout,
        **kwargs,
    )
    wait = sock.gettimeout()
    try:
        sock.session.handshake(None if not wait else time.monotonic() + wait)
    except TimeoutError:
        sock.close()
        where = _format_address(sock.session.remote)
        raise Timeout(
            f"timed out: no KCP answer from {where} within"
            f" {wait if wait else sock.session.keepalive_timeout_ms / 1000:g} s (is a KCP"
            " server listening there, with the same key, cipher (block) and FEC"
            " (data_shards/parity_shards) settings?)"
        ) from None
    except BaseException:
        sock.close()
        raise
    return sock


def _format_address(address: Any) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def listen(
    address: Optional[AddressLike],
    *,
    block: Optional[BlockCrypt] = None,
    data_shards: int = 0,
    parity_shards: int = 0,
    backlog: Optional[int] = None,
    config: Optional[KCPConfig] = None,
    sock: Optional[socket.socket] = None,
    max_sessions: Optional[int] = None,
    blacklist_ttl: Optional[float] = None,
    reuse_port: bool = False,
    **options: Any,
) -> Listener:
    """Listen for KCP conversations (kcp-go ``ListenWithOptions``/``ServeConn``).

    Args:
        address: ``(host, port)`` or ``"host:port"`` to bind (host "" =
            all IPv4 interfaces; IPv6 also ``(host, port, flowinfo,
            scope_id)``); may be None when ``sock`` is given, and must then
            name the port ``sock`` is bound to (or port 0).
        block: a cipher from :func:`kcpsock.new_block_crypt`, or None.
        data_shards: FEC data shards (0 with parity_shards 0: FEC off).
        parity_shards: FEC parity shards.
        backlog: sessions waiting for accept at most (default 128).
        config: a :class:`KCPConfig` for the sessions.
        sock: a bound UDP socket of yours (kcp-go ``ServeConn``); never
            closed by kcpsock.
        max_sessions: live sessions at most (default 4096).
        blacklist_ttl: seconds a closed (address, conv) stays refused
            (default 600; 0 disables).
        reuse_port: set SO_REUSEPORT before binding.
        **options: :class:`KCPConfig` fields for the sessions (as
            :func:`dial`'s), and the listener's limits against floods:
            ``max_sessions_per_address``, ``backlog_per_address``,
            ``accept_timeout``, ``pending_rcvwnd``, ``conv_guard`` (README
            "Security").

    Returns:
        A :class:`Listener`.

    Raises:
        TypeError, ValueError: bad arguments.
        OSError: bind or resolution errors.
    """
    extra = dict(options)
    if backlog is not None:
        extra["backlog"] = backlog
    if max_sessions is not None:
        extra["max_sessions"] = max_sessions
    if blacklist_ttl is not None:
        extra["blacklist_ttl"] = blacklist_ttl
    cfg = _config_from(config, extra)
    _check_mtu(make_codec(block, data_shards, parity_shards), cfg)  # as dial: at the call
    if sock is not None:
        if not isinstance(sock, socket.socket) or sock.type != socket.SOCK_DGRAM:
            raise TypeError("sock must be a UDP socket.socket (SOCK_DGRAM)")
        if address is not None:
            host, port = _check_address(address)
            bound = sock.getsockname()[1]
            if bound == 0:
                sock.bind((host, port) if isinstance(address, str) else address)
            elif port not in (0, bound):
                raise ValueError(
                    f"sock is already bound to port {bound}, address asks for port {port} "
                    "(pass the address or a socket bound to it, not both)"
                )
        core = ListenerCore(
            sock,
            owned=False,
            config=cfg,
            block=block,
            data_shards=data_shards,
            parity_shards=parity_shards,
        )
        return Listener(core)
    host, port = _check_address(address)
    if host == "":
        host = None
    err: Optional[OSError] = None
    for af, socktype, proto, _, sa in _resolve(host, port, 0, socket.AI_PASSIVE):
        sa = _sockaddr(af, sa, address)
        usock = socket.socket(af, socktype, proto)
        try:
            if reuse_port:
                usock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            _apply_socket_options(usock, cfg)
            usock.bind(sa)
        except BaseException as exc:
            usock.close()
            if not isinstance(exc, OSError):
                raise
            err = exc
            continue
        return _listen_owned(usock, cfg, block, data_shards, parity_shards)
    if err is not None:
        raise err
    raise OSError("getaddrinfo returns an empty list")


def _listen_owned(
    usock: socket.socket,
    cfg: KCPConfig,
    block: Optional[BlockCrypt],
    data_shards: int,
    parity_shards: int,
) -> Listener:
    try:
        core = ListenerCore(
            usock,
            owned=True,
            config=cfg,
            block=block,
            data_shards=data_shards,
            parity_shards=parity_shards,
        )
    except BaseException:
        usock.close()
        raise
    return Listener(core)


def create_server(
    address: AddressLike,
    *,
    family: int = socket.AF_INET,
    backlog: Optional[int] = None,
    reuse_port: bool = False,
    dualstack_ipv6: bool = False,
    block: Optional[BlockCrypt] = None,
    data_shards: int = 0,
    parity_shards: int = 0,
    **kwargs: Any,
) -> Listener:
    """``socket.create_server`` over KCP: bind a UDP socket and listen.

    Args:
        address: ``(host, port)``.
        family: ``AF_INET`` or ``AF_INET6``.
        backlog: as :func:`listen`.
        reuse_port: set SO_REUSEPORT.
        dualstack_ipv6: with ``AF_INET6``, accept IPv4 too.
        block: as :func:`listen`.
        data_shards: as :func:`listen`.
        parity_shards: as :func:`listen`.
        **kwargs: as :func:`listen`.

    Returns:
        A :class:`Listener`.

    Raises:
        As :func:`listen`; ValueError for ``dualstack_ipv6`` without AF_INET6.
    """
    host, port = _check_address(address)
    if dualstack_ipv6 and family != socket.AF_INET6:
        raise ValueError("dualstack_ipv6 requires family=AF_INET6")
    extra = dict(kwargs)
    if backlog is not None:
        extra["backlog"] = backlog
    cfg = _config_from(extra.pop("config", None), extra)
    _check_mtu(make_codec(block, data_shards, parity_shards), cfg)
    usock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if reuse_port:
            usock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
            usock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if dualstack_ipv6 else 1)
        _apply_socket_options(usock, cfg)
        usock.bind((host, port) if isinstance(address, str) else address)
    except BaseException:
        usock.close()
        raise
    return _listen_owned(usock, cfg, block, data_shards, parity_shards)


#: Seconds interpreter exit waits for background closes to deliver.
EXIT_DRAIN_S = 5.0

#: Set by the exit handler (:func:`_close_everything`) before it closes anything.
_exiting = False


def park_at_exit() -> None:
    """Freeze a background thread whose socket the exit handler closed (never returns then).

    At interpreter exit the handler closes every session and listener (so
    that closes deliver), which wakes the daemon threads blocked in them.
    A TCP socket stays open until the process ends, and such a thread stays
    blocked, silently; raising ``OSError`` instead would print a traceback
    per thread.  So, once exit began, a thread other than the main thread
    that meets a closed socket waits here until the interpreter ends it.
    Otherwise this returns and the caller raises: on the main thread, and on
    kcpsock's own threads (named ``kcpsock-...``: smux's reader and writer,
    the command line's), which handle a close themselves (smux's reader
    then ends its session, which wakes the application's threads).
    """
    if _exiting:
        thread = threading.current_thread()
        if thread is not threading.main_thread() and not thread.name.startswith("kcpsock-"):
            threading.Event().wait()  # ended by the interpreter's exit, not by a timeout


@atexit.register
def _close_everything() -> None:
    """Close what is still open at interpreter exit.

    Sessions closed with data still unacknowledged get up to
    :data:`EXIT_DRAIN_S` seconds to deliver it (a TCP socket's kernel would
    go on after the process ended; ours cannot).  Threads blocked in
    kcpsock calls stay blocked (:func:`park_at_exit`).
    """
    global _exiting
    _exiting = True
    for s in live_sessions():
        try:
            s.close()
        except Exception:
            pass
    try:
        drain_closing(EXIT_DRAIN_S)
    except Exception:
        pass
    for core in live_listeners():
        try:
            core.close_all()
        except Exception:
            pass
