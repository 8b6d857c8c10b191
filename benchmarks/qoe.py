"""QoE_lin of a session, and what a sequential downloader that knows the trace could have done.

QoE_lin (Mao et al., SIGCOMM 2017) = Σ bitrate (Mbit/s) − 4.3 × rebuffer s −
Σ |bitrate change| (Mbit/s), the start-up wait counted as rebuffering.

The sequential model (`play`, `optimum`): the master and media playlists, then
one segment at a time, each request waiting `latency` before its body comes at
the trace's rate; playback starts when segment 0 is whole; the next request
waits while the buffer holds more than cap − one segment.

`optimum` is a dynamic program over (segment, variant, buffer in 0.1 s cells)
that knows the trace. It keeps, per cell, the plan with the best QoE so far, so
it is a very good plan rather than a proven bound, and its QoE is exact for
that plan. It allows no stall after start-up, unless no such plan exists; then
it takes the best plan with stalls.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .traces import Clock

#: QoE_lin's price of a second of rebuffering, per Mbit/s of bitrate.
REBUFFER_PENALTY = 4.3
#: The buffer cell of the dynamic program, seconds.
DP_CELL_S = 0.1
#: The simple rate rule: the highest rung at most this share of the last segment's throughput.
RATE_RULE_SHARE = 0.8


@dataclass(frozen=True)
class Model:
    """The stream and the player the sequential model plays."""

    ladder_kbps: tuple[int, ...]
    segments: int
    segment_s: float
    latency_s: float
    buffer_cap_s: float
    #: Bytes of the playlists fetched before the first segment, in order.
    playlist_bytes: tuple[int, ...]

    def size(self, variant: int) -> int:
        """Bytes of one segment of `variant`."""
        return int(self.ladder_kbps[variant] * 1000 * self.segment_s / 8)


@dataclass(frozen=True)
class Outcome:
    """How a session went: the variant of every segment, the start-up wait, the stalls after it."""

    variants: tuple[int, ...]
    startup_s: float
    stall_s: float
    ladder_kbps: tuple[int, ...]

    @property
    def rebuffer_s(self) -> float:
        """Rebuffering with the start-up wait included."""
        return self.startup_s + self.stall_s

    @property
    def switches(self) -> int:
        """How many times the variant changes between consecutive segments."""
        return sum(a != b for a, b in itertools.pairwise(self.variants))

    @property
    def mean_mbps(self) -> float:
        """Mean bitrate of the segments played, Mbit/s."""
        return sum(self.ladder_kbps[v] for v in self.variants) / 1000 / max(len(self.variants), 1)

    @property
    def qoe(self) -> float:
        """QoE_lin of the session."""
        return qoe_lin(self.ladder_kbps, self.variants, self.rebuffer_s)


def qoe_lin(ladder_kbps: Sequence[int], variants: Sequence[int], rebuffer_s: float) -> float:
    """Σ bitrate − 4.3 × rebuffer − Σ |change|, bitrates in Mbit/s."""
    rates = [ladder_kbps[v] / 1000 for v in variants]
    change = sum(abs(b - a) for a, b in itertools.pairwise(rates))
    return sum(rates) - REBUFFER_PENALTY * rebuffer_s - change


def _startup_clock(model: Model, clock: Clock) -> float:
    """When the playlists are in and the first segment can be asked for."""
    t = 0.0
    for nbytes in model.playlist_bytes:
        t = clock.finish(t + model.latency_s, nbytes)
    return t


#: Picks the next variant from the segment index and the past downloads as (bytes, seconds).
Chooser = Callable[[int, list[tuple[int, float]]], int]


def play(model: Model, clock: Clock, choose: Chooser) -> Outcome:
    """One sequential session: `choose` picks each segment's variant."""
    t = _startup_clock(model, clock)
    buffer = startup = stall = 0.0
    history: list[tuple[int, float]] = []
    variants: list[int] = []
    ceiling = model.buffer_cap_s - model.segment_s
    for n in range(model.segments):
        if buffer > ceiling:
            t, buffer = t + buffer - ceiling, ceiling
        v = choose(n, history)
        done = clock.finish(t + model.latency_s, model.size(v))
        took = done - t
        if n == 0:
            startup = done
        else:
            stall += max(took - buffer, 0.0)
            buffer = max(buffer - took, 0.0)
        buffer += model.segment_s
        t = done
        history.append((model.size(v), took))
        variants.append(v)
    return Outcome(tuple(variants), startup, stall, model.ladder_kbps)


def rate_rule(model: Model) -> Chooser:
    """The highest rung at most 0.8 × the last segment's throughput (request to last byte)."""

    def choose(n: int, history: list[tuple[int, float]]) -> int:
        if not history:
            return 0
        nbytes, seconds = history[-1]
        limit = RATE_RULE_SHARE * nbytes * 8 / 1000 / seconds
        return max((i for i, k in enumerate(model.ladder_kbps) if k <= limit), default=0)

    return choose


@dataclass
class _State:
    reward: float
    t: float
    buffer: float
    variant: int
    parent: int


def _dp(model: Model, clock: Clock, allow_stall: bool) -> list[int] | None:
    rates = [k / 1000 for k in model.ladder_kbps]
    t0 = _startup_clock(model, clock)
    layers: list[list[_State]] = [[]]
    for v in range(len(rates)):
        done = clock.finish(t0 + model.latency_s, model.size(v))
        layers[0].append(_State(rates[v] - REBUFFER_PENALTY * done, done, model.segment_s, v, -1))
    ceiling = model.buffer_cap_s - model.segment_s
    for _ in range(1, model.segments):
        best: dict[tuple[int, int], _State] = {}
        for i, s in enumerate(layers[-1]):
            t, buffer = s.t, s.buffer
            if buffer > ceiling:
                t, buffer = t + buffer - ceiling, ceiling
            for v, rate in enumerate(rates):
                took = clock.finish(t + model.latency_s, model.size(v)) - t
                stall = max(took - buffer, 0.0)
                if stall > 0 and not allow_stall:
                    continue
                left = max(buffer - took, 0.0) + model.segment_s
                reward = s.reward + rate - abs(rate - rates[s.variant]) - REBUFFER_PENALTY * stall
                key = (v, int(left / DP_CELL_S))
                old = best.get(key)
                if old is None or reward > old.reward:
                    best[key] = _State(reward, t + took, left, v, i)
        if not best:
            return None
        layers.append(list(best.values()))
    end = max(range(len(layers[-1])), key=lambda i: layers[-1][i].reward)
    path: list[int] = []
    for layer in reversed(layers):
        path.append(layer[end].variant)
        end = layer[end].parent
    return path[::-1]


def optimum(model: Model, clock: Clock) -> Outcome:
    """The best plan found knowing the trace: stall-free after start-up if any such plan exists."""
    path = _dp(model, clock, allow_stall=False) or _dp(model, clock, allow_stall=True)
    assert path is not None  # with stalls allowed every plan is feasible
    return play(model, clock, lambda n, _: path[n])
