#!/usr/bin/env python3
"""CPU a small round trip costs each side, deterministically (no threads, no sockets).

Two :class:`~kcpsock.sock.KCPSocket` objects (client "a", server "b") of
any checkout (``--root``) are joined by an in-memory wire: each side's UDP
output is queued and handed to the other side's inbound pipeline
(``Session._on_batch``, what its receiver thread runs after ``recvfrom``)
by a driver loop.  The updater is a stub and the clock a counter (one ms
every five round trips; a session whose timer is due gets its ``on_timer``
on its side), so every run executes exactly the same code.  What is left
out: ``recvfrom``/``sendto`` themselves and the thread hand-offs (measure
those with ``--real``).

Workloads (``--what``):

- ``ping``: bench.py's RTT test: the client ``sendall``s 64 bytes (a
  bytearray) and reads them back; the server ``recv_into``s and
  ``sendall``s a memoryview (bench.py's echo server).  Figures per round trip.
- ``echo``: bench.py's echo step in message mode by default: the client
  sends bursts of ``--burst`` mss-sized messages, the server takes each
  with one ``recv_into`` and ``sendall``s it back.  Figures per message.
  A burst longer than ``CORK_INFLIGHT`` (16; e.g. ``--burst 64``) is the
  busy echo server's path: the server corks its replies behind the
  segments in flight, and they leave with the flushes the client's ACKs
  trigger (the client reads and acknowledges what has come, the server
  takes the ACKs, until the burst is back).
- ``recv``: bench.py's one-way receiver in message mode by default: the
  client sends bursts of ``--burst`` mss-sized messages, the server takes
  them in one batch and reads each with one ``recv_into(buf, nbytes)``
  as bench.py's sink does (stream mode: 64 kB reads until the burst is
  in), answering nothing but its ACKs.  Figures per message (side b: the receiver).

Measures:

- default: CPU time (``time.thread_time``) per round trip / message, per
  side, best of ``--repeat`` runs;
- ``--callgrind``: re-runs itself under ``valgrind --tool=callgrind``,
  collecting only inside the steps of ``--side`` (they are called through
  ``sys.call_tracing``, whose C function toggles collection), and prints
  instructions per round trip (load-independent: compare trees with it);
- ``--profile``: cProfile of one side's steps, the costliest functions;
- ``--real``: a real loopback run: an echo server (kcpsock ``listen``) in a
  child process, this process pings it; prints the CPU of each process
  per round trip (threads and system calls included) and the wall-clock
  p50/p99.

Usage::

    python tools/count_rtt.py [--what ping|echo] [--rounds 20000] [--root DIR]
    python tools/count_rtt.py --callgrind [--side a|b|both] [--what ...] [--root DIR]
    python tools/count_rtt.py --profile a|b [--what ...]
    python tools/count_rtt.py --real [--rounds 5000] [--root DIR]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

from bench_profile import BENCH_PROFILE
from callgrind import count_instructions

HERE = Path(__file__).resolve().parent


def _load(root: Path) -> dict[str, Any]:
    """Import kcpsock from the checkout at ``root``; return the modules used."""
    sys.path.insert(0, str(root))
    for name in [m for m in sys.modules if m == "kcpsock" or m.startswith("kcpsock.")]:
        del sys.modules[name]
    import kcpsock
    import kcpsock.config
    import kcpsock.inbound
    import kcpsock.session
    import kcpsock.sock
    import kcpsock.transport
    import kcpsock.updater

    if Path(kcpsock.__file__ or "").resolve().parent.parent != root:
        raise SystemExit(f"--root {root}: imported {kcpsock.__file__} instead")
    return {
        "kcpsock": kcpsock,
        "config": kcpsock.config,
        "inbound": kcpsock.inbound,
        "session": kcpsock.session,
        "sock": kcpsock.sock,
        "transport": kcpsock.transport,
        "updater": kcpsock.updater,
    }


class _Clock:
    """The fake session clock (ms)."""

    def __init__(self) -> None:
        self.now = 1000

    def __call__(self) -> int:
        return self.now


def _updater_stub(updater_mod: Any) -> Any:
    """The updater stub: remembers deadlines, runs nothing by itself.

    A subclass of the checkout's ``Updater`` (the session module's global
    must keep its type when kcpsock is compiled with mypyc).
    """

    class _Updater(updater_mod.Updater):  # type: ignore[misc]
        def schedule(self, target: Any, deadline: int) -> None:
            current = target.updater_deadline
            if current is None or deadline < current:
                target.updater_deadline = deadline

        def cancel(self, target: Any) -> None:
            target.updater_deadline = None

        def release(self, wait: bool = True, timeout: float = 1.0) -> bool:
            return True

    return _Updater("count-rtt")


class Pair:
    """Two sockets joined by an in-memory wire, driven step by step."""

    def __init__(self, mods: dict[str, Any], stream: bool, codec: str = "plain") -> None:
        session_mod = mods["session"]
        self.clock = _Clock()
        session_mod.now_ms = self.clock
        session_mod.updater = _updater_stub(mods["updater"])
        transport_mod = mods["transport"]
        config = _profile(mods, stream, keepalive_timeout=0)
        self.queues: dict[str, list[bytes]] = {"a": [], "b": []}
        addrs = {"a": ("127.0.0.1", 10001), "b": ("127.0.0.1", 10002)}
        self.addrs = addrs
        queues = self.queues

        class Wire(transport_mod.Transport):  # type: ignore[name-defined,misc]
            """A transport whose datagrams wait in the peer's queue."""

            __slots__ = ("queue",)

            @property
            def family(self) -> int:
                return 2  # AF_INET

            def send(self, packets: list[bytes], remote: Any) -> tuple[int, int]:
                self.queue.extend(packets)
                return len(packets), sum(map(len, packets))

        #: the checkout's CORK_INFLIGHT (16 where it has none)
        self.cork_inflight: int = getattr(session_mod, "CORK_INFLIGHT", 16)
        self.sessions: dict[str, Any] = {}
        self.socks: dict[str, Any] = {}
        self._dummies: list[socket.socket] = []
        for me, peer in (("a", "b"), ("b", "a")):
            # a datagram socket no one uses (AF_UNIX: kcpsock's batched UDP
            # calls leave it alone); the wire overrides family and send
            dummy = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._dummies.append(dummy)
            wire = Wire(dummy, owned=False, connected=True)
            wire.queue = queues[peer]
            packet_codec = _codec(mods, codec)
            s = session_mod.Session(0x1234, addrs[peer], wire, config, packet_codec)
            s._inbound = mods["inbound"].Inbound.for_session(s.route, packet_codec, None)
            if s.replay is not None:
                # as Session.start_receiver does
                s.replay.install(s._inbound)
            s.start()
            self.sessions[me] = s
            self.socks[me] = mods["sock"].KCPSocket(s)

    def deliver(self, to: str) -> None:
        """Hand the datagrams queued for ``to`` to its inbound pipeline (one batch)."""
        q = self.queues[to]
        if q:
            src = self.addrs["b" if to == "a" else "a"]
            batch = [(p, src) for p in q]
            q.clear()
            self.sessions[to]._on_batch(batch)

    def timers(self, side: str) -> None:
        """Run ``on_timer`` of a side whose deadline passed (the updater's work)."""
        s = self.sessions[side]
        due = s.updater_deadline
        now = self.clock.now
        if due is not None and due <= now:
            s.updater_deadline = None
            nxt = s.on_timer(now)
            if nxt is not None:
                s.updater_deadline = nxt


Step = tuple[str, Callable[[], Any]]


#: bench.py's configurations: (cipher, FEC data shards, parity shards)
CODECS = {"plain": ("null", 0, 0), "aes+fec": ("aes", 10, 3)}


def _codec(mods: dict[str, Any], name: str) -> Any:
    """One side's PacketCodec for bench.py's configuration ``name`` (None: plain)."""
    crypt, ds, ps = CODECS[name]
    if crypt == "null":
        return None
    kcpsock = mods["kcpsock"]
    block = kcpsock.new_block_crypt(crypt, kcpsock.derive_key("count_rtt"))
    return kcpsock.PacketCodec(block, ds, ps)


def _profile(mods: dict[str, Any], stream: bool, **extra: Any) -> Any:
    """bench.py's profile (nodelay 1/10/2/nc, windows 1024, MTU 1400) as a KCPConfig."""
    return mods["config"].KCPConfig(**BENCH_PROFILE, stream=stream, **extra)


def _exchange(
    pair: Pair,
    a_send: Callable[[], Any],
    b_echo: Callable[[], Any],
    a_recv: Callable[[], Any],
    b_ack: Callable[[], Any],
) -> list[Step]:
    """One exchange: a sends, b echoes, a reads, b takes the ACKs, then both timers."""
    return [
        ("a", a_send),
        ("b", b_echo),
        ("a", a_recv),
        ("b", b_ack),
        ("a", lambda: pair.timers("a")),
        ("b", lambda: pair.timers("b")),
    ]


def ping_steps(pair: Pair, size: int = 64) -> tuple[list[Step], Callable[[int], None]]:
    """One 64-byte round trip as steps, each charged to a side."""
    a, b = pair.socks["a"], pair.socks["b"]
    msg = bytearray(size)
    buf = bytearray(65536)
    view = memoryview(buf)

    def a_send() -> None:
        a.sendall(msg)

    def b_echo() -> None:
        pair.deliver("b")
        n = b.recv_into(buf)
        b.sendall(view[:n])

    def a_recv() -> None:
        pair.deliver("a")
        got = 0
        while got < size:
            got += len(a.recv(size - got))

    def b_ack() -> None:
        pair.deliver("b")

    def tick(i: int) -> None:
        msg[0] = i & 0xFF
        if i % 5 == 0:
            pair.clock.now += 1

    return _exchange(pair, a_send, b_echo, a_recv, b_ack), tick


def echo_steps(pair: Pair, burst: int) -> tuple[list[Step], Callable[[int], None]]:
    """A burst of mss-sized messages echoed one recv_into + sendall each."""
    a, b = pair.socks["a"], pair.socks["b"]
    mss = pair.sessions["a"].kcp.mss
    msg = os.urandom(mss)
    buf = bytearray(65536)
    view = memoryview(buf)
    total = burst * mss

    def a_send() -> None:
        for _ in range(burst):
            a.sendall(msg)

    def b_echo() -> None:
        pair.deliver("b")
        for _ in range(burst):
            n = b.recv_into(buf)
            b.sendall(view[:n])

    def a_recv() -> None:
        pair.deliver("a")
        got = 0
        while got < total:
            got += len(a.recv(65536))

    def b_ack() -> None:
        pair.deliver("b")

    def tick(i: int) -> None:
        pair.clock.now += 1

    cork = pair.cork_inflight
    if burst <= cork:
        return _exchange(pair, a_send, b_echo, a_recv, b_ack), tick
    # A longer burst: both sides cork behind ``cork`` segments in flight (as a
    # busy echo client and server do); the rest leaves with the flushes the
    # ACKs trigger.  Each side in turn takes what came, echoes (b) or reads
    # (a) the messages that are complete, until the burst is back.
    sa, sb = pair.sessions["a"], pair.sessions["b"]
    state = [0, 0]  # messages echoed by b, bytes back at a

    def b_some() -> None:
        pair.deliver("b")
        queue = sb.kcp.rcv_queue
        while queue:
            n = b.recv_into(buf)
            b.sendall(view[:n])
            state[0] += 1

    def a_some() -> None:
        pair.deliver("a")
        queue = sa.kcp.rcv_queue
        while queue:
            state[1] += len(a.recv(65536))

    def a_done() -> None:
        if state != [burst, total]:
            raise SystemExit(f"echo: {state[0]} echoed, {state[1]} of {total} bytes back")
        state[0] = state[1] = 0

    steps: list[Step] = [("a", a_send)]
    for _ in range(2 * (burst // cork) + 4):
        steps += [("b", b_some), ("a", a_some)]
    steps += [
        ("b", b_ack),
        ("a", a_done),
        ("a", lambda: pair.timers("a")),
        ("b", lambda: pair.timers("b")),
    ]
    return steps, tick


def recv_steps(pair: Pair, burst: int) -> tuple[list[Step], Callable[[int], None]]:
    """A burst of mss-sized messages read by the receiver, one recv_into each (one-way)."""
    a, b = pair.socks["a"], pair.socks["b"]
    mss = pair.sessions["a"].kcp.mss
    msg = os.urandom(mss)
    buf = bytearray(65536)
    total = burst * mss

    def a_send() -> None:
        for _ in range(burst):
            a.sendall(msg)

    def b_read() -> None:
        pair.deliver("b")
        got = 0
        while got < total:
            # as bench.py's sink: at most what is still expected
            got += b.recv_into(buf, min(len(buf), total - got))

    def a_ack() -> None:
        pair.deliver("a")

    def b_idle() -> None:
        pair.deliver("b")

    def tick(i: int) -> None:
        pair.clock.now += 1

    return _exchange(pair, a_send, b_read, a_ack, b_idle), tick


def _build(args: argparse.Namespace) -> tuple[Pair, list[Step], Callable[[int], None], int]:
    mods = _load(Path(args.root).resolve())
    stream = args.mode == "stream"
    pair = Pair(mods, stream, args.config)
    if args.what == "ping":
        steps, tick = ping_steps(pair, args.size)
        per = 1
    elif args.what == "recv":
        steps, tick = recv_steps(pair, args.burst)
        per = args.burst
    else:
        steps, tick = echo_steps(pair, args.burst)
        per = args.burst
    # warm up: the first round trips set RTT estimates and windows (200
    # rounds; long echo bursts: about as many messages)
    for i in range(max(200 * 16 // per, 10) if per > 16 else 200):
        tick(i)
        for _, fn in steps:
            fn()
    return pair, steps, tick, per


def run_cpu(args: argparse.Namespace) -> dict[str, float]:
    """CPU µs per round trip (or message) per side; best of ``--repeat``."""
    best = {"a": float("inf"), "b": float("inf")}
    clock = time.thread_time
    for _ in range(args.repeat):
        _, steps, tick, per = _build(args)
        spent = {"a": 0.0, "b": 0.0}
        # the cost of the timing itself, subtracted per step
        t0 = clock()
        for _ in range(1000):
            clock()
        stamp = (clock() - t0) / 1000
        for i in range(args.rounds):
            tick(i)
            for side, fn in steps:
                t = clock()
                fn()
                spent[side] += clock() - t - stamp
        for side in best:
            best[side] = min(best[side], spent[side] / (args.rounds * per) * 1e6)
    return best


def run_traced(args: argparse.Namespace) -> None:
    """The run under callgrind: the chosen side's steps through sys.call_tracing."""
    _, steps, tick, _ = _build(args)
    sides = {"a", "b"} if args.side == "both" else {args.side}
    traced = [(fn, side in sides) for side, fn in steps]
    call_tracing = sys.call_tracing
    for i in range(args.rounds):
        tick(i)
        for fn, on in traced:
            if on:
                call_tracing(fn, ())
            else:
                fn()


def run_profile(args: argparse.Namespace) -> None:
    """CProfile of one side's steps."""
    _, steps, tick, per = _build(args)
    prof = cProfile.Profile()
    for i in range(args.rounds):
        tick(i)
        for side, fn in steps:
            if side == args.profile:
                prof.enable()
                fn()
                prof.disable()
            else:
                fn()
    stats = pstats.Stats(prof)
    stats.sort_stats("tottime").print_stats(args.top)
    print(f"({args.rounds * per} round trips / messages)")


def _callgrind(args: argparse.Namespace, argv: list[str]) -> int:
    child = [a for a in argv if a != "--callgrind"] + ["--traced"]
    ir, out = count_instructions(__file__, child, args.out, prefix="callgrind.rtt.")
    per = args.rounds * (1 if args.what == "ping" else args.burst)
    unit = "round trip" if args.what == "ping" else "message"
    print(
        f"{args.what} {args.mode} {args.config} side {args.side}: Ir {ir / per:.0f} per {unit}"
        f"  ({ir} in {per})  root {Path(args.root).resolve()}  callgrind file {out}"
    )
    return 0


# -- --real: over loopback, one process per side ------------------------------


def _proc_cpu(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of process ``pid``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def _proc_switches(pid: int) -> tuple[int, int]:
    """(voluntary, involuntary) context switches of all threads of process ``pid``.

    A voluntary switch is a thread blocking (a wait for a datagram, a lock,
    a Condition or the GIL), so the count per round trip shows the thread
    hand-offs independently of the machine's load; involuntary ones are
    preemptions (load).
    """
    vol = invol = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            text = (task / "status").read_text()
        except OSError:  # the thread ended meanwhile
            continue
        for line in text.splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                vol += int(line.split()[1])
            elif line.startswith("nonvoluntary_ctxt_switches:"):
                invol += int(line.split()[1])
    return vol, invol


def role_server(args: argparse.Namespace) -> None:
    """The echo server of ``--real`` (bench.py's: recv_into, sendall a view)."""
    mods = _load(Path(args.root).resolve())
    kcpsock = mods["kcpsock"]
    config = _profile(mods, args.mode == "stream")
    listener = kcpsock.listen(("127.0.0.1", 0), config=config)
    print(f"READY {listener.getsockname()[1]}", flush=True)
    sock, _ = listener.accept()
    buf = bytearray(65536)
    view = memoryview(buf)
    while True:
        n = sock.recv_into(buf)
        if not n:
            print(f"server: end of stream ({sock.session.failure})", file=sys.stderr)
            break
        sock.sendall(view[:n])


def run_real(args: argparse.Namespace) -> None:
    """Ping a child-process echo server over loopback; CPU per round trip per side."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--role", "server"]
    cmd += ["--root", args.root, "--mode", args.mode]
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        line = child.stdout.readline().split()
        if not line or line[0] != "READY":
            raise SystemExit("the server did not start")
        port = int(line[1])
        mods = _load(Path(args.root).resolve())
        config = _profile(mods, args.mode == "stream")
        sock = mods["kcpsock"].dial(("127.0.0.1", port), config=config)
        msg = bytearray(args.size)
        rtts: list[float] = []
        c0 = s0 = (0.0, 0.0)
        for i in range(args.rounds + 200):
            if i == 200:
                c0, s0 = _proc_cpu(os.getpid()), _proc_cpu(child.pid)
                w0 = (_proc_switches(os.getpid()), _proc_switches(child.pid))
            msg[0] = i & 0xFF
            t0 = time.perf_counter()
            sock.sendall(msg)
            got = 0
            while got < args.size:
                data = sock.recv(args.size - got)
                if not data:
                    raise SystemExit(f"the server ended the session at round trip {i}")
                got += len(data)
            if i >= 200:
                rtts.append(time.perf_counter() - t0)
        c1, s1 = _proc_cpu(os.getpid()), _proc_cpu(child.pid)
        w1 = (_proc_switches(os.getpid()), _proc_switches(child.pid))
        sock.close()
        rtts.sort()
        n = len(rtts)
        cu, cs = (c1[0] - c0[0]) / n * 1e6, (c1[1] - c0[1]) / n * 1e6
        su, ss = (s1[0] - s0[0]) / n * 1e6, (s1[1] - s0[1]) / n * 1e6
        print(
            f"real ping {args.mode}: CPU us per round trip (user+sys):"
            f" client {cu + cs:.0f} ({cu:.0f}+{cs:.0f}), server {su + ss:.0f} ({su:.0f}+{ss:.0f}),"
            f" p50 {rtts[n // 2] * 1e6:.0f} us, p99 {rtts[int(0.99 * (n - 1))] * 1e6:.0f} us,"
            f" context switches per round trip (voluntary/involuntary):"
            f" client {(w1[0][0] - w0[0][0]) / n:.2f}/{(w1[0][1] - w0[0][1]) / n:.2f},"
            f" server {(w1[1][0] - w0[1][0]) / n:.2f}/{(w1[1][1] - w0[1][1]) / n:.2f}"
            f"  ({n} round trips, root {Path(args.root).resolve()})"
        )
    finally:
        child.kill()
        child.wait(5)


def main(argv: Optional[list[str]] = None) -> int:
    """Command-line entry point; returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--root", default=str(HERE.parent), help="checkout to measure")
    parser.add_argument("--what", choices=("ping", "echo", "recv"), default="ping")
    parser.add_argument("--mode", choices=("stream", "message"), default=None)
    parser.add_argument("--rounds", type=int, default=0, help="round trips (echo: bursts)")
    parser.add_argument("--size", type=int, default=64, help="ping size in bytes")
    parser.add_argument("--burst", type=int, default=16, help="echo and recv: messages per burst")
    parser.add_argument("--repeat", type=int, default=3, help="CPU mode: best of N runs")
    parser.add_argument("--side", choices=("a", "b", "both"), default="both")
    parser.add_argument("--callgrind", action="store_true", help="count instructions")
    parser.add_argument("--out", help="callgrind output file (default: a temporary file)")
    parser.add_argument("--profile", choices=("a", "b"), help="cProfile one side")
    parser.add_argument("--top", type=int, default=30, help="--profile: functions shown")
    parser.add_argument("--real", action="store_true", help="real loopback, two processes")
    parser.add_argument(
        "--config",
        choices=tuple(CODECS),
        default="plain",
        help="bench.py's configuration: plain, or aes+fec (aes, FEC 10/3, replay filter)",
    )
    parser.add_argument("--traced", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--role", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.mode is None:
        args.mode = "stream" if args.what == "ping" else "message"
    if args.what == "echo" and args.mode == "stream":
        # stream mode corks small writes behind 16 segments in flight: the
        # driver loop would wait for a tick it never runs
        parser.error("--what echo measures message mode only")
    if args.what == "recv" and not 0 < args.burst <= 16:
        # a longer burst corks the sender behind 16 segments in flight: the
        # receiver would wait for messages that leave only with its ACKs
        parser.error("--what recv: --burst 1 to 16 messages")
    if not 0 < args.burst <= 1000:
        parser.error("--burst: 1 to 1000 messages")
    if not args.rounds:
        args.rounds = {"ping": 20000, "echo": 1000, "recv": 1000}[args.what]
        if args.callgrind or args.traced:
            args.rounds //= 10
    if args.role == "server":
        role_server(args)
        return 0
    if args.real:
        run_real(args)
        return 0
    if args.callgrind:
        return _callgrind(args, argv)
    if args.traced:
        run_traced(args)
        return 0
    if args.profile:
        run_profile(args)
        return 0
    cpu = run_cpu(args)
    unit = "round trip" if args.what == "ping" else "message"
    print(
        f"{args.what} {args.mode}: CPU per {unit}: a {cpu['a']:.1f} us, b {cpu['b']:.1f} us"
        f"  (best of {args.repeat} x {args.rounds}, root {Path(args.root).resolve()})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
