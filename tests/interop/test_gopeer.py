"""The Go peer against itself: kcp-go <-> kcp-go, directly and through the relay.

These pin down the test harness (peer build, flags, pattern, relay) so that
a failure in the kcpsock interop tests points at kcpsock.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from kcpsock.relay import Relay
from tests.interop.gopeer import GoServer, pattern, peer_flags, run_client

pytestmark = pytest.mark.interop


def test_pattern_is_sha256_blocks() -> None:
    data = pattern(7, 100)
    assert data[:32] == hashlib.sha256(b"7:0").digest()
    assert data[32:64] == hashlib.sha256(b"7:1").digest()
    assert len(data) == 100
    assert pattern(7, 2_000_010)[1_000_003:1_000_013] == data[:10]


@pytest.mark.parametrize(("crypt", "fec"), [("null", (0, 0)), ("aes", (10, 3))])
def test_go_echo_direct(kcppeer: Path, crypt: str, fec: tuple[int, int]) -> None:
    flags = peer_flags(crypt=crypt, ds=fec[0], ps=fec[1])
    with GoServer(kcppeer, "echo-server", flags) as server:
        result = run_client(
            kcppeer, "echo-client", server.address, [*flags, "-bytes=300000", "-srtt=1"]
        )
    assert result["bytes"] == "300000"
    assert int(result["sent"]) > 0 and "lost" in result and "repeat" in result
    if "srtt_max" in result:  # (a transfer shorter than 1 ms has no sample)
        assert float(result["srtt_mean"]) <= int(result["srtt_max"])


def test_go_echo_through_lossy_relay(kcppeer: Path) -> None:
    flags = peer_flags(crypt="salsa20", ds=10, ps=3, stream=True)
    with (
        GoServer(kcppeer, "echo-server", flags) as server,
        Relay(target=server.address, loss=0.1, reorder=0.05, dup=0.05, seed=11) as relay,
    ):
        result = run_client(kcppeer, "echo-client", relay.address, [*flags, "-bytes=200000"])
        up, down = relay.up, relay.down
    assert result["bytes"] == "200000"
    assert up.dropped > 0 and down.dropped > 0
    assert up.reordered > 0 and up.duplicated > 0


def test_go_sink_and_ping(kcppeer: Path) -> None:
    flags = peer_flags(crypt="aes", ds=10, ps=3)
    with GoServer(kcppeer, "sink-server", flags) as server:
        sent = run_client(kcppeer, "send", server.address, [*flags, "-bytes=1000000"])
        sink = server.next_line()
    assert sent["bytes"] == "1000000"
    assert sink.startswith("SINK bytes=1000000 ")
    # the resend counters tools/bench.py's stability table shows
    assert int(sent["sent"]) >= 1000000 // 1400
    assert int(sent["lost"]) >= 0 and int(sent["fast"]) >= 0 and int(sent["repeat"]) >= 0
    assert " repeat=" in sink
    with GoServer(kcppeer, "echo-server", flags) as server:
        ping = run_client(kcppeer, "ping", server.address, [*flags, "-rounds=50"])
    assert ping["rounds"] == "50"
    assert float(ping["p50_us"]) > 0
