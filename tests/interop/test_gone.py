"""kcp-go and the close watch: a live kcp-go peer is never taken for gone; one that left is.

A kcpsock reader waiting for data probes its silent peer with KCP window
probes (WASK) and reads EOF once a run of them went unanswered
(``KCPConfig.gone_timeout``).  kcp-go answers WASK with WINS at its next
flush (every 100 ms with its defaults) whatever its application does, so an
idle kcp-go peer, even behind 20 % loss, must keep the conversation alive;
a kcp-go client that closed (and exited) must read as the end of the stream
long before the 30 s keep-alive.
"""

from __future__ import annotations

import struct
import threading
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

import kcpsock
from kcpsock.relay import Relay
from tests.helpers import echo_roundtrip
from tests.interop.gopeer import GoServer, pattern, peer_flags, run_client

pytestmark = pytest.mark.interop

KCP_GO_DEFAULTS = dict(nodelay=(0, 100, 0, 0), wnd=(32, 32))
IO_TIMEOUT = 10.0


@pytest.mark.parametrize("loss", [0.0, 0.2], ids=["lossless", "loss20"])
def test_idle_kcpgo_peer_is_not_taken_for_gone(kcppeer: Path, loss: float) -> None:
    """Rounds of "echo, then wait 0.8 s for nothing": each wait is watched afresh."""
    flags = peer_flags(**KCP_GO_DEFAULTS)  # type: ignore[arg-type]
    with ExitStack() as stack:
        server = stack.enter_context(GoServer(kcppeer, "echo-server", flags))
        address = server.address
        if loss:
            relay = stack.enter_context(Relay(target=server.address, loss=loss, seed=7))
            address = relay.address
        sock = stack.enter_context(kcpsock.create_connection(address, timeout=IO_TIMEOUT))
        answers = 0
        for i in range(6):
            sock.settimeout(IO_TIMEOUT)
            msg = b"round %d" % i
            assert echo_roundtrip(sock, msg, 64) == msg
            seen = sock.segments_received
            sock.settimeout(0.8)  # the peer's application says nothing
            with pytest.raises(TimeoutError):
                sock.recv(10)
            assert sock.session.failure is None, i
            answers += sock.segments_received - seen  # kcp-go's WINS
        assert answers > 0  # (few: the gaps grow with the answer time, 0.1-0.5 s here)
        sock.settimeout(IO_TIMEOUT)
        data = pattern(3, 20_000)
        assert echo_roundtrip(sock, data, 4096) == data


def test_kcpgo_client_that_closed_reads_as_eof(kcppeer: Path) -> None:
    """kcp-go's send client writes, reads "DONE", closes and exits; the kcpsock
    handler reading on until EOF gets b"" from the close watch (a listener's
    UDP socket hears no ICMP).
    """
    nbytes = 50_000
    result: dict[str, Any] = {}
    done = threading.Event()
    with kcpsock.listen(("127.0.0.1", 0)) as ln:
        ln.settimeout(IO_TIMEOUT)

        def handler() -> None:
            try:
                conn, _ = ln.accept()
                with conn:
                    conn.settimeout(IO_TIMEOUT)
                    with conn.makefile("rb") as f:
                        (want,) = struct.unpack(">Q", f.read(8))
                        got = f.read(want)
                        conn.sendall(b"DONE")
                        result["data"] = got
                        result["rest"] = f.read()  # until EOF
                    result["failure"] = conn.session.failure
            except BaseException as exc:
                result["error"] = exc
            finally:
                done.set()

        threading.Thread(target=handler, daemon=True).start()
        host, port = ln.getsockname()[:2]
        run_client(kcppeer, "send", (host, port), peer_flags(bytes=nbytes, chunk=8192), timeout=30)
        assert done.wait(IO_TIMEOUT)
    assert "error" not in result, result.get("error")
    assert len(result["data"]) == nbytes
    assert result["rest"] == b""
    assert result["failure"] == "gone"


@pytest.mark.parametrize(
    "profile", [pytest.param(KCP_GO_DEFAULTS, id="kcp-go-defaults"), pytest.param({}, id="fast")]
)
def test_reply_then_close_from_a_kcpgo_server_reads_as_eof(
    kcppeer: Path, profile: dict[str, Any]
) -> None:
    """kcp-go's listener opens a new session for the first probe that arrives
    after it closed one, and that session answers: its WINS acknowledges
    nothing of what this conversation sent, which kcpsock takes as the end.
    """
    nbytes = 20_000
    flags = peer_flags(bytes=nbytes, seed=9, **profile)
    with GoServer(kcppeer, "reply-close-server", flags) as server:
        sock = kcpsock.create_connection(server.address, timeout=IO_TIMEOUT)
        with sock:
            sock.sendall(b"GET")
            with sock.makefile("rb") as f:
                body = f.read()  # until EOF
            assert body == pattern(9, nbytes)
            assert sock.session.failure == "gone"
            assert sock.session.kcp.stale_wins > 0  # the new session's answer
