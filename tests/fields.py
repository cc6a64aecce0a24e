"""Every data attribute of an object, for state snapshots in tests (compiled or not)."""

from __future__ import annotations

from typing import Any


def data_fields(obj: object) -> dict[str, Any]:
    """Every data attribute of ``obj`` by name; works where ``vars()`` does not.

    Objects of classes compiled by mypyc (kcpsock/_accel.py) have no
    ``__dict__``.  Methods and other callables are left out; properties are
    included (they are computed from the fields).
    """
    fields: dict[str, Any] = {}
    for name in dir(obj):
        if name.startswith("__"):
            continue
        value = getattr(obj, name)
        if not callable(value):
            fields[name] = value
    return fields
