"""``kcpsock demo``: a verified transfer over a lossy loopback link, with live figures.

Everything runs in one process on 127.0.0.1 with ephemeral ports::

    client (dial) --> Relay (seeded loss/delay, both ways) --> listener (accept)

The client sends ``--bytes`` of a seeded pseudo-random stream; the accepted
session checks every byte against the same stream as it arrives (and both
ends hash what they saw).  Then 64-byte echoes measure the round trip on the
same session.  A live line shows progress; a summary table follows.

Invariants: the exit status is 0 only when every byte arrived, in order and
intact, and no extra byte came; every wait is bounded (``--stall`` seconds
without progress is a failure); sockets, listener and relay are closed on
every path, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import random
import sys
import threading
import time
from typing import Any, Optional

from kcpsock import compiled_modules, native_modules
from kcpsock.cli.common import (
    add_output_options,
    parse_fraction,
    positive_float,
    spawn,
    start_stats,
)
from kcpsock.cli.display import (
    Display,
    core_description,
    fmt_bytes,
    fmt_ms,
    fmt_rate,
    percentile,
    session_figures,
    snmp_dict,
    table,
)
from kcpsock.cli.options import (
    KCPSettings,
    UsageError,
    add_kcp_options,
    dial,
    format_address,
    listen,
    settings_from_args,
)

__all__ = ["PatternStream", "Verifier", "register", "run"]

BLOCK = 1 << 20
PING_SIZE = 64


def register(sub: Any) -> None:
    """Add the ``demo`` command to the subparsers."""
    p = sub.add_parser(
        "demo",
        help="a verified transfer over a lossy loopback link, live figures",
        description="In one process on loopback: a KCP listener and client "
        "(aes + FEC 10/3) with a seeded lossy relay between them; sends --bytes "
        "of a seeded stream, verifies every byte, shows live figures and a "
        "summary.  Exit status 0 only if every byte arrived intact.",
    )
    p.add_argument(
        "--bytes",
        type=int,
        default=50_000_000,
        metavar="N",
        help="bytes to send (default 50000000)",
    )
    p.add_argument(
        "--loss",
        type=parse_fraction,
        default=0.05,
        metavar="P",
        help="relay loss per datagram, each way (default 0.05 = 5%%)",
    )
    p.add_argument(
        "--delay",
        type=positive_float,
        default=0.0,
        metavar="MS",
        help="relay one-way delay in ms (default 0)",
    )
    p.add_argument(
        "--jitter",
        type=positive_float,
        default=0.0,
        metavar="MS",
        help="relay delay jitter in ms (default 0)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=1,
        metavar="N",
        help="seed of the relay and of the data (default 1)",
    )
    p.add_argument(
        "--pings",
        type=int,
        default=200,
        metavar="N",
        help="64-byte echoes after the transfer, for RTT p50/p99 (default 200)",
    )
    p.add_argument(
        "--stall",
        type=positive_float,
        default=30.0,
        metavar="S",
        help="fail after S seconds without progress (default 30)",
    )
    add_output_options(p)
    add_kcp_options(p, listening=False)
    p.set_defaults(func=run)


class PatternStream:
    """The seeded pseudo-random byte stream the demo sends (blocks of 1 MiB)."""

    def __init__(self, seed: int, total: int) -> None:
        """Create the stream of ``total`` bytes from ``seed``."""
        self._rng = random.Random(f"kcpsock-demo:{seed}")
        self.left = total

    def next_block(self) -> bytes:
        """Return the next block (b"" at the end)."""
        n = min(BLOCK, self.left)
        self.left -= n
        if n <= 0:
            return b""
        return self._rng.getrandbits(n * 8).to_bytes(n, "little")


class Verifier:
    """Checks received bytes against the pattern, incrementally."""

    def __init__(self, seed: int, total: int) -> None:
        """Expect ``total`` bytes of the stream seeded with ``seed``."""
        self.total = total
        self.received = 0
        self.error: Optional[str] = None
        self.sha = hashlib.sha256()
        self._pattern = PatternStream(seed, total)
        self._block = b""
        self._pos = 0
        self.done = threading.Event()

    def feed(self, data: bytes) -> bool:
        """Check ``data``; returns False (and sets :attr:`error`) on the first bad byte."""
        self.sha.update(data)
        view = memoryview(data)
        while len(view):
            if self._pos == len(self._block):
                self._block = self._pattern.next_block()
                self._pos = 0
                if not self._block:
                    self.error = f"{len(view)} bytes more than the {self.total} sent"
                    return False
            n = min(len(view), len(self._block) - self._pos)
            expected = self._block[self._pos : self._pos + n]
            if view[:n] != expected:
                got = bytes(view[:n])
                first = next(i for i in range(n) if got[i] != expected[i])
                self.error = f"byte {self.received + first} differs from what was sent"
                return False
            self._pos += n
            self.received += n
            view = view[n:]
        return True


class _Server:
    """The accepting side: verify the stream, then echo pings."""

    def __init__(
        self, listener: Any, settings: KCPSettings, verifier: Verifier, stall_s: float
    ) -> None:
        self.listener = listener
        self.settings = settings
        self.verifier = verifier
        self.stall_s = stall_s
        self.sock: Optional[Any] = None
        self.done_at: Optional[float] = None
        self.thread = spawn(self._run, name="kcpsock-demo-server")

    def _run(self) -> None:
        v = self.verifier
        try:
            self.listener.settimeout(self.stall_s)
            sock, _ = self.listener.accept()
            self.sock = sock
            sock.settimeout(self.stall_s)
            while v.received < v.total:
                data = sock.recv(262144)
                if not data:
                    v.error = v.error or "the session closed early"
                    return
                if not v.feed(data):
                    return
            self.done_at = time.monotonic()
            v.done.set()
            while True:  # echo phase
                data = sock.recv(PING_SIZE)
                if not data:
                    return
                sock.sendall(data)
        except TimeoutError:
            if not v.done.is_set():
                v.error = v.error or f"no data for {self.stall_s:g} s"
        except OSError as exc:
            if not v.done.is_set():
                v.error = v.error or f"{type(exc).__name__}: {exc}"
        finally:
            v.done.set()


def _bar(fraction: float, width: int, fancy: bool) -> str:
    filled = fraction * width
    full = int(filled)
    if not fancy:
        return "[" + "#" * full + "-" * (width - full) + "]"
    parts = " ▏▎▍▌▋▊▉"
    rest = int((filled - full) * 8)
    body = "█" * full + (parts[rest] if full < width else "")
    return "▕" + body.ljust(width) + "▏"


def _status_line(
    width: int,
    fancy: bool,
    frac: float,
    got: int,
    total: int,
    rate: float,
    srtt: Optional[float],
    retrans: int,
    recovered: int,
    loss: float,
    elapsed: float,
) -> str:
    """The live line, fitted to ``width`` columns.

    Tries the roomy layout first, then a compact one with a shorter bar, then
    no bar, and only then drops fields from the least important end.
    """
    roomy = [
        f"{frac:4.0%}",
        f"{got / 1e6:6.1f}/{total / 1e6:.1f} MB",
        f"{fmt_rate(rate):>11}",
        f"srtt {fmt_ms(srtt):>8}",
        f"retrans {retrans}",
        f"FEC rec {recovered}",
        f"loss {loss:.1%}",
        f"{elapsed:5.1f} s",
    ]
    compact = [
        f"{frac:.0%}",
        f"{got / 1e6:.1f}/{total / 1e6:.0f}MB",
        f"{rate / 1e6:.1f}MB/s",
        f"srtt {fmt_ms(srtt).replace(' ', '')}",
        f"rtx {retrans}",
        f"fec {recovered}",
        f"loss {loss:.1%}",
        f"{elapsed:.0f}s",
    ]
    layouts = [(roomy, 20, "  "), (compact, 20, " "), (compact, 10, " "), (compact, 0, " ")]
    for fields, bar_width, sep in layouts:
        line = (_bar(frac, bar_width, fancy) + " " if bar_width else "") + sep.join(fields)
        if len(line) <= width:
            return line
    for keep in range(len(compact) - 1, 0, -1):
        line = " ".join(compact[:keep])
        if len(line) <= width:
            return line
    return compact[0]


def _loss_seen(relay: Any) -> tuple[int, int]:
    stats = relay.stats()
    received = sum(d.get("received", 0) for d in stats.values())
    dropped = sum(d.get("dropped", 0) for d in stats.values())
    return dropped, received


def run(args: argparse.Namespace) -> int:
    """Run ``kcpsock demo``; returns the exit status."""
    from kcpsock.relay import Relay

    if args.bytes <= 0:
        raise UsageError("--bytes must be > 0")
    if args.pings < 0:
        raise UsageError("--pings must be >= 0")
    settings = settings_from_args(args)
    display = Display(json_mode=args.json)
    encoding = (getattr(sys.stdout, "encoding", "") or "").lower()
    fancy = "utf" in encoding
    total = args.bytes
    base_snmp = snmp_dict()
    cpu0 = time.process_time()
    verifier = Verifier(args.seed, total)
    listener = listen(("127.0.0.1", 0), settings)
    relay: Optional[Any] = None
    client: Optional[Any] = None
    stats = None
    try:
        relay = Relay(
            ("127.0.0.1", 0),
            listener.getsockname(),
            loss=args.loss,
            delay_ms=args.delay,
            jitter_ms=args.jitter,
            seed=args.seed,
        ).start()
        server = _Server(listener, settings, verifier, args.stall)
        client = dial(relay.address, settings)
        stats = start_stats(args, display if display.live else None)
        fec = f"FEC {settings.datashard}/{settings.parityshard}" if settings.datashard else "no FEC"
        display.text(
            f"kcpsock demo: {fmt_bytes(total)} over KCP ({settings.crypt}, {fec}, "
            f"mode {settings.mode}), every byte checked"
        )
        delay = f", {args.delay:g} ms delay" if args.delay else ""
        display.text(f"  lossy relay: {args.loss:.1%} loss{delay} each way, seed {args.seed}")
        display.text(
            f"  client {format_address(client.getsockname())} -> relay "
            f"{format_address(relay.address)} -> listener "
            f"{format_address(listener.getsockname())}"
        )
        sent_sha = hashlib.sha256()
        send_error: list[str] = []

        def send_all() -> None:
            """Send the whole pattern (runs on its own thread)."""
            pattern = PatternStream(args.seed, total)
            try:
                while True:
                    block = pattern.next_block()
                    if not block:
                        return
                    sent_sha.update(block)
                    assert client is not None
                    client.sendall(block)
            except OSError as exc:
                send_error.append(f"{type(exc).__name__}: {exc}")
                verifier.done.set()

        start = time.monotonic()
        spawn(send_all, name="kcpsock-demo-send")
        period = 0.2 if display.live else 1.0
        tick = 0.1  # srtt is sampled more often than the line is shown
        next_show = start + period
        history: collections.deque[tuple[float, int]] = collections.deque(maxlen=64)
        history.append((start, 0))
        srtts: list[float] = []
        last_progress = (start, 0)
        longest_stall = 0.0

        def show(
            now: float, got: int, rate: float, srtt: Optional[float], final: bool = False
        ) -> None:
            """Show the live line (a plain line, or JSON, off a terminal)."""
            snmp = snmp_dict()
            dropped, seen = _loss_seen(relay)
            retrans = snmp.get("RetransSegs", 0) - base_snmp.get("RetransSegs", 0)
            recovered = snmp.get("FECRecovered", 0) - base_snmp.get("FECRecovered", 0)
            status = _status_line(
                display.width() if display.live else 200,
                fancy,
                got / total,
                got,
                total,
                rate,
                srtt,
                retrans,
                recovered,
                dropped / seen if seen else 0.0,
                now - start,
            )
            if display.live and not final:
                display.status(status)
            else:
                display.line(
                    status,
                    {
                        "event": "progress",
                        "seconds": round(now - start, 3),
                        "received": got,
                        "total": total,
                        "MBps": round(rate / 1e6, 3),
                        "srtt_ms": srtt,
                    },
                )

        while not verifier.done.wait(tick):
            now = time.monotonic()
            srtt = session_figures(client).get("srtt_ms")
            if srtt is not None and verifier.received:
                srtts.append(srtt)
            got = verifier.received
            if got != last_progress[1]:
                last_progress = (now, got)
            longest_stall = max(longest_stall, now - last_progress[0])
            if now - last_progress[0] > args.stall:
                verifier.error = verifier.error or f"no progress for {args.stall:g} s"
                break
            if now < next_show:
                continue
            next_show += period
            # Rate over the last second or so (at least one display period).
            window = max(1.0, period) * 1.5
            t_old, b_old = next(((t, b) for t, b in history if now - t <= window), history[-1])
            rate = (got - b_old) / (now - t_old) if now > t_old else 0.0
            history.append((now, got))
            show(now, got, rate, srtt)
        elapsed = (server.done_at or time.monotonic()) - start
        if verifier.error is None and not send_error:
            # The last line stays: 100%, with the average rate of the whole transfer.
            show(
                start + elapsed,
                verifier.received,
                verifier.received / max(elapsed, 1e-9),
                srtts[-1] if srtts else None,
                final=True,
            )
        display.clear()
        elapsed = (server.done_at or time.monotonic()) - start
        error = verifier.error or (send_error[0] if send_error else None)
        rtts: list[float] = []
        if error is None and args.pings:
            client.settimeout(args.stall)
            pad = bytes(PING_SIZE)
            for i in range(args.pings):
                msg = i.to_bytes(4, "big") + pad[4:]
                t0 = time.perf_counter()
                client.sendall(msg)
                echoed = b""
                while len(echoed) < PING_SIZE:
                    chunk = client.recv(PING_SIZE - len(echoed))
                    if not chunk:
                        raise ConnectionAbortedError("session closed during the echoes")
                    echoed += chunk
                rtts.append((time.perf_counter() - t0) * 1000.0)
                if display.live and (i % 10 == 9 or i + 1 == args.pings):
                    display.status(
                        f"RTT: {i + 1}/{args.pings} echoes of {PING_SIZE} bytes, "
                        f"p50 {fmt_ms(percentile(rtts, 50))}, "
                        f"max {fmt_ms(max(rtts))}"
                    )
                if echoed != msg:
                    error = f"echo {i} came back altered"
                    break
        display.clear()
        cpu = time.process_time() - cpu0
        snmp = snmp_dict()
        delta = {k: v - base_snmp.get(k, 0) for k, v in snmp.items()}
        dropped, seen = _loss_seen(relay)
        intact = (
            error is None
            and verifier.received == total
            and verifier.sha.digest() == sent_sha.digest()
        )
        result = {
            "intact": intact,
            "error": error,
            "bytes": total,
            "bytes_received": verifier.received,
            "seconds": round(elapsed, 4),
            "MBps": round(verifier.received / elapsed / 1e6, 3) if elapsed > 0 else 0.0,
            "rtt_p50_ms": percentile(rtts, 50),
            "rtt_p99_ms": percentile(rtts, 99),
            "pings": len(rtts),
            "longest_stall_s": round(longest_stall, 3),
            "srtt_p50_ms": percentile(srtts, 50),
            "srtt_p99_ms": percentile(srtts, 99),
            "relay_datagrams": seen,
            "relay_dropped": dropped,
            "loss_seen": round(dropped / seen, 5) if seen else 0.0,
            "retrans_segs": delta.get("RetransSegs", 0),
            "lost_segs": delta.get("LostSegs", 0),
            "fast_retrans_segs": delta.get("FastRetransSegs", 0),
            "early_retrans_segs": delta.get("EarlyRetransSegs", 0),
            "fec_recovered": delta.get("FECRecovered", 0),
            "out_segs": delta.get("OutSegs", 0),
            "cpu_seconds": round(cpu, 3),
            "compiled_modules": list(compiled_modules()),
            "native_modules": list(native_modules()),
            "sha256": verifier.sha.hexdigest(),
            "settings": {k: v for k, v in vars(settings).items() if k != "key"},
            "relay": {
                "loss": args.loss,
                "delay_ms": args.delay,
                "jitter_ms": args.jitter,
                "seed": args.seed,
            },
        }
        _print_summary(display, result)
        return 0 if intact else 1
    finally:
        display.clear()
        for closable in (client, listener, relay):
            if closable is not None:
                try:
                    closable.close()
                except OSError:
                    pass
        if stats:
            stats.stop()


def _print_summary(display: Display, r: dict[str, Any]) -> None:
    if display.json_mode:
        display.line(obj=r)
        return
    if r["intact"]:
        verdict = f"OK: all {r['bytes']:,} bytes arrived intact (sha256 {r['sha256'][:12]}...)"
    else:
        verdict = f"FAILED: {r['error']} ({r['bytes_received']:,} of {r['bytes']:,} bytes checked)"
    rtt = (
        (
            f"{fmt_ms(r['rtt_p50_ms'])} / {fmt_ms(r['rtt_p99_ms'])}  "
            f"({r['pings']} echoes of {PING_SIZE} bytes)"
        )
        if r["pings"]
        else "-"
    )
    rows = [
        ("result", verdict),
        ("transferred", f"{fmt_bytes(r['bytes_received'])} in {r['seconds']:.2f} s"),
        ("throughput", fmt_rate(r["MBps"] * 1e6)),
        ("RTT p50 / p99", rtt),
        (
            "srtt p50 / p99",
            f"{fmt_ms(r['srtt_p50_ms'])} / {fmt_ms(r['srtt_p99_ms'])}  "
            "(sampled during the transfer)",
        ),
        (
            "loss seen",
            f"{r['loss_seen']:.2%}  ({r['relay_dropped']:,} of "
            f"{r['relay_datagrams']:,} datagrams dropped by the relay)",
        ),
        (
            "retransmitted",
            f"{r['retrans_segs']:,} segments  (timeout {r['lost_segs']:,}, "
            f"fast {r['fast_retrans_segs']:,}, early {r['early_retrans_segs']:,})",
        ),
        ("FEC recovered", f"{r['fec_recovered']:,} segments (repaired without a round trip)"),
        (
            "CPU",
            f"{r['cpu_seconds']:.2f} s for both ends and the relay "
            f"({r['cpu_seconds'] / r['seconds'] if r['seconds'] else 0:.2f} cores)",
        ),
        ("core", core_description(r["compiled_modules"], brief=True, native=r["native_modules"])),
    ]
    display.line("")
    display.line(table(rows, "kcpsock demo summary"))
