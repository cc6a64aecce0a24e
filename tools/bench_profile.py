"""tools/bench.py's session profile as ``KCPConfig`` keywords, for the tools measuring with it.

nodelay 1, interval 10, resend 2, no congestion control, windows 1024,
MTU 1400 (``PROFILE`` in tools/bench.py).  Plain data, no kcpsock import:
the tools that use it import kcpsock from the tree they measure.
"""

from __future__ import annotations

from typing import Any

#: keywords for ``KCPConfig(**BENCH_PROFILE, stream=...)``
BENCH_PROFILE: dict[str, Any] = {
    "nodelay": 1,
    "interval": 10,
    "resend": 2,
    "nc": True,
    "sndwnd": 1024,
    "rcvwnd": 1024,
    "mtu": 1400,
}
