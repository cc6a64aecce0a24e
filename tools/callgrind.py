"""Instruction counts of a measured section, under ``valgrind --tool=callgrind``.

The counting tools (count_core.py, count_rtt.py, count_codec.py) re-run
themselves under callgrind with collection switched on only inside
``_PyEval_CallTracing``: the child runs the section it measures through
``sys.call_tracing(fn, ())``, so interpreter start-up, imports and set-up
are not counted.  Instruction counts do not depend on the load of the
machine, unlike times.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional

__all__ = ["count_instructions"]


def count_instructions(
    script: str, child_argv: list[str], out: Optional[str] = None, prefix: str = "callgrind."
) -> tuple[int, str]:
    """Run ``python script *child_argv`` under callgrind and count its traced section.

    Args:
        script: the tool to run (normally the caller's own ``__file__``).
        child_argv: its arguments (the child mode that measures).
        out: the callgrind output file, or None for a new temporary one.
        prefix: the temporary file's name prefix.

    Returns:
        (instructions counted, path of the callgrind output file).

    Raises:
        SystemExit: valgrind failed (its stderr is printed) or wrote no summary.
    """
    if out is None:
        fd, out = tempfile.mkstemp(prefix=prefix, suffix=".out")
        os.close(fd)
    cmd = [
        "valgrind",
        "--tool=callgrind",
        "--collect-atstart=no",
        "--toggle-collect=_PyEval_CallTracing",
        f"--callgrind-out-file={out}",
        sys.executable,
        str(Path(script).resolve()),
        *child_argv,
    ]
    env = dict(os.environ, PYTHONHASHSEED="0")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"valgrind exited with {proc.returncode}: {' '.join(cmd)}")
    found = re.search(r"^summary:\s*(\d+)", Path(out).read_text(), re.MULTILINE)
    if not found:
        raise SystemExit(f"no summary line in {out}")
    return int(found.group(1)), out
