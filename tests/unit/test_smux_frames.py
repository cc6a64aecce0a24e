"""kcpsock.smux_frames: frames and the smux session machine on a fake clock.

Vectors captured from kcptun 20210922 (the team's wire capture, copied here;
the rules they exercise: docs/KCPTUN.md §2, §5 and §6):
kcptun-client without compression opens stream 3 with ``01 00 00 00 03 00
00 00`` and sends 13 bytes as ``01 02 0d 00 03 00 00 00 ...``;
kcptun-server v2 answers a 5-byte PSH with ``02 04 08 00 03 00 00 00 05 00
00 00 00 00 20 00`` (UPD consumed 5, window 2097152).
"""

from __future__ import annotations

import struct

import pytest

from kcpsock.errors import KCPClosedError
from kcpsock.smux_frames import (
    INITIAL_PEER_WINDOW,
    Cmd,
    Frame,
    FrameParser,
    SmuxConfig,
    SmuxProtocol,
    SmuxProtocolError,
    encode_frame,
    encode_update,
)

SYN3_V1 = bytes.fromhex("0100000003000000")
PSH3_V1_HEADER = bytes.fromhex("01020d0003000000")
UPD3_V2 = bytes.fromhex("02040800030000000500000000002000")


def hdr(version: int, cmd: int, length: int, sid: int) -> bytes:
    return struct.pack("<BBHI", version, cmd, length, sid)


def pair(version: int = 1, **kw: object) -> tuple[SmuxProtocol, SmuxProtocol]:
    cfg = SmuxConfig(version=version, **kw)  # type: ignore[arg-type]
    return SmuxProtocol(cfg, client=True, now_ms=0), SmuxProtocol(cfg, client=False, now_ms=0)


def paused(proto: SmuxProtocol) -> bool:
    """``proto.reading_paused``, read again (mypy would keep an earlier narrowing)."""
    return proto.reading_paused


def pump(a: SmuxProtocol, b: SmuxProtocol, now: int = 0) -> None:
    """Move queued bytes both ways until both are quiet."""
    for _ in range(100):
        x, y = a.data_to_send(), b.data_to_send()
        if not x and not y:
            return
        if x:
            b.receive_data(x, now)
        if y:
            a.receive_data(y, now)
    raise AssertionError("pump did not settle")


# ------------------------------------------------------------------ frames


def test_vectors_encode() -> None:
    assert encode_frame(1, Cmd.SYN, 3) == SYN3_V1
    assert encode_frame(1, Cmd.PSH, 3, b"x" * 13)[:8] == PSH3_V1_HEADER
    assert encode_update(2, 3, 5, 2097152) == UPD3_V2


def test_vectors_parse() -> None:
    p = FrameParser(1)
    assert p.feed(SYN3_V1 + PSH3_V1_HEADER + b"second line!\n") == [
        Frame(Cmd.SYN, 3),
        Frame(Cmd.PSH, 3, b"second line!\n"),
    ]
    assert FrameParser(2).feed(UPD3_V2) == [Frame(Cmd.UPD, 3, UPD3_V2[8:])]


def test_length_ignored_for_syn_fin_nop_and_upd_always_8() -> None:
    p = FrameParser(1)
    # SYN/FIN/NOP with a nonzero length: only 8 bytes consumed, the next frame follows at once
    stream = hdr(1, Cmd.SYN, 100, 5) + hdr(1, Cmd.NOP, 7, 0) + hdr(1, Cmd.FIN, 9, 5)
    # UPD with length 0 still carries 8 bytes; PSH with length 0 carries nothing
    stream += hdr(1, Cmd.UPD, 0, 5) + struct.pack("<II", 1, 2) + hdr(1, Cmd.PSH, 0, 5)
    frames = p.feed(stream)
    assert [f.cmd for f in frames] == [Cmd.SYN, Cmd.NOP, Cmd.FIN, Cmd.UPD, Cmd.PSH]
    assert frames[3].data == struct.pack("<II", 1, 2)
    assert frames[4].data == b""
    assert p.buffered == 0


def test_parser_keeps_partial_frames() -> None:
    p = FrameParser(2)
    data = encode_frame(2, Cmd.PSH, 7, b"hello")
    assert p.feed(data[:3]) == []
    assert p.feed(data[3:10]) == []
    assert p.buffered == 10
    assert p.feed(data[10:]) == [Frame(Cmd.PSH, 7, b"hello")]


@pytest.mark.parametrize(
    ("data", "match"),
    [(hdr(2, Cmd.NOP, 0, 0), "version byte 2, expected 1"), (hdr(1, 5, 0, 0), "unknown cmd 5")],
)
def test_protocol_errors(data: bytes, match: str) -> None:
    with pytest.raises(SmuxProtocolError, match=match):
        FrameParser(1).feed(data)
    proto = SmuxProtocol(SmuxConfig(), client=False, now_ms=0)
    changes = proto.receive_data(data, 0)
    assert changes.terminated and not proto.alive
    assert proto.error is not None and match in proto.error
    with pytest.raises(ConnectionResetError, match="smux session ended: smux protocol error"):
        proto.open_stream()


def test_encode_frame_rejects_oversized() -> None:
    with pytest.raises(ValueError, match="65535"):
        encode_frame(1, Cmd.PSH, 1, bytes(65536))


# ------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"version": 3}, "version"),
        ({"keepalive_interval_ms": 40_000}, "keepalive_timeout_ms"),
        ({"max_frame_size": 65536}, "max_frame_size"),
        ({"max_stream_buffer": 8_000_000}, "max_stream_buffer"),
        ({"max_receive_buffer": 0}, "max_receive_buffer"),
    ],
)
def test_config_validation(kw: dict[str, int], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SmuxConfig(**kw)  # type: ignore[arg-type]


def test_config_types() -> None:
    with pytest.raises(TypeError, match="version"):
        SmuxConfig(version="1")  # type: ignore[arg-type]


# ---------------------------------------------------------- the session


def test_stream_ids_client_odd_server_even() -> None:
    c, s = pair()
    assert [c.open_stream() for _ in range(3)] == [3, 5, 7]
    assert [s.open_stream() for _ in range(2)] == [2, 4]
    assert c.data_to_send() == b"".join(hdr(1, Cmd.SYN, 0, sid) for sid in (3, 5, 7))


def test_go_away_when_ids_wrap() -> None:
    c, _ = pair()
    c._next_sid = 0xFFFFFFFD
    assert c.open_stream() == 0xFFFFFFFF
    with pytest.raises(ConnectionRefusedError, match="exhausted"):
        c.open_stream()
    with pytest.raises(ConnectionRefusedError):
        c.open_stream()


def test_open_accept_data_and_fin() -> None:
    c, s = pair()
    sid = c.open_stream()
    assert c.write(sid, b"hello") == 5
    pump(c, s)
    assert s.accept_stream() == sid
    assert s.accept_stream() is None
    assert s.read(sid, 2) == b"he"
    assert s.read(sid, 100, peek=True) == b"llo"
    assert s.read(sid, 100) == b"llo"
    assert s.read(sid, 100) is None  # nothing yet, not EOF
    c.write(sid, b"bye")
    c.close_stream(sid)
    pump(c, s)
    assert s.readable(sid)
    assert s.read(sid, 100) == b"bye"
    assert s.read(sid, 100) == b""  # EOF after the buffered bytes
    assert s.describe(sid) == "eof"
    with pytest.raises(KCPClosedError):
        c.write(sid, b"x")


def test_duplicate_syn_ignored_unknown_ids_dropped() -> None:
    _, s = pair()
    s.receive_data(hdr(1, Cmd.SYN, 0, 3) + hdr(1, Cmd.SYN, 0, 3), 0)
    assert s.accept_stream() == 3
    assert s.accept_stream() is None
    s.receive_data(hdr(1, Cmd.PSH, 3, 9) + b"abc", 0)
    s.receive_data(hdr(1, Cmd.FIN, 0, 11), 0)
    s.receive_data(hdr(1, Cmd.UPD, 8, 13) + bytes(8), 0)
    assert s.dropped == 3
    assert s.alive
    assert s.bucket == s.config.max_receive_buffer  # dropped bytes cost nothing


def test_psh_after_local_close_is_dropped_and_tokens_return() -> None:
    c, s = pair(max_receive_buffer=100, max_stream_buffer=50)
    sid = c.open_stream()
    c.write(sid, b"x" * 60)
    pump(c, s)
    assert s.accept_stream() == sid
    assert s.bucket == 40
    s.close_stream(sid)
    assert s.bucket == 100  # unread bytes returned
    assert s.data_to_send() == hdr(1, Cmd.FIN, 0, sid)
    s.receive_data(hdr(1, Cmd.PSH, 2, sid) + b"zz", 0)
    assert s.dropped == 1
    assert s.close_stream(sid).streams == set()  # idempotent


def test_v1_bucket_pauses_reading_until_the_application_reads() -> None:
    c, s = pair(max_receive_buffer=1000, max_stream_buffer=1000)
    sid = c.open_stream()
    c.write(sid, b"a" * 1500)
    pump(c, s)
    s.accept_stream()
    assert s.bucket == -500
    assert s.reading_paused
    s.read(sid, 600)
    assert not paused(s)
    assert s.bucket == 100


def test_accept_backlog_pauses_reading() -> None:
    _, s = pair(accept_backlog=2)
    s.receive_data(hdr(1, Cmd.SYN, 0, 3) + hdr(1, Cmd.SYN, 0, 5), 0)
    assert s.reading_paused
    s.accept_stream()
    assert not s.reading_paused


def test_send_buffer_is_bounded_and_split_into_frames() -> None:
    c, _ = pair(max_send_buffer=100_000, max_frame_size=32768)
    sid = c.open_stream()
    c.data_to_send()
    assert c.write(sid, bytes(250_000)) == 100_000
    assert not c.writable(sid)
    assert c.write(sid, b"more") == 0
    out = c.data_to_send()
    assert len(out) == 100_000 + 8 * 4  # 32768 * 3 + 1696: four frames
    assert struct.unpack_from("<BBHI", out, 0) == (1, Cmd.PSH, 32768, sid)
    assert c.writable(sid)


# ------------------------------------------------------------ keepalive


def test_keepalive_nop_every_interval_and_timeout_after_silence() -> None:
    c = SmuxProtocol(SmuxConfig(), client=True, now_ms=1000)
    assert c.next_timer_ms() == 11_000
    c.handle_timer(10_999)
    assert c.data_to_send() == b""
    c.handle_timer(11_000)
    assert c.data_to_send() == hdr(1, Cmd.NOP, 0, 0)
    c.handle_timer(21_000)
    assert c.data_to_send() == hdr(1, Cmd.NOP, 0, 0)
    assert c.alive
    changes = c.handle_timer(31_000)  # 30 s without any frame
    assert changes.terminated
    assert c.error is not None and "keepalive timeout" in c.error
    assert c.next_timer_ms() is None


def test_any_frame_in_the_period_keeps_the_session() -> None:
    c = SmuxProtocol(SmuxConfig(), client=True, now_ms=0)
    c.receive_data(hdr(1, Cmd.NOP, 0, 0), 29_000)
    c.handle_timer(30_000)
    assert c.alive
    c.receive_data(hdr(1, Cmd.NOP, 0, 0), 59_999)
    c.handle_timer(60_000)
    assert c.alive
    c.handle_timer(90_000)  # nothing since 60 s
    assert not c.alive


def test_no_timeout_while_the_bucket_is_exhausted() -> None:
    c, s = pair(max_receive_buffer=10, max_stream_buffer=10)
    sid = c.open_stream()
    c.write(sid, b"x" * 20)
    pump(c, s)
    assert s.reading_paused
    s.handle_timer(30_000)  # data arrived in the period
    s.handle_timer(60_000)  # nothing arrived, but we stopped reading: not the peer's fault
    assert s.alive
    s.accept_stream()
    s.read(sid, 20)
    s.handle_timer(90_000)
    assert not s.alive


def test_keepalive_disabled() -> None:
    c = SmuxProtocol(SmuxConfig(keepalive_disabled=True), client=True, now_ms=0)
    assert c.next_timer_ms() is None
    c.handle_timer(10**9)
    assert c.alive and c.data_to_send() == b""


# ------------------------------------------------------------------- v2


def test_v2_sender_stops_at_the_initial_window_and_upd_releases() -> None:
    c, _ = pair(version=2, max_send_buffer=1 << 20, max_receive_buffer=1 << 22)
    sid = c.open_stream()
    sent = 0
    while True:
        n = c.write(sid, bytes(100_000))
        if not n:
            break
        sent += n
    assert sent == INITIAL_PEER_WINDOW
    assert not c.writable(sid)
    c.receive_data(encode_update(2, sid, 262144, 2097152), 0)
    assert c.writable(sid)
    assert c.write(sid, bytes(3_000_000)) == (1 << 20) - INITIAL_PEER_WINDOW  # send buffer
    c.data_to_send()
    assert c.write(sid, bytes(3_000_000)) == 2097152 - (1 << 20)  # the new window


def test_v2_receiver_updates_on_first_read_and_every_half_window() -> None:
    c, s = pair(version=2, max_stream_buffer=1000, max_receive_buffer=10_000)
    sid = c.open_stream()
    c.write(sid, bytes(900))
    pump(c, s)
    s.accept_stream()
    s.read(sid, 5)
    assert s.data_to_send() == encode_update(2, sid, 5, 1000)  # first read
    s.read(sid, 400)
    assert s.data_to_send() == b""  # 400 < 500
    s.read(sid, 100)
    assert s.data_to_send() == encode_update(2, sid, 505, 1000)  # incr reached 500


def test_v2_upd_vector_from_kcptun_server() -> None:
    c, _ = pair(version=2)
    sid = c.open_stream()
    assert sid == 3
    c.write(sid, b"hello")
    c.receive_data(UPD3_V2, 0)
    stream = c._streams[3]
    assert (stream.peer_consumed, stream.peer_window) == (5, 2097152)


def test_v2_fin_with_closed_window_is_a_broken_pipe() -> None:
    c, _ = pair(version=2, max_send_buffer=1 << 20)
    sid = c.open_stream()
    assert c.write(sid, bytes(INITIAL_PEER_WINDOW + 10)) == INITIAL_PEER_WINDOW
    c.receive_data(hdr(2, Cmd.FIN, 0, sid), 0)
    assert c.writable(sid)  # write would not block: it raises
    with pytest.raises(BrokenPipeError, match="peer closed"):
        c.write(sid, b"x")


def test_v2_peer_claiming_too_much_consumed_resets_the_stream() -> None:
    c, _ = pair(version=2)
    sid = c.open_stream()
    c.write(sid, b"abc")
    c.receive_data(encode_update(2, sid, 10, 1000), 0)
    with pytest.raises(ConnectionResetError, match="ErrConsumed"):
        c.write(sid, b"x")
    with pytest.raises(ConnectionResetError):
        c.read(sid, 1)


def test_v2_window_arithmetic_wraps_like_uint32() -> None:
    c, _ = pair(version=2)
    sid = c.open_stream()
    stream = c._streams[sid]
    stream.num_written = 0xFFFFFF00
    stream.peer_consumed = 0xFFFFFF00
    assert c.write(sid, bytes(1000)) == 1000
    assert stream.num_written == (0xFFFFFF00 + 1000) & 0xFFFFFFFF
    c.receive_data(encode_update(2, sid, stream.num_written, 100), 0)
    assert c.write(sid, bytes(1000)) == 100


def test_v1_accepts_upd_but_ignores_windows() -> None:
    c, _ = pair(version=1)
    sid = c.open_stream()
    c.receive_data(encode_update(1, sid, 0, 0), 0)
    assert c.alive
    assert c.write(sid, b"v1 has no window") == 16


def test_terminate_wakes_everything_and_is_final() -> None:
    c, _ = pair()
    sid = c.open_stream()
    changes = c.terminate("the KCP session died")
    assert changes.terminated and sid in changes.streams
    assert not c.has_data_to_send()
    assert c.readable(sid) and c.writable(sid)
    with pytest.raises(ConnectionResetError, match="the KCP session died"):
        c.read(sid, 1)
    assert not c.terminate("again").terminated
    assert c.receive_data(SYN3_V1, 0).accepted is False
