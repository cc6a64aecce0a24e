"""``kcpsock bench -s ADDR`` / ``-c ADDR``: iperf3-style measurements over KCP.

The client sends a JSON hello frame (mode, limits), then the data; the server
answers with its own figures in a JSON result frame and a FIN.  Modes:
client to server (default), ``--reverse`` (server to client), ``--bidir``
(both at once) and ``--rtt`` (64-byte echo round trips).  One report line per
``--interval``; a summary for each direction at the end; ``--json`` prints one
JSON object instead.

Invariants: byte counts are exact (counted where the bytes are written and
read, framing excluded); the server survives any client; every wait is
bounded by the run's limits or the client's closing.
"""

from __future__ import annotations

import argparse
import struct
import threading
import time
from typing import Any, Optional

from kcpsock.cli import frames
from kcpsock.cli.common import (
    AnswerWatch,
    accept_sliced,
    add_output_options,
    add_wait_option,
    announce,
    graceful_close,
    positive_float,
    spawn,
    start_stats,
)
from kcpsock.cli.display import (
    Display,
    fmt_bytes,
    fmt_ms,
    fmt_rate,
    percentile,
    session_figures,
    snmp_dict,
)
from kcpsock.cli.options import (
    CommandError,
    KCPSettings,
    UsageError,
    add_kcp_options,
    dial,
    format_address,
    listen,
    parse_address,
    settings_from_args,
)

__all__ = ["register", "run"]

PING_SIZE = 64
#: The client gives up when nothing comes back from the server for this long.
STALL_S = 30.0
_PING = struct.Struct(">Qd")


def register(sub: Any) -> None:
    """Add the ``bench`` command to the subparsers."""
    p = sub.add_parser(
        "bench",
        help="iperf3-style throughput and RTT measurement",
        description="Measure throughput (or echo round trips with --rtt) between "
        "`kcpsock bench -s ADDR` and `kcpsock bench -c ADDR`.",
    )
    role = p.add_mutually_exclusive_group(required=True)
    role.add_argument("-s", "--server", metavar="ADDR", help="run the server on ADDR")
    role.add_argument("-c", "--client", metavar="ADDR", help="run the client against ADDR")
    p.add_argument(
        "-i",
        "--interval",
        dest="report_interval",
        type=positive_float,
        default=1.0,
        metavar="S",
        help="seconds between report lines (default 1, as iperf3; 0: none). "
        "KCP's update interval is --kcp-interval here",
    )
    p.add_argument(
        "-t",
        "--time",
        type=positive_float,
        default=None,
        metavar="S",
        help="seconds to send (default 10)",
    )
    p.add_argument(
        "-n",
        "--bytes",
        type=int,
        default=None,
        metavar="N",
        help="bytes to send instead of a duration (--rtt: N/64 pings)",
    )
    p.add_argument("-R", "--reverse", action="store_true", help="the server sends")
    p.add_argument("--bidir", action="store_true", help="both send at once")
    p.add_argument("--rtt", action="store_true", help="measure 64-byte echo round trips")
    p.add_argument("-1", "--once", action="store_true", help="server: exit after one client")
    add_wait_option(p)
    add_output_options(p)
    add_kcp_options(p, listening=True, sndwnd=1024, rcvwnd=1024, interval_flag="--kcp-interval")
    p.set_defaults(func=run)


class _Counter:
    """A byte counter updated by one thread and read by the reporter."""

    def __init__(self) -> None:
        self.value = 0


def _send_data(
    writer: frames.FrameWriter,
    counter: _Counter,
    limit_bytes: Optional[int],
    limit_s: Optional[float],
    stop: threading.Event,
) -> None:
    chunk = bytes(frames.CHUNK)
    start = time.monotonic()
    while not stop.is_set():
        if limit_bytes is not None:
            left = limit_bytes - counter.value
            if left <= 0:
                return
            payload = chunk if left >= len(chunk) else chunk[:left]
        else:
            if time.monotonic() - start >= (limit_s or 0.0):
                return
            payload = chunk
        writer.send(frames.DATA, payload)
        counter.value += len(payload)


# ----------------------------------------------------------------- server


def _serve_one(
    sock: Any,
    peer: Any,
    settings: KCPSettings,
    display: Display,
    done: threading.Event,
    failed: threading.Event,
) -> None:
    name = format_address(peer)
    sender: Optional[threading.Thread] = None
    stop = threading.Event()
    try:
        sock.settimeout(60.0)
        reader = frames.FrameReader(sock)
        writer = frames.FrameWriter(sock)
        try:
            hello = reader.read_json()
        except frames.ProtocolError:
            # most likely `kcpsock connect` (framed or --raw): tell it
            # (it recognises this frame and exits with the message)
            try:
                sock.sendall(
                    frames.error_frame("this is a `kcpsock bench -s` server (use kcpsock bench -c)")
                )
                graceful_close(sock)
            except OSError:
                pass
            raise
        mode = str(hello.get("mode", "send"))
        limit_bytes = hello.get("bytes")
        limit_s = hello.get("time")
        sent, received = _Counter(), _Counter()
        start = time.monotonic()
        if mode in ("reverse", "bidir"):
            sender = spawn(
                _send_data, writer, sent, limit_bytes, limit_s, stop, name="kcpsock-bench-send"
            )
        pings = 0
        while True:
            frame = reader.read()
            if frame is None:
                raise ConnectionAbortedError("session closed before the client finished")
            kind, payload = frame
            if kind == frames.DATA:
                received.value += len(payload)
            elif kind == frames.PING:
                writer.send(frames.PONG, payload)
                pings += 1
            elif kind == frames.FIN:
                break
        recv_s = time.monotonic() - start
        if sender is not None:
            sender.join()
        send_s = time.monotonic() - start
        figures = session_figures(sock)
        result = {
            "mode": mode,
            "received": received.value,
            "recv_seconds": recv_s,
            "sent": sent.value,
            "send_seconds": send_s,
            "pings": pings,
            "retrans": int(figures.get("retrans", 0)),
            "srtt_ms": figures.get("srtt_ms"),
        }
        writer.json(result)
        writer.fin()
        graceful_close(sock)
        if mode == "rtt":
            text = f"{name}: rtt: {pings} pings echoed in {recv_s:.2f} s"
        else:
            text = (
                f"{name}: {mode}: received {fmt_bytes(received.value)} in {recv_s:.2f} s "
                f"({fmt_rate(received.value / recv_s if recv_s else 0)}), "
                f"sent {fmt_bytes(sent.value)} in {send_s:.2f} s"
            )
        display.line(text, {"event": "result", "peer": name, **result})
    except (OSError, frames.ProtocolError, AttributeError, TypeError, ValueError) as exc:
        failed.set()
        stop.set()
        display.line(
            f"{name}: aborted: {type(exc).__name__}: {exc}",
            {"event": "error", "peer": name, "error": str(exc)},
        )
        try:
            sock.close()
        except OSError:
            pass
    finally:
        done.set()


def _run_server(args: argparse.Namespace, settings: KCPSettings) -> int:
    address = parse_address(args.server, "listen address", listening=True)
    display = Display(json_mode=args.json, live=False)
    listener = listen(address, settings)
    stats = start_stats(args)
    try:
        announce(display, "bench server", listener.getsockname(), f"({settings.describe()})")
        while True:
            sock, peer = accept_sliced(listener)
            done, failed = threading.Event(), threading.Event()
            spawn(_serve_one, sock, peer, settings, display, done, failed, name="kcpsock-bench")
            if args.once:
                while not done.wait(0.5):
                    pass
                return 1 if failed.is_set() else 0
    finally:
        listener.close()
        if stats:
            stats.stop()


# ----------------------------------------------------------------- client


class _Reporter:
    """Prints one line per interval from the byte counters."""

    def __init__(
        self,
        display: Display,
        sock: Any,
        sent: _Counter,
        received: _Counter,
        period_s: float,
        mode: str,
    ) -> None:
        self.display = display
        self.sock = sock
        self.sent = sent
        self.received = received
        self.period_s = period_s
        self.mode = mode
        self.intervals: list[dict[str, Any]] = []
        self.final_figures: dict[str, float] = {}
        self.rtts: list[float] = []
        self.start = time.monotonic()
        self._stop = threading.Event()
        self._last = (self.start, 0, 0, self._retrans(), 0)
        self._thread = threading.Thread(target=self._run, name="kcpsock-bench-report", daemon=True)

    def _retrans(self) -> int:
        fig = session_figures(self.sock)
        if "retrans" in fig:
            return int(fig["retrans"])
        return snmp_dict().get("RetransSegs", 0)

    def begin(self) -> None:
        """Start the clock and the report thread."""
        self.start = time.monotonic()
        self._last = (self.start, 0, 0, self._retrans(), 0)
        if self.period_s > 0:
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            self.report()

    def report(self, final: bool = False) -> None:
        """Print the line of the interval that ends now (``final``: the last one)."""
        now = time.monotonic()
        t0, s0, r0, x0, n0 = self._last
        sent, received, retrans = self.sent.value, self.received.value, self._retrans()
        pings = len(self.rtts)
        if now - t0 < 1e-3:
            return
        if (
            final
            and now - t0 < 0.25 * self.period_s
            and sent == s0
            and received == r0
            and pings == n0
        ):
            return  # a sliver of an interval in which nothing moved
        self._last = (now, sent, received, retrans, pings)
        dt = now - t0
        fig = session_figures(self.sock)
        srtt = fig.get("srtt_ms")
        item: dict[str, Any] = {
            "start": round(t0 - self.start, 3),
            "end": round(now - self.start, 3),
            "sent": sent - s0,
            "received": received - r0,
            "retrans": retrans - x0,
            "srtt_ms": srtt,
        }
        span = f"[{t0 - self.start:6.2f}-{now - self.start:6.2f} s]"
        if self.mode == "rtt":
            window = self.rtts[n0:pings]
            item.update(
                pings=len(window),
                p50_ms=percentile(window, 50),
                max_ms=max(window) if window else None,
            )
            text = (
                f"{span} {len(window):6d} pings  p50 {fmt_ms(item['p50_ms'])}  "
                f"max {fmt_ms(item['max_ms'])}  retrans {retrans - x0}"
            )
        else:
            parts = []
            if self.mode in ("send", "bidir"):
                parts.append(f"tx {fmt_bytes(sent - s0):>10} {fmt_rate((sent - s0) / dt):>12}")
            if self.mode in ("reverse", "bidir"):
                parts.append(
                    f"rx {fmt_bytes(received - r0):>10} {fmt_rate((received - r0) / dt):>12}"
                )
            text = f"{span} {'  '.join(parts)}  srtt {fmt_ms(srtt):>8}  retrans {retrans - x0}"
        self.intervals.append(item)
        self.display.text(text)

    def stop(self) -> None:
        """Stop the report thread (bounded wait)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2.0)


def _ping_loop(
    sock: Any,
    writer: frames.FrameWriter,
    reader: frames.FrameReader,
    reporter: _Reporter,
    count: Optional[int],
    limit_s: float,
) -> None:
    pad = bytes(PING_SIZE - _PING.size)
    start = time.monotonic()
    seq = 0
    while True:
        if count is not None and seq >= count:
            return
        if count is None and time.monotonic() - start >= limit_s:
            return
        t0 = time.perf_counter()
        writer.send(frames.PING, _PING.pack(seq, t0) + pad)
        while True:
            frame = reader.read()
            if frame is None:
                raise ConnectionAbortedError("session closed during the ping loop")
            if frame[0] == frames.PONG:
                got, _ = _PING.unpack_from(frame[1])
                if got == seq:
                    break
        reporter.rtts.append((time.perf_counter() - t0) * 1000.0)
        seq += 1


def _run_client(args: argparse.Namespace, settings: KCPSettings) -> int:
    address = parse_address(args.client, "server address")
    if args.bytes is not None and args.time is not None:
        raise UsageError("--bytes conflicts with --time (give one limit)")
    if args.bytes is not None and args.bytes <= 0:
        raise UsageError("--bytes must be > 0")
    modes = [
        m for m, on in (("reverse", args.reverse), ("bidir", args.bidir), ("rtt", args.rtt)) if on
    ]
    if len(modes) > 1:
        raise UsageError(f"--{modes[0]} conflicts with --{modes[1]}")
    if args.once:
        raise UsageError("--once is a server option")
    mode = modes[0] if modes else "send"
    limit_s = args.time if args.time is not None else (None if args.bytes else 10.0)
    display = Display(json_mode=args.json, live=False)
    sock = dial(address, settings)
    stats = start_stats(args)
    sent, received = _Counter(), _Counter()
    reporter = _Reporter(display, sock, sent, received, args.report_interval, mode)
    stop = threading.Event()
    watch = AnswerWatch(sock, stall_s=STALL_S, wait_s=args.wait)
    result: dict[str, Any] = {}
    clean = False
    try:
        sock.settimeout(None)  # the watch closes the session if the server goes quiet
        writer = frames.FrameWriter(sock)
        reader = frames.FrameReader(sock)
        limit = fmt_bytes(args.bytes) if args.bytes else f"{limit_s or 0:g} s"
        display.text(
            f"kcpsock bench: {mode} to {format_address(address)} ({limit}; {settings.describe()})"
        )
        writer.json(
            {
                "mode": mode,
                "bytes": None if mode == "rtt" else args.bytes,
                "time": limit_s,
                "version": 1,
            }
        )
        reporter.begin()
        start = reporter.start
        watch.sent()
        sender = None
        if mode in ("send", "bidir"):

            def send_then_fin() -> None:
                """Send the data, then FIN (runs on its own thread)."""
                try:
                    _send_data(writer, sent, args.bytes, limit_s, stop)
                    writer.fin()
                except OSError:
                    stop.set()

            sender = spawn(send_then_fin, name="kcpsock-bench-send")
        elif mode == "rtt":
            count = args.bytes // PING_SIZE if args.bytes else None
            _ping_loop(sock, writer, reader, reporter, count, limit_s or 10.0)
            writer.fin()
        else:
            writer.fin()
        while True:
            frame = reader.read()
            if frame is None:
                raise ConnectionAbortedError("session closed before the server finished")
            kind, payload = frame
            if kind == frames.DATA:
                received.value += len(payload)
            elif kind == frames.JSON:
                import json

                result = json.loads(payload)
                message = frames.parse_error_frame(frames.error_prefix(payload))
                if message is not None:
                    raise CommandError(message)
            elif kind == frames.FIN:
                break
        if not isinstance(result, dict) or "received" not in result:
            # an echo server (kcpsock serve) sends our own request back
            raise CommandError(
                f"{format_address(address)} is not a `kcpsock bench -s` server "
                "(no result came back; an echo server?)"
            )
        elapsed = time.monotonic() - start
        if sender is not None:
            sender.join()
        reporter.final_figures = session_figures(sock)
        reporter.stop()
        reporter.report(final=True)
        clean = True
    except (OSError, frames.ProtocolError):
        if watch.unanswered():
            raise CommandError(
                f"no answer from {format_address(address)} within "
                f"{watch.waited():g} s (is `kcpsock bench -s` running there, "
                "with the same --crypt, --key and FEC?)"
            ) from None
        if watch.stalled.is_set():
            raise CommandError(
                f"{format_address(address)} stopped answering for {STALL_S:g} s"
            ) from None
        raise
    finally:
        stop.set()
        watch.stop()
        reporter.stop()
        if clean:
            graceful_close(sock)
        else:
            sock.close()
        if stats:
            stats.stop()
    _summary(
        display, mode, settings, address, sent.value, received.value, elapsed, result, reporter
    )
    return 0


def _direction(sent: int, sent_s: float, received: int, recv_s: float) -> dict[str, Any]:
    return {
        "sent": sent,
        "sent_seconds": round(sent_s, 4),
        "received": received,
        "received_seconds": round(recv_s, 4),
        "sender_MBps": round(sent / sent_s / 1e6, 3) if sent_s else 0.0,
        "receiver_MBps": round(received / recv_s / 1e6, 3) if recv_s else 0.0,
    }


def _summary(
    display: Display,
    mode: str,
    settings: KCPSettings,
    address: Any,
    sent: int,
    received: int,
    elapsed: float,
    result: dict[str, Any],
    reporter: _Reporter,
) -> None:
    end: dict[str, Any] = {"seconds": round(elapsed, 4)}
    lines = ["- - - - - - - - - - - - - - - - - - - - - - - - -"]
    if mode in ("send", "bidir"):
        d = _direction(
            sent, elapsed, int(result.get("received", 0)), float(result.get("recv_seconds", 0.0))
        )
        end["client_to_server"] = d
        lines.append(
            f"client->server  sender   {fmt_bytes(d['sent']):>10}  {d['sender_MBps']:8.2f} MB/s"
        )
        lines.append(
            f"client->server  receiver {fmt_bytes(d['received']):>10}  "
            f"{d['receiver_MBps']:8.2f} MB/s  ({d['received_seconds']:.2f} s)"
        )
    if mode in ("reverse", "bidir"):
        d = _direction(
            int(result.get("sent", 0)), float(result.get("send_seconds", 0.0)), received, elapsed
        )
        end["server_to_client"] = d
        lines.append(
            f"server->client  sender   {fmt_bytes(d['sent']):>10}  {d['sender_MBps']:8.2f} MB/s"
        )
        lines.append(
            f"server->client  receiver {fmt_bytes(d['received']):>10}  "
            f"{d['receiver_MBps']:8.2f} MB/s  ({d['received_seconds']:.2f} s)"
        )
    if mode == "rtt":
        rtts = reporter.rtts
        end["rtt"] = {
            "pings": len(rtts),
            "echoed": int(result.get("pings", 0)),
            "min_ms": min(rtts) if rtts else None,
            "p50_ms": percentile(rtts, 50),
            "p99_ms": percentile(rtts, 99),
            "max_ms": max(rtts) if rtts else None,
            "mean_ms": sum(rtts) / len(rtts) if rtts else None,
        }
        r = end["rtt"]
        lines.append(
            f"rtt  {r['pings']} pings of {PING_SIZE} bytes: min {fmt_ms(r['min_ms'])}  "
            f"p50 {fmt_ms(r['p50_ms'])}  p99 {fmt_ms(r['p99_ms'])}  "
            f"max {fmt_ms(r['max_ms'])}"
        )
    snmp = snmp_dict()
    client_retrans = int(reporter.final_figures.get("retrans", 0))
    end["retrans"] = {"client": client_retrans, "server": result.get("retrans")}
    lines.append(
        f"retransmitted: client {client_retrans}, server {result.get('retrans', '?')} "
        f"segments; FEC recovered here: {snmp.get('FECRecovered', 0)}"
    )
    display.text("\n".join(lines))
    if display.json_mode:
        display.line(
            obj={
                "mode": mode,
                "server": format_address(address),
                "settings": {k: v for k, v in vars(settings).items() if k != "key"},
                "intervals": reporter.intervals,
                "end": end,
                "server_result": result,
                "snmp": snmp,
            }
        )


def run(args: argparse.Namespace) -> int:
    """Run ``kcpsock bench``; returns the exit status."""
    settings = settings_from_args(args)
    if args.server:
        for flag, on in (
            ("--reverse", args.reverse),
            ("--bidir", args.bidir),
            ("--rtt", args.rtt),
            ("--time", args.time is not None),
            ("--bytes", args.bytes is not None),
        ):
            if on:
                raise UsageError(f"{flag} is a client option (the client tells the server)")
        return _run_server(args, settings)
    return _run_client(args, settings)
