"""``kcpsock``: the command line (``python -m kcpsock`` and the console script).

Commands: demo, serve, connect, bench, tunnel, relay, stats; ``kcpsock
COMMAND --help`` describes each.  Every command is built only on kcpsock's
public API (``kcpsock.dial``, ``kcpsock.listen``, ``kcpsock.snmp``,
``kcpsock.relay.Relay``).

Invariants:
    * Exit status 0 on success, 1 on a runtime failure (one line on stderr),
      2 on a user error (one line on stderr, no traceback), 130 after Ctrl-C
      (sessions closed first), 143 after SIGTERM (sessions closed too).
    * Only the commands' own addresses are contacted: nothing is sent
      anywhere the user did not name.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from typing import NoReturn, Optional

from kcpsock.cli.options import CommandError, UsageError

__all__ = ["go_style_options", "main"]

PROG = "kcpsock"

EPILOG = """\
quick start (two terminals):
  kcpsock serve 127.0.0.1:29900               # an echo server over KCP
  echo hello | kcpsock connect 127.0.0.1:29900
  kcpsock demo                                # everything in one process, live figures

exit status: 0 ok, 1 runtime failure, 2 usage error, 130 interrupted, 143 terminated
"""


class _Terminated(BaseException):
    """Raised in the main thread on SIGTERM, so sessions close as on Ctrl-C."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise _Terminated()


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr, status 2."""

    def error(self, message: str) -> NoReturn:
        """Print one line and exit with status 2."""
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of every command."""
    from kcpsock.cli import bench, connect, demo, relay, serve, stats, tunnel

    parser = _Parser(
        prog=PROG,
        description="KCP over UDP, wire-compatible with kcp-go and "
        "kcptun's options: a demo, netcat, iperf-style bench, TCP tunnel, lossy "
        "relay.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from kcpsock import __version__, compiled_modules, native_modules

    from .display import core_description

    core = core_description(compiled_modules(), native=native_modules())
    version = f"kcpsock {__version__}, {core}"
    parser.add_argument("--version", action="version", version=version)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in (demo, serve, connect, bench, tunnel, relay, stats):
        module.register(sub)
    return parser


def go_style_options(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """Spell kcptun's one-dash long options (``-mode fast3``) with two dashes.

    kcptun's parser (urfave/cli, Go's flag syntax) takes ``-name``, ``-name
    value`` and ``-name=value`` for every ``--name``, and kcptun's own
    documentation writes them so: a ``-NAME`` (or ``-NAME=VALUE``) after the
    command becomes ``--NAME`` when the command has a ``--NAME`` option.
    Anything else (short options such as ``-l``, negative numbers, unknown
    names, everything after ``--``) is left as it is.

    Args:
        parser: the parser of :func:`build_parser`.
        argv: the arguments.

    Returns:
        The arguments, rewritten.
    """
    commands: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:  # argparse has no public way to list the commands
        if isinstance(action.choices, dict):
            commands = action.choices
    index = next((i for i, arg in enumerate(argv) if not arg.startswith("-")), None)
    if index is None or argv[index] not in commands:
        return argv
    known = {s for s in commands[argv[index]]._option_string_actions if s.startswith("--")}
    out = argv[: index + 1]
    for position, arg in enumerate(argv[index + 1 :], index + 1):
        if arg == "--":
            out += argv[position:]
            break
        if len(arg) > 2 and arg[0] == "-" and arg[1] != "-" and "-" + arg.split("=")[0] in known:
            arg = "-" + arg
        out.append(arg)
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0 ok, 1 failure, 2 usage error, 130 interrupted, 143 terminated.
    """
    parser = build_parser()
    argv = go_style_options(parser, list(sys.argv[1:] if argv is None else argv))
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, argparse errors
        return int(exc.code) if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError):  # not the main thread (main() called from a thread)
        pass
    try:
        return int(args.func(args))
    except _Terminated:
        return 128 + signal.SIGTERM
    except UsageError as exc:
        _error(f"{PROG} {args.command}: error: {exc}")
        return 2
    except CommandError as exc:
        _error(f"{PROG} {args.command}: error: {exc}")
        return 1
    except KeyboardInterrupt:
        # On a terminal, wipe the "^C" the tty echoed (and any live line).
        prefix = "\r\x1b[K" if _isatty(sys.stderr) else ""
        _error(f"{prefix}{PROG} {args.command}: interrupted")
        return 130
    except BrokenPipeError:
        # The reader of our output went away (``| head``): not worth a message.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 1
    except OSError as exc:
        _error(f"{PROG} {args.command}: error: {exc.strerror or exc}")
        return 1
    except Exception as exc:  # a bug or a protocol error: one line, not a traceback
        if os.environ.get("KCPSOCK_DEBUG"):
            raise
        _error(f"{PROG} {args.command}: error: {type(exc).__name__}: {exc}")
        return 1


def _isatty(stream: object) -> bool:
    """True if ``stream`` is a terminal (False for anything without a working isatty)."""
    isatty = getattr(stream, "isatty", None)
    try:
        return callable(isatty) and bool(isatty())
    except ValueError:  # closed
        return False


def _error(text: str) -> None:
    try:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
