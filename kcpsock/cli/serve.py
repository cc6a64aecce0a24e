"""``kcpsock serve ADDR``: a KCP server that echoes, discards or forwards.

``--echo`` (default) sends every byte back, ``--discard`` swallows them,
``--forward HOST:PORT`` pipes each accepted session to a new TCP connection
(the server half of ``kcpsock tunnel``, as kcptun's server).  The sessions
speak kcpsock's framing (see :mod:`kcpsock.cli.frames`) so that the end of
input travels; ``--raw`` serves plain bytes instead, for peers that are not
kcpsock tools (a kcp-go client, say), and then ends sessions only on
``--idle`` or a dead link.

Invariants: one daemon thread per session; the listener is closed on exit
and Ctrl-C; a failing session never stops the server.
"""

from __future__ import annotations

import argparse
import threading
from typing import Any, Optional

from kcpsock.cli import frames, kcptun
from kcpsock.cli.common import (
    accept_sliced,
    add_output_options,
    announce,
    graceful_close,
    spawn,
    start_stats,
)
from kcpsock.cli.display import Display
from kcpsock.cli.options import (
    KCPSettings,
    Target,
    UsageError,
    add_kcp_options,
    connect_target,
    format_address,
    format_target,
    listen,
    parse_address,
    parse_target,
    settings_from_args,
)
from kcpsock.cli.tunnel import pump

__all__ = ["register", "run"]

DEFAULT_IDLE_S = 600.0


def register(sub: Any) -> None:
    """Add the ``serve`` command to the subparsers."""
    p = sub.add_parser(
        "serve",
        help="a KCP server: echo (default), discard or forward to TCP",
        description="Accept KCP sessions on ADDR and echo, discard or forward "
        "them to a TCP service (kcptun server style). With --forward and --kcptun: "
        "kcptun's server (each smux stream becomes a TCP connection), so the "
        "client may be the real kcptun-client; no half-close in that mode.",
    )
    p.add_argument("address", metavar="ADDR", nargs="?", help="UDP address to listen on, HOST:PORT")
    p.add_argument(
        "-l",
        "--listen",
        metavar="ADDR",
        default=None,
        help="the same as ADDR (kcptun-server's spelling, :PORT for all interfaces)",
    )
    what = p.add_mutually_exclusive_group()
    what.add_argument(
        "--echo",
        dest="action",
        action="store_const",
        const="echo",
        help="send every byte back (default)",
    )
    what.add_argument(
        "--discard",
        dest="action",
        action="store_const",
        const="discard",
        help="read and drop every byte",
    )
    what.add_argument(
        "--forward",
        "-t",
        "--target",
        metavar="HOST:PORT",
        default=None,
        help="pipe each session to a new TCP connection to HOST:PORT (or to the unix "
        "socket PATH, a path with a /, as kcptun-server -t PATH)",
    )
    p.add_argument(
        "--raw",
        action="store_true",
        help="plain bytes, no kcpsock framing (for kcp-go peers; echo/discard only)",
    )
    p.add_argument(
        "--idle",
        type=float,
        default=DEFAULT_IDLE_S,
        metavar="S",
        help=f"close sessions idle for S seconds (default {DEFAULT_IDLE_S:g}; 0: never)",
    )
    add_output_options(p)
    add_kcp_options(p, listening=True)
    kcptun.add_kcptun_options(p, client=False)
    p.set_defaults(func=run, action=None)


def _echo_framed(sock: Any, discard: bool) -> int:
    reader = frames.FrameReader(sock)
    writer = frames.FrameWriter(sock)
    total = 0
    while True:
        frame = reader.read()
        if frame is None:
            return total
        kind, payload = frame
        if kind == frames.DATA:
            total += len(payload)
            if not discard:
                writer.send(frames.DATA, payload)
        elif kind == frames.PING:
            writer.send(frames.PONG, payload)
        elif kind == frames.FIN:
            writer.fin()
            graceful_close(sock)
            return total


def _echo_raw(sock: Any, discard: bool) -> int:
    total = 0
    while True:
        data = sock.recv(frames.CHUNK)
        if not data:
            return total
        total += len(data)
        if not discard:
            sock.sendall(data)


def _handle(
    sock: Any,
    peer: Any,
    args: argparse.Namespace,
    settings: KCPSettings,
    forward: Optional[Target],
    display: Display,
) -> None:
    total = 0
    name = format_address(peer)
    try:
        if args.idle > 0 and forward is None:
            sock.settimeout(args.idle)
        if forward is not None:
            try:
                tcp = connect_target(forward, timeout=10.0)
            except OSError as exc:
                display.line(
                    f"{name}: cannot connect to {format_target(forward)}: {exc.strerror or exc}",
                    {"event": "error", "peer": name, "error": str(exc)},
                )
                # Tell the client why (connect exits non-zero with this line),
                # then FIN at once so a tunnel's TCP client sees the end.
                sock.sendall(
                    frames.error_frame(
                        f"the server cannot connect to {format_target(forward)}:"
                        f" {exc.strerror or exc}"
                    )
                )
                frames.FrameWriter(sock).fin()
                graceful_close(sock)
                return
            up, down = pump(sock, tcp, args.idle)
            total = up + down
        elif args.raw:
            total = _echo_raw(sock, args.action == "discard")
        else:
            total = _echo_framed(sock, args.action == "discard")
        reason = "done"
    except TimeoutError:
        reason = "idle"
    except frames.ProtocolError as exc:
        reason = f"{type(exc).__name__}: {exc}"
        try:  # most likely a client with --raw: tell it (it recognises this frame)
            sock.sendall(
                frames.error_frame(
                    "the server expects kcpsock framing (drop --raw, or serve --raw)"
                )
            )
            graceful_close(sock)
        except OSError:
            pass
    except OSError as exc:
        reason = f"{type(exc).__name__}: {exc}"
    finally:
        try:
            sock.close()
        except OSError:
            pass
    display.line(
        f"session from {name} closed ({reason}), {total} bytes",
        {"event": "closed", "peer": name, "bytes": total, "reason": reason},
    )


def run(args: argparse.Namespace) -> int:
    """Run ``kcpsock serve``; returns the exit status."""
    kcptun.load_config(args, client=False)
    settings = settings_from_args(args)
    if args.address is not None and args.listen is not None:
        raise UsageError(f"ADDR {args.address} conflicts with -l/--listen {args.listen}")
    text = args.address if args.address is not None else args.listen
    if text is None:
        raise UsageError("a listen address is required: ADDR or -l/--listen HOST:PORT")
    address = parse_address(text, "listen address", listening=True)
    forward = parse_target(args.forward, "--forward address") if args.forward else None
    if args.raw and forward is not None:
        raise UsageError("--raw conflicts with --forward (forwarding needs the framing)")
    if args.idle < 0:
        raise UsageError("--idle must be >= 0")
    kcptun.check_kcptun_args(args)
    if args.kcptun and forward is None:
        raise UsageError("--kcptun needs --forward HOST:PORT (kcptun's server forwards)")
    action = "forward" if forward else (args.action or "echo")
    args.action = action
    display = Display(json_mode=args.json, live=False)
    listener = listen(address, settings)
    stats = start_stats(args)
    sessions: list[Any] = []
    lock = threading.Lock()
    try:
        kind = "unix" if isinstance(forward, str) else "tcp"
        target = f" -> {format_target(forward)} ({kind})" if forward else ""
        mode = f"; {kcptun.describe(args)}" if args.kcptun else ""
        announce(
            display,
            "serve",
            listener.getsockname(),
            f"({action}{target}; {settings.describe()}{mode})",
            action=action,
        )
        if args.kcptun:
            kcptun.speed_note(args, display)
            kcptun.crypt_note(args, display)
        while True:
            sock, peer = accept_sliced(listener)
            with lock:
                sessions[:] = [s for s in sessions if getattr(s, "fileno", lambda: -1)() != -1]
                sessions.append(sock)
            display.line(
                f"session from {format_address(peer)}",
                {"event": "accepted", "peer": format_address(peer)},
            )
            if args.kcptun and forward is not None:
                spawn(
                    kcptun.serve_session, sock, peer, forward, args, display, name="kcpsock-serve"
                )
                continue
            spawn(_handle, sock, peer, args, settings, forward, display, name="kcpsock-serve")
    finally:
        listener.close()
        with lock:
            for s in sessions:
                try:
                    s.close()
                except OSError:
                    pass
        if stats:
            stats.stop()
