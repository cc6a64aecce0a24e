"""Micro-benchmark of the FEC layer (kcpsock.fec): microseconds per packet.

Usage: .venv/bin/python tools/bench_fec.py [--size 1372] [--groups 300] [--repeat 5]
                                            [--shards 10/3]

Measures, for d/p shards and KCP datagrams of --size bytes (1372 = the KCP
MTU with a block cipher and FEC, so the wire packets are 1400 bytes):

* encode: FECEncoder.encode per data packet (parity cost amortised);
* decode, no loss: FECDecoder.decode over every packet of each group
  (data and parity), reported per data packet;
* decode, recovery: p data packets of each group lost, the rest (and all
  parity) decoded, per data packet; includes the reconstruction.

Best of --repeat runs (the machine is shared; compare ratios within a run).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kcpsock.fec import FECDecoder, FECEncoder


def best(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter_ns()
        fn()
        times.append(time.perf_counter_ns() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1372)
    ap.add_argument("--groups", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=5)
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

    enc = FECEncoder(d, p)
    packets = [pkt for dg in dgs for pkt in enc.encode(dg)]
    lossy = [pkt for i, pkt in enumerate(packets) if i % n >= p]  # first p data lost

    def run_decode(pkts: list[bytes]) -> None:
        dec = FECDecoder(d, p)
        for pkt in pkts:
            dec.decode(pkt)

    check = FECDecoder(d, p)
    got = [dg for pkt in lossy for dg in check.decode(pkt)]
    assert sorted(got) == sorted(dgs), "recovery check failed"

    t_enc = best(run_encode, args.repeat) / count / 1000
    t_dec = best(lambda: run_decode(packets), args.repeat) / count / 1000
    t_rec = best(lambda: run_decode(lossy), args.repeat) / count / 1000
    print(f"FEC {d}/{p}, {args.size}-byte KCP datagrams, {args.groups} groups, "
          f"best of {args.repeat}, Python {sys.version.split()[0]}")
    print(f"  encode                       {t_enc:6.2f} us per data packet")
    print(f"  decode, no loss              {t_dec:6.2f} us per data packet "
          f"({t_dec * d / n:.2f} us per received packet)")
    print(f"  decode, {p} of {d} data lost    {t_rec:6.2f} us per data packet "
          f"(recovery included)")


if __name__ == "__main__":
    main()
