"""What the mypyc-compiled modules need from mypyc, with no runtime dependency on it.

kcpsock's hot modules may be compiled with mypyc (an optional build step; the
pure-Python sources are the fallback and behave the same).  This module is
never compiled itself, so that:

- :func:`mypyc_attr` is ``mypy_extensions.mypyc_attr`` for the type checker
  and for mypyc (which recognises the decorator by that name), and a no-op
  decorator at run time when ``mypy_extensions`` is not installed;
- :class:`Weakrefable` is an ordinary (interpreted) class: a compiled class
  deriving from it can be weakly referenced (a compiled class cannot be
  otherwise; the updater and the live-object registries hold weak
  references to sessions and listeners).  In pure Python it changes nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, TypeVar

__all__ = ["Weakrefable", "mypyc_attr"]

_T = TypeVar("_T")

if TYPE_CHECKING:
    from mypy_extensions import mypyc_attr
else:
    try:
        from mypy_extensions import mypyc_attr
    except ImportError:  # a runtime without mypy: the decorator does nothing

        def mypyc_attr(*attrs: Any, **kwattrs: Any) -> Callable[[_T], _T]:
            """Do nothing: mypyc's class and function options matter only to mypyc."""
            return lambda x: x


class Weakrefable:
    """A base class that gives a mypyc-compiled subclass weak-reference support.

    Must stay without ``__slots__`` (mypyc refuses compiled classes whose
    interpreted base declares slots); its compiled subclasses get a
    ``__weakref__`` slot from mypyc because their base is interpreted.
    """
