"""KCPSocket.drain: the one "everything acknowledged" wait (loopback, bounded)."""

from __future__ import annotations

import errno
import socket
import threading

import pytest

import kcpsock
from kcpsock.config import KCPConfig

FAST = KCPConfig.fast3(sndwnd=128, rcvwnd=128)


def test_drain_returns_once_the_peer_acknowledged_everything() -> None:
    with kcpsock.listen(("127.0.0.1", 0), config=FAST) as ln:
        ln.settimeout(5)
        client = kcpsock.dial(ln.getsockname(), config=FAST, timeout=5)
        try:
            assert client.drain(0) is True  # nothing sent: done at once
            data = bytes(range(256)) * 2000
            got = bytearray()

            def reader() -> None:
                conn, _ = ln.accept()  # KCP has no handshake: after the first data
                conn.settimeout(5)
                with conn:
                    while len(got) < len(data):
                        got.extend(conn.recv(65536))

            t = threading.Thread(target=reader, daemon=True)
            t.start()
            client.sendall(data)
            assert client.drain(10) is True
            assert client.figures()["waitsnd"] == 0
            t.join(10)
            assert bytes(got) == data
        finally:
            client.close()


def test_drain_times_out_without_a_peer() -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # receives, never answers
    silent.bind(("127.0.0.1", 0))
    try:
        client = kcpsock.dial(silent.getsockname(), config=FAST, timeout=5)
        try:
            client.sendall(b"nobody acknowledges this")
            assert client.drain(0) is False
            assert client.drain(0.2) is False
            assert client.figures()["waitsnd"] > 0
        finally:
            client.close()
    finally:
        silent.close()


def test_drain_arguments_and_closed_socket() -> None:
    with kcpsock.listen(("127.0.0.1", 0), config=FAST) as ln:
        client = kcpsock.dial(ln.getsockname(), config=FAST, timeout=5)
        with pytest.raises(ValueError, match="timeout"):
            client.drain(-1)
        with pytest.raises(TypeError, match="timeout"):
            client.drain("1")  # type: ignore[arg-type]
        client.close()
        with pytest.raises(OSError) as info:
            client.drain(0)
        assert info.value.errno == errno.EBADF
