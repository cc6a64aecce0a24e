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
runs: the machine is shared and noisy), and with N > 1 a stability table of
every run: MB/s, the client's RTO and fast resends and the segments received
twice (kcpsock and kcp-go alike), CPU per MB of each side, what the rest of
the machine did meanwhile (the host's steal, the other processes' CPU, the
server's wait for a CPU, the kcpsock server's longest pause between reads),
and why the slowest run was slow (an RTO storm and what came with it, the
host, other load, more CPU per MB, or the machine); then a summary per pair.
``--syscount`` adds to each kcpsock run's line both peers' system calls,
datagrams per call, futex calls, wake-ups, context switches and page faults
per MB (tools/syscount.py), and the client's timing of a fixed piece of work
before and after the transfer (``cal``: a slower machine, not more work).
--timeline DIR keeps every read and send of the kcpsock peers for diagnosis.
--srtt MS samples the clients' smoothed RTT; --pin runs servers and clients
on a core each (not comparable with unpinned figures: BENCHMARKS.md).  The --role options are internal: the benchmark
runs itself as the kcpsock server and client processes.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import shlex
import socket
import statistics
import struct
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional, TypedDict, TypeVar

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
# --root DIR: the kcpsock tree the kcpsock peer processes import (before/after
# comparisons in one run); passed to the role processes through the environment
_KCPSOCK_ROOT = os.environ.get("KCPSOCK_BENCH_ROOT")
if _KCPSOCK_ROOT:
    sys.path.insert(0, _KCPSOCK_ROOT)

from tests.interop.gopeer import (  # noqa: E402
    GoServer,
    PeerUnavailable,
    build_peer,
    parse_result,
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
        # every client of the benchmark comes from 127.0.0.1: lift the
        # per-address limits meant for hostile networks (issue 11), which
        # would refuse sessions 129.. of 'many'/'idle' and the first datagrams
        # of a burst of new sessions
        max_sessions_per_address=1_000_000,
        backlog_per_address=1_000_000,
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


class _SysCount:
    """--syscount: this process's system calls, wake-ups and context switches over a transfer.

    Opened before the process starts a thread (the counters are inherited
    by threads started later); :meth:`start` and :meth:`result` bracket one
    transfer; the result also has the session's datagrams in and out
    (``pin``/``pout``), so calls per datagram can be read off.  Fields are
    prefixed ``sc_``; empty when off or unavailable (tools/syscount.py).
    """

    def __init__(self, on: bool) -> None:
        self.counters: Any = None
        if on:
            sys.path.insert(0, str(Path(__file__).resolve().parent))
            import syscount

            self.counters = syscount.open_counters()
        self.before: dict[str, int] = {}
        self.packets = (0, 0)
        self.cpu = 0.0
        self.cal = ""

    def start(self, sock: Any, calibrate: bool = False) -> None:
        if self.counters is not None:
            self.cal = _calibrate() if calibrate else ""
            self.before = self.counters.read()
            self.packets = _packets(sock)
            self.cpu = _cpu()

    def result(self, sock: Any) -> str:
        if self.counters is None or not self.before:
            return ""
        after = self.counters.read()
        pin, pout = _packets(sock)
        fields = {k: after[k] - self.before[k] for k in after if k in self.before}
        fields["pin"] = pin - self.packets[0]
        fields["pout"] = pout - self.packets[1]
        fields["cpu_us"] = round((_cpu() - self.cpu) * 1e6)
        # a client calibrates before and after (outside its CPU figure); a
        # server not (its CPU is read from outside while the client runs)
        cal = f" sc_cal0={self.cal} sc_cal1={_calibrate()}" if self.cal else ""
        return "".join(f" sc_{k}={v}" for k, v in fields.items()) + cal


def _calibrate() -> str:
    """--syscount: CPU microseconds of two fixed pieces of work, run now in this thread.

    ``calp``: a pure-Python loop (the interpreter, hot caches); ``calm``:
    copies of a 4 MB buffer (the memory system).  The same work every time:
    if a run's CPU per MB rises and these rise with it, the machine ran
    slower (a busy hyperthread sibling, frequency), not kcpsock doing more.
    """
    t0 = time.thread_time()
    x = 0
    for i in range(200_000):
        x += i & 7
    t1 = time.thread_time()
    buf = bytearray(4 << 20)
    for _ in range(8):
        bytes(buf)
    t2 = time.thread_time()
    return f"{(t1 - t0) * 1e6:.0f},{(t2 - t1) * 1e6:.0f}"


def _packets(sock: Any) -> tuple[int, int]:
    try:
        f = sock.figures()
    except AttributeError:
        return (0, 0)
    return (f["packets_in"], f["packets_out"])


def _server_listener(args: argparse.Namespace) -> Any:
    """A kcpsock listener on 127.0.0.1 for a server role; the process exits when stdin closes."""
    import kcpsock

    listener = kcpsock.listen(("127.0.0.1", 0), **_kcp_options(args))

    def stdin_watch() -> None:
        sys.stdin.read()
        os._exit(0)

    threading.Thread(target=stdin_watch, daemon=True).start()
    return listener


def role_server(args: argparse.Namespace) -> None:
    """A kcpsock server speaking the Go peer's protocol (READY / SINK lines)."""
    sc = _SysCount(args.syscount)
    listener = _server_listener(args)
    if args.timeline:
        _Gaps.tasks = _TaskSampler(args.timeline)
    host, port = listener.getsockname()[:2]
    print(f"READY {host}:{port}", flush=True)

    def echo(sock: Any) -> None:
        buf = bytearray(65536)
        view = memoryview(buf)
        echoed, report = 0, args.report_bytes
        gaps = _Gaps(args.timeline, "echo", sock)
        sc.start(sock)
        while True:
            n = sock.recv_into(buf)
            if not n:
                return
            gaps.read(echoed + n)
            sock.sendall(view[:n])
            if echoed < report <= echoed + n:
                # the echo run's end: the client's resends received twice here
                print(
                    f"ECHO bytes={echoed + n}" + _retrans(sock) + gaps.result() + sc.result(sock),
                    flush=True,
                )
            echoed += n

    def sink(sock: Any) -> None:
        buf = bytearray(65536)
        while True:
            (want,) = struct.unpack(">Q", _recv_exact(sock, 8))
            t0, c0 = time.perf_counter(), _cpu()
            sc.start(sock)
            got = 0
            gaps = _Gaps(args.timeline, "sink", sock)
            while got < want:
                n = sock.recv_into(buf, min(len(buf), want - got))
                if not n:
                    return
                got += n
                gaps.read(got)
            sock.sendall(b"DONE")
            try:
                repeat = f" repeat={sock.figures()['repeat_segs']}"  # segments received twice
            except AttributeError:  # a tree without KCPSocket.figures
                repeat = ""
            print(
                f"SINK bytes={want} seconds={time.perf_counter() - t0:.6f} cpu={_cpu() - c0:.6f}"
                + repeat
                + gaps.result()
                + sc.result(sock),
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


def accept_ready(listener: Any) -> Iterator[Any]:
    """Every connection a non-blocking listener has ready (``accept`` until ``BlockingIOError``)."""
    while True:
        try:
            conn, _addr = listener.accept()
        except BlockingIOError:
            return
        yield conn


class SinkReader:
    """The sink protocol as read from a non-blocking socket, one read at a time.

    A transfer is an 8-byte big-endian length, then that many bytes; the
    server answers DONE after each and another may follow.
    """

    __slots__ = ("header", "t0", "want")

    def __init__(self) -> None:
        self.header = b""
        self.want = -1  # bytes of this transfer still to come (-1: reading the length)
        self.t0 = 0.0  # free for the caller (the probe: when the length came)

    def feed(self, data: memoryview) -> Iterator[bool]:
        """Take ``data``; yield True when a length is complete, False when a transfer is."""
        n = len(data)
        at = 0
        while at < n:
            if self.want < 0:
                take = min(8 - len(self.header), n - at)
                self.header += bytes(data[at : at + take])
                at += take
                if len(self.header) < 8:
                    continue
                (self.want,) = struct.unpack(">Q", self.header)
                self.header = b""
                yield True
            else:
                take = min(self.want, n - at)
                self.want -= take
                at += take
            if self.want == 0:
                self.want = -1
                yield False


def answer_done(sock: Any) -> None:
    """Send DONE on a non-blocking socket (a bounded wait if its window is full)."""
    sock.settimeout(10.0)
    sock.sendall(b"DONE")
    sock.setblocking(False)


def role_select_server(args: argparse.Namespace) -> None:
    """The sink server's protocol served by one thread: ``selectors`` over every session.

    The pattern of a server of many connections (readiness through
    ``fileno``, non-blocking ``accept`` and ``recv_into``), where
    :func:`role_server` runs a thread per session.
    """
    import selectors

    listener = _server_listener(args)
    listener.setblocking(False)
    host, port = listener.getsockname()[:2]
    print(f"READY {host}:{port}", flush=True)
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ, None)
    buf = bytearray(65536)
    view = memoryview(buf)
    while True:
        for key, _ in sel.select(timeout=1.0):
            if key.data is None:
                for conn in accept_ready(listener):
                    conn.setblocking(False)
                    sel.register(conn, selectors.EVENT_READ, SinkReader())
                continue
            sock: Any = key.fileobj
            reader: SinkReader = key.data
            try:
                n = sock.recv_into(buf)
            except BlockingIOError:
                continue
            except OSError:  # the session failed: drop it, serve the others
                n = 0
            if not n:
                sel.unregister(sock)
                sock.close()
                continue
            for started in reader.feed(view[:n]):
                if not started:
                    answer_done(sock)


def _retrans(sock: Any) -> str:
    """The sender's retransmission counters as ``key=value`` fields (empty if unknown)."""
    try:
        f = sock.figures()
    except AttributeError:  # a tree without KCPSocket.figures
        return ""
    # datagrams the session's inbound queue dropped (full): a loss kcpsock
    # made itself (not in figures(): read where it is kept)
    inbox = getattr(getattr(sock, "_session", None), "inbox_drops", None)
    return (
        f" lost={f['lost_segs']} fast={f['fast_retrans_segs']} sent={f['segments_out']}"
        f" repeat={f['repeat_segs']}" + ("" if inbox is None else f" inbox={inbox}")
    )


class _Gaps:
    """The longest pause between two reads of a kcpsock server (one clock read a read).

    On lossless loopback a receiver that reads nothing for longer than its
    peer's RTO (30 ms at least) makes the peer resend: the longest gap says
    whether a slow run's receiver stalled (an echo server's gap includes its
    own ``sendall``, which waits while its send window is full).  With
    ``--timeline DIR`` every read is also kept as ``monotonic seconds, bytes
    so far, the advertised window's cap, segments waiting in the receive
    queue``, written to ``DIR/<role>-<pid>-<n>.txt`` at :meth:`result` (the
    sender's file has the same clock: CLOCK_MONOTONIC is system-wide on
    Linux).
    """

    _runs = 0
    #: --timeline: the process's thread sampler (its file is written with each run's)
    tasks: Optional[_TaskSampler] = None

    def __init__(self, timeline: str, role: str, sock: Any) -> None:
        self._last = 0.0
        self.longest = 0.0
        self._timeline = timeline
        self._role = role
        self._kcp = getattr(getattr(sock, "_session", None), "kcp", None) if timeline else None
        self._rows: list[tuple[float, int, int, int]] = []

    def read(self, total: int) -> None:
        """One read returned; ``total``: the bytes read so far."""
        now = time.perf_counter()
        if self._last and now - self._last > self.longest:
            self.longest = now - self._last
        self._last = now
        if self._timeline:
            k = self._kcp
            cap = getattr(k, "wnd_cap", -1) if k is not None else -1
            queued = len(getattr(k, "rcv_queue", ())) if k is not None else -1
            self._rows.append((now, total, cap, queued))

    def result(self) -> str:
        """' gap_ms=..' (and the timeline file written, with --timeline)."""
        if self._timeline:
            _Gaps._runs += 1
            if _Gaps.tasks is not None:
                _Gaps.tasks.write(_Gaps._runs)
            name = f"{self._role}-{os.getpid()}-{_Gaps._runs}.txt"
            with open(os.path.join(self._timeline, name), "w", encoding="ascii") as fh:
                fh.writelines(f"{t:.6f} {n} {c} {q}\n" for t, n, c, q in self._rows)
            self._rows = []
        return f" gap_ms={self.longest * 1000:.1f}"


class _TaskSampler:
    """--timeline: this process's threads' CPU time and run delay every 2 ms (a thread).

    Written with the reads' timeline (``DIR/tasks-<pid>-<n>.txt``: monotonic
    seconds, then per thread ``name:cpu_ms:wait_ms``), it tells what a stalled
    receiver was doing: running (CPU time grows: its own work), waiting for a
    CPU (run delay grows: other load) or neither (blocked on a lock or
    sleeping).  Diagnosis only: the sampling itself takes the interpreter
    lock 500 times a second.
    """

    def __init__(self, timeline: str, every: float = 0.002) -> None:
        self._timeline = timeline
        self._every = every
        self._stop = threading.Event()
        self._rows: list[str] = []
        self._thread = threading.Thread(target=self._run, daemon=True, name="task-sampler")
        if timeline:
            self._thread.start()

    def _run(self) -> None:
        pid = os.getpid()
        while not self._stop.wait(self._every):
            names = {t.native_id: t.name for t in threading.enumerate()}
            parts = [f"{time.perf_counter():.6f}"]
            for tid in sorted(os.listdir(f"/proc/{pid}/task")):
                try:
                    with open(f"/proc/{pid}/task/{tid}/schedstat", encoding="ascii") as fh:
                        run, wait = fh.read().split()[:2]
                except (OSError, ValueError):
                    continue
                name = names.get(int(tid), tid).replace(" ", "_").replace(":", "_")
                parts.append(f"{name}:{int(run) / 1e6:.3f}:{int(wait) / 1e6:.3f}")
            self._rows.append(" ".join(parts) + "\n")

    def write(self, n: int) -> None:
        """Write the samples so far as run ``n``'s file (nothing without --timeline)."""
        if not self._timeline:
            return
        rows, self._rows = self._rows, []
        name = f"tasks-{os.getpid()}-{n}.txt"
        with open(os.path.join(self._timeline, name), "w", encoding="ascii") as fh:
            fh.writelines(rows)


class _SrttSampler:
    """--srtt N: a thread sampling a session's smoothed RTT every N ms (bench.py --srtt)."""

    def __init__(self, sock: Any, every_ms: int) -> None:
        self._sock = sock
        self._every = every_ms / 1000.0
        self._stop = threading.Event()
        self._samples: list[int] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        if every_ms > 0:
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            self._samples.append(int(self._sock.srtt))

    def result(self) -> str:
        """Stop; ' srtt_mean=.. srtt_max=..' (ms), or '' without samples."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        got = self._samples
        if not got:
            return ""
        return f" srtt_mean={sum(got) / len(got):.1f} srtt_max={max(got)}"


def role_client(args: argparse.Namespace) -> None:
    """A kcpsock client: send / echo-client / ping, printing an OK line."""
    import kcpsock

    host, _, port = args.connect.rpartition(":")
    sc = _SysCount(args.syscount and args.role in ("send", "echo-client"))
    sock = kcpsock.dial((host, int(port)), **_kcp_options(args))
    payload = os.urandom(CHUNK)
    total = args.bytes
    srtt = _SrttSampler(sock, args.srtt if args.role in ("send", "echo-client") else 0)
    if args.role == "send":
        sc.start(sock, calibrate=True)
        t0, c0 = time.perf_counter(), _cpu()
        sock.sendall(struct.pack(">Q", total))
        left = total
        rows: list[str] = []
        while left > 0:
            n = min(left, CHUNK)
            sock.sendall(payload if n == CHUNK else payload[:n])
            left -= n
            if args.timeline:
                f = sock.figures()
                rows.append(
                    f"{time.perf_counter():.6f} {total - left} {f['lost_segs']} {f['srtt']}"
                    f" {f['rto']} {f['rmt_wnd']} {f['waitsnd']}\n"
                )
        if _recv_exact(sock, 4) != b"DONE":
            raise SystemExit("FAIL no DONE")
        if rows:
            # --timeline: per 32 KB chunk: monotonic seconds, bytes handed over,
            # RTO resends, srtt, rto, the peer's window, segments not acknowledged
            with open(os.path.join(args.timeline, f"send-{os.getpid()}.txt"), "w") as fh:
                fh.writelines(rows)
        end = time.perf_counter()
        print(
            f"OK bytes={total} seconds={end - t0:.6f} cpu={_cpu() - c0:.6f} end={end:.6f}"
            + _retrans(sock)
            + srtt.result()
            + sc.result(sock)
        )
    elif args.role == "echo-client":
        sc.start(sock, calibrate=True)
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
        end = time.perf_counter()
        print(
            f"OK bytes={total} seconds={end - t0:.6f} cpu={_cpu() - c0:.6f} end={end:.6f}"
            + _retrans(sock)
            + srtt.result()
            + sc.result(sock)
        )
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


def role_udp_echo(args: argparse.Namespace) -> None:
    """The raw-UDP floor: echo every datagram (no KCP), READY protocol."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))

    def stdin_watch() -> None:
        sys.stdin.read()
        os._exit(0)

    threading.Thread(target=stdin_watch, daemon=True).start()
    host, port = s.getsockname()
    print(f"READY {host}:{port}", flush=True)
    while True:
        data, addr = s.recvfrom(2048)
        s.sendto(data, addr)


def role_udp_ping(args: argparse.Namespace) -> None:
    """Raw-UDP ping-pong between two processes: the floor for Python here."""
    host, _, port = args.connect.rpartition(":")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((host, int(port)))
    s.settimeout(5)
    msg = b"x" * args.size
    rtts = []
    for i in range(args.rounds + 20):
        t0 = time.perf_counter()
        s.send(msg)
        s.recv(2048)
        if i >= 20:
            rtts.append((time.perf_counter() - t0) * 1e6)
    rtts.sort()
    p50, p99 = rtts[len(rtts) // 2], rtts[int(0.99 * (len(rtts) - 1))]
    print(f"OK rounds={len(rtts)} p50_us={p50:.1f} p99_us={p99:.1f}")


def role_multi_send(args: argparse.Namespace) -> None:
    """N sessions from one process, each sending bytes/N to a sink server at once."""
    import kcpsock

    host, _, port = args.connect.rpartition(":")
    options = _kcp_options(args)
    socks = [kcpsock.dial((host, int(port)), **options) for _ in range(args.sessions)]
    each = args.bytes // args.sessions
    payload = os.urandom(CHUNK)
    errors: list[BaseException] = []
    start = threading.Barrier(args.sessions + 1)

    def one(sock: Any) -> None:
        try:
            start.wait(30)
            sock.sendall(struct.pack(">Q", each))
            left = each
            while left > 0:
                n = min(left, CHUNK)
                sock.sendall(payload if n == CHUNK else payload[:n])
                left -= n
            if _recv_exact(sock, 4) != b"DONE":
                raise ConnectionError("no DONE")
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(s,), daemon=True) for s in socks]
    for t in threads:
        t.start()
    start.wait(30)
    t0, c0 = time.perf_counter(), _cpu()
    for t in threads:
        t.join(args.timeout)
    seconds = time.perf_counter() - t0
    if errors or any(t.is_alive() for t in threads):
        raise SystemExit(f"FAIL {errors[:3]}")
    for sock in socks:
        sock.close()
    print(f"OK bytes={each * args.sessions} seconds={seconds:.6f} cpu={_cpu() - c0:.6f}")


def role_idle_client(args: argparse.Namespace) -> None:
    """N sessions that exchange one byte each with an echo server, then idle."""
    import kcpsock

    host, _, port = args.connect.rpartition(":")
    options = _kcp_options(args)
    socks = []
    for _ in range(args.sessions):
        sock = kcpsock.dial((host, int(port)), **options)
        sock.settimeout(30)
        sock.sendall(b"x")
        socks.append(sock)
    for sock in socks:
        if _recv_exact(sock, 1) != b"x":
            raise SystemExit("FAIL no echo")
    # let the last ACKs settle, then measure a quiet period
    threading.Event().wait(1.0)
    print("IDLE", flush=True)
    t0, c0 = time.perf_counter(), _cpu()
    threading.Event().wait(args.idle_seconds)
    seconds = time.perf_counter() - t0
    print(f"OK sessions={len(socks)} seconds={seconds:.6f} cpu={_cpu() - c0:.6f}", flush=True)
    for sock in socks:
        sock.close()


# -- the orchestrator ----------------------------------------------------------


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by process ``pid``."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def udp_rcvbuf_errors() -> Optional[int]:
    """The kernel's UDP ``RcvbufErrors`` count (/proc/net/snmp), or None if unreadable.

    Datagrams dropped because a socket's receive buffer was full: on
    lossless loopback the only real loss, so a bench run's retransmissions
    can be told apart from spurious RTOs.  System-wide: other programs'
    drops count too.
    """
    try:
        with open("/proc/net/snmp", encoding="ascii") as fh:
            rows = [line.split() for line in fh if line.startswith("Udp:")]
        return int(rows[1][rows[0].index("RcvbufErrors")])
    except (OSError, IndexError, ValueError):
        return None


_S = TypeVar("_S", bound="_Sampler")
_HW = TypeVar("_HW", bound="HostWatch")


class _Sampler:
    """A daemon thread calling :meth:`sample` every ``every`` seconds while the ``with`` lasts.

    :meth:`sample` also runs once at the exit, so the last figures are read
    after the run's end.
    """

    def __init__(self, every: float) -> None:
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self: _S) -> _S:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sample()

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            self.sample()

    def sample(self) -> None:
        """Read the figures once."""
        raise NotImplementedError


class SocketWatch(_Sampler):
    """Samples the UDP sockets of one bench run in /proc/net/udp (a thread).

    The sockets bound to or connected to the server's ``port``: the server's
    (local port ``port``) and the client's.  Per side, the datagrams the
    kernel dropped at that socket (its ``drops`` column: a full receive
    buffer; unlike ``RcvbufErrors``, only this run's sockets) and the largest
    receive queue seen (``rx_queue``, bytes of buffer memory: how far the
    receiver fell behind).  Sampled every ``every`` seconds while the run
    lasts, since a client's socket disappears when its process exits.
    """

    def __init__(self, port: int, every: float = 0.02, path: str = "/proc/net/udp") -> None:
        super().__init__(every)
        self._port = port
        self._path = path
        #: inode -> [is the server's, drops, largest rx_queue]
        self.seen: dict[str, list[int]] = {}

    def sample(self) -> None:
        """Read /proc/net/udp once (nothing if unreadable)."""
        try:
            with open(self._path, encoding="ascii") as fh:
                lines = fh.read().splitlines()[1:]
        except OSError:
            return
        for line in lines:
            f = line.split()
            try:
                local = int(f[1].rsplit(":", 1)[1], 16)
                remote = int(f[2].rsplit(":", 1)[1], 16)
                rxq = int(f[4].split(":")[1], 16)
                inode, drops = f[9], int(f[-1])
            except (IndexError, ValueError):
                continue
            if self._port not in (local, remote):
                continue
            got = self.seen.setdefault(inode, [int(local == self._port), 0, 0])
            got[1] = max(got[1], drops)
            got[2] = max(got[2], rxq)

    def figures(self) -> dict[str, str]:
        """``sdrops``/``cdrops`` (datagrams) and ``srxq``/``crxq`` (KB, largest)."""
        out: dict[str, str] = {}
        for side, name in ((1, "s"), (0, "c")):
            mine = [v for v in self.seen.values() if v[0] == side]
            if mine:
                out[name + "drops"] = str(sum(v[1] for v in mine))
                out[name + "rxq"] = str(max(v[2] for v in mine) // 1024)
        return out


class HostWatch(_Sampler):
    """What else the machine did during one bench run (a thread reading /proc).

    Every ``every`` seconds: the machine's CPU time by kind (/proc/stat: busy,
    and ``steal``, the time the hypervisor ran someone else while this VM
    wanted a CPU), this process's own CPU time, and the server process's
    CPU time and run delay (the time its threads waited for a CPU, summed
    over /proc/<pid>/task/*/schedstat).  :meth:`figures` turns the samples
    around a transfer's window into the steal share, the CPU the other
    processes used (in cores) and the server's wait for a CPU: a slow run
    that lost time to the host or to other load says so.
    """

    def __init__(self, server_pid: int, every: float = 0.02, proc: str = "/proc") -> None:
        super().__init__(every)
        self._pid = server_pid
        self._proc = proc
        #: (monotonic s, [user nice system idle iowait irq softirq steal] ticks,
        #:  server CPU s, server run delay s, this process's CPU s, server
        #:  time slices: the times its threads were put on a CPU)
        self.samples: list[tuple[float, list[int], float, float, float, int]] = []
        #: the server's (voluntary, involuntary) context switches at enter and exit
        self.switched = [(0, 0), (0, 0)]

    def __enter__(self: _HW) -> _HW:
        self.switched[0] = self.switches()
        self.sample()
        return super().__enter__()

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        self.switched[1] = self.switches()

    def sample(self) -> None:
        """Read the figures once (a sample is skipped if /proc/stat is unreadable)."""
        now = time.monotonic()
        try:
            with open(f"{self._proc}/stat", encoding="ascii") as fh:
                ticks = [int(v) for v in fh.readline().split()[1:9]]
        except (OSError, ValueError):
            return
        server, delay, slices = 0.0, 0.0, 0
        try:
            with open(f"{self._proc}/{self._pid}/stat", encoding="ascii") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            server = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            tasks = f"{self._proc}/{self._pid}/task"
            for tid in os.listdir(tasks):
                with open(f"{tasks}/{tid}/schedstat", encoding="ascii") as fh:
                    fields = fh.read().split()
                delay += int(fields[1]) / 1e9
                slices += int(fields[2])
        except (OSError, ValueError, IndexError):
            pass  # the server gone, or a thread that ended between the two reads
        self.samples.append((now, ticks, server, delay, time.process_time(), slices))

    def switches(self) -> tuple[int, int]:
        """The server's voluntary and involuntary context switches so far (its threads').

        Read at the start and the end only (a status file a thread costs more
        than the samples' other reads together); (0, 0) if unreadable.
        """
        vol = invol = 0
        tasks = f"{self._proc}/{self._pid}/task"
        try:
            for tid in os.listdir(tasks):
                with open(f"{tasks}/{tid}/status", encoding="ascii") as fh:
                    for line in fh:
                        if line.startswith("voluntary_ctxt_switches:"):
                            vol += int(line.split()[1])
                        elif line.startswith("nonvoluntary_ctxt_switches:"):
                            invol += int(line.split()[1])
        except (OSError, ValueError, IndexError):
            pass  # the server gone, or a thread that ended meanwhile
        return vol, invol

    def figures(self, start: float, end: float, client_cpu: float) -> dict[str, float]:
        """The run's host figures over the samples around [``start``, ``end``].

        Args:
            start: the transfer's start (monotonic seconds).
            end: its end.
            client_cpu: the client's CPU seconds for the transfer (it reports them).

        Returns:
            ``steal`` (% of the machine's CPU time), ``others`` (cores used by
            every process but the server, the client and this one),
            ``sdelay`` (ms the server's threads waited for a CPU) and
            ``swait`` (the most of it between two samples: the longest
            starvation, ms per ``every``), ``sslices`` (the times the
            server's threads were put on a CPU), ``svol`` and ``sinvol``
            (its threads' voluntary context switches: they blocked, on the
            socket, a lock or a condition; involuntary ones: the scheduler
            preempted them; from enter to exit, not the window only); empty
            with fewer than two samples in the window.
        """
        got = self.samples
        before = [s for s in got if s[0] <= start]
        first = before[-1] if before else (got[0] if got else None)
        last = next((s for s in got if s[0] >= end), got[-1] if got else None)
        if first is None or last is None or last[0] - first[0] <= 0:
            return {}
        d = [b - a for a, b in zip(first[1], last[1])]
        total = sum(d)
        if total <= 0:
            return {}
        hz = os.sysconf("SC_CLK_TCK")
        busy = (d[0] + d[1] + d[2] + d[5] + d[6]) / hz
        mine = (last[2] - first[2]) + (last[4] - first[4]) + client_cpu
        inside = got[got.index(first) : got.index(last) + 1]
        burst = max((b[3] - a[3] for a, b in zip(inside, inside[1:])), default=0.0)
        return {
            "steal": 100.0 * d[7] / total,
            "others": max(0.0, busy - mine) / (last[0] - first[0]),
            "sdelay": 1000.0 * (last[3] - first[3]),
            "swait": 1000.0 * burst,
            "sslices": float(last[5] - first[5]),
            "svol": float(self.switched[1][0] - self.switched[0][0]),
            "sinvol": float(self.switched[1][1] - self.switched[0][1]),
        }


def _self_argv(role: str, config: str, opts: argparse.Namespace) -> list[str]:
    argv = [sys.executable, str(Path(__file__).resolve()), "--role", role, "--config", config]
    if opts.stream:
        argv.append("--stream")
    if opts.ack_nodelay:
        argv.append("--ack-nodelay")
    if role == "echo-server":
        argv += ["--report-bytes", str(opts.bytes)]
    if getattr(opts, "timeline", ""):
        argv += ["--timeline", opts.timeline]
    if getattr(opts, "syscount", False):
        argv.append("--syscount")
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


#: --pin: the CPU of the server process and of the client process
SERVER_CPU, CLIENT_CPU = 1, 0


@contextlib.contextmanager
def _pinned(opts: argparse.Namespace, cpu: int) -> Iterator[None]:
    """With --pin, processes started inside run on ``cpu`` only (they inherit it).

    The orchestrator pins itself while it starts the process, then goes
    back to the CPUs it had.  Go's runtime sizes GOMAXPROCS from the mask it
    starts with, so a pinned kcp-go peer runs its goroutines on one core, as
    the interpreter lock makes a kcpsock process do (mostly).
    """
    if not getattr(opts, "pin", False):
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def pin_available() -> Optional[str]:
    """None if --pin can give the server and the client a core each, else why not."""
    if not hasattr(os, "sched_setaffinity"):
        return "os.sched_setaffinity is not available on this platform"
    cpus = os.sched_getaffinity(0)
    if not {SERVER_CPU, CLIENT_CPU} <= cpus:
        return f"CPUs {CLIENT_CPU} and {SERVER_CPU} are not both available (have {sorted(cpus)})"
    return None


def start_server(
    side: str, kind: str, config: str, opts: argparse.Namespace, peer: Optional[Path]
) -> GoServer:
    """Start the echo/sink server of one side (kcp-go peer or kcpsock CLI)."""
    with _pinned(opts, SERVER_CPU):
        if side == "kcp-go":
            assert peer is not None
            flags = _go_flags(config, opts)
            if kind == "echo-server":
                flags.append(f"-bytes={opts.bytes}")  # its ECHO line once echoed
            return GoServer(peer, kind, flags, timeout=opts.timeout * 4).start()
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
    if kind in ("send", "echo-client") and getattr(opts, "srtt", 0) > 0:
        extra = {**extra, "srtt": opts.srtt}
    with _pinned(opts, CLIENT_CPU):
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
    for mode in opts.modes:
        opts.stream = mode == "stream"
        rows += _bench_mode(opts, peer, mb, mode)
    return rows


def _use_root(root: str) -> None:
    """Make the kcpsock peer processes started from now on import ``root``."""
    if root:
        os.environ["KCPSOCK_BENCH_ROOT"] = root
    else:
        os.environ.pop("KCPSOCK_BENCH_ROOT", None)


def _one_transfer(
    opts: argparse.Namespace,
    peer: Optional[Path],
    mb: float,
    pair: str,
    config: str,
    test: str,
) -> Optional[dict[str, float]]:
    client_side, server_side = pair.split("->")
    server_kind, client_kind = {
        "one-way": ("sink-server", "send"),
        "echo": ("echo-server", "echo-client"),
    }[test]
    server = start_server(server_side, server_kind, config, opts, peer)
    try:
        cpu0 = proc_cpu(server.pid)
        drops0 = udp_rcvbuf_errors()
        try:
            with SocketWatch(server.address[1]) as watch, HostWatch(server.pid) as host:
                res = run_one(
                    client_side, client_kind, server, config, opts, peer, bytes=opts.bytes
                )
                for key in [k for k in res if k.startswith("sc_")]:
                    res["c_" + key[3:]] = res.pop(key)  # --syscount: the client's
                # the transfer's end: the client's own clock if it says (kcpsock's
                # is the same monotonic clock), else now (the client just exited)
                end = float(res.get("end", time.monotonic()))
        except (AssertionError, OSError, TimeoutError) as exc:
            print(f"# {pair} {config} {test}: {exc}", file=sys.stderr)
            return None
        cpu1 = proc_cpu(server.pid)
        drops1 = udp_rcvbuf_errors()
        if drops0 is not None and drops1 is not None:
            res["kdrops"] = str(drops1 - drops0)
        res.update(watch.figures())
        figures = host.figures(end - float(res["seconds"]), end, float(res["cpu"]))
        res.update({k: f"{v:.3f}" for k, v in figures.items()})
        if test == "echo":
            # the echo server's ECHO line: its own resends, and the client's
            # resends it received twice (the client's 'repeat' are the server's)
            try:
                line = server.next_line(timeout=2.0).split()
            except queue.Empty:
                line = []
            if line[:1] == ["ECHO"]:
                for field in line[1:]:
                    key, _, value = field.partition("=")
                    if key in ("lost", "fast", "repeat", "inbox"):
                        res["s" + key] = value
                    elif key == "gap_ms":
                        res["gap"] = value
                    elif key.startswith("sc_"):
                        res["s_" + key[3:]] = value
        if test == "one-way":
            # the sink's SINK line: the segments it received twice (kcpsock's
            # and the Go peer's); a one-way client's own repeats are its DONE's
            res.pop("repeat", None)
            try:
                sink = server.next_line(timeout=2.0).split()
            except queue.Empty:
                sink = []
            for field in sink:
                if field.startswith("repeat="):
                    res["repeat"] = field[len("repeat=") :]
                elif field.startswith("gap_ms="):
                    res["gap"] = field[len("gap_ms=") :]
                elif field.startswith("sc_"):
                    key, _, value = field.partition("=")
                    res["s_" + key[3:]] = value
    finally:
        server.close()
    seconds = float(res["seconds"])
    # the client's RTO (lost) and fast retransmissions, out of all segments
    # it sent; the segments received twice (one-way: by the sink; echo: by the
    # client, so the echo server's spurious resends); datagrams the kernel
    # dropped for a full receive buffer meanwhile (any socket of the machine)
    keys = (
        "lost",
        "fast",
        "sent",
        "repeat",
        "kdrops",
        "srtt_mean",
        "srtt_max",
        "inbox",
        "slost",
        "sfast",
        "srepeat",
        "sinbox",
        "sdrops",
        "cdrops",
        "srxq",
        "crxq",
        "gap",
        "steal",
        "others",
        "sdelay",
        "swait",
        "sslices",
        "svol",
        "sinvol",
    )
    counts = " ".join(f"{k}={res[k]}" for k in keys if k in res)
    counts += _syscounts(res, mb)
    out: dict[str, float] = {
        "mbps": mb / seconds,
        "client_cpu": float(res["cpu"]) / mb,
        "server_cpu": (cpu1 - cpu0) / mb,
    }
    for key in keys:
        if key in res:
            out[key] = float(res[key])
    print(
        f"# {pair} {config} {test}: {mb / seconds:.1f} MB/s {counts} cpu ms/MB"
        f" {out['client_cpu'] * 1000:.2f}/{out['server_cpu'] * 1000:.2f}",
        file=sys.stderr,
    )
    return out


def _syscounts(res: dict[str, str], mb: float) -> str:
    """--syscount's per-run fields: each side's counts per MB, and datagrams per call.

    ``rd`` = recvmmsg + recvfrom calls, ``wr`` = sendmmsg + sendmsg + sendto
    calls, ``dpr`` / ``dpw`` = datagrams per read / per write call, then
    futex calls, wake-ups issued, context switches, page faults per MB,
    migrations in all.
    """
    out = ""
    for side in ("c", "s"):
        if side + "_rmm" not in res:
            continue
        g = {
            k[2:]: float(v)
            for k, v in res.items()
            if k.startswith(side + "_") and not k.startswith(side + "_cal")
        }
        rd = g.get("rmm", 0) + g.get("rfrom", 0)
        wr = g.get("smm", 0) + g.get("smsg", 0) + g.get("sto", 0)
        pin, pout = g.get("pin", 0), g.get("pout", 0)
        out += (
            f" {side}:rd={rd / mb:.0f} dpr={pin / max(rd, 1):.1f} wr={wr / mb:.0f}"
            f" dpw={pout / max(wr, 1):.1f} fx={g.get('futex', 0) / mb:.0f}"
            f" wk={g.get('wakeups', 0) / mb:.0f} cs={g.get('cs', 0) / mb:.0f}"
            f" pf={g.get('faults', 0) / mb:.0f} mig={g.get('migr', 0):.0f}"
            f" din={pin / mb:.0f} dout={pout / mb:.0f} cpu={g.get('cpu_us', 0) / 1000 / mb:.2f}"
            f" cal={res.get(side + '_cal0', '')}/{res.get(side + '_cal1', '')}"
        )
    return out


def _one_ping(
    opts: argparse.Namespace, peer: Optional[Path], pair: str, config: str
) -> Optional[tuple[float, float]]:
    client_side, server_side = pair.split("->")
    server = start_server(server_side, "echo-server", config, opts, peer)
    try:
        res = run_one(client_side, "ping", server, config, opts, peer, rounds=opts.rounds, size=64)
        return float(res["p50_us"]) / 1000, float(res["p99_us"]) / 1000
    except (AssertionError, OSError, TimeoutError) as exc:
        print(f"# {pair} {config} ping: {exc}", file=sys.stderr)
        return None
    finally:
        server.close()


def _bench_mode(
    opts: argparse.Namespace, peer: Optional[Path], mb: float, mode: str
) -> list[dict[str, Any]]:
    """Run every pair and config in one KCP mode.

    With several --root trees the runs of the trees alternate (tree 1,
    tree 2, tree 1, ...), so load changes on the shared machine hit them alike.
    """
    rows: list[dict[str, Any]] = []
    for config in opts.configs:
        for pair in opts.pairs:
            roots = opts.roots if "kcpsock" in pair else opts.roots[:1]
            label = {r: (opts.root_labels[r] if "kcpsock" in pair else "") for r in roots}
            results: dict[str, dict[str, list[Any]]] = {
                r: {"one-way": [], "echo": [], "rtt": []} for r in roots
            }
            for test in ("one-way", "echo"):
                if test not in opts.tests:
                    continue
                for _ in range(opts.repeat):
                    for root in roots:
                        _use_root(root)
                        results[root][test].append(
                            _one_transfer(opts, peer, mb, pair, config, test)
                        )
            for _ in range(opts.repeat if "rtt" in opts.tests else 0):
                for root in roots:
                    _use_root(root)
                    results[root]["rtt"].append(_one_ping(opts, peer, pair, config))
            for root in roots:
                row: dict[str, Any] = {
                    "pair": pair,
                    "config": config,
                    "mode": mode,
                    "tree": label[root],
                    "ran": list(opts.tests),
                }
                for test in ("one-way", "echo"):
                    runs = [r for r in results[root][test] if r is not None]
                    row[test + "-runs"] = [r["mbps"] for r in runs]
                    row[test + "-detail"] = list(runs)  # in run order
                    row[test + "-failed"] = opts.repeat - len(runs)
                    # the median run by throughput (a failed run leaves a gap)
                    runs.sort(key=lambda r: r["mbps"])
                    row[test] = runs[(len(runs) - 1) // 2] if runs else None
                pings = sorted(p for p in results[root]["rtt"] if p is not None)
                row["rtt"] = pings[(len(pings) - 1) // 2] if pings else None
                rows.append(row)
    _use_root(opts.roots[0])
    return rows


def floor(opts: argparse.Namespace) -> Optional[tuple[float, float]]:
    """The raw-UDP ping-pong between two Python processes: (p50, p99) in ms."""
    server = GoServer(Path(sys.executable), argv=_self_argv("udp-echo", "plain", opts)).start(30)
    try:
        argv = [
            *_self_argv("udp-ping", "plain", opts),
            "--connect",
            f"{server.address[0]}:{server.address[1]}",
            "--rounds",
            str(opts.rounds),
        ]
        res = run_argv(argv, opts.timeout, "udp-ping")
        return float(res["p50_us"]) / 1000, float(res["p99_us"]) / 1000
    except (AssertionError, OSError, TimeoutError) as exc:
        print(f"# floor: {exc}", file=sys.stderr)
        return None
    finally:
        server.close()


#: kcpsock's servers in the 'many' test: role -> what the table calls it
MANY_SERVERS: dict[str, str] = {
    "sink-server": "a thread per session",
    "select-server": "selectors, one thread",
}


def _many_label(opts: argparse.Namespace, side: tuple[str, str, str]) -> str:
    """The 'many' table's name of a server: side, tree (if several), kcpsock's pattern."""
    server_side, root, kind = side
    if server_side != "kcpsock":
        return server_side
    label = server_side
    if len(opts.roots) > 1:
        label += f" [{opts.root_labels[root]}]"
    return f"{label}, {MANY_SERVERS[kind]}"


def many(opts: argparse.Namespace, peer: Optional[Path]) -> list[dict[str, Any]]:
    """One listener (kcpsock's, kcp-go's): 1 session vs N sending at once (plain, stream).

    The load is kcp-go's client (``-mode=send -sessions=N``, one process, all
    sessions dialed first) so that the listener is what is measured; without
    Go, a kcpsock client process.  With several ``--root`` trees, the kcpsock
    servers of the trees alternate run by run (before/after in one run).

    kcpsock's listener is measured behind two servers, run alternately: the
    sink server with a thread per session, each blocked in ``recv_into``
    (:func:`role_server`), and one thread serving every session through
    ``selectors`` (:func:`role_select_server`).
    """
    opts.stream = True
    sides: list[tuple[str, str, str]] = [
        ("kcpsock", root, kind) for root in opts.roots for kind in MANY_SERVERS
    ]
    if peer is not None:
        sides.append(("kcp-go", "", "sink-server"))
    figures: dict[tuple[int, int], list[float]] = {}
    for _ in range(opts.repeat):
        for n in (1, opts.sessions):
            for i, side in enumerate(sides):
                server_side, root, kind = side
                _use_root(root)
                label = _many_label(opts, side)
                server = start_server(server_side, kind, "plain", opts, peer)
                try:
                    if peer is not None:
                        # kcp-go's client is the load: it is not the bottleneck
                        res = run_one(
                            "kcp-go",
                            "send",
                            server,
                            "plain",
                            opts,
                            peer,
                            bytes=opts.bytes,
                            sessions=n,
                        )
                    else:
                        argv = [
                            *_self_argv("multi-send", "plain", opts),
                            "--connect",
                            f"{server.address[0]}:{server.address[1]}",
                            "--sessions",
                            str(n),
                            "--bytes",
                            str(opts.bytes),
                        ]
                        res = run_argv(argv, opts.timeout, "multi-send")
                    mbps = float(res["bytes"]) / 1e6 / float(res["seconds"])
                    figures.setdefault((i, n), []).append(mbps)
                    extra = (
                        f" (client retransmissions {res['retrans']})" if "retrans" in res else ""
                    )
                    print(f"# many {label} {n}: {mbps:.1f} MB/s{extra}", file=sys.stderr)
                except (AssertionError, OSError, TimeoutError) as exc:
                    print(f"# many {label} {n}: {exc}", file=sys.stderr)
                finally:
                    server.close()
    _use_root(opts.roots[0])
    rows = []
    for i, side in enumerate(sides):
        row: dict[str, Any] = {"server": _many_label(opts, side)}
        for n in (1, opts.sessions):
            runs = figures.get((i, n), [])
            row[str(n)] = statistics.median(runs) if runs else None
            row[f"runs{n}"] = runs
        rows.append(row)
    return rows


def idle(opts: argparse.Namespace, peer: Optional[Path]) -> list[dict[str, Any]]:
    """N idle sessions (one byte echoed each, then silence): CPU of each side."""
    import subprocess

    opts.stream = True
    rows = []
    servers = ["kcpsock"] + (["kcp-go"] if peer is not None else [])
    for server_side in servers:
        server = start_server(server_side, "echo-server", "plain", opts, peer)
        try:
            argv = [
                *_self_argv("idle-client", "plain", opts),
                "--connect",
                f"{server.address[0]}:{server.address[1]}",
                "--sessions",
                str(opts.idle_sessions),
                "--idle",
                str(opts.idle_seconds),
            ]
            proc = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True
            )
            try:
                assert proc.stdout is not None
                line = proc.stdout.readline()
                if line.strip() != "IDLE":
                    raise AssertionError(f"idle client: {line!r}")
                cpu0, t0 = proc_cpu(server.pid), time.perf_counter()
                line = proc.stdout.readline()
                cpu1, t1 = proc_cpu(server.pid), time.perf_counter()
                res = parse_result(line)
                proc.wait(opts.timeout)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            rows.append(
                {
                    "server": server_side,
                    "server_pct": 100 * (cpu1 - cpu0) / (t1 - t0),
                    "client_pct": 100 * float(res["cpu"]) / float(res["seconds"]),
                }
            )
        except (AssertionError, OSError, TimeoutError, KeyError, ValueError) as exc:
            print(f"# idle {server_side}: {exc}", file=sys.stderr)
        finally:
            server.close()
    return rows


def _cell(r: Optional[dict[str, float]], key: str, fmt: str, ran: bool = True) -> str:
    """One figure of the table: '-' for a test not asked for (--tests), 'failed' if none."""
    if not ran:
        return "-"
    return "failed" if r is None else format(r[key], fmt)


def table(rows: list[dict[str, Any]]) -> str:
    """Format the rows as the plain-text table BENCHMARKS.md shows."""
    cell = _cell
    lines = [
        "| client → server | tree | mode | config | one-way MB/s | CPU s/MB client / server "
        "| echo MB/s | CPU s/MB client / server | RTT p50 ms | RTT p99 ms |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        ow, ec, rtt = row.get("one-way"), row.get("echo"), row.get("rtt")
        ran = row.get("ran", ("one-way", "echo", "rtt"))
        ow_t, ec_t = ("one-way" in ran), ("echo" in ran)
        lines.append(
            f"| {row['pair'].replace('->', ' → ')} | {row['tree']} | {row['mode']} "
            f"| {row['config']} "
            f"| {cell(ow, 'mbps', '.1f', ow_t)} "
            f"| {cell(ow, 'client_cpu', '.4f', ow_t)} / {cell(ow, 'server_cpu', '.4f', ow_t)} "
            f"| {cell(ec, 'mbps', '.1f', ec_t)} "
            f"| {cell(ec, 'client_cpu', '.4f', ec_t)} / {cell(ec, 'server_cpu', '.4f', ec_t)} "
            f"| {'-' if 'rtt' not in ran else 'failed' if rtt is None else format(rtt[0], '.3f')} "
            f"| {'-' if 'rtt' not in ran else 'failed' if rtt is None else format(rtt[1], '.3f')} |"
        )
    return "\n".join(lines)


def _find_row(
    rows: list[dict[str, Any]], pair: str, config: str, mode: str, tree: str = ""
) -> dict[str, Any]:
    """The row of one pair, config, mode and tree ({} when it did not run)."""
    for r in rows:
        if (r["pair"], r["config"], r["mode"], r["tree"]) == (pair, config, mode, tree):
            return r
    return {}


def ratios(rows: list[dict[str, Any]]) -> str:
    """The issue-9 goals as ratios against kcp-go in the same run."""
    out = []

    def find(pair: str, config: str, mode: str, tree: str = "") -> dict[str, Any]:
        return _find_row(rows, pair, config, mode, tree)

    trees = sorted({r["tree"] for r in rows if "kcpsock" in r["pair"]})
    for tree in trees:
        name = f"[{tree}] " if len(trees) > 1 else ""
        for mode in sorted({r["mode"] for r in rows}):
            for config in CONFIGS:
                mine = find("kcpsock->kcpsock", config, mode, tree)
                go = find("kcp-go->kcp-go", config, mode)
                theirs = find("kcp-go->kcpsock", config, mode, tree)
                if not (mine and go):
                    continue
                what = f"{name}{mode} {config}"
                for test in ("one-way", "echo"):
                    if mine.get(test) and go.get(test):
                        ratio = mine[test]["mbps"] / go[test]["mbps"]
                        out.append(f"{what} {test}: kcpsock→kcpsock = {ratio:.2f} x kcp-go")
                if theirs and theirs.get("echo") and go.get("echo"):
                    ratio = theirs["echo"]["mbps"] / go["echo"]["mbps"]
                    out.append(
                        f"{what} echo: kcp-go client → kcpsock server = {ratio:.2f} x kcp-go"
                    )
                if mine.get("rtt") and go.get("rtt"):
                    ratio = mine["rtt"][0] / go["rtt"][0]
                    out.append(f"{what} RTT p50: kcpsock = {ratio:.1f} x kcp-go")
    return "\n".join(out)


#: issue 9's goals: (what, the bound, True if the figure must be at least it)
GOALS: list[tuple[str, float, bool]] = [
    ("one-way plain, kcpsock→kcpsock / kcp-go", 1.5, True),
    ("one-way aes+fec, kcpsock→kcpsock / kcp-go", 0.75, True),
    ("echo, kcpsock→kcpsock / kcp-go", 1.0, True),
    ("echo, kcp-go client → kcpsock server / kcp-go", 0.8, True),
    ("RTT p50, kcpsock / kcp-go", 2.0, False),
    ("stability: slowest / fastest of a cell's runs", 2 / 3, True),
    ("many: N sessions / 1 session", 0.8, True),
    ("idle sessions: server CPU, % of a core", 1.0, False),
]


def _is_storm(run: dict[str, float]) -> bool:
    """RTO resends (either side) of at least 0.5 % of the datagrams sent."""
    lost = run.get("lost", 0.0) + run.get("slost", 0.0)
    return lost >= max(1.0, 0.005 * run.get("sent", 0.0))


def goals(
    rows: list[dict[str, Any]],
    many_rows: list[dict[str, Any]],
    idle_rows: list[dict[str, Any]],
    sessions: int,
    trees: list[str],
) -> str:
    """Issue 9's goals, each met or not, per kcpsock tree, from this run's figures.

    ``trees`` are the kcpsock trees' labels in ``--root`` order ('idle' ran
    with the first).

    Each goal shows its worst cell (the ratio's lowest value, or highest for
    RTT and idle CPU) with the cells it covers; ratios are of medians against
    kcp-go in the same run.  Stability counts the cells of the kcpsock pairs
    whose slowest run made at least 2/3 of their fastest, and RTO storms.
    A goal without figures in this run (tests or extras not asked for) reads
    "not measured".
    """

    def find(pair: str, config: str, mode: str, tree: str = "") -> dict[str, Any]:
        return _find_row(rows, pair, config, mode, tree)

    def mbps(r: dict[str, Any], test: str) -> Optional[float]:
        v = r.get(test)
        return float(v["mbps"]) if v else None

    out = []
    for tree in trees:
        found: dict[str, list[tuple[str, float]]] = {g[0]: [] for g in GOALS}
        names = [g[0] for g in GOALS]
        for mode in sorted({r["mode"] for r in rows}):
            for config in CONFIGS:
                go = find("kcp-go->kcp-go", config, mode)
                mine = find("kcpsock->kcpsock", config, mode, tree)
                theirs = find("kcp-go->kcpsock", config, mode, tree)
                cell = f"{mode} {config}"
                a, b = mbps(mine, "one-way"), mbps(go, "one-way")
                if a and b:
                    found[names[0 if config == "plain" else 1]].append((cell, a / b))
                a, b = mbps(mine, "echo"), mbps(go, "echo")
                if a and b:
                    found[names[2]].append((cell, a / b))
                a, b = mbps(theirs, "echo"), mbps(go, "echo")
                if a and b:
                    found[names[3]].append((cell, a / b))
                if mine.get("rtt") and go.get("rtt"):
                    found[names[4]].append((cell, mine["rtt"][0] / go["rtt"][0]))
        storms = runs = 0
        for r in rows:
            if "kcpsock" not in r["pair"] or r["tree"] != tree:
                continue
            for test in ("one-way", "echo"):
                detail: list[dict[str, float]] = r.get(test + "-detail") or []
                if len(detail) < 2:
                    continue
                speeds = [d["mbps"] for d in detail]
                worst = 0.0 if r.get(test + "-failed") else min(speeds) / max(speeds)
                who = r["pair"].replace("->", "→")
                found[names[5]].append((f"{who} {r['mode']} {r['config']} {test}", worst))
                storms += sum(1 for d in detail if _is_storm(d))
                runs += len(detail)
        for r in many_rows:
            label = r["server"]
            if not label.startswith("kcpsock") or (len(trees) > 1 and f"[{tree}]" not in label):
                continue
            one, n = r.get("1"), r.get(str(sessions))
            if one and n:
                found[names[6]].append((label.split(", ", 1)[-1], n / one))
        if tree == trees[0]:
            for r in idle_rows:
                if r["server"] == "kcpsock":
                    found[names[7]].append(("kcpsock server", float(r["server_pct"])))
        title = f" [{tree}]" if len(trees) > 1 else ""
        out.append(f"| issue 9's goal{title} | bound | worst cell | cells | met |")
        out.append("|---|---:|---|---:|---|")
        for name, bound, at_least in GOALS:
            cells = found[name]
            if not cells:
                out.append(f"| {name} | {bound:.2f} | - | 0 | not measured |")
                continue
            pick = min if at_least else max
            where, value = pick(cells, key=lambda c: c[1])
            good = sum(1 for _, v in cells if (v >= bound if at_least else v < bound))
            met = "yes" if good == len(cells) else f"no ({good} of {len(cells)} cells)"
            if name == names[5] and runs:
                met += f"; RTO storms in {storms} of {runs} runs"
            out.append(f"| {name} | {bound:.2f} | {value:.2f} ({where}) | {len(cells)} | {met} |")
        out.append("")
    return "\n".join(out).rstrip()


def _resends(run: dict[str, float]) -> str:
    """A run's resends as 'RTO+fast/repeats' ('?' where the client does not report).

    With the echo server's own counters (``srepeat``...): the client's
    resends / the server's repeats, then the server's resends / the client's
    repeats as ' (s RTO+fast/repeats)'.  Datagrams dropped on the way (the
    run's sockets' kernel drops, kcpsock's full inbound queues) follow as
    ' d N' when there were any.
    """
    sent = f"{run['lost']:.0f}+{run['fast']:.0f}" if "lost" in run and "fast" in run else "?"
    if "srepeat" in run:
        out = f"{sent}/{run['srepeat']:.0f}"
        back = f"{run['slost']:.0f}+{run['sfast']:.0f}" if "slost" in run else "?"
        out += f" (s {back}/{run['repeat']:.0f})" if "repeat" in run else f" (s {back})"
    else:
        out = f"{sent}/{run['repeat']:.0f}" if "repeat" in run else sent
    dropped = sum(run.get(k, 0.0) for k in ("sdrops", "cdrops", "inbox", "sinbox"))
    return out + (f" d {dropped:.0f}" if dropped else "")


def _stall(run: dict[str, float], fastest: dict[str, float]) -> str:
    """What a stormy run's figures show around it: '; gap N ms, steal N %, ...' or ''.

    Each only when it is large enough to matter: the server's longest pause
    between two reads (a receiver that stalled for the 30 ms minimum RTO),
    its longest wait for a CPU within one HostWatch sample when at least
    1.5x (and 10 ms more than) the fastest run's (the server starved: its
    threads' waits add up, so each cell has its own baseline), the host's
    steal (2 %) and the other processes' CPU (a quarter of a core).
    """
    parts = []
    if run.get("gap", 0.0) >= 30:
        parts.append(f"gap {run['gap']:.0f} ms")
    wait, base = run.get("swait", 0.0), fastest.get("swait", 0.0)
    if wait >= 1.5 * base and wait >= base + 10:
        parts.append(f"server starved {wait:.0f} ms vs {base:.0f}")
    if run.get("steal", 0.0) >= 2:
        parts.append(f"steal {run['steal']:.0f} %")
    if run.get("others", 0.0) >= 0.25:
        parts.append(f"others {run['others']:.1f} cores")
    return "; " + ", ".join(parts) if parts else ""


def slow_reason(runs: list[dict[str, float]]) -> str:
    """Why the slowest of ``runs`` was slow, as far as the counters tell.

    In this order:

    * "RTO storm (N)": the slowest run's client (or echo server) resent at
      least 0.5 % of its segments on a timeout (lossless loopback: spurious,
      the ACKs came late), followed by what the run's figures show beside
      it: the server's longest gap between two reads (a stalled receiver),
      its longest wait for a CPU against the fastest run's, the host's
      steal, the other processes' CPU (:func:`_stall`);
    * "host (steal N %)": the hypervisor took at least 2 % of the machine's
      CPU time during the run, 2 points more than during the fastest run;
    * "other load (N cores)": the processes other than the run's own used
      at least a quarter of a core more than during the fastest run;
    * "more CPU/MB (xN)": the same code used at least 1.25x the CPU per MB
      (both sides) of the fastest run (a slower host: caches, frequency);
    * "machine": the same work took longer in wall time, nothing above says why.
    """
    if len(runs) < 2:
        return ""
    slow = min(runs, key=lambda r: r["mbps"])
    fast = max(runs, key=lambda r: r["mbps"])
    if _is_storm(slow):
        # echo: the server's RTO resends count too (its segments: about as many)
        resent = slow.get("lost", 0.0) + slow.get("slost", 0.0)
        return f"RTO storm ({resent:.0f}{_stall(slow, fast)})"
    if "steal" in slow and "steal" in fast:
        if slow["steal"] >= 2 and slow["steal"] >= fast["steal"] + 2:
            return f"host (steal {slow['steal']:.0f} % vs {fast['steal']:.0f} %)"
        if slow["others"] >= 0.25 and slow["others"] >= fast["others"] + 0.25:
            return f"other load ({slow['others']:.1f} cores vs {fast['others']:.1f})"
    cpu_slow = slow["client_cpu"] + slow["server_cpu"]
    cpu_fast = fast["client_cpu"] + fast["server_cpu"]
    if cpu_fast > 0 and cpu_slow >= 1.25 * cpu_fast:
        return f"more CPU/MB (x{cpu_slow / cpu_fast:.2f})"
    return "machine"


def _host_cell(run: dict[str, float]) -> str:
    """A run's 'steal %/other cores/server gap ms/server CPU wait ms (longest)'.

    '?' where a figure is unknown.
    """

    def fig(key: str, fmt: str) -> str:
        return format(run[key], fmt) if key in run else "?"

    wait = fig("sdelay", ".0f") + (f" ({run['swait']:.0f})" if "swait" in run else "")
    return "/".join((fig("steal", ".0f"), fig("others", ".1f"), fig("gap", ".0f"), wait))


def stability(rows: list[dict[str, Any]]) -> str:
    """Every run of each transfer: slowest / fastest (goal: at least 2/3), and why.

    Per run: MB/s; the client's RTO and fast resends and the segments
    received twice (one-way: at the server; echo: at the client, i.e. the
    echo server's resends), as 'RTO+fast/repeats' ('?': the client does not
    report them); CPU ms per MB of client / server; the host's figures
    (:class:`HostWatch`: steal % of the machine's CPU time, the other
    processes' CPU in cores, the kcpsock server's longest gap between two
    reads, its threads' wait for a CPU in ms and, in brackets, the most of
    it within one 20 ms sample; '?' where unknown); with
    --srtt, the client's smoothed RTT (mean and maximum of its samples).
    """
    srtt = any(
        "srtt_mean" in r
        for row in rows
        for t in ("one-way", "echo")
        for r in row.get(t + "-detail") or []
    )
    lines = [
        "| client → server | tree | mode | config | test | runs MB/s | slowest / fastest "
        "| resends RTO+fast/repeats | CPU ms/MB client/server | slowest run "
        "| steal %/others cores/server gap ms/server wait ms (longest) |"
        + (" client srtt mean/max ms |" if srtt else ""),
        "|---|---|---|---|---|---|---:|---|---|---|---|" + ("---|" if srtt else ""),
    ]
    for row in rows:
        for test in ("one-way", "echo"):
            runs = row.get(test + "-runs") or []
            failed = row.get(test + "-failed", 0)
            if not runs:
                continue
            detail: list[dict[str, float]] = row.get(test + "-detail") or []
            shown = ", ".join(f"{r:.0f}" for r in runs) + (f", {failed} failed" if failed else "")
            ratio = min(runs) / max(runs) if not failed else 0.0
            resends = ", ".join(_resends(r) for r in detail)
            cpu = ", ".join(
                f"{r['client_cpu'] * 1000:.1f}/{r['server_cpu'] * 1000:.1f}" for r in detail
            )
            lines.append(
                f"| {row['pair'].replace('->', ' → ')} | {row['tree']} | {row['mode']} "
                f"| {row['config']} | {test} | {shown} | {ratio:.2f} | {resends} | {cpu} "
                f"| {slow_reason(detail)} | {', '.join(_host_cell(r) for r in detail)} |"
            )
            if srtt:
                lines[-1] += (
                    " "
                    + ", ".join(
                        f"{r['srtt_mean']:.0f}/{r['srtt_max']:.0f}" if "srtt_mean" in r else "?"
                        for r in detail
                    )
                    + " |"
                )
    return "\n".join(lines)


#: a run the machine disturbed: the other processes used this many cores, or
#: the hypervisor this % of the CPU time (stability_summary)
DISTURBED_OTHERS, DISTURBED_STEAL = 0.25, 2.0


def _disturbed(run: dict[str, float]) -> bool:
    return run.get("others", 0.0) >= DISTURBED_OTHERS or run.get("steal", 0.0) >= DISTURBED_STEAL


def stability_summary(rows: list[dict[str, Any]]) -> str:
    """Per pair and tree: the cells at 2/3, the slowest runs' reasons, storms, disturbed runs.

    A cell meets the goal when its slowest run made at least 2/3 of its
    fastest's MB/s (no failed run).  "Undisturbed": the same, counting only
    the runs during which the other processes used less than
    :data:`DISTURBED_OTHERS` cores and the host stole less than
    :data:`DISTURBED_STEAL` % (cells with fewer than two such runs are left
    out): what is left of the spread when the machine's load is set aside.
    """
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        for test in ("one-way", "echo"):
            detail: list[dict[str, float]] = row.get(test + "-detail") or []
            if not detail:
                continue
            g = groups.setdefault(
                (row["pair"], row["tree"]),
                {"cells": 0, "met": 0, "why": {}, "storms": 0, "runs": 0, "dist": 0, "clean": []},
            )
            runs = [r["mbps"] for r in detail]
            g["cells"] += 1
            g["met"] += int(not row.get(test + "-failed") and min(runs) >= max(runs) * 2 / 3)
            why = slow_reason(detail).split(" (")[0]
            if why:
                g["why"][why] = g["why"].get(why, 0) + 1
            g["runs"] += len(detail)
            g["storms"] += sum(1 for r in detail if _is_storm(r))
            g["dist"] += sum(1 for r in detail if _disturbed(r))
            clean = [r["mbps"] for r in detail if not _disturbed(r)]
            if len(clean) >= 2:
                g["clean"].append(min(clean) >= max(clean) * 2 / 3)
    lines = [
        "| client → server | tree | cells at 2/3 | slowest run's reason | runs with an RTO storm "
        "| runs disturbed (others ≥ 0.25 cores or steal ≥ 2 %) | cells at 2/3, undisturbed runs |",
        "|---|---|---:|---|---:|---:|---:|",
    ]
    for (pair, tree), g in groups.items():
        why = ", ".join(
            f"{k} {v}" for k, v in sorted(g["why"].items(), key=lambda kv: (-kv[1], kv[0]))
        )
        met = f"{sum(g['clean'])}/{len(g['clean'])}" if g["clean"] else "-"
        lines.append(
            f"| {pair.replace('->', ' → ')} | {tree} | {g['met']}/{g['cells']} | {why} "
            f"| {g['storms']}/{g['runs']} | {g['dist']}/{g['runs']} | {met} |"
        )
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    """Command-line entry point; returns the exit status."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bytes", type=int, default=100_000_000, help="bytes per transfer")
    p.add_argument("--rounds", type=int, default=1000, help="64-byte round trips")
    p.add_argument("--pairs", nargs="*", default=list(PAIRS), choices=PAIRS)
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--stream", action="store_true", help="stream mode on both sides")
    p.add_argument(
        "--modes",
        nargs="+",
        choices=["stream", "message"],
        help="run the table in these KCP modes (default: stream if --stream, else message)",
    )
    p.add_argument(
        "--extras",
        nargs="*",
        default=[],
        choices=["floor", "many", "idle"],
        help="also run: the raw-UDP ping-pong floor; 1 vs --sessions sessions through one"
        " listener; --idle-sessions idle sessions' CPU",
    )
    p.add_argument("--sessions", type=int, default=100, help="sessions for the 'many' test")
    p.add_argument("--idle-sessions", type=int, default=1000, help="sessions for 'idle'")
    p.add_argument("--idle", dest="idle_seconds", type=float, default=10.0, help="idle seconds")
    p.add_argument(
        "--root",
        nargs="+",
        default=[],
        metavar="[LABEL=]DIR",
        help="the kcpsock source tree(s) the kcpsock peers import (default: this one);"
        " with several, their runs alternate cell by cell (before/after in one run)",
    )
    p.add_argument("--ack-nodelay", action="store_true", help="ACK right after input")
    p.add_argument(
        "--pin",
        action="store_true",
        help=f"run each server on CPU {SERVER_CPU} and each client on CPU {CLIENT_CPU}"
        " (kcp-go and kcpsock alike; less noise from the scheduler, but each kcp-go"
        " process gets one core: see BENCHMARKS.md)",
    )
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per run")
    p.add_argument(
        "--repeat", type=int, default=1, help="runs per figure; the table shows the median run"
    )
    p.add_argument(
        "--tests",
        nargs="*",
        choices=("one-way", "echo", "rtt"),
        default=["one-way", "echo", "rtt"],
        help="the tests of the table to run (default: all)",
    )
    # internal: this script as a kcpsock peer process
    p.add_argument(
        "--role",
        choices=[
            "sink-server",
            "select-server",
            "echo-server",
            "send",
            "echo-client",
            "ping",
            "udp-echo",
            "udp-ping",
            "multi-send",
            "idle-client",
        ],
    )
    p.add_argument(
        "--srtt",
        type=int,
        default=0,
        metavar="MS",
        help="clients sample their smoothed RTT every MS ms (kcpsock and kcp-go alike) and the"
        " stability table shows its mean and maximum per run (default 0: no sampling)",
    )
    p.add_argument(
        "--timeline",
        default="",
        metavar="DIR",
        help="kcpsock peers write every read (servers) and every 32 KB sent (one-way"
        " clients) with its time and window figures to files in DIR (diagnosis of a run)",
    )
    p.add_argument(
        "--syscount",
        action="store_true",
        help="kcpsock peers count their recvmmsg/sendmmsg/sendmsg/futex calls, wake-ups,"
        " context switches and page faults over each transfer (Linux perf events:"
        " tools/syscount.py); each run's line gains them per MB, client c_ / server s_",
    )
    p.add_argument("--config", choices=list(CONFIGS), default="plain")
    p.add_argument("--report-bytes", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--connect", default="")
    p.add_argument("--size", type=int, default=64)
    opts = p.parse_args(argv)
    roles = {
        "sink-server": role_server,
        "select-server": role_select_server,
        "echo-server": role_server,
        "udp-echo": role_udp_echo,
        "udp-ping": role_udp_ping,
        "multi-send": role_multi_send,
        "idle-client": role_idle_client,
    }
    if opts.role:
        roles.get(opts.role, role_client)(opts)
        return 0
    opts.roots, opts.root_labels = [], {}
    for spec in opts.root or ["this tree="]:
        label, _, path = spec.rpartition("=")
        root = str(Path(path).resolve()) if path else ""
        opts.roots.append(root)
        opts.root_labels[root] = label or path
    _use_root(opts.roots[0])
    if opts.pin:
        why = pin_available()
        if why is not None:
            p.error(f"--pin: {why}")
    if not opts.modes:
        opts.modes = ["stream" if opts.stream else "message"]
    t0 = time.monotonic()
    rows = bench(opts) if opts.pairs else []
    peer: Optional[Path] = None
    if "many" in opts.extras or "idle" in opts.extras:
        try:
            peer = build_peer()
        except PeerUnavailable as exc:
            print(f"# kcp-go skipped: {exc}", file=sys.stderr)
    floor_ms = floor(opts) if "floor" in opts.extras else None
    many_rows = many(opts, peer) if "many" in opts.extras else []
    idle_rows = idle(opts, peer) if "idle" in opts.extras else []
    command = shlex.join(
        ["python", "tools/bench.py", *(argv if argv is not None else sys.argv[1:])]
    )
    print(f"\n`{command}` ({opts.bytes / 1e6:g} MB per transfer, {time.monotonic() - t0:.0f} s)\n")
    if opts.pin:
        print(
            f"--pin: servers on CPU {SERVER_CPU}, clients on CPU {CLIENT_CPU} ('idle' unpinned)\n"
        )
    if opts.root:
        shown = ", ".join(f"{opts.root_labels[r]} = {r or 'this tree'}" for r in opts.roots)
        print(f"kcpsock trees: {shown}; 'many' alternates them, 'idle' ran with the first\n")
    if rows:
        print(table(rows))
        r = ratios(rows)
        if r:
            print("\n" + r)
        if opts.repeat > 1:
            print("\nStability (every run):\n")
            print(stability(rows))
            print("\n" + stability_summary(rows))
    if floor_ms is not None:
        print(f"\nRaw-UDP ping-pong floor (two Python processes): p50 {floor_ms[0]:.3f} ms,")
        print(f"p99 {floor_ms[1]:.3f} ms")
    if many_rows:
        load = "kcp-go client" if peer is not None else "kcpsock client"
        print(
            f"\nOne listener, plain, stream, {load}: 1 session vs {opts.sessions} at once"
            " (MB/s in total)\n"
        )
        print(
            f"| server | 1 session | {opts.sessions} sessions | ratio | runs (1 / {opts.sessions}) |"
        )
        print("|---|---:|---:|---:|---|")
        for row in many_rows:
            one, n = row.get("1"), row.get(str(opts.sessions))
            ratio = f"{n / one:.2f}" if one and n else "-"
            cells = [f"{v:.1f}" if v else "failed" for v in (one, n)]
            runs = " / ".join(
                ", ".join(f"{v:.0f}" for v in row.get(f"runs{k}", [])) for k in (1, opts.sessions)
            )
            print(f"| {row['server']} | {cells[0]} | {cells[1]} | {ratio} | {runs} |")
    if idle_rows:
        print(
            f"\n{opts.idle_sessions} idle sessions for {opts.idle_seconds:g} s"
            " (CPU, % of one core)\n"
        )
        print("| server | server CPU % | kcpsock client process CPU % |")
        print("|---|---:|---:|")
        for row in idle_rows:
            print(f"| {row['server']} | {row['server_pct']:.2f} | {row['client_pct']:.2f} |")
    if rows or many_rows or idle_rows:
        trees = [opts.root_labels[r] for r in opts.roots]
        print("\n" + goals(rows, many_rows, idle_rows, opts.sessions, trees))
    return 0


if __name__ == "__main__":
    sys.exit(main())
