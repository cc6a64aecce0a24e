"""kcpsock's kcptun mode against Debian's kcptun 20210922, both directions.

* kcptun-client -> ``kcpsock serve --forward --kcptun`` -> TCP echo;
* ``kcpsock tunnel --kcptun`` -> kcptun-server -> TCP echo;

each with kcptun's defaults (snappy, aes, FEC 10/3, smux v1, mode fast) and
with ``--nocomp --smuxver 2 --crypt salsa20``: four TCP connections at once
(3.25 MB in all, half random, half compressible), every echoed byte checked.
Mismatched options must pass nothing and end the session with a clear line.
Then kcptun's option matrix, compact (``test_option_matrix``: every cipher
kcptun offers, each row with other options a user sets, spelled as kcptun's
README spells them for kcptun), and one JSON config shape read by both
(``-c``); about 6 s in all.

Skipped when kcptun is absent, unless KCPSOCK_REQUIRE_INTEROP=1.
"""

from __future__ import annotations

import json
import re
import socket
from typing import Any

import pytest

from tests.integration.test_cli import procs  # noqa: F401 - fixture
from tests.interop.kcptun import KEY, EchoServer, Kcptun, echo_through, free_port, require_kcptun

pytestmark = pytest.mark.interop

SIZES = [1_500_000, 1_000_000, 500_000, 250_000]
CONFIGS = [
    pytest.param([], id="defaults-snappy-aes-fec10-3-smux1"),
    pytest.param(["--nocomp", "--smuxver", "2", "--crypt", "salsa20"], id="nocomp-smux2-salsa20"),
]


@pytest.fixture
def echo() -> Any:
    server = EchoServer()
    yield server
    server.close()


@pytest.fixture
def kcptun() -> Any:
    client_bin, server_bin = require_kcptun()
    started: list[Kcptun] = []

    def start(side: str, *args: str) -> Kcptun:
        binary = client_bin if side == "client" else server_bin
        proc = Kcptun([binary, *args, "--key", KEY, "--quiet"])
        started.append(proc)
        proc.wait_ready()
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.mark.parametrize("options", CONFIGS)
def test_kcptun_client_to_kcpsock_server(
    kcptun: Any,
    procs: Any,  # noqa: F811
    echo: EchoServer,
    options: list[str],
) -> None:
    server = procs(
        "serve",
        "127.0.0.1:0",
        "--forward",
        f"127.0.0.1:{echo.port}",
        "--kcptun",
        "--key",
        KEY,
        *options,
    )
    host, port = server.address()
    local = free_port(socket.SOCK_STREAM)
    kcptun("client", "-l", f"127.0.0.1:{local}", "-r", f"{host}:{port}", *options)
    assert echo_through(("127.0.0.1", local), SIZES) == [True] * len(SIZES)
    assert echo.connections == len(SIZES)
    assert server.interrupt() == 130
    assert "Traceback" not in server.stderr.decode()


@pytest.mark.parametrize("options", CONFIGS)
def test_kcpsock_tunnel_to_kcptun_server(
    kcptun: Any,
    procs: Any,  # noqa: F811
    echo: EchoServer,
    options: list[str],
) -> None:
    port = free_port(socket.SOCK_DGRAM)
    kcptun("server", "-l", f"127.0.0.1:{port}", "-t", f"127.0.0.1:{echo.port}", *options)
    tunnel = procs(
        "tunnel", "-l", "127.0.0.1:0", "-r", f"127.0.0.1:{port}", "--kcptun", "--key", KEY, *options
    )
    host, local = tunnel.address()
    assert echo_through((host, local), SIZES) == [True] * len(SIZES)
    assert echo.connections == len(SIZES)
    assert tunnel.interrupt() == 130
    assert "Traceback" not in tunnel.stderr.decode()


def test_kcptun_client_conn_3_round_robin(kcptun: Any, procs: Any, echo: EchoServer) -> None:  # noqa: F811
    """kcptun's --conn 3 dials three KCP sessions; kcpsock serves each."""
    server = procs(
        "serve", "127.0.0.1:0", "--forward", f"127.0.0.1:{echo.port}", "--kcptun", "--key", KEY
    )
    host, port = server.address()
    local = free_port(socket.SOCK_STREAM)
    kcptun("client", "-l", f"127.0.0.1:{local}", "-r", f"{host}:{port}", "--conn", "3")
    assert echo_through(("127.0.0.1", local), [200_000] * 6) == [True] * 6
    sessions = {line for line in server.seen if "session from" in line}
    server.interrupt()
    sessions |= {line for line in server.rest() if "session from" in line}
    assert len([s for s in sessions if "closed" not in s and "ended" not in s]) == 3, sessions


def test_compression_mismatch_passes_nothing_and_says_why(
    kcptun: Any,
    procs: Any,  # noqa: F811
    echo: EchoServer,
) -> None:
    """kcptun-client compresses, kcpsock expects --nocomp: the session ends with a
    smux protocol error line and the TCP client sees its connection closed.
    """
    server = procs(
        "serve",
        "127.0.0.1:0",
        "--forward",
        f"127.0.0.1:{echo.port}",
        "--kcptun",
        "--nocomp",
        "--key",
        KEY,
    )
    host, port = server.address()
    local = free_port(socket.SOCK_STREAM)
    kcptun("client", "-l", f"127.0.0.1:{local}", "-r", f"{host}:{port}")
    with socket.create_connection(("127.0.0.1", local), timeout=20) as conn:
        conn.sendall(b"hello")
        server.wait_line(re.compile(r"ended \(smux protocol error"), timeout=20)
    assert echo.connections == 0
    assert "Traceback" not in server.stderr.decode()


@pytest.mark.parametrize("direction", ["kcptun-client", "kcptun-server"])
def test_stdlib_snappy_fallback_interoperates(
    kcptun: Any,
    procs: Any,  # noqa: F811
    echo: EchoServer,
    monkeypatch: pytest.MonkeyPatch,
    direction: str,
) -> None:
    """Without cramjam kcpsock writes uncompressed chunks and decodes kcptun's
    compressed ones in pure Python; the CLI says once how to make it faster.
    """
    monkeypatch.setenv("KCPSOCK_NO_CRAMJAM", "1")
    if direction == "kcptun-client":
        ours = procs(
            "serve", "127.0.0.1:0", "--forward", f"127.0.0.1:{echo.port}", "--kcptun", "--key", KEY
        )
        host, port = ours.address()
        local = free_port(socket.SOCK_STREAM)
        kcptun("client", "-l", f"127.0.0.1:{local}", "-r", f"{host}:{port}")
        address = ("127.0.0.1", local)
    else:
        port = free_port(socket.SOCK_DGRAM)
        kcptun("server", "-l", f"127.0.0.1:{port}", "-t", f"127.0.0.1:{echo.port}")
        ours = procs(
            "tunnel", "-l", "127.0.0.1:0", "-r", f"127.0.0.1:{port}", "--kcptun", "--key", KEY
        )
        address = ours.address()
    ours.wait_line(re.compile(r"pip install 'kcpsock\[kcptun\]'"))
    assert echo_through(address, [300_000, 100_000]) == [True, True]
    ours.interrupt()
    text = "\n".join(ours.seen + ours.rest())
    assert text.count("pip install") == 1


# kcptun's option matrix, compact: every cipher kcptun 20210922 offers, each
# row with a few other options a kcptun user sets, alternating directions
# ("A": kcptun-client -> kcpsock serve; "B": kcpsock tunnel -> kcptun-server).
# The same options go to both ends; CLIENT_ONLY ones to the client only.
# Small transfers (the pure-Python ciphers are slow); a few seconds a row.
MATRIX = [
    ("A", "--crypt aes-128 --mode fast3 --parityshard 0 --mtu 500", ""),
    ("B", "--crypt aes-192 --mode fast2 --ds 5 --ps 2 --sndwnd 32 --rcvwnd 32", ""),
    ("A", "--crypt blowfish --mode normal --keepalive 2", "--conn 3"),
    (
        "B",
        "--crypt twofish --mode manual --nodelay 1 --interval 20 --resend 2 --nc 1 "
        "--smuxver 2 --smuxbuf 1048576 --streambuf 65536 --nocomp",
        "",
    ),
    ("A", "--crypt cast5 --acknodelay --dscp 46 --sockbuf 1048576 --smuxver 2", ""),
    ("B", "--crypt 3des --ds 0 --ps 0", "--conn 2 --autoexpire 1 --scavengettl 1"),
    ("A", "--crypt tea --mode manual", ""),
    ("B", "--crypt xtea -mode fast3 -nocomp -mtu 1400", ""),
    ("A", "--crypt xor --sndwnd 2048 --rcvwnd 2048", ""),
    ("B", "--crypt sm4 --datashard 0", ""),
    ("A", "--crypt none --mode fast", ""),
]


def _row_id(row: tuple[str, str, str]) -> str:
    return f"{row[0]}-{row[1].split()[1]}"


@pytest.mark.parametrize("row", MATRIX, ids=[_row_id(r) for r in MATRIX])
def test_option_matrix(
    kcptun: Any,
    procs: Any,  # noqa: F811
    echo: EchoServer,
    row: tuple[str, str, str],
) -> None:
    direction, common_text, client_text = row
    common, client_only = common_text.split(), client_text.split()
    # kcptun takes one-dash options too; kcpsock must (a kcptun user's line)
    theirs = ["-" + a.lstrip("-") if a.startswith("-") else a for a in common]
    udp = free_port(socket.SOCK_DGRAM)
    if direction == "A":
        ours = procs(
            "serve",
            f"127.0.0.1:{udp}",
            "-t",
            f"127.0.0.1:{echo.port}",
            "--kcptun",
            "--key",
            KEY,
            *common,
        )
        ours.address()
        local = free_port(socket.SOCK_STREAM)
        kcptun(
            "client", "-l", f"127.0.0.1:{local}", "-r", f"127.0.0.1:{udp}", *theirs, *client_only
        )
        address = ("127.0.0.1", local)
    else:
        kcptun("server", "-l", f"127.0.0.1:{udp}", "-t", f"127.0.0.1:{echo.port}", *theirs)
        ours = procs(
            "tunnel",
            "-l",
            "127.0.0.1:0",
            "-r",
            f"127.0.0.1:{udp}",
            "--kcptun",
            "--key",
            KEY,
            *common,
            *client_only,
        )
        address = ours.address()
    sizes = [120_000, 60_000, 30_000]
    assert echo_through(address, sizes) == [True] * len(sizes)
    assert ours.interrupt() == 130
    assert "Traceback" not in ours.stderr.decode()


def test_one_json_config_shape_for_kcptun_and_kcpsock(
    kcptun: Any,
    procs: Any,  # noqa: F811
    echo: EchoServer,
    tmp_path: Any,
) -> None:
    """kcptun-client -c FILE -> kcpsock serve -c FILE: Debian's example files
    (mode fast3 with manual knobs, nocomp, aes-128, dscp 46, "tcp": false...).
    """
    from tests.integration.test_cli_kcptun import CLIENT_JSON, SERVER_JSON

    udp, local = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM)
    server = tmp_path / "server.json"
    server.write_text(
        json.dumps(
            {
                **SERVER_JSON,
                "key": KEY,
                "listen": f"127.0.0.1:{udp}",
                "target": f"127.0.0.1:{echo.port}",
            }
        )
    )
    client = tmp_path / "client.json"
    client.write_text(
        json.dumps(
            {
                **CLIENT_JSON,
                "key": KEY,
                "localaddr": f"127.0.0.1:{local}",
                "remoteaddr": f"127.0.0.1:{udp}",
            }
        )
    )
    ours = procs("serve", "-c", str(server))
    ours.address()
    kcptun("client", "-c", str(client))
    assert echo_through(("127.0.0.1", local), [200_000, 100_000]) == [True, True]
    assert ours.interrupt() == 130


@pytest.mark.parametrize("stalled", ["kcptun-client", "kcptun-server"])
def test_a_two_second_stall_of_kcptun_keeps_the_connection(
    kcptun: Any,
    procs: Any,  # noqa: F811
    echo: EchoServer,
    stalled: str,
) -> None:
    """kcptun on both ends rides out a peer stalled for 2 s (smux's keep-alive
    is 30 s); kcpsock facing kcptun must too.  It dropped the session after
    about a second (a reader's "peer gone" probes): the kcpsock tunnel's
    connections closed, and a stalled kcptun-client's hung for 30 s.
    """
    import signal
    import threading

    udp = free_port(socket.SOCK_DGRAM)
    if stalled == "kcptun-client":
        ours = procs(
            "serve", f"127.0.0.1:{udp}", "-t", f"127.0.0.1:{echo.port}", "--kcptun", "--key", KEY
        )
        ours.address()
        local = free_port(socket.SOCK_STREAM)
        theirs = kcptun("client", "-l", f"127.0.0.1:{local}", "-r", f"127.0.0.1:{udp}")
        address = ("127.0.0.1", local)
    else:
        theirs = kcptun("server", "-l", f"127.0.0.1:{udp}", "-t", f"127.0.0.1:{echo.port}")
        ours = procs(
            "tunnel", "-l", "127.0.0.1:0", "-r", f"127.0.0.1:{udp}", "--kcptun", "--key", KEY
        )
        address = ours.address()
    with socket.create_connection(address, timeout=20) as conn:
        conn.sendall(b"hello")
        assert conn.recv(5) == b"hello"
        theirs.p.send_signal(signal.SIGSTOP)
        try:
            threading.Event().wait(2.0)  # the feature is a clock: a 2 s stall
        finally:
            theirs.p.send_signal(signal.SIGCONT)
        conn.sendall(b"again")
        assert conn.recv(5) == b"again"
