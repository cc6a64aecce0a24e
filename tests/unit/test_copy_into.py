"""kcpsock.session.copy_into: recv_into's one copy (struct packers by size, a memoryview beyond).

It must write exactly ``len(data)`` bytes at the start of the buffer and
nothing beyond, for every size, for a bytearray and for a flat memoryview,
whether the size has a cached packer or goes through a memoryview.
"""

from __future__ import annotations

import random
import struct

import pytest

from kcpsock import session
from kcpsock.session import COPIERS_MAX, COPY_PACK_MAX, copy_into


def test_copies_exactly_and_writes_nothing_beyond() -> None:
    rng = random.Random(5)
    for _ in range(500):
        n = rng.choice([1, 2, 23, 24, 1376, 1400, 4096, rng.randrange(1, 70000)])
        data = rng.randbytes(n)
        room = n + rng.randrange(0, 64)
        fill = rng.randrange(256)
        buf = bytearray([fill]) * room
        assert copy_into(buf, data) == n
        assert buf[:n] == data and buf[n:] == bytearray([fill]) * (room - n)
        view = memoryview(bytearray([fill]) * room)
        assert copy_into(view, data) == n
        assert view[:n].tobytes() == data and view[n:].tobytes() == bytes([fill]) * (room - n)


def test_sizes_beyond_the_cache_go_through_a_memoryview() -> None:
    # a full cache: new sizes are copied all the same, and the cache stays bounded
    copiers = session._COPIERS
    saved = dict(copiers)
    try:
        copiers.clear()
        for size in range(1000, 1000 + COPIERS_MAX):
            assert copy_into(bytearray(size), bytes(size)) == size
        assert len(copiers) == COPIERS_MAX
        data = bytes(range(256)) * 20
        buf = bytearray(b"\xee") * (len(data) + 3)
        assert copy_into(buf, data) == len(data)
        assert buf == data + b"\xee\xee\xee"
        assert len(copiers) == COPIERS_MAX and len(data) not in copiers
        # a large copy never takes (or caches) a packer
        copiers.clear()
        big = bytes(range(256)) * (COPY_PACK_MAX // 256 + 1)
        buf = bytearray(len(big) + 1)
        assert copy_into(buf, big) == len(big) and buf == big + b"\0"
        assert not copiers
        for size in range(1000, 1000 + COPIERS_MAX):
            copy_into(bytearray(size), bytes(size))
        # a cached size still takes its packer
        assert copy_into(buf, b"\x01" * 1000) == 1000 and buf[:1000] == b"\x01" * 1000
    finally:
        copiers.clear()
        copiers.update(saved)


def test_a_too_small_or_read_only_buffer_is_refused() -> None:
    # (recv_into checks its arguments first; the copy itself never writes out of bounds)
    with pytest.raises((struct.error, ValueError)):
        copy_into(bytearray(3), b"abcd")
    with pytest.raises(TypeError):
        copy_into(memoryview(b"abcd"), b"ab")


def test_a_strided_view_is_filled_item_by_item() -> None:
    # recv_into accepts any writable byte view, a strided one included: the
    # copy must not fail after the message was taken
    backing = bytearray(b".") * 12
    view = memoryview(backing)[::2]
    assert not view.c_contiguous
    assert copy_into(view, b"abc") == 3
    assert backing == b"a.b.c......."
