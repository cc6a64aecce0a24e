"""Type stub of kcpsock._udpio, the optional C helper of kcpsock._mmsg (source: _udpio.c).

``recvmmsg``/``sendmmsg`` batches with the per-datagram work in C, the GIL
released around each system call.  Reach it through
``kcpsock._accel.native("_udpio")``, which is None when the extension is not
built or ``KCPSOCK_PURE`` is set.
"""

from collections.abc import Callable, Sequence
from typing import Any, Optional, Union

_Bytes = Union[bytes, bytearray, memoryview]

def recv(
    fd: int,
    size: int,
    batch: int,
    want: int,
    keylen: int,
    out: Any,
    peer: Any,
    cache: dict[bytes, Any],
    resolve: Callable[[bytes], Any],
    wait: int = 0,
    /,
) -> None:
    """Append up to ``want`` ``(datagram, address)`` pairs read with ``recvmmsg`` to ``out``.

    ``batch`` datagrams per call, each truncated to ``size`` bytes; the
    address is ``peer`` unless None, else ``cache[key]`` or ``resolve(key)``
    for the first ``keylen`` bytes of the source's C sockaddr.  EAGAIN ends
    the read; other errors raise the ``OSError`` subclass ``recvfrom`` would.
    With a true ``wait`` the first call blocks (``MSG_WAITFORONE``, a
    blocking socket) until a datagram arrives.  The buffers come from a
    small free list, so a call that reads nothing allocates nothing.
    """

def send(fd: int, packets: Sequence[_Bytes], name: Optional[bytes], /) -> tuple[int, int]:
    """``sendmmsg`` ``packets`` to the C sockaddr ``name`` (None: connected): (sent, bytes)."""

def send_now(fd: int, packet: _Bytes, name: Optional[bytes], /) -> int:
    """``sendto`` one datagram with ``MSG_DONTWAIT``, the GIL held.

    Returns the bytes sent; -1 if it would block (send it the waiting way),
    -2 if refused (``ECONNREFUSED``, ``EINTR``: skipped), -3 on another
    error (the socket closed: give up, as kcp-go ignores write errors).
    """

def send_to(
    fd: int,
    packets: Sequence[_Bytes],
    remotes: Sequence[Any],
    cache: dict[Any, bytes],
    resolve: Callable[[Any], Optional[bytes]],
    /,
) -> Optional[bytearray]:
    """``send_each`` to Python addresses, each one's C sockaddr looked up in C.

    ``remotes[i]``'s sockaddr is ``cache[remotes[i]]`` or
    ``resolve(remotes[i])``; None (nothing sent) if one resolves to None.
    """

def send_each(fd: int, packets: Sequence[_Bytes], names: Optional[Sequence[bytes]], /) -> bytearray:
    """``sendmmsg`` ``packets[i]`` to ``names[i]`` (None: connected); one flag per datagram."""

def gil_stats(reset: bool = False, /) -> Optional[dict[str, list[int]]]:
    """Diagnostics: the GIL around this module's system calls, or None.

    Counted only when ``KCPSOCK_UDPIO_GILSTAT`` is set at import.  Per kind
    (``wait``: a recv that blocks, ``nowait``: a read-ahead, ``send``):
    ``[calls, ns in the calls, ns from the call's return to holding the GIL
    again, the longest of those, how many > 1 ms, how many > 5 ms]``.  A true
    ``reset`` zeroes the counts after reading them.
    """
