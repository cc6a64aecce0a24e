#!/usr/bin/env python3
"""Deterministic cost of the pure KCP core: instructions, not seconds.

Runs :func:`bench_core.run` (two cores joined in memory, fixed seed, a
1 ms-per-round counter clock) once, with the :class:`~kcpsock.kcp.KCP` of
any checkout (``--root``), so two versions compare on a shared, noisy
machine.  Two repeatable measures:

- ``--callgrind``: re-runs itself under ``valgrind --tool=callgrind`` with
  collection on only while the run executes (the run is called through
  ``sys.call_tracing``, whose C function ``_PyEval_CallTracing`` toggles
  collection: interpreter start-up and imports are not counted) and prints
  the instructions executed (Ir), in total and per data segment.  The
  callgrind output file is kept for ``callgrind_annotate``.
- ``--opcodes N``: counts the bytecodes executed per source line of
  ``kcp.py`` (``sys.settrace`` with opcode events) and prints the ``N``
  costliest lines and the total per function.

Without either, one plain run prints its CPU time and the minor page
faults it caused: instruction counts miss the kernel's work, and the order
of allocations can make glibc trim and re-fault the heap top at every
flush (seen at 30 times the faults of the tree before, 13-30 % more CPU
time with fewer instructions).

Usage::

    python tools/count_core.py --callgrind [--root DIR] [--mb 4] [--stream] [--loss 0.01]
    python tools/count_core.py --opcodes 25 [--root DIR] [--mb 1] [--stream]
    python tools/count_core.py [--root DIR] [--mb 30] [--stream]     # CPU s, page faults

Compare a checkout of the old version (``git worktree add --detach
/tmp/before <commit>``) with ``--root /tmp/before``.
"""

from __future__ import annotations

import argparse
import importlib.util
import resource
import sys
import time
from collections import Counter
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any, Callable, Optional

from callgrind import count_instructions

HERE = Path(__file__).resolve().parent


def _load_kcp(root: Path) -> ModuleType:
    """Import ``kcpsock.kcp`` from the checkout at ``root`` (its package, not ours)."""
    sys.path.insert(0, str(root))
    for name in [m for m in sys.modules if m == "kcpsock" or m.startswith("kcpsock.")]:
        del sys.modules[name]
    import kcpsock.kcp as kcp_module

    if Path(kcp_module.__file__ or "").resolve().parent.parent != root:
        raise SystemExit(f"--root {root}: imported {kcp_module.__file__} instead")
    return kcp_module


def _load_bench(kcp_module: ModuleType) -> ModuleType:
    """Load tools/bench_core.py and make it use ``kcp_module``'s KCP."""
    spec = importlib.util.spec_from_file_location("bench_core", HERE / "bench_core.py")
    if spec is None or spec.loader is None:
        raise SystemExit("cannot load tools/bench_core.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.KCP = kcp_module.KCP  # type: ignore[attr-defined]
    return bench


def _segments(args: argparse.Namespace) -> int:
    mss = args.mtu - 24
    return int((int(args.mb * 1_000_000) + mss - 1) // mss)


def _run_once(args: argparse.Namespace) -> None:
    kcp_module = _load_kcp(Path(args.root).resolve())
    bench = _load_bench(kcp_module)
    total = int(args.mb * 1_000_000)
    run_args = (total, args.mtu, args.wnd, args.stream, args.loss)
    if args.opcodes:
        _count_opcodes(bench.run, run_args, kcp_module.__file__ or "", args.opcodes)
        return
    # collection on only inside _PyEval_CallTracing (see the module docstring)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    cpu = time.process_time()
    sys.call_tracing(bench.run, run_args)
    cpu = time.process_time() - cpu
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    if not args.quiet:
        print(f"cpu {cpu:.3f} s  minor page faults {faults}  root {Path(args.root).resolve()}")


def _count_opcodes(
    run: Callable[..., Any], run_args: tuple[Any, ...], filename: str, top: int
) -> None:
    lines: Counter[tuple[str, int]] = Counter()
    funcs: Counter[str] = Counter()

    def tracer(frame: FrameType, event: str, arg: object) -> Optional[Callable[..., Any]]:
        if frame.f_code.co_filename != filename:
            return None
        frame.f_trace_opcodes = True
        frame.f_trace_lines = False
        if event == "opcode":
            lines[(frame.f_code.co_name, frame.f_lineno)] += 1
            funcs[frame.f_code.co_name] += 1
        return tracer

    sys.settrace(tracer)
    try:
        run(*run_args)
    finally:
        sys.settrace(None)
    print(f"bytecodes in {filename}: {sum(funcs.values())}")
    for name, count in funcs.most_common():
        print(f"  {count:>10}  {name}")
    print(f"top {top} lines:")
    for (name, line), count in lines.most_common(top):
        print(f"  {count:>10}  {name}:{line}")


def _callgrind(args: argparse.Namespace, argv: list[str]) -> int:
    child = [a for a in argv if a != "--callgrind"] + ["--quiet"]
    ir, out = count_instructions(__file__, child, args.out, prefix="callgrind.core.")
    segs = _segments(args)
    print(
        f"Ir {ir}  ({ir / segs:.0f} per data segment, {segs} segments)  "
        f"root {Path(args.root).resolve()}  callgrind file {out}"
    )
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    """Command-line entry point; returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(HERE.parent), help="checkout whose KCP runs")
    parser.add_argument("--mb", type=float, default=4.0, help="megabytes (10**6) to move")
    parser.add_argument("--mtu", type=int, default=1400)
    parser.add_argument("--wnd", type=int, default=1024)
    parser.add_argument("--stream", action="store_true", help="stream mode")
    parser.add_argument("--loss", type=float, default=0.0, help="datagram loss each way")
    parser.add_argument("--callgrind", action="store_true", help="count instructions")
    parser.add_argument("--out", help="callgrind output file (default: a temporary file)")
    parser.add_argument("--opcodes", type=int, default=0, help="show the N costliest lines")
    parser.add_argument("--quiet", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.callgrind:
        return _callgrind(args, argv)
    _run_once(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
