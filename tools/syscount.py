"""Count a process's UDP system calls, wake-ups and context switches (Linux perf events).

``tools/bench.py --syscount`` opens these counters in each kcpsock peer
process before it starts a thread (``inherit``: every thread created later is
counted too) and reads them at the transfer's start and end, so a run's line
says how many ``recvmmsg`` / ``sendmmsg`` / ``sendmsg`` calls, futex calls,
wake-ups issued (``sched:sched_wakeup`` in this process's context), context
switches and page faults the transfer took.  The syscall tracepoints need
tracefs (``/sys/kernel/tracing``) and the right to open them (root, or
``perf_event_paranoid`` <= -1); without, :func:`open_counters` returns None
and the bench prints nothing more.  Counting only (no sampling): the
overhead is the tracepoints' slower syscall path, a few hundred ns a call.
"""

from __future__ import annotations

import ctypes
import os
import struct
from typing import Optional

#: x86_64 / aarch64 numbers of perf_event_open
_NR = {"x86_64": 298, "aarch64": 241}

_TRACEFS = ("/sys/kernel/tracing/events", "/sys/kernel/debug/tracing/events")

#: name in the bench's line -> (perf type, config or tracepoint path)
EVENTS: dict[str, tuple[int, str]] = {
    "rmm": (2, "syscalls/sys_enter_recvmmsg"),
    "rfrom": (2, "syscalls/sys_enter_recvfrom"),
    "smm": (2, "syscalls/sys_enter_sendmmsg"),
    "smsg": (2, "syscalls/sys_enter_sendmsg"),
    "sto": (2, "syscalls/sys_enter_sendto"),
    "futex": (2, "syscalls/sys_enter_futex"),
    "wakeups": (2, "sched/sched_wakeup"),
    "cs": (1, "3"),  # PERF_COUNT_SW_CONTEXT_SWITCHES
    "faults": (1, "2"),  # PERF_COUNT_SW_PAGE_FAULTS
    "migr": (1, "4"),  # PERF_COUNT_SW_CPU_MIGRATIONS
}


def _tracepoint_id(path: str) -> Optional[int]:
    for base in _TRACEFS:
        try:
            with open(os.path.join(base, path, "id")) as fh:
                return int(fh.read())
        except OSError:
            continue
    return None


class Counters:
    """Open counters of this process (and the threads it starts from now on)."""

    def __init__(self, fds: dict[str, int]) -> None:
        self.fds = fds

    def read(self) -> dict[str, int]:
        """Every counter's value now."""
        out = {}
        for name, fd in self.fds.items():
            out[name] = struct.unpack("Q", os.read(fd, 8))[0]
        return out

    @staticmethod
    def fields(before: dict[str, int], after: dict[str, int]) -> str:
        """`` name=count`` fields of the difference ``after - before``."""
        return "".join(f" {k}={after[k] - before[k]}" for k in after if k in before)


def open_counters() -> Optional[Counters]:
    """Counters of this process, inherited by threads started later; None if unavailable."""
    nr = _NR.get(os.uname().machine)
    if nr is None:
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    fds: dict[str, int] = {}
    for name, (kind, what) in EVENTS.items():
        config = _tracepoint_id(what) if kind == 2 else int(what)
        if config is None:
            continue
        attr = bytearray(128)
        # type, size, config, sample_period, sample_type, read_format, flags
        # (bit 1 inherit); the rest zero
        struct.pack_into("IIQQQQQ", attr, 0, kind, 128, config, 0, 0, 0, 1 << 1)
        buf = (ctypes.c_char * 128).from_buffer(attr)
        fd = libc.syscall(nr, buf, 0, -1, -1, 0)
        if fd < 0:
            continue
        fds[name] = fd
    return Counters(fds) if fds else None
