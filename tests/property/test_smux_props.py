"""Property tests: smux frames, the session machine and snappy framing.

* frames round-trip through :class:`FrameParser` whatever the split;
* arbitrary bytes fed to a session either parse or end it with an error,
  never raise, and buffer at most what was fed;
* two machines joined by a pipe deliver every stream's bytes in order for
  any interleaving of writes, reads and transfers (v1 and v2), and the v2
  sender never has more than the peer's window in flight;
* snappy framing round-trips whatever the split, and arbitrary bytes give
  data or :class:`SnappyError`, both on the pure path and with cramjam.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from kcpsock import snappy
from kcpsock.smux_frames import (
    Cmd,
    Frame,
    FrameParser,
    SmuxConfig,
    SmuxProtocol,
    encode_frame,
    encode_update,
)
from kcpsock.snappy import FrameDecoder, FrameEncoder, SnappyError

frames = st.one_of(
    st.builds(
        lambda cmd, sid: Frame(cmd, sid),
        st.sampled_from([Cmd.SYN, Cmd.FIN, Cmd.NOP]),
        st.integers(0, 0xFFFFFFFF),
    ),
    st.builds(
        lambda sid, data: Frame(Cmd.PSH, sid, data),
        st.integers(0, 0xFFFFFFFF),
        st.binary(max_size=300),
    ),
    st.builds(
        lambda sid, c, w: Frame(Cmd.UPD, sid, encode_update(2, sid, c, w)[8:]),
        st.integers(0, 0xFFFFFFFF),
        st.integers(0, 0xFFFFFFFF),
        st.integers(0, 0xFFFFFFFF),
    ),
)


def _wire(version: int, frame: Frame) -> bytes:
    if frame.cmd == Cmd.UPD:
        return encode_frame(version, Cmd.UPD, frame.sid, frame.data)
    return encode_frame(version, frame.cmd, frame.sid, frame.data)


@given(st.lists(frames, max_size=20), st.sampled_from([1, 2]), st.lists(st.integers(1, 50)))
def test_frames_round_trip_any_split(items: list[Frame], version: int, cuts: list[int]) -> None:
    wire = b"".join(_wire(version, f) for f in items)
    parser = FrameParser(version)
    got: list[Frame] = []
    pos = 0
    for cut in cuts:
        got += parser.feed(wire[pos : pos + cut])
        pos += cut
    got += parser.feed(wire[pos:])
    assert got == items
    assert parser.buffered == 0


@given(st.binary(max_size=400), st.sampled_from([1, 2]), st.booleans())
def test_arbitrary_bytes_parse_or_end_the_session(data: bytes, version: int, client: bool) -> None:
    proto = SmuxProtocol(SmuxConfig(version=version), client=client, now_ms=0)
    changes = proto.receive_data(data, 0)
    if not proto.alive:
        assert changes.terminated
        assert proto.error and "smux protocol error" in proto.error
    else:
        total = sum(proto.buffered(sid) for sid in proto.stream_ids)
        assert total <= len(data)
    for sid in proto.stream_ids:
        try:
            proto.read(sid, 1 << 20)
        except ConnectionResetError:
            assert not proto.alive


ops = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.integers(0, 2), st.integers(1, 70_000)),
        st.tuples(st.just("read"), st.integers(0, 2), st.integers(1, 70_000)),
        st.tuples(st.just("pump"), st.just(0), st.just(0)),
    ),
    max_size=40,
)


@given(ops, st.sampled_from([1, 2]))
def test_streams_deliver_in_order_under_any_interleaving(
    steps: list[tuple[str, int, int]], version: int
) -> None:
    cfg = SmuxConfig(
        version=version,
        max_receive_buffer=200_000,
        max_stream_buffer=100_000,
        max_send_buffer=150_000,
        max_frame_size=30_000,
    )
    c = SmuxProtocol(cfg, client=True, now_ms=0)
    s = SmuxProtocol(cfg, client=False, now_ms=0)
    sids = [c.open_stream() for _ in range(3)]
    sent = {sid: bytearray() for sid in sids}
    got = {sid: bytearray() for sid in sids}
    counter = 0

    def transfer() -> None:
        # the I/O layer stops reading while the receiver's buffers are full
        for _ in range(50):
            b = s.data_to_send()
            if b:
                c.receive_data(b, 0)
            a = b"" if s.reading_paused else c.data_to_send()
            if a:
                s.receive_data(a, 0)
            while s.accept_stream() is not None:
                pass
            if not a and not b:
                return

    for kind, index, size in steps:
        sid = sids[index]
        if kind == "write":
            data = bytes((counter + i) & 0xFF for i in range(size))
            counter += size
            n = c.write(sid, data)
            assert 0 <= n <= size
            sent[sid] += data[:n]
            if version == 2:
                stream = c._streams[sid]
                inflight = (stream.num_written - stream.peer_consumed) & 0xFFFFFFFF
                assert inflight <= max(stream.peer_window, 262144)
        elif kind == "read":
            if sid in s.stream_ids:
                piece = s.read(sid, size)
                if piece:
                    got[sid] += piece
        else:
            transfer()
        assert c.send_buffered <= cfg.max_send_buffer
    # drain everything
    for _ in range(200):
        transfer()
        for sid in sids:
            if sid in s.stream_ids:
                while True:
                    piece = s.read(sid, 1 << 20)
                    if not piece:
                        break
                    got[sid] += piece
        if not c.has_data_to_send() and not s.has_data_to_send():
            break
    for sid in sids:
        assert got[sid] == sent[sid]


@given(st.binary(max_size=200_000), st.lists(st.integers(1, 20_000), max_size=30), st.booleans())
def test_snappy_round_trip_any_split(data: bytes, cuts: list[int], fast: bool) -> None:
    fast = fast and snappy.HAVE_CRAMJAM
    wire = FrameEncoder(compress=fast).encode(data)
    dec = FrameDecoder(use_cramjam=fast)
    out = bytearray()
    pos = 0
    for cut in cuts:
        out += dec.feed(wire[pos : pos + cut])
        pos += cut
    out += dec.feed(wire[pos:])
    assert out == data


@given(st.binary(max_size=2000), st.booleans(), st.booleans())
def test_snappy_arbitrary_bytes_give_data_or_snappy_error(
    data: bytes, with_identifier: bool, fast: bool
) -> None:
    fast = fast and snappy.HAVE_CRAMJAM
    dec = FrameDecoder(use_cramjam=fast)
    try:
        dec.feed((snappy.STREAM_IDENTIFIER if with_identifier else b"") + data)
    except SnappyError:
        pass


@given(st.binary(max_size=3000))
def test_pure_block_decoder_never_crashes(block: bytes) -> None:
    try:
        out = snappy.decode_block(block)
    except SnappyError:
        return
    assert len(out) <= snappy.MAX_BLOCK
