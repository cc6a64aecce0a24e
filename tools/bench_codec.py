"""Micro-benchmark of the packet layer (kcpsock.crypt, kcpsock.fec, kcpsock.codec).

Usage: .venv/bin/python tools/bench_codec.py [--quick] [--repeat 20] [--passes 3]

Microseconds of CPU time per 1400-byte wire packet, the best of --repeat
short runs (the machine is shared: process CPU time excludes the time spent
descheduled, and the minimum of many short runs is the figure least
disturbed by other processes; compare ratios within one run):

* every cipher: ``encrypt`` and ``decrypt`` of one 1400-byte packet;
* AES-CFB strategies: a fresh pycryptodome CFB object per packet (the
  obvious way) against kcpsock's re-synchronised long-lived objects;
* FEC 10/3 (kcpsock.fec): encode per data packet (parity amortised), and
  decode with recovery (3 of every 10 data packets lost), per data packet;
* the whole pipeline, PacketCodec(aes, 10, 3) on 1372-byte KCP datagrams (so
  the wire packets are 1400 bytes): ``encode`` per KCP datagram (including
  its share of the parity packets, each also nonce+CRC+encrypted), and
  ``decode`` per KCP datagram delivered, without loss and with 3 of every
  10 data packets lost and recovered;
* the pieces: CRC-32 of 1380 bytes, os.urandom(16);
* the replay/reflection filter (kcpsock.replay) on a full, rotating cache of
  the default size: taking the nonce key, checking a fresh nonce and
  remembering it (the receiver's per-packet work), refusing a replay,
  remembering sent nonces in batches of 64; beside it, ``PacketCodec.open``
  of one aes packet (what every received packet costs anyway);
* construction (µs per object, not per packet): a whole
  ``PacketCodec(new_block_crypt("aes", key), 10, 3)`` as a dialing client
  builds it, a PacketCodec around an existing cipher (a listener's new
  session), and FECEncoder + FECDecoder 10/3.  The first code of a shape in
  a process pays the Reed-Solomon matrix (~0.3 ms) once; that is done
  before the timed part, as in a long-running listener.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import zlib
from functools import partial
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from Crypto.Cipher import AES

from kcpsock.codec import PacketCodec
from kcpsock.crypt import CIPHERS, IV, cipher_info, derive_key, new_block_crypt
from kcpsock.fec import FECDecoder, FECEncoder
from kcpsock.replay import ReplayCache, nonce_key

SIZE = 1400


def best_us(fn: Callable[[], object], count: int, repeat: int) -> float:
    """Best-of-``repeat`` CPU time of ``fn()`` in microseconds per item (``count`` per call).

    CPU time of this process (``time.process_time_ns``, user + system), so
    the time spent descheduled while other processes run is not counted.
    """
    times = []
    for _ in range(repeat):
        t0 = time.process_time_ns()
        fn()
        times.append(time.process_time_ns() - t0)
    return min(times) / count / 1000.0


def _each(f: Callable[[bytes], bytes], items: list[bytes]) -> None:
    """Call ``f`` on every item (the timed body of the cipher benchmarks)."""
    for item in items:
        f(item)


def bench_ciphers(repeat: int, quick: bool) -> list[tuple[str, float, float]]:
    """Microseconds per 1400-byte packet for every cipher: (name, encrypt, decrypt)."""
    key = derive_key("it's a secrect")
    rows = []
    for name in CIPHERS:
        block = new_block_crypt(name, key)
        pure = cipher_info(name).implementation == "pure Python"
        n = (3 if quick else 10) if pure else (100 if quick else 300)
        if "gcm" in name:
            n = 30 if quick else 100
            plain = [os.urandom(12) + os.urandom(SIZE - 28) for _ in range(n)]
        else:
            plain = [os.urandom(SIZE) for _ in range(n)]
        enc = [block.encrypt(p) for p in plain]
        rep = max(3, repeat // 4) if pure else repeat
        e = best_us(partial(_each, block.encrypt, plain), n, rep)
        d = best_us(partial(_each, block.decrypt, enc), n, rep)
        rows.append((name, e, d))
    return rows


def bench_aes_strategies(repeat: int, quick: bool) -> list[tuple[str, float, float]]:
    """AES-CFB: a fresh pycryptodome object per packet against kcpsock's pooled objects."""
    key = derive_key("it's a secrect")
    n = 100 if quick else 300
    plain = [os.urandom(SIZE) for _ in range(n)]

    def fresh_enc() -> None:
        for p in plain:
            AES.new(key, AES.MODE_CFB, iv=IV, segment_size=128).encrypt(p)

    def fresh_dec() -> None:
        for p in plain:
            AES.new(key, AES.MODE_CFB, iv=IV, segment_size=128).decrypt(p)

    block = new_block_crypt("aes", key)
    rows = [
        (
            "fresh AES.new(MODE_CFB) per packet",
            best_us(fresh_enc, n, repeat),
            best_us(fresh_dec, n, repeat),
        ),
        (
            "kcpsock " + type(block).__name__,
            best_us(lambda: [block.encrypt(p) for p in plain], n, repeat),
            best_us(lambda: [block.decrypt(p) for p in plain], n, repeat),
        ),
    ]
    ecb = AES.new(key, AES.MODE_ECB)
    one = plain[0][:16]
    rows.append(
        (
            "(one call of pycryptodome's ECB encrypt, 16 bytes; decrypt: n/a)",
            best_us(lambda: [ecb.encrypt(one) for _ in range(n)], n, repeat),
            0.0,
        )
    )
    return rows


def bench_fec(repeat: int, quick: bool) -> list[tuple[str, float]]:
    """FEC 10/3: encode and decode-with-recovery, microseconds per data packet."""
    d, p = 10, 3
    n = d + p
    groups = 10 if quick else 30
    count = d * groups
    dgs = [os.urandom(SIZE - 28) for _ in range(count)]
    enc = FECEncoder(d, p)
    packets = [pkt for dg in dgs for pkt in enc.encode(dg)]
    lossy = [pkt for i, pkt in enumerate(packets) if i % n >= p]

    # Fresh (stateful) coders for every run, built outside the timed part:
    # building one costs some 300 us (the Reed-Solomon matrix).
    encoders = [FECEncoder(d, p) for _ in range(repeat)]
    decoders = [FECDecoder(d, p) for _ in range(repeat)]

    def run_encode() -> None:
        e = encoders.pop()
        for dg in dgs:
            e.encode(dg)

    def run_recover() -> None:
        dec = decoders.pop()
        for pkt in lossy:
            dec.decode(pkt)

    return [
        ("FEC 10/3 encode, per data packet (parity amortised)", best_us(run_encode, count, repeat)),
        (
            "FEC 10/3 decode with recovery (3 of 10 lost), per data packet",
            best_us(run_recover, count, repeat),
        ),
    ]


def bench_pipeline(repeat: int, quick: bool, cipher: str = "aes") -> list[tuple[str, float]]:
    """The whole PacketCodec pipeline, microseconds per KCP datagram."""
    d, p = 10, 3
    n = d + p
    key = derive_key("it's a secrect")
    block = new_block_crypt(cipher, key)
    groups = 10 if quick else 30
    count = d * groups
    mtu = PacketCodec(block, d, p).kcp_mtu()
    dgs = [os.urandom(mtu) for _ in range(count)]
    tx = PacketCodec(block, d, p)
    wires = [w for dg in dgs for w in tx.encode(dg)]
    assert all(len(w) == SIZE for w in wires)
    lossy = [w for i, w in enumerate(wires) if i % n >= p]

    # Fresh codecs for every run, built outside the timed part (see bench_fec).
    tx_codecs = [PacketCodec(block, d, p) for _ in range(repeat)]

    def run_encode() -> None:
        c = tx_codecs.pop()
        for dg in dgs:
            c.encode(dg)

    def run_decode(ws: list[bytes]) -> Callable[[], None]:
        rx_codecs = [PacketCodec(block, d, p) for _ in range(repeat)]

        def run() -> None:
            c = rx_codecs.pop()
            got = 0
            for w in ws:
                reg, rec = c.decode(w)
                got += (reg is not None) + len(rec)
            assert got == count, got

        return run

    return [
        (
            f"pipeline {cipher} + FEC 10/3 encode, per KCP datagram",
            best_us(run_encode, count, repeat),
        ),
        (
            f"pipeline {cipher} + FEC 10/3 decode, no loss, per KCP datagram",
            best_us(run_decode(wires), count, repeat),
        ),
        (
            f"pipeline {cipher} + FEC 10/3 decode, 3 of 10 lost, per KCP datagram",
            best_us(run_decode(lossy), count, repeat),
        ),
    ]


def bench_pieces(repeat: int) -> list[tuple[str, float]]:
    """The pieces: CRC-32 of 1380 bytes and os.urandom(16)."""
    n = 1000
    body = os.urandom(SIZE - 20)
    return [
        (
            "zlib.crc32 of 1380 bytes",
            best_us(lambda: [zlib.crc32(body) for _ in range(n)], n, repeat),
        ),
        ("os.urandom(16)", best_us(lambda: [os.urandom(16) for _ in range(n)], n, repeat)),
    ]


def bench_replay(repeat: int, quick: bool) -> list[tuple[str, float]]:
    """The replay/reflection filter per packet, bare and as the sessions run it."""
    key = derive_key("it's a secrect")
    codec = PacketCodec(new_block_crypt("aes", key))
    n = 2000 if quick else 5000
    wires = [codec.encode(os.urandom(SIZE - 20))[0] for _ in range(n)]
    size = codec.nonce_size
    fresh = ReplayCache()
    for _ in range(fresh.capacity):  # full: inserts rotate, as in steady state
        fresh.add(os.urandom(size), 0)
    # fresh nonces for every run (the nonce key only slices the front, so
    # short packets stand for full ones), built outside the timed part
    runs = [[os.urandom(64) for _ in range(n)] for _ in range(repeat)]

    def run_receive() -> None:
        # the receiver: pre-check before decryption, remember after it
        contains, add = fresh.contains, fresh.add
        for w in runs.pop():
            k = nonce_key(w, size)
            if k is not None and not contains(k):
                add(k, 1)

    seen = ReplayCache()
    for w in wires:
        seen.add(w[:size], 0)

    def run_replays() -> None:
        contains = seen.contains
        for w in wires:
            k = nonce_key(w, size)
            if k is not None and contains(k):
                continue

    sent = ReplayCache()
    batches = [wires[i : i + 64] for i in range(0, n, 64)]

    def run_sent() -> None:
        for b in batches:
            sent.add_many([w[:size] for w in b], 0)

    def run_open() -> None:
        for w in wires:
            codec.open(w)

    # the filter as the sessions use it: a lock and the updater's clock
    import threading

    from kcpsock.replay import ReplayFilter
    from kcpsock.updater import now_ms

    filt = ReplayFilter(size, now_ms, lock=threading.Lock())
    for _ in range(filt.cache.capacity):
        filt.cache.add(os.urandom(size), 0)
    fruns = [[os.urandom(64) for _ in range(n)] for _ in range(repeat)]

    def run_filter() -> None:
        pre, post = filt.pre, filt.post
        for w in fruns.pop():
            if pre(w, None) is None:
                post(w, w, None)

    def run_filter_sent() -> None:
        for b in batches:
            filt.sent(b)

    return [
        (
            "replay filter: key + contains + add of a fresh nonce (full cache), per packet",
            best_us(run_receive, n, repeat),
        ),
        (
            "replay filter: key + contains of a replay (dropped), per packet",
            best_us(run_replays, n, repeat),
        ),
        (
            "replay filter: sent nonces, add_many in batches of 64, per packet",
            best_us(run_sent, n, repeat),
        ),
        (
            "ReplayFilter.pre + post as a receiver runs them (lock, clock), per packet",
            best_us(run_filter, n, repeat),
        ),
        (
            "ReplayFilter.sent as a sender runs it (lock, clock), batches of 64, per packet",
            best_us(run_filter_sent, n, repeat),
        ),
        ("(for scale) PacketCodec(aes).open of one 1400-byte packet", best_us(run_open, n, repeat)),
    ]


def bench_construction(repeat: int) -> list[tuple[str, float]]:
    """Microseconds to build a codec, a codec around a cipher, and FEC 10/3."""
    key = derive_key("it's a secrect")
    block = new_block_crypt("aes", key)
    PacketCodec(block, 10, 3)  # per-process work (matrix, first checks) untimed
    n = 20
    return [
        (
            'construct PacketCodec(new_block_crypt("aes", key), 10, 3), per object',
            best_us(
                lambda: [PacketCodec(new_block_crypt("aes", key), 10, 3) for _ in range(n)],
                n,
                repeat,
            ),
        ),
        (
            "construct PacketCodec(block, 10, 3) around a shared cipher, per object",
            best_us(lambda: [PacketCodec(block, 10, 3) for _ in range(n)], n, repeat),
        ),
        (
            "construct FECEncoder(10, 3) + FECDecoder(10, 3), per pair",
            best_us(lambda: [(FECEncoder(10, 3), FECDecoder(10, 3)) for _ in range(n)], n, repeat),
        ),
    ]


def _merge(best: dict[str, tuple[float, ...]], rows: list[tuple[Any, ...]]) -> None:
    """Keep, per label, the smallest figure seen in any pass."""
    for label, *values in rows:
        old = best.get(label)
        best[label] = tuple(values) if old is None else tuple(map(min, old, values))


def main() -> None:
    """Command-line entry point: run every benchmark and print the table."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument(
        "--repeat",
        type=int,
        default=20,
        help="runs per figure in each pass; the best is kept (default 20)",
    )
    ap.add_argument(
        "--passes",
        type=int,
        default=3,
        help="passes over the whole suite; the best per figure is kept (default 3)",
    )
    ap.add_argument("--quick", action="store_true", help="fewer packets (smoke test)")
    args = ap.parse_args()
    r = args.repeat

    from Crypto import __version__ as pycryptodome_version
    from Crypto.Util._raw_api import backend

    ciphers: dict[str, tuple[float, ...]] = {}
    strategies: dict[str, tuple[float, ...]] = {}
    stages: dict[str, tuple[float, ...]] = {}
    for _ in range(max(1, args.passes)):
        _merge(ciphers, bench_ciphers(r, args.quick))
        _merge(strategies, bench_aes_strategies(r, args.quick))
        _merge(
            stages,
            bench_pieces(r)
            + bench_fec(r, args.quick)
            + bench_pipeline(r, args.quick)
            + bench_replay(r, args.quick)
            + bench_construction(r),
        )

    print(
        f"Python {sys.version.split()[0]}, pycryptodome {pycryptodome_version} ({backend} "
        f"backend), {SIZE}-byte packets, best of {args.passes} passes x {r} runs, "
        "CPU us per packet"
    )
    print()
    print("| cipher | implementation | encrypt us | decrypt us |")
    print("| --- | --- | ---: | ---: |")
    for name, (e, d) in ciphers.items():
        print(f"| {name} | {cipher_info(name).implementation} | {e:.1f} | {d:.1f} |")
    print()
    print("| AES-256-CFB strategy | encrypt us | decrypt us |")
    print("| --- | ---: | ---: |")
    for label, (e, d) in strategies.items():
        print(f"| {label} | {e:.2f} | {d:.2f} |")
    print()
    print("| stage | us |")
    print("| --- | ---: |")
    for label, (us,) in stages.items():
        print(f"| {label} | {us:.1f} |")


if __name__ == "__main__":
    main()
