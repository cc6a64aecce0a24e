r"""Output of figures: a live line, plain lines, JSON, tables and counters.

Invariants:
    * The live line (rewritten in place with ``\r``) is used only when the
      stream is a terminal; otherwise each report is a plain line, and with
      ``--json`` one JSON object per line.
    * The live line never exceeds the terminal's width, so it never wraps
      (a wrapped line cannot be rewritten in place).
    * Writes are serialised by one lock: reports from several threads never
      interleave inside a line.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
from collections.abc import Sequence
from typing import IO, Any, Callable, Optional

__all__ = [
    "Display",
    "StatsPrinter",
    "core_description",
    "fmt_bytes",
    "fmt_ms",
    "fmt_rate",
    "percentile",
    "session_figures",
    "snmp_dict",
    "table",
]


def core_description(
    compiled: Sequence[str], brief: bool = False, native: Sequence[str] = ()
) -> str:
    """How the core runs, for humans: which modules are compiled (mypyc), or pure Python.

    Args:
        compiled: the compiled modules (:func:`kcpsock.compiled_modules`).
        brief: count the modules instead of naming them (a table row that
            must fit a terminal line).
        native: the hand-written C helpers that run
            (:func:`kcpsock.native_modules`).
    """
    helpers = ""
    if native:
        helpers = f" + {len(native)} C helpers" if brief else f", C helpers {', '.join(native)}"
    if not compiled:
        return "pure Python (no compiled core: see README, Compiled core)" + helpers
    if brief:
        return f"compiled with mypyc ({len(compiled)} modules){helpers}"
    return f"compiled with mypyc ({', '.join(compiled)}){helpers}"


def fmt_bytes(n: float) -> str:
    """Format a byte count with a binary-free SI unit (B, kB, MB, GB)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{int(n)} B"


def fmt_rate(bytes_per_s: float) -> str:
    """Format a rate in MB/s."""
    return f"{bytes_per_s / 1e6:.2f} MB/s"


def fmt_ms(ms: Optional[float]) -> str:
    """Format a duration in ms (``-`` when unknown)."""
    if ms is None:
        return "-"
    return f"{ms:.2f} ms" if ms < 10 else f"{ms:.1f} ms" if ms < 100 else f"{ms:.0f} ms"


def percentile(values: Sequence[float], p: float) -> Optional[float]:
    """Return the p-th percentile (0..100, nearest rank) or None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(p / 100.0 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def table(rows: Sequence[tuple[str, str]], title: str = "") -> str:
    """Render (label, value) rows as an aligned two-column table."""
    width = max((len(label) for label, _ in rows), default=0)
    vwidth = max((len(value) for _, value in rows), default=0)
    rule = "-" * (width + vwidth + 3)
    lines = [title, rule] if title else [rule]
    lines += [f"{label:<{width}} : {value}" for label, value in rows]
    lines.append(rule)
    return "\n".join(lines)


def snmp_dict() -> dict[str, int]:
    """Return kcpsock's global SNMP counters as {kcp-go name: value}."""
    import kcpsock

    snmp = kcpsock.snmp
    return {str(k): int(v) for k, v in zip(snmp.header(), snmp.to_list())}


#: Our figure names -> the keys of ``KCPSocket.figures()``.
_FIGURES = {
    "srtt_ms": "srtt",
    "rto_ms": "rto",
    "rttvar_ms": "rttvar",
    "retrans": "retrans_segs",
    "bytes_out": "bytes_sent",
    "bytes_in": "bytes_received",
    "segs_out": "segments_out",
    "segs_in": "segments_in",
    "waitsnd": "waitsnd",
}


def session_figures(sock: Any) -> dict[str, float]:
    """Return a session's figures (srtt_ms, retrans, ...) from ``KCPSocket.figures()``.

    Returns an empty dict once the session is closed, so callers use ``.get``.
    """
    try:
        raw = sock.figures()
    except (OSError, AttributeError):
        return {}
    return {ours: float(raw[theirs]) for ours, theirs in _FIGURES.items() if theirs in raw}


class Display:
    """Reports figures: a live line on a terminal, plain lines otherwise, or JSON."""

    def __init__(
        self,
        stream: Optional[IO[str]] = None,
        *,
        json_mode: bool = False,
        live: Optional[bool] = None,
    ) -> None:
        """Create a display.

        Args:
            stream: where to write (default sys.stdout).
            json_mode: print JSON objects instead of text.
            live: force the live line on or off (default: on iff the stream
                is a terminal and not json_mode).
        """
        self.stream: IO[str] = stream if stream is not None else sys.stdout
        self.json_mode = json_mode
        if live is None:
            try:
                live = (
                    self.stream.isatty() and not json_mode and os.environ.get("TERM", "") != "dumb"
                )
            except (AttributeError, ValueError):
                live = False
        self.live = bool(live)
        self._lock = threading.Lock()
        self._live_shown = False

    def width(self) -> int:
        """Columns available for the live line (the terminal's width minus one)."""
        return max(20, shutil.get_terminal_size((100, 24)).columns - 1)

    def status(self, text: str) -> None:
        """Show the live line (terminal only; nothing otherwise)."""
        if not self.live:
            return
        with self._lock:
            self.stream.write("\r" + text[: self.width()] + "\x1b[K")
            self.stream.flush()
            self._live_shown = True

    def clear(self) -> None:
        """Remove the live line, leaving the cursor at the start of the line."""
        if not self.live:
            return
        with self._lock:
            if self._live_shown:
                self.stream.write("\r\x1b[K")
                self.stream.flush()
                self._live_shown = False

    def line(self, text: str = "", obj: Optional[dict[str, Any]] = None) -> None:
        """Print a permanent line (or ``obj`` as JSON in json mode).

        In json mode, a call without ``obj`` prints nothing.
        """
        with self._lock:
            if self._live_shown:
                self.stream.write("\r\x1b[K")
                self._live_shown = False
            if self.json_mode:
                if obj is None:
                    return
                self.stream.write(json.dumps(obj) + "\n")
            else:
                self.stream.write(text + "\n")
            self.stream.flush()

    def text(self, text: str) -> None:
        """Print text (not in json mode)."""
        if not self.json_mode:
            self.line(text)


class StatsPrinter:
    """Prints the SNMP counters every N seconds (``--stats N``) on a thread."""

    def __init__(
        self, period_s: float, display: Display, snapshot: Callable[[], dict[str, int]] = snmp_dict
    ) -> None:
        """Create the printer; :meth:`start` runs it.

        Args:
            period_s: seconds between reports.
            display: where to print (text: non-zero counters; JSON: all).
            snapshot: the counter source.
        """
        self.period_s = period_s
        self.display = display
        self._snapshot = snapshot
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kcpsock-stats", daemon=True)

    def start(self) -> StatsPrinter:
        """Start printing; returns self."""
        self._thread.start()
        return self

    def report(self) -> None:
        """Print one report now."""
        counters = self._snapshot()
        if self.display.json_mode:
            self.display.line(obj={"snmp": counters})
        else:
            shown = " ".join(f"{k}={v}" for k, v in counters.items() if v)
            self.display.line(f"snmp: {shown or '(all zero)'}")

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            try:
                self.report()
            except Exception:  # a broken pipe on stderr must not kill the command
                return

    def stop(self) -> None:
        """Stop the thread (bounded wait)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2.0)
