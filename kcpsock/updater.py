"""The global timer thread that drives every session's periodic flush.

kcp-go HEAD (``timedsched.go``) re-queues ``sess.update`` at the delay each
flush returns; the 2017 seed ran one global heap (``updater.go``).  kcpsock
keeps one daemon thread over a heap of keys ``deadline_ms << 40 | seq`` (plain
ints: a comparison is one int compare, not a tuple's two or three; a dict
maps each key to ``weakref(target)``)
and goes further: a target whose ``on_timer`` returns None is not re-armed at
all, so an idle session (nothing in flight, no pending ACK, no probe) costs
nothing until ``send`` or ``input`` schedules it again.

Invariants:

* a target is in the heap at most once *validly*: ``target.updater_seq``
  is its live entry's key, older entries are skipped when popped (lazy
  deletion), and ``target.updater_deadline`` is that entry's deadline or
  None when the target is not scheduled;
* :meth:`Updater.schedule` only ever moves a deadline earlier; ``on_timer``
  decides the next one, and :meth:`Updater.postpone` moves the deadline of a
  target that is waiting (not running) later: a keep-alive answered before
  its deadline skips the wake-up that would only find nothing to do.  Before ``on_timer`` runs, ``updater_deadline`` is
  reset to None under the heap lock, so a caller that changed the target's
  state and then saw a non-None deadline can rely on that ``on_timer``
  seeing its change;
* the thread waits on a Condition with the time to the earliest valid
  deadline (stale entries at the top of the heap are dropped first; forever
  when the heap is empty) and is notified only when a new deadline
  is earlier than the one it sleeps until, never once per packet;
* ``on_timer`` runs on the updater thread without the heap lock; exceptions
  it raises are logged and the target is dropped from the schedule;
* the heap holds weak references, so a forgotten session is collected;
* a :meth:`Updater.cancel` wins over the deadline that an ``on_timer``
  running at the same time returns (see :meth:`Updater.rearm`);
* another thread may take due timers and run them itself
  (:meth:`Updater.take_due`, then :meth:`Updater.rearm`): a busy listener's
  receiver saves the updater thread a wake-up and a GIL hand-off per
  session and tick, which with a hundred busy sessions delayed their ACKs
  by tens of milliseconds.  The thread pops one due target at a time, so
  the others stay available meanwhile;
* :meth:`Updater.release` ends the thread when nothing valid is scheduled
  (the session layer calls it when its last session or listener closes, so
  no kcpsock thread outlives ``close()``); the next :meth:`schedule`
  starts a new one.  A thread exits as soon as its generation is not the
  current one, so a retiring thread never runs timers next to a new one.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
import weakref
from typing import Callable, Final, Optional, Protocol

from ._mypyc import mypyc_attr

__all__ = ["Schedulable", "Updater", "deadline_of", "now_ms", "updater"]

_log = logging.getLogger("kcpsock.updater")

_T0 = time.monotonic()


def now_ms() -> int:
    """Return the session clock: whole milliseconds since kcpsock was imported.

    Returns:
        A non-negative int, monotonic (never goes back with the wall clock).
    """
    return int((time.monotonic() - _T0) * 1000.0) + 1


class Schedulable(Protocol):
    """What :class:`Updater` needs from a target (a session)."""

    updater_deadline: Optional[int]
    updater_seq: int

    def on_timer(self, now: int) -> Optional[int]:
        """Do the periodic work; return the next deadline (ms) or None to stop."""


#: A heap key is ``deadline << _SHIFT | seq`` (seq taken modulo ``1 << _SHIFT``,
#: never 0: two entries alive at once never share one).
_SHIFT: Final = 40
_SEQ_MASK: Final = (1 << _SHIFT) - 1


def _key(deadline: int, seq: int) -> int:
    """The heap key of ``deadline`` for the ``seq``-th entry (never 0)."""
    return (deadline << _SHIFT) | ((seq & _SEQ_MASK) or 1)


def deadline_of(key: int) -> int:
    """The deadline (ms) of a heap key (for tests and tools)."""
    return key >> _SHIFT


@mypyc_attr(allow_interpreted_subclasses=True)
class Updater:
    """A heap of timers run by one daemon thread, started on first use.

    Use the global :data:`updater`; separate instances exist for tests.
    """

    def __init__(self, name: str = "kcpsock-updater") -> None:
        # the heap lock (with statements on it run in C, unlike the Condition's)
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        # heap keys (see _key), and what each names
        self._heap: list[int] = []
        self._refs: dict[int, weakref.ReferenceType[Schedulable]] = {}
        self._seq = itertools.count(1)
        self._worker: Optional[threading.Thread] = None
        # threads released without a join (release(wait=False), or from the
        # thread itself), for the next release(wait=True) to wait for
        self._retired: list[threading.Thread] = []
        self._name = name
        self._stopping = False
        # The deadline the thread sleeps until; None while it is running
        # timers (then it re-reads the heap before sleeping, so no notify is
        # needed); -1 while it sleeps with no deadline at all.
        self._sleep_until: Optional[int] = None
        # the generation of the current thread; release() moves it on
        self._gen = 0
        #: Number of timer callbacks run (for tests and benchmarks).
        self.fired = 0
        #: Number of times the thread was woken early by :meth:`schedule`.
        self.wakeups = 0
        #: Number of due timers taken by other threads (:meth:`take_due`).
        self.claimed = 0
        #: Number of deadlines moved later (:meth:`postpone`).
        self.postponed = 0
        #: Number of times the thread went to sleep (waited on its Condition).
        self.sleeps = 0

    def schedule(self, target: Schedulable, deadline: int) -> None:
        """Make sure ``target.on_timer`` runs at ``deadline`` (ms) or earlier.

        Cheap when the target is already scheduled no later than
        ``deadline``: one attribute read, no lock.

        Args:
            target: the object to run (weakly referenced).
            deadline: absolute time on the :func:`now_ms` clock.
        """
        current = target.updater_deadline
        if current is not None and current <= deadline:
            return
        with self._lock:
            current = target.updater_deadline
            if current is not None and current <= deadline:
                return
            key = _key(deadline, next(self._seq))
            target.updater_deadline = deadline
            target.updater_seq = key
            self._refs[key] = weakref.ref(target)
            heapq.heappush(self._heap, key)
            if self._worker is None or not self._worker.is_alive():
                self._start()
            sleep_until = self._sleep_until
            if sleep_until is not None and (sleep_until < 0 or deadline < sleep_until):
                self.wakeups += 1
                # all: a retiring thread (see release) may be waiting too
                self._cond.notify_all()

    def postpone(self, target: Schedulable, deadline: int) -> bool:
        """Move the deadline of a waiting ``target`` later, to ``deadline``.

        For a caller that knows the target's ``on_timer`` would find nothing
        to do before ``deadline`` (a session whose keep-alive was answered):
        the old entry becomes stale, so the thread never runs it.  Does
        nothing if the target is not scheduled, is being run right now (its
        ``on_timer`` decides), or is due no earlier than ``deadline`` already.

        Args:
            target: a target (normally scheduled).
            deadline: absolute time on the :func:`now_ms` clock.

        Returns:
            True if the deadline was moved.
        """
        with self._lock:
            current = target.updater_deadline
            if current is None or current >= deadline or target.updater_seq == 0:
                return False
            key = _key(deadline, next(self._seq))
            target.updater_deadline = deadline
            target.updater_seq = key
            self._refs[key] = weakref.ref(target)
            heapq.heappush(self._heap, key)
            self.postponed += 1
            return True

    def take_due(
        self, now: int, accept: Callable[[Schedulable], bool], limit: int = 256
    ) -> list[Schedulable]:
        """Take due timers off the schedule, for the calling thread to run.

        A receiver thread that is busy anyway runs the due timers of its own
        sessions between batches instead of leaving them to the updater
        thread, whose wake-up and GIL hand-offs (one per send) delay the
        ACKs of a hundred busy sessions by tens of milliseconds.  For each
        target taken, the caller runs ``on_timer`` and :meth:`rearm` with
        its result, or hands it back with :meth:`schedule`.

        Args:
            now: the current time (:func:`now_ms` clock).
            accept: which targets the caller takes; the others stay.
            limit: targets taken at most.

        Returns:
            The due targets taken (earliest first), no longer scheduled.
        """
        heap = self._heap
        due = (now + 1) << _SHIFT  # keys below it are due
        if not heap or heap[0] >= due:  # a racy peek: a miss waits one batch
            return []
        taken: list[Schedulable] = []
        with self._lock:
            refs = self._refs
            keep: list[int] = []
            while heap and heap[0] < due and len(taken) < limit:
                key = heapq.heappop(heap)
                ref = refs.pop(key, None)
                target = ref() if ref is not None else None
                if target is None or target.updater_seq != key:
                    continue  # stale
                if accept(target):
                    target.updater_deadline = None
                    taken.append(target)
                else:
                    keep.append(key)
                    refs[key] = weakref.ref(target)
            for key in keep:
                heapq.heappush(heap, key)
            self.claimed += len(taken)
        return taken

    def cancel(self, target: Schedulable) -> None:
        """Remove ``target`` from the schedule (its heap entry becomes stale).

        If its ``on_timer`` is running right now, the deadline it returns is
        ignored; a later :meth:`schedule` arms it again.

        Args:
            target: a scheduled or unscheduled target.
        """
        with self._lock:
            target.updater_deadline = None
            target.updater_seq = 0

    def release(self, wait: bool = True, timeout: float = 1.0) -> bool:
        """End the thread if no live target is scheduled (it restarts on demand).

        Args:
            wait: join the thread (at most ``timeout`` seconds) unless called
                from the thread itself.
            timeout: seconds to wait for the thread to end.

        Returns:
            True if the thread was told to end (or none was running), False
            if live targets are still scheduled.
        """
        with self._cond:
            for key, ref in self._refs.items():
                target = ref()
                if target is not None and target.updater_seq == key:
                    return False
            self._heap.clear()
            self._refs.clear()
            thread = self._worker
            self._worker = None
            self._gen += 1
            self._cond.notify_all()
            me = threading.current_thread()
            retired = [t for t in self._retired if t.is_alive()]
            if thread is not None:
                retired.append(thread)
            if wait:
                # this thread's and the earlier retired ones (one that
                # released itself from a timer is still on its way out)
                joining = [t for t in retired if t is not me]
                retired = [t for t in retired if t is me]
            else:
                joining = []
            self._retired = retired
        end = time.monotonic() + timeout
        for t in joining:
            t.join(max(0.0, end - time.monotonic()))
        return True

    def pending(self) -> int:
        """Return how many heap entries exist (stale ones included)."""
        with self._lock:
            return len(self._heap)

    def scheduled(self) -> int:
        """Return how many live targets are scheduled."""
        with self._lock:
            count = 0
            for key, ref in self._refs.items():
                target = ref()
                if target is not None and target.updater_seq == key:
                    count += 1
            return count

    def stop(self, timeout: float = 1.0) -> None:
        """Stop the thread (tests only; the global updater runs until exit).

        Args:
            timeout: seconds to wait for the thread to end.
        """
        with self._cond:
            self._stopping = True
            self._cond.notify()
            thread = self._worker
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def is_alive(self) -> bool:
        """Return True while the thread runs."""
        thread = self._worker
        return thread is not None and thread.is_alive()

    @property
    def sleeping_until(self) -> Optional[int]:
        """What the thread waits for now (for tests and diagnostics).

        Returns:
            The deadline (ms, :func:`now_ms` clock) the thread sleeps until;
            -1 while it sleeps with nothing scheduled; None while it is
            running timers, or no thread runs.
        """
        return self._sleep_until

    def __repr__(self) -> str:
        state = "running" if self.is_alive() else "idle (no thread)"
        return (
            f"<kcpsock Updater {self._name!r} {state} scheduled={self.scheduled()}"
            f" fired={self.fired} claimed={self.claimed} wakeups={self.wakeups}>"
        )

    def _start(self) -> None:
        # Called with the lock held.
        self._stopping = False
        self._sleep_until = None
        thread = threading.Thread(target=self._run, args=(self._gen,), name=self._name, daemon=True)
        self._worker = thread
        thread.start()

    def _run(self, gen: int) -> None:
        cond = self._cond
        heap = self._heap
        refs = self._refs
        while True:
            with cond:
                while True:
                    if self._stopping or gen != self._gen:
                        if gen == self._gen:
                            self._sleep_until = None
                        return
                    now_f = (time.monotonic() - _T0) * 1000.0 + 1
                    now = int(now_f)
                    due_key = (now + 1) << _SHIFT  # keys below it are due
                    if heap and heap[0] < due_key:
                        break
                    # never sleep until a stale entry (a postponed or
                    # cancelled deadline): drop those at the top first
                    while heap:
                        key = heap[0]
                        ref = refs.get(key)
                        target = ref() if ref is not None else None
                        if target is not None and target.updater_seq == key:
                            break
                        heapq.heappop(heap)
                        refs.pop(key, None)
                    target = None
                    self.sleeps += 1
                    if heap:
                        deadline = heap[0] >> _SHIFT
                        self._sleep_until = deadline
                        # Wake just after the deadline's millisecond begins.
                        cond.wait((deadline - now_f) / 1000.0 + 0.0002)
                    else:
                        self._sleep_until = -1
                        cond.wait()
                    if gen == self._gen:
                        self._sleep_until = None
                # one due target at a time: while this thread runs it (and
                # waits for the GIL after its sends), the others stay in the
                # heap, where a receiver holding their lock may claim them
                due: Optional[Schedulable] = None
                while heap and heap[0] < due_key:
                    key = heapq.heappop(heap)
                    ref = refs.pop(key, None)
                    target = ref() if ref is not None else None
                    if target is not None and target.updater_seq == key:
                        target.updater_deadline = None
                        due = target
                        break
                target = None  # no strong reference beyond this run (weakly held)
            if due is None:
                continue
            self.fired += 1
            try:
                nxt = due.on_timer(now_ms())
            except Exception:  # never let one session kill the thread
                _log.exception("timer callback of %r failed", due)
                nxt = None
            if nxt is not None:
                self.rearm(due, nxt)
            due = None

    def rearm(self, target: Schedulable, deadline: int) -> None:
        """Schedule ``target`` at the deadline its ``on_timer`` returned, unless cancelled.

        A :meth:`cancel` that ran while ``on_timer`` did wins: a session
        closed on another thread meanwhile must not be re-armed with the
        deadline computed before its close (that entry would keep the thread
        alive after the last close, or start a new one after :meth:`release`).
        """
        current = target.updater_deadline
        if current is not None and current <= deadline:
            return
        with self._lock:
            # cancel() zeroes the seq; popping an entry leaves it as it was
            if target.updater_seq == 0:
                return
            self.schedule(target, deadline)


#: The process-wide updater (started when the first session is scheduled).
updater = Updater()
