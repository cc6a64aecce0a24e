r"""TLS over a KCP session: ``ssl.SSLObject`` with memory BIOs.

``ssl.SSLContext.wrap_socket`` needs a real kernel socket (it hands the
descriptor to OpenSSL), so it cannot wrap a :class:`kcpsock.KCPSocket`.  The
standard library's other TLS engine works with anything that moves bytes:
an ``SSLObject`` reads and writes two ``MemoryBIO`` buffers, and this module
pumps them through the KCP session::

    import ssl, kcpsock
    from kcpsock.tls import TLSSocket

    ctx = ssl.create_default_context()          # client side
    ctx.load_verify_locations("server-cert.pem")
    with TLSSocket(kcpsock.create_connection(("example", 4433)), ctx,
                   server_hostname="example") as tls:
        tls.sendall(b"GET / HTTP/1.0\r\n\r\n")
        print(tls.recv(65536))

    # server side: TLSSocket(conn, server_ctx, server_side=True) on an accepted socket

Invariants:

* blocking only, with the wrapped socket's timeout on each network wait;
* TLS records are written with ``sendall`` as soon as OpenSSL produces them;
  what OpenSSL needs is read with ``recv``; nothing is buffered here beyond
  the two BIOs;
* ``recv`` returns b"" at the end of the TLS stream (close_notify) and when
  the session ends without one (a KCP peer that vanished), as ``SSLSocket``
  with ``suppress_ragged_eofs``.
"""

from __future__ import annotations

import ssl
from typing import Any, Callable, Optional, TypeVar

__all__ = ["TLSSocket"]

_T = TypeVar("_T")

#: Bytes read from the KCP session per network read.
READ_SIZE = 65536


class TLSSocket:
    """A TLS connection over a connected :class:`kcpsock.KCPSocket` (or any socket).

    Args:
        sock: the connected socket carrying the TLS records.
        context: an ``ssl.SSLContext`` (client or server).
        server_side: True on the accepting side.
        server_hostname: the name to check the certificate against (client).
        do_handshake: run the handshake now (else on first use or with
            :meth:`do_handshake`).

    Raises:
        ssl.SSLError: the handshake failed (e.g. certificate verification).
        OSError: the session failed or timed out.
    """

    def __init__(
        self,
        sock: Any,
        context: ssl.SSLContext,
        *,
        server_side: bool = False,
        server_hostname: Optional[str] = None,
        do_handshake: bool = True,
    ) -> None:
        self.sock = sock
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._obj = context.wrap_bio(
            self._incoming, self._outgoing, server_side=server_side, server_hostname=server_hostname
        )
        if do_handshake:
            self.do_handshake()

    def _flush(self) -> None:
        data = self._outgoing.read()
        if data:
            self.sock.sendall(data)

    def _run(self, op: Callable[..., _T], *args: Any) -> _T:
        """Run an SSLObject operation, moving records until it completes."""
        while True:
            try:
                result = op(*args)
            except ssl.SSLWantReadError:
                self._flush()
                data = self.sock.recv(READ_SIZE)
                if data:
                    self._incoming.write(data)
                else:
                    self._incoming.write_eof()
                continue
            self._flush()
            return result

    def do_handshake(self) -> None:
        """Run the TLS handshake (blocking).

        Raises:
            ssl.SSLError: the peer's certificate or protocol was refused.
        """
        self._run(self._obj.do_handshake)

    def recv(self, bufsize: int) -> bytes:
        """Return up to ``bufsize`` decrypted bytes; b"" at the end of the stream."""
        if bufsize <= 0:
            return b""
        try:
            return self._run(self._obj.read, bufsize)
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            return b""

    def send(self, data: Any) -> int:
        """Encrypt and send (part of) ``data``; returns how many bytes were taken."""
        return self._run(self._obj.write, data)

    def sendall(self, data: Any) -> None:
        """Encrypt and send all of ``data``."""
        view = memoryview(data).cast("B")
        while view:
            n = self.send(view)
            view = view[n:]

    def unwrap(self) -> Any:
        """Send close_notify and return the underlying socket.

        The peer's own close_notify is not waited for (a one-way shutdown,
        which TLS 1.3 allows): the peer's :meth:`recv` returns b"".
        """
        try:
            self._obj.unwrap()
        except (ssl.SSLWantReadError, ssl.SSLZeroReturnError, ssl.SSLEOFError):
            pass
        self._flush()
        return self.sock

    def close(self) -> None:
        """Close the underlying socket (without a TLS shutdown; see :meth:`unwrap`)."""
        self.sock.close()

    def settimeout(self, value: Optional[float]) -> None:
        """Set the timeout of the underlying socket."""
        self.sock.settimeout(value)

    def version(self) -> Optional[str]:
        """The negotiated protocol, e.g. "TLSv1.3"."""
        return self._obj.version()

    def cipher(self) -> Optional[tuple[str, str, int]]:
        """The negotiated cipher suite (name, protocol, secret bits)."""
        return self._obj.cipher()

    def getpeercert(self, binary_form: bool = False) -> Any:
        """The peer's certificate (as ``SSLSocket.getpeercert``)."""
        return self._obj.getpeercert(binary_form)

    def __enter__(self) -> TLSSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<kcpsock.tls.TLSSocket {self.version()} over {self.sock!r}>"
