"""``kcpsock connect ADDR``: netcat over KCP.

Standard input goes to the session, the session goes to standard output.  At
the end of input a FIN frame tells the peer (``kcpsock serve``) that nothing
more comes; the command ends when the peer's FIN arrives, so ``echo hi |
kcpsock connect ADDR`` prints the echo and exits.  With ``--raw`` (a peer that
is not a kcpsock tool) bytes travel unframed and the command ends once input
is done and nothing has arrived for ``--linger`` seconds.

Invariants: standard output receives exactly the peer's bytes; Ctrl-C closes
the session and exits with status 130.
"""

from __future__ import annotations

import argparse
import os
import select
import sys
import threading
import time
from typing import Any

from kcpsock.cli import frames
from kcpsock.cli.common import (
    AnswerWatch,
    add_output_options,
    add_wait_option,
    graceful_close,
    positive_float,
    spawn,
    start_stats,
)
from kcpsock.cli.options import (
    CommandError,
    add_kcp_options,
    dial,
    format_address,
    parse_address,
    settings_from_args,
)

__all__ = ["register", "run"]


def register(sub: Any) -> None:
    """Add the ``connect`` command to the subparsers."""
    p = sub.add_parser(
        "connect",
        help="netcat over KCP: stdin to the session, the session to stdout",
        description="Dial ADDR over KCP; copy stdin to the session and the "
        "session to stdout until both ends are done.",
    )
    p.add_argument("address", metavar="ADDR", help="the KCP server, HOST:PORT")
    p.add_argument(
        "--raw", action="store_true", help="plain bytes, no kcpsock framing (for kcp-go peers)"
    )
    p.add_argument(
        "--linger",
        type=positive_float,
        default=1.0,
        metavar="S",
        help="--raw: after end of input, exit once nothing arrived for S seconds (default 1)",
    )
    add_wait_option(p)
    add_output_options(p)
    add_kcp_options(p, listening=False)
    p.set_defaults(func=run)


def _read_stdin(
    sock: Any,
    raw: bool,
    done: threading.Event,
    errors: list[BaseException],
    watch: AnswerWatch,
    done_at: list[float],
) -> None:
    writer = None if raw else frames.FrameWriter(sock)
    fd = sys.stdin.fileno()
    try:
        while True:
            data = os.read(fd, frames.CHUNK)
            if not data:
                break
            watch.sent()
            if writer is None:
                sock.sendall(data)
            else:
                writer.send(frames.DATA, data)
        if writer is not None:
            writer.fin()
            watch.sent()
    except OSError as exc:
        errors.append(exc)
    finally:
        done_at[0] = time.monotonic()
        done.set()


def run(args: argparse.Namespace) -> int:
    """Run ``kcpsock connect``; returns the exit status."""
    settings = settings_from_args(args)
    address = parse_address(args.address, "server address")
    sock = dial(address, settings)
    stats = start_stats(args)
    out = sys.stdout.buffer
    stdin_done = threading.Event()
    errors: list[BaseException] = []
    done_at = [0.0]  # when the end of input was reached (raw mode's linger starts there)
    clean = False
    watch = AnswerWatch(sock, wait_s=args.wait)
    remote_error: list[str] = []
    try:
        spawn(_read_stdin, sock, args.raw, stdin_done, errors, watch, done_at, name="kcpsock-stdin")
        if args.raw:
            # Wait with select, not a socket timeout: a timeout would also cut
            # the stdin thread's sendall when the peer's window is full.
            wait_s = args.linger if args.linger > 0 else 0.05
            last = time.monotonic()
            received = False
            while True:
                readable, _, _ = select.select([sock], [], [], wait_s)
                if not readable:
                    if watch.silent.is_set():
                        break
                    if (
                        stdin_done.is_set()
                        and time.monotonic() - max(last, done_at[0]) >= args.linger
                    ):
                        break
                    continue
                data = sock.recv(frames.CHUNK)
                if not data:
                    break
                last = time.monotonic()
                if not received:
                    # a kcpsock server that expected framing says so first
                    message = frames.parse_error_frame(data)
                    if message is not None:
                        remote_error.append(message)
                        break
                received = True
                out.write(data)
                out.flush()
        else:
            reader = frames.FrameReader(sock)
            while True:
                frame = reader.read()
                if frame is None:
                    # no FIN: the session ended under us (the server died,
                    # went silent or never answered); nothing more can be
                    # sent, so do not wait for the end of our input
                    if remote_error:
                        raise CommandError(remote_error[0])
                    if watch.unanswered():
                        raise OSError("no answer")
                    raise CommandError(
                        f"the session with {format_address(address)} ended before the "
                        "server's end of stream (it stopped answering or went away)"
                    )
                kind, payload = frame
                if kind == frames.DATA:
                    out.write(payload)
                    out.flush()
                elif kind == frames.FIN:
                    break
                elif kind == frames.JSON:
                    message = frames.parse_error_frame(frames.error_prefix(payload))
                    if message is not None:
                        remote_error.append(message)
            if remote_error:
                raise CommandError(remote_error[0])
            # The peer is done; our input may still be flowing (half-close).
            while not watch.silent.is_set() and not stdin_done.wait(0.5):
                pass
        if watch.unanswered():
            raise OSError("no answer")
        if remote_error:
            raise CommandError(remote_error[0])
        if errors:
            raise errors[0]
        clean = True
    except OSError:
        if watch.unanswered():
            raise CommandError(
                f"no answer from {format_address(address)} within "
                f"{watch.waited():g} s (is a kcpsock server running there, "
                "with the same --crypt, --key and FEC?)"
            ) from None
        raise
    finally:
        watch.stop()
        if clean:
            graceful_close(sock)
        else:
            sock.close()
        if stats:
            stats.stop()
    return 0
