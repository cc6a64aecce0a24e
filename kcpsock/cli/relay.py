"""``kcpsock relay -l ADDR -t ADDR``: the seeded lossy UDP relay, for experiments.

Datagrams sent to ADDR (-l) go to the target (-t) and the target's replies go
back to their sender, each direction losing, delaying, duplicating and
reordering datagrams as asked, from a seeded random generator
(``kcpsock.relay.Relay``).  The counters are printed every ``--report``
seconds (0: only at the end) and when the relay stops (Ctrl-C, or after
``--duration`` seconds).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from kcpsock.cli.common import (
    SLICE_S,
    add_output_options,
    announce,
    parse_fraction,
    positive_float,
)
from kcpsock.cli.display import Display
from kcpsock.cli.options import UsageError, bind_error, format_address, parse_address

__all__ = ["register", "relay_counters", "run"]


def register(sub: Any) -> None:
    """Add the ``relay`` command to the subparsers."""
    p = sub.add_parser(
        "relay",
        help="a seeded lossy UDP relay (loss, delay, jitter, dup, reorder)",
        description="Relay UDP datagrams between a client of -l (the first "
        "address that sends to it) and the target -t, with seeded loss, delay, "
        "jitter, duplication and reordering; the counters are printed when it "
        "stops.",
    )
    p.add_argument(
        "-l",
        "--listen",
        required=True,
        metavar="ADDR",
        help="UDP address clients send to, HOST:PORT",
    )
    p.add_argument(
        "-t",
        "--target",
        required=True,
        metavar="ADDR",
        help="UDP address datagrams are relayed to, HOST:PORT",
    )
    p.add_argument(
        "--loss",
        type=parse_fraction,
        default=0.0,
        metavar="P",
        help="drop probability per datagram (0.05 or 5%%)",
    )
    p.add_argument(
        "--delay", type=positive_float, default=0.0, metavar="MS", help="one-way delay in ms"
    )
    p.add_argument(
        "--jitter",
        type=positive_float,
        default=0.0,
        metavar="MS",
        help="delay varies by up to +-MS ms (datagrams may overtake)",
    )
    p.add_argument(
        "--dup", type=parse_fraction, default=0.0, metavar="P", help="duplication probability"
    )
    p.add_argument(
        "--reorder", type=parse_fraction, default=0.0, metavar="P", help="reordering probability"
    )
    p.add_argument("--seed", type=int, default=0, metavar="N", help="random seed (default 0)")
    p.add_argument(
        "--report",
        type=positive_float,
        default=0.0,
        metavar="S",
        help="print the counters every S seconds (default: only at the end)",
    )
    p.add_argument(
        "--duration",
        type=positive_float,
        default=0.0,
        metavar="S",
        help="stop after S seconds (default: run until Ctrl-C)",
    )
    add_output_options(p, stats=False)
    p.set_defaults(func=run)


def relay_counters(relay: Any) -> dict[str, dict[str, int]]:
    """Return the relay's counters: ``{"up": {...}, "down": {...}}``."""
    return {str(k): {str(n): int(v) for n, v in d.items()} for k, d in relay.stats().items()}


def _describe(counters: dict[str, int]) -> str:
    received = counters.get("received", 0)
    dropped = counters.get("dropped", 0)
    share = f" ({dropped / received:.2%})" if received else ""
    return (
        f"received {received}, forwarded {counters.get('forwarded', 0)}, "
        f"dropped {dropped}{share}, duplicated {counters.get('duplicated', 0)}, "
        f"reordered {counters.get('reordered', 0)}"
    )


def _report(display: Display, relay: Any, final: bool) -> None:
    counters = relay_counters(relay)
    text = "; ".join(f"{k}: {_describe(v)}" for k, v in counters.items())
    display.line(
        f"{'final' if final else 'relay'}: {text}",
        {"event": "final" if final else "report", "counters": counters},
    )


def run(args: argparse.Namespace) -> int:
    """Run ``kcpsock relay``; returns the exit status."""
    from kcpsock.relay import Relay

    listen_addr = parse_address(args.listen, "listen address", listening=True)
    target = parse_address(args.target, "target address")
    display = Display(json_mode=args.json, live=False)

    def foreign(addr: tuple[str, int], client: tuple[str, int]) -> None:
        display.line(
            f"relay: ignoring {format_address(addr)}: this relay serves one client,"
            f" {format_address(client)} (its first sender); start another relay for"
            " a second client",
            {"event": "ignored", "address": format_address(addr), "client": format_address(client)},
        )

    try:
        relay = Relay(
            listen=listen_addr,
            target=target,
            loss=args.loss,
            delay_ms=args.delay,
            jitter_ms=args.jitter,
            dup=args.dup,
            reorder=args.reorder,
            seed=args.seed,
            on_foreign=foreign,
        )
    except OSError as exc:
        raise bind_error(exc, "listen on", listen_addr) from None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    try:
        try:
            relay.start()
        except OSError as exc:
            raise bind_error(exc, "listen on", listen_addr) from None
        announce(
            display,
            "relay",
            relay.address,
            f"-> {format_address(target)} (loss {args.loss:.2%}, delay {args.delay:g} ms, "
            f"jitter {args.jitter:g} ms, dup {args.dup:.2%}, reorder {args.reorder:.2%}, "
            f"seed {args.seed})",
            target=format_address(target),
        )
        start = time.monotonic()
        next_report = start + args.report if args.report else None
        while True:
            now = time.monotonic()
            wake = [
                t
                for t in (next_report, start + args.duration if args.duration else None)
                if t is not None
            ]
            # in slices: a Ctrl-C this thread did not see (common.SLICE_S)
            time.sleep(min(max(0.0, min(wake) - now), SLICE_S) if wake else SLICE_S)
            now = time.monotonic()
            if args.duration and now - start >= args.duration:
                break
            if next_report is not None and now >= next_report:
                _report(display, relay, final=False)
                next_report += args.report
    finally:
        # Ctrl-C, SIGTERM or --duration: the counters are printed in every case.
        relay.close()
        _report(display, relay, final=True)
    return 0
