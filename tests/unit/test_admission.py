"""kcpsock.inbound admission under attack (issue 11): first datagrams only,
per-address caps, the conv guard and the blacklist's conv index (pure).
"""

from __future__ import annotations

import struct

from kcpsock.inbound import (
    Admission,
    Blacklist,
    Inbound,
    RouteTable,
    is_opening_datagram,
)
from tests.helpers import kcp_datagrams

A = ("10.0.0.1", 1000)
A2 = ("10.0.0.1", 1001)
B = ("10.0.0.2", 1000)


def seg(conv: int, cmd: int = 81, sn: int = 0, payload: bytes = b"x") -> bytes:
    return struct.pack("<IBBHIIII", conv, cmd, 0, 32, 0, sn, 0, len(payload)) + payload


def table(**kw: object) -> RouteTable:
    opts: dict[str, object] = dict(backlog=128, max_sessions=4096, blacklist=Blacklist(600.0))
    opts.update(kw)
    return RouteTable(Admission(**opts), lambda: None)  # type: ignore[arg-type]


def test_opening_datagrams() -> None:
    assert is_opening_datagram(seg(1))
    assert is_opening_datagram(seg(1, cmd=83, sn=7, payload=b""))  # WASK probe
    assert is_opening_datagram(seg(1, sn=3) + seg(1, sn=0))  # retransmission bundle
    assert not is_opening_datagram(seg(1, cmd=82, payload=b""))  # ACK only
    assert not is_opening_datagram(seg(1, sn=1))
    assert not is_opening_datagram(seg(1, cmd=84, payload=b""))  # WINS


def test_unsolicited_datagrams_open_nothing() -> None:
    t = table()
    inbound = Inbound.for_listener(t, None)
    r = inbound.process([(seg(1, cmd=82, payload=b""), A), (seg(2, sn=9), A)])
    assert r.created == [] and r.refused == {"unsolicited": 2}
    r = inbound.process([(seg(2, sn=0), A), (seg(2, sn=9), A)])
    assert [x.key for x in r.created] == [(A, 2)]
    assert kcp_datagrams(r.deliveries[0]) == [seg(2), seg(2, sn=9)]


def test_per_address_caps_count_the_ip_not_the_port() -> None:
    t = table(backlog_per_address=2, max_per_address=3)
    inbound = Inbound.for_listener(t, None)
    r = inbound.process([(seg(c), A if c % 2 else A2) for c in range(1, 6)])
    assert len(r.created) == 2 and r.refused == {"backlog_per_address": 3}
    assert t.host_counts(A) == (2, 2)
    for route in r.created:
        t.accepted(route)
    assert t.host_counts(A2) == (2, 0)
    r = inbound.process([(seg(c), A) for c in range(10, 13)])
    assert len(r.created) == 1 and r.refused == {"per_address": 2}
    # another address is not affected
    r = inbound.process([(seg(99), B)])
    assert len(r.created) == 1
    # closing frees the slots
    for route in t.routes():
        t.remove(route, now=0.0)
    assert t.host_counts(A) == (0, 0) and t.host_counts(B) == (0, 0)


def test_conv_guard_refuses_a_conv_live_or_closed_elsewhere() -> None:
    t = table(conv_guard=True)
    inbound = Inbound.for_listener(t, None)
    r = inbound.process([(seg(7), A), (seg(7), B)])
    assert [x.key for x in r.created] == [(A, 7)] and r.refused == {"conv_in_use": 1}
    t.remove(r.created[0], now=0.0)
    r = inbound.process([(seg(7), B)], now=1.0)
    assert r.refused == {"conv_in_use": 1}  # recently closed from A
    r = inbound.process([(seg(7), B)], now=601.0)
    assert len(r.created) == 1  # the blacklist entry expired


def test_without_conv_guard_same_conv_from_two_addresses_is_two_sessions() -> None:
    inbound = Inbound.for_listener(table(), None)
    r = inbound.process([(seg(7), A), (seg(7), B)])
    assert len(r.created) == 2


def test_blacklist_conv_index_is_purged_with_its_key() -> None:
    bl = Blacklist(10.0, max_entries=2)
    bl.add((A, 1), 0.0)
    assert bl.has_conv(1, 5.0) and not bl.has_conv(2, 5.0)
    bl.add((A, 2), 0.0)
    bl.add((A, 3), 0.0)  # evicts (A, 1)
    assert not bl.has_conv(1, 5.0)
    bl.discard((A, 2))
    assert not bl.has_conv(2, 5.0)
    assert not bl.has_conv(3, 11.0)  # expired
