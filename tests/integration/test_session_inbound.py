"""Receivers never wait for a session lock; queued input is never left behind.

Real UDP on 127.0.0.1.  One session's lock is held by a "writer" (a thread
inside ``Session.locked``, standing for a user thread in a long ``send``);
the listener's receiver must go on serving the other sessions, and what
arrived for the held session meanwhile must be drained when the lock is
released.  Waits are bounded; nothing sleeps to synchronise.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import kcpsock
from kcpsock.transport import Transport
from tests.helpers import FAST, unstarted_session, wait_until


@pytest.fixture
def listener() -> Iterator[kcpsock.Listener]:
    ln = kcpsock.listen(("127.0.0.1", 0), **FAST)
    ln.settimeout(5)
    yield ln
    ln.core.close_all()


def hold_lock(sock: kcpsock.KCPSocket) -> tuple[threading.Event, threading.Thread]:
    """Hold ``sock``'s session lock from another thread until the event is set."""
    held = threading.Event()
    release = threading.Event()

    def holder(kcp: Any) -> None:
        held.set()
        release.wait(20)

    t = threading.Thread(target=lambda: sock.session.locked(holder), daemon=True)
    t.start()
    assert held.wait(5)
    return release, t


def test_listener_receiver_serves_others_while_a_session_lock_is_held(
    listener: kcpsock.Listener,
) -> None:
    addr = listener.getsockname()
    blocked_client = kcpsock.dial(addr, **FAST)
    other_client = kcpsock.dial(addr, **FAST)
    try:
        for c in (blocked_client, other_client):
            c.settimeout(5)
        blocked_client.sendall(b"hello")
        blocked, _ = listener.accept()
        blocked.settimeout(5)
        assert blocked.recv(5) == b"hello"
        other_client.sendall(b"first")
        other, _ = listener.accept()
        other.settimeout(5)
        assert other.recv(5) == b"first"

        release, holder = hold_lock(blocked)
        try:
            # input for the held session queues up behind its lock ...
            blocked_client.sendall(b"queued while held")
            assert wait_until(lambda: blocked.session.queued_batches() > 0)
            # ... while the receiver keeps serving the other session: round trips
            for i in range(50):
                msg = b"ping %d" % i
                other_client.sendall(msg)
                assert other.recv(64) == msg
                other.sendall(msg)
                assert other_client.recv(64) == msg
            assert holder.is_alive()  # the lock was held all along
            assert blocked.session.queued_batches() > 0  # and nothing drained it
        finally:
            release.set()
            holder.join(5)
        # what was queued meanwhile is drained by the thread that released
        # the lock (check after release), not lost
        assert blocked.recv(64) == b"queued while held"
        blocked.sendall(b"and back")
        assert blocked_client.recv(64) == b"and back"
        assert blocked.session.inbox_drops == 0
        blocked.close()
        other.close()
    finally:
        blocked_client.close()
        other_client.close()


def test_queued_input_wakes_a_reader_blocked_before_the_lock_was_freed(
    listener: kcpsock.Listener,
) -> None:
    # a reader waits in recv; a writer holds the lock while data arrives; the
    # data must reach the reader once the writer lets go (no lost wake-up)
    client = kcpsock.dial(listener.getsockname(), **FAST)
    try:
        client.settimeout(5)
        client.sendall(b"x")
        conn, _ = listener.accept()
        conn.settimeout(5)
        assert conn.recv(1) == b"x"
        got: list[bytes] = []
        reading = threading.Event()

        def reader() -> None:
            reading.set()
            got.append(conn.recv(64))

        r = threading.Thread(target=reader, daemon=True)
        r.start()
        assert reading.wait(5)
        release, holder = hold_lock(conn)
        try:
            client.sendall(b"late data")
            assert wait_until(lambda: conn.session.queued_batches() > 0)
        finally:
            release.set()
            holder.join(5)
        r.join(5)
        assert got == [b"late data"]
        conn.close()
    finally:
        client.close()


def test_dialed_session_receiver_does_not_wait_for_a_held_lock() -> None:
    with kcpsock.listen(("127.0.0.1", 0), **FAST) as ln:
        ln.settimeout(5)
        client = kcpsock.dial(ln.getsockname(), **FAST)
        try:
            client.settimeout(5)
            client.sendall(b"a")
            conn, _ = ln.accept()
            conn.settimeout(5)
            assert conn.recv(1) == b"a"
            release, holder = hold_lock(client)
            try:
                conn.sendall(b"while held")
                # the client's receiver took the datagram off the socket and
                # queued it instead of waiting for the lock
                assert wait_until(lambda: client.session.queued_batches() > 0)
            finally:
                release.set()
                holder.join(5)
            assert client.recv(64) == b"while held"
            conn.close()
        finally:
            client.close()


def test_output_leaves_in_the_order_kcp_produced_it() -> None:
    # datagrams produced under the session lock by different threads (the
    # writer's flush, the receiver's flush after an ACK) must reach the wire
    # in that order: reordered segments make the peer's ACKs skip sequence
    # numbers, and the sender fast-retransmits segments that were never lost
    big = dict(FAST, sndwnd=1024, rcvwnd=1024, stream=True)
    data = os.urandom(6_000_000)
    with kcpsock.listen(("127.0.0.1", 0), **big) as ln:
        ln.settimeout(10)
        client = kcpsock.dial(ln.getsockname(), **big)
        try:
            client.settimeout(30)
            writer = threading.Thread(target=client.sendall, args=(data,), daemon=True)
            writer.start()
            conn, _ = ln.accept()
            conn.settimeout(30)
            got = 0
            while got < len(data):
                chunk = conn.recv(65536)
                assert chunk
                got += len(chunk)
            writer.join(30)
            assert not writer.is_alive()
            # lossless loopback (no kernel drop: the socket buffers hold the window)
            assert client.figures()["fast_retrans_segs"] == 0
            conn.close()
        finally:
            client.close()


def test_run_timer_never_waits_for_a_held_lock_and_rearms_when_it_ran(
    listener: kcpsock.Listener,
) -> None:
    from kcpsock.updater import now_ms

    client = kcpsock.dial(listener.getsockname(), **FAST)
    try:
        client.settimeout(5)
        client.sendall(b"hello")
        conn, _ = listener.accept()
        conn.settimeout(5)
        assert conn.recv(5) == b"hello"
        s = conn.session
        release, holder = hold_lock(conn)
        assert s.run_timer(now_ms()) is False  # the lock is taken: hand it back
        # returned while the lock was still held (a run_timer that waited for
        # it would return only once the holder let go, at its 20 s bound);
        # not a wall-clock bound, which a loaded machine can exceed
        assert holder.is_alive() and not release.is_set()
        release.set()
        holder.join(5)
        conn.sendall(b"x")  # something in flight: on_timer returns a deadline
        assert s.run_timer(now_ms()) is True
        assert s.updater_deadline is not None  # re-armed
        assert client.recv(1) == b"x"
        conn.close()
        assert s.run_timer(now_ms()) is False  # not OPEN: left to the updater
    finally:
        client.close()


@pytest.mark.parametrize("stream", [True, False])
def test_send_corks_behind_many_unacknowledged_segments_in_both_modes(stream: bool) -> None:
    # autocork: with CORK_INFLIGHT segments unacknowledged, send() queues
    # without a flush (and without a sendto of its own); in message mode the
    # messages keep their boundaries and leave together with the next flush
    # (an echo server of mss-sized messages had one flush and one sendto a
    # message).  The session is never started: no updater tick interferes.
    from kcpsock.session import CORK_INFLIGHT
    from kcpsock.updater import now_ms
    from tests.kcpwire import decode_segments

    with unstarted_session(7, stream=stream) as (s, peer):
        for i in range(CORK_INFLIGHT):
            s.send(b"m%02d" % i, None)
        sent = [decode_segments(peer.recv(2048)) for _ in range(CORK_INFLIGHT)]
        assert [seg[1] for d in sent for seg in d] == [b"m%02d" % i for i in range(CORK_INFLIGHT)]
        s.send(b"late", None)
        s.send(b"later", None)
        kcp = s.kcp
        assert len(kcp.snd_buf) == CORK_INFLIGHT  # nothing more went out
        queued = [bytes(d) for _, d in kcp.snd_queue]
        assert queued == ([b"latelater"] if stream else [b"late", b"later"])
        peer.setblocking(False)
        with pytest.raises(BlockingIOError):
            peer.recv(2048)
        s.locked(lambda k: s._out.extend(k.flush(now_ms())))  # the next flush sends them
        peer.settimeout(5)
        # (a retransmission may come first if the machine stalled for an RTO)
        got = [seg[1] for seg in decode_segments(peer.recv(2048)) if not seg[1].startswith(b"m")]
        assert got == ([b"latelater"] if stream else [b"late", b"later"])


def test_a_corked_send_reads_no_clock_and_keeps_the_armed_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a corked send only appends to snd_queue, which kcp.check does not read:
    # with the timer armed it neither reads the clock nor re-checks (a busy
    # echo server's every reply); unarmed, it still arms (check).  The
    # session is never started: the deadline is set by hand.
    import kcpsock.session as session_mod
    from kcpsock.session import CORK_INFLIGHT

    with unstarted_session(8, stream=False) as (s, _peer):
        for i in range(CORK_INFLIGHT):
            s.send(b"m%02d" % i, None)
        kcp = s.kcp
        assert len(kcp.snd_buf) == CORK_INFLIGHT
        real = session_mod.now_ms
        reads = []

        def clock() -> int:
            reads.append(1)
            return real()

        monkeypatch.setattr(session_mod, "now_ms", clock)
        armed = kcp.check(real())
        s.updater_deadline = armed
        s.send(b"late", None)
        assert reads == []  # corked, armed: no clock read
        assert s.updater_deadline == armed
        assert [bytes(d) for _, d in kcp.snd_queue] == [b"late"]
        assert s.updater_deadline <= kcp.check(real())  # still the earliest due
        s.updater_deadline = None
        s.send(b"later", None)
        assert reads  # not armed: the send arms (and reads the clock for it)


def test_a_delivered_batch_is_acknowledged_at_once_in_one_datagram() -> None:
    # the ACKs of a batch leave when it is drained (not at the next updater
    # tick): a busy receiving session needs no timer run per interval, and
    # the sender's RTO does not include our tick.  The session is never
    # started: no updater tick could send them instead.
    import struct

    from kcpsock.inbound import Delivery
    from tests.kcpwire import decode_segments

    with unstarted_session(9) as (s, peer):
        d = Delivery(s.route)
        for sn in range(5):
            payload = b"p%d" % sn
            hdr = struct.pack("<IBBHIIII", 9, 81, 0, 128, 1000 + sn, sn, 0, len(payload))
            d.datagrams.append(hdr + payload)
            d.packets += 1
            d.nbytes += len(hdr) + len(payload)
        s.deliver(d)
        segs = decode_segments(peer.recv(2048))
        assert [(h.cmd, h.sn) for h, _ in segs][-1] == (82, 4)  # CMD_ACK of the last one
        assert all(h.una == 5 for h, _ in segs)
        assert not s.kcp.acklist
        assert s.recv(64, 0) == b"p0p1p2p3p4"


class _Interrupting(Transport):
    """A transport whose every send is interrupted by Ctrl-C."""

    def send(self, packets: list[bytes], remote: Any) -> tuple[int, int]:
        raise KeyboardInterrupt


def test_ctrl_c_while_the_session_lock_is_released_leaves_it_consistent() -> None:
    # Ctrl-C can land while a waiting reader's lock is released and its
    # output is being sent (Condition.wait, recv with the receive role): the
    # lock must be back with the caller, whose ``with`` block releases it
    # (before: "cannot release un-acquired lock" in place of KeyboardInterrupt)
    with unstarted_session(11) as (s, _peer):
        real = s.transport
        # the interrupt comes from the transport's send (a subclass, not a
        # patched method: a mypyc-compiled Session calls its methods directly)
        s.transport = _Interrupting(real.sock, owned=False, connected=False)
        lock = s._lock

        def wait_once() -> None:
            with lock:
                s._out.append(b"x" * 30)  # output sent when the lock is released
                lock._release_save()

        with pytest.raises(KeyboardInterrupt):
            wait_once()
        assert not lock._is_owned()
        assert lock.acquire(False), "the lock was left held"
        s.transport = real
        s._out.clear()
        lock.release()


def test_gathered_output_leaves_in_one_send_and_in_order() -> None:
    """A receiver batch gathers its sessions' output (Transport.begin_gather).

    Nothing leaves before the gather ends; another thread's output for a
    gathered session waits behind it (the transmit lock is held), so each
    session's datagrams reach the wire in KCP's order.
    """
    with unstarted_session(0x11) as (s1, p1), unstarted_session(0x22) as (s2, p2):
        shared = s1.transport
        s2.transport = shared  # both sessions send through one socket, as a listener's
        shared.begin_gather()
        try:
            assert s1.send(b"a" * 100, None) == 100
            assert s2.send(b"c" * 10, None) == 10
            other = threading.Thread(target=lambda: s1.send(b"b" * 100, None))
            other.start()
            other.join(5)
            assert not other.is_alive()
            p1.settimeout(0.05)
            with pytest.raises(socket.timeout):  # (TimeoutError from Python 3.10 on)
                p1.recvfrom(2048)  # nothing on the wire before the gather is sent
        finally:
            shared.end_gather()
        p1.settimeout(5)
        first, second = p1.recvfrom(2048)[0], p1.recvfrom(2048)[0]
        # conv, cmd PUSH (81), sn at offset 12: in order, payloads as sent
        assert (first[4], int.from_bytes(first[12:16], "little"), first[24:]) == (81, 0, b"a" * 100)
        assert (second[4], int.from_bytes(second[12:16], "little"), second[24:]) == (
            81,
            1,
            b"b" * 100,
        )
        assert p2.recvfrom(2048)[0][24:] == b"c" * 10
        assert (s1.packets_out, s2.packets_out) == (2, 1)
        assert s1.wire_bytes_out == 2 * 124 and s2.wire_bytes_out == 34


def test_transmit_lock_taken_leaves_output_to_its_holder() -> None:
    """While another thread holds the transmit lock, a send queues its datagram, in order.

    The lock is only ever taken without waiting (``Session._tx_acquire``): the
    sender finding it taken returns at once and the holder sends the queue
    after its own release (here: ``_gathered``'s release path, ``_transmit``).
    """
    with unstarted_session(0x33) as (s, peer):
        assert s._tx_acquire()  # held from here, as by a thread sending
        assert not s._tx_acquire()  # a second try fails at once, without waiting
        other = threading.Thread(target=lambda: s.send(b"x" * 50, None))
        other.start()
        other.join(5)
        assert not other.is_alive()  # never waited for the transmit lock
        assert len(s._txq) == 1 and s.packets_out == 0  # left queued for the holder
        peer.settimeout(0.05)
        with pytest.raises(socket.timeout):
            peer.recvfrom(2048)
        s._gathered(0, 0)  # the holder's release: gives the lock back, sends the rest
        peer.settimeout(5)
        got = peer.recvfrom(2048)[0]
        assert (got[4], got[24:]) == (81, b"x" * 50)
        assert s.packets_out == 1 and not s._txq
        assert s._tx_acquire()  # free again


@pytest.mark.parametrize(
    "make",
    [bytes, bytearray, memoryview, lambda b: memoryview(bytearray(b)).cast("B", (len(b),))],
    ids=["bytes", "bytearray", "memoryview", "cast-view"],
)
@pytest.mark.parametrize("size", [1, 1376, 5000, 70000])
def test_session_sendall_queues_everything_in_order(make: Any, size: int) -> None:
    """``Session.sendall`` (``KCPSocket.sendall``'s compiled body): every byte, in order.

    Sizes below and above one segment and above the copy limit
    (``SENDALL_COPY_MAX``: sent through a view, in several ``send`` calls).
    """
    from kcpsock.session import SENDALL_COPY_MAX

    assert 5000 < SENDALL_COPY_MAX < 70000
    data = os.urandom(size)
    with unstarted_session(0x44, stream=True, sndwnd=4096, send_buffer=1 << 20) as (s, _peer):
        s.sendall(make(data), 0)
        kcp = s.kcp
        got = b"".join(bytes(seg[2]) for seg in kcp.snd_buf) + b"".join(
            bytes(d) for _, d in kcp.snd_queue
        )
        assert got == data
        assert s.bytes_sent == size


def test_recv_into_short_copies_each_message_whatever_the_last_size() -> None:
    """``recv_into_short`` keeps the packer of its last copy size: sizes that change are right.

    Messages of repeating and changing sizes (the cached size, a new one, back),
    one larger than ``COPY_PACK_MAX`` (no packer), each read into a buffer
    filled with a marker: exactly the message's bytes are written.
    """
    from kcpsock.session import COPY_PACK_MAX

    sizes = [100, 100, 7, 100, 1376, 1376, 9000, 1376, 1, 9000, 100]
    assert COPY_PACK_MAX < 9000
    with unstarted_session(0x55, stream=False) as (s, _peer):
        msgs = [os.urandom(n) for n in sizes]
        for i, m in enumerate(msgs):
            hdr = struct.pack("<IBBHIIII", 0x55, 81, 0, 1024, 0, i, 0, len(m))
            s.kcp.input(hdr + m, 0)
        buf = bytearray(65536)
        for m in msgs:
            buf[:] = b"\xee" * len(buf)
            n = s.recv_into_short(buf, 0, 0)
            assert n == len(m)
            assert buf[:n] == m and buf[n:] == b"\xee" * (len(buf) - n)
