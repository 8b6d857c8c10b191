"""The link meter: bytes arriving over all downloads together, and each download's progress.

Downloads share one link, so the estimate is of the link, not of one
connection: the meter adds up the bytes every download delivers and the time
during which at least one was *flowing* (its response had begun: headers or a
first byte), and feeds the estimator one interval at a time (`sample`), partial
downloads included. A stalled link then feeds intervals of zero bytes, and the
estimate falls within a second or two, where samples taken at the end of each
download would wait for a download to end. The wait for a response (the time
to first byte) is latency, not bandwidth, and is left out, as hls.js and
ExoPlayer leave it out: counted, it would make a link look slower the smaller
its segments and the fewer the downloads in flight, as at the start, where the
first choice is made on a few small segments. It is measured on its own
(`add_ttfb`), for the abandon rule.
Each download in flight is kept with its progress, for the abandon rule
(`abr.abandon`). Thread-safe; the clock is injected for tests.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .estimator import ThroughputEstimator

#: Link seconds (at least one download flowing) between two interval samples.
SAMPLE_INTERVAL_S = 0.5
#: ... or sooner, once this many bytes arrived: a fast link is believed within a few chunks.
SAMPLE_BYTES = 512 * 1024
#: Least weight, in seconds, of an interval that ends a download and brought at least
#: `FLOOR_MIN_BYTES`: a small segment on a fast link still moves the averages.
DOWNLOAD_MIN_WEIGHT_S = 3.0
FLOOR_MIN_BYTES = 16 * 1024


@dataclass
class Download:
    """One download in flight (its fields change under the meter's lock; read `Progress`)."""

    rid: str
    index: int
    variant: int
    started: float
    loaded: int = 0
    size: int | None = None
    #: Its response has begun (headers or a byte): from then on it is link time.
    flowing: bool = False


@dataclass(frozen=True)
class Progress:
    """A snapshot of one download in flight: bytes `loaded` of `size` (None: unknown yet),
    `elapsed` seconds after its request was sent."""

    rid: str
    index: int
    variant: int
    loaded: int
    size: int | None
    elapsed: float


class LinkMeter:
    """Measures the link over all concurrent downloads and feeds `estimator` (which it owns).

    on_busy(): called (outside the lock) when a download starts while none was in
    flight, so the ABR thread starts watching the link.
    """

    def __init__(
        self, estimator: ThroughputEstimator, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._estimator = estimator
        self._clock = clock
        self._lock = threading.Lock()
        self._downloads: dict[int, Download] = {}  # by id() of the record
        self._busy_since: float | None = None  # while a download is flowing
        self._busy_s = 0.0  # link seconds not yet sampled
        self._bytes = 0  # bytes not yet sampled
        self.on_busy: Callable[[], None] | None = None

    def begin(self, rid: str, index: int, variant: int) -> Download:
        """A download's request is about to be sent."""
        download = Download(rid, index, variant, self._clock())
        with self._lock:
            first = not self._downloads
            self._downloads[id(download)] = download
        if first and self.on_busy is not None:
            self.on_busy()
        return download

    def sized(self, download: Download, size: int) -> None:
        """The download's total size, from its headers."""
        with self._lock:
            download.size = size
            self._flowing(download)

    def arrived(self, download: Download, nbytes: int) -> None:
        """`nbytes` of the download arrived."""
        with self._lock:
            self._flowing(download)
            download.loaded += nbytes
            self._bytes += nbytes

    def _flowing(self, download: Download) -> None:
        """The download's response has begun: link time from now if none was flowing (lock held)."""
        if download.flowing:
            return
        if self._busy_since is None:
            self._busy_since = self._clock()
        download.flowing = True

    def end(self, download: Download) -> None:
        """The download ended (whole, failed or abandoned)."""
        now = self._clock()
        with self._lock:
            if self._downloads.pop(id(download), None) is None:
                return
            flowing = any(d.flowing for d in self._downloads.values())
            if not flowing and self._busy_since is not None:
                self._busy_s += now - self._busy_since
                self._busy_since = None

    @property
    def busy(self) -> bool:
        """True while a download is in flight (flowing or waiting for its response)."""
        with self._lock:
            return bool(self._downloads)

    def sample(self, *, force: bool = False) -> bool:
        """Feed the estimator the interval since the last sample, once it lasted SAMPLE_INTERVAL_S
        of link time or brought SAMPLE_BYTES (`force`, as a download ends: whatever it lasted,
        weighed at least DOWNLOAD_MIN_WEIGHT_S if it brought FLOOR_MIN_BYTES). True if fed."""
        now = self._clock()
        with self._lock:
            busy_s = self._busy_s
            if self._busy_since is not None:
                busy_s += now - self._busy_since
            if busy_s <= 0 or (not force and busy_s < SAMPLE_INTERVAL_S and self._bytes < SAMPLE_BYTES):
                return False
            floor = DOWNLOAD_MIN_WEIGHT_S if force and self._bytes >= FLOOR_MIN_BYTES else 0.0
            fed = self._estimator.add_interval(self._bytes, busy_s, now, min_weight=floor)
            self._bytes = 0
            self._busy_s = 0.0
            if self._busy_since is not None:
                self._busy_since = now
            return fed

    def estimate(self, *, recent: bool = True) -> float:
        """The link estimate in bits/s (samples first, if an interval is due); see
        `ThroughputEstimator.estimate` for `recent`."""
        self.sample()
        with self._lock:
            return self._estimator.estimate(recent=recent)

    def recent_rate(self, window_s: float | None = None) -> float | None:
        """The link's recent rate alone, bits/s (`ThroughputEstimator.recent_rate`)."""
        with self._lock:
            return self._estimator.recent_rate(window_s)

    def measured_bytes(self) -> int:
        """Bytes the estimator was fed."""
        with self._lock:
            return self._estimator.total_bytes

    def add_ttfb(self, seconds: float) -> None:
        """A response's time to its headers, for the estimator's TTFB average."""
        with self._lock:
            self._estimator.add_ttfb(seconds)

    def ttfb(self) -> float | None:
        """The smoothed time to headers, seconds (None before any)."""
        with self._lock:
            return self._estimator.ttfb

    def downloads(self) -> list[Progress]:
        """The downloads in flight now, oldest first."""
        now = self._clock()
        with self._lock:
            return [
                Progress(d.rid, d.index, d.variant, d.loaded, d.size, now - d.started)
                for d in self._downloads.values()
            ]
