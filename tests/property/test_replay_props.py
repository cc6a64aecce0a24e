"""kcpsock.replay against a model: nothing recent is forgotten, memory stays bounded."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from kcpsock.replay import ReplayCache

_ops = st.lists(
    st.tuples(st.integers(0, 40), st.integers(0, 30), st.booleans()), min_size=1, max_size=300
)


@settings(max_examples=200, deadline=None)
@given(capacity=st.integers(2, 40), window=st.integers(1, 100), ops=_ops)
def test_recent_nonces_are_never_forgotten(
    capacity: int, window: int, ops: list[tuple[int, int, bool]]
) -> None:
    """Model: a nonce added at t, followed by fewer than capacity//2 adds and
    less than window ms, is still known; and ``len`` never exceeds capacity.
    """
    c = ReplayCache(capacity, window)
    now = 0
    history: list[tuple[int, int]] = []  # (time, key) of every add, in order
    for key, dt, use_seen in ops:
        now += dt
        k = key.to_bytes(2, "little")
        if use_seen:
            was = c.seen(k, now)
            known = any(hk == key for _, hk in history)
            if was:
                assert known  # never a false replay
        else:
            c.add(k, now)
        if not (use_seen and was):
            history.append((now, key))
        assert len(c) <= capacity
        # everything added within the guaranteed window is remembered
        half = capacity // 2
        for i, (t, hk) in enumerate(history):
            later = len(history) - 1 - i
            if now - t < window and later < half:
                assert c.contains(hk.to_bytes(2, "little")), (i, t, hk, now)
