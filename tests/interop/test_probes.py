"""kcp-go answers kcpsock's window probes: create_connection and keep-alive work against it.

kcpsock's handshake (``create_connection``) and keep-alive are KCP window
probes (IKCP_CMD_WASK); every KCP answers them with IKCP_CMD_WINS at its
next flush.  These tests run the real kcp-go (tests/interop/peer) with
kcp-go's own defaults (interval 100 ms, windows 32, message mode) and with a
fast profile, against kcpsock with no configuration at all.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import kcpsock
from tests.helpers import echo_roundtrip
from tests.interop.gopeer import DEFAULT_KEY, GoServer, pattern, peer_flags

pytestmark = pytest.mark.interop

KCP_GO_DEFAULTS = dict(nodelay=(0, 100, 0, 0), wnd=(32, 32))


@pytest.mark.parametrize(
    "profile",
    [pytest.param(KCP_GO_DEFAULTS, id="kcp-go-defaults"), pytest.param({}, id="fast")],
)
def test_create_connection_to_kcpgo_returns_once_it_answered(
    kcppeer: Path, profile: dict[str, tuple[int, ...]]
) -> None:
    with GoServer(kcppeer, "echo-server", peer_flags(**profile)) as server:  # type: ignore[arg-type]
        t0 = time.monotonic()
        sock = kcpsock.create_connection(server.address, timeout=10)
        elapsed = time.monotonic() - t0
        try:
            assert sock.segments_received > 0  # kcp-go's WINS
            sock.settimeout(30)
            data = pattern(5, 100_000)
            assert echo_roundtrip(sock, data, 8192) == data
        finally:
            sock.close()
    assert elapsed < 5  # at most a few kcp-go flush intervals


def test_create_connection_with_a_wrong_key_times_out(kcppeer: Path) -> None:
    flags = peer_flags(crypt="aes", key="right")
    with GoServer(kcppeer, "echo-server", flags) as server:
        block = kcpsock.new_block_crypt("aes", kcpsock.derive_key(DEFAULT_KEY))
        with pytest.raises(TimeoutError, match="key, cipher"):
            kcpsock.create_connection(server.address, timeout=1.0, block=block)


def test_idle_session_with_kcpgo_survives_on_probe_answers(kcppeer: Path) -> None:
    with GoServer(kcppeer, "echo-server", peer_flags(**KCP_GO_DEFAULTS)) as server:  # type: ignore[arg-type]
        sock = kcpsock.create_connection(
            server.address, timeout=10, keepalive_interval=0.3, keepalive_timeout=1.5
        )
        try:
            sock.settimeout(30)
            assert echo_roundtrip(sock, b"before", 64) == b"before"
            seen = sock.segments_received
            time.sleep(3.0)  # not synchronisation: idle twice the keep-alive timeout
            assert sock.session.failure is None
            assert sock.segments_received > seen  # WINS answers to our WASK probes
            assert echo_roundtrip(sock, b"after", 64) == b"after"
        finally:
            sock.close()


def test_kcpgo_that_goes_away_is_detected(kcppeer: Path) -> None:
    server = GoServer(kcppeer, "echo-server", peer_flags())
    server.start()
    try:
        sock = kcpsock.create_connection(
            server.address, timeout=10, keepalive_interval=0.3, keepalive_timeout=1.5
        )
        sock.settimeout(30)
        assert echo_roundtrip(sock, b"hello", 64) == b"hello"
    finally:
        server.close()
    t0 = time.monotonic()
    assert sock.recv(10) == b""  # the peer is gone: end of stream
    assert time.monotonic() - t0 < 10
    sock.close()
