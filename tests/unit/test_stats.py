"""kcpsock.stats: kcp-go HEAD's SNMP counters, names, order and operations."""

from __future__ import annotations

import gc
import threading

import pytest

from kcpsock.stats import FIELDS, HEADER, SOURCE_FIELDS, Snmp, snmp

HEAD_HEADER = [
    "BytesSent",
    "BytesReceived",
    "MaxConn",
    "ActiveOpens",
    "PassiveOpens",
    "CurrEstab",
    "InErrs",
    "InCsumErrors",
    "KCPInErrors",
    "InPkts",
    "OutPkts",
    "InSegs",
    "OutSegs",
    "InBytes",
    "OutBytes",
    "RetransSegs",
    "FastRetransSegs",
    "EarlyRetransSegs",
    "LostSegs",
    "RepeatSegs",
    "FECFullShards",
    "FECParityShards",
    "FECErrs",
    "FECRecovered",
    "FECShardSet",
    "FECShardMin",
    "RingBufferSndQueue",
    "RingBufferRcvQueue",
    "RingBufferSndBuffer",
    "OOBPackets",
]


def test_header_is_kcp_go_head_order() -> None:
    assert Snmp.header() == HEAD_HEADER
    assert list(HEADER) == HEAD_HEADER
    assert len(FIELDS) == len(HEAD_HEADER)


def test_every_field_is_an_int_attribute_starting_at_zero() -> None:
    s = Snmp()
    for name in (*FIELDS, "FECShortShards"):
        assert getattr(s, name) == 0
    assert s.to_list() == ["0"] * len(HEAD_HEADER)


def test_add_and_to_list_alignment() -> None:
    s = Snmp()
    s.add("InPkts", 3)
    s.add("FECFullShardSet")
    s.add_many({"OutBytes": 100, "InErrs": 0})
    s.add_many([("OutBytes", 1), ("LostSegs", 2)])
    values = dict(zip(s.header(), s.to_list()))
    assert values["InPkts"] == "3"
    assert values["FECFullShards"] == "1"
    assert values["OutBytes"] == "101"
    assert values["LostSegs"] == "2"
    assert values["InErrs"] == "0"


def test_unknown_counter_raises() -> None:
    s = Snmp()
    with pytest.raises(AttributeError):
        s.add("NoSuchCounter")
    with pytest.raises(AttributeError):
        s.set_gauges(NoSuchGauge=1)


def test_copy_is_independent_and_equal() -> None:
    s = Snmp()
    s.add("BytesSent", 10)
    c = s.copy()
    assert c == s
    s.add("BytesSent", 1)
    assert c.BytesSent == 10
    assert c != s


def test_reset_zeroes_everything() -> None:
    s = Snmp()
    s.add_many({"BytesSent": 5, "InSegs": 7})
    s.session_opened(passive=False)
    s.reset()
    assert s.values() == [0] * len(FIELDS)


def test_session_open_close_track_maxconn() -> None:
    s = Snmp()
    s.session_opened(passive=False)
    s.session_opened(passive=True)
    s.session_opened(passive=True)
    s.session_closed()
    assert (s.ActiveOpens, s.PassiveOpens, s.CurrEstab, s.MaxConn) == (1, 2, 2, 3)
    for _ in range(5):
        s.session_closed()
    assert s.CurrEstab == 0


def test_concurrent_adds_with_a_lock_lose_nothing() -> None:
    s = Snmp(threading.Lock())

    def work() -> None:
        for _ in range(20000):
            s.add("InPkts")
            s.add_many((("OutPkts", 2),))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert s.InPkts == 80000
    assert s.OutPkts == 160000


def test_global_snmp_exists_and_repr() -> None:
    assert isinstance(snmp, Snmp)
    s = Snmp()
    s.add("InErrs", 2)
    assert "InErrs=2" in repr(s)


class _Source:
    """A counter source as a session is one: cumulative values it alone changes."""

    def __init__(self) -> None:
        self.values = [0] * len(SOURCE_FIELDS)

    def bump(self, name: str, n: int) -> None:
        self.values[SOURCE_FIELDS.index(name)] += n

    def snmp_counts(self) -> tuple[int, ...]:
        return tuple(self.values)


def test_registered_sources_are_read_at_every_read() -> None:
    s = Snmp()
    src = _Source()
    s.register(src)
    src.bump("InPkts", 3)
    src.bump("BytesSent", 64)
    assert s.InPkts == 3  # an attribute read folds the source in
    src.bump("InPkts", 2)
    assert dict(zip(s.header(), s.values()))["InPkts"] == 5
    assert s.as_dict()["BytesSent"] == 64
    c = s.copy()
    src.bump("InPkts", 1)
    assert c.InPkts == 5  # a copy is a snapshot, not a reader
    assert s.InPkts == 6


def test_retrans_segs_follows_the_three_kinds_of_a_source() -> None:
    s = Snmp()
    src = _Source()
    s.register(src)
    src.bump("LostSegs", 1)
    src.bump("FastRetransSegs", 2)
    src.bump("EarlyRetransSegs", 4)
    assert (s.LostSegs, s.FastRetransSegs, s.EarlyRetransSegs, s.RetransSegs) == (1, 2, 4, 7)


def test_unregister_keeps_what_was_counted_and_stops_reading() -> None:
    s = Snmp()
    src = _Source()
    s.register(src)
    src.bump("OutPkts", 4)
    s.unregister(src)  # folds in the 4 not read yet
    src.bump("OutPkts", 100)
    assert s.OutPkts == 4
    s.unregister(src)  # twice: nothing happens
    assert s.OutPkts == 4


def test_reset_forgets_what_sources_counted_before_it() -> None:
    s = Snmp()
    src = _Source()
    s.register(src)
    src.bump("InSegs", 10)
    s.reset()
    src.bump("InSegs", 1)
    assert s.InSegs == 1


def test_sources_are_added_to_direct_adds_and_held_weakly() -> None:
    s = Snmp()
    src = _Source()
    s.register(src)
    s.add("InPkts", 2)
    src.bump("InPkts", 3)
    assert s.InPkts == 5
    del src
    gc.collect()
    assert s.InPkts == 5  # a collected source keeps what was read
