"""The real-reader ABR benchmark: `kithara_hls.open` on a loopback link that follows a trace.

``python -m benchmarks.abr_real [--traces step-down,oscillation] [--no-pinned] [--segments N]
[--network workers=1,...] [-v]`` (or ``python -m benchmarks --only abr-real``) prints one
table and PASS/FAIL lines.

Each trace runs in real time in a process of its own, side by side: a testing
origin (`kithara_hls.testing.Origin`, whose link is shared fairly by all
connections) with 80 ms before every response, its bandwidth set at the
trace's change times by a thread; the reader is `kithara_hls.open(url)` with
default options (ABR on; only the cache folder is a fresh one, so no earlier
run's estimate or bytes help), and beside it, in another process on its own
link, the same reader pinned to the lowest rung (ABR off).

The stream: a master of five variants, 64/128/256/512/1024 kbit/s
(CODECS="mp4a.40.2"), 60 segments of 4 s each. A segment's body is synthetic:
a 12-byte header (magic, variant, segment index, length) then filler up to
exactly bitrate × 4 / 8 bytes, so the consumer learns from the bytes which
variant and segment it got.

The consumer plays like a player: it reads segment k whole through `readinto`,
but not before segment k's playback time minus one segment (a demuxer reads a
little ahead; reading as fast as possible would hide the buffer from ABR).
Playback starts when segment 0 is whole (the start-up wait, counted as
rebuffering); segment k is due at start + 4k + the stalls so far, and each
second its last byte comes after that is a stall.

Beside the real runs, on the same trace: the simple rate rule (the highest
rung at most 0.8 × the last segment's throughput) and the optimum, both
simulated as a sequential downloader (see `benchmarks.qoe`).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import queue
import shutil
import struct
import sys
import tempfile
import threading
import time
import traceback
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from .abr_report import WORST_OF_OPTIMUM, TraceResult, of_optimum, report
from .qoe import Model, Outcome, optimum, play, rate_rule
from .traces import Clock, Trace, all_traces

LADDER_KBPS = (64, 128, 256, 512, 1024)
SEGMENTS = 60
SEGMENT_S = 4.0
LATENCY_S = 0.08
BUFFER_CAP_S = 30.0
#: The consumer reads segment k from this many segments before its playback time.
READ_AHEAD_SEGMENTS = 1
#: magic, variant, segment index, total segment length.
HEADER = struct.Struct(">4sBxHI")
MAGIC = b"KABR"
#: A session may last this much longer than its playback before its process is ended.
SESSION_GRACE_S = 300.0
MASTER = "master.m3u8"


def segment_bytes(variant: int) -> int:
    """Size of one segment of `variant`: its bitrate × 4 s, in bytes."""
    return int(LADDER_KBPS[variant] * 1000 * SEGMENT_S / 8)


def build_stream(root: Path, segments: int) -> tuple[int, int]:
    """Write the master, the media playlists and the segments; the master's and a media playlist's size."""
    master = ["#EXTM3U", "#EXT-X-VERSION:3"]
    filler = bytes(range(256)) * (segment_bytes(len(LADDER_KBPS) - 1) // 256 + 1)
    for v, kbps in enumerate(LADDER_KBPS):
        master += [f'#EXT-X-STREAM-INF:BANDWIDTH={kbps * 1000},CODECS="mp4a.40.2"', f"v{v}/index.m3u8"]
        media = ["#EXTM3U", "#EXT-X-VERSION:3", f"#EXT-X-TARGETDURATION:{int(SEGMENT_S)}"]
        media += ["#EXT-X-MEDIA-SEQUENCE:0", "#EXT-X-PLAYLIST-TYPE:VOD"]
        folder = root / f"v{v}"
        folder.mkdir(parents=True, exist_ok=True)
        size = segment_bytes(v)
        for k in range(segments):
            name = f"seg{k:05d}.ts"
            head = HEADER.pack(MAGIC, v, k, size)
            (folder / name).write_bytes(head + filler[: size - len(head)])
            media += [f"#EXTINF:{SEGMENT_S:.1f},", name]
        media.append("#EXT-X-ENDLIST")
        (folder / "index.m3u8").write_text("\n".join(media) + "\n")
    (root / MASTER).write_text("\n".join(master) + "\n")
    return (root / MASTER).stat().st_size, (root / "v0" / "index.m3u8").stat().st_size


def model(playlist_bytes: tuple[int, ...], segments: int) -> Model:
    """The sequential model of this stream and player."""
    return Model(LADDER_KBPS, segments, SEGMENT_S, LATENCY_S, BUFFER_CAP_S, playlist_bytes)


# --- the child: one real session ---------------------------------------------------------------


def _follow(origin: Any, trace: Trace, t0: float, stop: threading.Event) -> None:
    """Set the origin's bandwidth at each of the trace's change times (bytes/s = kbit/s × 1000 / 8)."""
    for at, kbps in trace.steps[1:]:
        if stop.wait(max(t0 + at - time.monotonic(), 0.0)):
            return
        origin.bandwidth = kbps * 1000 / 8


def _read_exact(f: Any, view: memoryview) -> None:
    got = 0
    while got < len(view):
        n = f.readinto(view[got:])
        if not n:
            raise EOFError(f"stream ended {len(view) - got} bytes early")
        got += n


def _consume(f: Any, segments: int, t0: float, stop: threading.Event) -> dict[str, Any]:
    """Play like a player; per segment its variant and arrival, and the start-up and stalls."""
    head = bytearray(HEADER.size)
    body = bytearray(segment_bytes(len(LADDER_KBPS) - 1))
    variants: list[int] = []
    arrivals: list[float] = []
    stalls: list[tuple[int, float]] = []
    start = stall = 0.0
    for k in range(segments):
        due = start + k * SEGMENT_S + stall
        if k > 0:
            stop.wait(max(t0 + due - READ_AHEAD_SEGMENTS * SEGMENT_S - time.monotonic(), 0.0))
        _read_exact(f, memoryview(head))
        magic, variant, index, length = HEADER.unpack(head)
        if magic != MAGIC or index != k or length != segment_bytes(variant):
            raise ValueError(f"segment {k}: header {bytes(head)!r} is not segment {k} of any variant")
        _read_exact(f, memoryview(body)[: length - HEADER.size])
        arrival = time.monotonic() - t0
        if k == 0:
            start = arrival
        elif arrival > due:
            stall += arrival - due
            stalls.append((k, round(arrival - due, 3)))
        variants.append(variant)
        arrivals.append(round(arrival, 3))
    return {
        "variants": variants,
        "arrivals": arrivals,
        "stalls": stalls,
        "startup_s": start,
        "stall_s": stall,
    }


def session(
    root: str,
    trace: Trace,
    pinned: bool,
    segments: int,
    network: dict[str, Any] | None = None,
    abr: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One real-time session of `kithara_hls.open` on a link following `trace`; `network` and
    `abr` hold `NetworkOptions` and `AbrOptions` fields to change (none by default)."""
    import kithara_hls
    from kithara_hls.testing import Origin

    stop = threading.Event()
    with (
        tempfile.TemporaryDirectory(prefix="kithara-abr-cache-") as cache,
        Origin(root, latency=LATENCY_S, bandwidth=trace.steps[0][1] * 1000 / 8) as origin,
    ):
        options = kithara_hls.HlsOptions(
            variant=0 if pinned else None,
            cache=kithara_hls.CacheOptions(dir=cache),
            network=kithara_hls.NetworkOptions(**(network or {})),
            abr=kithara_hls.AbrOptions(**(abr or {})),
        )
        t0 = time.monotonic()
        follower = threading.Thread(
            target=_follow, args=(origin, trace, t0, stop), name="abr-bench-trace", daemon=True
        )
        follower.start()
        try:
            with kithara_hls.open(origin.url(MASTER), options) as f:
                result = _consume(f, segments, t0, stop)
        finally:
            stop.set()
            follower.join()
        gets = [r.path for r in origin.requests if r.method == "GET" and r.path.endswith(".ts")]
        result["segment_gets"] = [sum(p.startswith(f"v{v}/") for p in gets) for v in range(len(LADDER_KBPS))]
    return result


def _child(
    out: Any,
    key: tuple[str, bool],
    root: str,
    trace: Trace,
    segments: int,
    network: dict[str, Any],
    abr: dict[str, Any],
) -> None:
    try:
        out.put((key, session(root, trace, key[1], segments, network, abr)))
    except BaseException as exc:  # reported to the parent, which prints it under the table
        out.put((key, {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()}))


# --- the parent: run, score, print ------------------------------------------------------------------


def _outcome(report: dict[str, Any]) -> Outcome | str:
    if "error" in report:
        return str(report["error"])
    return Outcome(tuple(report["variants"]), report["startup_s"], report["stall_s"], LADDER_KBPS)


def run(
    names: list[str],
    segments: int,
    pinned: bool,
    verbose: bool = False,
    network: dict[str, Any] | None = None,
    abr: dict[str, Any] | None = None,
) -> list[TraceResult]:
    """Run the traces side by side in real time; simulate the baselines meanwhile."""
    traces = all_traces()
    workdir = Path(tempfile.mkdtemp(prefix="kithara-abr-real-"))
    try:
        sizes = build_stream(workdir / "stream", segments)
        ctx = mp.get_context("spawn")
        out: Any = ctx.Queue()
        procs: dict[tuple[str, bool], BaseProcess] = {}
        for name in names:
            for pin in (False, True) if pinned else (False,):
                p = ctx.Process(
                    target=_child,
                    args=(
                        out,
                        (name, pin),
                        str(workdir / "stream"),
                        traces[name],
                        segments,
                        network or {},
                        abr or {},
                    ),
                    name=f"abr-{name}-{'pinned' if pin else 'abr'}",
                    daemon=True,  # ended with the parent, should it be interrupted
                )
                p.start()
                procs[(name, pin)] = p
        m = model(sizes, segments)
        sims = {n: (optimum(m, Clock(traces[n])), play(m, Clock(traces[n]), rate_rule(m))) for n in names}
        reports = _collect(out, procs, time.monotonic() + segments * SEGMENT_S + SESSION_GRACE_S)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results = []
    for name in names:
        real = {
            pin: _outcome(reports.get((name, pin), {"error": "no report (ended at the deadline)"}))
            for pin in ((False, True) if pinned else (False,))
        }
        results.append(TraceResult(traces[name], m, sims[name][0], sims[name][1], real))
        if verbose:
            for pin in real:
                print(_details(name, pin, reports.get((name, pin), {})), file=sys.stderr)
    return results


def _details(name: str, pinned: bool, report: dict[str, Any]) -> str:
    """One session's report for -v: its variants in order and its segment GETs per variant."""
    label = f"  {name} {'pinned' if pinned else 'abr'}:"
    if "variants" not in report:
        return f"{label} {report.get('trace') or report.get('error', 'no report')}"
    stalls = " ".join(f"{k}:+{s:.2f}s" for k, s in report["stalls"]) or "none"
    return (
        f"{label} variants {''.join(map(str, report['variants']))}; segment GETs per variant"
        f" {report['segment_gets']}; stalls (segment:s) {stalls}"
    )


def _collect(out: Any, procs: dict[tuple[str, bool], BaseProcess], deadline: float) -> dict[Any, Any]:
    reports: dict[Any, Any] = {}
    while len(reports) < len(procs):
        try:
            key, report = out.get(timeout=max(deadline - time.monotonic(), 0.01))
        except queue.Empty:
            break
        reports[key] = report
        print(f"[abr-real] {key[0]} {'pinned' if key[1] else 'abr'} done", file=sys.stderr, flush=True)
    for p in procs.values():
        p.join(timeout=max(deadline - time.monotonic(), 1.0))
        if p.is_alive():
            p.terminate()  # only our own child, by its handle
            p.join()
    return reports


def parse_traces(arg: str) -> list[str]:
    """Trace names from a comma-separated list (all when empty); unknown names raise ValueError."""
    known = list(all_traces())
    names = [n.strip() for n in arg.split(",") if n.strip()] or known
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown trace(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    return names


def parse_fields(cls: type, arg: str) -> dict[str, Any]:
    """``name=value,...`` into fields of the options dataclass `cls`, each value of its default's type."""
    import dataclasses

    defaults = {f.name: getattr(cls(), f.name) for f in dataclasses.fields(cls)}
    out: dict[str, Any] = {}
    for item in filter(None, (x.strip() for x in arg.split(","))):
        name, _, value = item.partition("=")
        default = defaults.get(name)
        if isinstance(default, bool) or not isinstance(default, int | float) or not value:
            raise ValueError(f"{item!r}: not a numeric {cls.__name__} field=value")
        out[name] = type(default)(value)
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m benchmarks.abr_real``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.abr_real", description=__doc__.split("\n")[0])
    parser.add_argument("--traces", default="", help=f"comma-separated: {','.join(all_traces())}")
    parser.add_argument(
        "--segments", type=int, default=SEGMENTS, help="segments played (a shorter smoke run)"
    )
    parser.add_argument("--no-pinned", action="store_true", help="skip the pinned-lowest real runs")
    parser.add_argument(
        "--network",
        default="",
        help="NetworkOptions fields to change, to experiment (e.g. workers=1,lookahead=30); default none",
    )
    parser.add_argument(
        "--abr", default="", help="AbrOptions fields to change, to experiment (e.g. min_switch_interval=2)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="print every session's report")
    args = parser.parse_args(argv)
    try:
        names = parse_traces(args.traces)
        from kithara_hls import AbrOptions, NetworkOptions

        network = parse_fields(NetworkOptions, args.network)
        abr = parse_fields(AbrOptions, args.abr)
    except ValueError as exc:
        parser.error(str(exc))
    load0 = os.getloadavg()[0]
    started = time.monotonic()
    results = run(names, args.segments, not args.no_pinned, args.verbose, network, abr)
    for label, changed in (("NetworkOptions", network), ("AbrOptions", abr)):
        if changed:
            print(f"\n{label} changed from the defaults: {changed}")
    print(report(results, time.monotonic() - started, (load0, os.getloadavg()[0])))
    failed = any(isinstance(o, str) for r in results for o in r.real.values())
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())


def line(bench: Any) -> list[Any]:
    """The ``abr-real`` line of ``python -m benchmarks``: prints this table, returns summary rows."""
    from .run import Row, verdict

    started, load0 = time.monotonic(), os.getloadavg()[0]
    results = run(parse_traces(bench.args.traces), SEGMENTS, True, bench.args.verbose)
    print(report(results, time.monotonic() - started, (load0, os.getloadavg()[0])), flush=True)
    rows = []
    for r in results:
        o = r.real[False]
        if isinstance(o, str):
            bench.errors.append(f"abr-real {r.trace.name}: {o}")
            rows.append(Row(f"ABR real {r.trace.name}", result="ERROR"))
            continue
        frac = of_optimum(o, r.optimum)
        rows.append(
            Row(
                f"ABR real {r.trace.name}",
                ratio=f"{frac:.2f} of opt, {o.stall_s:.1f} s stall",
                target=f"≥ {WORST_OF_OPTIMUM} of optimum",
                result=verdict(frac >= WORST_OF_OPTIMUM),
            )
        )
    return rows
