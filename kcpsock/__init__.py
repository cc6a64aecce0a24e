"""kcpsock: KCP for Python, wire-compatible with kcp-go, with a socket API.

KCP is a reliable, ordered ARQ protocol over UDP that trades some bandwidth
for far lower latency than TCP on lossy links.  kcpsock speaks kcp-go's wire
format (KCP, Reed-Solomon FEC, every kcp-go cipher), so it talks to kcp-go
and kcptun peers.

Quick start::

    import kcpsock
    block = kcpsock.new_block_crypt("aes", kcpsock.derive_key("secret"))
    server = kcpsock.listen(("127.0.0.1", 0), block=block, data_shards=10, parity_shards=3)
    client = kcpsock.dial(server.getsockname(), block=block, data_shards=10, parity_shards=3)
    client.sendall(b"hi")
    conn, addr = server.accept()
    conn.recv(1024)                     # b'hi'

The objects :func:`dial` and :func:`listen` return behave like
:class:`socket.socket`.  Layers, from the bottom: :class:`KCP` (the sans-io
state machine), :mod:`kcpsock.fec` and :mod:`kcpsock.crypt` (kcp-go's packet
layer), :class:`PacketCodec` (the datagram pipeline), :mod:`kcpsock.inbound`
(the pure receive pipeline and routing), :mod:`kcpsock.transport` (UDP socket
and receiver threads), :mod:`kcpsock.session` and :mod:`kcpsock.listener`
(sessions and the listener engine), :mod:`kcpsock.sock` (the socket API),
:mod:`kcpsock.socketserver`; :mod:`kcpsock.smux` adds kcptun's stream
multiplexer over a session.
"""

from __future__ import annotations

# first, so KCPSOCK_PURE=1 (or a stale build) loads the compiled modules from their sources
from ._accel import compiled_modules, native_modules  # isort: skip
from . import smux, socketserver
from .codec import PacketCodec
from .config import KCPConfig
from .crypt import CIPHERS, BlockCrypt, derive_key, new_block_crypt
from .errors import (
    KCPBlockingIOError,
    KCPClosedError,
    KCPConnectionRefusedError,
    KCPConnectionResetError,
    KCPError,
    KCPTimeoutError,
    PacketError,
)
from .kcp import KCP
from .sock import KCPSocket, Listener, create_connection, create_server, dial, listen
from .stats import Snmp, snmp

__version__ = "0.1.0"

__all__ = [
    "CIPHERS",
    "KCP",
    "BlockCrypt",
    "KCPBlockingIOError",
    "KCPClosedError",
    "KCPConfig",
    "KCPConnectionRefusedError",
    "KCPConnectionResetError",
    "KCPError",
    "KCPSocket",
    "KCPTimeoutError",
    "Listener",
    "PacketCodec",
    "PacketError",
    "Snmp",
    "compiled_modules",
    "create_connection",
    "create_server",
    "derive_key",
    "dial",
    "listen",
    "native_modules",
    "new_block_crypt",
    "smux",
    "snmp",
    "socketserver",
]
