"""Two helper types of :mod:`kcpsock.kcp`, kept out of the compiled core.

``kcp.py`` is compiled with mypyc when kcpsock is built with it (see the
README, "Compiled core"); mypyc cannot compile a subclass of ``int``
(:class:`_NoDelay`), and :class:`Segment` is a typing-only description of a
plain list.  This module always runs interpreted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Protocol, Union, overload

if TYPE_CHECKING:
    from .kcp import KCP

__all__ = ["Segment"]

#: A payload: bytes, or a view into immutable bytes (message fragments).
_Buf = Union[bytes, bytearray, memoryview]


class Segment(Protocol):
    """A segment of ``KCP.snd_buf``: a plain list at run time, typed field by field here.

    Index it with the names :data:`kcpsock.kcp.SN` .. :data:`kcpsock.kcp.ACKED`.
    """

    @overload
    def __getitem__(self, i: Literal[0, 1, 3, 4, 5, 6, 7]) -> int: ...
    @overload
    def __getitem__(self, i: Literal[2]) -> _Buf: ...
    @overload
    def __getitem__(self, i: Literal[8]) -> bool: ...
    @overload
    def __setitem__(self, i: Literal[0, 1, 3, 4, 5, 6, 7], value: int) -> None: ...
    @overload
    def __setitem__(self, i: Literal[2], value: _Buf) -> None: ...
    @overload
    def __setitem__(self, i: Literal[8], value: bool) -> None: ...


class _NoDelay(int):
    """The nodelay mode as an int that can also be called like kcp-go ``NoDelay``.

    kcp-go names both the field and (in ikcp) the setter ``nodelay``; this
    keeps ``kcp.nodelay == 1`` and ``kcp.nodelay(1, 10, 2, 1)`` both working.
    """

    _kcp: KCP

    def __new__(cls, value: int, kcp: KCP) -> _NoDelay:
        obj = super().__new__(cls, value)
        obj._kcp = kcp
        return obj

    def __call__(self, nodelay: int, interval: int, resend: int, nc: int) -> None:
        """Set the profile; see :meth:`KCP.set_nodelay`."""
        self._kcp.set_nodelay(nodelay, interval, resend, nc)
