"""The ``kcpsock`` commands against the real kcp-go (tests/interop's Go peer).

Proves the claim of the options table: with kcptun's option names and
defaults, and the key derived from ``--key`` as kcptun derives it, the
command line talks to a kcp-go peer configured the kcptun way.  Skipped
without Go and Debian's kcp-go, unless KCPSOCK_REQUIRE_INTEROP=1.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_cli import procs, run_cli  # noqa: F401 - fixture
from tests.interop.gopeer import GoServer, PeerUnavailable, build_peer, peer_flags, run_client

pytestmark = pytest.mark.interop

# kcptun's defaults (client/main.go, server/main.go): mode fast, MTU 1350, FEC 10/3, stream.
KCPTUN_FAST: dict[str, Any] = {
    "nodelay": (0, 30, 2, 1),
    "mtu": 1350,
    "ds": 10,
    "ps": 3,
    "stream": True,
}


@pytest.fixture(scope="module")
def gopeer() -> Path:
    """The built Go peer (skip without Go, fail under KCPSOCK_REQUIRE_INTEROP=1)."""
    try:
        return build_peer()
    except PeerUnavailable as exc:
        if os.environ.get("KCPSOCK_REQUIRE_INTEROP", "") not in ("", "0"):
            pytest.fail(f"interop required (KCPSOCK_REQUIRE_INTEROP=1) but {exc}")
        pytest.skip(str(exc))


def test_connect_with_kcptun_defaults_to_kcp_go_echo(gopeer: Path) -> None:
    with GoServer(gopeer, "echo-server", peer_flags(crypt="aes", **KCPTUN_FAST)) as go:
        data = os.urandom(150_000)
        result = run_cli(
            "connect",
            f"127.0.0.1:{go.address[1]}",
            "--raw",
            "--linger",
            "0.5",
            input=data,
            timeout=60,
        )
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == data


@pytest.mark.parametrize("crypt", ["aes-128", "salsa20", "tea", "sm4", "3des", "xor", "none"])
def test_connect_with_same_key_and_cipher(gopeer: Path, crypt: str) -> None:
    flags = peer_flags(crypt=crypt, key="correct horse", **KCPTUN_FAST)
    with GoServer(gopeer, "echo-server", flags) as go:
        result = run_cli(
            "connect",
            f"127.0.0.1:{go.address[1]}",
            "--raw",
            "--linger",
            "0.3",
            "--crypt",
            crypt,
            "--key",
            "correct horse",
            input=b"hello kcp-go\n",
            timeout=60,
        )
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == b"hello kcp-go\n"


def test_kcp_go_client_against_serve_raw(gopeer: Path, procs: Any) -> None:  # noqa: F811
    server = procs("serve", "127.0.0.1:0", "--raw", "--crypt", "twofish", "--key", "s3cret")
    host, port = server.address()
    flags = peer_flags(crypt="twofish", key="s3cret", bytes=300_000, **KCPTUN_FAST)
    result = run_client(gopeer, "echo-client", (host, port), flags, timeout=60)
    assert result["status"] == "OK", result
    assert int(result["bytes"]) == 300_000
    assert server.interrupt() == 130
