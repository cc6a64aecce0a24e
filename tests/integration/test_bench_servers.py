"""tools/bench.py's kcpsock sink servers: each pattern serves many sessions at once.

The 'many' test measures kcpsock's listener behind two servers, a thread
per session (``sink-server``) and one thread with ``selectors``
(``select-server``); both must take every session's bytes and answer each
with DONE.  Real UDP on 127.0.0.1, bench's own processes, bounded in time.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

from tests.helpers import load_tool
from tests.interop.gopeer import GoServer

bench = load_tool("bench", "kcpsock_bench_tool")


@pytest.mark.parametrize("role", ["sink-server", "select-server"])
def test_server_takes_several_sessions_at_once(role: str) -> None:
    opts = argparse.Namespace(stream=True, ack_nodelay=False, timeline="")
    argv = bench._self_argv(role, "plain", opts)
    with GoServer(Path(sys.executable), argv=argv) as server:
        host, port = server.address
        client = [
            *bench._self_argv("multi-send", "plain", opts),
            "--connect",
            f"{host}:{port}",
            "--sessions",
            "8",
            "--bytes",
            "2000000",
        ]
        # multi-send fails unless every session got its DONE
        res = bench.run_argv(client, 60.0, "multi-send")
    assert int(res["bytes"]) == 2_000_000
    assert float(res["seconds"]) > 0


def test_many_names_both_kcpsock_servers() -> None:
    opts = argparse.Namespace(roots=["/a", "/b"], root_labels={"/a": "after", "/b": "before"})
    assert bench._many_label(opts, ("kcpsock", "/a", "select-server")) == (
        "kcpsock [after], selectors, one thread"
    )
    assert bench._many_label(opts, ("kcp-go", "", "sink-server")) == "kcp-go"
    single = argparse.Namespace(roots=["/a"], root_labels={"/a": "after"})
    assert bench._many_label(single, ("kcpsock", "/a", "sink-server")) == (
        "kcpsock, a thread per session"
    )


def _events(reader: object, chunks: list[bytes]) -> list[bool]:
    out: list[bool] = []
    for chunk in chunks:
        out += list(reader.feed(memoryview(chunk)))  # type: ignore[attr-defined]
    return out


def test_sink_reader_splits_the_protocol_at_any_byte() -> None:
    """Lengths and bodies cut anywhere, two transfers in one read, an empty body."""
    stream = (
        (5).to_bytes(8, "big") + b"hello" + (0).to_bytes(8, "big") + (3).to_bytes(8, "big") + b"abc"
    )
    whole = _events(bench.SinkReader(), [stream])
    assert whole == [True, False, True, False, True, False]
    for cut in range(1, len(stream)):
        reader = bench.SinkReader()
        assert _events(reader, [stream[:cut], stream[cut:]]) == whole, cut
        assert reader.want == -1 and reader.header == b""
    # an empty body ends its transfer in the read that completes its length
    assert _events(bench.SinkReader(), [(0).to_bytes(8, "big")]) == [True, False]
