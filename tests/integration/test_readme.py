"""The README's Python example runs as written (on 127.0.0.1)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def python_blocks() -> list[str]:
    """Return the README's fenced python code blocks."""
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_readme_has_a_python_example() -> None:
    assert python_blocks(), "README.md lost its Python example"


def test_readme_python_example_runs_and_prints_what_it_says() -> None:
    code = python_blocks()[0]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(README), "exec"), {"__name__": "readme_example"})
    assert out.getvalue().strip() == "b'hello over KCP'"


def test_readme_smux_example_runs_and_prints_what_it_says() -> None:
    blocks = [b for b in python_blocks() if "kcpsock.smux" in b]
    assert blocks, "README.md lost its smux example"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(blocks[0], str(README), "exec"), {"__name__": "readme_smux_example"})
    assert out.getvalue().split() == ["b'ping'", "b''"]
