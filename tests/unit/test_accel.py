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


def _setup_native() -> dict[str, str]:
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", None) == "NATIVE":
            assert node.value is not None
            value = ast.literal_eval(node.value)
            assert isinstance(value, dict)
            return {str(k): str(v) for k, v in value.items()}
    raise AssertionError("setup.py has no NATIVE mapping")


def test_setup_builds_exactly_the_native_helpers() -> None:
    expected = {f"kcpsock.{name}": f"kcpsock/{name}.c" for name in _accel.NATIVE}
    assert _setup_native() == expected
    for source in expected.values():
        assert (ROOT / source).is_file(), source


def test_native_refuses_unknown_names() -> None:
    with pytest.raises(ValueError, match="not one of kcpsock's C helpers"):
        _accel.native("_no_such_helper")


def test_native_helpers_follow_the_pure_switch() -> None:
    code = "import kcpsock; print(','.join(kcpsock.native_modules()))"
    out = subprocess.run(
        [sys.executable, "-W", "error::RuntimeWarning", "-c", code],
        env={**os.environ, "KCPSOCK_PURE": "1"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.strip() == ""


def test_make_test_runs_the_compiled_core() -> None:
    if os.environ.get("KCPSOCK_REQUIRE_COMPILED") != "1" or _accel.pure_requested():
        pytest.skip("KCPSOCK_REQUIRE_COMPILED=1 not set (make test sets it)")
    assert kcpsock.compiled_modules() == _accel.COMPILABLE, (
        "the compiled core did not build or is stale: run `make compiled` and read its"
        " warnings (it needs a C compiler and the Python headers)"
    )
    assert kcpsock.native_modules() == _accel.NATIVE, (
        "a C helper did not build or is stale: run `make compiled` and read its warnings"
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


def test_stale_native_helper_falls_back_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.machinery

    package = tmp_path / "kcpsock"
    package.mkdir()
    (tmp_path / "setup.py").write_text("")
    source, built = (
        package / "_fake.c",
        package / f"_fake{importlib.machinery.EXTENSION_SUFFIXES[0]}",
    )
    source.write_text("")
    built.write_bytes(b"")
    os.utime(built, (1000, 1000))
    os.utime(source, (2000, 2000))
    monkeypatch.setattr(_accel, "_HERE", str(package))
    monkeypatch.setattr(_accel, "NATIVE", ("_fake",))
    monkeypatch.setattr(_accel, "_native_cache", {})
    monkeypatch.delenv("KCPSOCK_PURE", raising=False)
    with pytest.warns(RuntimeWarning, match="_fake.c changed since compiled"):
        assert _accel.native("_fake") is None
    assert _accel.native_modules() == ()  # answered once: no second warning


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
