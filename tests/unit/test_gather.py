"""kcpsock._udpio.gather: Session.recv_into's copier (parts copied once into a buffer)."""

from __future__ import annotations

import random

import pytest

from kcpsock._accel import native

udpio = native("_udpio")
pytestmark = pytest.mark.skipif(udpio is None, reason="kcpsock._udpio is not built")


def reference(parts: list[bytes], skip: int, drop: int) -> bytes:
    data = b"".join(parts)
    return data[skip : len(data) - drop]


def test_copies_exactly_and_writes_nothing_else() -> None:
    assert udpio is not None
    rng = random.Random(3)
    for _ in range(2000):
        parts = [
            rng.randbytes(rng.choice([0, 1, 2, 100, 1376])) for _ in range(rng.randrange(1, 6))
        ]
        total = sum(map(len, parts))
        skip = rng.randrange(0, min(len(parts[0]), total) + 1)
        drop = rng.randrange(0, total - skip + 1)
        want = reference(parts, skip, drop)
        pos = rng.randrange(0, 9)
        room = pos + len(want) + rng.randrange(0, 9)
        buf = bytearray([0x5A]) * room
        target = buf if rng.random() < 0.5 else memoryview(buf)
        one = parts[0] if len(parts) == 1 and rng.random() < 0.5 else parts
        assert udpio.gather(target, pos, one, skip, drop) is True
        assert buf[pos : pos + len(want)] == want
        assert buf[:pos] == bytearray([0x5A]) * pos
        assert buf[pos + len(want) :] == bytearray([0x5A]) * (room - pos - len(want))


def test_a_strided_view_is_refused_untouched() -> None:
    assert udpio is not None
    buf = bytearray(20)
    assert udpio.gather(memoryview(buf)[::2], 0, [b"abc"], 0, 0) is False
    assert buf == bytearray(20)


def test_errors_write_nothing() -> None:
    assert udpio is not None
    buf = bytearray(4)
    with pytest.raises(ValueError, match="too small"):
        udpio.gather(buf, 0, [b"abc", b"de"], 0, 0)  # 5 bytes, room for 4
    with pytest.raises(ValueError, match="too small"):
        udpio.gather(buf, 3, [b"ab"], 0, 0)
    with pytest.raises(ValueError, match="exceed"):
        udpio.gather(buf, 0, [b"ab"], 2, 1)  # skip + drop > the parts
    with pytest.raises(ValueError, match="negative"):
        udpio.gather(buf, -1, [b"ab"], 0, 0)
    with pytest.raises(TypeError, match="must be bytes"):
        udpio.gather(buf, 0, [bytearray(b"ab")], 0, 0)
    with pytest.raises(TypeError, match="must be bytes"):
        udpio.gather(buf, 0, (b"ab",), 0, 0)
    assert buf == bytearray(4)
    # not writable: refused as a strided view is (the caller's copy then says why)
    assert udpio.gather(b"read-only", 0, [b"ab"], 0, 0) is False
