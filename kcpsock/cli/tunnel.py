"""``kcpsock tunnel -l LOCAL_TCP -r REMOTE_KCP``: a TCP port forwarded over KCP.

Each accepted TCP connection gets its own KCP session to REMOTE_KCP, where
``kcpsock serve --forward HOST:PORT`` opens a TCP connection for it.  Bytes
flow both ways as framed DATA; a TCP half-close (EOF from one side) travels as
a FIN frame and becomes ``shutdown(SHUT_WR)`` on the other side, so
request/response protocols that close their sending half keep working.  A
session with no traffic either way for ``--idle`` seconds is closed.

Invariants: one KCP session per TCP connection; both sockets are closed when
both directions have finished, on idleness, or on any error of either side.
"""

from __future__ import annotations

import argparse
import socket
import threading
import time
from typing import Any, Callable, Optional

from kcpsock.cli import frames, kcptun
from kcpsock.cli.common import (
    AnswerWatch,
    accept_sliced,
    add_output_options,
    add_wait_option,
    announce,
    graceful_close,
    spawn,
    start_stats,
)
from kcpsock.cli.display import Display
from kcpsock.cli.options import (
    KCPSettings,
    UsageError,
    add_kcp_options,
    bind_error,
    dial,
    format_address,
    parse_address,
    settings_from_args,
)

__all__ = ["pump", "register", "run"]

DEFAULT_IDLE_S = 600.0


class _Link:
    """Shared state of one TCP<->KCP pair."""

    def __init__(self, kcp: Any, tcp: socket.socket, idle_s: float) -> None:
        self.kcp = kcp
        self.tcp = tcp
        self.idle_s = idle_s
        self.last = time.monotonic()
        self.lock = threading.Lock()
        self.sent_fin = False
        self.got_fin = False
        self.failed = False
        self.bytes_up = 0  # TCP -> KCP
        self.bytes_down = 0  # KCP -> TCP

    def touch(self) -> None:
        """Record traffic now."""
        self.last = time.monotonic()

    def idle(self) -> bool:
        """True when nothing moved for ``idle_s`` seconds (never if idle_s is 0)."""
        return self.idle_s > 0 and time.monotonic() - self.last >= self.idle_s

    def abort(self) -> None:
        """Tear both sockets down (wakes the thread blocked on either)."""
        with self.lock:
            self.failed = True
        try:
            self.tcp.shutdown(socket.SHUT_RDWR)  # wakes a recv blocked in the other thread
        except OSError:
            pass
        try:
            self.kcp.close()
        except OSError:
            pass


def _tcp_to_kcp(
    link: _Link, writer: frames.FrameWriter, on_send: Optional[Callable[[], None]]
) -> None:
    try:
        while True:
            data = link.tcp.recv(frames.CHUNK)
            if on_send is not None:
                on_send()
            if not data:
                writer.fin()
                with link.lock:
                    link.sent_fin = True
                return
            link.touch()
            link.bytes_up += len(data)
            writer.send(frames.DATA, data)
    except OSError:
        link.abort()


def _idle_watch(link: _Link, done: threading.Event) -> None:
    # Sockets stay blocking (a timeout would also cut a send blocked by the
    # peer's window); idleness is checked here instead.
    poll = min(link.idle_s, 1.0)
    while not done.wait(poll):
        if link.idle():
            link.abort()
            return


def pump(
    kcp: Any,
    tcp: socket.socket,
    idle_s: float = DEFAULT_IDLE_S,
    on_send: Optional[Callable[[], None]] = None,
) -> tuple[int, int]:
    """Carry a TCP connection over a framed KCP session until both ends finish.

    Args:
        kcp: the KCP session (a ``KCPSocket``).
        tcp: the TCP connection.
        idle_s: close both after this many seconds without traffic (0: never).
        on_send: called before each frame goes to the KCP session.

    Returns:
        (bytes TCP -> KCP, bytes KCP -> TCP).
    """
    link = _Link(kcp, tcp, idle_s)
    tcp.settimeout(None)
    kcp.settimeout(None)
    writer = frames.FrameWriter(kcp)
    reader = frames.FrameReader(kcp)
    done = threading.Event()
    if idle_s > 0:
        spawn(_idle_watch, link, done, name="kcpsock-tunnel-idle")
    up = spawn(_tcp_to_kcp, link, writer, on_send, name="kcpsock-tunnel-up")
    try:
        while True:
            frame = reader.read()
            if frame is None:
                break
            kind, payload = frame
            if kind == frames.DATA:
                link.touch()
                link.bytes_down += len(payload)
                tcp.sendall(payload)
            elif kind == frames.FIN:
                link.got_fin = True
                try:
                    tcp.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                break
        if not link.got_fin:
            link.abort()  # closed under us (watchdog, idle, Ctrl-C): no half-close
        # Our reading half is done; the TCP side may still be sending (half-close);
        # the idle watch bounds this wait.
        up.join()
    except (OSError, frames.ProtocolError):
        pass
    finally:
        done.set()
        if link.got_fin and link.sent_fin and not link.failed:
            graceful_close(kcp)
        else:
            link.abort()
        try:
            tcp.close()
        except OSError:
            pass
        up.join(timeout=2.0)
    return link.bytes_up, link.bytes_down


def register(sub: Any) -> None:
    """Add the ``tunnel`` command to the subparsers."""
    p = sub.add_parser(
        "tunnel",
        help="forward a local TCP port over KCP (kcptun client style)",
        description="Accept TCP connections on LOCAL_TCP and carry each over its "
        "own KCP session to REMOTE_KCP, where `kcpsock serve --forward` runs. "
        "With --kcptun: kcptun's client (smux streams over --conn KCP sessions, "
        "snappy unless --nocomp), so REMOTE_KCP may be the real kcptun-server; "
        "there is no half-close in that mode (--idle and --wait do not apply).",
    )
    p.add_argument(
        "-l",
        "--local",
        "--localaddr",
        default=None,
        metavar="LOCAL_TCP",
        help="local TCP address to listen on, HOST:PORT",
    )
    p.add_argument(
        "-r",
        "--remote",
        "--remoteaddr",
        default=None,
        metavar="REMOTE_KCP",
        help="the KCP server (kcpsock serve --forward), HOST:PORT",
    )
    p.add_argument(
        "--idle",
        type=float,
        default=DEFAULT_IDLE_S,
        metavar="S",
        help=f"close a connection idle for S seconds (default {DEFAULT_IDLE_S:g}; 0: never)",
    )
    add_wait_option(p)
    add_output_options(p)
    add_kcp_options(p, listening=False)
    kcptun.add_kcptun_options(p, client=True)
    p.set_defaults(func=run)


def _serve_one(
    conn: socket.socket,
    peer: Any,
    remote: Any,
    settings: KCPSettings,
    idle_s: float,
    wait_s: float,
    display: Display,
) -> None:
    try:
        kcp = dial(remote, settings)
    except UsageError as exc:
        display.line(f"cannot open a KCP session for {format_address(peer)}: {exc}")
        conn.close()
        return
    watch = AnswerWatch(kcp, wait_s=wait_s)
    try:
        up, down = pump(kcp, conn, idle_s, watch.sent)
    finally:
        watch.stop()
    if watch.unanswered():
        display.line(
            f"closed {format_address(peer)}: no answer from {format_address(remote)} "
            f"within {watch.waited():g} s",
            {"event": "error", "peer": format_address(peer), "error": "no answer"},
        )
        return
    display.line(
        f"closed {format_address(peer)}: {up} bytes up, {down} bytes down",
        {"event": "closed", "peer": format_address(peer), "up": up, "down": down},
    )


def run(args: argparse.Namespace) -> int:
    """Run ``kcpsock tunnel``; returns the exit status."""
    kcptun.load_config(args, client=True)
    for name, flag in (("local", "-l/--localaddr"), ("remote", "-r/--remoteaddr")):
        if getattr(args, name) is None:
            raise UsageError(f"{flag} is required")
    settings = settings_from_args(args)
    local = parse_address(args.local, "local TCP address", listening=True)
    remote = parse_address(args.remote, "remote KCP address")
    if args.idle < 0:
        raise UsageError("--idle must be >= 0")
    kcptun.check_kcptun_args(args)
    display = Display(json_mode=args.json, live=False)
    family = socket.AF_INET6 if ":" in local[0] else socket.AF_INET
    server = socket.socket(family, socket.SOCK_STREAM)
    try:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(local)
        server.listen(128)
    except OSError as exc:
        server.close()
        raise bind_error(exc, "listen on", local) from None
    stats = start_stats(args)
    mode = f"; {kcptun.describe(args)}" if args.kcptun else ""
    announce(
        display,
        "tunnel",
        server.getsockname(),
        f"(tcp) -> {format_address(remote)} (kcp; {settings.describe()}{mode})",
        remote=format_address(remote),
    )
    if args.kcptun:
        kcptun.speed_note(args, display)
        kcptun.crypt_note(args, display)
        mux = kcptun.ClientMux(remote, settings, args, display)
        try:
            while True:
                conn, peer = accept_sliced(server)
                spawn(kcptun.client_connection, mux, conn, peer, display, name="kcpsock-tunnel")
        finally:
            server.close()
            mux.close()
            if stats:
                stats.stop()
    try:
        while True:
            conn, peer = accept_sliced(server)
            spawn(
                _serve_one,
                conn,
                peer,
                remote,
                settings,
                args.idle,
                args.wait,
                display,
                name="kcpsock-tunnel",
            )
    finally:
        server.close()
        if stats:
            stats.stop()
