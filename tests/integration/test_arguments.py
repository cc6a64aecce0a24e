"""Argument mistakes fail at the call, as socket.socket would, and leak nothing.

Each case of issue 11 §3, and the other public functions and setters checked
with the same eye.  Real UDP on 127.0.0.1 only; every wait is bounded.
"""

from __future__ import annotations

import errno
import gc
import io
import math
import os
import socket
import struct
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

import kcpsock
from kcpsock import KCP, KCPConfig
from kcpsock.session import drain_closing

KEY = kcpsock.derive_key("it's a secrect")


def _fds() -> int:
    return len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 0


def _settled_fds() -> int:
    """Count descriptors once earlier tests' leftovers closed theirs.

    Garbage of earlier tests (sockets closed by a finalizer) and their
    background closes (a session finishing from a timer closes its socket)
    would otherwise close descriptors between a test's two counts.
    """
    drain_closing(5.0, abort=True)
    gc.collect()
    return _fds()


@pytest.fixture
def listener() -> Iterator[kcpsock.Listener]:
    ln = kcpsock.listen(("127.0.0.1", 0))
    ln.settimeout(5)
    yield ln
    ln.close()


@pytest.fixture
def client(listener: kcpsock.Listener) -> Iterator[kcpsock.KCPSocket]:
    c = kcpsock.dial(listener.getsockname(), timeout=5)
    yield c
    c.close()


# --------------------------------------------------------------- MTU / codec


@pytest.mark.parametrize(
    "factory", [kcpsock.listen, kcpsock.create_server, kcpsock.dial], ids=lambda f: f.__name__
)
def test_an_mtu_the_codec_cannot_use_fails_at_the_call(factory: Any) -> None:
    block = kcpsock.new_block_crypt("aes", KEY)
    addr = ("127.0.0.1", 9 if factory is kcpsock.dial else 0)
    before = _settled_fds()
    with pytest.raises(ValueError, match="mtu 70 too small"):
        # 20 crypto + 8 FEC bytes leave 42 < 50 for KCP
        factory(addr, block=block, data_shards=10, parity_shards=3, mtu=70)
    assert _fds() <= before  # (a previous test's session may finish closing meanwhile)
    # the same MTU without FEC and cipher is fine
    obj = factory(addr, mtu=70)
    obj.close()


def test_listen_with_a_socket_checks_the_mtu_too() -> None:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("127.0.0.1", 0))
    try:
        with pytest.raises(ValueError, match="mtu"):
            kcpsock.listen(
                None, sock=u, block=kcpsock.new_block_crypt("aes-128-gcm", KEY[:16]), mtu=70
            )
    finally:
        u.close()


# -------------------------------------------------------------- dial cleanup


def test_failed_dial_closes_the_socket_it_created(monkeypatch: pytest.MonkeyPatch) -> None:
    # the receiver thread cannot start (a patched Thread.start: a
    # mypyc-compiled Session's own methods cannot be patched)
    real_start = threading.Thread.start

    def no_thread(self: threading.Thread) -> None:
        if self.name.startswith("kcpsock-recv-"):
            raise RuntimeError("can't start new thread")
        real_start(self)

    monkeypatch.setattr(threading.Thread, "start", no_thread)
    before = _settled_fds()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(RuntimeError, match="new thread"):
            kcpsock.dial(("127.0.0.1", 9))
        gc.collect()
    assert _fds() <= before  # (a previous test's session may finish closing meanwhile)
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


@pytest.mark.parametrize(
    ("kwargs", "exc"),
    [
        ({"timeout": math.inf}, OverflowError),
        ({"timeout": -1}, ValueError),
        ({"source_address": ("127.0.0.1", "x")}, TypeError),
        ({"source_address": "nonsense"}, ValueError),
        ({"mtu": 20}, ValueError),
        ({"dup": 17}, ValueError),
    ],
)
def test_bad_dial_arguments_open_nothing(kwargs: dict[str, Any], exc: type[Exception]) -> None:
    before = _settled_fds()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(exc):
            kcpsock.dial(("127.0.0.1", 9), **kwargs)
        gc.collect()
    assert _fds() <= before  # (a previous test's session may finish closing meanwhile)
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


# ------------------------------------------------------------------ timeouts


def _outcome(fn: Any, *args: Any) -> type[BaseException] | None:
    try:
        fn(*args)
    except BaseException as exc:  # compared with socket.socket's outcome
        return type(exc)
    return None


@pytest.mark.parametrize(
    "value", [math.inf, -math.inf, math.nan, -1, 1e300, 2**63, 9.3e9, "1", 0, 2.5, None]
)
def test_settimeout_fails_like_socket(
    value: Any, client: kcpsock.KCPSocket, listener: kcpsock.Listener
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as ref:
        expected = _outcome(ref.settimeout, value)
    assert _outcome(client.settimeout, value) is expected
    assert _outcome(listener.settimeout, value) is expected
    if expected is None:
        assert client.gettimeout() == value


def test_infinite_timeout_names_the_fix(client: kcpsock.KCPSocket) -> None:
    with pytest.raises(OverflowError, match="None"):
        client.settimeout(float("inf"))
    with pytest.raises(ValueError, match="NaN"):
        client.settimeout(float("nan"))
    assert client.gettimeout() == 5  # unchanged


def test_largest_timeout_still_works(client: kcpsock.KCPSocket) -> None:
    client.settimeout(kcpsock.sock.TIMEOUT_MAX)
    client.settimeout(0)
    with pytest.raises(BlockingIOError):
        client.recv(1)


# ----------------------------------------------------------------- SO_LINGER


@pytest.mark.parametrize("value", [1, b"x", b"\x01\x00\x00\x00", "ab", None])
def test_so_linger_bad_values_fail_like_socket(value: Any, client: kcpsock.KCPSocket) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as ref:
        expected = _outcome(ref.setsockopt, socket.SOL_SOCKET, socket.SO_LINGER, value)
    assert expected is not None
    got = _outcome(client.setsockopt, socket.SOL_SOCKET, socket.SO_LINGER, value)
    assert got is expected


def test_so_linger_int_says_what_to_pass(client: kcpsock.KCPSocket) -> None:
    with pytest.raises(OSError, match=r"struct.pack") as info:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, 1)
    assert info.value.errno == errno.EINVAL
    with pytest.raises(OSError, match="l_linger"):
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, -3))
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 3))
    assert client.session.linger == 3.0
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, bytearray(struct.pack("ii", 0, 9)))
    assert client.session.linger is None  # l_onoff 0: the default, background delivery


# ------------------------------------------------------------------ setters


def test_set_dup_caps_like_kcpconfig(client: kcpsock.KCPSocket) -> None:
    client.set_dup(16)
    with pytest.raises(ValueError, match=r"dup must be 0\.\.16"):
        client.set_dup(17)
    with pytest.raises(ValueError, match="dup"):
        client.set_dup(10**6)
    with pytest.raises(ValueError, match="dup"):
        KCPConfig(dup=17)
    with pytest.raises(TypeError, match="dup"):
        client.set_dup(1.0)  # type: ignore[arg-type]
    assert client.session.dup == 16


@pytest.mark.parametrize(("bad", "exc"), [(0, ValueError), (-1, ValueError), ("1", TypeError)])
def test_buffer_sizes(
    bad: Any, exc: type[Exception], client: kcpsock.KCPSocket, listener: kcpsock.Listener
) -> None:
    for setter in (
        client.set_read_buffer,
        client.set_write_buffer,
        listener.set_read_buffer,
        listener.set_write_buffer,
    ):
        with pytest.raises(exc, match="nbytes"):
            setter(bad)
    client.set_read_buffer(65536)
    listener.set_write_buffer(65536)


def test_recv_into_names_the_buffer(client: kcpsock.KCPSocket) -> None:
    with pytest.raises(TypeError, match="buffer must be a writable bytes-like"):
        client.recv_into("abc")
    with pytest.raises(TypeError, match="writable"):
        client.recv_into(b"abc")


def test_shutdown_how_type(client: kcpsock.KCPSocket) -> None:
    with pytest.raises(TypeError, match="how"):
        client.shutdown("rd")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="how"):
        client.shutdown(7)


def test_sendfile_checks_like_socket(client: kcpsock.KCPSocket, tmp_path: Any) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    with open(path) as text, pytest.raises(ValueError, match="binary mode"):
        client.sendfile(text)
    f = io.BytesIO(b"abc")
    with pytest.raises(ValueError, match="count must be a positive integer"):
        client.sendfile(f, count=0)
    with pytest.raises(TypeError, match="count"):
        client.sendfile(f, count="3")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="offset"):
        client.sendfile(f, offset=-1)
    assert client.sendfile(f, offset=1) == 2


def test_sendfile_refuses_a_non_blocking_socket_like_socket(client: kcpsock.KCPSocket) -> None:
    # socket.sendfile raises ValueError for a non-blocking socket (sending part
    # of a file, then BlockingIOError, would lose how much went)
    f = io.BytesIO(b"abc")
    client.setblocking(False)
    with pytest.raises(ValueError, match="non-blocking sockets are not supported"):
        client.sendfile(f)
    assert f.tell() == 0  # nothing read
    client.settimeout(5.0)  # a timeout is fine, as for socket.sendfile
    assert client.sendfile(f) == 3


# ------------------------------------------------ messages beyond the window


def test_message_with_more_fragments_than_the_receivers_window() -> None:
    """kcp-go never delivers it (the receiver reassembles only within its
    window): refuse it at send, naming the window, instead of stalling.
    """
    a, b = KCP(1), KCP(1)
    b.wndsize(0, 8)
    b.setmtu(200)
    a.setmtu(200)
    now = 0
    b.send(b"hello")
    for now in (0, 10):  # (the first flush sends no data: cwnd starts at 0)
        for dg in b.flush(now):
            a.input(dg, now)  # a hears b's window: 8 segments
    assert a.rmt_wnd_max == 8
    with pytest.raises(ValueError, match="receiver's window of 8 segments"):
        a.send(b"x" * (9 * a.mss))
    msg = b"y" * (8 * a.mss)  # exactly the window: delivered
    a.send(msg)
    got = None
    for _ in range(200):
        now += 10
        for dg in a.flush(now):
            b.input(dg, now)
        for dg in b.flush(now):
            a.input(dg, now)
        got = b.recv()
        if got is not None:
            break
    assert got == msg


@pytest.mark.parametrize(
    ("config", "ordered"),
    [(None, True), (KCPConfig(rto_ordered=False), False), (KCPConfig.kcp_go(), False)],
)
def test_rto_ordered_reaches_the_session(config: Any, ordered: bool) -> None:
    """The retransmission rule of the config is the one the session's KCP runs."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.bind(("127.0.0.1", 0))
        kwargs = {} if config is None else {"config": config}
        with kcpsock.dial(peer.getsockname(), **kwargs) as sock:
            assert sock.session.kcp.rto_ordered is ordered


def test_rto_ordered_must_be_a_flag() -> None:
    with pytest.raises(TypeError, match="rto_ordered"):
        KCPConfig(rto_ordered="yes")  # type: ignore[arg-type]


# ------------------------------------------------------------------ addresses


@pytest.mark.parametrize(
    ("address", "exc"),
    [
        (("127.0.0.1", 9, 0), TypeError),  # socket: an AF_INET address must be a pair
        (("127.0.0.1", 9, 0, 0), TypeError),
        (("::1", 9, 0, 0, 0), TypeError),  # at most (host, port, flowinfo, scope_id)
        (("::1", 9, "0"), TypeError),
        (("::1", 9, 0, "lo"), TypeError),
        (("::1", 9, 1 << 20), ValueError),  # flowinfo has 20 bits
        (("::1", 9, 0, 1 << 32), ValueError),
    ],
)
def test_bad_address_tuples_fail_like_socket(address: Any, exc: type[Exception]) -> None:
    before = _settled_fds()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(exc, match="address"):
            kcpsock.dial(address)
        with pytest.raises(exc, match="address"):
            kcpsock.listen(address)
        gc.collect()
    assert _fds() <= before
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


def test_ipv6_address_keeps_its_flowinfo_and_scope_id() -> None:
    # a link-local address is only reachable with its scope id; dial and
    # listen pass the tuple's extra fields on as socket.connect/bind would
    from kcpsock.sock import _sockaddr

    sa = ("fe80::1", 4000, 0, 0)
    assert _sockaddr(socket.AF_INET6, sa, ("fe80::1", 4000, 0, 3)) == ("fe80::1", 4000, 0, 3)
    assert _sockaddr(socket.AF_INET6, sa, ("fe80::1", 4000, 7)) == ("fe80::1", 4000, 7, 0)
    assert _sockaddr(socket.AF_INET6, sa, ("fe80::1", 4000)) == sa
    assert _sockaddr(socket.AF_INET, ("127.0.0.1", 9), ("127.0.0.1", 9)) == ("127.0.0.1", 9)


def test_ipv6_four_tuple_dials_and_listens() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        listener = kcpsock.listen(("::1", 0, 0, 0))
    except OSError as exc:
        pytest.skip(f"no ::1 here: {exc}")
    with listener:
        port = listener.getsockname()[1]
        with kcpsock.dial(("::1", port, 0, 0), timeout=5) as client:
            client.sendall(b"ping")
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(5)
                assert conn.recv(4) == b"ping"


def test_listen_on_a_socket_bound_elsewhere_refuses_another_port() -> None:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        udp.bind(("127.0.0.1", 0))
        bound = udp.getsockname()[1]
        other = 1 if bound != 1 else 2
        with pytest.raises(ValueError, match="already bound"):
            kcpsock.listen(("127.0.0.1", other), sock=udp)
        # the port it is bound to, or port 0 (any), is fine
        with kcpsock.listen(("127.0.0.1", bound), sock=udp) as listener:
            assert listener.getsockname()[1] == bound
    finally:
        udp.close()
