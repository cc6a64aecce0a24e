"""End-to-end cost of the replay/reflection filter: aes transfers with and without it.

Usage: .venv/bin/python tools/bench_replay.py [--bytes 8000000] [--repeat 5]

One process, loopback: a client sends ``--bytes`` to an accepting listener
(both with ``new_block_crypt("aes", key)``, FEC off, nodelay 1/10/2/nc,
windows 256), once with the default ``replay_cache`` and once with
``replay_cache=0`` (filter off), alternating, ``--repeat`` times each.
Prints the median wall-clock throughput and the process CPU time per wire
datagram (sent + received, both ends) of each, and their ratio.  The machine
is shared: compare the ratio, not the absolute figures.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import kcpsock
from kcpsock.stats import snmp

FAST = dict(nodelay=1, interval=10, resend=2, nc=True, sndwnd=256, rcvwnd=256)


def one_run(nbytes: int, replay_cache: int) -> tuple[float, float]:
    """Return (MB/s wall clock, CPU µs per wire datagram) of one transfer."""
    block = kcpsock.new_block_crypt("aes", kcpsock.derive_key("bench"))
    opts = dict(FAST, block=block, replay_cache=replay_cache)
    data = b"\x5a" * nbytes
    with kcpsock.listen(("127.0.0.1", 0), **opts) as ln:  # type: ignore[arg-type]
        ln.settimeout(10)
        client = kcpsock.dial(ln.getsockname(), timeout=30, **opts)  # type: ignore[arg-type]
        client.sendall(b"x")
        conn, _ = ln.accept()
        conn.settimeout(30)
        assert conn.recv(1) == b"x"
        got = 0
        pkts0 = snmp.InPkts + snmp.OutPkts
        cpu0 = time.process_time()
        t0 = time.monotonic()
        sender = threading.Thread(target=client.sendall, args=(data,))
        sender.start()
        while got < nbytes:
            got += len(conn.recv(65536))
        elapsed = time.monotonic() - t0
        cpu = time.process_time() - cpu0
        sender.join(30)
        pkts = snmp.InPkts + snmp.OutPkts - pkts0
        client.close()
        conn.close()
    return nbytes / elapsed / 1e6, cpu / max(pkts, 1) * 1e6


def main() -> None:
    """Run the alternating transfers and print the table."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--bytes", type=int, default=8_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    results: dict[str, list[tuple[float, float]]] = {"filter on": [], "filter off": []}
    one_run(200_000, 0)  # warm-up (imports, cipher self-checks)
    for _ in range(args.repeat):
        results["filter on"].append(one_run(args.bytes, kcpsock.KCPConfig().replay_cache))
        results["filter off"].append(one_run(args.bytes, 0))
    print(
        f"aes, {args.bytes:,} bytes per transfer, median of {args.repeat} alternating runs"
        " (shared machine)"
    )
    print("| replay filter | MB/s | CPU µs per wire datagram |")
    print("| --- | ---: | ---: |")
    med = {}
    for label, runs in results.items():
        mbs = statistics.median(r[0] for r in runs)
        us = statistics.median(r[1] for r in runs)
        med[label] = (mbs, us)
        print(f"| {label} | {mbs:.1f} | {us:.1f} |")
    on, off = med["filter on"], med["filter off"]
    print(f"ratio on/off: throughput {on[0] / off[0]:.3f}, CPU per datagram {on[1] / off[1]:.3f}")


if __name__ == "__main__":
    main()
