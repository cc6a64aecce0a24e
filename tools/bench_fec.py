"""Micro-benchmark of the FEC layer (kcpsock.fec): microseconds per packet.

Usage: .venv/bin/python tools/bench_fec.py [--size 1372] [--groups 50] [--rounds 30]
                                            [--shards 10/3]

Measures, for d/p shards and KCP datagrams of --size bytes (1372 = the KCP
MTU with a block cipher and FEC, so the wire packets are 1400 bytes):

* encode: FECEncoder.encode per data packet (parity cost amortised), with
  the bit-sliced parity program (codes up to 24/8) and, for comparison, the
  translate-table path that larger codes use;
* decode, no loss: FECDecoder.decode over every packet of each group
  (data and parity), per data packet and per received packet;
* decode, recovery: p data packets of each group lost, the rest (and all
  parity) decoded, per data packet; includes the reconstruction;
* the latency of the encode call that completes a group (it computes the
  parity).

The measurements are interleaved, --rounds times, and the best round of each
is kept (the machine is shared; compare ratios within a run).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kcpsock.fec import FECDecoder, FECEncoder


def main() -> None:
    """Command-line entry point: run the benchmark and print the figures."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--size", type=int, default=1372)
    ap.add_argument("--groups", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--shards", default="10/3")
    args = ap.parse_args()
    d, p = (int(x) for x in args.shards.split("/"))
    n = d + p
    count = d * args.groups
    dgs = [os.urandom(args.size) for _ in range(count)]

    def run_encode() -> None:
        enc = FECEncoder(d, p)
        for dg in dgs:
            enc.encode(dg)

    def run_encode_translate() -> None:
        enc = FECEncoder(d, p)
        enc._values = None  # force the translate-table path (large codes)
        for dg in dgs:
            enc.encode(dg)

    enc = FECEncoder(d, p)
    packets = [pkt for dg in dgs for pkt in enc.encode(dg)]
    lossy = [pkt for i, pkt in enumerate(packets) if i % n >= p]  # first p data lost

    def run_decode(pkts: list[bytes]) -> Callable[[], None]:
        def run() -> None:
            dec = FECDecoder(d, p)
            for pkt in pkts:
                dec.decode_parts(pkt)

        return run

    check = FECDecoder(d, p)
    got = [dg for pkt in lossy for dg in check.decode(pkt)]
    assert sorted(got) == sorted(dgs), "recovery check failed"

    completing = float("inf")  # the d-th encode call pays for the parity

    def run_completing() -> None:
        nonlocal completing
        enc = FECEncoder(d, p)
        for i, dg in enumerate(dgs[: d * 5]):
            t0 = time.perf_counter_ns()
            enc.encode(dg)
            if i % d == d - 1:
                completing = min(completing, (time.perf_counter_ns() - t0) / 1000)

    runs = {
        "encode": run_encode,
        "encode, translate path": run_encode_translate,
        "decode, no loss": run_decode(packets),
        f"decode, {p} of {d} data lost": run_decode(lossy),
    }
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(args.rounds):
        run_completing()
        for name, fn in runs.items():
            t0 = time.perf_counter_ns()
            fn()
            best[name] = min(best[name], (time.perf_counter_ns() - t0) / count / 1000)
    print(
        f"FEC {d}/{p}, {args.size}-byte KCP datagrams, {args.groups} groups, "
        f"best of {args.rounds} rounds, Python {sys.version.split()[0]}"
    )
    for name, us in best.items():
        extra = f"   ({us * d / n:.2f} us per received packet)" if name.endswith("no loss") else ""
        print(f"  {name:28s} {us:6.2f} us per data packet{extra}")
    print(f"  (the group-completing encode call alone: {completing:.1f} us)")


if __name__ == "__main__":
    main()
