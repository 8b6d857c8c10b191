"""`kithara-hls demo`: the whole story on one machine, with nothing but loopback.

Builds a three-variant AAC stream with ffmpeg's HLS muxer (through PyAV),
serves it from a loopback origin whose bandwidth drops half-way, plays it
through `kithara_hls.open` into a WAV file while the events scroll by, then
stops the origin and replays the stream offline from the cache.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

from . import events as ev
from .decode import decode_to_wav
from .options import AbrOptions, CacheOptions, HlsOptions, NetworkOptions
from .source import open as hls_open

#: Link speed before and after the mid-stream drop, bytes per second.
FAST_LINK = 4_000_000
SLOW_LINK = 20_000
#: Per-request latency of the demo origin.
DEMO_LATENCY_S = 0.02
#: ABR tuned for a 24-second stream: short buffers and intervals, so switches show.
DEMO_ABR = AbrOptions(min_buffer_for_up_switch_secs=2.0, down_switch_buffer_secs=5.0, min_switch_interval=2.0)
DEMO_NETWORK = NetworkOptions(lookahead=6.0)


class _Printer:
    """Prints events as they arrive (callback style) and counts them."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.counts: dict[str, int] = {}
        self.switches: list[ev.VariantApplied] = []
        self.lock = threading.Lock()

    def __call__(self, event: ev.Event) -> None:
        name = type(event).__name__
        with self.lock:
            self.counts[name] = self.counts.get(name, 0) + 1
        if isinstance(event, ev.VariantApplied):
            self.switches.append(event)
        if self.quiet or isinstance(event, (ev.BufferLevel, ev.DownloadProgress, ev.PlaybackProgress)):
            return
        print(f"  event {_describe(event)}", flush=True)


def _describe(event: ev.Event) -> str:
    if isinstance(event, ev.ThroughputSample):
        return f"ThroughputSample({event.bytes_per_second * 8 / 1e6:.2f} Mbit/s)"
    if isinstance(event, ev.Error):
        return f"Error({type(event.error).__name__}: {event.error}, recoverable={event.recoverable})"
    return repr(event)


def run_demo(
    *,
    keep: bool = False,
    quiet: bool = False,
    workdir: Path | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> int:
    """Run the demonstration; returns the process exit code.

    cache_dir: the cache to fill and replay from (default: one in the work folder,
    removed with it unless `keep`).
    """
    from .testing import Origin, build_ts_variants

    root = workdir or Path(tempfile.mkdtemp(prefix="kithara-demo-"))
    try:
        print(f"building a 3-variant AAC stream with ffmpeg's HLS muxer in {root}", flush=True)
        fixture = build_ts_variants(root / "www", name="demo", seconds=24.0, segment_seconds=2.0)
        cache = CacheOptions(dir=cache_dir if cache_dir is not None else root / "cache")
        with Origin(root / "www", latency=DEMO_LATENCY_S, bandwidth=FAST_LINK) as origin:
            url = origin.url(fixture.entry)
            print(f"serving on {origin.base_url} (link {FAST_LINK * 8 / 1e6:.0f} Mbit/s, drops half-way)")
            online = HlsOptions(cache=cache, abr=DEMO_ABR, network=DEMO_NETWORK)
            first = _play(url, online, root / "online.wav", quiet, origin)
            requests_online = origin.count()
        print("origin stopped: replaying offline from the cache", flush=True)
        second = _play(url, HlsOptions(cache=cache, offline=True), root / "offline.wav", quiet, None)
        same = abs(first - second) < 0.05
        print(
            f"offline replay: {second:.2f} s of audio {'as' if same else 'UNLIKE'} online, 0 requests "
            f"(online run made {requests_online})"
        )
        return 0 if same else 1
    finally:
        if keep:
            print(f"files kept in {root}")
        elif workdir is None:
            shutil.rmtree(root, ignore_errors=True)


def _play(url: str, options: HlsOptions, wav: Path, quiet: bool, origin: object | None) -> float:
    printer = _Printer(quiet)
    started = time.monotonic()
    with hls_open(url, options) as f:
        f.on_event(printer)
        if origin is not None:
            f.on_event(_Throttle(origin, f.duration))
        print(f"opened {url}: {len(f.variants)} variants, {f.duration:.1f} s", flush=True)
        seconds = decode_to_wav(f, wav, status=not quiet)
        size = f.size()
        decisions = f.abr_decisions()
    elapsed = time.monotonic() - started
    counts = ", ".join(f"{k} {v}" for k, v in sorted(printer.counts.items()))
    print(f"decoded {seconds:.2f} s of audio from {size} stream bytes in {elapsed:.2f} s -> {wav.name}")
    print(f"events: {counts}")
    if printer.switches:
        print(
            "variant switches: "
            + "; ".join(f"{s.from_variant}->{s.to_variant} ({s.reason.value})" for s in printer.switches)
        )
    for decision in decisions:
        print(f"abr decided {decision.from_variant}->{decision.to_variant}: {decision.note}")
    sys.stdout.flush()
    return seconds


class _Throttle:
    """Drops the origin's bandwidth once the downloads pass half the stream."""

    def __init__(self, origin: object, duration: float) -> None:
        self._origin = origin
        self._half = duration / 2
        self._done = False

    def __call__(self, event: ev.Event) -> None:
        if self._done or not isinstance(event, ev.SegmentComplete):
            return
        if event.segment_index * event.duration >= self._half:
            self._done = True
            self._origin.bandwidth = SLOW_LINK  # type: ignore[attr-defined]
            print(f"  origin: link drops to {SLOW_LINK * 8 / 1000:.0f} kbit/s", flush=True)
