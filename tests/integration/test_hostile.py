"""Hostile networks (issue 11): replays, reflections and session-table floods.

An attacker on the path replays captured datagrams from fresh source ports,
reflects a client's own datagrams back to it, and floods a listener with
forged conversations from one address.  Real UDP on loopback only: the
attacker is 127.0.0.2 where a second address is needed (Linux routes all of
127/8 to lo).  Every wait is bounded.
"""

from __future__ import annotations

import socket
import socketserver
import struct
import threading
from typing import Any

import pytest

import kcpsock
from kcpsock import KCP, KCPConfig
from kcpsock.codec import PacketCodec
from kcpsock.socketserver import ThreadingKCPServer
from kcpsock.stats import snmp
from tests.helpers import wait_until

KEY = kcpsock.derive_key("hostile tests")
CIPHERS = [("aes", KEY), ("aes-128-gcm", KEY[:16])]
FAST: dict[str, Any] = dict(nodelay=1, interval=10, resend=2, nc=True)
REQUEST = b"POST /transfer?to=alice&amount=100\n"


def _udp(host: str = "127.0.0.1") -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((host, 0))
    s.settimeout(5)
    return s


def _can_bind(host: str) -> bool:
    try:
        _udp(host).close()
    except OSError:
        return False
    return True


needs_127_0_0_2 = pytest.mark.skipif(not _can_bind("127.0.0.2"), reason="127.0.0.2 not usable")


def _client_datagrams(block: Any, conv: int, payload: bytes) -> list[bytes]:
    """What a kcp-go client sends first for ``payload``: encrypted KCP datagrams."""
    k = KCP(conv)
    k.send(payload)
    codec = PacketCodec(block)
    out: list[bytes] = []
    for now in (0, 10):  # the first flush sends no data (cwnd starts at 0)
        for dg in k.flush(now):
            out += codec.encode(dg)
    assert out
    return out


def _rss_kb() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# ------------------------------------------------------------------- replay


@pytest.mark.parametrize(("name", "key"), CIPHERS, ids=[c[0] for c in CIPHERS])
def test_replays_from_fresh_ports_open_nothing(name: str, key: bytes) -> None:
    block = kcpsock.new_block_crypt(name, key)
    with kcpsock.listen(("127.0.0.1", 0), block=block, **FAST) as ln:
        ln.settimeout(5)
        target = ln.getsockname()
        wire = _client_datagrams(block, 0x5EED, REQUEST)
        victim = _udp()
        attackers = [_udp() for _ in range(3)]
        try:
            before = snmp.InReplays
            for p in wire:
                victim.sendto(p, target)
            s, _ = ln.accept()
            s.settimeout(5)
            assert s.recv(100) == REQUEST  # the victim's request, once
            for a in attackers:  # the captured datagrams, from fresh ports
                for p in wire:
                    a.sendto(p, target)
            for p in wire:  # and from the victim's own port again
                victim.sendto(p, target)
            assert wait_until(lambda: snmp.InReplays - before >= 4 * len(wire))
            ln.settimeout(0)
            with pytest.raises(BlockingIOError):
                ln.accept()  # no new session
            s.settimeout(0.2)
            with pytest.raises(TimeoutError):
                s.recv(100)  # delivered nothing twice
            assert ln.session_count == 1
            assert ln.core.replay is not None and ln.core.replay.cache.replays >= 4 * len(wire)
            s.close()
        finally:
            victim.close()
            for a in attackers:
                a.close()


@pytest.mark.parametrize(("name", "key"), CIPHERS, ids=[c[0] for c in CIPHERS])
def test_reflected_datagrams_are_dropped(name: str, key: bytes) -> None:
    """The client's own datagrams sent back from the server's address deliver nothing."""
    block = kcpsock.new_block_crypt(name, key)
    server = _udp()  # the "server" is a raw socket: it sees the client's datagrams
    try:
        c = kcpsock.dial(server.getsockname(), block=block, conv=0x600D, timeout=5, **FAST)
        try:
            before = snmp.InReplays
            c.sendall(b"my own secret bytes")
            captured: list[bytes] = []
            while len(captured) < 3:  # the PUSH and its retransmissions
                data, addr = server.recvfrom(2048)
                captured.append(data)
                server.sendto(data, addr)  # reflect it
            assert wait_until(lambda: snmp.InReplays - before >= len(captured))
            c.settimeout(0.3)
            with pytest.raises(TimeoutError):
                c.recv(100)
            # a real server datagram (fresh nonce, same key and conv) still gets through
            for p in _client_datagrams(block, 0x600D, b"reply"):
                server.sendto(p, addr)
            c.settimeout(5)
            assert c.recv(100) == b"reply"
        finally:
            c.close()
    finally:
        server.close()


def test_plain_mode_has_no_replay_filter() -> None:
    with kcpsock.listen(("127.0.0.1", 0)) as ln:
        assert ln.core.replay is None
    with kcpsock.listen(("127.0.0.1", 0), block=kcpsock.new_block_crypt("aes", KEY)) as ln:
        assert ln.core.replay is not None
    with kcpsock.listen(
        ("127.0.0.1", 0), block=kcpsock.new_block_crypt("aes", KEY), replay_cache=0
    ) as ln:
        assert ln.core.replay is None


# ---------------------------------------------------------------- admission


def _push(conv: int, sn: int = 0, payload: bytes = b"x") -> bytes:
    return struct.pack("<IBBHIIII", conv, 81, 0, 32, 0, sn, 0, len(payload)) + payload


def _ack(conv: int, sn: int = 0) -> bytes:
    return struct.pack("<IBBHIIII", conv, 82, 0, 32, 0, sn, 0, 0)


def test_ack_only_and_out_of_sequence_datagrams_open_nothing() -> None:
    with kcpsock.listen(("127.0.0.1", 0)) as ln:
        raw = _udp()
        try:
            for conv in range(1, 51):
                raw.sendto(_ack(conv), ln.getsockname())
                raw.sendto(_push(conv + 1000, sn=5), ln.getsockname())
            assert wait_until(lambda: ln.refused["unsolicited"] == 100)
            assert ln.session_count == 0
            # a WASK (create_connection's probe) opens one
            raw.sendto(struct.pack("<IBBHIIII", 77, 83, 0, 32, 0, 0, 0, 0), ln.getsockname())
            ln.settimeout(5)
            s, _ = ln.accept()
            assert s.conv == 77
            s.close()
        finally:
            raw.close()


def test_unaccepted_session_buffers_little_and_opens_its_window_at_accept() -> None:
    cfg = KCPConfig(rcvwnd=1024, pending_rcvwnd=16)
    with kcpsock.listen(("127.0.0.1", 0), config=cfg) as ln:
        raw = _udp()
        try:
            for sn in range(200):
                raw.sendto(_push(9, sn, b"y" * 1000), ln.getsockname())
            assert wait_until(lambda: ln.session_count == 1)
            session = ln.core.sessions()[0]
            assert wait_until(lambda: snmp.InPkts > 0 and session.kcp.rcv_nxt > 0)
            k = session.kcp
            assert k.rcv_wnd == 16
            assert len(k.rcv_queue) <= 16 and len(k.rcv_buf) <= 16
            ln.settimeout(5)
            s, _ = ln.accept()
            assert s.session is session and session.kcp.rcv_wnd == 1024
            s.close()
        finally:
            raw.close()


def test_unaccepted_sessions_expire() -> None:
    with kcpsock.listen(("127.0.0.1", 0), accept_timeout=0.2) as ln:
        raw = _udp()
        try:
            raw.sendto(_push(1), ln.getsockname())
            assert wait_until(lambda: ln.session_count == 1)

            def expired() -> bool:
                raw.sendto(b"tick", ln.getsockname())  # each batch checks the queue
                return ln.refused["expired"] == 1

            assert wait_until(expired, timeout=5)
            assert wait_until(lambda: ln.session_count == 0)
            ln.settimeout(0)
            with pytest.raises(BlockingIOError):
                ln.accept()
        finally:
            raw.close()


@needs_127_0_0_2
def test_flood_from_one_address_leaves_another_address_served() -> None:
    """2,000 forged conversations from one socket (the issue's ThreadingKCPServer
    case): sessions and threads stay bounded, a client elsewhere is served.
    """

    class Lines(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            try:
                for line in self.rfile:
                    self.wfile.write(line.upper())
            except OSError:
                pass  # a forged peer's session shut down by server_close

    class Server(ThreadingKCPServer):
        max_threads = 16
        max_threads_per_address = 4
        close_grace = 0.5

    cfg = KCPConfig(max_sessions_per_address=64, backlog_per_address=8, accept_timeout=5.0, **FAST)
    threads_before = threading.active_count()
    rss_before = _rss_kb()
    server = Server(("127.0.0.1", 0), Lines, config=cfg)
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    t.start()
    attacker = _udp("127.0.0.2")
    try:
        target: Any = server.server_address
        listener = server.socket
        assert listener is not None
        opens = snmp.PassiveOpens

        def seen() -> int:
            return sum(listener.refused.values()) + snmp.PassiveOpens - opens

        for burst in range(10):  # in bursts, so that the kernel buffer drops none
            for i in range(200):
                attacker.sendto(_push(0x10000 + burst * 200 + i), target)
            want = (burst + 1) * 200 - 5
            assert wait_until(lambda: seen() >= want, timeout=20)  # noqa: B023
        assert listener.session_count <= 64
        assert server.active_threads <= 16
        assert threading.active_count() - threads_before <= 16 + 4
        assert listener.refused["per_address"] + listener.refused["backlog_per_address"] > 0
        assert wait_until(lambda: server.refused_requests > 0)
        # the legitimate client, from 127.0.0.1
        with kcpsock.dial(target, timeout=10, **FAST) as c:
            c.sendall(b"hello\n")
            got = b""
            while not got.endswith(b"\n"):
                piece = c.recv(100)
                assert piece
                got += piece
            assert got == b"HELLO\n"
        assert _rss_kb() - rss_before < 100_000  # KB: bounded (was +67 MB for 1,917 threads)
    finally:
        attacker.close()
        server.shutdown()
        server.server_close()
        t.join(10)
    assert not t.is_alive()


def test_threading_server_max_threads_queues_in_the_backlog() -> None:
    release = threading.Event()
    started = threading.Semaphore(0)

    class Hold(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            self.request.recv(10)
            started.release()
            release.wait(10)
            self.request.sendall(b"done")

    class Server(ThreadingKCPServer):
        max_threads = 2
        close_grace = 0.5

    server = Server(("127.0.0.1", 0), Hold, **FAST)
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    t.start()
    clients = []
    try:
        for _ in range(4):
            address: Any = server.server_address
            c = kcpsock.dial(address, timeout=10, **FAST)
            c.sendall(b"go")
            clients.append(c)
        assert started.acquire(timeout=5) and started.acquire(timeout=5)
        assert not started.acquire(timeout=0.3)  # the other two wait in the backlog
        assert server.active_threads == 2
        release.set()
        for c in clients:
            assert c.recv(10) == b"done"
    finally:
        release.set()
        for c in clients:
            c.close()
        server.shutdown()
        server.server_close()
        t.join(10)


def test_max_threads_must_be_sane() -> None:
    class Bad(ThreadingKCPServer):
        max_threads = 0

    with pytest.raises(ValueError, match="max_threads"):
        Bad(("127.0.0.1", 0), socketserver.BaseRequestHandler)
