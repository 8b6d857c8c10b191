"""kithara-hls benchmark suite: one command, one table of targets with PASS/MISS.

Reproduce (from the repository root, Python >= 3.10, Linux)::

    pip install '.[bench]'            # PyAV, numpy, streamlink, yt-dlp, psutil
    python -m benchmarks --quick      # smoke test, under a minute
    python -m benchmarks              # the full suite, several minutes on 2 cores
    python -m benchmarks --full       # adds the 500 MB memory line (~0.5 GB of disk)
    python -m benchmarks --only wan,ttfb --repeat 3 --workdir /tmp/kb

What happens: the fixtures are built under ``--workdir`` (default: a temporary
folder, removed at the end; a kept workdir is reused): a 100 × 512 KiB stream
(the 50 MB stream too), a 900 × 64 KiB "1-hour" stream (EXTINF 4.0), its
AES-128 copy, a real AAC stream from ffmpeg's HLS muxer, and a 1,200-segment
playlist text. Each scenario gets its own loopback origin process
(``python -m kithara_hls.testing serve``): "WAN" adds 50 ms before every
response and shares one 20 MB/s link between all connections; "LAN" has no
limits. Every client runs in its own process (``python -m benchmarks.clients``),
one at a time; the parent times the window from "go" to the child's result
(imports excluded), samples the child's CPU with psutil, and takes the child's
own time to first byte and peak-RSS growth (the peak, reset through
/proc/self/clear_refs at the start, minus the RSS then; VmHWM rather than
``ru_maxrss``, which keeps the parent's peak across subprocess's vfork + exec).
The origin is ``kithara_hls.testing``'s with TCP_NODELAY (``benchmarks.origin``;
``--stock-origin`` for the unpatched one, whose small responses wait ~40 ms on
Nagle + delayed ACK).
Every kithara cold run gets a fresh cache folder; a warm run reuses the folder
of the cold run just before it. The loopback line runs its clients in turn
(kithara, requests, the floor, again and again), and the AES-128 line the
clear and the encrypted stream, so that the ratios compare runs made under the
same conditions. Each run's folder is removed after it and the
file system synced, so that no run pays for the kernel's work on the last
run's deleted files (creating files right after a 52 MB delete cost a cold
read about 10 % more). With ``--repeat N`` each figure is the median.

Lines (``--only`` takes a comma-separated list): wan, ttfb, lan, warm, seek,
seek-long, memory, idle, parse, decrypt, av; and, only when named, abr-real (the
real-reader ABR benchmark of `benchmarks.abr_real`, about five minutes in real
time; ``--traces`` picks its traces). Peers (streamlink, yt-dlp, PyAV) that are
not installed are reported and their rows skipped. All traffic goes to
127.0.0.1. MB is 10^6 bytes; RSS is in MiB.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .fixtures import FULL, QUICK, Fixtures, Stream
from .procs import ChildError, OriginProcess, run_client

#: Per-request latency of the WAN-like origin (one round trip), seconds.
WAN_LATENCY_S = 0.05
#: The WAN-like origin's shared link, bytes per second.
WAN_BANDWIDTH = 20_000_000
SCENARIOS = {"wan": (WAN_LATENCY_S, WAN_BANDWIDTH), "lan": (0.0, None)}
#: A client run may take this long, plus one second per MB of its stream.
BASE_TIMEOUT_S = 120.0
MAX_TIMEOUT_S = 1200.0
PEER_MODULES = {"streamlink": "streamlink", "yt-dlp": "yt_dlp", "av": "av"}
MB = 1e6


def _remove(scratch: Path) -> None:
    """Remove a run's folder, then sync: the next run starts on a settled file system."""
    shutil.rmtree(scratch, ignore_errors=True)
    if hasattr(os, "sync"):
        os.sync()


@dataclass(frozen=True)
class Measure:
    """The median of one client's repeated runs."""

    wall_s: float
    ttfb_s: float | None
    cpu_s: float
    rss_mib: float
    nbytes: int
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def mbps(self) -> float:
        """Throughput in MB/s over the whole window."""
        return self.nbytes / MB / self.wall_s if self.wall_s > 0 else float("nan")


def _median(values: list[Any]) -> Any:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _combine(runs: list[Measure]) -> Measure:
    keys = set().union(*(r.extra for r in runs))
    extra = {k: _median([r.extra.get(k) for r in runs]) for k in sorted(keys)}
    return Measure(
        wall_s=_median([r.wall_s for r in runs]),
        ttfb_s=_median([r.ttfb_s for r in runs]),
        cpu_s=_median([r.cpu_s for r in runs]),
        rss_mib=_median([r.rss_mib for r in runs]),
        nbytes=int(_median([r.nbytes for r in runs])),
        extra=extra,
    )


def _numeric_extra(report: dict[str, Any]) -> dict[str, float]:
    skip = {"bytes", "ttfb_s", "wall_s", "cpu_s", "rss_growth_mib"}
    return {k: float(v) for k, v in report.items() if k not in skip and isinstance(v, int | float)}


class Bench:
    """The shared state of one benchmark run: fixtures, origins, memoized measurements."""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.fx = Fixtures(workdir / "streams", QUICK if args.quick else FULL)
        self.missing = {name for name, mod in PEER_MODULES.items() if importlib.util.find_spec(mod) is None}
        self.errors: list[str] = []
        self.notes: list[str] = []
        self._origins: dict[str, OriginProcess] = {}
        self._memo: dict[tuple[Any, ...], Any] = {}

    def url(self, scenario: str, stream: Stream) -> str:
        """The URL of `stream` on the scenario's origin (started on first use)."""
        origin = self._origins.get(scenario)
        if origin is None:
            latency, bandwidth = SCENARIOS[scenario]
            origin = OriginProcess(
                self.fx.root, latency=latency, bandwidth=bandwidth, stock=self.args.stock_origin
            )
            origin.start()
            self._origins[scenario] = origin
        return origin.url + stream.entry

    def has(self, peer: str) -> bool:
        """True if the peer's module is importable."""
        return peer not in self.missing

    def _timeout(self, stream: Stream) -> float:
        return min(MAX_TIMEOUT_S, BASE_TIMEOUT_S + stream.nbytes / MB)

    def _once(self, argv: list[str], stream: Stream) -> Measure:
        run = run_client(argv, self._timeout(stream))
        r = run.report
        if self.args.verbose:
            print(
                f"  {argv[0]} {stream.name}: wall {run.wall_s:.3f} s, cpu {run.cpu_s:.2f} s, {r}",
                file=sys.stderr,
            )
        return Measure(run.wall_s, r["ttfb_s"], run.cpu_s, r["rss_growth_mib"], r["bytes"], _numeric_extra(r))

    def measure(self, scenario: str, client: str, stream: Stream, *opts: str) -> Measure | None:
        """The median of `--repeat` runs of a client (kithara: a fresh cache each); None on failure."""
        key = (scenario, client, stream.name, opts)
        if key not in self._memo:
            self._memo[key] = self._repeat(key, lambda: self._run_fresh(scenario, client, stream, opts))
        result: Measure | None = self._memo[key]
        return result

    def pair(self, scenario: str, stream: Stream, *opts: str) -> tuple[Measure | None, Measure | None]:
        """kithara cold then warm (same cache folder) `--repeat` times: the medians of each."""
        key = (scenario, "kithara-pair", stream.name, opts)
        if key not in self._memo:
            colds: list[Measure] = []

            def once() -> Measure:
                cold, warm = self._run_pair(scenario, stream, opts)
                colds.append(cold)
                return warm

            warm = self._repeat(key, once)
            cold = _combine(colds) if colds and warm is not None else None
            self._memo[key] = (cold, warm)
        result: tuple[Measure | None, Measure | None] = self._memo[key]
        return result

    def interleave(self, scenario: str, stream: Stream, clients: list[tuple[str, tuple[str, ...]]]) -> None:
        """Run the kithara pair and each of `clients` in turn, `--repeat` times, and keep their
        medians for `pair` and `measure`: a drift in the machine's speed during the line then
        falls on all of them alike, not on whichever ran while it lasted."""
        pair_key = (scenario, "kithara-pair", stream.name, ())
        keys = [(scenario, client, stream.name, opts) for client, opts in clients]
        if pair_key in self._memo or any(k in self._memo for k in keys):
            return
        colds: list[Measure] = []
        warms: list[Measure] = []
        runs: list[list[Measure]] = [[] for _ in clients]
        try:
            for _ in range(self.args.repeat):
                cold, warm = self._run_pair(scenario, stream, ())
                colds.append(cold)
                warms.append(warm)
                for (client, opts), measures in zip(clients, runs, strict=True):
                    measures.append(self._run_fresh(scenario, client, stream, opts))
        except ChildError as exc:
            self.errors.append(f"{scenario} {stream.name} interleaved: {exc}")
            return  # each line then runs on its own
        self._memo[pair_key] = (_combine(colds), _combine(warms))
        for key, measures in zip(keys, runs, strict=True):
            self._memo[key] = _combine(measures)

    def pairs_in_turn(
        self, scenario: str, streams: list[Stream]
    ) -> list[tuple[Measure | None, Measure | None]]:
        """kithara cold-then-warm pairs of each of `streams` in turn, `--repeat` times: the medians
        of each stream's colds and warms, for ratios between streams measured alike."""
        key = (scenario, "kithara-pairs-in-turn", tuple(s.name for s in streams))
        if key not in self._memo:
            runs: list[list[tuple[Measure, Measure]]] = [[] for _ in streams]
            try:
                for _ in range(self.args.repeat):
                    for stream, pairs in zip(streams, runs, strict=True):
                        pairs.append(self._run_pair(scenario, stream, ()))
            except ChildError as exc:
                self.errors.append(f"{scenario} {' '.join(map(str, key[2]))} in turn: {exc}")
                self._memo[key] = [(None, None)] * len(streams)
            else:
                self._memo[key] = [
                    (_combine([c for c, _ in pairs]), _combine([w for _, w in pairs])) for pairs in runs
                ]
        result: list[tuple[Measure | None, Measure | None]] = self._memo[key]
        return result

    def _repeat(self, key: tuple[Any, ...], once: Any) -> Measure | None:
        runs: list[Measure] = []
        try:
            runs.extend(once() for _ in range(self.args.repeat))
        except ChildError as exc:
            self.errors.append(f"{' '.join(map(str, key))}: {exc}")
            return None
        return _combine(runs)

    def _run_fresh(self, scenario: str, client: str, stream: Stream, opts: tuple[str, ...]) -> Measure:
        scratch = self.workdir / "scratch" / uuid.uuid4().hex
        scratch.mkdir(parents=True)
        try:
            local = client.startswith("files")
            url = str(self.fx.root / stream.entry) if local else self.url(scenario, stream)
            argv = [client, url, "--cache", str(scratch / "cache"), "--out", str(scratch / "out.ts"), *opts]
            return self._once(argv, stream)
        finally:
            _remove(scratch)

    def _run_pair(self, scenario: str, stream: Stream, opts: tuple[str, ...]) -> tuple[Measure, Measure]:
        scratch = self.workdir / "scratch" / uuid.uuid4().hex
        scratch.mkdir(parents=True)
        try:
            argv = ["kithara", self.url(scenario, stream), "--cache", str(scratch / "cache"), *opts]
            return self._once(argv, stream), self._once(argv, stream)
        finally:
            _remove(scratch)

    def close(self) -> None:
        """Stop every origin."""
        for origin in self._origins.values():
            origin.stop()


@dataclass
class Row:
    """One table row: a label, the five figures (None prints '-'), ratio, target and result."""

    label: str
    wall_s: float | None = None
    ttfb_s: float | None = None
    cpu_s: float | None = None
    rss_mib: float | None = None
    mbps: float | None = None
    ratio: str = ""
    target: str = ""
    result: str = ""

    @classmethod
    def of(cls, label: str, m: Measure | None, **cells: Any) -> Row:
        """A row from a measurement (an ERROR row if it failed); `cells` override."""
        if m is None:
            return cls(label, target=cells.get("target", ""), result="ERROR")
        base = {
            "wall_s": m.wall_s,
            "ttfb_s": m.ttfb_s,
            "cpu_s": m.cpu_s,
            "rss_mib": m.rss_mib,
            "mbps": m.mbps,
        }
        return cls(label, **{**base, **cells})


def verdict(ok: bool) -> str:
    """PASS or MISS."""
    return "PASS" if ok else "MISS"


_COLUMNS: tuple[tuple[str, int, str], ...] = (
    ("line", 34, "<"), ("wall s", 7, ">"), ("TTFB ms", 8, ">"), ("CPU s", 6, ">"), ("RSS MiB", 7, ">"),
    ("MB/s", 7, ">"), ("ratio", 22, "<"), ("target", 30, "<"), ("result", 6, "<"),
)  # fmt: skip


def _cell(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def format_table(rows: list[Row]) -> str:
    """The rows as a fixed-width text table."""
    head = "  ".join(f"{name:{align}{width}}" for name, width, align in _COLUMNS)
    lines = [head, "-" * len(head)]
    for row in rows:
        ttfb_ms = None if row.ttfb_s is None else row.ttfb_s * 1000
        cells = (
            row.label, _cell(row.wall_s, ".3f"), _cell(ttfb_ms, ".0f"), _cell(row.cpu_s, ".2f"),
            _cell(row.rss_mib, ".1f"), _cell(row.mbps, ".1f"), row.ratio, row.target, row.result,
        )  # fmt: skip
        lines.append("  ".join(f"{c:{a}{w}}" for c, (_, w, a) in zip(cells, _COLUMNS, strict=True)).rstrip())
    return "\n".join(lines)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    from .lines import LINES

    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller streams: a smoke test under a minute")
    parser.add_argument("--full", action="store_true", help="also the 500 MB memory line")
    parser.add_argument("--repeat", type=int, default=1, help="runs per measurement; the median is shown")
    parser.add_argument("--only", default="", help=f"comma-separated lines: {','.join(LINES)}")
    parser.add_argument(
        "--stock-origin", action="store_true", help="serve with kithara_hls.testing as is (Nagle on: +40 ms)"
    )
    parser.add_argument("--traces", default="", help="abr-real: comma-separated trace names (default: all)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every client run's report")
    parser.add_argument("--workdir", type=Path, help="build fixtures here and keep them (default: temporary)")
    args = parser.parse_args(argv)
    args.only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in args.only if name not in LINES]
    if unknown:
        parser.error(f"unknown line(s) {', '.join(unknown)}; choose from {', '.join(LINES)}")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    from .abr_real import parse_traces

    try:
        parse_traces(args.traces)
    except ValueError as exc:
        parser.error(str(exc))
    return args


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m benchmarks``: build, measure, print the table."""
    from .lines import LINES, ON_REQUEST

    args = _parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="kithara-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    bench = Bench(args, workdir.resolve())
    if bench.missing:
        print(f"peers not installed, their rows skipped: {', '.join(sorted(bench.missing))}", file=sys.stderr)
    rows: list[Row] = []
    started = time.monotonic()
    load_start = os.getloadavg()[0]
    if load_start > (os.cpu_count() or 1) / 2:
        print(
            f"warning: load average {load_start:.1f}: other processes may skew the figures", file=sys.stderr
        )
    try:
        for name in args.only or [n for n in LINES if n not in ON_REQUEST]:
            t0 = time.monotonic()
            print(f"[{name}] ...", file=sys.stderr, flush=True)
            rows += LINES[name](bench)
            print(f"[{name}] {time.monotonic() - t0:.1f} s", file=sys.stderr, flush=True)
    finally:
        bench.close()
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    mode = "quick" if args.quick else "full" if args.full else "default"
    load = f"load {load_start:.1f} → {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    took = time.monotonic() - started
    print(f"\nkithara-hls benchmarks ({mode} sizes, repeat {args.repeat}, {took:.0f} s, {load})\n")
    print(format_table(rows))
    for note in bench.notes:
        print(f"  * {note}")
    for error in bench.errors:
        print(f"\nERROR {error}")
    return 1 if bench.errors else 0
