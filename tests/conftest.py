"""Shared pytest configuration: hypothesis profiles and the kcp-go vectors."""

from __future__ import annotations

import gc
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

VECTOR_DIR = Path(__file__).parent / "vectors" / "data"

settings.register_profile(
    "ci",
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# A shell without job control starts `cmd &` with SIGINT ignored, and an
# ignored signal stays ignored across exec: every child these tests start
# (python -c, python -m kcpsock serve/tunnel/relay) would then ignore the
# Ctrl-C the tests send it and hang until killed.  A handler (unlike "ignore")
# is reset to the default at exec, so the children get Python's usual
# KeyboardInterrupt however the suite itself was started.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def load_vectors(name: str) -> Any:
    """Load one of the kcp-go vector files (crypt, fec, kcp) from tests/vectors/data."""
    with open(VECTOR_DIR / f"{name}.json", encoding="utf-8") as fh:
        return json.load(fh)


@pytest.fixture(scope="session")
def crypt_vectors() -> Any:
    """crypt.json: kcp-go's ciphers, byte for byte."""
    return load_vectors("crypt")


@pytest.fixture(scope="session")
def fec_vectors() -> Any:
    """fec.json: kcp-go's FEC encoder and decoder, byte for byte."""
    return load_vectors("fec")


@pytest.fixture(scope="session")
def kcp_vectors() -> Any:
    """kcp.json: real kcp-go session exchanges."""
    return load_vectors("kcp")


@pytest.fixture
def finish_background_closes() -> Iterator[None]:
    """What a test closed finishes delivering within it (bounded), not in the next test."""
    yield
    from kcpsock.session import drain_closing

    drain_closing(5.0, abort=True)
    gc.collect()  # sockets of forgotten objects: closed here, not in a later test


@pytest.fixture(params=["native", "python"])
def gf_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The GF(2^8) path FEC encoders and decoders made in the test take.

    ``"native"``: the C helper kcpsock._gfsimd (skipped where it is not built,
    or under KCPSOCK_PURE); ``"python"``: the paths without it
    (``kcpsock._accel.native`` answers None).
    """
    from kcpsock import _accel

    if request.param == "native":
        if _accel.native("_gfsimd") is None:
            pytest.skip("kcpsock._gfsimd is not built (or KCPSOCK_PURE)")
    else:
        monkeypatch.setattr(_accel, "native", lambda name: None)
    return str(request.param)
