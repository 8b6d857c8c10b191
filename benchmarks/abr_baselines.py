"""Baseline ABR policies for the trace-driven simulator in `benchmarks.abr`.

Every policy answers `choose(now, buffer_s)` before each segment and is told about
each finished download through `observe(nbytes, seconds, ttfb, now)`, where
`seconds` is the body transfer time (the RTT is reported apart as `ttfb`).
They all start at the lowest variant, as kithara-hls does without an estimate.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Callable, Sequence
from typing import Protocol

from kithara_hls.abr.estimator import ThroughputEstimator


class Policy(Protocol):
    """What the simulator drives."""

    def choose(self, now: float, buffer_s: float) -> int:
        """The variant of the next segment."""
        ...

    def observe(self, nbytes: int, seconds: float, ttfb: float, now: float) -> None:
        """One finished download: body bytes, body seconds, time to first byte, end time."""
        ...


#: Builds a fresh policy for a ladder (bits/s, ascending) and segment duration.
PolicyFactory = Callable[[Sequence[int], float], Policy]


class _Blind:
    """Ignores the network."""

    def observe(self, nbytes: int, seconds: float, ttfb: float, now: float) -> None:
        """Nothing to learn."""


class Lowest(_Blind):
    """Always the lowest variant."""

    def __init__(self, bitrates: Sequence[int], segment_s: float) -> None:
        self._top = len(bitrates) - 1

    def choose(self, now: float, buffer_s: float) -> int:
        """Variant 0."""
        return 0


class Highest(Lowest):
    """Always the highest variant."""

    def choose(self, now: float, buffer_s: float) -> int:
        """The top variant."""
        return self._top


def _highest_below(bitrates: Sequence[int], limit: float) -> int:
    best = 0
    for i, b in enumerate(bitrates):
        if b <= limit:
            best = i
    return best


class RateBased:
    """Highest bitrate under the harmonic mean of the last five throughputs."""

    def __init__(self, bitrates: Sequence[int], segment_s: float) -> None:
        self._bitrates = bitrates
        self._past: collections.deque[float] = collections.deque(maxlen=5)

    def choose(self, now: float, buffer_s: float) -> int:
        """Rate rule; the lowest before any sample."""
        if not self._past:
            return 0
        harmonic = len(self._past) / sum(1.0 / x for x in self._past)
        return _highest_below(self._bitrates, harmonic)

    def observe(self, nbytes: int, seconds: float, ttfb: float, now: float) -> None:
        """Remember the body throughput."""
        self._past.append(nbytes * 8.0 / seconds)


class HlsJs:
    """hls.js-style: min of 3 s / 9 s EWMAs, 0.95 of it to stay or go down, 0.7 to go up."""

    def __init__(self, bitrates: Sequence[int], segment_s: float) -> None:
        self._bitrates = bitrates
        self._est = ThroughputEstimator(
            fast_half_life=3.0, slow_half_life=9.0, min_sample_bytes=0, min_total_bytes=0, min_weight_s=0.0
        )
        self._current = 0

    def choose(self, now: float, buffer_s: float) -> int:
        """The highest variant under the factor that applies to it."""
        if self._est.samples == 0:
            return 0
        estimate = self._est.estimate()
        best = 0
        for i, b in enumerate(self._bitrates):
            if b <= (0.7 if i > self._current else 0.95) * estimate:
                best = i
        self._current = best
        return best

    def observe(self, nbytes: int, seconds: float, ttfb: float, now: float) -> None:
        """Feed the EWMAs."""
        self._est.add(nbytes, seconds, now)


class Bba(_Blind):
    """BBA-0 (Huang et al. 2014): rate map over the buffer, reservoir 5 s, cushion 16 s."""

    def __init__(
        self, bitrates: Sequence[int], segment_s: float, reservoir: float = 5.0, cushion: float = 16.0
    ) -> None:
        self._bitrates = bitrates
        self._reservoir = reservoir
        self._cushion = cushion
        self._current = 0

    def choose(self, now: float, buffer_s: float) -> int:
        """The BBA-0 rate map with its stay band between neighbours."""
        rates, cur, top = self._bitrates, self._current, len(self._bitrates) - 1
        if buffer_s <= self._reservoir:
            nxt = 0
        elif buffer_s >= self._reservoir + self._cushion:
            nxt = top
        else:
            f = rates[0] + (rates[-1] - rates[0]) * (buffer_s - self._reservoir) / self._cushion
            if f >= rates[min(cur + 1, top)]:
                nxt = max(i for i, b in enumerate(rates) if b < f)
            elif f <= rates[max(cur - 1, 0)]:
                nxt = min(i for i, b in enumerate(rates) if b > f)
            else:
                nxt = cur
        self._current = nxt
        return nxt


class Bola(_Blind):
    """BOLA-BASIC with dash.js's parameters: 10 s minimum buffer, target = cap - one segment."""

    def __init__(
        self, bitrates: Sequence[int], segment_s: float, target_s: float = 26.0, minimum_s: float = 10.0
    ) -> None:
        self._bitrates = bitrates
        self._utilities = [math.log(b / bitrates[0]) + 1.0 for b in bitrates]
        self._gp = (self._utilities[-1] - 1.0) / (target_s / minimum_s - 1.0)
        self._vp = minimum_s / self._gp

    def choose(self, now: float, buffer_s: float) -> int:
        """argmax of (Vp·(u + gp) − buffer) / bitrate."""
        scores = [
            (self._vp * (u + self._gp) - buffer_s) / b
            for u, b in zip(self._utilities, self._bitrates, strict=True)
        ]
        return max(range(len(scores)), key=scores.__getitem__)


#: The baselines by name, in table order.
BASELINES: dict[str, PolicyFactory] = {
    "lowest": Lowest,
    "highest": Highest,
    "rate": RateBased,
    "hls.js": HlsJs,
    "bba": Bba,
    "bola": Bola,
}
