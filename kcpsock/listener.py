"""The listener engine: one UDP socket, one receiver thread, many sessions.

:class:`ListenerCore` is kcp-go's ``Listener`` without the socket API (that
is :class:`kcpsock.Listener`): it runs the inbound pipeline
(:mod:`kcpsock.inbound`) on every batch its receiver reads, turns the routes
the pipeline admits into sessions, delivers each session its datagrams, and
queues new sessions for :meth:`ListenerCore.accept`.

Who runs what::

    receiver thread   recvfrom batch -> Inbound.process (RouteTable lookups
                      take no lock; admission and new routes take the
                      listener lock briefly) -> new Sessions created under
                      the listener lock -> Session.deliver for each session
                      (never blocks on a session lock) -> accept queue;
                      under load (long batches) also the due timers of its
                      OPEN sessions (Session.run_timer, non-blocking), and
                      the windows' share of the socket buffer; when the
                      batch reaches several sessions, what they send
                      meanwhile is gathered and leaves in one sendmmsg at
                      the end of the batch (Transport.begin_gather); while
                      more input waits, the wake-ups of stream readers that
                      asked for more than is ready are deferred to the end
                      of a later batch (session.WakeGate: never blocks on a
                      session lock, the holder wakes them instead)
    user threads      accept (waits on the listener's Condition), close;
                      while the listener serves ONE session, that session's
                      reader blocked in recv may hold the receive role and
                      run this whole pipeline on its thread (see
                      kcpsock.transport and kcpsock.session)
    session close     Session.on_close -> ListenerCore.forget (listener lock)

Lock order (outer first): listener lock -> session lock -> updater -> snmp.
The receiver holds the listener lock only to map a route and create a
session object, never while a session's lock is wanted.

Invariants:

* A listener session is keyed by (address, conv); FEC parity packets (no
  conv) go to the most recent session of their address.  Keys enter the
  blacklist at creation and again at close, for ``KCPConfig.blacklist_ttl``
  seconds.
* New conversations are refused (and counted in :attr:`ListenerCore.refused`)
  by :class:`kcpsock.inbound.Admission`: unless the datagram is a client's
  first (PUSH sn 0 or WASK), when blacklisted, when ``backlog`` sessions
  (or ``backlog_per_address`` from the source IP) already wait for accept,
  or when ``max_sessions`` (or ``max_sessions_per_address`` from the source
  IP) exist; with ``conv_guard`` also when the conv is in use elsewhere.
* A new session advertises ``pending_rcvwnd`` until the application first
  reads it (its full ``rcvwnd`` from then on: a session waiting for accept
  or for a handler thread buffers little); one waiting for accept is closed
  after ``accept_timeout`` seconds
  (checked at each batch and each accept: ``refused["expired"]``).
* One replay/reflection filter (:attr:`ListenerCore.replay`) serves the
  socket: the pipeline checks and remembers received nonces, every session
  remembers what it sends.
* Closing the listener stops accepting and closes the sessions not accepted
  yet; accepted ones keep working, and the socket and receiver are released
  when the last one closes.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import deque
from typing import Final, Optional

from ._mypyc import Weakrefable
from .config import KCPConfig
from .crypt import BlockCrypt
from .errors import KCPBlockingIOError, KCPClosedError
from .inbound import (
    Admission,
    Blacklist,
    DrainRate,
    Inbound,
    RouteTable,
    WindowShare,
    make_codec,
)
from .session import (
    Session,
    Timeout,
    WakeGate,
    listener_started,
    listener_stopped,
    new_replay_filter,
    release_updater,
    wait_deadline,
)
from .stats import snmp
from .transport import Batch, Receiver, Signal, Transport, buffer_datagrams
from .updater import now_ms, updater

__all__ = [
    "LISTENER_BATCH",
    "LISTENER_READAHEAD",
    "LOADED_BATCH",
    "REFUSAL_REASONS",
    "WINDOW_BUDGET",
    "ListenerCore",
]

#: The part of the socket's receive buffer the advertised windows of busy
#: stream-mode sessions may fill together (see :class:`kcpsock.inbound.WindowShare`).
WINDOW_BUDGET: Final = 0.75
#: Datagrams the listener's receiver takes from the kernel per wake-up at
#: most.  Many busy sessions split a batch into many small deliveries (each
#: one takes a session lock and may wake a reader); a larger batch under
#: load gives each session more datagrams per delivery.  A batch only ever
#: holds what was queued already, so a lightly loaded listener is unaffected.
LISTENER_BATCH: Final = 512
#: A batch this long means datagrams queue up in front of the receiver: the
#: windows of busy sessions are capped at their share of the socket buffer
#: (see :class:`kcpsock.inbound.WindowShare`).
LOADED_BATCH: Final = 64
#: Datagrams the listener's receiver reads ahead of its handler at most
#: (about 11 MB of 1400-byte datagrams): a burst from many sessions at once
#: (their first flights, or retransmissions after a loss) is taken out of the
#: kernel's buffer, which would drop it, while earlier batches are handled.
LISTENER_READAHEAD: Final = 8192

#: Keys of :attr:`ListenerCore.refused`: why new conversations were dropped.
REFUSAL_REASONS: Final = (
    "unsolicited",
    "blacklist",
    "conv_in_use",
    "backlog",
    "backlog_per_address",
    "per_address",
    "max_sessions",
    "expired",
)


class ListenerCore(Weakrefable):
    """The listener engine: one socket, one receiver thread, many sessions.

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
        block: Optional[BlockCrypt] = None,
        data_shards: int = 0,
        parity_shards: int = 0,
    ) -> None:
        self.config = config
        self._block = block
        self._shards = (data_shards, parity_shards)
        if owned:
            sock.settimeout(None)
        self.transport = Transport(sock, owned=owned, connected=False)
        self.sock = sock
        self._lock = threading.RLock()
        self._accept_cond = threading.Condition(self._lock)
        self._queue: deque[Session] = deque()
        self._closed = False  # no more accept
        self._stopped = False  # receiver stopped, socket released
        self._signal: Optional[Signal] = None
        #: New conversations refused, by reason (see :class:`kcpsock.inbound.Admission`;
        #: "expired": closed after waiting ``accept_timeout`` for accept).
        self.refused = dict.fromkeys(REFUSAL_REASONS, 0)
        self.blacklist = Blacklist(float(config.blacklist_ttl))
        self.admission = Admission(
            backlog=config.backlog,
            max_sessions=config.max_sessions,
            blacklist=self.blacklist,
            backlog_per_address=config.backlog_per_address,
            max_per_address=config.max_sessions_per_address,
            conv_guard=config.conv_guard,
        )
        self._enqueued: dict[Session, float] = {}  # accept queue entry times
        self.table = RouteTable(
            self.admission,
            lambda: make_codec(block, data_shards, parity_shards),
            lock=self._lock,
        )
        # the listener-wide codec only opens packets (stateless)
        opener = make_codec(block, data_shards, parity_shards)
        self.inbound = Inbound.for_listener(self.table, opener)
        #: the replay/reflection filter shared by the listener's sessions (or None)
        self.replay = new_replay_filter(opener, config)
        if self.replay is not None:
            self.replay.install(self.inbound)
        #: the receive-buffer share of busy sessions' advertised windows
        self.window_share = WindowShare()
        #: the windows busy sessions drain within half their minimum RTO
        self.drain = DrainRate()
        # datagrams waited for the receiver since the last _share_windows
        self._backlog = False
        #: the deferral of the sessions' reader wake-ups while the receiver is behind
        self.wake_gate = WakeGate()
        self._behind = False  # the current batch's: datagrams wait in the read-ahead
        self._receiver = Receiver(
            self.transport,
            self._on_batch,
            "kcpsock-listener",
            batch=LISTENER_BATCH,
            readahead=LISTENER_READAHEAD,
            solo=self._solo,
        )
        listener_started(self)
        self._receiver.start()

    @property
    def backlog(self) -> int:
        """Sessions waiting for accept at most."""
        return self.admission.backlog

    @property
    def max_sessions(self) -> int:
        """Live sessions at most."""
        return self.admission.max_sessions

    @property
    def blacklist_ttl(self) -> float:
        """Seconds a closed (address, conv) stays refused."""
        return self.blacklist.ttl

    def _solo(self) -> bool:
        """True while the socket serves one session: its reader may hold the receive role."""
        return len(self.table) == 1 and not self._queue

    # ------------------------------------------------------------- routing

    def _on_batch(self, batch: Batch) -> None:
        """Receiver callback: the pipeline, new sessions, deliveries.

        When a batch brings datagrams for several sessions, what they send
        meanwhile (their ACKs, mostly) is gathered and leaves in one
        ``sendmmsg`` at the end (:class:`kcpsock.transport.SendGather`): one
        system call per batch instead of one per session.  A batch for one
        session sends as it goes (its reader's output never waits for the
        rest of the batch behind a gathered transmit lock).
        """
        transport = self.transport
        transport.handling = True  # (the sessions' timers: Session._input_first)
        self._behind = False  # (set by _handle_batch; a failed batch wakes the deferred)
        try:
            self._handle_batch(batch)
        finally:
            try:
                transport.end_gather()
            finally:
                transport.handling = False
                # the readers whose wake-up the batch deferred: woken now
                # unless the next batch follows at once (WakeGate)
                self.wake_gate.end(self._behind, now_ms())

    def _handle_batch(self, batch: Batch) -> None:
        """The body of :meth:`_on_batch` (it may begin the gather that one ends)."""
        now = time.monotonic()
        if self._queue and self.config.accept_timeout > 0:
            self._expire(now)
        result = self.inbound.process(batch, now, len(self._queue))
        if len(result.deliveries) > 1:
            self.transport.begin_gather()  # ended by _on_batch
        new: list[Session] = []
        if result.created:
            with self._lock:
                for route in result.created:
                    key = route.key
                    assert key is not None
                    if self._closed:
                        self.table.remove(route, None)
                        continue
                    s = Session(
                        key[1],
                        key[0],
                        self.transport,
                        self.config,
                        route.codec,
                        route=route,
                        on_close=self.forget,
                        replay=self.replay,
                        role=self._receiver,
                    )
                    # little buffering until the application reads it (the
                    # full window opens at the first recv)
                    if self.config.pending_rcvwnd < self.config.rcvwnd:
                        s.kcp.wndsize(0, self.config.pending_rcvwnd)
                        s.deferred_rcvwnd = self.config.rcvwnd
                    s.wake_gate = self.wake_gate
                    s.start(flushed=True)  # (no updater wake-up per new session)
                    new.append(s)
        share = self.window_share
        share.note(result.deliveries, now)
        if len(batch) >= LOADED_BATCH:
            share.loaded(now)
            self._backlog = True
        elif self._receiver.pending:
            self._backlog = True
        if new or now >= share.next_at:
            self._share_windows(now)
        # more input waits: the sessions' RTO resends wait for it (Session.deliver)
        waiting = self._receiver.pending > 0
        behind = waiting or len(batch) >= LISTENER_BATCH
        # readers that asked for more than their input brings are woken at
        # the end of the batch, or of a later one (WakeGate); only while
        # datagrams wait in the read-ahead: after a full batch that took
        # everything, the receiver may next block in the socket
        self._behind = waiting
        if waiting:
            self.wake_gate.begin(now_ms())
        for d in result.deliveries:
            target = d.route.target
            if target is not None:
                target.deliver(d, behind)
        if new:
            with self._lock:
                for s in new:
                    if self._closed:
                        break
                    self._queue.append(s)
                    self._enqueued[s] = now
                self._accept_cond.notify_all()
                if self._signal is not None and self._queue:
                    self._signal.set()
            if self._closed:
                for s in new:
                    if s not in self._queue:
                        s.close(wait=False)
        if result.refused:
            with self._lock:
                for reason, n in result.refused.items():
                    self.refused[reason] = self.refused.get(reason, 0) + n
        if result.errors:
            snmp.add_many(result.errors)
        if len(batch) >= LOADED_BATCH:
            self._run_timers()

    def _run_timers(self) -> None:
        """Run the due timers of this listener's sessions here, between batches.

        Only under load (the receiver is awake and busy anyway): the
        updater thread's wake-up and its GIL hand-off at every send would
        delay each busy session's ACKs.  A session whose lock is taken, or
        that is closing, is handed back to the updater thread.
        """
        transport = self.transport
        now = now_ms()
        taken = updater.take_due(now, lambda t: getattr(t, "transport", None) is transport)
        for target in taken:
            if not (isinstance(target, Session) and target.run_timer(now)):
                updater.schedule(target, now)

    def _share_windows(self, now: float) -> None:
        """Cap the advertised window of every busy session at its share.

        The share of the socket's buffer holds only while the receiver is
        overloaded; otherwise it is lifted (:class:`kcpsock.inbound.WindowShare`).
        The share of the receiver's time always holds: a window the receiver
        works through within half the session's minimum RTO, a third of that
        while the session also sends (an echo: its peer's ACKs wait behind its
        data in the peer's own queue; :class:`kcpsock.inbound.DrainRate`), so
        that a slow receiver does not make its peers resend the tail of every
        window.

        Runs on the receiver thread.  ``KCP.wnd_cap`` is a plain int read once
        per flush, so it is set without the session lock (never waited for
        here).  Message-mode sessions are paced too (an echo server of
        kcp-go's mss-sized messages was the worst case of spurious RTOs):
        the cap only lowers the *advertised* window, never what the session
        accepts, and never below ``DrainRate.floor``, so the fragments of a
        long message still all fit in its queue; kcp-go's and kcpsock's
        ``send`` cut writes into single-fragment messages anyway.
        """
        share = self.window_share
        budget = int(buffer_datagrams(self.sock, self.config.mtu) * WINDOW_BUDGET)
        cap = share.update(budget, now)
        drain = self.drain
        backlog, self._backlog = self._backlog, False
        drain.forget(share.busy)
        for route in share.busy:
            s = route.target
            if isinstance(s, Session):
                kcp = s.kcp
                paced = drain.window(route, now, kcp.rcv_nxt, kcp.rx_minrto, backlog, kcp.snd_nxt)
                want = min(cap, paced)
                if kcp.wnd_cap != want:
                    kcp.wnd_cap = want

    def _expire(self, now: float) -> None:
        """Close sessions that waited longer than ``accept_timeout`` (queue is FIFO)."""
        limit = now - self.config.accept_timeout
        expired: list[Session] = []
        with self._lock:
            queue = self._queue
            while queue and self._enqueued.get(queue[0], now) <= limit:
                s = queue.popleft()
                self._enqueued.pop(s, None)
                expired.append(s)
            if expired:
                self.refused["expired"] += len(expired)
                if not queue and self._signal is not None:
                    self._signal.clear()
        for s in expired:
            s.close(wait=False)

    def forget(self, s: Session) -> None:
        """Called when a session of this listener closes: unmap it, refresh the blacklist."""
        # docs/SESSION.md §5: protection from the close
        self.table.remove(s.route, time.monotonic())
        with self._lock:
            stop = self._closed and len(self.table) == 0
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
                if self._queue and self.config.accept_timeout > 0:
                    self._expire(time.monotonic())
                if self._queue:
                    s = self._queue.popleft()
                    self._enqueued.pop(s, None)
                    if not self._queue and self._signal is not None:
                        self._signal.clear()
                    self.table.accepted(s.route)
                    return s
                if deadline == 0:
                    raise KCPBlockingIOError()
                # an absent reader's role is taken back now; a reader holding
                # it reads new conversations too (an accept loop blocked for
                # hours must not stop the echo thread from keeping the role)
                self._receiver.reclaim()
                if not wait_deadline(self._accept_cond, deadline):
                    raise Timeout()

    def signal_fileno(self) -> int:
        """Return a file descriptor readable while :meth:`accept` would not block."""
        with self._lock:
            if self._closed:
                raise KCPClosedError()
            if self._signal is None:
                self._signal = Signal()
                if self._queue:
                    self._signal.set()
            return self._signal.fileno()

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._closed

    def session_count(self) -> int:
        """Return the number of live sessions (accepted or waiting)."""
        return len(self.table)

    def sessions(self) -> list[Session]:
        """Return the live sessions (accepted or waiting), a snapshot."""
        return [t for r in self.table.routes() if isinstance(t := r.target, Session)]

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
            self._enqueued.clear()
            self._accept_cond.notify_all()
            signal, self._signal = self._signal, None
        if signal is not None:
            signal.close()
        for s in pending:
            s.close()
        if len(self.table) == 0:
            self._stop()

    def close_all(self) -> None:
        """Close the listener and every session it created (interpreter exit)."""
        self.close()
        for s in self.sessions():
            s.close()
        self._stop()

    def _stop(self) -> None:
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        self._receiver.stop()
        listener_stopped(self)
        release_updater(True)

    @property
    def stopped(self) -> bool:
        """True once the receiver thread and the socket were released."""
        return self._stopped

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<ListenerCore {state} sessions={len(self.table)}>"
