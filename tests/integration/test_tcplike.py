"""The end of a conversation and readiness, as TCP users expect them (loopback, bounded).

close() loses nothing (even through a lossy relay), vanished peers are
detected by keep-alive probes, create_connection waits for the peer,
ICMP port unreachable is ConnectionRefusedError, fileno() tells the truth
for writing, and socketserver handlers of clients that left end by
themselves.
"""

from __future__ import annotations

import asyncio
import os
import select
import selectors
import signal
import socket
import socketserver
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import kcpsock
from kcpsock.kcp import DATA
from kcpsock.relay import Relay
from kcpsock.socketserver import ThreadingKCPServer
from tests.helpers import recv_exact, server_address, wait_until

#: short keep-alive for tests: probe after 0.2 s of silence, dead after 1 s
QUICK: dict[str, Any] = dict(keepalive_interval=0.2, keepalive_timeout=1.0)


pytestmark = pytest.mark.usefixtures("finish_background_closes")


@pytest.fixture
def listener() -> Iterator[kcpsock.Listener]:
    ln = kcpsock.listen(("127.0.0.1", 0), **QUICK)
    ln.settimeout(5)
    yield ln
    ln.close()


# ------------------------------------------------------------------- close


def test_sendall_then_close_delivers_everything(listener: kcpsock.Listener) -> None:
    data = os.urandom(10_000)
    c = kcpsock.create_connection(listener.getsockname(), timeout=5)
    c.sendall(data)
    c.close()  # at once: KCP has no FIN, the session finishes in the background
    s, _ = listener.accept()
    s.settimeout(5)
    assert recv_exact(s, len(data)) == data
    assert wait_until(lambda: c.session.finished, 5)
    s.close()


def test_close_delivers_through_loss_in_the_background() -> None:
    data = os.urandom(300_000)
    with kcpsock.listen(("127.0.0.1", 0)) as ln:
        ln.settimeout(10)
        with Relay(target=ln.getsockname()[:2], loss=0.1, seed=3) as relay:
            c = kcpsock.dial(relay.address)
            c.sendall(data)
            t0 = time.monotonic()
            c.close()
            returned = time.monotonic() - t0
            assert c.session.state.value == "closing"  # still delivering
            s, _ = ln.accept()
            s.settimeout(20)
            got = recv_exact(s, len(data))
            assert got == data
            assert wait_until(lambda: c.session.finished, 20)
            assert relay.up.dropped > 0
            s.close()
    assert returned < 1.0  # close() did not wait for the transfer


def test_linger_zero_is_kcp_gos_close_and_linger_n_blocks(listener: kcpsock.Listener) -> None:
    c = kcpsock.dial(listener.getsockname(), linger=0)
    c.sendall(b"x" * 100_000)
    c.close()
    assert c.session.finished  # at once: what was not acknowledged is dropped
    c = kcpsock.dial(listener.getsockname(), linger=5.0)
    c.sendall(b"y" * 30_000)  # (fits the window of a session not accepted yet)
    c.close()  # blocks until acknowledged
    assert c.session.finished and c.session.kcp.waitsnd() == 0


# ------------------------------------------------------------- dead peers


def test_idle_but_alive_peer_is_kept_by_probes(listener: kcpsock.Listener) -> None:
    c = kcpsock.create_connection(listener.getsockname(), timeout=5, **QUICK)
    s, _ = listener.accept()
    time.sleep(2.0)  # not synchronisation: idle twice as long as the timeout
    assert c.session.failure is None and s.session.failure is None
    assert c.segments_received > 0  # the peer answered the probes (WINS)
    c.sendall(b"still here")
    s.settimeout(5)
    assert s.recv(100) == b"still here"
    c.close()
    s.close()


def test_closed_client_ends_the_server_side_within_the_timeout(
    listener: kcpsock.Listener,
) -> None:
    c = kcpsock.create_connection(listener.getsockname(), timeout=5, **QUICK)
    c.sendall(b"bye")
    s, _ = listener.accept()
    s.settimeout(10)
    assert s.recv(3) == b"bye"
    c.close()
    t0 = time.monotonic()
    assert s.recv(10) == b""  # the peer is gone: end of stream
    assert time.monotonic() - t0 < 5
    assert s.session.failure == "timeout"
    with pytest.raises(ConnectionResetError, match="stopped answering"):
        s.send(b"anyone?")
    s.close()


def test_killed_client_process_is_detected() -> None:
    with kcpsock.listen(("127.0.0.1", 0), **QUICK) as ln:
        ln.settimeout(10)
        host, port = ln.getsockname()[:2]
        code = textwrap.dedent(f"""
            import sys, kcpsock
            c = kcpsock.create_connection(({host!r}, {port}), timeout=10)
            c.sendall(b"ready")
            print("ready", flush=True)
            sys.stdin.read()
        """)
        proc = subprocess.Popen(
            [sys.executable, "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
            s, _ = ln.accept()
            s.settimeout(10)
            assert s.recv(5) == b"ready"
            proc.send_signal(signal.SIGKILL)
            t0 = time.monotonic()
            assert s.recv(10) == b""
            assert time.monotonic() - t0 < 5
            s.close()
        finally:
            proc.kill()
            proc.wait(10)


def test_closed_listener_ends_the_client() -> None:
    ln = kcpsock.listen(("127.0.0.1", 0), **QUICK)
    ln.settimeout(5)
    c = kcpsock.create_connection(ln.getsockname(), timeout=10, **QUICK)
    s, _ = ln.accept()
    s.close()
    ln.close()  # the UDP port closes: ICMP port unreachable or silence
    t0 = time.monotonic()
    c.sendall(b"hello?")
    assert c.recv(10) == b""
    assert time.monotonic() - t0 < 5
    assert c.session.failure in ("reset", "timeout")
    c.close()


def test_keepalive_can_be_turned_off() -> None:
    with kcpsock.listen(("127.0.0.1", 0), keepalive_timeout=0) as ln:
        ln.settimeout(5)
        c = kcpsock.dial(ln.getsockname(), keepalive_timeout=0)
        c.sendall(b"x")
        s, _ = ln.accept()
        assert wait_until(lambda: c.session.kcp.waitsnd() == 0, 5)
        out0 = c.segments_sent
        time.sleep(0.5)  # not synchronisation: longer than QUICK's probe interval
        assert c.segments_sent == out0  # no probes, no answers
        assert c.session.updater_deadline is None  # idle costs nothing
        c.close()
        s.close()


# -------------------------------------------------------- create_connection


def test_create_connection_waits_for_the_answer(listener: kcpsock.Listener) -> None:
    c = kcpsock.create_connection(listener.getsockname(), timeout=5)
    assert c.segments_received > 0  # returns only once the peer answered
    s, _ = listener.accept()  # the probe opened the conversation
    c.sendall(b"after the handshake")
    s.settimeout(5)
    assert recv_exact(s, 19) == b"after the handshake"
    c.close()
    s.close()


def test_create_connection_refused() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        addr = probe.getsockname()
    t0 = time.monotonic()
    with pytest.raises(ConnectionRefusedError, match="nothing listens"):
        kcpsock.create_connection(addr, timeout=30)
    assert time.monotonic() - t0 < 15  # refused promptly, not at the (30 s) timeout


def test_create_connection_times_out_on_a_mismatched_cipher() -> None:
    key = kcpsock.derive_key("secret")
    with kcpsock.listen(("127.0.0.1", 0), block=kcpsock.new_block_crypt("aes", key)) as ln:
        t0 = time.monotonic()
        with pytest.raises(TimeoutError, match="key, cipher"):
            kcpsock.create_connection(ln.getsockname(), timeout=0.5)
        assert time.monotonic() - t0 < 10  # generous: only a timeout ignored fails
        # the same settings connect
        c = kcpsock.create_connection(
            ln.getsockname(), timeout=5, block=kcpsock.new_block_crypt("aes", key)
        )
        c.close()


# --------------------------------------------------------------- readiness


def _fill_until_blocked(sock: kcpsock.KCPSocket, chunk: bytes) -> int:
    """Send (non-blocking) until BlockingIOError; return the bytes taken."""
    sent = 0
    for _ in range(100_000):
        try:
            sent += sock.send(chunk)
        except BlockingIOError:
            return sent
    raise AssertionError("send never blocked")


def test_fileno_is_writable_only_when_send_would_not_block(listener: kcpsock.Listener) -> None:
    c = kcpsock.dial(listener.getsockname(), sndwnd=8, rcvwnd=8, send_buffer=30_000)
    c.sendall(b"hi")
    s, _ = listener.accept()
    s.settimeout(5)
    assert s.recv(2) == b"hi"
    s.set_window_size(8, 8)
    assert select.select([], [c], [], 0)[1] == [c]
    c.setblocking(False)
    # fill until the peer's window has closed too (until then its ACKs
    # legitimately make room again, and select says so)
    sent = 0
    for _ in range(50):
        sent += _fill_until_blocked(c, b"f" * 4000)
        if not select.select([], [c], [], 0.2)[1]:
            break
    else:
        raise AssertionError("the send buffer never stayed full")
    # the peer does not read: not writable, and send would indeed block
    with pytest.raises(BlockingIOError):
        c.send(b"x")
    with selectors.DefaultSelector() as sel:
        sel.register(c, selectors.EVENT_WRITE)
        assert sel.select(0.1) == []
        # the peer reads: writable again, and send goes through
        got = bytearray()

        def reader() -> None:
            while len(got) < sent:
                got.extend(s.recv(65536))

        t = threading.Thread(target=reader)
        t.start()
        assert sel.select(5), "never became writable"
        assert c.send(b"g" * 10) == 10
        t.join(10)
    assert len(got) >= sent
    c.close()
    s.close()


def test_asyncio_drain_waits_without_spinning() -> None:
    """A slow reader: the writer's drain() sleeps instead of burning a core."""

    async def main() -> tuple[float, float]:
        ln = kcpsock.listen(("127.0.0.1", 0))
        paused = asyncio.Event()
        resume = asyncio.Event()
        total = 4_000_000

        async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            got = len(await r.readexactly(1000))
            paused.set()
            await resume.wait()
            while got < total:
                got += len(await r.read(65536))
            w.write(b"done")
            await w.drain()
            w.close()

        server = await asyncio.start_server(handle, sock=ln)
        c = kcpsock.dial(ln.getsockname(), send_buffer=100_000)
        r, w = await asyncio.open_connection(sock=c)
        w.write(b"a" * total)
        drain = asyncio.ensure_future(w.drain())
        await asyncio.wait_for(paused.wait(), 10)
        cpu0, t0 = time.process_time(), time.monotonic()
        await asyncio.sleep(1.0)  # the reader pauses; drain() must be waiting
        cpu, wall = time.process_time() - cpu0, time.monotonic() - t0
        assert not drain.done()
        resume.set()
        await asyncio.wait_for(drain, 30)
        assert await asyncio.wait_for(r.readexactly(4), 30) == b"done"
        w.close()
        server.close()
        return cpu, wall

    cpu, wall = asyncio.run(asyncio.wait_for(main(), 60))
    assert cpu < 0.5 * wall, (cpu, wall)  # spinning would take a whole core


# ------------------------------------------------------------- socketserver


class _Echo(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        for line in self.rfile:
            self.wfile.write(line)


def _handler_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith("Thread-") and t.daemon)


def test_200_clients_come_and_go_leaving_nothing() -> None:
    with ThreadingKCPServer(("127.0.0.1", 0), _Echo, **QUICK) as server:
        server.daemon_threads = True
        t = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        t.start()
        try:
            addr = server_address(server)
            for i in range(200):
                with kcpsock.create_connection(addr, timeout=10, **QUICK) as c:
                    f = c.makefile("rwb")
                    f.write(b"client %d\n" % i)
                    f.flush()
                    assert f.readline() == b"client %d\n" % i
                    f.close()
            listener = server.socket
            assert listener is not None
            # every handler ends by itself (its client is gone) and leaves no session
            assert wait_until(lambda: listener.session_count == 0, 20), listener.session_count
            assert wait_until(lambda: not server._active, 10)
            threads = [
                x
                for x in threading.enumerate()
                if x.name.startswith("Thread-") and "process_request" in x.name
            ]
            assert wait_until(lambda: not any(x.is_alive() for x in threads), 10)
        finally:
            server.shutdown()
            t.join(5)


def test_http_keep_alive_handler_ends_when_the_client_leaves() -> None:
    import http.client
    import http.server

    class Page(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            body = b"hello"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    with ThreadingKCPServer(("127.0.0.1", 0), Page, **QUICK) as server:
        server.daemon_threads = True
        t = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        t.start()
        try:
            host, port = server_address(server)
            conn = http.client.HTTPConnection(host, port, timeout=10)
            conn._create_connection = (  # type: ignore[attr-defined]
                lambda a, timeout=None, source=None: kcpsock.create_connection(
                    a, timeout, source, **QUICK
                )
            )
            for _ in range(3):
                conn.request("GET", "/")
                resp = conn.getresponse()
                assert resp.status == 200 and resp.read() == b"hello"
            conn.close()  # a kept-alive connection the client just drops
            listener = server.socket
            assert listener is not None
            assert wait_until(lambda: listener.session_count == 0, 20)
            assert wait_until(lambda: not server._active, 10)
        finally:
            server.shutdown()
            t.join(5)


# --------------------------------------------------------------------- TLS


def test_tls_over_kcp_with_memory_bios(listener: kcpsock.Listener) -> None:
    import ssl
    from pathlib import Path

    from kcpsock.tls import TLSSocket

    data_dir = Path(__file__).resolve().parents[1] / "data"
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(data_dir / "tls-cert.pem", data_dir / "tls-key.pem")
    client_ctx = ssl.create_default_context(cafile=str(data_dir / "tls-cert.pem"))
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            conn, _ = listener.accept()
            conn.settimeout(10)
            with TLSSocket(conn, server_ctx, server_side=True) as tls:
                while True:
                    data = tls.recv(65536)
                    if not data:
                        break
                    tls.sendall(data.upper())
        except BaseException as exc:  # reported below
            errors.append(exc)

    t = threading.Thread(target=serve)
    t.start()
    c = kcpsock.create_connection(listener.getsockname(), timeout=10)
    with TLSSocket(c, client_ctx, server_hostname="localhost") as tls:
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
        assert tls.getpeercert()["subject"] == ((("commonName", "localhost"),),)
        payload = os.urandom(200_000).hex().encode()
        tls.sendall(payload)
        got = bytearray()
        while len(got) < len(payload):
            got += tls.recv(65536)
        assert bytes(got) == payload.upper()
        tls.unwrap()  # close_notify: the server's recv returns b""
    t.join(10)
    assert not t.is_alive() and not errors, errors
    # a wrong name is refused by certificate checking, as with SSLSocket
    t = threading.Thread(target=serve)
    t.start()
    c = kcpsock.create_connection(listener.getsockname(), timeout=10)
    with pytest.raises(ssl.SSLCertVerificationError):
        TLSSocket(c, client_ctx, server_hostname="not-localhost")
    c.close()
    t.join(15)


# ----------------------------------------------------- buffering and setters


def _kcp_state(sock: kcpsock.KCPSocket) -> tuple[Any, ...]:
    k = sock.session.kcp
    return (
        int(k.nodelay),
        k.interval,
        k.fastresend,
        k.nocwnd,
        k.rx_minrto,
        k.snd_wnd,
        k.rcv_wnd,
        k.mtu,
        k.mss,
        k.stream,
    )


def test_setters_after_creation_equal_the_same_values_at_creation(
    listener: kcpsock.Listener,
) -> None:
    at_creation = kcpsock.dial(listener.getsockname(), config=kcpsock.KCPConfig.kcp_go(), **_TUNED)
    later = kcpsock.dial(listener.getsockname(), config=kcpsock.KCPConfig.kcp_go())
    later.set_nodelay(1, 10, 2, 1)
    later.set_window_size(1024, 1024)
    assert later.set_mtu(1400)
    later.set_stream_mode(True)
    assert _kcp_state(later) == _kcp_state(at_creation)
    # the send buffer (bytes) does not depend on how the window was set
    assert later.send_buffer == at_creation.send_buffer
    at_creation.close()
    later.close()


_TUNED: dict[str, Any] = dict(
    nodelay=1, interval=10, resend=2, nc=True, sndwnd=1024, rcvwnd=1024, stream=True
)


def test_tiny_writes_behind_a_full_window_merge_into_full_segments(
    listener: kcpsock.Listener,
) -> None:
    c = kcpsock.dial(listener.getsockname(), sndwnd=4, rcvwnd=4, send_buffer=200_000)
    c.sendall(b"0")
    s, _ = listener.accept()
    s.set_window_size(4, 4)  # and never reads: our window fills
    c.settimeout(5)
    for _ in range(15_000):
        c.sendall(b"0123456789")
    k = c.session.kcp
    queued = [len(data) for _, data in k.snd_queue]
    assert len(queued) >= 2
    assert all(n == k.mss for n in queued[:-1])  # 10-byte writes merged
    assert sum(queued) + sum(len(seg[DATA]) for seg in k.snd_buf) <= 200_001
    c.close()
    s.close()


def test_send_buffer_is_settable_and_bounds_send(listener: kcpsock.Listener) -> None:
    c = kcpsock.dial(listener.getsockname(), sndwnd=4, rcvwnd=4)
    c.sendall(b"0")
    s, _ = listener.accept()
    s.set_window_size(4, 4)
    c.set_send_buffer(5000)
    assert c.send_buffer == 5000 and c.figures()["send_buffer"] == 5000
    c.setblocking(False)
    assert _fill_until_blocked(c, b"b" * 1000) > 0
    assert c.figures()["queued_bytes"] <= 5000 + c.figures()["mss"]
    c.set_send_buffer(50_000)  # more room: send goes on at once
    assert c.send(b"c" * 1000) == 1000
    with pytest.raises(ValueError, match="nbytes"):
        c.set_send_buffer(0)
    c.close()
    s.close()
