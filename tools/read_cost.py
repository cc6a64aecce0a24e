#!/usr/bin/env python3
"""CPU of ``Session.recv_into`` alone per MB read, of any checkout (``--root``).

An unstarted session on 127.0.0.1 is fed ``--segments`` mss-sized PUSH
segments at a time (as its receiver would, ``Session.deliver``; not
timed), then read with ``recv_into_short`` into a 64 kB bytearray until
they are in (timed, ``time.thread_time_ns``): in stream mode one read of
the queued segments, in message mode one read per message.  What is left
out: KCP input, the wake-ups, the socket.  Prints the best and the median
of ``--repeat`` runs of ``--rounds`` rounds each, in ms per MB.

Example (compare two trees, alternating)::

    for root in /work/wt/copy12 /tmp/before12; do
        PYTHONPATH=$root .venv/bin/python tools/read_cost.py --root $root --mode stream
    done
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
import time


def main() -> int:
    """Run the measurement; print one line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root", default=os.getcwd(), help="checkout to measure")
    p.add_argument("--mode", choices=["stream", "message"], default="stream")
    p.add_argument("--segments", type=int, default=47, help="segments fed per round (1..128)")
    p.add_argument("--rounds", type=int, default=300)
    p.add_argument("--repeat", type=int, default=7)
    args = p.parse_args()
    if not 0 < args.segments <= 128 or args.rounds < 1 or args.repeat < 1:
        p.error("--segments 1..128, --rounds and --repeat >= 1")
    sys.path.insert(0, os.path.abspath(args.root))
    from kcpsock.inbound import Delivery
    from tests.helpers import unstarted_session

    conv = 7
    with unstarted_session(conv, stream=args.mode == "stream") as (s, _):
        mss = s.kcp.mss
        payload = (bytes(range(256)) * (mss // 256 + 1))[:mss]
        buf = bytearray(65536)
        total_bytes = args.segments * mss

        def feed() -> None:
            d = Delivery(s.route)
            sn = s.kcp.rcv_nxt
            for i in range(args.segments):
                hdr = struct.pack("<IBBHIIII", conv, 81, 0, 1024, 1000, sn + i, 0, mss)
                d.datagrams.append(hdr + payload)
                d.packets += 1
                d.nbytes += len(hdr) + mss
            s.deliver(d)
            s._out.clear()  # the ACKs: not sent

        runs: list[float] = []
        reads = 0
        for _ in range(args.repeat):
            spent = 0
            reads = 0
            for _ in range(args.rounds):
                feed()
                got = 0
                t0 = time.thread_time_ns()
                while got < total_bytes:
                    got += s.recv_into_short(buf, 0, 0)
                    reads += 1
                spent += time.thread_time_ns() - t0
            runs.append(spent / (args.rounds * total_bytes / 1e6) / 1e6)  # ms per MB
    runs.sort()
    print(
        f"read_cost {args.mode}: recv_into CPU {runs[0]:.3f} ms/MB best, {runs[len(runs) // 2]:.3f}"
        f" median of {args.repeat} ({reads // args.rounds} reads per {args.segments} segments)"
        f"  root {args.root}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
