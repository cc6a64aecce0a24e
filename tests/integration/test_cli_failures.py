"""The command line says when the remote side failed (subprocesses on 127.0.0.1).

``connect`` exits with status 1 and one line when ``serve --forward`` cannot
reach its TCP service, or when framed and ``--raw`` are mixed up; ``relay``
says that it ignores a second client.
"""

from __future__ import annotations

import re
import socket
from typing import Any

from tests.integration.test_cli import procs, run_cli  # noqa: F401 - fixture

FAST = ["--mode", "fast3"]


def _closed_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again at once: nothing listens there


def _one_error_line(result: Any) -> str:
    lines = result.stderr.decode().strip().splitlines()
    assert result.returncode == 1, result.stderr.decode()
    assert len(lines) == 1 and "Traceback" not in lines[0], lines
    return str(lines[0])


def test_connect_reports_a_refused_forward(procs: Any) -> None:  # noqa: F811
    port = _closed_tcp_port()
    server = procs("serve", "127.0.0.1:0", "--forward", f"127.0.0.1:{port}", *FAST)
    host, kport = server.address()
    for raw in ([], ["--raw"]):
        result = run_cli("connect", f"{host}:{kport}", *raw, *FAST, input=b"hi\n", timeout=60)
        line = _one_error_line(result)
        assert f"cannot connect to 127.0.0.1:{port}" in line and "refused" in line
        assert result.stdout == b""


def test_connect_raw_against_a_framed_server(procs: Any) -> None:  # noqa: F811
    server = procs("serve", "127.0.0.1:0", *FAST)
    host, port = server.address()
    result = run_cli("connect", f"{host}:{port}", "--raw", *FAST, input=b"hi\n", timeout=60)
    assert "--raw" in _one_error_line(result)
    assert result.stdout == b""


def test_bench_client_and_connect_name_the_wrong_kind_of_server(procs: Any) -> None:  # noqa: F811
    # bench -c against an echo server exited 0 with "receiver 0 B"; connect
    # against bench -s exited with nothing useful (the server only logged it)
    echo = procs("serve", "127.0.0.1:0", *FAST)
    host, port = echo.address()
    result = run_cli("bench", "-c", f"{host}:{port}", "-n", "100000", *FAST, timeout=60)
    line = _one_error_line(result)
    assert f"{host}:{port} is not a `kcpsock bench -s` server" in line, line
    bench = procs("bench", "-s", "127.0.0.1:0", *FAST)
    host, port = bench.address()
    for raw in ([], ["--raw"]):
        result = run_cli("connect", f"{host}:{port}", *raw, *FAST, input=b"hi\n", timeout=60)
        line = _one_error_line(result)
        assert "this is a `kcpsock bench -s` server (use kcpsock bench -c)" in line, (raw, line)
        assert result.stdout == b""


def test_relay_says_it_ignores_a_second_client(procs: Any) -> None:  # noqa: F811
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as first,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as second,
    ):
        sink.bind(("127.0.0.1", 0))
        sink.settimeout(10)
        relay = procs("relay", "-l", "127.0.0.1:0", "-t", f"127.0.0.1:{sink.getsockname()[1]}")
        host, port = relay.address()
        first.sendto(b"one", (host, port))
        assert sink.recv(100) == b"one"  # the first sender became the client
        second.bind(("127.0.0.1", 0))
        second.sendto(b"two", (host, port))
        second.sendto(b"three", (host, port))
        m = relay.wait_line(re.compile(r"ignoring 127\.0\.0\.1:(\d+)"))
        assert int(m.group(1)) == second.getsockname()[1]
        assert "one client" in relay.seen[-1]
        assert relay.interrupt() == 130
        rest = relay.rest()
        assert not any("ignoring" in line for line in rest)  # said once per address
        assert any("final" in line for line in rest), rest
