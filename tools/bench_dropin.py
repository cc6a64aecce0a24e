#!/usr/bin/env python3
"""Drop-in benchmark: the same standard-library code on TCP and on kcpsock.

Every row runs one piece of code written for TCP sockets twice in one run:
once on ``socket``/``socketserver``/``http.server``, once on
``kcpsock.create_connection``/``kcpsock.socketserver.ThreadingKCPServer``
with NO configuration (kcpsock's defaults).  Rows:

* ``echo-N``: a ``StreamRequestHandler`` echoes lines; the client writes N
  lines through ``makefile('rwb')`` and only then reads them back
  (write-then-read: works only if buffering lets it);
* ``lines-rt``: 1,000 line-at-a-time round trips through ``makefile``;
* ``reqresp``: 1,000 request/responses of 64 bytes with ``sendall``/``recv``
  (p50 and p99 of each round trip);
* ``bulk``: 20 MB one way with ``sendall``, the server answers "ok";
* ``http-fresh``: ``http.client`` GETs against ``http.server`` (HTTP/1.0,
  a fresh connection each; headers and body written separately);
* ``http-keepalive``: the same on one HTTP/1.1 kept-alive connection;
* ``eof``: read until EOF after the server closes: a ``StreamRequestHandler``
  reads a request line, writes 64 kB and returns (the server closes the
  connection); the client reads with ``recv`` until it returns b"" (p50 of
  connect-to-EOF, and of the wait from the last byte to the EOF; KCP has no
  FIN, so kcpsock's reader learns the end from unanswered probes);
* ``bulk-tuned`` (kcpsock only): the bulk row with kcpsock's best tuned
  configuration (nodelay 1, interval 10, resend 2, nc 1, windows 1024,
  stream mode), the reference for "defaults reach at least half of it";
* ``bulk-setters`` (kcpsock only): the same values set the kcp-go way, with
  the setters right after ``create_connection``/``accept`` on sessions
  created with ``KCPConfig.kcp_go()`` (must match ``bulk-tuned``).

Each (row, transport) runs in its own child process with a time limit, so a
row that stalls is reported as such ("stalled > Ns") instead of hanging the
run.  ``--kcpsock PATH`` measures another checkout (e.g. main as "before").

Usage:
    python tools/bench_dropin.py [--repeat 3] [--limit 60] [--rows ...] [--kcpsock PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

ROOT = Path(__file__).resolve().parent.parent

ROWS = (
    "echo-100",
    "echo-1000",
    "echo-10000",
    "lines-rt",
    "reqresp",
    "bulk",
    "http-fresh",
    "http-keepalive",
    "eof",
    "bulk-tuned",
    "bulk-setters",
)
BULK = 20 * 1000 * 1000
REQ = 64
ROUNDS = 1000
HTTP_FRESH = 50
HTTP_KEPT = 300
EOF_ROUNDS = 10
EOF_REPLY = 64 * 1024


# ---------------------------------------------------------------- transports


class Transport:
    """The two worlds: server classes and ``create_connection``."""

    def __init__(
        self,
        kind: str,
        tuned: bool = False,
        options: Optional[dict[str, Any]] = None,
        setters: bool = False,
    ) -> None:
        self.kind = kind
        self.setters = setters
        import socketserver

        if kind == "tcp":
            import socket

            self.server_cls: Any = socketserver.ThreadingTCPServer
            self.connect: Callable[..., Any] = socket.create_connection
            self.server_kw: dict[str, Any] = {}
            self.client_kw: dict[str, Any] = {}
        else:
            import kcpsock
            from kcpsock.socketserver import ThreadingKCPServer

            self.server_cls = ThreadingKCPServer
            self.connect = kcpsock.create_connection
            self.server_kw = dict(options or {})
            self.client_kw = dict(options or {})
            if tuned:
                cfg = kcpsock.KCPConfig(
                    nodelay=1,
                    interval=10,
                    resend=2,
                    nc=True,
                    sndwnd=1024,
                    rcvwnd=1024,
                    stream=True,
                )
                self.server_kw = {"config": cfg}
                self.client_kw = {"config": cfg}
            if setters:
                # (before KCPConfig.kcp_go() existed, KCPConfig() was kcp-go's defaults)
                kcp_go = getattr(kcpsock.KCPConfig, "kcp_go", kcpsock.KCPConfig)
                self.server_kw = {"config": kcp_go()}
                self.client_kw = {"config": kcp_go()}

    def server(self, handler: Any, mixin: Optional[type] = None) -> Any:
        """Start a threading server with ``handler`` on 127.0.0.1 (any port)."""
        base = self.server_cls
        attrs = {"daemon_threads": True, "block_on_close": False, "allow_reuse_address": True}
        cls = type("Server", (mixin, base) if mixin else (base,), attrs)
        srv = cls(("127.0.0.1", 0), handler, **self.server_kw)
        threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True).start()
        return srv

    def dial(self, srv: Any) -> Any:
        """Connect to ``srv`` with this world's ``create_connection``."""
        sock = self.connect(srv.server_address[:2], **self.client_kw)
        self.tune(sock)
        return sock

    def tune(self, sock: Any) -> None:
        """The kcp-go way: setters right after the session exists."""
        if self.setters:
            sock.set_nodelay(1, 10, 2, 1)
            sock.set_window_size(1024, 1024)
            sock.set_mtu(1400)
            sock.set_stream_mode(True)


# ---------------------------------------------------------------------- rows


def _echo_handler() -> Any:
    import socketserver

    class Echo(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            for line in self.rfile:
                self.wfile.write(line)

    return Echo


def row_echo(t: Transport, n: int) -> dict[str, Any]:
    """Write ``n`` lines through makefile('rwb'), then read the echo."""
    srv = t.server(_echo_handler())
    sock = t.dial(srv)
    f = sock.makefile("rwb")
    lines = [b"line %06d of the write-then-read test\n" % i for i in range(n)]
    start = time.perf_counter()
    for line in lines:
        f.write(line)
    f.flush()
    for i, line in enumerate(lines):
        got = f.readline()
        if got != line:
            raise AssertionError(f"line {i}: {got!r}")
    elapsed = time.perf_counter() - start
    f.close()
    sock.close()
    return {"seconds": elapsed}


def row_lines_rt(t: Transport) -> dict[str, Any]:
    """Line-at-a-time round trips through makefile('rwb')."""
    srv = t.server(_echo_handler())
    sock = t.dial(srv)
    f = sock.makefile("rwb")
    start = time.perf_counter()
    for i in range(ROUNDS):
        line = b"round trip %d\n" % i
        f.write(line)
        f.flush()
        if f.readline() != line:
            raise AssertionError("bad echo")
    elapsed = time.perf_counter() - start
    f.close()
    sock.close()
    return {"seconds": elapsed, "per_rt_ms": elapsed / ROUNDS * 1000}


def _recv_exact(sock: Any, n: int) -> bytes:
    parts = []
    while n:
        b = sock.recv(n)
        if not b:
            raise EOFError
        parts.append(b)
        n -= len(b)
    return b"".join(parts)


def row_reqresp(t: Transport) -> dict[str, Any]:
    """Small request/responses with sendall/recv: p50 and p99."""
    import socketserver

    class Answer(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            try:
                while True:
                    req = _recv_exact(self.request, REQ)
                    self.request.sendall(req)
            except (EOFError, OSError):
                pass

    srv = t.server(Answer)
    sock = t.dial(srv)
    msg = b"q" * REQ
    times = []
    start = time.perf_counter()
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        sock.sendall(msg)
        _recv_exact(sock, REQ)
        times.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - start
    sock.close()
    times.sort()
    return {
        "seconds": elapsed,
        "p50_ms": times[len(times) // 2] * 1000,
        "p99_ms": times[int(len(times) * 0.99)] * 1000,
    }


def row_bulk(t: Transport) -> dict[str, Any]:
    """20 MB one way with sendall; the server answers "ok"."""
    import socketserver

    class Sink(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            t.tune(self.request)
            left = BULK
            while left:
                b = self.request.recv(min(left, 65536))
                if not b:
                    return
                left -= len(b)
            self.request.sendall(b"ok")

    srv = t.server(Sink)
    sock = t.dial(srv)
    chunk = b"x" * 65536
    start = time.perf_counter()
    sent = 0
    last = start
    while sent < BULK:
        n = min(len(chunk), BULK - sent)
        sock.sendall(chunk[:n])
        sent += n
        now = time.perf_counter()
        if now - last > 1:
            last = now
            print(json.dumps({"progress": sent / (now - start) / 1e6}), flush=True)
    if _recv_exact(sock, 2) != b"ok":
        raise AssertionError("no ok")
    elapsed = time.perf_counter() - start
    sock.close()
    return {"seconds": elapsed, "mb_s": BULK / elapsed / 1e6}


def _http_server(t: Transport, keepalive: bool) -> Any:
    import http.server

    body = b"<html><body>" + b"hello " * 200 + b"</body></html>\n"

    class Page(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1" if keepalive else "HTTP/1.0"

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()  # headers written ...
            self.wfile.write(body)  # ... and the body, separately

        def log_message(self, *args: Any) -> None:
            pass

    return t.server(Page), len(body)


def _http_conn(t: Transport, srv: Any) -> Any:
    import http.client

    host, port = srv.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=30)
    if t.kind != "tcp":
        conn._create_connection = lambda addr, timeout=None, source=None: t.connect(  # type: ignore[attr-defined]
            addr, timeout, source, **t.client_kw
        )
    return conn


def row_http(t: Transport, keepalive: bool) -> dict[str, Any]:
    """http.client GETs against http.server, fresh or kept-alive connections."""
    srv, size = _http_server(t, keepalive)
    times = []
    count = HTTP_KEPT if keepalive else HTTP_FRESH
    conn = _http_conn(t, srv) if keepalive else None
    start = time.perf_counter()
    for _ in range(count):
        t0 = time.perf_counter()
        c = conn if conn is not None else _http_conn(t, srv)
        c.request("GET", "/")
        resp = c.getresponse()
        data = resp.read()
        if resp.status != 200 or len(data) != size:
            raise AssertionError("bad response")
        if conn is None:
            c.close()
        times.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - start
    if conn is not None:
        conn.close()
    times.sort()
    return {
        "seconds": elapsed,
        "p50_ms": times[len(times) // 2] * 1000,
        "mean_ms": elapsed / count * 1000,
    }


def row_eof(t: Transport) -> dict[str, Any]:
    """Read until EOF after the server wrote its reply and closed (fresh connections)."""
    import socketserver

    reply = b"x" * EOF_REPLY

    class ReplyClose(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            self.rfile.readline()
            self.wfile.write(reply)  # then return: the server closes the connection

    srv = t.server(ReplyClose)
    totals, waits = [], []
    for _ in range(EOF_ROUNDS):
        t0 = time.perf_counter()
        sock = t.dial(srv)
        sock.settimeout(60)
        sock.sendall(b"GET\n")
        got = 0
        last = t0
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            got += len(chunk)
            last = time.perf_counter()
        end = time.perf_counter()
        sock.close()
        if got != len(reply):
            raise AssertionError(f"got {got} bytes")
        totals.append(end - t0)
        waits.append(end - last)
    totals.sort()
    waits.sort()
    return {
        "seconds": sum(totals),
        "p50_ms": totals[len(totals) // 2] * 1000,
        "eof_wait_ms": waits[len(waits) // 2] * 1000,
    }


def run_row(row: str, kind: str, options: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """Run one row on one transport in this process."""
    if row == "bulk-tuned":
        return row_bulk(Transport(kind, tuned=True))
    if row == "bulk-setters":
        return row_bulk(Transport(kind, setters=True))
    t = Transport(kind, options=options)
    if row.startswith("echo-"):
        return row_echo(t, int(row[5:]))
    if row == "lines-rt":
        return row_lines_rt(t)
    if row == "reqresp":
        return row_reqresp(t)
    if row == "bulk":
        return row_bulk(t)
    if row == "http-fresh":
        return row_http(t, keepalive=False)
    if row == "http-keepalive":
        return row_http(t, keepalive=True)
    if row == "eof":
        return row_eof(t)
    raise ValueError(f"unknown row {row!r}")


# ------------------------------------------------------------------- driver


def child(
    row: str, kind: str, limit: float, kcpsock_path: Optional[str], options: list[str]
) -> dict[str, Any]:
    """Run a row in a child process, killed after ``limit`` seconds."""
    env = dict(os.environ)
    if kcpsock_path:
        env["PYTHONPATH"] = kcpsock_path + os.pathsep + env.get("PYTHONPATH", "")
    argv = [sys.executable, str(Path(__file__).resolve()), "--child", row, kind]
    if options:
        argv += ["--options", *options]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        out, err = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        result: dict[str, Any] = {"stalled": limit}
        for line in out.decode().splitlines():
            if line.startswith("{"):
                result.update(json.loads(line))
        return result
    lines = [ln for ln in out.decode().splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = err.decode().strip().splitlines()[-1:] or ["no output"]
        return {"error": tail[0][:80]}
    return dict(json.loads(lines[-1]))


def fmt(row: str, r: dict[str, Any]) -> str:
    """One table cell."""
    if "stalled" in r:
        extra = f", {r['progress']:.2f} MB/s so far" if "progress" in r else ""
        return f"stalled > {r['stalled']:.0f} s{extra}"
    if "error" in r:
        return f"error: {r['error']}"
    if row.startswith("bulk"):
        return f"{r['mb_s']:.1f} MB/s"
    if row == "reqresp":
        return f"p50 {r['p50_ms']:.3f} ms, p99 {r['p99_ms']:.3f} ms"
    if row.startswith("http"):
        return f"p50 {r['p50_ms']:.2f} ms"
    if row == "eof":
        return f"p50 {r['p50_ms']:.2f} ms (EOF {r['eof_wait_ms']:.2f} ms after the last byte)"
    if row == "lines-rt":
        return f"{r['per_rt_ms']:.3f} ms/rt"
    return f"{r['seconds']:.3f} s"


def key_figure(row: str, r: dict[str, Any]) -> Optional[float]:
    """The figure the ratio is taken on (time-like: larger is worse)."""
    if "stalled" in r or "error" in r:
        return None
    if row.startswith("bulk"):
        return 1.0 / float(r["mb_s"])
    if row == "reqresp" or row.startswith("http") or row == "eof":
        return float(r["p50_ms"])
    return float(r["seconds"])


def median_result(row: str, results: list[dict[str, Any]]) -> dict[str, Any]:
    """The median run, or a failure if most runs failed."""
    good = [r for r in results if key_figure(row, r) is not None]
    if len(good) < len(results):
        bad = [r for r in results if key_figure(row, r) is None]
        return bad[0] if len(good) <= len(results) // 2 else _median(row, good)
    return _median(row, good)


def _median(row: str, good: list[dict[str, Any]]) -> dict[str, Any]:
    good.sort(key=lambda r: key_figure(row, r) or 0.0)
    return good[len(good) // 2]


def main(argv: Optional[list[str]] = None) -> int:
    """Run the rows and print the markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=ROWS)
    parser.add_argument("--repeat", type=int, default=1, help="runs per cell (median kept)")
    parser.add_argument("--limit", type=float, default=60.0, help="seconds per cell")
    parser.add_argument("--kcpsock", default=None, help="import kcpsock from this checkout")
    parser.add_argument(
        "--options",
        nargs="+",
        default=[],
        metavar="FIELD=VALUE",
        help="KCPConfig fields for the kcpsock side (to compare profiles), e.g. nodelay=0",
    )
    parser.add_argument("--child", nargs=2, metavar=("ROW", "KIND"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        row, kind = args.child
        opts = {k: json.loads(v) for k, _, v in (o.partition("=") for o in args.options)}
        print(json.dumps(run_row(row, kind, opts)), flush=True)
        os._exit(0)  # leave stuck sessions and handler threads behind at once
    import platform

    where = args.kcpsock or str(ROOT)
    print(f"# bench_dropin: kcpsock from {where}; Python {platform.python_version()};")
    print(f"# {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; median of {args.repeat}")
    if args.options:
        print(f"# kcpsock options: {' '.join(args.options)}")
    print()
    print("| row | TCP | kcpsock (no configuration) | kcpsock / TCP |")
    print("|-----|-----|-----|-----|")
    tuned_bulk: Optional[float] = None
    default_bulk: Optional[float] = None
    for row in args.rows:
        kinds = ("kcp",) if row in ("bulk-tuned", "bulk-setters") else ("tcp", "kcp")
        results: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
        for _ in range(args.repeat):
            for kind in kinds:  # alternate, so both see the same load
                results[kind].append(child(row, kind, args.limit, args.kcpsock, args.options))
        med = {k: median_result(row, v) for k, v in results.items()}
        kcp = med["kcp"]
        if row in ("bulk-tuned", "bulk-setters"):
            if "mb_s" in kcp and row == "bulk-tuned":
                tuned_bulk = float(kcp["mb_s"])
            print(f"| {row} | | {fmt(row, kcp)} | |", flush=True)
            continue
        tcp = med["tcp"]
        a, b = key_figure(row, tcp), key_figure(row, kcp)
        ratio = f"{b / a:.1f}x" if a and b else "-"
        if row == "bulk" and "mb_s" in kcp:
            default_bulk = float(kcp["mb_s"])
        print(f"| {row} | {fmt(row, tcp)} | {fmt(row, kcp)} | {ratio} |", flush=True)
    if tuned_bulk and default_bulk:
        print()
        print(
            f"bulk with defaults / best tuned kcpsock: {default_bulk / tuned_bulk:.2f}"
            " (goal >= 0.5)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
