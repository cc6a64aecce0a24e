"""Every reference to a protocol note (docs/KCP.md §N ...) resolves."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NOTE = re.compile(r"\b((?:docs/)?[A-Z][A-Z-]*\.md)(?:,? (?:§ ?|section )?(\d+)(?:\.\d+)?\b)?")
KNOWN_ELSEWHERE = {"README.md", "BENCHMARKS.md", "VECTORS.md"}


def references() -> list[tuple[str, str, str]]:
    """(where, note, section) for every reference in the package, tests and tools."""
    found = []
    for top in ("kcpsock", "tests", "tools", "docs"):
        for path in sorted((ROOT / top).rglob("*")):
            if path.suffix not in (".py", ".md") or ".venv" in path.parts:
                continue
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                for m in NOTE.finditer(line):
                    found.append((f"{path.relative_to(ROOT)}:{n}", m.group(1), m.group(2) or ""))
    return found


def test_references_resolve() -> None:
    refs = references()
    assert any(note == "docs/KCP.md" for _, note, _ in refs)  # the pattern finds them
    bad = []
    for where, note, section in refs:
        name = note.split("/")[-1]
        if name in KNOWN_ELSEWHERE:
            assert (ROOT / name).exists() or name == "VECTORS.md", where
            continue
        path = ROOT / "docs" / name
        in_docs = where.startswith("docs/")  # docs/ links to its neighbours by name
        if not (note.startswith("docs/") or in_docs) or not path.exists():
            bad.append(f"{where}: {note} (write docs/{name})")
            continue
        if section and not re.search(
            rf"^## {section}\. ", path.read_text(encoding="utf-8"), re.MULTILINE
        ):
            bad.append(f"{where}: {note} has no section {section}")
    assert bad == []
