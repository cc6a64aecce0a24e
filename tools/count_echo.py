#!/usr/bin/env python3
"""What an echo costs per MB, counted by the kernel: datagrams, system calls, sleeps.

Runs bench.py's echo test once (client writes and reads at once, the server
echoes every byte) for one pair of peers, kcpsock or the real kcp-go on
either side, and counts for each side, per MB echoed:

* datagrams sent, by UDP payload: full (the MTU: a data segment), ACK-only
  (a multiple of 24 bytes below the MTU: one or more ACK segments, or a
  window probe), other (a short data segment, possibly with ACKs);
* system calls (sendmmsg, recvmmsg, sendto, recvfrom, poll, select, futex,
  epoll_pwait, read, write, nanosleep) and context switches, from
  ``perf stat`` on the process (all its threads);
* CPU seconds.

Datagram lengths come from ``perf record -a -e net:net_dev_xmit`` filtered
to the two processes (the loopback device; header 42 bytes).  perf itself
costs some CPU: the figures are counts, not speeds (use bench.py for those).

``--send-cost`` instead measures the CPU time (best of several runs, this
process: the kernel's send path and, on loopback, its delivery) of
:meth:`kcpsock.transport.Transport.send` per datagram for a flush-shaped
batch (one ACK datagram, 45 full ones, a short one), with UDP segmentation
offload and without.

Usage::

    python tools/count_echo.py --pair 'kcpsock->kcpsock' [--mode stream|message]
        [--bytes 20000000] [--root DIR] [--profile FILE]
    python tools/count_echo.py --send-cost

Needs ``perf`` and permission to trace (root); loopback only, bounded.
"""

from __future__ import annotations

import argparse
import collections
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import bench  # noqa: E402

from tests.interop.gopeer import build_peer, parse_result  # noqa: E402

SYSCALLS = (
    "sendmmsg",
    "recvmmsg",
    "sendto",
    "recvfrom",
    "poll",
    "ppoll",
    "select",
    "pselect6",
    "futex",
    "epoll_pwait",
    "read",
    "write",
    "nanosleep",
)
EVENTS = ",".join(f"syscalls:sys_enter_{s}" for s in SYSCALLS) + ",context-switches,task-clock"
#: Loopback frame: 14 (Ethernet) + 20 (IPv4) + 8 (UDP) bytes before the payload.
HEADER = 42


def _perf_stat(
    pid: Optional[int], out: str, argv: Optional[list[str]] = None
) -> subprocess.Popen[bytes]:
    cmd = ["perf", "stat", "-x", ",", "-o", out, "-e", EVENTS]
    cmd += ["-p", str(pid)] if pid is not None else ["--", *(argv or [])]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)


def _read_stat(path: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in Path(path).read_text().splitlines():
        parts = line.split(",")
        if len(parts) < 3 or line.startswith("#"):
            continue
        try:
            value = float(parts[0])
        except ValueError:
            continue
        name = parts[2].replace("syscalls:sys_enter_", "")
        out[name] = value
    return out


def _lengths(data: str, pids: dict[int, str]) -> dict[str, collections.Counter[str]]:
    """Datagram classes per side from a perf record of net:net_dev_xmit."""
    text = subprocess.run(
        ["perf", "script", "-i", data, "-F", "pid,trace"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    res: dict[str, collections.Counter[str]] = {s: collections.Counter() for s in pids.values()}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 4 or "dev=lo" not in line:
            continue
        try:
            pid = int(parts[0])
        except ValueError:
            continue
        side = pids.get(pid)
        if side is None:
            continue
        length = next(int(p[4:]) for p in parts if p.startswith("len="))
        payload = length - HEADER
        if payload >= 1400:
            res[side]["full"] += 1
        elif payload % 24 == 0:
            res[side]["ack-only"] += 1
            res[side]["acks"] += payload // 24
        else:
            res[side]["other"] += 1
    return res


def main() -> None:
    """Run one echo under perf and print the counts per MB."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pair", default="kcpsock->kcpsock")
    ap.add_argument("--mode", choices=("stream", "message"), default="stream")
    ap.add_argument("--bytes", type=int, default=20_000_000)
    ap.add_argument("--root", default="")
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--profile", help="also perf record -g the server's cycles into this file")
    ap.add_argument("--send-cost", action="store_true", help="Transport.send CPU per datagram")
    args = ap.parse_args()
    if args.send_cost:
        send_cost()
        return
    opts = argparse.Namespace(stream=args.mode == "stream", ack_nodelay=False, timeout=args.timeout)
    if args.root:
        os.environ["KCPSOCK_BENCH_ROOT"] = args.root
    client_side, server_side = args.pair.split("->")
    peer = build_peer() if "kcp-go" in args.pair else None
    tmp = tempfile.mkdtemp(prefix="count_echo.")
    server = bench.start_server(server_side, "echo-server", "plain", opts, peer)
    rec = subprocess.Popen(
        ["perf", "record", "-q", "-a", "-e", "net:net_dev_xmit", "-o", f"{tmp}/xmit.data"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    sstat = _perf_stat(server.pid, f"{tmp}/server.stat")
    prof = None
    if args.profile:
        prof = subprocess.Popen(
            [
                "perf",
                "record",
                "-q",
                "--call-graph",
                "dwarf,16384",
                "-F",
                "1000",
                "-p",
                str(server.pid),
                "-o",
                args.profile,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    end = time.monotonic() + 10
    while not (Path(f"{tmp}/xmit.data").exists() and Path(f"{tmp}/server.stat").exists()):
        if time.monotonic() > end:
            raise SystemExit("perf did not start")
        time.sleep(0.05)
    time.sleep(0.5)  # perf attaches after it creates its files
    host, port = server.address[:2]
    if client_side == "kcp-go":
        assert peer is not None
        flags = [*bench._go_flags("plain", opts), f"-bytes={args.bytes}"]
        argv = [str(peer), "-mode", "echo-client", "-connect", f"{host}:{port}", *flags]
    else:
        argv = [*bench._self_argv("echo-client", "plain", opts), "--connect", f"{host}:{port}"]
        argv += ["--bytes", str(args.bytes)]
    cstat_path = f"{tmp}/client.stat"
    client = subprocess.Popen(
        ["perf", "stat", "-x", ",", "-o", cstat_path, "-e", EVENTS, "--", *argv],
        stdout=subprocess.PIPE,
        text=True,
    )
    child = 0
    end = time.monotonic() + 10
    while not child and time.monotonic() < end and client.poll() is None:
        try:
            kids = Path(f"/proc/{client.pid}/task/{client.pid}/children").read_text().split()
        except OSError:
            kids = []
        if kids:
            child = int(kids[0])
        else:
            time.sleep(0.001)
    try:
        out, _ = client.communicate(timeout=args.timeout)
    finally:
        for p in (sstat, prof):
            if p is not None:
                p.send_signal(signal.SIGINT)
                p.wait(30)
        rec.send_signal(signal.SIGINT)
        rec.wait(30)
        server.close()
    ok = [ln for ln in out.splitlines() if ln.startswith("OK")]
    if not ok:
        raise SystemExit(f"client failed: {out}")
    res = parse_result(ok[-1])
    mb = args.bytes / 1e6
    pids = {server.pid: "server", child: "client"}
    lengths = _lengths(f"{tmp}/xmit.data", pids)
    stats = {"client": _read_stat(cstat_path), "server": _read_stat(f"{tmp}/server.stat")}
    print(
        f"{args.pair} {args.mode} plain, {mb:.0f} MB echoed, "
        f"{mb / float(res['seconds']):.1f} MB/s (under perf) {ok[-1]}"
    )
    keys = ["full", "ack-only", "acks", "other"]
    print("| per MB | " + " | ".join(keys + list(SYSCALLS) + ["context-switches", "cpu ms"]) + " |")
    print("|---" * (len(keys) + len(SYSCALLS) + 3) + "|")
    for side in ("client", "server"):
        c = lengths.get(side, collections.Counter())
        s = stats[side]
        cells = [f"{c[k] / mb:.0f}" for k in keys]
        cells += [f"{s.get(k, 0) / mb:.0f}" for k in SYSCALLS]
        cells += [f"{s.get('context-switches', 0) / mb:.0f}", f"{s.get('task-clock', 0) / mb:.2f}"]
        print(f"| {side} | " + " | ".join(cells) + " |")


def send_cost(rounds: int = 200, runs: int = 7) -> None:
    """Print Transport.send's CPU per datagram, GSO on and off (loopback)."""
    import socket

    from kcpsock.transport import Transport

    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    batch = [b"\x00" * 24, *[os.urandom(1400) for _ in range(45)], b"\x01" * 700]
    dest = rx.getsockname()

    def drain() -> None:
        try:
            while True:
                rx.recv(2048, socket.MSG_DONTWAIT)
        except BlockingIOError:
            pass

    for gso in (True, False, True, False):
        transport = Transport(tx, owned=False, connected=False)
        if not gso:
            transport._gso = None
        elif transport._gso is None:
            print("GSO unavailable here")
            continue
        best = float("inf")
        for _ in range(runs):
            spent = 0.0
            for i in range(rounds):
                c0 = time.process_time()
                transport.send(batch, dest)
                spent += time.process_time() - c0
                if i % 10 == 9:
                    drain()
            drain()
            best = min(best, spent)
        per = best / (rounds * len(batch)) * 1e6
        print(f"Transport.send, GSO {'on ' if gso else 'off'}: {per:.2f} us CPU per datagram")


if __name__ == "__main__":
    main()
