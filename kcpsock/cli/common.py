"""Plumbing shared by the commands: common options, readiness lines, closing.

Invariants: every thread started here is a daemon (Ctrl-C must never hang
on one); every wait is bounded.
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading
import time
from typing import Any, Callable, Optional, cast

from kcpsock import KCPSocket
from kcpsock.cli.display import Display, StatsPrinter
from kcpsock.cli.options import format_address

__all__ = [
    "NO_ANSWER_S",
    "SLICE_S",
    "AnswerWatch",
    "accept_sliced",
    "add_output_options",
    "add_wait_option",
    "announce",
    "graceful_close",
    "parse_fraction",
    "positive_float",
    "spawn",
    "start_stats",
]


#: How long a dialing command waits for the first segment from its peer.
NO_ANSWER_S = 5.0
#: How often an :class:`AnswerWatch` looks for the first answer.
ANSWER_POLL_S = 0.05


def positive_float(text: str) -> float:
    """argparse type: a float >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0: {text!r}")
    return value


def parse_fraction(text: str) -> float:
    """argparse type: a probability, ``0.05`` or ``5%``."""
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100.0 if raw.endswith("%") else float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a fraction: {text!r} (e.g. 0.05 or 5%)") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (or 0%..100%): {text!r}")
    return value


def add_wait_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--wait S``: how long a dialing command waits for the peer's first answer."""
    parser.add_argument(
        "--wait",
        type=positive_float,
        default=NO_ANSWER_S,
        metavar="S",
        help="give up when the server has not answered S seconds after the "
        f"first send (KCP has no handshake; default {NO_ANSWER_S:g}; 0: no limit)",
    )


def add_output_options(parser: argparse.ArgumentParser, *, stats: bool = True) -> None:
    """Add ``--json`` and (for session commands) ``--stats N``."""
    parser.add_argument("--json", action="store_true", help="print figures as JSON")
    if stats:
        parser.add_argument(
            "--stats",
            type=positive_float,
            default=0.0,
            metavar="N",
            help="print the SNMP counters every N seconds (to stderr)",
        )


def start_stats(
    args: argparse.Namespace, display: Optional[Display] = None
) -> Optional[StatsPrinter]:
    """Start the ``--stats N`` printer if asked; returns it.

    Args:
        args: parsed arguments (``--stats``, ``--json``).
        display: where to print; default stderr (a command whose live line is
            on the terminal passes its own display, so the two do not collide).
    """
    period = float(getattr(args, "stats", 0.0) or 0.0)
    if period <= 0:
        return None
    if display is None:
        display = Display(sys.stderr, json_mode=bool(args.json), live=False)
    return StatsPrinter(period, display).start()


def announce(display: Display, what: str, address: Any, extra: str = "", **fields: Any) -> None:
    """Print the readiness line ``listening on HOST:PORT`` (or its JSON form)."""
    addr = format_address(address)
    display.line(
        f"{what} listening on {addr}{(' ' + extra) if extra else ''}",
        {"event": "listening", "what": what, "address": addr, **fields},
    )


#: The longest a command's main thread blocks in one call.  A Ctrl-C may be
#: handled on another thread (the kernel gives a process's signal to any thread
#: that does not block it), or on the main thread just before its blocking call
#: began: Python then only sets a flag, which the main thread reads when its
#: call returns.  So the main thread waits in slices: a Ctrl-C is acted on
#: within this many seconds in every case.
SLICE_S = 0.5


def accept_sliced(listener: Any) -> tuple[Any, Any]:
    """``listener.accept()`` (a kcpsock listener or a TCP socket) in slices of :data:`SLICE_S`.

    Sets the listener's timeout to :data:`SLICE_S` (the sockets it accepts
    do not inherit it: a kcpsock listener's take the default timeout, a TCP
    socket's are blocking while ``socket.getdefaulttimeout()`` is None).
    """
    listener.settimeout(SLICE_S)
    while True:
        try:
            return cast("tuple[Any, Any]", listener.accept())
        except (TimeoutError, socket.timeout):
            continue


def spawn(target: Callable[..., Any], *args: Any, name: str = "kcpsock-cli") -> threading.Thread:
    """Start a daemon thread running ``target(*args)``."""
    thread = threading.Thread(target=target, args=args, name=name, daemon=True)
    thread.start()
    return thread


def graceful_close(sock: KCPSocket, timeout_s: float = 3.0) -> None:
    """Close a session after what it sent is acknowledged (bounded wait).

    KCP has no FIN, and a close may drop segments still waiting for an ACK,
    so the last frame of a conversation (our FIN) could be lost on a lossy
    link; waiting for the send queue to drain first avoids that.
    """
    try:
        sock.drain(timeout_s)
    except OSError:
        pass  # closed already
    try:
        sock.close()
    except OSError:
        pass


class AnswerWatch:
    """Closes a dialed session whose peer never answers (KCP has no handshake).

    Call :meth:`sent` once something was sent; if not a single segment came
    back ``wait_s`` seconds later, the session is closed (waking its users)
    and :attr:`silent` is set so the command can say why.  With ``stall_s``,
    the session is also closed (and :attr:`stalled` set) when, after the
    first answer, no segment arrives for ``stall_s`` seconds, until
    :meth:`stop`.

    Until the first answer the socket's ``gone_timeout`` is held at
    ``wait_s`` (off for ``wait_s`` 0), so that a waiting reader's probes do
    not count a silent peer as gone (EOF) after about 2 s, before the
    promised wait is over; the first answer puts the socket's own value back.
    :meth:`unanswered` tells a session that ended unanswered from a clean end.
    """

    def __init__(
        self, sock: Any, wait_s: float = NO_ANSWER_S, stall_s: Optional[float] = None
    ) -> None:
        """Watch ``sock`` (a KCPSocket)."""
        self.sock = sock
        self.wait_s = wait_s
        self.stall_s = stall_s
        self.silent = threading.Event()
        self.stalled = threading.Event()
        self._stop = threading.Event()
        self._sent_at: Optional[float] = None
        #: the socket's gone_timeout to put back at the first answer (None: untouched)
        self._gone: Optional[float] = None
        gone = getattr(sock, "gone_timeout", 0.0)
        if gone:
            try:
                sock.set_gone_timeout(wait_s)
                self._gone = gone
            except OSError:
                pass  # already closed
        spawn(self._run, name="kcpsock-answer-watch")

    def sent(self) -> None:
        """Start the clock (idempotent)."""
        if self._sent_at is None:
            self._sent_at = time.monotonic()

    def unanswered(self) -> bool:
        """True if something was sent and not one segment ever came back.

        Also after the session ended another way than by this watch (a
        reader's probes found the silent peer gone and read EOF first).
        """
        if self.silent.is_set():
            return True
        if self._sent_at is None:
            return False
        return self._segments_in() == 0

    def waited(self) -> float:
        """Seconds to name in a no-answer message: ``wait_s``, less if EOF came first."""
        if self.silent.is_set() or self._sent_at is None:
            return self.wait_s
        elapsed = round(time.monotonic() - self._sent_at, 1)
        return elapsed if self.wait_s <= 0 else min(self.wait_s, elapsed)

    def stop(self) -> None:
        """Stop watching."""
        self._stop.set()

    def _segments_in(self) -> Optional[int]:
        try:
            return int(self.sock.figures().get("segments_in", 0))
        except (OSError, AttributeError):
            return None  # closed by its owner: not our business

    def _close(self, flag: threading.Event) -> None:
        flag.set()
        try:
            self.sock.close()
        except OSError:
            pass

    def _answered(self) -> None:
        """The first segment came back: the socket's own gone_timeout again."""
        if self._gone is not None:
            try:
                self.sock.set_gone_timeout(self._gone)
            except OSError:
                pass  # closed meanwhile

    def _run(self) -> None:
        # Until the first answer: a look every ANSWER_POLL_S (the first
        # answer must give the socket its gone_timeout back soon), and the
        # clock from the first send.
        while True:
            seen = self._segments_in()
            if seen is None:
                return
            if seen:
                self._answered()
                break
            if (
                self.wait_s > 0
                and self._sent_at is not None
                and time.monotonic() - self._sent_at >= self.wait_s
            ):
                self._close(self.silent)
                return
            if self._stop.wait(ANSWER_POLL_S):
                return
        if self.stall_s is None:
            return
        last_change = time.monotonic()
        while not self._stop.wait(1.0):
            now_seen = self._segments_in()
            if now_seen is None:
                return
            if now_seen != seen:
                seen, last_change = now_seen, time.monotonic()
            elif time.monotonic() - last_change >= self.stall_s:
                self._close(self.stalled)
                return
