"""kcpsock.stats: kcp-go HEAD's SNMP counters, names, order and operations."""

from __future__ import annotations

import threading

import pytest

from kcpsock.stats import FIELDS, HEADER, Snmp, snmp

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
