#!/usr/bin/env python3
"""Session benchmark over loopback: kcpsock and the real kcp-go, side by side.

Measures, in one run, for each pair of peers and each configuration:

* one-way throughput: the client sends an 8-byte length then N bytes, the
  server answers "DONE" once it has read them all (MB/s = N / time);
* echo throughput: the client sends N bytes while reading the echo;
* CPU seconds per MB on each side (client: its own process CPU time during
  the transfer; server: the change of /proc/<pid>/stat utime + stime);
* 64-byte round trips (ping-pong), p50 and p99.

Pairs (client -> server): kcpsock -> kcpsock, kcpsock -> kcp-go,
kcp-go -> kcpsock, kcp-go -> kcp-go.  kcp-go is tests/interop/peer (built
against Debian's golang-github-xtaci-kcp-dev); every peer runs in its own
process, so CPU figures are per side.  Profile: nodelay 1, interval 10,
resend 2, nc 1, windows 1024, MTU 1400, 4 MB socket buffers; configurations
"plain" (no crypto, no FEC) and "aes+fec" (aes, FEC 10/3).

Usage:
    python tools/bench.py [--bytes 100000000] [--rounds 1000] [--pairs ...]

Prints a markdown table (with --repeat N, each cell is the median of N
runs: the machine is shared and noisy).  The --role options are internal: the benchmark
runs itself as the kcpsock server and client processes.
"""

from __future__ import annotations

import argparse
import os
import shlex
import struct
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional, TypedDict

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.interop.gopeer import (  # noqa: E402
    GoServer,
    PeerUnavailable,
    build_peer,
    peer_flags,
    run_argv,
    run_client,
)


class _Profile(TypedDict):
    nodelay: tuple[int, int, int, int]
    wnd: tuple[int, int]
    mtu: int


PROFILE: _Profile = {"nodelay": (1, 10, 2, 1), "wnd": (1024, 1024), "mtu": 1400}
CONFIGS = {"plain": ("null", 0, 0), "aes+fec": ("aes", 10, 3)}
PAIRS = ("kcpsock->kcpsock", "kcpsock->kcp-go", "kcp-go->kcpsock", "kcp-go->kcp-go")
KEY = "it's a secrect"
SOCKBUF = 4 << 20
CHUNK = 32 * 1024


# -- the kcpsock side (runs in its own process) ------------------------------


def _kcp_options(args: argparse.Namespace) -> dict[str, Any]:
    import kcpsock
    from kcpsock.config import KCPConfig

    nd, interval, resend, nc = PROFILE["nodelay"]
    config = KCPConfig(
        nodelay=nd,
        interval=interval,
        resend=resend,
        nc=bool(nc),
        sndwnd=PROFILE["wnd"][0],
        rcvwnd=PROFILE["wnd"][1],
        mtu=PROFILE["mtu"],
        stream=args.stream,
        ack_nodelay=args.ack_nodelay,
        read_buffer=SOCKBUF,
        write_buffer=SOCKBUF,
    )
    crypt, ds, ps = CONFIGS[args.config]
    block = None
    if crypt != "null":
        block = kcpsock.new_block_crypt(crypt, kcpsock.derive_key(KEY))
    return {"block": block, "data_shards": ds, "parity_shards": ps, "config": config}


def _recv_exact(sock: Any, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        data = sock.recv(n - len(out))
        if not data:
            raise ConnectionError("peer closed")
        out += data
    return bytes(out)


def _cpu() -> float:
    return time.process_time()


def role_server(args: argparse.Namespace) -> None:
    """A kcpsock server speaking the Go peer's protocol (READY / SINK lines)."""
    import kcpsock

    listener = kcpsock.listen(("127.0.0.1", 0), **_kcp_options(args))

    def stdin_watch() -> None:
        sys.stdin.read()
        os._exit(0)

    threading.Thread(target=stdin_watch, daemon=True).start()
    host, port = listener.getsockname()[:2]
    print(f"READY {host}:{port}", flush=True)

    def echo(sock: Any) -> None:
        buf = bytearray(65536)
        view = memoryview(buf)
        while True:
            n = sock.recv_into(buf)
            if not n:
                return
            sock.sendall(view[:n])

    def sink(sock: Any) -> None:
        buf = bytearray(65536)
        while True:
            (want,) = struct.unpack(">Q", _recv_exact(sock, 8))
            t0, c0 = time.perf_counter(), _cpu()
            got = 0
            while got < want:
                n = sock.recv_into(buf, min(len(buf), want - got))
                if not n:
                    return
                got += n
            sock.sendall(b"DONE")
            print(
                f"SINK bytes={want} seconds={time.perf_counter() - t0:.6f} cpu={_cpu() - c0:.6f}",
                flush=True,
            )

    handler = echo if args.role == "echo-server" else sink
    while True:
        sock, _ = listener.accept()

        def run(s: Any = sock) -> None:
            try:
                handler(s)
            except OSError:
                pass
            finally:
                s.close()

        threading.Thread(target=run, daemon=True).start()


def role_client(args: argparse.Namespace) -> None:
    """A kcpsock client: send / echo-client / ping, printing an OK line."""
    import kcpsock

    host, _, port = args.connect.rpartition(":")
    sock = kcpsock.dial((host, int(port)), **_kcp_options(args))
    payload = os.urandom(CHUNK)
    total = args.bytes
    if args.role == "send":
        t0, c0 = time.perf_counter(), _cpu()
        sock.sendall(struct.pack(">Q", total))
        left = total
        while left > 0:
            n = min(left, CHUNK)
            sock.sendall(payload if n == CHUNK else payload[:n])
            left -= n
        if _recv_exact(sock, 4) != b"DONE":
            raise SystemExit("FAIL no DONE")
        print(f"OK bytes={total} seconds={time.perf_counter() - t0:.6f} cpu={_cpu() - c0:.6f}")
    elif args.role == "echo-client":
        t0, c0 = time.perf_counter(), _cpu()

        def writer() -> None:
            left = total
            while left > 0:
                n = min(left, CHUNK)
                sock.sendall(payload if n == CHUNK else payload[:n])
                left -= n

        w = threading.Thread(target=writer, daemon=True)
        w.start()
        buf = bytearray(65536)
        got = 0
        while got < total:
            n = sock.recv_into(buf)
            if not n:
                raise SystemExit("FAIL echo ended early")
            got += n
        w.join(60)
        print(f"OK bytes={total} seconds={time.perf_counter() - t0:.6f} cpu={_cpu() - c0:.6f}")
    else:  # ping
        msg = bytearray(args.size)
        rtts = []
        for i in range(args.rounds + 20):
            msg[0] = i & 0xFF
            t0 = time.perf_counter()
            sock.sendall(msg)
            back = _recv_exact(sock, args.size)
            if back[0] != msg[0]:
                raise SystemExit(f"FAIL round {i}: wrong echo")
            if i >= 20:
                rtts.append((time.perf_counter() - t0) * 1e6)
        rtts.sort()

        def q(p: float) -> float:
            return rtts[int(p * (len(rtts) - 1))]

        print(f"OK rounds={len(rtts)} p50_us={q(0.5):.1f} p99_us={q(0.99):.1f}")
    sock.close()


# -- the orchestrator ----------------------------------------------------------


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by process ``pid``."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def _self_argv(role: str, config: str, opts: argparse.Namespace) -> list[str]:
    argv = [sys.executable, str(Path(__file__).resolve()), "--role", role, "--config", config]
    if opts.stream:
        argv.append("--stream")
    if opts.ack_nodelay:
        argv.append("--ack-nodelay")
    return argv


def _go_flags(config: str, opts: argparse.Namespace) -> list[str]:
    crypt, ds, ps = CONFIGS[config]
    return peer_flags(
        crypt=crypt,
        key=KEY,
        ds=ds,
        ps=ps,
        stream=opts.stream,
        nodelay=PROFILE["nodelay"],
        wnd=PROFILE["wnd"],
        mtu=PROFILE["mtu"],
        ack_nodelay=opts.ack_nodelay,
        sockbuf=SOCKBUF,
    )


def start_server(
    side: str, kind: str, config: str, opts: argparse.Namespace, peer: Optional[Path]
) -> GoServer:
    """Start the echo/sink server of one side (kcp-go peer or kcpsock CLI)."""
    if side == "kcp-go":
        assert peer is not None
        return GoServer(peer, kind, _go_flags(config, opts), timeout=opts.timeout * 4).start()
    return GoServer(Path(sys.executable), argv=_self_argv(kind, config, opts)).start(30)


def run_one(
    side: str,
    kind: str,
    server: GoServer,
    config: str,
    opts: argparse.Namespace,
    peer: Optional[Path],
    **extra: Any,
) -> dict[str, str]:
    """Run one client of one side against ``server``; return its figures."""
    if side == "kcp-go":
        assert peer is not None
        flags = _go_flags(config, opts) + [f"-{k}={v}" for k, v in extra.items()]
        return run_client(peer, kind, server.address, flags, timeout=opts.timeout)
    argv = [
        *_self_argv(kind, config, opts),
        "--connect",
        f"{server.address[0]}:{server.address[1]}",
    ]
    for k, v in extra.items():
        argv += [f"--{k}", str(v)]
    return run_argv(argv, opts.timeout, kind)


def bench(opts: argparse.Namespace) -> list[dict[str, Any]]:
    """Run every pairing and configuration asked for; return one row per run."""
    peer: Optional[Path] = None
    need_go = any("kcp-go" in p for p in opts.pairs)
    if need_go:
        try:
            peer = build_peer()
        except PeerUnavailable as exc:
            print(f"# kcp-go pairs skipped: {exc}", file=sys.stderr)
            opts.pairs = [p for p in opts.pairs if "kcp-go" not in p]
    rows: list[dict[str, Any]] = []
    mb = opts.bytes / 1e6
    for config in opts.configs:
        for pair in opts.pairs:
            client_side, server_side = pair.split("->")
            row: dict[str, Any] = {"pair": pair, "config": config}
            for test, server_kind, client_kind in (
                ("one-way", "sink-server", "send"),
                ("echo", "echo-server", "echo-client"),
            ):
                runs = []
                for _ in range(opts.repeat):
                    server = start_server(server_side, server_kind, config, opts, peer)
                    try:
                        cpu0 = proc_cpu(server.pid)
                        try:
                            res = run_one(
                                client_side,
                                client_kind,
                                server,
                                config,
                                opts,
                                peer,
                                bytes=opts.bytes,
                            )
                        except (AssertionError, OSError, TimeoutError) as exc:
                            print(f"# {pair} {config} {test}: {exc}", file=sys.stderr)
                            continue
                        cpu1 = proc_cpu(server.pid)
                    finally:
                        server.close()
                    seconds = float(res["seconds"])
                    runs.append(
                        {
                            "mbps": mb / seconds,
                            "client_cpu": float(res["cpu"]) / mb,
                            "server_cpu": (cpu1 - cpu0) / mb,
                        }
                    )
                    print(f"# {pair} {config} {test}: {mb / seconds:.1f} MB/s", file=sys.stderr)
                # the median run by throughput (a failed run leaves a gap)
                runs.sort(key=lambda r: r["mbps"])
                row[test] = runs[(len(runs) - 1) // 2] if runs else None
            pings = []
            for _ in range(opts.repeat):
                server = start_server(server_side, "echo-server", config, opts, peer)
                try:
                    res = run_one(
                        client_side, "ping", server, config, opts, peer, rounds=opts.rounds, size=64
                    )
                    pings.append((float(res["p50_us"]) / 1000, float(res["p99_us"]) / 1000))
                except (AssertionError, OSError, TimeoutError) as exc:
                    print(f"# {pair} {config} ping: {exc}", file=sys.stderr)
                finally:
                    server.close()
            pings.sort()
            row["rtt"] = pings[(len(pings) - 1) // 2] if pings else None
            rows.append(row)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """Format the rows as the plain-text table BENCHMARKS.md shows."""

    def cell(r: Optional[dict[str, float]], key: str, fmt: str) -> str:
        return "failed" if r is None else format(r[key], fmt)

    lines = [
        "| client → server | config | one-way MB/s | CPU s/MB client / server "
        "| echo MB/s | CPU s/MB client / server | RTT p50 ms | RTT p99 ms |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        ow, ec, rtt = row.get("one-way"), row.get("echo"), row.get("rtt")
        lines.append(
            f"| {row['pair'].replace('->', ' → ')} | {row['config']} "
            f"| {cell(ow, 'mbps', '.1f')} "
            f"| {cell(ow, 'client_cpu', '.4f')} / {cell(ow, 'server_cpu', '.4f')} "
            f"| {cell(ec, 'mbps', '.1f')} "
            f"| {cell(ec, 'client_cpu', '.4f')} / {cell(ec, 'server_cpu', '.4f')} "
            f"| {'failed' if rtt is None else format(rtt[0], '.3f')} "
            f"| {'failed' if rtt is None else format(rtt[1], '.3f')} |"
        )
    return "\n".join(lines)


def ratios(rows: list[dict[str, Any]]) -> str:
    """kcpsock -> kcpsock one-way throughput as a fraction of kcp-go -> kcp-go's."""
    out = []
    for config in CONFIGS:
        mine = next(
            (r for r in rows if r["pair"] == "kcpsock->kcpsock" and r["config"] == config), None
        )
        go = next(
            (r for r in rows if r["pair"] == "kcp-go->kcp-go" and r["config"] == config), None
        )
        if mine and go and mine.get("one-way") and go.get("one-way"):
            ratio = mine["one-way"]["mbps"] / go["one-way"]["mbps"]
            out.append(f"{config}: kcpsock→kcpsock one-way = {ratio:.2f} x kcp-go→kcp-go")
    return "\n".join(out)


def main(argv: Optional[list[str]] = None) -> int:
    """Command-line entry point; returns the exit status."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bytes", type=int, default=100_000_000, help="bytes per transfer")
    p.add_argument("--rounds", type=int, default=1000, help="64-byte round trips")
    p.add_argument("--pairs", nargs="+", default=list(PAIRS), choices=PAIRS)
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--stream", action="store_true", help="stream mode on both sides")
    p.add_argument("--ack-nodelay", action="store_true", help="ACK right after input")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per run")
    p.add_argument(
        "--repeat", type=int, default=1, help="runs per figure; the table shows the median run"
    )
    # internal: this script as a kcpsock peer process
    p.add_argument("--role", choices=["sink-server", "echo-server", "send", "echo-client", "ping"])
    p.add_argument("--config", choices=list(CONFIGS), default="plain")
    p.add_argument("--connect", default="")
    p.add_argument("--size", type=int, default=64)
    opts = p.parse_args(argv)
    if opts.role in ("sink-server", "echo-server"):
        role_server(opts)
        return 0
    if opts.role:
        role_client(opts)
        return 0
    t0 = time.monotonic()
    rows = bench(opts)
    command = shlex.join(
        ["python", "tools/bench.py", *(argv if argv is not None else sys.argv[1:])]
    )
    print(f"\n`{command}` ({opts.bytes / 1e6:g} MB per transfer, {time.monotonic() - t0:.0f} s)\n")
    print(table(rows))
    r = ratios(rows)
    if r:
        print("\n" + r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
