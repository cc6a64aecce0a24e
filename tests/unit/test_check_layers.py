"""tools/check_layers.py finds what it should, on small fake packages."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import load_tool

ROOT = Path(__file__).resolve().parents[2]


def make_package(tmp_path: Path, files: dict[str, str]) -> Path:
    package = tmp_path / "kcpsock"
    for name, text in files.items():
        path = package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return package


def test_real_package_passes() -> None:
    tool = load_tool("check_layers")
    assert tool.check(ROOT / "kcpsock") == []


def test_violations_are_found(tmp_path: Path) -> None:
    tool = load_tool("check_layers")
    package = make_package(
        tmp_path,
        {
            "__init__.py": "from .sock import x\n",
            "kcp.py": "import time\nfrom .session import S\n",
            "config.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
            "    from .session import S\n",
            "transport.py": "from . import listener\n",
            "listener.py": "from .session import S\n",
            "session.py": "from .transport import T\nimport kcpsock.sock\n",
            "sock.py": "from kcpsock.cli import main\n",
            "newthing.py": "",
            "cli/__init__.py": "from . import common\nfrom .. import sock\n",
            "cli/common.py": "import kcpsock\n",
        },
    )
    problems = "\n".join(tool.check(package))
    assert "kcp.py:1: pure module imports time" in problems
    assert "kcp.py:2: pure module 'kcp' imports session module 'session'" in problems
    assert "config.py" not in problems  # typing-only import
    assert "transport.py:1: I/O base module 'transport' imports listener module" in problems
    assert "listener.py" not in problems
    assert "session.py:2: session module 'session' imports socket API module 'sock'" in problems
    assert "sock.py:1: socket API module 'sock' imports CLI module 'cli'" in problems
    assert "module 'newthing' is not on the layer map" in problems
    assert "cli/" not in problems and "__init__.py" not in problems
    assert len(problems.splitlines()) == 6
