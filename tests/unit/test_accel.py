"""The compiled core (mypyc): what setup.py compiles, the KCPSOCK_PURE switch, stale builds.

The rest of the suite runs against whichever form is installed (``make
test`` requires the compiled one, ``make compat`` runs the pure one), and
tests/property/test_compiled_core.py compares the two directly.
"""

from __future__ import annotations

import ast
import copy
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

import kcpsock
from kcpsock import _accel
from kcpsock.codec import PacketCodec
from kcpsock.fec import FECDecoder, FECEncoder
from kcpsock.gf256 import ReedSolomon
from kcpsock.kcp import KCP

ROOT = Path(__file__).resolve().parents[2]


def _setup_compiled() -> list[str]:
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "COMPILED":
            value = ast.literal_eval(node.value)
            assert isinstance(value, list)
            return [str(v) for v in value]
    raise AssertionError("setup.py has no COMPILED list")


def test_setup_compiles_exactly_the_compilable_modules() -> None:
    assert _setup_compiled() == [f"kcpsock/{name}.py" for name in _accel.COMPILABLE]


def test_make_test_runs_the_compiled_core() -> None:
    if os.environ.get("KCPSOCK_REQUIRE_COMPILED") != "1" or _accel.pure_requested():
        pytest.skip("KCPSOCK_REQUIRE_COMPILED=1 not set (make test sets it)")
    assert kcpsock.compiled_modules() == _accel.COMPILABLE, (
        "the compiled core did not build or is stale: run `make compiled` and read its"
        " warnings (it needs a C compiler and the Python headers)"
    )


def _compiled_in_child(env: dict[str, str]) -> str:
    code = "import kcpsock; print(','.join(kcpsock.compiled_modules()))"
    out = subprocess.run(
        [sys.executable, "-W", "error::RuntimeWarning", "-c", code],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return out.stdout.strip()


def test_pure_switch_loads_every_source() -> None:
    assert _compiled_in_child({"KCPSOCK_PURE": "1"}) == ""


def test_pure_switch_zero_means_unset() -> None:
    expected = ",".join(kcpsock.compiled_modules()) if not _accel.pure_requested() else None
    if expected is None:
        pytest.skip("this run has KCPSOCK_PURE set")
    assert _compiled_in_child({"KCPSOCK_PURE": "0"}) == expected


def _fake_tree(root: Path, *, checkout: bool) -> tuple[Path, Path]:
    """A package dir with kcp.py (newer) beside its extension (older), in ``root``."""
    import importlib.machinery

    package = root / "kcpsock"
    package.mkdir()
    if checkout:
        (root / "setup.py").write_text("")
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    (package / "kcp.py").write_text("")
    built = package / f"kcp{suffix}"
    built.write_bytes(b"")
    os.utime(built, (1000, 1000))
    os.utime(package / "kcp.py", (2000, 2000))
    (package / "segment.py").write_text("")  # never compiled: not stale
    return package, built


def test_stale_extension_is_detected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package, built = _fake_tree(tmp_path, checkout=True)
    monkeypatch.setattr(_accel, "_HERE", str(package))
    assert _accel.stale_modules() == ["kcp"]
    os.utime(built, (3000, 3000))
    assert _accel.stale_modules() == []


def test_installed_package_is_never_stale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # pip writes a wheel's files in its own order, stamped with the time it writes
    # them: a .py written after its extension says nothing (was: every installed
    # wheel ran pure, with a warning telling the user to run `make compiled`)
    package, _ = _fake_tree(tmp_path, checkout=False)
    monkeypatch.setattr(_accel, "_HERE", str(package))
    assert _accel.stale_modules() == []


def test_protocol_objects_refuse_copy_and_pickle_in_both_forms() -> None:
    for obj in (KCP(1), FECEncoder(3, 2), FECDecoder(3, 2), ReedSolomon(3, 2), PacketCodec(None)):
        for op in (copy.copy, copy.deepcopy, pickle.dumps):
            with pytest.raises(TypeError, match=r"cannot pickle .* object: create a new one"):
                op(obj)
