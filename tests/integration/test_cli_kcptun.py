"""``kcpsock tunnel --kcptun`` and ``kcpsock serve --forward --kcptun`` (kcpsock on
both ends, as subprocesses on 127.0.0.1): usage errors, the help, and data
through several connections over ``--conn 2`` sessions, v1 and v2.  The
tests against the real kcptun are in tests/interop/test_kcptun.py.
"""

from __future__ import annotations

import io
import json
import re
import socket
from types import SimpleNamespace
from typing import Any

import pytest

from tests.integration.test_cli import (  # noqa: F401
    LISTENING,
    assert_usage_error,
    procs,
    run_cli,
)
from tests.interop.kcptun import EchoServer, echo_through


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (
            ["tunnel", "-l", "127.0.0.1:0", "-r", "127.0.0.1:9", "--nocomp"],
            "--nocomp needs --kcptun",
        ),
        (
            ["tunnel", "-l", "127.0.0.1:0", "-r", "127.0.0.1:9", "--kcptun", "--keepalive", "40"],
            "--keepalive must be 1..30",
        ),
        (
            [
                "tunnel",
                "-l",
                "127.0.0.1:0",
                "-r",
                "127.0.0.1:9",
                "--kcptun",
                "--streambuf",
                "9000000",
            ],
            "must not be larger than --smuxbuf",
        ),
        (
            ["tunnel", "-l", "127.0.0.1:0", "-r", "127.0.0.1:9", "--kcptun", "--conn", "0"],
            "--conn must be 1..65535",
        ),
        (["serve", "127.0.0.1:0", "--kcptun"], "--kcptun needs --forward"),
        (["serve", "127.0.0.1:0", "--forward", "127.0.0.1:9", "--smuxver", "2"], "needs --kcptun"),
    ],
)
def test_usage_errors(args: list[str], needle: str) -> None:
    assert_usage_error(run_cli(*args), needle)


def test_smuxver_3_is_refused_by_argparse() -> None:
    result = run_cli(
        "tunnel", "-l", "127.0.0.1:0", "-r", "127.0.0.1:9", "--kcptun", "--smuxver", "3"
    )
    assert result.returncode == 2
    assert b"invalid choice" in result.stderr


@pytest.mark.parametrize("command", ["tunnel", "serve"])
def test_help_says_no_half_close(command: str) -> None:
    out = run_cli(command, "--help").stdout.decode()
    assert "--kcptun" in out and "half-close" in out
    for flag in ("--nocomp", "--smuxver", "--smuxbuf", "--streambuf", "--keepalive"):
        assert flag in out
    if command == "tunnel":
        for flag in ("--conn", "--autoexpire", "--scavengettl"):
            assert flag in out


@pytest.mark.parametrize(
    "options", [[], ["--nocomp", "--smuxver", "2", "--crypt", "null", "--ds", "0", "--ps", "0"]]
)
def test_kcpsock_on_both_ends(procs: Any, options: list[str]) -> None:  # noqa: F811
    echo = EchoServer()
    try:
        server = procs(
            "serve", "127.0.0.1:0", "--forward", f"127.0.0.1:{echo.port}", "--kcptun", *options
        )
        host, port = server.address()
        tunnel = procs(
            "tunnel",
            "-l",
            "127.0.0.1:0",
            "-r",
            f"{host}:{port}",
            "--kcptun",
            "--conn",
            "2",
            *options,
        )
        address = tunnel.address()
        assert echo_through(address, [400_000, 300_000, 200_000, 100_000]) == [True] * 4
        assert echo.connections == 4
        assert tunnel.interrupt() == 130
        lines = tunnel.seen + tunnel.rest()
        assert len([line for line in lines if "smux session" in line]) == 2  # --conn 2
        assert server.interrupt() == 130
        assert "Traceback" not in tunnel.stderr.decode() + server.stderr.decode()
    finally:
        echo.close()


def test_forward_to_a_closed_port_closes_the_tcp_connection(procs: Any) -> None:  # noqa: F811
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]  # closed when the block ends: nothing listens there
    server = procs("serve", "127.0.0.1:0", "--forward", f"127.0.0.1:{dead}", "--kcptun")
    host, port = server.address()
    tunnel = procs("tunnel", "-l", "127.0.0.1:0", "-r", f"{host}:{port}", "--kcptun")
    with socket.create_connection(tunnel.address(), timeout=20) as conn:
        conn.sendall(b"anyone?")
        assert conn.recv(10) == b""  # the stream's FIN closed it
    server.wait_line(re.compile(r"cannot connect to"))


def test_a_server_that_never_answers_is_named(procs: Any) -> None:  # noqa: F811
    # A wrong key (or nothing there) ends the smux session when a waiting
    # reader's probes find the silent server gone; the line used to say only
    # "0 bytes down", nothing about why.
    server = procs("serve", "127.0.0.1:0", "--forward", "127.0.0.1:9", "--kcptun", "--key", "a")
    host, port = server.address()
    tunnel = procs("tunnel", "-l", "127.0.0.1:0", "-r", f"{host}:{port}", "--kcptun", "--key", "b")
    with socket.create_connection(tunnel.address(), timeout=30) as conn:
        conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
        assert conn.recv(10) == b""  # closed, not hanging
    line = tunnel.wait_line(re.compile(r"^closed "))
    assert f"no answer from {host}:{port}" in line.string, line.string
    assert "--crypt" in line.string and "--key" in line.string, line.string


def test_autoexpire_moves_new_connections_to_a_new_session(procs: Any) -> None:  # noqa: F811
    import threading

    echo = EchoServer()
    try:
        server = procs("serve", "127.0.0.1:0", "--forward", f"127.0.0.1:{echo.port}", "--kcptun")
        host, port = server.address()
        tunnel = procs(
            "tunnel",
            "-l",
            "127.0.0.1:0",
            "-r",
            f"{host}:{port}",
            "--kcptun",
            "--autoexpire",
            "1",
            "--scavengettl",
            "1",
        )
        address = tunnel.address()
        assert echo_through(address, [1000]) == [True]
        tunnel.wait_line(re.compile(r"smux session"))
        threading.Event().wait(1.2)  # the feature is a clock: let the session expire
        assert echo_through(address, [1000]) == [True]
        tunnel.wait_line(re.compile(r"smux session"))  # a second session was dialed
    finally:
        echo.close()


# kcptun's own documentation writes its options Go-style, with one dash
# (``kcptun-client -r "IP:4000" -l ":8388" -mode fast3 -nocomp -autoexpire 900``);
# urfave/cli takes both spellings, so a kcptun user pastes that line.
@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (
            "tunnel -localaddr 127.0.0.1:0 -remoteaddr 127.0.0.1:9 -kcptun -mode fast3 "
            "-nocomp -autoexpire 900 -crypt=salsa20 -key k -sndwnd 2048 -keepalive 40",
            "--keepalive must be 1..30",
        ),
        (
            "serve 127.0.0.1:0 -target 127.0.0.1:9 -kcptun -mtu 1400 -smuxver 2 "
            "-ds 0 -ps 0 -streambuf 9000000",
            "must not be larger than --smuxbuf",
        ),
        ("serve 127.0.0.1:0 -nosuchoption", "unrecognized arguments: -nosuchoption"),
    ],
)
def test_go_style_single_dash_options(args: str, needle: str) -> None:
    assert_usage_error(run_cli(*args.split()), needle)


# kcptun options kcpsock does not implement are refused by name, with the
# reason, not as "unrecognized arguments" (nor accepted and ignored).
@pytest.mark.parametrize(
    ("option", "needle"),
    [
        ("--tcp", "TCP emulation"),
        ("--log /tmp/kcptun.log", "redirect"),
        ("--snmplog ./snmp-20060102.log", "--stats"),
        ("--snmpperiod 30", "--stats"),
        ("--closewait 5", "closes both"),
        ("-tcp", "TCP emulation"),
    ],
)
@pytest.mark.parametrize("command", ["tunnel", "serve"])
def test_unsupported_kcptun_options_are_named(command: str, option: str, needle: str) -> None:
    base = {
        "tunnel": "tunnel -l 127.0.0.1:0 -r 127.0.0.1:9 --kcptun",
        "serve": "serve 127.0.0.1:0 --forward 127.0.0.1:9 --kcptun",
    }[command]
    name = option.split()[0].lstrip("-")
    line = assert_usage_error(run_cli(*f"{base} {option}".split()), needle)
    assert f"--{name}" in line and "not supported" in line, line


def test_pprof_is_named_on_the_server() -> None:
    line = assert_usage_error(
        run_cli("serve", "127.0.0.1:0", "--forward", "127.0.0.1:9", "--kcptun", "--pprof")
    )
    assert "--pprof" in line and "not supported" in line, line


class _EndedStream:
    """An smux stream whose peer has already closed it (recv gives EOF)."""

    id = 3

    def __init__(self) -> None:
        self.session = SimpleNamespace(alive=True)

    def settimeout(self, timeout: Any) -> None:
        pass

    def recv(self, size: int) -> bytes:
        return b""

    def sendall(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.mark.parametrize("quiet", [False, True])
def test_quiet_drops_the_per_connection_lines(quiet: bool) -> None:
    """kcptun's --quiet suppresses the stream open/close messages (errors stay)."""
    from kcpsock.cli import build_parser, kcptun
    from kcpsock.cli.display import Display
    from kcpsock.cli.options import settings_from_args

    argv = ["tunnel", "-l", "127.0.0.1:0", "-r", "127.0.0.1:9", "--kcptun"]
    args = build_parser().parse_args(argv + (["--quiet"] if quiet else []))
    kcptun.check_kcptun_args(args)
    out = io.StringIO()
    display = Display(out, json_mode=False, live=False)
    mux = kcptun.ClientMux(("127.0.0.1", 9), settings_from_args(args), args, display)
    mux.open_stream = _EndedStream  # type: ignore[method-assign]
    ours, theirs = socket.socketpair()
    with theirs:
        kcptun.client_connection(mux, ours, ("127.0.0.1", 5), display)
    assert ("closed 127.0.0.1:5" in out.getvalue()) is not quiet, out.getvalue()


# kcptun-server's own spelling: -l/--listen and -t/--target.
@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (
            "serve -l 127.0.0.1:0 -t 127.0.0.1:9 --kcptun --streambuf 9000000",
            "must not be larger than --smuxbuf",
        ),
        (
            "serve --listen 127.0.0.1:0 --target 127.0.0.1:9 --kcptun --streambuf 9000000",
            "must not be larger than --smuxbuf",
        ),
        ("serve -t 127.0.0.1:9 --kcptun", "required"),
        ("serve 127.0.0.1:0 -l 127.0.0.1:0 -t 127.0.0.1:9 --kcptun", "conflicts"),
    ],
)
def test_serve_takes_kcptun_servers_listen_and_target(args: str, needle: str) -> None:
    assert_usage_error(run_cli(*args.split()), needle)


# kcptun's -c FILE: its JSON config (the shape of Debian's
# /usr/share/doc/kcptun/examples/local.json and server.json), which overrides
# the command line, as in kcptun.
CLIENT_JSON: dict[str, Any] = {
    "localaddr": "127.0.0.1:0",
    "remoteaddr": "127.0.0.1:9",
    "key": "PASSWORD",
    "crypt": "aes-128",
    "mode": "fast3",
    "mtu": 1400,
    "sndwnd": 128,
    "rcvwnd": 1024,
    "datashard": 10,
    "parityshard": 3,
    "dscp": 46,
    "nocomp": True,
    "acknodelay": False,
    "nodelay": 1,
    "interval": 40,
    "resend": 2,
    "nc": 1,
    "sockbuf": 16777217,
    "smuxver": 1,
    "smuxbuf": 16777217,
    "streambuf": 2097152,
    "keepalive": 10,
    "autoexpire": 1800,
    "quiet": False,
    "tcp": False,
}
SERVER_JSON: dict[str, Any] = {
    **{k: v for k, v in CLIENT_JSON.items() if k not in ("localaddr", "remoteaddr", "autoexpire")},
    "listen": "127.0.0.1:0",
    "target": "127.0.0.1:9",
    "sndwnd": 2048,
    "rcvwnd": 2048,
    "pprof": False,
}


def _config(tmp_path: Any, name: str, base: dict[str, Any], **changes: Any) -> str:
    path = tmp_path / name
    path.write_text(json.dumps({**base, **changes}))
    return str(path)


@pytest.mark.parametrize(
    ("command", "changes", "needle"),
    [
        ("tunnel", {"keepalive": 40}, "--keepalive must be 1..30"),
        ("serve", {"streambuf": 99999999}, "must not be larger than --smuxbuf"),
        ("serve", {"smuxver": 3}, "--smuxver must be 1 or 2"),
        ("tunnel", {"tcp": True}, "not supported"),
        ("serve", {"log": "/tmp/kcptun.log"}, "not supported"),
        ("tunnel", {"ratelimit": 100}, "unknown kcptun setting 'ratelimit'"),
        ("tunnel", {"mtu": "1400"}, "'mtu' must be an integer"),
        ("serve", {"mode": "fast9"}, "'mode' must be one of"),
    ],
)
def test_config_file_errors(tmp_path: Any, command: str, changes: Any, needle: str) -> None:
    base = CLIENT_JSON if command == "tunnel" else SERVER_JSON
    path = _config(tmp_path, "c.json", base, **changes)
    assert_usage_error(run_cli(command, "-c", path), needle)


@pytest.mark.parametrize("flag", ["-c", "--c", "-c="])
def test_config_flag_spellings(tmp_path: Any, flag: str) -> None:
    """Go's flag syntax: kcptun takes -c FILE, --c FILE and -c=FILE."""
    path = _config(tmp_path, "c.json", CLIENT_JSON, keepalive=40)
    args = [flag + path] if flag.endswith("=") else [flag, path]
    assert_usage_error(run_cli("tunnel", *args), "--keepalive must be 1..30")


def test_config_file_missing_or_not_json(tmp_path: Any) -> None:
    assert_usage_error(run_cli("tunnel", "-c", str(tmp_path / "none.json")), "cannot read")
    (tmp_path / "bad.json").write_text("{'key': 1}")
    assert_usage_error(run_cli("serve", "-c", str(tmp_path / "bad.json")), "not kcptun's JSON")


def test_config_files_on_both_ends(procs: Any, tmp_path: Any) -> None:  # noqa: F811
    """Debian's example configs, addresses changed: data flows, the files' settings apply."""
    echo = EchoServer()
    try:
        server = procs(
            "serve", "-c", _config(tmp_path, "s.json", SERVER_JSON, target=f"127.0.0.1:{echo.port}")
        )
        ready = server.wait_line(LISTENING)
        assert "aes-128" in ready.string and "mode fast3 (1,10,2,1)" in ready.string, ready.string
        assert "wnd 2048/2048" in ready.string and "no compression" in ready.string
        host, port = ready.group(1).strip("[]"), int(ready.group(2))
        tunnel = procs(
            "tunnel", "-c", _config(tmp_path, "c.json", CLIENT_JSON, remoteaddr=f"{host}:{port}")
        )
        assert echo_through(tunnel.address(), [300_000, 100_000]) == [True, True]
    finally:
        echo.close()


@pytest.mark.parametrize("shards", [["--parityshard", "0"], ["--datashard", "0"], ["-ps", "0"]])
def test_one_shard_count_0_turns_fec_off_as_kcp_go(procs: Any, shards: list[str]) -> None:  # noqa: F811
    """kcp-go (so kcptun) has no FEC when either count is 0: ``kcptun-server
    --parityshard 0`` is a common line, which kcpsock refused as a conflict.
    """
    server = procs("serve", "127.0.0.1:0", *shards)
    assert "no FEC" in server.wait_line(LISTENING).string


def test_an_expired_session_is_closed_after_scavengettl_even_if_not_replaced(
    procs: Any,  # noqa: F811
) -> None:
    """kcptun's scavenger closes every session --scavengettl seconds after it
    expired (--autoexpire), connections and all, whether or not a newer
    session took its place; kcpsock closed it only once a new connection had
    replaced it, so an idle tunnel's session (and its UDP port) lived on.
    """
    echo = EchoServer()
    try:
        server = procs("serve", "127.0.0.1:0", "--forward", f"127.0.0.1:{echo.port}", "--kcptun")
        host, port = server.address()
        tunnel = procs(
            "tunnel",
            *("-l", "127.0.0.1:0", "-r", f"{host}:{port}", "--kcptun"),
            *("--autoexpire", "1", "--scavengettl", "1"),
        )
        with socket.create_connection(tunnel.address(), timeout=20) as conn:
            conn.sendall(b"hello")
            assert conn.recv(5) == b"hello"
            conn.settimeout(15)  # expiry 1 s + ttl 1 s + the scavenger's 1 s tick
            assert conn.recv(5) == b""
    finally:
        echo.close()


@pytest.mark.parametrize("command", ["serve", "tunnel"])
def test_crypt_null_warns_that_kcptun_20210922_takes_it_as_aes(
    procs: Any,  # noqa: F811
    command: str,
) -> None:
    """Debian's kcptun silently runs aes for --crypt null; kcpsock runs no cipher
    at all (later kcptun's null): the two never talk, and nothing said why.
    """
    args = {
        "serve": ["serve", "127.0.0.1:0", "--forward", "127.0.0.1:9"],
        "tunnel": ["tunnel", "-l", "127.0.0.1:0", "-r", "127.0.0.1:9"],
    }[command]
    proc = procs(*args, "--kcptun", "--crypt", "null")
    line = proc.wait_line(re.compile(r"note: .*null"))
    assert "20210922" in line.string and "aes" in line.string, line.string


@pytest.mark.parametrize("kcptun_mode", [True, False])
def test_a_unix_socket_target(procs: Any, tmp_path: Any, kcptun_mode: bool) -> None:  # noqa: F811
    """kcptun-server -t PATH forwards to a unix socket (kcptun: a target that is
    not HOST:PORT); serve -t/--forward takes the same.
    """
    import threading

    path = str(tmp_path / "app.sock")
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.bind(path)
    unix.listen(4)

    def echo_once() -> None:
        conn, _ = unix.accept()
        with conn:
            conn.settimeout(20)
            conn.sendall(conn.recv(100).upper())

    thread = threading.Thread(target=echo_once, daemon=True)
    thread.start()
    mode = ["--kcptun"] if kcptun_mode else []
    server = procs("serve", "-l", "127.0.0.1:0", "-t", path, *mode)
    host, port = server.address()
    assert f"unix:{path}" in server.seen[-1]
    tunnel = procs("tunnel", "-l", "127.0.0.1:0", "-r", f"{host}:{port}", *mode)
    try:
        with socket.create_connection(tunnel.address(), timeout=20) as conn:
            conn.sendall(b"hello")
            assert conn.recv(100) == b"HELLO"
    finally:
        thread.join(20)
        unix.close()


@pytest.mark.parametrize("stalled", ["serve", "tunnel"])
def test_a_two_second_stall_of_either_end_keeps_the_connections(
    procs: Any,  # noqa: F811
    stalled: str,
) -> None:
    """kcptun (kcp-go, smux) rides out a peer silent for a few seconds: only
    smux's keep-alive (30 s) ends a session.  kcpsock's waiting-reader probes
    (``gone_timeout``, for KCP without smux, which has no FIN) counted the
    peer gone after about a second and dropped every connection of the tunnel.
    """
    import signal
    import threading

    echo = EchoServer()
    try:
        server = procs("serve", "127.0.0.1:0", "--forward", f"127.0.0.1:{echo.port}", "--kcptun")
        host, port = server.address()
        tunnel = procs("tunnel", "-l", "127.0.0.1:0", "-r", f"{host}:{port}", "--kcptun")
        with socket.create_connection(tunnel.address(), timeout=20) as conn:
            conn.sendall(b"hello")
            assert conn.recv(5) == b"hello"
            proc = {"serve": server, "tunnel": tunnel}[stalled].p
            proc.send_signal(signal.SIGSTOP)
            try:
                threading.Event().wait(2.0)  # the feature is a clock: a 2 s stall
            finally:
                proc.send_signal(signal.SIGCONT)
            conn.sendall(b"again")
            assert conn.recv(5) == b"again"
    finally:
        echo.close()
