"""`python -m kithara_hls.testing serve|build|realworld`."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Iterator
from types import FrameType

from .fixtures import build_all, build_large
from .origin import Origin


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def _serve(root: str, latency: float, bandwidth: float | None) -> int:
    signal.signal(signal.SIGTERM, _exit_on_signal)
    with Origin(root, latency=latency, bandwidth=bandwidth) as origin:
        print(origin.base_url, flush=True)
        sys.stdin.buffer.read()  # until the parent closes our stdin
    return 0


def _build_cli(root: str) -> Iterator[str]:
    fixtures = {**build_all(root), "large": build_large(root)}
    for name, fixture in fixtures.items():
        yield f"{name}\t{fixture.entry}"


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m kithara_hls.testing``."""
    parser = argparse.ArgumentParser(
        prog="python -m kithara_hls.testing", description="Serve a folder on loopback, or build the fixtures."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve ROOT on 127.0.0.1 until stdin closes or SIGTERM")
    serve.add_argument("root")
    serve.add_argument("--latency", type=float, default=0.0, help="seconds before each response")
    serve.add_argument("--bandwidth", type=float, default=None, help="shared limit, bytes per second")
    build = commands.add_parser("build", help="build every fixture under ROOT")
    build.add_argument("root")
    real = commands.add_parser(
        "realworld", help="build the real-world fixtures under ROOT and play each case"
    )
    real.add_argument("root")
    args = parser.parse_args(argv)
    if args.command == "serve":
        return _serve(args.root, args.latency, args.bandwidth)
    if args.command == "realworld":
        from .realworld_check import check  # needs PyAV

        for line in check(args.root):
            print(line, flush=True)
        return 0
    for line in _build_cli(args.root):
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
