"""The compiled core: which modules mypyc compiled, and the ``KCPSOCK_PURE`` switch.

kcpsock is pure Python.  When it is built with mypyc (``setup.py`` does this
whenever mypyc and a C compiler are available, see the README, "Compiled
core"), the modules named in :data:`COMPILABLE` are also compiled to C
extensions from the same sources; Python imports an extension in preference
to the ``.py`` file beside it.  Nothing else differs: the tests run against
both forms.

``KCPSOCK_PURE=1`` in the environment, when :mod:`kcpsock` is first
imported, makes this process load the ``.py`` sources of those modules even
where the extensions exist (to compare the two, or to debug with pdb).

In a source checkout (an in-place build, ``pip install -e``), a source
edited after it was compiled would otherwise be shadowed by its stale
extension: then all of them load from their sources, with a
:class:`RuntimeWarning` that says how to rebuild (``make compiled``).  An
installed package (a wheel, an sdist) is never judged stale: its sources and
extensions come from one build, and an installer stamps the files with the
time it wrote them, so their times say nothing about their order.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import warnings
from collections.abc import Sequence
from types import ModuleType
from typing import Optional

__all__ = [
    "COMPILABLE",
    "NATIVE",
    "compiled_modules",
    "native",
    "native_modules",
    "pure_requested",
    "stale_modules",
]

#: The modules ``setup.py`` compiles (a unit test keeps the two lists equal).
COMPILABLE: tuple[str, ...] = (
    "segment",
    "kcp",
    "inbound",
    "gf256",
    "fec",
    "codec",
    "replay",
    "updater",
    "transport",
    "session",
    "listener",
)

#: The hand-written C helpers ``setup.py`` builds beside them (its NATIVE; a
#: unit test keeps the two equal).  Each speeds up one inner loop, and its
#: caller keeps a pure-Python path for when :func:`native` returns None.
NATIVE: tuple[str, ...] = ("_cfbc", "_gfsimd", "_udpio")

_PACKAGE = __name__.rpartition(".")[0]
_HERE = os.path.dirname(os.path.abspath(__file__))


def pure_requested() -> bool:
    """Whether ``KCPSOCK_PURE`` asks for the pure-Python sources (set and not ``0``)."""
    return os.environ.get("KCPSOCK_PURE", "") not in ("", "0")


class _PureSources(importlib.abc.MetaPathFinder):
    """Finds the ``.py`` source of each compilable module before the extension is found."""

    def find_spec(
        self,
        fullname: str,
        path: Optional[Sequence[str]],
        target: Optional[ModuleType] = None,
    ) -> Optional[importlib.machinery.ModuleSpec]:
        package, _, name = fullname.rpartition(".")
        if package != _PACKAGE or name not in COMPILABLE:
            return None
        source = os.path.join(_HERE, name + ".py")
        loader = importlib.machinery.SourceFileLoader(fullname, source)
        return importlib.util.spec_from_file_location(fullname, source, loader=loader)


def _in_checkout() -> bool:
    """Whether this package runs from a source checkout (``setup.py`` beside the package)."""
    return os.path.isfile(os.path.join(os.path.dirname(_HERE), "setup.py"))


def _newer_than_built(name: str, source_suffix: str) -> bool:
    """Whether ``name``'s source in this package is newer than its extension beside it."""
    source = os.path.join(_HERE, name + source_suffix)
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        built = os.path.join(_HERE, name + suffix)
        try:
            return os.stat(source).st_mtime > os.stat(built).st_mtime
        except OSError:  # no such extension (or no source: an installed wheel)
            continue
    return False


def stale_modules() -> list[str]:
    """The compilable modules whose source is newer than their extension beside it.

    Always empty outside a source checkout (see :func:`_in_checkout`).
    """
    if not _in_checkout():
        return []
    return [name for name in COMPILABLE if _newer_than_built(name, ".py")]


def install_switch() -> None:
    """Load the sources where asked (``KCPSOCK_PURE``) or where the extensions are stale.

    Run when this module is imported, which ``kcpsock/__init__.py`` does first.
    """
    if any(isinstance(f, _PureSources) for f in sys.meta_path):
        return
    if not pure_requested():
        stale = stale_modules()
        if not stale:
            return
        warnings.warn(
            f"kcpsock: {', '.join(s + '.py' for s in stale)} changed since compiled;"
            " running the pure-Python modules (rebuild with `make compiled`"
            " or `pip install -e .`)",
            RuntimeWarning,
            stacklevel=2,
        )
    sys.meta_path.insert(0, _PureSources())


def compiled_modules() -> tuple[str, ...]:
    """The kcpsock modules this process runs compiled (empty: pure Python throughout).

    Example: ``kcpsock.compiled_modules()`` -> ``('segment', 'kcp', 'inbound')``
    after a build with mypyc.
    """
    found = []
    for name in COMPILABLE:
        module = importlib.import_module(f"{_PACKAGE}.{name}")
        spec = module.__spec__
        if spec is not None and isinstance(spec.loader, importlib.machinery.ExtensionFileLoader):
            found.append(name)
    return tuple(found)


#: :func:`native`'s answers, by name (each is looked up, and warned about, once).
_native_cache: dict[str, Optional[ModuleType]] = {}


def native(name: str) -> Optional[ModuleType]:
    """The hand-written C helper ``kcpsock.<name>`` (one of :data:`NATIVE`), or None.

    None when ``KCPSOCK_PURE`` is set, when the helper was not built (no C
    compiler, a pure install, Python 3.9's pure run), or when its ``.c``
    source in a checkout is newer than the build (with a
    :class:`RuntimeWarning` naming ``make compiled``).  The caller then
    takes its pure-Python path, which computes the same bytes.

    Raises:
        ValueError: ``name`` is not in :data:`NATIVE`.
    """
    if name not in NATIVE:
        raise ValueError(f"native: {name!r} is not one of kcpsock's C helpers {NATIVE}")
    if name in _native_cache:
        return _native_cache[name]
    module: Optional[ModuleType] = None
    if pure_requested():
        pass
    elif _in_checkout() and _newer_than_built(name, ".c"):
        warnings.warn(
            f"kcpsock: {name}.c changed since compiled; running its pure-Python"
            " fallback (rebuild with `make compiled` or `pip install -e .`)",
            RuntimeWarning,
            stacklevel=2,
        )
    else:
        try:
            module = importlib.import_module(f"{_PACKAGE}.{name}")
        except ImportError:
            module = None
    _native_cache[name] = module
    return module


def native_modules() -> tuple[str, ...]:
    """The hand-written C helpers this process runs (empty: their Python fallbacks).

    Example: ``kcpsock.native_modules()`` -> ``('_gfsimd',)``.
    """
    return tuple(name for name in NATIVE if native(name) is not None)


install_switch()
