#!/usr/bin/env python3
"""Throughput of the pure KCP core: two cores joined in memory, one CPU core.

A sender core and a receiver core exchange datagrams through a Python list
(no sockets, no loss): the sender gets ``mss``-sized messages (as kcp-go's
session cuts writes), flushes, the receiver inputs every datagram and
flushes its ACKs back; datagrams the cores return from ``input()`` (kcp-go's
immediate flushes) are delivered too.  Time is a counter advanced 1 ms per
round, so the run is deterministic.  Reported: MB/s of application payload
and microseconds per data segment for both sides together (send + flush +
input + ACK processing + recv).

Times are the process's CPU time (``time.process_time``): the machine is
shared, and CPU time is what "one core" means here.  The best of
``--repeat`` runs is reported.

Usage: ``python tools/bench_core.py [--mb 100] [--mtu 1400] [--wnd 1024]
[--stream] [--profile]``
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import random
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kcpsock.kcp import KCP


def run(
    total: int, mtu: int, wnd: int, stream: bool, loss: float = 0.0, seed: int = 1
) -> tuple[float, int, int]:
    """Move ``total`` bytes; return (seconds, payload bytes delivered, data segments sent).

    ``loss`` drops that fraction of the datagrams each way (seeded); the clock
    then advances 1 ms per round so retransmission timers fire.
    """
    rng = random.Random(seed)
    keep: Callable[[], bool] = (lambda: rng.random() >= loss) if loss else (lambda: True)
    a, b = KCP(0x42454E43), KCP(0x42454E43)
    for k in (a, b):
        k.setmtu(mtu)
        k.wndsize(wnd, wnd)
        k.nodelay(1, 10, 2, 1)
        k.stream = stream
    mss = a.mss
    block = os.urandom(mss * 64)
    chunks = [block[i : i + mss] for i in range(0, len(block), mss)]
    nchunks = len(chunks)
    sent = received = 0
    ci = 0
    now = 0
    a_send = a.send
    a_input, b_input = a.input, b.input
    b_recv = b.recv
    limit = 2 * wnd
    start = time.process_time()  # CPU time: the machine is shared, wall time is noisy
    while received < total:
        for _ in range(limit - a.waitsnd()):  # the writer keeps two windows queued
            if sent >= total:
                break
            c = chunks[ci]
            ci = ci + 1 if ci + 1 < nchunks else 0
            if sent + len(c) > total:
                c = c[: total - sent]
            a_send(c)
            sent += len(c)
        to_b = a.flush(now)
        while to_b:
            to_a = []
            for d in to_b:
                if keep():
                    to_a.extend(b_input(d, now))
            while True:  # the reader keeps up, as a session's reader would
                m = b_recv()
                if m is None:
                    break
                received += len(m)
            to_a.extend(b.flush(now))
            to_b = []
            for d in to_a:
                if keep():
                    to_b.extend(a_input(d, now))
        to_a = b.update(now) if loss else []  # timers: lost ACKs, window updates
        for d in to_a:
            if keep():
                a_input(d, now)
        now += 1
    elapsed = time.process_time() - start
    if received != total:
        raise AssertionError(f"delivered {received} of {total} bytes")
    return elapsed, received, a.out_segs


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=100.0, help="megabytes (10**6) to move")
    parser.add_argument("--mtu", type=int, default=1400)
    parser.add_argument("--wnd", type=int, default=1024)
    parser.add_argument("--stream", action="store_true", help="stream mode")
    parser.add_argument("--loss", type=float, default=0.0, help="datagram loss each way")
    parser.add_argument("--repeat", type=int, default=3, help="runs; the best is reported")
    parser.add_argument("--profile", action="store_true", help="run under cProfile")
    args = parser.parse_args(argv)
    total = int(args.mb * 1_000_000)
    mss = args.mtu - 24
    segs = (total + mss - 1) // mss
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
    print(
        f"bench_core: {total / 1e6:.0f} MB, mtu {args.mtu}, windows {args.wnd}, "
        f"{'stream' if args.stream else 'message'} mode, {segs} data segments, "
        f"loss {args.loss:g}, "
        f"python {sys.version.split()[0]}"
    )
    times = []
    for _ in range(max(1, args.repeat)):
        elapsed, moved, _ = run(total, args.mtu, args.wnd, args.stream, args.loss)
        times.append(elapsed)
        print(
            f"  {elapsed:.2f} s  {moved / 1e6 / elapsed:.1f} MB/s  "
            f"{elapsed * 1e6 / segs:.2f} us per segment (both sides)"
        )
    if args.profile:
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(15)
    best = min(times)
    print(f"best: {total / 1e6 / best:.1f} MB/s, {best * 1e6 / segs:.2f} us per segment")
    return 0


if __name__ == "__main__":
    sys.exit(main())
