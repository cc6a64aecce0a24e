"""Session.start: when a new session's first timer runs (simulated clock, no updater thread).

A listener creates its sessions with ``start(flushed=True)``: KCP's first
update runs on the receiver and the first timer is armed an interval later,
so that a client dialing a hundred sessions at once does not wake the
updater thread a hundred times (round 12, branch many12).  A dialed
session (``start()``) is still run by the updater at once.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from kcpsock import session as session_module
from kcpsock.config import KCPConfig
from kcpsock.session import Session
from kcpsock.transport import Transport
from kcpsock.updater import Updater, deadline_of


class _Heap(Updater):
    """The updater's heap without its thread."""

    def _start(self) -> None:
        pass


@pytest.fixture
def setup(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[_Heap, Transport]]:
    heap = _Heap("test-start")
    monkeypatch.setattr(session_module, "updater", heap)
    monkeypatch.setattr(session_module, "now_ms", lambda: 5_000_000)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield heap, Transport(sock, owned=False, connected=False)
    finally:
        sock.close()


def _deadline(heap: _Heap, s: Session) -> int:
    assert s.updater_seq in heap._refs
    return deadline_of(s.updater_seq)


def test_start_runs_the_first_update_at_once_on_the_updater(setup: tuple[_Heap, Transport]) -> None:
    heap, transport = setup
    s = Session(7, ("127.0.0.1", 9), transport, KCPConfig())
    s.start()
    assert not s.kcp.updated  # the updater's first run does it
    assert _deadline(heap, s) == 5_000_000


def test_flushed_start_updates_here_and_arms_an_interval_later(
    setup: tuple[_Heap, Transport],
) -> None:
    heap, transport = setup
    s = Session(8, ("127.0.0.1", 9), transport, KCPConfig())
    s.start(flushed=True)
    assert s.kcp.updated
    assert _deadline(heap, s) == 5_000_000 + s.kcp.interval
    s.start(flushed=True)  # a second call changes nothing
    assert _deadline(heap, s) == 5_000_000 + s.kcp.interval
