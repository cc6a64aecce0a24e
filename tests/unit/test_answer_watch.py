"""The command line's first-answer watch and the socket's ``gone_timeout``.

A dialing command (``connect``, ``bench -c``, ``tunnel``) promises to wait
``--wait`` seconds for the server's first answer.  A waiting reader's probes
would count a silent server as gone after about 2 s, so until the first
answer the watch holds the socket's ``gone_timeout`` at the wait, and gives
the socket its own value back at the first answer.  A fake socket stands in
for the KCP session; every wait is bounded.
"""

from __future__ import annotations

import threading
from typing import Any

from kcpsock.cli.common import AnswerWatch

BOUND_S = 10.0


class FakeSocket:
    """What AnswerWatch uses of a KCPSocket, with the calls recorded."""

    def __init__(self, gone: float) -> None:
        self.gone_timeout = gone
        self.segments_in = 0
        self.gone_calls: list[float] = []
        self.restored = threading.Event()
        self.closed = threading.Event()
        self._own = gone

    def set_gone_timeout(self, seconds: float) -> None:
        self.gone_calls.append(seconds)
        self.gone_timeout = seconds
        if len(self.gone_calls) > 1 and seconds == self._own:
            self.restored.set()

    def figures(self) -> dict[str, Any]:
        if self.closed.is_set():
            raise OSError(9, "closed")
        return {"segments_in": self.segments_in}

    def close(self) -> None:
        self.closed.set()


def test_the_wait_holds_gone_until_the_first_answer() -> None:
    sock = FakeSocket(gone=0.5)
    watch = AnswerWatch(sock, wait_s=30.0)
    try:
        assert sock.gone_calls == [30.0]  # the probes cannot end it before the wait
        watch.sent()
        sock.segments_in = 1  # the server answered
        assert sock.restored.wait(BOUND_S), sock.gone_calls
        assert sock.gone_calls == [30.0, 0.5]
        assert not watch.unanswered()
        assert not sock.closed.is_set()
    finally:
        watch.stop()


def test_no_limit_turns_gone_off_until_the_first_answer() -> None:
    sock = FakeSocket(gone=0.5)
    watch = AnswerWatch(sock, wait_s=0.0)
    try:
        assert sock.gone_calls == [0.0]
        sock.segments_in = 3
        assert sock.restored.wait(BOUND_S), sock.gone_calls
        assert sock.gone_calls == [0.0, 0.5]
    finally:
        watch.stop()


def test_no_answer_closes_and_leaves_gone_held() -> None:
    sock = FakeSocket(gone=0.5)
    watch = AnswerWatch(sock, wait_s=0.2)
    try:
        watch.sent()
        assert watch.silent.wait(BOUND_S)
        assert sock.closed.is_set()
        assert watch.unanswered()
        assert watch.waited() == 0.2
        assert sock.gone_calls == [0.2]
    finally:
        watch.stop()


def test_a_socket_without_gone_is_left_alone() -> None:
    # smux sessions (kcptun mode) turn gone_timeout off: nothing to hold
    sock = FakeSocket(gone=0.0)
    watch = AnswerWatch(sock, wait_s=5.0)
    try:
        sock.segments_in = 1
        watch.stop()
        assert sock.gone_calls == []
    finally:
        watch.stop()
