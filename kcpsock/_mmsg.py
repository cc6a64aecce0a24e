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
    * ``sendmmsg`` is called with the GIL released (it blocks on a blocking
      socket whose buffer is full, as ``sendto`` does); ``recvmmsg`` keeps
      the GIL (always ``MSG_DONTWAIT``: it never blocks) so a read-ahead
      costs no GIL hand-off at all.
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

__all__ = ["ENV_SWITCH", "BatchReader", "BatchSender", "enabled", "reader", "sender"]

#: The environment variable that turns batched I/O off.
ENV_SWITCH = "KCPSOCK_NO_MMSG"

Address = Any  # the tuples of the socket module: (host, port[, flowinfo, scope_id])

#: Datagrams per ``sendmmsg`` call (larger batches take several calls).
SEND_BATCH = 64
_SOCKADDR_MAX = 28  # sizeof(struct sockaddr_in6)
_ADDR_CACHE = 4096  # entries kept of address conversions (then cleared)
_NAMELENS = [_SOCKADDR_MAX] * 1024
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
        # sendmmsg may block (a blocking socket with a full buffer): release the GIL
        send = ctypes.CDLL(None, use_errno=True).sendmmsg
        # recvmmsg runs with MSG_DONTWAIT only: keep the GIL (no hand-off)
        recv = ctypes.PyDLL(None, use_errno=True).recvmmsg
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

    __slots__ = ("bases", "lens", "msgs", "namelens", "names")

    def __init__(self, n: int) -> None:
        iovs = (ctypes.c_char_p * (2 * n))()  # iov_base (bytes kept alive), iov_len
        # the overlays are written with extended slices (typed Any: ctypes'
        # stubs want lists of exactly the element type)
        self.bases: Any = iovs
        self.lens: Any = (ctypes.c_size_t * (2 * n)).from_buffer(iovs)
        msgs = (_Mmsghdr * n)()
        base = ctypes.addressof(iovs)
        for i in range(n):
            msgs[i].msg_hdr.msg_iov = base + i * _IOV
            msgs[i].msg_hdr.msg_iovlen = 1
        self.msgs = msgs
        self.names: Any = (ctypes.c_void_p * (n * _STRIDE // _PTR)).from_buffer(msgs)
        self.namelens: Any = (ctypes.c_uint * (n * _STRIDE // _INT)).from_buffer(msgs)


class BatchSender:
    """``sendmmsg`` for one UDP socket (thread-safe: pooled batch structures).

    Args:
        sock: an AF_INET/AF_INET6 datagram socket.
        connected: the socket is connected (no destination is passed).
        batch: datagrams per system call.
    """

    __slots__ = ("_batch", "_call", "_connected", "_family", "_names", "_pool", "_sock")

    def __init__(self, sock: socket.socket, connected: bool, batch: int = SEND_BATCH) -> None:
        funcs = _load()
        if funcs is None:
            raise OSError(errno.ENOSYS, "sendmmsg is not available here")
        self._call = funcs[0]
        self._sock = sock
        self._family = int(sock.family)
        self._connected = connected
        self._batch = batch
        self._pool: list[_SendSlot] = []
        # remote -> (C sockaddr buffer, its length)
        self._names: dict[Address, tuple[ctypes.Array[ctypes.c_char], int]] = {}

    def send(self, packets: Sequence[bytes], remote: Address) -> Optional[tuple[int, int]]:
        """Send ``packets`` to ``remote`` (ignored when connected) in as few calls as may be.

        Returns:
            ``(datagrams sent, bytes sent)``; None if this cannot send them
            (a remote that is not a numeric address, a socket with a
            timeout): the caller sends them one by one instead.
        """
        sock = self._sock
        timeout = sock.gettimeout()
        if timeout:  # sendto waits for room up to the timeout: leave that to it
            return None
        name = None
        namelen = 0
        if not self._connected:
            entry = self._names.get(remote)
            if entry is None:
                raw = _sockaddr(self._family, remote)
                if raw is None:
                    return None
                if len(self._names) >= _ADDR_CACHE:
                    self._names.clear()
                entry = (ctypes.create_string_buffer(raw, len(raw)), len(raw))
                self._names[remote] = entry
            name = ctypes.addressof(entry[0])
            namelen = entry[1]
        fd = sock.fileno()
        if fd < 0:
            return (0, 0)
        pool = self._pool
        try:
            slot = pool.pop()
        except IndexError:
            slot = _SendSlot(self._batch)
        sent = nbytes = 0
        call = self._call
        try:
            total = len(packets)
            start = 0
            while start < total:
                chunk = packets[start : start + self._batch]
                n = len(chunk)
                try:
                    slot.bases[0 : 2 * n : 2] = chunk
                except TypeError:  # bytearray, memoryview: only bytes are pointed at
                    chunk = [p if type(p) is bytes else bytes(p) for p in chunk]
                    slot.bases[0 : 2 * n : 2] = chunk
                lens = [len(p) for p in chunk]
                slot.lens[1 : 2 * n : 2] = lens
                if name is not None:  # one destination for the whole batch
                    step = _STRIDE // _PTR
                    slot.names[0 : n * step : step] = [name] * n
                    istep = _STRIDE // _INT
                    off = _NAMELEN_OFF // _INT
                    slot.namelens[off : off + n * istep : istep] = [namelen] * n
                done = 0
                msgs = slot.msgs
                while done < n:
                    r = call(fd, ctypes.byref(msgs, done * _STRIDE), n - done, 0)
                    if r > 0:
                        sent += r
                        nbytes += sum(lens[done : done + r])
                        done += r
                    elif r < 0 and ctypes.get_errno() in _SKIP:
                        done += 1  # this datagram was refused: kcp-go ignores it
                    else:
                        return sent, nbytes  # socket closed under us, or worse: give up
                start += n
        finally:
            k = min(len(packets), self._batch)
            slot.bases[0 : 2 * k : 2] = [None] * k  # let the payloads go
            pool.append(slot)
        return sent, nbytes


class _RecvSlot:
    """One preallocated ``recvmmsg`` batch: datagram buffers, headers, overlays."""

    __slots__ = ("buf", "data", "iovs", "lens", "msgs", "names", "nameview")

    def __init__(self, size: int, n: int, named: bool) -> None:
        buf = ctypes.create_string_buffer(size * n)
        iovs = (_Iovec * n)()
        names = ctypes.create_string_buffer(_SOCKADDR_MAX * n if named else 1)
        msgs = (_Mmsghdr * n)()
        base = ctypes.addressof(buf)
        nbase = ctypes.addressof(names)
        for i in range(n):
            iovs[i].iov_base = base + i * size
            iovs[i].iov_len = size
            hdr = msgs[i].msg_hdr
            hdr.msg_iov = ctypes.addressof(iovs) + i * _IOV
            hdr.msg_iovlen = 1
            if named:
                hdr.msg_name = nbase + i * _SOCKADDR_MAX
                hdr.msg_namelen = _SOCKADDR_MAX
        self.buf = buf
        self.iovs = iovs
        self.names = names
        self.msgs = msgs
        self.lens: Any = (ctypes.c_uint * (n * _STRIDE // _INT)).from_buffer(msgs)
        self.data = memoryview(buf).cast("B")
        self.nameview = memoryview(names).cast("B")


#: (size, batch, named) -> free receive slots, shared by every reader of the
#: process: a slot is held only during one ``fill`` (its data is copied out),
#: so a thousand idle sockets cost no buffers.
_RECV_POOLS: dict[tuple[int, int, bool], list[_RecvSlot]] = {}


class BatchReader:
    """``recvmmsg`` for one UDP socket, into buffers from a shared pool.

    Args:
        sock: an AF_INET/AF_INET6 datagram socket.
        size: bytes per datagram buffer (longer datagrams are truncated).
        batch: datagrams per system call.
        peer: the connected peer's address (no source address is asked
            for); None to read each datagram's source.
    """

    __slots__ = ("_cache", "_call", "_keylen", "_n", "_peer", "_pool", "_size", "_sock")

    def __init__(
        self, sock: socket.socket, size: int, batch: int, peer: Optional[Address] = None
    ) -> None:
        funcs = _load()
        if funcs is None:
            raise OSError(errno.ENOSYS, "recvmmsg is not available here")
        if size < 1 or not 1 <= batch <= len(_NAMELENS):
            raise ValueError(f"size and batch must be positive (batch <= 1024): {size}, {batch}")
        self._call = funcs[1]
        self._sock = sock
        self._size = size
        self._n = batch
        self._peer = peer
        self._pool = _RECV_POOLS.setdefault((size, batch, peer is None), [])
        self._cache: dict[bytes, Address] = {}
        # the kernel's address length for the socket's family (IPv4-mapped
        # sources on an IPv6 socket come as sockaddr_in6 too)
        self._keylen = 16 if sock.family == socket.AF_INET else _SOCKADDR_MAX

    def fill(self, out: Any, limit: int) -> None:
        """Append ``(datagram, address)`` pairs to ``out`` until it holds ``limit``.

        Stops early when the kernel has no more (``EAGAIN``).  Raises what
        ``recvfrom`` would (``ConnectionRefusedError``, ``OSError``) after
        keeping what was read before the error.

        Args:
            out: a list or deque (``append``, ``len``).
            limit: how many items ``out`` may hold.
        """
        pool = self._pool
        try:
            slot = pool.pop()
        except IndexError:
            slot = _RecvSlot(self._size, self._n, self._peer is None)
        try:
            self._fill(slot, out, limit)
        finally:
            pool.append(slot)

    def _resolve(self, key: bytes) -> Address:
        """Convert a source address not seen yet (and remember it)."""
        addr = _address(key)
        cache = self._cache
        if len(cache) >= _ADDR_CACHE:
            cache.clear()
        cache[key] = addr
        return addr

    def _fill(self, slot: _RecvSlot, out: Any, limit: int) -> None:
        call = self._call
        msgs = slot.msgs
        lens = slot.lens
        data = slot.data
        names = slot.nameview
        size = self._size
        step = _STRIDE // _INT
        off = _LEN_OFF // _INT
        noff = _NAMELEN_OFF // _INT
        peer = self._peer
        cache = self._cache
        extend = out.extend
        keylen = self._keylen
        dontwait = socket.MSG_DONTWAIT
        fileno = self._sock.fileno
        while True:
            want = min(limit - len(out), self._n)
            if want <= 0:
                return
            if peer is None:  # the kernel shortened them to the last source's size
                lens[noff : noff + want * step : step] = _NAMELENS[:want]
            r = call(fileno(), msgs, want, dontwait, None)
            if r < 0:
                err = ctypes.get_errno()
                if err in (errno.EAGAIN, errno.EWOULDBLOCK):
                    return
                raise OSError(err, os.strerror(err))
            sizes = lens[off : off + r * step : step]
            items = [data[p : p + n].tobytes() for p, n in zip(range(0, r * size, size), sizes)]
            if peer is None:
                raw = names[: r * _SOCKADDR_MAX].tobytes()
                keys = [raw[p : p + keylen] for p in range(0, r * _SOCKADDR_MAX, _SOCKADDR_MAX)]
                addrs = [cache.get(k) or self._resolve(k) for k in keys]
                extend(zip(items, addrs))
            else:
                extend(zip(items, repeat(peer, r)))
            if r < want:
                return  # the kernel had no more


def sender(sock: socket.socket, connected: bool) -> Optional[BatchSender]:
    """A :class:`BatchSender` for ``sock``, or None (unavailable, switched off, not IP/UDP)."""
    if not enabled() or not _usable(sock):
        return None
    try:
        return BatchSender(sock, connected)
    except OSError:  # pragma: no cover - _load said yes
        return None


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
