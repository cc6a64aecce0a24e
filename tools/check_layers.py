#!/usr/bin/env python3
"""Check kcpsock's layer map: imports point down, pure modules stay free of I/O.

The layers, from the bottom (docs/ARCHITECTURE.md draws them):

0. pure: the KCP core, the packet layer (FEC, ciphers, codec), counters,
   errors, config and the inbound pipeline.  They import only each other and
   none of the standard library's I/O, thread or clock modules.
1. I/O base: the global updater thread, the UDP transport, the UDP relay.
2. session: one KCP conversation under a lock, with blocking waits.
3. listener: admission and the accept queue (creates sessions).
4. socket API: ``KCPSocket``, ``Listener``, ``dial``, ``listen``.
5. servers and stream multiplexing on top of the socket API.
6. the package's public API (``kcpsock/__init__.py``).
7. the command line (``kcpsock/cli/``, ``__main__``).

A module may import modules of its own layer (pure modules among
themselves) or of lower layers, never of higher ones.  Imports under
``if TYPE_CHECKING:`` are for the type checker only and are not checked.
Every module of the package must appear in :data:`LAYERS`, so a new module
has to be placed on the map before the check passes.

This reads the sources with ``ast`` (nothing is imported or run) and exits 1
with one line per violation.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

#: module -> layer number (``cli`` stands for every module of kcpsock/cli/).
LAYERS: dict[str, int] = {
    # 0: pure
    "errors": 0,
    "_mypyc": 0,
    "config": 0,
    "segment": 0,
    "kcp": 0,
    "_kcptypes": 0,
    "gf256": 0,
    "fec": 0,
    "crypt": 0,
    "_fastcrypt": 0,
    "_cfb": 0,
    "_twofish": 0,
    "_sm4": 0,
    "_tea": 0,
    "codec": 0,
    "stats": 0,
    "inbound": 0,
    "replay": 0,
    "smux_frames": 0,
    "snappy": 0,
    "_accel": 0,
    # 1: threads and sockets, bottom
    "updater": 1,
    "_mmsg": 1,
    "transport": 1,
    "relay": 1,
    # 2..5: the session layer and the socket API on top of it
    "session": 2,
    "listener": 3,
    "sock": 4,
    "socketserver": 5,
    "smux": 5,
    "tls": 5,
    # 6: the public API; 7: the command line
    "__init__": 6,
    "cli": 7,
    "__main__": 7,
}
LAYER_NAMES = {
    0: "pure",
    1: "I/O base",
    2: "session",
    3: "listener",
    4: "socket API",
    5: "servers",
    6: "public API",
    7: "CLI",
}
#: What pure modules must not import from the standard library.
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
    "multiprocessing",
    "concurrent",
}


def module_key(package: Path, path: Path) -> str:
    """The :data:`LAYERS` key of a source file of the package."""
    rel = path.relative_to(package)
    if len(rel.parts) > 1:
        return rel.parts[0]
    return rel.stem


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the nodes under ``if TYPE_CHECKING:`` blocks."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", "")
            if name == "TYPE_CHECKING":
                for child in node.body:
                    skip.update(id(n) for n in ast.walk(child))
    return skip


def imports(tree: ast.AST) -> list[tuple[int, int, str, list[str]]]:
    """Every runtime import: (line, relative level, module, imported names)."""
    skip = _type_checking_nodes(tree)
    found: list[tuple[int, int, str, list[str]]] = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.extend((node.lineno, 0, alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names = [alias.name for alias in node.names]
            found.append((node.lineno, node.level, node.module or "", names))
    return found


def targets(package: Path, key: str, level: int, module: str, names: list[str]) -> list[str]:
    """The kcpsock modules (LAYERS keys) an import statement reaches; [] for others."""
    if level == 0:
        parts = module.split(".")
        if parts[0] != package.name:
            return []
        return [parts[1] if len(parts) > 1 else "__init__"]
    in_cli = key == "cli"
    top_level = (level == 1 and not in_cli) or (level == 2 and in_cli)
    if not top_level:
        return ["cli"]  # relative import inside kcpsock/cli/
    if module:
        return [module.split(".")[0]]
    # "from . import x": x is a module if it has a file, else a name of __init__
    return [
        n if (package / f"{n}.py").exists() or (package / n).is_dir() else "__init__" for n in names
    ]


def check(package: Path) -> list[str]:
    """Return the violations found in the package directory."""
    problems: list[str] = []
    for path in sorted(package.rglob("*.py")):
        key = module_key(package, path)
        layer = LAYERS.get(key)
        if layer is None:
            problems.append(
                f"{path}: module {key!r} is not on the layer map; add it to LAYERS in "
                f"tools/check_layers.py (and to docs/ARCHITECTURE.md)"
            )
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for line, level, module, names in imports(tree):
            if level == 0 and layer == 0 and module.split(".")[0] in FORBIDDEN_STDLIB:
                problems.append(f"{path}:{line}: pure module imports {module}")
                continue
            for target in targets(package, key, level, module, names):
                if target == key:
                    continue
                to = LAYERS.get(target)
                if to is None:
                    problems.append(f"{path}:{line}: imports {target!r}, not on the layer map")
                elif to > layer:
                    problems.append(
                        f"{path}:{line}: {LAYER_NAMES[layer]} module {key!r} imports "
                        f"{LAYER_NAMES[to]} module {target!r} (imports must point down)"
                    )
    return problems


def main() -> int:
    """Check kcpsock/ and print the violations; returns the exit status."""
    package = Path(__file__).resolve().parent.parent / "kcpsock"
    problems = check(package)
    for p in problems:
        print(p)
    if not problems:
        print(f"layer check: {len(LAYER_NAMES)} layers, every import points down")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
