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
  acquisition per call, so the I/O layers batch their updates), reads of
  single attributes are plain attribute reads;
* pure module: it imports no threading.  The lock is any context manager
  given to the constructor or :meth:`Snmp.set_lock`; the session layer gives
  the global :data:`snmp` a real lock when it is imported.  Without one,
  concurrent updates may in rare cases lose an increment.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from typing import Optional, cast

__all__ = ["FIELDS", "HEADER", "KCPSOCK_FIELDS", "Snmp", "snmp"]

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


class Snmp:
    """A set of kcp-go SNMP counters (see :data:`FIELDS` for their meaning).

    Args:
        lock: a context manager (e.g. ``threading.Lock()``) held during
            updates, copies and resets; None for no locking.

    Every name of :data:`FIELDS` (and ``FECShortShards`` and
    :data:`KCPSOCK_FIELDS`) is an int attribute.
    """

    __slots__ = (*_ALL, "_lock")

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
        for name in _ALL:
            object.__setattr__(self, name, 0)

    def set_lock(self, lock: AbstractContextManager[object]) -> None:
        """Use ``lock`` from now on to serialise updates.

        Args:
            lock: a context manager such as ``threading.Lock()``.
        """
        self._lock = lock

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
            return [getattr(self, name) for name in FIELDS]

    def as_dict(self) -> dict[str, int]:
        """Return ``{attribute name: value}`` for every counter (a snapshot)."""
        with self._lock:
            return {name: getattr(self, name) for name in _ALL}

    def copy(self) -> Snmp:
        """Return an independent snapshot (kcp-go ``Copy``), without a lock.

        Returns:
            A new :class:`Snmp` holding the current values.
        """
        other = Snmp()
        with self._lock:
            for name in _ALL:
                object.__setattr__(other, name, getattr(self, name))
        return other

    def reset(self) -> None:
        """Set every counter and gauge to zero (kcp-go ``Reset``)."""
        with self._lock:
            for name in _ALL:
                object.__setattr__(self, name, 0)

    def add(self, name: str, n: int = 1) -> None:
        """Add ``n`` to one counter.

        Args:
            name: an attribute name of :data:`FIELDS` (or ``FECShortShards``,
                or one of :data:`KCPSOCK_FIELDS`).
            n: the increment.

        Raises:
            AttributeError: unknown counter name.
        """
        with self._lock:
            object.__setattr__(self, name, getattr(self, name) + n)

    def add_many(self, counts: Mapping[str, int] | Iterable[tuple[str, int]]) -> None:
        """Add several increments under one lock acquisition.

        Args:
            counts: a mapping or pairs ``(counter name, increment)``; zero
                increments are skipped.

        Raises:
            AttributeError: unknown counter name.
        """
        # type() rather than isinstance(Mapping): the ABC check costs more
        # than the additions on the per-packet paths
        kind = type(counts)
        items: Iterable[tuple[str, int]]
        if kind is list or kind is tuple:
            items = cast("Iterable[tuple[str, int]]", counts)
        elif isinstance(counts, Mapping):
            items = counts.items()
        else:
            items = counts
        with self._lock:
            for name, n in items:
                if n:
                    object.__setattr__(self, name, getattr(self, name) + n)

    def set_gauges(self, **values: int) -> None:
        """Set gauges (``RingBuffer*``, ``FECShardSet``, ``FECShardMin``).

        Args:
            **values: counter names and their new values.

        Raises:
            AttributeError: unknown counter name.
        """
        with self._lock:
            for name, value in values.items():
                getattr(self, name)
                object.__setattr__(self, name, value)

    def session_opened(self, passive: bool) -> None:
        """Count a new session: Active/PassiveOpens, CurrEstab and MaxConn.

        Args:
            passive: True for a listener-created session, False for a client.
        """
        with self._lock:
            if passive:
                self.PassiveOpens += 1
            else:
                self.ActiveOpens += 1
            self.CurrEstab += 1
            if self.CurrEstab > self.MaxConn:
                self.MaxConn = self.CurrEstab

    def session_closed(self) -> None:
        """Count a closed session (CurrEstab decreases, never below zero)."""
        with self._lock:
            if self.CurrEstab > 0:
                self.CurrEstab -= 1

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Snmp):
            return NotImplemented
        return self.as_dict() == other.as_dict()

    # defining __eq__ sets __hash__ to None: counters are mutable, not hashable

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v}" for k, v in self.as_dict().items() if v)
        return f"Snmp({shown})"


#: The process-wide counters (kcp-go ``DefaultSnmp``).
snmp = Snmp()
