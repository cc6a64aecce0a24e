#!/usr/bin/env python3
"""Check that kcpsock's pure layers stay free of I/O.

The pure modules (the KCP core, the codecs, counters, errors, config) must not
import socket, threading, time, select, selectors, asyncio or subprocess, nor
any of kcpsock's I/O modules.  This reads the sources with ``ast`` (nothing is
imported or run) and exits 1 with one line per violation.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PURE = {
    "errors",
    "config",
    "segment",
    "kcp",
    "gf256",
    "fec",
    "crypt",
    "codec",
    "inbound",
    "stats",
    "_twofish",
    "_sm4",
    "_tea",
    "_cfb",
    "ciphers",
}
FORBIDDEN_STDLIB = {
    "socket",
    "threading",
    "time",
    "select",
    "selectors",
    "asyncio",
    "subprocess",
    "_thread",
    "signal",
}
IO_MODULES = {
    "updater",
    "transport",
    "session",
    "sock",
    "socketserver",
    "listener",
    "cli",
    "relay",
    "__main__",
    "tunnel",
    "demo",
    "bench",
}


def imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    """Return (line, dotted name) for every import in the tree ('.' marks relative)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            if node.level and not node.module:
                found.extend((node.lineno, "." + alias.name) for alias in node.names)
            else:
                found.append((node.lineno, base))
    return found


def check(package: Path) -> list[str]:
    """Return the violations found in the package directory."""
    problems = []
    for path in sorted(package.glob("*.py")):
        if path.stem not in PURE:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for line, name in imported_modules(tree):
            top = name.lstrip(".").split(".")[0]
            if name.startswith("."):
                if top in IO_MODULES:
                    problems.append(f"{path}:{line}: pure module imports I/O module {name}")
            elif name.startswith("kcpsock."):
                sub = name.split(".")[1]
                if sub in IO_MODULES:
                    problems.append(f"{path}:{line}: pure module imports I/O module {name}")
            elif top in FORBIDDEN_STDLIB:
                problems.append(f"{path}:{line}: pure module imports {name}")
    return problems


def main() -> int:
    package = Path(__file__).resolve().parent.parent / "kcpsock"
    problems = check(package)
    for p in problems:
        print(p)
    if not problems:
        print("layer check: pure modules import no I/O")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
