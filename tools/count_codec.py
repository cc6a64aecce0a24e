#!/usr/bin/env python3
"""Cost of the aes + FEC packet path per KCP datagram, each side, of any checkout.

What a session does with its datagrams between KCP and the UDP socket, run
in one thread with no sockets, so two trees compare on a shared, noisy
machine:

- **send**: ``Session._encode``'s path (codec, no DUP) of the tree (FEC framing and parity, nonce,
  CRC-32, encryption, the replay filter's record of sent nonces) on batches
  of ``--batch`` KCP datagrams of ``--size`` bytes (1372: the KCP MTU of an
  aes + FEC 10/3 session, so the wire packets are 1400 bytes);
- **receive**: ``Inbound.process`` of the tree, set up as a dialed session's
  (replay filter stages, open = decrypt + CRC, FEC decode) on batches of up
  to 64 wire packets (the receiver's batch), no loss: the parity packets
  arrive and are handled too.

KCP itself and the socket calls are left out (they are the same with or
without a codec).  Two measures:

- default: CPU microseconds per KCP datagram (``time.process_time``, best of
  ``--repeat`` runs, both sides);
- ``--callgrind``: re-runs itself under ``valgrind --tool=callgrind`` with
  collection on only inside ``sys.call_tracing`` (as tools/count_core.py),
  and prints the instructions (Ir) per KCP datagram of each side: a
  load-independent figure.

Usage::

    python tools/count_codec.py [--root DIR] [--datagrams 5000] [--repeat 5]
    python tools/count_codec.py --callgrind [--root DIR] [--datagrams 2000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any, Callable

from callgrind import count_instructions

HERE = Path(__file__).resolve().parent


def _import(root: Path) -> types.ModuleType:
    sys.path.insert(0, str(root))
    import kcpsock

    if Path(kcpsock.__file__).resolve().parent.parent != root.resolve():
        raise SystemExit(f"imported kcpsock from {kcpsock.__file__}, not {root}")
    return kcpsock


def workloads(
    root: Path, datagrams: int, size: int, batch: int
) -> tuple[Callable[[], Any], Callable[[], Any], int]:
    """(send, receive, wire packets): the two sides' runs, set up and warmed up."""
    kcpsock = _import(root)
    from kcpsock.config import KCPConfig
    from kcpsock.inbound import Inbound, Route
    from kcpsock.session import new_replay_filter

    key = kcpsock.derive_key("count_codec")
    config = KCPConfig()
    payloads = [os.urandom(size) for _ in range(64)]
    dgs = [payloads[i % 64] for i in range(datagrams)]
    batches = [dgs[i : i + batch] for i in range(0, datagrams, batch)]

    now_ms = kcpsock.session.now_ms

    def send(state: Any = None) -> list[bytes]:
        # Session._encode's path for a session with a codec and no DUP (a
        # compiled Session's method takes no stand-in object, so it is done here)
        codec = kcpsock.PacketCodec(kcpsock.new_block_crypt("aes", key), 10, 3)
        replay = new_replay_filter(codec, config)
        wire: list[bytes] = []
        for b in batches:
            packets = codec.encode_many(b, now_ms())
            if replay is not None:
                replay.sent(packets)
            wire += packets
        return wire

    wire = send()
    addr = ("127.0.0.1", 9)
    rx = [[(p, addr) for p in wire[i : i + 64]] for i in range(0, len(wire), 64)]

    def receive() -> int:
        codec = kcpsock.PacketCodec(kcpsock.new_block_crypt("aes", key), 10, 3)
        inbound = Inbound.for_session(Route(None, codec), codec)
        replay = new_replay_filter(codec, config)
        if replay is not None and hasattr(replay, "install"):
            replay.install(inbound)  # as the tree's sessions do
        elif replay is not None:
            inbound.pre_filters.append(replay.pre)
            inbound.post_filters.append(replay.post)
        got = 0
        for b in rx:
            for d in inbound.process(b).deliveries:
                got += len(d.datagrams)
        if got != datagrams:
            raise SystemExit(f"receive side delivered {got} of {datagrams} datagrams")
        return got

    receive()
    return send, receive, len(wire)


def _callgrind(args: argparse.Namespace) -> int:
    out = Path(tempfile.mkdtemp(prefix="count_codec_"))
    results = {}
    for side in ("send", "receive"):
        child = ["--root", str(args.root), "--datagrams", str(args.datagrams)]
        child += ["--size", str(args.size), "--batch", str(args.batch), "--child", side]
        results[side], _ = count_instructions(__file__, child, str(out / f"callgrind.{side}"))
    print(f"root {args.root}: {args.datagrams} datagrams of {args.size} bytes, aes + FEC 10/3")
    for side, ir in results.items():
        print(f"  {side:8s} {ir / args.datagrams:10.0f} Ir per KCP datagram")
    print(f"  callgrind files in {out}")
    return 0


def main() -> int:
    """Parse the arguments, run the measure asked for, print it."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=HERE.parent, help="the kcpsock tree to import")
    ap.add_argument("--datagrams", type=int, default=5000)
    ap.add_argument("--size", type=int, default=1372, help="KCP datagram bytes")
    ap.add_argument("--batch", type=int, default=64, help="datagrams per _encode call")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--callgrind", action="store_true")
    ap.add_argument("--child", choices=("send", "receive"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.callgrind:
        return _callgrind(args)
    send, receive, nwire = workloads(args.root, args.datagrams, args.size, args.batch)
    if args.child:
        # under callgrind: collection is on only inside sys.call_tracing
        sys.call_tracing(send if args.child == "send" else receive, ())
        return 0
    best = {"send": float("inf"), "receive": float("inf")}
    for _ in range(args.repeat):
        for side, fn in (("send", send), ("receive", receive)):
            t0 = time.process_time()
            fn()
            best[side] = min(best[side], time.process_time() - t0)
    print(
        f"root {args.root}: {args.datagrams} datagrams of {args.size} bytes "
        f"({nwire} wire packets), aes + FEC 10/3, best of {args.repeat}"
    )
    for side, sec in best.items():
        print(f"  {side:8s} {sec / args.datagrams * 1e6:7.2f} us CPU per KCP datagram")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
