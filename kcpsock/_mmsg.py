"""Batched UDP I/O on Linux: libc's ``sendmmsg`` and ``recvmmsg`` through ctypes.

One system call moves a whole batch of datagrams where Python's socket API
makes one per datagram (each releasing and retaking the GIL).  kcp-go does
the same on Linux (x/net's ReadBatch/WriteBatch).

Invariants:
    * Linux only, IPv4 and IPv6 sockets only.  :func:`sender` and
      :func:`reader` return None where batching is unavailable (another
      system, no ``sendmmsg`` in libc, a structure layout this module does
      not expect) or switched off: setting the environment variable
      ``KCPSOCK_NO_MMSG`` to anything but ``""`` or ``"0"`` (read when a
      transport or receiver is created).  Callers then keep their
      per-datagram loop.
    * No copy of outgoing payloads: each iovec points into the ``bytes``
      object itself (a ``c_char_p`` slot keeps a reference while the batch
      structure holds it).  Send structures live in a pool taken with the
      atomic ``list.pop``/``list.append``, so threads may send at once.
      :meth:`BatchSender.send_each` sends to a destination per datagram (a
      listener's answers to many peers) in the same calls.
    * Both calls release the GIL, as ``sendto``/``recvfrom`` do, once per
      batch: ``sendmmsg`` blocks on a blocking socket whose buffer is full,
      as ``sendto`` does, and while the kernel copies a batch the process's
      other threads run (keeping the GIL through ``recvmmsg``, which never
      blocks with ``MSG_DONTWAIT``, measured slower on 2 cores).
    * Errors behave as the per-datagram loops did: a datagram the kernel
      refuses (``EAGAIN``, ``ECONNREFUSED``, ``EINTR``) is skipped and the
      rest of the batch still goes; any other send error ends the call
      quietly (kcp-go ignores write errors: KCP retransmits).  Reads raise
      the ``OSError`` subclass ``recvfrom`` would have raised
      (``ConnectionRefusedError`` ...), after appending what was read
      before it; ``EAGAIN`` just ends the read.
    * Received datagrams longer than the buffer are truncated to it, as
      ``recvfrom(size)`` truncates them.  Addresses are the tuples
      ``recvfrom`` returns (IPv6: ``(host, port, flowinfo, scope_id)``,
      host with ``%scope`` where ``getnameinfo`` adds it).
    * Where the C helper ``kcpsock._udpio`` is built (``kcpsock._accel.native``),
      :class:`BatchReader` and :class:`BatchSender` make the same calls
      through it, with the same results and errors, without the
      per-datagram Python work; ctypes is the fallback.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import sys
from collections.abc import Sequence
from itertools import repeat
from typing import Any, Callable, Optional

__all__ = [
    "ENV_SWITCH",
    "GSO_ENV_SWITCH",
    "BatchReader",
    "BatchSender",
    "GsoSender",
    "enabled",
    "gso_sender",
    "reader",
    "sender",
    "waiter",
]

#: The environment variable that turns batched I/O off.
ENV_SWITCH = "KCPSOCK_NO_MMSG"
#: The environment variable that turns UDP segmentation offload (GSO) off.
GSO_ENV_SWITCH = "KCPSOCK_NO_GSO"
#: ``UDP_SEGMENT`` (linux/udp.h, Linux 4.18): the GSO segment size, as a
#: socket option and as a control message of ``sendmsg``.
UDP_SEGMENT = 103
#: Datagrams one GSO ``sendmsg`` carries at most (the kernel's UDP_MAX_SEGMENTS).
GSO_MAX_SEGMENTS = 64
#: Payload bytes one GSO ``sendmsg`` carries at most (UDP's 16-bit length,
#: with room for the headers of IPv6).
GSO_MAX_BYTES = 65000
#: errno values of a GSO send the kernel or the route does not support
#: (no checksum offload on the device: EIO; a segment above the path MTU:
#: EINVAL; an old kernel: ENOPROTOOPT ...): the sender falls back for good.
_GSO_UNSUPPORTED = frozenset(
    (errno.EIO, errno.EINVAL, errno.EMSGSIZE, errno.ENOPROTOOPT, errno.EOPNOTSUPP, errno.ENOTSUP)
)
_SOL_UDP = getattr(socket, "SOL_UDP", 17)

Address = Any  # the tuples of the socket module: (host, port[, flowinfo, scope_id])

#: Datagrams per ``sendmmsg`` call (larger batches take several calls).
SEND_BATCH = 64
_SOCKADDR_MAX = 28  # sizeof(struct sockaddr_in6)
_ADDR_CACHE = 4096  # entries kept of address conversions (then cleared)
_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0x40)
_SKIP = frozenset((errno.EAGAIN, errno.EWOULDBLOCK, errno.ECONNREFUSED, errno.EINTR))


class _Iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _Msghdr(ctypes.Structure):
    _fields_ = [
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint32),
        ("msg_iov", ctypes.c_void_p),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    ]


class _Mmsghdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _Msghdr), ("msg_len", ctypes.c_uint)]


_PTR = ctypes.sizeof(ctypes.c_void_p)
_STRIDE = ctypes.sizeof(_Mmsghdr)
_IOV = ctypes.sizeof(_Iovec)
_NAMELEN_OFF = _Msghdr.msg_namelen.offset
_LEN_OFF = _Mmsghdr.msg_len.offset
_INT = ctypes.sizeof(ctypes.c_uint)

_funcs: Optional[tuple[Callable[..., int], Callable[..., int]]] = None
_loaded = False


def _udpio() -> Any:
    """The C helper ``kcpsock._udpio``, or None (not built, ``KCPSOCK_PURE``, not Linux)."""
    from kcpsock._accel import native

    return native("_udpio")


def _switched_off() -> bool:
    return os.environ.get(ENV_SWITCH, "") not in ("", "0")


def _load() -> Optional[tuple[Callable[..., int], Callable[..., int]]]:
    """libc's (sendmmsg, recvmmsg), or None; loaded once."""
    global _funcs, _loaded
    if _loaded:
        return _funcs
    _loaded = True
    if not sys.platform.startswith("linux"):
        return None
    if (
        _STRIDE % _PTR
        or _STRIDE % _INT
        or _IOV != 2 * _PTR
        or _NAMELEN_OFF % _INT
        or _LEN_OFF % _INT
        or ctypes.sizeof(ctypes.c_size_t) != _PTR
    ):
        return None  # pragma: no cover - an ABI the overlays below do not fit
    try:
        # Both release the GIL (one release per batch instead of one per
        # datagram): sendmmsg may block (a blocking socket with a full
        # buffer), and while the kernel copies a batch other threads run
        # Python (holding the GIL through recvmmsg measured slower: 2 cores)
        libc = ctypes.CDLL(None, use_errno=True)
        send = libc.sendmmsg
        recv = libc.recvmmsg
    except (OSError, AttributeError):
        return None
    send.restype = ctypes.c_int
    recv.restype = ctypes.c_int
    _funcs = (send, recv)
    return _funcs


def enabled() -> bool:
    """True when batched I/O is available here and not switched off by ``KCPSOCK_NO_MMSG``."""
    return not _switched_off() and _load() is not None


def _usable(sock: socket.socket) -> bool:
    return sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_DGRAM


def _sockaddr(family: int, remote: Address) -> Optional[bytes]:
    """The C sockaddr for ``remote`` on a ``family`` socket, or None (not numeric: loop)."""
    try:
        if family == socket.AF_INET:
            host, port = remote
            return (
                socket.AF_INET.to_bytes(2, sys.byteorder)
                + int(port).to_bytes(2, "big")
                + socket.inet_pton(socket.AF_INET, host)
                + bytes(8)
            )
        host, port = remote[0], remote[1]
        flowinfo = int(remote[2]) if len(remote) > 2 else 0
        scope = int(remote[3]) if len(remote) > 3 else 0
        if scope and "%" in host:  # "fe80::1%eth0" as recvfrom shows it: the tuple's scope wins
            host = host.split("%", 1)[0]
        return (
            socket.AF_INET6.to_bytes(2, sys.byteorder)
            + int(port).to_bytes(2, "big")
            + flowinfo.to_bytes(4, "big")
            + socket.inet_pton(socket.AF_INET6, host)
            + scope.to_bytes(4, sys.byteorder)
        )
    except (OSError, ValueError, TypeError, OverflowError, IndexError):
        return None  # a hostname, "%scope", "<broadcast>", a bad tuple: sendto decides


def _address(raw: bytes) -> Address:
    """The ``recvfrom`` tuple of a C sockaddr_in/sockaddr_in6."""
    family = int.from_bytes(raw[0:2], sys.byteorder)
    port = int.from_bytes(raw[2:4], "big")
    if family == socket.AF_INET:
        return (socket.inet_ntop(socket.AF_INET, raw[4:8]), port)
    if family == socket.AF_INET6:
        flowinfo = int.from_bytes(raw[4:8], "big")
        host = socket.inet_ntop(socket.AF_INET6, raw[8:24])
        scope = int.from_bytes(raw[24:28], sys.byteorder)
        if scope:  # getnameinfo adds "%scope" to link-local hosts, as recvfrom shows them
            host = socket.getnameinfo((host, port, flowinfo, scope), socket.NI_NUMERICHOST)[0]
        return (host, port, flowinfo, scope)
    raise OSError(errno.EAFNOSUPPORT, f"unexpected address family {family}")


class _SendSlot:
    """One preallocated ``sendmmsg`` batch: headers, iovecs, overlays."""

    __slots__ = ("bases", "lens", "msgs", "name", "names")

    def __init__(self, n: int, namelen: int) -> None:
        iovs = (ctypes.c_char_p * (2 * n))()  # iov_base (bytes kept alive), iov_len
        # the overlays are written with extended slices (typed Any: ctypes'
        # stubs want lists of exactly the element type)
        self.bases: Any = iovs
        self.lens: Any = (ctypes.c_size_t * (2 * n)).from_buffer(iovs)
        msgs = (_Mmsghdr * n)()
        base = ctypes.addressof(iovs)
        for i in range(n):
            hdr = msgs[i].msg_hdr
            hdr.msg_iov = base + i * _IOV
            hdr.msg_iovlen = 1
            hdr.msg_namelen = namelen  # the socket family's (unused while msg_name is NULL)
        self.msgs = msgs
        self.names: Any = (ctypes.c_void_p * (n * _STRIDE // _PTR)).from_buffer(msgs)
        self.name: Optional[int] = None  # where every msg_name points now (None: NULL)

    def point(self, chunk: Sequence[Any]) -> tuple[Sequence[bytes], list[int]]:
        """Point the first ``len(chunk)`` iovecs at the datagrams of ``chunk``.

        Returns:
            The bytes pointed at (copies of any bytearray or memoryview: the
            caller keeps them alive until the call returns) and their lengths.
        """
        n = len(chunk)
        try:
            self.bases[0 : 2 * n : 2] = chunk
        except TypeError:  # bytearray, memoryview: only bytes are pointed at
            chunk = [p if type(p) is bytes else bytes(p) for p in chunk]
            self.bases[0 : 2 * n : 2] = chunk
        lens = [len(p) for p in chunk]
        self.lens[1 : 2 * n : 2] = lens
        return chunk, lens


#: (family, batch) -> free send slots, shared by the process's senders.
_SEND_POOLS: dict[tuple[int, int], list[_SendSlot]] = {}


class BatchSender:
    """``sendmmsg`` for one UDP socket (thread-safe: pooled batch structures).

    Args:
        sock: an AF_INET/AF_INET6 datagram socket.
        connected: the socket is connected (no destination is passed).
        batch: datagrams per system call.
    """

    __slots__ = (
        "_batch",
        "_c",
        "_call",
        "_connected",
        "_family",
        "_names",
        "_pool",
        "_raw",
        "_sock",
    )

    def __init__(self, sock: socket.socket, connected: bool, batch: int = SEND_BATCH) -> None:
        funcs = _load()
        if funcs is None:
            raise OSError(errno.ENOSYS, "sendmmsg is not available here")
        if not 1 <= batch <= 1024:
            raise ValueError(f"batch must be 1 to 1024, not {batch}")
        self._call = funcs[0]
        self._sock = sock
        self._family = int(sock.family)
        self._connected = connected
        self._batch = batch
        self._pool = _SEND_POOLS.setdefault((self._family, batch), [])
        # remote -> its C sockaddr (kept alive here while slots point at it)
        self._names: dict[Address, ctypes.Array[ctypes.c_char]] = {}
        # the C helper (None: ctypes) and its cache: remote -> C sockaddr bytes
        self._c = _udpio() if batch == SEND_BATCH else None
        self._raw: dict[Address, bytes] = {}

    def _raw_name(self, remote: Address) -> Optional[bytes]:
        """The C sockaddr bytes for ``remote`` (cached), or None (not a numeric address)."""
        raw = _sockaddr(self._family, remote)
        if raw is not None:
            cache = self._raw
            if len(cache) >= _ADDR_CACHE:
                cache.clear()
            cache[remote] = raw
        return raw

    def _name(self, remote: Address) -> Optional[ctypes.Array[ctypes.c_char]]:
        """The C sockaddr for ``remote`` (cached), or None (not a numeric address)."""
        raw = _sockaddr(self._family, remote)
        if raw is None:
            return None
        names = self._names
        if len(names) >= _ADDR_CACHE:
            names.clear()  # (senders hold the one they use: it lives until they return)
        buf = names[remote] = ctypes.create_string_buffer(raw, len(raw))
        return buf

    def send(self, packets: Sequence[bytes], remote: Address) -> Optional[tuple[int, int]]:
        """Send ``packets`` to ``remote`` (ignored when connected) in as few calls as may be.

        Returns:
            ``(datagrams sent, bytes sent)``; None if this cannot send them
            (a remote that is not a numeric address, a socket with a
            timeout): the caller sends them one by one instead.
        """
        sock = self._sock
        if sock.gettimeout():  # sendto waits for room up to the timeout: leave that to it
            return None
        c = self._c
        if c is not None:
            raw = None
            if not self._connected:
                raw = self._raw.get(remote) or self._raw_name(remote)
                if raw is None:
                    return None
            fd = sock.fileno()
            if fd < 0:
                return (0, 0)
            result: tuple[int, int] = c.send(fd, packets, raw)
            return result
        name: Optional[int] = None
        if not self._connected:
            # held in this frame until the call returns (the cache may drop it)
            buf = self._names.get(remote) or self._name(remote)
            if buf is None:
                return None
            name = ctypes.addressof(buf)
        fd = sock.fileno()
        if fd < 0:
            return (0, 0)
        pool = self._pool
        try:
            slot = pool.pop()
        except IndexError:
            slot = _SendSlot(self._batch, 16 if self._family == socket.AF_INET else 28)
        sent = nbytes = 0
        call = self._call
        most = self._batch
        msgs = slot.msgs
        try:
            total = len(packets)
            start = 0
            while start < total:
                chunk = packets[start : start + most] if start or total > most else packets
                n = len(chunk)
                chunk, lens = slot.point(chunk)
                if slot.name != name:  # one destination for the whole batch
                    step = _STRIDE // _PTR
                    slot.names[0 : most * step : step] = [name] * most
                    slot.name = name
                r = call(fd, msgs, n, 0)
                if r == n:  # the usual case: all in one call
                    sent += n
                    nbytes += sum(lens)
                else:
                    done = 0
                    while True:
                        if r > 0:
                            sent += r
                            nbytes += sum(lens[done : done + r])
                            done += r
                        elif r < 0 and ctypes.get_errno() in _SKIP:
                            done += 1  # this datagram was refused: kcp-go ignores it
                        else:
                            return sent, nbytes  # socket closed under us, or worse: give up
                        if done >= n:
                            break
                        r = call(fd, ctypes.byref(msgs, done * _STRIDE), n - done, 0)
                start += n
        finally:
            pool.append(slot)
        return sent, nbytes

    def send_now(self, packet: bytes, remote: Address) -> Optional[tuple[int, int]]:
        """Send one datagram at once if the kernel takes it without waiting (the C helper).

        The ``sendto`` keeps the GIL: a single small datagram (a keep-alive
        answer, an ACK, a ping) costs a few microseconds in the kernel,
        while releasing the GIL around it lets another thread take it and
        makes this one wait for it back (two thread switches).

        Returns:
            ``(datagrams sent, bytes sent)`` (``(0, 0)`` for a datagram the
            kernel refused, as :meth:`send` skips them); None if the caller
            must send it the usual way: no C helper, a remote that is not a
            numeric address, or a socket buffer without room (the usual
            send then waits for it, as before).
        """
        c = self._c
        if c is None:
            return None
        raw = None
        if not self._connected:
            raw = self._raw.get(remote) or self._raw_name(remote)
            if raw is None:
                return None
        fd = self._sock.fileno()
        if fd < 0:
            return (0, 0)
        r: int = c.send_now(fd, packet, raw)
        if r >= 0:
            return (1, r)
        return None if r == -1 else (0, 0)

    def send_each(
        self, packets: Sequence[bytes], remotes: Sequence[Address]
    ) -> Optional[bytearray]:
        """Send ``packets[i]`` to ``remotes[i]`` (many destinations) in as few calls as may be.

        A listener's receiver sends what one batch made all its sessions
        answer this way: one system call (one GIL release) instead of one
        per session.

        Args:
            packets: UDP payloads.
            remotes: one destination per payload (ignored when connected).

        Returns:
            One flag per datagram (1: sent); None if this cannot send them
            (a remote that is not a numeric address, a socket with a
            timeout): the caller sends them one by one instead.
        """
        sock = self._sock
        if sock.gettimeout():
            return None
        total = len(packets)
        c = self._c
        if c is not None:
            fd = sock.fileno()
            if fd < 0:
                return bytearray(total)
            if self._connected:
                flags: bytearray = c.send_each(fd, packets, None)
                return flags
            # each remote's C sockaddr from the cache (or _raw_name) in C
            got: Optional[bytearray] = c.send_to(fd, packets, remotes, self._raw, self._raw_name)
            return got
        names: list[Optional[int]] = [None] * total
        if not self._connected:
            bufs = self._names
            held = []  # the sockaddr buffers, alive in this frame until the calls return
            last: Any = None
            addr: Optional[int] = None
            for i, remote in enumerate(remotes):
                if remote is not last:
                    buf = bufs.get(remote) or self._name(remote)
                    if buf is None:
                        return None
                    held.append(buf)
                    addr = ctypes.addressof(buf)
                    last = remote
                names[i] = addr
        flags = bytearray(total)
        fd = sock.fileno()
        if fd < 0:
            return flags
        pool = self._pool
        try:
            slot = pool.pop()
        except IndexError:
            slot = _SendSlot(self._batch, 16 if self._family == socket.AF_INET else 28)
        call = self._call
        most = self._batch
        msgs = slot.msgs
        step = _STRIDE // _PTR
        try:
            start = 0
            while start < total:
                chunk = packets[start : start + most]
                n = len(chunk)
                chunk, _ = slot.point(chunk)
                slot.names[0 : n * step : step] = names[start : start + n]
                slot.name = -1  # mixed destinations: send() sets them all again
                done = 0
                while done < n:
                    r = call(fd, ctypes.byref(msgs, done * _STRIDE), n - done, 0)
                    if r > 0:
                        flags[start + done : start + done + r] = b"\x01" * r
                        done += r
                    elif r < 0 and ctypes.get_errno() in _SKIP:
                        done += 1  # this datagram was refused: kcp-go ignores it
                    else:
                        return flags  # socket closed under us, or worse: give up
                start += n
        finally:
            pool.append(slot)
        return flags


class _RecvSlot:
    """One preallocated ``recvmmsg`` batch: datagram buffers, headers, overlays."""

    __slots__ = ("buf", "data", "iovs", "lens", "msgs", "names", "nameview")

    def __init__(self, size: int, n: int, namelen: int) -> None:
        buf = ctypes.create_string_buffer(size * n)
        iovs = (_Iovec * n)()
        names = ctypes.create_string_buffer(_SOCKADDR_MAX * n if namelen else 1)
        msgs = (_Mmsghdr * n)()
        base = ctypes.addressof(buf)
        nbase = ctypes.addressof(names)
        for i in range(n):
            iovs[i].iov_base = base + i * size
            iovs[i].iov_len = size
            hdr = msgs[i].msg_hdr
            hdr.msg_iov = ctypes.addressof(iovs) + i * _IOV
            hdr.msg_iovlen = 1
            if namelen:
                # the kernel writes back the family's size: it never changes
                hdr.msg_name = nbase + i * _SOCKADDR_MAX
                hdr.msg_namelen = namelen
        self.buf = buf
        self.iovs = iovs
        self.names = names
        self.msgs = msgs
        self.lens: Any = (ctypes.c_uint * (n * _STRIDE // _INT)).from_buffer(msgs)
        self.data = memoryview(buf).cast("B")
        self.nameview = memoryview(names).cast("B")


#: (size, batch, address length or 0: no source asked) -> free receive
#: slots, shared by every reader of the process: a slot is held only during
#: one ``fill`` (its data is copied out), so a thousand idle sockets cost no
#: buffers.
_RECV_POOLS: dict[tuple[int, int, int], list[_RecvSlot]] = {}


class BatchReader:
    """``recvmmsg`` for one UDP socket, into buffers from a shared pool.

    Args:
        sock: an AF_INET/AF_INET6 datagram socket.
        size: bytes per datagram buffer (longer datagrams are truncated).
        batch: datagrams per system call.
        peer: the connected peer's address (no source address is asked
            for); None to read each datagram's source.
    """

    __slots__ = ("_c", "_cache", "_call", "_keylen", "_n", "_peer", "_pool", "_size", "_sock")

    def __init__(
        self, sock: socket.socket, size: int, batch: int, peer: Optional[Address] = None
    ) -> None:
        funcs = _load()
        if funcs is None:
            raise OSError(errno.ENOSYS, "recvmmsg is not available here")
        if size < 1 or not 1 <= batch <= 1024:
            raise ValueError(f"size must be positive and batch 1 to 1024: {size}, {batch}")
        self._call = funcs[1]
        self._sock = sock
        self._size = size
        self._n = batch
        self._peer = peer
        # the kernel's address length for the socket's family (IPv4-mapped
        # sources on an IPv6 socket come as sockaddr_in6 too)
        self._keylen = 16 if sock.family == socket.AF_INET else _SOCKADDR_MAX
        self._pool = _RECV_POOLS.setdefault((size, batch, 0 if peer else self._keylen), [])
        self._cache: dict[bytes, Address] = {}
        self._c = _udpio()  # the C helper, or None: ctypes

    def fill(self, out: Any, limit: int) -> None:
        """Append ``(datagram, address)`` pairs to ``out`` until it holds ``limit``.

        Stops early when the kernel has no more (``EAGAIN``).  Raises what
        ``recvfrom`` would (``ConnectionRefusedError``, ``OSError``) after
        keeping what was read before the error.

        Args:
            out: a list or deque (``append``, ``len``).
            limit: how many items ``out`` may hold.
        """
        want = limit - len(out)
        if want <= 0:
            return
        c = self._c
        if c is not None:
            self._c_recv(c, out, want, 0)
            return
        pool = self._pool
        try:
            slot = pool.pop()
        except IndexError:
            slot = _RecvSlot(self._size, self._n, 0 if self._peer else self._keylen)
        try:
            most = self._n
            call = self._call
            fd = self._sock.fileno()
            msgs = slot.msgs
            while True:
                r = call(fd, msgs, most if want > most else want, _DONTWAIT, None)
                if r <= 0:
                    if r == 0:
                        return
                    err = ctypes.get_errno()
                    if err == errno.EAGAIN or err == errno.EWOULDBLOCK:
                        return
                    raise OSError(err, os.strerror(err))
                self._take(slot, r, out)
                if r < most or r >= want:
                    return  # the kernel had no more, or out is full
                want -= r
        finally:
            pool.append(slot)

    def wait(self, out: Any, limit: int) -> None:
        """Block until a datagram arrives, then append what waits, as :meth:`fill` does.

        One ``recvmmsg`` (``MSG_WAITFORONE``) in place of a blocking
        ``recvfrom`` and a read-ahead that finds the kernel empty: an idle
        socket's receiver wakes once per datagram into one system call.
        The C helper only (see :func:`waiter`); the socket must be in
        blocking mode.  Returns with nothing when the read is interrupted
        (``shutdown``); raises what :meth:`fill` would.

        Args:
            out: a list or deque (``append``, ``len``).
            limit: how many items ``out`` may hold (at most ``batch`` are read).
        """
        want = limit - len(out)
        c = self._c
        if want > 0 and c is not None:
            self._c_recv(c, out, want, 1)

    def _c_recv(self, c: Any, out: Any, want: int, wait: int) -> None:
        """``want`` datagrams at most through the C helper's ``recv`` (``wait``: its flag)."""
        peer = self._peer
        c.recv(
            self._sock.fileno(),
            self._size,
            self._n,
            want,
            0 if peer is not None else self._keylen,
            out,
            peer,
            self._cache,
            self._resolve,
            wait,
        )

    def _take(self, slot: _RecvSlot, r: int, out: Any) -> None:
        """Copy ``r`` datagrams (and their sources) out of ``slot`` onto ``out``."""
        peer = self._peer
        if r == 1:  # a ping-pong's usual read: no comprehensions
            item = slot.data[: slot.lens[_LEN_OFF // _INT]].tobytes()
            if peer is None:
                key = slot.nameview[: self._keylen].tobytes()
                out.append((item, self._cache.get(key) or self._resolve(key)))
            else:
                out.append((item, peer))
            return
        size = self._size
        step = _STRIDE // _INT
        off = _LEN_OFF // _INT
        data = slot.data
        sizes = slot.lens[off : off + r * step : step]
        items = [data[p : p + n].tobytes() for p, n in zip(range(0, r * size, size), sizes)]
        if peer is None:
            keylen = self._keylen
            cache = self._cache
            raw = slot.nameview[: r * _SOCKADDR_MAX].tobytes()
            keys = [raw[p : p + keylen] for p in range(0, r * _SOCKADDR_MAX, _SOCKADDR_MAX)]
            out.extend(zip(items, [cache.get(k) or self._resolve(k) for k in keys]))
        else:
            out.extend(zip(items, repeat(peer, r)))

    def _resolve(self, key: bytes) -> Address:
        """Convert a source address not seen yet (and remember it)."""
        addr = _address(key)
        cache = self._cache
        if len(cache) >= _ADDR_CACHE:
            cache.clear()
        cache[key] = addr
        return addr


class GsoSender:
    """UDP segmentation offload for one socket: a run of datagrams in one ``sendmsg``.

    Datagrams of one size, the last of a run possibly shorter, leave in one
    ``sendmsg`` with a ``UDP_SEGMENT`` control message; the kernel cuts the
    payload into exactly those datagrams (on loopback and on devices without
    offload it segments in software), so the peer receives the same
    datagrams as from ``sendmmsg``, in the same order, for about a third of
    the kernel's per-datagram send cost.  Datagrams that form no run go
    through the caller's sender, in order.  The first send the kernel or the
    route refuses as unsupported (:data:`_GSO_UNSUPPORTED`) turns this
    sender off (:attr:`enabled`); that send and later ones go through the
    caller's sender.  Thread-safe (no state but the switch).

    Args:
        sock: an AF_INET/AF_INET6 datagram socket.
        connected: the socket is connected (no destination is passed).
    """

    __slots__ = ("_connected", "_control", "_sock", "enabled")

    def __init__(self, sock: socket.socket, connected: bool) -> None:
        self._sock = sock
        self._connected = connected
        #: segment size -> its control message (a few sizes per socket)
        self._control: dict[int, list[tuple[int, int, bytes]]] = {}
        #: False once the kernel refused a GSO send: every send goes the plain way
        self.enabled = True

    def _run_end(self, packets: list[bytes], i: int, remotes: Optional[list[Address]]) -> int:
        """Where the run of equal datagrams starting at ``i`` ends (exclusive).

        A run has one size (its last datagram may be shorter), one
        destination (``remotes``, if given), at most :data:`GSO_MAX_SEGMENTS`
        datagrams and :data:`GSO_MAX_BYTES`; ``i + 1`` means no run.
        """
        size = len(packets[i])
        if size <= 0:
            return i + 1
        limit = i + min(GSO_MAX_BYTES // size, GSO_MAX_SEGMENTS)
        if limit > len(packets):
            limit = len(packets)
        remote = remotes[i] if remotes is not None else None
        j = i + 1
        while j < limit and len(packets[j]) == size and (remotes is None or remotes[j] == remote):
            j += 1
        if j < limit and 0 < len(packets[j]) < size and (remotes is None or remotes[j] == remote):
            j += 1  # a shorter last datagram closes the run
        return j

    def _send_run(self, run: list[bytes], remote: Address) -> Optional[bool]:
        """One GSO ``sendmsg`` of ``run``.

        Returns:
            True if sent; None if refused (``EAGAIN``, ``ECONNREFUSED``,
            ``EINTR``: skipped, kcp-go ignores write errors and KCP resends);
            False if the kernel refused it as unsupported, which turns this
            sender off.

        Raises:
            OSError: any other error (the socket closed under us, or worse).
        """
        size = len(run[0])
        control = self._control.get(size)
        if control is None:
            control = self._control[size] = [
                (_SOL_UDP, UDP_SEGMENT, size.to_bytes(2, sys.byteorder))
            ]
        try:
            if self._connected:
                self._sock.sendmsg(run, control)
            else:
                self._sock.sendmsg(run, control, 0, remote)
        except (BlockingIOError, InterruptedError, ConnectionRefusedError):
            return None
        except OSError as exc:
            if exc.errno not in _GSO_UNSUPPORTED:
                raise
            self.enabled = False
            return False
        return True

    def send(
        self,
        packets: list[bytes],
        remote: Address,
        plain: Callable[[list[bytes], Address], tuple[int, int]],
    ) -> tuple[int, int]:
        """Send ``packets`` to ``remote`` (ignored when connected), in order.

        Args:
            packets: UDP payloads.
            remote: the destination.
            plain: sends what is not segmented (a list of datagrams, the
                destination) and returns ``(datagrams sent, bytes sent)``.

        Returns:
            ``(datagrams sent, bytes sent)``; refused datagrams are skipped
            (``EAGAIN``, ``ECONNREFUSED``, ``EINTR``), as by the plain senders.
        """
        n = len(packets)
        if not self.enabled or n < 2 or self._sock.gettimeout():
            return plain(packets, remote)
        sent = nbytes = 0
        done = i = 0  # packets[:done] are sent (or skipped)
        while i < n:
            j = self._run_end(packets, i, None)
            if j - i < 2:
                i = j
                continue
            if done < i:
                a, b = plain(packets[done:i], remote)
                sent += a
                nbytes += b
            try:
                ok = self._send_run(packets[i:j], remote)
            except OSError:
                return sent, nbytes  # socket closed under us, or worse: give up
            if ok is False:
                a, b = plain(packets[i:], remote)
                return sent + a, nbytes + b
            if ok:
                sent += j - i
                nbytes += len(packets[i]) * (j - i - 1) + len(packets[j - 1])
            done = i = j
        if done < n:
            a, b = plain(packets[done:] if done else packets, remote)
            sent += a
            nbytes += b
        return sent, nbytes

    def send_each(
        self,
        packets: list[bytes],
        remotes: list[Address],
        plain: Callable[[list[bytes], list[Address]], bytearray],
    ) -> bytearray:
        """Send ``packets[i]`` to ``remotes[i]`` (a gathered batch), in order.

        Runs of equal datagrams (the last possibly shorter) to one
        destination leave with segmentation offload; the rest go through
        ``plain`` (same arguments, one flag per datagram back).

        Returns:
            One flag per datagram: 1 if it was sent.
        """
        n = len(packets)
        if not self.enabled or n < 2 or self._sock.gettimeout():
            return plain(packets, remotes)
        flags = bytearray(n)
        done = i = 0
        while i < n:
            j = self._run_end(packets, i, remotes)
            if j - i < 2:
                i = j
                continue
            if done < i:
                flags[done:i] = plain(packets[done:i], remotes[done:i])
            try:
                ok = self._send_run(packets[i:j], remotes[i])
            except OSError:
                return flags  # socket closed under us, or worse: give up
            if ok is False:
                flags[i:] = plain(packets[i:], remotes[i:])
                return flags
            if ok:
                flags[i:j] = b"\x01" * (j - i)
            done = i = j
        if done < n:
            flags[done:] = (
                plain(packets[done:], remotes[done:]) if done else plain(packets, remotes)
            )
        return flags


def gso_sender(sock: socket.socket, connected: bool) -> Optional[GsoSender]:
    """A :class:`GsoSender` for ``sock``, or None.

    None where UDP GSO is unavailable (not Linux, not an IP datagram socket,
    a kernel without ``UDP_SEGMENT``) or switched off (``KCPSOCK_NO_GSO``
    set to anything but ``""`` or ``"0"``, or batched I/O switched off with
    ``KCPSOCK_NO_MMSG``).
    """
    if (
        not sys.platform.startswith("linux")
        or os.environ.get(GSO_ENV_SWITCH, "") not in ("", "0")
        or _switched_off()
        or not _usable(sock)
    ):
        return None
    try:
        sock.getsockopt(_SOL_UDP, UDP_SEGMENT)  # ENOPROTOOPT before Linux 4.18
    except OSError:
        return None
    return GsoSender(sock, connected)


def sender(sock: socket.socket, connected: bool) -> Optional[BatchSender]:
    """A :class:`BatchSender` for ``sock``, or None (unavailable, switched off, not IP/UDP)."""
    if not enabled() or not _usable(sock):
        return None
    try:
        return BatchSender(sock, connected)
    except OSError:  # pragma: no cover - _load said yes
        return None


def waiter(
    sock: socket.socket, size: int, batch: int, connected: bool
) -> Optional[Callable[[Any, int], None]]:
    """A blocking batched read for ``sock`` (blocking mode): ``wait(out, limit)``, or None.

    Waits for the first datagram and takes up to ``batch`` in one
    ``recvmmsg`` (:meth:`BatchReader.wait`).  Only with the C helper
    ``kcpsock._udpio``; None otherwise (the caller reads with a blocking
    ``recvfrom``), and where :func:`reader` would say None.

    Args:
        sock: the socket (blocking mode).
        size: bytes per datagram (longer ones are truncated).
        batch: datagrams per call at most (each holds a ``size`` buffer
            while the call waits).
        connected: the socket is connected (the peer's address is taken now).
    """
    if _udpio() is None:
        return None
    fill = reader(sock, size, batch, connected)
    owner = getattr(fill, "__self__", None)
    return owner.wait if isinstance(owner, BatchReader) else None


def reader(
    sock: socket.socket, size: int, batch: int, connected: bool
) -> Optional[Callable[[Any, int], None]]:
    """A batched read-ahead for ``sock``: ``fill(out, limit)``, or None.

    None where batching is unavailable or switched off, or ``sock`` is not
    an IP datagram socket: the caller then reads with ``recvfrom``.

    Args:
        sock: the socket.
        size: bytes per datagram (longer ones are truncated, as ``recvfrom(size)`` does).
        batch: datagrams per system call.
        connected: the socket is connected (the peer's address is taken now).
    """
    if not enabled() or not _usable(sock):
        return None
    peer: Optional[Address] = None
    if connected:
        try:
            peer = sock.getpeername()
        except OSError:
            peer = None  # read each source then
    try:
        return BatchReader(sock, size, batch, peer).fill
    except OSError:  # pragma: no cover
        return None
