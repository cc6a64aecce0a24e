"""A bounded memory of recently seen packet nonces: replay and reflection filter.

kcp-go's packet layer has no handshake, no sequence number in clear and no
timestamp: a datagram captured on the wire and sent again (a *replay*, from
any source port) or sent back to its sender (a *reflection*, both directions
share key and conv) decrypts and passes the CRC or AEAD tag check like the
original.  What it does carry is a fresh random nonce per datagram
(docs/CRYPTO.md §1 and §4): 16 bytes in classic mode, 12 in AEAD mode.  A receiver that
remembers the nonces it received *and* sent recently can drop both attacks
without changing the wire format.

Which bytes are remembered (:func:`nonce_key`)::

    classic (block ciphers, salsa20, xor, none):  wire bytes 0..15
    AEAD (aes-gcm):                               wire bytes 0..11 (in clear)
    plain (no cipher):                            nothing (no nonce exists)

In classic mode the nonce is encrypted, but for a fixed key the first 16
wire bytes are a bijection of the 16-byte nonce (CFB with kcp-go's fixed IV:
the first block is ``nonce XOR E(IV)``, an 8-byte cipher's second block is
``nonce[8:] XOR E(C0)``; Salsa20 leaves bytes 0..7 in clear and XORs 8..15
with a keystream chosen by 0..7; xor and none are fixed XORs), so "this wire
prefix was seen" is "this nonce was seen", and replays are recognised
before any decryption.

Window (both limits apply, whichever is reached first):

* :class:`ReplayCache` keeps two generations of at most ``capacity // 2``
  nonces each; the current generation becomes the old one when it is full or
  ``window_ms`` old, and the old one is then forgotten.  So a nonce is
  remembered for at least ``window_ms`` as long as fewer than
  ``capacity // 2`` other nonces arrive in that time, and in any case until
  ``capacity // 2`` more nonces have been added after it (whichever comes
  first).  Rotation happens on the next add, so an idle cache forgets
  nothing.
* Memory is at most ``capacity`` nonces (about 115 bytes each in CPython:
  7.5 MB for the default 65,536), allocated as traffic arrives, plus in a
  :class:`ReplayFilter` at most :data:`SENT_WAIT_MAX` sent nonces waiting for
  the receiver (see :meth:`ReplayFilter.sent`).

What it does not do: a replay older than the window is not recognised (the
wire format carries no time), plain mode has no nonce to remember, and in
classic mode a forger who can pass the CRC-32 can pick any nonce (classic
mode is not authenticated; AEAD mode is).

Invariants:
    * Pure: no sockets, threads or clock; ``now_ms`` is passed in (any
      monotonic millisecond clock).
    * O(1) per call (set lookups and inserts; a rotation drops a set).
    * Not thread-safe by itself: callers that share one cache between
      threads serialise :meth:`add` / :meth:`add_many` / :meth:`seen` (the
      I/O layer holds a lock once per batch).  :meth:`contains` only reads.
    * :class:`ReplayFilter`: any number of sending threads call
      :meth:`~ReplayFilter.sent`; one thread at a time runs the receive
      stages (:meth:`~ReplayFilter.pre`, :meth:`~ReplayFilter.post_later`,
      :meth:`~ReplayFilter.commit`: the receiver, or the reader holding the
      receive role).  Sent nonces pass from the senders to the receiver
      through a list that senders only extend and the receiver only takes
      from the front of (each one list operation, atomic under the GIL): a
      send takes no lock and reads no clock.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from contextlib import AbstractContextManager
from typing import Any, Callable, Final, Optional, Protocol, Union

from .config import check_int

__all__ = [
    "AEAD_NONCE_SIZE",
    "CLASSIC_NONCE_SIZE",
    "DEFAULT_CAPACITY",
    "DEFAULT_WINDOW_MS",
    "SENT_WAIT_MAX",
    "ReplayCache",
    "ReplayFilter",
    "nonce_key",
]

#: kcp-go classic mode: the random nonce in front of every datagram (``nonceSize``).
CLASSIC_NONCE_SIZE: Final = 16
#: kcp-go HEAD AES-GCM: the clear nonce in front of every datagram.
AEAD_NONCE_SIZE: Final = 12
#: Nonces remembered at most, per cache (two generations of half each).
DEFAULT_CAPACITY: Final = 65536
#: Age after which a generation of nonces is retired (10 minutes, the blacklist TTL).
DEFAULT_WINDOW_MS: Final = 600_000
#: Sent nonces that wait for the receiver at most (:meth:`ReplayFilter.sent`);
#: beyond, a send adds its nonces to the cache itself (lock and clock).
SENT_WAIT_MAX: Final = 2048

_Bytes = Union[bytes, bytearray, memoryview]


def nonce_key(packet: _Bytes, size: int) -> Optional[bytes]:
    """The bytes of ``packet`` that identify its nonce, or None if it has none.

    Args:
        packet: a UDP payload as sent or received (still encrypted).
        size: the nonce size of the codec: 16 (classic), 12 (AEAD), 0 (plain).

    Returns:
        ``bytes(packet[:size])``; None if ``size`` is 0 or the packet is
        shorter than ``size`` (it will fail the codec's length check anyway).
    """
    if size <= 0 or len(packet) < size:
        return None
    return bytes(packet[:size])


class ReplayCache:
    """Remembers recently seen nonces in two rotating generations (see the module doc).

    Args:
        capacity: nonces remembered at most (>= 2); two generations of
            ``capacity // 2``.
        window_ms: age in ms after which the current generation is retired
            (> 0).

    Raises:
        TypeError: an argument is not an int.
        ValueError: ``capacity`` < 2 or ``window_ms`` < 1.

    Attributes:
        capacity: as given.
        window_ms: as given.
        replays: nonces refused by :meth:`seen` so far.
        rotations: generations retired so far.
    """

    __slots__ = ("_cur", "_half", "_old", "_start", "capacity", "replays", "rotations", "window_ms")

    # The constructors take ``object`` and check it themselves: compiled (see
    # kcpsock/_accel.py), a parameter typed ``int`` is refused by mypyc's own
    # TypeError, which does not name the argument.

    def __init__(
        self, capacity: object = DEFAULT_CAPACITY, window_ms: object = DEFAULT_WINDOW_MS
    ) -> None:
        capacity = check_int("capacity", capacity, low=2)
        window_ms = check_int("window_ms", window_ms, low=1)
        self.capacity = capacity
        self.window_ms = window_ms
        self._half = capacity // 2
        self._cur: set[bytes] = set()
        self._old: set[bytes] = set()
        self._start: Optional[int] = None
        self.replays = 0
        self.rotations = 0

    def __len__(self) -> int:
        return len(self._cur) + len(self._old)

    def __repr__(self) -> str:
        return (
            f"<ReplayCache {len(self)}/{self.capacity} nonces window={self.window_ms}ms"
            f" replays={self.replays} rotations={self.rotations}>"
        )

    def contains(self, key: bytes) -> bool:
        """True if ``key`` is remembered (no change to the cache).

        Args:
            key: a nonce key (:func:`nonce_key`).
        """
        return key in self._cur or key in self._old

    def _make_room(self, now_ms: int) -> None:
        start = self._start
        if start is None:
            self._start = now_ms
            return
        age = now_ms - start
        if len(self._cur) >= self._half or age >= self.window_ms or age < 0:
            # a generation older than two windows is not worth keeping either
            self._old = self._cur if age < 2 * self.window_ms else set()
            self._cur = set()
            self._start = now_ms
            self.rotations += 1

    def add(self, key: bytes, now_ms: int) -> None:
        """Remember ``key`` (a nonce we sent, or one received and authenticated).

        Args:
            key: a nonce key.
            now_ms: the current time in ms.
        """
        self._make_room(now_ms)
        self._cur.add(key)

    def add_many(self, keys: Iterable[bytes], now_ms: int) -> None:
        """Remember several keys (one call per batch of sent packets).

        Args:
            keys: nonce keys.
            now_ms: the current time in ms.
        """
        self._make_room(now_ms)
        cur = self._cur
        half = self._half
        if isinstance(keys, (set, list)) and len(cur) + len(keys) <= half:
            # (a batch: received, or sent) no rotation can fall inside: one
            # C-level union
            cur.update(keys)
            return
        for key in keys:
            if len(cur) >= half:
                self._make_room(now_ms)
                cur = self._cur
            cur.add(key)

    def seen(self, key: bytes, now_ms: int) -> bool:
        """Check and remember in one step: True (count a replay) if already known.

        Args:
            key: a nonce key.
            now_ms: the current time in ms.

        Returns:
            True if ``key`` was remembered (the datagram is a replay or a
            reflection: drop it); False after remembering it.
        """
        if key in self._cur or key in self._old:
            self.replays += 1
            return True
        self._make_room(now_ms)
        self._cur.add(key)
        return False

    def clear(self) -> None:
        """Forget every nonce (the counters stay)."""
        self._cur = set()
        self._old = set()
        self._start = None


class _Stages(Protocol):
    """The stage lists of an inbound pipeline that :meth:`ReplayFilter.install` fills."""

    pre_filters: list[Callable[[bytes, Any], Optional[str]]]
    post_filters: list[Callable[[bytes, bytes, Any], Optional[str]]]
    replay: Optional[ReplayFilter]
    after_batch: list[Callable[[], None]]


class ReplayFilter:
    """One socket's replay/reflection filter, as stages of :mod:`kcpsock.inbound`.

    A listener has one (shared by its sessions, which all send through its
    socket), a dialed session its own.  :meth:`pre` runs before decryption
    (drop a known nonce: ``InReplays``), :meth:`post` after it succeeded
    (remember the nonce: only authenticated datagrams fill the cache, so
    garbage cannot evict real nonces), :meth:`sent` for every datagram sent.

    Args:
        nonce_size: the codec's :attr:`~kcpsock.codec.PacketCodec.nonce_size`
            (> 0).
        clock: returns the time in ms (the I/O layer passes its monotonic
            clock; this module reads none).
        capacity, window_ms: of the :class:`ReplayCache`.
        lock: a context manager serialising changes to the cache (senders
            and the receiver share it); None for single-threaded use.

    Raises:
        ValueError, TypeError: bad sizes (see :class:`ReplayCache`).
    """

    __slots__ = (
        "_clock",
        "_installed",
        "_last_key",
        "_last_packet",
        "_lock",
        "_pending",
        "_waiting",
        "cache",
        "nonce_size",
    )

    def __init__(
        self,
        nonce_size: object,
        clock: Callable[[], int],
        *,
        capacity: object = DEFAULT_CAPACITY,
        window_ms: object = DEFAULT_WINDOW_MS,
        lock: Optional[AbstractContextManager[Any]] = None,
    ) -> None:
        if isinstance(nonce_size, bool) or not isinstance(nonce_size, int) or nonce_size <= 0:
            raise ValueError(f"nonce_size must be an int > 0, got {nonce_size!r}")
        self.nonce_size = nonce_size
        self.cache = ReplayCache(capacity, window_ms)
        self._clock = clock
        self._lock: AbstractContextManager[Any] = (
            lock if lock is not None else contextlib.nullcontext()
        )
        # nonces passed by post_later in the current batch, not yet in the cache
        # (and, installed, the sent nonces pre() took from _waiting)
        self._pending: set[bytes] = set()
        # nonces sent and not yet taken by pre() (senders extend it, pre()
        # takes from its front; see the module doc)
        self._waiting: list[bytes] = []
        # install() ran: commit() ends every batch (pre() may leave sent
        # nonces in _pending for it)
        self._installed = False
        # the last packet pre() passed and its key (hashed already): post_later
        # of that packet reuses it instead of slicing and hashing again
        self._last_packet: Optional[bytes] = None
        self._last_key = b""

    def __repr__(self) -> str:
        return f"<ReplayFilter nonce_size={self.nonce_size} {self.cache!r}>"

    def pre(self, packet: bytes, addr: Any) -> Optional[str]:
        """Pre-open filter: ``"InReplays"`` for a nonce seen before, else None.

        "Seen" includes nonces :meth:`post_later` took in the batch being
        processed, so a copy later in the same batch is dropped as well, and
        every nonce :meth:`sent` took before this call.
        """
        if self._waiting:
            self._take_sent()
        key = packet[: self.nonce_size]
        cache = self.cache
        # contains(), inlined: per packet
        if key in cache._cur or key in cache._old or key in self._pending:
            cache.replays += 1
            return "InReplays"
        self._last_packet = packet
        self._last_key = key
        return None

    def _take_sent(self) -> None:
        """Move the sent nonces waiting in ``_waiting`` to where :meth:`pre` looks.

        Installed: into ``_pending`` (the receiver's own set; :meth:`commit`
        adds it to the cache at the end of the batch, under one lock with
        the nonces received).  Otherwise into the cache, under the lock.
        """
        waiting = self._waiting
        n = len(waiting)
        if self._installed:
            # (one appended after len() is taken as well, and again later: a set)
            self._pending.update(waiting)
            # senders only append: the first n are the ones counted
            del waiting[:n]
            return
        keys = waiting[:n]
        del waiting[:n]
        with self._lock:
            self.cache.add_many(keys, self._clock())

    def post_later(self, packet: bytes, payload: bytes, addr: Any) -> Optional[str]:
        """:meth:`post` for a batch: the nonce waits for :meth:`commit` (no lock, no clock).

        Only for the receiver thread that also runs :meth:`pre` and calls
        :meth:`commit` at the end of every batch (see :meth:`install`).
        """
        if packet is self._last_packet:
            self._pending.add(self._last_key)
        else:
            self._pending.add(packet[: self.nonce_size])
        return None

    def commit(self) -> None:
        """Remember the nonces :meth:`post_later` took (one lock and one clock read per batch)."""
        self._last_packet = None
        pending = self._pending
        if pending:
            with self._lock:
                self.cache.add_many(pending, self._clock())
            self._pending = set()

    def install(self, inbound: _Stages) -> None:
        """Run as stages of an inbound pipeline (:class:`kcpsock.inbound.Inbound`).

        :meth:`pre` before decryption, :meth:`post_later` after it and
        :meth:`commit` at the end of every batch: per packet, the cache is
        read and a set grows, and the lock and the clock are taken once
        per batch instead of once per packet.  The pipeline calls
        :meth:`pre` and :meth:`post_later` after its other filters of each
        stage (its ``replay`` attribute: one direct call each per packet).

        Raises:
            ValueError: the pipeline has a replay filter already.
        """
        if inbound.replay is not None:
            raise ValueError("this inbound pipeline has a replay filter already")
        self._installed = True
        inbound.replay = self
        inbound.after_batch.append(self.commit)

    def post(self, packet: bytes, payload: bytes, addr: Any) -> Optional[str]:
        """Post-open filter: remember the nonce of an authenticated datagram; never drops."""
        key = packet[: self.nonce_size]
        with self._lock:
            self.cache.add(key, self._clock())
        return None

    def sent(self, packets: Iterable[bytes]) -> None:
        """Remember the nonces of datagrams about to be sent (stops their reflection).

        Called before the datagrams leave, so a reflected copy always finds
        its nonce: the nonces wait in a list that the next :meth:`pre` takes
        (no lock, no clock here); with :data:`SENT_WAIT_MAX` waiting (no
        receiver has run for a while) they go to the cache directly.
        """
        size = self.nonce_size
        keys = [p[:size] for p in packets]
        waiting = self._waiting
        if len(waiting) < SENT_WAIT_MAX:
            waiting.extend(keys)
            return
        with self._lock:
            self.cache.add_many(keys, self._clock())
