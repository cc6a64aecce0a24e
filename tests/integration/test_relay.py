"""The lossy UDP relay (kcpsock.relay) over real UDP on 127.0.0.1.

Each test drives plain UDP sockets through a Relay and checks what arrives
against what the relay says it did.  Waits are blocking receives with
timeouts, bounded by a deadline.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest

from kcpsock.relay import Relay
from tests.helpers import has_ipv6_loopback, wait_until

DEADLINE_S = 10.0


@pytest.fixture
def target() -> Iterator[socket.socket]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    yield s
    s.close()


@pytest.fixture
def client() -> Iterator[socket.socket]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    yield s
    s.close()


def addr(s: socket.socket) -> tuple[str, int]:
    host, port = s.getsockname()[:2]
    return (host, port)


def send_numbered(sock: socket.socket, dest: tuple[str, int], n: int, size: int = 64) -> None:
    pad = b"x" * (size - 4)
    for i in range(n):
        sock.sendto(struct.pack(">I", i) + pad, dest)


def collect(
    sock: socket.socket, relay: Relay, sent: int, direction: str = "up", have: int = 0
) -> list[int]:
    """Receive until the relay has processed all `sent` datagrams of
    `direction` and everything it forwarded has arrived (`have` of them were
    read already); bounded by DEADLINE_S.
    """
    out: list[int] = []
    sock.settimeout(0.2)
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        c = relay.up if direction == "up" else relay.down
        if c.received == sent and have + len(out) == c.forwarded:
            # One more short wait: a held datagram or a late duplicate may
            # still be on its way.
            try:
                data = sock.recv(65535)
            except socket.timeout:
                return out
            out.append(struct.unpack(">I", data[:4])[0])
            continue
        try:
            data = sock.recv(65535)
        except socket.timeout:
            continue
        out.append(struct.unpack(">I", data[:4])[0])
    raise AssertionError(f"relay did not settle: {relay.stats()} got {len(out)}")


def test_clean_relay_forwards_everything_in_order(
    client: socket.socket, target: socket.socket
) -> None:
    with Relay(target=addr(target), seed=1) as relay:
        send_numbered(client, relay.address, 300)
        got = collect(target, relay, 300)
        assert got == list(range(300))
        up = relay.up
        assert (up.received, up.forwarded, up.dropped, up.duplicated, up.reordered) == (
            300,
            300,
            0,
            0,
            0,
        )
        assert up.bytes_forwarded == 300 * 64
        assert relay.client == addr(client)


def test_replies_go_back_to_the_learned_client(
    client: socket.socket, target: socket.socket
) -> None:
    with Relay(target=addr(target), seed=1) as relay:
        client.sendto(b"hello", relay.address)
        target.settimeout(DEADLINE_S)
        data, via = target.recvfrom(100)
        assert data == b"hello"
        target.sendto(b"world", via)
        client.settimeout(DEADLINE_S)
        data, src = client.recvfrom(100)
        assert data == b"world"
        assert src[:2] == relay.address
        # (forwarded is counted just after the send, so it may lag here)
        assert relay.down.received == 1


@pytest.mark.parametrize("loss", [0.1, 0.3])
def test_loss_drops_close_to_the_requested_fraction(
    client: socket.socket, target: socket.socket, loss: float
) -> None:
    n = 2000
    with Relay(target=addr(target), loss=loss, seed=7) as relay:
        send_numbered(client, relay.address, n)
        got = collect(target, relay, n)
        up = relay.up
    assert up.received == n
    assert up.dropped + up.forwarded == n
    assert len(got) == up.forwarded
    assert got == sorted(got)  # loss alone never reorders
    # Binomial(2000, p): 4 standard deviations are under 0.045.
    assert abs(up.dropped / n - loss) < 0.045, up


def test_same_seed_same_losses_other_seed_other_losses(
    client: socket.socket, target: socket.socket
) -> None:
    runs = []
    for seed in (3, 3, 4):
        with Relay(target=addr(target), loss=0.25, seed=seed) as relay:
            send_numbered(client, relay.address, 500)
            runs.append(collect(target, relay, 500))
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_delay_holds_datagrams(client: socket.socket, target: socket.socket) -> None:
    with Relay(target=addr(target), delay_ms=80, seed=1) as relay:
        target.settimeout(DEADLINE_S)
        for _ in range(3):
            t0 = time.monotonic()
            client.sendto(b"ping", relay.address)
            assert target.recv(100) == b"ping"
            elapsed = time.monotonic() - t0
            assert elapsed >= 0.079, elapsed
            assert elapsed < DEADLINE_S, elapsed  # generous: held, not lost or stuck


def test_jitter_spreads_delays_within_bounds(client: socket.socket, target: socket.socket) -> None:
    with Relay(target=addr(target), delay_ms=30, jitter_ms=20, seed=2) as relay:
        target.settimeout(DEADLINE_S)
        delays = []
        for _ in range(20):
            t0 = time.monotonic()
            client.sendto(b"ping", relay.address)
            target.recv(100)
            delays.append(time.monotonic() - t0)
    assert min(delays) >= 0.0099, delays
    assert max(delays) - min(delays) > 0.005, delays  # the jitter is not constant


def test_duplication(client: socket.socket, target: socket.socket) -> None:
    n = 1000
    with Relay(target=addr(target), dup=0.3, seed=5) as relay:
        send_numbered(client, relay.address, n)
        got = collect(target, relay, n)
        up = relay.up
    assert up.dropped == 0
    assert len(got) == n + up.duplicated == up.forwarded
    assert abs(up.duplicated / n - 0.3) < 0.06, up
    assert set(got) == set(range(n))
    assert len(got) - len(set(got)) == up.duplicated


def test_reordering_swaps_datagrams(client: socket.socket, target: socket.socket) -> None:
    n = 1000
    with Relay(target=addr(target), reorder=0.2, seed=9) as relay:
        send_numbered(client, relay.address, n)
        got = collect(target, relay, n)
        up = relay.up
    assert sorted(got) == list(range(n))  # nothing lost or duplicated
    inversions = sum(1 for a, b in zip(got, got[1:]) if a > b)
    assert up.reordered > 0.1 * n, up
    # Each reordered datagram is one adjacent swap (the last one may have
    # gone out on its hold timeout instead, uncounted and in order).
    assert inversions == up.reordered


def test_impairments_can_apply_to_one_direction_only(
    client: socket.socket, target: socket.socket
) -> None:
    with Relay(target=addr(target), loss=1.0, directions="down", seed=1) as relay:
        client.sendto(struct.pack(">I", 0), relay.address)
        target.settimeout(DEADLINE_S)
        _, via = target.recvfrom(100)
        send_numbered(client, relay.address, 49)
        got = collect(target, relay, 50, have=1)
        assert got == list(range(49))  # 0 was read above, then 0..48 again
        send_numbered(target, via, 20)
        assert collect(client, relay, 20, "down") == []
        assert relay.down.dropped == 20


def test_foreign_senders_are_counted_and_dropped(
    client: socket.socket, target: socket.socket
) -> None:
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    other.bind(("127.0.0.1", 0))
    try:
        with Relay(target=addr(target), seed=1) as relay:
            client.sendto(struct.pack(">I", 0), relay.address)
            target.settimeout(DEADLINE_S)
            assert target.recv(100) == struct.pack(">I", 0)
            other.sendto(struct.pack(">I", 1), relay.address)
            client.sendto(struct.pack(">I", 2), relay.address)
            # Loopback keeps order per socket, not across sockets: wait for
            # the relay to have seen both before checking the target.
            got = collect(target, relay, 2, have=1)
            assert got == [2]
            assert relay.up.foreign == 1
    finally:
        other.close()


def test_close_joins_thread_closes_sockets_and_is_idempotent(target: socket.socket) -> None:
    before = {t.ident for t in threading.enumerate()}
    # queued datagrams do not delay close: one due in 60 s would keep a thread
    # that waited for it alive past close's 5 s join, which the thread check
    # below sees (a wall-clock bound on close, 2 s before, a loaded machine
    # can exceed without anything waiting for the queue)
    relay = Relay(target=addr(target), delay_ms=60_000, seed=1).start()
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sender.sendto(b"never delivered", relay.address)
        assert wait_until(lambda: relay.up.received == 1, 10)  # queued
    finally:
        sender.close()
    relay.close()
    relay.close()
    assert relay.closed
    assert {t.ident for t in threading.enumerate()} <= before
    assert relay._listen_sock.fileno() == -1
    assert relay._target_sock.fileno() == -1
    with pytest.raises(OSError):  # closed: any OSError (EBADF) will do
        relay.start()


def test_bounded_queue_counts_overflow(client: socket.socket, target: socket.socket) -> None:
    with Relay(target=addr(target), delay_ms=200, max_queue=10, seed=1) as relay:
        send_numbered(client, relay.address, 50)
        got = collect(target, relay, 50)
        up = relay.up
    assert up.overflow > 0
    assert len(got) == up.forwarded == 50 - up.overflow


@pytest.mark.parametrize(
    ("kwargs", "exc", "name"),
    [
        ({"loss": 1.5}, ValueError, "loss"),
        ({"dup": -0.1}, ValueError, "dup"),
        ({"reorder": "x"}, TypeError, "reorder"),
        ({"delay_ms": -1}, ValueError, "delay_ms"),
        ({"max_queue": 0}, ValueError, "max_queue"),
        ({"directions": "sideways"}, ValueError, "directions"),
        ({"seed": 1.5}, TypeError, "seed"),
    ],
)
def test_bad_arguments_name_the_argument(
    target: socket.socket, kwargs: dict[str, object], exc: type[Exception], name: str
) -> None:
    with pytest.raises(exc, match=name):
        Relay(target=addr(target), **kwargs)  # type: ignore[arg-type]


def test_target_is_required() -> None:
    with pytest.raises(TypeError, match="target"):
        Relay()


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback")
def test_ipv6_loopback() -> None:
    target = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    client = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        target.bind(("::1", 0))
        client.bind(("::1", 0))
        with Relay(listen=("::1", 0), target=addr(target), loss=0.2, seed=1) as relay:
            assert relay.address[0] == "::1"
            send_numbered(client, relay.address, 200)
            got = collect(target, relay, 200)
            assert len(got) == relay.up.forwarded == 200 - relay.up.dropped
            assert relay.up.dropped > 0
    finally:
        target.close()
        client.close()
