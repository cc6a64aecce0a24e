"""A seeded lossy UDP relay: loss, delay, jitter, duplication and reordering.

The machines this project runs on have no netem and tests run without root, so
tests, ``kcpsock relay`` and ``kcpsock demo`` put this relay between the two
ends of a KCP conversation::

    client  <-->  [listen socket]  Relay  [target socket]  <-->  target

The relay learns its client from the first datagram that reaches the listen
socket and from then on relays both ways: client -> target ("up") and
target -> client ("down").  Datagrams from any other address are counted
(``foreign``) and dropped.

Each datagram's fate is drawn, in arrival order, from a ``random.Random`` per
direction seeded from ``seed``, so a given sequence of datagrams meets the
same losses, duplicates and reorderings on every run (the timing of the
endpoints may still change which datagrams arrive, and in what order).

Invariants:
- one thread (started by :meth:`Relay.start`) does all the work: it waits in
  ``select`` on both sockets and a wake-up pipe, with the deadline of the
  earliest delayed datagram as timeout, so an idle relay costs nothing;
- the delay queue is bounded (``max_queue`` datagrams over both directions);
  datagrams arriving at a full queue are dropped and counted (``overflow``);
- a datagram picked for reordering is held back until the next datagram of
  the same direction arrives, and is then queued right behind it (so it
  really arrives out of order); when no other datagram follows within
  ``hold_ms`` it is sent anyway, in order;
- :meth:`Relay.close` is idempotent, joins the thread and closes the sockets;
  datagrams still queued are discarded.
"""

from __future__ import annotations

import heapq
import random
import select
import socket
import threading
import time
from dataclasses import dataclass, fields
from types import TracebackType
from typing import Callable, Optional

from .inbound import Address

__all__ = ["Relay", "RelayCounters"]

# Direction indices (also the keys of Relay.stats()).
UP = 0
DOWN = 1
_NAMES = ("up", "down")

# Largest UDP payload we accept (IPv4 maximum); kcp-go itself never sends
# more than 1500 bytes (mtuLimit in sess.go).
_MAX_DATAGRAM = 65535
# Datagrams read from one socket per wake-up before serving the other one.
_BATCH = 256


@dataclass
class RelayCounters:
    """Counters of one direction of a :class:`Relay` (cumulative ints).

    Attributes:
        received: datagrams read from the sending side.
        forwarded: datagrams written to the receiving side (duplicates
            included).
        dropped: datagrams discarded on purpose (the ``loss`` draw).
        duplicated: extra copies sent (the ``dup`` draw).
        reordered: datagrams held back and sent after a later one.
        overflow: datagrams dropped because the delay queue was full.
        foreign: datagrams from an address that is neither the client nor
            the target (dropped).
        errors: datagrams the kernel refused to send (for example ICMP port
            unreachable reported on the target socket).
        bytes_forwarded: UDP payload bytes written.
    """

    received: int = 0
    forwarded: int = 0
    dropped: int = 0
    duplicated: int = 0
    reordered: int = 0
    overflow: int = 0
    foreign: int = 0
    errors: int = 0
    bytes_forwarded: int = 0

    def as_dict(self) -> dict[str, int]:
        """Return the counters as a plain dict (name -> value)."""
        return {f.name: int(getattr(self, f.name)) for f in fields(self)}


def _probability(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1, got {value!r}")
    return float(value)


def _non_negative(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    if not float(value) >= 0.0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return float(value)


def _resolve(name: str, address: Address) -> tuple[int, tuple[str, int]]:
    """Resolve a (host, port) pair to (family, sockaddr) for a UDP socket."""
    if not isinstance(address, tuple) or len(address) < 2:
        raise TypeError(f"{name} must be a (host, port) tuple, got {address!r}")
    host, port = address[0], address[1]
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        raise ValueError(f"{name} port must be an int in 0..65535, got {port!r}")
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    if not infos:  # pragma: no cover - getaddrinfo raises instead
        raise ValueError(f"{name}: cannot resolve {host!r}")
    family, _, _, _, sockaddr = infos[0]
    return int(family), (str(sockaddr[0]), int(sockaddr[1]))


class Relay:
    """A lossy UDP relay between one client and a target, driven by one thread.

    Example::

        with Relay(target=server_address, loss=0.1, seed=1) as relay:
            sock = kcpsock.dial(relay.address)
            ...
        print(relay.stats())

    Args:
        listen: where the relay listens for its client (default an ephemeral
            port on 127.0.0.1); :attr:`address` gives the bound address.
        target: the (host, port) the client's datagrams are relayed to.
        loss: probability in [0, 1] that a datagram is dropped.
        delay_ms: fixed one-way delay added to every datagram (ms).
        jitter_ms: each datagram's delay is ``delay_ms`` plus a uniform draw
            in [-jitter_ms, +jitter_ms] (clipped at 0); datagrams may then
            overtake each other, as on a real network.
        dup: probability in [0, 1] that a datagram is sent twice.
        reorder: probability in [0, 1] that a datagram is held back and sent
            after the next datagram of its direction.
        seed: seed of the random draws (per direction).
        max_queue: bound on datagrams waiting in the delay queue.
        hold_ms: longest time a held-back (reordered) datagram waits for a
            later one before it is sent anyway.
        directions: ``"both"`` (default), ``"up"`` or ``"down"``: the
            direction(s) the impairments apply to; the other one is relayed
            untouched.
        on_foreign: called (on the relay thread) the first time each other
            address sends to the relay once it has its client, with
            ``(that address, the client)``: the relay serves one client and
            ignores the others.

    Raises:
        ValueError: a probability outside [0, 1], a negative delay or queue
            bound, or an unknown ``directions``.
        TypeError: an argument of the wrong type.
        OSError: the listen address cannot be bound.
    """

    def __init__(
        self,
        listen: tuple[str, int] = ("127.0.0.1", 0),
        target: Optional[Address] = None,
        *,
        loss: float = 0.0,
        delay_ms: float = 0,
        jitter_ms: float = 0,
        dup: float = 0.0,
        reorder: float = 0.0,
        seed: int = 0,
        max_queue: int = 10000,
        hold_ms: float = 20,
        directions: str = "both",
        on_foreign: Optional[Callable[[tuple[str, int], tuple[str, int]], None]] = None,
    ) -> None:
        if target is None:
            raise TypeError("target is required: the (host, port) to relay to")
        self.loss = _probability("loss", loss)
        self.dup = _probability("dup", dup)
        self.reorder = _probability("reorder", reorder)
        self.delay_ms = _non_negative("delay_ms", delay_ms)
        self.jitter_ms = _non_negative("jitter_ms", jitter_ms)
        self.hold_ms = _non_negative("hold_ms", hold_ms)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, not {type(seed).__name__}")
        self.seed = seed
        if isinstance(max_queue, bool) or not isinstance(max_queue, int):
            raise TypeError(f"max_queue must be an int, not {type(max_queue).__name__}")
        if max_queue < 1:
            raise ValueError(f"max_queue must be >= 1, got {max_queue!r}")
        self.max_queue = max_queue
        if directions not in ("both", "up", "down"):
            raise ValueError(f"directions must be 'both', 'up' or 'down', got {directions!r}")
        self._impaired = (directions in ("both", "up"), directions in ("both", "down"))

        listen_family, listen_addr = _resolve("listen", listen)
        target_family, self.target = _resolve("target", target)
        self._rng = (random.Random(f"{seed}:up"), random.Random(f"{seed}:down"))
        self._counters = (RelayCounters(), RelayCounters())
        self._lock = threading.Lock()  # guards the counters for readers
        self.client: Optional[tuple[str, int]] = None
        #: called once per new foreign source with (foreign address, client)
        self.on_foreign = on_foreign
        self._foreign_seen: set[tuple[str, int]] = set()

        self._listen_sock = socket.socket(listen_family, socket.SOCK_DGRAM)
        self._target_sock = socket.socket(target_family, socket.SOCK_DGRAM)
        self._wake_r, self._wake_w = socket.socketpair()
        try:
            self._listen_sock.bind(listen_addr)
            loopback = "::1" if target_family == socket.AF_INET6 else "127.0.0.1"
            local = loopback if self.target[0] in ("127.0.0.1", "::1") else ""
            self._target_sock.bind((local, 0))
            # Connected: the kernel then only hands us the target's datagrams.
            self._target_sock.connect(self.target)
            for s in (self._listen_sock, self._target_sock):
                s.setblocking(False)
                for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                    try:
                        s.setsockopt(socket.SOL_SOCKET, opt, 4 << 20)
                    except OSError:  # pragma: no cover - a smaller buffer is fine
                        pass
            self._wake_r.setblocking(False)
            self._wake_w.setblocking(False)
        except BaseException:
            self._close_sockets()
            raise
        bound = self._listen_sock.getsockname()
        self.address: tuple[str, int] = (str(bound[0]), int(bound[1]))

        # (due time, sequence, direction, payload); sequence keeps FIFO order
        # among equal due times and makes entries comparable.
        self._queue: list[tuple[float, int, int, bytes]] = []
        self._seq = 0
        # Per direction: a held-back datagram as (time it must go anyway, its
        # own due time, payload).
        self._held: list[Optional[tuple[float, float, bytes]]] = [None, None]
        self._thread: Optional[threading.Thread] = None
        self._stop = threading.Event()
        self._closed = False
        self._state_lock = threading.Lock()  # start/close

    # -- public API --------------------------------------------------------

    def start(self) -> Relay:
        """Start the relay thread (idempotent).

        Returns:
            The relay itself, so ``Relay(...).start()`` can be assigned.

        Raises:
            OSError: (EBADF) the relay was closed.
        """
        with self._state_lock:
            if self._closed:
                raise OSError(9, "relay is closed")
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"kcpsock-relay-{self.address[1]}", daemon=True
                )
                self._thread.start()
        return self

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread, join it and close the sockets (idempotent).

        Args:
            timeout: the longest wait for the thread to end, in seconds.
        """
        with self._state_lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
        self._stop.set()
        self._wake()
        if thread is not None:
            thread.join(timeout)
        self._close_sockets()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has been called."""
        return self._closed

    @property
    def up(self) -> RelayCounters:
        """A snapshot of the client -> target counters."""
        return self._snapshot(UP)

    @property
    def down(self) -> RelayCounters:
        """A snapshot of the target -> client counters."""
        return self._snapshot(DOWN)

    def stats(self) -> dict[str, dict[str, int]]:
        """Return every counter: ``{"up": {...}, "down": {...}}``."""
        return {_NAMES[d]: self._snapshot(d).as_dict() for d in (UP, DOWN)}

    def __enter__(self) -> Relay:
        return self.start()

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("running" if self._thread else "idle")
        return (
            f"<Relay [{state}] {self.address[0]}:{self.address[1]} -> "
            f"{self.target[0]}:{self.target[1]} loss={self.loss} delay_ms={self.delay_ms} "
            f"jitter_ms={self.jitter_ms} dup={self.dup} reorder={self.reorder} seed={self.seed}>"
        )

    # -- internals -----------------------------------------------------------

    def _snapshot(self, direction: int) -> RelayCounters:
        with self._lock:
            return RelayCounters(**self._counters[direction].as_dict())

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass  # buffer full (a wake-up is already pending) or closed

    def _close_sockets(self) -> None:
        for s in (self._listen_sock, self._target_sock, self._wake_r, self._wake_w):
            try:
                s.close()
            except OSError:  # pragma: no cover
                pass

    def _run(self) -> None:
        rlist = [self._listen_sock, self._target_sock, self._wake_r]
        while not self._stop.is_set():
            now = time.monotonic()
            self._release(now)
            due = self._next_due()
            timeout = None if due is None else max(0.0, due - time.monotonic())
            try:
                readable, _, _ = select.select(rlist, [], [], timeout)
            except (OSError, ValueError):
                return  # sockets closed under us: close() is running
            if self._stop.is_set():
                return
            for s in readable:
                if s is self._wake_r:
                    try:
                        self._wake_r.recv(4096)
                    except OSError:
                        pass
                elif s is self._listen_sock:
                    self._drain(self._listen_sock, UP)
                else:
                    self._drain(self._target_sock, DOWN)

    def _next_due(self) -> Optional[float]:
        due = self._queue[0][0] if self._queue else None
        for held in self._held:
            if held is not None and (due is None or held[0] < due):
                due = held[0]
        return due

    def _drain(self, sock: socket.socket, direction: int) -> None:
        for _ in range(_BATCH):
            try:
                data, addr = sock.recvfrom(_MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                # ICMP errors (ECONNREFUSED) surface here on the connected
                # target socket; the datagram that caused them is long gone.
                with self._lock:
                    self._counters[direction].errors += 1
                continue
            self._arrive(data, (str(addr[0]), int(addr[1])), direction, time.monotonic())

    def _arrive(self, data: bytes, addr: tuple[str, int], direction: int, now: float) -> None:
        counters = self._counters[direction]
        if direction == UP:
            if self.client is None:
                self.client = addr
            elif addr != self.client:
                with self._lock:
                    counters.foreign += 1
                if addr not in self._foreign_seen and len(self._foreign_seen) < 1024:
                    self._foreign_seen.add(addr)
                    if self.on_foreign is not None:
                        try:
                            self.on_foreign(addr, self.client)
                        except Exception:  # a report must never stop the relay
                            pass
                return
        with self._lock:
            counters.received += 1
        if not self._impaired[direction]:
            self._enqueue(now, direction, data)
            return
        rng = self._rng[direction]
        # Draw every random number for every datagram, whatever the settings,
        # so the sequence of fates depends only on the seed and arrival order.
        r_loss, r_dup, r_reorder = rng.random(), rng.random(), rng.random()
        r_jitter, r_jitter2 = rng.random(), rng.random()
        if r_loss < self.loss:
            with self._lock:
                counters.dropped += 1
            return
        copies = [r_jitter]
        if r_dup < self.dup:
            copies.append(r_jitter2)
            with self._lock:
                counters.duplicated += 1
        held = self._held[direction]
        for i, r in enumerate(copies):
            delay = self.delay_ms + (2.0 * r - 1.0) * self.jitter_ms
            due = now + max(0.0, delay) / 1000.0
            if i == 0 and held is None and r_reorder < self.reorder:
                self._held[direction] = (due + self.hold_ms / 1000.0, due, data)
                return
            self._enqueue(due, direction, data)
            if i == 0 and held is not None:
                # This datagram overtakes the held one, which leaves right
                # after it (same due time, later sequence number).
                self._held[direction] = None
                self._enqueue(max(due, held[1]), direction, held[2])
                with self._lock:
                    counters.reordered += 1

    def _enqueue(self, due: float, direction: int, data: bytes) -> None:
        if len(self._queue) >= self.max_queue:
            with self._lock:
                self._counters[direction].overflow += 1
            return
        self._seq += 1
        heapq.heappush(self._queue, (due, self._seq, direction, data))

    def _release(self, now: float) -> None:
        queue = self._queue
        while queue and queue[0][0] <= now:
            _, _, direction, data = heapq.heappop(queue)
            self._send(direction, data)
        for direction in (UP, DOWN):
            held = self._held[direction]
            if held is not None and held[0] <= now:
                # Nothing overtook it within hold_ms: send it, not reordered.
                self._held[direction] = None
                self._send(direction, held[2])

    def _send(self, direction: int, data: bytes) -> None:
        try:
            if direction == UP:
                self._target_sock.send(data)
            else:
                client = self.client
                if client is None:  # pragma: no cover - down needs a client first
                    return
                self._listen_sock.sendto(data, client)
        except OSError:
            # Full socket buffer (EAGAIN) or ICMP error: the network lost it.
            with self._lock:
                self._counters[direction].errors += 1
            return
        with self._lock:
            c = self._counters[direction]
            c.forwarded += 1
            c.bytes_forwarded += len(data)
