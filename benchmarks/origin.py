"""``python -m benchmarks.origin ROOT [--latency S] [--bandwidth B]``: the loopback origin, with TCP_NODELAY.

The same as ``python -m kithara_hls.testing serve`` (first stdout line: the base
URL; serves until stdin closes), except that Nagle's algorithm is off on every
accepted connection, as on production HTTP servers. The stock origin writes the
headers and a small body in two sends, and Nagle holds the second one until the
client's delayed ACK (about 40 ms on Linux): every small response, a size probe
above all, would cost 40 ms more than the latency the scenario asks for.
"""

from __future__ import annotations

import sys

from kithara_hls import testing


def main(argv: list[str] | None = None) -> int:
    """Serve ROOT like ``kithara_hls.testing serve``, with Nagle's algorithm off."""
    testing._Handler.disable_nagle_algorithm = True  # socketserver.StreamRequestHandler sets TCP_NODELAY
    return testing.main(["serve", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
