"""The one inbound pipeline: UDP datagrams in, KCP datagrams per session out.

kcp-go writes this path twice (``UDPSession.packetInput`` for a dialed
session, ``Listener.packetInput`` for a listener).  kcpsock runs every
received datagram, dialed or listened, plain or encrypted, through
:meth:`Inbound.process`, in four stages::

    (packet, address)
        |  1. filter   pre-open filters: (packet, addr) -> None or a counter name
        |              (source address of an unconnected dialed socket; the
        |              replay/reflection filter, kcpsock.replay: a nonce seen
        |              before is dropped as InReplays, one remembered after open)
        |  2. open     decrypt + CRC / AEAD tag (PacketCodec.open);
        |              plain mode: a no-op stage (the packet is the payload)
        |              post-open filters: (packet, payload, addr) -> None or counter
        |  3. route    dialed: the one route; listener: (address, conv) through
        |              RouteTable (last-key cache, FEC parity -> the address's
        |              latest route, Admission for unknown keys)
        |  4. decode   FEC (the route's codec.decode_payload, stateful);
        |              plain mode: a no-op stage
        v
    Delivery per route: regular KCP datagrams, FEC-recovered ones, counts

Invariants:

* Pure: no sockets, threads or clock.  Time comes in as ``now`` (seconds on
  any monotonic clock, used only for blacklist expiry); the routing table
  serialises its mutations with a lock-like context manager given by the
  caller (as :class:`kcpsock.stats.Snmp` does).
* Every dropped datagram is counted exactly once, in
  :attr:`InboundResult.errors` under the kcp-go SNMP counter named by the
  :class:`~kcpsock.errors.PacketError` (``InErrs``, ``InCsumErrors``,
  ``KCPInErrors``) or by the filter, or in :attr:`InboundResult.refused`
  (a new conversation refused: ``blacklist``, ``backlog``,
  ``max_sessions``), or in :attr:`InboundResult.unrouted` (FEC parity of an
  address with no session).  Nothing raises out of :meth:`Inbound.process`
  for bad input.
* The FEC stage of a route runs only inside :meth:`Inbound.process`; a
  socket has one receiver thread, so each decoder is used by one thread.
* Lookups are lock-free (single dict reads); :meth:`RouteTable.add` and
  :meth:`RouteTable.remove` run under the table's lock.  A removed route is
  marked ``closed``, so a stale last-key cache entry is never used.
* The pipeline never creates I/O objects: a new conversation becomes a
  :class:`Route` in :attr:`InboundResult.created`; the listener attaches a
  session to it (``route.target``) before delivering.
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Iterable
from contextlib import AbstractContextManager
from typing import Callable, Final, Optional, Protocol, TypeVar, Union

from .codec import Codec, PacketCodec
from .config import MTU_LIMIT, check_block, check_int, check_shards
from .errors import PacketError
from .fec import FEC_HEADER_SIZE_PLUS2, TYPE_DATA, TYPE_PARITY
from .replay import ReplayFilter
from .segment import CMD_WASK, CMD_WINS, HEADER, OVERHEAD

__all__ = [
    "Address",
    "Admission",
    "Blacklist",
    "Delivery",
    "DrainRate",
    "Inbound",
    "InboundResult",
    "Key",
    "PostFilter",
    "PreFilter",
    "Route",
    "RouteTable",
    "Target",
    "WindowShare",
    "is_kcp_datagram",
    "is_opening_datagram",
    "make_codec",
    "source_filter",
]

#: A UDP socket address as ``recvfrom`` returns it: (host, port) for IPv4,
#: (host, port, flowinfo, scope_id) for IPv6.
Address = Union[tuple[str, int], tuple[str, int, int, int]]
#: A listener's key for one conversation: (remote address, conv).
Key = tuple[Address, int]
_K = TypeVar("_K")

#: Most (address, conv) pairs a blacklist remembers.
BLACKLIST_MAX: Final = 65536

_u16_at: Final = struct.Struct("<H").unpack_from
_u32_at: Final = struct.Struct("<I").unpack_from
_header_at: Final = HEADER.unpack_from
_NONE: Final[list[bytes]] = []  # no recovered datagrams (never mutated)
_CMD_PUSH: Final = 81
_CMD_WASK: Final = 83

#: stage 1: (packet, address) -> None to pass, or the counter to drop it under.
PreFilter = Callable[[bytes, Address], Optional[str]]
#: after stage 2: (packet, opened payload, address) -> None or a counter name.
PostFilter = Callable[[bytes, bytes, Address], Optional[str]]


class Target(Protocol):
    """Where a route's deliveries go: the session (set by the I/O layer)."""

    def deliver(self, delivery: Delivery, behind: bool = False) -> None:
        """Take one batch's datagrams for this route (``behind``: more input waits)."""


def make_codec(
    block: object = None, data_shards: int = 0, parity_shards: int = 0
) -> Optional[PacketCodec]:
    """Return a :class:`~kcpsock.codec.PacketCodec`, or None for plain mode.

    Plain mode (no cipher, no FEC) hands datagrams to KCP as they are, which
    is what kcp-go does and saves a copy per packet: the open and FEC stages
    of the pipeline are then no-ops.

    Args:
        block: a BlockCrypt or None.
        data_shards: FEC data shards (0 with parity_shards 0: FEC off).
        parity_shards: FEC parity shards.

    Returns:
        A codec object or None.

    Raises:
        ValueError: invalid shard counts.
        TypeError: a shard count is not an int, or ``block`` is not a BlockCrypt.
    """
    block = check_block(block)
    data_shards, parity_shards = check_shards(data_shards, parity_shards)
    if block is None and data_shards == 0:
        return None
    return PacketCodec(block, data_shards, parity_shards)


def is_kcp_datagram(datagram: bytes, conv: int) -> bool:
    """True if every segment header of ``datagram`` is one KCP input accepts.

    The same walk as ``KCP.input``'s validation (kcp-go ``Input``): headers of
    conv ``conv`` with a command 81..84 and a payload that fits; a trailing
    remainder shorter than 24 bytes is ignored.

    Args:
        datagram: a KCP datagram (after the crypto and FEC headers).
        conv: the expected conversation id.

    Returns:
        False for anything KCP would reject as a whole.
    """
    n = len(datagram)
    if n < OVERHEAD:
        return False
    off = 0
    while n - off >= OVERHEAD:
        h = _header_at(datagram, off)
        off += OVERHEAD
        if h[0] != conv or not 81 <= h[1] <= 84 or n - off < h[7]:
            return False
        off += h[7]
    return True


def is_opening_datagram(datagram: bytes) -> bool:
    """True if ``datagram`` is one a real client sends first (issue 11).

    A kcp-go client's first datagram carries its first PUSH (sn 0), possibly
    with later segments behind it when retransmitted; ``create_connection``'s
    handshake is a window probe (WASK).  An ACK-only datagram, or PUSHes
    that all start later in the sequence, belong to a conversation the
    listener should already know: they never open one.

    Args:
        datagram: a KCP datagram already accepted by :func:`is_kcp_datagram`.

    Returns:
        True if some segment is a PUSH with sn 0 or a WASK.
    """
    n = len(datagram)
    off = 0
    while n - off >= OVERHEAD:
        h = _header_at(datagram, off)
        cmd = h[1]
        if cmd == _CMD_WASK or (cmd == _CMD_PUSH and h[5] == 0):
            return True
        off += OVERHEAD + h[7]
    return False


def kcp_view(payload: bytes) -> Optional[bytes]:
    """The KCP datagram inside an opened payload, without FEC decoding.

    Returns:
        The bytes after the FEC header of an FEC data packet, the payload
        itself when it is not an FEC packet, None for a parity packet.
    """
    if len(payload) >= 6:
        flag = _u16_at(payload, 4)[0]
        if flag == TYPE_DATA:
            return payload[FEC_HEADER_SIZE_PLUS2:]
        if flag == TYPE_PARITY:
            return None
    return payload


def source_filter(remote: Address) -> PreFilter:
    """A pre-open filter that drops datagrams not from ``remote`` (``InErrs``).

    kcp-go HEAD's dialed sessions read from an unconnected socket and drop
    datagrams from any other address.

    Args:
        remote: the peer's address, as ``recvfrom`` reports it.

    Returns:
        The filter.
    """

    def check(packet: bytes, addr: Address) -> Optional[str]:
        return None if addr == remote else "InErrs"

    return check


class Blacklist:
    """Recently closed (address, conv) pairs a listener refuses to recreate.

    docs/SESSION.md §5: a TIME_WAIT analogue.  Keys are added at creation
    and refreshed at close; an entry expires ``ttl`` seconds after it was
    last added.  At most :data:`BLACKLIST_MAX` entries are kept (the oldest
    go first); expired ones are purged lazily, at most once a second.

    Args:
        ttl: seconds; 0 or less disables the blacklist.
        max_entries: the size bound (>= 1).

    Raises:
        TypeError: ``ttl`` is not a number or ``max_entries`` not an int.
        ValueError: ``max_entries`` is below 1.
    """

    __slots__ = ("_convs", "_entries", "_last_purge", "max_entries", "ttl")

    def __init__(self, ttl: object, max_entries: object = BLACKLIST_MAX) -> None:
        # object-typed so that, compiled too, a bad argument's error names it
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
            raise TypeError(f"ttl must be a number of seconds, not {type(ttl).__name__}")
        self.ttl = float(ttl)
        self.max_entries = check_int("max_entries", max_entries, low=1)
        # insertion order == expiry order (a refreshed key moves to the end)
        self._entries: dict[Key, float] = {}
        # conv -> the key that last blacklisted it (replays from other ports)
        self._convs: dict[int, Key] = {}
        self._last_purge = float("-inf")

    def __len__(self) -> int:
        return len(self._entries)

    def has(self, key: Key, now: float) -> bool:
        """True if ``key`` was added less than ``ttl`` seconds before ``now``."""
        expiry = self._entries.get(key)
        if expiry is None:
            return False
        if expiry > now:
            return True
        del self._entries[key]
        return False

    def has_conv(self, conv: int, now: float) -> bool:
        """True if some (address, ``conv``) is blacklisted (any address)."""
        key = self._convs.get(conv)
        if key is None:
            return False
        if self.has(key, now):
            return True
        self._convs.pop(conv, None)
        return False

    def add(self, key: Key, now: float) -> None:
        """Add or refresh ``key`` (expires at ``now + ttl``); purge old entries."""
        if self.ttl <= 0:
            return
        entries = self._entries
        entries.pop(key, None)
        entries[key] = now + self.ttl
        self._convs[key[1]] = key
        if len(entries) > self.max_entries or now - self._last_purge > 1.0:
            self._last_purge = now
            stale: list[Key] = []
            for k, expiry in entries.items():
                if expiry > now and len(entries) - len(stale) <= self.max_entries:
                    break
                stale.append(k)
            convs = self._convs
            for k in stale:
                del entries[k]
                if convs.get(k[1]) == k:
                    del convs[k[1]]

    def discard(self, key: Key) -> None:
        """Forget ``key`` (a session that never became visible)."""
        self._entries.pop(key, None)
        if self._convs.get(key[1]) == key:
            del self._convs[key[1]]


class Admission:
    """Whether a datagram of an unknown (address, conv) may open a session.

    The rules, in the order they are checked (issue 11: the session table
    under attack), each with the reason :meth:`check` returns:

    1. ``"invalid"``: not a KCP datagram of that conv (counted as
       ``KCPInErrors``), as kcp-go 2017's ``monitor``.
    2. ``"blacklist"``: the key was closed less than the TTL ago.
    3. ``"unsolicited"``: not a datagram a real client sends first (a PUSH
       with sn 0, or ``create_connection``'s window probe, see
       :func:`is_opening_datagram`): ACK-only and out-of-sequence datagrams
       of an unknown conversation open nothing.
    4. ``"conv_in_use"``: the conv is live, or recently closed, from another
       address (a captured conversation replayed from a fresh port, older
       than the replay filter's window; only with ``conv_guard``, off by
       default: kcp-go keys sessions by (address, conv), and clients that
       share a fixed conv, as ikcp's examples do, must keep working).  Two clients picking the same random 32-bit conv
       within the blacklist TTL collide with probability about
       n**2 / 2**33 for n conversations.
    5. ``"backlog"`` / ``"backlog_per_address"``: too many sessions wait
       for accept, in all or from this source IP.
    6. ``"per_address"`` / ``"max_sessions"``: too many live sessions from
       this source IP, or in all.

    Args:
        backlog: sessions waiting for accept at most.
        max_sessions: live sessions at most.
        blacklist: the listener's :class:`Blacklist`.
        backlog_per_address: waiting sessions per source IP at most (0: no
            limit).
        max_per_address: live sessions per source IP at most (0: no limit).
        opening_only: apply rule 2.
        conv_guard: apply rule 4 (off by default).
    """

    def __init__(
        self,
        *,
        backlog: int,
        max_sessions: int,
        blacklist: Blacklist,
        backlog_per_address: int = 0,
        max_per_address: int = 0,
        opening_only: bool = True,
        conv_guard: bool = False,
    ) -> None:
        self.backlog = backlog
        self.max_sessions = max_sessions
        self.blacklist = blacklist
        self.backlog_per_address = backlog_per_address
        self.max_per_address = max_per_address
        self.opening_only = opening_only
        self.conv_guard = conv_guard

    def check(
        self,
        key: Key,
        datagram: Optional[bytes],
        *,
        sessions: int,
        queued: int,
        now: float,
        live_here: int = 0,
        queued_here: int = 0,
        conv_live: bool = False,
    ) -> Optional[str]:
        """Return None to admit, else the reason to refuse (see the class doc).

        Args:
            key: (address, conv).
            datagram: the KCP datagram of the first packet (FEC header
                removed), or None if none could be found.
            sessions: live routes in the table.
            queued: sessions waiting for accept (this batch's new ones included).
            now: the caller's clock, seconds.
            live_here: live routes from the key's source IP.
            queued_here: routes from that IP not accepted yet.
            conv_live: the conv has a live route from another address.

        Returns:
            None, or one of the reasons of the class doc.
        """
        if datagram is None or not is_kcp_datagram(datagram, key[1]):
            return "invalid"
        bl = self.blacklist
        if bl.ttl > 0 and bl.has(key, now):
            return "blacklist"
        if self.opening_only and not is_opening_datagram(datagram):
            return "unsolicited"
        if self.conv_guard and (conv_live or (bl.ttl > 0 and bl.has_conv(key[1], now))):
            return "conv_in_use"
        if queued >= self.backlog:
            return "backlog"
        if self.backlog_per_address and queued_here >= self.backlog_per_address:
            return "backlog_per_address"
        if self.max_per_address and live_here >= self.max_per_address:
            return "per_address"
        if sessions >= self.max_sessions:
            return "max_sessions"
        return None


class Route:
    """One session's place in the pipeline: its key, FEC decoder and target.

    Args:
        key: (address, conv) for a listener route, None for a dialed one.
        codec: the session's codec (its FEC decoder is used here), or None
            in plain mode.
        target: the session (set by the I/O layer; opaque here).

    Attributes:
        closed: set by :meth:`RouteTable.remove`; a closed route gets nothing.
        pending: a listener route whose session was not accepted yet.
    """

    __slots__ = ("closed", "codec", "key", "pending", "target")

    def __init__(
        self, key: Optional[Key], codec: Optional[Codec], target: Optional[Target] = None
    ) -> None:
        self.key = key
        self.codec = codec
        self.target = target
        self.closed = False
        #: a listener route not accepted yet (see :meth:`RouteTable.accepted`)
        self.pending = False

    def __repr__(self) -> str:
        state = " closed" if self.closed else ""
        return f"<Route key={self.key!r}{state} target={self.target!r}>"


class Delivery:
    """What one batch brought one route: KCP datagrams and counts.

    Attributes:
        route: the route.
        datagrams: regular KCP datagrams, in arrival order, each after
            ``skip`` bytes that are not part of it.
        skip: bytes in front of the KCP datagram in each of ``datagrams``:
            8 (the FEC header) when they are opened FEC data packets left
            whole (a copy per packet spared: ``KCP.input(dg, ...,
            offset=skip)``), else 0.
        recovered: datagrams recovered by FEC (no RTT sample, kcp-go
            ``packetType`` FEC); nothing in front of them.
        packets: wire datagrams routed here (kcp-go ``InPkts``).
        nbytes: their opened sizes (kcp-go ``InBytes``).
    """

    __slots__ = ("datagrams", "nbytes", "packets", "recovered", "route", "skip")

    def __init__(self, route: Route) -> None:
        self.route = route
        self.datagrams: list[bytes] = []
        self.skip = 0
        self.recovered: list[bytes] = []
        self.packets = 0
        self.nbytes = 0

    def add(self, datagram: bytes, skip: int) -> None:
        """Append a regular datagram whose KCP datagram starts at ``skip``.

        The first one sets :attr:`skip`; one with another ``skip`` (an FEC
        data packet among plain KCP ones, or the reverse: only a peer that
        mixes them sends that) is brought to the delivery's by a copy.
        """
        datagrams = self.datagrams
        have = self.skip
        if skip != have:
            if not datagrams:
                self.skip = skip
            elif skip > have:
                datagram = datagram[skip - have :]
            else:
                datagram = bytes(have - skip) + datagram
        datagrams.append(datagram)


class InboundResult:
    """The outcome of :meth:`Inbound.process` for one batch.

    Attributes:
        deliveries: one :class:`Delivery` per route that got something, in
            order of first arrival.
        created: routes created by this batch (listener only).
        errors: dropped datagrams by SNMP counter name.
        refused: new conversations refused, by reason.
        unrouted: datagrams with no route (FEC parity of an unknown address).
    """

    __slots__ = ("created", "deliveries", "errors", "refused", "unrouted")

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self.created: list[Route] = []
        self.errors: dict[str, int] = {}
        self.refused: dict[str, int] = {}
        self.unrouted = 0

    def count(self, counter: str) -> None:
        """Count one dropped datagram under ``counter``."""
        self.errors[counter] = self.errors.get(counter, 0) + 1


def _host(addr: Address) -> str:
    """The IP address part of a socket address (what per-address limits count)."""
    return addr[0]


def _dec(counts: dict[_K, int], k: _K) -> None:
    n = counts.get(k, 0) - 1
    if n > 0:
        counts[k] = n
    else:
        counts.pop(k, None)


class RouteTable:
    """A listener's routes by (address, conv), with kcp-go's last-key cache.

    FEC parity packets carry no conv: they go to the most recent live route
    of their address (docs/SESSION.md §4; the 2017 seed dropped them, so
    server-side recovery never worked).

    Args:
        admission: the rules for unknown keys.
        codec_factory: returns a new codec (or None) for each new route.
        lock: a context manager serialising :meth:`add` and :meth:`remove`
            (the listener's lock); lookups take no lock.
    """

    def __init__(
        self,
        admission: Admission,
        codec_factory: Callable[[], Optional[Codec]],
        lock: Optional[AbstractContextManager[object]] = None,
    ) -> None:
        self.admission = admission
        self._codec_factory = codec_factory
        self._lock: AbstractContextManager[object] = (
            lock if lock is not None else contextlib.nullcontext()
        )
        self._routes: dict[Key, Route] = {}
        self._by_addr: dict[Address, Route] = {}
        # per source IP: live routes and routes not accepted yet; live convs
        self._live_by_host: dict[str, int] = {}
        self._pending_by_host: dict[str, int] = {}
        self._convs: dict[int, int] = {}
        self._last_key: Optional[Key] = None
        self._last_route: Optional[Route] = None
        #: lookups answered by the last-key cache (for tests and figures)
        self.cache_hits = 0

    def __len__(self) -> int:
        return len(self._routes)

    def routes(self) -> list[Route]:
        """Return the live routes (a snapshot)."""
        with self._lock:
            return list(self._routes.values())

    def lookup(self, key: Key) -> Optional[Route]:
        """Return the live route of ``key`` (the last key is answered from a cache)."""
        route = self._last_route
        if route is not None and key == self._last_key and not route.closed:
            self.cache_hits += 1
            return route
        route = self._routes.get(key)
        if route is not None:
            self._last_key, self._last_route = key, route
        return route

    def host_counts(self, addr: Address) -> tuple[int, int]:
        """Return (live routes, routes not accepted yet) from ``addr``'s IP address."""
        host = _host(addr)
        return self._live_by_host.get(host, 0), self._pending_by_host.get(host, 0)

    def conv_live(self, conv: int) -> bool:
        """True if some live route has conversation id ``conv``."""
        return conv in self._convs

    def accepted(self, route: Route) -> None:
        """Mark ``route`` accepted: it no longer counts against the per-address backlog."""
        with self._lock:
            if route.pending:
                route.pending = False
                key = route.key
                if key is not None:
                    _dec(self._pending_by_host, _host(key[0]))

    def parity_route(self, addr: Address) -> Optional[Route]:
        """Return the most recent live route of ``addr`` (for FEC parity)."""
        route = self._by_addr.get(addr)
        return route if route is not None and not route.closed else None

    def add(self, key: Key, now: float) -> Route:
        """Create and map a route for ``key`` (with a fresh codec); blacklist the key.

        The key enters the blacklist at creation (the 2017 fork) and again at
        close (:meth:`remove`'s caller), so late packets spawn nothing.
        """
        route = Route(key, self._codec_factory())
        route.pending = True
        host = _host(key[0])
        with self._lock:
            self._routes[key] = route
            self._by_addr[key[0]] = route
            self._live_by_host[host] = self._live_by_host.get(host, 0) + 1
            self._pending_by_host[host] = self._pending_by_host.get(host, 0) + 1
            self._convs[key[1]] = self._convs.get(key[1], 0) + 1
            self.admission.blacklist.add(key, now)
        self._last_key, self._last_route = key, route
        return route

    def remove(self, route: Route, now: Optional[float] = None) -> None:
        """Unmap ``route`` and mark it closed (idempotent).

        Args:
            route: the route.
            now: the caller's clock: refresh the key's blacklist entry (the
                protection starts at close, docs/SESSION.md §5); None: forget the
                key instead (a session that never became visible).
        """
        key = route.key
        route.closed = True
        if key is None:
            return
        with self._lock:
            if now is None:
                self.admission.blacklist.discard(key)
            else:
                self.admission.blacklist.add(key, now)
            if self._routes.get(key) is route:
                del self._routes[key]
                host = _host(key[0])
                _dec(self._live_by_host, host)
                if route.pending:
                    route.pending = False
                    _dec(self._pending_by_host, host)
                _dec(self._convs, key[1])
            addr = key[0]
            if self._by_addr.get(addr) is route:
                del self._by_addr[addr]
                # parity of the address now goes to another live route, if any
                for (a, _), other in self._routes.items():
                    if a == addr:
                        self._by_addr[addr] = other
            if self._last_route is route:
                self._last_key = self._last_route = None


class DrainRate:
    """The window a slow receiver works through before its peer's retransmission timer.

    A KCP sender keeps up to a window of segments in flight (1024 is
    common) and resends any segment not acknowledged within its RTO, at
    least the minimum RTO (30 ms with nodelay).  When the receiving process
    is the bottleneck (a Python receiver needs 5-40 us a datagram, more with
    a cipher and FEC), the datagrams of a window wait in front of it; if
    working through them takes longer than the RTO, the tail of every window
    is resent although nothing was lost (spurious RTO retransmissions, which
    cost the receiver more time still).  A TCP receiver's window reflects
    what it has not consumed yet; this is the KCP receiver's counterpart: a
    session advertises at most the segments it takes in within ``fraction``
    of the minimum RTO, at the rate it took them in while datagrams were
    waiting for the receiver.  The sender's rules (RTO, fast retransmission)
    and the bytes on the wire stay kcp-go's; only the advertised window,
    local policy, changes.

    When the session also sends (an echo server, any two-way exchange), its
    peer's RTT holds two queues: its segments waiting here, and then our
    ACKs waiting in the peer's own receive queue behind our data (a full
    window of it unless the peer paces too).  The window then takes
    ``BOTH_SHARE`` of ``fraction``: with kcpsock on both ends, the two
    queues together stay within two thirds of ``fraction`` of the RTO, and
    a stall of either process has the rest (benchmarks on loopback: a third
    resent about half as much on timeout as a half, at the same MB/s).

    :meth:`window` is called per busy session every few tens of ms with the
    count of segments the session has taken in (``rcv_nxt``).  While the
    receiver was backlogged over the interval, the count's increase over
    the interval is the session's drain rate and the window follows it
    (a sender limited by that window keeps the receiver backlogged, so the
    rate stays measured: the cap settles where a window drains in
    ``fraction`` of the RTO less the sender's reaction time).  Otherwise
    the receiver keeps up: the window grows by ``grow`` per interval until
    the cap is lifted (past :attr:`LIFT`).

    Pure: time comes in as ``now`` (seconds, any monotonic clock).

    Args:
        fraction: the part of the minimum RTO a full window may take to drain.
        floor: the least window (segments) advertised.
        grow: the factor by which the window grows per interval while the
            receiver keeps up.
        gain: weight of a new measurement (the rest: the previous window).
        start: the window of a session not measured yet.
    """

    __slots__ = ("floor", "fraction", "gain", "grow", "seen", "start")

    #: the cap that is no cap (the 16-bit wire field's largest value)
    NO_CAP: Final = 0xFFFF
    #: a window this large is no cap in practice: lifted altogether
    LIFT: Final = 4096
    #: the part of ``fraction`` a receiver takes while its session also
    #: sends (two queues in each RTT: see above)
    BOTH_SHARE: Final = 1 / 3

    def __init__(
        self,
        fraction: float = 0.5,
        floor: int = 32,
        grow: float = 1.5,
        gain: float = 0.5,
        start: int = 256,
    ) -> None:
        self.fraction = fraction
        self.start = start
        self.floor = floor
        self.grow = grow
        self.gain = gain
        #: session key -> (time, segments taken in, window, segments sent)
        #: at the last call
        self.seen: dict[object, tuple[float, int, int, int]] = {}

    def window(
        self, key: object, now: float, taken: int, minrto_ms: int, backlog: bool, sent: int = -1
    ) -> int:
        """Return the window (segments) the session ``key`` may advertise now.

        Args:
            key: the session (any hashable).
            now: the current time.
            taken: segments the session has taken in so far, modulo 2**32
                (KCP's ``rcv_nxt``).
            minrto_ms: the minimum RTO (ms) assumed for the sender (the
                session's own: peers are configured alike).
            backlog: datagrams waited for the receiver during the interval
                since the last call.  Without it, or if fewer than ``floor``
                segments were taken in (the backlog was of ACKs: this side
                sends), the receiver keeps up: the window grows.
            sent: segments the session has sent so far, modulo 2**32 (KCP's
                ``snd_nxt``), or -1 (not known: one-way).  If it advanced by
                ``floor`` or more over the interval as data was also taken
                in, the session sends too: :attr:`BOTH_SHARE` applies.
        """
        prev = self.seen.get(key)
        if prev is None:
            # not measured yet: a first window that a slow receiver still
            # drains in time (a fast one is measured at once and lifts it)
            self.seen[key] = (now, taken, self.start, sent)
            return self.start
        t0, n0, wnd, s0 = prev
        dt = now - t0
        if dt <= 0.0:
            return wnd
        done = (taken - n0) & 0xFFFFFFFF
        if backlog and done >= self.floor:
            part = self.fraction
            if sent >= 0 and s0 >= 0 and ((sent - s0) & 0xFFFFFFFF) >= self.floor:
                part *= self.BOTH_SHARE
            fit = done / dt * minrto_ms * 0.001 * part
            if wnd < self.NO_CAP:
                fit = wnd + (fit - wnd) * self.gain
            wnd = self.NO_CAP if fit >= self.LIFT else max(self.floor, int(fit))
        elif wnd < self.NO_CAP:
            grown = int(wnd * self.grow) + 1
            wnd = self.NO_CAP if grown >= self.LIFT else grown
        self.seen[key] = (now, taken, wnd, sent)
        return wnd

    def forget(self, keep: Iterable[object]) -> None:
        """Drop the state of every session not in ``keep`` (the busy ones)."""
        live = set(keep)
        for key in [k for k in self.seen if k not in live]:
            del self.seen[key]


#: The commands of a keep-alive exchange (see :meth:`WindowShare.note`).
_KEEPALIVE_CMDS: Final = (CMD_WASK, CMD_WINS)


class WindowShare:
    """Shares one socket's receive buffer among the receive windows of busy sessions.

    A listener's sessions all arrive through one UDP socket, whose kernel
    buffer holds a few thousand datagrams (``SO_RCVBUF``).  Each session
    advertises its own receive window (1024 segments is common), so 100
    busy senders may have 100 windows of datagrams in flight at once; when
    the receiving thread is the bottleneck they pile up in that buffer, the
    kernel drops what does not fit, and the senders wait for their
    retransmission timers (kcp-go's own listener falls to a few per cent of
    one session's throughput this way).

    While the receiver is overloaded (:meth:`loaded`: it found many
    datagrams waiting, within the last ``hold`` seconds), this caps the
    window each busy session *advertises* at its share of the buffer
    (``budget // busy``, at least ``floor``); otherwise the cap is lifted
    (65535), so a listener that keeps up (a WAN server whose senders are
    paced by the network) advertises the windows it always did.  What a
    session accepts is never changed, so segments already in flight are
    never refused.  A session is busy while it got datagrams within the
    last ``horizon`` seconds.

    Pure: time comes in as ``now`` (seconds, any monotonic clock).

    Args:
        interval: seconds between recomputations of the share.
        horizon: seconds after its last datagram a session stops counting.
        floor: the least window (segments) a share may be.
        hold: seconds the cap stays after the last sign of overload.
    """

    __slots__ = ("busy", "floor", "hold", "horizon", "interval", "loaded_at", "next_at", "share")

    #: the cap that is no cap (the 16-bit wire field's largest value)
    NO_CAP: Final = 0xFFFF

    def __init__(
        self, interval: float = 0.05, horizon: float = 0.2, floor: int = 16, hold: float = 1.0
    ) -> None:
        self.interval = interval
        self.horizon = horizon
        self.floor = floor
        self.hold = hold
        #: busy routes -> the time of their last delivery
        self.busy: dict[Route, float] = {}
        #: the window (segments) each busy session advertises at most
        self.share = self.NO_CAP
        #: when :meth:`update` should run next (``now`` clock)
        self.next_at = 0.0
        #: the last sign of overload (``now`` clock)
        self.loaded_at = float("-inf")

    def note(self, deliveries: Iterable[Delivery], now: float) -> None:
        """Mark the routes of one batch's deliveries busy at ``now``.

        A delivery of one bare window probe or its answer (WASK/WINS, a
        keep-alive exchange) carries no data to pace: its session stays as
        it was, so 1,000 idle sessions probing their peers do not put
        themselves in every recomputation of the share (issue 9).
        """
        busy = self.busy
        for d in deliveries:
            dgs = d.datagrams
            skip = d.skip  # (an FEC data packet: its KCP datagram starts at 8)
            if (
                len(dgs) == 1
                and not d.recovered
                and len(dgs[0]) - skip == OVERHEAD
                and dgs[0][skip + 4] in _KEEPALIVE_CMDS
            ):
                continue
            busy[d.route] = now

    def loaded(self, now: float) -> None:
        """Record a sign of overload at ``now`` (the receiver found a backlog)."""
        if now - self.loaded_at > self.hold:
            self.next_at = now  # cap at once
        self.loaded_at = now

    def update(self, budget: int, now: float) -> int:
        """Forget routes idle past the horizon (or closed); return the new share.

        Args:
            budget: datagrams the socket's buffer may hold for the windows.
            now: the current time.

        Returns:
            :attr:`NO_CAP` unless overloaded within ``hold`` seconds; else
            ``max(floor, budget // busy routes)``, at most :attr:`NO_CAP`.
        """
        limit = now - self.horizon
        busy = self.busy
        for route in [r for r, t in busy.items() if t < limit or r.closed]:
            del busy[route]
        if now - self.loaded_at > self.hold:
            share = self.NO_CAP
        else:
            share = min(max(self.floor, budget // max(1, len(busy))), self.NO_CAP)
        self.share = share
        self.next_at = now + self.interval
        return share


class Inbound:
    """The pipeline of one UDP socket: a dialed session's or a listener's.

    Use :meth:`for_session` or :meth:`for_listener`.

    Args:
        opener: the codec whose stateless ``open`` runs stage 2 (None: plain
            mode, the stage is a no-op).
        route: the one route of a dialed session (exclusive with ``table``).
        table: the route table of a listener.

    Attributes:
        pre_filters: stage 1, run in order on every datagram.
        post_filters: run on every datagram after stage 2.
        replay: the replay filter :meth:`ReplayFilter.install` put here (None:
            none): its ``pre`` runs after ``pre_filters``, its ``post_later``
            after ``post_filters`` (called directly: compiled, no call
            through a bound-method object per datagram).
        after_batch: run once at the end of every batch.
    """

    def __init__(
        self,
        opener: Optional[Codec],
        *,
        route: Optional[Route] = None,
        table: Optional[RouteTable] = None,
        pre_filters: Iterable[PreFilter] = (),
        post_filters: Iterable[PostFilter] = (),
    ) -> None:
        if (route is None) == (table is None):
            raise ValueError("Inbound needs exactly one of route= and table=")
        self.opener = opener
        self.route = route
        self.table = table
        self.pre_filters: list[PreFilter] = list(pre_filters)
        self.post_filters: list[PostFilter] = list(post_filters)
        self.replay: Optional[ReplayFilter] = None
        #: called once at the end of every :meth:`process` (e.g. the replay
        #: filter's commit of the batch's nonces)
        self.after_batch: list[Callable[[], None]] = []

    @classmethod
    def for_session(
        cls, route: Route, opener: Optional[Codec], remote: Optional[Address] = None
    ) -> Inbound:
        """The pipeline of a dialed session.

        Args:
            route: the session's route.
            opener: its codec (None in plain mode).
            remote: the peer's address when the socket is not connected (the
                kernel does not filter): other sources count as ``InErrs``.
        """
        filters = [source_filter(remote)] if remote is not None else []
        return cls(opener, route=route, pre_filters=filters)

    @classmethod
    def for_listener(cls, table: RouteTable, opener: Optional[Codec]) -> Inbound:
        """The pipeline of a listener (routes by (address, conv))."""
        return cls(opener, table=table)

    def process(
        self, batch: Iterable[tuple[bytes, Address]], now: float = 0.0, queued: int = 0
    ) -> InboundResult:
        """Run a batch of received datagrams through every stage.

        Args:
            batch: ``(packet, source address)`` pairs as ``recvfrom`` returns.
            now: seconds on the caller's monotonic clock (blacklist expiry).
            queued: sessions waiting for accept before this batch (listener).

        Returns:
            The deliveries, new routes and counts; see :class:`InboundResult`.
        """
        try:
            return self._process(batch, now, queued)
        finally:
            for hook in self.after_batch:
                hook()

    def is_plain(self) -> bool:
        """True when :meth:`plain_batch` may stand for :meth:`process`.

        A plain dialed session (the common interactive case): one route,
        no codec, no filters, no end-of-batch hook; every stage but the
        size checks is a no-op.
        """
        single = self.route
        return (
            single is not None
            and self.opener is None
            and single.codec is None
            and not self.pre_filters
            and not self.post_filters
            and self.replay is None
            and not self.after_batch
        )

    def plain_batch(self, batch: Iterable[tuple[bytes, Address]]) -> tuple[Optional[Delivery], int]:
        """:meth:`process` of a plain dialed session (:meth:`is_plain`), without the result.

        The same outcome in fewer steps and allocations (a receiver calls
        this once per batch: no :class:`InboundResult`, its lists and dicts).

        Returns:
            (the route's delivery, or None when nothing was delivered; the
            datagrams dropped for their size, counted as ``InErrs``).
        """
        single = self.route
        assert single is not None
        one = Delivery(single)
        datagrams = one.datagrams
        nbytes = errors = 0
        closed = single.closed
        for packet, _ in batch:
            n = len(packet)
            if n > MTU_LIMIT:
                errors += 1
            elif closed:
                continue
            elif n < OVERHEAD:
                errors += 1
            else:
                datagrams.append(packet)
                nbytes += n
        if not datagrams:
            return None, errors
        one.packets = len(datagrams)
        one.nbytes = nbytes
        return one, errors

    def _process(
        self, batch: Iterable[tuple[bytes, Address]], now: float, queued: int
    ) -> InboundResult:
        result = InboundResult()
        opener = self.opener
        pre = self.pre_filters
        post = self.post_filters
        replay = self.replay
        single = self.route
        if (
            single is not None
            and opener is None
            and single.codec is None
            and not pre
            and not post
            and replay is None
        ):
            # a plain dialed session: the same outcome as the loop below,
            # in fewer steps
            one, errors = self.plain_batch(batch)
            if errors:
                result.errors["InErrs"] = errors
            if one is not None:
                result.deliveries.append(one)
            return result
        by_route: dict[int, Delivery] = {}
        last: Optional[Delivery] = None  # the previous packet's delivery (runs of one route)
        deliveries = result.deliveries
        table = self.table
        opened: Optional[list[Union[bytes, PacketError]]] = None
        open_many = getattr(opener, "open_many", None)
        if open_many is not None:
            # Stage 2 for the whole batch at once (two C calls for a CFB
            # cipher).  Every datagram is opened, including any stage 1 then
            # drops (a replay, a foreign source): its result is ignored, so
            # filters, counts and order are exactly as one by one.
            if not isinstance(batch, list):
                batch = list(batch)
            opened = open_many([packet for packet, _ in batch])
        for index, (packet, addr) in enumerate(batch):
            # 1. filter
            if pre:
                reason = None
                for f in pre:
                    reason = f(packet, addr)
                    if reason is not None:
                        break
                if reason is not None:
                    result.count(reason)
                    continue
            if replay is not None and replay.pre(packet, addr) is not None:
                result.count("InReplays")
                continue
            # 2. open (plain mode: no-op)
            if opened is not None:
                got = opened[index]
                if not isinstance(got, bytes):
                    # (bytes first: compiled, a type check; PacketError's is a call)
                    result.count(got.counter)
                    continue
                payload = got
            elif opener is not None:
                try:
                    payload = opener.open(packet)
                except PacketError as exc:
                    result.count(exc.counter)
                    continue
            else:
                payload = packet
                if len(payload) > MTU_LIMIT:
                    result.count("InErrs")
                    continue
            if post:
                reason = None
                for g in post:
                    reason = g(packet, payload, addr)
                    if reason is not None:
                        break
                if reason is not None:
                    result.count(reason)
                    continue
            if replay is not None:
                replay.post_later(packet, payload, addr)  # (never drops)
            # 3. route
            if single is not None:
                if single.closed:
                    continue
                route = single
            else:
                assert table is not None
                found = self._route(table, payload, addr, result, now, queued)
                if found is None:
                    continue
                route = found
            # 4. FEC decode (plain mode: no-op)
            codec = route.codec
            skip = 0
            if codec is not None:
                try:
                    if isinstance(codec, PacketCodec):
                        # compiled: a direct call (no method lookup, no argument
                        # parsing); a data packet stays whole (no copy)
                        regular, skip, recovered = codec.decode_framed(payload)
                    else:
                        regular, recovered = codec.decode_payload(payload)
                except PacketError as exc:
                    result.count(exc.counter)
                    continue
            else:
                if len(payload) < OVERHEAD:
                    result.count("InErrs")
                    continue
                regular, recovered = payload, _NONE
            d = last
            if d is None or d.route is not route:
                d = by_route.get(id(route))
                if d is None:
                    d = by_route[id(route)] = Delivery(route)
                    deliveries.append(d)
                last = d
            d.packets += 1
            d.nbytes += len(payload)
            if regular is not None:
                if skip == d.skip:
                    d.datagrams.append(regular)
                else:
                    d.add(regular, skip)
            if recovered:
                d.recovered.extend(recovered)
        return result

    def _route(
        self,
        table: RouteTable,
        payload: bytes,
        addr: Address,
        result: InboundResult,
        now: float,
        queued: int,
    ) -> Optional[Route]:
        """Stage 3 of a listener: find or admit the route of one payload."""
        if len(payload) < OVERHEAD:
            result.count("InErrs")
            return None
        flag = _u16_at(payload, 4)[0]
        if flag == TYPE_PARITY or (
            flag == TYPE_DATA and len(payload) < FEC_HEADER_SIZE_PLUS2 + OVERHEAD
        ):
            # no conv: the address's latest route, never a new one
            route = table.parity_route(addr)
            if route is None:
                result.unrouted += 1
            return route
        conv = _u32_at(payload, FEC_HEADER_SIZE_PLUS2 if flag == TYPE_DATA else 0)[0]
        key = (addr, conv)
        route = table.lookup(key)
        if route is not None:
            return route
        live_here, queued_here = table.host_counts(addr)
        reason = table.admission.check(
            key,
            kcp_view(payload),
            sessions=len(table),
            queued=queued + len(result.created),
            now=now,
            live_here=live_here,
            queued_here=queued_here,
            conv_live=table.conv_live(conv),
        )
        if reason is not None:
            if reason == "invalid":
                result.count("KCPInErrors")
            else:
                result.refused[reason] = result.refused.get(reason, 0) + 1
            return None
        route = table.add(key, now)
        result.created.append(route)
        return route
