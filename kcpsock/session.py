"""Sessions and the listener engine: kcp-go's ``sess.go`` as threads.

A :class:`Session` is one KCP conversation (a :class:`~kcpsock.kcp.KCP` and
an optional :class:`~kcpsock.codec.PacketCodec`) with one remote address.  A
:class:`ListenerCore` owns (or borrows) a UDP socket, sorts the datagrams it
receives by (address, conv) and creates sessions for new conversations.

Threads::

    receiver thread (one per dialed session, one per listener)
        blocking recv  ->  drain up to 64 more with MSG_DONTWAIT  ->
        open/decrypt + FEC decode (no lock)  ->
        Session.feed: KCP input under the session lock  ->
        sendto of the datagrams input produced (lock released)  ->
        one reader/writer notification per batch
    updater thread (kcpsock.updater): Session.on_timer -> full flush, resends
    user threads: send (queue + immediate flush), recv, close

Invariants:

* Locks are re-entrant: a ``KCPSocket`` collected by the cyclic GC closes
  its session from whatever thread the collection runs on, possibly one
  already holding a kcpsock lock; that must not deadlock.
* ``Session._lock`` guards the KCP object and the session state.  Nothing
  blocking runs under it: datagrams produced under the lock are encoded and
  sent after it is released; no user callback is ever called.  The only
  socket calls under it are non-blocking ones on the private readiness
  socketpair.
* FEC decoding and decryption run on the receiver thread only (one per
  socket), so the stateful FEC decoder needs no lock; FEC encoding and
  encryption run under ``Session._tx_lock`` (several threads send).
* ``send`` never queues more than the free send window (``snd_wnd -
  waitsnd``, at least one segment), so buffering is bounded; data is flushed
  at once unless write-delay is on (kcp-go ``WriteBuffers``).
* A session with nothing in flight, no pending ACK and no probe is not
  scheduled on the updater; ``send``, ``feed`` and ``recv`` re-arm it.
* Malformed datagrams never raise out of a receiver thread: every
  :class:`~kcpsock.errors.PacketError` is counted under its ``counter`` in
  :data:`kcpsock.stats.snmp` and the datagram is dropped.
* A listener session is keyed by (address, conv); FEC parity packets (no
  conv) go to the most recent session of their address.  Closed keys stay
  blacklisted for ``KCPConfig.blacklist_ttl`` seconds after the close.
"""

from __future__ import annotations

import enum
import errno
import logging
import select
import socket
import sys
import threading
import time
import weakref
from collections import deque
from typing import Any, Callable, Optional, Protocol

from .config import MTU_LIMIT, KCPConfig
from .errors import (
    KCPBlockingIOError,
    KCPClosedError,
    KCPConnectionResetError,
    KCPTimeoutError,
    PacketError,
)
from .kcp import KCP
from .stats import snmp
from .updater import now_ms, updater

__all__ = ["ListenerCore", "Session", "SessionState", "byte_view", "make_codec"]

if sys.version_info < (3, 10):

    class _Timeout(KCPTimeoutError, socket.timeout):
        """Python 3.9: socket.timeout is not TimeoutError yet; be both."""
else:
    _Timeout = KCPTimeoutError

_log = logging.getLogger("kcpsock.session")

# The global counters get a real lock as soon as an I/O layer exists.
snmp.set_lock(threading.RLock())

#: Datagrams taken from the kernel per receiver wake-up.
BATCH = 64
#: Most (address, conv) pairs a listener's blacklist remembers.
BLACKLIST_MAX = 65536
#: Receive buffer: kcp-go's mtuLimit (larger datagrams are truncated, then rejected).
RECV_SIZE = MTU_LIMIT
_KCP_OVERHEAD = 24
_M32 = 0xFFFFFFFF
_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0)

Address = Any  # a socket address tuple as returned by recvfrom


class _Codec(Protocol):
    """The part of :class:`kcpsock.codec.PacketCodec` the sessions use (typing only)."""

    overhead: int

    def kcp_mtu(self, mtu: int = 1400) -> int:
        """KCP MTU for a UDP payload size."""

    def encode(self, datagram: bytes, now_ms: Optional[int] = None) -> list[bytes]:
        """KCP datagram -> wire packets."""

    def open(self, packet: bytes) -> bytes:
        """Decrypt and strip the crypto header."""

    def peek_conv(self, payload: bytes) -> Optional[int]:
        """Conv of an opened payload, None for parity."""

    def decode_payload(self, payload: bytes) -> tuple[Optional[bytes], list[bytes]]:
        """FEC stage."""


def make_codec(block: Any = None, data_shards: int = 0, parity_shards: int = 0) -> Any:
    """Return a :class:`~kcpsock.codec.PacketCodec`, or None for plain mode.

    Plain mode (no cipher, no FEC) hands datagrams to KCP as they are, which
    is what kcp-go does and saves a copy per packet.

    Args:
        block: a BlockCrypt or None.
        data_shards: FEC data shards (0 with parity_shards 0: FEC off).
        parity_shards: FEC parity shards.

    Returns:
        A codec object or None.

    Raises:
        ValueError: invalid shard counts.
        TypeError: a shard count is not an int.
    """
    for name, value in (("data_shards", data_shards), ("parity_shards", parity_shards)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, not {type(value).__name__}")
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    if (data_shards == 0) != (parity_shards == 0):
        raise ValueError("data_shards and parity_shards must both be 0 or both be > 0")
    if data_shards + parity_shards > 255:
        raise ValueError(
            f"data_shards + parity_shards must be <= 255 (one byte on the wire),"
            f" got data_shards={data_shards}, parity_shards={parity_shards}"
        )
    if block is not None and not (hasattr(block, "encrypt") and hasattr(block, "decrypt")):
        if isinstance(block, (str, bytes)):
            raise TypeError(
                f"block must be a BlockCrypt, not the name {block!r}: use"
                f" block=kcpsock.new_block_crypt({block!r}, key)"
            )
        raise TypeError(
            f"block must be a BlockCrypt (see kcpsock.new_block_crypt) or None,"
            f" not {type(block).__name__}"
        )
    if block is None and data_shards == 0:
        return None
    from .codec import PacketCodec  # imported late: plain mode needs no codec

    return PacketCodec(block, data_shards, parity_shards)


def byte_view(data: Any) -> memoryview:
    """Return a flat byte view of ``data`` for ``send``/``sendall``.

    Args:
        data: a bytes-like object.

    Returns:
        A one-dimensional memoryview of unsigned bytes.

    Raises:
        TypeError: not a bytes-like object (named ``data``; a str gets a hint).
    """
    try:
        view = memoryview(data)
    except TypeError:
        raise TypeError(
            f"data must be a bytes-like object, not {type(data).__name__}"
            + (" (encode it first, e.g. data.encode())" if isinstance(data, str) else "")
        ) from None
    if view.ndim != 1 or view.itemsize != 1:
        view = view.cast("B")
    return view


class SessionState(enum.Enum):
    """Life cycle of a :class:`Session`."""

    OPEN = "open"
    """Exchanging data."""
    DEAD = "dead"
    """KCP declared the link dead (a segment was sent ``dead_link`` times)."""
    CLOSED = "closed"
    """Closed on this side."""


class _Signal:
    """A socketpair whose read end is readable while a condition holds.

    Gives a session or listener a ``fileno()`` that ``select``/``selectors``
    /``poll`` accept.  Both ends are non-blocking; :meth:`set` and
    :meth:`clear` never block, so they may run under a session lock.
    """

    __slots__ = ("_is_set", "_r", "_w")

    def __init__(self) -> None:
        self._r, self._w = socket.socketpair()
        self._r.setblocking(False)
        self._w.setblocking(False)
        self._is_set = False

    def fileno(self) -> int:
        return self._r.fileno()

    def set(self) -> None:
        if not self._is_set:
            self._is_set = True
            try:
                self._w.send(b"\x01")
            except OSError:
                pass

    def clear(self) -> None:
        if self._is_set:
            self._is_set = False
            try:
                while self._r.recv(64):
                    pass
            except OSError:
                pass

    def close(self) -> None:
        self._r.close()
        self._w.close()


def _deadline_from(now: int, target: int) -> int:
    """Turn KCP's ``check`` result into an absolute deadline on our clock."""
    delay = (target - now) & _M32
    if delay >= 0x80000000:  # in the past (uint32 wrap-around safe)
        delay = 0
    return now + delay


def _wait(cond: threading.Condition, deadline: Optional[float]) -> bool:
    """Wait on ``cond`` (held) until notified or ``deadline``; False on timeout."""
    if deadline is None:
        cond.wait()
        return True
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return False
    cond.wait(remaining)
    return True


class _Transport:
    """A UDP socket as a session sends through it (shared or owned)."""

    __slots__ = ("connected", "owned", "sock")

    def __init__(self, sock: socket.socket, *, owned: bool, connected: bool) -> None:
        self.sock = sock
        self.owned = owned
        self.connected = connected


class Session:
    """One KCP conversation with one remote address (kcp-go ``UDPSession``).

    Created by :func:`kcpsock.dial` (active open: owns a receiver thread) or by
    a :class:`ListenerCore` (passive open: fed by the listener's receiver).
    The socket API lives in :class:`kcpsock.KCPSocket`; this class holds the
    protocol state and the blocking primitives with absolute deadlines
    (``time.monotonic()`` seconds, None = forever, 0 = non-blocking).

    Args:
        conv: conversation id.
        remote: the peer's socket address.
        transport: the UDP socket to send through.
        config: session options.
        codec: a PacketCodec or None (plain mode).
        listener: the owning listener for a passive session.
    """

    def __init__(
        self,
        conv: int,
        remote: Address,
        transport: _Transport,
        config: KCPConfig,
        codec: Any = None,
        listener: Optional[ListenerCore] = None,
    ) -> None:
        self.conv = conv
        self.remote = remote
        self.config = config
        self._transport = transport
        self._codec: Optional[_Codec] = codec
        self._listener = listener
        self.passive = listener is not None
        self._lock = threading.RLock()
        self._tx_lock = threading.RLock()
        self._readable = threading.Condition(self._lock)
        self._writable = threading.Condition(self._lock)
        self.state = SessionState.OPEN
        self._rd_shut = False
        self._wr_shut = False
        self._pending = b""  # a message a short recv did not finish ...
        self._poff = 0  # ... and how much of it was returned already
        self._signal: Optional[_Signal] = None
        self._opened = False  # counted in snmp (Active/PassiveOpens)
        self.updater_deadline: Optional[int] = None
        self.updater_seq = 0
        # settings not held by KCP
        self.ack_nodelay = config.ack_nodelay
        self.write_delay = config.write_delay
        self.dup = config.dup
        #: seconds close() waits for unacknowledged data (0: kcp-go's one flush)
        self.linger = float(config.linger)
        # per-session figures
        self.bytes_sent = 0
        self.bytes_received = 0
        self.packets_in = 0
        self.packets_out = 0
        self.wire_bytes_in = 0
        self.wire_bytes_out = 0
        self._seen = (0, 0, 0, 0, 0, 0)
        self._fec_seen = (0, 0, 0, 0)

        kcp = KCP(conv)
        kcp.nodelay(*config.nodelay_args)
        kcp.wndsize(config.sndwnd, config.rcvwnd)
        mtu = codec.kcp_mtu(config.mtu) if codec is not None else config.mtu
        kcp.setmtu(mtu)
        kcp.stream = config.stream
        kcp.dead_link = config.dead_link
        self.kcp = kcp

    # ------------------------------------------------------------ bookkeeping

    def _count_open(self) -> None:
        if not self._opened:
            self._opened = True
            snmp.session_opened(self.passive)
            updater.schedule(self, now_ms())

    def _counter_deltas(self) -> list[tuple[str, int]]:
        """KCP (and FEC) counter increments since the last call (lock held)."""
        k = self.kcp
        cur = (
            k.in_segs,
            k.out_segs,
            k.lost_segs,
            k.fast_retrans_segs,
            k.early_retrans_segs,
            k.repeat_segs,
        )
        old = self._seen
        if cur == old:
            out: list[tuple[str, int]] = []
        else:
            self._seen = cur
            lost = cur[2] - old[2]
            fast = cur[3] - old[3]
            early = cur[4] - old[4]
            out = [
                ("InSegs", cur[0] - old[0]),
                ("OutSegs", cur[1] - old[1]),
                ("LostSegs", lost),
                ("FastRetransSegs", fast),
                ("EarlyRetransSegs", early),
                ("RetransSegs", lost + fast + early),
                ("RepeatSegs", cur[5] - old[5]),
            ]
        codec = self._codec
        if codec is not None:
            fec = (
                getattr(codec, "fec_parity_shards", 0),
                getattr(codec, "fec_full_shard_sets", 0),
                getattr(codec, "fec_recovered", 0),
                getattr(codec, "fec_errors", 0),
            )
            if fec != self._fec_seen:
                fold = self._fec_seen
                self._fec_seen = fec
                out += [
                    ("FECParityShards", fec[0] - fold[0]),
                    ("FECFullShardSet", fec[1] - fold[1]),
                    ("FECRecovered", fec[2] - fold[2]),
                    ("FECErrs", fec[3] - fold[3]),
                ]
        return out

    def _notify(self, hysteresis: bool = False) -> None:
        """Wake readers/writers and update the readiness fd (lock held).

        With ``hysteresis`` (input path) blocked writers are woken only once
        a quarter of the send window is free: every ``send`` ends in a full
        flush, which walks the whole window, so refilling it one ACK at a
        time would cost O(window) per segment.  The updater's tick still
        wakes them whenever any room exists, so a writer never waits more
        than one interval for less room.
        """
        kcp = self.kcp
        dead = kcp.is_dead
        if dead and self.state is SessionState.OPEN:
            self.state = SessionState.DEAD
        readable = bool(self._pending) or kcp.peek_size() > 0 or dead or self._rd_shut
        if readable:
            self._readable.notify_all()
            if self._signal is not None:
                self._signal.set()
        snd_wnd = kcp.snd_wnd
        room = snd_wnd - kcp.waitsnd()
        if dead or (room > (snd_wnd >> 2) if hysteresis else room > 0):
            self._writable.notify_all()

    def _transmit(
        self, datagrams: list[bytes], counts: Optional[list[tuple[str, int]]] = None
    ) -> None:
        """Encode and send datagrams produced by KCP (never under ``_lock``).

        Args:
            datagrams: KCP datagrams.
            counts: other SNMP increments of the caller, added to the global
                counters together with OutPkts/OutBytes (one lock round).
        """
        if not datagrams:
            if counts:
                snmp.add_many(counts)
            return
        codec = self._codec
        dup = self.dup
        if codec is None and not dup:
            packets = datagrams
        else:
            packets = []
            now = now_ms()
            with self._tx_lock:
                for dg in datagrams:
                    if codec is not None:
                        enc = codec.encode(dg, now)
                        first = enc[0]
                    else:
                        enc = [dg]
                        first = dg
                    packets.append(first)
                    for _ in range(dup):
                        packets.append(first)
                    if len(enc) > 1:
                        packets.extend(enc[1:])
        sent = nbytes = 0
        transport = self._transport
        sock = transport.sock
        try:
            if transport.connected:
                send = sock.send
                for p in packets:
                    try:
                        send(p)
                    except (BlockingIOError, ConnectionRefusedError, InterruptedError):
                        continue  # kcp-go ignores write errors: KCP retransmits
                    sent += 1
                    nbytes += len(p)
            else:
                sendto = sock.sendto
                remote = self.remote
                for p in packets:
                    try:
                        sendto(p, remote)
                    except (BlockingIOError, ConnectionRefusedError, InterruptedError):
                        continue
                    sent += 1
                    nbytes += len(p)
        except OSError:
            pass  # socket closed under us, or unreachable: nothing to report (kcp-go)
        if sent:
            self.packets_out += sent
            self.wire_bytes_out += nbytes
            if counts is None:
                counts = []
            counts.append(("OutPkts", sent))
            counts.append(("OutBytes", nbytes))
        if counts:
            snmp.add_many(counts)

    # ----------------------------------------------------------------- input

    def feed(self, payloads: list[bytes]) -> int:
        """Process opened payloads (crypto header removed) from the receiver thread.

        Args:
            payloads: datagrams after :meth:`PacketCodec.open` (plain mode:
                the raw datagrams).

        Returns:
            How many KCP datagrams KCP accepted (0 means all were rejected).
        """
        codec = self._codec
        errors: dict[str, int] = {}
        items: list[tuple[bytes, bool]] = []
        nbytes = 0
        for p in payloads:
            nbytes += len(p)
            if codec is None:
                items.append((p, True))
                continue
            try:
                reg, recovered = codec.decode_payload(p)
            except PacketError as exc:
                errors[exc.counter] = errors.get(exc.counter, 0) + 1
                continue
            if reg is not None:
                items.append((reg, True))
            for r in recovered:
                items.append((r, False))
        accepted = 0
        out: list[bytes] = []
        with self._lock:
            if self.state is SessionState.CLOSED:
                if errors:
                    snmp.add_many(errors)
                return 0
            kcp = self.kcp
            now = now_ms()
            ack_nodelay = self.ack_nodelay
            for dg, regular in items:
                try:
                    res = kcp.input(dg, now, regular=regular, ack_nodelay=ack_nodelay)
                except PacketError as exc:
                    errors[exc.counter] = errors.get(exc.counter, 0) + 1
                    continue
                accepted += 1
                if res:
                    out += res
            self._notify(hysteresis=True)
            deltas = self._counter_deltas()
            need_timer = self.updater_deadline is None and self._opened
            deadline = _deadline_from(now, kcp.check(now)) if need_timer else 0
        self.packets_in += len(payloads)
        self.wire_bytes_in += nbytes
        deltas.append(("InPkts", len(payloads)))
        deltas.append(("InBytes", nbytes))
        deltas.extend(errors.items())
        self._transmit(out, deltas)
        if need_timer:
            updater.schedule(self, deadline)
        return accepted

    def on_timer(self, now: int) -> Optional[int]:
        """The updater's callback: full flush, then the next deadline or None.

        Args:
            now: the current time (:func:`kcpsock.updater.now_ms`).

        Returns:
            The next deadline in ms, or None when nothing is in flight, no
            ACK is pending and no probe is due (the session sleeps until
            ``send``/``feed`` schedules it again).
        """
        with self._lock:
            if self.state is SessionState.CLOSED:
                return None
            kcp = self.kcp
            out = kcp.flush(now)
            self._notify()
            if kcp.is_dead:
                nxt: Optional[int] = None
            elif kcp.waitsnd() or kcp.acklist or kcp.probe:
                nxt = _deadline_from(now, kcp.check(now))
            else:
                nxt = None
            deltas = self._counter_deltas()
            gauges = {
                "RingBufferSndQueue": len(kcp.snd_queue),
                "RingBufferRcvQueue": len(kcp.rcv_queue),
                "RingBufferSndBuffer": len(kcp.snd_buf),
            }
        codec = self._codec
        if codec is not None:
            fec = getattr(codec, "fec_counters", None)
            if fec is not None:
                gauges["FECShardSet"] = int(fec().get("FECShardSet", 0))
        self._transmit(out, deltas)
        # kcp-go HEAD: gauges of the last flush of any session
        snmp.set_gauges(**gauges)
        return nxt

    # ------------------------------------------------------------ user calls

    def _check_usable(self) -> None:
        if self.state is SessionState.CLOSED:
            raise KCPClosedError()

    def recv(self, bufsize: int, deadline: Optional[float], peek: bool = False) -> bytes:
        """Return up to ``bufsize`` bytes, blocking until data, EOF or deadline.

        Args:
            bufsize: the most bytes to return (> 0).
            deadline: ``time.monotonic()`` limit; None blocks forever; 0
                never blocks.
            peek: leave the data to be returned again (MSG_PEEK); at most
                the first waiting message is looked at.

        Returns:
            The data; b"" after ``shutdown(SHUT_RD)`` or a concurrent close.

        Raises:
            KCPClosedError: the session was closed before the call.
            KCPTimeoutError: the deadline passed.
            KCPBlockingIOError: non-blocking and nothing to read.
            KCPConnectionResetError: the link is dead and nothing is buffered.
        """
        with self._lock:
            self._check_usable()
            kcp = self.kcp
            while True:
                pending = self._pending
                if pending:
                    off = self._poff
                    end = off + bufsize
                    data = pending[off:end]
                    if peek:
                        return data
                    if end >= len(pending):
                        self._pending = b""
                        self._poff = 0
                    else:
                        self._poff = end
                    break
                msg = kcp.recv()
                if msg is not None and peek:
                    # keep it where the next recv looks first
                    self._pending = msg
                    self._poff = 0
                    if kcp.probe:
                        self._arm_locked()  # the window reopened (see below)
                    continue
                if msg is not None:
                    if kcp.stream and len(msg) < bufsize:
                        # stream mode has no boundaries: hand out what is ready
                        parts = [msg]
                        size = len(msg)
                        while size < bufsize:
                            more = kcp.recv()
                            if more is None:
                                break
                            parts.append(more)
                            size += len(more)
                        msg = b"".join(parts)
                    if len(msg) > bufsize:
                        # keep the rest without copying it (offset, not slicing)
                        self._pending = msg
                        self._poff = bufsize
                        msg = msg[:bufsize]
                    data = msg
                    if kcp.probe:
                        # the window reopened: tell the peer soon (kcp-go Recv
                        # sets IKCP_ASK_TELL; the next flush carries it)
                        self._arm_locked()
                    break
                if self._rd_shut or self.state is SessionState.CLOSED:
                    return b""
                if kcp.is_dead:
                    self.state = SessionState.DEAD
                    raise KCPConnectionResetError()
                if deadline == 0:
                    raise KCPBlockingIOError()
                if not _wait(self._readable, deadline):
                    raise _Timeout()
            if self._signal is not None and not self._pending and kcp.peek_size() <= 0:
                self._signal.clear()
        n = len(data)
        self.bytes_received += n
        snmp.add("BytesReceived", n)
        return data

    def _arm_locked(self) -> None:
        """Schedule a flush soon (lock held; the updater lock nests inside)."""
        if self.updater_deadline is None and self._opened:
            updater.schedule(self, now_ms())

    def send(self, data: Any, deadline: Optional[float]) -> int:
        """Queue data for sending, blocking while the send window is full.

        At most the free window (``snd_wnd - waitsnd`` segments of ``mss``
        bytes, at least one segment) is taken, so a large buffer may be
        accepted in part, as with a stream socket.

        Args:
            data: a bytes-like object.
            deadline: as :meth:`recv`.

        Returns:
            The number of bytes queued (0 only for empty data).

        Raises:
            KCPClosedError: closed before the call (or while blocked).
            BrokenPipeError: after ``shutdown(SHUT_WR)``.
            KCPTimeoutError, KCPBlockingIOError, KCPConnectionResetError.
        """
        view = byte_view(data)
        total = len(view)
        if total == 0:
            with self._lock:
                self._check_usable()
            return 0
        out: list[bytes] = []
        with self._lock:
            kcp = self.kcp
            while True:
                self._check_usable()
                if self._wr_shut:
                    raise BrokenPipeError(errno.EPIPE, "Broken pipe (shut down for writing)")
                if kcp.is_dead:
                    self.state = SessionState.DEAD
                    raise KCPConnectionResetError()
                waitsnd = kcp.waitsnd()
                snd_wnd = kcp.snd_wnd
                if waitsnd < snd_wnd:
                    mss = kcp.mss
                    n = min(total, (snd_wnd - waitsnd) * mss)
                    if n <= mss and type(data) is bytes:
                        kcp.send(data if n == total else data[:n])  # no copy
                    else:
                        pos = 0
                        while pos < n:
                            end = min(pos + mss, n)
                            kcp.send(view[pos:end].tobytes())
                            pos = end
                    now = now_ms()
                    if not self.write_delay or kcp.waitsnd() >= snd_wnd:
                        out = kcp.flush(now)
                    need_timer = self.updater_deadline is None and self._opened
                    timer_at = _deadline_from(now, kcp.check(now)) if need_timer else 0
                    deltas = self._counter_deltas()
                    break
                if deadline == 0:
                    raise KCPBlockingIOError()
                if not _wait(self._writable, deadline) and kcp.waitsnd() >= kcp.snd_wnd:
                    # (room that the input path's hysteresis did not announce
                    # is used rather than reported as a timeout)
                    raise _Timeout()
        self.bytes_sent += n
        deltas.append(("BytesSent", n))
        self._transmit(out, deltas)
        if need_timer:
            updater.schedule(self, timer_at)
        return n

    def signal_fileno(self) -> int:
        """Return a file descriptor readable while :meth:`recv` would not block."""
        with self._lock:
            self._check_usable()
            if self._signal is None:
                self._signal = _Signal()
                self._notify()
            return self._signal.fileno()

    def shutdown(self, how: int) -> None:
        """Shut down reading (recv returns b""), writing (send fails) or both.

        KCP has no FIN: the peer notices nothing.  Queued data is flushed.

        Args:
            how: ``socket.SHUT_RD``, ``SHUT_WR`` or ``SHUT_RDWR``.

        Raises:
            ValueError: bad ``how``.
            KCPClosedError: the session is closed.
        """
        if how not in (socket.SHUT_RD, socket.SHUT_WR, socket.SHUT_RDWR):
            raise ValueError(f"how must be SHUT_RD, SHUT_WR or SHUT_RDWR, got {how!r}")
        with self._lock:
            self._check_usable()
            if how in (socket.SHUT_RD, socket.SHUT_RDWR):
                self._rd_shut = True
            if how in (socket.SHUT_WR, socket.SHUT_RDWR):
                self._wr_shut = True
            out = self.kcp.flush(now_ms())
            self._readable.notify_all()
            self._writable.notify_all()
            if self._signal is not None and self._rd_shut:
                self._signal.set()
        self._transmit(out)

    def close(self, wait: bool = True) -> None:
        """Close: one last flush (best effort), wake every waiter, free resources.

        Args:
            wait: join the threads this close ends (False from a finalizer,
                which may run on a thread holding a kcpsock lock).

        Idempotent.  With :attr:`linger` > 0 it first waits (at most that many
        seconds) until everything sent was acknowledged, the link died or
        the peer stopped acknowledging.  A dialed session stops its receiver
        and closes the socket if it created it; a listener session leaves its
        listener.
        """
        if self.linger > 0:
            self._linger(time.monotonic() + self.linger)
        with self._lock:
            if self.state is SessionState.CLOSED:
                return
            self.state = SessionState.CLOSED
            try:
                out = self.kcp.flush(now_ms())
            except Exception:  # pragma: no cover - best effort
                out = []
            self._readable.notify_all()
            self._writable.notify_all()
            signal, self._signal = self._signal, None
            deltas = self._counter_deltas()
        self._transmit(out)
        updater.cancel(self)
        if signal is not None:
            signal.close()
        if deltas:
            snmp.add_many(deltas)
        if self._opened:
            snmp.session_closed()
        _live_sessions.discard(self)
        listener = self._listener
        if listener is not None:
            listener._forget(self)
        else:
            self._stop_receiver(wait)
        _release_updater(wait)

    def _linger(self, deadline: float) -> None:
        """Wait until nothing is queued or in flight (SO_LINGER), or ``deadline``."""
        with self._lock:
            kcp = self.kcp
            while self.state is SessionState.OPEN and not kcp.is_dead and kcp.waitsnd() > 0:
                self._arm_locked()
                if not _wait(self._writable, deadline):
                    return

    # ----------------------------------------------------- dialed sessions

    def start_receiver(self) -> None:
        """Start the receiver thread of a dialed (active) session and count it open."""
        _live_sessions.add(self)
        self._count_open()
        reader = _Receiver(self._transport, self._on_batch, f"kcpsock-recv-{self.conv:08x}")
        self._receiver = reader
        reader.start()

    def _stop_receiver(self, wait: bool = True) -> None:
        reader: Optional[_Receiver] = getattr(self, "_receiver", None)
        if reader is not None:
            reader.stop(wait)
        elif self._transport.owned:
            self._transport.sock.close()

    def _on_batch(self, batch: list[tuple[bytes, Address]]) -> None:
        """Receiver callback: filter by source, open, then :meth:`feed`."""
        codec = self._codec
        errors: dict[str, int] = {}
        payloads: list[bytes] = []
        check_source = not self._transport.connected
        remote = self.remote
        for data, addr in batch:
            if check_source and addr != remote:
                # kcp-go HEAD: datagrams from another address are InErrs
                errors["InErrs"] = errors.get("InErrs", 0) + 1
                continue
            if codec is not None:
                try:
                    data = codec.open(data)
                except PacketError as exc:
                    errors[exc.counter] = errors.get(exc.counter, 0) + 1
                    continue
            elif len(data) < _KCP_OVERHEAD:
                errors["InErrs"] = errors.get("InErrs", 0) + 1
                continue
            payloads.append(data)
        if payloads:
            self.feed(payloads)
        if errors:
            snmp.add_many(errors)

    # ------------------------------------------------------------- figures

    def figures(self) -> dict[str, int]:
        """Return this session's counters and RTT estimates (a snapshot).

        Returns:
            A dict with ``srtt``, ``rttvar``, ``rto`` (ms), ``bytes_sent``,
            ``bytes_received`` (application bytes), ``packets_in``,
            ``packets_out``, ``wire_bytes_in``, ``wire_bytes_out``,
            ``segments_in``, ``segments_out``, ``retrans_segs``,
            ``lost_segs``, ``fast_retrans_segs``, ``early_retrans_segs``,
            ``repeat_segs``, ``waitsnd``, ``snd_wnd``, ``rcv_wnd``, ``rmt_wnd``,
            ``cwnd``, ``mtu``, ``mss``.
        """
        with self._lock:
            k = self.kcp
            return {
                "srtt": k.rx_srtt,
                "rttvar": k.rx_rttvar,
                "rto": k.rx_rto,
                "bytes_sent": self.bytes_sent,
                "bytes_received": self.bytes_received,
                "packets_in": self.packets_in,
                "packets_out": self.packets_out,
                "wire_bytes_in": self.wire_bytes_in,
                "wire_bytes_out": self.wire_bytes_out,
                "segments_in": k.in_segs,
                "segments_out": k.out_segs,
                "retrans_segs": k.lost_segs + k.fast_retrans_segs + k.early_retrans_segs,
                "lost_segs": k.lost_segs,
                "fast_retrans_segs": k.fast_retrans_segs,
                "early_retrans_segs": k.early_retrans_segs,
                "repeat_segs": k.repeat_segs,
                "waitsnd": k.waitsnd(),
                "snd_wnd": k.snd_wnd,
                "rcv_wnd": k.rcv_wnd,
                "rmt_wnd": k.rmt_wnd,
                "cwnd": k.cwnd,
                "mtu": k.mtu,
                "mss": k.mss,
            }

    def locked(self, fn: Callable[[KCP], Any]) -> Any:
        """Run ``fn(kcp)`` under the session lock (for the socket's setters).

        Args:
            fn: a short function of the KCP object; must not block.

        Returns:
            What ``fn`` returns.
        """
        with self._lock:
            self._check_usable()
            return fn(self.kcp)

    def __repr__(self) -> str:
        return (
            f"<Session conv={self.conv:#010x} {self.state.value} remote={self.remote!r}"
            f" srtt={self.kcp.rx_srtt}ms>"
        )


class _Receiver:
    """The receiver thread of one UDP socket.

    Owned sockets (blocking mode) are read with a blocking ``recvfrom`` and
    woken for the stop by ``shutdown(SHUT_RD)`` (Linux wakes blocked readers
    even on an unconnected UDP socket).  A caller's socket is never shut
    down, closed or switched between blocking modes: the thread waits in
    ``select`` on it and on a private wake-up socketpair, then drains it with
    ``MSG_DONTWAIT``.
    """

    def __init__(
        self,
        transport: _Transport,
        handler: Callable[[list[tuple[bytes, Address]]], None],
        name: str,
    ) -> None:
        self._transport = transport
        self._handler = handler
        self._stopping = False
        self._wake: Optional[tuple[socket.socket, socket.socket]] = None
        if not transport.owned:
            r, w = socket.socketpair()
            r.setblocking(False)
            w.setblocking(False)
            self._wake = (r, w)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def stopping(self) -> bool:
        return self._stopping

    def stop(self, wait: bool = True) -> None:
        """Stop the thread, wait for it (bounded, if ``wait``), release our sockets."""
        self._stopping = True
        transport = self._transport
        if self._wake is not None:
            try:
                self._wake[1].send(b"\x00")
            except OSError:
                pass
        else:
            try:
                transport.sock.shutdown(socket.SHUT_RD)
            except OSError:
                pass  # ENOTCONN on an unconnected socket: the readers are woken anyway
        try:
            if wait and threading.current_thread() is not self._thread and self._thread.is_alive():
                self._thread.join(2.0)
        finally:  # also when Ctrl-C interrupts the join: no descriptor leaks
            if self._wake is not None:
                self._wake[0].close()
                self._wake[1].close()
            if transport.owned:
                transport.sock.close()

    def _run(self) -> None:
        sock = self._transport.sock
        recvfrom = sock.recvfrom
        handler = self._handler
        wake = self._wake
        size = RECV_SIZE
        flags = _DONTWAIT
        while not self._stopping:
            batch: list[tuple[bytes, Address]] = []
            try:
                if wake is not None:
                    ready, _, _ = select.select([sock, wake[0]], [], [])
                    if self.stopping():
                        return
                    if sock not in ready:
                        continue
                    timeout = sock.gettimeout()
                    if timeout:
                        # CPython polls with the socket's timeout before a
                        # recv: ask select first so the drain never waits
                        while len(batch) < BATCH and select.select([sock], [], [], 0)[0]:
                            batch.append(recvfrom(size, flags))
                        raise BlockingIOError
                else:
                    item = recvfrom(size)
                    if self.stopping():
                        return
                    batch.append(item)
                while len(batch) < BATCH:
                    batch.append(recvfrom(size, flags))
            except (BlockingIOError, InterruptedError):
                pass
            except ConnectionRefusedError:
                pass  # ICMP port unreachable on a connected socket: the peer is not up yet
            except (OSError, ValueError):
                if self.stopping() or sock.fileno() < 0:
                    return
                snmp.add("InErrs")
                _log.debug("recvfrom failed", exc_info=True)
                time.sleep(0.01)  # a persistent error must not spin the CPU
            if not batch:
                continue
            try:
                handler(batch)
            except Exception:  # never let one bad batch kill the receiver
                _log.exception("receiver batch failed")


_live_sessions: weakref.WeakSet[Session] = weakref.WeakSet()


def live_sessions() -> list[Session]:
    """Return the dialed and accepted sessions not closed yet (for atexit)."""
    return list(_live_sessions)


class ListenerCore:
    """The listener engine: one socket, one receiver thread, many sessions.

    Keyed by (address, conv) with a one-entry cache of the last key (kcp-go
    2017 ``monitor``); FEC parity (no conv) goes to the most recent session
    of the address.  New conversations are refused (and counted in
    :attr:`refused`) when blacklisted, when ``backlog`` sessions already wait
    for :meth:`accept`, or when ``max_sessions`` exist.

    Args:
        sock: a bound UDP socket.
        owned: True if kcpsock created the socket (then it closes it).
        config: options for the sessions it creates and its limits.
        block, data_shards, parity_shards: the codec of its sessions.
    """

    def __init__(
        self,
        sock: socket.socket,
        *,
        owned: bool,
        config: KCPConfig,
        block: Any = None,
        data_shards: int = 0,
        parity_shards: int = 0,
    ) -> None:
        self.config = config
        self._block = block
        self._shards = (data_shards, parity_shards)
        self._codec = make_codec(block, data_shards, parity_shards)  # for open/peek_conv
        if owned:
            sock.settimeout(None)
        self._transport = _Transport(sock, owned=owned, connected=False)
        self.sock = sock
        self._lock = threading.RLock()
        self._accept_cond = threading.Condition(self._lock)
        self._sessions: dict[tuple[Address, int], Session] = {}
        self._by_addr: dict[Address, Session] = {}
        self._queue: deque[Session] = deque()
        self._blacklist: dict[tuple[Address, int], float] = {}
        self._last_purge = time.monotonic()
        self._last_key: Optional[tuple[Address, int]] = None
        self._last_session: Optional[Session] = None
        self._closed = False  # no more accept
        self._stopped = False  # receiver stopped, socket released
        self._signal: Optional[_Signal] = None
        #: New conversations refused, by reason ("backlog", "max_sessions", "blacklist").
        self.refused = {"backlog": 0, "max_sessions": 0, "blacklist": 0}
        self.backlog = config.backlog
        self.max_sessions = config.max_sessions
        self.blacklist_ttl = float(config.blacklist_ttl)
        self._receiver = _Receiver(self._transport, self._on_batch, "kcpsock-listener")
        _live_listeners.add(self)
        self._receiver.start()

    # ------------------------------------------------------------- routing

    def _blacklisted(self, key: tuple[Address, int], now: float) -> bool:
        expiry = self._blacklist.get(key)
        if expiry is None:
            return False
        if expiry > now:
            return True
        del self._blacklist[key]
        return False

    def _blacklist_add(self, key: tuple[Address, int]) -> None:
        """Add or refresh a key (listener lock held); purge expired ones lazily.

        Entries are kept in expiry order (a refreshed key moves to the end),
        so purging looks only at the front; at most :data:`BLACKLIST_MAX`
        entries are kept (the oldest go first).
        """
        if self.blacklist_ttl <= 0:
            return
        now = time.monotonic()
        bl = self._blacklist
        bl.pop(key, None)
        bl[key] = now + self.blacklist_ttl
        if len(bl) > BLACKLIST_MAX or now - self._last_purge > 1.0:
            self._last_purge = now
            stale: list[tuple[Address, int]] = []
            for k, expiry in bl.items():
                if expiry > now and len(bl) - len(stale) <= BLACKLIST_MAX:
                    break
                stale.append(k)
            for k in stale:
                del bl[k]

    def _on_batch(self, batch: list[tuple[bytes, Address]]) -> None:
        codec = self._codec
        errors: dict[str, int] = {}
        groups: dict[Session, list[bytes]] = {}
        new: list[Session] = []
        sessions = self._sessions
        last_key = self._last_key
        last_session = self._last_session
        for data, addr in batch:
            if codec is not None:
                try:
                    payload = codec.open(data)
                    conv = codec.peek_conv(payload)
                except PacketError as exc:
                    errors[exc.counter] = errors.get(exc.counter, 0) + 1
                    continue
            else:
                payload = data
                if len(payload) < _KCP_OVERHEAD:
                    errors["InErrs"] = errors.get("InErrs", 0) + 1
                    continue
                conv = int.from_bytes(payload[:4], "little")
            if conv is None:
                # FEC parity carries no conv: the address's latest session
                # (the seed dropped these, so server-side recovery never worked)
                s = self._by_addr.get(addr)
                if s is None or s.state is SessionState.CLOSED:
                    continue
            else:
                key = (addr, conv)
                if key == last_key and last_session is not None:
                    s = last_session
                else:
                    s = sessions.get(key)
                if s is None or s.state is SessionState.CLOSED:
                    s = self._new_session(key, payload, len(new))
                    if s is None:
                        continue
                    new.append(s)
                last_key, last_session = key, s
            group = groups.get(s)
            if group is None:
                groups[s] = [payload]
            else:
                group.append(payload)
        self._last_key, self._last_session = last_key, last_session
        for s, payloads in groups.items():
            accepted = s.feed(payloads)
            if s in new and not accepted:
                # the first datagrams of an unknown conv were garbage: forget it
                new.remove(s)
                self._drop_new(s)
        if new:
            with self._lock:
                for s in new:
                    if self._closed:
                        break
                    s._count_open()
                    _live_sessions.add(s)
                    self._queue.append(s)
                self._accept_cond.notify_all()
                if self._signal is not None and self._queue:
                    self._signal.set()
            if self._closed:
                for s in new:
                    if not s._opened:
                        self._drop_new(s)
        if errors:
            snmp.add_many(errors)

    def _new_session(
        self, key: tuple[Address, int], payload: bytes, batch_new: int
    ) -> Optional[Session]:
        """Create a session for an unknown key, or None if refused.

        ``batch_new`` sessions of the current batch are not queued yet but
        count against the backlog.
        """
        if self._closed:
            return None
        if (len(payload) < _KCP_OVERHEAD or not 81 <= payload[4] <= 84) and (
            self._codec is None or self._shards[0] == 0
        ):
            # not a KCP segment (FEC data packets are checked by feed)
            snmp.add("KCPInErrors")
            return None
        with self._lock:
            if self.blacklist_ttl > 0 and self._blacklisted(key, time.monotonic()):
                self.refused["blacklist"] += 1
                return None
            if len(self._queue) + batch_new >= self.backlog:
                self.refused["backlog"] += 1
                return None
            if len(self._sessions) >= self.max_sessions:
                self.refused["max_sessions"] += 1
                return None
            codec = make_codec(self._block, *self._shards)
            s = Session(key[1], key[0], self._transport, self.config, codec, listener=self)
            self._sessions[key] = s
            self._by_addr[key[0]] = s
            self._blacklist_add(key)
        return s

    def _unmap(self, s: Session) -> tuple[Address, int]:
        """Remove ``s`` from the routing maps (listener lock held); return its key."""
        key = (s.remote, s.conv)
        if self._sessions.get(key) is s:
            del self._sessions[key]
        if self._by_addr.get(s.remote) is s:
            del self._by_addr[s.remote]
            # parity of the address now goes to another live session, if any
            for (addr, _), other in self._sessions.items():
                if addr == s.remote:
                    self._by_addr[addr] = other
        if self._last_session is s:
            self._last_key = self._last_session = None
        return key

    def _drop_new(self, s: Session) -> None:
        """Forget a session that never became visible (no counters, no blacklist)."""
        with self._lock:
            self._blacklist.pop(self._unmap(s), None)
        with s._lock:
            s.state = SessionState.CLOSED
        updater.cancel(s)

    def _forget(self, s: Session) -> None:
        """Called by :meth:`Session.close`: leave the map, refresh the blacklist."""
        stop = False
        with self._lock:
            key = self._unmap(s)
            self._blacklist_add(key)  # SESSION.md §7: protection starts at close
            if self._closed and not self._sessions:
                stop = True
        if stop:
            self._stop()

    # -------------------------------------------------------------- accept

    def accept(self, deadline: Optional[float]) -> Session:
        """Return the next new session, blocking until one arrives.

        Args:
            deadline: ``time.monotonic()`` limit; None forever; 0 non-blocking.

        Returns:
            A session, already counted open.

        Raises:
            KCPClosedError, KCPTimeoutError, KCPBlockingIOError.
        """
        with self._lock:
            while True:
                if self._closed:
                    raise KCPClosedError()
                if self._queue:
                    s = self._queue.popleft()
                    if not self._queue and self._signal is not None:
                        self._signal.clear()
                    return s
                if deadline == 0:
                    raise KCPBlockingIOError()
                if not _wait(self._accept_cond, deadline):
                    raise _Timeout()

    def signal_fileno(self) -> int:
        """Return a file descriptor readable while :meth:`accept` would not block."""
        with self._lock:
            if self._closed:
                raise KCPClosedError()
            if self._signal is None:
                self._signal = _Signal()
                if self._queue:
                    self._signal.set()
            return self._signal.fileno()

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._closed

    def session_count(self) -> int:
        """Return the number of live sessions (accepted or waiting)."""
        with self._lock:
            return len(self._sessions)

    def close(self) -> None:
        """Stop accepting; close sessions not accepted yet.

        Accepted sessions keep working (like TCP connections after the
        listening socket closes); the socket and the receiver thread are
        released when the last of them closes.  Idempotent.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            pending = list(self._queue)
            self._queue.clear()
            self._accept_cond.notify_all()
            signal, self._signal = self._signal, None
        if signal is not None:
            signal.close()
        for s in pending:
            s.close()
        with self._lock:
            stop = not self._sessions
        if stop:
            self._stop()

    def close_all(self) -> None:
        """Close the listener and every session it created (interpreter exit)."""
        self.close()
        with self._lock:
            sessions = list(self._sessions.values())
        for s in sessions:
            s.close()
        self._stop()

    def _stop(self) -> None:
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        self._receiver.stop()
        _live_listeners.discard(self)
        _release_updater(True)

    @property
    def stopped(self) -> bool:
        """True once the receiver thread and the socket were released."""
        return self._stopped


_live_listeners: weakref.WeakSet[ListenerCore] = weakref.WeakSet()


def live_listeners() -> list[ListenerCore]:
    """Return the listener engines whose receiver still runs (for atexit)."""
    return list(_live_listeners)


def _release_updater(wait: bool) -> None:
    """End the updater thread once no session or listener is left.

    So that no kcpsock thread outlives ``close()`` (a REPL user checking
    ``threading.enumerate()``); the next session starts it again.
    """
    if not _live_sessions and not _live_listeners:
        updater.release(wait)
