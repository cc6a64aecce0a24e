"""Fixtures for the interop tests against the real kcp-go.

``kcppeer`` builds tests/interop/peer (once per session, into the gitignored
tests/interop/.build/).  Without Go or Debian's kcp-go the interop tests are
skipped with the reason, unless KCPSOCK_REQUIRE_INTEROP=1 (set by .ci/run),
in which case they fail.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.interop.gopeer import PeerUnavailable, build_peer


def _required() -> bool:
    return os.environ.get("KCPSOCK_REQUIRE_INTEROP", "") not in ("", "0")


@pytest.fixture(scope="session")
def kcppeer() -> Path:
    """Path of the built Go peer (skips, or fails under KCPSOCK_REQUIRE_INTEROP=1)."""
    try:
        return build_peer()
    except PeerUnavailable as exc:
        if _required():
            pytest.fail(f"interop required (KCPSOCK_REQUIRE_INTEROP=1) but {exc}")
        pytest.skip(str(exc))
