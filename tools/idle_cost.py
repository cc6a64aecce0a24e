r"""CPU per keep-alive exchange of idle sessions: a listener process and a client process.

Issue 9's goal is "1,000 idle sessions cost under 1 % of a core" with the
default keep-alive (10 s).  This tool measures what that costs per
keep-alive exchange (a WASK probe and its WINS answer), a figure that
depends far less on the load of the shared machine than a percentage:

* a listener process (``--sessions`` accepted sessions, one handler thread
  each waiting in ``recv``, as tools/bench.py's echo server) and a client
  process (that many dialed sessions, one receiver thread each); each
  session echoes one byte, then everything is quiet;
* after ``--settle`` seconds each process measures ``--seconds`` seconds:
  its CPU time (``time.process_time``), the datagrams its sessions received
  and sent (KCP's ``InPkts``/``OutPkts``) and the updater's timer runs;
* printed per side: CPU % of one core, datagrams in/out, timers, and CPU µs
  per datagram received (one datagram in per side per exchange).

With ``--keepalive 1`` the same work comes ten times as often, so the
per-exchange figure is measured over more exchanges in less time.  Several
``--root label=DIR`` trees alternate run by run (before/after in one run)::

    .venv/bin/python tools/idle_cost.py --sessions 1000 --keepalive 1 --seconds 20 \
        --repeat 3 --root after=. before=/tmp/quiet_before
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench_profile import BENCH_PROFILE

ROOT = Path(__file__).resolve().parent.parent


def _import_kcpsock(root: str) -> Any:
    sys.path.insert(0, str(Path(root).resolve()))
    import kcpsock

    return kcpsock


def _thread_cpu() -> dict[str, float]:
    """CPU seconds of this process's threads, by kind (/proc/self/task/*/schedstat)."""
    kinds: dict[str, float] = {}
    for t in threading.enumerate():
        name = t.name
        if name.startswith("kcpsock-updater"):
            kind = "updater"
        elif "recv" in name or "receiver" in name or name.startswith("kcpsock"):
            kind = "receivers"
        else:
            kind = "other"
        try:
            # nanoseconds on the CPU (utime/stime in /proc/.../stat count
            # whole ticks per thread: 0 for a thread that ran 1 ms)
            with open(f"/proc/self/task/{t.native_id}/schedstat", encoding="ascii") as fh:
                ns = int(fh.read().split()[0])
        except OSError:
            continue
        kinds[kind] = kinds.get(kind, 0.0) + ns / 1e9
    return kinds


def _figures(kcpsock: Any) -> dict[str, float]:
    from kcpsock.stats import snmp
    from kcpsock.updater import updater

    v = snmp.copy()
    threads = _thread_cpu()
    return {
        "cpu_updater": threads.get("updater", 0.0),
        "cpu_receivers": threads.get("receivers", 0.0),
        "cpu_other": threads.get("other", 0.0),
        "cpu": time.process_time(),
        "in": float(v.InPkts),
        "out": float(v.OutPkts),
        "timers": float(updater.fired + getattr(updater, "claimed", 0)),
        "wakeups": float(getattr(updater, "wakeups", 0)),
        "sleeps": float(getattr(updater, "sleeps", 0)),
        "postponed": float(getattr(updater, "postponed", 0)),
    }


_PROFILING = threading.Event()
_PROFILES: list[Any] = []


def _install_profiler() -> None:
    """``--profile``: cProfile (thread CPU time) around the per-datagram and timer calls."""
    import cProfile

    from kcpsock import listener, session

    local = threading.local()

    def wrap(cls: Any, name: str) -> None:
        fn = getattr(cls, name)

        def wrapper(*a: Any, **k: Any) -> Any:
            if not _PROFILING.is_set():
                return fn(*a, **k)
            prof = getattr(local, "prof", None)
            if prof is None:
                prof = local.prof = cProfile.Profile(time.thread_time)
                _PROFILES.append(prof)
            prof.enable()
            try:
                return fn(*a, **k)
            finally:
                prof.disable()

        setattr(cls, name, wrapper)

    wrap(session.Session, "on_timer")
    wrap(session.Session, "_on_batch")
    wrap(listener.ListenerCore, "_on_batch")


_TIMING: dict[str, list[float]] = {}


def _install_timing() -> None:
    """``--timing``: thread CPU time and calls of the per-datagram and timer calls."""
    from kcpsock import listener, session, updater

    def wrap(cls: Any, name: str) -> None:
        fn = getattr(cls, name)
        acc = _TIMING.setdefault(f"{cls.__name__}.{name}", [0.0, 0.0])
        clock = time.thread_time

        def wrapper(*a: Any, **k: Any) -> Any:
            t0 = clock()
            try:
                return fn(*a, **k)
            finally:
                acc[0] += clock() - t0
                acc[1] += 1

        setattr(cls, name, wrapper)

    wrap(session.Session, "on_timer")
    wrap(session.Session, "_on_batch")
    wrap(listener.ListenerCore, "_on_batch")
    wrap(updater.Updater, "rearm")


def _dump_profile(path: str) -> None:
    import pstats

    profs = [p for p in _PROFILES if p is not None]
    if not profs:
        return
    stats = pstats.Stats(profs[0])
    for p in profs[1:]:
        stats.add(p)
    stats.dump_stats(path)


def _measure(kcpsock: Any, args: argparse.Namespace) -> None:
    threading.Event().wait(args.settle)
    for acc in _TIMING.values():
        acc[0] = acc[1] = 0.0
    a = _figures(kcpsock)
    t0 = time.perf_counter()
    print("MEASURING", flush=True)
    if args.profile:
        _PROFILING.set()
    threading.Event().wait(args.seconds)
    _PROFILING.clear()
    b = _figures(kcpsock)
    if args.profile:
        _dump_profile(f"{args.profile}.{args.role}")
    out = {k: b[k] - a[k] for k in a}
    out["seconds"] = time.perf_counter() - t0
    if _TIMING:
        print(
            f"# {args.role} updater: {out['sleeps']:.0f} sleeps, {out['wakeups']:.0f} woken"
            f" early, {out['postponed']:.0f} deadlines postponed"
        )
    for name, (cpu, calls) in _TIMING.items():
        if calls:
            print(f"# {args.role} {name}: {calls:.0f} calls, {1e6 * cpu / calls:.1f} µs each")
    print("RESULT " + json.dumps(out), flush=True)


def _config(kcpsock: Any, args: argparse.Namespace) -> Any:
    extra: dict[str, Any] = {}
    if args.bench_profile:
        # tools/bench.py's sessions: fast profile, big windows, stream mode
        extra = dict(BENCH_PROFILE, stream=True, read_buffer=4 << 20, write_buffer=4 << 20)
    return kcpsock.KCPConfig(
        keepalive_interval=args.keepalive,
        max_sessions_per_address=1_000_000,
        backlog_per_address=1_000_000,
        **extra,
    )


def _start_role(args: argparse.Namespace) -> Any:
    """Import the measured tree's kcpsock and install the asked-for instruments."""
    kcpsock = _import_kcpsock(args.tree)
    if args.profile:
        _install_profiler()
    if args.timing:
        _install_timing()
    return kcpsock


def role_server(args: argparse.Namespace) -> None:
    """The listener side: accept ``--sessions``, echo one byte, wait in recv."""
    kcpsock = _start_role(args)
    listener = kcpsock.listen(("127.0.0.1", 0), config=_config(kcpsock, args))
    print(f"READY {listener.getsockname()[1]}", flush=True)

    def handler(sock: Any) -> None:
        try:
            while True:
                data = sock.recv(100)
                if not data:
                    return
                sock.sendall(data)
        except OSError:
            pass

    for _ in range(args.sessions):
        sock, _ = listener.accept()
        threading.Thread(target=handler, args=(sock,), daemon=True).start()
    _measure(kcpsock, args)
    os._exit(0)


def role_client(args: argparse.Namespace) -> None:
    """The client side: ``--sessions`` dialed sessions, one byte echoed each."""
    kcpsock = _start_role(args)
    cfg = _config(kcpsock, args)
    socks = []
    for _ in range(args.sessions):
        s = kcpsock.dial(("127.0.0.1", args.port), config=cfg)
        s.settimeout(30)
        s.sendall(b"x")
        socks.append(s)
    for s in socks:
        if s.recv(1) != b"x":
            raise SystemExit("no echo")
    _measure(kcpsock, args)
    os._exit(0)


def _child(role: str, tree: str, args: argparse.Namespace, port: int = 0) -> subprocess.Popen[str]:
    argv = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--role",
        role,
        "--tree",
        tree,
        "--port",
        str(port),
        "--sessions",
        str(args.sessions),
        "--keepalive",
        str(args.keepalive),
        "--seconds",
        str(args.seconds),
        "--settle",
        str(args.settle),
        *(["--profile", args.profile] if args.profile else []),
        *(["--timing"] if args.timing else []),
        *(["--bench-profile"] if args.bench_profile else []),
    ]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)


def _result(proc: subprocess.Popen[str], timeout: float) -> dict[str, float]:
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("#"):
            print(line, end="", file=sys.stderr)
        if line.startswith("RESULT "):
            proc.wait(timeout)
            res: dict[str, float] = json.loads(line[7:])
            return res
    raise SystemExit(f"no result (exit {proc.wait(timeout)})")


def run_once(tree: str, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """One listener process and one client process on ``tree``; both sides' figures."""
    server = _child("server", tree, args)
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        if not line.startswith("READY "):
            raise SystemExit(f"server: {line!r}")
        client = _child("client", tree, args, int(line.split()[1]))
        try:
            limit = args.settle + args.seconds + 120
            c = _result(client, limit)
            s = _result(server, limit)
        finally:
            if client.poll() is None:
                client.kill()
    finally:
        if server.poll() is None:
            server.kill()
        server.wait()
    return {"server": s, "client": c}


def _row(label: str, side: str, r: dict[str, float], args: argparse.Namespace) -> str:
    pct = 100 * r["cpu"] / r["seconds"]
    per_in = 1e6 * r["cpu"] / r["in"] if r["in"] else float("nan")
    # scaled to the default 10-s keep-alive: the goal's figure
    at10 = pct * args.keepalive / 10.0
    parts = "/".join(
        f"{1e6 * r['cpu_' + k] / r['in']:.0f}" if r["in"] else "-"
        for k in ("receivers", "updater", "other")
    )
    return (
        f"| {label} | {side} | {pct:.2f} | {at10:.2f} | {r['in']:.0f} | {r['out']:.0f}"
        f" | {r['timers']:.0f} | {per_in:.0f} | {parts} |"
    )


def main(argv: list[str] | None = None) -> int:
    """Parse arguments; run a role (child) or the comparison (parent)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--role", choices=["server", "client"], help=argparse.SUPPRESS)
    p.add_argument("--tree", default=str(ROOT), help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--sessions", type=int, default=1000)
    p.add_argument("--keepalive", type=float, default=10.0, help="keepalive_interval, seconds")
    p.add_argument("--seconds", type=float, default=30.0, help="measured quiet period")
    p.add_argument("--settle", type=float, default=5.0, help="quiet seconds before measuring")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--bench-profile", action="store_true", help="tools/bench.py's session options")
    p.add_argument("--timing", action="store_true", help="print CPU per call (stdout '#')")
    p.add_argument("--profile", default="", help="write cProfile stats to PATH.server/.client")
    p.add_argument("--root", nargs="*", default=[], help="label=DIR trees (alternated)")
    args = p.parse_args(argv)
    if args.role == "server":
        role_server(args)
        return 0
    if args.role == "client":
        role_client(args)
        return 0
    trees = []
    for spec in args.root or [f"this={ROOT}"]:
        label, _, path = spec.rpartition("=")
        trees.append((label or path, str(Path(path).resolve())))
    print(
        f"{args.sessions} idle sessions, keepalive_interval {args.keepalive:g} s,"
        f" {args.seconds:g} s measured after {args.settle:g} s quiet; shared machine\n"
    )
    print(
        "| tree | side | CPU % of a core | scaled to a 10-s keep-alive |"
        " datagrams in | datagrams out | timers | CPU µs per datagram in |"
        " of which receiver threads / updater / other threads (schedstat) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    for _ in range(args.repeat):
        for label, tree in trees:
            res = run_once(tree, args)
            for side in ("server", "client"):
                print(_row(label, side, res[side], args), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
