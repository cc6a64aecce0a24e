"""kcpsock.updater: the timer heap thread (kcp-go timedsched.go, one thread).

These tests use private Updater instances with fake targets; they wait on
events with bounded timeouts, never on sleeps.
"""

from __future__ import annotations

import gc
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Optional

import pytest

from kcpsock.updater import Updater, now_ms


class Target:
    """A fake session: records when on_timer ran and returns scripted deadlines."""

    def __init__(self, plan: Optional[list[Optional[int]]] = None) -> None:
        self.updater_deadline: Optional[int] = None
        self.updater_seq = 0
        self.calls: list[int] = []
        self.plan = list(plan or [])
        self.event = threading.Event()

    def on_timer(self, now: int) -> Optional[int]:
        self.calls.append(now)
        self.event.set()
        if self.plan:
            delay = self.plan.pop(0)
            return None if delay is None else now + delay
        return None


@pytest.fixture
def upd() -> Iterator[Updater]:
    u = Updater(name="test-updater")
    yield u
    u.stop()
    assert not u.is_alive()


def test_now_ms_is_monotonic_int() -> None:
    a = now_ms()
    b = now_ms()
    assert isinstance(a, int) and b >= a >= 1


def test_fires_at_deadline_not_before(upd: Updater) -> None:
    t = Target()
    start = now_ms()
    upd.schedule(t, start + 50)
    assert t.event.wait(5)
    assert t.calls[0] >= start + 50
    assert t.updater_deadline is None


def test_thread_starts_lazily(upd: Updater) -> None:
    assert not upd.is_alive()
    t = Target()
    upd.schedule(t, now_ms())
    assert t.event.wait(5)
    assert upd.is_alive()


def test_rearms_with_returned_deadline_then_stops(upd: Updater) -> None:
    done = threading.Event()
    t = Target(plan=[5, 5, None])
    orig = t.on_timer

    def on_timer(now: int) -> Optional[int]:
        r = orig(now)
        if len(t.calls) == 3:
            done.set()
        return r

    t.on_timer = on_timer  # type: ignore[method-assign]
    upd.schedule(t, now_ms())
    assert done.wait(5)
    # returned None: not scheduled any more, the heap drains
    assert t.updater_deadline is None
    assert upd.scheduled() == 0
    fired = upd.fired
    t2 = Target()
    upd.schedule(t2, now_ms() + 30)
    assert t2.event.wait(5)
    assert len(t.calls) == 3  # the stopped target was never called again
    assert upd.fired == fired + 1


def test_earlier_deadline_wakes_sleeping_thread(upd: Updater) -> None:
    far = Target()
    upd.schedule(far, now_ms() + 60_000)
    # let the thread go to sleep on the far deadline
    deadline = time.monotonic() + 5
    while upd.sleeping_until is None and time.monotonic() < deadline:
        threading.Event().wait(0.001)
    near = Target()
    t0 = now_ms()
    upd.schedule(near, t0 + 20)
    assert near.event.wait(5)
    assert near.calls[0] - t0 < 2000
    assert upd.wakeups >= 1
    assert not far.calls


def test_schedule_only_moves_deadlines_earlier(upd: Updater) -> None:
    t = Target()
    now = now_ms()
    upd.schedule(t, now + 10_000)
    upd.schedule(t, now + 20_000)  # later: ignored
    assert t.updater_deadline == now + 10_000
    upd.schedule(t, now + 30)  # earlier: replaces
    assert t.updater_deadline == now + 30
    assert t.event.wait(5)
    assert len(t.calls) == 1  # the stale 10 s entry never fires for it


def test_cancel(upd: Updater) -> None:
    t = Target()
    upd.schedule(t, now_ms() + 50)
    upd.cancel(t)
    marker = Target()
    upd.schedule(marker, now_ms() + 150)
    assert marker.event.wait(5)
    assert not t.calls


def test_many_idle_targets_cost_no_callbacks(upd: Updater) -> None:
    targets = [Target() for _ in range(1000)]
    for t in targets:
        upd.schedule(t, now_ms())
    last = Target()
    upd.schedule(last, now_ms() + 100)
    assert last.event.wait(10)
    assert all(len(t.calls) == 1 for t in targets)
    fired = upd.fired
    marker = Target()
    upd.schedule(marker, now_ms() + 200)
    assert marker.event.wait(5)
    # idle targets returned None: nothing ran for them in the meantime
    assert upd.fired == fired + 1


def test_exception_in_callback_does_not_kill_thread(upd: Updater) -> None:
    class Bad(Target):
        def on_timer(self, now: int) -> Optional[int]:
            self.event.set()
            raise RuntimeError("boom")

    bad = Bad()
    upd.schedule(bad, now_ms())
    assert bad.event.wait(5)
    good = Target()
    upd.schedule(good, now_ms() + 10)
    assert good.event.wait(5)
    assert upd.is_alive()


def test_targets_are_weakly_referenced(upd: Updater) -> None:
    t = Target()
    ref = weakref.ref(t)
    upd.schedule(t, now_ms() + 60_000)
    del t
    gc.collect()
    assert ref() is None
    assert upd.scheduled() == 0


def test_release_ends_the_thread_only_when_nothing_live_is_scheduled(upd: Updater) -> None:
    t = Target()
    upd.schedule(t, now_ms() + 60_000)
    assert upd.is_alive()
    assert upd.release() is False  # a live target: the thread stays
    assert upd.is_alive()
    upd.cancel(t)
    assert upd.release() is True
    assert not upd.is_alive()  # joined before release returned
    assert upd.pending() == 0  # stale entries dropped with the thread
    # and it comes back on demand
    t2 = Target()
    upd.schedule(t2, now_ms() + 5)
    assert upd.is_alive()
    assert t2.event.wait(5)


def test_cancel_during_on_timer_wins_over_its_returned_deadline(upd: Updater) -> None:
    # A session closed (cancel, then release) on another thread while its
    # on_timer runs: the deadline that on_timer computed before the close
    # must not re-arm it, or the thread outlives the last close (or a new
    # one starts after release).
    entered = threading.Event()
    proceed = threading.Event()

    class Closing(Target):
        def on_timer(self, now: int) -> Optional[int]:
            entered.set()
            assert proceed.wait(5)
            return now + 60_000  # a keep-alive deadline

    t = Closing()
    upd.schedule(t, now_ms())
    assert entered.wait(5)
    thread = next(th for th in threading.enumerate() if th.name == "test-updater")
    upd.cancel(t)
    assert upd.release(wait=False) is True
    proceed.set()
    thread.join(5)
    assert not thread.is_alive()
    assert not upd.is_alive()  # no successor started for the cancelled target
    assert upd.scheduled() == 0
    assert t.updater_deadline is None


def test_schedule_during_on_timer_survives_an_earlier_cancel(upd: Updater) -> None:
    # cancel, then schedule again while on_timer runs: the target stays armed
    entered = threading.Event()
    proceed = threading.Event()

    class Busy(Target):
        def on_timer(self, now: int) -> Optional[int]:
            self.calls.append(now)
            if len(self.calls) == 1:
                entered.set()
                assert proceed.wait(5)
                return now + 60_000
            self.event.set()
            return None

    t = Busy()
    upd.schedule(t, now_ms())
    assert entered.wait(5)
    upd.cancel(t)
    upd.schedule(t, now_ms() + 20)
    proceed.set()
    assert t.event.wait(5)
    assert len(t.calls) == 2


def test_released_thread_never_runs_next_to_its_successor(upd: Updater) -> None:
    # release without waiting, then schedule at once: the retiring thread may
    # still be alive, but only the new one fires, and exactly once per entry
    for _ in range(20):
        t = Target()
        upd.release(wait=False)
        upd.schedule(t, now_ms())
        assert t.event.wait(5)
        assert len(t.calls) == 1
    alive = [th for th in threading.enumerate() if th.name == "test-updater"]
    upd.release()
    for th in alive:
        th.join(5)
        assert not th.is_alive()


def test_release_waits_for_a_thread_that_released_itself(upd: Updater) -> None:
    # The last background close finishes in a timer: the thread releases the
    # updater itself (it cannot join itself).  A later release(wait=True)
    # (drain_closing's, at exit or in a REPL) must wait for that thread too,
    # or a kcpsock thread is still alive after it returned.
    released = threading.Event()
    proceed = threading.Event()

    class LastClose(Target):
        def on_timer(self, now: int) -> Optional[int]:
            upd.cancel(self)
            assert upd.release(wait=False) is True
            released.set()
            assert proceed.wait(5)  # still on its way out
            return None

    t = LastClose()  # (the updater holds targets weakly)
    upd.schedule(t, now_ms())
    assert released.wait(5)
    thread = next(th for th in threading.enumerate() if th.name == "test-updater")
    assert not upd.is_alive()  # released: no current thread
    proceed.set()
    assert upd.release(wait=True) is True
    assert not thread.is_alive()


def test_repr_shows_thread_state_and_counts(upd: Updater) -> None:
    assert (
        repr(upd)
        == "<kcpsock Updater 'test-updater' idle (no thread) scheduled=0 fired=0 claimed=0 wakeups=0>"
    )
    t = Target()
    upd.schedule(t, now_ms() + 60_000)
    assert "running scheduled=1 fired=0" in repr(upd)


def deadline_of(t: Target) -> Optional[int]:
    return t.updater_deadline  # read through a call: mypy does not narrow it


def test_take_due_hands_the_accepted_due_targets_to_the_caller(upd: Updater) -> None:
    # hold the heap lock so the updater thread cannot run them first
    mine, other, later = Target(), Target(), Target()
    mine.mine = True  # type: ignore[attr-defined]
    now = now_ms()
    with upd._cond:
        upd.schedule(mine, now - 5)
        upd.schedule(other, now - 3)
        upd.schedule(later, now + 60_000)
        taken = upd.take_due(now, lambda t: getattr(t, "mine", False))
        assert taken == [mine]
        assert deadline_of(mine) is None
        # the one not accepted stays scheduled, at its deadline
        assert other.updater_deadline == now - 3
        assert upd.take_due(now, lambda t: True, limit=5) == [other]
        assert upd.take_due(now, lambda t: True) == []
    assert upd.claimed == 2
    # the caller runs it and re-arms it with what on_timer returned
    nxt = now + 1
    upd.rearm(mine, nxt)
    assert deadline_of(mine) == nxt
    assert mine.event.wait(5)  # the thread runs the re-armed timer
    assert not other.calls  # taken: the thread never ran it


def test_take_due_skips_cancelled_targets(upd: Updater) -> None:
    t = Target()
    now = now_ms()
    with upd._cond:
        upd.schedule(t, now - 1)
        upd.cancel(t)
        assert upd.take_due(now, lambda _: True) == []


def test_postpone_moves_a_waiting_deadline_later_and_runs_it_once(upd: Updater) -> None:
    t = Target()
    start = now_ms()
    upd.schedule(t, start + 20)
    assert upd.postpone(t, start + 150)
    assert t.updater_deadline == start + 150
    assert t.event.wait(5)
    assert t.calls[0] >= start + 150  # the old deadline's entry went stale
    assert len(t.calls) == 1
    assert upd.postponed == 1


def test_postpone_never_moves_earlier_nor_arms_an_unscheduled_target(upd: Updater) -> None:
    t = Target()

    def deadline() -> Optional[int]:
        return t.updater_deadline

    assert not upd.postpone(t, now_ms() + 1000)  # not scheduled: on_timer decides
    assert deadline() is None and upd.pending() == 0
    start = now_ms()
    upd.schedule(t, start + 1000)
    assert not upd.postpone(t, start + 500)
    assert deadline() == start + 1000
    upd.cancel(t)
    assert not upd.postpone(t, start + 2000)  # a cancel wins
    assert deadline() is None


def test_the_thread_never_sleeps_until_a_postponed_deadline(upd: Updater) -> None:
    far = Target()
    start = now_ms()
    upd.schedule(far, start + 60_000)
    deadline = time.monotonic() + 5
    while upd.sleeping_until != start + 60_000 and time.monotonic() < deadline:
        threading.Event().wait(0.001)
    assert upd.sleeping_until == start + 60_000
    targets = [Target() for _ in range(20)]
    marker = Target()
    with upd._lock:  # the thread sees all of it at once when it wakes
        for t in targets:
            upd.schedule(t, start + 200)  # wakes the thread (earlier than its sleep)
            assert upd.postpone(t, start + 30_000)
        upd.schedule(marker, start + 1_000)
    while upd.sleeping_until in (None, start + 60_000) and time.monotonic() < deadline:
        threading.Event().wait(0.001)
    # the stale entries at the top of the heap were dropped, not slept until
    assert upd.sleeping_until == start + 1_000
    assert upd.scheduled() == 22
    assert not any(t.calls for t in targets)


def test_heap_keys_order_equal_deadlines_and_drop_stale_entries(upd: Updater) -> None:
    """Int heap keys: due targets come out in deadline order, each once; stale keys go away.

    Keep-alive deadlines sit on a coarse grid, so many are equal; postponed
    and cancelled targets leave stale keys behind, which are dropped (with
    their dict entries) as they are popped, never run.
    """
    base = now_ms() - 10_000  # all due: take_due runs them here, not the thread
    targets = [Target() for _ in range(300)]
    with upd._cond:
        for i, t in enumerate(targets):
            upd.schedule(t, base + 250 * (i % 5))  # five grid slots, 60 each
        for t in targets[::3]:
            assert upd.postpone(t, base + 2_000)  # a later slot: the old key goes stale
        for t in targets[1::7]:
            upd.cancel(t)
        live = [t for t in targets if t.updater_seq != 0]
        assert upd.scheduled() == len(live)
        assert upd.pending() == 300 + 100  # 100 stale keys from the postponements
        taken = upd.take_due(base + 5_000, lambda t: True, limit=1000)
        assert upd.pending() == 0 and not upd._refs  # stale keys dropped with their refs
    assert sorted(map(id, taken)) == sorted(map(id, live))  # each live target once
    deadlines = [base + (2_000 if i % 3 == 0 else 250 * (i % 5)) for i in range(300)]
    index = {id(t): i for i, t in enumerate(targets)}
    order = [deadlines[index[id(t)]] for t in taken]
    assert order == sorted(order)
    assert all(t.updater_deadline is None for t in taken)
    assert not any(t.calls for t in targets)  # the thread ran none of them


def test_deadline_of_decodes_heap_keys(upd: Updater) -> None:
    from kcpsock.updater import deadline_of as key_deadline

    t = Target()
    now = now_ms()
    with upd._cond:
        upd.schedule(t, now + 123_456)
        assert key_deadline(t.updater_seq) == now + 123_456
        assert upd._heap == [t.updater_seq]
        upd.postpone(t, now + 200_000)
        assert key_deadline(t.updater_seq) == now + 200_000
        assert upd._heap[0] < t.updater_seq  # the stale key (earlier) stays on top
