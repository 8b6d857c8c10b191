"""Bandwidth traces of the real-reader ABR benchmark, and a sequential downloader's clock on them.

A trace is piecewise constant: ``(start_s, kbit_s)`` steps from 0 s; the last
rate holds forever. Each is long enough for 60 segments of 4 s plus stalls.
The measured-network traces are synthetic and seeded, SHAPED like published
logs, not copied from them: "3g" like the HSDPA commute logs of Riiser et al.
(MMSys 2013: 1 s samples, long stretches between roughly 0.3 and 3 Mbit/s,
deep fades and near-outages in tunnels), "4g" like the Ghent 4G/LTE logs of
van der Hooft et al. (IEEE Comm. Letters 2016: 1 s samples, a high mean with
large second-to-second swings), "broadband" like fixed-line measurements (a
steady rate with small jitter and a few dips of cross traffic). Their rates are
scaled to the 64-1024 kbit/s ladder, so that every rung matters.
"""

from __future__ import annotations

import bisect
import math
import random
from dataclasses import dataclass

#: Traces are defined this far; the last rate holds after it.
TRACE_SPAN_S = 600.0
#: Changes are counted over the playback of 60 segments of 4 s.
PLAYBACK_S = 240.0
SEED = 20261206


@dataclass(frozen=True)
class Trace:
    """A named piecewise-constant link rate: ``steps`` are ``(start_s, kbit_s)``, the first at 0."""

    name: str
    steps: tuple[tuple[float, float], ...]
    #: A plain step trace: no rebuffering after start-up is expected when its low rate allows.
    step: bool = False

    def kbps_at(self, t: float) -> float:
        """The rate at `t` seconds, kbit/s."""
        i = bisect.bisect_right([s for s, _ in self.steps], t) - 1
        return self.steps[max(i, 0)][1]

    def changes(self, until: float = PLAYBACK_S) -> int:
        """How many times the rate changes before `until` seconds."""
        return sum(
            1 for (_, a), (t, b) in zip(self.steps, self.steps[1:], strict=False) if t < until and a != b
        )

    @property
    def low_kbps(self) -> float:
        """The lowest rate over the playback."""
        return min(k for t, k in self.steps if t < PLAYBACK_S)


class Clock:
    """When a sequential download finishes on a trace: bytes delivered at the trace's rate."""

    def __init__(self, trace: Trace) -> None:
        self._times = [s for s, _ in trace.steps]
        self._rates = [k * 1000 / 8 for _, k in trace.steps]  # bytes per second
        self._cum = [0.0]
        for (t0, r), t1 in zip(zip(self._times, self._rates, strict=True), self._times[1:], strict=False):
            self._cum.append(self._cum[-1] + r * (t1 - t0))

    def delivered(self, t: float) -> float:
        """Bytes the link carries from 0 to `t`."""
        i = max(bisect.bisect_right(self._times, t) - 1, 0)
        return self._cum[i] + self._rates[i] * (t - self._times[i])

    def finish(self, start: float, nbytes: float) -> float:
        """When `nbytes` sent from `start` on are all delivered."""
        target = self.delivered(start) + nbytes
        j = max(bisect.bisect_right(self._cum, target) - 1, 0)
        return self._times[j] + (target - self._cum[j]) / self._rates[j]


def _hold(values: list[tuple[float, float]]) -> tuple[tuple[float, float], ...]:
    """Steps from ``(duration_s, kbit_s)`` pairs laid end to end; equal neighbours merged."""
    steps: list[tuple[float, float]] = []
    t = 0.0
    for duration, kbps in values:
        if not steps or steps[-1][1] != kbps:
            steps.append((round(t, 3), round(kbps, 1)))
        t += duration
    return tuple(steps)


def _random_walk(rng: random.Random) -> tuple[tuple[float, float], ...]:
    """A log-space walk between 120 and 2000 kbit/s, each level held 2-10 s."""
    lo, hi = math.log(120), math.log(2000)
    x, out, t = math.log(600), [], 0.0
    while t < TRACE_SPAN_S:
        x += rng.gauss(0.0, 0.45)
        x = min(max(x, lo), hi)  # clamp: the walk rests on a bound for a while, as links do
        hold = rng.uniform(2.0, 10.0)
        out.append((hold, math.exp(x)))
        t += hold
    return _hold(out)


def _hsdpa_like(rng: random.Random) -> tuple[tuple[float, float], ...]:
    """3G commute: sticky levels in 2 s samples, lognormal noise, fades to 40-80 kbit/s for 4-10 s."""
    levels = (150.0, 350.0, 650.0, 1000.0, 1500.0)
    s, out, t = 2, [], 0.0
    while t < TRACE_SPAN_S:
        if rng.random() < 0.02 and t > 20:
            hold = rng.uniform(4.0, 10.0)
            out.append((hold, rng.uniform(40.0, 80.0)))  # a tunnel
            t += hold
            continue
        if rng.random() < 0.15:
            s = min(max(s + rng.choice((-2, -1, 1, 1, 2)), 0), len(levels) - 1)
        out.append((2.0, levels[s] * math.exp(rng.gauss(0.0, 0.25))))
        t += 2.0
    return _hold(out)


def _lte_like(rng: random.Random) -> tuple[tuple[float, float], ...]:
    """4G/LTE on the move: 1 s samples around a slowly drifting mean, large swings, 0.15-3 Mbit/s."""
    mean, out, t = math.log(900), [], 0.0
    while t < TRACE_SPAN_S:
        mean += 0.05 * (math.log(900) - mean) + rng.gauss(0.0, 0.15)
        kbps = math.exp(mean + rng.gauss(0.0, 0.5))
        out.append((1.0, min(max(kbps, 150.0), 3000.0)))
        t += 1.0
    return _hold(out)


def _broadband_like(rng: random.Random) -> tuple[tuple[float, float], ...]:
    """Fixed line: about 1.3 Mbit/s with 5 s jitter of a few per cent, and cross-traffic dips."""
    out, t = [], 0.0
    while t < TRACE_SPAN_S:
        if rng.random() < 0.04 and t > 20:
            hold = rng.uniform(8.0, 20.0)
            out.append((hold, rng.uniform(350.0, 600.0)))
            t += hold
            continue
        out.append((5.0, 1300.0 * (1.0 + rng.uniform(-0.08, 0.08))))
        t += 5.0
    return _hold(out)


def _square(high: float, low: float, half_period: float) -> tuple[tuple[float, float], ...]:
    n = int(TRACE_SPAN_S / half_period)
    return _hold([(half_period, high if i % 2 == 0 else low) for i in range(n)])


def all_traces() -> dict[str, Trace]:
    """Every trace by name, in table order."""
    rng = random.Random(SEED)
    traces = [
        Trace("step-down", ((0.0, 1500.0), (60.0, 300.0)), step=True),
        Trace("step-up", ((0.0, 150.0), (60.0, 1500.0)), step=True),
        Trace("oscillation", _square(1400.0, 250.0, 30.0), step=True),
        Trace("random-walk", _random_walk(rng)),
        Trace("3g", _hsdpa_like(rng)),
        Trace("4g", _lte_like(rng)),
        Trace("broadband", _broadband_like(rng)),
    ]
    return {t.name: t for t in traces}
