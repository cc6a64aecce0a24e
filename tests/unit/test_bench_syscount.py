"""tools/bench.py --syscount: the per-run fields, and tools/syscount.py's counters on this process.

The counters need perf events (tracefs and the right to open syscall
tracepoints); without them :func:`syscount.open_counters` returns None and
the counting test is skipped.  The counts are checked as "at least": other
threads of the test process may make calls of the same kinds meanwhile.
"""

from __future__ import annotations

import socket
import threading
from types import ModuleType

import pytest

from tests.helpers import load_tool


def load(name: str) -> ModuleType:
    """A module of tools/ (not a package)."""
    return load_tool(name, f"kcpsock_{name}_tool")


def test_syscounts_per_mb_and_per_call() -> None:
    bench = load("bench")
    res = {
        "c_rmm": "8",
        "c_rfrom": "2",
        "c_smm": "30",
        "c_smsg": "0",
        "c_sto": "0",
        "c_futex": "40",
        "c_wakeups": "20",
        "c_cs": "60",
        "c_faults": "100",
        "c_migr": "3",
        "c_pin": "50",
        "c_pout": "1500",
        "c_cpu_us": "5000",
        "c_cal0": "9000,6000",
        "c_cal1": "9100,6100",
    }
    out = bench._syscounts(res, 2.0)
    assert out.startswith(" c:rd=5 dpr=5.0 wr=15 dpw=50.0 fx=20 wk=10 cs=30 pf=50 mig=3")
    assert "din=25 dout=750 cpu=2.50 cal=9000,6000/9100,6100" in out
    assert " s:" not in out  # no server counts: no server fields
    assert bench._syscounts({}, 2.0) == ""


def test_counters_count_this_process_and_threads_started_later() -> None:
    syscount = load("syscount")
    counters = syscount.open_counters()
    if counters is None or "sto" not in counters.fds:
        pytest.skip("perf syscall tracepoints are not available here")
    before = counters.read()

    def send() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for _ in range(50):
                s.sendto(b"x", ("127.0.0.1", 9))

    t = threading.Thread(target=send)
    t.start()
    t.join(10)
    assert not t.is_alive()
    after = counters.read()
    assert after["sto"] - before["sto"] >= 50  # the thread's calls are counted
    fields = syscount.Counters.fields(before, after)
    assert " sto=" in fields and " rmm=" in fields
