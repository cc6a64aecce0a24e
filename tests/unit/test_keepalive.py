"""Keep-alive of idle sessions on a simulated clock: how often they wake, and dead peers.

Two sessions in one thread, with their inbound pipelines and transports
that keep what they are given; the test plays the updater thread (it pops
the earliest timer of a private, thread-less updater heap, advances the
simulated clock to it, runs ``on_timer`` and re-arms it) and the network
(each datagram reaches the other session 1 ms later, unless the peer is
"vanished").  Issue 9: an idle session pair costs one updater run per
keep-alive exchange (the prober's), not three; issue 8's dead-peer
detection keeps its timing (docs/SESSION.md §7).
"""

from __future__ import annotations

import heapq
import socket
from collections.abc import Iterator
from typing import Any, Optional

import pytest

from kcpsock import session as session_module
from kcpsock.config import KCPConfig
from kcpsock.inbound import Inbound
from kcpsock.session import Session
from kcpsock.transport import Transport
from kcpsock.updater import Updater, deadline_of

CMD_WASK = 83


class _Heap(Updater):
    """The updater's heap without its thread: the test runs the timers."""

    def _start(self) -> None:
        pass


class _Keep(Transport):
    """A transport that keeps the datagrams it is given.

    (A subclass, not a stand-in: a mypyc-compiled Session checks the type.)
    """

    def __init__(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        super().__init__(sock, owned=False, connected=True)
        self.sent: list[bytes] = []

    def send(self, packets: list[bytes], remote: Any) -> tuple[int, int]:
        self.sent.extend(packets)
        return len(packets), sum(len(p) for p in packets)


class Pair:
    """Two idle sessions, a simulated clock and the updater played by hand."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, config: KCPConfig) -> None:
        self.clock = 1_000_000
        self.heap = _Heap("test-keepalive")
        monkeypatch.setattr(session_module, "updater", self.heap)
        monkeypatch.setattr(session_module, "now_ms", lambda: self.clock)
        self.transports = [_Keep(), _Keep()]
        self.sessions: list[Session] = []
        for t in self.transports:
            s = Session(0x5151, ("127.0.0.1", 9), t, config)
            s._inbound = Inbound.for_session(s.route, None, None)
            s.start()
            self.sessions.append(s)
        #: a side that vanished: its datagrams are lost, nothing reaches it
        self.vanished: Optional[int] = None
        self.timers = [0, 0]
        self.probes = [0, 0]
        #: the receivers take in the answer to a timer's probe before the
        #: updater thread gets back to re-arm that timer (a busy process)
        self.answer_before_rearm = False

    def close(self) -> None:
        for t in self.transports:
            t.sock.close()

    def run_until(self, end: int) -> None:
        """Run every timer due before ``end`` (simulated ms), with its traffic."""
        entries = self.heap._heap
        refs = self.heap._refs
        while entries:
            key = entries[0]
            ref = refs.get(key)
            target = ref() if ref is not None else None
            if target is None or target.updater_seq != key:
                heapq.heappop(entries)
                refs.pop(key, None)
                continue
            deadline = deadline_of(key)
            if deadline >= end:
                break
            heapq.heappop(entries)
            refs.pop(key, None)
            self.clock = max(self.clock, deadline)
            target.updater_deadline = None
            side = self.sessions.index(target)  # type: ignore[arg-type]
            self.timers[side] += 1
            nxt = target.on_timer(self.clock)
            if self.answer_before_rearm:
                self._network()
            if nxt is not None:
                self.heap.rearm(target, nxt)
            self._network()
        self.clock = max(self.clock, end)

    def _network(self) -> None:
        while any(t.sent for t in self.transports):
            self.clock += 1  # on the wire for 1 ms
            for side, t in enumerate(self.transports):
                sent, t.sent = t.sent, []
                self.probes[side] += sum(1 for p in sent if len(p) == 24 and p[4] == CMD_WASK)
                if not sent or self.vanished in (side, 1 - side):
                    continue
                self.sessions[1 - side]._on_batch([(p, ("127.0.0.1", 9)) for p in sent])


@pytest.fixture
def pair(monkeypatch: pytest.MonkeyPatch) -> Iterator[Pair]:
    p = Pair(monkeypatch, KCPConfig())
    # a handler thread waits in recv on side 1 (a server): its close watch runs
    p.sessions[1]._rwait = 1
    yield p
    p.close()


@pytest.mark.parametrize("answer_before_rearm", [False, True])
def test_an_idle_pair_runs_one_timer_per_keepalive_exchange(
    pair: Pair, answer_before_rearm: bool
) -> None:
    pair.answer_before_rearm = answer_before_rearm
    interval = pair.sessions[0].keepalive_interval_ms
    pair.run_until(pair.clock + 10_000)  # the close watch's window after the last data
    timers, probes = sum(pair.timers), sum(pair.probes)
    pair.run_until(pair.clock + 100 * interval)
    timers, probes = sum(pair.timers) - timers, sum(pair.probes) - probes
    # one exchange per keep-alive interval (plus the grid and the wire), each
    # woke the prober's timer only: the answerer's own keep-alive deadline
    # and the prober's look for the answer were moved on by the answer
    assert 90 <= probes <= 100
    assert timers == probes
    for s in pair.sessions:
        assert s.failure is None
        assert s.updater_deadline is not None


def test_each_side_wakes_at_most_once_per_keepalive_interval(pair: Pair) -> None:
    interval = pair.sessions[0].keepalive_interval_ms
    pair.run_until(pair.clock + 10_000)
    for _ in range(30):
        before = list(pair.timers)
        pair.run_until(pair.clock + interval)
        assert sum(pair.timers) - sum(before) <= 1
        assert all(a - b <= 1 for a, b in zip(pair.timers, before))


@pytest.mark.parametrize("side", [0, 1])
def test_a_vanished_peer_is_still_detected_in_time(pair: Pair, side: int) -> None:
    # side 0 has no reader: the keep-alive timeout decides ("timeout"); side 1
    # has a reader waiting: an unanswered keep-alive probe starts the close
    # watch's run and the peer is "gone" within gone_timeout of that probe
    s = pair.sessions[side]
    pair.run_until(pair.clock + 25_000)
    pair.vanished = 1 - side
    silent_since = s._last_rx
    end = silent_since + s.keepalive_timeout_ms + 1_000
    while s.failure is None and pair.clock < end:
        pair.run_until(pair.clock + 50)
    if side == 0:
        assert s.failure == "timeout"
        # at the timeout, on the keep-alive grid (this loop looks every 50 ms)
        assert pair.clock - silent_since <= s.keepalive_timeout_ms + 250 + 50
        # re-probed every third of the interval in between
        assert pair.probes[0] >= 3
    else:
        assert s.failure == "gone"
        # the keep-alive probe after an interval of silence (on the grid),
        # then the watch's verdict: about 1 s later with kcpsock's defaults
        assert pair.clock - silent_since <= s.keepalive_interval_ms + 250 + 2_000


def test_data_after_the_exchanges_still_starts_the_watch(pair: Pair) -> None:
    # the answer of a keep-alive probe postpones the timers; data moving
    # afterwards must still give the waiting reader its close watch window
    a, b = pair.sessions
    pair.run_until(pair.clock + 25_000)
    with a._lock:
        a.kcp.send(b"hello")
        a._arm_at(pair.clock)
    pair.run_until(pair.clock + 100)
    assert b.kcp.peek_size() == 5
    pair.vanished = 0  # a closes right after its data
    t0 = pair.clock
    while b.failure is None and pair.clock < t0 + 5_000:
        pair.run_until(pair.clock + 50)
    assert b.failure == "gone"
    # the watch (its gap, halved by the data, then its run), long before
    # the keep-alive would have probed
    assert pair.clock - t0 < 4_000


def test_the_close_watch_window_costs_one_timer_per_probe(pair: Pair) -> None:
    # after data, a waiting reader's watch probes the quiet peer at doubling
    # gaps for GONE_WINDOW_MS; each answer moves the timer to the next probe
    a, b = pair.sessions
    with a._lock:
        a.kcp.send(b"hello")
        a._arm_at(pair.clock)
    pair.run_until(pair.clock + 100)
    assert b.kcp.peek_size() == 5
    timers, probes = list(pair.timers), list(pair.probes)
    pair.run_until(pair.clock + 5_000)
    b_timers, b_probes = pair.timers[1] - timers[1], pair.probes[1] - probes[1]
    assert b_probes >= 3  # the watch probed (u, then gaps of 2u, 4u, ...)
    assert b_timers <= b_probes + 1  # the last look ends the window
    assert pair.probes[0] == probes[0]  # a only answered
    assert b.failure is None and a.failure is None
