"""Work per keep-alive exchange of an idle session pair, on a simulated clock.

Two sessions in one thread, each with its inbound pipeline (as a receiver
thread runs it) and a transport that keeps what it is given instead of
sending it; one of them has a reader waiting in ``recv`` (as a server's
handler thread), so its close watch runs too.  The tool plays the updater
thread on a simulated clock: it pops the earliest timer of the updater's
heap, advances the clock to it, runs ``on_timer`` and re-arms it as the
updater does, and delivers every datagram sent to the other session 1 ms
later through ``Session._on_batch`` (the receiver's call).  So every timer
the session layer sets runs (also those that find nothing to do), at no
wall-clock cost: ``--seconds`` of simulated idleness take a moment.

Prints, after the first ``--settle`` simulated seconds (the close watch's
window after the last data), the keep-alive exchanges (WASK probes sent),
the timers run, and the CPU µs per exchange (``time.thread_time``, both
sides together, best of ``--repeat``); with ``--callgrind`` the instructions
valgrind counts instead (independent of the machine's load)::

    .venv/bin/python tools/count_keepalive.py
    .venv/bin/python tools/count_keepalive.py --root /tmp/quiet_before
    .venv/bin/python tools/count_keepalive.py --callgrind

Thread wake-ups and the ``recvfrom``/``sendto`` calls are not counted: they
are the same per datagram whatever the session layer does.
"""

from __future__ import annotations

import argparse
import heapq
import socket
import sys
import time
from pathlib import Path
from typing import Any

TOOLS = Path(__file__).resolve().parent


def _pop_entry(heap: Any, entry: Any) -> tuple[int, int, Any]:
    """A popped heap entry as ``(deadline, seq, target or None)``, in either updater layout.

    The updater's heap holds int keys and a key -> weakref dict since round
    9; a tree from before holds ``(deadline, seq, weakref)`` tuples.
    """
    if isinstance(entry, tuple):
        return entry[0], entry[1], entry[2]()
    ref = heap._refs.pop(entry, None)
    return entry >> 40, entry, ref() if ref is not None else None


def run(seconds: float, settle: float) -> tuple[float, int, int]:
    """Simulate ``settle`` + ``seconds`` of idleness.

    Returns:
        (CPU seconds, WASK probes sent, timers run) after the settle time.
    """
    from kcpsock import session as session_module
    from kcpsock.config import KCPConfig
    from kcpsock.inbound import Inbound
    from kcpsock.session import Session
    from kcpsock.transport import Transport
    from kcpsock.updater import Updater

    class _Keep(Transport):
        """A transport whose ``send`` keeps the datagrams (no syscall).

        (A subclass, not a stand-in: a mypyc-compiled Session checks the type.)
        """

        def __init__(self, sock: socket.socket) -> None:
            super().__init__(sock, owned=False, connected=True)
            self.sent: list[bytes] = []

        def send(self, packets: list[bytes], remote: Any) -> tuple[int, int]:
            self.sent.extend(packets)
            return len(packets), sum(len(p) for p in packets)

    class _Heap(Updater):
        """The updater's heap without its thread: this tool runs the timers."""

        def _start(self) -> None:
            pass

    clock = [1_000_000]
    heap = _Heap("count_keepalive")
    session_module.updater = heap  # type: ignore[attr-defined]
    session_module.now_ms = lambda: clock[0]
    config = KCPConfig()
    pair = []
    for _ in range(2):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        t = _Keep(sock)
        s = Session(0x1234, ("127.0.0.1", 9), t, config)
        s._inbound = Inbound.for_session(s.route, None, None)
        s.start()
        pair.append((s, t))
    (a, ta), (b, tb) = pair
    b._rwait = 1  # a handler thread waits in recv (the close watch runs)
    addr: Any = ("127.0.0.1", 9)
    start = clock[0] + int(settle * 1000)
    end = start + int(seconds * 1000)
    cpu = 0.0
    probes = timers = 0
    entries = heap._heap
    while True:
        deadline, seq, target = _pop_entry(heap, heapq.heappop(entries))
        if target is None or target.updater_seq != seq:
            continue
        if deadline >= end:
            break
        clock[0] = max(clock[0], deadline)
        counting = clock[0] >= start
        target.updater_deadline = None
        t0 = time.thread_time()
        nxt = target.on_timer(clock[0])
        if nxt is not None:
            heap.rearm(target, nxt)
        while ta.sent or tb.sent:
            # on the wire for 1 ms
            clock[0] += 1
            for t, dst in ((ta, b), (tb, a)):
                if t.sent:
                    if counting:
                        probes += sum(1 for p in t.sent if len(p) == 24 and p[4] == 83)
                    batch = [(p, addr) for p in t.sent]
                    t.sent = []
                    dst._on_batch(batch)
        t1 = time.thread_time()
        if counting:
            cpu += t1 - t0
            timers += 1
    return cpu, probes, timers


def _traced(seconds: float, settle: float) -> None:
    import kcpsock.config
    import kcpsock.inbound
    import kcpsock.session  # noqa: F401  (imports are not counted)

    run(10.0, 0.0)  # nor the first use of every code path
    # the section callgrind counts (see tools/callgrind.py)
    _, probes, _ = sys.call_tracing(run, (seconds, settle))
    print(f"PROBES {probes}")


def main(argv: list[str] | None = None) -> int:
    """Measure; see the module docstring."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seconds", type=float, default=100_000.0, help="simulated idle seconds")
    p.add_argument("--settle", type=float, default=10.0, help="simulated seconds not counted")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--root", default="", help="the kcpsock tree to import (default: this one)")
    p.add_argument("--callgrind", action="store_true", help="count instructions")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    root = str(Path(args.root).resolve()) if args.root else str(TOOLS.parent)
    sys.path.insert(0, root)
    if args.child:
        _traced(args.seconds, args.settle)
        return 0
    if args.callgrind:
        sys.path.insert(0, str(TOOLS))
        from callgrind import count_instructions

        _, probes, _ = run(args.seconds, args.settle)  # the same simulation: same count
        argv2 = ["--child", "--seconds", str(args.seconds), "--settle", str(args.settle)]
        n, _ = count_instructions(__file__, [*argv2, "--root", root], prefix="callgrind.ka.")
        print(f"{root}: {n / probes:,.0f} instructions per keep-alive exchange (both sides)")
        return 0
    runs = [run(args.seconds, args.settle) for _ in range(args.repeat)]
    cpu, probes, timers = min(runs)
    print(
        f"{root}: {probes} keep-alive exchanges, {timers} timers ({timers / probes:.2f} per"
        f" exchange), {1e6 * cpu / probes:.1f} µs CPU per exchange (both sides)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
