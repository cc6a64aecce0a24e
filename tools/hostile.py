"""A bounded soak with hostile datagrams during a verified transfer (issue 11).

Usage: .venv/bin/python tools/hostile.py [--count 1000000] [--crypt aes]
       [--rate 0] [--seed 1] [--kinds random,replay,...]

Sets up, on loopback only::

    client (kcpsock.dial) <-> tap <-> ThreadingKCPServer (echo)

The tap is a two-socket UDP forwarder that records the last datagrams of each
direction, as an attacker on the path would.  While the client sends random
data and checks every echoed byte (sha256 per round), an attacker sends
``--count`` hostile datagrams, cycling through these kinds:

* ``random``: random bytes of random length, at the listener;
* ``random-to-client``: the same at the client, from the server's address;
* ``mutated``: a captured datagram with one of its first 40 bytes changed;
* ``bad-crc``: a captured datagram with its last byte changed (both ends);
* ``replay``: a captured client datagram, verbatim, from a fresh source port;
* ``reflect``: a client datagram sent back to the client from the server's
  address;
* ``replay-to-client``: a captured server datagram sent to the client again;
* ``forged``: a PUSH with sn 0 of a random conversation (encrypted with a
  wrong key when a cipher is on, so it fails the CRC; in plain mode it is
  accepted and opens a session, up to the per-address caps).

Attacker sockets are bound to 127.0.0.2 when it is usable (so the
per-address limits separate attacker and client), else 127.0.0.1.  It
prints the SNMP counters that moved, the listener's refusals, the replay
caches, and threads, descriptors and RSS before and after, then exits 0 if
every byte of the transfer was verified, 1 otherwise.  ``--rate`` limits the
attacker (datagrams/s; 0 = as fast as it can), ``--kinds`` picks the kinds
(default all).  In plain mode (``--crypt none``) nothing protects the client:
reflected and replayed datagrams reach its KCP (README, "Security"), so the
transfer is expected to fail with the client-directed kinds included.  The
machine is shared: figures are for one run.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import os
import random
import select
import socket
import socketserver
import struct
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import kcpsock
from kcpsock import KCP
from kcpsock.codec import PacketCodec
from kcpsock.socketserver import ThreadingKCPServer
from kcpsock.stats import snmp

KINDS = (
    "random",
    "random-to-client",
    "mutated",
    "bad-crc",
    "replay",
    "reflect",
    "replay-to-client",
    "forged",
)
FAST = dict(nodelay=1, interval=10, resend=2, nc=True, sndwnd=256, rcvwnd=256)


def rss_kb() -> int:
    """Resident set size of this process in KiB (Linux /proc)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def fd_count() -> int:
    """Open file descriptors of this process."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1


def udp_rcvbuf_errors() -> int:
    """The kernel's UDP RcvbufErrors (datagrams dropped for a full socket buffer)."""
    try:
        with open("/proc/net/snmp") as fh:
            lines = [line.split() for line in fh if line.startswith("Udp:")]
        header, values = lines[0], lines[1]
        return int(values[header.index("RcvbufErrors")])
    except (OSError, IndexError, ValueError):
        return -1


class Tap:
    """Forward client <-> server datagrams and remember the last ones of each way."""

    def __init__(self, server: tuple[str, int], keep: int = 256) -> None:
        self.front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.front.bind(("127.0.0.1", 0))
        self.back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.back.bind(("127.0.0.1", 0))
        self.back.connect(server)
        for s in (self.front, self.back):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        self.client: Optional[tuple[str, int]] = None
        self.up: collections.deque[bytes] = collections.deque(maxlen=keep)
        self.down: collections.deque[bytes] = collections.deque(maxlen=keep)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tap", daemon=True)
        self._thread.start()

    @property
    def address(self) -> tuple[str, int]:
        """Where the client dials."""
        return self.front.getsockname()  # type: ignore[no-any-return]

    def _run(self) -> None:
        front, back = self.front, self.back
        while not self._stop.is_set():
            ready, _, _ = select.select([front, back], [], [], 0.1)
            if front in ready:
                data, addr = front.recvfrom(2048)
                if self.client is None:
                    self.client = addr
                if addr == self.client:
                    self.up.append(data)
                    try:
                        back.send(data)
                    except OSError:
                        pass
            if back in ready:
                try:
                    data = back.recv(2048)
                except OSError:
                    continue
                self.down.append(data)
                if self.client is not None:
                    front.sendto(data, self.client)

    def close(self) -> None:
        """Stop the thread and close both sockets."""
        self._stop.set()
        self._thread.join(5)
        self.front.close()
        self.back.close()


class Echo(socketserver.BaseRequestHandler):
    """Echo until EOF; forged sessions that never speak time out."""

    def handle(self) -> None:
        """Echo what arrives; give up after 30 s of silence."""
        self.request.settimeout(30)
        try:
            while True:
                data = self.request.recv(65536)
                if not data:
                    return
                self.request.sendall(data)
        except OSError:
            return


class Server(ThreadingKCPServer):
    """The echo server under attack (bounded threads, as shipped)."""

    daemon_threads = True
    close_grace = 1.0


def transfer(sock: Any, stop: threading.Event, result: dict[str, Any], seed: int) -> None:
    """Send random rounds of 256 KiB and verify each echo by sha256 until ``stop``."""
    rng = random.Random(seed)
    try:
        while not stop.is_set() or result["rounds"] == 0:
            data = rng.randbytes(256 * 1024)
            want = hashlib.sha256(data).digest()
            sender = threading.Thread(target=sock.sendall, args=(data,), daemon=True)
            sender.start()
            got = hashlib.sha256()
            n = 0
            while n < len(data):
                piece = sock.recv(65536)
                if not piece:
                    raise EOFError("EOF from the echo server")
                got.update(piece)
                n += len(piece)
            sender.join(30)
            if got.digest() != want:
                result["corrupt"] += 1
            else:
                result["verified"] += n
            result["rounds"] += 1
    except Exception as exc:  # reported by main
        result["error"] = repr(exc)


def forged_push(conv: int, block: Any, rng: random.Random) -> bytes:
    """A client's first datagram for a random conversation (wrong key if a cipher is on)."""
    k = KCP(conv)
    k.send(b"forged")
    k.flush(0)
    dg = k.flush(10)[0]
    if block is None:
        return dg
    wrong = kcpsock.new_block_crypt("aes", rng.randbytes(32))
    return PacketCodec(wrong).encode(dg)[0]


def attack(
    count: int,
    rate: float,
    target: tuple[str, int],
    tap: Tap,
    block: Any,
    seed: int,
    sent: collections.Counter[str],
    kinds: tuple[str, ...] = KINDS,
) -> None:
    """Send ``count`` hostile datagrams of ``kinds`` (see the module doc)."""
    rng = random.Random(seed)
    host = "127.0.0.2"
    try:
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.bind((host, 0))
        probe.close()
    except OSError:
        host = "127.0.0.1"
    pool = []
    for _ in range(32):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((host, 0))
        pool.append(s)
    forged = [forged_push(rng.getrandbits(32), block, rng) for _ in range(64)]
    t0 = time.monotonic()
    nkinds = len(kinds)
    try:
        for i in range(count):
            if rate > 0 and i % 256 == 0:
                ahead = i / rate - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)  # pacing, not synchronisation
            kind = kinds[i % nkinds]
            sock = pool[i % len(pool)]
            client = tap.client
            up = tap.up[-1 - rng.randrange(len(tap.up))] if tap.up else b""
            down = tap.down[-1 - rng.randrange(len(tap.down))] if tap.down else b""
            try:
                if kind == "random":
                    sock.sendto(rng.randbytes(rng.randrange(1501)), target)
                elif kind == "random-to-client" and client is not None:
                    tap.front.sendto(rng.randbytes(rng.randrange(1501)), client)
                elif kind == "mutated" and up:
                    b = bytearray(up)
                    b[rng.randrange(min(40, len(b)))] ^= 1 + rng.randrange(255)
                    sock.sendto(bytes(b), target)
                elif kind == "bad-crc" and up and down and client is not None:
                    b = bytearray(up if i & 1 else down)
                    b[-1] ^= 0x5A
                    if i & 1:
                        sock.sendto(bytes(b), target)
                    else:
                        tap.front.sendto(bytes(b), client)
                elif kind == "replay" and up:
                    sock.sendto(up, target)
                elif kind == "reflect" and up and client is not None:
                    tap.front.sendto(up, client)
                elif kind == "replay-to-client" and down and client is not None:
                    tap.front.sendto(down, client)
                elif kind == "forged":
                    k = forged[i % len(forged)]
                    if block is None:  # fresh conversations: change the conv
                        k = struct.pack("<I", rng.getrandbits(32)) + k[4:]
                    sock.sendto(k, target)
                else:
                    continue  # nothing captured yet
            except (BlockingIOError, InterruptedError, ConnectionRefusedError):
                sent["send-failed"] += 1
                continue
            sent[kind] += 1
    finally:
        for s in pool:
            s.close()


def snapshot() -> dict[str, Any]:
    """Threads, descriptors, RSS and the SNMP counters now."""
    return {
        "threads": threading.active_count(),
        "fds": fd_count(),
        "rss_kb": rss_kb(),
        "snmp": snmp.as_dict(),
        "rcvbuf_errors": udp_rcvbuf_errors(),
        "time": time.monotonic(),
    }


def main() -> int:
    """Run the soak; 0 if every byte of the transfer was verified."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--count", type=int, default=1_000_000, help="hostile datagrams to send")
    ap.add_argument(
        "--crypt",
        default="aes",
        help="cipher of both ends (kcpsock.CIPHERS, e.g. aes, aes-128-gcm), or none",
    )
    ap.add_argument("--rate", type=float, default=0.0, help="hostile datagrams/s, 0 = unpaced")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--kinds", default=",".join(KINDS), help=f"comma-separated, of: {', '.join(KINDS)}"
    )
    args = ap.parse_args()
    if args.count < 0:
        ap.error("--count must be >= 0")
    kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown or not kinds:
        ap.error(f"--kinds: unknown {', '.join(unknown) or '(none given)'}; choose from {KINDS}")

    key = kcpsock.derive_key("it's a secrect")
    block = None
    if args.crypt != "none":
        info_key = key[:16] if args.crypt in ("aes-128", "aes-128-gcm", "cast5", "tea") else key
        block = kcpsock.new_block_crypt(args.crypt, info_key)
    opts: dict[str, Any] = dict(FAST)
    if block is not None:
        opts["block"] = block

    before = snapshot()
    server = Server(("127.0.0.1", 0), Echo, **opts)
    serving = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
    )
    serving.start()
    address: Any = server.server_address
    tap = Tap(address)
    client = kcpsock.dial(tap.address, timeout=30, **opts)
    stop = threading.Event()
    result: dict[str, Any] = {"rounds": 0, "verified": 0, "corrupt": 0, "error": None}
    mover = threading.Thread(target=transfer, args=(client, stop, result, args.seed))
    mover.start()
    sent: collections.Counter[str] = collections.Counter()
    during = snapshot()
    t0 = time.monotonic()
    attack(args.count, args.rate, address, tap, block, args.seed, sent, kinds)
    attack_s = time.monotonic() - t0
    peak = snapshot()
    stop.set()
    mover.join(120)
    listener = server.socket
    assert listener is not None
    refused = listener.refused
    replay = listener.core.replay
    client_replay = client.session.replay
    sessions_left = listener.session_count
    client.close()
    server.shutdown()
    server.server_close()
    tap.close()
    serving.join(10)
    after = snapshot()

    def delta(name: str) -> int:
        return int(peak["snmp"][name]) - int(before["snmp"][name])

    print(
        f"kcpsock hostile soak: {sum(sent.values()):,} hostile datagrams in {attack_s:.1f} s"
        f" ({sum(sent.values()) / max(attack_s, 1e-9):,.0f}/s), crypt={args.crypt},"
        f" Python {sys.version.split()[0]}"
    )
    print("sent by kind: " + ", ".join(f"{k} {v:,}" for k, v in sorted(sent.items())))
    moved = [
        n
        for n in before["snmp"]
        if delta(n) and n not in ("BytesSent", "BytesReceived", "InBytes", "OutBytes")
    ]
    print("SNMP counters that moved: " + ", ".join(f"{n} {delta(n):+,}" for n in moved))
    print(
        f"kernel UDP RcvbufErrors (whole machine): {peak['rcvbuf_errors'] - before['rcvbuf_errors']:+,}"
    )
    print("listener refused: " + ", ".join(f"{k} {v:,}" for k, v in refused.items() if v))
    print(f"listener sessions at the end of the attack: {sessions_left}")
    print(f"server handler threads refused (per address): {server.refused_requests:,}")
    if replay is not None:
        print(f"listener replay cache: {replay.cache!r}")
    if client_replay is not None:
        print(f"client replay cache: {client_replay.cache!r}")
    print(
        f"transfer: {result['rounds']} rounds, {result['verified']:,} bytes verified,"
        f" {result['corrupt']} corrupt, error={result['error']}"
    )
    print("| when | threads | fds | RSS MiB |")
    print("| --- | ---: | ---: | ---: |")
    for label, snap in (
        ("before", before),
        ("transfer running", during),
        ("end of attack", peak),
        ("after close", after),
    ):
        print(f"| {label} | {snap['threads']} | {snap['fds']} | {snap['rss_kb'] / 1024:.1f} |")
    ok = result["error"] is None and result["corrupt"] == 0 and result["verified"] > 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
