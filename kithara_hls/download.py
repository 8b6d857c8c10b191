"""Pre-caching: fill the cache with a whole stream so it plays offline."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass

from .events import DownloadProgress, Event, PlaybackProgress
from .options import HlsOptions
from .source import HlsSource

#: Bytes per read while draining a stream into the cache.
DRAIN_CHUNK = 1 << 20  # 1 MiB
#: Look-ahead while downloading: the whole stream.
WHOLE_STREAM_S = float("inf")


@dataclass(frozen=True)
class DownloadResult:
    """What `download` did."""

    variants: tuple[int, ...]
    bytes: int
    seconds: float


def download(
    url: str,
    options: HlsOptions | None = None,
    *,
    all_variants: bool = False,
    progress: Callable[[DownloadProgress], None] | None = None,
) -> DownloadResult:
    """Fetch a whole stream into the cache: `options.variant` (default the lowest), or every variant.

    The variants are those of the track `options.track` and `options.audio` choose (the audio
    ladder of an audio track), as `HlsSource.variants` lists them.

    `progress` is called with `DownloadProgress(offset, percent)` as bytes arrive;
    percent covers all the variants being fetched. A second call finds
    everything cached and returns at once.
    """
    options = options or HlsOptions()
    network = dataclasses.replace(options.network, lookahead=WHOLE_STREAM_S, lookahead_bytes=2**62)
    base = options.replace(network=network)
    started = time.monotonic()
    with HlsSource(url, base.replace(variant=options.variant or 0)) as first:
        count = len(first.variants)
        targets = tuple(range(count)) if all_variants else (options.variant or 0,)
        total = _drain(first, progress, 0, 0, len(targets))
    for n, variant in enumerate(targets[1:], start=1):
        with HlsSource(url, base.replace(variant=variant)) as f:
            total = _drain(f, progress, total, n, len(targets))
    return DownloadResult(targets, total, time.monotonic() - started)


def _drain(
    f: HlsSource, progress: Callable[[DownloadProgress], None] | None, done: int, nth: int, of: int
) -> int:
    buf = memoryview(bytearray(DRAIN_CHUNK))
    played = _Played()
    if progress is not None:
        f.on_event(played)
    while n := f.readinto(buf):
        done += n
        if progress is not None:
            fraction = (nth + played.percent / 100.0) / of
            progress(DownloadProgress(done, 100.0 * fraction))
    if progress is not None:
        progress(DownloadProgress(done, 100.0 * (nth + 1) / of))
    return done


class _Played:
    """How far the reader is, from the source's `PlaybackProgress` events (sent on the reader's thread)."""

    def __init__(self) -> None:
        self.percent = 0.0

    def __call__(self, event: Event) -> None:
        if isinstance(event, PlaybackProgress):
            self.percent = min(100.0, event.percent)
