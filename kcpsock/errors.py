"""The kcpsock exception tree.

Every exception kcpsock raises on its own account derives from
:class:`KCPError`, itself an :class:`OSError`, so code written for sockets
(``except OSError``) keeps working.  The leaves also derive from the builtin
exception a socket would raise in the same situation, so ``except
TimeoutError`` or ``except BlockingIOError`` work unchanged.

Invariant: this module imports nothing from kcpsock.
"""

from __future__ import annotations

import errno as _errno

__all__ = [
    "KCPBlockingIOError",
    "KCPClosedError",
    "KCPConnectionRefusedError",
    "KCPConnectionResetError",
    "KCPError",
    "KCPTimeoutError",
    "PacketError",
]


class KCPError(OSError):
    """Base class of every kcpsock error (an :class:`OSError`)."""


class PacketError(KCPError):
    """A datagram was malformed, forged, or not for us.

    Raised only by the pure decoders (KCP core, FEC, ciphers, codec).  The
    decoder's state is left as it was before the call.  The session layer
    counts the error under :attr:`counter` and drops the datagram.

    Attributes:
        reason: a short human-readable description ("bad CRC", ...).
        counter: the name of the kcp-go SNMP counter this drop is counted
            under (``"InErrs"``, ``"InCsumErrors"``, ``"KCPInErrors"`` or
            ``"FECErrs"``).
    """

    def __init__(self, reason: str, counter: str = "InErrs") -> None:
        super().__init__(reason)
        self.reason = reason
        self.counter = counter

    def __str__(self) -> str:
        return self.reason

    def __reduce__(self) -> tuple[type[PacketError], tuple[str, str]]:
        return (type(self), (self.reason, self.counter))


class KCPTimeoutError(KCPError, TimeoutError):
    """A blocking call ran past the socket's timeout (like ``socket.timeout``)."""

    def __init__(self, message: str = "timed out") -> None:
        super().__init__(message)


class KCPBlockingIOError(KCPError, BlockingIOError):
    """A non-blocking call could not complete at once (errno EAGAIN)."""

    def __init__(self, message: str = "Resource temporarily unavailable") -> None:
        super().__init__(_errno.EAGAIN, message)


class KCPConnectionResetError(KCPError, ConnectionResetError):
    """The link is dead: a segment was sent ``dead_link`` times unacknowledged."""

    def __init__(self, message: str = "KCP link is dead (peer unreachable)") -> None:
        super().__init__(_errno.ECONNRESET, message)


class KCPConnectionRefusedError(KCPError, ConnectionRefusedError):
    """Nothing answers at the peer's address (ICMP port unreachable)."""

    def __init__(self, message: str = "Connection refused (ICMP port unreachable)") -> None:
        super().__init__(_errno.ECONNREFUSED, message)


class KCPClosedError(KCPError):
    """The session or listener is closed (errno EBADF, as a closed socket)."""

    def __init__(self, message: str = "Bad file descriptor") -> None:
        super().__init__(_errno.EBADF, message)
