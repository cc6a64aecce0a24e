"""kcpsock against the real kcp-go (tests/interop/peer), both ways.

For every cipher (kcptun's names), FEC off and 10/3, stream and message
mode:

* kcpsock client -> kcp-go echo server: kcpsock sends the test pattern while
  reading the echo and compares every byte;
* kcp-go echo client -> kcpsock echo server: the Go client compares the echo
  with the pattern, and the kcpsock server compares what it received.

Keys: both sides derive the key from the same password as kcptun does
(PBKDF2-SHA1, salt "kcp-go") and the cipher takes kcptun's prefix of it.
The pure-Python ciphers (twofish, tea, xtea, sm4, 3des) are slow, so their
cases move less data.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Optional

import pytest

import kcpsock
from kcpsock.config import KCPConfig
from kcpsock.relay import Relay
from tests.helpers import echo_roundtrip, has_ipv6_loopback
from tests.interop.gopeer import CIPHERS, DEFAULT_KEY, GoServer, pattern, peer_flags, run_client

pytestmark = pytest.mark.interop

SLOW = {"twofish", "tea", "xtea", "sm4", "3des"}
IO_TIMEOUT = 30.0
CHUNK = 8192


def size_for(crypt: str) -> int:
    return 100_000 if crypt in SLOW else 300_000


def config(stream: bool) -> KCPConfig:
    return KCPConfig(
        nodelay=1, interval=10, resend=2, nc=True, sndwnd=256, rcvwnd=256, mtu=1400, stream=stream
    )


def options(crypt: str, fec: tuple[int, int], stream: bool) -> dict[str, Any]:
    block = None
    if crypt != "null":
        block = kcpsock.new_block_crypt(crypt, kcpsock.derive_key(DEFAULT_KEY))
    return {
        "block": block,
        "data_shards": fec[0],
        "parity_shards": fec[1],
        "config": config(stream),
    }


def go_flags(crypt: str, fec: tuple[int, int], stream: bool) -> list[str]:
    return peer_flags(
        crypt=crypt,
        ds=fec[0],
        ps=fec[1],
        stream=stream,
        nodelay=(1, 10, 2, 1),
        wnd=(256, 256),
        mtu=1400,
    )


class KCPSockEchoServer:
    """A kcpsock listener echoing one session and recording what it got."""

    def __init__(self, address: tuple[str, int] = ("127.0.0.1", 0), **opts: Any) -> None:
        self.listener = kcpsock.listen(address, **opts)
        self.address = self.listener.getsockname()[:2]
        self.listener.settimeout(IO_TIMEOUT)
        self.received = bytearray()
        self.error: Optional[BaseException] = None
        self.session: Any = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            sock, _ = self.listener.accept()
            self.session = sock
            sock.settimeout(IO_TIMEOUT)
            while True:
                data = sock.recv(65536)
                if not data:
                    return
                self.received += data
                sock.sendall(data)
        except kcpsock.KCPClosedError:
            return
        except BaseException as exc:
            self.error = exc

    def close(self) -> None:
        self.listener.close()
        if self.session is not None:
            self.session.close()
        self.thread.join(IO_TIMEOUT)


CIPHER_PARAMS = ["null", *CIPHERS]
FEC_PARAMS = [pytest.param((0, 0), id="nofec"), pytest.param((10, 3), id="fec10-3")]
MODE_PARAMS = [pytest.param(False, id="message"), pytest.param(True, id="stream")]


@pytest.mark.parametrize("stream", MODE_PARAMS)
@pytest.mark.parametrize("fec", FEC_PARAMS)
@pytest.mark.parametrize("crypt", CIPHER_PARAMS)
def test_kcpsock_client_to_kcpgo_server(
    kcppeer: Path, crypt: str, fec: tuple[int, int], stream: bool
) -> None:
    data = pattern(17, size_for(crypt))
    with GoServer(kcppeer, "echo-server", go_flags(crypt, fec, stream)) as server:
        sock = kcpsock.dial(server.address, **options(crypt, fec, stream))
        try:
            sock.settimeout(IO_TIMEOUT)
            got = echo_roundtrip(sock, data, CHUNK)
        finally:
            sock.close()
    assert got == data


@pytest.mark.parametrize("stream", MODE_PARAMS)
@pytest.mark.parametrize("fec", FEC_PARAMS)
@pytest.mark.parametrize("crypt", CIPHER_PARAMS)
def test_kcpgo_client_to_kcpsock_server(
    kcppeer: Path, crypt: str, fec: tuple[int, int], stream: bool
) -> None:
    n = size_for(crypt)
    server = KCPSockEchoServer(**options(crypt, fec, stream))
    try:
        result = run_client(
            kcppeer,
            "echo-client",
            server.address,
            [*go_flags(crypt, fec, stream), f"-bytes={n}", "-seed=23", "-chunk=8192"],
            timeout=IO_TIMEOUT,
        )
    finally:
        server.close()
    assert result["bytes"] == str(n)
    assert server.error is None, server.error
    assert bytes(server.received) == pattern(23, n)


def test_message_boundaries_with_kcpgo(kcppeer: Path) -> None:
    """Message mode: every send of <= mss bytes is echoed by kcp-go as one
    message and comes back as exactly one recv.
    """
    opts = options("aes", (10, 3), False)
    sizes = [1 + (i * 211) % 1340 for i in range(200)]
    with GoServer(kcppeer, "echo-server", go_flags("aes", (10, 3), False)) as server:
        sock = kcpsock.dial(server.address, **opts)
        try:
            sock.settimeout(IO_TIMEOUT)
            msgs = [pattern(i, n) for i, n in enumerate(sizes)]
            got = []
            for m in msgs:
                sock.sendall(m)
                got.append(sock.recv(65536))
        finally:
            sock.close()
    assert got == msgs


@pytest.mark.parametrize("direction", ["kcpsock-client", "kcpgo-client"])
def test_fec_interop_through_lossy_relay(kcppeer: Path, direction: str) -> None:
    """10% loss both ways, aes + FEC 10/3: parity from either implementation
    repairs the other's losses, and everything arrives intact.
    """
    crypt, fec, stream = "aes", (10, 3), True
    n = 150_000
    recovered_before = kcpsock.snmp.copy().FECRecovered
    if direction == "kcpsock-client":
        data = pattern(31, n)
        with (
            GoServer(kcppeer, "echo-server", go_flags(crypt, fec, stream)) as server,
            Relay(target=server.address, loss=0.1, seed=5) as relay,
        ):
            sock = kcpsock.dial(relay.address, **options(crypt, fec, stream))
            try:
                sock.settimeout(IO_TIMEOUT)
                got = echo_roundtrip(sock, data, CHUNK)
            finally:
                sock.close()
            assert relay.up.dropped > 0 and relay.down.dropped > 0
        assert got == data
    else:
        echo = KCPSockEchoServer(**options(crypt, fec, stream))
        try:
            with Relay(target=echo.address, loss=0.1, seed=6) as relay:
                result = run_client(
                    kcppeer,
                    "echo-client",
                    relay.address,
                    [*go_flags(crypt, fec, stream), f"-bytes={n}", "-seed=37"],
                    timeout=IO_TIMEOUT,
                )
                assert relay.up.dropped > 0 and relay.down.dropped > 0
        finally:
            echo.close()
        assert result["bytes"] == str(n)
        assert bytes(echo.received) == pattern(37, n)
    # kcpsock's side recovered some of its losses from kcp-go's parity (as
    # a client, or as a listener routing parity, which carries no conv).
    assert kcpsock.snmp.copy().FECRecovered > recovered_before


KNOBS = [
    pytest.param(
        {"mtu": 576, "wnd": 32, "nodelay": (1, 10, 2, 1), "ack_nodelay": True},
        id="mtu576-wnd32-acknodelay",
    ),
    pytest.param(
        {"mtu": 1500, "wnd": 512, "nodelay": (0, 40, 2, 1), "ack_nodelay": False},
        id="mtu1500-normal-mode",
    ),
    pytest.param(
        {"mtu": 1200, "wnd": 128, "nodelay": (0, 100, 0, 0), "ack_nodelay": False},
        id="kcpgo-defaults-congestion-control",
    ),
]


@pytest.mark.parametrize("knobs", KNOBS)
@pytest.mark.parametrize("direction", ["kcpsock-client", "kcpgo-client"])
def test_other_profiles(kcppeer: Path, knobs: dict[str, Any], direction: str) -> None:
    """MTU, windows, nodelay profiles and ack-nodelay set alike on both sides."""
    crypt, fec, stream = "salsa20", (10, 3), False
    nd, interval, resend, nc = knobs["nodelay"]
    cfg = KCPConfig(
        nodelay=nd,
        interval=interval,
        resend=resend,
        nc=bool(nc),
        sndwnd=knobs["wnd"],
        rcvwnd=knobs["wnd"],
        mtu=knobs["mtu"],
        ack_nodelay=knobs["ack_nodelay"],
        stream=stream,
    )
    opts = {**options(crypt, fec, stream), "config": cfg}
    flags = peer_flags(
        crypt=crypt,
        ds=fec[0],
        ps=fec[1],
        stream=stream,
        nodelay=knobs["nodelay"],
        wnd=(knobs["wnd"], knobs["wnd"]),
        mtu=knobs["mtu"],
        ack_nodelay=knobs["ack_nodelay"],
    )
    n = 200_000
    if direction == "kcpsock-client":
        data = pattern(41, n)
        with GoServer(kcppeer, "echo-server", flags) as server:
            sock = kcpsock.dial(server.address, **opts)
            try:
                sock.settimeout(IO_TIMEOUT)
                assert echo_roundtrip(sock, data, CHUNK) == data
            finally:
                sock.close()
    else:
        echo = KCPSockEchoServer(**opts)
        try:
            result = run_client(
                kcppeer,
                "echo-client",
                echo.address,
                [*flags, f"-bytes={n}", "-seed=43"],
                timeout=IO_TIMEOUT,
            )
        finally:
            echo.close()
        assert result["bytes"] == str(n)
        assert bytes(echo.received) == pattern(43, n)


def test_stdlib_stream_handler_serves_a_kcpgo_client(kcppeer: Path) -> None:
    """kcpsock.socketserver + socketserver.StreamRequestHandler, unchanged,
    serving the real kcp-go client (aes + FEC 10/3, stream mode).
    """
    import socketserver

    from kcpsock.socketserver import ThreadingKCPServer

    n = 200_000
    received = bytearray()

    class Echo(socketserver.StreamRequestHandler):
        timeout = IO_TIMEOUT

        def handle(self) -> None:
            while len(received) < n:
                data = self.rfile.read1(65536)
                if not data:
                    return
                received.extend(data)
                self.wfile.write(data)

    crypt, fec, stream = "aes", (10, 3), True
    server = ThreadingKCPServer(("127.0.0.1", 0), Echo, **options(crypt, fec, stream))
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.5}, daemon=True
    )
    thread.start()
    server_addr = server.server_address
    assert isinstance(server_addr, tuple)
    try:
        result = run_client(
            kcppeer,
            "echo-client",
            server_addr[:2],
            [*go_flags(crypt, fec, stream), f"-bytes={n}", "-seed=47"],
            timeout=IO_TIMEOUT,
        )
    finally:
        server.shutdown()
        thread.join(IO_TIMEOUT)
        server.server_close()
    assert result["bytes"] == str(n)
    assert bytes(received) == pattern(47, n)


def test_kcpgo_client_with_wrong_key_opens_no_session(kcppeer: Path) -> None:
    """Packets under another key fail the CRC: counted, dropped, no session."""
    import subprocess

    server = KCPSockEchoServer(**options("aes", (0, 0), False))
    before = kcpsock.snmp.copy().InCsumErrors
    try:
        host, port = server.address
        proc = subprocess.run(
            [
                str(kcppeer),
                "-mode=echo-client",
                f"-connect={host}:{port}",
                "-timeout=1s",
                "-bytes=10000",
                *peer_flags(crypt="aes", key="another password"),
            ],
            capture_output=True,
            text=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
        )
        assert proc.returncode != 0 and "timeout" in proc.stdout
        assert server.listener.session_count == 0
        assert server.session is None
    finally:
        server.close()
    assert kcpsock.snmp.copy().InCsumErrors > before


def test_many_kcpgo_clients_at_once(kcppeer: Path) -> None:
    """Ten kcp-go clients (aes + FEC 10/3) in parallel against one kcpsock
    listener: demultiplexing by (address, conv), parity routed per address.
    """
    import subprocess

    crypt, fec, stream = "aes", (10, 3), False
    listener = kcpsock.listen(("127.0.0.1", 0), **options(crypt, fec, stream))
    host, port = listener.getsockname()[:2]
    sessions: list[Any] = []
    errors: list[BaseException] = []

    def echo(sock: Any) -> None:
        try:
            sock.settimeout(IO_TIMEOUT)
            while True:
                data = sock.recv(65536)
                if not data:
                    return
                sock.sendall(data)
        except kcpsock.KCPClosedError:
            return
        except BaseException as exc:
            errors.append(exc)

    def accept_loop() -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            sessions.append(sock)
            threading.Thread(target=echo, args=(sock,), daemon=True).start()

    acceptor = threading.Thread(target=accept_loop, daemon=True)
    acceptor.start()
    n = 100_000
    procs = [
        subprocess.Popen(
            [
                str(kcppeer),
                "-mode=echo-client",
                f"-connect={host}:{port}",
                f"-timeout={int(IO_TIMEOUT)}s",
                f"-bytes={n}",
                f"-seed={100 + i}",
                *go_flags(crypt, fec, stream),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            stdin=subprocess.DEVNULL,
        )
        for i in range(10)
    ]
    try:
        outputs = [p.communicate(timeout=IO_TIMEOUT + 10)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(5)
        listener.close()
        for s in sessions:
            s.close()
        acceptor.join(IO_TIMEOUT)
    assert [p.returncode for p in procs] == [0] * 10, outputs
    assert all(o.startswith(f"OK bytes={n} ") for o in outputs), outputs
    assert len(sessions) == 10
    assert len({s.conv for s in sessions}) == 10
    assert not errors, errors


def test_caller_sockets_with_kcpgo(kcppeer: Path) -> None:
    """dial(sock=, conv=) (kcp-go NewConn3) and listen(sock=) (ServeConn)
    against kcp-go; the caller's sockets stay open after close.
    """
    import socket

    crypt, fec, stream = "aes", (10, 3), False
    opts = options(crypt, fec, stream)
    flags = go_flags(crypt, fec, stream)
    with GoServer(kcppeer, "echo-server", flags) as server:
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", 0))
        try:
            sock = kcpsock.dial(server.address, sock=udp, conv=0x12345678, **opts)
            try:
                sock.settimeout(IO_TIMEOUT)
                assert sock.conv == 0x12345678
                data = pattern(51, 100_000)
                assert echo_roundtrip(sock, data, CHUNK) == data
            finally:
                sock.close()
            assert udp.fileno() != -1
        finally:
            udp.close()

    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    try:
        listener = kcpsock.listen(None, sock=udp, **opts)
        received = bytearray()

        def serve() -> None:
            s, _ = listener.accept()
            s.settimeout(IO_TIMEOUT)
            try:
                while len(received) < 100_000:
                    data = s.recv(65536)
                    received.extend(data)
                    s.sendall(data)
            finally:
                s.close()

        listener.settimeout(IO_TIMEOUT)
        t = threading.Thread(target=serve, daemon=True)
        t.start()
        try:
            result = run_client(
                kcppeer,
                "echo-client",
                udp.getsockname()[:2],
                [*flags, "-bytes=100000", "-seed=53"],
                timeout=IO_TIMEOUT,
            )
        finally:
            t.join(IO_TIMEOUT)
            listener.close()
        assert result["bytes"] == "100000"
        assert bytes(received) == pattern(53, 100_000)
        assert udp.fileno() != -1
    finally:
        udp.close()


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback")
def test_ipv6_both_ways(kcppeer: Path) -> None:
    crypt, fec, stream = "salsa20", (10, 3), True
    opts = options(crypt, fec, stream)
    flags = go_flags(crypt, fec, stream)
    with GoServer(kcppeer, "echo-server", flags, listen="[::1]:0") as server:
        assert server.address[0] == "::1"
        sock = kcpsock.dial(server.address, **opts)
        try:
            sock.settimeout(IO_TIMEOUT)
            data = pattern(61, 100_000)
            assert echo_roundtrip(sock, data, CHUNK) == data
        finally:
            sock.close()
    echo = KCPSockEchoServer(("::1", 0), **opts)
    assert echo.address[0] == "::1"
    try:
        result = run_client(
            kcppeer,
            "echo-client",
            echo.address,
            [*flags, "-bytes=100000", "-seed=67"],
            timeout=IO_TIMEOUT,
        )
    finally:
        echo.close()
    assert result["bytes"] == "100000"
    assert bytes(echo.received) == pattern(67, 100_000)
