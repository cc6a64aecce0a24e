"""A listener's receiver defers its sessions' reader wake-ups while it is behind (WakeGate).

Real UDP on 127.0.0.1 (the sessions' ACKs go to a bound peer socket).  The
sessions are never started (no updater tick wakes anyone); the test thread
plays the receiver: it activates the gate, delivers a batch and ends it, as
``ListenerCore._on_batch`` does.  Whether a blocked reader was woken is seen
without timing: ``Condition.notify`` takes the waiter off the Condition's
list at once.  Waits are bounded; nothing sleeps to synchronise.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Iterator
from typing import Any

import kcpsock
from kcpsock.config import KCPConfig
from kcpsock.inbound import Delivery
from kcpsock.session import Session, WakeGate
from kcpsock.transport import Transport
from kcpsock.updater import now_ms
from tests.helpers import FAST, unstarted_session, wait_until

CONV = 77


@contextlib.contextmanager
def gated_session(**options: Any) -> Iterator[tuple[Session, WakeGate]]:
    """An unstarted Session with a WakeGate, and the peer socket it sends its ACKs to."""
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        peer.bind(("127.0.0.1", 0))
        sock.bind(("127.0.0.1", 0))
        transport = Transport(sock, owned=False, connected=False)
        s = Session(CONV, peer.getsockname(), transport, KCPConfig(**FAST, **options))
        gate = WakeGate()
        s.wake_gate = gate
        yield s, gate
    finally:
        sock.close()
        peer.close()


class Segments:
    """KCP PUSH datagrams of one conversation, numbered on."""

    def __init__(self) -> None:
        self.sn = 0

    def delivery(self, s: Session, *payloads: bytes) -> Delivery:
        d = Delivery(s.route)
        for payload in payloads:
            hdr = struct.pack("<IBBHIIII", CONV, 81, 0, 128, 1000, self.sn, 0, len(payload))
            self.sn += 1
            d.datagrams.append(hdr + payload)
            d.packets += 1
            d.nbytes += len(hdr) + len(payload)
        return d


class Reader:
    """A thread blocked in ``Session.recv(want)``; what it got."""

    def __init__(self, s: Session, want: int) -> None:
        self.s = s
        self.got: list[bytes] = []
        self.thread = threading.Thread(target=self._run, args=(want,), daemon=True)
        self.thread.start()
        assert wait_until(lambda: s._rwait == 1 and len(s._readable._waiters) == 1)

    def _run(self, want: int) -> None:
        self.got.append(self.s.recv(want, None))

    def notified(self) -> bool:
        return len(self.s._readable._waiters) == 0

    def result(self) -> bytes:
        self.thread.join(5)
        assert not self.thread.is_alive()
        return self.got[0]


def run_batch(s: Session, gate: WakeGate, d: Delivery, behind: bool) -> None:
    """What the listener's receiver does with one batch for one session."""
    if behind:
        gate.begin(now_ms())
    s.deliver(d, behind)
    gate.end(behind, now_ms())


def test_a_reader_is_woken_at_the_end_of_a_batch_not_behind() -> None:
    segs = Segments()
    with gated_session() as (s, gate):
        mss = s.kcp.mss
        reader = Reader(s, 65536)
        run_batch(s, gate, segs.delivery(s, b"a" * mss), behind=True)
        assert not reader.notified()  # less than asked for, more input waits
        assert gate.deferrals == 1 and gate.deferred == [s]
        run_batch(s, gate, segs.delivery(s, b"b" * mss), behind=True)
        assert not reader.notified()
        assert gate.deferrals == 1  # listed once
        gate.end(False, now_ms())  # a batch with nothing for it, and the receiver caught up
        assert reader.result() == b"a" * mss + b"b" * mss
        assert gate.woken == 1 and gate.deferred == []
        # input in a batch that is not behind wakes at once
        reader = Reader(s, 65536)
        run_batch(s, gate, segs.delivery(s, b"c" * 10), behind=False)
        assert reader.result() == b"c" * 10
        assert gate.woken == 1 and gate.deferrals == 1


def test_no_deferral_while_the_receiver_is_not_behind_or_on_another_thread() -> None:
    segs = Segments()
    with gated_session() as (s, gate):
        x, y = b"x" * s.kcp.mss, b"y" * s.kcp.mss
        reader = Reader(s, 65536)
        run_batch(s, gate, segs.delivery(s, x), behind=False)
        assert reader.result() == x
        reader = Reader(s, 65536)
        gate.begin(now_ms())
        # a drain on another thread than the receiver's (a writer's release) wakes at once
        t = threading.Thread(target=s.deliver, args=(segs.delivery(s, y), True))
        t.start()
        t.join(5)
        assert reader.result() == y
        gate.end(False, now_ms())
        assert gate.deferrals == 0


def test_a_reader_whose_request_is_ready_is_woken_at_once() -> None:
    segs = Segments()
    with gated_session() as (s, gate):
        mss = s.kcp.mss
        want = 3 * mss - 10
        reader = Reader(s, want)
        gate.begin(now_ms())
        s.deliver(segs.delivery(s, b"1" * mss), True)
        assert not reader.notified()
        s.deliver(segs.delivery(s, b"2" * mss, b"3" * mss), True)
        assert reader.notified()  # what it asked for is ready
        gate.end(True, now_ms())
        assert reader.result() == (b"1" * mss + b"2" * mss + b"3" * mss)[:want]


def test_a_short_segment_ends_the_deferral() -> None:
    # a bulk sender fills its segments; a short one ends a write (a request)
    segs = Segments()
    with gated_session() as (s, gate):
        mss = s.kcp.mss
        reader = Reader(s, 65536)
        gate.begin(now_ms())
        s.deliver(segs.delivery(s, b"f" * mss), True)
        assert not reader.notified()
        s.deliver(segs.delivery(s, b"end"), True)
        assert reader.notified()
        gate.end(True, now_ms())
        assert reader.result() == b"f" * mss + b"end"


def test_message_mode_readers_are_never_deferred() -> None:
    segs = Segments()
    with gated_session(stream=False) as (s, gate):
        m = b"m" * s.kcp.mss
        reader = Reader(s, 65536)
        gate.begin(now_ms())
        s.deliver(segs.delivery(s, m), True)
        assert reader.notified()
        gate.end(True, now_ms())
        assert reader.result() == m


def test_a_deferred_reader_waits_at_most_max_ms_or_idle_ms() -> None:
    segs = Segments()
    with gated_session() as (s, gate):
        mss = s.kcp.mss
        gate.max_ms = 0  # deferred too long at the first batch end
        reader = Reader(s, 65536)
        run_batch(s, gate, segs.delivery(s, b"l" * mss), behind=True)
        assert reader.result() == b"l" * mss
        gate.max_ms = 10_000
        gate.idle_ms = 0  # the session's input paused (it did not, but the bound is 0)
        reader = Reader(s, 65536)
        run_batch(s, gate, segs.delivery(s, b"i" * mss), behind=True)
        assert reader.result() == b"i" * mss
        assert gate.deferrals == 2 and gate.woken == 2


def test_the_gate_looks_at_its_list_only_once_a_reader_may_be_due() -> None:
    # with 100 busy sessions most batch ends find nothing due: no walk of the list
    segs = Segments()
    with gated_session() as (s, gate):
        mss = s.kcp.mss
        reader = Reader(s, 65536)
        gate.begin(now_ms())
        s.deliver(segs.delivery(s, b"d" * mss), True)
        t0 = gate.now
        assert gate.deferred == [s]
        assert gate.check_at == t0 + min(gate.idle_ms, gate.max_ms)
        gate.end(True, gate.check_at - 1)  # behind, nothing due yet
        assert not reader.notified() and gate.deferred == [s]
        # the session's input paused for idle_ms: due, woken by the next batch end
        gate.end(True, s._input_ms + gate.idle_ms)
        assert reader.result() == b"d" * mss
        assert gate.woken == 1 and gate.deferred == []
        # a reader that stays deferred sets when the list is looked at next
        reader = Reader(s, 65536)
        gate.begin(now_ms())
        s.deliver(segs.delivery(s, b"e" * mss), True)
        since = s._wake_since
        gate.check_at = 0  # (as if another session's due time had come)
        gate.end(True, since)
        assert not reader.notified()
        assert gate.check_at == min(since + gate.max_ms, s._input_ms + gate.idle_ms)
        gate.end(False, since)  # the receiver caught up: every deferred reader is woken
        assert reader.result() == b"e" * mss


def test_a_deferred_wake_up_is_made_by_the_thread_holding_the_lock() -> None:
    # the receiver never waits for a session lock: the holder wakes the reader
    segs = Segments()
    with gated_session() as (s, gate):
        reader = Reader(s, 65536)
        held = b"h" * s.kcp.mss
        run_batch(s, gate, segs.delivery(s, held), behind=True)
        assert not reader.notified()
        s._lock.acquire()
        try:
            t = threading.Thread(target=gate.end, args=(False, now_ms()))
            t.start()
            t.join(5)
            assert not t.is_alive() and gate.deferred == []
            assert not reader.notified()  # the receiver left it to the holder
        finally:
            s._lock.release()
        assert reader.result() == held


def test_many_listener_sessions_deliver_everything_with_the_gate(tmp_path: Any) -> None:
    # end to end: several dialed sessions stream at once through one
    # listener; every byte arrives whatever the gate deferred
    n, size = 8, 300_000
    payloads = [bytes([65 + i]) * size for i in range(n)]
    with kcpsock.listen(("127.0.0.1", 0), **FAST) as ln:
        ln.settimeout(10)
        clients = [kcpsock.dial(ln.getsockname(), **FAST) for _ in range(n)]
        try:
            for c, p in zip(clients, payloads):
                c.settimeout(10)
                c.sendall(p[:1])
            conns = [ln.accept()[0] for _ in range(n)]
            got: dict[int, bytes] = {}

            def read(conn: kcpsock.KCPSocket) -> None:
                conn.settimeout(10)
                buf = bytearray()
                while len(buf) < size:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    buf += chunk
                got[buf[0]] = bytes(buf)

            readers = [threading.Thread(target=read, args=(c,), daemon=True) for c in conns]
            for r in readers:
                r.start()
            writers = [
                threading.Thread(target=c.sendall, args=(p[1:],), daemon=True)
                for c, p in zip(clients, payloads)
            ]
            for w in writers:
                w.start()
            for t in writers + readers:
                t.join(30)
                assert not t.is_alive()
            assert sorted(got.values()) == payloads
            for conn in conns:
                conn.close()
        finally:
            for c in clients:
                c.close()


def test_opening_a_stalled_window_tells_the_peer_at_once() -> None:
    # a listener session that filled its pending window before its first
    # recv tells the peer (WINS) when that recv opens the full window,
    # without waiting for an updater run (this session is never started)
    from tests.kcpwire import decode_segments

    segs = Segments()
    with unstarted_session(CONV) as (s, peer):
        s.kcp.wndsize(0, 4)
        s.deferred_rcvwnd = 64
        s.deliver(segs.delivery(s, *[b"w" * s.kcp.mss] * 4))
        acks = decode_segments(peer.recv(2048))
        assert acks[-1][0].wnd == 0  # the pending window is full: the peer stalls
        assert s.recv(65536, 0) == b"w" * s.kcp.mss * 4
        told = decode_segments(peer.recv(2048))
        assert [h.cmd for h, _ in told] == [84]  # IKCP_CMD_WINS
        assert told[0][0].wnd == 60  # 64, less the 4 segments still queued when it left


def test_a_streaming_session_moves_its_watch_timer_instead_of_running_it() -> None:
    # a reader waits (the close watch looks one answer time after the last
    # datagram): input that moves data makes the watch's look at once and
    # postpones the timer, instead of a timer run per answer time
    from kcpsock.updater import updater

    segs = Segments()
    with gated_session() as (s, _):
        s.wake_gate = None
        assert s.gone_timeout_ms > 0
        reader = Reader(s, 65536)
        u = 4000
        s.kcp.rx_rto = u
        now = now_ms()
        s._w_due = now + 1000  # the watch's next look, armed (as _watch does)
        s._w_mark = (s.kcp.rcv_nxt, s.kcp.snd_una)
        gap = s._w_gap
        updater.schedule(s, now + 1000)
        try:
            postponed = updater.postponed
            s.deliver(segs.delivery(s, b"s" * s.kcp.mss))
            assert updater.postponed == postponed + 1
            assert s.updater_deadline == s._w_due >= now + u
            assert s._w_mark == (s.kcp.rcv_nxt, s.kcp.snd_una) and s._w_gap == gap >> 1
            assert reader.result() == b"s" * s.kcp.mss
        finally:
            updater.cancel(s)


def test_the_listener_defers_only_while_datagrams_wait_in_its_read_ahead() -> None:
    # the listener's own batches (its receiver thread stays blocked: nothing
    # is sent to its socket; this thread hands it the batches, as the
    # receiver would, with the read-ahead's length set by hand)
    segs = Segments()
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        peer.bind(("127.0.0.1", 0))
        addr = peer.getsockname()
        with kcpsock.listen(("127.0.0.1", 0), **FAST) as ln:
            core = ln.core
            probe = Session(CONV, addr, core.transport, KCPConfig(**FAST))
            first = segs.delivery(probe, b"0")  # a genuine start: PUSH sn 0
            core._on_batch([(dg, addr) for dg in first.datagrams])
            s = core.accept(0)
            assert s.wake_gate is core.wake_gate
            assert s.recv(10, 0) == b"0"
            mss = s.kcp.mss
            reader = Reader(s, 65536)
            core._receiver.pending = 5  # more datagrams wait: the next batch follows at once
            try:
                d = segs.delivery(probe, b"a" * mss, b"b" * mss)
                core._on_batch([(dg, addr) for dg in d.datagrams])
                assert not reader.notified()
                assert core.wake_gate.deferred == [s]
            finally:
                core._receiver.pending = 0
            d = segs.delivery(probe, b"c" * mss)
            core._on_batch([(dg, addr) for dg in d.datagrams])  # caught up: woken
            assert reader.result() == b"a" * mss + b"b" * mss + b"c" * mss
            s.close()
    finally:
        peer.close()
