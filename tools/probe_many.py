#!/usr/bin/env python3
"""Where the throughput of N sessions through one listener goes: counters, not only time.

Runs a kcpsock sink server (the tree named by ``KCPSOCK_BENCH_ROOT``, else
this one) in a child process and kcp-go's client (``-mode=send
-sessions=N``) against it, with tools/bench.py's profile, then prints:

* the client's wall time and MB/s;
* the kernel's ``RcvbufErrors`` (UDP datagrams dropped because a socket
  buffer was full; system-wide, so other work on the machine adds to it);
* the server's SNMP counters (``InPkts``, ``InSegs``, ``RepeatSegs``:
  segments received twice, i.e. retransmissions that were not needed
  or whose first copy was lost, ...), its sessions' inbound-queue drops,
  the updater's timer runs and early wake-ups;
* the server's CPU seconds per thread kind (receiver, updater, handlers).

Usage::

    python tools/probe_many.py [--sessions 100] [--bytes 30000000] [--repeat 3]
        [--root DIR ...]

With several ``--root`` trees the runs alternate tree by tree.  Loopback
only; every wait is bounded.

Also printed: the server's context switches (``csw [voluntary,
involuntary]``, getrusage: thread hand-offs cost most with many sessions),
its handlers' ``recv`` calls, and when each session was created (its first
datagram handled), accepted, its thread started and its first bytes read
(``marks``: every tenth, ms after the first creation).

Diagnostic switches (environment of this command):

* ``PROBE_FINE=FILE``: a 1-ms timeline of the first 600 ms into FILE
  (ms, InPkts, role lent, sessions, accepted, receiver read-ahead backlog,
  kernel queue estimate);
* ``PROBE_WINDOWS=FILE``: a 5-ms timeline of the busy sessions' windows
  into FILE (ms, InPkts, RepeatSegs, busy sessions, the share, the sum of
  their caps, the sum of what they advertise, their unread segments, the
  receiver's read-ahead, the kernel queue estimate);
* ``PROBE_CPROFILE=PREFIX``: cProfile the receiver and updater threads
  (best with ``KCPSOCK_PURE=1``); ``--profile FILE``: py-spy record (extra
  py-spy flags in ``PROBE_PYSPY``, e.g. ``--gil`` or ``--idle``);
  ``PROBE_PERF=FILE``: ``perf record`` the server (start-up included);
  ``PROBE_ATTACH='perf record -F 4000 -o FILE -p {pid}'`` (or ``strace -c
  -f -o FILE -p {pid}``, ``perf stat -e ... -p {pid}``): a command attached
  to the server only while the client runs (stopped with SIGINT after it;
  ``{pid}`` is the server's process id), so start-up and imports are not in
  its figures;
* ``PROBE_SELECT=1``: serve the sessions from one thread through
  ``selectors`` (as tools/bench.py's select server) instead of a thread
  per session;
* ``KCPSOCK_UDPIO_GILSTAT=1``: a line ``udpio GIL`` with the receiver's
  system calls by kind (blocking read, read-ahead, send), the time in them
  and the time from each one's return to holding the interpreter lock
  again (``kcpsock._udpio.gil_stats``);
* ``PROBE_POOL=N``: N handler threads started before the client runs; the
  acceptor hands them the sessions (a thread per session without the cost
  of starting one);
* ``PROBE_NOCAP=1``: lift the listener's window caps (WindowShare,
  DrainRate); ``PROBE_CAP=N``: the share's floor; ``PROBE_DFLOOR=N``: DrainRate's floor; ``PROBE_SWITCH=S``:
  ``sys.setswitchinterval(S)`` in the server; ``PROBE_GATE=IDLE,MAX``: the
  bounds (ms) of the listener's reader wake-up deferral (``WakeGate``);
  ``PROBE_PENDING=N``: the listener's ``pending_rcvwnd`` (segments a session
  waiting for accept or its first read may buffer).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def rcvbuf_errors() -> int:
    """The kernel's UDP RcvbufErrors counter (system-wide)."""
    with open("/proc/net/snmp") as f:
        rows = [line.split() for line in f if line.startswith("Udp:")]
    return int(rows[1][rows[0].index("RcvbufErrors")])


def _thread_cpu() -> dict[str, float]:
    """CPU seconds of this process's threads, summed by name kind."""
    tick = os.sysconf("SC_CLK_TCK")
    names = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[str, float] = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        cpu = (int(fields[11]) + int(fields[12])) / tick
        name = names.get(int(tid), "?")
        kind = name.split("-")[0] if name.startswith("Thread") else name
        out[kind] = out.get(kind, 0.0) + cpu
    return out


def _rx_queue(port: int) -> int:
    """Datagrams (of 1400 bytes) queued in the kernel for the UDP socket on ``port``."""
    try:
        with open("/proc/net/udp") as f:
            for line in f:
                parts = line.split()
                if parts[1].endswith(f":{port:04X}"):
                    return int(parts[4].split(":")[1], 16) // 2304
    except (OSError, IndexError, ValueError):
        pass
    return -1


def role_server(args: argparse.Namespace) -> None:
    """The sink server with counters (prints JSON on a STATS line of stdin)."""
    import struct

    from bench import _kcp_options, _recv_exact

    import kcpsock
    from kcpsock.stats import snmp
    from kcpsock.updater import updater

    if os.environ.get("PROBE_SWITCH"):
        sys.setswitchinterval(float(os.environ["PROBE_SWITCH"]))
    args.stream = True
    args.ack_nodelay = False
    args.config = "plain"
    profiles: list[Any] = []
    if os.environ.get("PROBE_CPROFILE"):
        # cProfile the receiver and updater threads (pstats file at STATS)
        import cProfile

        from kcpsock import transport
        from kcpsock import updater as updater_mod

        def wrap(orig: Any) -> Any:
            def run(*a: Any) -> None:
                pr = cProfile.Profile()
                profiles.append(pr)
                pr.enable()
                orig(*a)

            return run

        transport.Receiver._run = wrap(transport.Receiver._run)  # type: ignore[method-assign]
        updater_mod.Updater._run = wrap(updater_mod.Updater._run)  # type: ignore[method-assign]
    wake_sites: dict[str, int] = {}
    if os.environ.get("PROBE_WAKES"):
        # pure form only: which callers wake the updater thread
        import traceback

        from kcpsock import updater as updater_mod

        orig_schedule = updater_mod.Updater.schedule

        def schedule(self: Any, target: Any, deadline: int) -> None:
            before = self.wakeups
            orig_schedule(self, target, deadline)
            if self.wakeups != before:
                site = " < ".join(f.name for f in traceback.extract_stack(limit=5)[-5:-1][::-1])
                wake_sites[site] = wake_sites.get(site, 0) + 1

        updater_mod.Updater.schedule = schedule  # type: ignore[method-assign]
    fire_kinds: dict[str, int] = {}
    if os.environ.get("PROBE_FIRES"):
        # pure form only: what the sessions' timer runs found to do
        from kcpsock.session import Session as _Session

        orig_on_timer = _Session.on_timer

        def on_timer(self: Any, now: int) -> Any:
            k = self.kcp
            kind = ",".join(
                name
                for name, on in (
                    ("acks", bool(k.acklist)),
                    ("waitsnd", bool(k.waitsnd())),
                    ("probe", bool(k.probe)),
                    ("reader", bool(self._rwait)),
                    ("watch", bool(self._w_due)),
                    ("inbox", bool(self._inbox)),
                    ("late", now - (self.updater_deadline or now) > 5),
                )
                if on
            )
            fire_kinds[kind or "nothing"] = fire_kinds.get(kind or "nothing", 0) + 1
            return orig_on_timer(self, now)

        _Session.on_timer = on_timer  # type: ignore[method-assign]
    options = _kcp_options(args)
    if os.environ.get("PROBE_BACKLOG_PER_ADDRESS"):
        import dataclasses

        options["config"] = dataclasses.replace(
            options["config"], backlog_per_address=int(os.environ["PROBE_BACKLOG_PER_ADDRESS"])
        )
    if os.environ.get("PROBE_PENDING"):
        import dataclasses

        options["config"] = dataclasses.replace(
            options["config"], pending_rcvwnd=int(os.environ["PROBE_PENDING"])
        )
    listener = kcpsock.listen(("127.0.0.1", 0), **options)
    if os.environ.get("PROBE_NOCAP"):
        listener.core.window_share.hold = -1.0
        listener.core.drain.start = 0xFFFF
    gate = getattr(listener.core, "wake_gate", None)
    if os.environ.get("PROBE_GATE") and gate is not None:
        # the reader wake-up deferral's bounds: "IDLE_MS,MAX_MS" (0,0: off)
        gate.idle_ms, gate.max_ms = (int(x) for x in os.environ["PROBE_GATE"].split(","))
    if os.environ.get("PROBE_DFLOOR"):
        listener.core.drain.floor = int(os.environ["PROBE_DFLOOR"])
    if os.environ.get("PROBE_CAP"):
        listener.core.window_share.floor = int(os.environ["PROBE_CAP"])
    batch_log: list[tuple[float, int, int, float, int]] = []
    if os.environ.get("PROBE_BATCHES"):
        rcv = listener.core._receiver
        orig_handler = rcv._handler

        def logged(batch: Any) -> None:
            t0 = time.monotonic()
            c0 = time.thread_time()
            n0 = len(listener.core.table)
            orig_handler(batch)
            batch_log.append(
                (
                    t0,
                    len(batch),
                    len(listener.core.table) - n0,
                    time.monotonic() - t0,
                    round((time.thread_time() - c0) * 1e6),
                )
            )

        rcv._handler = logged
    totals = {"inbox_drops": 0, "sessions": 0, "srtt_max": 0, "handler_cpu": 0.0}
    spans: list[tuple[float, float]] = []  # (first bytes, done) per session
    sizes: list[int] = []  # what each recv_into returned (racy appends are fine: a figure)
    calls = [0]  # recv_into calls of the handlers (racy count: a figure, not a test)
    lock = threading.Lock()

    def sink(sock: Any) -> None:
        buf = bytearray(65536)
        while True:
            try:
                (want,) = struct.unpack(">Q", _recv_exact(sock, 8))
            except ConnectionError:
                return
            t_start = time.monotonic()
            marks["first"].append(t_start)
            got = 0
            while got < want:
                n = sock.recv_into(buf, min(len(buf), want - got))
                if not n:
                    return
                got += n
                calls[0] += 1
                sizes.append(n)
            sock.sendall(b"DONE")
            with lock:
                spans.append((t_start, time.monotonic()))

    def run(s: Any) -> None:
        marks["running"].append(time.monotonic())
        cpu0 = time.thread_time()
        try:
            sink(s)
        except OSError:
            pass
        finally:
            sess = s.session
            with lock:
                totals["inbox_drops"] += sess.inbox_drops
                totals["sessions"] += 1
                totals["handler_cpu"] += time.thread_time() - cpu0
                totals["srtt_max"] = max(totals["srtt_max"], sess.kcp.rx_srtt)
            s.close()

    marks: dict[str, list[float]] = {
        "created": [],
        "called": [],
        "accept": [],
        "started": [],
        "running": [],
        "first": [],
    }
    # the acceptor's seconds in accept(), in Thread(...).start(), its CPU seconds,
    # and from accept() returning to the new thread running (all sessions summed)
    acceptor_time = [0.0, 0.0, 0.0, 0.0]

    def note_created(sock: Any) -> None:
        # when the session was created: its blacklist entry's expiry less the TTL
        key = sock.session.route.key
        exp = None if key is None else listener.core.blacklist._entries.get(key)
        if exp is not None:
            marks["created"].append(exp - listener.core.blacklist.ttl)

    def acceptor() -> None:
        while True:
            called = time.monotonic()
            sock, _ = listener.accept()
            marks["accept"].append(time.monotonic())
            marks["called"].append(called)
            note_created(sock)
            if pool is not None:
                pool.put(sock)
            else:
                threading.Thread(target=run, args=(sock,), daemon=True).start()
            marks["started"].append(time.monotonic())
            acc = acceptor_time
            acc[0] += marks["accept"][-1] - called  # in accept()
            acc[1] += marks["started"][-1] - marks["accept"][-1]  # creating and starting the thread
            acc[2] = time.thread_time()
            if len(marks["running"]) == len(marks["accept"]):
                acc[3] += marks["running"][-1] - marks["accept"][-1]  # until the thread ran

    def select_server() -> None:
        # PROBE_SELECT: the same sink protocol served by one thread through
        # selectors (as tools/bench.py's role_select_server), for comparing
        # the server's CPU and switches with the thread per session
        import selectors

        from bench import SinkReader, accept_ready, answer_done

        listener.setblocking(False)
        sel = selectors.DefaultSelector()
        sel.register(listener, selectors.EVENT_READ, None)
        buf = bytearray(65536)
        view = memoryview(buf)
        while True:
            for key, _ in sel.select(timeout=1.0):
                if key.data is None:
                    for conn in accept_ready(listener):
                        marks["accept"].append(time.monotonic())
                        note_created(conn)
                        conn.setblocking(False)
                        sel.register(conn, selectors.EVENT_READ, SinkReader())
                    continue
                peer: Any = key.fileobj
                reader: SinkReader = key.data
                try:
                    n = peer.recv_into(buf)
                except BlockingIOError:
                    continue
                except OSError:
                    n = 0
                if not n:
                    sel.unregister(peer)
                    peer.close()
                    continue
                calls[0] += 1
                sizes.append(n)
                for started in reader.feed(view[:n]):
                    if started:
                        reader.t0 = time.monotonic()
                        marks["first"].append(reader.t0)
                    else:
                        answer_done(peer)
                        spans.append((reader.t0, time.monotonic()))

    # PROBE_POOL=N: N handler threads started before the client runs, the
    # acceptor hands them the sockets (what a thread per session would give
    # if starting a thread cost nothing)
    pool: Any = None
    if os.environ.get("PROBE_POOL"):
        import queue

        pool = queue.SimpleQueue()

        def pooled() -> None:
            run(pool.get())

        for _ in range(int(os.environ["PROBE_POOL"])):
            threading.Thread(target=pooled, daemon=True).start()
    if os.environ.get("PROBE_SELECT"):
        threading.Thread(target=select_server, daemon=True).start()
    else:
        threading.Thread(target=acceptor, daemon=True).start()
    timeline: list[int] = []
    rxq: list[int] = []

    def sampler() -> None:
        # InPkts every 100 ms from the first datagram on (at most 60 s)
        tick = threading.Event()
        while not snmp.InPkts:
            tick.wait(0.002)
        for _ in range(600):
            timeline.append(snmp.InPkts)
            rxq.append(_rx_queue(port))
            tick.wait(0.1)

    host, port = listener.getsockname()[:2]
    threading.Thread(target=sampler, daemon=True).start()
    fine: list[tuple[float, int, int, int, int, int, float]] = []

    def fine_sampler() -> None:
        # every ms for 600 ms from the first datagram: InPkts, role lent, sessions, accepted, pending
        tick = threading.Event()
        rcv = listener.core._receiver
        while not snmp.InPkts:
            tick.wait(0.0005)
        end = time.monotonic() + 0.6
        while time.monotonic() < end:
            fine.append(
                (
                    time.monotonic(),
                    snmp.InPkts,
                    int(rcv._lent),
                    len(listener.core.table),
                    len(marks["accept"]),
                    rcv.pending,
                    _rx_queue(port),
                )
            )
            tick.wait(0.001)

    if os.environ.get("PROBE_FINE"):
        threading.Thread(target=fine_sampler, daemon=True).start()
    windows: list[tuple[float, str]] = []

    def window_sampler() -> None:
        # every 5 ms from the first datagram (at most 60 s): what the busy
        # sessions advertise together, and the queue in front of the receiver
        tick = threading.Event()
        core = listener.core
        rcv = core._receiver
        while not snmp.InPkts:
            tick.wait(0.0005)
        end = time.monotonic() + 60.0
        while time.monotonic() < end and len(windows) < 12000:
            busy = list(core.window_share.busy)
            adv = caps = queued = 0
            each: list[int] = []
            for route in busy:
                k = getattr(route.target, "kcp", None)
                if k is None:
                    continue
                adv += k._wnd_advertised()
                cap = min(k.wnd_cap, k.rcv_wnd)
                caps += cap
                each.append(cap)
                queued += len(k.rcv_queue)
            each.sort()
            spread = f"{each[0]}/{each[len(each) // 2]}/{each[-1]}" if each else "-"
            figures = (
                snmp.InPkts,
                snmp.RepeatSegs,
                len(busy),
                core.window_share.share,
                caps,
                adv,
                queued,
                rcv.pending,
                _rx_queue(port),
                spread,
            )
            windows.append((time.monotonic(), " ".join(str(x) for x in figures)))
            tick.wait(0.005)

    if os.environ.get("PROBE_WINDOWS"):
        threading.Thread(target=window_sampler, daemon=True).start()
    import resource

    t = os.times()
    base = (t.user + t.system, _thread_cpu())
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    from kcpsock._accel import native

    udpio = native("_udpio")
    gil_stats = getattr(udpio, "gil_stats", None)  # KCPSOCK_UDPIO_GILSTAT=1: per call kind
    if gil_stats is not None:
        gil_stats(True)
    print(f"READY {host}:{port}", flush=True)
    for line in sys.stdin:
        if line.strip() == "STATE":
            # why a run hangs: every live session's state
            from kcpsock.updater import now_ms

            now = now_ms()
            for sess in listener.core.sessions():
                k = sess.kcp
                dl = sess.updater_deadline
                print(
                    f"# {sess.state.value} conv={sess.conv} deadline="
                    f"{None if dl is None else dl - now} cap={getattr(k, 'wnd_cap', '-')}"
                    f" rcv_wnd={k.rcv_wnd} rcv_nxt={k.rcv_nxt} rcv_queue={len(k.rcv_queue)}"
                    f" rcv_buf={len(k.rcv_buf)} acklist={len(k.acklist)} probe={k.probe}"
                    f" inbox={sess.queued_batches()} deferred={sess.deferred_rcvwnd}"
                    f" pending={sess.route.pending} in_segs={k.in_segs}",
                    file=sys.stderr,
                )
            print(
                f"# queue={len(listener.core._queue)} refused={listener.core.refused}"
                f" updater={updater!r} heap={updater.pending()}",
                file=sys.stderr,
                flush=True,
            )
            continue
        if line.strip() == "STATS":
            if profiles:
                import pstats

                for i, pr in enumerate(profiles):
                    pstats.Stats(pr).dump_stats(f"{os.environ['PROBE_CPROFILE']}.{i}")
            for s in listener.core.sessions():
                totals["inbox_drops"] += s.inbox_drops
                totals["srtt_max"] = max(totals["srtt_max"], s.kcp.rx_srtt)
            t = os.times()
            threads = _thread_cpu()
            for name, v in base[1].items():
                threads[name] = threads.get(name, 0.0) - v
            if fine:
                f0 = fine[0][0]
                with open(os.environ["PROBE_FINE"], "w") as f:
                    for row in fine:
                        f.write(
                            f"{(row[0] - f0) * 1000:7.1f} "
                            + " ".join(str(x) for x in row[1:7])
                            + "\n"
                        )
            if windows:
                w0 = windows[0][0]
                with open(os.environ["PROBE_WINDOWS"], "w") as f:
                    f.write(
                        "# ms InPkts RepeatSegs busy share sum(cap) sum(advertised)"
                        " sum(rcv_queue) readahead kernel cap(min/median/max)\n"
                    )
                    for at, line in windows:
                        f.write(f"{(at - w0) * 1000:8.1f} {line}\n")
            if batch_log:
                b0 = batch_log[0][0]
                with open(os.environ["PROBE_BATCHES"], "w") as f:
                    for t0, n, new, dt, cpu in batch_log:
                        f.write(f"{(t0 - b0) * 1000:8.2f} {n:4d} {new:3d} {dt * 1000:7.2f} {cpu}\n")
            ru1 = resource.getrusage(resource.RUSAGE_SELF)
            stats = {
                "csw": [ru1.ru_nvcsw - ru0.ru_nvcsw, ru1.ru_nivcsw - ru0.ru_nivcsw],
                "snmp": snmp.as_dict(),
                "totals": totals,
                "fired": updater.fired,
                "claimed": getattr(updater, "claimed", None),
                "recv_calls": calls[0],
                "gate": None if gate is None else [gate.deferrals, gate.woken],
                "recv_sizes": _quantiles(sizes),
                "recv_hist": _size_hist(sizes) if os.environ.get("PROBE_SIZES") else None,
                "spans": spans,
                "wakeups": updater.wakeups,
                "cpu": t.user + t.system - base[0],
                "threads": threads,
                "rxq": rxq[:60],
                "timeline": [b - a for a, b in zip(timeline, timeline[1:])][:60],
                "marks": {
                    k: [round((x - marks["created"][0]) * 1000) for x in sorted(v)][::10]
                    for k, v in marks.items()
                    if v
                },
                "wake_sites": wake_sites,
                "acceptor": [round(x * 1000, 1) for x in acceptor_time],
                "fire_kinds": fire_kinds,
                "refused": {k: v for k, v in listener.refused.items() if v},
                "gil": gil_stats() if gil_stats is not None else None,
            }
            print("STATS " + json.dumps(stats), flush=True)
    os._exit(0)


def _attach(pid: int) -> subprocess.Popen[bytes] | None:
    """Start ``PROBE_ATTACH`` (with ``{pid}``) on the server; wait until it is attached."""
    spec = os.environ.get("PROBE_ATTACH")
    if not spec:
        return None
    argv = [a.replace("{pid}", str(pid)) for a in shlex.split(spec)]
    tool = subprocess.Popen(argv)
    # perf and strace print or create their output once attached: wait for the
    # server's threads to be traced (TracerPid) or the output file (bounded)
    out = next((argv[i + 1] for i, a in enumerate(argv[:-1]) if a in ("-o", "--output")), "")
    deadline = time.monotonic() + 5.0
    tick = threading.Event()
    while time.monotonic() < deadline:
        if out and os.path.exists(out) and os.path.getmtime(out) >= time.time() - 5:
            break
        try:
            with open(f"/proc/{pid}/status") as f:
                if any(x.startswith("TracerPid:") and x.split()[1] != "0" for x in f):
                    break
        except OSError:
            break
        tick.wait(0.01)
    tick.wait(0.2)  # perf needs a moment after creating its file (diagnostic only)
    return tool


def one_run(args: argparse.Namespace, root: str, peer: Path) -> dict[str, Any]:
    """One server process, one kcp-go client run; the figures."""
    from bench import _go_flags

    from tests.interop.gopeer import run_client

    env = dict(os.environ)
    if root:
        env["KCPSOCK_BENCH_ROOT"] = root
    argv = [sys.executable, str(Path(__file__).resolve()), "--role", "server"]
    if args.profile:
        argv = [
            str(Path(sys.executable).parent / "py-spy"),
            "record",
            "-o",
            args.profile,
            "-r",
            "1000",
            "-f",
            "raw",
            "--threads",
            "--nonblocking",
            *os.environ.get("PROBE_PYSPY", "").split(),
            "--",
            *argv,
        ]
    if os.environ.get("PROBE_PERF"):
        argv = ["perf", "record", "-F", "2000", "-o", os.environ["PROBE_PERF"], "--", *argv]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        line = proc.stdout.readline()
        for _ in range(10):  # py-spy says a few words first
            if line.startswith("READY") or not line:
                break
            line = proc.stdout.readline()
        if not line.startswith("READY"):
            raise RuntimeError(f"server said {line!r}")
        host, _, port = line.split()[1].rpartition(":")
        attached = _attach(proc.pid)
        opts = argparse.Namespace(stream=True, ack_nodelay=False)
        flags = [*_go_flags("plain", opts), f"-bytes={args.bytes}", f"-sessions={args.sessions}"]
        e0 = rcvbuf_errors()
        try:
            res = run_client(peer, "send", (host, int(port)), flags, timeout=args.timeout)
        except AssertionError:
            subprocess.run(
                [str(Path(sys.executable).parent / "py-spy"), "dump", "--pid", str(proc.pid)],
                timeout=30,
                check=False,
            )
            proc.stdin.write("STATE\n")
            proc.stdin.flush()
            threading.Event().wait(3)
            raise
        e1 = rcvbuf_errors()
        if attached is not None:
            attached.send_signal(signal.SIGINT)
            attached.wait(60)
        proc.stdin.write("STATS\n")
        proc.stdin.flush()
        while True:
            line = proc.stdout.readline()
            if not line or line.startswith("STATS "):
                break
        stats = json.loads(line[6:]) if line else {}
    finally:
        try:
            proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    seconds = float(res["seconds"])
    return {
        "mbps": float(res["bytes"]) / 1e6 / seconds,
        "mb": float(res["bytes"]) / 1e6,
        "seconds": seconds,
        "client_cpu": float(res["cpu"]),
        "client": {k: res.get(k) for k in ("out_pkts", "retrans", "fast", "early", "lost")},
        "rcvbuf_errors": e1 - e0,
        **stats,
    }


def _quantiles(values: list[int]) -> list[int]:
    """p10, p25, p50, p75, p90 of ``values`` (empty: [])."""
    if not values:
        return []
    v = sorted(values)
    return [v[len(v) * q // 100] for q in (10, 25, 50, 75, 90)]


def _size_hist(values: list[int]) -> dict[int, int]:
    """How many reads returned how many 1376-byte segments (rounded up): the commonest 12."""
    hist: dict[int, int] = {}
    for v in values:
        k = -(-v // 1376)
        hist[k] = hist.get(k, 0) + 1
    return dict(sorted(hist.items(), key=lambda kv: -kv[1])[:12])


def _spans(spans: list[list[float]]) -> str:
    """Session start and end times, summarised (ms after the first start)."""
    t0 = min(a for a, _ in spans)
    starts = sorted(round((a - t0) * 1000) for a, _ in spans)
    ends = sorted(round((b - t0) * 1000) for _, b in spans)
    q = [0, len(spans) // 2, len(spans) * 9 // 10, len(spans) - 1]
    return f"starts p0/50/90/100 {[starts[i] for i in q]}, ends {[ends[i] for i in q]}"


def _gil(g: dict[str, Any]) -> str:
    """``_udpio.gil_stats()`` per call kind: calls, ms in calls, ms to get the GIL back."""
    out = []
    for kind in ("wait", "nowait", "send"):
        n, call, wait, most, over1, over5 = g[kind]
        out.append(
            f"{kind} {n} call {call / 1e6:.1f} ms, GIL back {wait / 1e6:.1f} ms"
            f" (max {most / 1e6:.2f}, >1ms {over1}, >5ms {over5})"
        )
    return "; ".join(out)


def show(label: str, r: dict[str, Any]) -> str:
    """One line of figures."""
    s = r.get("snmp", {})
    th = r.get("threads", {})
    threads = " ".join(f"{k}={v:.2f}" for k, v in sorted(th.items()) if v >= 0.01)
    return (
        f"{label}: {r['mbps']:.1f} MB/s {r['seconds']:.2f} s client CPU {r['client_cpu']:.2f}; RcvbufErrors {r['rcvbuf_errors']};"
        f" InPkts {s.get('InPkts')} InSegs {s.get('InSegs')} RepeatSegs {s.get('RepeatSegs')}"
        f" OutPkts {s.get('OutPkts')} InErrs {s.get('InErrs')} refused {r.get('refused')}"
        f" client {r.get('client')} inbox_drops {r.get('totals', {}).get('inbox_drops')}"
        f" srtt_max {r.get('totals', {}).get('srtt_max')}"
        f" csw {r.get('csw')} recv_calls {r.get('recv_calls')} sizes p10-90 {r.get('recv_sizes')} gate {r.get('gate')}{' hist ' + str(r.get('recv_hist')) if r.get('recv_hist') else ''} fired {r.get('fired')} claimed {r.get('claimed')} wakeups {r.get('wakeups')};"
        f" server CPU {r.get('cpu', 0):.2f} s = {r.get('cpu', 0) * 1000 / (r['mb'] or 1):.2f} ms/MB ({threads}"
        f" handlers={r.get('totals', {}).get('handler_cpu', 0.0):.2f})"
        + (
            f"\n   InPkts per 100 ms: {r['timeline'][: int(r['seconds'] * 10) + 2]}"
            if "timeline" in r
            else ""
        )
        + (
            "\n   sessions (start..done ms after the first start): " + _spans(r["spans"])
            if r.get("spans")
            else ""
        )
        + (
            f"\n   kernel queue (datagrams): {r['rxq'][: int(r['seconds'] * 10) + 2]}"
            if "rxq" in r
            else ""
        )
        + f"\n   marks {r.get('marks')}"
        + f"\n   acceptor ms (in accept, in Thread.start, its CPU, until the thread ran) {r.get('acceptor')}"
        + (f"\n   udpio GIL {_gil(r['gil'])}" if r.get("gil") else "")
        + (f"\n   updater wake-ups by caller {r['wake_sites']}" if r.get("wake_sites") else "")
        + (f"\n   timer runs by what they found {r['fire_kinds']}" if r.get("fire_kinds") else "")
    )


def main() -> int:
    """Command-line entry point."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sessions", type=int, default=100)
    p.add_argument("--bytes", type=int, default=30_000_000)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument("--root", nargs="*", default=[""])
    p.add_argument("--profile", default="", help="py-spy record the server into this file")
    p.add_argument("--role", choices=["server"])
    args = p.parse_args()
    if args.role == "server":
        role_server(args)
        return 0
    from tests.interop.gopeer import build_peer

    peer = build_peer()
    for i in range(args.repeat):
        for spec in args.root:
            label, _, path = spec.rpartition("=")
            root = str(Path(path).resolve()) if path else ""
            try:
                r = one_run(args, root, peer)
            except (AssertionError, OSError, RuntimeError, TimeoutError) as exc:
                print(f"{label or path or 'this'} #{i}: failed: {exc}", flush=True)
                continue
            print(show(f"{label or path or 'this'} #{i}", r), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
