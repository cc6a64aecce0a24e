"""The kcptun-compatible option set shared by every ``kcpsock`` command.

Invariants:
    * Every option has kcptun's name and default (client/main.go and
      server/main.go of xtaci/kcptun): ``--mode fast``, ``--crypt aes``,
      ``--key "it's a secrect"``, ``--mtu 1350``, ``--datashard 10``,
      ``--parityshard 3``, ``--sockbuf 4194304``, stream mode on.  The window
      defaults depend on the side, as in kcptun: 128/512 for the dialing side,
      1024/1024 for the listening side.
    * The key is derived as kcptun derives it (PBKDF2-HMAC-SHA1, salt
      "kcp-go", 4096 rounds, 32 bytes); each cipher takes the prefix kcptun's
      ``SelectBlockCrypt`` gives it, so the same ``--key`` works against a kcp-go
      peer configured the kcptun way.
    * Every user mistake becomes a :class:`UsageError` carrying one line of
      text; ``kcpsock.cli.main`` prints it and exits with status 2.
"""

from __future__ import annotations

import argparse
import errno
import socket
from dataclasses import dataclass
from typing import Any, Optional, Union

__all__ = [
    "MODES",
    "Address",
    "CommandError",
    "KCPSettings",
    "Target",
    "UsageError",
    "add_kcp_options",
    "bind_error",
    "connect_target",
    "derive_kcptun_key",
    "dial",
    "format_address",
    "format_target",
    "listen",
    "make_block",
    "parse_address",
    "parse_target",
    "settings_from_args",
    "to_config",
]

Address = tuple[str, int]
#: Where ``serve`` forwards: a TCP address or a unix socket path.
Target = Union[Address, str]

#: kcptun's ``--mode`` profiles: (nodelay, interval ms, resend, nc).  kcptun's
#: client/main.go and server/main.go use the same table.
MODES = {
    "normal": (0, 40, 2, 1),
    "fast": (0, 30, 2, 1),
    "fast2": (1, 20, 2, 1),
    "fast3": (1, 10, 2, 1),
}
#: kcptun's hidden defaults, used by ``--mode manual``.
MANUAL_DEFAULTS = (0, 50, 0, 0)

#: kcptun's default pre-shared secret (sic, as kcptun spells it).
DEFAULT_KEY = "it's a secrect"
#: Salt of kcptun's PBKDF2 key derivation.
KCPTUN_SALT = b"kcp-go"

DEFAULT_SOCKBUF = 4194304


class UsageError(Exception):
    """A mistake of the user: printed as one line, exit status 2."""


class CommandError(Exception):
    """A runtime failure worth one line (no peer, data corrupted): exit status 1."""


@dataclass(frozen=True)
class KCPSettings:
    """The resolved KCP options of one command.

    Attributes:
        crypt: cipher name ("null" means no encryption layer at all).
        key: the key bytes handed to ``new_block_crypt`` (already derived).
        mode: the ``--mode`` profile name.
        nodelay, interval, resend, nc: ``set_nodelay`` arguments (interval in ms).
        sndwnd, rcvwnd: window sizes in segments.
        mtu: maximum UDP payload in bytes.
        datashard, parityshard: FEC shard counts (0/0 is FEC off).
        dscp: DSCP value (6 bits) for outgoing datagrams.
        acknodelay: flush ACKs at once.
        sockbuf: UDP socket buffer size in bytes (both directions).
        stream: stream mode (kcptun's default) or message mode.
    """

    crypt: str
    key: bytes
    mode: str
    nodelay: int
    interval: int
    resend: int
    nc: int
    sndwnd: int
    rcvwnd: int
    mtu: int
    datashard: int
    parityshard: int
    dscp: int
    acknodelay: bool
    sockbuf: int
    stream: bool

    def describe(self) -> str:
        """Return a one-line human summary of the settings."""
        fec = f"FEC {self.datashard}/{self.parityshard}" if self.datashard else "no FEC"
        return (
            f"crypt {self.crypt}, {fec}, mode {self.mode} "
            f"({self.nodelay},{self.interval},{self.resend},{self.nc}), "
            f"wnd {self.sndwnd}/{self.rcvwnd}, mtu {self.mtu}, "
            f"{'stream' if self.stream else 'message'} mode"
        )


def _cipher_names() -> tuple[str, ...]:
    from kcpsock import crypt

    names = tuple(crypt.CIPHERS)
    return names if "null" in names else (*names, "null")


def add_kcp_options(
    parser: argparse.ArgumentParser,
    *,
    listening: bool,
    mode: str = "fast",
    sndwnd: Optional[int] = None,
    rcvwnd: Optional[int] = None,
    interval_flag: str = "--interval",
) -> None:
    """Add kcptun's KCP options to ``parser``.

    Args:
        parser: the (sub)command's parser.
        listening: True for the listening side (kcptun server defaults for the
            windows), False for the dialing side (kcptun client defaults).
        mode: default ``--mode``.
        sndwnd: default send window, overriding the side's default.
        rcvwnd: default receive window, overriding the side's default.
        interval_flag: the flag of KCP's update interval (``bench`` keeps
            ``--interval`` for its report interval, as iperf3, and names the
            KCP one ``--kcp-interval``).
    """
    snd_default = sndwnd if sndwnd is not None else (1024 if listening else 128)
    rcv_default = rcvwnd if rcvwnd is not None else (1024 if listening else 512)
    g = parser.add_argument_group("KCP options (kcptun's names and defaults)")
    g.add_argument(
        "--crypt",
        default="aes",
        metavar="NAME",
        help="cipher: aes (default), aes-128, aes-192, salsa20, blowfish, twofish, "
        "cast5, 3des, tea, xtea, xor, sm4, none, null, ... (null: no crypto header, as "
        "later kcptun; kcptun 20210922 treats null as aes)",
    )
    g.add_argument(
        "--key",
        default=None,
        metavar="SECRET",
        help="pre-shared secret, derived as kcptun does (default: kcptun's, or $KCPTUN_KEY)",
    )
    g.add_argument(
        "--rawkey",
        default=None,
        metavar="HEX",
        help="the cipher key itself, in hex, instead of a derived --key",
    )
    g.add_argument(
        "--mode",
        default=mode,
        choices=("fast3", "fast2", "fast", "normal", "manual"),
        help=f"kcptun profile (default {mode}); manual uses --nodelay/--interval/--resend/--nc",
    )
    g.add_argument("--nodelay", type=int, default=None, help="manual mode: nodelay (default 0)")
    g.add_argument(
        interval_flag,
        dest="interval",
        type=int,
        default=None,
        help="manual mode: update interval in ms (default 50)",
    )
    g.add_argument(
        "--resend",
        type=int,
        default=None,
        help="manual mode: fast resend after N duplicate ACKs (default 0)",
    )
    g.add_argument(
        "--nc",
        type=int,
        default=None,
        help="manual mode: 1 disables congestion control (default 0)",
    )
    g.add_argument(
        "--sndwnd",
        type=int,
        default=snd_default,
        help=f"send window in segments (default {snd_default})",
    )
    g.add_argument(
        "--rcvwnd",
        type=int,
        default=rcv_default,
        help=f"receive window in segments (default {rcv_default})",
    )
    g.add_argument("--mtu", type=int, default=1350, help="UDP payload size limit (default 1350)")
    g.add_argument(
        "--datashard",
        "--ds",
        type=int,
        default=10,
        help="FEC data shards (default 10; 0 here or in --parityshard: no FEC, as kcp-go)",
    )
    g.add_argument(
        "--parityshard", "--ps", type=int, default=3, help="FEC parity shards (default 3)"
    )
    g.add_argument("--dscp", type=int, default=0, help="DSCP (6 bits) of outgoing packets")
    g.add_argument("--acknodelay", action="store_true", help="send ACKs immediately")
    g.add_argument(
        "--sockbuf",
        type=int,
        default=DEFAULT_SOCKBUF,
        help=f"UDP socket buffer in bytes (default {DEFAULT_SOCKBUF})",
    )
    g.add_argument(
        "--stream",
        dest="stream",
        action="store_true",
        default=True,
        help="stream mode (default, as kcptun)",
    )
    g.add_argument(
        "--no-stream",
        dest="stream",
        action="store_false",
        help="message mode: each send is delivered as one message",
    )


def derive_kcptun_key(secret: str) -> bytes:
    """Derive the cipher key from a kcptun ``--key`` secret.

    kcptun: PBKDF2-HMAC-SHA1(secret, "kcp-go", 4096 rounds, 32 bytes); each
    cipher then takes its prefix of the 32 bytes (std/crypt.go), which
    ``new_block_crypt`` does itself, so the whole key is returned.

    Args:
        secret: the user's secret string.

    Returns:
        The 32 derived bytes.
    """
    from kcpsock import crypt

    return crypt.derive_key(secret)


def settings_from_args(args: argparse.Namespace) -> KCPSettings:
    """Resolve and check the KCP options of a parsed command line.

    Args:
        args: the namespace produced by a parser that has :func:`add_kcp_options`.

    Returns:
        The resolved :class:`KCPSettings`.

    Raises:
        UsageError: for an unknown cipher, a bad key, out-of-range numbers or
            conflicting options.
    """
    names = _cipher_names()
    if args.crypt not in names:
        raise UsageError(f"unknown cipher {args.crypt!r} (choose from {', '.join(names)})")
    manual = (args.nodelay, args.interval, args.resend, args.nc)
    if args.mode == "manual":
        values = tuple(d if v is None else v for v, d in zip(manual, MANUAL_DEFAULTS))
    else:
        given = [
            n
            for n, v in zip(("--nodelay", "--interval/--kcp-interval", "--resend", "--nc"), manual)
            if v is not None
        ]
        if given:
            raise UsageError(
                f"{'/'.join(given)} conflicts with --mode {args.mode} "
                "(use --mode manual to set them)"
            )
        values = MODES[args.mode]
    nodelay, interval, resend, nc = values
    if nodelay not in (0, 1, 2):
        raise UsageError(f"--nodelay must be 0, 1 or 2, not {nodelay}")
    if not 10 <= interval <= 5000:
        raise UsageError(f"--interval must be 10..5000 ms, not {interval}")
    if resend < 0:
        raise UsageError(f"--resend must be >= 0, not {resend}")
    if nc not in (0, 1):
        raise UsageError(f"--nc must be 0 or 1, not {nc}")
    for name in ("sndwnd", "rcvwnd"):
        value = getattr(args, name)
        if not 1 <= value <= 65535:
            raise UsageError(f"--{name} must be 1..65535 segments, not {value}")
    if not 50 <= args.mtu <= 1500:
        raise UsageError(f"--mtu must be 50..1500 bytes, not {args.mtu}")
    if args.datashard < 0 or args.parityshard < 0:
        raise UsageError("--datashard and --parityshard must be >= 0")
    if args.datashard == 0 or args.parityshard == 0:
        args.datashard = args.parityshard = 0  # kcp-go: either count 0 means no FEC
    if args.datashard + args.parityshard > 255:
        raise UsageError("--datashard + --parityshard must be at most 255")
    if args.sockbuf and args.sockbuf < 1:
        raise UsageError("--sockbuf must be >= 0")
    if not 0 <= args.dscp <= 63:
        raise UsageError(f"--dscp must be 0..63, not {args.dscp}")
    if args.sockbuf < 0:
        raise UsageError(f"--sockbuf must be >= 0, not {args.sockbuf}")
    key = _resolve_key(args)
    settings = KCPSettings(
        crypt=args.crypt,
        key=key,
        mode=args.mode,
        nodelay=nodelay,
        interval=interval,
        resend=resend,
        nc=nc,
        sndwnd=args.sndwnd,
        rcvwnd=args.rcvwnd,
        mtu=args.mtu,
        datashard=args.datashard,
        parityshard=args.parityshard,
        dscp=args.dscp,
        acknodelay=args.acknodelay,
        sockbuf=args.sockbuf,
        stream=args.stream,
    )
    make_block(settings)  # a key the cipher cannot take is a usage error, found now
    to_config(settings)
    return settings


def _resolve_key(args: argparse.Namespace) -> bytes:
    import os

    if args.rawkey is not None:
        if args.key is not None:
            raise UsageError("--key conflicts with --rawkey (give one of them)")
        try:
            return bytes.fromhex(args.rawkey)
        except ValueError:
            raise UsageError(f"--rawkey is not hexadecimal: {args.rawkey!r}") from None
    secret = args.key
    if secret is None:
        secret = os.environ.get("KCPTUN_KEY", DEFAULT_KEY)
    return derive_kcptun_key(secret)


def make_block(settings: KCPSettings) -> Any:
    """Build the BlockCrypt of the settings (None for ``null``).

    Args:
        settings: resolved settings.

    Returns:
        A ``BlockCrypt`` or None.

    Raises:
        UsageError: when the cipher rejects the key.
    """
    if settings.crypt == "null":
        return None
    from kcpsock import crypt

    try:
        return crypt.new_block_crypt(settings.crypt, settings.key)
    except ValueError as exc:  # (a TypeError would be a bug, not the user's key)
        raise UsageError(
            f"cipher {settings.crypt} cannot take a {len(settings.key)}-byte key: {exc}"
        ) from None


def parse_address(text: str, what: str = "address", *, listening: bool = False) -> Address:
    """Parse ``HOST:PORT``, ``[IPv6]:PORT`` or (listening only) ``:PORT``.

    Args:
        text: the user's text.
        what: what the address is for, used in the error message.
        listening: allow an empty host (all interfaces, as kcptun's ``:29900``)
            and port 0 (an ephemeral port).

    Returns:
        (host, port).

    Raises:
        UsageError: when the text is not a usable address.
    """
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit():
        raise UsageError(f"bad {what} {text!r}: expected HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    port = int(port_text)
    if port > 65535 or (port == 0 and not listening):
        raise UsageError(f"bad {what} {text!r}: port must be 1..65535")
    if not host:
        if not listening:
            raise UsageError(f"bad {what} {text!r}: a host is needed")
        host = "0.0.0.0"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UsageError(f"bad {what} {text!r}: {getattr(exc, 'strerror', None) or exc}") from None
    family, _, _, _, sockaddr = infos[0]
    return (
        (str(sockaddr[0]), int(sockaddr[1]))
        if family in (socket.AF_INET, socket.AF_INET6)
        else (host, port)
    )


def parse_target(text: str, what: str) -> Target:
    """Parse a forward target: ``HOST:PORT``, or a unix socket path.

    kcptun-server takes a target that is not ``HOST:PORT`` as a unix socket
    path; here a path is text with a ``/`` and no ``:`` (``./app.sock``).

    Raises:
        UsageError: neither a path nor a usable ``HOST:PORT``.
    """
    if "/" in text and ":" not in text:
        return text
    return parse_address(text, what)


def format_target(target: Target) -> str:
    """``HOST:PORT`` of a TCP target, ``unix:PATH`` of a unix socket."""
    return f"unix:{target}" if isinstance(target, str) else format_address(target)


def connect_target(target: Target, timeout: float) -> socket.socket:
    """Open a stream connection to a target (TCP or unix socket).

    Raises:
        OSError: the connection failed.
    """
    if not isinstance(target, str):
        return socket.create_connection(target, timeout=timeout)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(target)
    except OSError:
        sock.close()
        raise
    return sock


def format_address(address: Any) -> str:
    """Format a socket address as ``HOST:PORT`` (``[HOST]:PORT`` for IPv6)."""
    host, port = str(address[0]), int(address[1])
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def bind_error(exc: OSError, what: str, address: Address) -> UsageError:
    """Turn a bind/listen failure into a one-line usage error."""
    reason = {
        errno.EADDRINUSE: "address already in use",
        errno.EADDRNOTAVAIL: "address not available on this machine",
        errno.EACCES: "permission denied",
    }.get(exc.errno or 0, exc.strerror or str(exc))
    return UsageError(f"cannot {what} {format_address(address)}: {reason}")


def to_config(settings: KCPSettings) -> Any:
    """Return the :class:`kcpsock.config.KCPConfig` of the settings.

    The config is applied by ``dial``/``listen`` before the first packet (the
    listener's sessions inherit it), which is what kcptun's sequence of Set*
    calls after Dial/Accept amounts to.
    """
    from kcpsock.config import KCPConfig

    try:
        return KCPConfig(
            nodelay=settings.nodelay,
            interval=settings.interval,
            resend=settings.resend,
            nc=bool(settings.nc),
            sndwnd=settings.sndwnd,
            rcvwnd=settings.rcvwnd,
            mtu=settings.mtu,
            stream=settings.stream,
            ack_nodelay=settings.acknodelay,
            dscp=settings.dscp or None,
            read_buffer=settings.sockbuf or None,
            write_buffer=settings.sockbuf or None,
        )
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None


def listen(address: Address, settings: KCPSettings) -> Any:
    """Open a KCP listener with the settings.

    Args:
        address: where to listen.
        settings: resolved settings.

    Returns:
        A ``kcpsock.Listener``.

    Raises:
        UsageError: when the address cannot be bound.
    """
    import kcpsock

    try:
        return kcpsock.listen(
            address,
            block=make_block(settings),
            data_shards=settings.datashard,
            parity_shards=settings.parityshard,
            config=to_config(settings),
        )
    except OSError as exc:
        raise bind_error(exc, "listen on", address) from None


def dial(address: Address, settings: KCPSettings) -> Any:
    """Dial a KCP session with the settings.

    Args:
        address: the peer.
        settings: resolved settings.

    Returns:
        A ``kcpsock.KCPSocket``.

    Raises:
        UsageError: when no socket can be opened towards the address.
    """
    import kcpsock

    try:
        return kcpsock.dial(
            address,
            block=make_block(settings),
            data_shards=settings.datashard,
            parity_shards=settings.parityshard,
            config=to_config(settings),
        )
    except OSError as exc:
        raise UsageError(f"cannot dial {format_address(address)}: {exc.strerror or exc}") from None
