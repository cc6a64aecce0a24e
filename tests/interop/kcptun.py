"""Helpers for the tests against Debian's kcptun (kcptun-client, kcptun-server).

Everything runs on 127.0.0.1; every wait is bounded.  kcptun's readiness is
read from its log ("key derivation done"), kcpsock's from its "listening on"
line.
"""

from __future__ import annotations

import os
import queue
import random
import shutil
import socket
import subprocess
import threading
import time
from typing import Any, Optional

import pytest

KEY = "kcpsock-kcptun-interop"
IO_TIMEOUT = 60.0


class KcptunUnavailable(Exception):
    """kcptun-client/kcptun-server are not installed."""


def kcptun_binaries() -> tuple[str, str]:
    """Paths of kcptun-client and kcptun-server (KcptunUnavailable if absent)."""
    client = shutil.which("kcptun-client")
    server = shutil.which("kcptun-server")
    if not client or not server:
        raise KcptunUnavailable(
            "kcptun-client/kcptun-server not found (Debian package kcptun; .ci/run installs it)"
        )
    return client, server


def require_kcptun() -> tuple[str, str]:
    """kcptun's binaries, or skip (fail under KCPSOCK_REQUIRE_INTEROP=1)."""
    try:
        return kcptun_binaries()
    except KcptunUnavailable as exc:
        if os.environ.get("KCPSOCK_REQUIRE_INTEROP", "") not in ("", "0"):
            pytest.fail(f"interop required (KCPSOCK_REQUIRE_INTEROP=1) but {exc}")
        pytest.skip(str(exc))


def free_port(kind: int) -> int:
    """A port free on 127.0.0.1 right now (for kcptun, which needs one named)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Kcptun:
    """A running kcptun-client or kcptun-server; its log lines are collected."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.p = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        self.lines: queue.Queue[Optional[str]] = queue.Queue()
        self.log: list[str] = []
        self._pump = threading.Thread(target=self._read, daemon=True)
        self._pump.start()

    def _read(self) -> None:
        assert self.p.stderr is not None
        for raw in self.p.stderr:
            self.lines.put(raw.decode("utf-8", "replace").rstrip("\n"))
        self.lines.put(None)

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Wait for kcptun's "key derivation done" line (it serves right after)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{self.argv[0]} not ready: {self.log!r}")
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"{self.argv[0]} exited: {self.log!r}")
            self.log.append(line)
            if "key derivation done" in line:
                return

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.kill()  # kcptun keeps running on SIGTERM for a while; nothing to flush
            self.p.wait(timeout=10)
        self._pump.join(timeout=10)


class EchoServer:
    """A threaded TCP echo server on 127.0.0.1 (the tunnel's target)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.connections = 0
        self._stop = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        conn.settimeout(IO_TIMEOUT)
        with conn:
            try:
                while True:
                    data = conn.recv(65536)
                    if not data:
                        return
                    conn.sendall(data)
            except OSError:
                return

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept (close does not)
        except OSError:
            pass
        self.sock.close()
        self._thread.join(timeout=10)


def payload(seed: int, size: int) -> bytes:
    """Half random, half compressible bytes (snappy compresses one half)."""
    rng = random.Random(seed)
    half = size // 2
    text = b"kcptun interop line %d: the quick brown fox jumps over the lazy dog\n"
    lines = bytearray()
    n = 0
    while len(lines) < size - half:
        lines += text % n
        n += 1
    return rng.randbytes(half) + bytes(lines[: size - half])


def echo_through(address: tuple[str, int], sizes: list[int]) -> list[bool]:
    """Open one TCP connection per size at once; each sends its payload and
    checks the echo byte for byte.  Returns one verdict per connection.
    """
    results: list[Any] = [None] * len(sizes)

    def one(index: int, size: int) -> None:
        data = payload(index + 1, size)
        try:
            with socket.create_connection(address, timeout=IO_TIMEOUT) as conn:
                errors: list[BaseException] = []

                def writer() -> None:
                    try:
                        conn.sendall(data)
                    except BaseException as exc:
                        errors.append(exc)

                w = threading.Thread(target=writer, daemon=True)
                w.start()
                got = bytearray()
                while len(got) < len(data):
                    piece = conn.recv(65536)
                    if not piece:
                        break
                    got += piece
                w.join(IO_TIMEOUT)
                results[index] = not errors and bytes(got) == data
        except OSError as exc:
            results[index] = exc

    threads = [
        threading.Thread(target=one, args=(i, size), daemon=True) for i, size in enumerate(sizes)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(IO_TIMEOUT * 2)
    return [r is True for r in results]
