"""socketserver over KCP: ``KCPServer`` and ``ThreadingKCPServer``.

The standard library's request handlers (``socketserver.BaseRequestHandler``,
``StreamRequestHandler``, ``DatagramRequestHandler`` excepted) run unchanged
over KCP::

    import socketserver
    from kcpsock.socketserver import ThreadingKCPServer

    class Echo(socketserver.StreamRequestHandler):
        def handle(self):
            for line in self.rfile:
                self.wfile.write(line)

    with ThreadingKCPServer(("127.0.0.1", 9000), Echo, config=cfg) as server:
        server.serve_forever()

:class:`KCPServer` plays the part of ``socketserver.TCPServer``: its
``socket`` is a :class:`kcpsock.Listener` (from :func:`kcpsock.listen`),
``get_request`` is ``Listener.accept`` and each request is a
:class:`kcpsock.KCPSocket`.  ``serve_forever``, ``handle_request``,
``shutdown`` and ``timeout`` are ``socketserver.BaseServer``'s own: they wait
in a selector on :meth:`KCPServer.fileno`, which is the listener's
selectable descriptor (readable when ``accept`` will not block).

Invariants:
- every keyword the constructor does not know itself (``block``,
  ``data_shards``, ``parity_shards``, ``config``, ...) goes to
  :func:`kcpsock.listen` unchanged; ``request_queue_size`` becomes its
  ``backlog``;
- KCP has no FIN: when a handler returns, its session is closed at once
  and delivers what the handler sent in the background (``close()``, as
  TCP), so a response written just before ``handle`` returns is not lost
  and the handler thread is free at once; ``close_linger`` > 0 makes the
  server wait that long for the acknowledgements first;
- a handler whose client closed or vanished sees the end of its input
  (``recv`` returns b"") within the sessions' ``keepalive_timeout``
  (30 s by default), so its thread and session end by themselves;
- ``server_close`` closes the listener; sessions already handed to handlers
  are closed by their own request cycle (as with TCPServer), except that
  :class:`ThreadingKCPServer` closes those still open after
  ``close_grace`` seconds, since without a FIN their handlers might never
  see the end of input.
"""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from typing import Any, Callable, Optional

from .sock import KCPSocket, Listener, listen

__all__ = ["KCPServer", "ThreadingKCPServer"]

_Address = Any  # (host, port) or (host, port, flowinfo, scope_id)


class KCPServer(socketserver.BaseServer):
    """A ``socketserver`` server whose requests are KCP sessions.

    Args:
        server_address: (host, port) to listen on; port 0 picks one, and
            :attr:`server_address` then holds the bound address.
        RequestHandlerClass: a ``socketserver.BaseRequestHandler`` subclass,
            instantiated with (request, client_address, server) per session.
        bind_and_activate: create the listener now (default); if False, call
            :meth:`server_bind` and :meth:`server_activate` yourself.
        **listen_options: passed to :func:`kcpsock.listen` (``block``,
            ``data_shards``, ``parity_shards``, ``config``, ``sock``, ...).

    Attributes:
        socket: the :class:`kcpsock.Listener` (None before
            :meth:`server_bind`).
        request_queue_size: the listener's accept backlog (128).
        close_linger: seconds a finished request waits for the peer to
            acknowledge what the handler sent before its session is closed
            (default 0: the closed session delivers it in the background).
        close_grace: (:class:`ThreadingKCPServer`) seconds ``server_close``
            lets running handlers finish before closing their sessions.
        timeout: as ``BaseServer.timeout``: ``handle_request`` gives up (and
            calls ``handle_timeout``) after this many seconds.

    Raises:
        OSError: the address cannot be bound.
        ValueError, TypeError: a bad listen option (from :func:`kcpsock.listen`).
    """

    request_queue_size = 128
    close_linger = 0.0
    close_grace = 2.0

    def __init__(
        self,
        server_address: _Address,
        RequestHandlerClass: Callable[..., socketserver.BaseRequestHandler],
        bind_and_activate: bool = True,
        **listen_options: Any,
    ) -> None:
        super().__init__(server_address, RequestHandlerClass)
        self.listen_options = dict(listen_options)
        self.socket: Optional[Listener] = None
        self._active: set[KCPSocket] = set()  # requests between accept and close
        self._active_lock = threading.Lock()
        if bind_and_activate:
            try:
                self.server_bind()
                self.server_activate()
            except BaseException:
                self.server_close()
                raise

    def server_bind(self) -> None:
        """Create the KCP listener on :attr:`server_address` (called by the constructor).

        Raises:
            OSError: the address cannot be bound.
        """
        options = dict(self.listen_options)
        options.setdefault("backlog", self.request_queue_size)
        address: Any = self.server_address
        self.socket = listen(tuple(address), **options)
        self.server_address = self.socket.getsockname()

    def server_activate(self) -> None:
        """Nothing to do: a KCP listener accepts sessions from creation."""

    def server_close(self) -> None:
        """Close the listener (idempotent)."""
        if self.socket is not None:
            self.socket.close()

    def fileno(self) -> int:
        """The listener's selectable descriptor (for ``serve_forever``'s selector).

        Returns:
            A file descriptor, readable when ``accept`` will not block.
        """
        if self.socket is None:
            return -1
        return self.socket.fileno()

    def get_request(self) -> tuple[KCPSocket, _Address]:
        """Accept one session.

        Returns:
            (session, client address).

        Raises:
            OSError: the listener is closed or has nothing to accept.
        """
        if self.socket is None:
            raise OSError(9, "server is not bound")
        request, address = self.socket.accept()
        with self._active_lock:
            self._active.add(request)
        return request, address

    def shutdown_request(self, request: Any) -> None:
        """Linger until the handler's output is acknowledged, then close the session.

        Args:
            request: the session handed to the handler.
        """
        self._linger(request)
        try:
            request.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # already closed by the handler, or the link is dead
        self.close_request(request)

    def close_request(self, request: Any) -> None:
        """Close one session.

        Args:
            request: the session handed to the handler.
        """
        try:
            request.close()
        finally:
            with self._active_lock:
                self._active.discard(request)

    def close_active_requests(self) -> int:
        """Close every session still held by a handler.

        KCP has no FIN, so a handler blocked in ``recv`` on a client that
        went away would wait forever; shutting its session down makes that
        ``recv`` return b"" (and a blocked ``send`` raise OSError).

        Returns:
            How many sessions were closed.
        """
        with self._active_lock:
            active = list(self._active)
        for request in active:
            # shutdown first: close() alone is deferred while the handler
            # holds makefile() objects (socket semantics), shutdown is not
            try:
                request.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                request.close()
            except OSError:
                pass
        return len(active)

    def _linger(self, request: Any) -> None:
        # KCP has no FIN and closing drops unacknowledged segments (kcp-go
        # UDPSession.Close flushes once, best effort): wait, bounded, until
        # nothing the handler sent is still unacknowledged.
        if self.close_linger <= 0 or not isinstance(request, KCPSocket):
            return
        try:
            request.drain(self.close_linger)
        except OSError:
            pass  # closed by the handler already

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.server_address!r} {self.socket!r}>"


class ThreadingKCPServer(socketserver.ThreadingMixIn, KCPServer):
    """:class:`KCPServer` running each request in its own thread, up to :attr:`max_threads`.

    As ``socketserver.ThreadingTCPServer``: ``daemon_threads`` and
    ``block_on_close`` keep their meaning: ``server_close`` joins the
    handler threads unless ``block_on_close`` is False.  One difference,
    because KCP has no FIN: a TCP handler whose client left sees EOF and
    returns, a KCP handler would wait for data forever.  So, when it is to
    join them (``block_on_close``), ``server_close`` gives the handlers
    ``close_grace`` seconds to finish, then shuts down the sessions they
    still hold (their ``recv`` returns b"") and joins them.  Without
    ``block_on_close`` the handlers are left running, as with TCP
    (:meth:`close_active_requests` ends them).

    Attributes:
        max_threads: handler threads at most (default 128; None: one per
            request without limit, as ``ThreadingMixIn``).  At the limit the
            server stops accepting until a handler returns: new sessions wait
            in the listener's backlog, where they cost no thread, buffer at
            most ``KCPConfig.pending_rcvwnd`` segments, count against
            ``backlog`` and ``backlog_per_address``, and are dropped after
            ``accept_timeout`` seconds.  ``shutdown`` and ``server_close``
            end the wait.
        max_threads_per_address: handler threads for one client IP address
            at most (default None: no limit).  A request beyond it is closed
            at once, without a handler (counted in
            :attr:`refused_requests`), so sessions from one host (a flood of
            conversations that answer keep-alive probes) cannot take every
            thread.  Off by default because KCP has no FIN: the handler of
            a client that closed lives until ``keepalive_timeout`` detects
            the silence, so a cap would refuse a legitimate host (or NAT)
            that opens many short connections in a row.  Set it (e.g. to
            ``max_threads // 4``) on servers exposed to hostile networks.
        refused_requests: requests closed because of
            ``max_threads_per_address``.
    """

    max_threads: Optional[int] = 128
    max_threads_per_address: Optional[int] = None

    def __init__(
        self,
        server_address: _Address,
        RequestHandlerClass: Callable[..., socketserver.BaseRequestHandler],
        bind_and_activate: bool = True,
        **listen_options: Any,
    ) -> None:
        for name in ("max_threads", "max_threads_per_address"):
            limit = getattr(self, name)
            if limit is not None and (
                isinstance(limit, bool) or not isinstance(limit, int) or limit < 1
            ):
                raise ValueError(f"{name} must be an int >= 1 or None, got {limit!r}")
        self._slots = threading.Condition(threading.Lock())
        self._workers = 0
        self._by_host: dict[Any, int] = {}
        self.refused_requests = 0
        self._stopping = False
        super().__init__(server_address, RequestHandlerClass, bind_and_activate, **listen_options)

    @property
    def active_threads(self) -> int:
        """Handler threads running now."""
        return self._workers

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """``BaseServer.serve_forever`` (again after a ``shutdown``)."""
        self._stopping = False
        super().serve_forever(poll_interval)

    def shutdown(self) -> None:
        """``BaseServer.shutdown``, also ending a wait for a free handler thread."""
        with self._slots:
            self._stopping = True
            self._slots.notify_all()
        super().shutdown()

    def process_request(self, request: Any, client_address: Any) -> None:
        """Start a handler thread, first waiting while :attr:`max_threads` run.

        Args:
            request: the accepted session.
            client_address: its address.
        """
        limit = self.max_threads
        per_host = self.max_threads_per_address
        host = client_address[0] if isinstance(client_address, tuple) else client_address
        with self._slots:
            if per_host is not None and self._by_host.get(host, 0) >= per_host:
                self.refused_requests += 1
                stop = True
            else:
                while limit is not None and self._workers >= limit and not self._stopping:
                    self._slots.wait()
                stop = self._stopping and limit is not None and self._workers >= limit
                if not stop:
                    self._workers += 1
                    self._by_host[host] = self._by_host.get(host, 0) + 1
        if stop:
            self.close_request(request)  # never handled
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._release_slot(host)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """Run the handler (``ThreadingMixIn``), then free the thread's slot."""
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._release_slot(
                client_address[0] if isinstance(client_address, tuple) else client_address
            )

    def _release_slot(self, host: Any) -> None:
        with self._slots:
            self._workers -= 1
            n = self._by_host.get(host, 0) - 1
            if n > 0:
                self._by_host[host] = n
            else:
                self._by_host.pop(host, None)
            self._slots.notify()

    def server_close(self) -> None:
        """Close the listener, wait (bounded) for handlers, close what is left, join."""
        with self._slots:
            self._stopping = True
            self._slots.notify_all()
        KCPServer.server_close(self)
        # socketserver keeps a _Threads list only when block_on_close is set
        live = getattr(self, "_threads", None)
        threads = list(live) if isinstance(live, list) else []
        if self.block_on_close:
            deadline = time.monotonic() + self.close_grace
            for t in threads:
                t.join(max(0.0, deadline - time.monotonic()))
            self.close_active_requests()
        # ThreadingMixIn.server_close: KCPServer.server_close again (the
        # listener's close is idempotent), then joins the handler threads.
        super().server_close()
