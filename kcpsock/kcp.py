"""The sans-io KCP core: kcp-go HEAD's ARQ state machine, wire-compatible.

This is skywind3000's KCP as kcp-go v5.6.72 (HEAD) runs it (see
docs/KCP.md): 24-byte segments (:mod:`kcpsock.segment`),
PUSH/ACK/WASK/WINS, fragmentation, stream and message mode, cumulative and
selective ACKs, kcp-go's RTT estimator, fast and early retransmission,
congestion control, window probing and the dead-link flag.

Nothing here touches a socket, a thread or a clock: time comes in as
``now_ms`` and datagrams go out as the returned ``list[bytes]``.

Invariants:
- ``snd_buf`` holds exactly the segments ``snd_una .. snd_nxt - 1`` in sn
  order (kcp-go HEAD never removes a segment except from the front, when
  ``una`` passes it; a selective ACK only sets ``acked``), so the segment with
  sequence number ``sn`` sits at index ``(sn - snd_buf[0][SN]) mod 2**32``:
  an ACK finds its segment without a scan.  A segment is a plain list
  indexed by the names ``SN`` .. ``ACKED`` (speed); the type checker sees
  the typed :class:`Segment` record.
- ``rcv_buf`` maps sn -> (frg, payload) for out-of-order segments with
  ``rcv_nxt <= sn < rcv_nxt + rcv_wnd``; ``rcv_queue`` never holds more than
  ``rcv_wnd`` segments.
- Every sn, una, ts and cwnd/incr value is kept reduced mod 2**32 and compared
  with the signed 32-bit difference, as kcp-go's uint32 arithmetic does.
- :meth:`KCP.input` validates the whole datagram before it changes anything:
  a :class:`~kcpsock.errors.PacketError` leaves the state untouched.
- No zero-length PUSH is ever emitted (``send(b"")`` raises), and complete
  zero-length messages received from ikcp peers are skipped.

Speed (kcp-go scans snd_buf at every flush, ACK and check; a window of 1024
makes that the cost of everything): ``_flush`` keeps the never-sent tail
(``_unsent``), the fast/early retransmission candidates (``_fastcand``) and a
lower bound of the resend times (``_min_resend``), and runs kcp-go's full
scan only when a timer may have expired -- a test checks that both send the
same datagrams.  ``_inflight`` lists the sent segments not known to be acked,
so an ACK's fast-ack counting walks only those.

Deliberate differences from kcp-go HEAD (no byte format changes; the last
changes when segments are resent):
- a malformed datagram is refused as a whole (kcp-go applies the segments
  before the bad one);
- selectively acked segments no longer count skipping ACKs (kcp-go counts
  them too, which only ever triggers an immediate flush);
- stream mode has no 255-fragment limit (every segment has frg 0);
- ``wndsize`` refuses windows above 65535 (kcp-go truncates them on the wire);
- an ACK filtered out by the "below rcv_nxt" rule does not reserve room in
  the datagram (kcp-go checks the space before filtering);
- an expired segment the peer has not reached yet (its last copy sent after
  the newest copy an ACK echoes) is not resent while the peer still
  acknowledges, and a silent peer gets one probe per RTO (``rto_ordered``;
  False, as ``KCPConfig.kcp_go()`` sets it, restores kcp-go's rule;
  docs/SESSION.md §6).
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Callable, Sequence
from itertools import islice
from operator import itemgetter
from types import FunctionType
from typing import Final, NoReturn, Optional, Union, cast

# Segment and _NoDelay live in a module mypyc leaves interpreted: it cannot
# compile a subclass of int, and it compiles the run-time branch of an
# ``if TYPE_CHECKING`` block as unreachable code.
from ._kcptypes import Segment, _NoDelay
from .config import check_int, check_window
from .errors import PacketError
from .segment import CMD_ACK, CMD_PUSH, CMD_WASK, CMD_WINS, HEADER, OVERHEAD, U32, timediff

__all__ = [
    "ACKED",
    "DATA",
    "FASTACK",
    "FRG",
    "IKCP_DEADLINK",
    "IKCP_INTERVAL",
    "IKCP_MTU_DEF",
    "IKCP_PROBE_INIT",
    "IKCP_PROBE_LIMIT",
    "IKCP_RTO_DEF",
    "IKCP_RTO_MAX",
    "IKCP_RTO_MIN",
    "IKCP_RTO_NDL",
    "IKCP_WND_RCV",
    "IKCP_WND_SND",
    "KCP",
    "MAX_FRAGMENTS",
    "MIN_MTU",
    "RESENDTS",
    "RTO",
    "SN",
    "TS",
    "XMIT",
    "Segment",
]

IKCP_RTO_NDL: Final = 30
IKCP_RTO_MIN: Final = 100
IKCP_RTO_DEF: Final = 200
IKCP_RTO_MAX: Final = 60000
IKCP_ASK_SEND: Final = 1
IKCP_ASK_TELL: Final = 2
IKCP_WND_SND: Final = 32
IKCP_WND_RCV: Final = 32
IKCP_MTU_DEF: Final = 1400
IKCP_INTERVAL: Final = 100
IKCP_DEADLINK: Final = 20
IKCP_THRESH_INIT: Final = 2
IKCP_THRESH_MIN: Final = 2
IKCP_PROBE_INIT: Final = 500  # kcp-go HEAD (Dec 2025); ikcp and kcp-go 2017 use 7000
IKCP_PROBE_LIMIT: Final = 120000
#: kcp-go Send: more than 255 fragments fail.
MAX_FRAGMENTS: Final = 255
#: kcp-go HEAD SetMtu: mtu must exceed the 24-byte header.
MIN_MTU: Final = OVERHEAD + 1
#: Largest MTU accepted (the 16-bit limit of a UDP length).
MAX_MTU: Final = 65535

_M: Final = U32
#: A payload: bytes, or a view into immutable bytes (message fragments).
_Buf = Union[bytes, bytearray, memoryview]
#: How long (ms) a path that lost a segment counts as lossy (KCP.rto_ordered).
_LOSSY_MS: Final = 1000
_FASTACK_SENTINEL: Final = 0xFFFFFFFF  # kcp-go HEAD: "no more fast/early retransmit until RTO"
_pack: Final = HEADER.pack
#: A PUSH header in two parts (bytes as :data:`HEADER`'s): the fields a
#: flush's segments share (conv, cmd, frg, wnd, ts) and each one's own (sn,
#: una, len).  A flush packs the first once and the second per segment: the
#: conversion of each field is most of a pack's cost.
_pack_head: Final = struct.Struct("<IBBHI").pack
_pack_tail: Final = struct.Struct("<III").pack
_second: Final = itemgetter(1)
_unpack_from: Final = HEADER.unpack_from
#: The offset of the KCP datagram in an opened FEC data packet (its 8-byte
#: FEC header, kcpsock.fec's ``FEC_HEADER_SIZE_PLUS2``), which receivers pass
#: to :meth:`KCP.input` as ``offset``.
_FEC_SKIP: Final = 8
#: A decoded header: conv, cmd, frg, wnd, ts, sn, una, len.
_Hdr = tuple[int, int, int, int, int, int, int, int]


# A segment of snd_buf (kcp-go ``segment``, the sender's fields) is a plain
# list, for speed (a list costs a quarter of a slotted object to create),
# indexed by these names; the type checker sees a typed record (below).
#: sequence number (uint32)
SN: Final = 0
#: fragment countdown (message mode), 0 in stream mode
FRG: Final = 1
#: the payload; ``b""`` once selectively acknowledged
DATA: Final = 2
#: time of the last transmission (ms, uint32)
TS: Final = 3
#: the retransmission timeout in force for this segment (ms)
RTO: Final = 4
#: transmissions so far (0: never sent)
XMIT: Final = 5
#: when it is retransmitted if still unacknowledged (ms, uint32)
RESENDTS: Final = 6
#: skipping ACKs counted, or the sentinel 0xFFFFFFFF (kcp-go HEAD)
FASTACK: Final = 7
#: selectively acknowledged; kept until ``una`` passes it
ACKED: Final = 8


def _header(d: bytes) -> _Hdr:
    """The eight fields of the KCP header that starts ``d`` (at least 24 bytes).

    What ``HEADER.unpack_from(d, 0)`` returns, read byte by byte: compiled,
    this returns native ints (no tuple, no boxed ints; about a third of the
    unpack's time); interpreted it would be slower than the unpack, which
    :meth:`KCP.input` uses instead (:data:`_COMPILED`).
    """
    return (
        d[0] | d[1] << 8 | d[2] << 16 | d[3] << 24,
        d[4],
        d[5],
        d[6] | d[7] << 8,
        d[8] | d[9] << 8 | d[10] << 16 | d[11] << 24,
        d[12] | d[13] << 8 | d[14] << 16 | d[15] << 24,
        d[16] | d[17] << 8 | d[18] << 16 | d[19] << 24,
        d[20] | d[21] << 8 | d[22] << 16 | d[23] << 24,
    )


def _header_behind_fec(d: bytes) -> _Hdr:
    """:func:`_header` of the KCP header at offset 8 (behind an FEC data header).

    ``HEADER.unpack_from(d, 8)``.  Constant offsets, not ``_header`` with an
    offset argument: compiled, every ``o + k`` would be a checked tagged-int
    addition (that version cost twice as much per header).
    """
    return (
        d[8] | d[9] << 8 | d[10] << 16 | d[11] << 24,
        d[12],
        d[13],
        d[14] | d[15] << 8,
        d[16] | d[17] << 8 | d[18] << 16 | d[19] << 24,
        d[20] | d[21] << 8 | d[22] << 16 | d[23] << 24,
        d[24] | d[25] << 8 | d[26] << 16 | d[27] << 24,
        d[28] | d[29] << 8 | d[30] << 16 | d[31] << 24,
    )


#: True when this module runs compiled by mypyc (a compiled function is not
#: a Python function object): :meth:`KCP.input` then reads headers with
#: :func:`_header`.
_COMPILED: Final = not isinstance(_header, FunctionType)


def _int_arg(name: str, value: object) -> int:
    """``value`` if it is an int (a bool included, as kcp-go's 0/1 flags), else TypeError."""
    if not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    return value


class KCP:
    """One KCP control block (kcp-go ``KCP``), driven with explicit time.

    Field names follow kcp-go so ``kcp.go`` can be read beside this class.
    ``rx_minrto``, ``fastresend``, ``nocwnd``, ``stream`` and ``dead_link`` may
    be assigned directly.

    Attributes (cumulative counters, never reset): ``in_segs``, ``out_segs``,
    ``lost_segs``, ``fast_retrans_segs``, ``early_retrans_segs``,
    ``repeat_segs``; :attr:`retrans_segs` is the sum of the three
    retransmission kinds.
    """

    #: Run kcp-go's full snd_buf scan at every flush instead of the shortcut
    #: (slower; the tests compare the two, which must send identical datagrams).
    scan_always = False

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        # live protocol state: copy.copy/deepcopy/pickle raise, in both forms
        # (compiled, mypyc's classes could not be copied anyway)
        raise TypeError(f"cannot pickle {type(self).__name__!r} object: create a new one")

    # The cold setters take ``object`` and check it themselves: compiled, a
    # parameter typed ``int`` would be refused by mypyc's own TypeError, which
    # does not name the argument.

    def __init__(self, conv: object) -> None:
        """Create a control block.

        Args:
            conv: the conversation id, 0..2**32-1; both peers must use the same.

        Raises:
            TypeError: conv is not an int.
            ValueError: conv is out of range.
        """
        self.conv = check_int("conv", conv, 0, U32)
        self.mtu = IKCP_MTU_DEF
        self.mss = self.mtu - OVERHEAD
        self.state = 0
        self.snd_una = 0
        self.snd_nxt = 0
        self.rcv_nxt = 0
        self.ssthresh = IKCP_THRESH_INIT
        self.rx_rttvar = 0
        self.rx_srtt = 0
        self.rx_rto = IKCP_RTO_DEF
        self.rx_minrto = IKCP_RTO_MIN
        self.snd_wnd = IKCP_WND_SND
        self.rcv_wnd = IKCP_WND_RCV
        self.rmt_wnd = IKCP_WND_RCV
        #: the largest window the peer advertised (0: not heard yet); a message
        #: of more fragments can never be reassembled there (see send)
        self.rmt_wnd_max = 0
        #: the receive window advertised at most, in segments (65535: no cap).
        #: A listener sharing its socket's receive buffer among its busy
        #: sessions lowers it; what is accepted (``rcv_wnd``) does not change,
        #: so segments already in flight are never refused.  A plain int that
        #: any thread may set: each flush reads it once.
        self.wnd_cap = 0xFFFF
        self.cwnd = 0  # kcp-go: the first flush sends no data; it then sets cwnd = 1
        self.probe = 0
        self.interval = IKCP_INTERVAL
        self.ts_flush = IKCP_INTERVAL
        self.nodelay_ = 0
        self.updated = 0
        self.ts_probe = 0
        self.probe_wait = 0
        self.dead_link = IKCP_DEADLINK
        self.incr = 0
        self.fastresend = 0
        self.nocwnd = 0
        self.stream = False

        # snd_queue: (frg, payload) pairs not yet numbered; in stream mode
        # send() tops up the last one (kcp-go Send)
        self.snd_queue: deque[tuple[int, _Buf]] = deque()
        self.snd_buf: deque[Segment] = deque()
        self.rcv_queue: deque[tuple[int, _Buf]] = deque()
        # the receive queue's methods of the per-segment paths, bound once:
        # compiled, ``queue.append(x)`` looks the method up by name each time
        self._rcv_append: Callable[[tuple[int, _Buf]], None] = self.rcv_queue.append
        self._rcv_popleft: Callable[[], tuple[int, _Buf]] = self.rcv_queue.popleft
        self.rcv_buf: dict[int, tuple[int, _Buf]] = {}
        self.acklist: list[tuple[int, int]] = []
        # kcp-go scans snd_buf at every flush; these let _flush skip the scan
        self._unsent = 0  # the last _unsent segments of snd_buf were never sent
        self._fastcand: dict[int, Segment] = {}  # sn -> segment with 0 < fastack != sentinel
        self._min_resend = 0  # lower bound of the resend times of sent, unacked segments
        # the sent segments of snd_buf that may still count skipping ACKs (not
        # acked, no fastack sentinel), in sn order; dropped lazily, rebuilt by
        # the full scan; parse_fastack walks only these
        self._inflight: deque[Segment] = deque()

        self.in_segs = 0
        self.out_segs = 0
        self.lost_segs = 0
        self.fast_retrans_segs = 0
        self.early_retrans_segs = 0
        self.repeat_segs = 0
        #: WINS segments (not recovered by FEC) with una 0 after the peer had
        #: acknowledged data: the answer of a fresh session, a peer that forgot
        #: the conversation (kcp-go's listener opens a new session for a probe
        #: that arrives after it closed one)
        self.stale_wins = 0
        #: the delay the last full flush suggested until the next one (kcp-go HEAD)
        self.next_update_ms = IKCP_INTERVAL
        #: While True, flushes retransmit nothing on timeout (ACKs, new data and
        #: fast retransmissions still leave; the timeouts fire at the first
        #: flush after it is cleared).  The session layer sets it while it
        #: knows more input waits to be read: after the process was held off
        #: the CPU, the ACKs of most of the window may be queued in the socket,
        #: and every flush before they are read would resend what they
        #: acknowledge (a spurious retransmission storm).
        self.hold_rto = False
        #: True (the default): an RTO resend waits while the peer is still
        #: acknowledging copies sent before the segment's last copy (it has
        #: not reached it in its queue: one path keeps order), and once the
        #: peer has been silent for half the RTO only the oldest unacknowledged
        #: segment is resent (a probe, as TCP after an RTO); its ACK, or any
        #: ACK of a later copy, frees the others at once.  A receiver starved
        #: of CPU then costs one resend per RTO instead of the whole window.
        #: For a second after a segment was found lost (passed by the ACK of
        #: a later copy, or fast/early retransmitted) kcp-go's rule applies:
        #: on a lossy path a late ACK means loss more often than a stall.
        #: Nothing changes on the wire.  False: kcp-go's rule (every expired
        #: segment is resent).
        self.rto_ordered = True
        # the latest ts echoed by an ACK (the send time of the newest copy the
        # peer is known to have reached), valid once _ack_heard; when the last
        # ACK arrived; the oldest ts of a segment the last scan held (-1: none)
        self._acked_ts = 0
        self._acked_sn = 0  # the sn of that copy (a ms holds many: sn orders them)
        self._ack_ms = 0
        self._ack_heard = False
        self._held_ts = -1
        # when a segment was last found lost (passed by the ACK of a later
        # copy, or fast/early retransmitted): a path that loses segments
        # turns a silent peer's probe into kcp-go's rule
        self._loss_ms = 0
        self._loss_seen = False
        # Header fields as the objects pack takes, kept while their value
        # repeats (compiled: a native int passed to pack is boxed at every
        # use, a new object above 256): conv never changes; the advertised
        # window and the payload length of the last PUSH usually repeat.
        self._conv_o: object = self.conv
        self._wnd_v = -1
        self._wnd_o: object = 0
        self._len_v = -1
        self._len_o: object = 0
        # bound once (snd_buf is never replaced): compiled, a deque's append
        # is otherwise looked up by name at every call
        self._snd_buf_append: Callable[[Segment], None] = self.snd_buf.append

    def _boxed_wnd(self, wnd: int) -> object:
        """``wnd`` as an object, the one boxed last time if it is the same value."""
        if wnd != self._wnd_v:
            self._wnd_v = wnd
            self._wnd_o = wnd
        return self._wnd_o

    # ------------------------------------------------------------------ info

    @property
    def srtt(self) -> int:
        """Smoothed RTT estimate in ms (kcp-go ``rx_srtt``)."""
        return self.rx_srtt

    @property
    def rto(self) -> int:
        """Current retransmission timeout in ms (kcp-go ``rx_rto``)."""
        return self.rx_rto

    def __repr__(self) -> str:
        """Conv, sequence numbers, windows and queue lengths, for a REPL or a log."""
        dead = " dead" if self.is_dead else ""
        return (
            f"<kcpsock.KCP conv={self.conv:#010x}{dead} snd_una={self.snd_una}"
            f" snd_nxt={self.snd_nxt} rcv_nxt={self.rcv_nxt}"
            f" wnd={self.snd_wnd}/{self.rcv_wnd} rmt_wnd={self.rmt_wnd} cwnd={self.cwnd}"
            f" snd_queue={len(self.snd_queue)} snd_buf={len(self.snd_buf)}"
            f" rcv_queue={len(self.rcv_queue)} rcv_buf={len(self.rcv_buf)} rto={self.rx_rto}ms>"
        )

    @property
    def is_dead(self) -> bool:
        """True once a segment was sent ``dead_link`` times (state 0xFFFFFFFF)."""
        return self.state == 0xFFFFFFFF

    @property
    def retrans_segs(self) -> int:
        """Total retransmissions: lost + fast + early (kcp-go ``RetransSegs``)."""
        return self.lost_segs + self.fast_retrans_segs + self.early_retrans_segs

    def rto_due(self, now_ms: int) -> bool:
        """True if a sent, unacknowledged segment's retransmission timer may have expired.

        O(1): from a lower bound of the resend times, so it may say True
        when a full flush would in fact resend nothing, never the reverse.

        Args:
            now_ms: the current time in ms.
        """
        return self._unsent < len(self.snd_buf) and ((now_ms - self._min_resend) & _M) < 0x80000000

    def waitsnd(self) -> int:
        """Segments queued or in flight (kcp-go ``WaitSnd``).

        Selectively acked segments count until ``una`` passes them (kcp-go HEAD).

        Returns:
            ``len(snd_buf) + len(snd_queue)``.
        """
        return len(self.snd_buf) + len(self.snd_queue)

    # -------------------------------------------------------------- settings

    @property
    def nodelay(self) -> _NoDelay:
        """The nodelay mode (kcp-go field ``nodelay``), callable as kcp-go ``NoDelay``.

        ``kcp.nodelay`` compares and computes as the int mode;
        ``kcp.nodelay(nodelay, interval, resend, nc)`` sets the profile (see
        :meth:`set_nodelay`).  Assigning an int sets the mode only.
        """
        return _NoDelay(self.nodelay_, self)

    @nodelay.setter
    def nodelay(self, value: object) -> None:
        self.nodelay_ = int(_int_arg("nodelay", value))

    def set_nodelay(self, nodelay: object, interval: object, resend: object, nc: object) -> None:
        """Set the nodelay profile (kcp-go ``NoDelay``); a negative value keeps a setting.

        Args:
            nodelay: 0 = off (min RTO 100 ms, RTO growth += rx_rto), non-zero = on
                (min RTO 30 ms, growth += rx_rto/2).
            interval: flush interval in ms, clamped to 10..5000.
            resend: fast-retransmit threshold (skipping ACKs); 0 disables.
            nc: 1 disables congestion control, 0 enables it.

        Raises:
            TypeError: an argument is not an int.
        """
        nodelay = _int_arg("nodelay", nodelay)
        interval = _int_arg("interval", interval)
        resend = _int_arg("resend", resend)
        nc = _int_arg("nc", nc)
        if nodelay >= 0:
            self.nodelay_ = nodelay
            self.rx_minrto = IKCP_RTO_NDL if nodelay else IKCP_RTO_MIN
        if interval >= 0:
            self.interval = min(max(interval, 10), 5000)
        if resend >= 0:
            self.fastresend = resend
        if nc >= 0:
            self.nocwnd = nc

    def wndsize(self, snd: object, rcv: object) -> None:
        """Set the send and receive windows in segments (kcp-go ``WndSize``).

        Args:
            snd: send window; values <= 0 leave it unchanged.
            rcv: receive window; values <= 0 leave it unchanged.

        Raises:
            TypeError: an argument is not an int.
            ValueError: a window above 65535 (the 16-bit wire field).
        """
        snd = check_window("snd", snd, keep=True)
        rcv = check_window("rcv", rcv, keep=True)
        if snd > 0:
            self.snd_wnd = snd
        if rcv > 0:
            self.rcv_wnd = rcv

    def setmtu(self, mtu: object) -> None:
        """Set the MTU: the largest datagram the core emits (kcp-go ``SetMtu``).

        Args:
            mtu: bytes, 25..65535; ``mss = mtu - 24``.

        Raises:
            TypeError: mtu is not an int.
            ValueError: mtu is out of range.
        """
        self.mtu = check_int("mtu", mtu, MIN_MTU, MAX_MTU)
        self.mss = self.mtu - OVERHEAD

    # ------------------------------------------------------------------ send

    def send(self, data: _Buf) -> None:
        """Queue one message (stream mode: bytes) for sending (kcp-go ``Send``).

        Message mode cuts ``data`` into ``mss``-byte fragments numbered with a
        countdown ``frg``.  Stream mode first tops up the last queued segment,
        then cuts the rest; every fragment has ``frg = 0`` and there is no
        fragment limit (frg is not used).

        Args:
            data: a non-empty bytes-like object (copied if mutable).

        Raises:
            TypeError: data is not bytes-like.
            ValueError: data is empty, or (message mode) needs more than 255
                fragments, or more fragments than the receiver's window
                (the largest window the peer advertised, once heard from):
                the receiver reassembles a message only when all of its
                fragments fit in its receive queue, so such a message would
                never be delivered and would stall everything behind it.
        """
        if type(data) is bytes and not self.stream and 0 < len(data) <= self.mss:
            self.snd_queue.append((0, data))  # the common case: one fragment
            return
        if type(data) is not bytes:
            data = bytes(data)
        n = len(data)
        if n == 0:
            # ikcp would emit a zero-length PUSH, which blocks kcp-go readers
            raise ValueError("cannot send an empty message (docs/KCP.md §14, hazard 1)")
        mss = self.mss
        queue = self.snd_queue
        if self.stream:
            pos = 0
            if queue:
                # kcp-go Send: top up the last queued (not yet numbered) segment
                frg, last = queue[-1]
                room = mss - len(last)
                if room > 0:
                    pos = room if room < n else n
                    queue[-1] = (frg, bytes(last) + data[:pos])
            if pos == 0 and n <= mss:
                queue.append((0, data))
                return
            while pos < n:
                queue.append((0, data[pos : pos + mss]))
                pos += mss
            return
        count = (n + mss - 1) // mss
        if count > MAX_FRAGMENTS:
            raise ValueError(
                f"message of {n} bytes needs {count} fragments of {mss} bytes; "
                f"at most {MAX_FRAGMENTS} are allowed"
            )
        if count > self.rmt_wnd_max > 0:
            raise ValueError(
                f"message of {n} bytes needs {count} fragments of {mss} bytes, more than"
                f" the receiver's window of {self.rmt_wnd_max} segments (its rcvwnd):"
                f" it could never be delivered; send smaller messages or raise the"
                f" receiver's rcvwnd"
            )
        if count == 1:
            queue.append((0, data))
            return
        view = memoryview(data)
        for i in range(count):
            queue.append((count - 1 - i, view[i * mss : (i + 1) * mss]))

    # ------------------------------------------------------------------ recv

    def _refill(self) -> None:
        """Move in-order segments from rcv_buf to rcv_queue (kcp-go parse_data/Recv)."""
        rcv_buf = self.rcv_buf
        if not rcv_buf:
            return
        queue = self.rcv_queue
        rcv_wnd = self.rcv_wnd
        nxt = self.rcv_nxt
        while nxt in rcv_buf and len(queue) < rcv_wnd:
            queue.append(rcv_buf.pop(nxt))
            nxt = (nxt + 1) & _M
        self.rcv_nxt = nxt

    def peek_size(self) -> int:
        """Size of the next message (stream mode: bytes ready), -1 if none.

        Changes nothing (readiness checks call it): complete zero-length
        messages at the head, which ikcp peers can send, are looked past
        here and dropped by :meth:`recv`.

        Returns:
            A byte count > 0, or -1.
        """
        queue = self.rcv_queue
        if not queue:
            return -1
        if self.stream:
            return sum(map(len, map(_second, queue))) or -1
        frg, data = queue[0]
        if frg == 0 and data:
            return len(data)  # the common case: a one-fragment message
        size = 0
        left = len(queue)
        first = True
        for frg, data in queue:
            if first:
                if left <= frg:
                    return -1  # the message is not complete yet
                first = False
            left -= 1
            size += len(data)
            if frg == 0:
                if size:
                    return size
                first = True  # a zero-length message: look at the next one
        return -1

    def recv(self) -> Optional[bytes]:
        """Return the next whole message (stream mode: all bytes ready), or None.

        Zero-length messages (ikcp can send them) are consumed and skipped.

        Returns:
            The payload (never empty), or None when nothing is ready.
        """
        queue = self.rcv_queue
        while queue:
            recover = len(queue) >= self.rcv_wnd
            if self.stream:
                if len(queue) == 1:
                    data = queue.popleft()[1]
                else:
                    data = b"".join([d for _, d in queue])
                    queue.clear()
            elif queue[0][0] == 0:
                data = self._rcv_popleft()[1]
            else:
                if len(queue) <= queue[0][0]:
                    return None  # the head message is not complete yet
                parts = []
                while queue:
                    frg, d = queue.popleft()
                    parts.append(d)
                    if frg == 0:
                        break
                data = b"".join(parts)
            if self.rcv_buf:
                self._refill()
            if recover and len(queue) < self.rcv_wnd:
                # kcp-go Recv "fast recover": tell the peer our window reopened
                self.probe |= IKCP_ASK_TELL
            if data:
                return data if type(data) is bytes else bytes(data)
        return None

    def recv_stream(self, limit: int, parts: list[bytes]) -> int:
        """Stream mode: move ready payloads into ``parts`` until ``limit`` bytes are there.

        What :meth:`recv` does in stream mode, without joining: the queue's
        payloads are appended as they are (zero-length ones skipped), and
        the last one may go past ``limit`` (the caller keeps the excess), so
        a reader copies each byte once, into its own buffer, and a long
        queue is not joined only to be cut.  Reopens the window as
        :meth:`recv` does.

        Args:
            limit: the most bytes wanted (> 0).
            parts: the list to append to.

        Returns:
            The bytes appended (0: nothing was ready).
        """
        queue = self.rcv_queue
        rcv_buf = self.rcv_buf
        recover = len(queue) >= self.rcv_wnd
        total = 0
        while total < limit:
            if not queue:
                if not rcv_buf:
                    break
                self._refill()
                if not queue:
                    break
            d = queue.popleft()[1]
            n = len(d)
            if n:
                parts.append(d if type(d) is bytes else bytes(d))
                total += n
        if rcv_buf:
            self._refill()
        if recover and len(queue) < self.rcv_wnd:
            # kcp-go Recv "fast recover": tell the peer our window reopened
            self.probe |= IKCP_ASK_TELL
        return total

    # ----------------------------------------------------------------- input

    def input(
        self,
        datagram: _Buf,
        now_ms: int,
        *,
        regular: bool = True,
        ack_nodelay: bool = False,
        hold_acks: bool = False,
        offset: int = 0,
    ) -> list[bytes]:
        """Feed one received datagram (kcp-go HEAD ``Input``).

        Args:
            datagram: the KCP datagram (after decryption and FEC), from
                ``offset`` on.
            now_ms: the current time in ms (any monotonic int; used mod 2**32).
            regular: False for datagrams recovered by FEC: no RTT sample, no
                ``rmt_wnd`` update, no repeat counting (kcp-go packetType FEC).
            ack_nodelay: send pending ACKs right away (kcp-go ``SetACKNoDelay``).
            hold_acks: the caller sends a reply soon that will carry the
                ACKs (a reader answering what it reads): no flush whose only
                work would be ACKs (una advanced with nothing queued to
                send; ``ack_nodelay``).  A fast-resend threshold or
                ``mtu // 24`` pending ACKs still flush.
            offset: where the KCP datagram starts in ``datagram`` (the
                bytes before it are ignored): a receiver passes the opened
                FEC data packet whole with ``offset=8`` instead of a copy
                without its FEC header.

        Returns:
            Datagrams to transmit now: kcp-go HEAD's immediate flushes (full
            flush when ``una`` advanced or a fast-ack threshold was reached;
            ACK-only flush when ``mtu // 24`` ACKs are pending or on
            ``ack_nodelay``).  Often empty.

        Raises:
            PacketError: (counter ``KCPInErrors``) the datagram is shorter than
                24 bytes, is for another conv, has a truncated payload or an
                unknown command.  The state is unchanged.
            ValueError: ``offset`` is negative.
        """
        if type(datagram) is not bytes:
            datagram = bytes(datagram)
        if offset < 0:
            raise ValueError(f"offset must be >= 0, got {offset}")
        n = len(datagram) - offset
        if n < OVERHEAD:
            raise PacketError(
                f"KCP datagram of {n} bytes is shorter than the 24-byte header", "KCPInErrors"
            )
        # Pass 1: validate the whole datagram before touching any state (kcp-go
        # would apply the segments before a bad one; we refuse it as a whole).
        # typed: compiled, the fields are native ints (the arithmetic below
        # would be generic object arithmetic on an untyped tuple's items);
        # not a conditional expression: its type would join _Hdr with the
        # unpack's Any, and compiled, _header's native tuple would be boxed
        h: _Hdr
        if not _COMPILED:
            h = _unpack_from(datagram, offset)
        elif offset == 0:
            h = _header(datagram)
        elif offset == _FEC_SKIP:
            h = _header_behind_fec(datagram)
        else:
            h = _unpack_from(datagram, offset)
        conv, cmd, frg, wnd, ts, sn, una, length = h
        hdrs: Sequence[tuple[_Hdr, int]]
        if cmd == CMD_PUSH and n == OVERHEAD + length and conv == self.conv:
            # The hot path: exactly one PUSH.  Does what the loop below
            # does for one PUSH, with fewer steps; keep the two in step.
            if regular:
                self.rmt_wnd = wnd
                if wnd > self.rmt_wnd_max:
                    self.rmt_wnd_max = wnd
            snd_buf = self.snd_buf
            advanced = False
            if snd_buf and 0 < ((una - snd_buf[0][SN]) & _M) < 0x80000000:
                self._parse_una(una)
                advanced = True
                if self._held_ts >= 0:  # the probe may change: rescan (rto_ordered)
                    self._min_resend = now_ms & _M
            rcv_nxt = self.rcv_nxt
            rcv_wnd = self.rcv_wnd
            acklist = self.acklist
            if ((sn - rcv_nxt - rcv_wnd) & _M) >= 0x80000000:  # sn < rcv_nxt + rcv_wnd
                acklist.append((sn, ts))
                rcv_queue = self.rcv_queue
                rcv_buf = self.rcv_buf
                if sn == rcv_nxt and not rcv_buf and len(rcv_queue) < rcv_wnd:
                    self._rcv_append((frg, datagram[offset + OVERHEAD :]))
                    self.rcv_nxt = (sn + 1) & _M
                elif ((sn - rcv_nxt) & _M) < 0x80000000 and sn not in rcv_buf:
                    rcv_buf[sn] = (frg, datagram[offset + OVERHEAD :])
                    if sn == rcv_nxt:
                        self._refill()
                elif regular:
                    self.repeat_segs += 1
            elif regular:
                self.repeat_segs += 1
            self.in_segs += 1
            if advanced:
                if not self.nocwnd and self.cwnd < self.rmt_wnd:
                    self._grow_cwnd()
                return self._flush(now_ms & _M, True)
            if len(acklist) >= self.mtu // OVERHEAD or (ack_nodelay and acklist):
                return self._flush(now_ms & _M, False)
            return []
        if n == OVERHEAD + length and conv == self.conv and CMD_PUSH <= cmd <= CMD_WINS:
            hdrs = ((h, offset + OVERHEAD),)  # one valid segment
        else:
            hdrs = self._validate(datagram, offset)

        # Pass 2: apply, as kcp-go HEAD Input.
        current = now_ms & _M
        old_una = self.snd_una
        snd_buf = self.snd_buf
        rcv_queue = self.rcv_queue
        rcv_buf = self.rcv_buf
        acklist = self.acklist
        latest = -1
        flush_segments = False
        fast = False  # a fast-resend threshold was reached
        # snd_buf changes only in _parse_una: its front sn and length are kept
        # here, and a una already applied (the segments of a datagram usually
        # share it) is not looked at again
        nbuf = len(snd_buf)
        base = snd_buf[0][SN] if nbuf else 0
        last_una = -1
        wnd = 0
        # the newest copy an ACK echoes (a ts from the future is ignored)
        acked_ts = self._acked_ts if self._ack_heard else (current - 0x7FFFFFFF) & _M
        acked_sn = self._acked_sn
        for h, off in hdrs:
            _, cmd, frg, wnd, ts, sn, una, length = h
            # parse_una + shrink_buf: drop every segment with sn < una
            if una != last_una:
                last_una = una
                if nbuf and 0 < ((una - base) & _M) < 0x80000000:
                    self._parse_una(una)
                    flush_segments = True
                    if self._held_ts >= 0:  # the probe may change: rescan (rto_ordered)
                        self._min_resend = current
                    nbuf = len(snd_buf)
                    base = snd_buf[0][SN] if nbuf else 0
            if cmd == CMD_PUSH:
                repeat = True
                rcv_nxt = self.rcv_nxt
                rcv_wnd = self.rcv_wnd
                if ((sn - rcv_nxt - rcv_wnd) & _M) >= 0x80000000:  # sn < rcv_nxt + rcv_wnd
                    acklist.append((sn, ts))
                    if sn == rcv_nxt and not rcv_buf and len(rcv_queue) < rcv_wnd:
                        # in-order segment, nothing buffered: straight to the queue
                        rcv_queue.append((frg, datagram[off : off + length]))
                        self.rcv_nxt = (sn + 1) & _M
                        repeat = False
                    elif ((sn - rcv_nxt) & _M) < 0x80000000 and sn not in rcv_buf:
                        rcv_buf[sn] = (frg, datagram[off : off + length])
                        if sn == rcv_nxt:
                            self._refill()
                        repeat = False
                if regular and repeat:
                    self.repeat_segs += 1
            elif cmd == CMD_ACK:
                if nbuf:
                    idx = (sn - base) & _M
                    if idx < nbuf:  # snd_una <= sn < snd_nxt
                        seg = snd_buf[idx]
                        # kcp-go HEAD parse_ack: mark, free the payload, keep it until una
                        seg[ACKED] = True
                        seg[DATA] = b""
                        if idx and self._parse_fastack(sn, ts):
                            flush_segments = fast = True
                latest = ts
                d = (ts - acked_ts) & _M
                # a later copy, or one of the same ms later in sn order (a
                # flush sends its segments in sn order); none from the future
                if (
                    d < 0x80000000
                    and (d or ((sn - acked_sn) & _M) < 0x80000000)
                    and ((current - ts) & _M) < 0x80000000
                ):
                    acked_ts = ts
                    acked_sn = sn
            elif cmd == CMD_WASK:
                self.probe |= IKCP_ASK_TELL
            elif una == 0 and regular and self.snd_una:
                # a WINS (nothing else in kcp-go) from a peer that has received
                # nothing, although it acknowledged our data before: a fresh
                # session, it no longer knows the conversation (kcpsock.session)
                self.stale_wins += 1
        if regular:
            self.rmt_wnd = wnd  # the last segment's (nothing above reads it)
            if wnd > self.rmt_wnd_max:
                self.rmt_wnd_max = wnd
        self.in_segs += len(hdrs)

        if latest >= 0:
            self._ack_ms = current
            self._ack_heard = True
            self._acked_ts = acked_ts
            self._acked_sn = acked_sn
            held = self._held_ts
            if held >= 0 and ((acked_ts - held) & _M) < 0x80000000:
                # the peer passed a segment the last scan held: rescan at once
                self._held_ts = -1
                self._min_resend = current
        if latest >= 0 and regular:
            # one RTT sample per datagram, from its last ACK (kcp-go HEAD)
            rtt = ((current - latest + 0x80000000) & _M) - 0x80000000
            if rtt >= 0:
                self._update_ack(rtt)

        if (
            not self.nocwnd
            and 0 < ((self.snd_una - old_una) & _M) < 0x80000000
            and self.cwnd < self.rmt_wnd
        ):
            self._grow_cwnd()

        if hold_acks and not fast and not self.snd_queue:
            # (what a full flush would resend on a timeout, the caller's
            # timer does: it asks check(), which says when)
            if acklist and len(acklist) >= self.mtu // OVERHEAD:
                return self._flush(current, False)
            return []
        if flush_segments:
            return self._flush(current, True)
        if acklist and (len(acklist) >= self.mtu // OVERHEAD or ack_nodelay):
            return self._flush(current, False)
        return []

    def _parse_una(self, una: int) -> None:
        """Drop every segment with sn < una from snd_buf (kcp-go parse_una + shrink_buf)."""
        snd_buf = self.snd_buf
        if snd_buf:
            # snd_buf holds consecutive sns (the invariant above): the count
            # to drop is known, no look at each segment
            count = (una - snd_buf[0][SN]) & _M
            if count < 0x80000000:
                if count >= len(snd_buf):
                    snd_buf.clear()  # all acknowledged (an echo, a request)
                else:
                    popleft = snd_buf.popleft
                    for _ in range(count):
                        popleft()
        self.snd_una = snd_buf[0][SN] if snd_buf else self.snd_nxt
        if self._unsent > len(snd_buf):
            self._unsent = len(snd_buf)
        inflight = self._inflight
        if inflight:
            if 0 < ((una - inflight[-1][SN]) & _M) < 0x80000000:
                inflight.clear()  # (in sn order: the last passed, all passed)
            else:
                while 0 < ((una - inflight[0][SN]) & _M) < 0x80000000:
                    inflight.popleft()

    def _validate(self, datagram: bytes, start: int) -> list[tuple[_Hdr, int]]:
        """Parse every header of a datagram as kcp-go Input does, changing nothing.

        Args:
            datagram: holds the KCP datagram from ``start`` to its end.
            start: where the datagram's first header starts.

        Returns:
            (header tuple, payload offset in ``datagram``) per segment; a trailing remainder
            shorter than 24 bytes is ignored (kcp-go).

        Raises:
            PacketError: wrong conv, truncated payload or unknown command.
        """
        conv = self.conv
        unpack_from = _unpack_from
        hdrs = []
        n = len(datagram)
        off = start
        while n - off >= OVERHEAD:
            h = unpack_from(datagram, off)
            off += OVERHEAD
            if h[0] != conv:
                raise PacketError(f"KCP conv {h[0]:#x} is not ours ({conv:#x})", "KCPInErrors")
            if n - off < h[7]:
                raise PacketError(
                    f"KCP segment claims {h[7]} payload bytes, {n - off} present", "KCPInErrors"
                )
            if not CMD_PUSH <= h[1] <= CMD_WINS:
                raise PacketError(f"unknown KCP command {h[1]}", "KCPInErrors")
            hdrs.append((h, off))
            off += h[7]
        return hdrs

    def _parse_fastack(self, sn: int, ts: int) -> bool:
        """Count a skipping ACK on the unacked segments before it (kcp-go HEAD parse_fastack).

        kcp-go walks snd_buf from the front up to ``sn`` and counts the ACK on
        every segment sent no later than the acknowledged one.  Here only the
        segments not yet acknowledged are walked (``_inflight``; acked ones
        are dropped from it on the way), so an ACK costs O(holes) instead of
        O(window) — with a window of 1024 the kcp-go walk made loss recovery
        quadratic.  Deviation: kcp-go also keeps counting on selectively
        acked segments, whose count is never used except to trigger the
        immediate flush; such a flush is triggered here by unacked segments only.

        Args:
            sn: the acknowledged sequence number (snd_una < sn < snd_nxt).
            ts: the ACK's echoed timestamp.

        Returns:
            True if some segment reached the fast-resend threshold (as
            unsigned: always true when fast resend is off).
        """
        threshold = self.fastresend & _M
        cand = self._fastcand
        inflight = self._inflight
        una = self.snd_una
        reached = False
        keep = []
        i = 0
        for seg in inflight:
            ssn = seg[SN]
            if ((ssn - una) & _M) >= 0x80000000:  # passed by una: drop
                i += 1
                continue
            if ((ssn - sn) & _M) < 0x80000000:  # at or after the acked one: stop
                break
            i += 1
            if seg[ACKED] or seg[FASTACK] == _FASTACK_SENTINEL:
                # selectively acked, or waiting for its RTO (the full scan that
                # resets it rebuilds _inflight): drop
                continue
            keep.append(seg)
            # sent no later than the acked one
            d = (seg[TS] - ts) & _M
            if d == 0 or d >= 0x80000000:
                seg[FASTACK] += 1
                if seg[FASTACK] >= threshold:
                    reached = True
                cand[ssn] = seg
        if i > len(keep):
            # compact the walked prefix
            for _ in range(i):
                inflight.popleft()
            inflight.extendleft(reversed(keep))
        return reached

    def _update_ack(self, rtt: int) -> None:
        """Feed one RTT sample to the estimator (kcp-go update_ack)."""
        if self.rx_srtt == 0:
            self.rx_srtt = rtt
            self.rx_rttvar = rtt >> 1
        else:
            delta = rtt - self.rx_srtt
            self.rx_srtt += delta >> 3
            if delta < 0:
                delta = -delta
            if rtt < self.rx_srtt - self.rx_rttvar:
                # kcp-go: a sample below the expected range gets 1/8 the weight
                self.rx_rttvar += (delta - self.rx_rttvar) >> 5
            else:
                self.rx_rttvar += (delta - self.rx_rttvar) >> 2
        rto = ((self.rx_srtt & _M) + max(self.interval, ((self.rx_rttvar & _M) << 2) & _M)) & _M
        self.rx_rto = min(max(self.rx_minrto, rto), IKCP_RTO_MAX)

    def _grow_cwnd(self) -> None:
        """Congestion window growth when una advanced (kcp-go Input)."""
        mss = self.mss
        if self.cwnd < self.ssthresh:
            self.cwnd += 1
            self.incr = (self.incr + mss) & _M
        else:
            if self.incr < mss:
                self.incr = mss
            self.incr = (self.incr + ((mss * mss) & _M) // self.incr + mss // 16) & _M
            if ((self.cwnd + 1) * mss) & _M <= self.incr:
                self.cwnd = ((self.incr + mss - 1) // mss) & _M
        if self.cwnd > self.rmt_wnd:
            self.cwnd = self.rmt_wnd
            self.incr = (self.rmt_wnd * mss) & _M

    # ----------------------------------------------------------------- flush

    def flush(self, now_ms: int) -> list[bytes]:
        """kcp-go HEAD's FULL flush: ACKs, probes, new data, retransmissions.

        Also records in :attr:`next_update_ms` the delay kcp-go's session would
        wait before the next flush, and schedules :meth:`check` accordingly.

        Args:
            now_ms: the current time in ms.

        Returns:
            The datagrams to transmit, each at most ``mtu`` bytes.
        """
        current = now_ms & _M
        out = self._flush(current, True)
        self.updated = 1
        self.ts_flush = (current + self.next_update_ms) & _M
        return out

    def _wnd_advertised(self) -> int:
        """The receive window a flush advertises (kcp-go wnd_unused, at most ``wnd_cap``)."""
        nq = len(self.rcv_queue)
        wnd = (self.rcv_wnd - nq) & 0xFFFF if nq < self.rcv_wnd else 0
        return wnd if wnd < self.wnd_cap else self.wnd_cap

    def send_flush(self, data: bytes, now_ms: int) -> Optional[list[bytes]]:
        """:meth:`send` of one segment's worth, then :meth:`flush`, when that is simple.

        Applies when nothing is queued (so ``data`` becomes one segment of
        its own, frg 0, in either mode), the window has room for it, no
        window probe, fast/early retransmission candidate or never-sent
        segment is pending, no retransmission timer can fire now (or
        ``hold_rto`` is set), and the pending ACKs and the segment fit in one
        datagram: the common write of an interactive or echoing peer.  Then
        it builds that one datagram directly, with exactly the datagram and
        the state changes ``send(data)`` followed by ``flush(now_ms)`` would
        make (a test compares the two on random states).

        Args:
            data: 1 to ``mss`` bytes.
            now_ms: the current time in ms.

        Returns:
            The datagrams to transmit, or None when the case is not that
            simple: nothing was changed, call :meth:`send` and :meth:`flush`.
        """
        n = len(data)
        if (
            self.snd_queue
            or self.probe
            or self._fastcand
            or self._unsent
            or not self.rmt_wnd
            or not 0 < n <= self.mss
            or len(self.acklist) * OVERHEAD + OVERHEAD + n > self.mtu
        ):
            return None
        current = now_ms & _M
        snd_buf = self.snd_buf
        if (
            snd_buf
            and not self.hold_rto
            and (self.scan_always or ((current - self._min_resend) & _M) < 0x80000000)
        ):
            return None  # a timer may have expired: the full flush scans
        cwnd = self.snd_wnd if self.snd_wnd < self.rmt_wnd else self.rmt_wnd
        if not self.nocwnd and self.cwnd < cwnd:
            cwnd = self.cwnd
        if cwnd - ((self.snd_nxt - self.snd_una) & _M) <= 0:
            return None  # no room: it waits in snd_queue
        wnd = self._wnd_advertised()
        una = self.rcv_nxt
        # phase 1 (ACKs: they fit, checked above) and 2 (a non-zero remote window)
        parts: list[_Buf] = self._acks(wnd, una)[0] if self.acklist else []
        self.ts_probe = 0
        self.probe_wait = 0
        # phases 4 and 5: the segment, moved and sent at once
        rx_rto = self.rx_rto
        resendts_new = (current + rx_rto) & _M
        sn = self.snd_nxt
        self.snd_nxt = (sn + 1) & _M
        if self.dead_link <= 1:
            self.state = 0xFFFFFFFF
        bound = self._min_resend if snd_buf else resendts_new
        if ((resendts_new - bound) & _M) >= 0x80000000:
            bound = resendts_new
        self._min_resend = bound
        next_update = self.interval
        d = (bound - current) & _M
        if 0 < d < next_update:
            next_update = d
        self.next_update_ms = next_update
        self.out_segs += len(parts) + 1
        # boxed once for the header and the segment (compiled: each use of
        # a native int as an object boxes it anew)
        sn_o: object = sn
        now_o: object = current
        if n != self._len_v:
            self._len_v = n
            self._len_o = n
        parts.append(
            _pack(self._conv_o, CMD_PUSH, 0, self._boxed_wnd(wnd), now_o, sn_o, una, self._len_o)
        )
        parts.append(data)
        out = [b"".join(parts)]
        seg = cast("Segment", [sn_o, 0, data, now_o, rx_rto, 1, resendts_new, 0, False])
        self._snd_buf_append(seg)  # after the datagram's allocation (see _flush)
        self._inflight.append(seg)
        # phase 6
        if not self.nocwnd and self.cwnd < 1:
            self.cwnd = 1
            self.incr = self.mss
        # flush()
        self.updated = 1
        self.ts_flush = (current + next_update) & _M
        return out

    def flush_acks(self, now_ms: int) -> list[bytes]:
        """kcp-go HEAD's ACK-ONLY flush (ACKs, probes; no data transmitted).

        Args:
            now_ms: the current time in ms.

        Returns:
            The datagrams to transmit.
        """
        return self._flush(now_ms & _M, False)

    def _move(self, count: int) -> None:
        """Move ``count`` segments from snd_queue to snd_buf, unsent (kcp-go flush phase 4)."""
        nxt = self.snd_nxt
        popleft = self.snd_queue.popleft
        fresh: list[list[object]] = []
        for _ in range(count):
            frg, data = popleft()
            fresh.append([nxt, frg, data, 0, 0, 0, 0, 0, False])
            nxt = (nxt + 1) & _M
        self.snd_buf.extend(cast("list[Segment]", fresh))  # one cast, not one per segment
        self.snd_nxt = nxt
        self._unsent += count

    def _acks(self, wnd: int, una: int) -> tuple[list[_Buf], int, int]:
        """Phase 1 of a flush: the pending ACK segments (acklist not empty), emptied.

        kcp-go filters ACKs below rcv_nxt (``una`` covers them) except the
        last one of the batch, which is always written.

        Returns:
            (the packed ACK segments, sn and ts of the last one).
        """
        acklist = self.acklist
        self.acklist = []
        # the entries' ints and the shared fields as objects (compiled: a
        # native int passed to pack is boxed anew at every call)
        entries = cast("list[tuple[object, object]]", acklist)
        last_sn, last_ts = entries.pop()
        conv = self._conv_o
        wnd_o = self._boxed_wnd(wnd)
        una_o: object = una
        pack = _pack
        control: list[_Buf] = []
        for asn, ats in entries:
            if ((cast(int, asn) - una) & _M) < 0x80000000:
                control.append(pack(conv, CMD_ACK, 0, wnd_o, ats, asn, una_o, 0))
        control.append(pack(conv, CMD_ACK, 0, wnd_o, last_ts, last_sn, una_o, 0))
        return control, cast(int, last_sn), cast(int, last_ts)

    def _flush_quiet(self, full: bool, next_update: int) -> list[bytes]:
        """:meth:`_flush` with no probe, no data to move and no timer due: ACKs only.

        The same datagrams and state changes as the full path, without its work.
        """
        self.ts_probe = 0  # phase 2 with a non-zero remote window
        self.probe_wait = 0
        if full:
            self.next_update_ms = next_update
        if not self.nocwnd and self.cwnd < 1:  # phase 6
            self.cwnd = 1
            self.incr = self.mss
        if not self.acklist:
            return []
        wnd = self._wnd_advertised()
        control = self._acks(wnd, self.rcv_nxt)[0]
        self.out_segs += len(control)
        # the packer of _flush with control segments only: mtu // 24 a datagram
        per = self.mtu // OVERHEAD
        if len(control) <= per:
            return [b"".join(control)]
        return [b"".join(control[i : i + per]) for i in range(0, len(control), per)]

    def _flush(self, current: int, full: bool) -> list[bytes]:
        """The body of kcp-go HEAD ``flush``; ``full`` False is IKCP_FLUSH_ACKONLY.

        kcp-go scans the whole of snd_buf at every full flush.  This finds the
        same segments without the scan while no retransmission timer can have
        expired: the segments never sent are a suffix of snd_buf
        (``_unsent``), the fast/early retransmission candidates are exactly
        the segments parse_fastack touched (``_fastcand``), and
        ``_min_resend`` is a lower bound of every pending resend time.  When a
        timer may have expired, the kcp-go scan runs and recomputes them.
        """
        if not self.probe and not self.snd_queue and not self._fastcand and self.rmt_wnd:
            # No data to move or send: if no retransmission timer can have
            # expired either, only ACKs leave (the flush after an ACK that
            # emptied the window, the ACK of a reply, a tick with nothing to
            # do), with the state changes of the full path below.
            snd_buf = self.snd_buf
            if not snd_buf:
                return self._flush_quiet(full, self.interval)
            if (
                not self._unsent
                and not self.scan_always
                and (
                    self.hold_rto or ((current - self._min_resend) & _M) >= 0x80000000
                )  # no timer expired, or none may fire now
            ):
                d = (self._min_resend - current) & _M
                return self._flush_quiet(full, d if d < self.interval else self.interval)
        wnd = self._wnd_advertised()
        una = self.rcv_nxt
        conv = self.conv
        pack = _pack
        # The control segments (ACK, WASK, WINS) of this flush, packed.
        control: list[_Buf]

        # Phase 1: ACKs.  kcp-go filters ACKs below rcv_nxt (una covers them)
        # except the last one of the batch.
        if self.acklist:
            control, sn, ts = self._acks(wnd, una)
        else:
            control = []
            sn = ts = 0

        # Phase 2: window probe scheduling.
        if self.rmt_wnd == 0:
            if self.probe_wait == 0:
                self.probe_wait = IKCP_PROBE_INIT
                self.ts_probe = (current + self.probe_wait) & _M
            elif ((current - self.ts_probe) & _M) < 0x80000000:
                if self.probe_wait < IKCP_PROBE_INIT:
                    self.probe_wait = IKCP_PROBE_INIT
                self.probe_wait += self.probe_wait // 2
                if self.probe_wait > IKCP_PROBE_LIMIT:
                    self.probe_wait = IKCP_PROBE_LIMIT
                self.ts_probe = (current + self.probe_wait) & _M
                self.probe |= IKCP_ASK_SEND
        else:
            self.ts_probe = 0
            self.probe_wait = 0

        # Phase 3: WASK / WINS (sn/ts are the template's leftovers, as kcp-go).
        if self.probe:
            for bit, cmd in ((IKCP_ASK_SEND, CMD_WASK), (IKCP_ASK_TELL, CMD_WINS)):
                if self.probe & bit:
                    control.append(pack(conv, cmd, 0, wnd, ts, sn, una, 0))
            self.probe = 0

        # The PUSH segments this flush sends, in order; packed after the
        # control segments by the one packer at the end.
        push: list[Segment] = []
        new: list[Segment] = []  # the segments moved from snd_queue and sent at once

        # Phase 4: move segments into the send window (also in ACK-only flush).
        cwnd = self.snd_wnd if self.snd_wnd < self.rmt_wnd else self.rmt_wnd
        if not self.nocwnd and self.cwnd < cwnd:
            cwnd = self.cwnd
        new_segs = 0
        snd_queue = self.snd_queue
        snd_buf = self.snd_buf
        if snd_queue:
            room = cwnd - ((self.snd_nxt - self.snd_una) & _M)
            if room > 0:
                new_segs = room if room < len(snd_queue) else len(snd_queue)
        # kcp-go's full scan is needed only when a retransmission timer may
        # have expired; otherwise new segments are moved and sent in one pass.
        scan = (
            full
            and bool(snd_buf)
            and not self.hold_rto
            and (
                self.scan_always
                or (
                    self._unsent < len(snd_buf) and ((current - self._min_resend) & _M) < 0x80000000
                )
            )
        )
        if new_segs and (scan or not full):
            self._move(new_segs)

        # Phase 5: transmit / retransmit (FULL only).
        resent = self.fastresend if self.fastresend > 0 else 0xFFFFFFFF
        change = lost = fast = early = 0
        lossy = False
        if full:
            next_update = self.interval
            rx_rto = self.rx_rto
            dead_link = self.dead_link
            resendts_new = (current + rx_rto) & _M
            if scan:
                # a retransmission timer may have expired: kcp-go's full scan
                nodelay = self.nodelay_
                cand: dict[int, Segment] = {}
                inflight: deque[Segment] = deque()  # rebuilt: RTOs make segments count again
                keep_inflight = inflight.append
                min_resend = -1
                min_d = 0x80000000
                # rto_ordered: an expired segment whose last copy was sent
                # after the newest copy the peer acknowledged is held (not
                # resent, not lost) while the peer is still acknowledging;
                # once it was silent for half the RTO the oldest unacked
                # segment alone goes (the probe: early, so that the lost
                # last segments of a burst, which no ACK passes, are not
                # resent much later than kcp-go resends them).  Not within _LOSSY_MS of a loss.
                ordered = self.rto_ordered
                heard = self._ack_heard
                acked_ts = self._acked_ts
                acked_sn = self._acked_sn
                silent = True
                oldest: Optional[Segment] = None  # the probe's candidate
                held_ts = -1
                held_age = -1
                if ordered:
                    if heard:
                        silence = ((current - self._ack_ms + 0x80000000) & _M) - 0x80000000
                        silent = silence >= rx_rto // 2
                        if self._loss_seen and ((current - self._loss_ms) & _M) < _LOSSY_MS:
                            # the path lost a segment lately: a late ACK is
                            # more likely loss than a stall (kcp-go's rule)
                            ordered = False
                    for seg in snd_buf:
                        if not seg[ACKED]:
                            oldest = seg
                            break
                for seg in snd_buf:
                    if seg[ACKED]:  # acked
                        continue
                    fastack = seg[FASTACK]
                    if seg[XMIT] == 0:  # initial transmit
                        seg[RTO] = rx_rto
                        seg[RESENDTS] = resendts_new
                    elif fastack >= resent and fastack != _FASTACK_SENTINEL:
                        seg[FASTACK] = _FASTACK_SENTINEL  # no more until an RTO resets it
                        seg[RTO] = rx_rto
                        seg[RESENDTS] = resendts_new
                        change += 1
                        fast += 1
                    elif 0 < fastack != _FASTACK_SENTINEL and new_segs == 0:
                        seg[FASTACK] = _FASTACK_SENTINEL
                        seg[RTO] = rx_rto
                        seg[RESENDTS] = resendts_new
                        change += 1
                        early += 1
                    elif ((current - seg[RESENDTS]) & _M) < 0x80000000:  # RTO
                        if ordered:
                            passed = (acked_ts - seg[TS]) & _M  # > 0: sent before the acked copy
                            if heard and (
                                0 < passed < 0x80000000
                                or (passed == 0 and ((acked_sn - seg[SN]) & _M) < 0x80000000)
                            ):
                                lossy = True  # a later copy arrived: this one was lost
                            elif not (silent and seg is oldest):
                                # not reached by the peer yet: held, rechecked
                                # at the next flush
                                age = (current - seg[TS]) & _M
                                if age > held_age:
                                    held_age = age
                                    held_ts = seg[TS]
                                if fastack != _FASTACK_SENTINEL:
                                    keep_inflight(seg)
                                    if fastack:
                                        cand[seg[SN]] = seg
                                continue
                        seg[RTO] += rx_rto if nodelay == 0 else rx_rto // 2
                        seg[FASTACK] = 0
                        seg[RESENDTS] = (current + seg[RTO]) & _M
                        lost += 1
                    else:
                        d = (seg[RESENDTS] - current) & _M
                        if d < min_d:
                            min_d = d
                            min_resend = seg[RESENDTS]
                        if fastack != _FASTACK_SENTINEL:
                            keep_inflight(seg)
                            if fastack:
                                cand[seg[SN]] = seg
                        continue
                    seg[XMIT] += 1
                    seg[TS] = current
                    push.append(seg)
                    if seg[XMIT] >= dead_link:
                        self.state = 0xFFFFFFFF
                    d = (seg[RESENDTS] - current) & _M
                    if d < min_d:
                        min_d = d
                        min_resend = seg[RESENDTS]
                    if seg[FASTACK] != _FASTACK_SENTINEL:
                        keep_inflight(seg)
                        if seg[FASTACK]:  # an initial send keeps its count
                            cand[seg[SN]] = seg
                self._fastcand = cand
                self._inflight = inflight
                self._unsent = 0
                self._held_ts = held_ts
                if held_ts >= 0 and not silent:
                    # the held segments are rechecked when the peer's
                    # silence reaches half the RTO (or at once on an ACK that
                    # passes one, see input)
                    deadline = (self._ack_ms + rx_rto // 2) & _M
                    d = (deadline - current) & _M
                    if d < min_d:
                        min_d = d
                        min_resend = deadline
                if min_resend >= 0:
                    self._min_resend = min_resend
                    if 0 < min_d < next_update:
                        next_update = min_d
                else:
                    self._min_resend = (current + 0x7FFFFFFF) & _M
            elif snd_buf or new_segs:
                # No retransmission timer can have expired: only the fast/early
                # candidates, the never-sent tail and the new segments need
                # looking at.
                unsent = self._unsent
                nbuf = len(snd_buf)
                # lower bound of pending resend times; None while nothing was sent
                bound: Optional[int] = self._min_resend if unsent < nbuf else None
                cand = self._fastcand
                if cand and not snd_buf:
                    self._fastcand = {}  # all passed by una
                elif cand:
                    base = snd_buf[0][SN]
                    sent_end = nbuf - unsent
                    keep: dict[int, Segment] = {}
                    for csn in sorted(cand, key=lambda s: (s - base) & _M):
                        seg = cand[csn]
                        idx = (csn - base) & _M
                        fastack = seg[FASTACK]
                        if (
                            idx >= nbuf
                            or seg[ACKED]
                            or fastack == 0
                            or fastack == _FASTACK_SENTINEL
                        ):
                            continue  # passed by una, acked, or no longer a candidate
                        if idx >= sent_end:
                            keep[csn] = seg  # never sent: initial transmit below comes first
                            continue
                        if fastack >= resent:
                            fast += 1
                        elif new_segs == 0:
                            early += 1
                        else:
                            keep[csn] = seg
                            continue
                        seg[FASTACK] = _FASTACK_SENTINEL  # no more until an RTO resets it
                        seg[RTO] = rx_rto
                        seg[RESENDTS] = resendts_new
                        change += 1
                        seg[XMIT] += 1
                        seg[TS] = current
                        push.append(seg)
                        if seg[XMIT] >= dead_link:
                            self.state = 0xFFFFFFFF
                        if bound is None or ((resendts_new - bound) & _M) >= 0x80000000:
                            bound = resendts_new
                    self._fastcand = keep
                if unsent:
                    inflight_append = self._inflight.append
                    for seg in islice(snd_buf, nbuf - unsent, nbuf):
                        if seg[ACKED]:  # acked before it was ever sent (a forged ACK)
                            continue
                        seg[RTO] = rx_rto
                        seg[RESENDTS] = resendts_new
                        seg[XMIT] = 1
                        seg[TS] = current
                        inflight_append(seg)
                        push.append(seg)
                    if dead_link <= 1:
                        self.state = 0xFFFFFFFF
                    self._unsent = 0
                    if bound is None or ((resendts_new - bound) & _M) >= 0x80000000:
                        bound = resendts_new
                if new_segs:
                    # move from snd_queue and send at once (kcp-go: phase 4, then
                    # the "initial transmit" rule of the scan); they join snd_buf
                    # and _inflight after the packer (below)
                    nxt = self.snd_nxt
                    fresh: list[list[object]] = []
                    # the fields every new segment shares, boxed once (compiled:
                    # an int put into a list is boxed at every use)
                    cur_o: object = current
                    rto_o: object = rx_rto
                    rts_o: object = resendts_new
                    if new_segs == 1:  # (a message: no bound popleft for one)
                        frg, data = snd_queue.popleft()
                        fresh.append([nxt, frg, data, cur_o, rto_o, 1, rts_o, 0, False])
                        nxt = (nxt + 1) & _M
                    else:
                        popleft = snd_queue.popleft
                        for _ in range(new_segs):
                            frg, data = popleft()
                            fresh.append([nxt, frg, data, cur_o, rto_o, 1, rts_o, 0, False])
                            nxt = (nxt + 1) & _M
                    new = cast("list[Segment]", fresh)  # once per flush, not per segment
                    push.extend(new)
                    self.snd_nxt = nxt
                    if dead_link <= 1:
                        self.state = 0xFFFFFFFF
                    if bound is None or ((resendts_new - bound) & _M) >= 0x80000000:
                        bound = resendts_new
                if bound is None:  # nothing pending: only acked segments remain
                    bound = (current + 0x7FFFFFFF) & _M
                self._min_resend = bound
                d = (bound - current) & _M
                if 0 < d < next_update:
                    next_update = d
            self.next_update_ms = next_update

        # The packer (kcp-go flush's makeSpace, docs/KCP.md §7): segments go
        # into the current datagram in order; one that would make it exceed
        # mtu starts the next.  The control segments come first, all 24
        # bytes: mtu // 24 of them fill a datagram, and the last group stays
        # open for the PUSH segments (header, then payload).
        mtu = self.mtu
        self.out_segs += len(control) + len(push)
        out: list[bytes] = []
        parts = control  # the packer appends to it: counted above
        size = OVERHEAD * len(parts)
        if size > mtu:
            per = mtu // OVERHEAD
            last = (len(parts) - 1) // per * per
            out = [b"".join(parts[i : i + per]) for i in range(0, last, per)]
            parts = parts[last:]
            size = OVERHEAD * len(parts)
        if push:
            # module constants as locals: a global load per use would cost
            # about 1% of bench_core (instruction counts, tools/count_core.py)
            i_sn: Final = SN
            i_frg: Final = FRG
            i_data: Final = DATA
            hdr = OVERHEAD
            cmd = CMD_PUSH
            room = mtu - hdr
            # the header fields every segment shares, boxed once, and the
            # segment's own read as the objects they are (not unboxed to be
            # boxed again for pack)
            conv_o = self._conv_o
            wnd_o = self._boxed_wnd(wnd)
            now_o: object = current
            una_o: object = una
            # the payload length as an object, boxed again only when it changes
            # (full segments: once per flush)
            n_v = self._len_v
            n_o = self._len_o
            tail = _pack_tail
            # the shared head of the segments with frg 0 (every stream-mode
            # segment, every one-segment message), packed at the first
            head0 = b""
            for seg in push:
                data = seg[i_data]
                n = len(data)
                if size + n > room and size:
                    out.append(b"".join(parts))  # (compiled: a direct join, not a bound call)
                    parts = []
                    size = 0
                fields = cast("list[object]", seg)
                if n != n_v:
                    n_v = n
                    n_o = n
                if seg[i_frg] == 0:
                    if not head0:
                        head0 = _pack_head(conv_o, cmd, 0, wnd_o, now_o)
                    parts.append(head0)
                else:
                    parts.append(_pack_head(conv_o, cmd, fields[i_frg], wnd_o, now_o))
                parts.append(tail(fields[i_sn], una_o, n_o))
                parts.append(data)
                size += hdr + n
            self._len_v = n_v
            self._len_o = n_o
        if size:
            out.append(b"".join(parts))
        if new:
            # Only now, after the datagrams were allocated: the deque blocks
            # these allocate then sit above them in the C heap, so freeing the
            # datagrams does not leave a free top that glibc trims and the
            # next flush faults in again (bench_core: 30x the page faults
            # and 13-30% more CPU time when the blocks came first).
            snd_buf.extend(new)
            self._inflight.extend(new)

        # Phase 6: congestion window reaction.
        if change or lossy:
            self._loss_ms = current
            self._loss_seen = True
        if change or lost:
            self.lost_segs += lost
            self.fast_retrans_segs += fast
            self.early_retrans_segs += early
        if not self.nocwnd:
            if change:
                in_flight = (self.snd_nxt - self.snd_una) & _M
                self.ssthresh = max(in_flight // 2, IKCP_THRESH_MIN)
                self.cwnd = (self.ssthresh + resent) & _M  # kcp-go: wraps when resent = 2**32-1
                self.incr = (self.cwnd * self.mss) & _M
            if lost:
                self.ssthresh = max(cwnd // 2, IKCP_THRESH_MIN)
                self.cwnd = 1
                self.incr = self.mss
            if self.cwnd < 1:
                self.cwnd = 1
                self.incr = self.mss
        return out

    # ---------------------------------------------------------- update/check

    def update(self, now_ms: int) -> list[bytes]:
        """Advance timers; flush when the interval elapsed (ikcp_update / kcp-go Update).

        Args:
            now_ms: the current time in ms.

        Returns:
            The datagrams due (empty when no flush was due).
        """
        current = now_ms & _M
        if not self.updated:
            self.updated = 1
            self.ts_flush = current
        slap = timediff(current, self.ts_flush)
        if slap >= 10000 or slap < -10000:
            self.ts_flush = current
            slap = 0
        if slap >= 0:
            self.ts_flush = (self.ts_flush + self.interval) & _M
            if timediff(current, self.ts_flush) >= 0:
                self.ts_flush = (current + self.interval) & _M
            return self._flush(current, True)
        return []

    def check(self, now_ms: int) -> int:
        """When the next :meth:`update`/:meth:`flush` is needed (ikcp_check).

        The scheduled flush time (``interval`` after the last one, or the
        shorter delay kcp-go HEAD's flush suggested), brought forward to the
        earliest retransmission timeout of an unacked segment in flight (a
        lower bound of it, kept without a scan: O(1)); a segment never
        transmitted yet makes it ``now_ms``.

        Args:
            now_ms: the current time in ms.

        Returns:
            An absolute time in the same units and epoch as ``now_ms``
            (``now_ms`` itself when a flush is due at once).
        """
        if not self.updated:
            return now_ms
        current = now_ms & _M
        # timediff(current, ts_flush), inlined (called after every input and send)
        d = ((current - self.ts_flush + 0x80000000) & _M) - 0x80000000
        if d >= 0 or d < -10000:  # due (or a stale ts_flush: ikcp resets it to now)
            return now_ms
        minimal = -d
        if self._unsent:  # segments never sent: flush now
            return now_ms
        if self.snd_buf:
            # ikcp_check scans snd_buf for the earliest resend time; the bound
            # kept by _flush is never later than it (at worst one early flush)
            d = ((self._min_resend - current + 0x80000000) & _M) - 0x80000000
            if d <= 0:
                return now_ms
            if d < minimal:
                minimal = d
        if minimal > self.interval:
            minimal = self.interval
        return now_ms + minimal
