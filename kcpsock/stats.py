"""SNMP-style counters, as kcp-go's ``snmp.go`` (``DefaultSnmp``).

One process-wide :data:`snmp` collects what every session and listener does,
under kcp-go HEAD's field names, so tools that log kcp-go's SNMP (kcptun's
``-snmplog``) read ours the same way.  :meth:`Snmp.header` and
:meth:`Snmp.to_list` follow HEAD's ``Header()``/``ToSlice()`` order.

Invariants:

* counters are non-negative ints that only grow, except the gauges
  (``CurrEstab``, ``FECShardSet``, ``FECShardMin``, ``RingBuffer*``) and
  :meth:`Snmp.reset`;
* updates go through :meth:`Snmp.add` / :meth:`Snmp.add_many` (one lock
  acquisition per call), or are pulled: a session registers itself as a
  :class:`CounterSource` and only counts in its own attributes; every read
  (an attribute, :meth:`Snmp.values`, :meth:`Snmp.copy`, ...) first folds
  in what the registered sources counted since the last read
  (:data:`SOURCE_FIELDS`), so the hot paths never touch the global lock and
  readers still see every increment made before the read;
* pure module: it imports no threading.  The lock is any context manager
  given to the constructor or :meth:`Snmp.set_lock`; the session layer gives
  the global :data:`snmp` a real lock when it is imported.  Without one,
  concurrent updates may in rare cases lose an increment.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from typing import Callable, Optional, Protocol, cast

__all__ = ["FIELDS", "HEADER", "KCPSOCK_FIELDS", "SOURCE_FIELDS", "CounterSource", "Snmp", "snmp"]

#: Attribute names in kcp-go HEAD's ``Snmp`` struct order.
FIELDS: tuple[str, ...] = (
    "BytesSent",  # bytes accepted by send (kcp-go Write)
    "BytesReceived",  # bytes returned by recv (kcp-go Read)
    "MaxConn",  # highest CurrEstab ever seen
    "ActiveOpens",  # client sessions created
    "PassiveOpens",  # listener sessions created
    "CurrEstab",  # sessions open now
    "InErrs",  # datagrams dropped: too short, wrong source, FEC too short
    "InCsumErrors",  # CRC mismatch / AEAD tag failure after decryption
    "KCPInErrors",  # KCP input rejected the datagram
    "InPkts",  # datagrams passed to KCP input (after decryption)
    "OutPkts",  # UDP datagrams written
    "InSegs",  # KCP segments parsed by input
    "OutSegs",  # KCP segments written by flush
    "InBytes",  # bytes of datagrams passed to KCP input (after decryption)
    "OutBytes",  # UDP payload bytes written
    "RetransSegs",  # LostSegs + FastRetransSegs + EarlyRetransSegs
    "FastRetransSegs",  # fast retransmissions
    "EarlyRetransSegs",  # early retransmissions
    "LostSegs",  # RTO retransmissions
    "RepeatSegs",  # duplicate PUSH segments received
    "FECFullShardSet",  # shard sets complete without recovery (header "FECFullShards")
    "FECParityShards",  # parity packets received
    "FECErrs",  # FEC packets rejected (bad size prefix, bad header, ...)
    "FECRecovered",  # data shards reconstructed
    "FECShardSet",  # gauge: shard sets held by decoders
    "FECShardMin",  # gauge: newest shard-set id (kcp-go's misnomer)
    "RingBufferSndQueue",  # gauge: len(snd_queue) at the last flush
    "RingBufferRcvQueue",  # gauge: len(rcv_queue) at the last flush
    "RingBufferSndBuffer",  # gauge: len(snd_buf) at the last flush
    "OOBPackets",  # OOB datagrams received (kcpsock sends none)
)

#: Column names of :meth:`Snmp.header` (kcp-go HEAD ``Header()``).
HEADER: tuple[str, ...] = tuple(
    "FECFullShards" if name == "FECFullShardSet" else name for name in FIELDS
)

#: Counters kcp-go does not have, kept as attributes outside :data:`HEADER` (so
#: a CSV log stays kcp-go's): the seed's ``FECShortShards`` (removed in HEAD),
#: and kcpsock's own (see :data:`KCPSOCK_FIELDS`).
KCPSOCK_FIELDS: tuple[str, ...] = (
    "InReplays",  # datagrams dropped: nonce seen before (replay or reflection), kcpsock.replay
)
_EXTRA = ("FECShortShards", *KCPSOCK_FIELDS)
_ALL = FIELDS + _EXTRA
_INDEX = {name: i for i, name in enumerate(_ALL)}

#: What a :class:`CounterSource` reports, in the order of its tuple
#: (``RetransSegs`` follows from the three retransmission kinds).
SOURCE_FIELDS: tuple[str, ...] = (
    "BytesSent",
    "BytesReceived",
    "InPkts",
    "InBytes",
    "OutPkts",
    "OutBytes",
    "InSegs",
    "OutSegs",
    "LostSegs",
    "FastRetransSegs",
    "EarlyRetransSegs",
    "RepeatSegs",
    "FECParityShards",
    "FECFullShardSet",
    "FECRecovered",
    "FECErrs",
)
_SOURCE_INDEX = tuple(_INDEX[name] for name in SOURCE_FIELDS)
_RETRANS = _INDEX["RetransSegs"]
_RETRANS_KINDS = tuple(
    SOURCE_FIELDS.index(n) for n in ("LostSegs", "FastRetransSegs", "EarlyRetransSegs")
)
_PULLED = frozenset(SOURCE_FIELDS) | {"RetransSegs"}
_ZEROS = (0,) * len(SOURCE_FIELDS)


class CounterSource(Protocol):
    """Something that counts in its own attributes (a session), read by :class:`Snmp`."""

    def snmp_counts(self) -> tuple[int, ...]:
        """Return the cumulative counts since creation, aligned with :data:`SOURCE_FIELDS`.

        Each value may only grow, and only one thread at a time may change
        each (read without a lock: a value in the middle of an update is
        folded in at the next read).
        """


class Snmp:
    """A set of kcp-go SNMP counters (see :data:`FIELDS` for their meaning).

    Args:
        lock: a context manager (e.g. ``threading.Lock()``) held during
            updates, copies and resets; None for no locking.

    Every name of :data:`FIELDS` (and ``FECShortShards`` and
    :data:`KCPSOCK_FIELDS`) is an int attribute.  Sources registered with
    :meth:`register` are folded in at every read.
    """

    __slots__ = ("_lock", "_sources", "_v")

    BytesSent: int
    BytesReceived: int
    MaxConn: int
    ActiveOpens: int
    PassiveOpens: int
    CurrEstab: int
    InErrs: int
    InCsumErrors: int
    KCPInErrors: int
    InPkts: int
    OutPkts: int
    InSegs: int
    OutSegs: int
    InBytes: int
    OutBytes: int
    RetransSegs: int
    FastRetransSegs: int
    EarlyRetransSegs: int
    LostSegs: int
    RepeatSegs: int
    FECFullShardSet: int
    FECParityShards: int
    FECErrs: int
    FECRecovered: int
    FECShardSet: int
    FECShardMin: int
    RingBufferSndQueue: int
    RingBufferRcvQueue: int
    RingBufferSndBuffer: int
    OOBPackets: int
    FECShortShards: int
    InReplays: int

    def __init__(self, lock: Optional[AbstractContextManager[object]] = None) -> None:
        self._lock: AbstractContextManager[object] = (
            lock if lock is not None else contextlib.nullcontext()
        )
        self._v = [0] * len(_ALL)
        # source -> the counts already folded in (weak: a source collected
        # without unregister() loses only what it counted since the last read)
        self._sources: weakref.WeakKeyDictionary[CounterSource, tuple[int, ...]] = (
            weakref.WeakKeyDictionary()
        )

    def set_lock(self, lock: AbstractContextManager[object]) -> None:
        """Use ``lock`` from now on to serialise updates.

        Args:
            lock: a context manager such as ``threading.Lock()``.
        """
        self._lock = lock

    # --- pulled counters -----------------------------------------------------

    def register(self, source: CounterSource) -> None:
        """Count what ``source`` counts from now on (all of it: from zero).

        Args:
            source: an object with ``snmp_counts()`` (weakly referenced).
        """
        with self._lock:
            if source not in self._sources:
                self._sources[source] = _ZEROS

    def unregister(self, source: CounterSource) -> None:
        """Fold in what ``source`` counted so far and stop reading it."""
        with self._lock:
            seen = self._sources.pop(source, None)
            if seen is not None:
                self._fold(seen, source.snmp_counts())

    def _fold(self, old: tuple[int, ...], cur: tuple[int, ...]) -> tuple[int, ...]:
        """Add ``cur - old`` (lock held); return what is now folded in."""
        v = self._v
        new = list(cur)
        for j, (o, c) in enumerate(zip(old, cur)):
            if c > o:
                v[_SOURCE_INDEX[j]] += c - o
            elif c < o:  # never: values only grow (keep the old mark)
                new[j] = o
        for j in _RETRANS_KINDS:
            if cur[j] > old[j]:
                v[_RETRANS] += cur[j] - old[j]
        return tuple(new)

    def _collect_locked(self) -> None:
        sources = self._sources
        for source, seen in list(sources.items()):
            cur = source.snmp_counts()
            if cur != seen:
                sources[source] = self._fold(seen, cur)

    def collect(self) -> None:
        """Fold in what the registered sources counted since the last read."""
        if self._sources:
            with self._lock:
                self._collect_locked()

    # --- reading ---------------------------------------------------------------

    @staticmethod
    def header() -> list[str]:
        """Return the column names, in kcp-go HEAD's ``Header()`` order.

        Returns:
            A new list of strings (``FECFullShardSet`` appears as "FECFullShards").
        """
        return list(HEADER)

    def to_list(self) -> list[str]:
        """Return the current values as decimal strings (kcp-go ``ToSlice``).

        Returns:
            A list aligned with :meth:`header`.
        """
        return [str(v) for v in self.values()]

    def values(self) -> list[int]:
        """Return the current values as ints, aligned with :meth:`header`.

        Returns:
            A consistent snapshot (taken under the lock).
        """
        with self._lock:
            self._collect_locked()
            return self._v[: len(FIELDS)]

    def as_dict(self) -> dict[str, int]:
        """Return ``{attribute name: value}`` for every counter (a snapshot)."""
        with self._lock:
            self._collect_locked()
            return dict(zip(_ALL, self._v))

    def copy(self) -> Snmp:
        """Return an independent snapshot (kcp-go ``Copy``), without a lock.

        Returns:
            A new :class:`Snmp` holding the current values.
        """
        other = Snmp()
        with self._lock:
            self._collect_locked()
            other._v = list(self._v)
        return other

    def reset(self) -> None:
        """Set every counter and gauge to zero (kcp-go ``Reset``)."""
        with self._lock:
            self._collect_locked()  # what sources counted before the reset stays out
            self._v = [0] * len(_ALL)

    # --- updating --------------------------------------------------------------

    def add(self, name: str, n: int = 1) -> None:
        """Add ``n`` to one counter.

        Args:
            name: an attribute name of :data:`FIELDS` (or ``FECShortShards``,
                or one of :data:`KCPSOCK_FIELDS`).
            n: the increment.

        Raises:
            AttributeError: unknown counter name.
        """
        i = _index(name)
        with self._lock:
            self._v[i] += n

    def add_many(self, counts: Mapping[str, int] | Iterable[tuple[str, int]]) -> None:
        """Add several increments under one lock acquisition.

        Args:
            counts: a mapping or pairs ``(counter name, increment)``; zero
                increments are skipped.

        Raises:
            AttributeError: unknown counter name.
        """
        # type() rather than isinstance(Mapping): the ABC check costs more
        # than the additions
        kind = type(counts)
        items: Iterable[tuple[str, int]]
        if kind is list or kind is tuple:
            items = cast("Iterable[tuple[str, int]]", counts)
        elif isinstance(counts, Mapping):
            items = counts.items()
        else:
            items = counts
        pairs = [(_index(name), n) for name, n in items if n]
        with self._lock:
            v = self._v
            for i, n in pairs:
                v[i] += n

    def set_gauges(self, **values: int) -> None:
        """Set gauges (``RingBuffer*``, ``FECShardSet``, ``FECShardMin``).

        Args:
            **values: counter names and their new values.

        Raises:
            AttributeError: unknown counter name.
        """
        pairs = [(_index(name), value) for name, value in values.items()]
        with self._lock:
            v = self._v
            for i, value in pairs:
                v[i] = value

    def session_opened(self, passive: bool) -> None:
        """Count a new session: Active/PassiveOpens, CurrEstab and MaxConn.

        Args:
            passive: True for a listener-created session, False for a client.
        """
        with self._lock:
            v = self._v
            v[_INDEX["PassiveOpens" if passive else "ActiveOpens"]] += 1
            cur = v[_CURR] + 1
            v[_CURR] = cur
            if cur > v[_MAX]:
                v[_MAX] = cur

    def session_closed(self) -> None:
        """Count a closed session (CurrEstab decreases, never below zero)."""
        with self._lock:
            v = self._v
            if v[_CURR] > 0:
                v[_CURR] -= 1

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Snmp):
            return NotImplemented
        return self.as_dict() == other.as_dict()

    # defining __eq__ sets __hash__ to None: counters are mutable, not hashable

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v}" for k, v in self.as_dict().items() if v)
        return f"Snmp({shown})"


_CURR = _INDEX["CurrEstab"]
_MAX = _INDEX["MaxConn"]


def _index(name: str) -> int:
    i = _INDEX.get(name)
    if i is None:
        raise AttributeError(f"'Snmp' object has no counter {name!r}")
    return i


def _field(i: int, pulled: bool) -> property:
    """The attribute of counter ``i``: reads fold the sources in first if ``pulled``."""

    def get_pulled(self: Snmp) -> int:
        if self._sources:
            self.collect()
        return self._v[i]

    def get(self: Snmp) -> int:
        return self._v[i]

    def set_(self: Snmp, value: int) -> None:
        self._v[i] = value

    getter: Callable[[Snmp], int] = get_pulled if pulled else get
    return property(getter, set_)


for _i, _name in enumerate(_ALL):
    setattr(Snmp, _name, _field(_i, _name in _PULLED))
del _i, _name


#: The process-wide counters (kcp-go ``DefaultSnmp``).
snmp = Snmp()
