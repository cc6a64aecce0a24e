"""Unit tests of kcpsock.inbound: the one inbound pipeline (pure: no sockets, no clock)."""

from __future__ import annotations

import random
import struct
from typing import Any, Optional

import pytest

from kcpsock.codec import PacketCodec
from kcpsock.crypt import derive_key, new_block_crypt
from kcpsock.inbound import (
    Admission,
    Blacklist,
    Delivery,
    Inbound,
    InboundResult,
    Route,
    RouteTable,
    WindowShare,
    is_kcp_datagram,
    make_codec,
)
from tests.helpers import kcp_datagrams

KEY = derive_key("inbound tests")
A = ("127.0.0.1", 1000)
B = ("127.0.0.1", 2000)


def push(conv: int, sn: int = 0, payload: bytes = b"hello") -> bytes:
    """A KCP PUSH datagram: conv, cmd 81, frg, wnd, ts, sn, una, len, data."""
    return struct.pack("<IBBHIIII", conv, 81, 0, 128, 1000, sn, 0, len(payload)) + payload


def ack(conv: int, sn: int = 0) -> bytes:
    return struct.pack("<IBBHIIII", conv, 82, 0, 128, 1000, sn, 0, 0)


def seeded(block: Any = None, d: int = 0, p: int = 0, seed: int = 0) -> PacketCodec:
    rng = random.Random(seed)
    return PacketCodec(block, d, p, random_bytes=lambda n: rng.randbytes(n))


def listener(
    block: Any = None,
    d: int = 0,
    p: int = 0,
    *,
    backlog: int = 128,
    max_sessions: int = 4096,
    ttl: float = 600.0,
) -> Inbound:
    admission = Admission(backlog=backlog, max_sessions=max_sessions, blacklist=Blacklist(ttl))
    table = RouteTable(admission, lambda: make_codec(block, d, p))
    return Inbound.for_listener(table, make_codec(block, d, p))


def one(result: InboundResult) -> list[bytes]:
    assert len(result.deliveries) == 1
    return kcp_datagrams(result.deliveries[0])


# ---------------------------------------------------------------- dialed


def test_plain_mode_is_the_same_pipeline_with_no_op_stages() -> None:
    route = Route(None, None)
    inbound = Inbound.for_session(route, None)
    dgs = [push(7, sn) for sn in range(3)]
    result = inbound.process([(dg, A) for dg in dgs])
    assert one(result) == dgs
    d = result.deliveries[0]
    assert d.route is route and d.packets == 3 and d.nbytes == sum(map(len, dgs))
    assert d.recovered == [] and result.errors == {}


def test_plain_mode_counts_short_and_oversized_datagrams() -> None:
    inbound = Inbound.for_session(Route(None, None), None)
    result = inbound.process([(b"x" * 23, A), (b"x" * 1501, A), (push(1), A)])
    assert result.errors == {"InErrs": 2}
    assert one(result) == [push(1)]


def test_source_filter_of_an_unconnected_dialed_socket() -> None:
    inbound = Inbound.for_session(Route(None, None), None, remote=A)
    result = inbound.process([(push(1), B), (push(1, 1), A)])
    assert result.errors == {"InErrs": 1}
    assert one(result) == [push(1, 1)]


def test_crypto_errors_are_counted_under_their_snmp_counter() -> None:
    block = new_block_crypt("aes", KEY)
    tx = seeded(block)
    rx = make_codec(new_block_crypt("aes", KEY))
    good = tx.encode(push(9))[0]
    bad_crc = bytearray(good)
    bad_crc[-1] ^= 0xFF
    wrong_key = seeded(new_block_crypt("aes", derive_key("other"))).encode(push(9))[0]
    inbound = Inbound.for_session(Route(None, rx), rx)
    result = inbound.process([(good, A), (bytes(bad_crc), A), (wrong_key, A), (b"short", A)])
    assert result.errors == {"InCsumErrors": 2, "InErrs": 1}
    assert one(result) == [push(9)]


def test_bad_fec_packet_is_counted() -> None:
    rx = make_codec(None, 2, 1)
    inbound = Inbound.for_session(Route(None, rx), rx)
    # an FEC data packet (flag 0xF1) too short to hold a KCP header
    bad = struct.pack("<IHH", 1, 0xF1, 6) + b"\0" * 4
    result = inbound.process([(bad, A)])
    assert result.errors == {"InErrs": 1}
    assert result.deliveries == []


def test_post_open_filter_seam_drops_and_counts() -> None:
    seen: list[bytes] = []

    def replay(packet: bytes, payload: bytes, addr: Any) -> Optional[str]:
        if packet in seen:
            return "InErrs"
        seen.append(packet)
        return None

    inbound = Inbound.for_session(Route(None, None), None)
    inbound.post_filters.append(replay)
    result = inbound.process([(push(1), A), (push(1), A), (push(1, 1), A)])
    assert result.errors == {"InErrs": 1}
    assert one(result) == [push(1), push(1, 1)]


def test_closed_route_gets_nothing() -> None:
    route = Route(None, None)
    route.closed = True
    result = Inbound.for_session(route, None).process([(push(1), A)])
    assert result.deliveries == [] and result.errors == {}


def test_plain_batch_equals_the_general_pipeline_on_random_batches() -> None:
    # plain_batch (a plain dialed receiver's call) against the general loop,
    # which a pass-through filter forces: same deliveries, same drops
    rng = random.Random(9)

    def pass_all(packet: bytes, addr: Any) -> Optional[str]:
        return None

    for trial in range(200):
        route = Route(None, None)
        route.closed = trial % 17 == 0
        plain = Inbound.for_session(route, None)
        general = Inbound.for_session(route, None)
        general.pre_filters.append(pass_all)
        assert plain.is_plain() and not general.is_plain()
        batch = []
        for _ in range(rng.randrange(0, 8)):
            kind = rng.randrange(4)
            if kind == 0:
                batch.append((rng.randbytes(rng.randrange(0, 24)), A))  # too short
            elif kind == 1:
                batch.append((rng.randbytes(rng.randrange(1501, 1600)), A))  # too long
            else:
                batch.append((push(1, rng.randrange(100), rng.randbytes(rng.randrange(200))), A))
        one, errors = plain.plain_batch(batch)
        result = general.process(batch)
        assert errors == result.errors.get("InErrs", 0)
        if one is None:
            assert result.deliveries == []
            continue
        (d,) = result.deliveries
        assert one.route is d.route is route
        assert (one.datagrams, one.recovered, one.packets, one.nbytes) == (
            d.datagrams,
            d.recovered,
            d.packets,
            d.nbytes,
        )
        # and process() on the plain pipeline reports the same
        again = plain.process(batch)
        assert again.errors == result.errors
        assert [x.datagrams for x in again.deliveries] == [d.datagrams]


def test_is_plain_is_false_with_a_codec_filters_or_hooks() -> None:
    rx = make_codec(None, 2, 1)
    assert not Inbound.for_session(Route(None, rx), rx).is_plain()
    assert not Inbound.for_session(Route(None, None), None, remote=A).is_plain()
    hooked = Inbound.for_session(Route(None, None), None)
    hooked.after_batch.append(lambda: None)
    assert not hooked.is_plain()
    assert not listener().is_plain()


# -------------------------------------------------------------- listener


def test_listener_routes_by_address_and_conv() -> None:
    inbound = listener()
    batch = [(push(1), A), (push(2), A), (push(1), B), (push(1, 1), A)]
    result = inbound.process(batch)
    keys = [r.key for r in result.created]
    assert keys == [(A, 1), (A, 2), (B, 1)]
    got = {d.route.key: kcp_datagrams(d) for d in result.deliveries}
    assert got == {(A, 1): [push(1), push(1, 1)], (A, 2): [push(2)], (B, 1): [push(1)]}
    # the next batch finds the same routes, creates nothing
    again = inbound.process([(push(2, 1), A)])
    assert again.created == []
    assert again.deliveries[0].route is result.created[1]


def test_last_key_cache_answers_repeated_keys_and_never_a_closed_route() -> None:
    inbound = listener()
    table = inbound.table
    assert table is not None
    first = inbound.process([(push(1, sn), A) for sn in range(5)])
    route = first.created[0]
    assert table.cache_hits == 4
    table.remove(route, now=0.0)
    assert route.closed and table.lookup((A, 1)) is None
    # a datagram of the closed key is refused by the blacklist, not delivered
    later = inbound.process([(push(1, 5), A)], now=1.0)
    assert later.deliveries == [] and later.refused == {"blacklist": 1}


def test_unknown_key_needs_a_valid_kcp_datagram() -> None:
    inbound = listener()
    garbage = struct.pack("<I", 5) + b"\x07" * 30  # conv 5, command 7
    truncated = push(5)[:-1]
    other_conv_inside = push(5) + push(6)
    result = inbound.process([(garbage, A), (truncated, A), (b"\0" * 10, A)])
    assert result.errors == {"KCPInErrors": 2, "InErrs": 1}
    assert result.created == []
    assert not is_kcp_datagram(other_conv_inside, 5)
    assert is_kcp_datagram(push(5) + ack(5), 5)
    assert not is_kcp_datagram(push(5) + ack(6), 5)


def test_admission_backlog_and_max_sessions() -> None:
    inbound = listener(backlog=2)
    result = inbound.process([(push(c), A) for c in range(4)], queued=0)
    assert len(result.created) == 2 and result.refused == {"backlog": 2}
    result = inbound.process([(push(9), B)], queued=2)
    assert result.created == [] and result.refused == {"backlog": 1}

    capped = listener(max_sessions=3)
    result = capped.process([(push(c), A) for c in range(5)])
    assert len(result.created) == 3 and result.refused == {"max_sessions": 2}


def test_blacklist_expiry_and_discard() -> None:
    inbound = listener(ttl=10.0)
    table = inbound.table
    assert table is not None
    route = inbound.process([(push(1), A)], now=0.0).created[0]
    table.remove(route, now=5.0)  # closed at t=5: refused until t=15
    assert inbound.process([(push(1), A)], now=14.9).refused == {"blacklist": 1}
    reborn = inbound.process([(push(1), A)], now=15.1)
    assert [r.key for r in reborn.created] == [(A, 1)]
    # a route that never became visible is forgotten, not blacklisted
    table.remove(reborn.created[0], now=None)
    assert len(inbound.process([(push(1), A)], now=15.2).created) == 1


def test_blacklist_arguments_named() -> None:
    # named in both forms (compiled: mypyc's "float object expected; got str")
    with pytest.raises(TypeError, match="ttl"):
        Blacklist("600")
    with pytest.raises(TypeError, match="max_entries"):
        Blacklist(600.0, max_entries=2.5)
    with pytest.raises(ValueError, match="max_entries"):
        Blacklist(600.0, max_entries=0)
    assert Blacklist(600).ttl == 600.0


def test_blacklist_disabled_and_bounded() -> None:
    off = Blacklist(0)
    off.add((A, 1), 0.0)
    assert not off.has((A, 1), 0.0) and len(off) == 0
    small = Blacklist(100.0, max_entries=3)
    for conv in range(10):
        small.add((A, conv), float(conv))
    assert len(small) == 3
    assert small.has((A, 9), 10.0) and not small.has((A, 0), 10.0)
    assert not small.has((A, 9), 109.1)  # expired


def test_fec_parity_is_routed_to_its_session_and_recovers() -> None:
    tx = seeded(None, 2, 1)
    p1 = tx.encode(push(3, 0))
    p2 = tx.encode(push(3, 1))
    assert len(p1) == 1 and len(p2) == 2  # data, then data + parity
    data0, data1, parity = p1[0], p2[0], p2[1]
    inbound = listener(None, 2, 1)
    first = inbound.process([(data0, A)])
    route = first.created[0]
    # data1 lost: the parity (no conv on the wire) still reaches the route
    result = inbound.process([(parity, A)])
    assert result.created == [] and result.unrouted == 0
    d = result.deliveries[0]
    assert d.route is route and kcp_datagrams(d) == [] and d.recovered == [push(3, 1)]
    assert data1  # (never delivered)


def test_fec_data_packets_are_delivered_whole_behind_their_header() -> None:
    """No copy per packet: the opened FEC data packets themselves, ``skip`` 8 (the FEC header)."""
    block = new_block_crypt("aes", KEY)
    tx = seeded(block, 2, 1)
    wire = [p for sn in range(4) for p in tx.encode(push(3, sn))]
    assert len(wire) == 6  # d, d, parity, d, d, parity
    rx = seeded(block, 2, 1)
    inbound = Inbound.for_session(Route(None, rx), rx)
    (d,) = inbound.process([(p, A) for p in wire]).deliveries
    assert d.skip == 8 and len(d.datagrams) == 4 and d.recovered == []
    assert kcp_datagrams(d) == [push(3, sn) for sn in range(4)]
    assert all(dg[4:6] == b"\xf1\x00" for dg in d.datagrams)


def test_plain_kcp_among_fec_data_packets_keeps_one_skip_per_delivery() -> None:
    """A peer mixing FEC data packets and plain KCP datagrams: each brought to the delivery's skip."""
    tx = seeded(None, 3, 1)
    fec = [p for sn in (0, 1) for p in tx.encode(push(3, sn))]
    for batch, skip in (
        ([fec[0], push(3, 5), fec[1]], 8),  # first FEC: plain ones get 8 bytes in front
        ([push(3, 5), fec[0], fec[1]], 0),  # first plain: FEC ones are sliced
    ):
        rx = seeded(None, 3, 1)
        inbound = Inbound.for_session(Route(None, rx), rx)
        (d,) = inbound.process([(p, A) for p in batch]).deliveries
        assert d.skip == skip and d.packets == 3
        want = (
            [push(3, 0), push(3, 5), push(3, 1)] if skip else [push(3, 5), push(3, 0), push(3, 1)]
        )
        assert kcp_datagrams(d) == want


def test_delivery_add_brings_every_datagram_to_one_skip() -> None:
    d = Delivery(Route(None, None))
    assert d.skip == 0 and kcp_datagrams(d) == []
    d.add(b"HDR-" + b"one", 4)  # the first sets skip
    d.add(b"two", 0)  # brought to skip 4 (4 bytes in front)
    d.add(b"xxxxxxthree", 6)  # brought to skip 4 (2 bytes cut)
    d.add(b"....four", 4)
    assert d.skip == 4 and len(d.datagrams) == 4
    assert kcp_datagrams(d) == [b"one", b"two", b"three", b"four"]
    plain = Delivery(Route(None, None))
    plain.add(b"abc", 0)
    assert plain.skip == 0 and plain.datagrams == [b"abc"]


def test_parity_of_an_unknown_address_is_unrouted_and_never_creates() -> None:
    tx = seeded(None, 1, 1)
    data, parity = tx.encode(push(4))
    inbound = listener(None, 1, 1)
    result = inbound.process([(parity, B)])
    assert result.unrouted == 1 and result.created == [] and result.deliveries == []
    # parity goes to the most recent live route of the address
    table = inbound.table
    assert table is not None
    r1 = inbound.process([(data, A)]).created[0]
    tx2 = seeded(None, 1, 1, seed=1)
    d2, _ = tx2.encode(push(5))
    r2 = inbound.process([(d2, A)]).created[0]
    assert table.parity_route(A) is r2
    table.remove(r2, now=0.0)
    assert table.parity_route(A) is r1


def test_listener_with_crypto_and_fec_counts_every_error_path() -> None:
    block = new_block_crypt("aes", KEY)
    tx = seeded(block, 2, 1)
    good = tx.encode(push(8))[0]
    bad = bytearray(good)
    bad[30] ^= 1
    inbound = listener(block, 2, 1)
    result = inbound.process([(good, A), (bytes(bad), A), (b"\0" * 5, A), (b"\0" * 1600, A)])
    assert result.errors == {"InCsumErrors": 1, "InErrs": 2}
    assert one(result) == [push(8)]


@pytest.mark.parametrize("bad", [b"", b"\0" * 23, b"\xff" * 24, b"\x01" * 40])
def test_arbitrary_bytes_never_raise(bad: bytes) -> None:
    for inbound in (listener(), listener(None, 2, 1), listener(new_block_crypt("aes", KEY))):
        result = inbound.process([(bad, A)])
        dropped = sum(result.errors.values()) + sum(result.refused.values()) + result.unrouted
        assert dropped == 1


def test_inbound_needs_exactly_one_router() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        Inbound(None)


# ------------------------------------------------------------ window share


def busy_routes(share: WindowShare, n: int, now: float) -> list[Route]:
    routes = [Route(((f"127.0.0.{i}", 1), i), None) for i in range(n)]
    deliveries = [Delivery(r) for r in routes]
    share.note(deliveries, now)
    return routes


def test_keepalive_probes_and_answers_do_not_make_a_session_busy() -> None:
    share = WindowShare()
    routes = [Route(((f"127.0.0.{i}", 1), i), None) for i in range(5)]

    def seg(cmd: int, payload: bytes = b"") -> bytes:
        return struct.pack("<IBBHIIII", 7, cmd, 0, 32, 0, 0, 0, len(payload)) + payload

    wask, wins, ack, push = seg(83), seg(84), seg(82), seg(81, b"data")
    batches = [[wask], [wins], [ack], [push], [wask, wins]]
    deliveries = []
    for route, dgs in zip(routes, batches):
        d = Delivery(route)
        d.datagrams.extend(dgs)
        deliveries.append(d)
    share.note(deliveries, 1.0)
    # a lone keep-alive probe or answer carries nothing to pace; anything else does
    assert set(share.busy) == set(routes[2:])
    # the same as FEC data packets delivered whole (their KCP datagram behind 8 bytes)
    fec_share = WindowShare()
    for route, dgs in zip(routes, batches):
        d = Delivery(route)
        for dg in dgs:
            d.add(struct.pack("<IHH", 0, 0xF1, len(dg) + 2) + dg, 8)
        fec_share.note([d], 1.0)
    assert set(fec_share.busy) == set(routes[2:])


def test_window_share_is_no_cap_until_the_receiver_is_loaded() -> None:
    share = WindowShare()
    busy_routes(share, 100, 0.0)
    assert share.update(3000, 0.0) == WindowShare.NO_CAP
    share.loaded(0.01)
    assert share.next_at == 0.01  # newly loaded: recompute at once
    assert share.update(3000, 0.01) == 30


def test_window_share_floor_and_horizon() -> None:
    share = WindowShare(horizon=0.2, floor=16)
    share.loaded(0.0)
    old = busy_routes(share, 500, 0.0)
    assert share.update(3000, 0.0) == 16  # 3000 // 500 is below the floor
    # 0.3 s later only 3 routes got data: the others are idle, forgotten
    share.note([Delivery(r) for r in old[:3]], 0.3)
    share.loaded(0.3)
    assert share.update(3000, 0.3) == 1000
    assert len(share.busy) == 3


def test_window_share_forgets_closed_routes_and_lifts_after_hold() -> None:
    share = WindowShare(hold=1.0)
    share.loaded(0.0)
    routes = busy_routes(share, 4, 0.0)
    assert share.update(400, 0.0) == 100
    routes[0].closed = True
    routes[1].closed = True
    assert share.update(400, 0.05) == 200
    assert share.next_at == pytest.approx(0.05 + share.interval)
    # no sign of load for longer than hold: the cap is lifted
    share.note([Delivery(r) for r in routes[2:]], 1.1)
    assert share.update(400, 1.1) == WindowShare.NO_CAP


def test_window_share_never_exceeds_the_wire_field() -> None:
    share = WindowShare()
    share.loaded(0.0)
    busy_routes(share, 1, 0.0)
    assert share.update(10**6, 0.0) == 0xFFFF
    share2 = WindowShare()
    share2.loaded(0.0)
    assert share2.update(500, 0.0) == 500  # nothing busy: the whole budget
