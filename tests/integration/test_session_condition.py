"""The session lock's Condition (``session._SessionCondition``): threading.Condition's protocol.

An unstarted session on 127.0.0.1 (no updater tick, no receiver).  Whether a
thread waits is seen without timing: a waiting thread's lock is on the
Condition's ``_waiters`` list until it is notified or gives up.  Waits are
bounded; nothing sleeps to synchronise.
"""

from __future__ import annotations

import threading

import pytest

from kcpsock.session import _wait_until
from tests.helpers import unstarted_session, wait_until


def test_a_waiter_is_woken_by_notify_all_and_holds_the_lock_again() -> None:
    with unstarted_session(5) as (s, _):
        cond = s._readable
        results: list[tuple[bool, bool]] = []

        def waiter() -> None:
            with s._lock:
                woken = _wait_until(cond, None)
                results.append((woken, s._lock._is_owned()))

        threads = [threading.Thread(target=waiter, daemon=True) for _ in range(3)]
        for t in threads:
            t.start()
        assert wait_until(lambda: len(cond._waiters) == 3)
        with s._lock:
            cond.notify_all()
            assert not cond._waiters  # taken off at once, as threading.Condition does
        for t in threads:
            t.join(5)
            assert not t.is_alive()
        assert results == [(True, True)] * 3


def test_a_timed_out_wait_returns_false_and_leaves_no_waiter() -> None:
    with unstarted_session(6) as (s, _):
        cond = s._readable
        with s._lock:
            assert cond.wait(0.01) is False
            assert s._lock._is_owned()
            assert not cond._waiters
            assert cond.wait(0) is False  # (no wait at all)
            assert not cond._waiters
            # a deadline already passed: no release of the lock
            assert _wait_until(cond, 0.0) is False
        with s._lock:
            cond.notify_all()  # nobody waits: nothing happens


def test_a_notify_before_the_timeout_counts_as_woken() -> None:
    with unstarted_session(7) as (s, _):
        cond = s._writable
        got: list[bool] = []

        def waiter() -> None:
            with s._lock:
                got.append(cond.wait(30.0))

        t = threading.Thread(target=waiter, daemon=True)
        t.start()
        assert wait_until(lambda: len(cond._waiters) == 1)
        with s._lock:
            cond.notify_all()
        t.join(5)
        assert got == [True]


def test_waiting_or_notifying_without_the_lock_is_refused() -> None:
    with unstarted_session(8) as (s, _):
        cond = s._readable
        with pytest.raises(RuntimeError, match="un-acquired"):
            cond.wait(0.01)
        assert not cond._waiters
        with pytest.raises(RuntimeError, match="un-acquired"):
            cond.notify_all()
