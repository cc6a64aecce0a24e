"""Session options: one frozen :class:`KCPConfig` instead of kcp-go's setters.

kcp-go configures a session after creation with ``SetNoDelay``,
``SetWindowSize``, ``SetMtu``, ``SetStreamMode``, ``SetACKNoDelay``,
``SetWriteDelay`` and ``SetDUP``; kcptun bundles the NoDelay quadruple into
"modes".  :class:`KCPConfig` holds all of them in one immutable value that the
session layer applies when it creates a session (the setters still exist on
:class:`kcpsock.KCPSocket` for changes afterwards).

Invariants:

* every field is validated in ``__post_init__``; a bad value raises
  ``ValueError`` (or ``TypeError`` for a wrong type) naming the field;
* the defaults are kcpsock's profile for code written for TCP (stream mode,
  nodelay 1 / interval 10 / resend 2 / no congestion window, windows of 1024
  segments, README "Defaults, and kcp-go's own"); :meth:`KCPConfig.kcp_go`
  gives kcp-go's own defaults for a fresh session (docs/KCP.md §3,
  docs/SESSION.md §2) field for field.  The listener limits and the
  blacklist TTL are kcpsock's (docs/SESSION.md §4, §5);
* pure module: no I/O, no clock.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Final, Optional, TypedDict, cast

if TYPE_CHECKING:  # crypt imports this module; the protocol is for typing only
    from typing_extensions import Unpack

    from .crypt import BlockCrypt

__all__ = [
    "MAX_DUP",
    "MAX_SHARDS",
    "MAX_WINDOW",
    "MIN_MTU",
    "MTU_LIMIT",
    "PRESETS",
    "ConfigFields",
    "KCPConfig",
    "check_block",
    "check_int",
    "check_mtu",
    "check_seconds",
    "check_shards",
    "check_window",
]

#: kcp-go ``mtuLimit``: the largest UDP payload kcp-go sends or can receive.
MTU_LIMIT: Final = 1500
#: The smallest UDP payload size accepted (kcp-go ``SetMtu`` refuses a KCP MTU below 50).
MIN_MTU = 50
#: The largest window: ``wnd`` is 16 bits on the wire.
MAX_WINDOW = 0xFFFF
#: data + parity shards at most (the FEC group fits one byte).
MAX_SHARDS = 255
#: Extra copies of each data datagram at most (``dup``).
MAX_DUP = 16

#: kcptun's modes: (nodelay, interval_ms, resend, nc) (docs/KCP.md §13).
PRESETS: dict[str, tuple[int, int, int, bool]] = {
    "normal": (0, 40, 2, True),
    "fast": (0, 30, 2, True),
    "fast2": (1, 20, 2, True),
    "fast3": (1, 10, 2, True),
}


def check_int(
    name: str, value: object, low: Optional[int] = None, high: Optional[int] = None
) -> int:
    """Check that ``value`` is an int (not a bool) within ``low..high``.

    Every integer option of kcpsock is checked here, so the messages agree.

    Args:
        name: the argument or field name the messages use.
        value: the value to check.
        low: the smallest value allowed (None: no lower bound).
        high: the largest value allowed (None: no upper bound).

    Returns:
        ``value``, typed as an int.

    Raises:
        TypeError: ``value`` is not an int (bools are refused).
        ValueError: ``value`` is out of range; the message gives the range.
    """
    # bool is an int subclass; accept it only where the field is a flag.
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if (low is not None and value < low) or (high is not None and value > high):
        if low is not None and high is not None:
            bound = f"{low}..{high}"
        elif low is not None:
            bound = f">= {low}"
        else:
            bound = f"<= {high}"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return value


def check_seconds(name: str, value: object, *, positive: bool = False) -> float:
    """Check a duration in seconds: a finite int or float, >= 0 (> 0 if ``positive``).

    Raises:
        TypeError: not a number (bools refused).
        ValueError: negative (or 0 when ``positive``), infinite or NaN.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    ok = 0 < value < float("inf") if positive else 0 <= value < float("inf")
    if not ok:
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value}")
    return float(value)


def check_window(name: str, value: object, *, keep: bool = False) -> int:
    """Check a window size in segments: 1..65535, the 16-bit ``wnd`` field.

    Args:
        name: the argument name (``sndwnd``, ``rcvwnd``, ...).
        value: the window.
        keep: also accept values <= 0, which kcp-go's ``WndSize`` reads as
            "leave unchanged".

    Returns:
        ``value``.

    Raises:
        TypeError: not an int.
        ValueError: above 65535 (or below 1 unless ``keep``).
    """
    return check_int(name, value, None if keep else 1, MAX_WINDOW)


def check_mtu(value: object, name: str = "mtu") -> int:
    """Check a UDP payload size: ``MIN_MTU..MTU_LIMIT`` (50..1500) bytes.

    Args:
        value: the MTU.
        name: the argument name the messages use.

    Returns:
        ``value``.

    Raises:
        TypeError: not an int.
        ValueError: out of range.
    """
    return check_int(name, value, MIN_MTU, MTU_LIMIT)


def check_shards(data_shards: object, parity_shards: object) -> tuple[int, int]:
    """Check an FEC shape: both 0 (FEC off) or both > 0, at most 255 together.

    Args:
        data_shards: FEC data shards.
        parity_shards: FEC parity shards.

    Returns:
        ``(data_shards, parity_shards)``.

    Raises:
        TypeError: a count is not an int.
        ValueError: a negative count, one zero and one not, or a sum above 255.
    """
    d = check_int("data_shards", data_shards, 0)
    p = check_int("parity_shards", parity_shards, 0)
    if (d == 0) != (p == 0):
        raise ValueError(
            f"data_shards and parity_shards must be both 0 (FEC off) or both > 0, got {d}, {p}"
        )
    if d + p > MAX_SHARDS:
        raise ValueError(
            f"data_shards + parity_shards must be <= {MAX_SHARDS} (one byte on the wire), "
            f"got data_shards={d}, parity_shards={p}"
        )
    return d, p


def check_block(block: object) -> Optional[BlockCrypt]:
    """Check a cipher object: a :class:`~kcpsock.crypt.BlockCrypt` or None.

    Args:
        block: what the caller passed as ``block``.

    Returns:
        ``block``, typed.

    Raises:
        TypeError: ``block`` lacks callable ``encrypt``/``decrypt``; a cipher
            name gets a hint at :func:`kcpsock.new_block_crypt`.
    """
    if block is None:
        return None
    if callable(getattr(block, "encrypt", None)) and callable(getattr(block, "decrypt", None)):
        return cast("BlockCrypt", block)
    if isinstance(block, (str, bytes)):
        raise TypeError(
            f"block must be a BlockCrypt, not the name {block!r}: use"
            f" block=kcpsock.new_block_crypt({block!r}, key)"
        )
    raise TypeError(
        f"block must be a BlockCrypt (see kcpsock.new_block_crypt) or None,"
        f" not {type(block).__name__}"
    )


def check_bool(name: str, value: object) -> bool:
    """Check a flag: a bool, or the ints 0/1 kcp-go's setters take.

    Raises:
        TypeError: not a bool or an int.
        ValueError: an int other than 0 and 1.
    """
    if isinstance(value, bool):
        return value
    if not isinstance(value, int):
        raise TypeError(f"{name} must be a bool (or 0/1), not {type(value).__name__}")
    if value not in (0, 1):
        raise ValueError(f"{name} must be True/False or 0/1, got {value}")
    return bool(value)


def _check_flag(obj: object, name: str) -> None:
    """A flag field: a bool, or the ints 0/1 kcp-go's setters take (stored as bool)."""
    # frozen dataclass: normalise in place so that the field reads as a bool
    object.__setattr__(obj, name, check_bool(name, getattr(obj, name)))


class ConfigFields(TypedDict, total=False):
    """The fields of :class:`KCPConfig` as keyword arguments (for typing ``**changes``)."""

    nodelay: int
    interval: int
    resend: int
    nc: bool
    sndwnd: int
    rcvwnd: int
    mtu: int
    stream: bool
    ack_nodelay: bool
    write_delay: bool
    dup: int
    dead_link: int
    rto_ordered: bool
    dscp: Optional[int]
    read_buffer: Optional[int]
    write_buffer: Optional[int]
    backlog: int
    max_sessions: int
    blacklist_ttl: float
    max_sessions_per_address: int
    backlog_per_address: int
    accept_timeout: float
    pending_rcvwnd: int
    conv_guard: bool
    replay_cache: int
    replay_window: float
    send_buffer: int
    linger: Optional[float]
    close_timeout: float
    keepalive_interval: float
    keepalive_timeout: float
    gone_timeout: float


@dataclass(frozen=True)
class KCPConfig:
    """Options of one KCP session (and of the sessions a listener creates).

    Every field can be given as a keyword; :meth:`preset` starts from one of
    kcptun's modes.  Instances are immutable; use :meth:`replace` to derive a
    changed copy.

    Raises:
        ValueError: a field is out of range (the message names the field).
        TypeError: a field has the wrong type.
    """

    nodelay: int = 1
    """KCP nodelay mode: 0 off (min RTO 100 ms), >= 1 on (min RTO 30 ms).
    kcp-go's default: 0."""
    interval: int = 10
    """Internal flush interval in ms, 10..5000 (kcp-go clamps to this range).
    kcp-go's default: 100."""
    resend: int = 2
    """Fast-retransmit after this many skipping ACKs; 0 disables.  kcp-go's default: 0."""
    nc: bool = True
    """True disables congestion control (kcp-go ``nocwnd``).  Flag fields also
    take kcp-go's 0/1 (``nc=1``) and store a bool.  kcp-go's default: False."""
    sndwnd: int = 1024
    """Send window in segments, 1..65535 (16 bits on the wire).  kcp-go's default: 32."""
    rcvwnd: int = 1024
    """Receive window in segments, 1..65535 (16 bits on the wire).  kcp-go's default: 32."""
    mtu: int = 1400
    """Largest UDP payload in bytes (KCP MTU = mtu minus codec overhead), 50..1500."""
    stream: bool = True
    """Stream mode: writes are merged into full segments, no message boundaries
    (a byte stream, as TCP).  kcp-go's default: False (message mode)."""
    ack_nodelay: bool = False
    """Send ACKs right after each input instead of at the next flush."""
    write_delay: bool = False
    """True: ``send`` does not flush; data leaves at the next scheduled flush."""
    dup: int = 0
    """Send every data datagram this many extra times (parity is never duplicated)."""
    dead_link: int = 20
    """Transmissions of one segment after which the link is declared dead."""
    rto_ordered: bool = True
    """No retransmission storm when the peer is slow to read: an expired segment
    the peer has not reached yet (sent after the newest copy it acknowledged) is
    not resent while the peer goes on acknowledging, and a silent peer gets one
    probe per timeout instead of the window (for a second after a real loss
    kcp-go's rule applies; docs/SESSION.md §6).  The cost: the lost last
    segments of a burst, on a path that lost nothing for a second, are resent
    a little later than kcp-go resends them (half an RTO at most for the
    first, one round trip more for the others).  Only when segments are
    resent changes, not their bytes.  False: kcp-go's rule, every expired segment is
    resent.  kcp-go's default: False (it has no such rule)."""
    dscp: Optional[int] = None
    """DSCP (0..63) set on sockets kcpsock creates; None leaves the OS default."""
    read_buffer: Optional[int] = 4 * 1024 * 1024
    """SO_RCVBUF in bytes for sockets kcpsock creates (kcptun's ``sockbuf`` default,
    capped by the OS at net.core.rmem_max); None leaves the OS default.  A small
    buffer overflows under a full window and turns into retransmissions."""
    write_buffer: Optional[int] = 4 * 1024 * 1024
    """SO_SNDBUF in bytes for sockets kcpsock creates; None leaves the OS default."""
    backlog: int = 128
    """Listener: sessions waiting for ``accept``; new conversations beyond it are dropped."""
    max_sessions: int = 4096
    """Listener: live sessions at most; new conversations beyond it are dropped."""
    blacklist_ttl: float = 600.0
    """Listener: seconds during which a closed (address, conv) cannot be reopened; 0 disables."""
    max_sessions_per_address: int = 128
    """Listener: live sessions (accepted or waiting) per source IP address at most, so
    that one host cannot fill the session table; new conversations beyond it are
    dropped (``Listener.refused["per_address"]``)."""
    backlog_per_address: int = 16
    """Listener: sessions waiting for ``accept`` per source IP address at most, so that
    a flood from one host cannot fill the backlog for everyone else."""
    accept_timeout: float = 30.0
    """Listener: seconds a new session may wait for ``accept``; older ones are closed
    and dropped (``refused["expired"]``); 0 keeps them until accepted."""
    pending_rcvwnd: int = 128
    """Listener: receive window (segments) of a new session until the application
    first reads it, so a session waiting for ``accept`` (or for a handler thread)
    buffers at most about ``2 * pending_rcvwnd * mtu`` bytes (360 KB: a full backlog of
    128 about 46 MB; as a TCP listener's kernel buffers an unaccepted connection's
    first data); the full ``rcvwnd`` is advertised from the first ``recv`` on."""
    conv_guard: bool = False
    """Listener: refuse a new (address, conv) whose conv is live, or closed less than
    ``blacklist_ttl`` ago, from another address: stops replays of a captured
    conversation from fresh source ports after the replay window too.  Off by default:
    kcp-go keys sessions by (address, conv), and clients sharing a fixed conv (as in
    ikcp's examples) would be refused; with random convs (kcp-go's ``Dial``) n
    conversations collide with probability about n**2 / 2**33."""
    replay_cache: int = 65536
    """Nonces each socket (listener or dialed) remembers to drop replayed and reflected
    datagrams (kcpsock.replay; about 115 bytes each at most); 0 disables.  No effect
    without a cipher (plain mode has no nonce)."""
    replay_window: float = 600.0
    """Seconds a remembered nonce is kept at least (unless ``replay_cache // 2`` newer
    nonces arrive sooner)."""
    send_buffer: int = 1 << 20
    """Bytes ``send`` may queue behind the send window before it blocks (like
    SO_SNDBUF; kcp-go instead blocks while ``sndwnd`` segments wait).  In stream
    mode tiny writes queued there merge into full segments; in message mode
    each queued message counts as a full segment."""
    linger: Optional[float] = None
    """What ``close()`` does with data not acknowledged yet (SO_LINGER).  None (the
    default, as TCP): return at once and keep delivering in the background until
    everything is acknowledged, the link is dead or ``close_timeout`` passed.
    0: kcp-go's close, one last flush and the rest is dropped.  A number > 0:
    block up to that many seconds for the acknowledgements, then go on in the
    background."""
    close_timeout: float = 60.0
    """Seconds a closed session may keep delivering in the background at most."""
    keepalive_interval: float = 10.0
    """Seconds without any datagram from the peer after which an idle session
    probes it (a KCP window probe, WASK, which kcp-go and kcpsock answer with WINS)."""
    keepalive_timeout: float = 30.0
    """Seconds without any datagram from the peer (probes unanswered) after which
    the peer counts as dead: ``recv`` returns b"" once buffered data is read,
    ``send`` raises ConnectionResetError.  0 turns detection and probes off."""
    gone_timeout: float = 0.5
    """The end of the conversation for a reader (KCP has no FIN): while a reader
    waits for data (blocked in ``recv``, or holding ``fileno()`` for select), a
    peer silent for one answer time (max(RTO, its slowest probe answer)) is
    probed with window probes every half answer time; when at least 16 in a
    row over at least max(``gone_timeout``, 8 answer times) went unanswered,
    the peer counts as gone (it closed or vanished): ``recv`` returns b"",
    ``send`` raises ConnectionResetError.  A live peer answers within an
    answer time even when its application is busy.  While the peer answers,
    the probes space out (doubling gaps up to 5 s), and only within 3 s (or
    8 answer times) after data last moved or the reader began waiting; after
    that a quiet peer gets only the keep-alive probes (``keepalive_interval``),
    and an unanswered one starts the run above, so an end that comes later
    is seen about ``keepalive_interval`` after the peer went silent (with
    keep-alive off the watch goes on probing every 5 s).  0 turns this off (only
    ``keepalive_timeout`` ends a silent conversation).  Raise it on links
    that go silent for longer stretches (a peer behind a link that drops
    everything for a second would otherwise count as gone)."""

    #: The fields :meth:`kcp_go` resets to kcp-go's values for a fresh session.
    KCP_GO_DEFAULTS: ClassVar[ConfigFields] = {
        "nodelay": 0,
        "interval": 100,
        "resend": 0,
        "nc": False,
        "sndwnd": 32,
        "rcvwnd": 32,
        "mtu": 1400,
        "stream": False,
        "ack_nodelay": False,
        "write_delay": False,
        "dup": 0,
        "dead_link": 20,
        "rto_ordered": False,
        "linger": 0.0,
        "keepalive_timeout": 0.0,
        "gone_timeout": 0.0,
    }

    PRESETS: ClassVar[dict[str, tuple[int, int, int, bool]]] = PRESETS

    def __post_init__(self) -> None:
        check_int("nodelay", self.nodelay, 0, 0x7FFFFFFF)
        check_int("interval", self.interval, 10, 5000)
        check_int("resend", self.resend, 0, 0x7FFFFFFF)
        _check_flag(self, "nc")
        check_window("sndwnd", self.sndwnd)
        check_window("rcvwnd", self.rcvwnd)
        check_mtu(self.mtu)
        _check_flag(self, "stream")
        _check_flag(self, "ack_nodelay")
        _check_flag(self, "write_delay")
        _check_flag(self, "conv_guard")
        _check_flag(self, "rto_ordered")
        check_int("dup", self.dup, 0, MAX_DUP)
        check_int("dead_link", self.dead_link, 1, 0xFFFFFFFF)
        if self.dscp is not None:
            check_int("dscp", self.dscp, 0, 63)
        if self.read_buffer is not None:
            check_int("read_buffer", self.read_buffer, 1)
        if self.write_buffer is not None:
            check_int("write_buffer", self.write_buffer, 1)
        check_int("backlog", self.backlog, 1)
        check_int("max_sessions", self.max_sessions, 1)
        check_int("max_sessions_per_address", self.max_sessions_per_address, 1)
        check_int("backlog_per_address", self.backlog_per_address, 1)
        check_int("pending_rcvwnd", self.pending_rcvwnd, 1, 65535)
        check_int("replay_cache", self.replay_cache, 0)
        if self.replay_cache == 1:
            raise ValueError("replay_cache must be 0 (off) or >= 2, got 1")
        check_int("send_buffer", self.send_buffer, 1)
        for name in (
            "linger",
            "accept_timeout",
            "close_timeout",
            "keepalive_interval",
            "keepalive_timeout",
            "gone_timeout",
        ):
            value = getattr(self, name)
            if not (value is None and name == "linger"):
                check_seconds(name, value)
        check_seconds("replay_window", self.replay_window, positive=True)
        if self.keepalive_timeout and not self.keepalive_interval:
            raise ValueError(
                "keepalive_interval must be > 0 while keepalive_timeout is on"
                " (set keepalive_timeout=0 to turn dead-peer detection off)"
            )
        check_seconds("blacklist_ttl", self.blacklist_ttl)

    @classmethod
    def preset(cls, mode: str, **overrides: Unpack[ConfigFields]) -> KCPConfig:
        """Build a config from one of kcptun's modes.

        Only the (nodelay, interval, resend, nc) quadruple comes from the mode;
        the other fields keep kcpsock's defaults (windows 1024, stream mode),
        so ``KCPConfig.fast()`` is not slowed down by kcp-go's 32-segment
        windows.  For kcp-go's other defaults use
        ``KCPConfig.kcp_go(nodelay=..., interval=..., resend=..., nc=...)``.

        Args:
            mode: "normal", "fast", "fast2" or "fast3" (docs/KCP.md §13).
            **overrides: any other field, e.g. ``sndwnd=1024``.

        Returns:
            The new config.

        Raises:
            ValueError: unknown mode or a bad override.
            TypeError: an unknown field name or a wrongly typed value.
        """
        try:
            nodelay, interval, resend, nc = PRESETS[mode]
        except (KeyError, TypeError):
            raise ValueError(f"mode must be one of {', '.join(PRESETS)}, got {mode!r}") from None
        base = cls(nodelay=nodelay, interval=interval, resend=resend, nc=nc)
        return dataclasses.replace(base, **overrides) if overrides else base

    @classmethod
    def kcp_go(cls, **overrides: Unpack[ConfigFields]) -> KCPConfig:
        """kcp-go's own defaults for a fresh session, bit for bit on the wire.

        nodelay 0, interval 100 ms, resend 0, congestion control on, windows
        32/32, MTU 1400, message mode, no ACK-nodelay, no write delay, no
        DUP, dead link after 20 transmissions (docs/KCP.md §3, docs/SESSION.md §2),
        every expired segment resent (``rto_ordered=False``);
        ``close()`` flushes once (``linger=0``) and no keep-alive probes are
        sent (``keepalive_timeout=0``, ``gone_timeout=0``), as kcp-go.  The other kcpsock-only
        fields (socket buffers, send buffer, listener limits, blacklist) keep
        kcpsock's values; they change nothing on the wire.

        Args:
            **overrides: any field, e.g. ``stream=True``.

        Returns:
            The new config.

        Raises:
            ValueError, TypeError: as the constructor.
        """
        base = cls(**cls.KCP_GO_DEFAULTS)
        return dataclasses.replace(base, **overrides) if overrides else base

    @classmethod
    def normal(cls, **overrides: Unpack[ConfigFields]) -> KCPConfig:
        """kcptun "normal": nodelay 0, interval 40, resend 2, nc 1 (see :meth:`preset`)."""
        return cls.preset("normal", **overrides)

    @classmethod
    def fast(cls, **overrides: Unpack[ConfigFields]) -> KCPConfig:
        """kcptun "fast": nodelay 0, interval 30, resend 2, nc 1 (see :meth:`preset`)."""
        return cls.preset("fast", **overrides)

    @classmethod
    def fast2(cls, **overrides: Unpack[ConfigFields]) -> KCPConfig:
        """kcptun "fast2": nodelay 1, interval 20, resend 2, nc 1 (see :meth:`preset`)."""
        return cls.preset("fast2", **overrides)

    @classmethod
    def fast3(cls, **overrides: Unpack[ConfigFields]) -> KCPConfig:
        """kcptun "fast3": nodelay 1, interval 10, resend 2, nc 1 (see :meth:`preset`)."""
        return cls.preset("fast3", **overrides)

    def replace(self, **changes: Unpack[ConfigFields]) -> KCPConfig:
        """Return a copy with some fields changed (validated again).

        Args:
            **changes: field names and their new values.

        Returns:
            The new config.

        Raises:
            ValueError, TypeError: as the constructor.
        """
        return dataclasses.replace(self, **changes)

    @property
    def nodelay_args(self) -> tuple[int, int, int, int]:
        """The (nodelay, interval, resend, nc) quadruple for ``KCP.nodelay``."""
        return (self.nodelay, self.interval, self.resend, int(self.nc))
