"""Idle sessions cost nothing: no timer fires for them, no thread spins.

The test checks the mechanism (an idle session leaves the updater's
schedule but for its keep-alive timer, ``keepalive_interval`` away;
traffic puts it back).  Run as a script it measures the figures
for BENCHMARKS.md (CPU of 1000 idle sessions on each side, memory per
session)::

    .venv/bin/python -m tests.integration.test_session_idle
"""

from __future__ import annotations

import gc
import multiprocessing as mp
import threading
import time
import tracemalloc
from typing import Any, Optional

import pytest

import kcpsock
from kcpsock.session import Session
from kcpsock.updater import updater
from tests.helpers import wait_until

FAST = dict(nodelay=1, interval=10, resend=2, nc=True)


def test_idle_sessions_fire_no_timers(monkeypatch: pytest.MonkeyPatch) -> None:
    n = 100
    with kcpsock.listen(("127.0.0.1", 0), **FAST) as ln:  # type: ignore[arg-type]
        ln.settimeout(5)
        clients = [
            kcpsock.dial(ln.getsockname(), timeout=5, **FAST)  # type: ignore[arg-type]
            for _ in range(n)
        ]
        for c in clients:
            c.sendall(b"hi")
        servers = [ln.accept()[0] for _ in range(n)]
        for s in servers:
            s.settimeout(5)
            assert s.recv(10) == b"hi"
            s.sendall(b"ok")
        for c in clients:
            assert c.recv(10) == b"ok"
        sessions = [x.session for x in clients + servers]
        from kcpsock.updater import now_ms

        def idle(s: Any) -> bool:
            # keep-alive: the only timer left is the probe, seconds away
            d = s.updater_deadline
            return d is None or d - now_ms() > s.keepalive_interval_ms // 2

        assert wait_until(lambda: all(idle(s) for s in sessions), 10.0)
        # idle now: a marker timer 300 ms away is the only thing the updater
        # runs for them (other tests' sessions may still deliver in the
        # background, so ours are counted one by one)
        ours = set(sessions)
        ours_fired = [0]
        on_timer = Session.on_timer

        def counting(self: Session, now: int) -> Optional[int]:
            if self in ours:
                ours_fired[0] += 1
            return on_timer(self, now)

        monkeypatch.setattr(Session, "on_timer", counting)
        fired = updater.fired
        marker_done = threading.Event()

        class Marker:
            updater_deadline = None
            updater_seq = 0

            def on_timer(self, now: int) -> None:
                marker_done.set()

        marker = Marker()
        updater.schedule(marker, now_ms() + 300)  # type: ignore[arg-type]
        assert marker_done.wait(5)
        idle_fired = updater.fired - fired
        # other tests' sessions may still be winding down; ours add nothing
        assert all(idle(s) for s in sessions)
        assert ours_fired[0] == 0
        assert idle_fired < 10 * n
        # traffic re-arms them
        clients[0].sendall(b"again")
        assert servers[0].recv(10) == b"again"
        for x in clients + servers:
            x.close()


# ------------------------------------------------------------- measurement

N, IDLE = 1000, 10.0


def _rss() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _server(q: Any, done: Any) -> None:
    tracemalloc.start()
    ln = kcpsock.listen(("127.0.0.1", 0), **FAST)  # type: ignore[arg-type]
    q.put(ln.getsockname())
    gc.collect()
    m0 = tracemalloc.get_traced_memory()[0]
    socks = []
    for _ in range(N):
        s, _ = ln.accept()
        assert s.recv(10) == b"hi"
        s.sendall(b"ok")
        socks.append(s)
    time.sleep(1.0)  # let the last ACKs go
    gc.collect()
    m1 = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    c0 = time.process_time()
    time.sleep(IDLE)
    q.put(("server", (time.process_time() - c0) / IDLE * 100, (m1 - m0) / N))
    done.wait()


def _client(addr: Any, q: Any, done: Any) -> None:
    r0 = _rss()
    cs = []
    for _ in range(N):
        c = kcpsock.dial(addr, timeout=10, **FAST)  # type: ignore[arg-type]
        c.sendall(b"hi")
        cs.append(c)
    for c in cs:
        assert c.recv(10) == b"ok"
    time.sleep(1.0)
    r1 = _rss()
    c0 = time.process_time()
    time.sleep(IDLE)
    q.put(("client", (time.process_time() - c0) / IDLE * 100, (r1 - r0) / N))
    done.wait()


def main() -> None:
    """Print the idle figures (needs ``ulimit -n`` above 2100)."""
    q: Any = mp.Queue()
    done = mp.Event()
    ps = mp.Process(target=_server, args=(q, done))
    ps.start()
    addr = q.get()
    pc = mp.Process(target=_client, args=(addr, q, done))
    pc.start()
    for _ in range(2):
        who, cpu, mem = q.get()
        what = (
            "of Python heap (tracemalloc) per accepted session"
            if who == "server"
            else "of RSS per dialed session (its socket and receiver thread included)"
        )
        print(
            f"{who}: {N} idle sessions use {cpu:.2f}% of one core over {IDLE:.0f} s, "
            f"{mem / 1024:.1f} KiB {what}"
        )
    done.set()
    pc.join()
    ps.join()


if __name__ == "__main__":
    main()
