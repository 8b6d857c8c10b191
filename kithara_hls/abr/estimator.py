"""Throughput estimation: time-weighted EWMAs and a recent rate, the most pessimistic wins.

The estimator is pure: the caller feeds it samples and asks for `estimate()`; it
owns no thread and reads no clock. The library feeds it intervals of the whole
link (`add_interval`, from `abr.meter.LinkMeter`: bytes of all downloads over the
time at least one was in flight, partial downloads and stalls included); `add`
takes one body transfer, for callers that measure downloads one by one. Only
network transfers are fed: a segment served from the cache says nothing about
the network and must never reach it. Interval samples also make the recent rate
(the last two seconds of link time), which caps the estimate so that a stall
shows at once; `estimate(recent=False)` leaves it out (what the down rule reckons a fetch at,
and what a fresh request may expect when only the downloads in flight stalled).

Each sample weighs its transfer time, but at least `min_weight_s`: after a weight
`w` an EWMA keeps ``0.5 ** (w / half_life)`` of its old value, as in Shaka Player
and dash.js. The floor is what lets small segments on a fast link move the
estimate: weighed by their few milliseconds of transfer alone, a hundred of them
would not outweigh one slow second, and the estimate would climb for minutes
after the link got faster. With it, a sample counts at least as much as a
`min_weight_s` transfer, so a rise is followed within a few segments of any size.
The fast EWMA follows drops within a segment or two; the slow one keeps a single
burst from inflating the estimate, and the lower of the two is returned. Both
start at zero and are divided by ``1 - 0.5 ** (total_weight / half_life)``
(zero-bias correction), so the first samples are not pulled towards zero.
"""

from __future__ import annotations

import collections

from kithara_hls.options import DEFAULT_FAST_HALF_LIFE_S, DEFAULT_SLOW_HALF_LIFE_S

#: Estimate before enough bytes were measured, bits per second (conservative, as hls.js).
DEFAULT_INITIAL_BPS = 500_000.0
#: Smaller transfers are ignored: their time is mostly latency, not bandwidth.
DEFAULT_MIN_SAMPLE_BYTES = 4_096
#: Bytes that must be measured before the EWMAs replace `initial_bps`.
DEFAULT_MIN_TOTAL_BYTES = 128_000
#: Half-life of the time-to-first-byte EWMA, in samples.
DEFAULT_TTFB_HALF_LIFE_SAMPLES = 4.0
#: Least weight of one sample, in seconds of transfer (see the module docstring).
DEFAULT_MIN_WEIGHT_S = 3.0
#: Most seconds of link time over which the recent rate is measured (interval samples
#: only; the fast half-life if shorter): a link that stalls or collapses shows in the
#: estimate within this long. It counts once half its window is measured.
RECENT_WINDOW_S = 2.0


class _Ewma:
    """An exponentially weighted moving average whose weights are seconds."""

    __slots__ = ("_half_life", "_total_weight", "_value")

    def __init__(self, half_life: float) -> None:
        if half_life <= 0:
            raise ValueError("half_life must be positive")
        self._half_life = half_life
        self._value = 0.0
        self._total_weight = 0.0

    def add(self, weight: float, value: float) -> None:
        keep = 0.5 ** (weight / self._half_life)
        self._value = keep * self._value + (1.0 - keep) * value
        self._total_weight += weight

    def get(self) -> float:
        # Zero-bias correction: the average started at 0, not at the first value.
        zero_factor = 1.0 - 0.5 ** (self._total_weight / self._half_life)
        return self._value / zero_factor if zero_factor > 0 else 0.0


class ThroughputEstimator:
    """Pure: fed samples, owns no thread or clock.

    fast_half_life / slow_half_life: seconds of (floored) transfer time after
    which a sample's weight halves. min_weight_s: the least weight of a sample,
    in seconds; 0 weighs samples by their transfer time alone. initial_bps: the
    estimate until min_total_bytes were measured (then min(initial_bps, measured)
    is returned, so a slow network is believed at once and a fast one only after
    enough data). min_sample_bytes: smaller transfers are ignored. Only network
    transfers are to be fed: cache hits never reach the estimator.
    """

    def __init__(
        self,
        *,
        fast_half_life: float = DEFAULT_FAST_HALF_LIFE_S,
        slow_half_life: float = DEFAULT_SLOW_HALF_LIFE_S,
        initial_bps: float = DEFAULT_INITIAL_BPS,
        min_sample_bytes: int = DEFAULT_MIN_SAMPLE_BYTES,
        min_total_bytes: int = DEFAULT_MIN_TOTAL_BYTES,
        min_weight_s: float = DEFAULT_MIN_WEIGHT_S,
    ) -> None:
        if initial_bps <= 0:
            raise ValueError("initial_bps must be positive")
        if min_weight_s < 0:
            raise ValueError("min_weight_s must not be negative")
        self._fast = _Ewma(fast_half_life)
        self._slow = _Ewma(slow_half_life)
        self._ttfb = _Ewma(DEFAULT_TTFB_HALF_LIFE_SAMPLES)
        self._initial_bps = float(initial_bps)
        self._min_sample_bytes = min_sample_bytes
        self._min_total_bytes = min_total_bytes
        self._min_weight_s = min_weight_s
        self._total_bytes = 0
        self._samples = 0
        self._ttfb_samples = 0
        self._last_sample_at: float | None = None
        # (seconds, bytes, now) of the last interval samples: RECENT_WINDOW_S of link time at
        # most, none older than that on the caller's clock (when link time is scarce, a slow
        # sample would otherwise hold the estimate down for many downloads after a rise).
        self._recent: collections.deque[tuple[float, int, float]] = collections.deque()
        self._recent_s = 0.0
        self._window_s = min(RECENT_WINDOW_S, fast_half_life)

    def add_interval(self, nbytes: int, seconds: float, now: float, *, min_weight: float = 0.0) -> bool:
        """Feed one interval of the link: `nbytes` arrived over all downloads in `seconds`
        during which at least one was in flight (so a stall feeds zero bytes).

        Weighed by its seconds, or `min_weight` if more (the meter gives an interval
        that ends a download some weight, as `add` does: on a link much faster than
        the media, link time is scarce and the averages would rise for minutes).
        Intervals also make the recent rate, the bytes over the last RECENT_WINDOW_S
        of link time (or the fast half-life), which caps the estimate once half of
        that is measured: a collapse shows within a second or two, a rise only
        through the EWMAs. Returns False for a non-positive duration.
        """
        if not seconds > 0 or nbytes < 0:
            return False
        bps = nbytes * 8.0 / seconds
        weight = max(seconds, min_weight)
        self._fast.add(weight, bps)
        self._slow.add(weight, bps)
        self._total_bytes += nbytes
        self._samples += 1
        self._last_sample_at = now
        self._recent.append((seconds, nbytes, now))
        self._recent_s += seconds
        while self._recent and (
            self._recent_s - self._recent[0][0] >= self._window_s
            or now - self._recent[0][2] > RECENT_WINDOW_S + self._recent[0][0]
        ):
            self._recent_s -= self._recent.popleft()[0]
        return True

    def add(self, nbytes: int, seconds: float, now: float) -> bool:
        """Feed one body transfer: `nbytes` from first to last body byte in `seconds`.

        `now` is the caller's monotonic time at the end of the transfer. Returns
        False (and changes nothing) for transfers under min_sample_bytes or with a
        non-positive duration.
        """
        if nbytes < self._min_sample_bytes or nbytes <= 0 or not seconds > 0:
            return False
        bps = nbytes * 8.0 / seconds
        weight = max(seconds, self._min_weight_s)
        self._fast.add(weight, bps)
        self._slow.add(weight, bps)
        self._total_bytes += nbytes
        self._samples += 1
        self._last_sample_at = now
        return True

    def add_ttfb(self, seconds: float) -> None:
        """Feed one time to first byte (request sent to first body byte), in seconds.

        Tracked on its own, one sample one weight; it never enters the throughput.
        """
        if seconds < 0:
            return
        self._ttfb.add(1.0, seconds)
        self._ttfb_samples += 1

    def estimate(self, *, recent: bool = True) -> float:
        """The throughput estimate, bits per second: min(fast EWMA, slow EWMA), and the recent
        rate of interval samples (unless `recent` is False: what a fresh connection may expect
        when only the ones in flight stalled)."""
        if self._samples == 0:
            return self._initial_bps
        measured = min(self._fast.get(), self._slow.get())
        now_bps = self.recent_rate() if recent else None
        if now_bps is not None:
            measured = min(measured, now_bps)
        if self._total_bytes < self._min_total_bytes:
            return min(self._initial_bps, measured)
        return measured

    def recent_rate(self, window_s: float | None = None) -> float | None:
        """The recent rate of interval samples alone, bits/s: where the link is now, which the
        averages follow with a lag after a rise; over the last `window_s` seconds of link time
        if shorter than the window (it shows a rise sooner, and bursts too). None until half
        that is measured. It moves only as intervals are fed: an idle link keeps the rate it
        last had."""
        window = self._window_s if window_s is None else min(window_s, self._window_s)
        seconds, nbytes = 0.0, 0
        for sample_s, sample_bytes, _ in reversed(self._recent):
            if seconds >= window:
                break
            seconds += sample_s
            nbytes += sample_bytes
        if seconds < window / 2:
            return None
        return nbytes * 8.0 / seconds

    @property
    def ttfb(self) -> float | None:
        """The smoothed time to first byte in seconds, or None before any sample."""
        return self._ttfb.get() if self._ttfb_samples else None

    @property
    def samples(self) -> int:
        """How many throughput samples were accepted."""
        return self._samples

    @property
    def total_bytes(self) -> int:
        """Bytes of the accepted samples."""
        return self._total_bytes

    @property
    def last_sample_at(self) -> float | None:
        """The `now` of the last accepted sample, or None."""
        return self._last_sample_at
