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
  (``recv`` returns b""): a waiting reader's probes find a silent client
  gone about half a second after it went silent right after its last data,
  about ``keepalive_interval`` (10 s) later after a long quiet wait
  (``gone_timeout``; the sessions' ``keepalive_timeout``, 30 s, in any
  case), so its thread and session end by themselves;
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
from collections import deque
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
        max_threads: handler threads at most (default 128; None: no limit,
            as ``ThreadingMixIn``).  Requests beyond it wait in a queue of
            at most ``request_queue_size`` (128) and are handled in arrival
            order by the threads that finish; a waiting session buffers at
            most ``KCPConfig.pending_rcvwnd`` segments (its full window
            opens when its handler first reads).  ``server_close`` closes
            the requests still waiting.
        max_threads_per_address: handler threads one client IP address may
            hold once half of :attr:`max_threads` are busy (default 32; None:
            no limit).  Its further requests wait while other addresses'
            requests are started, so sessions from one host that never
            finish (a flood of forged conversations, whose handlers wait for
            input) never take every thread; while the pool is less than half
            busy one address may use more (many clients behind one address,
            handlers that finish late).
        refused_requests: requests closed unhandled because the queue was
            full: the newest waiting request of the address with the most
            waiting requests goes first.
    """

    max_threads: Optional[int] = 128
    max_threads_per_address: Optional[int] = 32

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
        self._slots = threading.Lock()
        self._workers = 0
        self._by_host: dict[Any, int] = {}
        self._waiting: deque[tuple[Any, Any, Any]] = deque()  # (request, address, host)
        self.refused_requests = 0
        self._closing = False
        super().__init__(server_address, RequestHandlerClass, bind_and_activate, **listen_options)

    @property
    def active_threads(self) -> int:
        """Handler threads running now."""
        return self._workers

    @property
    def waiting_requests(self) -> int:
        """Accepted requests waiting for a handler thread."""
        return len(self._waiting)

    def threads_by_address(self) -> dict[Any, int]:
        """Return the handler threads running now per client IP address (a copy)."""
        with self._slots:
            return dict(self._by_host)

    @staticmethod
    def _host_of(client_address: Any) -> Any:
        return client_address[0] if isinstance(client_address, tuple) else client_address

    def _may_start(self, host: Any) -> bool:
        """A thread for ``host`` may start now (``_slots`` held)."""
        limit = self.max_threads
        if limit is not None and self._workers >= limit:
            return False
        per_host = self.max_threads_per_address
        if per_host is None or self._by_host.get(host, 0) < per_host:
            return True
        return limit is not None and self._workers < limit // 2

    def _take_slot(self, host: Any) -> None:
        self._workers += 1
        self._by_host[host] = self._by_host.get(host, 0) + 1

    def _evict(self) -> Any:
        """Remove and return the newest waiting request of the busiest address."""
        counts: dict[Any, int] = {}
        for _, _, h in self._waiting:
            counts[h] = counts.get(h, 0) + 1
        busiest = max(counts, key=lambda h: counts[h])
        for i in range(len(self._waiting) - 1, -1, -1):
            if self._waiting[i][2] == busiest:
                request = self._waiting[i][0]
                del self._waiting[i]
                return request
        raise AssertionError("unreachable: the busiest address has a waiting request")

    def process_request(self, request: Any, client_address: Any) -> None:
        """Start a handler thread, or queue the request (see :attr:`max_threads`).

        Never blocks, so ``serve_forever`` keeps accepting.

        Args:
            request: the accepted session.
            client_address: its address.
        """
        host = self._host_of(client_address)
        victim = None
        with self._slots:
            if self._closing:
                victim = request
            elif self._may_start(host):
                self._take_slot(host)
                start = True
            else:
                start = False
                self._waiting.append((request, client_address, host))
                if len(self._waiting) > max(1, self.request_queue_size):
                    victim = self._evict()
                    self.refused_requests += 1
        if victim is not None:
            self.close_request(victim)  # never handled
            if victim is request:
                return
        if not start:
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._finish(host)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """Run the handler (``ThreadingMixIn``), then the next startable waiting request."""
        while True:
            try:
                super().process_request_thread(request, client_address)
            finally:
                nxt = self._finish(self._host_of(client_address))
            if nxt is None:
                return
            request, client_address = nxt

    def _finish(self, host: Any) -> Optional[tuple[Any, Any]]:
        """Free ``host``'s slot; take the oldest waiting request that may start now."""
        with self._slots:
            self._workers -= 1
            n = self._by_host.get(host, 0) - 1
            if n > 0:
                self._by_host[host] = n
            else:
                self._by_host.pop(host, None)
            if self._closing:
                return None
            for i, (request, address, h) in enumerate(self._waiting):
                if self._may_start(h):
                    del self._waiting[i]
                    self._take_slot(h)
                    return request, address
        return None

    def server_close(self) -> None:
        """Close the listener and the waiting requests, wait (bounded) for handlers, join."""
        with self._slots:
            self._closing = True
            waiting = [r for r, _, _ in self._waiting]
            self._waiting.clear()
        for request in waiting:
            self.close_request(request)
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
