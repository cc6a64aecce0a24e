"""A deterministic network for the pure layers: a fake clock and a seeded lossy link.

Nothing here sleeps or reads the real clock: time is :class:`FakeClock`'s
integer milliseconds, and every random choice comes from a
``random.Random(seed)``, so a failing run replays exactly.

:class:`LossyLink` is one direction of a link.  Per datagram it may drop it
(``loss``), deliver it twice (``dup``), hold it back so later ones overtake it
(``reorder``), delay it by ``delay_ms`` plus a uniform ``0..jitter_ms``, and
serialise it at ``bandwidth`` bytes per second behind the datagrams before it.
``fifo=True`` makes the link a queue (a datagram never overtakes an earlier
one, as skywind3000's test.cpp ``DelayTunnel``).

:class:`KCPPair` joins two endpoints (anything with ``input(datagram, now_ms)``
and ``update(now_ms)``, e.g. :class:`kcpsock.kcp.KCP`) with two links and runs
them tick by tick.
"""

from __future__ import annotations

import heapq
import random
from typing import Any, Callable, Optional


class FakeClock:
    """Integer milliseconds that only move when told to."""

    def __init__(self, start_ms: int = 0) -> None:
        self.now_ms = start_ms

    def advance(self, ms: int) -> int:
        """Move forward ``ms`` milliseconds and return the new time."""
        if ms < 0:
            raise ValueError("time does not go backwards")
        self.now_ms += ms
        return self.now_ms

    def __call__(self) -> int:
        return self.now_ms


class LossyLink:
    """One direction of a seeded, lossy, delaying, reordering link."""

    def __init__(
        self,
        clock: FakeClock,
        *,
        seed: int = 0,
        loss: float = 0.0,
        dup: float = 0.0,
        reorder: float = 0.0,
        delay_ms: int = 0,
        jitter_ms: int = 0,
        bandwidth: Optional[int] = None,
        fifo: bool = False,
        max_queue: Optional[int] = None,
    ) -> None:
        """Create the link.

        Args:
            clock: the shared fake clock.
            seed: seed of this link's ``random.Random``.
            loss: probability that a datagram is dropped.
            dup: probability that a datagram is delivered twice.
            reorder: probability that a datagram is held back by an extra
                ``delay_ms + jitter_ms + 1..20`` ms (ignored when ``fifo``).
            delay_ms: fixed one-way delay.
            jitter_ms: extra uniform delay ``0..jitter_ms`` per datagram.
            bandwidth: bytes per second (None = unlimited); a datagram leaves
                only after the ones before it were serialised.
            fifo: deliver strictly in sending order.
            max_queue: drop datagrams when this many are in flight.
        """
        for name, p in (("loss", loss), ("dup", dup), ("reorder", reorder)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be a probability, got {p}")
        self.clock = clock
        self.rng = random.Random(seed)
        self.loss = loss
        self.dup = dup
        self.reorder = reorder
        self.delay_ms = delay_ms
        self.jitter_ms = jitter_ms
        self.bandwidth = bandwidth
        self.fifo = fifo
        self.max_queue = max_queue
        self._heap: list[tuple[int, int, bytes]] = []
        self._seq = 0
        self._free_at = 0.0  # when the (bandwidth-limited) wire is idle again, ms
        self._last_due = 0
        self.sent = 0
        self.dropped = 0
        self.duplicated = 0
        self.delivered = 0
        #: when set, called with each datagram; returning False drops it
        self.filter: Optional[Callable[[bytes], bool]] = None

    def send(self, datagram: bytes) -> None:
        """Put one datagram on the link at the current time."""
        self.sent += 1
        if self.filter is not None and not self.filter(datagram):
            self.dropped += 1
            return
        if self.max_queue is not None and len(self._heap) >= self.max_queue:
            self.dropped += 1
            return
        rng = self.rng
        if self.loss and rng.random() < self.loss:
            self.dropped += 1
            return
        copies = 1
        if self.dup and rng.random() < self.dup:
            copies = 2
            self.duplicated += 1
        now = self.clock.now_ms
        start = float(now)
        if self.bandwidth:
            start = max(start, self._free_at) + len(datagram) * 1000.0 / self.bandwidth
            self._free_at = start
        for _ in range(copies):
            due = int(start) + self.delay_ms
            if self.jitter_ms:
                due += rng.randint(0, self.jitter_ms)
            if self.fifo:
                due = max(due, self._last_due)
                self._last_due = due
            elif self.reorder and rng.random() < self.reorder:
                due += self.delay_ms + self.jitter_ms + rng.randint(1, 20)
            self._seq += 1
            heapq.heappush(self._heap, (due, self._seq, datagram))

    def receive(self) -> list[bytes]:
        """Datagrams due at the current time, in delivery order."""
        now = self.clock.now_ms
        heap = self._heap
        out = []
        while heap and heap[0][0] <= now:
            out.append(heapq.heappop(heap)[2])
        self.delivered += len(out)
        return out

    def next_due(self) -> Optional[int]:
        """Time of the next delivery, None if nothing is in flight."""
        return self._heap[0][0] if self._heap else None

    def __len__(self) -> int:
        return len(self._heap)


class KCPPair:
    r"""Two KCP endpoints joined by two :class:`LossyLink`\ s on one fake clock."""

    def __init__(self, a: Any, b: Any, clock: FakeClock, ab: LossyLink, ba: LossyLink) -> None:
        self.a, self.b, self.clock, self.ab, self.ba = a, b, clock, ab, ba

    def _deliver(self) -> None:
        now = self.clock.now_ms
        for _ in range(4):  # immediate replies may trigger more; bounded
            moved = False
            for dst, link, back in ((self.b, self.ab, self.ba), (self.a, self.ba, self.ab)):
                for d in link.receive():
                    moved = True
                    for r in dst.input(d, now):
                        back.send(r)
            if not moved:
                break

    def step(self, ms: int = 1) -> None:
        """Deliver what is due, update both sides, then advance the clock."""
        self._deliver()
        now = self.clock.now_ms
        for d in self.a.update(now):
            self.ab.send(d)
        for d in self.b.update(now):
            self.ba.send(d)
        self._deliver()
        self.clock.advance(ms)

    def run_until(self, cond: Callable[[], bool], limit_ms: int, tick: int = 1) -> bool:
        """Step until ``cond()`` holds or ``limit_ms`` simulated ms passed."""
        end = self.clock.now_ms + limit_ms
        while self.clock.now_ms < end:
            if cond():
                return True
            self.step(tick)
        return cond()
