"""kcp-go's forward error correction layer: framing, encoder and decoder.

FEC sits between KCP and encryption (kcp-go sess.go)::

    send:    KCP datagram --FECEncoder.encode--> data packet (+ p parity packets
             when a group of d completes) --> crypto --> UDP
    receive: UDP --> crypto --> FECDecoder.decode_parts --> the data packet's
             KCP datagram (regular) + KCP datagrams recovered from parity

Packet layouts (all integers little-endian)::

    data:    | seqid u32 | 0xF1 0x00 | size u16 = 2 + len(kcp) | kcp datagram |
    parity:  | seqid u32 | 0xF2 0x00 | parity shard (L bytes)                 |
             |<------ 6-byte header -->|<-------- shard ---------------------->|

A *shard* is everything after the 6-byte header.  The d data shards of a
group are zero-padded to the longest, L, and the p parity shards are the
Reed-Solomon parity (kcpsock.gf256, klauspost/reedsolomon ``New(d, p)``) of
those padded shards, so a parity packet is as long as the group's longest
data packet.  Seqids: group g holds ``g*n .. g*n+n-1`` (n = d + p), data
first; the counter wraps to 0 at ``paws = (0xFFFFFFFF // n) * n`` (kcp-go
HEAD: every increment, data and parity, is modulo paws).

Invariants:

* Pure: no I/O, no clock (times come in as ``now_ms`` arguments), no
  randomness.
* (0, 0) shard counts mean FEC off: both ends pass packets through unchanged.
* ``FECDecoder.decode_parts`` either returns or raises
  :class:`~kcpsock.errors.PacketError`; when it raises, the decoder's state
  is exactly as before the call.  Recovered shards that fail the size-prefix
  check are dropped and counted in ``errors``, never raised, never returned.
* The decoder holds at most the shard sets of the newest group and the three
  groups before it (kcp-go HEAD ``maxShardSets``); memory is bounded by
  4 * n packets.

Deliberate differences from kcp-go HEAD (none changes the wire format or the
vectors):

* The newest group starts at the first packet's group, not at group 0, so a
  decoder meeting a stream whose seqids are in the upper half of the range
  does not discard every group as "stale".
* Autotune clears its "should tune" flag when it detects the parameters
  already in use (HEAD would keep ignoring packets for recovery).
* Parity is skipped after a 500 ms gap only when the previous packet's time
  is known (HEAD compares with time 0 for the first group).
* Recovered shards failing the size-prefix check are counted in ``errors``
  (kcp-go 2017 counted FECErrs; HEAD drops them silently).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Callable, Final, NoReturn, Optional

from ._fastcrypt import xor_function
from .config import check_bool, check_shards
from .errors import PacketError
from .gf256 import (
    MUL_TABLES,
    BytesLike,
    NativeEncode,
    ParityAccumulator,
    ReedSolomon,
    native_encode,
)
from .segment import timediff

__all__ = [
    "FEC_HEADER_SIZE",
    "FEC_HEADER_SIZE_PLUS2",
    "MAX_FEC_ENCODE_LATENCY_MS",
    "MAX_SHARD_SETS",
    "PARITY_TAG",
    "TYPE_DATA",
    "TYPE_OOB",
    "TYPE_PARITY",
    "FECDecoder",
    "FECEncoder",
    "paws_for",
]

#: seqid (4) + type (2).
FEC_HEADER_SIZE: Final = 6
#: The header plus the 2-byte size field of a data packet.
FEC_HEADER_SIZE_PLUS2: Final = 8
#: Type of a data packet (bytes f1 00 at offset 4).
TYPE_DATA: Final = 0xF1
#: Type of a parity packet (bytes f2 00 at offset 4).
TYPE_PARITY: Final = 0xF2
#: Type of kcp-go HEAD's out-of-band packets; never handled by this module.
TYPE_OOB: Final = 0xF3
#: kcp-go HEAD ``maxFECEncodeLatency``: no parity for a group whose last two
#: data packets are this far apart or more.
MAX_FEC_ENCODE_LATENCY_MS: Final = 500
#: kcp-go HEAD ``maxShardSets``: shard sets more than this many groups
#: behind the newest are discarded.
MAX_SHARD_SETS: Final = 3
#: kcp-go ``maxAutoTuneSamples``.
AUTOTUNE_SAMPLES: Final = 258

_MAX_DATAGRAM: Final = 0xFFFF - 2  # the size field (2 + length) is a u16
#: :meth:`FECEncoder.frame_many_tagged`: a parity packet's tag is this + its seqid
#: (``kcpsock._cfbc.PARITY_TAG``, the same value).
PARITY_TAG: Final = 1 << 32

_HEAD6: Final = struct.Struct("<IH")
_HEAD8: Final = struct.Struct("<IHH")
_unpack_head: Final = _HEAD6.unpack_from
_pack_head: Final = _HEAD6.pack
_pack_head8: Final = _HEAD8.pack
_NO_PARITY: Final[list[tuple[bytes, bytes]]] = []  # frame() without parity (never mutated)


def paws_for(total_shards: int) -> int:
    """The seqid wrap point of kcp-go HEAD for n = d + p shards.

    Args:
        total_shards: n, >= 1.

    Returns:
        ``(0xFFFFFFFF // n) * n``, a multiple of n, so groups stay aligned
        across the wrap.
    """
    return (0xFFFFFFFF // total_shards) * total_shards


def _as_bytes(name: str, value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"{name} must be bytes-like, got {type(value).__name__}")


class FECEncoder:
    """kcp-go's ``fecEncoder``: frames KCP datagrams and emits parity.

    Attributes:
        data_shards: d (0 when FEC is off).
        parity_shards: p (0 when FEC is off).
        paws: the seqid wrap point (0 when FEC is off).
        parity_skipped: groups whose parity was skipped (kcp-go HEAD, gap of
            500 ms or more; only when ``now_ms`` is given).
    """

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        # live protocol state: copy.copy/deepcopy/pickle raise, in both forms
        # (compiled, mypyc's classes could not be copied anyway)
        raise TypeError(f"cannot pickle {type(self).__name__!r} object: create a new one")

    # The constructors take ``object`` and check it themselves: compiled (see
    # kcpsock/_accel.py), a parameter typed ``int`` is refused by mypyc's own
    # TypeError, which does not name the argument.

    def __init__(
        self,
        data_shards: object,
        parity_shards: object,
        *,
        start_seqid: object = 0,
        accelerate: object = True,
    ) -> None:
        """Create an encoder.

        Args:
            data_shards: d; 0 together with ``parity_shards`` 0 turns FEC off.
            parity_shards: p.
            start_seqid: the seqid of the first data packet (default 0, as
                kcp-go).  Must be a multiple of d + p below ``paws``, so that
                groups stay aligned; used to reproduce the wrap-around.
            accelerate: compute parity in C: one call of the C helper
                (``kcpsock._gfsimd``, :func:`~kcpsock.gf256.native_encode`)
                per group when it is built, else the C-speed
                :class:`~kcpsock.gf256.ParityAccumulator` when pycryptodome's
                C XOR is reachable (the default); False keeps the pure-Python
                int paths (tests compare all three; the bytes are the same).

        Raises:
            TypeError: if a count or ``start_seqid`` is not an int, or
                ``accelerate`` is not a bool (or 0/1).
            ValueError: if a count is negative, only one of them is 0, their
                sum exceeds 255, or ``start_seqid`` is not a group start below
                ``paws``.
        """
        d, p = check_shards(data_shards, parity_shards)
        if not isinstance(start_seqid, int) or isinstance(start_seqid, bool):
            raise TypeError(f"start_seqid must be an int, got {type(start_seqid).__name__}")
        accel = check_bool("accelerate", accelerate)
        self.data_shards = d
        self.parity_shards = p
        self.parity_skipped = 0
        self._enabled = d > 0
        n = d + p
        self.paws = paws_for(n) if self._enabled else 0
        if self._enabled:
            if not 0 <= start_seqid < self.paws or start_seqid % n:
                raise ValueError(
                    f"start_seqid must be a multiple of {n} in [0, {self.paws}), got {start_seqid}"
                )
            self._rs: Optional[ReedSolomon] = ReedSolomon(d, p)
            self._tables = self._rs.column_tables
        else:
            if start_seqid:
                raise ValueError("start_seqid must be 0 when FEC is off")
            self._rs = None
            self._tables = ()
        self._next = start_seqid
        self._count = 0  # data shards collected in the current group
        self._max = 0  # longest shard of the group (kcp-go maxSize - 6)
        self._acc: list[int] = [0] * p
        # The C helper (kcpsock._gfsimd): the group's datagrams are held
        # (no copy) and its parity is one C call at the group's end.
        self._native: Optional[NativeEncode] = (
            native_encode() if self._rs is not None and accel else None
        )
        self._coefs = self._rs.parity_coefs if self._rs is not None else b""
        self._group: list[bytes] = []  # the datagrams of the group (native path)
        # Without it, the C-speed accumulator (translates + C XOR calls, see
        # gf256), when pycryptodome's strxor can be called directly; else the
        # bit-sliced int program (small codes) or translate + int XOR.
        xor = xor_function() if self._rs is not None and accel and self._native is None else None
        self._cacc: Optional[ParityAccumulator] = (
            ParityAccumulator(self._rs, xor) if self._rs is not None and xor is not None else None
        )
        # Shards of the current group as ints, when the code is bit-sliced.
        self._values: Optional[list[int]] = (
            [] if self._cacc is None and self._rs is not None and self._rs.bitsliced else None
        )
        self._sizes: list[int] = []  # the size fields of the group's data packets
        self._size_cache: dict[tuple[int, ...], list[int]] = {}
        self._last_ms: Optional[int] = None

    def __repr__(self) -> str:
        return f"FECEncoder({self.data_shards}, {self.parity_shards}, next={self._next})"

    @property
    def enabled(self) -> bool:
        """True when FEC is on (shard counts > 0)."""
        return self._enabled

    @property
    def next_seqid(self) -> int:
        """The seqid the next packet (data or parity) will carry."""
        return self._next

    @property
    def overhead(self) -> int:
        """Bytes added in front of each KCP datagram: 8 with FEC, else 0."""
        return FEC_HEADER_SIZE_PLUS2 if self._enabled else 0

    def encode(self, datagram: BytesLike, now_ms: Optional[int] = None) -> list[bytes]:
        """Frame one KCP datagram (kcp-go ``fecEncoder.encode``).

        Args:
            datagram: one KCP datagram as output by KCP (at most 65533
                bytes).
            now_ms: the current time in ms, optional.  When given, kcp-go
                HEAD's parity skipping applies: a group whose last data packet
                comes 500 ms or more after the previous data packet gets no
                parity (the seqid still advances by p).  When ``None`` (or no
                earlier time is known), parity is always produced, as
                kcp-go 2017 did.

        Returns:
            ``[data packet]``, or ``[data packet, parity 0, ..., parity p-1]``
            when this datagram completes a group.  With FEC off:
            ``[datagram]`` unchanged.

        Raises:
            TypeError: if ``datagram`` is not bytes-like.
            ValueError: if ``datagram`` is too long for the size field.
        """
        if not self._enabled:
            return [_as_bytes("datagram", datagram)]
        if not isinstance(datagram, bytes):
            datagram = _as_bytes("datagram", datagram)
        header, parity = self.frame(datagram, now_ms)
        out = [header + datagram]
        if parity:
            out += [head + shard for head, shard in parity]
        return out

    def frame(
        self, datagram: bytes, now_ms: Optional[int] = None
    ) -> tuple[bytes, list[tuple[bytes, bytes]]]:
        """:meth:`encode` in parts, for callers that assemble packets themselves.

        The codec writes crypto header, FEC header and datagram straight
        into its cipher's buffer, so the data packet ``header + datagram``
        is never built as a bytes object of its own.

        Args:
            datagram: one KCP datagram (bytes; FEC must be enabled).
            now_ms: as for :meth:`encode`.

        Returns:
            ``(header, parity)``: the 8-byte FEC header of the data packet
            (its packet is ``header + datagram``), and, when this datagram
            completes a group, the parity packets as ``(6-byte header,
            shard)`` pairs (empty otherwise, or when the parity is skipped).

        Raises:
            ValueError: if ``datagram`` is too long for the size field, or
                FEC is off.
        """
        if not self._enabled:
            raise ValueError("frame() needs FEC enabled")
        size = len(datagram) + 2
        seq = self._admit(size)
        header = _pack_head8(seq, TYPE_DATA, size)
        cacc = self._cacc
        values = self._values
        if self._native is not None:
            # C helper: the datagram is held; the group's parity is one C
            # call when the group completes (the size fields are added there).
            self._group.append(datagram)
            index = self._count = self._count + 1
        elif cacc is not None:
            # C-speed path: the shard (size field + datagram) goes into the
            # accumulator now, spreading the work over the group.
            shard = bytearray(header[6:])
            shard += datagram
            cacc.add(self._count, shard)
            index = self._count = self._count + 1
        elif values is not None:
            # Bit-sliced path: keep the datagram as an int, its size apart
            # (the code is linear and works bytewise, so the parity of
            # "size + datagram" is that of the sizes XOR that of the
            # datagrams moved up two bytes); the parity is computed when
            # the group completes.
            values.append(int.from_bytes(datagram, "little"))
            self._sizes.append(size)
            index = len(values)
        else:
            # Translate path: add this shard's share to the p accumulators
            # now, spreading the work over the group.
            buf = bytearray(header[6:] + datagram)
            acc = self._acc
            frombytes = int.from_bytes
            for j, table in enumerate(self._tables[self._count]):
                acc[j] ^= frombytes(buf.translate(table), "little")
            index = self._count = self._count + 1
        parity = _NO_PARITY
        if index == self.data_shards:
            parity = self._complete_group(now_ms)
        self._last_ms = now_ms
        return header, parity

    def _admit(self, size: int) -> int:
        """Take the seqid of a data packet of ``size`` (2 + the datagram's length).

        Checks that ``size`` fits the u16 size field (ValueError, the
        encoder's state unchanged), advances the seqid as kcp-go HEAD's
        sealData does (``next = (next + 1) % paws``, for data too) and
        keeps the group's largest size.
        """
        if size > 0xFFFF:
            raise ValueError(f"datagram too long for FEC: {size - 2} > {_MAX_DATAGRAM} bytes")
        seq = self._next
        nxt = seq + 1
        self._next = nxt if nxt < self.paws else 0
        if size > self._max:
            self._max = size
        return seq

    def frame_many(
        self, datagrams: Iterable[BytesLike], now_ms: Optional[int] = None
    ) -> tuple[list[bytes], list[bytes]]:
        """:meth:`frame` for a batch: the headers and bodies of every wire packet, in order.

        Packet i is ``heads[i] + bodies[i]``: each datagram's data packet
        (8-byte header, the datagram), followed, after the datagram that
        completes a group, by the group's parity packets (6-byte header,
        shard).  The same packets as one :meth:`frame` call per datagram.

        Args:
            datagrams: KCP datagrams (bytes-like; FEC must be enabled).
            now_ms: as for :meth:`encode`.

        Returns:
            ``(heads, bodies)``, two lists of equal length.

        Raises:
            TypeError: if a datagram is not bytes-like.
            ValueError: as :meth:`frame`; the datagrams before the bad one
                are framed (the encoder's state includes them).
        """
        heads: list[bytes] = []
        bodies: list[bytes] = []
        add_head = heads.append
        add_body = bodies.append
        cacc = self._cacc
        native = self._native
        if (cacc is None and native is None) or not self._enabled:
            for dg in datagrams:
                if not isinstance(dg, bytes):
                    dg = _as_bytes("datagram", dg)
                header, parity = self.frame(dg, now_ms)
                add_head(header)
                add_body(dg)
                for head, shard in parity:
                    add_head(head)
                    add_body(shard)
            return heads, bodies
        # The C paths of frame(), inlined (one datagram per iteration).
        group = self._group
        d = self.data_shards
        pack8 = _pack_head8
        for dg in datagrams:
            if not isinstance(dg, bytes):
                dg = _as_bytes("datagram", dg)
            size = len(dg) + 2
            header = pack8(self._admit(size), TYPE_DATA, size)
            if native is not None:
                group.append(dg)  # the C helper adds the size field itself
            elif cacc is not None:
                whole = bytearray(header[6:])  # the shard: size field + datagram
                whole += dg
                cacc.add(self._count, whole)
            add_head(header)
            add_body(dg)
            count = self._count = self._count + 1
            if count == d:
                for head, body in self._complete_group(now_ms):
                    add_head(head)
                    add_body(body)
            self._last_ms = now_ms
        return heads, bodies

    @property
    def taggable(self) -> bool:
        """True if :meth:`frame_many_tagged` can be used (FEC on, the C parity helper built)."""
        return self._enabled and self._native is not None

    def frame_many_tagged(
        self, datagrams: Iterable[BytesLike], now_ms: Optional[int] = None
    ) -> tuple[list[int], list[bytes]]:
        """:meth:`frame_many` with each FEC header as its tag, an int (for ``_cfbc`` ``seal``).

        The tag of a data packet is its seqid (its header: seqid, type 0xF1,
        size = 2 + the datagram's length), that of a parity packet
        :data:`PARITY_TAG` + its seqid (seqid, type 0xF2): the C sealer
        writes the header, so none is packed here.  The encoder's state
        moves as with :meth:`frame_many`.

        Args:
            datagrams: KCP datagrams (bytes-like).
            now_ms: as for :meth:`encode`.

        Returns:
            ``(tags, bodies)``, two lists of equal length.

        Raises:
            TypeError: if a datagram is not bytes-like.
            ValueError: as :meth:`frame`, or :attr:`taggable` is False.
        """
        native = self._native
        if native is None or not self._enabled:
            raise ValueError("frame_many_tagged() needs FEC on and the C helper (see taggable)")
        tags: list[int] = []
        bodies: list[bytes] = []
        # (tags.append, not a bound method kept in a local: compiled, a
        # list's append is a direct C call; binding it costs two attribute
        # lookups and a method object per call)
        group = self._group
        d = self.data_shards
        paws = self.paws
        for dg in datagrams:
            if not isinstance(dg, bytes):
                dg = _as_bytes("datagram", dg)
            seq = self._admit(len(dg) + 2)
            group.append(dg)  # the C helper adds the size field itself
            tags.append(seq)
            bodies.append(dg)
            count = self._count = self._count + 1
            if count == d:
                nxt = self._next
                for shard in self._parity(now_ms):
                    tags.append(PARITY_TAG + nxt)
                    bodies.append(shard)
                    nxt += 1
                    if nxt >= paws:
                        nxt = 0
            self._last_ms = now_ms
        return tags, bodies

    def _size_parity(self, sizes: tuple[int, ...]) -> list[int]:
        """The parity of the groups' 2-byte size fields alone (cached: bulk sizes repeat)."""
        cache = self._size_cache
        got = cache.get(sizes)
        if got is None:
            rs = self._rs
            assert rs is not None
            if len(cache) >= 64:
                cache.clear()
            got = cache[sizes] = rs.parity_ints(list(sizes), 2)
        return got

    def _complete_group(self, now_ms: Optional[int]) -> list[tuple[bytes, bytes]]:
        """The group's parity packets as (header, shard) pairs (or none: skipped); reset."""
        nxt = self._next
        paws = self.paws
        out: list[tuple[bytes, bytes]] = []
        for shard in self._parity(now_ms):
            # kcp-go HEAD sealParity: next = (next + 1) % paws.
            out.append((_pack_head(nxt, TYPE_PARITY), shard))
            nxt += 1
            if nxt >= paws:
                nxt = 0
        return out

    def _parity(self, now_ms: Optional[int]) -> list[bytes]:
        """The group's parity shards (none: skipped); the seqids after them taken; reset.

        The shards' seqids are the ``parity_shards`` after the group's data
        (``_next`` on entry, wrapping at ``paws``); ``_next`` moves past them
        whether or not they are sent.
        """
        last = self._last_ms
        length = self._max
        p = self.parity_shards
        shards: list[bytes] = []
        if now_ms is not None and last is not None and now_ms - last >= MAX_FEC_ENCODE_LATENCY_MS:
            # kcp-go HEAD skipParity: no parity for a discontinuous group,
            # but seqids stay aligned to groups.
            self.parity_skipped += 1
            if self._cacc is not None:
                self._cacc.reset()
        elif self._native is not None:
            # kcp-go's shards: size field + datagram, zero-padded to the longest
            shards = self._native(self._group, self._coefs, length, 0, True)
        elif self._cacc is not None:
            shards = self._cacc.take(length)
        else:
            rs = self._rs
            assert rs is not None  # an enabled encoder always has its code
            values = self._values
            if values is not None:
                # kcp-go pads every shard with zeros to the longest; ints do
                # that implicitly.
                data = rs.parity_ints(values, length - 2)
                sizes = self._size_parity(tuple(self._sizes))
                parity = [(v << 16) ^ s for v, s in zip(data, sizes)]
            else:
                parity = self._acc
            shards = [value.to_bytes(length, "little") for value in parity]
        # kcp-go HEAD: next = (next + 1) % paws per parity packet, sent or skipped
        self._next = (self._next + p) % self.paws
        self._count = 0
        self._max = 0
        self._group.clear()
        if self._values is not None:
            self._values = []
            self._sizes = []
        elif self._cacc is None:
            self._acc = [0] * p
        return shards


class _Autotune:
    """kcp-go ``autoTune``: guesses the sender's (d, p) from the packet kinds.

    Keeps the last 258 (seqid, is_data) samples.  The period of a kind is the
    length of one unbroken run of it between two edges in consecutive seqids.

    Stored as a ring of small ints, one per packet: ``delta * 2 + is_data``
    where delta is the seqid's distance (mod 2**32) from the sample before;
    the newest seqid is kept apart, and the others follow from it backwards.
    In a stream delta is 1, so the ring holds the same two small ints over
    and over (no int object is made or freed per packet).
    """

    __slots__ = ("_full", "_last", "_next", "_ring")

    def __init__(self) -> None:
        self._ring: list[int] = [0] * AUTOTUNE_SAMPLES
        self._next = 0  # the slot the next sample goes to
        self._full = False  # every slot holds a sample
        self._last = 0  # the newest sample's seqid

    def add(self, seqid: int, is_data: bool) -> None:
        """Record one packet's seqid (a u32) and kind (the oldest of 258 samples is dropped)."""
        delta = (seqid - self._last) & 0xFFFFFFFF
        self._last = seqid
        i = self._next
        self._ring[i] = delta * 2 + 1 if is_data else delta * 2
        i += 1
        if i == AUTOTUNE_SAMPLES:
            i = 0
            self._full = True
        self._next = i

    @property
    def samples(self) -> list[tuple[int, bool]]:
        """The samples held, oldest first, as (seqid, is_data) pairs."""
        ring = self._ring
        i = self._next
        packed = ring[i:] + ring[:i] if self._full else ring[:i]
        out: list[tuple[int, bool]] = []
        seqid = self._last
        for v in reversed(packed):
            out.append((seqid, bool(v & 1)))
            seqid = (seqid - (v >> 1)) & 0xFFFFFFFF
        out.reverse()
        return out

    def find_period(self, bit: bool) -> int:
        """Length of one run of ``bit`` (True = data), or -1 if not found.

        kcp-go HEAD ``FindPeriod``: walk the samples in seqid order from the
        oldest; the left edge is the first change *to* ``bit``, the right
        edge the next change away from it.  Every step up to the right edge
        must advance the seqid by exactly 1, else -1 (any loss or reordering
        in that stretch defeats detection until it leaves the window).
        """
        samples = self.samples
        if len(samples) < 3:
            return -1
        # One sample per seqid, the latest winning (as kcp-go's ring indexed
        # by seqid): a stray duplicate must not block detection.
        latest = dict(samples)
        ref = samples[-1][0]
        ordered = sorted(latest.items(), key=lambda s: timediff(s[0], ref))
        left = -1
        for i in range(1, len(ordered)):
            prev, cur = ordered[i - 1], ordered[i]
            if (prev[0] + 1) & 0xFFFFFFFF != cur[0]:
                return -1
            if left < 0:
                if prev[1] != bit and cur[1] == bit:
                    left = i
            elif cur[1] != bit:
                return i - left
        return -1


class FECDecoder:
    """kcp-go HEAD's ``fecDecoder``: groups shards, recovers lost data packets.

    Per received packet: data packets hand their KCP datagram straight back
    (kcp-go feeds it to KCP at once, FEC never delays data); both kinds are
    stored in the shard set of their group (``seqid // n``); as soon as a set
    holds d shards they are all taken out, and if data shards are missing
    they are rebuilt from parity.  Shard sets more than three groups behind
    the newest are discarded.

    Counters (cumulative ints, never reset):
        parity_shards: parity packets stored (kcp-go FECParityShards).
        full_shard_sets: groups that arrived with all d data shards
            (FECFullShardSet).
        recovered: recovered datagrams returned (FECRecovered).
        errors: recovered shards failing the size-prefix check, plus failed
            reconstructions (FECErrs).
        ignored: packets not stored: duplicates, seqid >= paws, or kind not
            matching the seqid's position while (d, p) is being re-detected.
        retuned: times autotune switched to another (d, p).
    """

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        # live protocol state: copy.copy/deepcopy/pickle raise, in both forms
        # (compiled, mypyc's classes could not be copied anyway)
        raise TypeError(f"cannot pickle {type(self).__name__!r} object: create a new one")

    def __init__(
        self,
        data_shards: object,
        parity_shards: object,
        *,
        autotune: object = True,
        accelerate: object = True,
    ) -> None:
        """Create a decoder.

        Args:
            data_shards: d; 0 together with ``parity_shards`` 0 turns FEC off
                (packets pass through unchanged).
            parity_shards: p.
            autotune: follow the sender's (d, p) when it differs from ours
                (kcp-go HEAD autotune); recovery pauses while detecting.
            accelerate: rebuild lost shards in C: one call of the C helper
                (``kcpsock._gfsimd``) when it is built, else the C-speed
                :class:`~kcpsock.gf256.ParityAccumulator` when pycryptodome's
                C XOR is reachable (the default); False keeps the int path
                (same datagrams).

        Raises:
            TypeError: if a count is not an int, or a flag not a bool (or 0/1).
            ValueError: if a count is negative, only one of them is 0, or
                their sum exceeds 255.
        """
        d, p = check_shards(data_shards, parity_shards)
        tune = check_bool("autotune", autotune)
        accel = check_bool("accelerate", accelerate)
        self.parity_shards = 0
        self.full_shard_sets = 0
        self.recovered = 0
        self.errors = 0
        self.ignored = 0
        self.retuned = 0
        self._enabled = d > 0
        self._autotune = _Autotune() if (tune and self._enabled) else None
        self._should_tune = False
        # rebuild with the C XOR when reachable (else the int path,
        # kcpsock.gf256.rebuild_ints); looked up when needed, so that the
        # decoder holds no ctypes object
        self._accelerate = accel
        # the C helper (kcpsock._gfsimd) rebuilds with one call when built
        self._native: Optional[NativeEncode] = native_encode() if accel else None
        # gid -> the group's n slots (packet or None), for the newest group
        # and the three before it; the newest group's slots and count are
        # also kept apart (the per-packet path touches no dict)
        self._sets: dict[int, list[Optional[bytes]]] = {}
        self._newest = -1  # the newest group's id; -1 before the first packet
        self._cur: list[Optional[bytes]] = []  # its slots (the same list as in _sets)
        self._cur_count = 0  # the shards in _cur
        self._configure(d, p)

    def _configure(self, d: int, p: int) -> None:
        self._d = d
        self._p = p
        self._n = d + p
        self._paws = paws_for(d + p) if d else 0
        self._shape = (self._n, d, self._paws)
        self._rs = ReedSolomon(d, p) if d else None
        self._sets = {}
        self._newest = -1
        self._cur = []
        self._cur_count = 0

    def __repr__(self) -> str:
        return f"FECDecoder({self._d}, {self._p}, sets={len(self._sets)})"

    @property
    def enabled(self) -> bool:
        """True when FEC is on (shard counts > 0)."""
        return self._enabled

    @property
    def shard_counts(self) -> tuple[int, int]:
        """The (d, p) in use (autotune may change it)."""
        return (self._d, self._p)

    @property
    def paws(self) -> int:
        """The seqid wrap point for the (d, p) in use; packets at or above it are ignored."""
        return self._paws

    @property
    def shard_sets(self) -> int:
        """Shard sets currently held (kcp-go FECShardSet gauge)."""
        return len(self._sets)

    def decode(self, packet: BytesLike) -> list[bytes]:
        """Take one FEC packet; return the KCP datagrams it yields.

        Args:
            packet: an FEC data or parity packet (after decryption).

        Returns:
            The data packet's own KCP datagram first (if it is a data packet),
            then any datagrams recovered from its group, in index order.  With
            FEC off: ``[packet]``.

        Raises:
            PacketError: (counter ``InErrs``) packet shorter than 8 bytes or
                of a type other than data/parity; the state is unchanged.
            TypeError: if ``packet`` is not bytes-like.
        """
        regular, recovered = self.decode_parts(packet)
        if regular is None:
            return recovered
        if recovered:
            return [regular, *recovered]
        return [regular]

    def decode_parts(self, packet: BytesLike) -> tuple[Optional[bytes], list[bytes]]:
        """Like :meth:`decode`, keeping the regular datagram apart.

        Args:
            packet: an FEC data or parity packet (after decryption).

        Returns:
            ``(regular, recovered)``: the data packet's KCP datagram (bytes 8
            to the end, as kcp-go feeds it to KCP) or ``None`` for a parity
            packet; and the recovered KCP datagrams (to be fed to KCP as
            non-regular, kcp-go's FEC packet type).  With FEC off:
            ``(packet, [])``.

        Raises:
            PacketError: (counter ``InErrs``) packet shorter than 8 bytes or
                of a type other than data/parity; the state is unchanged.
            TypeError: if ``packet`` is not bytes-like.
        """
        if not isinstance(packet, bytes):
            packet = _as_bytes("packet", packet)
        if not self._enabled:
            return packet, []
        if len(packet) < FEC_HEADER_SIZE_PLUS2:
            # kcp-go HEAD kcpInput: FEC packets shorter than 8 bytes -> InErrs.
            raise PacketError(f"FEC packet too short ({len(packet)} bytes)", "InErrs")
        seqid, flag = _unpack_head(packet)
        if flag != TYPE_DATA and flag != TYPE_PARITY:
            raise PacketError(f"bad FEC packet type 0x{flag:04x}", "InErrs")
        return self.take(packet, seqid, flag == TYPE_DATA)

    def take(self, packet: bytes, seqid: int, is_data: bool) -> tuple[Optional[bytes], list[bytes]]:
        """:meth:`decode_parts` of a packet its caller has parsed and checked already.

        For :meth:`kcpsock.codec.PacketCodec.decode_payload`, which reads the
        header anyway: no second type check or header parse per packet.

        Args:
            packet: an FEC packet of at least 8 bytes (bytes) on an enabled decoder.
            seqid: its seqid (u32 at offset 0).
            is_data: True for a data packet (type 0xF1), False for parity (0xF2).

        Returns:
            As :meth:`decode_parts`.
        """
        regular: Optional[bytes] = packet[FEC_HEADER_SIZE_PLUS2:] if is_data else None
        return regular, self.collect(packet, seqid, is_data)

    def collect(self, packet: bytes, seqid: int, is_data: bool) -> list[bytes]:
        """:meth:`take` without the copy of the regular datagram: only the recovered ones.

        For a receiver that feeds a data packet's KCP datagram from offset 8
        of ``packet`` itself (:meth:`kcpsock.codec.PacketCodec.decode_framed`).
        ``packet`` is kept (as a shard of its group) and must not change.

        Args:
            packet: as :meth:`take`.
            seqid: as :meth:`take`.
            is_data: as :meth:`take`.

        Returns:
            The datagrams recovered from parity (often empty).
        """
        # --- no exception below this line: state changes start here ---
        tuner = self._autotune
        if tuner is not None:
            tuner.add(seqid, is_data)
        if seqid >= self._paws:
            # kcp-go HEAD: beyond the wrap point, never a valid seqid.
            self.ignored += 1
            return []
        n = self._n
        gid = seqid // n
        pos = seqid - gid * n
        if (pos < self._d) != is_data or self._should_tune:
            # Kind does not match the position: the peer's (d, p) differs
            # (kcp-go HEAD shouldTune; sticky until autotune succeeds).
            self.ignored += 1
            if tuner is not None:
                self._should_tune = True
                self._retune()
            return []
        if gid != self._newest:
            return self._take_other(packet, gid, pos, is_data)
        # The newest group (nearly every packet): no dict, no window check.
        slots = self._cur
        if slots[pos] is not None:
            self.ignored += 1  # duplicate
            return []
        slots[pos] = packet
        if not is_data:
            self.parity_shards += 1
        count = self._cur_count + 1
        if count < self._d:
            self._cur_count = count
            return []
        # kcp-go HEAD: take every shard out; the set stays, empty, so later
        # shards of this group (its parity, normally) are collected again
        # and age out with the group.
        fresh: list[Optional[bytes]] = [None] * n
        self._sets[gid] = fresh
        self._cur = fresh
        self._cur_count = 0
        return self._recover(slots)

    def _take_other(self, packet: bytes, gid: int, pos: int, is_data: bool) -> list[bytes]:
        """:meth:`take` for a packet of a group other than the newest (or the first packet)."""
        n = self._n
        sets = self._sets
        slots = sets.get(gid)
        if slots is None:
            slots = sets[gid] = [None] * n
        elif slots[pos] is not None:
            self.ignored += 1  # duplicate
            return []
        slots[pos] = packet
        if not is_data:
            self.parity_shards += 1
        count = n - slots.count(None)
        recovered: list[bytes] = []
        if count >= self._d:
            # as in take: the set stays, empty
            sets[gid] = [None] * n
            count = 0
            recovered = self._recover(slots)
        # Track the newest group and drop the ones more than 3 groups behind
        # (kcp-go HEAD newestShardId / maxShardSets).
        newest = self._newest
        horizon = MAX_SHARD_SETS * n
        if newest < 0 or timediff(gid * n, newest * n) > 0:
            self._newest = gid
            self._cur = sets[gid]
            self._cur_count = count
            if gid == newest + 1 and gid > MAX_SHARD_SETS:
                # the next group (no wrap): the sets held were those of groups
                # newest-3 .. newest, so only newest-3 falls out of the window
                sets.pop(gid - MAX_SHARD_SETS - 1, None)
            elif newest >= 0:
                stale = [g for g in sets if timediff(gid * n, g * n) > horizon]
                for g in stale:
                    del sets[g]
        elif timediff(newest * n, gid * n) > horizon:
            del sets[gid]
        return recovered

    def _recover(self, slots: list[Optional[bytes]]) -> list[bytes]:
        """The datagrams rebuilt from a group's d (or more) shards; [] when no data is missing."""
        d = self._d
        missing = [i for i in range(d) if slots[i] is None]
        if not missing:
            self.full_shard_sets += 1
            return []
        rs = self._rs
        if rs is None:  # pragma: no cover - enabled decoders always have one
            return []
        present = [i for i in range(len(slots)) if slots[i] is not None]
        chosen = tuple(present[:d])
        shard_set: dict[int, bytes] = {}
        for i in present:
            packet = slots[i]
            assert packet is not None
            shard_set[i] = packet
        maxlen = max(len(p) for p in shard_set.values()) - FEC_HEADER_SIZE
        native = self._native
        if native is not None and maxlen >= 2:
            try:
                rows = rs.decode_rows(chosen)
            except ValueError:  # pragma: no cover - any d rows are invertible
                self.errors += 1
                return []
            coefs = bytes([rows[m][k] for m in missing for k in range(d)])
            # the shards are the packets after their 6-byte header
            shards = native([shard_set[i] for i in chosen], coefs, maxlen, FEC_HEADER_SIZE, False)
            return self._checked(shards, maxlen)
        xor = xor_function() if self._accelerate else None
        if xor is not None and maxlen >= 2:
            return self._recover_c(chosen, shard_set, missing, maxlen, xor)
        try:
            values = rs.rebuild_ints(
                chosen, [memoryview(shard_set[i])[FEC_HEADER_SIZE:] for i in chosen], missing
            )
        except ValueError:  # pragma: no cover - any d rows are invertible
            self.errors += 1
            return []
        out: list[bytes] = []
        for acc in values:
            # Size-prefix check before anything reaches KCP (kcp-go kcpInput):
            # 2 <= size <= shard length; the datagram is shard[2:size].
            size = acc & 0xFFFF
            if maxlen < 2 or size < 2 or size > maxlen:
                self.errors += 1
                continue
            out.append(acc.to_bytes(maxlen, "little")[2:size])
        self.recovered += len(out)
        return out

    def _recover_c(
        self,
        chosen: tuple[int, ...],
        shard_set: dict[int, bytes],
        missing: list[int],
        maxlen: int,
        xor: Callable[..., object],
    ) -> list[bytes]:
        """:meth:`_recover` at C speed: translate + one C XOR per present shard."""
        rs = self._rs
        assert rs is not None
        try:
            rows = rs.decode_rows(chosen)
        except ValueError:  # pragma: no cover - any d rows are invertible
            self.errors += 1
            return []
        columns = [tuple(MUL_TABLES[rows[m][k]] for m in missing) for k in range(len(chosen))]
        acc = ParityAccumulator(columns, xor)
        for k, index in enumerate(chosen):
            acc.add(k, bytearray(memoryview(shard_set[index])[FEC_HEADER_SIZE:]))
        return self._checked(acc.take(maxlen), maxlen)

    def _checked(self, shards: list[bytes], maxlen: int) -> list[bytes]:
        """The datagrams of rebuilt shards that pass the size-prefix check (counted)."""
        out: list[bytes] = []
        for shard in shards:
            # Size-prefix check before anything reaches KCP (kcp-go kcpInput):
            # 2 <= size <= shard length; the datagram is shard[2:size].
            size = shard[0] | shard[1] << 8
            if size < 2 or size > maxlen:
                self.errors += 1
                continue
            out.append(shard[2:size])
        self.recovered += len(out)
        return out

    def _retune(self) -> None:
        tuner = self._autotune
        if tuner is None:
            return
        ds = tuner.find_period(True)
        ps = tuner.find_period(False)
        if ds > 0 and ps > 0 and ds + ps <= 255:
            if (ds, ps) != (self._d, self._p):
                self._configure(ds, ps)
                self.retuned += 1
            self._should_tune = False
