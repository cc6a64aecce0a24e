"""The UDP side of a session: the socket, the send path, the receiver thread.

Threads and locks:

* :class:`Receiver` is one thread per UDP socket (a dialed session's, or a
  listener's).  It only does I/O and hands each batch of up to
  :data:`BATCH` datagrams (a listener's: more) to its handler (the inbound
  pipeline and the sessions' inbound queues); under a burst it reads ahead
  of the handler, up to a bound, so the kernel buffer keeps room.  It takes no session lock that it could block
  on: handlers use non-blocking acquires only.
* :meth:`Transport.send` may be called by any thread, concurrently, with no
  lock held; ``sendto`` on a UDP socket is thread-safe.
* A listener's handler gathers what its sessions send while it handles a
  batch (:meth:`Transport.begin_gather` / :meth:`Transport.end_gather`,
  :class:`SendGather`): one ``sendmmsg`` to many destinations per batch.
  Only the thread that began the gather adds to it (:attr:`Transport.gather`
  is read by every sender; the others send as usual); a session whose
  output is gathered keeps its transmit lock (taken without waiting) until
  the gather is sent, so its datagrams keep their order on the wire.
* :class:`Signal` never blocks: it may be set and cleared under a session
  or listener lock.
* The receive role (who reads the socket and runs the handler) is the
  receiver thread's, or lent to one user thread blocked in ``recv`` (an
  owned socket only): :meth:`Receiver.take_role` /
  :meth:`Receiver.serve` / :meth:`Receiver.leave_role`.  Exactly one of
  them reads at a time, so handlers never run concurrently.  The thread
  lends the role after a batch when a reader asked for it
  (:meth:`Receiver.begin_wait`) and the socket serves one session
  (``solo``), parks, and takes the role back once it has been left
  unattended for :data:`LEND_LEASE` seconds, or at once when another
  thread starts waiting for input (:meth:`Receiver.begin_wait`) or the
  holder leaves while others wait.  A round trip then costs one wake-up
  per side (the reader's own ``poll``) instead of a receiver wake-up, a
  Condition hand-off and the GIL ping-pong between them.  The park lock
  (``_park``) is the innermost lock: taken under a session or listener
  lock, never the other way round; the receiver calls a reader's nudge
  (``asker``) with no lock held.

Invariants:

* a socket passed in by the caller (``owned=False``) is never closed, shut
  down or switched between blocking modes;
* a receiver never dies of an exception in its handler or of a socket error
  while its socket is open: the error is logged (and counted as ``InErrs``
  for recvfrom failures) and the loop goes on;
* send errors are ignored, as kcp-go does: KCP retransmits;
* on Linux the datagrams of one :meth:`Transport.send` go out in one
  ``sendmmsg`` and every read-ahead (``MSG_DONTWAIT``) is one ``recvmmsg``
  (:mod:`kcpsock._mmsg`; ``KCPSOCK_NO_MMSG=1`` or another system: one
  ``sendto``/``recvfrom`` per datagram), with the same errors either way.
  With the C helper ``kcpsock._udpio``, an owned socket's receiver waits in
  one ``recvmmsg`` (``MSG_WAITFORONE``, :data:`WAIT_BATCH`) rather than a
  blocking ``recvfrom`` and a read-ahead, and a single datagram is sent with
  ``MSG_DONTWAIT`` holding the GIL (:meth:`kcpsock._mmsg.BatchSender.send_now`;
  one the kernel cannot take at once is sent the usual, waiting way).
"""

from __future__ import annotations

import logging
import select
import socket
import threading
import time
from collections import deque
from typing import Callable, Final, Optional

from . import _mmsg
from ._mypyc import mypyc_attr
from .config import MTU_LIMIT
from .inbound import Address
from .stats import snmp

__all__ = [
    "BATCH",
    "LEND_BATCH",
    "LEND_LEASE",
    "RECV_SIZE",
    "WAIT_BATCH",
    "Receiver",
    "SendGather",
    "Signal",
    "Transport",
    "buffer_datagrams",
]

_log: Final = logging.getLogger("kcpsock.transport")
_get_ident: Final = threading.get_ident
_monotonic: Final = time.monotonic

# The global counters get a real lock as soon as an I/O layer exists.
snmp.set_lock(threading.RLock())

#: Datagrams taken from the kernel per receiver wake-up.
BATCH: Final = 64
#: Receive buffer: kcp-go's mtuLimit (larger datagrams are truncated, then rejected).
RECV_SIZE: Final = MTU_LIMIT
_DONTWAIT: Final = getattr(socket, "MSG_DONTWAIT", 0)
#: Seconds the receive role may stay lent while no reader holds it (a
#: reader that returned from ``recv`` and comes back soon keeps it, so a
#: ping-pong pays no receiver wake-up); datagrams arriving meanwhile wait
#: in the kernel at most this long.  Far below any RTO (KCP's minimum is 30 ms).
LEND_LEASE = 0.004
#: Datagrams the blocking read of an owned socket takes at most (with the
#: C helper: :func:`kcpsock._mmsg.waiter`): each waiting receiver holds a
#: buffer for this many while it waits; a read that fills them is followed
#: by the usual read-ahead.
WAIT_BATCH: Final = 4
#: The role is lent only after a batch of at most this many datagrams: a
#: request/response exchange, not a bulk transfer (whose reader finds data
#: waiting anyway, while the receiver thread keeps the socket drained).
LEND_BATCH: Final = 8
#: The parked receiver checks on a reader holding the role after
#: :data:`LEND_LEASE`, then at doubling intervals up to this; beyond, it
#: sleeps until the holder leaves (which then wakes it).
_NAP_MAX: Final = 0.25

Batch = list[tuple[bytes, Address]]


def buffer_datagrams(sock: socket.socket, size: int) -> int:
    """Estimate how many datagrams of ``size`` bytes the socket's receive buffer holds.

    Linux charges each queued datagram its buffer's true size against
    ``SO_RCVBUF`` (which reads back doubled): the payload plus headers
    rounded up to a power of two, plus the ``sk_buff`` itself (2304 bytes
    for a 1400-byte datagram on loopback, 832 for a small one).

    Args:
        sock: the UDP socket.
        size: the datagram size (the sessions' MTU).

    Returns:
        The estimate (at least 1); 1024 if the buffer size cannot be read.
    """
    try:
        rcvbuf = int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
    except OSError:
        return 1024
    truesize = 1 << max(size + 384 - 1, 1).bit_length()
    return max(1, rcvbuf // (truesize + 320))


def _recvfrom_loop(
    sock: socket.socket,
) -> Callable[[Batch | deque[tuple[bytes, Address]], int], None]:
    """The read-ahead without recvmmsg: ``recvfrom`` per datagram until ``limit`` or EAGAIN."""
    recvfrom = sock.recvfrom

    def fill(out: Batch | deque[tuple[bytes, Address]], limit: int) -> None:
        append = out.append
        while len(out) < limit:
            append(recvfrom(RECV_SIZE, _DONTWAIT))  # EAGAIN: BlockingIOError

    return fill


class SendGather:
    """What the sessions of one socket send while one thread handles a receiver batch.

    A listener's receiver delivers one batch to many sessions, each of which
    answers (ACKs, mostly) at once: sent one session at a time, that is one
    system call, and one GIL release, per session and batch.  Gathered,
    they leave in one ``sendmmsg`` at the end of the batch
    (:meth:`Transport.end_gather`).

    A session whose output is gathered keeps its transmit lock until the
    gathered datagrams are sent (its ``done`` callback releases it), so
    what other threads produce meanwhile waits in its transmit queue and
    leaves after them: each session's datagrams stay in order on the wire.

    Only the thread that began the gather (:attr:`thread`) adds to it.
    """

    __slots__ = ("done", "held", "owners", "packets", "remotes", "thread")

    def __init__(self, thread: int) -> None:
        #: the thread gathering (``threading.get_ident()``)
        self.thread = thread
        self.packets: list[bytes] = []
        self.remotes: list[Address] = []
        # the index (in ``done``) of the owner of each packet
        self.owners: list[int] = []
        # owner key -> its index in ``done``
        self.held: dict[int, int] = {}
        #: per owner: called with (datagrams sent, bytes sent) after the send
        self.done: list[Callable[[int, int], None]] = []

    def owner(self, key: int) -> int:
        """The index of the owner ``key`` (e.g. ``id(session)``), or -1 if it holds nothing."""
        return self.held.get(key, -1)

    def hold(self, key: int, done: Callable[[int, int], None]) -> int:
        """Register an owner (which took its transmit lock); return its index."""
        index = len(self.done)
        self.done.append(done)
        self.held[key] = index
        return index

    def add(self, index: int, packets: list[bytes], remote: Address) -> None:
        """Queue an owner's datagrams for ``remote``, in order."""
        n = len(packets)
        self.packets += packets
        self.remotes += [remote] * n
        self.owners += [index] * n


@mypyc_attr(allow_interpreted_subclasses=True)
class Transport:
    """A UDP socket as sessions send through it (shared or owned).

    Args:
        sock: the UDP socket.
        owned: True if kcpsock created it (and closes it).
        connected: True if it is connected to the one peer (the kernel
            filters other sources; ``send`` instead of ``sendto``).

    Attributes:
        sock: the UDP socket (public for socket options and addresses).
    """

    __slots__ = ("_batcher", "_gso", "connected", "gather", "handling", "owned", "sock")

    def __init__(self, sock: socket.socket, *, owned: bool, connected: bool) -> None:
        self.sock = sock
        self.owned = owned
        self.connected = connected
        #: True while a batch read from this socket is being handled (set by
        #: the handler: the inbound pipeline, KCP input and the flushes it
        #: causes); the datagrams still in the socket are read after it
        self.handling = False
        # sendmmsg where available (kcpsock._mmsg; KCPSOCK_NO_MMSG turns it off)
        self._batcher = _mmsg.sender(sock, connected)
        # UDP segmentation offload where available: runs of equal datagrams
        # in one sendmsg, the rest through the batcher (KCPSOCK_NO_GSO: off)
        self._gso = _mmsg.gso_sender(sock, connected)
        #: the gather in progress (:meth:`begin_gather`), or None
        self.gather: Optional[SendGather] = None

    def begin_gather(self) -> None:
        """Gather what the calling thread sends for sessions until :meth:`end_gather`.

        The caller runs the receiver's handler (handlers never run
        concurrently) and must call :meth:`end_gather` in a ``finally``.
        """
        self.gather = SendGather(_get_ident())

    def end_gather(self) -> None:
        """Send what was gathered (one ``sendmmsg`` where available), then release its owners.

        Every owner's ``done`` callback runs, also when sending fails (it
        releases a transmit lock); an exception of one is logged.
        """
        g = self.gather
        if g is None:
            return
        self.gather = None
        done = g.done
        if not done:
            return
        sent = [0] * len(done)
        nbytes = [0] * len(done)
        packets = g.packets
        try:
            if packets:
                flags = self._send_each(packets, g.remotes)
                owners = g.owners
                for k in range(len(packets)):
                    if flags[k]:
                        i = owners[k]
                        sent[i] += 1
                        nbytes[i] += len(packets[k])
        finally:
            for i, callback in enumerate(done):
                try:
                    callback(sent[i], nbytes[i])
                except Exception:  # the others' transmit locks are released all the same
                    _log.exception("releasing a gathered send failed")

    def _send_each(self, packets: list[bytes], remotes: list[Address]) -> bytearray:
        """Send ``packets[i]`` to ``remotes[i]``; one flag per datagram (1: sent).

        Runs of equal datagrams to one destination go with segmentation
        offload where available, the rest as :meth:`_send_each_plain` does.
        """
        gso = self._gso
        if gso is not None and len(packets) > 1:
            if gso.enabled:
                return gso.send_each(packets, remotes, self._send_each_plain)
            self._gso = None  # the kernel refused it once: never again
        return self._send_each_plain(packets, remotes)

    def _send_each_plain(self, packets: list[bytes], remotes: list[Address]) -> bytearray:
        """:meth:`_send_each` without segmentation offload (one ``sendmmsg``, or a loop)."""
        batcher = self._batcher
        if batcher is not None:
            flags = batcher.send_each(packets, remotes)
            if flags is not None:
                return flags
        flags = bytearray(len(packets))
        sock = self.sock
        connected = self.connected
        try:
            for i, p in enumerate(packets):
                try:
                    if connected:
                        sock.send(p)
                    else:
                        sock.sendto(p, remotes[i])
                except (BlockingIOError, ConnectionRefusedError, InterruptedError):
                    continue  # kcp-go ignores write errors: KCP retransmits
                flags[i] = 1
        except OSError:
            pass  # socket closed under us, or unreachable (kcp-go)
        return flags

    @property
    def family(self) -> int:
        """The socket's address family."""
        return int(self.sock.family)

    def local_address(self) -> Address:
        """Return ``getsockname()`` of the UDP socket."""
        addr: Address = self.sock.getsockname()
        return addr

    def readable(self) -> bool:
        """True if a datagram waits in the socket's receive buffer (never blocks).

        Any thread may ask; the datagram stays for the receive role to read.
        """
        try:
            ready, _, _ = select.select([self.sock], [], [], 0)
        except (OSError, ValueError):  # closed meanwhile
            return False
        return bool(ready)

    def send(self, packets: list[bytes], remote: Address) -> tuple[int, int]:
        """Send wire packets to ``remote`` (ignored on a connected socket).

        Args:
            packets: UDP payloads.
            remote: the destination.

        Returns:
            ``(datagrams sent, bytes sent)``; failures are skipped silently.
        """
        gso = self._gso
        if gso is not None and len(packets) > 1:
            if gso.enabled:
                return gso.send(packets, remote, self._send_plain)
            self._gso = None  # the kernel refused it once: never again
        return self._send_plain(packets, remote)

    def _send_plain(self, packets: list[bytes], remote: Address) -> tuple[int, int]:
        """:meth:`send` without segmentation offload: one ``sendmmsg``, or a loop."""
        batcher = self._batcher
        if batcher is not None:
            if len(packets) != 1:
                done = batcher.send(packets, remote)
            else:
                # one datagram (an ACK, a keep-alive's answer): sent holding
                # the GIL when the kernel takes it at once
                done = batcher.send_now(packets[0], remote)
            if done is not None:
                return done
        sent = nbytes = 0
        sock = self.sock
        try:
            if self.connected:
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
                for p in packets:
                    try:
                        sendto(p, remote)
                    except (BlockingIOError, ConnectionRefusedError, InterruptedError):
                        continue
                    sent += 1
                    nbytes += len(p)
        except OSError:
            pass  # socket closed under us, or unreachable: nothing to report (kcp-go)
        return sent, nbytes


#: what :meth:`Signal.set_writable` pushes to fill the send buffer
_SIGNAL_FILL: Final = bytes(1024)


class Signal:
    """A socketpair end that is readable and writable exactly when told to be.

    Gives a session or listener a ``fileno()`` that ``select``/``selectors``
    /``poll``/asyncio accept, honest in both directions:

    * readable while :meth:`set` holds (a byte waits from the other end);
    * writable while :meth:`set_writable` holds: to make it not writable,
      bytes are pushed into the (tiny) send buffer of our end until it is
      full, and the other end does not read them; draining them at the other
      end makes it writable again (an AF_UNIX stream socket polls writable
      while less than a quarter of its send buffer is in use).

    Both ends are non-blocking; no method ever blocks, so they may run under
    a session lock.  Each state change costs a few microseconds; unchanged
    states cost a flag test.
    """

    __slots__ = ("_is_set", "_r", "_w", "_writable")

    def __init__(self) -> None:
        self._r, self._w = socket.socketpair()
        self._r.setblocking(False)
        self._w.setblocking(False)
        try:  # the smallest send buffer: a few sends fill it
            self._r.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1)
        except OSError:  # pragma: no cover - then filling takes more sends
            pass
        self._is_set = False
        self._writable = True

    def fileno(self) -> int:
        """Return the descriptor to select on."""
        return self._r.fileno()

    def set(self) -> None:
        """Make the descriptor readable."""
        if not self._is_set:
            self._is_set = True
            try:
                self._w.send(b"\x01")
            except OSError:
                pass

    def clear(self) -> None:
        """Make the descriptor not readable."""
        if self._is_set:
            self._is_set = False
            try:
                while self._r.recv(64):
                    pass
            except OSError:
                pass

    def set_writable(self, writable: bool) -> None:
        """Make the descriptor writable (True) or not (False)."""
        if writable == self._writable:
            return
        self._writable = writable
        try:
            if writable:
                while self._w.recv(65536):
                    pass
            else:
                fill = _SIGNAL_FILL
                send = self._r.send
                for _ in range(1024):  # bounded: a few sends fill it
                    send(fill)
        except OSError:  # BlockingIOError: drained, or full
            pass

    def update(self, readable: bool, writable: bool) -> None:
        """Set both directions at once (:meth:`set`/:meth:`clear`, :meth:`set_writable`)."""
        if readable:
            self.set()
        else:
            self.clear()
        self.set_writable(writable)

    def close(self) -> None:
        """Close both ends."""
        self._r.close()
        self._w.close()


class Receiver:
    """The receiver thread of one UDP socket, and the receive role it may lend.

    Owned sockets (blocking mode) are read with a blocking ``recvfrom`` (or
    one waiting ``recvmmsg``: :data:`WAIT_BATCH`) and
    woken for the stop by ``shutdown(SHUT_RD)`` (Linux wakes blocked readers
    even on an unconnected UDP socket).  A caller's socket is never shut
    down, closed or switched between blocking modes: the thread waits in
    ``select`` on it and on a private wake-up socketpair, then drains it with
    ``MSG_DONTWAIT``.

    With ``solo`` (owned sockets only) the thread lends its role to a user
    thread that waits for data (see the module's threading rules): the
    holder ``poll``s the socket and a private wake-up socketpair itself
    (:meth:`serve`), so the datagram that ends its wait is read, run
    through the pipeline and returned on the same thread.

    Args:
        transport: the socket to read.
        handler: called with each batch of ``(packet, address)``; must not
            block on a session lock.
        name: the thread's name.
        on_refused: called (on the thread) when a connected socket reports
            ICMP port unreachable (``ConnectionRefusedError``); must not block.
        batch: datagrams handed to ``handler`` per call at most.
        readahead: datagrams read from the kernel and not handled yet at
            most (at least ``batch``): under a burst the thread reads ahead
            between batches, so the kernel's buffer (which drops what does
            not fit) is emptied every ``batch`` datagrams.
        solo: lend the role only while this returns True (one session on
            the socket: a reader away from ``recv`` leaves no other session
            unserved); None never lends.  Ignored for a caller's socket.
    """

    def __init__(
        self,
        transport: Transport,
        handler: Callable[[Batch], None],
        name: str,
        on_refused: Optional[Callable[[], None]] = None,
        batch: int = BATCH,
        readahead: int = 0,
        solo: Optional[Callable[[], bool]] = None,
    ) -> None:
        self._transport = transport
        self._batch = batch
        self._readahead = max(batch, readahead)
        # read-ahead: recvmmsg where available (kcpsock._mmsg), else recvfrom per datagram
        fill = _mmsg.reader(transport.sock, RECV_SIZE, batch, transport.connected)
        self._batched = fill is not None
        self._fill = fill or _recvfrom_loop(transport.sock)
        # an owned (blocking) socket's wait for the next datagram: one
        # recvmmsg that also takes what queued behind it (the C helper), or None: recvfrom
        self._wait_read: Optional[Callable[[Batch | deque[tuple[bytes, Address]], int], None]] = (
            _mmsg.waiter(transport.sock, RECV_SIZE, WAIT_BATCH, transport.connected)
            if transport.owned
            else None
        )
        self._handler = handler
        self._on_refused = on_refused
        self._stopping = False
        #: datagrams read and still waiting when the current batch was
        #: handed over (read by the handler, on this thread: a sign of load)
        self.pending = 0
        self._wake: Optional[tuple[socket.socket, socket.socket]] = None
        if not transport.owned:
            r, w = socket.socketpair()
            r.setblocking(False)
            w.setblocking(False)
            self._wake = (r, w)
            solo = None  # a caller's socket keeps its blocking mode: no lending
        self._solo = solo
        # --- the receive role (guarded by _park) ---------------------------
        park_lock = threading.Lock()
        self._park = threading.Condition(park_lock)
        # its lock, taken directly by ``with``: Condition.__enter__ and
        # __exit__ are interpreted calls (every blocked reader's begin_wait
        # and end_wait takes it)
        self._park_lock = park_lock
        self._lent = False  # the role is lent: the thread parks
        self._holder = 0  # ident of the thread holding the lent role (0: none)
        self._holds = 0  # how many times the role was taken (the nap sees a change)
        self._left = 0.0  # when the last holder left (monotonic)
        self._waiting = 0  # threads blocked for input outside the role (begin_wait)
        self._asker: Optional[Callable[[], bool]] = None  # nudges a reader that asked
        self._nap: Optional[float] = -1.0  # the parked thread's timeout (None: forever)
        self._serving = False  # the holder is inside serve (stop waits for it)
        self._lwake: Optional[tuple[socket.socket, socket.socket]] = None
        self._poller: Optional[select.poll] = None
        self._fd = transport.sock.fileno()
        # (the holder's wake-up socketpair and poll object are made at the
        # first lend: a thousand dialed sessions that never ping-pong keep
        # one descriptor each)
        #: times the role was lent to a reader, and taken back (figures for tests)
        self.lends = 0
        self.reclaims = 0
        self._worker = threading.Thread(target=self._run, name=name, daemon=True)

    @property
    def thread(self) -> threading.Thread:
        """The receiver's thread."""
        return self._worker

    def start(self) -> None:
        """Start the thread."""
        self._worker.start()

    def is_alive(self) -> bool:
        """True while the thread runs."""
        return self._worker.is_alive()

    def stopping(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._stopping

    @property
    def lendable(self) -> bool:
        """True if the role may be lent to readers (an owned socket, ``solo`` given)."""
        return self._solo is not None

    @property
    def lent(self) -> bool:
        """True while the role is lent to readers (the thread is parked)."""
        return self._lent

    @property
    def holder(self) -> int:
        """The ident of the thread holding the lent role, or 0."""
        return self._holder

    def stop(self, wait: bool = True) -> None:
        """Stop the thread, wait for it (bounded, if ``wait``), release our sockets."""
        self._stopping = True
        transport = self._transport
        with self._park_lock:
            self._park.notify_all()
        self.wake_holder(force=True)
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
            # no is_alive() test: the thread may end between it and the join
            thread = self._worker
            me = threading.current_thread()
            if wait and thread is not me and thread.ident is not None:
                thread.join(2.0)
            if wait and self._holder != me.ident:
                # a reader inside serve() leaves before the socket closes
                end = _monotonic() + 2.0
                with self._park_lock:
                    while self._serving and (left := end - _monotonic()) > 0:
                        self._park.wait(left)
        finally:  # also when Ctrl-C interrupts the join: no descriptor leaks
            with self._park_lock:  # (_lend makes _lwake under the park lock)
                lwake = self._lwake
            for pair in (self._wake, lwake):
                if pair is not None:
                    pair[0].close()
                    pair[1].close()
            if transport.owned:
                transport.sock.close()

    # ------------------------------------------------------ the receive role

    def take_role(self) -> bool:
        """Take the lent role for the calling thread if it is free (never blocks).

        Returns:
            True: the caller holds the role; it reads with :meth:`serve` and
            must call :meth:`leave_role` (in a ``finally``).  False: the
            thread (or another reader) reads; wait as usual.
        """
        if not self._lent:
            return False
        with self._park_lock:
            if self._lent and not self._holder and not self._stopping:
                self._holder = _get_ident()
                self._holds += 1
                return True
        return False

    def leave_role(self, lazy: bool = True) -> None:
        """The holder leaves the role.

        Args:
            lazy: keep it lent (the thread takes it back after
                :data:`LEND_LEASE` unless a reader takes it first); False
                (an error, a readiness fd in use) hands it back at once.
                It is handed back at once anyway when another thread
                waits for input or the socket serves more than one session.
        """
        park = self._park
        with self._park_lock:
            self._holder = 0
            self._left = _monotonic()
            solo = self._solo
            if not lazy or self._waiting or self._stopping or solo is None or not solo():
                self._lent = False
                self.reclaims += 1
                park.notify()
            else:
                nap = self._nap
                if nap is None or nap > LEND_LEASE:
                    park.notify()  # it sleeps long: let it time the lease

    def begin_wait(self, asker: Optional[Callable[[], bool]] = None) -> None:
        """A thread blocks for input without the role (pair with :meth:`end_wait`).

        Takes the role back from an absent holder at once, so that no wait
        depends on a lease; ``asker`` (a reader's nudge: non-blocking, True
        if it woke the reader) is offered the role after the thread's next
        batch.
        """
        if self._solo is None:
            return
        park = self._park
        with self._park_lock:
            self._waiting += 1
            if asker is not None:
                self._asker = asker
            if self._lent and not self._holder:
                self._lent = False
                self.reclaims += 1
                park.notify()

    def end_wait(self) -> None:
        """The wait that :meth:`begin_wait` announced is over."""
        if self._solo is None:
            return
        with self._park_lock:
            self._waiting -= 1

    def reclaim(self) -> None:
        """Take the role back now if it is lent and nobody holds it (never blocks)."""
        if not self._lent:
            return
        park = self._park
        with self._park_lock:
            if self._lent and not self._holder:
                self._lent = False
                self.reclaims += 1
                park.notify()

    def wake_holder(self, force: bool = False) -> None:
        """Make the holder's :meth:`serve` return (from another thread; never blocks).

        Args:
            force: also when no thread holds the role (stop).
        """
        lwake = self._lwake
        holder = self._holder
        if lwake is None or not (force or (holder and holder != _get_ident())):
            return
        try:
            lwake[1].send(b"\x00")
        except OSError:
            pass

    def serve(self, deadline: Optional[float]) -> None:
        """The holder reads one batch and runs the handler on its own thread.

        :meth:`read_batch`, then the handler (its exceptions are logged, as
        on the thread).  No lock may be held.
        """
        batch = self.read_batch(deadline)
        if batch:
            self.handle(batch)

    def handle(self, batch: Batch) -> None:
        """Run the handler on a batch the holder read (exceptions are logged)."""
        try:
            self._handler(batch)
        except Exception:  # as on the thread: one bad batch is logged
            _log.exception("receiver batch failed")

    def read_batch(self, deadline: Optional[float]) -> Optional[Batch]:
        """The holder reads what the socket holds, waiting for the first datagram.

        Waits (``poll``) until a datagram arrives, :meth:`wake_holder` is
        called or ``deadline`` (``time.monotonic()``; None: no limit)
        passes.  Exceptions of the wait (Ctrl-C) propagate.

        Returns:
            The datagrams read (at most ``batch``), or None (woken, timed
            out, stopping, or an error, which is counted and logged).
        """
        poller = self._poller
        lwake = self._lwake
        if poller is None or lwake is None or self._stopping:
            return None
        sock = self._transport.sock
        recvfrom = sock.recvfrom
        size = RECV_SIZE
        flags = _DONTWAIT
        batch: Batch = []
        with self._park_lock:
            # (under the lock stop() waits on: a stop() that came first is
            # seen here, a later one waits for this read before closing)
            if self.stopping():  # (a method: stop() sets it on another thread)
                return None
            self._serving = True
        try:
            if deadline is None:
                ready = poller.poll()
            else:
                ms = (deadline - _monotonic()) * 1000.0
                if ms <= 0:
                    return None
                ready = poller.poll(ms)
            if not ready or self._stopping:
                return None
            fd = self._fd
            if len(ready) > 1 or ready[0][0] != fd:
                try:
                    while lwake[0].recv(64):
                        pass
                except OSError:
                    pass
                # a wake-up: return (the caller looks at the session first)
                return None
            try:
                if self._batched:  # one recvmmsg: what the socket holds (one at least)
                    self._fill(batch, self._batch)
                else:
                    batch.append(recvfrom(size, flags))
                    # more only if the socket holds more: one poll, not a
                    # failing recvfrom (an exception) after every lone datagram
                    if poller.poll(0):
                        most = self._batch
                        while len(batch) < most:
                            batch.append(recvfrom(size, flags))
            except (BlockingIOError, InterruptedError):
                pass
            except ConnectionRefusedError:
                self._refused()
            except (OSError, ValueError):
                if self._stopping or sock.fileno() < 0:
                    return None
                self._read_failed()
        finally:
            self._serving = False
            if self.stopping():  # (a method: stop() sets it on another thread)
                with self._park_lock:
                    self._park.notify_all()
        self.pending = 0
        return batch

    def _refused(self) -> None:
        """ICMP port unreachable on a connected socket (nothing listens there): report it."""
        if self._on_refused is not None:
            try:
                self._on_refused()
            except Exception:  # never let the report kill the reading thread
                _log.exception("refusal handler failed")

    @staticmethod
    def _read_failed() -> None:
        """Count and log a failed read of an open socket (the reading thread goes on)."""
        snmp.add("InErrs")
        _log.debug("recvfrom failed", exc_info=True)

    def _lend(self) -> None:
        """Lend the role to the reader that asked (receiver thread, no lock held)."""
        asker, self._asker = self._asker, None
        solo = self._solo
        if asker is None or solo is None or not solo():
            return
        if self._poller is None:
            try:
                r, w = socket.socketpair()
            except OSError:  # EMFILE (a server at its descriptor limit): no lending
                _log.debug("no wake-up socketpair for the receive role", exc_info=True)
                return
            try:
                r.setblocking(False)
                w.setblocking(False)
                poller = select.poll()
                poller.register(self._fd, select.POLLIN)
                poller.register(r, select.POLLIN)
            except (OSError, ValueError):
                r.close()
                w.close()
                return
            with self._park_lock:
                if self._stopping:  # stop() closes what exists: these are ours
                    r.close()
                    w.close()
                    return
                self._lwake = (r, w)
                self._poller = poller
        with self._park_lock:
            if self._stopping:
                return
            self._lent = True
            self._left = _monotonic()
        if asker():
            self.lends += 1
            return
        with self._park_lock:  # the reader could not be told (its lock was taken): keep reading
            if not self._holder:
                self._lent = False
            else:
                self.lends += 1

    def _park_while_lent(self) -> None:
        """Sleep while the role is lent; take it back when left unattended (receiver thread)."""
        park = self._park
        lease = LEND_LEASE
        nap: Optional[float] = lease
        seen = -1
        with self._park_lock:
            while self._lent and not self._stopping:
                if not self._holder:
                    idle = _monotonic() - self._left
                    if idle >= lease:
                        self._lent = False
                        self.reclaims += 1
                        break
                    nap = lease
                    self._nap = lease
                    park.wait(lease - idle)
                    continue
                if self._holds != seen:
                    seen = self._holds
                    nap = lease
                elif nap is not None:
                    nap = nap * 2 if nap < _NAP_MAX else None
                self._nap = nap
                park.wait(nap)
            self._nap = -1.0

    # ------------------------------------------------------------ the thread

    def _run(self) -> None:
        sock = self._transport.sock
        recvfrom = sock.recvfrom
        handler = self._handler
        wake = self._wake
        size = RECV_SIZE
        flags = _DONTWAIT
        most = self._batch
        limit = self._readahead
        fill = self._fill
        wait_read = self._wait_read
        # datagrams read from the kernel, not handled yet (at most ``limit``)
        backlog: deque[tuple[bytes, Address]] = deque()
        append = backlog.append
        popleft = backlog.popleft
        more = True  # False: the last read showed the kernel empty
        while not self._stopping:
            if self._lent:
                self._park_while_lent()
                continue
            try:
                if wake is not None:
                    if not backlog:
                        ready, _, _ = select.select([sock, wake[0]], [], [])
                        if self.stopping():
                            return
                        if sock not in ready:
                            continue
                    timeout = sock.gettimeout()
                    if timeout:
                        # CPython polls with the socket's timeout before a
                        # recv: ask select first so the drain never waits
                        while len(backlog) < limit and select.select([sock], [], [], 0)[0]:
                            append(recvfrom(size, flags))
                        raise BlockingIOError
                elif not backlog:
                    if wait_read is not None:
                        wait_read(backlog, WAIT_BATCH)
                        if self.stopping():
                            return
                        # fewer than asked for: the kernel had no more when
                        # the read returned, a read-ahead would find it empty
                        more = len(backlog) >= WAIT_BATCH
                    else:
                        item = recvfrom(size)
                        if self.stopping():
                            return
                        append(item)
                # read ahead what the kernel holds, so that its buffer has room
                # for a burst while the batch is handled
                if more:
                    fill(backlog, limit)
                more = True
            except (BlockingIOError, InterruptedError):
                pass
            except ConnectionRefusedError:
                self._refused()
            except (OSError, ValueError):
                if self.stopping() or sock.fileno() < 0:
                    return
                self._read_failed()
                time.sleep(0.01)  # a persistent error must not spin the CPU
            if not backlog:
                continue
            if len(backlog) <= most:
                batch: Batch = list(backlog)
                backlog.clear()
            else:
                batch = [popleft() for _ in range(most)]
            self.pending = len(backlog)
            try:
                handler(batch)
            except Exception:  # never let one bad batch kill the receiver
                _log.exception("receiver batch failed")
            if self._asker is not None and not backlog and len(batch) <= LEND_BATCH:
                # (a long batch is bulk: the reader will find data waiting
                # and the socket is best read by this thread meanwhile)
                try:
                    self._lend()
                except Exception:  # never let a lend kill the receiver: it reads on
                    _log.exception("lending the receive role failed")
                    with self._park_lock:
                        if not self._holder:
                            self._lent = False
