"""``kcpsock stats``: how to read kcpsock's SNMP counters (kcp-go's names).

The counters are process-wide and cumulative, as kcp-go's ``DefaultSnmp``;
``--stats N`` on a session command prints them every N seconds.
"""

from __future__ import annotations

import argparse
from typing import Any

from kcpsock.cli.common import add_output_options
from kcpsock.cli.display import Display

__all__ = ["DESCRIPTIONS", "register", "run"]

#: What each kcp-go counter means (kcp-go snmp.go and where sess.go counts it).
DESCRIPTIONS = {
    "BytesSent": "bytes the application handed to send/sendall",
    "BytesReceived": "bytes the application got from recv",
    "MaxConn": "highest number of sessions open at once",
    "ActiveOpens": "sessions dialed (client side)",
    "PassiveOpens": "sessions accepted by listeners",
    "CurrEstab": "sessions open now",
    "InErrs": "datagrams dropped as malformed (too short, wrong source)",
    "InCsumErrors": "datagrams dropped on a CRC/tag mismatch: wrong --key or --crypt, or damage",
    "KCPInErrors": "datagrams the KCP core rejected (bad header, unknown command)",
    "InPkts": "datagrams accepted after decryption",
    "OutPkts": "UDP datagrams sent (data, parity, retransmissions)",
    "InSegs": "KCP segments received (including FEC-recovered ones)",
    "OutSegs": "KCP segments sent (data, ACKs, window probes)",
    "InBytes": "bytes of accepted datagrams (crypto header removed)",
    "OutBytes": "UDP payload bytes sent",
    "RetransSegs": "segments sent again: LostSegs + FastRetransSegs + EarlyRetransSegs",
    "FastRetransSegs": "retransmitted after --resend duplicate ACKs (fast retransmit)",
    "EarlyRetransSegs": "retransmitted early (few segments in flight)",
    "LostSegs": "retransmitted on timeout (RTO expired): the costly kind",
    "RepeatSegs": "duplicate data segments received (a retransmission was not needed)",
    "FECFullShards": "FEC groups that arrived complete (no recovery needed)",
    "FECFullShardSet": "FEC groups that arrived complete (no recovery needed)",
    "FECParityShards": "FEC parity packets received",
    "FECErrs": "FEC packets dropped as malformed or unrecoverable",
    "FECRecovered": "data packets rebuilt from parity: losses repaired without retransmission",
    "FECShardSet": "FEC groups held waiting for shards (gauge)",
    "FECShardMin": "newest FEC group id held (gauge)",
    "FECShortShards": "data shards dropped before their group could be recovered",
    "RingBufferSndQueue": "segments waiting to enter the send window at the last flush (gauge)",
    "RingBufferRcvQueue": "segments waiting for the application at the last flush (gauge)",
    "RingBufferSndBuffer": "segments in flight, sent but not acknowledged (gauge)",
    "OOBPackets": "out-of-band datagrams received",
}

GUIDE = """\
Reading the counters:
  * Loss on the path shows as LostSegs + FastRetransSegs (repaired by
    retransmission) and FECRecovered (repaired by parity, no round trip).
    With FEC on, FECRecovered high and LostSegs low is the goal.
  * InCsumErrors growing means the peer uses another --key or --crypt.
  * RepeatSegs high means needless retransmissions: RTO too short for the
    path (try --mode normal or a larger --interval).
  * Throughput is BytesSent/BytesReceived over time; OutBytes/BytesSent is
    the overhead (headers, FEC parity, retransmissions)."""


def register(sub: Any) -> None:
    """Add the ``stats`` command to the subparsers."""
    p = sub.add_parser(
        "stats",
        help="explain the SNMP counters (--stats N prints them live)",
        description="List kcpsock's SNMP counters (kcp-go's names) with what "
        "each one means; session commands print them with --stats N.",
    )
    add_output_options(p, stats=False)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``kcpsock stats``; returns the exit status."""
    import kcpsock

    names = [str(n) for n in kcpsock.snmp.header()]
    values = [int(v) for v in kcpsock.snmp.to_list()]
    display = Display(json_mode=args.json, live=False)
    if args.json:
        display.line(
            obj={
                "counters": [
                    {"name": n, "value": v, "meaning": DESCRIPTIONS.get(n, "")}
                    for n, v in zip(names, values)
                ]
            }
        )
        return 0
    width = max(len(n) for n in names)
    display.line("kcpsock SNMP counters (process-wide, cumulative; kcp-go's names and order)")
    display.line(
        "print them during a run with --stats N, e.g. `kcpsock bench -c HOST:PORT --stats 1`"
    )
    display.line("")
    for name in names:
        display.line(f"  {name:<{width}}  {DESCRIPTIONS.get(name, '(see kcp-go snmp.go)')}")
    display.line("")
    display.line(GUIDE)
    return 0
