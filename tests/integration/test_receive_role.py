"""The receive role: a reader blocked in recv reads the UDP socket itself.

After a round trip or two the receiver thread lends its role to the thread
blocked in ``recv`` (kcpsock.transport, kcpsock.session): these tests check
that the holder is really the reading thread, that everything a waiting
reader relies on still wakes it (close, shutdown, timeouts, other sessions of
a listener), and that the role goes back to the receiver thread when nobody
holds it.  Real UDP on 127.0.0.1; every wait is bounded; nothing sleeps to
synchronise.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import threading
from collections.abc import Iterator
from typing import Any, Optional

import pytest

import kcpsock
import kcpsock.transport
from kcpsock.transport import LEND_LEASE, Receiver
from tests.helpers import is_compiled, recv_exact, wait_until

# each test's closed sessions finish within it: a late close of one test's
# socket would move the descriptor count another test takes
pytestmark = pytest.mark.usefixtures("finish_background_closes")

FAST: dict[str, Any] = {"nodelay": 1, "interval": 10, "resend": 2, "nc": True}


class Echo:
    """An echo loop on an accepted socket, in a thread (ends at EOF or error)."""

    def __init__(self, sock: kcpsock.KCPSocket) -> None:
        self.sock = sock
        self.error: Optional[BaseException] = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return
                self.sock.sendall(data)
        except OSError as exc:
            self.error = exc


@pytest.fixture
def listener() -> Iterator[kcpsock.Listener]:
    ln = kcpsock.listen(("127.0.0.1", 0), **FAST)
    ln.settimeout(5)
    yield ln
    ln.close()


def _pair(ln: kcpsock.Listener) -> tuple[kcpsock.KCPSocket, kcpsock.KCPSocket]:
    c = kcpsock.dial(ln.getsockname(), timeout=5, **FAST)
    c.sendall(b"hi")
    s, _ = ln.accept()
    s.settimeout(5)
    assert s.recv(10) == b"hi"
    return c, s


@contextlib.contextmanager
def echoed_pair(
    ln: kcpsock.Listener,
) -> Iterator[tuple[kcpsock.KCPSocket, kcpsock.KCPSocket, Echo]]:
    """``_pair`` with an ``Echo`` on the accepted side; on leaving, both sockets are closed.

    On a normal exit the echo thread is then joined (at most 5 s); a test that
    needs it to have ended asserts so after the ``with`` block.
    """
    c, s = _pair(ln)
    echo = Echo(s)
    try:
        yield c, s, echo
    finally:
        c.close()
        s.close()
    echo.thread.join(5)


def _ping(c: kcpsock.KCPSocket, rounds: int = 30) -> None:
    for i in range(rounds):
        msg = bytes([i & 0xFF]) * 64
        c.sendall(msg)
        assert recv_exact(c, 64) == msg


def _role(sock: kcpsock.KCPSocket) -> Receiver:
    role = sock.session.receive_role
    assert role is not None
    return role


def _blocked_reader(sock: kcpsock.KCPSocket, n: int = 10) -> tuple[threading.Thread, list[Any]]:
    """A thread blocked in ``sock.recv(n)``; its result (data or exception) lands in the list."""
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(sock.recv(n))
        except BaseException as exc:  # reported by the test
            out.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def test_round_trips_lend_the_role_to_both_readers(listener: kcpsock.Listener) -> None:
    with echoed_pair(listener) as (c, s, echo):
        _ping(c)
        client_role, server_role = _role(c), _role(s)
        assert client_role.lends >= 1, "the dialed receiver never lent its role"
        assert server_role.lends >= 1, "the listener never lent its role to the echo reader"
        # the echo thread, blocked in recv, reads the listener's socket itself
        assert wait_until(lambda: server_role.holder == echo.thread.ident)
        # and a reader blocked on the dialed side holds that socket's role
        t, out = _blocked_reader(c, 3)
        assert wait_until(lambda: client_role.holder == t.ident)
        assert c.session.waiting_readers == 1
        s.sendall(b"abc")  # from this thread: the echo thread holds the role, not the lock
        t.join(5)
        assert out == [b"abc"]
        _ping(c, 5)  # the echo thread still serves
    assert not echo.thread.is_alive()


@pytest.mark.parametrize("side", ["dialed", "accepted"])
def test_close_wakes_a_reader_holding_the_role(listener: kcpsock.Listener, side: str) -> None:
    c, s = _pair(listener)
    try:
        # warm up with the reader on the side under test blocked in recv
        reader, writer = (c, s) if side == "dialed" else (s, c)
        echo = Echo(writer)
        for _ in range(10):
            reader.sendall(b"x" * 32)
            assert recv_exact(reader, 32) == b"x" * 32
        writer.shutdown(socket.SHUT_RDWR)  # the echo thread returns (it held the other side's role)
        echo.thread.join(5)
        role = _role(reader)
        t, out = _blocked_reader(reader)
        assert wait_until(lambda: role.holder == t.ident)
        reader.close()
        t.join(5)
        assert not t.is_alive(), "close did not wake the reader holding the role"
        assert len(out) == 1 and (out[0] == b"" or isinstance(out[0], OSError)), out
        assert not role.holder
    finally:
        c.close()
        s.close()


def test_shutdown_rd_wakes_the_holder(listener: kcpsock.Listener) -> None:
    with echoed_pair(listener) as (c, _, _):
        _ping(c, 10)
        role = _role(c)
        t, out = _blocked_reader(c)
        assert wait_until(lambda: role.holder == t.ident)
        c.shutdown(socket.SHUT_RD)
        t.join(5)
        assert out == [b""]


def test_timeout_while_holding_the_role_hands_it_back(listener: kcpsock.Listener) -> None:
    with echoed_pair(listener) as (c, s, _):
        _ping(c, 10)
        role = _role(c)
        c.settimeout(0.05)
        with pytest.raises(TimeoutError):
            c.recv(10)
        assert not role.holder
        assert not role.lent, "a reader that timed out kept the role lent"
        # the receiver thread reads again: data reaches a select loop
        c.settimeout(5)
        s.sendall(b"late")
        ready, _, _ = select.select([c], [], [], 5)
        assert ready and c.recv(10) == b"late"


def test_unattended_role_goes_back_after_the_lease(listener: kcpsock.Listener) -> None:
    with echoed_pair(listener) as (c, s, _):
        _ping(c, 10)
        role = _role(c)
        reclaims = role.reclaims
        # nobody reads c now: the receiver takes its role back by itself
        assert wait_until(lambda: not role.lent, timeout=5)
        assert role.reclaims > reclaims
        assert LEND_LEASE < 0.03  # far below KCP's minimum RTO: no retransmission
        # data sent now is read by the receiver thread and waits for recv
        s.sendall(b"queued")
        assert wait_until(lambda: c.session.kcp.peek_size() > 0)
        assert c.recv(10) == b"queued"


def test_a_writer_takes_the_role_back_at_once(listener: kcpsock.Listener) -> None:
    # a small window and send buffer: sendall waits for ACKs many times
    c = kcpsock.dial(
        listener.getsockname(),
        timeout=5,
        sndwnd=32,
        send_buffer=32 * 1376,
        **FAST,
    )
    c.sendall(b"hi")
    s, _ = listener.accept()
    s.settimeout(5)
    assert s.recv(2) == b"hi"
    total = 256 * 8000
    pings = 10
    done: list[int] = []

    def server() -> None:
        for _ in range(pings):
            s.sendall(recv_exact(s, 64))
        got = 0
        while got < total:
            data = s.recv(65536)
            if not data:
                return
            got += len(data)
        done.append(got)
        s.sendall(b"done")

    t = threading.Thread(target=server, daemon=True)
    t.start()
    try:
        _ping(c, pings)
        role = _role(c)
        assert role.lends >= 1
        reclaims = role.reclaims
        # the writer blocks on a full window right away: its wait takes the
        # role back (the ACKs are read by the receiver thread, no lease wait)
        c.sendall(bytes(range(256)) * (total // 256))
        assert role.reclaims > reclaims
        assert recv_exact(c, 4) == b"done"
        t.join(5)
        assert done == [total]
    finally:
        c.close()
        s.close()


def test_listener_role_holder_serves_other_sessions(listener: kcpsock.Listener) -> None:
    with echoed_pair(listener) as (a, sa, echo):
        _ping(a, 20)
        role = _role(sa)
        assert wait_until(lambda: role.holder == echo.thread.ident)
        # a second client: its datagrams are read by the echo thread
        b = kcpsock.dial(listener.getsockname(), timeout=5, **FAST)
        try:
            b.sendall(b"second")
            sb, _ = listener.accept()
            sb.settimeout(5)
            assert sb.recv(10) == b"second"
            sb.sendall(b"answer")
            assert recv_exact(b, 6) == b"answer"
            _ping(a, 5)  # the first session still echoes
            sb.close()
        finally:
            b.close()
        # two sessions: a holder that leaves hands the role back at once
        _ping(a, 5)


def test_readiness_and_nonblocking_reads_take_the_role_back(listener: kcpsock.Listener) -> None:
    """A select loop or a non-blocking reader must not wait for the lease."""
    with echoed_pair(listener) as (c, s, _):
        _ping(c, 10)
        role = _role(c)
        assert wait_until(lambda: not role.holder)
        c.setblocking(False)
        with pytest.raises(BlockingIOError):
            c.recv(10)
        assert not role.lent, "a non-blocking miss left the socket unread"
        c.setblocking(True)
        c.settimeout(5)
        _ping(c, 5)  # lent again after a blocking round trip
        assert wait_until(lambda: not role.holder)
        c.fileno()  # a readiness fd: the receiver thread must read from now on
        assert not role.lent
        s.sendall(b"ready")
        ready, _, _ = select.select([c], [], [], 5)
        assert ready and c.recv(10) == b"ready"


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts /proc/self/fd")
def test_a_session_that_never_lends_keeps_one_descriptor(listener: kcpsock.Listener) -> None:
    """The holder's wake-up socketpair is made at the first lend, and closed with the socket."""
    from kcpsock.session import drain_closing

    drain_closing(5.0, abort=True)  # closes left by earlier tests do not move the count below
    before = len(os.listdir("/proc/self/fd"))
    c = kcpsock.dial(listener.getsockname(), timeout=5, **FAST)
    try:
        c.sendall(b"no reader waits")
        s, _ = listener.accept()
        s.settimeout(5)
        assert recv_exact(s, 15) == b"no reader waits"
        assert len(os.listdir("/proc/self/fd")) - before == 1  # the UDP socket only
        role = _role(c)
        assert role.lends == 0
        echo = Echo(s)
        _ping(c, 5)
        assert role.lends >= 1
        # + the wake-up pairs of both roles (the dialed one, the listener's)
        assert len(os.listdir("/proc/self/fd")) - before == 5
    finally:
        c.close()
    s.close()
    echo.thread.join(5)
    listener.close()  # its socket (counted in ``before``) and its role's pair go too
    assert wait_until(lambda: len(os.listdir("/proc/self/fd")) == before - 1)


def test_acks_ride_on_the_reply_of_a_reader_holding_the_role(listener: kcpsock.Listener) -> None:
    # a reader that reads a ping for itself answers it at once: the ACK of
    # the ping leaves in the reply's datagram, not in one of its own
    with echoed_pair(listener) as (c, s, echo):
        _ping(c, 30)  # the roles are lent by now
        assert wait_until(lambda: _role(s).holder == echo.thread.ident)
        sent = s.session.packets_out
        sent_c = c.session.packets_out
        rounds = 200
        _ping(c, rounds)
        datagrams = s.session.packets_out - sent
        # one datagram per round trip (a few more where the receiver thread
        # read a ping itself, or a tick flushed first); ACK-only datagrams
        # on top of each reply would make it 2 per round trip
        assert datagrams < rounds * 1.5, datagrams
        # the same on the dialed side: the echo's ACK rides on the next ping
        datagrams = c.session.packets_out - sent_c
        assert datagrams < rounds * 1.5, datagrams


def test_held_acks_leave_without_a_reply(listener: kcpsock.Listener) -> None:
    # a reader that reads for itself and then neither sends nor reads again:
    # its ACKs leave at the session's next tick, well before an RTO
    with echoed_pair(listener) as (c, s, _):
        _ping(c, 30)
        t, out = _blocked_reader(c, 64)
        role = _role(c)
        assert wait_until(lambda: role.holder == t.ident)
        s.sendall(b"x" * 64)  # read by t itself, which then just returns
        t.join(5)
        assert out == [b"x" * 64]
        kcp = s.session.kcp
        lost = kcp.lost_segs
        assert wait_until(lambda: not kcp.snd_buf, timeout=2)
        assert kcp.lost_segs == lost, "the data timed out and was resent: its ACK was late"


def test_a_failed_lend_does_not_kill_the_receiver(
    listener: kcpsock.Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first lend makes a socketpair: EMFILE there must leave both receivers reading."""
    with echoed_pair(listener) as (c, s, _echo):
        receivers = {_role(c).thread, _role(s).thread}
        real = socket.socketpair

        def socketpair(*args: Any, **kwargs: Any) -> tuple[socket.socket, socket.socket]:
            if threading.current_thread() in receivers:
                raise OSError(24, "Too many open files")  # a server at its descriptor limit
            return real(*args, **kwargs)

        monkeypatch.setattr(socket, "socketpair", socketpair)
        _ping(c, 10)
        assert _role(c).is_alive() and _role(s).is_alive()
        monkeypatch.setattr(socket, "socketpair", real)
        _ping(c, 10)  # and it lends once it can
        assert _role(c).lends >= 1


@pytest.mark.skipif(
    is_compiled(kcpsock.transport), reason="patches Receiver methods (pure-Python build only)"
)
def test_a_batch_queued_before_the_role_was_taken_is_read_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A delivery the receiver queued while the reader held the lock (its
    non-blocking acquire failed), just before it lent the role: the reader
    that then takes the role returns that data instead of polling the socket
    (its own wake-up is skipped, and a reply that acknowledges our data arms
    no timer).  Raw UDP peer on 127.0.0.1 playing KCP by hand.
    """
    import kcpsock.transport as transport
    from kcpsock.kcp import KCP
    from kcpsock.updater import now_ms

    monkeypatch.setattr(transport, "LEND_LEASE", 5.0)  # the lent role stays lent between calls
    peer_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer_sock.bind(("127.0.0.1", 0))
    c = kcpsock.dial(peer_sock.getsockname(), gone_timeout=0, **FAST)
    try:
        s = c.session
        role = _role(c)
        addr = c.getsockname()
        peer = KCP(s.conv)
        peer.nodelay(1, 10, 2, 1)

        def push(data: bytes) -> list[bytes]:
            peer.send(data)
            return peer.flush(now_ms())

        c.settimeout(2)
        for i in range(20):  # round trips until the receiver lent its role
            t, out = _blocked_reader(c, 100)
            assert wait_until(lambda: s.waiting_readers == 1)
            for dg in push(b"r%d" % i):
                peer_sock.sendto(dg, addr)
            t.join(5)
            assert out == [b"r%d" % i]
            if role.lent and not role.holder:
                break
        assert role.lent, "the receiver never lent its role"
        c.send(b"req")  # in flight: the reply acknowledges it
        while select.select([peer_sock], [], [], 0.2)[0]:
            peer.input(peer_sock.recv(2048), now_ms())
        real_take, real_read = role.take_role, role.read_batch
        reads: list[int] = []

        def take_role() -> bool:
            # the interleaving: the receiver's delivery lands while this
            # reader holds the session lock, then the role is lent
            inbound = s._inbound
            assert inbound is not None
            for dg in push(b"reply"):
                for d in inbound.process([(dg, peer_sock.getsockname())]).deliveries:
                    s.deliver(d)  # the lock is held: queued, not drained
            monkeypatch.setattr(role, "take_role", real_take)
            return real_take()

        def read_batch(deadline: Optional[float]) -> Any:
            reads.append(s.kcp.peek_size())
            return real_read(deadline)

        monkeypatch.setattr(role, "take_role", take_role)
        monkeypatch.setattr(role, "read_batch", read_batch)
        assert c.recv(100) == b"reply"
        assert all(n <= 0 for n in reads), "the holder polled the socket with data queued"
    finally:
        c.close()
        peer_sock.close()
