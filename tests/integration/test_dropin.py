"""Code written for TCP, run unchanged on kcpsock with no configuration.

Each test uses the defaults (no KCPConfig): the socket contract pieces
(copy, dup, SO_TYPE, MSG_WAITALL, recvfrom/sendto), write-then-read through
socketserver, and asyncio on a Listener.  Loopback only, bounded in time.
"""

from __future__ import annotations

import asyncio
import copy
import pickle
import socket
import socketserver
import threading
from collections.abc import Iterator

import pytest

import kcpsock
from kcpsock.socketserver import ThreadingKCPServer
from tests.helpers import server_address, wait_until

pytestmark = pytest.mark.usefixtures("finish_background_closes")


@pytest.fixture
def listener() -> Iterator[kcpsock.Listener]:
    ln = kcpsock.listen(("127.0.0.1", 0))
    ln.settimeout(5)
    yield ln
    ln.close()


@pytest.fixture
def pair(listener: kcpsock.Listener) -> Iterator[tuple[kcpsock.KCPSocket, kcpsock.KCPSocket]]:
    c = kcpsock.create_connection(listener.getsockname(), timeout=5)
    c.sendall(b"hi")
    s, _ = listener.accept()
    s.settimeout(5)
    assert s.recv(2, socket.MSG_WAITALL) == b"hi"
    yield c, s
    c.close()
    s.close()


def test_defaults_are_a_byte_stream(pair: tuple[kcpsock.KCPSocket, kcpsock.KCPSocket]) -> None:
    c, s = pair
    for part in (b"a", b"bb", b"ccc"):
        c.sendall(part)
    got = b""
    while len(got) < 6:
        got += s.recv(100)
    assert got == b"abbccc"
    cfg = kcpsock.KCPConfig()
    assert cfg.stream and cfg.sndwnd >= 1024 and cfg.nc and cfg.interval == 10
    kg = kcpsock.KCPConfig.kcp_go()
    assert (kg.stream, kg.sndwnd, kg.rcvwnd, kg.interval, kg.nc) == (False, 32, 32, 100, False)


def test_copy_and_pickle_raise_type_error_like_socket(
    pair: tuple[kcpsock.KCPSocket, kcpsock.KCPSocket], listener: kcpsock.Listener
) -> None:
    c, s = pair
    for obj in (c, listener):
        for op in (copy.copy, copy.deepcopy, pickle.dumps):
            with pytest.raises(TypeError, match="cannot pickle"):
                op(obj)
    # the failed copies closed nothing
    c.sendall(b"still open")
    assert s.recv(10, socket.MSG_WAITALL) == b"still open"


def test_dup_shares_the_session_until_the_last_close(
    pair: tuple[kcpsock.KCPSocket, kcpsock.KCPSocket],
) -> None:
    c, s = pair
    d = c.dup()
    assert d is not c and d.gettimeout() == c.gettimeout()
    c.close()
    assert c.fileno() == -1 and not d.closed
    d.sendall(b"via dup")
    assert s.recv(7, socket.MSG_WAITALL) == b"via dup"
    d.close()
    assert d.fileno() == -1
    assert d.session.state.value in ("closing", "closed")
    assert wait_until(lambda: d.session.finished, 5)  # delivered, then released
    with pytest.raises(OSError, match="Bad file descriptor"):
        d.dup()


def test_socket_options_agree_with_the_attributes(
    pair: tuple[kcpsock.KCPSocket, kcpsock.KCPSocket], listener: kcpsock.Listener
) -> None:
    c, _ = pair
    for obj in (c, listener):
        assert obj.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE) == obj.type == socket.SOCK_STREAM
        if hasattr(socket, "SO_PROTOCOL"):
            assert obj.getsockopt(socket.SOL_SOCKET, socket.SO_PROTOCOL) == obj.proto
        if hasattr(socket, "SO_DOMAIN"):
            assert obj.getsockopt(socket.SOL_SOCKET, socket.SO_DOMAIN) == obj.family


def test_msg_waitall_collects_everything(
    pair: tuple[kcpsock.KCPSocket, kcpsock.KCPSocket],
) -> None:
    c, s = pair

    def later() -> None:
        for i in range(5):
            c.sendall(b"%d" % i * 1000)

    t = threading.Thread(target=later)
    t.start()
    data = s.recv(5000, socket.MSG_WAITALL)
    t.join(5)
    assert data == b"".join(b"%d" % i * 1000 for i in range(5))
    buf = bytearray(3)
    c.sendall(b"x")
    c.sendall(b"yz")
    assert s.recv_into(buf, 0, socket.MSG_WAITALL) == 3 and buf == b"xyz"
    # a timeout part way returns what was collected (not lost)
    c.sendall(b"part")
    s.settimeout(0.2)
    assert s.recv(100, socket.MSG_WAITALL) == b"part"
    with pytest.raises(TimeoutError):
        s.recv(100, socket.MSG_WAITALL)


def test_recvfrom_and_sendto_as_on_a_connected_tcp_socket(
    pair: tuple[kcpsock.KCPSocket, kcpsock.KCPSocket],
) -> None:
    c, s = pair
    assert c.sendto(b"one", ("127.0.0.1", 9)) == 3  # the address is ignored
    assert c.sendto(b"two", 0, ("127.0.0.1", 9)) == 3
    assert s.recvfrom(3, socket.MSG_WAITALL) == (b"one", None)
    buf = bytearray(3)
    assert s.recvfrom_into(buf, 3, socket.MSG_WAITALL) == (3, None) and buf == b"two"
    assert c.sendmsg([b"se", memoryview(b"nd"), bytearray(b"msg")]) == 7
    assert s.recv(7, socket.MSG_WAITALL) == b"sendmsg"
    with pytest.raises(OSError, match="ancillary data"):
        c.sendmsg([b"x"], [(socket.SOL_SOCKET, 1, b"")])


class _Echo(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        for line in self.rfile:
            self.wfile.write(line)


def test_write_then_read_10000_lines_through_socketserver() -> None:
    """The client writes everything before reading: buffering must hold it."""
    with ThreadingKCPServer(("127.0.0.1", 0), _Echo) as server:
        server.daemon_threads = True
        t = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        t.start()
        try:
            with kcpsock.create_connection(server_address(server), timeout=20) as sock:
                f = sock.makefile("rwb")
                lines = [b"line %05d of the write-then-read test\n" % i for i in range(10000)]
                for line in lines:
                    f.write(line)
                f.flush()
                got = [f.readline() for _ in lines]
                f.close()
            assert got == lines
        finally:
            server.shutdown()
            t.join(5)


def test_asyncio_start_server_on_a_listener() -> None:
    async def main() -> bytes:
        ln = kcpsock.listen(("127.0.0.1", 0))

        async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            while data := await r.read(65536):
                w.write(data)
                await w.drain()
            w.close()

        server = await asyncio.start_server(handle, sock=ln)
        assert ln.core.backlog == 100  # asyncio's listen(100)
        c = kcpsock.dial(ln.getsockname())
        r, w = await asyncio.open_connection(sock=c)
        got = b""
        for i in range(50):
            w.write(b"line %d\n" % i)
            await w.drain()
            got += await asyncio.wait_for(r.readline(), 5)
        w.close()
        server.close()
        return got

    got = asyncio.run(asyncio.wait_for(main(), 30))
    assert got == b"".join(b"line %d\n" % i for i in range(50))
