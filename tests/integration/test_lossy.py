"""kcpsock <-> kcpsock through the lossy relay: data arrives intact.

A kcpsock echo server on 127.0.0.1, a kcpsock client dialing it through
kcpsock.relay.Relay (loss in both directions, seeded).  The client sends a
known byte stream while reading the echo and checks every byte; the server
side records what it received and is checked too.  Fast nodelay profile and
small transfers keep each test to a few seconds.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import kcpsock
from kcpsock.config import KCPConfig
from kcpsock.relay import Relay
from tests.helpers import echo_roundtrip

FAST = KCPConfig(nodelay=1, interval=10, resend=2, nc=True, sndwnd=128, rcvwnd=128)
IO_TIMEOUT = 30.0


def stream_bytes(n: int, seed: int = 0) -> bytes:
    out = bytearray()
    k = 0
    while len(out) < n:
        out += hashlib.sha256(f"{seed}:{k}".encode()).digest()
        k += 1
    return bytes(out[:n])


class EchoServer:
    """A kcpsock listener echoing every session, recording what it received."""

    def __init__(self, **options: Any) -> None:
        self.listener = kcpsock.listen(("127.0.0.1", 0), **options)
        self.address = self.listener.getsockname()[:2]
        self.received: list[bytearray] = []
        self.errors: list[BaseException] = []
        self.threads: list[threading.Thread] = []
        self.sessions: list[Any] = []
        self._accepter = threading.Thread(target=self._accept_loop, daemon=True)
        self._accepter.start()

    def _accept_loop(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return  # listener closed
            buf = bytearray()
            self.received.append(buf)
            self.sessions.append(sock)
            t = threading.Thread(target=self._echo, args=(sock, buf), daemon=True)
            self.threads.append(t)
            t.start()

    def _echo(self, sock: Any, record: bytearray) -> None:
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    return
                record += data
                sock.sendall(data)
        except OSError as exc:
            if not isinstance(exc, kcpsock.KCPClosedError):
                self.errors.append(exc)

    def close(self) -> None:
        self.listener.close()
        for s in self.sessions:
            s.close()
        self._accepter.join(5)
        for t in self.threads:
            t.join(5)


@pytest.fixture
def server_factory() -> Iterator[Any]:
    servers: list[EchoServer] = []

    def make(**options: Any) -> EchoServer:
        s = EchoServer(**options)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.close()


@pytest.mark.parametrize("loss", [0.1, 0.3])
@pytest.mark.parametrize("fec", [(0, 0), (10, 3)], ids=["nofec", "fec10-3"])
def test_echo_intact_through_loss(server_factory: Any, loss: float, fec: tuple[int, int]) -> None:
    ds, ps = fec
    size = 128_000 if loss >= 0.3 else 256_000
    data = stream_bytes(size, seed=int(loss * 100) + ds)
    server = server_factory(config=FAST, data_shards=ds, parity_shards=ps)
    with Relay(target=server.address, loss=loss, seed=42 + ds) as relay:
        sock = kcpsock.dial(relay.address, config=FAST, data_shards=ds, parity_shards=ps)
        try:
            sock.settimeout(IO_TIMEOUT)
            echoed = echo_roundtrip(sock, data)
        finally:
            sock.close()
        up, down = relay.up, relay.down
    assert echoed == data
    assert bytes(server.received[0]) == data
    assert not server.errors
    # The link really was lossy in both directions, near the requested rate.
    for c in (up, down):
        assert c.received > 50
        sigma = math.sqrt(c.received * loss * (1 - loss))
        assert abs(c.dropped - loss * c.received) < 4 * sigma + 1, (up, down)


@pytest.mark.parametrize("direction", ["up", "down"])
def test_fec_recovers_on_each_side(server_factory: Any, direction: str) -> None:
    """FEC 10/3 (with aes) and loss in one direction only: the receiving side
    recovers lost segments from parity (for "up" that is the listener, so it
    must route parity packets, which carry no conv, to the session).
    """
    data = stream_bytes(120_000, seed=5)
    key = kcpsock.derive_key("lossy")
    server = server_factory(
        config=FAST, block=kcpsock.new_block_crypt("aes", key), data_shards=10, parity_shards=3
    )
    before = _counter(kcpsock.snmp.copy(), "FECRecovered")
    with Relay(target=server.address, loss=0.1, seed=4, directions=direction) as relay:
        sock = kcpsock.dial(
            relay.address,
            config=FAST,
            block=kcpsock.new_block_crypt("aes", key),
            data_shards=10,
            parity_shards=3,
        )
        try:
            sock.settimeout(IO_TIMEOUT)
            assert echo_roundtrip(sock, data) == data
        finally:
            sock.close()
        lossy = relay.up if direction == "up" else relay.down
        clean = relay.down if direction == "up" else relay.up
    assert lossy.dropped > 0 and clean.dropped == 0
    assert _counter(kcpsock.snmp.copy(), "FECRecovered") > before
    assert bytes(server.received[0]) == data


def test_delay_jitter_duplication_reordering(server_factory: Any) -> None:
    data = stream_bytes(64_000, seed=9)
    server = server_factory(config=FAST)
    with Relay(
        target=server.address, loss=0.05, delay_ms=15, jitter_ms=5, dup=0.1, reorder=0.1, seed=8
    ) as relay:
        sock = kcpsock.dial(relay.address, config=FAST)
        try:
            sock.settimeout(IO_TIMEOUT)
            assert echo_roundtrip(sock, data) == data
        finally:
            sock.close()
        up = relay.up
    assert up.duplicated > 0 and up.reordered > 0
    assert bytes(server.received[0]) == data


def test_message_boundaries_survive_loss(server_factory: Any) -> None:
    """Message mode: each send of <= mss bytes comes back as one recv."""
    message = FAST.replace(stream=False)
    server = server_factory(config=message, data_shards=10, parity_shards=3)
    sizes = [1 + (i * 97) % 1300 for i in range(150)]
    with Relay(target=server.address, loss=0.2, seed=21) as relay:
        sock = kcpsock.dial(relay.address, config=message, data_shards=10, parity_shards=3)
        try:
            sock.settimeout(IO_TIMEOUT)
            msgs = [stream_bytes(n, seed=i) for i, n in enumerate(sizes)]
            for m in msgs:
                sock.sendall(m)
            got = [sock.recv(65536) for _ in msgs]
        finally:
            sock.close()
        assert relay.up.dropped > 0
    assert got == msgs


def _counter(snap: Any, name: str) -> int:
    if isinstance(snap, dict):
        return int(snap[name])
    return int(getattr(snap, name))
