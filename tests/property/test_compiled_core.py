"""The compiled KCP core (mypyc) against its own pure-Python source: identical bytes and state.

When kcpsock runs compiled (``kcpsock.compiled_modules()``), these load
kcpsock/kcp.py a second time, interpreted, and drive both forms through the
same seeded lossy-link sessions and the same arbitrary datagrams: every
datagram out, every message delivered, every refusal and the whole state
afterwards must agree.  In a pure-Python run they are skipped (the rest of
the suite covers that form).
"""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple, Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kcpsock
import kcpsock.kcp
from kcpsock.errors import PacketError
from tests.kcpwire import kcp_state
from tests.netsim import FakeClock, KCPPair, LossyLink

CONV = 0x600D

pytestmark = pytest.mark.skipif(
    "kcp" not in kcpsock.compiled_modules(), reason="the KCP core runs as pure Python here"
)


def _load_pure() -> ModuleType:
    source = Path(kcpsock.__file__).parent / "kcp.py"
    spec = importlib.util.spec_from_file_location("kcpsock._kcp_pure_source", source)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PURE = _load_pure()
FORMS = {"compiled": kcpsock.kcp.KCP, "pure": PURE.KCP}


class Logged:
    """A KCP endpoint that logs everything it is given and everything it returns."""

    def __init__(self, kcp: Any, log: list[object]) -> None:
        self.kcp, self.log = kcp, log

    def input(self, datagram: bytes, now: int) -> list[bytes]:
        out: list[bytes]
        try:
            out = self.kcp.input(datagram, now, ack_nodelay=bool(now % 3 == 0))
        except PacketError as exc:
            self.log.append(("refused", str(exc)))
            return []
        self.log.append(("input", now, [bytes(d) for d in out]))
        return out

    def update(self, now: int) -> list[bytes]:
        out: list[bytes] = self.kcp.update(now)
        self.log.append(("update", now, [bytes(d) for d in out], self.kcp.check(now)))
        return out


class Scenario(NamedTuple):
    """One seeded session: the nodelay profile, the link and what both ends send."""

    profile: tuple[int, int, int, int]
    mtu: int
    stream: bool
    loss: float
    sizes: list[int]
    seed: int
    bandwidth: Optional[int]


scenarios = st.builds(
    Scenario,
    profile=st.sampled_from([(0, 40, 0, 0), (1, 10, 2, 1), (2, 20, 1, 0), (1, 100, 0, 0)]),
    mtu=st.sampled_from([60, 576, 1400]),
    stream=st.booleans(),
    loss=st.sampled_from([0.0, 0.1, 0.3]),
    sizes=st.lists(st.integers(1, 3000), min_size=1, max_size=10),
    seed=st.integers(0, 2**16),
    bandwidth=st.sampled_from([None, 100_000]),
)


def run_session(
    form: str, sc: Scenario
) -> tuple[list[object], list[bytes], dict[str, object], dict[str, object]]:
    """Both ends of one form through the scenario: the log, the deliveries, both states."""
    profile, mtu, stream, loss, sizes, seed, bandwidth = sc
    rng = random.Random(seed)
    clock = FakeClock(rng.randrange(2**32))
    log: list[object] = []
    a, b = FORMS[form](CONV), FORMS[form](CONV)
    for k in (a, b):
        k.set_nodelay(*profile)
        k.setmtu(mtu)
        k.stream = stream
        k.wndsize(32, 3000 // (mtu - 24) + 32)

    def link(link_seed: int) -> LossyLink:
        return LossyLink(
            clock, seed=link_seed, loss=loss, reorder=0.1, delay_ms=10, jitter_ms=5,
            bandwidth=bandwidth,
        )  # fmt: skip

    pair = KCPPair(Logged(a, log), Logged(b, log), clock, link(seed), link(seed + 1))
    msgs = [rng.randbytes(n) for n in sizes]
    for m in msgs:
        a.send(m)
        b.send(m[::-1])
    got: list[bytes] = []

    def drained() -> bool:
        for k in (a, b):
            while (m := k.recv()) is not None:
                got.append(m)
        return a.waitsnd() == 0 and b.waitsnd() == 0 and len(got) >= 2 * len(msgs)

    pair.run_until(drained, 120_000, tick=3)
    return log, got, kcp_state(a), kcp_state(b)


@settings(max_examples=60, deadline=None)
@given(scenarios)
def test_sessions_are_identical(sc: Scenario) -> None:
    compiled, pure = run_session("compiled", sc), run_session("pure", sc)
    assert compiled[0] == pure[0]  # every datagram, refusal and timer
    assert compiled[1] == pure[1]  # what was delivered
    assert compiled[2] == pure[2] and compiled[3] == pure[3]  # the whole state


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=120),
            st.builds(
                lambda h, d: h + d,
                st.binary(min_size=24, max_size=24).map(
                    lambda h: CONV.to_bytes(4, "little") + bytes([81 + h[4] % 4]) + h[5:]
                ),
                st.binary(max_size=40),
            ),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_arbitrary_datagrams_are_treated_identically(datagrams: list[bytes]) -> None:
    results = []
    for form in ("compiled", "pure"):
        k = FORMS[form](CONV)
        k.set_nodelay(1, 10, 2, 1)
        for i in range(5):
            k.send(bytes([i]) * 700)
        log: list[object] = [[bytes(d) for d in k.flush(0)]]
        for n, d in enumerate(datagrams):
            try:
                log.append([bytes(x) for x in k.input(d, 10 + n, regular=n % 2 == 0)])
            except PacketError as exc:
                log.append(str(exc))
            log.append([bytes(x) for x in k.update(20 + n)])
        results.append((log, kcp_state(k)))
    assert results[0] == results[1]
