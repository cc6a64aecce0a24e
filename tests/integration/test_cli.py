"""The ``kcpsock`` command line, driven as a subprocess on 127.0.0.1.

This file holds the tests that need no KCP session (help, usage errors, the
counters guide, the lossy relay) and the subprocess helpers that
test_cli_sessions.py reuses.  Readiness is read from each command's
"listening on HOST:PORT" line, never waited for by sleeping.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional

import pytest

ROOT = Path(__file__).resolve().parents[2]
LISTENING = re.compile(r"listening on (\[[^\]]+\]|[^\s:]+):(\d+)")


def kcpsock_cmd(*args: str) -> list[str]:
    """The argv that runs ``python -m kcpsock ARGS``."""
    return [sys.executable, "-m", "kcpsock", *args]


def run_cli(
    *args: str, input: Optional[bytes] = None, timeout: float = 60.0
) -> subprocess.CompletedProcess[bytes]:
    """Run a command to completion and return its result (bytes)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run(
        kcpsock_cmd(*args), input=input, capture_output=True, timeout=timeout, cwd=ROOT, env=env
    )


class Proc:
    """A long-running ``kcpsock`` subprocess whose stdout lines are collected."""

    def __init__(self, *args: str, stdin: Any = subprocess.DEVNULL) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.p = subprocess.Popen(
            kcpsock_cmd(*args),
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=ROOT,
            env=env,
        )
        self.lines: queue.Queue[Optional[str]] = queue.Queue()
        self.err_lines: queue.Queue[Optional[str]] = queue.Queue()
        self.seen: list[str] = []
        self._err_chunks: list[bytes] = []
        self._out = threading.Thread(target=self._pump, daemon=True)
        self._out.start()
        self._err = threading.Thread(target=self._pump_err, daemon=True)
        self._err.start()

    def _pump(self) -> None:
        assert self.p.stdout is not None
        for raw in self.p.stdout:
            self.lines.put(raw.decode("utf-8", "replace").rstrip("\n"))
        self.lines.put(None)

    def _pump_err(self) -> None:
        assert self.p.stderr is not None
        for raw in self.p.stderr:
            self._err_chunks.append(raw)
            self.err_lines.put(raw.decode("utf-8", "replace").rstrip("\n"))
        self.err_lines.put(None)

    @property
    def stderr(self) -> bytes:
        """Everything read from stderr so far."""
        return b"".join(self._err_chunks)

    def wait_err_line(self, pattern: re.Pattern[str], timeout: float = 20.0) -> re.Match[str]:
        """Return the match of the first new stderr line matching ``pattern``."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"no stderr line matching {pattern.pattern!r}: {self.stderr!r}"
                )
            try:
                line = self.err_lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"stderr closed before {pattern.pattern!r}: {self.stderr!r}")
            match = pattern.search(line)
            if match:
                return match

    def wait_line(self, pattern: re.Pattern[str], timeout: float = 20.0) -> re.Match[str]:
        """Return the match of the first new stdout line matching ``pattern``."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"no line matching {pattern.pattern!r} in {timeout} s; "
                    f"seen {self.seen!r}, stderr {self.stderr!r}"
                )
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                self.p.wait(timeout=10)
                self._err.join(timeout=10)
                raise AssertionError(
                    f"process exited ({self.p.returncode}) before "
                    f"{pattern.pattern!r}; seen {self.seen!r}, "
                    f"stderr {self.stderr!r}"
                )
            self.seen.append(line)
            match = pattern.search(line)
            if match:
                return match

    def address(self, timeout: float = 20.0) -> tuple[str, int]:
        """Wait for the "listening on HOST:PORT" line and return the address."""
        m = self.wait_line(LISTENING, timeout)
        return m.group(1).strip("[]"), int(m.group(2))

    def interrupt(self, timeout: float = 15.0) -> int:
        """Send SIGINT (Ctrl-C) and return the exit status."""
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGINT)
        code = self.p.wait(timeout=timeout)
        self._out.join(timeout=10)
        self._err.join(timeout=10)
        return code

    def rest(self) -> list[str]:
        """Lines printed after the ones already consumed (process must have ended)."""
        out = []
        while True:
            try:
                line = self.lines.get(timeout=5)
            except queue.Empty:
                break
            if line is None:
                break
            out.append(line)
        return out

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait(timeout=10)


@pytest.fixture
def procs() -> Any:
    """Collects Proc objects and kills whatever is left at the end of a test."""
    started: list[Proc] = []

    def start(*args: str, **kw: Any) -> Proc:
        proc = Proc(*args, **kw)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()


def assert_usage_error(result: subprocess.CompletedProcess[bytes], *needles: str) -> str:
    """Exit status 2, exactly one line on stderr, no traceback; returns that line."""
    err = result.stderr.decode()
    assert result.returncode == 2, (result.returncode, err)
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, lines
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# ---------------------------------------------------------------- help


@pytest.mark.parametrize(
    "command", ["demo", "serve", "connect", "bench", "tunnel", "relay", "stats"]
)
def test_help_of_every_command(command: str) -> None:
    result = run_cli(command, "--help")
    assert result.returncode == 0
    out = result.stdout.decode()
    assert out.startswith(f"usage: kcpsock {command}")
    if command in ("demo", "serve", "connect", "bench", "tunnel"):
        for option in (
            "--crypt",
            "--key",
            "--mode",
            "--sndwnd",
            "--datashard",
            "--stats",
            "--no-stream",
            "--json",
        ):
            assert option in out, option


def test_top_level_help_lists_commands() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    out = result.stdout.decode()
    for command in ("demo", "serve", "connect", "bench", "tunnel", "relay", "stats"):
        assert re.search(rf"^\s+{command}\s", out, re.M), command


def test_no_command_is_a_usage_error() -> None:
    assert run_cli().returncode == 2


# ---------------------------------------------------------------- user errors


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["serve", "nowhere"], "bad listen address"),
        (["serve", "127.0.0.1:70000"], "port must be"),
        (["connect", "127.0.0.1:0"], "port must be"),
        (["connect", ":4000"], "a host is needed"),
        (["connect", "no-such-host.invalid:4000"], "bad server address"),
        (["serve", "127.0.0.1:0", "--crypt", "rot13"], "unknown cipher 'rot13'"),
        (
            ["serve", "127.0.0.1:0", "--crypt", "aes-128", "--rawkey", "00112233"],
            "cannot take a 4-byte key",
        ),
        (["serve", "127.0.0.1:0", "--rawkey", "xyz"], "not hexadecimal"),
        (["serve", "127.0.0.1:0", "--key", "a", "--rawkey", "00" * 32], "conflicts"),
        (["serve", "127.0.0.1:0", "--mode", "fast3", "--nodelay", "0"], "--mode manual"),
        (["serve", "127.0.0.1:0", "--mtu", "20"], "--mtu"),
        (["serve", "127.0.0.1:0", "--dscp", "64"], "--dscp"),
        (["serve", "127.0.0.1:0", "--echo", "--discard"], "not allowed with"),
        (["serve", "127.0.0.1:0", "--raw", "--forward", "127.0.0.1:80"], "conflicts"),
        (["serve", "127.0.0.1:0", "--sndwnd", "many"], "invalid int value"),
        (["bench", "-c", "127.0.0.1:1", "--reverse", "--bidir"], "conflicts"),
        (["bench", "-c", "127.0.0.1:1", "--time", "1", "--bytes", "10"], "conflicts"),
        (["bench", "-s", "127.0.0.1:0", "--reverse"], "client option"),
        (["bench", "-s", "127.0.0.1:0", "-c", "127.0.0.1:1"], "not allowed with"),
        (["tunnel", "-l", "127.0.0.1:0"], "required"),
        (["relay", "-l", "127.0.0.1:0", "-t", "127.0.0.1:9", "--loss", "1.5"], "between 0 and 1"),
        (["relay", "-l", "127.0.0.1:0", "-t", "127.0.0.1:9", "--delay", "-3"], ">= 0"),
        (["demo", "--bytes", "0"], "--bytes must be > 0"),
        (["demo", "--loss", "lots"], "not a fraction"),
    ],
)
def test_user_errors_exit_2_with_one_line(args: list[str], needle: str) -> None:
    assert_usage_error(run_cli(*args), needle)


def test_tcp_port_in_use_is_a_usage_error() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = run_cli("tunnel", "-l", f"127.0.0.1:{port}", "-r", "127.0.0.1:9")
    assert_usage_error(result, "address already in use")


def test_udp_port_in_use_by_relay_is_a_usage_error() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        result = run_cli("relay", "-l", f"127.0.0.1:{port}", "-t", "127.0.0.1:9")
    assert_usage_error(result, "address already in use")


# ---------------------------------------------------------------- stats


def test_stats_explains_every_counter() -> None:
    import kcpsock

    result = run_cli("stats")
    assert result.returncode == 0
    out = result.stdout.decode()
    for name in kcpsock.snmp.header():
        assert re.search(rf"^\s+{name}\s+\S", out, re.M), name
    assert "(see kcp-go snmp.go)" not in out  # every counter has its own explanation
    data = json.loads(run_cli("stats", "--json").stdout)
    assert [c["name"] for c in data["counters"]] == list(kcpsock.snmp.header())
    assert all(c["meaning"] for c in data["counters"])


# ---------------------------------------------------------------- relay


#: probes per barrier of _relay_run
_PROBES = 20


def _relay_run(procs: Any, loss: float, seed: int, count: int) -> tuple[set[int], dict[str, Any]]:
    """Send ``count`` numbered datagrams through ``kcpsock relay``; return what arrived."""
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as src,
    ):
        sink.bind(("127.0.0.1", 0))
        sink.settimeout(0.2)
        relay = procs(
            "relay",
            "-l",
            "127.0.0.1:0",
            "-t",
            f"127.0.0.1:{sink.getsockname()[1]}",
            "--loss",
            str(loss),
            "--seed",
            str(seed),
            "--json",
        )
        ev = json.loads(relay.wait_line(re.compile(r'"event": "listening"')).string)
        host, _, port = ev["address"].rpartition(":")
        target = (host, int(port))
        arrived: set[int] = set()
        probes = 0
        probe_id = 1 << 30

        def barrier() -> None:
            # The relay is FIFO without delay: once a probe arrives, everything
            # sent before it has been forwarded or dropped.  The fates are
            # drawn in arrival order, so the datagrams before the last data
            # datagram must not depend on timing: a burst of _PROBES probes,
            # whatever arrives first (all lost: 0.2**20), not "retry when the
            # probe seems late" (a late probe on a loaded machine added one
            # more datagram and shifted every later fate).
            nonlocal probes, probe_id
            first = probe_id + 1
            for _ in range(_PROBES):
                probe_id += 1
                probes += 1
                src.sendto(probe_id.to_bytes(4, "big"), target)
            if wait_for_probe(first):
                return
            raise AssertionError("no probe came through the relay")

        def wait_for_probe(first: int, timeout: float = 10.0) -> bool:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    data = sink.recv(2048)
                except socket.timeout:
                    continue
                n = int.from_bytes(data[:4], "big")
                if first <= n <= probe_id:
                    return True
                if n < 1 << 30:
                    arrived.add(n)
            return False

        def last_barrier() -> None:
            # after the last data datagram, probe by probe: the relay must have
            # received every probe counted before it is interrupted; their
            # number changes no data datagram's fate
            nonlocal probes, probe_id
            for _ in range(100):
                probe_id += 1
                probes += 1
                src.sendto(probe_id.to_bytes(4, "big"), target)
                if wait_for_probe(probe_id, 0.5):
                    return
            raise AssertionError("no probe came through the relay")

        for i in range(count):
            src.sendto(i.to_bytes(4, "big") + bytes(60), target)
            if i % 100 == 99:
                barrier()
        last_barrier()
        code = relay.interrupt()
        assert code == 130
        final = [json.loads(line) for line in relay.rest() if '"final"' in line]
        assert len(final) == 1, relay.seen
        assert "Traceback" not in relay.stderr.decode()
        up = final[0]["counters"]["up"]
        assert up["received"] == count + probes
        return arrived, up


def test_relay_drops_the_requested_fraction_reproducibly(procs: Any) -> None:
    count = 2000
    arrived, up = _relay_run(procs, 0.2, 7, count)
    dropped = count - len(arrived)
    # Binomial(2000, 0.2): standard deviation 0.009 of the fraction.
    assert abs(dropped / count - 0.2) < 0.035, dropped
    assert up["forwarded"] + up["dropped"] == up["received"]
    # The same seed meets the same datagrams with the same fate.
    again, _ = _relay_run(procs, 0.2, 7, count)
    assert again == arrived
    # A lossless relay delivers everything.
    lossless, up0 = _relay_run(procs, 0.0, 7, 300)
    assert lossless == set(range(300))
    assert up0["dropped"] == 0


# A Ctrl-C may be handled on another thread of the command (the kernel gives a
# process's signal to any thread that does not block it), or on its main thread
# just before a blocking call began: Python then only sets a flag, which a main
# thread blocked in a long call does not see until the call returns.  The child
# forces the first case: once the main thread has entered its wait (the call
# named below, wrapped), SIGINT goes to a helper thread.
_CTRL_C_ON_ANOTHER_THREAD = """
import signal, sys, threading
import importlib
import kcpsock.cli
owner = importlib.import_module(sys.argv[1])
for part in sys.argv[2].split(".")[:-1]:
    owner = getattr(owner, part)
name = sys.argv[2].split(".")[-1]
real, entered = getattr(owner, name), threading.Event()
def wrapped(*args, **kwargs):
    entered.set()  # the main thread drops the GIL only inside the call
    return real(*args, **kwargs)
setattr(owner, name, wrapped)
def interrupt():
    if entered.wait(20):
        signal.pthread_kill(threading.get_ident(), signal.SIGINT)
        print("sent", flush=True)
threading.Thread(target=interrupt, daemon=True).start()
sys.exit(kcpsock.cli.main(sys.argv[3:]))
"""


@pytest.mark.parametrize(
    ("wait", "command"),
    [
        ("time sleep", ["relay", "-l", "127.0.0.1:0", "-t", "127.0.0.1:9"]),
        ("kcpsock.sock Listener.accept", ["serve", "-l", "127.0.0.1:0"]),
        ("kcpsock.sock Listener.accept", ["bench", "--server", "127.0.0.1:0"]),
        ("socket socket.accept", ["tunnel", "-l", "127.0.0.1:0", "-r", "127.0.0.1:9"]),
    ],
    ids=["relay", "serve", "bench-server", "tunnel"],
)
def test_ctrl_c_handled_on_another_thread_still_ends_the_command(
    wait: str, command: list[str]
) -> None:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-c", _CTRL_C_ON_ANOTHER_THREAD, *wait.split(), *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env=env,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"Ctrl-C ignored: still running after 20 s; stdout={out!r} stderr={err!r}")
    assert "sent" in out.splitlines(), (out, err)
    assert proc.returncode == 130, (out, err)
    assert "interrupted" in err and "Traceback" not in err, err


# ---------------------------------------------------------------- display


def test_live_line_fits_the_terminal() -> None:
    from kcpsock.cli.demo import _status_line

    for width in (40, 60, 80, 100, 200):
        for fancy in (True, False):
            line = _status_line(
                width, fancy, 0.5, 25_000_000, 50_000_000, 7.5e6, 12.0, 1234, 567, 0.05, 3.2
            )
            assert len(line) <= width
            assert line.lstrip("▕█▏[#-] ").startswith("50%")
    wide = _status_line(200, True, 0.5, 25_000_000, 50_000_000, 7.5e6, 12.0, 1234, 567, 0.05, 3.2)
    for text in ("7.50 MB/s", "srtt +12.0 ms", "retrans 1234", "FEC rec 567", "loss 5.0%"):
        assert re.search(text, wide), text
    assert "rtx 1234" in _status_line(
        70, True, 0.5, 25_000_000, 50_000_000, 7.5e6, 12.0, 1234, 567, 0.05, 3.2
    )
