"""Sessions: one KCP conversation under one lock, fed through an inbound queue.

A :class:`Session` is one KCP conversation (a :class:`~kcpsock.kcp.KCP` and
an optional :class:`~kcpsock.codec.PacketCodec`) with one remote address:
kcp-go's ``UDPSession``.  Dialed sessions own a receiver thread
(:mod:`kcpsock.transport`); listener sessions are fed by their listener's
(:mod:`kcpsock.listener`).  Received datagrams reach KCP through
:mod:`kcpsock.inbound` and the session's inbound queue.

Who runs what::

    receiver thread   recvfrom batch -> Inbound.process (no lock) ->
                      Session.deliver: append to the inbound queue, then a
                      NON-BLOCKING acquire; if it got the lock it drains the
                      queue (KCP input), else the holder will
    user threads      send / recv / close / setters under the session lock;
                      blocking waits on Conditions of that lock, with deadlines
    updater thread    Session.on_timer under the session lock: full flush
                      (a busy listener's receiver runs the due timers of its
                      OPEN sessions itself between batches: run_timer)
    a reader in recv  with nothing to read, it takes the socket's receive
                      role if the receiver lent it (kcpsock.transport): it
                      RELEASES the session lock, polls the UDP socket and
                      runs the receiver's handler itself (the pipeline, then
                      deliver, as above), takes the lock again and looks;
                      so the datagram that ends a wait is read on the
                      waiting thread (no receiver wake-up, no hand-off).
                      Every other blocking wait (a reader without the role,
                      a writer, drain, handshake) announces itself to the
                      receiver (begin_wait), which takes an unattended role
                      back at once.

The inbound queue is drained by whoever holds or next takes the lock: at the
start of send, recv and on_timer, and in the lock's release (and in the
release a Condition wait performs), after which the releasing thread checks
the queue again and, if it is not empty and the lock is free, takes the lock
and drains it (check after release: a batch queued while another thread held
the lock is never left behind, and a receiver never waits for a lock).

Lock order (outer first): listener lock -> session lock -> updater heap lock
-> snmp lock.  ``_tx_lock`` (FEC encoding and encryption of a session's
output) is only ever acquired without blocking, like the session lock by a
receiver (so it is a one-token deque: ``pop`` takes it, ``append`` gives it
back).  A listener's handler may keep it past the session lock's release
until the end of its batch, when the output it gathered is sent
(:meth:`Session._gather_out`, :class:`kcpsock.transport.SendGather`); other
threads then leave their output queued for it, in order.

Invariants:

* Locks are re-entrant: a ``KCPSocket`` collected by the cyclic GC closes
  its session from whatever thread the collection runs on, possibly one
  already holding a kcpsock lock; that must not deadlock.
* The session lock guards the KCP object and the session state.  Nothing
  blocking runs under it: datagrams produced under it (``_out``) and rare
  counter increments (``_counts``, errors) are sent and added by the thread
  that releases it, after the release; no user callback is ever called.
  The only socket calls under it are non-blocking ones on the private
  readiness socketpair, and the zero-timeout polls of the UDP socket
  (:meth:`~kcpsock.transport.Transport.readable`) of the close watch and of
  a timer that holds its RTO resends back.
* No RTO resend while ACKs are known to wait unread (``KCP.hold_rto``):
  after the process was held off the CPU, the ACKs of most of the window
  may wait in the socket.  The drain holds them until its last datagram
  (unless the receiver said more waits: ``deliver(..., behind=True)``),
  ``send`` while the receiver is behind, and ``on_timer`` while datagrams
  wait that the receive role has not got to (:meth:`Session._input_first`,
  bounded).
* The data path never takes the global counters' lock: the session counts
  in its own attributes (and KCP's), which :data:`kcpsock.stats.snmp`
  reads when it is read (:meth:`Session.snmp_counts`).  ``packets_out`` and
  ``wire_bytes_out`` are changed by the ``_tx_lock`` holder only, the rest
  under the session lock (or by the one receiver thread: FEC counters).
* A listener's receiver may defer a blocked stream reader's wake-up while
  it is behind (:class:`WakeGate`, its thread's deliveries only): it lists
  the session and wakes the reader at the end of a later batch, taking the
  lock without waiting; if the lock is taken it sets ``_wake_due`` and the
  holder wakes the reader before (or, checking after, just after) its
  release, as it drains a queued batch.  Never longer than
  ``WakeGate.max_ms``, never once the receiver caught up.
* The inbound queue holds at most ``inbox_limit`` batches; a receiver
  finding it full drops the batch and counts it (:attr:`Session.inbox_drops`),
  as a full kernel buffer would.
* ``send`` never queues more than the free send window (``snd_wnd -
  waitsnd``, at least one segment), so buffering is bounded; data is flushed
  at once unless write-delay is on (kcp-go ``WriteBuffers``).
* A session with nothing in flight, no pending ACK and no probe is
  scheduled on the updater only for its keep-alive (if on); ``send``, input
  and ``recv`` re-arm it, and input that only proves the peer alive moves
  the timer to the next keep-alive deadline (:meth:`Session._postpone_idle`).
* Malformed datagrams never raise out of a receiver thread: every
  :class:`~kcpsock.errors.PacketError` is counted under its ``counter`` in
  :data:`kcpsock.stats.snmp` and the datagram is dropped.
"""

from __future__ import annotations

import enum
import errno
import logging
import socket
import struct
import sys
import threading
import time
import weakref
from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Final, Optional, TypeVar, Union, cast

from ._mypyc import Weakrefable
from .codec import Codec, PacketCodec
from .config import KCPConfig
from .errors import (
    KCPBlockingIOError,
    KCPClosedError,
    KCPConnectionRefusedError,
    KCPConnectionResetError,
    KCPTimeoutError,
    PacketError,
)
from .inbound import Address, Delivery, DrainRate, Inbound, InboundResult, Route
from .kcp import IKCP_ASK_SEND, IKCP_ASK_TELL, KCP
from .replay import ReplayFilter
from .stats import snmp
from .transport import BATCH, Batch, Receiver, SendGather, Signal, Transport
from .updater import now_ms as _now_ms
from .updater import updater

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

    from .listener import ListenerCore  # it imports this module

_T = TypeVar("_T")

#: The session clock (:func:`kcpsock.updater.now_ms`), looked up at every
#: call: tests and tools substitute a simulated clock here.  (A module
#: attribute, not the imported function, so that the substitution also
#: reaches a mypyc-compiled build, which would call an imported compiled
#: function directly.)
now_ms: Callable[[], int] = _now_ms

__all__ = [
    "COPIERS_MAX",
    "COPY_PACK_MAX",
    "DRAIN_INTERVAL",
    "INBOX_LIMIT",
    "SENDALL_COPY_MAX",
    "Session",
    "SessionState",
    "Timeout",
    "WakeGate",
    "byte_view",
    "copy_into",
    "drain_closing",
    "live_listeners",
    "live_sessions",
    "new_replay_filter",
    "release_updater",
    "small_bytes",
    "wait_deadline",
]

if sys.version_info < (3, 10):

    class Timeout(KCPTimeoutError, socket.timeout):
        """Python 3.9: socket.timeout is not TimeoutError yet; be both."""
else:
    #: The timeout error blocking calls raise (also ``socket.timeout`` on 3.9).
    Timeout = KCPTimeoutError

_log: Final = logging.getLogger("kcpsock.session")

#: With this many segments unacknowledged, ``send`` does not flush; the data
#: leaves with the flush the next ACK triggers (kcp-go HEAD flushes on una
#: advance) or at the next tick: in stream mode merged into full segments, in
#: message mode many messages in one flush (an echo server's reply to each
#: message was a flush and a ``sendto`` of its own).
CORK_INFLIGHT: Final = 16

#: A reader waiting on a silent peer (see :meth:`Session._watch`): the peer
#: counts as gone after at least this many probes in a row went unanswered ...
GONE_PROBES: Final = 16
#: ... over at least this many answer times (max(RTO, slowest probe answer)),
#: and at least ``gone_timeout``.
GONE_ANSWER_TIMES: Final = 8
#: While the peer answers, a waiting reader probes after one answer time of
#: silence, then at doubling gaps up to this (ms).
GONE_GAP_MAX_MS: Final = 5000
#: The close watch probes a silent peer only within this window (ms; or
#: :data:`GONE_ANSWER_TIMES` answer times if longer) after data last moved
#: or the reader began waiting; a peer that still answers after it is left
#: to the keep-alive probes (``keepalive_interval``), and an unanswered
#: keep-alive probe starts the watch's run of probes.
GONE_WINDOW_MS = 3000

#: Keep-alive deadlines are rounded up to a multiple of this (ms; at most
#: an eighth of ``keepalive_interval``) on the session clock, so one updater
#: wake-up runs the keep-alive of every idle session due in that slot.
KEEPALIVE_GRID_MS: Final = 250

#: Seconds between two updates of a dialed session's paced receive window
#: (:meth:`Session._pace_window`; a listener paces its sessions as often).
DRAIN_INTERVAL: Final = 0.05

#: Batches a session's inbound queue holds at most (each at most
#: :data:`kcpsock.transport.BATCH` datagrams).
INBOX_LIMIT: Final = 128
#: A session whose input is older than this (ms) while datagrams wait in its
#: socket has been held off the CPU: its timer flush lets the input in before
#: it resends on timeout (:meth:`Session._input_first`).
STALE_INPUT_MS: Final = 2
#: ... for this many minimum RTOs in a row at most.
RTO_HOLD_MINRTOS: Final = 4
_M32: Final = 0xFFFFFFFF


def new_replay_filter(codec: Any, config: KCPConfig) -> Optional[ReplayFilter]:
    """The replay/reflection filter of one socket, or None (plain mode, or disabled).

    Args:
        codec: the socket's PacketCodec (None: plain mode, no nonce).
        config: ``replay_cache`` (0 disables) and ``replay_window``.

    Returns:
        A :class:`~kcpsock.replay.ReplayFilter` on the updater's clock, with
        a lock (a listener's sessions send concurrently).
    """
    size = int(getattr(codec, "nonce_size", 0) or 0) if codec is not None else 0
    if size <= 0 or config.replay_cache <= 0:
        return None
    return ReplayFilter(
        size,
        now_ms,
        capacity=config.replay_cache,
        window_ms=max(1, int(config.replay_window * 1000)),
        lock=threading.Lock(),
    )


def byte_view(data: ReadableBuffer) -> memoryview:
    """Return a flat byte view of ``data`` for ``send``/``sendall``.

    Args:
        data: a bytes-like object.

    Returns:
        A one-dimensional memoryview of unsigned bytes.

    Raises:
        TypeError: not a bytes-like object (named ``data``; a str gets a hint).
        BufferError: a buffer that is not C-contiguous (as ``socket.send``).
    """
    try:
        view = memoryview(data)
    except TypeError:
        raise TypeError(
            f"data must be a bytes-like object, not {type(data).__name__}"
            + (" (encode it first, e.g. data.encode())" if isinstance(data, str) else "")
        ) from None
    if not view.c_contiguous:
        raise BufferError("data: memoryview: underlying buffer is not C-contiguous")
    if view.ndim != 1 or view.itemsize != 1:
        view = view.cast("B")
    return view


class SessionState(enum.Enum):
    """Life cycle of a :class:`Session`."""

    OPEN = "open"
    """Exchanging data."""
    DEAD = "dead"
    """The peer is gone: KCP declared the link dead (a segment was sent
    ``dead_link`` times), nothing came back for ``keepalive_timeout``, a
    waiting reader's probes went unanswered for ``gone_timeout``, or ICMP
    said nothing listens there (:attr:`Session.failure` tells which)."""
    CLOSING = "closing"
    """Closed by the user; still delivering what was sent, in the background."""
    CLOSED = "closed"
    """Closed on this side; every resource released."""


# Members and functions as C statics for the compiled build (an enum
# member or a module attribute costs a lookup per use otherwise).
_OPEN: Final = SessionState.OPEN
_DEAD: Final = SessionState.DEAD
_CLOSED: Final = SessionState.CLOSED
_CLOSING: Final = SessionState.CLOSING
_get_ident: Final = threading.get_ident
_monotonic: Final = time.monotonic
_allocate_lock: Final = threading.Lock
# compiled, a Final name is a C static: no lookup of the builtin at each call
_memoryview: Final = memoryview

#: :func:`small_bytes` copies a bytearray or memoryview of at most this many
#: bytes to bytes once (larger ones are sent through a view)
SENDALL_COPY_MAX: Final = 65536


def small_bytes(data: Any) -> Any:
    """``data`` as bytes if it is a small bytearray or contiguous memoryview, else itself.

    For ``send``/``sendall`` (at most :data:`SENDALL_COPY_MAX` bytes: an echo
    loop's ``view[:n]``): one C copy instead of a flat view checked twice
    and a copy per segment.
    """
    kind = type(data)
    if kind is _memoryview:  # the module's constant: compiled, no builtins lookup per call
        mv = cast(memoryview, data)
        if mv.nbytes <= SENDALL_COPY_MAX and mv.c_contiguous:
            return mv.tobytes()
    elif kind is bytearray and len(cast(bytearray, data)) <= SENDALL_COPY_MAX:
        return bytes(cast(bytearray, data))
    return data


#: ``struct.Struct(f"{n}s").pack_into`` by size ``n`` (:func:`copy_into`)
_COPIERS: Final[dict[int, Callable[[Any, int, bytes], None]]] = {}
#: the most sizes :data:`_COPIERS` keeps (others are copied through a memoryview)
COPIERS_MAX: Final = 64
#: the largest copy made with a packer: the pack zero-fills its target before
#: copying, which costs more than the memoryview's overhead from about 16 kB
#: (timeit: 1,376 bytes 168 against 352 ns, 8 kB 253 / 414, 64 kB 6,796 / 2,979)
COPY_PACK_MAX: Final = 8192


#: ``kcpsock._udpio.gather(buffer, pos, parts, skip, drop) -> bool`` (:meth:`Session.recv_into`)
_Gather = Callable[[Any, int, Union[bytes, list[bytes]], int, int], bool]


def _gatherer() -> Optional[_Gather]:
    """``kcpsock._udpio.gather`` (:meth:`Session.recv_into`'s copier), or None (not built)."""
    from ._accel import native

    module = native("_udpio")
    return None if module is None else cast(Any, module).gather


def copy_into(buffer: Union[bytearray, memoryview], data: bytes) -> int:
    """Copy ``data`` to the start of ``buffer``; return ``len(data)``.

    ``buffer`` must be writable, one-dimensional with byte-sized items
    (strided views included), and hold ``len(data)`` bytes.
    Nothing beyond ``len(data)`` is written.  A ``struct`` "<n>s" pack
    does it in one C call, a third of the time of a memoryview slice
    assignment (which creates the view and a slice); assigning bytes to a
    bytearray slice would first copy them into a temporary bytearray.
    The packers are kept for up to :data:`COPIERS_MAX` sizes of at most
    :data:`COPY_PACK_MAX` bytes (a message stream has few); other sizes go
    through a memoryview.
    """
    n = len(data)
    if type(buffer) is not bytearray and not _memoryview(buffer).c_contiguous:
        # a strided view (``memoryview(b)[::2]``): no packer can write it, the
        # view copies item by item (and the data, already taken, is not lost)
        _memoryview(buffer)[0:n] = data
        return n
    copy = _COPIERS.get(n)
    if copy is None:
        if n > COPY_PACK_MAX or len(_COPIERS) >= COPIERS_MAX:
            _memoryview(buffer)[0:n] = data
            return n
        copy = _COPIERS[n] = struct.Struct(f"{n}s").pack_into
    copy(buffer, 0, data)
    return n


def _deadline_from(now: int, target: int) -> int:
    """Turn KCP's ``check`` result into an absolute deadline on our clock."""
    delay = (target - now) & _M32
    if delay >= 0x80000000:  # in the past (uint32 wrap-around safe)
        delay = 0
    return now + delay


def wait_deadline(cond: threading.Condition, deadline: Optional[float]) -> bool:
    """Wait on ``cond`` (held) until notified or ``deadline``; False on timeout."""
    if deadline is None:
        cond.wait()
        return True
    remaining = deadline - _monotonic()
    if remaining <= 0:
        return False
    cond.wait(remaining)
    return True


class WakeGate:
    """A listener receiver's deferral of its sessions' reader wake-ups while it is behind.

    With many busy sessions the receiver's batches bring each session a few
    datagrams, and waking its blocked reader for each (a ``Condition``
    notify, a thread switch, two hand-offs of the interpreter lock) costs
    more than the copy the reader then makes.  While the receiver knows more
    input waits (``active``, set by the receiver thread for the deliveries of
    one batch), a stream-mode session whose blocked reader asked for more
    bytes than are ready is not woken by its input but listed here; the
    receiver wakes the listed readers at the end of its batch
    (:meth:`end`) once it is no longer behind, the session's input paused
    for ``idle_ms`` or its reader was deferred ``max_ms``.  A reader is woken
    at once when its request is ready, half its receive window is queued,
    the last segment ready is short (the peer's write ended: a request, a
    reply) or the session ends; message mode and readiness fds are never
    deferred.

    Receiver thread only (the drains of other threads never defer).
    """

    def __init__(self, idle_ms: int = 30, max_ms: int = 60) -> None:
        #: the thread whose batch defers now (0: none: every wake-up is at once)
        self.thread = 0
        #: the batch's time (:func:`kcpsock.updater.now_ms`)
        self.now = 0
        #: wake a deferred reader whose session had no input for this long
        self.idle_ms = idle_ms
        #: wake a reader deferred this long in any case
        self.max_ms = max_ms
        #: sessions whose reader was deferred (and maybe woken since)
        self.deferred: list[Session] = []
        #: reader wake-ups deferred, and woken at the end of a batch (figures)
        self.deferrals = 0
        self.woken = 0
        #: no deferred reader can be due before this time (ms): :meth:`end`
        #: looks at the list only from then on while the receiver is behind
        self.check_at = 0

    def begin(self, now: int) -> None:
        """Defer the wake-ups of the calling thread's deliveries from now on."""
        self.now = now
        self.thread = _get_ident()

    def end(self, behind: bool, now: int) -> None:
        """Stop deferring; wake the deferred readers that should not wait for the next batch.

        Args:
            behind: more input waits for the receiver (its next batch follows at once).
            now: the current time (:func:`kcpsock.updater.now_ms`).
        """
        self.thread = 0
        deferred = self.deferred
        if not deferred or (behind and now < self.check_at):
            # (with 100 busy sessions most batches end here: none is due yet)
            return
        keep: list[Session] = []
        idle = self.idle_ms
        most = self.max_ms
        check_at = now + most
        for s in deferred:
            since = s._wake_since
            if since < 0:
                continue  # woken meanwhile
            if behind and now - since < most and now - s._input_ms < idle:
                keep.append(s)
                # (input only moves _input_ms later: the due time only moves away)
                due = min(since + most, s._input_ms + idle)
                if due < check_at:
                    check_at = due
                continue
            self.woken += 1
            s.wake_deferred()
        self.deferred = keep
        self.check_at = check_at


class _SessionLock:
    """The session lock: a re-entrant lock whose release drains the inbound queue.

    Also the lock of the session's Conditions: :meth:`_release_save` (the
    release inside ``Condition.wait``) drains and transmits like
    :meth:`release`, so a thread about to sleep never leaves a queued batch
    behind.  ``_depth`` is only changed by the owner.
    """

    __slots__ = ("_acquire", "_depth", "_inner", "_release", "_s")

    def __init__(self, session: Session) -> None:
        inner = threading.RLock()
        self._inner = inner
        # the RLock's methods, bound once: compiled, a call through a stored
        # bound method skips the method lookup of ``inner.acquire()`` (every
        # API call takes and releases the lock at least once)
        self._acquire: Callable[..., bool] = inner.acquire
        self._release: Callable[[], None] = inner.release
        self._depth = 0
        self._s = session

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Acquire (as ``RLock.acquire``)."""
        # (no timeout passed when there is none: compiled, -1 would be boxed
        # as a new float and parsed by RLock.acquire at every receiver batch)
        if self._acquire(blocking) if timeout == -1 else self._acquire(blocking, timeout):
            self._depth += 1
            return True
        return False

    def __enter__(self) -> bool:
        self._acquire()
        self._depth += 1
        return True

    def release(self) -> None:
        """Release; the outermost release drains the queue and sends the output.

        Also what the context manager's ``__exit__`` does.
        """
        release = self._release
        s = self._s
        while True:
            depth = self._depth
            if depth > 1:
                self._depth = depth - 1
                release()
                return
            if s._inbox:
                try:
                    s._drain_locked()
                except BaseException:  # Ctrl-C: released all the same (output kept)
                    self._depth = 0
                    release()
                    raise
            if s._wake_due:
                s._wake_now()  # a wake-up the receiver deferred (WakeGate)
            if s._out or s._counts or s._txq:
                pending, counts = s._take_output()
                self._depth = 0
                release()
                if pending or counts:
                    s._transmit(pending, counts)
            else:  # nothing produced (a recv, a corked send): no output to hand over
                self._depth = 0
                release()
            # check after release: a batch queued meanwhile by a receiver
            # that found the lock taken is ours to drain (and a deferred
            # wake-up it asked for)
            if (not s._inbox and not s._wake_due) or not self._acquire(False):
                return
            self._depth = 1

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        # not ``__exit__ = release``: mypyc compiles no aliases in class bodies;
        # and three named parameters, not ``*exc``: compiled, a ``with``
        # block would pack them into a new tuple at every exit
        self.release()

    # --- the protocol threading.Condition uses ---------------------------------

    def _release_save(self) -> tuple[Any, int]:
        s = self._s
        if s._inbox:
            s._drain_locked()  # may notify the Condition this thread waits on
        if s._wake_due:
            s._wake_now()
        pending, counts = s._take_output()
        depth = self._depth
        self._depth = 0
        inner = self._inner
        state = inner._release_save()  # type: ignore[attr-defined]
        try:
            if pending or counts:
                s._transmit(pending, counts)
            if (s._inbox or s._wake_due) and self.acquire(False):
                self.release()
        except BaseException:
            # Ctrl-C while released: the caller expects the lock back (a
            # Condition's or recv's ``with`` block releases it on the way out)
            inner._acquire_restore(state)  # type: ignore[attr-defined]
            self._depth = depth
            raise
        return state, depth

    def _acquire_restore(self, saved: tuple[Any, int]) -> None:
        state, depth = saved
        self._inner._acquire_restore(state)  # type: ignore[attr-defined]
        self._depth = depth

    def _is_owned(self) -> bool:
        return bool(self._inner._is_owned())  # type: ignore[attr-defined]


class _SessionCondition:
    """A Condition of the session lock: ``threading.Condition``'s ``wait`` and ``notify_all``.

    The same protocol (a waiter lock per wait, released by the notifier;
    the session lock let go with :meth:`_SessionLock._release_save`, which
    drains and transmits first), compiled: a blocked reader's wake-up
    runs no interpreted code on either thread (``threading.Condition`` is
    Python: about sixty bytecodes per wait and notify, and the interpreter
    loop they run in is where a woken thread's request for the
    interpreter lock interrupts the notifier).  Callers hold the session
    lock.
    """

    __slots__ = ("_lock", "_waiters")

    def __init__(self, lock: _SessionLock) -> None:
        self._lock = lock
        #: the waiter locks of the threads waiting, oldest first
        self._waiters: deque[Any] = deque()

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Release the session lock, wait for a notify or ``timeout`` seconds, take it back.

        Returns:
            False if the wait timed out.
        """
        lock = self._lock
        if not lock._is_owned():
            raise RuntimeError("cannot wait on un-acquired lock")
        waiter = _allocate_lock()
        waiter.acquire()
        waiters = self._waiters
        waiters.append(waiter)
        try:
            saved = lock._release_save()
        except BaseException:
            waiters.remove(waiter)
            raise
        got = False
        try:
            if timeout is None:
                got = bool(waiter.acquire())
            elif timeout > 0:
                got = bool(waiter.acquire(True, timeout))
            else:
                got = bool(waiter.acquire(False))
            return got
        finally:
            lock._acquire_restore(saved)
            if not got:
                try:
                    waiters.remove(waiter)
                except ValueError:  # notified meanwhile
                    pass

    def notify_all(self) -> None:
        """Wake every waiting thread (session lock held)."""
        if not self._lock._is_owned():
            raise RuntimeError("cannot notify on un-acquired lock")
        waiters = self._waiters
        while waiters:
            waiters.popleft().release()


def _wait_until(cond: _SessionCondition, deadline: Optional[float]) -> bool:
    """:func:`wait_deadline` for a session's Condition (held); False on timeout."""
    if deadline is None:
        return cond.wait()
    remaining = deadline - _monotonic()
    if remaining <= 0:
        return False
    cond.wait(remaining)
    return True


class Session(Weakrefable):
    """One KCP conversation with one remote address (kcp-go ``UDPSession``).

    Created by :func:`kcpsock.dial` (active open: :meth:`start_receiver`
    gives it a receiver thread) or by a :class:`kcpsock.listener.ListenerCore`
    (passive open: fed by the listener's receiver through :meth:`deliver`).
    The socket API lives in :class:`kcpsock.KCPSocket`; this class holds the
    protocol state and the blocking primitives with absolute deadlines
    (``time.monotonic()`` seconds, None = forever, 0 = non-blocking).

    Args:
        conv: conversation id.
        remote: the peer's socket address.
        transport: the UDP socket to send through.
        config: session options.
        codec: a PacketCodec or None (plain mode).
        route: the session's route in its listener's table (passive
            sessions); a dialed session makes its own.
        on_close: called once with the session when it closes (the listener
            forgets it).
        replay: the replay/reflection filter of the socket (a listener's,
            shared); a dialed session makes its own (``config.replay_cache``).
        role: the listener's receiver, whose receive role a blocked reader
            may take (a dialed session uses its own receiver's).
    """

    def __init__(
        self,
        conv: int,
        remote: Address,
        transport: Transport,
        config: KCPConfig,
        codec: Optional[Codec] = None,
        *,
        route: Optional[Route] = None,
        on_close: Optional[Callable[[Session], None]] = None,
        replay: Optional[ReplayFilter] = None,
        role: Optional[Receiver] = None,
    ) -> None:
        self.conv = conv
        self.remote = remote
        self.config = config
        #: the UDP socket this session sends through (shared with a listener's sessions)
        self.transport = transport
        self._codec: Optional[Codec] = codec
        self.passive = route is not None
        if route is None:
            route = Route(None, codec)
        route.target = self
        #: the session's entry in the inbound pipeline
        self.route = route
        self._on_close = on_close
        if replay is None and route.key is None:
            replay = new_replay_filter(codec, config)
        #: the socket's replay/reflection filter (None: plain mode or disabled)
        self.replay = replay
        self._lock = _SessionLock(self)
        # The transmit lock, only ever taken without waiting: one token in a
        # deque, taken by ``pop`` and given back by ``append`` (atomic, like a
        # lock's acquire(False) and release; a Lock's acquire parses its
        # arguments at every call, the deque's methods take none or one).
        tx_lock: deque[bool] = deque((True,))
        self._tx_lock = tx_lock
        # bound once (see _SessionLock): the transmit path runs at every release
        self._tx_take: Callable[[], bool] = tx_lock.pop
        self._tx_give: Callable[[bool], None] = tx_lock.append
        self._txq: deque[list[bytes]] = deque()
        self._txq_push: Callable[[list[bytes]], None] = self._txq.append
        self._txq_pop: Callable[[], list[bytes]] = self._txq.popleft
        self._readable = _SessionCondition(self._lock)
        self._writable = _SessionCondition(self._lock)
        self._answered = _SessionCondition(self._lock)
        self._rwait = 0  # threads waiting on _readable / _writable (lock held):
        self._wwait = 0  # notifications are skipped when nobody waits
        self._rhold = 0  # readers reading the socket with the receive role
        self._rwant = 0  # bytes the last blocked reader asked for
        #: the listener receiver's deferral of reader wake-ups (None: never deferred)
        self.wake_gate: Optional[WakeGate] = None
        self._wake_since = -1  # when a reader's wake-up was deferred (-1: none is)
        self._wake_due = False  # the receiver asks the lock holder to wake the readers
        # the thread reading the socket for its own recv (the receive role):
        # the ACKs of what it reads for itself ride on its reply (_drain_locked)
        self._ack_rider = 0
        # the receiver whose role a reader may take (None: never)
        self._role: Optional[Receiver] = role if role is not None and role.lendable else None
        self._inbox: deque[Delivery] = deque()
        # the receiver that queued the last batch knew more input waited
        # (a full batch, or datagrams read ahead): RTO resends wait for it
        self._behind = False
        # when input was last fed to KCP, and since when on_timer has held
        # RTO resends back for input waiting in the socket (-1: not now)
        self._input_ms = now_ms()
        self._rto_held_from = -1
        #: batches the inbound queue holds at most
        self.inbox_limit = INBOX_LIMIT
        #: datagrams dropped because the inbound queue was full
        self.inbox_drops = 0
        self._out: list[bytes] = []  # KCP output produced under the lock ...
        self._counts: list[tuple[str, int]] = []  # ... and counter increments
        self.state = _OPEN
        self._rd_shut = False
        self._wr_shut = False
        self._pending = b""  # a message a short recv did not finish ...
        self._poff = 0  # ... and how much of it was returned already
        # recv_into's copier (kcpsock._udpio.gather), or None: join and copy
        self._gather: Optional[_Gather] = _gatherer()
        self._signal: Optional[Signal] = None
        self._opened = False  # counted in snmp (Active/PassiveOpens)
        #: receive window to open at the first recv (a listener session starts
        #: with ``KCPConfig.pending_rcvwnd``); 0 when open already
        self.deferred_rcvwnd = 0
        self._receiver: Optional[Receiver] = None
        self._inbound: Optional[Inbound] = None
        # a dialed session's receive window follows its receiver's drain
        # rate (DrainRate, as a listener's sessions'); receiver thread only
        self._drain: Optional[DrainRate] = None
        self._drain_at = 0.0
        self._drain_backlog = False
        self.updater_deadline: Optional[int] = None
        self.updater_seq = 0
        # settings not held by KCP
        self.ack_nodelay = config.ack_nodelay
        self.write_delay = config.write_delay
        self.dup = config.dup
        #: close(): None delivers in the background, 0 is kcp-go's one flush,
        #: > 0 blocks that many seconds for the acknowledgements first
        self.linger: Optional[float] = None if config.linger is None else float(config.linger)
        #: bytes send() may queue behind the window (see KCPConfig.send_buffer)
        self.send_buffer = config.send_buffer
        self.close_timeout = float(config.close_timeout)
        self.keepalive_interval_ms = int(config.keepalive_interval * 1000)
        self.keepalive_timeout_ms = int(config.keepalive_timeout * 1000)
        #: a waiting reader's silent peer is gone after this long unanswered (0: off)
        self.gone_timeout_ms = int(config.gone_timeout * 1000)
        #: why the session is DEAD: "dead_link", "timeout", "gone", "refused", "reset"
        self.failure: Optional[str] = None
        self._last_rx = now_ms()  # the last datagram KCP accepted from the peer
        self._next_probe = 0
        # the watch of a waiting reader (_watch): the current gap between an
        # answer and the next probe (0: one answer time), the first and the
        # last probe of the run not answered yet (0: none), how many, the
        # deadline asked for (0: not watching; -1: watching, the window is
        # over: keep-alive probes only), (rcv_nxt, snd_una) when data last
        # moved, when the probing window began (data moved or a reader began
        # waiting), and the slowest probe answer seen (ms, decaying)
        self._w_gap = 0
        self._w_first = 0
        self._w_last = 0
        self._w_count = 0
        self._w_due = 0
        self._w_mark = (-1, -1)
        self._w_start = 0
        self._answer_ms = 0
        # what on_timer last set the SNMP gauges from (skipped when unchanged)
        self._gauge_key: Optional[tuple[int, int, int, int]] = None
        #: kcp.stale_wins when we last probed (-1: never): a WINS with una 0
        #: (after the peer acknowledged data) in answer to our probe comes from
        #: a peer that forgot the conversation (kcp-go's listener opens a new
        #: session for a datagram that arrives after it closed one)
        self._stale_mark = -1
        self._close_deadline = 0
        self._finished = False
        self._icmp = False  # the receiver saw ICMP port unreachable
        self._handshake = False
        # per-session figures
        self.bytes_sent = 0
        self.bytes_received = 0
        self.packets_in = 0
        self.packets_out = 0
        self.wire_bytes_in = 0
        self.wire_bytes_out = 0

        kcp = KCP(conv)
        kcp.set_nodelay(*config.nodelay_args)
        kcp.wndsize(config.sndwnd, config.rcvwnd)
        mtu = codec.kcp_mtu(config.mtu) if codec is not None else config.mtu
        kcp.setmtu(mtu)
        kcp.stream = config.stream
        kcp.dead_link = config.dead_link
        kcp.rto_ordered = config.rto_ordered
        self.kcp = kcp

    # ------------------------------------------------------------ bookkeeping

    def start(self, flushed: bool = False) -> None:
        """Count the session open (Active/PassiveOpens) and schedule its first update.

        Called once by the creator (dial, or the listener before the first
        delivery); further calls do nothing.

        Args:
            flushed: run KCP's first update here, on the calling thread, and
                schedule the next one an interval later (a listener's new
                session has nothing to send yet: its receiver creates a
                hundred at once when a client dials a hundred, and an
                updater wake-up for each costs the receiver the
                interpreter lock as many times); False: the updater thread
                runs the first update at once.
        """
        if not self._opened:
            self._opened = True
            now = now_ms()
            self._last_rx = now
            _live_sessions.add(self)
            snmp.register(self)
            snmp.session_opened(self.passive)
            if flushed:
                with self._lock:
                    self._out += self.kcp.update(now)
                    due = self.kcp.check(now)
                    self._arm_at(due)
            else:
                updater.schedule(self, now)

    @property
    def codec(self) -> Optional[Codec]:
        """The session's PacketCodec, or None in plain mode."""
        return self._codec

    def local_address(self) -> Address:
        """Return the local address of the UDP socket."""
        addr: Address = self.transport.sock.getsockname()
        return addr

    def queued_batches(self) -> int:
        """Return how many received batches wait in the inbound queue (lock-free read)."""
        return len(self._inbox)

    @property
    def receiver_thread(self) -> Optional[threading.Thread]:
        """The receiver thread of a dialed session (None for a listener's)."""
        return self._receiver.thread if self._receiver is not None else None

    @property
    def receive_role(self) -> Optional[Receiver]:
        """The receiver whose role a reader blocked in :meth:`recv` may take (None: never).

        A dialed session's own receiver, or its listener's (owned sockets only).
        """
        return self._role

    def snmp_counts(self) -> tuple[int, ...]:
        """Cumulative counts for :data:`kcpsock.stats.snmp` (see ``SOURCE_FIELDS``).

        The session counts in its own attributes only; the global counters
        read them when they are read (no global lock on the data path).
        """
        k = self.kcp
        codec = self._codec
        if codec is None:
            fec = (0, 0, 0, 0)
        else:
            fec = (
                codec.fec_parity_shards,
                codec.fec_full_shard_sets,
                codec.fec_recovered,
                codec.fec_errors,
            )
        return (
            self.bytes_sent,
            self.bytes_received,
            self.packets_in,
            self.wire_bytes_in,
            self.packets_out,
            self.wire_bytes_out,
            k.in_segs,
            k.out_segs,
            k.lost_segs,
            k.fast_retrans_segs,
            k.early_retrans_segs,
            k.repeat_segs,
            *fec,
        )

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
        if kcp.state == 0xFFFFFFFF and self.failure is None:  # kcp.is_dead
            self.failure = "dead_link"
        dead = self.failure is not None
        if dead and self.state is _OPEN:
            self.state = _DEAD
        signal = self._signal
        # (readiness is worked out only when a waiter or the readiness fd
        # looks at it: nothing to do per datagram for a busy writer)
        queue = kcp.rcv_queue
        if (self._rwait or self._rhold or signal is not None) and (
            self._pending
            # (stream mode: a non-empty last segment is enough; peek_size
            # would add up the whole queue at every delivery)
            or (kcp.stream and queue and len(queue[-1][1]) > 0)
            or kcp.peek_size() > 0
            or dead
            or self._rd_shut
        ):
            if self._rwait:
                gate = self.wake_gate
                if (
                    hysteresis
                    and gate is not None
                    and gate.thread
                    and not dead
                    and not self._rd_shut
                    and self._defer_wake(gate, kcp)
                ):
                    pass  # the receiver wakes it (WakeGate.end)
                else:
                    self._wake_since = -1
                    self._readable.notify_all()
            if self._rhold:
                role = self._role
                if role is not None:
                    role.wake_holder()  # (not when the holder delivers itself)
            if signal is not None:
                signal.set()
        if self._wwait or signal is not None:
            limit = self.send_buffer
            room = limit - self._queued_bytes()
            if self._wwait and (
                dead
                or (room > (limit >> 2) if hysteresis else room > 0)
                or not kcp.waitsnd()  # drain() (a lingering close) waits for this
            ):
                self._writable.notify_all()
            if signal is not None:
                signal.set_writable(dead or self._wr_shut or room > 0)
        if self._handshake and (kcp.in_segs or dead):
            self._answered.notify_all()

    def _defer_wake(self, gate: WakeGate, kcp: KCP) -> bool:
        """True if the blocked reader's wake-up waits for the receiver's batch end (lock held).

        Only on the receiver thread that set ``gate`` active, in stream mode,
        while less than the reader asked for (and less than half the receive
        window) is ready and nothing is left over from a short read.
        """
        want = self._rwant
        if want <= 0 or self._pending or not kcp.stream or gate.thread != _get_ident():
            return False
        queue = kcp.rcv_queue
        nq = len(queue)
        if nq * kcp.mss >= want or nq * 2 >= kcp.rcv_wnd or (nq and len(queue[-1][1]) < kcp.mss):
            # (a short last segment: the peer's write ended there, a request
            # or a reply waits for this reader; a bulk sender fills them)
            return False
        since = self._wake_since
        if since < 0:
            self._wake_since = gate.now
            gate.deferrals += 1
            deferred = gate.deferred
            due = gate.now + min(gate.idle_ms, gate.max_ms)  # (_input_ms is now or later)
            if not deferred or due < gate.check_at:
                gate.check_at = due
            deferred.append(self)
        elif gate.now - since >= gate.max_ms:
            return False
        return True

    def wake_deferred(self) -> None:
        """Wake the readers whose wake-up a :class:`WakeGate` deferred (never blocks).

        If another thread holds the session lock, that thread wakes them
        before it lets go (or takes the lock again after: see
        :meth:`_SessionLock.release`).
        """
        self._wake_due = True
        lock = self._lock
        if lock.acquire(False):
            lock.release()  # wakes them (_wake_now)

    def _wake_now(self) -> None:
        """Wake the readers a deferred wake-up was asked for (lock held)."""
        self._wake_due = False
        if self._wake_since >= 0:
            self._wake_since = -1
            if self._rwait:
                self._readable.notify_all()

    def _queued_bytes(self) -> int:
        """Bytes waiting behind the send window (lock held), as ``send_buffer`` counts them.

        Stream mode: every queued segment but the last is full (KCP tops up
        the last one), so this is exact.  Message mode: each queued message
        (fragment) counts as a full segment.
        """
        kcp = self.kcp
        queue = kcp.snd_queue
        n = len(queue)
        if not n:
            return 0
        if kcp.stream:
            return (n - 1) * kcp.mss + len(queue[-1][1])
        return n * kcp.mss

    def _arm_at(self, deadline: int) -> None:
        """Make sure :meth:`on_timer` runs at ``deadline`` or earlier (lock held)."""
        current = self.updater_deadline
        if self._opened and not self._finished and (current is None or current > deadline):
            updater.schedule(self, deadline)

    def _take_output(self) -> tuple[bool, list[tuple[str, int]]]:
        """Queue what the lock holder produced for sending (lock held).

        The output goes onto the transmit queue here, under the session
        lock, so the queue holds datagrams in the order KCP produced them:
        sending them after the release in whatever order threads happen to
        run would reorder segments on the wire (spurious fast retransmits
        at the peer on a lossless link).

        Returns:
            (whether anything waits to be sent, rare counter increments:
            the session's own figures reach ``snmp`` through
            :meth:`snmp_counts`).
        """
        out = self._out
        if out:
            self._out = []
            self._txq_push(out)
        counts = self._counts
        if counts:
            self._counts = []
        return bool(self._txq), counts

    def _transmit(self, pending: bool, counts: list[tuple[str, int]]) -> None:
        """Send the transmit queue, in order (never under the session lock).

        One thread at a time sends (``_tx_lock``, taken without waiting): the
        stateful FEC encoder and the nonces need it, and so does the order.
        A thread finding the lock taken leaves the queue to the holder, who
        checks the queue again after its release, so no thread ever waits here.

        Args:
            pending: True if the queue may hold datagrams.
            counts: rare SNMP increments of the caller (errors).
        """
        if pending:
            transport = self.transport  # a native call: no bound method, no boxed result
            gather = transport.gather
            if gather is not None and gather.thread == _get_ident():
                self._gather_out(gather)  # a listener's receiver batch: one sendmmsg for all
                if counts:
                    snmp.add_many(counts)
                return
            plain = self._codec is None and not self.dup
            txq = self._txq
            pop = self._txq_pop
            remote = self.remote
            while txq and self._tx_acquire():
                try:
                    while txq:
                        batch = pop()
                        a, b = transport.send(batch if plain else self._encode(batch), remote)
                        # counted by the _tx_lock holder only (snmp_counts)
                        self.packets_out += a
                        self.wire_bytes_out += b
                finally:
                    self._tx_give(True)  # (the release)
        if counts:
            snmp.add_many(counts)

    def _tx_acquire(self) -> bool:
        """Take the transmit lock without waiting (``_tx_lock``'s token); False if taken."""
        if self._tx_lock:
            try:
                self._tx_take()
                return True
            except IndexError:  # taken by another thread since the look
                pass
        return False

    def _gather_out(self, gather: SendGather) -> None:
        """Hand the transmit queue to the gather of the calling thread (a receiver batch).

        The transmit lock is taken (without waiting) and kept until the
        gather is sent (:meth:`_gathered` releases it), so what other threads
        queue meanwhile leaves after it, in order.  If another thread holds
        the lock, that thread sends the queue (it checks after its release).
        """
        txq = self._txq
        if not txq:
            return
        key = id(self)
        index = gather.owner(key)
        if index < 0:
            if not self._tx_acquire():
                return
            index = gather.hold(key, self._gathered)
        plain = self._codec is None and not self.dup
        remote = self.remote
        while txq:
            batch = txq.popleft()
            gather.add(index, batch if plain else self._encode(batch), remote)

    def _gathered(self, sent: int, nbytes: int) -> None:
        """The gather holding this session's output was sent: count, release, send the rest."""
        # counted by the _tx_lock holder only (snmp_counts)
        self.packets_out += sent
        self.wire_bytes_out += nbytes
        self._tx_give(True)  # (the release)
        if self._txq:
            self._transmit(True, [])

    def _encode(self, datagrams: list[bytes]) -> list[bytes]:
        """FEC, encryption and DUP copies of KCP datagrams (``_tx_lock`` held)."""
        codec = self._codec
        dup = self.dup
        now = now_ms()
        if codec is not None and not dup:
            # the whole batch in one call (no per-datagram lists)
            if isinstance(codec, PacketCodec):
                # compiled: a direct call (no method lookup, no argument parsing)
                packets = codec.encode_many(datagrams, now)
            else:
                packets = codec.encode_many(datagrams, now)
            replay = self.replay
            if replay is not None:
                replay.sent(packets)
            return packets
        packets = []
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
        replay = self.replay
        if replay is not None:
            replay.sent(packets)  # a reflected copy will be dropped (kcpsock.replay)
        return packets

    # ----------------------------------------------------------------- input

    def deliver(self, delivery: Delivery, behind: bool = False) -> None:
        """Queue a batch of KCP datagrams from the inbound pipeline (receiver thread).

        Never blocks: if the session lock is free it is taken without
        waiting and the queue drained at once (KCP input, ACKs sent);
        otherwise the thread holding it drains the queue before it lets go.
        A full queue drops the batch (counted in :attr:`inbox_drops`).

        Args:
            delivery: what one batch brought this session.
            behind: the receiver knows more datagrams wait to be read (its
                batch was full, or it read ahead): the flushes this input
                causes resend nothing on timeout, since the ACKs that
                would prevent it may be among them.
        """
        inbox = self._inbox
        if len(inbox) >= self.inbox_limit:
            self.inbox_drops += delivery.packets
            return
        self._behind = behind
        inbox.append(delivery)
        lock = self._lock
        if lock.acquire(False):
            lock.release()  # drains and transmits

    def _drain_locked(self) -> None:
        """Feed every queued batch to KCP (lock held); output goes to ``_out``."""
        inbox = self._inbox
        if self.state is _CLOSED:
            inbox.clear()
            return
        kcp = self.kcp
        now = now_ms()
        # a reader reading for itself answers soon: no ACK-only flushes now
        hold = self._ack_rider != 0 and self._ack_rider == _get_ident()
        self._input_ms = now
        try:
            self._drain_batches(kcp, now, hold, self._behind)
        finally:
            kcp.hold_rto = False

    def _drain_batches(self, kcp: KCP, now: int, hold: bool, behind: bool) -> None:
        """The body of :meth:`_drain_locked` (``kcp.hold_rto`` is cleared after it)."""
        inbox = self._inbox
        ack_nodelay = self.ack_nodelay
        out = self._out
        errors = packets = nbytes = 0
        in_before = kcp.in_segs
        # No RTO resend before the last datagram known to wait is in: a later
        # one may acknowledge what a timeout would resend (kcp-go flushes at
        # every datagram that moves una; after the process was held off the
        # CPU for longer than the RTO, that resent most of the window).
        kcp.hold_rto = True
        while inbox:
            d = inbox.popleft()
            packets += d.packets
            nbytes += d.nbytes
            dgs = d.datagrams
            skip = d.skip
            rec = d.recovered
            last = -1 if behind or inbox else len(dgs) + len(rec) - 1
            i = 0
            for dg in dgs:
                if i == last:
                    kcp.hold_rto = False
                i += 1
                try:
                    res = kcp.input(
                        dg, now, regular=True, ack_nodelay=ack_nodelay, hold_acks=hold, offset=skip
                    )
                except PacketError:
                    errors += 1
                    continue
                if res:
                    out += res
            for dg in rec:
                if i == last:
                    kcp.hold_rto = False
                i += 1
                try:
                    res = kcp.input(dg, now, regular=False, ack_nodelay=ack_nodelay, hold_acks=hold)
                except PacketError:
                    errors += 1
                    continue
                if res:
                    out += res
        if not behind and kcp.rto_due(now):
            # all the input known is in: the timeouts the held flushes left
            # (the last datagram moved no una) fire now, not at the next tick
            kcp.hold_rto = False
            out += kcp.flush(now)
        self.packets_in += packets
        self.wire_bytes_in += nbytes
        if errors:
            self._counts.append(("KCPInErrors", errors))
        if kcp.in_segs != in_before:
            self._last_rx = now  # the peer is alive (keep-alive)
        if (kcp.acklist or kcp.probe & IKCP_ASK_TELL) and not (hold and kcp.peek_size() > 0):
            # (except on a reader that read this batch for itself with the
            # receive role and returns data now: its ACKs ride on the
            # reply it is about to send, as kcp-go's do, or leave at its
            # next recv or send, at the latest at the session's next tick
            # (armed below): a ping-pong then costs each side one datagram
            # and one pass through the pipeline per round trip, not two)
            #
            # the ACKs of the batch leave with it, in one datagram (kcp-go
            # waits for its next tick or mtu // 24 of them): the sender's RTO
            # does not count our tick, and a busy receiving session needs
            # no updater wake-up every interval just to acknowledge (100
            # sessions: 10,000 timer runs a second).  A window probe (a
            # keep-alive or create_connection's handshake) is answered at
            # once too (kcp-go answers at its next flush).
            out += kcp.flush_acks(now)
        if self.state is _CLOSING:
            # closed by the user: acknowledge and drop what still arrives
            while kcp.recv() is not None:
                pass
            if not kcp.waitsnd():
                self._arm_at(now)  # everything acknowledged: on_timer finishes the close
        self._notify(hysteresis=True)
        current = self.updater_deadline
        if (
            current is not None
            and not kcp.acklist
            and not kcp.probe
            and not kcp.snd_buf
            and not kcp.snd_queue
            and not 0 <= self._stale_mark < kcp.stale_wins  # on_timer ends it at once
        ):
            # nothing for a flush to do (a keep-alive probe or its answer,
            # or data whose ACK left above): no flush timer; and if the peer
            # just proved alive, the timer already set (keep-alive, close
            # watch) moves to the next keep-alive deadline instead of waking
            # for nothing (issue 9) ...
            if kcp.in_segs != in_before:
                if self._w_due and (kcp.rcv_nxt, kcp.snd_una) != self._w_mark:
                    # ... unless data moved while the close watch runs: a new
                    # window, whose first look comes when _watch would make it
                    # (half the gap, at least one answer time)
                    self._watch_moved(kcp, now)
                else:
                    self._postpone_idle(kcp)
            return
        due = kcp.check(now)  # never before now: an absolute deadline as it is
        if current is None or current > due:
            self._arm_at(due)

    def on_timer(self, now: int) -> Optional[int]:
        """The updater's callback: keep-alive, full flush, then arm the next deadline.

        Args:
            now: the current time (:func:`kcpsock.updater.now_ms`).

        Returns:
            None: the next deadline is armed on the updater here, before the
            session lock is released (none when nothing is in flight, no ACK
            is pending, no probe is due and keep-alive is off: the session
            sleeps until ``send`` or input schedules it again).
        """
        finish = False
        with self._lock:
            stale = self.state is _CLOSED
        if stale:
            release_updater(False)  # a late timer of a finished session: maybe the last
            return None
        with self._lock:
            state = self.state
            if state is _CLOSED:
                return None
            if self._inbox:
                self._drain_locked()
            kcp = self.kcp
            if self._icmp and self.failure is None:
                # ICMP port unreachable: refused if the peer never answered, else gone
                self.failure = "refused" if not kcp.in_segs else "reset"
            if 0 <= self._stale_mark < kcp.stale_wins and self.failure is None:
                self.failure = "gone"
                _log.debug("conv %08x: the peer answers as a new session: it closed", self.conv)
            ka = self.keepalive_timeout_ms
            ka_probe = False
            if ka and self.failure is None:
                idle = now - self._last_rx
                if idle >= ka:
                    self.failure = "timeout"
                    _log.debug("conv %08x: no answer for %d ms, peer dead", self.conv, idle)
                elif idle >= self.keepalive_interval_ms and now >= self._next_probe:
                    kcp.probe |= IKCP_ASK_SEND  # a window probe: the peer answers WINS
                    self._stale_mark = kcp.stale_wins
                    self._next_probe = now + max(self.keepalive_interval_ms // 3, 10)
                    ka_probe = True
            watch_due: Optional[int] = None
            if (
                self.gone_timeout_ms
                and self.failure is None
                and state is _OPEN
                and self._reader_waits(kcp)
            ):
                watch_due = self._watch(now, kcp, ka_probe)
            elif self._w_due:
                # nobody waits any more: drop the probe run (a new wait starts afresh)
                self._w_due = self._w_first = self._w_count = 0
            held = self._input_first(now, kcp)
            if held:
                kcp.hold_rto = True
                try:
                    self._out += kcp.flush(now)
                finally:
                    kcp.hold_rto = False
            else:
                self._out += kcp.flush(now)
            self._notify()
            state = self.state
            if state is _CLOSING and (
                not kcp.waitsnd() or self.failure is not None or now >= self._close_deadline
            ):
                finish = True
                nxt: Optional[int] = None
            elif self.failure is not None:
                nxt = None
            else:
                if held:
                    nxt = now + 1  # the timeouts held back: after the input
                elif kcp.waitsnd() or kcp.acklist or kcp.probe:
                    nxt = _deadline_from(now, kcp.check(now))
                else:
                    nxt = None
                if ka:
                    due = self._keepalive_due()
                    nxt = due if nxt is None else min(nxt, due)
                if watch_due is not None:
                    nxt = watch_due if nxt is None else min(nxt, watch_due)
                if state is _CLOSING:
                    nxt = self._close_deadline if nxt is None else min(nxt, self._close_deadline)
                if nxt is not None:
                    # armed here, under the lock, rather than by the updater
                    # after the return: the answer to a probe this flush sends
                    # may be taken in before that, and its postponement
                    # (_postpone_idle) must find the timer to move on
                    self._arm_at(nxt)
                    nxt = None
            gauge_key: Optional[tuple[int, int, int, int]] = (
                len(kcp.snd_queue),
                len(kcp.rcv_queue),
                len(kcp.snd_buf),
                # the FEC gauge moves only with packets_in (none in plain mode)
                self.packets_in if self._codec is not None else 0,
            )
            if gauge_key == self._gauge_key:
                gauge_key = None  # nothing changed since this session last set them
            else:
                self._gauge_key = gauge_key
        if gauge_key is not None:
            gauges = {
                "RingBufferSndQueue": gauge_key[0],
                "RingBufferRcvQueue": gauge_key[1],
                "RingBufferSndBuffer": gauge_key[2],
            }
            codec = self._codec
            if codec is not None:
                gauges["FECShardSet"] = codec.fec_counters()["FECShardSet"]
            # kcp-go HEAD: gauges of the last flush of any session (kcpsock
            # skips a flush whose session changed nothing since it last set them)
            snmp.set_gauges(**gauges)
        if finish:
            self._finish_close(wait=False)
        return nxt

    def _input_first(self, now: int, kcp: KCP) -> bool:
        """True if this timer flush should hold its RTO resends back for input (lock held).

        True while a retransmission timer may be due and datagrams wait in
        the socket that the receive role has not got to: it is busy with
        the batch before (whose flushes can take long: a window's worth of
        new data to encrypt and send), its last batch was full, or no input
        came in for :data:`STALE_INPUT_MS` (the process was held off the
        CPU, and this thread runs first).  The ACKs waiting there would make
        the flush resend what they acknowledge, a whole window at once.  The
        timeouts are then left to the input path (:meth:`_drain_batches`)
        or to this timer a millisecond later; for :data:`RTO_HOLD_MINRTOS`
        minimum RTOs in a row at most, so a lost segment is resent late by no
        more than that.
        """
        start = self._rto_held_from
        transport = self.transport
        if (
            not kcp.rto_due(now)
            or (start >= 0 and now - start >= RTO_HOLD_MINRTOS * kcp.rx_minrto)
            or not (transport.handling or self._behind or now - self._input_ms >= STALE_INPUT_MS)
            or not transport.readable()
        ):
            self._rto_held_from = -1
            return False
        if start < 0:
            self._rto_held_from = now
        return True

    def _keepalive_due(self) -> int:
        """When the keep-alive looks next (lock held; keep-alive on).

        A probe after ``keepalive_interval`` of silence (re-sent every third
        of it while unanswered), the verdict at ``keepalive_timeout``; on a
        coarse grid (keep-alive needs no precision), so one updater wake-up
        serves every session due in that slot.
        """
        last_rx = self._last_rx
        interval = self.keepalive_interval_ms
        due = min(last_rx + self.keepalive_timeout_ms, max(self._next_probe, last_rx + interval))
        grid = self._keepalive_grid()
        return -(-due // grid) * grid

    def _keepalive_grid(self) -> int:
        """The grid (ms) keep-alive deadlines are rounded up to (:data:`KEEPALIVE_GRID_MS`)."""
        return min(KEEPALIVE_GRID_MS, self.keepalive_interval_ms >> 3) or 1

    def _watch_moved(self, kcp: KCP, now: int) -> None:
        """Data moved while the close watch runs and nothing else is due (lock held).

        While a reader waits for a steady stream, every look of the watch
        finds that data moved and sets the next look one answer time after
        the last datagram: one timer run per answer time per session for
        nothing (100 streaming sessions: about 2,500 a second).  When no run
        of probes goes on, this makes that look here instead, as
        :meth:`_watch` would (new mark, half the gap, a new window), and
        moves the timer to the next look if it would run within half an
        answer time (:meth:`kcpsock.updater.Updater.postpone`: about two
        heap entries per answer time instead of a timer run).  Otherwise
        the next look is armed as before.
        """
        u = max(kcp.rx_rto, self._answer_ms)
        if (
            self._w_due > 0
            and not self._w_first
            and self.state is _OPEN
            and self.failure is None
            and not self._icmp
            and self._reader_waits(kcp)
        ):
            gap = self._w_gap >> 1
            at = self._last_rx + max(gap, u)
            if self.keepalive_timeout_ms:
                end = now + max(GONE_WINDOW_MS, GONE_ANSWER_TIMES * u)
            else:
                end = now + GONE_GAP_MAX_MS + u
            if at < end:
                self._w_mark = (kcp.rcv_nxt, kcp.snd_una)
                self._w_gap = gap
                self._w_start = now
                self._w_due = at
                current = self.updater_deadline
                if current is None or current > at:
                    self._arm_at(at)
                elif current - now < (u >> 1):
                    updater.postpone(self, at)
                return
        self._arm_at(now + max(self._w_gap >> 1, u))

    def _postpone_idle(self, kcp: KCP) -> None:
        """After input that only proved the peer alive: move the timer to the keep-alive's.

        Lock held, called when a flush has nothing to do (no ACK pending,
        nothing in flight or queued, no probe flag): the input was a
        keep-alive probe or its answer.  The timer already set (the re-probe
        a third of ``keepalive_interval`` after our probe, the close watch's
        look one answer time after it, or our own keep-alive deadline from
        before the peer's probe came) would run :meth:`on_timer` only to find
        nothing to do: it is moved to the next keep-alive deadline instead, so
        an idle session costs one updater run per keep-alive exchange, on the
        side that probes (issue 9).  Only when :meth:`on_timer` would decide
        exactly that: the session is open and healthy, keep-alive is on, and
        the close watch has no run of probes going on (none, or its last
        probe was answered: within the watch's window the timer moves to the
        watch's next probe instead, as :meth:`_watch` would set it).
        """
        if (
            not self.keepalive_timeout_ms
            or self.state is not _OPEN
            or self.failure is not None
            or self._icmp
        ):
            return
        if self._w_due:
            if (kcp.rcv_nxt, kcp.snd_una) != self._w_mark:
                return  # data moved: a new window of the watch (on_timer starts it)
            if self._w_due > 0:
                # the watch waits to probe, or a run of its probes goes on:
                # over once the run is answered and the window has passed
                # (as _watch would find)
                u = max(kcp.rx_rto, self._answer_ms)
                if not self._watch_answered(u):
                    return
                at = self._last_rx + max(self._w_gap, u)
                if at < self._w_start + max(GONE_WINDOW_MS, GONE_ANSWER_TIMES * u):
                    # still within the window: the watch's next probe
                    self._w_due = at
                else:
                    self._w_due = -1  # the window is over: keep-alive only
        elif self.gone_timeout_ms and self._reader_waits(kcp):
            return  # a reader began waiting: on_timer starts the watch
        due = self._keepalive_due()
        if self._w_due > 0 and self._w_due < due:
            due = self._w_due
        current = self.updater_deadline
        if current is not None and current < due:  # (the updater checks again)
            updater.postpone(self, due)

    def _watch_answered(self, u: int) -> bool:
        """Book the answer to the watch's run of probes, if it came (lock held).

        Learns the answer time (a decaying maximum: a peer that flushes
        every 100 ms, kcp-go's default, answers up to 100 ms late, and a run
        that lost its first probes or answers raises it too, which only makes
        the verdict slower and safer on a lossy path), doubles the gap before
        the next probe and ends the run.

        Args:
            u: the answer time ``max(RTO, slowest probe answer seen)``.

        Returns:
            True if no run is going on now (none, or it was answered).
        """
        first = self._w_first
        if not first:
            return True
        last_rx = self._last_rx
        if last_rx < first:
            return False
        answer = last_rx - first
        self._answer_ms = max(answer, self._answer_ms - (self._answer_ms >> 3))
        self._w_gap = min(max(2 * self._w_gap, 2 * u), GONE_GAP_MAX_MS)
        self._w_first = self._w_count = 0
        return True

    def _reader_waits(self, kcp: KCP) -> bool:
        """True while a reader waits for data (lock held).

        A thread blocked in :meth:`recv`, or a readiness fd handed out
        (select, selectors, asyncio) that is not readable.
        """
        if self._rwait or self._rhold:
            return True
        return (
            self._signal is not None
            and not self._rd_shut
            and not self._pending
            and kcp.peek_size() <= 0
        )

    def _watch(self, now: int, kcp: KCP, ka_probe: bool = False) -> Optional[int]:
        """Probe the silent peer of a waiting reader; decide it is gone (lock held).

        KCP has no FIN: a peer that closed (its background close finished)
        or vanished just goes silent, and a reader waiting for "the end"
        would wait for ``keepalive_timeout``.  So while a reader waits, the
        peer is probed with KCP window probes (WASK; kcp-go, ikcp and
        kcpsock answer with WINS at their next flush, whatever their
        application does): the first one after one *answer time*
        ``u = max(RTO, slowest probe answer seen)`` of silence, then, while
        the peer answers, at doubling gaps up to :data:`GONE_GAP_MAX_MS`
        (data moving halves the gap).  A probe unanswered
        for ``u`` starts a run of probes every ``u / 2`` (at least 10 ms);
        any datagram from the peer ends the run.  When at least
        :data:`GONE_PROBES` probes over at least ``max(gone_timeout,
        GONE_ANSWER_TIMES * u)`` went unanswered, the peer is gone
        (``failure = "gone"``): the reader gets b"", as after a keep-alive
        timeout.  A timer that ran late (this process stalled: answers may
        sit unread) restarts the run instead of deciding, and a UDP socket
        with datagrams waiting unread (a starved receiver) puts the verdict
        off to the next look.  (An answer that
        acknowledges nothing after the peer acknowledged data before,
        ``KCP.stale_wins``, ends the conversation in :meth:`on_timer`: the
        peer forgot it.)

        The watch exists for a peer that closes soon after its last data, so
        it starts new probes only within a window of ``max(``
        :data:`GONE_WINDOW_MS` ``, GONE_ANSWER_TIMES * u)`` after data last
        moved (either way) or the reader began waiting.  After it, a silent
        peer that answered is left to the keep-alive probes (one per
        ``keepalive_interval`` of silence, as for any idle session): a
        keep-alive probe sent while a reader waits (``ka_probe``) becomes
        the first probe of a run (looked at on the keep-alive grid, at least
        ``u`` after it; its answer postpones the look, :meth:`_postpone_idle`),
        so a peer that closes later still reads as
        EOF about ``keepalive_interval`` plus the run's length after it went
        silent, and 1,000 idle waiting readers cost no more probes than
        1,000 idle sessions.  With keep-alive off the window never ends.

        Returns:
            When to look again (ms), or None once the peer is gone or while
            the window is over and no run is going on (the keep-alive timer
            of :meth:`on_timer` looks again).
        """
        u = max(kcp.rx_rto, self._answer_ms)
        mark = (kcp.rcv_nxt, kcp.snd_una)
        if self._w_due == 0:
            self._w_start = now  # a reader began waiting: a new window
        if mark != self._w_mark:
            # data moved: watch the next silence more closely (half the gap:
            # after a burst the gap falls back to one answer time, while a
            # slow steady stream is probed about once between its datagrams)
            self._w_mark = mark
            self._w_gap >>= 1
            self._w_start = now
        self._watch_answered(u)  # answered: any datagram counts
        first = self._w_first
        last_rx = self._last_rx
        due = self._w_due
        if first and due and now - due > max(u, 100):
            first = self._w_first = self._w_count = 0  # late: no verdict on stale evidence
        if not first:
            at = last_rx + max(self._w_gap, u)
            if self.keepalive_timeout_ms:
                end = self._w_start + max(GONE_WINDOW_MS, GONE_ANSWER_TIMES * u)
            else:
                end = now + GONE_GAP_MAX_MS + u  # no keep-alive: the watch goes on
            # (a keep-alive probe, already set, opens a run whenever it is
            # sent: if it goes unanswered, probes follow every u / 2)
            if not ka_probe:
                if (at if now < at else now) >= end:
                    self._w_due = -1  # the window is over: keep-alive only
                    return None
                if now < at:
                    self._w_due = at
                    return at
            kcp.probe |= IKCP_ASK_SEND  # the peer answers WINS
            self._stale_mark = kcp.stale_wins
            self._w_first = self._w_last = now
            self._w_count = 1
            due = now + u
            if ka_probe:
                # the look whether the keep-alive probe was answered (it
                # normally was, and the answer postpones it: _postpone_idle)
                # on the keep-alive's grid too: the updater wakes there anyway
                grid = self._keepalive_grid()
                due = -(-due // grid) * grid
            self._w_due = due
            return due
        if now - first < u:
            self._w_due = first + u  # the first probe may still be answered
            return self._w_due
        spacing = max(u >> 1, 10)
        if (
            self._w_count >= GONE_PROBES
            and now - first >= max(self.gone_timeout_ms, GONE_ANSWER_TIMES * u)
            and not self.transport.readable()
        ):
            self.failure = "gone"
            self._w_due = 0
            _log.debug(
                "conv %08x: %d probes unanswered in %d ms, peer gone",
                self.conv,
                self._w_count,
                now - first,
            )
            return None
        if now - self._w_last >= spacing:
            kcp.probe |= IKCP_ASK_SEND
            self._stale_mark = kcp.stale_wins
            self._w_last = now
            self._w_count += 1
        self._w_due = self._w_last + spacing
        return self._w_due

    def run_timer(self, now: int) -> bool:
        """Run :meth:`on_timer` taken off the updater, without waiting (receiver thread).

        Only an OPEN session whose lock is free: a closing one's timer may
        finish the close, which takes the listener's lock (lock order).

        Args:
            now: the current time (:func:`kcpsock.updater.now_ms`).

        Returns:
            True if it ran (and was re-armed); False if the caller must hand
            it back to the updater (:meth:`kcpsock.updater.Updater.schedule`).
        """
        lock = self._lock
        if not lock.acquire(False):
            return False
        try:
            if self.state is not _OPEN:
                return False
            nxt = self.on_timer(now)
        finally:
            lock.release()  # drains and transmits
        if nxt is not None:
            updater.rearm(self, nxt)
        return True

    def on_refused(self) -> None:
        """Receiver callback: ICMP port unreachable on the connected socket.

        Never blocks (receiver thread): the flag is read by :meth:`on_timer`,
        which runs at once.  The session then fails with
        ``ConnectionRefusedError`` if the peer never answered, or counts the
        peer as gone otherwise.
        """
        self._icmp = True
        if self._opened and not self._finished:
            updater.schedule(self, now_ms())

    # ------------------------------------------------------------ user calls

    def _check_usable(self) -> None:
        state = self.state
        if state is _CLOSED or state is _CLOSING:
            raise KCPClosedError()

    def _failure_error(self) -> OSError:
        """The error a send on a failed session raises (lock held)."""
        if self.failure == "refused":
            return KCPConnectionRefusedError(
                f"Connection refused: nothing listens on UDP {_fmt(self.remote)}"
                " (ICMP port unreachable)"
            )
        if self.failure == "timeout":
            return KCPConnectionResetError(
                f"the peer {_fmt(self.remote)} stopped answering"
                f" (nothing for {self.keepalive_timeout_ms / 1000:g} s)"
            )
        if self.failure == "gone":
            return KCPConnectionResetError(
                f"the peer {_fmt(self.remote)} closed or vanished (a reader's probes went"
                f" unanswered for {max(self.gone_timeout_ms / 1000, 0.001):g} s or more;"
                " gone_timeout=0 turns this off)"
            )
        return KCPConnectionResetError()

    def recv(self, bufsize: int, deadline: Optional[float], peek: bool = False) -> bytes:
        """Return up to ``bufsize`` bytes, blocking until data, EOF or deadline.

        A stream-mode read takes only the received segments that fit
        (:meth:`KCP.recv_stream <kcpsock.kcp.KCP.recv_stream>`): the queue is
        not joined whole and then cut; the segment ``bufsize`` cuts is kept
        whole, with an offset, for the next read.

        Args:
            bufsize: the most bytes to return (> 0).
            deadline: ``time.monotonic()`` limit; None blocks forever; 0
                never blocks.
            peek: leave the data to be returned again (MSG_PEEK); at most
                the first waiting message is looked at.

        Returns:
            The data; b"" after ``shutdown(SHUT_RD)``, a concurrent close, or
            once the peer is gone (dead link, keep-alive timeout) and
            everything it sent was read.

        Raises:
            KCPClosedError: the session was closed before the call.
            KCPTimeoutError: the deadline passed.
            KCPBlockingIOError: non-blocking and nothing to read.
            KCPConnectionRefusedError: nothing listens at the peer's address.
        """
        return cast(bytes, self._read(bufsize, deadline, peek, None))

    def _read(self, bufsize: int, deadline: Optional[float], peek: bool, buffer: Any) -> object:
        """:meth:`recv` (``buffer`` None: returns the bytes) and :meth:`recv_into` (returns the count).

        One loop for both: take what is ready (:meth:`_take_bytes` or
        :meth:`_take_into`), else wait for data, EOF or the deadline, or read
        the socket with the lent receive role (the threading rules).
        """
        with self._lock:
            state = self.state
            if state is _CLOSED or state is _CLOSING:
                raise KCPClosedError()
            if self.deferred_rcvwnd:
                self._open_window_locked()
            kcp = self.kcp
            if kcp.acklist:
                # ACKs held for a reply that this reader did not send
                # (see _drain_locked): they leave now
                self._out += kcp.flush_acks(now_ms())
            role = self._role
            held = False  # this thread holds the lent receive role
            try:
                while True:
                    if self._inbox:
                        self._drain_locked()
                    if buffer is None:
                        data = self._take_bytes(kcp, bufsize, peek)
                        if data is not None:
                            result: object = data
                            got = len(data)
                            break
                    else:
                        got = self._take_into(kcp, buffer, bufsize, peek)
                        if got >= 0:
                            result = got
                            break
                    if self._rd_shut or self.state is _CLOSED or self.state is _CLOSING:
                        return b"" if buffer is None else 0  # closed by another thread meanwhile
                    if kcp.is_dead or self.failure is not None:
                        self._notify()
                        if self.failure == "refused":
                            raise self._failure_error()
                        return b"" if buffer is None else 0  # the peer is gone (README)
                    if self.gone_timeout_ms and not self._w_due:
                        # a reader waits: on_timer watches the peer's silence (_watch)
                        self._arm_at(self._last_rx + kcp.rx_rto)
                    if deadline == 0:
                        if role is not None:
                            role.reclaim()  # a poller must not wait for the lease
                        raise KCPBlockingIOError()
                    if role is not None and (held or role.take_role()):
                        # read the socket on this thread (see the threading rules)
                        held = True
                        if self._inbox:
                            # queued by the receiver while this thread held the
                            # lock, before it lent the role: drained in the
                            # release below, it would wake nobody (the holder
                            # skips its own wake-up) while this thread polls
                            continue
                        if deadline is not None and _monotonic() >= deadline:
                            raise Timeout()
                        # what this thread reads for itself and returns at
                        # once keeps its ACKs for the reply (_drain_locked):
                        # a dialed holder's batch is drained at the top of
                        # the loop, so the mark stays until recv returns
                        self._ack_rider = _get_ident()
                        self._serve_role(role, deadline)
                        continue
                    self._rwait += 1
                    self._rwant = bufsize  # (WakeGate: a stream reader's wake-up)
                    if role is not None:
                        role.begin_wait(self._offer_role)
                    try:
                        woken = _wait_until(self._readable, deadline)
                    finally:
                        self._rwait -= 1
                        if role is not None:
                            role.end_wait()
                    if not woken:
                        raise Timeout()
                if peek:
                    return result  # (the data stays: nothing read, no readiness change)
            except BaseException:
                if held:
                    held = False
                    assert role is not None
                    role.leave_role(lazy=False)
                raise
            finally:
                self._ack_rider = 0
                if held:
                    assert role is not None
                    # kept lent when this reader took everything (it blocks
                    # again soon: a ping-pong, a request loop), so the next
                    # recv reads at once (LEND_LEASE); handed back when data
                    # waits (a bulk reader works through it while the
                    # receiver thread keeps the socket drained and the ACKs
                    # flowing) or a readiness fd is in use
                    role.leave_role(
                        lazy=self._signal is None and not self._pending and kcp.peek_size() <= 0
                    )
            if self._signal is not None and not self._pending and kcp.peek_size() <= 0:
                self._signal.clear()
                if self.gone_timeout_ms and not self._w_due:
                    # a select/asyncio reader waits from here: the close watch
                    self._arm_at(self._last_rx + kcp.rx_rto)
            self.bytes_received += got
        return result

    def _keep_peeked(self, kcp: KCP, msg: bytes) -> None:
        """Keep ``msg``, just taken from KCP by a peek, where the next read looks first (lock held)."""
        self._pending = msg
        self._poff = 0
        if kcp.probe:
            self._arm_locked()  # the window reopened (see _keep_cut)

    def _take_bytes(self, kcp: KCP, bufsize: int, peek: bool) -> Optional[bytes]:
        """What :meth:`recv` returns now (lock held): up to ``bufsize`` bytes; None if nothing is ready."""
        pending = self._pending
        if not pending:
            if kcp.stream and not peek:
                data = self._stream_take(kcp, bufsize)
                return data if data else None
            msg = kcp.recv()
            if msg is None:
                return None
            if not peek:
                # a message (stream mode: only a peek gets here)
                return self._cut_taken(kcp, msg, bufsize)
            self._keep_peeked(kcp, msg)
            pending = msg
        off = self._poff
        end = off + bufsize
        data = pending[off:end]
        if peek:
            return data
        if end >= len(pending):
            self._pending = b""
            self._poff = 0
            if kcp.stream and len(data) < bufsize and kcp.rcv_queue:
                # (the tail of a segment a read cut: more follows it)
                data += self._stream_take(kcp, bufsize - len(data))
        else:
            self._poff = end
        return data

    def _cut_taken(self, kcp: KCP, msg: bytes, limit: int) -> bytes:
        """``msg``, just taken from KCP, cut to ``limit`` bytes (lock held; :meth:`_keep_cut`)."""
        n = self._keep_cut(kcp, msg, limit)
        return msg if n == len(msg) else msg[:n]

    def _keep_cut(self, kcp: KCP, msg: bytes, limit: int) -> int:
        """Keep what of ``msg``, just taken from KCP, lies past ``limit``; return the bytes before it.

        The rest is kept whole in ``_pending`` (an offset, no copy) for the
        next read.  If taking it reopened the receive window, the peer is
        told soon (kcp-go's Recv sets IKCP_ASK_TELL; the next flush carries
        it).  Lock held.
        """
        n = len(msg)
        if n > limit:
            self._pending = msg
            self._poff = limit
            n = limit
        if kcp.probe:
            self._arm_locked()
        return n

    def _stream_take(self, kcp: KCP, limit: int) -> bytes:
        """Up to ``limit`` ready stream bytes, joined once (lock held); b"" if none.

        The payload the limit cuts is kept whole in ``_pending`` (an offset,
        no copy); only its first part, at most one segment, is copied.
        """
        if len(kcp.rcv_queue) == 1 and not kcp.rcv_buf:
            # one segment (a request, a reply): no list
            msg = kcp.recv()
            return b"" if msg is None else self._cut_taken(kcp, msg, limit)
        parts: list[bytes] = []
        got, drop = self._stream_parts(kcp, limit, parts)
        if not got:
            return b""
        if drop:
            last = parts[-1]
            parts[-1] = last[: len(last) - drop]
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _stream_parts(self, kcp: KCP, limit: int, parts: list[bytes]) -> tuple[int, int]:
        """Take the ready stream segments that ``limit`` bytes reach into ``parts`` (lock held).

        Returns:
            (the bytes taken, at most ``limit``: 0 if none were ready; how
            many bytes of the last part lie past ``limit``).  That last part
            is kept whole in ``_pending`` with an offset for the next read
            (:meth:`_keep_cut`).
        """
        got = kcp.recv_stream(limit, parts)
        if not got:
            return 0, 0
        drop = 0
        if got > limit:
            last = parts[-1]
            drop = got - limit
            self._pending = last
            self._poff = len(last) - drop
            got = limit
        if kcp.probe:
            self._arm_locked()  # the window reopened (see _keep_cut)
        return got, drop

    def recv_into(
        self,
        buffer: Union[bytearray, memoryview],
        nbytes: int,
        deadline: Optional[float],
        peek: bool = False,
    ) -> int:
        """:meth:`recv` into a writable buffer; return the number of bytes stored.

        The same reads as :meth:`recv` (the same bytes, the same rules:
        partial messages and cut segments kept in ``_pending`` with an
        offset, the window-reopened notice, peek, EOF), but the received
        payloads are copied once, straight into ``buffer``
        (:meth:`_gather_into`): a stream read's segments are not joined
        first, a cut message or segment is not sliced first.

        Args:
            buffer: a writable, flat (one-dimensional, byte-sized items)
                buffer: a bytearray, or a memoryview cast to ``"B"``.
            nbytes: the most bytes to store, ``0 < nbytes <= len(buffer)``
                (the caller checks).
            deadline: as :meth:`recv`.
            peek: as :meth:`recv`.

        Returns:
            The number of bytes stored (0 only at EOF, see :meth:`recv`).

        Raises:
            As :meth:`recv`.
        """
        return cast(int, self._read(nbytes, deadline, peek, buffer))

    def _take_into(self, kcp: KCP, buffer: Any, bufsize: int, peek: bool) -> int:
        """What :meth:`recv_into` stores now (lock held): the count; -1 if nothing is ready.

        As :meth:`_take_bytes`, each byte copied once into ``buffer``.
        """
        pending = self._pending
        if not pending:
            if kcp.stream and not peek:
                n = self._stream_take_into(kcp, buffer, 0, bufsize)
                return n if n else -1
            msg = kcp.recv()
            if msg is None:
                return -1
            if not peek:
                # a message (stream mode: only a peek gets here)
                n = self._keep_cut(kcp, msg, bufsize)
                self._gather_into(buffer, 0, msg, 0, len(msg) - n)
                return n
            self._keep_peeked(kcp, msg)
            pending = msg
        off = self._poff
        end = off + bufsize
        size = len(pending)
        if end < size:
            n = bufsize
            self._gather_into(buffer, 0, pending, off, size - end)
        else:
            n = size - off
            self._gather_into(buffer, 0, pending, off, 0)
        if peek:
            return n
        if end >= size:
            self._pending = b""
            self._poff = 0
            if kcp.stream and n < bufsize and kcp.rcv_queue:
                # (the tail of a segment a read cut: more follows it)
                n += self._stream_take_into(kcp, buffer, n, bufsize - n)
        else:
            self._poff = end
        return n

    def _stream_take_into(self, kcp: KCP, buffer: Any, pos: int, limit: int) -> int:
        """:meth:`_stream_take` copying into ``buffer`` from ``pos`` on (lock held); 0 if none.

        Each byte is copied once, from its segment into ``buffer``; the
        payload the limit cuts is kept whole in ``_pending`` (an offset).
        """
        parts: list[bytes] = []
        got, drop = self._stream_parts(kcp, limit, parts)
        if got:
            self._gather_into(buffer, pos, parts, 0, drop)
        return got

    def _gather_into(
        self, buffer: Any, pos: int, parts: Union[bytes, list[bytes]], skip: int, drop: int
    ) -> None:
        """Copy ``parts`` to ``buffer[pos:]``, from byte ``skip`` on, without the last ``drop``.

        ``parts``: a payload, or a list of them, copied one after the other.
        The C helper (``kcpsock._udpio.gather``) copies each byte once;
        without it, or for a strided view, the parts are joined, cut and
        copied (:func:`copy_into`).
        """
        gather = self._gather
        if gather is not None and gather(buffer, pos, parts, skip, drop):
            return
        if type(parts) is bytes:
            data = parts
        else:
            chunks = cast(list[bytes], parts)
            data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        n = len(data) - skip - drop
        if skip or drop:
            data = data[skip : skip + n]
        if pos:
            _memoryview(buffer)[pos : pos + n] = data
        else:
            copy_into(buffer, data)

    def recv_into_short(self, buffer: bytearray, nbytes: object, deadline: Optional[float]) -> int:
        """``KCPSocket.recv_into``'s common call: :meth:`recv_into` when ``nbytes`` is plain.

        Args:
            buffer: a bytearray.
            nbytes: as ``socket.recv_into``: 0 (the whole buffer) or an int
                in ``1..len(buffer)``; anything else is left to the caller.
            deadline: as :meth:`recv`.

        Returns:
            The number of bytes stored, or -1 (nothing done) when ``nbytes``
            is not as above or the buffer is empty: the caller's checks
            then say what is wrong, or read nothing.

        Raises:
            As :meth:`recv`.
        """
        size = len(buffer)
        if type(nbytes) is not int:
            return -1  # a bool, a float, ...: the caller's TypeError
        if nbytes:
            if not 0 < nbytes <= size:
                return -1  # the caller's ValueError
            size = nbytes
        elif not size:
            return -1  # an empty buffer: the caller's checks, then 0
        return cast(int, self._read(size, deadline, False, buffer))

    def _serve_role(self, role: Receiver, deadline: Optional[float]) -> None:
        """Read one batch from the socket with the receive role (lock held on entry and exit).

        The session lock is released meanwhile (writers, the updater and the
        deliveries of the batch itself take it), as ``Condition.wait`` does.
        """
        lock = self._lock
        own = role is self._receiver  # a dialed session: the handler is ours
        self._rhold += 1
        saved = lock._release_save()
        try:
            if own:
                batch = role.read_batch(deadline)
            else:
                role.serve(deadline)  # a listener's pipeline: no session lock held
        finally:
            lock._acquire_restore(saved)
            self._rhold -= 1
        if own and batch:
            # our own pipeline, under our lock (it takes no other session's
            # lock): its deliveries queue (the lock is ours, re-entrant) and
            # the caller's loop drains them, one lock pass fewer per batch
            role.handle(batch)

    def _offer_role(self) -> bool:
        """The receiver lends its role: wake this session's readers (receiver thread).

        Never blocks; False when the lock is taken or the session should not
        read the socket itself (closing, or a readiness fd in use: a select
        loop must see the datagrams the receiver reads).
        """
        lock = self._lock
        if not lock.acquire(False):
            return False
        try:
            if self.state is not _OPEN or self._signal is not None:
                return False
            if self._rwait:
                self._readable.notify_all()
            return True
        finally:
            lock.release()

    def _wake_readers(self) -> None:
        """Wake every reader: the ones waiting on ``_readable`` and a role holder (lock held)."""
        self._readable.notify_all()
        if self._rhold:
            role = self._role
            if role is not None:
                role.wake_holder()

    def _wait_input(self, cond: _SessionCondition, deadline: Optional[float]) -> bool:
        """``wait_deadline`` for a wait that needs the socket read (lock held).

        Tells the receiver, which takes its role back from an absent reader.
        """
        role = self._role
        if role is None:
            return _wait_until(cond, deadline)
        role.begin_wait()
        try:
            return _wait_until(cond, deadline)
        finally:
            role.end_wait()

    def _arm_locked(self) -> None:
        """Schedule a flush soon (lock held; the updater lock nests inside)."""
        self._arm_at(now_ms())

    def send(self, data: ReadableBuffer, deadline: Optional[float]) -> int:
        """Queue data for sending, blocking while the send buffer is full.

        At most the free send buffer (``send_buffer`` bytes minus what waits
        behind the window; at least one segment's worth) is taken, so a
        large buffer may be accepted in part, as with a stream socket.

        Args:
            data: a bytes-like object.
            deadline: as :meth:`recv`.

        Returns:
            The number of bytes queued (0 only for empty data).

        Raises:
            KCPClosedError: closed before the call (or while blocked).
            BrokenPipeError: after ``shutdown(SHUT_WR)``.
            KCPTimeoutError, KCPBlockingIOError.
            KCPConnectionResetError: the peer is gone (dead link, keep-alive timeout).
            KCPConnectionRefusedError: nothing listens at the peer's address.
        """
        if type(data) is bytes:
            view: Any = data  # sliced below only when cut into segments
            total = len(data)
        else:
            view = byte_view(data)
            total = len(view)
        if total == 0:
            with self._lock:
                self._check_usable()
            return 0
        with self._lock:
            kcp = self.kcp
            while True:
                if self._inbox:
                    self._drain_locked()
                state = self.state
                if state is _CLOSED or state is _CLOSING:
                    raise KCPClosedError()
                if self._wr_shut:
                    raise BrokenPipeError(errno.EPIPE, "Broken pipe (shut down for writing)")
                if kcp.state == 0xFFFFFFFF or self.failure is not None:  # kcp.is_dead
                    self._notify()
                    raise self._failure_error()
                snd_wnd = kcp.snd_wnd
                room = self.send_buffer - self._queued_bytes()
                if room > 0:
                    mss = kcp.mss
                    # at least a segment's worth, so a message is never cut short
                    n = min(total, room if room > mss else mss)
                    # (the clock is read only when a flush or the timer needs
                    # it: a corked write needs neither, see below)
                    now = 0
                    sent: Optional[list[bytes]] = None
                    if n <= mss:  # one segment (a small write, a message)
                        if type(data) is bytes:
                            one = data if n == total else data[:n]  # no copy
                        else:
                            one = view.tobytes() if n == total else view[:n].tobytes()
                        if not self.write_delay and len(kcp.snd_buf) < CORK_INFLIGHT:
                            # the common write (flushed at once, see below): the
                            # segment and its datagram in one step when simple
                            now = now_ms()
                            kcp.hold_rto = self._behind
                            try:
                                sent = kcp.send_flush(one, now)
                            finally:
                                kcp.hold_rto = False
                        if sent is None:
                            kcp.send(one)
                    elif type(data) is bytes:
                        # (a slice of bytes is one copy; no view per segment)
                        pos = 0
                        while pos < n:
                            end = min(pos + mss, n)
                            kcp.send(data[pos:end])
                            pos = end
                    else:
                        pos = 0
                        while pos < n:
                            end = min(pos + mss, n)
                            kcp.send(view[pos:end].tobytes())
                            pos = end
                    current = self.updater_deadline
                    rearm = True
                    if sent is not None:
                        if self._out:
                            self._out += sent
                        else:
                            self._out = sent  # (a new list, ours)
                    elif (not self.write_delay or kcp.waitsnd() >= snd_wnd) and not (
                        len(kcp.snd_buf) >= CORK_INFLIGHT
                    ):
                        # (autocork: with many segments unacknowledged, small
                        # writes merge in the queue and leave with the flush
                        # the returning ACKs trigger, or the next tick)
                        # no RTO resend while the receiver knows more input
                        # waits (it may acknowledge them: _drain_batches)
                        if not now:
                            now = now_ms()
                        kcp.hold_rto = self._behind
                        try:
                            self._out += kcp.flush(now)
                        finally:
                            kcp.hold_rto = False
                    elif kcp.acklist:
                        # corked: ACKs held for this reply leave anyway
                        if not now:
                            now = now_ms()
                        self._out += kcp.flush_acks(now)
                    elif current is not None and len(kcp.snd_buf) >= CORK_INFLIGHT:
                        # corked, the timer armed: only snd_queue grew, which
                        # kcp.check does not read, so the deadline armed for
                        # the segments in flight stays right (the flush of the
                        # next ACK or of that timer sends it): no clock, no check
                        rearm = False
                    if rearm:
                        if not now:
                            now = now_ms()
                        due = kcp.check(now)  # never before now
                        if current is None or current > due:
                            self._arm_at(due)
                    if self._signal is not None:
                        self._signal.set_writable(self._queued_bytes() < self.send_buffer)
                    self.bytes_sent += n
                    break
                if deadline == 0:
                    raise KCPBlockingIOError()
                self._wwait += 1
                try:
                    woken = self._wait_input(self._writable, deadline)
                finally:
                    self._wwait -= 1
                if not woken and self._queued_bytes() >= self.send_buffer:
                    # (room that the input path's hysteresis did not announce
                    # is used rather than reported as a timeout)
                    raise Timeout()
        return n

    def sendall(self, data: ReadableBuffer, deadline: Optional[float]) -> None:
        """:meth:`send` until all of ``data`` is queued (``KCPSocket.sendall``).

        A small bytearray or contiguous memoryview is copied to bytes once
        (:func:`small_bytes`); a larger buffer is sent through a view.

        Args:
            data: a bytes-like object.
            deadline: as :meth:`recv`, for the whole call.

        Raises:
            As :meth:`send`.
        """
        if type(data) is not bytes:
            data = small_bytes(data)
        if type(data) is bytes:
            # the common case: no view, and usually one send takes it all
            total = len(data)
            pos = self.send(data, deadline)
            if pos >= total:
                return
            view = _memoryview(data)
        else:
            view = byte_view(data)
            total = len(view)
            pos = 0
        while pos < total:
            pos += self.send(view[pos:], deadline)

    def set_nodelay(self, nodelay: int, interval: int, resend: int, nc: int) -> None:
        """kcp-go ``SetNoDelay`` on the KCP object (negative: unchanged).

        Raises:
            KCPClosedError: the session is closed.
        """
        with self._lock:
            self._check_usable()
            self.kcp.set_nodelay(nodelay, interval, resend, int(nc))

    def set_window_size(self, sndwnd: int, rcvwnd: int) -> None:
        """kcp-go ``SetWindowSize`` (values <= 0: unchanged); wakes writers.

        Raises:
            KCPClosedError: the session is closed.
        """
        with self._lock:
            self._check_usable()
            self.kcp.wndsize(sndwnd, rcvwnd)
            self._notify()  # a larger window may unblock writers

    def open_receive_window(self, rcvwnd: int) -> None:
        """Grow the receive window to ``rcvwnd`` now and tell the peer soon.

        A listener session starts with a small window
        (``KCPConfig.pending_rcvwnd``) so that a session nobody reads yet
        (waiting for ``accept``, or for a handler thread) buffers little; its
        :attr:`deferred_rcvwnd` opens at the first :meth:`recv`; every
        segment sent afterwards advertises it.  This opens it at once.
        """
        with self._lock:
            if self.state is _CLOSED:
                return
            self.deferred_rcvwnd = rcvwnd
            self._open_window_locked()

    def _open_window_locked(self) -> None:
        """Open the deferred receive window (lock held); see :meth:`open_receive_window`."""
        rcvwnd, self.deferred_rcvwnd = self.deferred_rcvwnd, 0
        kcp = self.kcp
        if kcp.rcv_wnd < rcvwnd:
            # every segment we send carries the window (the ACKs of what
            # arrives next announce it); only a peer stalled on our full
            # queue (it saw a zero window) needs telling now, with a WINS, as
            # kcp-go's Recv does when a full receive queue drains
            stalled = len(kcp.rcv_queue) >= kcp.rcv_wnd
            kcp.wndsize(0, rcvwnd)
            if stalled:
                # sent with the lock's release (an updater run for it would
                # wait its turn: a listener's new sessions all open at once)
                kcp.probe |= IKCP_ASK_TELL
                self._out += kcp.flush_acks(now_ms())

    def set_mtu(self, mtu: int) -> bool:
        """kcp-go ``SetMtu``: UDP payload size; KCP MTU = mtu - codec overhead.

        Args:
            mtu: the largest UDP payload to send.

        Returns:
            False if the codec or KCP refuses the value.

        Raises:
            KCPClosedError: the session is closed.
        """
        codec = self._codec
        try:
            kcp_mtu = codec.kcp_mtu(mtu) if codec is not None else mtu
        except ValueError:
            return False
        with self._lock:
            self._check_usable()
            try:
                self.kcp.setmtu(kcp_mtu)
            except ValueError:
                return False
            return True

    def set_stream(self, enable: bool) -> None:
        """kcp-go ``SetStreamMode``.

        Raises:
            KCPClosedError: the session is closed.
        """
        with self._lock:
            self._check_usable()
            self.kcp.stream = bool(enable)

    def signal_fileno(self) -> int:
        """Return a file descriptor readable while :meth:`recv` would not block."""
        with self._lock:
            self._check_usable()
            if self._signal is None:
                self._signal = Signal()
                self._notify()
                if self._role is not None:
                    self._role.reclaim()  # select sees what the receiver reads
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
            self._out += self.kcp.flush(now_ms())
            self._wake_readers()
            self._writable.notify_all()
            if self._signal is not None and self._rd_shut:
                self._signal.set()

    def close(self, wait: bool = True) -> None:
        """Close; what was sent is still delivered, as with TCP (see ``linger``).

        Args:
            wait: join the threads this close ends (False from a finalizer,
                which may run on a thread holding a kcpsock lock).

        Idempotent.  With :attr:`linger` None (the default) it returns at
        once; if data is still unacknowledged the session turns CLOSING and
        keeps delivering in the background (retransmitting, answering the
        peer's ACKs) until everything is acknowledged, the peer is gone or
        ``close_timeout`` passed, then releases everything.  With
        :attr:`linger` > 0 it first blocks (at most that many seconds) for
        the acknowledgements.  With 0 it is kcp-go's close: one last flush,
        the rest dropped.  A dialed session stops its receiver and closes the
        socket if it created it; a listener session leaves its listener.
        """
        linger = self.linger
        if linger is not None and linger > 0:
            self.drain(_monotonic() + linger)
        with self._lock:
            state = self.state
            if state is _CLOSED or state is _CLOSING:
                return
            if self._inbox:
                self._drain_locked()
            kcp = self.kcp
            now = now_ms()
            try:
                self._out += kcp.flush(now)
            except Exception:  # pragma: no cover - best effort
                pass
            background = (
                linger != 0
                and self.state is _OPEN
                and self._opened
                and kcp.waitsnd() > 0
                and self.close_timeout > 0
            )
            if background:
                self.state = _CLOSING
                self._close_deadline = now + int(self.close_timeout * 1000)
                self._wake_readers()
                self._writable.notify_all()
                signal, self._signal = self._signal, None
                _closing.add(self)
                self._arm_at(now)
        if not background:
            self._finish_close(wait)
        elif signal is not None:
            signal.close()

    def _finish_close(self, wait: bool) -> None:
        """Release everything (once): timers, readiness fd, listener entry, receiver."""
        with self._lock:
            if self._finished:
                return
            self._finished = True
            if self._inbox:
                self._drain_locked()
            self.state = _CLOSED
            self.route.closed = True
            self._wake_readers()
            self._writable.notify_all()
            self._answered.notify_all()
            signal, self._signal = self._signal, None
        updater.cancel(self)
        if signal is not None:
            signal.close()
        if self._opened:
            snmp.unregister(self)
            snmp.session_closed()
        _live_sessions.discard(self)
        if self._on_close is not None:
            self._on_close(self)
        try:
            if self._receiver is not None:
                self._receiver.stop(wait)  # a Ctrl-C may land in its join
                if not wait:
                    # one atomic step at a time: another thread may list its
                    # own meanwhile (a rebuilt list would drop that entry)
                    for t in list(_retiring):
                        if not t.is_alive():
                            try:
                                _retiring.remove(t)
                            except ValueError:  # pruned by that other thread
                                pass
                    _retiring.append(self._receiver.thread)
            elif not self.passive and self.transport.owned:
                self.transport.sock.close()
        finally:
            # only now (the receiver's thread listed in _retiring): a
            # drain_closing that sees _closing empty joins every listed thread
            # (discarded before, a drain could return while this thread was
            # still about to list it: a receiver thread alive after the drain)
            _closing.discard(self)
            release_updater(wait)  # a second close() returns early: release now

    @property
    def finished(self) -> bool:
        """True once the session released everything (after a background close too)."""
        return self._finished

    @property
    def waiting_readers(self) -> int:
        """Threads blocked in :meth:`recv` right now (for tests and diagnostics)."""
        return self._rwait + self._rhold

    def drain(self, deadline: Optional[float]) -> bool:
        """Wait until the peer has acknowledged everything sent so far.

        The one "all delivered" wait of kcpsock: ``close()`` with a linger,
        socketserver's end of a request and the command line use it.  KCP has
        no FIN, so this is how a sender knows its last bytes arrived.

        Args:
            deadline: ``time.monotonic()`` limit; None waits as long as it
                takes; a deadline in the past only checks.

        Returns:
            True when nothing is queued or unacknowledged; False when the
            deadline passed, the link died or the session closed first.
        """
        with self._lock:
            kcp = self.kcp
            while kcp.waitsnd() > 0:
                if self.state is not _OPEN or kcp.is_dead:
                    return False
                self._arm_locked()  # a flush soon: what is queued goes out
                self._wwait += 1
                try:
                    woken = self._wait_input(self._writable, deadline)
                finally:
                    self._wwait -= 1
                if not woken:
                    return kcp.waitsnd() == 0
            return True

    def handshake(self, deadline: Optional[float]) -> None:
        """Probe the peer until it answers (``create_connection``).

        Sends KCP window probes (WASK, a segment every KCP answers with
        WINS: kcp-go, ikcp and kcpsock alike) at growing intervals from 20 ms
        to 1 s until any segment arrives from the peer.

        Args:
            deadline: ``time.monotonic()`` limit; None waits for
                ``keepalive_timeout`` (30 s by default) at most.

        Raises:
            KCPConnectionRefusedError: ICMP says nothing listens there.
            KCPTimeoutError: no answer before the deadline.
            KCPClosedError: closed meanwhile.
        """
        if deadline is None:
            deadline = _monotonic() + (self.keepalive_timeout_ms / 1000 or 30.0)
        gap = 0.02
        with self._lock:
            kcp = self.kcp
            self._handshake = True
            try:
                while not kcp.in_segs:
                    self._check_usable()
                    if self._icmp or self.failure == "refused":
                        self.failure = "refused"
                        self.state = _DEAD
                        raise self._failure_error()
                    now = _monotonic()
                    if now >= deadline:
                        raise Timeout("no answer")
                    kcp.probe |= IKCP_ASK_SEND
                    self._out += kcp.flush_acks(now_ms())
                    self._wait_input(self._answered, min(now + gap, deadline))
                    gap = min(gap * 2, 1.0)
            finally:
                self._handshake = False
            self._last_rx = now_ms()

    def set_send_buffer(self, nbytes: int) -> None:
        """Set the send buffer in bytes (``KCPConfig.send_buffer``); wakes writers.

        Raises:
            KCPClosedError: the session is closed.
        """
        with self._lock:
            self._check_usable()
            self.send_buffer = nbytes
            self._notify()

    # ----------------------------------------------------- dialed sessions

    def start_receiver(self) -> None:
        """Start the receiver thread of a dialed (active) session and count it open."""
        transport = self.transport
        self._inbound = Inbound.for_session(
            self.route, self._codec, None if transport.connected else self.remote
        )
        replay = self.replay
        if replay is not None:
            replay.install(self._inbound)
        self.start()
        reader = Receiver(
            transport,
            self._on_batch,
            f"kcpsock-recv-{self.conv:08x}",
            on_refused=self.on_refused if transport.connected else None,
            solo=_always,
        )
        self._receiver = reader
        self._role = reader if reader.lendable else None
        reader.start()

    def _on_batch(self, batch: Batch) -> None:
        """Receiver callback: the inbound pipeline, then :meth:`deliver`."""
        inbound = self._inbound
        assert inbound is not None
        transport = self.transport
        if inbound.is_plain():
            # plain mode, no filters: no InboundResult (its lists and dicts
            # cost more than the rest of a small batch's pipeline)
            transport.handling = True
            try:
                one, errors = inbound.plain_batch(batch)
                self._pace_window(len(batch))
                if one is not None:
                    reader = self._receiver
                    self.deliver(
                        one, len(batch) >= BATCH or (reader is not None and reader.pending > 0)
                    )
            finally:
                transport.handling = False
            if errors:
                snmp.add("InErrs", errors)
            return
        transport.handling = True
        try:
            result: InboundResult = inbound.process(batch)
            self._pace_window(len(batch))
            reader = self._receiver
            behind = len(batch) >= BATCH or (reader is not None and reader.pending > 0)
            for d in result.deliveries:
                self.deliver(d, behind)
        finally:
            transport.handling = False
        if result.errors:
            snmp.add_many(result.errors)

    def _pace_window(self, batch: int) -> None:
        """Cap the advertised window at what this receiver drains in time (receiver thread).

        Every :data:`DRAIN_INTERVAL` seconds, :class:`kcpsock.inbound.DrainRate`
        turns the segments taken in while datagrams waited into the window
        that drains within half the minimum RTO (a sixth while this
        session also sends: ``DrainRate.BOTH_SHARE``), so a slow receiver does
        not make its peer resend the tail of every window.  In message mode
        too, as a listener's sessions: the cap lowers only the advertised
        window, never below ``DrainRate.floor``, so a long message's fragments
        still all arrive.  ``KCP.wnd_cap`` is a plain int read once per flush:
        set without the lock.
        """
        reader = self._receiver
        if batch >= BATCH or (reader is not None and reader.pending):
            self._drain_backlog = True
        now = _monotonic()
        if now < self._drain_at:
            return
        drain = self._drain
        if drain is None:
            drain = self._drain = DrainRate()
        kcp = self.kcp
        kcp.wnd_cap = drain.window(
            self, now, kcp.rcv_nxt, kcp.rx_minrto, self._drain_backlog, kcp.snd_nxt
        )
        self._drain_backlog = False
        self._drain_at = now + DRAIN_INTERVAL

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
            ``cwnd``, ``mtu``, ``mss``, ``queued_bytes`` (bytes waiting
            behind the window), ``send_buffer``.
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
                "queued_bytes": self._queued_bytes(),
                "send_buffer": self.send_buffer,
            }

    def locked(self, fn: Callable[[KCP], _T]) -> _T:
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


_live_sessions: Final[weakref.WeakSet[Session]] = weakref.WeakSet()
_live_listeners: Final[weakref.WeakSet[ListenerCore]] = weakref.WeakSet()
#: sessions closed by the user and still delivering (strong references: a
#: forgotten socket's data still goes out)
_closing: Final[set[Session]] = set()
#: receiver threads told to stop without a join (finished from a timer)
_retiring: Final[list[threading.Thread]] = []


def _always() -> bool:
    """A dialed session's socket serves it alone (the receiver may lend its role)."""
    return True


def _fmt(address: Address) -> str:
    """``host:port`` (``[v6]:port``) for messages."""
    try:
        host, port = address[0], address[1]
    except (TypeError, IndexError):
        return str(address)
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


#: drain_closing stops waiting for sessions whose peer was silent this long
_DRAIN_SILENCE_MS: Final = 1000


def drain_closing(timeout: float, *, abort: bool = False) -> bool:
    """Wait (at most ``timeout`` seconds) until no session delivers in the background.

    Used at interpreter exit, so that data "sent then closed" still goes out;
    sessions whose peer has been silent for a second are not waited for.

    Args:
        timeout: seconds to wait at most.
        abort: then end the sessions still delivering (what they hold is
            dropped, as kcp-go's close does) and release their resources.

    Returns:
        True if none is left (before aborting).
    """
    end = _monotonic() + timeout
    ev = threading.Event()
    while _closing and _monotonic() < end:
        # give up early on peers that have not answered for a while (a wrong
        # key, a dead server): waiting for them would only delay the exit
        now = now_ms()
        if all(now - s._last_rx > _DRAIN_SILENCE_MS for s in list(_closing)):
            break
        ev.wait(0.01)
    left = not _closing
    if abort:
        for s in list(_closing):
            s._finish_close(True)
    # the threads those sessions ended (from a timer, without a join)
    while _retiring:
        thread = _retiring.pop()
        if thread is not threading.current_thread() and thread.ident is not None:
            thread.join(max(0.0, end - _monotonic()))
    release_updater(True)
    return left


def live_sessions() -> list[Session]:
    """Return the dialed and accepted sessions not closed yet (for atexit)."""
    return list(_live_sessions)


def live_listeners() -> list[ListenerCore]:
    """Return the listener engines whose receiver still runs (for atexit)."""
    return list(_live_listeners)


def listener_started(listener: ListenerCore) -> None:
    """Register a running listener engine (keeps the updater alive, closed at exit)."""
    _live_listeners.add(listener)


def listener_stopped(listener: ListenerCore) -> None:
    """Unregister a listener engine whose receiver stopped."""
    _live_listeners.discard(listener)


def release_updater(wait: bool) -> None:
    """End the updater thread once no session or listener is left.

    So that no kcpsock thread outlives ``close()`` (a REPL user checking
    ``threading.enumerate()``); the next session starts it again.
    """
    if not _live_sessions and not _live_listeners:
        updater.release(wait)
