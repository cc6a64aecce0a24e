"""A waiting reader is woken after the input's output (ACKs) was sent, and never missed.

Real UDP on 127.0.0.1: a dialed session talks to a plain UDP socket that
plays its peer with a KCP object of the same conversation, so every datagram
the session's receiver handles is one this test sent.  Waits are bounded;
nothing sleeps to synchronise.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import kcpsock
from kcpsock.kcp import KCP
from kcpsock.segment import CMD_ACK
from kcpsock.updater import now_ms
from tests.helpers import wait_until

FAST: dict[str, Any] = {"nodelay": 1, "interval": 10, "resend": 2, "nc": True}


class RecordingTransport:
    """Wraps a session's transport: logs each send, runs a hook first."""

    def __init__(self, inner: Any, log: list[str]) -> None:
        self._inner = inner
        self._log = log
        self.hook: Any = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def send(self, packets: list[bytes], remote: Any) -> tuple[int, int]:
        # KCP datagrams (plain mode): the command byte follows the 4-byte conv
        acks = any(len(p) >= 24 and p[4] == CMD_ACK for p in packets)
        if acks and self.hook is not None:
            hook, self.hook = self.hook, None
            hook()
        self._log.append("ack" if acks else "send")
        result: tuple[int, int] = self._inner.send(packets, remote)
        return result


@pytest.fixture
def pair() -> Iterator[tuple[kcpsock.KCPSocket, socket.socket]]:
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    peer.settimeout(5)
    # ACK right after input: the receiver has output to send before the wake-up
    sock = kcpsock.dial(peer.getsockname(), ack_nodelay=True, **FAST)
    sock.settimeout(5)
    try:
        yield sock, peer
    finally:
        sock.close()
        peer.close()


def _data_from_peer(sock: kcpsock.KCPSocket, payload: bytes) -> list[bytes]:
    kcp = KCP(sock.session.conv)
    kcp.nodelay(1, 10, 2, 1)
    kcp.send(payload)
    return kcp.flush(now_ms())


def _reader(sock: kcpsock.KCPSocket, got: list[bytes], errors: list[BaseException]) -> None:
    try:
        got.append(sock.recv(64))
    except BaseException as exc:  # reported by the test
        errors.append(exc)


def _start_waiting_reader(
    sock: kcpsock.KCPSocket,
) -> tuple[threading.Thread, list[bytes], list[BaseException]]:
    got: list[bytes] = []
    errors: list[BaseException] = []
    t = threading.Thread(target=_reader, args=(sock, got, errors), daemon=True)
    t.start()
    end = threading.Event()
    for _ in range(500):  # bounded: 5 s
        if sock.session.waiting_readers:
            break
        end.wait(0.01)
    assert sock.session.waiting_readers == 1
    return t, got, errors


def test_reader_is_woken_after_the_ack_was_sent(
    pair: tuple[kcpsock.KCPSocket, socket.socket],
) -> None:
    sock, peer = pair
    session = sock.session
    log: list[str] = []
    session.transport = RecordingTransport(session.transport, log)  # type: ignore[assignment]
    cond = session._readable
    notify_all = cond.notify_all

    def recording_notify_all() -> None:
        log.append("wake")
        notify_all()

    cond.notify_all = recording_notify_all  # type: ignore[method-assign]
    t, got, errors = _start_waiting_reader(sock)
    for dg in _data_from_peer(sock, b"hello"):
        peer.sendto(dg, sock.getsockname())
    t.join(5)
    assert not errors and got == [b"hello"]
    assert "wake" in log
    assert "ack" in log, log
    assert log.index("ack") < log.index("wake")  # the ACK left before the reader woke
    ack, _ = peer.recvfrom(2048)  # and it reached the peer
    assert len(ack) >= 24


def test_reader_is_woken_when_another_thread_holds_the_lock_at_wake_time(
    pair: tuple[kcpsock.KCPSocket, socket.socket],
) -> None:
    sock, peer = pair
    session = sock.session
    log: list[str] = []
    transport = RecordingTransport(session.transport, log)
    session.transport = transport  # type: ignore[assignment]
    held = threading.Event()
    release = threading.Event()

    def holder(kcp: Any) -> None:
        held.set()
        release.wait(10)

    holder_thread = threading.Thread(target=lambda: session.locked(holder), daemon=True)

    def take_lock_elsewhere() -> None:
        # runs on the receiver thread while it sends the ACK, lock released:
        # the wake-up that follows finds the lock taken
        holder_thread.start()
        assert held.wait(5)

    transport.hook = take_lock_elsewhere
    t, got, errors = _start_waiting_reader(sock)
    for dg in _data_from_peer(sock, b"queued"):
        peer.sendto(dg, sock.getsockname())
    assert held.wait(5)
    # the wake-up waits in the inbound queue for the holder
    assert wait_until(lambda: session.queued_batches() == 1)
    assert t.is_alive()
    release.set()  # the holder's release drains it and wakes the reader
    t.join(5)
    holder_thread.join(5)
    assert not errors and got == [b"queued"]
