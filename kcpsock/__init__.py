"""kcpsock: KCP for Python, wire-compatible with kcp-go, with a socket API.

(The public API is imported lazily while the package is being assembled; the
final version imports it eagerly.)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    # pure layers
    "KCP": "kcp",
    "BlockCrypt": "crypt",
    "new_block_crypt": "crypt",
    "derive_key": "crypt",
    "CIPHERS": "crypt",
    "PacketCodec": "codec",
    "KCPConfig": "config",
    "Snmp": "stats",
    "snmp": "stats",
    # errors
    "KCPError": "errors",
    "PacketError": "errors",
    "KCPTimeoutError": "errors",
    "KCPBlockingIOError": "errors",
    "KCPConnectionResetError": "errors",
    "KCPClosedError": "errors",
    # I/O layers
    "KCPSocket": "sock",
    "Listener": "sock",
    "dial": "sock",
    "listen": "sock",
    "create_connection": "sock",
    "create_server": "sock",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'kcpsock' has no attribute {name!r}")
    value = getattr(importlib.import_module("." + module, __name__), name)
    globals()[name] = value
    return value
