#!/usr/bin/env python3
"""kcptun tunnel throughput: kcpsock on one end, kcptun on the other, vs kcptun on both.

In the same run, with and without compression.

Setups (TCP client -> tunnel client -> KCP -> tunnel server -> TCP sink):

* ``kcptun->kcptun``: kcptun-client and kcptun-server (the reference);
* ``kcptun->kcpsock``: kcptun-client and ``kcpsock serve --forward --kcptun``;
* ``kcpsock->kcptun``: ``kcpsock tunnel --kcptun`` and kcptun-server.

Each tunnel end runs in its own process, with kcptun's defaults (aes, FEC
10/3, mode fast, smux v1, windows 128/512 client and 1024/1024 server), plus
``--nocomp`` for the "nocomp" configurations; the "+fast3" configurations
add ``--mode fast3 --sndwnd 1024 --rcvwnd 1024`` on both ends (with kcptun's
defaults the client's 128-segment window and the server's 30 ms ACK interval
cap kcptun at about 128 * 1350 B / 30 ms = 5.8 MB/s on loopback).  The payload is half random,
half text (snappy halves the text).  One measurement: the TCP client sends an
8-byte length then N bytes through the tunnel; the sink answers b"DONE" when
it has them all; MB/s = N / time from connect to DONE.  Setups are measured
in turn, ``--repeat`` times, and each cell is the median.

Usage:
    python tools/bench_kcptun.py [--bytes 20000000] [--repeat 3] [--configs comp nocomp]
    python tools/bench_kcptun.py --codec     # snappy framing and CRC-32C speeds only

Loopback only (127.0.0.1); kcptun-client/kcptun-server must be installed
(Debian package kcptun).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.interop.kcptun import Kcptun, free_port, kcptun_binaries  # noqa: E402

KEY = "kcpsock-bench"
SETUPS = ("kcptun->kcptun", "kcptun->kcpsock", "kcpsock->kcptun")
WIDE = ["--mode", "fast3", "--sndwnd", "1024", "--rcvwnd", "1024"]
CONFIGS = {
    "comp": [],
    "nocomp": ["--nocomp"],
    "comp+fast3": WIDE,
    "nocomp+fast3": ["--nocomp", *WIDE],
}
LISTENING = re.compile(r"listening on (\[[^\]]+\]|[^\s:]+):(\d+)")
CHUNK = 65536


class Sink:
    """TCP sink on 127.0.0.1: reads an 8-byte length, then that many bytes, answers DONE."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    @staticmethod
    def _one(conn: socket.socket) -> None:
        conn.settimeout(120)
        with conn:
            try:
                head = b""
                while len(head) < 8:
                    piece = conn.recv(8 - len(head))
                    if not piece:
                        return
                    head += piece
                (left,) = struct.unpack(">Q", head)
                while left:
                    piece = conn.recv(min(CHUNK * 4, left))
                    if not piece:
                        return
                    left -= len(piece)
                conn.sendall(b"DONE")
                conn.recv(1)  # wait for the client to close
            except OSError:
                return

    def close(self) -> None:
        """Stop accepting."""
        self.sock.close()


def payload(size: int) -> bytes:
    """Half random, half text: ``size`` bytes (seeded)."""
    rng = random.Random(1)
    half = size // 2
    text = b"".join(
        b"line %d of the kcptun tunnel benchmark, mostly text\n" % i for i in range(size // 40)
    )
    return rng.randbytes(half) + text[: size - half]


class KcpsockProc:
    """``python -m kcpsock ARGS``; waits for its "listening on" line."""

    def __init__(self, *args: str) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.p = subprocess.Popen(
            [sys.executable, "-m", "kcpsock", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            cwd=ROOT,
            env=env,
        )
        assert self.p.stdout is not None
        deadline = time.monotonic() + 30
        self.address: Optional[tuple[str, int]] = None
        while time.monotonic() < deadline:
            line = self.p.stdout.readline().decode()
            if not line:
                break
            m = LISTENING.search(line)
            if m:
                self.address = (m.group(1).strip("[]"), int(m.group(2)))
                break
        if self.address is None:
            self.stop()
            raise RuntimeError(f"kcpsock {' '.join(args)} did not start")
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.p.stdout is not None
        for _ in self.p.stdout:
            pass

    def stop(self) -> None:
        """Terminate the process (kill after 10 s)."""
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(timeout=10)


def start_setup(setup: str, opts: list[str], sink_port: int) -> tuple[tuple[str, int], list[Any]]:
    """Start both tunnel ends; return (local TCP address, processes)."""
    client_bin, server_bin = kcptun_binaries()
    target = f"127.0.0.1:{sink_port}"
    procs: list[Any] = []
    common = ["--key", KEY, *opts]
    if setup.endswith("kcptun"):
        udp = free_port(socket.SOCK_DGRAM)
        server = Kcptun([server_bin, "-l", f"127.0.0.1:{udp}", "-t", target, *common, "--quiet"])
        procs.append(server)
        server.wait_ready()
        remote = f"127.0.0.1:{udp}"
    else:
        ks = KcpsockProc("serve", "127.0.0.1:0", "--forward", target, "--kcptun", *common)
        procs.append(ks)
        assert ks.address is not None
        remote = f"{ks.address[0]}:{ks.address[1]}"
    if setup.startswith("kcptun"):
        tcp = free_port(socket.SOCK_STREAM)
        client = Kcptun([client_bin, "-l", f"127.0.0.1:{tcp}", "-r", remote, *common, "--quiet"])
        procs.append(client)
        client.wait_ready()
        local = ("127.0.0.1", tcp)
    else:
        kc = KcpsockProc("tunnel", "-l", "127.0.0.1:0", "-r", remote, "--kcptun", *common)
        procs.append(kc)
        assert kc.address is not None
        local = kc.address
    return local, procs


def measure(local: tuple[str, int], data: bytes) -> float:
    """Send ``data`` through the tunnel; return MB/s until the sink's DONE."""
    deadline = time.monotonic() + 30
    while True:
        try:
            conn = socket.create_connection(local, timeout=120)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            threading.Event().wait(0.05)  # kcptun-client may still be starting its loop
    with conn:
        start = time.perf_counter()
        conn.sendall(struct.pack(">Q", len(data)))
        view = memoryview(data)
        for pos in range(0, len(view), CHUNK):
            conn.sendall(view[pos : pos + CHUNK])
        answer = conn.recv(4)
        elapsed = time.perf_counter() - start
    if answer != b"DONE":
        raise RuntimeError(f"transfer failed (sink answered {answer!r})")
    return len(data) / elapsed / 1e6


def codec_speeds(size: int = 4_000_000) -> None:
    """Print MB/s of the snappy framing paths and the pure-Python CRC-32C."""
    from kcpsock import snappy

    data = payload(size)

    def rate(fn: Any, n: int) -> float:
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - start)
        return n / best / 1e6

    print(f"payload {size / 1e6:g} MB, half random, half text; best of 3\n")
    print("| operation | MB/s |")
    print("|---|---|")
    small = data[: size // 8]
    print(
        f"| pure-Python CRC-32C (slicing-by-8) | {rate(lambda: snappy.crc32c(small), len(small)):.1f} |"
    )
    plain = snappy.FrameEncoder(compress=False).encode(small)
    print(
        "| pure encode (uncompressed chunks + CRC) | "
        f"{rate(lambda: snappy.FrameEncoder(compress=False).encode(small), len(small)):.1f} |"
    )
    print(
        "| pure decode of uncompressed chunks | "
        f"{rate(lambda: snappy.FrameDecoder(use_cramjam=False).feed(plain), len(small)):.1f} |"
    )
    if snappy.HAVE_CRAMJAM:
        packed = snappy.FrameEncoder(compress=True).encode(data)
        packed_small = snappy.FrameEncoder(compress=True).encode(small)
        print(
            "| pure decode of compressed chunks (block decoder + CRC) | "
            f"{rate(lambda: snappy.FrameDecoder(use_cramjam=False).feed(packed_small), len(small)):.1f} |"
        )
        print(
            "| cramjam encode (compressed chunks) | "
            f"{rate(lambda: snappy.FrameEncoder(compress=True).encode(data), size):.1f} |"
        )
        print(
            "| cramjam decode | "
            f"{rate(lambda: snappy.FrameDecoder(use_cramjam=True).feed(packed), size):.1f} |"
        )
        print(f"\ncompressed size: {len(packed) / size:.2f} of the payload")


def main() -> int:
    """Run the benchmark; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bytes", type=int, default=20_000_000, help="bytes per transfer")
    parser.add_argument("--repeat", type=int, default=3, help="runs per cell (median)")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--setups", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    parser.add_argument("--codec", action="store_true", help="measure the snappy codecs only")
    args = parser.parse_args()
    if args.codec:
        codec_speeds()
        return 0
    try:
        kcptun_binaries()
    except Exception as exc:
        print(f"bench_kcptun: {exc}", file=sys.stderr)
        return 1
    from kcpsock import snappy

    data = payload(args.bytes)
    sink = Sink()
    results: dict[tuple[str, str], list[float]] = {}
    try:
        for _ in range(args.repeat):
            for config in args.configs:
                for setup in args.setups:
                    local, procs = start_setup(setup, CONFIGS[config], sink.port)
                    try:
                        mbps = measure(local, data)
                    finally:
                        for proc in procs:
                            proc.stop()
                    results.setdefault((config, setup), []).append(mbps)
                    print(f"  {config:6} {setup:16} {mbps:7.1f} MB/s", file=sys.stderr)
    finally:
        sink.close()
    print(
        f"\n{args.bytes / 1e6:g} MB per transfer, median of {args.repeat}; "
        f"cramjam {'installed' if snappy.HAVE_CRAMJAM else 'NOT installed'}\n"
    )
    print("| config | setup (client -> server) | MB/s | runs | vs kcptun->kcptun |")
    print("|---|---|---|---|---|")
    for config in args.configs:
        ref = results.get((config, "kcptun->kcptun"))
        ref_med = statistics.median(ref) if ref else None
        for setup in args.setups:
            runs = results[(config, setup)]
            med = statistics.median(runs)
            ratio = f"{med / ref_med:.2f}" if ref_med else "-"
            cells = ", ".join(f"{r:.1f}" for r in runs)
            print(f"| {config} | {setup} | {med:.1f} | {cells} | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
