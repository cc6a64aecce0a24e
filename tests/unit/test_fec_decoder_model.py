"""FECDecoder's per-packet bookkeeping against a plain model of kcp-go HEAD's decoder.

``FECDecoder.take`` keeps the newest group's slots apart and touches no dict
for its packets (the common case: every packet of a loss-free stream).  The
model below is the straightforward form it replaced (a dict of shard sets per
group id, the newest group and the stale scan after every packet): both are
fed the same random streams (loss, reordering, duplicates, late and stale
groups, the seqid wrap, parity of unknown groups) and must return the same
datagrams and counters and hold the same groups.
"""

from __future__ import annotations

import random
import struct
from typing import Optional

import pytest

from kcpsock.fec import (
    FEC_HEADER_SIZE,
    MAX_SHARD_SETS,
    TYPE_DATA,
    TYPE_PARITY,
    FECDecoder,
    FECEncoder,
    paws_for,
)
from kcpsock.gf256 import ReedSolomon
from kcpsock.segment import timediff


class ModelDecoder:
    """kcp-go HEAD's fecDecoder without autotune, written plainly (dict per group)."""

    def __init__(self, d: int, p: int) -> None:
        self.d, self.p, self.n = d, p, d + p
        self.paws = paws_for(self.n)
        self.rs = ReedSolomon(d, p)
        self.sets: dict[int, dict[int, bytes]] = {}
        self.newest: Optional[int] = None
        self.parity_shards = self.full_shard_sets = self.recovered = 0
        self.errors = self.ignored = 0

    def decode_parts(self, packet: bytes) -> tuple[Optional[bytes], list[bytes]]:
        seqid, flag = struct.unpack_from("<IH", packet)
        is_data = flag == TYPE_DATA
        regular = packet[8:] if is_data else None
        n, d = self.n, self.d
        if seqid >= self.paws:
            self.ignored += 1
            return regular, []
        gid, pos = divmod(seqid, n)
        if (pos < d) != is_data:
            self.ignored += 1
            return regular, []
        shard_set = self.sets.setdefault(gid, {})
        if pos in shard_set:
            self.ignored += 1
            return regular, []
        if not is_data:
            self.parity_shards += 1
        shard_set[pos] = packet
        recovered: list[bytes] = []
        if len(shard_set) >= d:
            self.sets[gid] = {}
            recovered = self._recover(shard_set)
        horizon = MAX_SHARD_SETS * n
        if self.newest is None:
            self.newest = gid
        elif gid != self.newest:
            if timediff(gid * n, self.newest * n) > 0:
                self.newest = gid
                for g in [g for g in self.sets if timediff(gid * n, g * n) > horizon]:
                    del self.sets[g]
            elif timediff(self.newest * n, gid * n) > horizon:
                del self.sets[gid]
        return regular, recovered

    def _recover(self, shard_set: dict[int, bytes]) -> list[bytes]:
        missing = [i for i in range(self.d) if i not in shard_set]
        if not missing:
            self.full_shard_sets += 1
            return []
        chosen = sorted(shard_set)[: self.d]
        maxlen = max(map(len, shard_set.values())) - FEC_HEADER_SIZE
        shards = [shard_set[i][FEC_HEADER_SIZE:].ljust(maxlen, b"\0") for i in chosen]
        out = []
        for value in self.rs.rebuild_ints(tuple(chosen), shards, missing):
            size = value & 0xFFFF
            if maxlen < 2 or size < 2 or size > maxlen:
                self.errors += 1
                continue
            out.append(value.to_bytes(maxlen, "little")[2:size])
        self.recovered += len(out)
        return out


def counters(dec: object) -> tuple[int, ...]:
    return tuple(
        getattr(dec, name)
        for name in ("parity_shards", "full_shard_sets", "recovered", "errors", "ignored")
    )


def stream(rng: random.Random, d: int, p: int, groups: int, start: int = 0) -> list[list[bytes]]:
    """The packets of ``groups`` groups, one list per group, seqids from ``start``."""
    enc = FECEncoder(d, p, start_seqid=start)
    out: list[list[bytes]] = []
    for _ in range(groups):
        group: list[bytes] = []
        for _ in range(d):
            group += enc.encode(rng.randbytes(rng.randrange(1, 120)))
        out.append(group)
    return out


def mangle(rng: random.Random, groups: list[list[bytes]], p: int) -> list[bytes]:
    """Loss, reordering within and across groups, duplicates, stale arrivals."""
    out: list[bytes] = []
    late: list[bytes] = []
    for group in groups:
        kept = [pkt for pkt in group if rng.random() > 0.12]
        if rng.random() < 0.3:
            rng.shuffle(kept)
        for pkt in kept:
            r = rng.random()
            if r < 0.05:
                late.append(pkt)  # arrives groups later (possibly stale)
                continue
            out.append(pkt)
            if r < 0.08:
                out.append(pkt)  # duplicate
        if late and rng.random() < 0.3:
            out.append(late.pop(rng.randrange(len(late))))
    return out + late


def run_both(d: int, p: int, packets: list[bytes]) -> tuple[FECDecoder, ModelDecoder]:
    dec = FECDecoder(d, p, autotune=False)
    model = ModelDecoder(d, p)
    for i, pkt in enumerate(packets):
        got = dec.decode_parts(pkt)
        want = model.decode_parts(pkt)
        assert got == want, f"packet {i}"
        assert counters(dec) == counters(model), f"packet {i}"
        assert dec.shard_sets == len(model.sets), f"packet {i}"
    return dec, model


@pytest.mark.parametrize("seed", range(12))
def test_same_as_model_on_lossy_reordered_streams(seed: int, gf_path: str) -> None:
    rng = random.Random(seed)
    d, p = rng.choice([(10, 3), (4, 2), (3, 5), (1, 1), (7, 1)])
    packets = mangle(rng, stream(rng, d, p, 40), p)
    dec, _ = run_both(d, p, packets)
    assert dec.recovered > 0 or d == 1


@pytest.mark.parametrize("seed", range(4))
def test_same_as_model_across_the_seqid_wrap(seed: int) -> None:
    rng = random.Random(100 + seed)
    d, p = rng.choice([(10, 3), (4, 2), (2, 1)])
    n = d + p
    paws = paws_for(n)
    start = paws - 6 * n  # six groups before the wrap, then group 0 onwards
    packets = mangle(rng, stream(rng, d, p, 14, start), p)
    run_both(d, p, packets)


def test_loss_after_the_newest_group_path_still_recovers() -> None:
    """A group whose data passed through the newest-group path recovers a lost shard."""
    rng = random.Random(5)
    d, p = 10, 3
    groups = stream(rng, d, p, 6)
    dec = FECDecoder(d, p)
    # groups 0-2 whole: every packet after each group's first one takes the
    # newest-group path
    for group in groups[:3]:
        for pkt in group:
            dec.decode(pkt)
    assert dec.full_shard_sets == 3 and dec.recovered == 0
    # group 3: data 4 lost; the first parity completes the set and rebuilds it
    g3 = groups[3]
    got = [dg for i, pkt in enumerate(g3) if i != 4 for dg in dec.decode(pkt)]
    assert g3[4][8:] in got and dec.recovered == 1
    # group 4 loses data 9 and its parity comes late, after group 5 became
    # the newest: the older group still recovers
    g4, g5 = groups[4], groups[5]
    for pkt in g4[:9]:  # data 9 and the parity held back
        dec.decode(pkt)
    for pkt in g5[:d]:
        dec.decode(pkt)
    assert dec.decode(g4[10]) == [g4[9][8:]]
    assert dec.recovered == 2


def test_parity_flood_of_unknown_groups_holds_at_most_four_groups() -> None:
    """Parity of ever new (or random) groups: the decoder holds 4 groups, n slots each."""
    rng = random.Random(6)
    d, p = 10, 3
    n = d + p
    dec = FECDecoder(d, p, autotune=False)
    shard = bytes(1372)
    for i in range(5000):
        gid = i if i < 2500 else rng.randrange(paws_for(n) // n)
        seqid = gid * n + d + rng.randrange(p)
        dec.decode(struct.pack("<IH", seqid, TYPE_PARITY) + shard)
        assert dec.shard_sets <= MAX_SHARD_SETS + 1
    held = sum(1 for slots in dec._sets.values() for pkt in slots if pkt is not None)
    assert held <= (MAX_SHARD_SETS + 1) * p
    assert dec.recovered == 0 and dec.full_shard_sets == 0


def test_newest_group_slots_are_the_held_set() -> None:
    """The newest group's slots are the list held for it (one state, not two)."""
    rng = random.Random(7)
    d, p = 4, 2
    dec = FECDecoder(d, p)
    for group in stream(rng, d, p, 3):
        for pkt in group[:3]:
            dec.decode(pkt)
        assert dec._cur is dec._sets[dec._newest]
        assert dec._cur_count == 3
    # a duplicate in the newest group is ignored and changes nothing
    ignored = dec.ignored
    dec.decode(group[0])
    assert dec.ignored == ignored + 1 and dec._cur_count == 3
    assert struct.unpack_from("<H", group[0], 4)[0] == TYPE_DATA


def test_autotune_ring_holds_the_last_258_samples() -> None:
    """The delta ring gives back the last 258 (seqid, kind) samples exactly."""
    from collections import deque

    from kcpsock.fec import AUTOTUNE_SAMPLES, _Autotune

    rng = random.Random(8)
    tuner = _Autotune()
    model: deque[tuple[int, bool]] = deque(maxlen=AUTOTUNE_SAMPLES)
    seqid = 0xFFFFFF00  # wraps past 2**32 on the way
    for i in range(700):
        r = rng.random()
        if r < 0.8:
            seqid = (seqid + 1) & 0xFFFFFFFF
        elif r < 0.9:
            seqid = rng.randrange(2**32)  # a jump (or garbage)
        # else: a duplicate of the previous seqid
        kind = rng.random() < 0.7
        tuner.add(seqid, kind)
        model.append((seqid, kind))
        if i % 37 == 0 or i > 690:
            assert tuner.samples == list(model), i
