"""The ``kcpsock`` commands that move data over KCP, as subprocesses on 127.0.0.1.

demo (summary consistent with the bytes moved), serve/connect (stdin round
trip), bench (JSON byte counts), tunnel + serve --forward (an HTTP exchange, a
10 MB file, a TCP half-close) and Ctrl-C (status 130, no traceback).
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import re
import socket
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from kcpsock.cli.common import NO_ANSWER_S
from tests.helpers import has_ipv6_loopback
from tests.integration.test_cli import procs, run_cli  # noqa: F401 - fixture

FAST = ["--mode", "fast3", "--sndwnd", "1024", "--rcvwnd", "1024"]


def test_demo_succeeds_and_its_summary_adds_up() -> None:
    total = 2_000_000
    result = run_cli("demo", "--bytes", str(total), "--pings", "30", "--json", timeout=90)
    assert result.returncode == 0, result.stderr.decode()
    assert "Traceback" not in result.stderr.decode()
    summary = json.loads(result.stdout.decode().strip().splitlines()[-1])
    assert summary["intact"] is True and summary["error"] is None
    assert summary["bytes"] == summary["bytes_received"] == total
    assert summary["seconds"] > 0
    assert summary["MBps"] == pytest.approx(total / summary["seconds"] / 1e6, rel=0.01)
    # 5% loss each way, seeded: the relay saw roughly that.
    assert 0.02 < summary["loss_seen"] < 0.09, summary
    assert summary["relay_dropped"] == pytest.approx(
        summary["loss_seen"] * summary["relay_datagrams"], abs=1
    )
    # Lost data datagrams are repaired by FEC or by retransmission.
    assert summary["fec_recovered"] + summary["retrans_segs"] > 0
    assert summary["retrans_segs"] == (
        summary["lost_segs"] + summary["fast_retrans_segs"] + summary["early_retrans_segs"]
    )
    # At 1350-byte datagrams, 2 MB needs at least ~1500 data datagrams.
    assert summary["relay_datagrams"] > total / 1350
    assert summary["pings"] == 30
    assert 0 < summary["rtt_p50_ms"] <= summary["rtt_p99_ms"]
    assert summary["cpu_seconds"] > 0
    assert summary["sha256"] == hashlib.sha256(_pattern(1, total)).hexdigest()


def _pattern(seed: int, total: int) -> bytes:
    from kcpsock.cli.demo import PatternStream

    stream = PatternStream(seed, total)
    return b"".join(iter(stream.next_block, b""))


def test_demo_text_summary_without_terminal() -> None:
    result = run_cli(
        "demo",
        "--bytes",
        "300000",
        "--loss",
        "0",
        "--pings",
        "5",
        "--crypt",
        "salsa20",
        "--datashard",
        "0",
        "--parityshard",
        "0",
        timeout=60,
    )
    assert result.returncode == 0, result.stderr.decode()
    out = result.stdout.decode()
    assert "\r" not in out and "\x1b[" not in out  # no live line when stdout is a pipe
    for label in (
        "result",
        "throughput",
        "RTT p50 / p99",
        "loss seen",
        "retransmitted",
        "FEC recovered",
        "CPU",
    ):
        assert re.search(rf"^{re.escape(label)}\s+: ", out, re.M), label
    assert "OK: all 300,000 bytes arrived intact" in out
    assert re.search(r"^loss seen\s+: 0\.00%", out, re.M)


def test_udp_port_in_use_is_a_usage_error() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        for command in (["serve", f"127.0.0.1:{port}"], ["bench", "-s", f"127.0.0.1:{port}"]):
            result = run_cli(*command)
            err = result.stderr.decode()
            assert result.returncode == 2, err
            assert err.splitlines() == [
                f"kcpsock {command[0]}: error: cannot listen on "
                f"127.0.0.1:{port}: address already in use"
            ]


def test_ipv6_loopback(procs: Any) -> None:  # noqa: F811
    if not has_ipv6_loopback():
        pytest.skip("no IPv6 loopback")
    server = procs("serve", "[::1]:0")
    host, port = server.address()
    assert host == "::1"
    result = run_cli("connect", f"[::1]:{port}", input=b"over IPv6\n", timeout=60)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == b"over IPv6\n"
    assert server.interrupt() == 130


def test_serve_connect_round_trip_stdin(procs: Any) -> None:  # noqa: F811
    server = procs("serve", "127.0.0.1:0", *FAST)
    host, port = server.address()
    data = os.urandom(300_000) + b"\nlast line without newline"
    result = run_cli("connect", f"{host}:{port}", *FAST, input=data, timeout=60)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == data
    # A second client, other cipher settings must match the server's: same key works.
    result = run_cli("connect", f"{host}:{port}", *FAST, input=b"hello\n", timeout=60)
    assert result.stdout == b"hello\n"
    assert server.interrupt() == 130
    assert "Traceback" not in server.stderr.decode()


def test_connect_with_another_key_gets_no_answer(procs: Any) -> None:  # noqa: F811
    server = procs("serve", "127.0.0.1:0", "--key", "right", "--stats", "0.2")
    host, port = server.address()
    result = run_cli(
        "connect", f"{host}:{port}", "--key", "wrong", "--wait", "1.5", input=b"hello\n", timeout=30
    )
    err = result.stderr.decode()
    assert result.returncode == 1, err
    assert result.stdout == b""
    assert err.splitlines() == [
        f"kcpsock connect: error: no answer from {host}:{port} within "
        "1.5 s (is a kcpsock server running there, with the same "
        "--crypt, --key and FEC?)"
    ]
    # The server counted the packets it could not authenticate (InCsumErrors).
    server.wait_err_line(re.compile(r"InCsumErrors=[1-9]"))
    assert server.interrupt() == 130


def test_a_wrong_key_is_no_answer_after_the_whole_wait(procs: Any) -> None:  # noqa: F811
    # A waiting reader's probes used to count the silent server as gone (EOF)
    # after about 2 s, so a --wait above that could not take effect (and at
    # first that EOF even exited 0 without a word). The wait is now honoured
    # and still reported as no answer.
    server = procs("serve", "127.0.0.1:0", "--key", "right")
    host, port = server.address()
    began = time.monotonic()
    result = run_cli("connect", f"{host}:{port}", "--key", "wrong", input=b"hello\n", timeout=30)
    took = time.monotonic() - began
    err = result.stderr.decode()
    assert result.returncode == 1, err
    assert result.stdout == b""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"kcpsock connect: error: no answer from {host}:{port} "), err
    assert "the same --crypt, --key and FEC?" in lines[0]
    assert took >= NO_ANSWER_S - 0.5, took  # the default wait, not the probes' ~2 s
    for mode in ([], ["--rtt"], ["--reverse"]):
        began = time.monotonic()
        result = run_cli(
            "bench", "-c", f"{host}:{port}", "-t", "10", "--key", "wrong", "--wait", "3", *mode
        )
        took = time.monotonic() - began
        err = result.stderr.decode()
        assert result.returncode == 1, (mode, err)
        assert f"kcpsock bench: error: no answer from {host}:{port} " in err, (mode, err)
        assert took >= 2.7, (mode, took)
    assert server.interrupt() == 130


def test_connect_ends_when_the_server_dies_while_input_stays_open(procs: Any) -> None:  # noqa: F811
    # netcat's user at a terminal: the server process dies; connect used to
    # wait for the end of its input (Ctrl-D) before saying anything.
    import subprocess

    server = procs("serve", "127.0.0.1:0", *FAST)
    host, port = server.address()
    client = procs("connect", f"{host}:{port}", *FAST, stdin=subprocess.PIPE)
    assert client.p.stdin is not None
    client.p.stdin.write(b"first\n")
    client.p.stdin.flush()
    assert client.wait_line(re.compile(r"^first$"), timeout=30)
    server.kill()  # its UDP port closes: the session dies
    try:
        status = client.p.wait(timeout=30)  # input still open
    finally:
        client.p.stdin.close()
    client._err.join(timeout=10)
    assert status == 1, client.stderr.decode()
    lines = client.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kcpsock connect: error: "), lines
    assert f"{host}:{port}" in lines[0], lines


def test_tunnel_to_nowhere_says_so_at_the_default_wait(procs: Any) -> None:  # noqa: F811
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as hole:
        hole.bind(("127.0.0.1", 0))  # a UDP port nobody answers on
        tunnel = procs("tunnel", "-l", "127.0.0.1:0", "-r", f"127.0.0.1:{hole.getsockname()[1]}")
        host, port = tunnel.address()
        with socket.create_connection((host, port), timeout=30) as client:
            client.sendall(b"GET / HTTP/1.0\r\n\r\n")
            assert client.recv(100) == b""  # closed by the tunnel, not hanging
        line = tunnel.wait_line(re.compile(r"^closed "))
        assert "no answer from" in line.string, line.string
    assert tunnel.interrupt() == 130


def test_tunnel_to_nowhere_closes_the_tcp_connection(procs: Any) -> None:  # noqa: F811
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as hole:
        hole.bind(("127.0.0.1", 0))  # a UDP port nobody answers on
        tunnel = procs(
            "tunnel",
            "-l",
            "127.0.0.1:0",
            "-r",
            f"127.0.0.1:{hole.getsockname()[1]}",
            "--wait",
            "1.5",
        )
        host, port = tunnel.address()
        with socket.create_connection((host, port), timeout=30) as client:
            client.sendall(b"GET / HTTP/1.0\r\n\r\n")
            assert client.recv(100) == b""  # closed by the tunnel, not hanging
        tunnel.wait_line(re.compile(r"no answer from"))
    assert tunnel.interrupt() == 130


@pytest.mark.parametrize("mode", [[], ["--reverse"], ["--bidir"]])
def test_bench_json_byte_counts_match(procs: Any, mode: list[str]) -> None:  # noqa: F811
    server = procs(
        "bench",
        "-s",
        "127.0.0.1:0",
        "--once",
        "--datashard",
        "0",
        "--parityshard",
        "0",
        "--crypt",
        "none",
    )
    host, port = server.address()
    total = 1_500_000
    result = run_cli(
        "bench",
        "-c",
        f"{host}:{port}",
        "--bytes",
        str(total),
        "--json",
        "--datashard",
        "0",
        "--parityshard",
        "0",
        "--crypt",
        "none",
        *mode,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr.decode()
    report = json.loads(result.stdout)
    end = report["end"]
    directions = {
        "": ["client_to_server"],
        "--reverse": ["server_to_client"],
        "--bidir": ["client_to_server", "server_to_client"],
    }[mode[0] if mode else ""]
    assert sorted(k for k in end if k.endswith("client") or k.endswith("server")) == sorted(
        directions
    )
    for key in directions:
        assert end[key]["sent"] == end[key]["received"] == total
    assert report["intervals"] and all(i["end"] > i["start"] for i in report["intervals"])
    assert report["end"]["retrans"]["client"] >= 0 and report["end"]["retrans"]["server"] >= 0
    assert sum(i["sent"] for i in report["intervals"]) == (
        total if "client_to_server" in directions else 0
    )
    assert server.p.wait(timeout=20) == 0


def test_bench_rtt(procs: Any) -> None:  # noqa: F811
    server = procs("bench", "-s", "127.0.0.1:0", "--once", *FAST)
    host, port = server.address()
    result = run_cli(
        "bench",
        "-c",
        f"{host}:{port}",
        "--rtt",
        "--bytes",
        str(64 * 100),
        "--json",
        *FAST,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr.decode()
    rtt = json.loads(result.stdout)["end"]["rtt"]
    assert rtt["pings"] == rtt["echoed"] == 100
    assert 0 < rtt["min_ms"] <= rtt["p50_ms"] <= rtt["p99_ms"] <= rtt["max_ms"]


@pytest.fixture
def http_root(tmp_path: Path) -> Any:
    """An http.server on 127.0.0.1 serving a directory with a 10 MB file."""
    big = os.urandom(10_000_000)
    (tmp_path / "big.bin").write_bytes(big)
    (tmp_path / "hello.txt").write_bytes(b"hello over kcp\n")

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    handler = functools.partial(QuietHandler, directory=str(tmp_path))

    class Quiet(http.server.ThreadingHTTPServer):
        daemon_threads = True

    httpd = Quiet(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1], hashlib.sha256(big).hexdigest()
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=10)


def _tunnel(procs: Any, tcp_port: int) -> tuple[Any, Any, str]:  # noqa: F811
    server = procs("serve", "127.0.0.1:0", "--forward", f"127.0.0.1:{tcp_port}", *FAST)
    shost, sport = server.address()
    tunnel = procs("tunnel", "-l", "127.0.0.1:0", "-r", f"{shost}:{sport}", *FAST)
    thost, tport = tunnel.address()
    return server, tunnel, f"{thost}:{tport}"


def test_tunnel_carries_http_and_a_10mb_file(procs: Any, http_root: Any) -> None:  # noqa: F811
    port, big_sha = http_root
    server, tunnel, local = _tunnel(procs, port)
    with urllib.request.urlopen(f"http://{local}/hello.txt", timeout=30) as resp:
        assert resp.status == 200
        assert resp.read() == b"hello over kcp\n"
    with urllib.request.urlopen(f"http://{local}/big.bin", timeout=60) as resp:
        body = resp.read()
    assert len(body) == 10_000_000
    assert hashlib.sha256(body).hexdigest() == big_sha
    assert tunnel.interrupt() == 130
    assert server.interrupt() == 130
    for proc in (tunnel, server):
        assert "Traceback" not in proc.stderr.decode()


def test_tunnel_through_a_lossy_relay(procs: Any, http_root: Any) -> None:  # noqa: F811
    """The 10 MB file through tunnel -> relay (5% loss, 2 ms) -> serve --forward."""
    port, big_sha = http_root
    server = procs("serve", "127.0.0.1:0", "--forward", f"127.0.0.1:{port}")
    shost, sport = server.address()
    relay = procs(
        "relay",
        "-l",
        "127.0.0.1:0",
        "-t",
        f"{shost}:{sport}",
        "--loss",
        "5%",
        "--delay",
        "2",
        "--seed",
        "3",
    )
    rhost, rport = relay.address()
    tunnel = procs("tunnel", "-l", "127.0.0.1:0", "-r", f"{rhost}:{rport}")
    thost, tport = tunnel.address()
    with urllib.request.urlopen(f"http://{thost}:{tport}/big.bin", timeout=90) as resp:
        body = resp.read()
    assert hashlib.sha256(body).hexdigest() == big_sha
    assert relay.interrupt() == 130
    final = [line for line in relay.rest() if line.startswith("final:")]
    dropped = [int(n) for n in re.findall(r"dropped (\d+)", final[0])]
    assert sum(dropped) > 0  # the transfer really met losses


def test_forward_to_a_closed_port_ends_the_tcp_connection(procs: Any) -> None:  # noqa: F811
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        server, _tunnel_proc, local = _tunnel(procs, closed.getsockname()[1])
        host, _, port = local.rpartition(":")
        with socket.create_connection((host, int(port)), timeout=30) as client:
            client.sendall(b"hello?")
            assert client.recv(100) == b""
        server.wait_line(re.compile(r"cannot connect to"))


def test_tunnel_half_close(procs: Any) -> None:  # noqa: F811
    """The client's EOF reaches the TCP service, whose answer still comes back."""
    payload = os.urandom(1_000_000)
    with socket.socket() as service:
        service.bind(("127.0.0.1", 0))
        service.listen(1)
        service.settimeout(30)

        def count_until_eof() -> None:
            conn, _ = service.accept()
            with conn:
                conn.settimeout(30)
                digest = hashlib.sha256()
                while True:
                    data = conn.recv(65536)
                    if not data:
                        break
                    digest.update(data)
                conn.sendall(digest.hexdigest().encode())  # answer after the EOF

        thread = threading.Thread(target=count_until_eof, daemon=True)
        thread.start()
        _, _, local = _tunnel(procs, service.getsockname()[1])
        host, _, port = local.rpartition(":")
        with socket.create_connection((host, int(port)), timeout=30) as client:
            client.sendall(payload)
            client.shutdown(socket.SHUT_WR)
            answer = b""
            while True:
                data = client.recv(4096)
                if not data:
                    break
                answer += data
        thread.join(timeout=30)
    assert answer.decode() == hashlib.sha256(payload).hexdigest()


def test_ctrl_c_and_sigterm_close_cleanly(procs: Any) -> None:  # noqa: F811
    server = procs("bench", "-s", "127.0.0.1:0")
    server.address()
    assert server.interrupt() == 130
    err = server.stderr.decode()
    assert "Traceback" not in err
    assert err.strip().splitlines() == ["kcpsock bench: interrupted"]
    tunnel = procs("tunnel", "-l", "127.0.0.1:0", "-r", "127.0.0.1:9")
    tunnel.address()
    tunnel.p.terminate()
    assert tunnel.p.wait(timeout=15) == 143
    tunnel.interrupt()  # joins the output readers
    assert tunnel.stderr == b""


def test_ctrl_c_during_transfers(procs: Any) -> None:  # noqa: F811
    """Ctrl-C in the middle of a demo and of an open connect: 130, no traceback."""
    demo = procs("demo", "--bytes", "500000000")
    demo.wait_line(re.compile(r"MB/s"), timeout=30)
    assert demo.interrupt() == 130
    assert demo.stderr.decode().strip().splitlines() == ["kcpsock demo: interrupted"]
    server = procs("serve", "127.0.0.1:0")
    host, port = server.address()
    client = procs("connect", f"{host}:{port}", stdin=-1)
    assert client.p.stdin is not None
    client.p.stdin.write(b"ping\n")
    client.p.stdin.flush()
    assert client.wait_line(re.compile(r"^ping$")).string == "ping"  # echoed, still open
    assert client.interrupt() == 130
    assert client.stderr.decode().strip().splitlines() == ["kcpsock connect: interrupted"]
    assert server.interrupt() == 130


def test_raw_serve_connect(procs: Any) -> None:  # noqa: F811
    """--raw: plain bytes (as a kcp-go peer sends), ended by --linger."""
    server = procs("serve", "127.0.0.1:0", "--raw", "--crypt", "xor", "--key", "k")
    host, port = server.address()
    data = os.urandom(200_000)
    result = run_cli(
        "connect",
        f"{host}:{port}",
        "--raw",
        "--linger",
        "0.3",
        "--crypt",
        "xor",
        "--key",
        "k",
        input=data,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == data
    assert server.interrupt() == 130


def test_demo_live_line_on_a_terminal() -> None:
    r"""On a terminal the progress is one line rewritten with \r, then the summary."""
    import pty
    import select
    import subprocess
    import sys
    import time

    from tests.integration.test_cli import ROOT

    master, slave = pty.openpty()
    env = dict(os.environ, TERM="xterm", COLUMNS="100", LINES="30")
    proc = subprocess.Popen(
        [sys.executable, "-m", "kcpsock", "demo", "--bytes", "6000000", "--pings", "10"],
        stdout=slave,
        stderr=slave,
        stdin=subprocess.DEVNULL,
        cwd=ROOT,
        env=env,
    )
    os.close(slave)
    out = b""
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                out += chunk
            elif proc.poll() is not None:
                break
        assert proc.wait(timeout=30) == 0, out.decode(errors="replace")
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    text = out.decode("utf-8", "replace")
    assert "\r" in text and "\x1b[K" in text  # rewritten in place
    assert "MB/s" in text and "srtt" in text
    assert "OK: all 6,000,000 bytes arrived intact" in text
    # Nothing is wider than the terminal (a wrapped live line cannot be rewritten).
    for piece in re.split(r"[\r\n]", text):
        assert len(piece.replace("\x1b[K", "")) <= 100, piece
