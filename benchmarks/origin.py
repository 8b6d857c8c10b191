"""``python -m benchmarks.origin ROOT [--latency S] [--bandwidth B]``: the loopback origin.

The same as ``python -m kithara_hls.testing serve`` (first stdout line: the base
URL; serves until stdin closes). It once patched Nagle's algorithm off; the
stock origin now does that itself, so ``--stock-origin`` runs the same server.
"""

from __future__ import annotations

import sys

from kithara_hls.testing.__main__ import main as testing_main


def main(argv: list[str] | None = None) -> int:
    """Serve ROOT like ``kithara_hls.testing serve``."""
    return testing_main(["serve", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
