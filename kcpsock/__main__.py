"""``python -m kcpsock``: the command line (see :mod:`kcpsock.cli`)."""

from __future__ import annotations

import sys

from kcpsock.cli import main

if __name__ == "__main__":
    sys.exit(main())
