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


def _readme() -> str:
    return (ROOT / "README.md").read_text(encoding="utf-8")


def test_readme_layers_table_lists_every_module() -> None:
    """The README's Layers table names every public module, and nothing that is gone."""
    text = _readme()
    table = text[text.index("## Layers") : text.index("`tools/check_layers.py`")]
    listed = set(re.findall(r"`kcpsock\.(\w+)`", table))
    modules = {
        p.stem if p.is_file() else p.name
        for p in (ROOT / "kcpsock").iterdir()
        if (p.suffix == ".py" or (p / "__init__.py").exists()) and not p.name.startswith("_")
    }
    assert listed == modules


def test_readme_security_and_defaults_figures() -> None:
    """The figures the README quotes for KCPConfig defaults are the code's."""
    from kcpsock.config import KCPConfig
    from kcpsock.socketserver import ThreadingKCPServer

    c = KCPConfig()
    text = " ".join(_readme().split())
    assert f"`max_threads` handlers ({ThreadingKCPServer.max_threads};" in text
    assert f"`close_grace` ({ThreadingKCPServer.close_grace:.0f} s)" in text
    for phrase in (
        f"replay_cache` nonces ({c.replay_cache:,};",
        f"replay_window` seconds ({c.replay_window:.0f})",
        f"max_sessions_per_address` ({c.max_sessions_per_address})",
        f"backlog_per_address` ({c.backlog_per_address})",
        f"accept_timeout` seconds ({c.accept_timeout:.0f})",
        f"pending_rcvwnd` segments ({c.pending_rcvwnd},",
        f"`backlog` ({c.backlog})",
        f"`max_sessions` ({c.max_sessions})",
        f"blacklist_ttl` ({c.blacklist_ttl:.0f} s)",
        f"| {c.sndwnd} / {c.rcvwnd} | 32 / 32 |",
        f"`close_timeout` {c.close_timeout:.0f} s",
        f"probe after {c.keepalive_interval:.0f} s of silence,"
        f" dead after {c.keepalive_timeout:.0f} s",
        f"over max({c.gone_timeout:g} s, 8 answer times) (`gone_timeout`)",
        f"max(`gone_timeout` ({c.gone_timeout:g} s), 8 answer times)",
    ):
        assert phrase in text, phrase
