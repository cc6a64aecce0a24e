"""Helpers shared by the integration and interop tests (bounded in time)."""

from __future__ import annotations

import contextlib
import functools
import socket
import threading
import time
from collections.abc import Iterator
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from kcpsock.session import Session


def kcp_datagrams(delivery: Any) -> list[bytes]:
    """A ``kcpsock.inbound.Delivery``'s regular KCP datagrams without the ``skip`` bytes in front."""
    return [dg[delivery.skip :] for dg in delivery.datagrams]


@functools.cache
def has_ipv6_loopback() -> bool:
    """Whether this machine can bind a UDP socket on ``::1`` (for skipping IPv6 tests)."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def wait_until(pred: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll ``pred`` until it is true or ``timeout`` seconds passed; return its last value."""
    end = time.monotonic() + timeout
    ev = threading.Event()
    while time.monotonic() < end:
        if pred():
            return True
        ev.wait(0.005)
    return pred()


def echo_roundtrip(sock: Any, data: bytes, chunk: int = 4096, timeout: float = 30.0) -> bytes:
    """Send ``data`` from a writer thread while reading the echo; return what came back.

    The caller's socket timeout bounds each ``recv``; the writer is joined for at
    most ``timeout`` seconds and any exception it raised fails the test.
    """
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for i in range(0, len(data), chunk):
                sock.sendall(data[i : i + chunk])
        except BaseException as exc:  # reported below
            errors.append(exc)

    w = threading.Thread(target=writer, daemon=True)
    w.start()
    got = bytearray()
    while len(got) < len(data):
        piece = sock.recv(65536)
        assert piece, "unexpected EOF"
        got += piece
    w.join(timeout)
    assert not errors, errors
    return bytes(got)


def server_address(server: Any) -> tuple[str, int]:
    """The (host, port) a socketserver-style server listens on, typed."""
    host, port = server.server_address[:2]
    return str(host), int(port)


def recv_exact(sock: Any, n: int) -> bytes:
    """Read exactly ``n`` bytes from ``sock``; an early EOF fails the test."""
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        assert chunk, f"EOF after {len(buf)} of {n} bytes"
        buf += chunk
    return bytes(buf)


def load_tool(tool: str, module_name: str = "") -> ModuleType:
    """``tools/<tool>.py`` as a module, registered in ``sys.modules`` as
    ``module_name`` (default ``tool``): tools/ is not a package.
    """
    import importlib.util
    import sys
    from pathlib import Path

    name = module_name or tool
    path = Path(__file__).resolve().parents[1] / "tools" / f"{tool}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def is_compiled(module: ModuleType) -> bool:
    """True if ``module`` is an extension (a mypyc build): its classes' methods cannot be patched."""
    return not (module.__file__ or "").endswith(".py")


#: kcp-go's fast profile as KCPConfig options (nodelay 1, interval 10, resend 2, nc).
FAST: dict[str, Any] = {"nodelay": 1, "interval": 10, "resend": 2, "nc": True}


@contextlib.contextmanager
def unstarted_session(conv: int, **options: Any) -> Iterator[tuple[Session, socket.socket]]:
    """A Session that is never started (no updater tick) and the UDP socket it sends to.

    Both sockets are on 127.0.0.1 and closed on leaving; the peer's reads time
    out after 5 s.  ``options`` go to ``KCPConfig`` on top of :data:`FAST`.
    """
    from kcpsock.config import KCPConfig
    from kcpsock.session import Session
    from kcpsock.transport import Transport

    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        peer.bind(("127.0.0.1", 0))
        peer.settimeout(5)
        sock.bind(("127.0.0.1", 0))
        transport = Transport(sock, owned=False, connected=False)
        yield Session(conv, peer.getsockname(), transport, KCPConfig(**FAST, **options)), peer
    finally:
        sock.close()
        peer.close()
