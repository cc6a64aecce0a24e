"""kcptun mode of ``kcpsock tunnel`` and ``kcpsock serve --forward``: smux + snappy.

With ``--kcptun`` the two commands speak kcptun's protocol instead of
kcpsock's own framing: TCP connections become smux streams over a few KCP
sessions (``--conn``), the whole KCP byte stream wrapped in snappy framing
unless ``--nocomp``.  Either end may then be the real kcptun-client or
kcptun-server.

kcptun has no half-close: when either direction of a connection ends, both
the stream and the TCP connection are closed (kcptun's ``handleClient``),
and this mode does the same (docs/KCPTUN.md §3, §7).

Invariants: each TCP connection has two daemon copy threads that close both
ends as soon as one direction ends; a failing session or stream never stops
the command; every session is closed on exit.
"""

from __future__ import annotations

import argparse
import socket
import threading
import time
from typing import Any, Optional

from kcpsock.cli.common import NO_ANSWER_S, AnswerWatch, spawn
from kcpsock.cli.display import Display
from kcpsock.cli.options import (
    Address,
    KCPSettings,
    Target,
    UsageError,
    connect_target,
    dial,
    format_address,
    format_target,
)

__all__ = [
    "KCPTUN_HELP",
    "UNSUPPORTED",
    "ClientMux",
    "add_kcptun_options",
    "check_kcptun_args",
    "crypt_note",
    "load_config",
    "pipe",
    "serve_session",
    "smux_kwargs",
    "speed_note",
]

#: What ``--kcptun`` means, for the help texts.
KCPTUN_HELP = (
    "speak kcptun's protocol (smux streams over KCP, snappy unless --nocomp) so "
    "the other end may be the real kcptun; no half-close in this mode: when either "
    "direction of a connection ends, both are closed, as kcptun does"
)

DEFAULTS: dict[str, Any] = {
    "nocomp": False,
    "smuxver": 1,
    "smuxbuf": 4194304,
    "streambuf": 2097152,
    "keepalive": 10,
    "conn": 1,
    "autoexpire": 0,
    "scavengettl": 600,
    "quiet": False,
}
#: kcptun's options kcpsock does not implement, and what to do instead: the
#: CLI takes them only to refuse them by name (never silently ignored).
UNSUPPORTED: dict[str, str] = {
    "tcp": "kcptun's TCP emulation (raw sockets, tcpraw) is not implemented: UDP only",
    "log": "kcpsock writes its lines to stdout and stderr: redirect them to a file",
    "snmplog": "use --stats N (the SNMP counters every N seconds, on stderr)",
    "snmpperiod": "there is no --snmplog; use --stats N",
    "pprof": "it starts Go's profiler; there is no Go here",
    "closewait": "a later kcptun's option; kcpsock closes both ends at once, as kcptun "
    "20210922 does",
}
#: The ones that take no value.
UNSUPPORTED_FLAGS = ("tcp", "pprof")

#: kcptun's JSON config keys (``-c FILE``) -> (attribute, type) on either side.
CONFIG_COMMON: dict[str, tuple[str, type]] = {
    **{k: (k, str) for k in ("key", "crypt", "mode")},
    **{
        k: (k, int)
        for k in [
            "mtu",
            "sndwnd",
            "rcvwnd",
            "datashard",
            "parityshard",
            "dscp",
            "nodelay",
            "interval",
            "resend",
            "nc",
            "sockbuf",
            "smuxver",
            "smuxbuf",
            "streambuf",
            "keepalive",
        ]
    },
    **{k: (k, bool) for k in ("nocomp", "acknodelay", "quiet")},
}
CONFIG_CLIENT: dict[str, tuple[str, type]] = {
    "localaddr": ("local", str),
    "remoteaddr": ("remote", str),
    "conn": ("conn", int),
    "autoexpire": ("autoexpire", int),
    "scavengettl": ("scavengettl", int),
}
CONFIG_SERVER: dict[str, tuple[str, type]] = {
    "listen": ("listen", str),
    "target": ("forward", str),
}
#: Keys kcptun reads that kcpsock does not implement, with their no-effect
#: value: accepted at that value (as in kcptun's example files), refused otherwise.
CONFIG_INERT: dict[str, Any] = {
    "log": "",
    "snmplog": "",
    "tcp": False,
    "pprof": False,
    "closewait": 0,
}
#: Read and without effect: the SNMP log period does nothing without "snmplog".
CONFIG_IGNORED = ("snmpperiod",)
_MANUAL_KNOBS = ("nodelay", "interval", "resend", "nc")
_MODES = ("fast3", "fast2", "fast", "normal", "manual")
#: smux's keepalive timeout, which kcptun 20210922 never changes (s).
KEEPALIVE_TIMEOUT_S = 30
#: Bytes per read in the copy loops (kcptun reads 4096; bigger costs less here).
COPY_CHUNK = 32768


def add_kcptun_options(parser: argparse.ArgumentParser, *, client: bool) -> None:
    """Add ``--kcptun`` and kcptun's smux options (names and defaults as kcptun's).

    Args:
        parser: the command's parser.
        client: add the client-only options (``--conn``, ``--autoexpire``,
            ``--scavengettl``).
    """
    unsupported = [n for n in UNSUPPORTED if n != "pprof" or not client]
    g = parser.add_argument_group(
        "kcptun mode (--kcptun; kcptun's names and defaults; no half-close)",
        f"kcptun's {', '.join('--' + n for n in unsupported)} are not supported "
        "(refused by name, with what to do instead).",
    )
    g.add_argument("--kcptun", action="store_true", help=KCPTUN_HELP)
    g.add_argument(
        "-c",
        "--c",  # Go's flag syntax: kcptun takes both
        dest="config",
        default=None,
        metavar="FILE",
        help="kcptun's JSON config file (overrides the command line, as in kcptun; "
        "implies --kcptun)",
    )
    g.add_argument(
        "--nocomp",
        action="store_true",
        default=None,
        help="no snappy compression (must match the peer; default: compress)",
    )
    g.add_argument(
        "--smuxver",
        type=int,
        default=None,
        choices=(1, 2),
        help="smux protocol version, must match the peer (default 1)",
    )
    g.add_argument(
        "--smuxbuf",
        type=int,
        default=None,
        metavar="BYTES",
        help=f"smux receive buffer of a session (default {DEFAULTS['smuxbuf']})",
    )
    g.add_argument(
        "--streambuf",
        type=int,
        default=None,
        metavar="BYTES",
        help=f"smux v2 per-stream window (default {DEFAULTS['streambuf']}; <= --smuxbuf)",
    )
    g.add_argument(
        "--keepalive",
        type=int,
        default=None,
        metavar="S",
        help=f"smux keepalive interval in seconds (default {DEFAULTS['keepalive']}; "
        f"a session silent for {KEEPALIVE_TIMEOUT_S} s is closed)",
    )
    g.add_argument(
        "--quiet",
        action="store_true",
        default=None,
        help="no line per connection (kcptun's stream open/close messages); errors still show",
    )
    for name in unsupported:
        if name in UNSUPPORTED_FLAGS:
            g.add_argument(
                f"--{name}", dest=f"unsupported_{name}", action="store_true", help=argparse.SUPPRESS
            )
        else:
            g.add_argument(f"--{name}", dest=f"unsupported_{name}", help=argparse.SUPPRESS)
    if client:
        g.add_argument(
            "--conn",
            type=int,
            default=None,
            metavar="N",
            help="KCP sessions to the server; TCP connections are spread round-robin (default 1)",
        )
        g.add_argument(
            "--autoexpire",
            type=int,
            default=None,
            metavar="S",
            help="a session older than S seconds takes no new connections (default 0: never)",
        )
        g.add_argument(
            "--scavengettl",
            type=int,
            default=None,
            metavar="S",
            help="close a session S seconds after it expired, with its connections, "
            "replaced or not (default 600)",
        )


def load_config(args: argparse.Namespace, *, client: bool) -> None:
    """Apply kcptun's JSON config file (``-c FILE``) to the parsed arguments.

    As in kcptun, the file overrides the command line and means kcptun mode;
    ``nodelay``/``interval``/``resend``/``nc`` count only with ``"mode":
    "manual"`` (kcptun's profiles overwrite them).  The keys of the other
    side (a server's ``"target"`` in a client's file...) are skipped, as
    kcptun skips them; a key kcptun does not know is an error, and so is a
    setting kcpsock does not implement (``"tcp": true``...).

    Args:
        args: the parsed arguments (``args.config`` is the path, or None).
        client: the command is the client side (``tunnel``).

    Raises:
        UsageError: unreadable file, not a JSON object, an unknown key, a
            value of the wrong type or an unsupported setting.
    """
    import json

    path = getattr(args, "config", None)
    if path is None:
        return
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(
            f"cannot read -c {path}: {getattr(exc, 'strerror', None) or exc}"
        ) from None
    try:
        config = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"-c {path} is not kcptun's JSON config: {exc}") from None
    if not isinstance(config, dict):
        raise UsageError(f"-c {path} is not kcptun's JSON config: not an object")
    own = {**CONFIG_COMMON, **(CONFIG_CLIENT if client else CONFIG_SERVER)}
    other = CONFIG_SERVER if client else CONFIG_CLIENT
    applied: set[str] = set()
    for key, value in config.items():
        if key in own:
            attribute, kind = own[key]
            ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
            if not ok:
                what = {str: "a string", int: "an integer", bool: "true or false"}[kind]
                raise UsageError(f"-c {path}: {key!r} must be {what}, not {value!r}")
            if key == "mode" and value not in _MODES:
                raise UsageError(f"-c {path}: 'mode' must be one of {', '.join(_MODES)}")
            setattr(args, attribute, value)
            applied.add(key)
        elif key in CONFIG_INERT:
            if value != CONFIG_INERT[key]:
                flag = UNSUPPORTED[key]
                raise UsageError(
                    f"-c {path}: kcptun's {key!r}: {value!r} is not supported by kcpsock: {flag}"
                )
        elif key not in other and key not in CONFIG_IGNORED:
            raise UsageError(f"-c {path}: unknown kcptun setting {key!r}")
    if "listen" in applied:
        args.address = None  # serve's ADDR: the file overrides it too
    if args.mode != "manual":
        for knob in _MANUAL_KNOBS:
            if knob in applied:
                setattr(args, knob, None)
    args.kcptun = True


def check_kcptun_args(args: argparse.Namespace) -> None:
    """Check the kcptun options and fill in their defaults.

    Raises:
        UsageError: a kcptun option without ``--kcptun``, or a bad value.
    """
    for name, why in UNSUPPORTED.items():
        if getattr(args, f"unsupported_{name}", None) not in (None, False):
            raise UsageError(f"kcptun's --{name} is not supported by kcpsock: {why}")
    given = [name for name in DEFAULTS if getattr(args, name, None) not in (None, False)]
    if not args.kcptun:
        if given:
            raise UsageError(f"--{given[0]} needs --kcptun")
        return
    for name, value in DEFAULTS.items():
        if hasattr(args, name) and getattr(args, name) is None:
            setattr(args, name, value)
    if args.smuxver not in (1, 2):
        raise UsageError(f"--smuxver must be 1 or 2, not {args.smuxver}")
    if args.smuxbuf <= 0:
        raise UsageError(f"--smuxbuf must be positive, not {args.smuxbuf}")
    if args.streambuf <= 0:
        raise UsageError(f"--streambuf must be positive, not {args.streambuf}")
    if args.streambuf > args.smuxbuf:
        raise UsageError(
            f"--streambuf {args.streambuf} must not be larger than --smuxbuf {args.smuxbuf}"
        )
    if args.smuxbuf > 0x7FFFFFFF:
        raise UsageError("--smuxbuf must be below 2**31")
    if not 1 <= args.keepalive <= KEEPALIVE_TIMEOUT_S:
        raise UsageError(
            f"--keepalive must be 1..{KEEPALIVE_TIMEOUT_S} s (smux's keep-alive timeout "
            f"is {KEEPALIVE_TIMEOUT_S} s and must be larger than the interval)"
        )
    if hasattr(args, "conn"):
        if not 1 <= args.conn <= 65535:
            raise UsageError(f"--conn must be 1..65535, not {args.conn}")
        if args.autoexpire < 0:
            raise UsageError(f"--autoexpire must be >= 0, not {args.autoexpire}")
        if args.scavengettl < 0:
            raise UsageError(f"--scavengettl must be >= 0, not {args.scavengettl}")


def smux_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of ``kcpsock.smux.client``/``server`` for the options."""
    return {
        "version": args.smuxver,
        "compress": not args.nocomp,
        "max_receive_buffer": args.smuxbuf,
        "max_stream_buffer": args.streambuf,
        "keepalive": args.keepalive,
        "keepalive_timeout": KEEPALIVE_TIMEOUT_S,
    }


def describe(args: argparse.Namespace) -> str:
    """One line about the kcptun mode, for the readiness line."""
    comp = "no compression" if args.nocomp else "snappy"
    return f"kcptun mode: smux v{args.smuxver}, {comp}"


def crypt_note(args: argparse.Namespace, display: Display) -> None:
    """Say once that kcptun 20210922 takes ``--crypt null`` as aes.

    kcpsock's ``null`` is later kcptun's (no cipher, no crypto header);
    kcptun 20210922 (Debian's) runs aes for it, and for every name it does
    not know, without a word: the two ends then never talk.
    """
    if args.crypt == "null":
        display.line(
            "note: --crypt null means no cipher here (as later kcptun); kcptun "
            "20210922 (Debian's) takes null as aes: against it say --crypt aes on both ends",
            {"event": "note", "note": "kcptun 20210922 takes --crypt null as aes"},
        )


def speed_note(args: argparse.Namespace, display: Display) -> None:
    """Say once that cramjam makes snappy faster, when compressing without it."""
    from kcpsock import snappy

    if not args.nocomp and not snappy.HAVE_CRAMJAM:
        display.line(
            "note: snappy runs in pure Python (about 5 MB/s); "
            "pip install 'kcpsock[kcptun]' makes it much faster",
            {"event": "note", "note": "pip install 'kcpsock[kcptun]' for fast snappy"},
        )


def pipe(stream: Any, tcp: socket.socket) -> tuple[int, int]:
    """Copy both ways between an smux stream and a TCP connection, kcptun style.

    When either direction ends (EOF or error) both are closed: kcptun has
    no half-close.

    Returns:
        (bytes TCP -> stream, bytes stream -> TCP).
    """
    counts = [0, 0]
    done = threading.Event()
    lock = threading.Lock()

    def finish() -> None:
        with lock:
            if done.is_set():
                return
            done.set()
        try:
            tcp.shutdown(socket.SHUT_RDWR)  # wakes the other copier
        except OSError:
            pass
        try:
            stream.close()
        except OSError:
            pass

    def copy(src: Any, dst: Any, index: int) -> None:
        try:
            while True:
                data = src.recv(COPY_CHUNK)
                if not data:
                    break
                counts[index] += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finish()

    tcp.settimeout(None)
    stream.settimeout(None)
    thread = spawn(copy, tcp, stream, 0, name="kcpsock-kcptun-up")
    copy(stream, tcp, 1)
    thread.join(5.0)
    try:
        tcp.close()
    except OSError:
        pass
    return counts[0], counts[1]


# ------------------------------------------------------------------ client


class _Slot:
    """One of the ``--conn`` session slots."""

    def __init__(self) -> None:
        self.session: Any = None
        self.expires = 0.0


class ClientMux:
    """kcptun's client side: ``--conn`` KCP+smux sessions used round-robin.

    A slot's session is created on first use and replaced when it died or
    (with ``--autoexpire``) expired; as kcptun's scavenger, every session is
    closed ``--scavengettl`` seconds after its expiry, replaced or not.
    """

    def __init__(
        self, remote: Address, settings: KCPSettings, args: argparse.Namespace, display: Display
    ) -> None:
        """Prepare the slots (no session is dialed before the first connection)."""
        self.remote = remote
        self.settings = settings
        self.display = display
        self.kwargs = smux_kwargs(args)
        self.quiet = bool(args.quiet)
        self.autoexpire = float(args.autoexpire)
        self.scavengettl = float(args.scavengettl)
        self.slots = [_Slot() for _ in range(args.conn)]
        self.rr = 0
        self.lock = threading.Lock()
        self.expired: list[tuple[float, Any]] = []
        #: each live slot session's first-answer watch
        self.watches: dict[Any, AnswerWatch] = {}
        self.closed = threading.Event()
        if self.autoexpire > 0:
            spawn(self._scavenge, name="kcpsock-kcptun-scavenger")

    def _new_session(self) -> Any:
        from kcpsock import smux

        sock = dial(self.remote, self.settings)
        session = smux.client(sock, **self.kwargs)
        # KCP has no handshake: a session whose server never answers (wrong
        # key, cipher or FEC, nothing there) is closed NO_ANSWER_S after its
        # first stream opened, and client_connection says why.  (Made after
        # smux.client turned the socket's gone_timeout off, which the watch
        # then leaves alone: made before, it would give it back at the first
        # answer, and a second of silence would end every stream.)
        self.watches[session] = AnswerWatch(sock, wait_s=NO_ANSWER_S)
        self.display.line(
            f"smux session {sock.getsockname()[1]} -> {format_address(self.remote)} "
            f"(conv {sock.conv:#010x})",
            {"event": "session", "remote": format_address(self.remote), "conv": sock.conv},
        )
        return session

    def session_for_next(self) -> Any:
        """Return the session the next connection goes to (kcptun's round-robin)."""
        with self.lock:
            slot = self.slots[self.rr % len(self.slots)]
            self.rr += 1
            now = time.monotonic()
            if (
                slot.session is None
                or not slot.session.alive
                or (self.autoexpire > 0 and now >= slot.expires)
            ):
                if slot.session is not None:
                    self.watches.pop(slot.session, None)
                slot.session = self._new_session()
                slot.expires = now + self.autoexpire
                if self.autoexpire > 0:  # kcptun: every session is closed ttl after expiry
                    self.expired.append((slot.expires + self.scavengettl, slot.session))
            return slot.session

    def open_stream(self) -> Any:
        """Open a stream on the next session (a new session if it refuses)."""
        session = self.session_for_next()
        try:
            stream = session.open_stream()
        except OSError:
            session.close()
            session = self.session_for_next()
            stream = session.open_stream()
        with self.lock:
            watch = self.watches.get(session)
        if watch is not None:
            watch.sent()
        return stream

    def _scavenge(self) -> None:
        while not self.closed.wait(1.0):
            now = time.monotonic()
            with self.lock:
                due = [s for t, s in self.expired if t <= now]
                self.expired = [(t, s) for t, s in self.expired if t > now and s.alive]
            for session in due:
                session.close()

    def close(self) -> None:
        """Close every session."""
        self.closed.set()
        with self.lock:
            sessions = [s.session for s in self.slots if s.session is not None]
            sessions += [s for _, s in self.expired]
        for session in sessions:
            try:
                session.close()
            except OSError:
                pass


def client_connection(mux: ClientMux, conn: socket.socket, peer: Any, display: Display) -> None:
    """Carry one accepted TCP connection over a new stream (kcptun ``handleClient``)."""
    try:
        stream = mux.open_stream()
    except (OSError, UsageError) as exc:
        display.line(
            f"cannot open a stream for {format_address(peer)}: {exc}",
            {"event": "error", "peer": format_address(peer), "error": str(exc)},
        )
        conn.close()
        return
    up, down = pipe(stream, conn)
    if not stream.session.alive and _never_answered(stream.session.sock):
        # the session ended (a waiting reader's probes found the silent
        # server gone) without one segment from it: a wrong key or cipher
        display.line(
            f"closed {format_address(peer)} (stream {stream.id}): no answer from "
            f"{format_address(mux.remote)} (is a kcptun server running there, with the "
            "same --crypt, --key and FEC?)",
            {"event": "error", "peer": format_address(peer), "error": "no answer"},
        )
        return
    if mux.quiet:
        return
    display.line(
        f"closed {format_address(peer)} (stream {stream.id}): {up} bytes up, {down} bytes down",
        {"event": "closed", "peer": format_address(peer), "up": up, "down": down},
    )


def _never_answered(sock: Any) -> bool:
    """True if the KCP session has not received a single segment."""
    try:
        return int(sock.figures().get("segments_in", 0)) == 0
    except (OSError, AttributeError):
        return False


# ------------------------------------------------------------------ server


def serve_session(
    sock: Any,
    peer: Any,
    forward: Target,
    args: argparse.Namespace,
    display: Display,
) -> None:
    """Serve one accepted KCP session as kcptun's server: each stream -> a TCP connection."""
    from kcpsock import smux

    name = format_address(peer)
    session = smux.server(sock, **smux_kwargs(args))
    streams = 0
    try:
        while True:
            try:
                stream = session.accept_stream()
            except OSError:
                break
            streams += 1
            spawn(_forward_stream, stream, forward, display, name="kcpsock-kcptun-stream")
    finally:
        reason = session.error or "closed"
        session.close()
    display.line(
        f"session from {name} ended ({reason}), {streams} streams",
        {"event": "closed", "peer": name, "streams": streams, "reason": reason},
    )


def _forward_stream(stream: Any, forward: Target, display: Display) -> None:
    try:
        tcp = connect_target(forward, timeout=10.0)
    except OSError as exc:
        display.line(
            f"stream {stream.id}: cannot connect to {format_target(forward)}: "
            f"{exc.strerror or exc}",
            {"event": "error", "stream": stream.id, "error": str(exc)},
        )
        stream.close()
        return
    pipe(stream, tcp)


def forward_address_note(forward: Optional[Target]) -> str:
    """The readiness line's target part."""
    if not forward:
        return ""
    return f" -> {format_target(forward)} ({'unix' if isinstance(forward, str) else 'tcp'})"
