"""A sender held off the CPU: its late ACKs must not turn into a retransmission storm.

After a stall longer than the RTO, the ACKs of most of the window wait in
the sender's socket.  Whichever thread runs first must not resend what
they acknowledge: the receive role, reading them batch by batch (a full
batch says more wait: ``Session.deliver(..., behind=True)``), and the
updater, whose timer may fire before any of them is read (it holds the
timeouts back while input waits in the socket and none was read lately).
Two sessions in one thread on a simulated clock, as in test_keepalive.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from kcpsock import session as session_module
from kcpsock.config import KCPConfig
from kcpsock.inbound import Inbound
from kcpsock.session import RTO_HOLD_MINRTOS, Session
from tests.unit.test_keepalive import _Heap, _Keep

ADDR = ("127.0.0.1", 9)


class Stalled:
    """A sender (0) with a window in flight, and its receiver's (1) ACKs held back."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.clock = 1_000_000
        self.heap = _Heap("test-stall")
        monkeypatch.setattr(session_module, "updater", self.heap)
        monkeypatch.setattr(session_module, "now_ms", lambda: self.clock)
        self.transports = [_Keep(), _Keep()]
        self.sessions: list[Session] = []
        for t in self.transports:
            s = Session(0x5151, ADDR, t, KCPConfig())
            s._inbound = Inbound.for_session(s.route, None, None)
            # kcp-go's resend rule, under which the storm happens: hold_rto is
            # tested here (KCP.rto_ordered, on by default, holds these resends
            # too: tests/unit/test_rto_ordered.py)
            s.kcp.rto_ordered = False
            s.start()
            self.sessions.append(s)
        sender, receiver = self.sessions
        assert sender.send(b"x" * 1376 * 24, None) == 1376 * 24
        data, self.transports[0].sent = self.transports[0].sent, []
        assert len(data) >= 16
        self.clock += 1
        # the receiver gets each datagram on its own: one ACK datagram each
        for p in data:
            receiver._on_batch([(p, ADDR)])
        self.acks, self.transports[1].sent = self.transports[1].sent, []
        assert len(self.acks) >= 4
        self.clock += 200  # the sender was held off the CPU: every RTO expired
        assert sender.kcp.rto_due(self.clock)

    def feed(self, acks: list[bytes], behind: bool) -> None:
        """The sender's receive role hands it ``acks`` as one batch."""
        sender = self.sessions[0]
        inbound = sender._inbound
        assert inbound is not None
        for d in inbound.process([(p, ADDR) for p in acks]).deliveries:
            sender.deliver(d, behind)

    def fire(self) -> None:
        """Run the sender's timer now, as the updater thread does."""
        sender = self.sessions[0]
        sender.updater_deadline = None  # taken off the heap
        sender.on_timer(self.clock)

    def close(self) -> None:
        for t in self.transports:
            t.sock.close()


@pytest.fixture
def stalled(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stalled]:
    s = Stalled(monkeypatch)
    yield s
    s.close()


def _make_readable(transport: Any) -> socket.socket:
    """Queue one datagram in ``transport``'s socket (loopback, to itself)."""
    poke = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    poke.sendto(b"ack?", transport.sock.getsockname())
    return poke


@pytest.mark.parametrize("behind", [True, False])
def test_the_receive_role_reading_a_backlog_resends_nothing(stalled: Stalled, behind: bool) -> None:
    sender = stalled.sessions[0]
    half = len(stalled.acks) // 2
    stalled.feed(stalled.acks[:half], behind=behind)
    if behind:
        assert sender.kcp.lost_segs == 0  # held while more input waits ...
    else:
        assert sender.kcp.lost_segs > 0  # (what the hold prevents: the storm)
        return
    stalled.feed(stalled.acks[half:], behind=False)
    assert sender.kcp.lost_segs == 0 and sender.kcp.waitsnd() == 0  # ... all acknowledged


def test_a_timer_before_the_input_holds_its_resends_back(stalled: Stalled) -> None:
    sender = stalled.sessions[0]
    poke = _make_readable(stalled.transports[0])
    try:
        assert stalled.transports[0].readable()
        stalled.fire()
        assert sender.kcp.lost_segs == 0
        assert sender.updater_deadline == stalled.clock + 1  # back after the input
        stalled.clock += 1
        stalled.feed(stalled.acks, behind=False)
        assert sender.kcp.lost_segs == 0 and sender.kcp.waitsnd() == 0
    finally:
        poke.close()


def test_a_timer_resends_when_no_input_waits(stalled: Stalled) -> None:
    sender = stalled.sessions[0]
    assert not stalled.transports[0].readable()
    stalled.fire()
    assert sender.kcp.lost_segs > 0


def test_the_timer_holds_back_for_a_few_minimum_rtos_at_most(stalled: Stalled) -> None:
    sender = stalled.sessions[0]
    poke = _make_readable(stalled.transports[0])  # input waits, nobody reads it
    limit = RTO_HOLD_MINRTOS * sender.kcp.rx_minrto
    try:
        start = stalled.clock
        held = 0
        while sender.kcp.lost_segs == 0:
            assert stalled.clock - start <= limit
            stalled.fire()
            held += 1
            stalled.clock += 1
        assert held > 1 and stalled.clock - start >= limit
    finally:
        poke.close()


def test_a_timer_with_fresh_input_and_an_idle_role_resends(stalled: Stalled) -> None:
    sender = stalled.sessions[0]
    transport = stalled.transports[0]
    sender._input_ms = stalled.clock  # input came in just now ...
    poke = _make_readable(transport)
    try:
        transport.handling = False
        stalled.fire()
        assert sender.kcp.lost_segs > 0  # (fresh input, role idle: a real timeout)
    finally:
        poke.close()


def test_a_timer_while_the_receive_role_is_busy_holds_back(stalled: Stalled) -> None:
    sender = stalled.sessions[0]
    transport = stalled.transports[0]
    sender._input_ms = stalled.clock  # input came in just now, and more is being handled
    poke = _make_readable(transport)
    try:
        transport.handling = True
        stalled.fire()
        assert sender.kcp.lost_segs == 0
    finally:
        transport.handling = False
        poke.close()


def test_the_input_path_fires_the_timeouts_it_held(stalled: Stalled) -> None:
    sender = stalled.sessions[0]
    # the ACKs of the first half only: what they leave unacknowledged timed out
    half = len(stalled.acks) // 2
    stalled.feed(stalled.acks[:half], behind=True)
    assert sender.kcp.lost_segs == 0
    # the receiver caught up: its last batch (a duplicate ACK, moving no una)
    stalled.feed(stalled.acks[half - 1 : half], behind=False)
    assert sender.kcp.lost_segs > 0
