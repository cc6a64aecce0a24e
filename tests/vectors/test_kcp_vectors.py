"""The KCP core against real kcp-go 5.6.1 session captures (tests/vectors/data/kcp.json).

For every exchange:
- every datagram kcp-go wrote decodes, and the decoded segments equal the
  capture's ``segments``;
- replaying one side (the other side's datagrams fed to our core in send
  order, lost ones skipped, and this side's application writes sent at their
  times) delivers exactly that side's application reads;
- every datagram our core emits while doing so parses as kcp-go's Input
  would parse it (whole segments, known commands, our conv, at most mtu bytes).

FEC exchanges: the FEC layer is not part of the core, so a data packet the
network dropped and kcp-go's FEC decoder recovered is fed as a recovered
datagram (``regular=False``) when its group's first parity packet arrives.
"""

from __future__ import annotations

from typing import Any, Optional

import pytest

from kcpsock.kcp import KCP
from tests.conftest import load_vectors
from tests.kcpwire import Header, decode_segments

EXCHANGES = load_vectors("kcp")["exchanges"]
IDS = [e["name"] for e in EXCHANGES]
CRYPT_HEADER = 20  # nonce(16) + crc32(4)
FEC_HEADER = 6  # seqid(4) + type(2); data packets then carry size(2)


def kcp_bytes(exchange: dict[str, Any], dg: dict[str, Any]) -> Optional[bytes]:
    """The KCP datagram inside a captured datagram (None for FEC parity)."""
    raw = bytes.fromhex(dg.get("decrypted_hex", dg["hex"]))
    settings = exchange["settings"]
    if settings["crypt"] != "plain":
        raw = raw[CRYPT_HEADER:]
    if settings["fec_data_shards"]:
        if raw[4:6] == b"\xf2\x00":
            return None
        assert raw[4:6] == b"\xf1\x00"
        size = int.from_bytes(raw[6:8], "little")
        return raw[FEC_HEADER + 2 : FEC_HEADER + size]
    return raw


def as_dicts(hdrs: list[tuple[Header, bytes]]) -> list[dict[str, int]]:
    return [
        {
            "conv": h.conv,
            "cmd": h.cmd,
            "frg": h.frg,
            "wnd": h.wnd,
            "ts": h.ts,
            "sn": h.sn,
            "una": h.una,
            "len": h.length,
        }
        for h, _ in hdrs
    ]


@pytest.mark.parametrize("exchange", EXCHANGES, ids=IDS)
def test_every_datagram_decodes_like_the_capture(exchange: dict[str, Any]) -> None:
    checked = 0
    for dg in exchange["datagrams"]:
        data = kcp_bytes(exchange, dg)
        if data is None:
            assert dg["segments"] == []
            continue
        segs = decode_segments(data)
        want = [
            {k: s[k] for k in ("conv", "cmd", "frg", "wnd", "ts", "sn", "una", "len")}
            for s in dg["segments"]
        ]
        assert as_dicts(segs) == want
        assert sum(24 + h.length for h, _ in segs) == len(data)
        checked += 1
    assert checked > 0


def check_emitted(kcp: KCP, datagrams: list[bytes]) -> None:
    for d in datagrams:
        assert 24 <= len(d) <= kcp.mtu
        segs = decode_segments(d)
        assert sum(24 + h.length for h, _ in segs) == len(d)
        for h, payload in segs:
            assert h.conv == kcp.conv
            assert h.cmd in (81, 82, 83, 84)
            if h.cmd == 81:
                assert h.length > 0 and len(payload) == h.length
            else:
                assert h.length == 0


def replay(exchange: dict[str, Any], side: str) -> tuple[list[bytes], list[bytes]]:
    """Replay ``side``; return (what our core delivered, what kcp-go's app read).

    Also checks our ACKs by meaning: each echoes the (sn, ts) of a PUSH we
    received, and every PUSH received is acknowledged explicitly or by una.
    """
    settings = exchange["settings"]
    incoming = "s2c" if side == "client" else "c2s"
    kcp = KCP(exchange["conv"])
    nd, interval, resend, nc = settings["nodelay"]
    kcp.nodelay(nd, interval, resend, nc)
    kcp.wndsize(settings["sndwnd"], settings["rcvwnd"])
    kcp.stream = settings["stream"]
    mtu = settings["mtu"]
    if settings["crypt"] != "plain":
        mtu -= CRYPT_HEADER
    if settings["fec_data_shards"]:
        mtu -= FEC_HEADER + 2
    kcp.setmtu(mtu)

    events: list[tuple[float, int, str, Any]] = []
    for n, a in enumerate(exchange["app"]):
        if a["side"] == side and a["op"] == "write":
            events.append((a["t_ms"], n, "write", bytes.fromhex(a["hex"])))
    pending_recovery: list[bytes] = []
    for dg in exchange["datagrams"]:
        if dg["dir"] != incoming:
            continue
        data = kcp_bytes(exchange, dg)
        if dg.get("dropped"):
            if data is not None:
                pending_recovery.append(data)
            continue
        if data is None:  # parity: kcp-go's FEC decoder recovers the lost data here
            for rec in pending_recovery:
                events.append((dg["t_ms"], 10**6 + dg["i"], "recovered", rec))
            pending_recovery = []
            continue
        events.append((dg["t_ms"], 10**6 + dg["i"], "input", data))
    events.sort(key=lambda e: (e[0], e[1]))

    base = 1000
    delivered: list[bytes] = []
    pushes: set[tuple[int, int]] = set()
    acked: set[tuple[int, int]] = set()
    una = 0

    def emit(datagrams: list[bytes]) -> None:
        nonlocal una
        check_emitted(kcp, datagrams)
        for d in datagrams:
            for h, _ in decode_segments(d):
                una = max(una, h.una)
                if h.cmd == 82:
                    acked.add((h.sn, h.ts))

    for t_ms, _, kind, payload in events:
        now = base + int(t_ms)
        if kind == "write":
            if kcp.stream:
                kcp.send(payload)
            else:  # kcp-go's UDPSession.Write cuts messages at mss
                for i in range(0, len(payload), kcp.mss):
                    kcp.send(payload[i : i + kcp.mss])
            emit(kcp.flush(now))
        else:
            pushes.update((h.sn, h.ts) for h, _ in decode_segments(payload) if h.cmd == 81)
            emit(kcp.input(payload, now, regular=(kind == "input")))
            emit(kcp.flush(now))
        while True:
            msg = kcp.recv()
            if msg is None:
                break
            delivered.append(msg)
    reads = [
        bytes.fromhex(a["hex"]) for a in exchange["app"] if a["side"] == side and a["op"] == "read"
    ]
    assert pushes, "the replayed side received data"
    assert acked <= pushes  # every ACK echoes a received PUSH's sn and ts
    assert {sn for sn, _ in pushes} == set(range(una))  # and una covers them all
    return delivered, reads


@pytest.mark.parametrize("side", ["client", "server"])
@pytest.mark.parametrize("exchange", EXCHANGES, ids=IDS)
def test_replaying_one_side_delivers_its_reads(exchange: dict[str, Any], side: str) -> None:
    delivered, reads = replay(exchange, side)
    assert reads, "every exchange has reads on both sides"
    if exchange["settings"]["stream"]:
        assert b"".join(delivered) == b"".join(reads)
    else:
        assert delivered == reads


def test_ack_filtering_matches_kcp_go() -> None:
    """kcp-go only ACKs sn >= rcv_nxt plus the last of a batch (flush, 'filter jitters')."""
    k = KCP(1)
    src = KCP(1)
    src.nodelay(1, 10, 0, 1)
    for i in range(3):
        src.send(bytes([i]) * 10)
    dgs = src.flush(0)
    assert len(dgs) == 1
    k.input(dgs[0], 5)
    out = k.flush(5)
    acks = [h for d in out for h, _ in decode_segments(d) if h.cmd == 82]
    # all three sns are below rcv_nxt (3) after the input: only the last ACK is written
    assert [(h.sn, h.una) for h in acks] == [(2, 3)]
