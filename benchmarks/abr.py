"""Trace-driven ABR simulator: kithara-hls's estimator and controller against baselines.

Run ``python -m benchmarks.abr`` (or ``python benchmarks/abr.py``). Deterministic:
no threads, no wall clock, seeded traces.

Model: N=60 segments of 4 s, one download at a time. A download waits one RTT,
then takes the trace's cumulative bits (traces are piecewise constant and loop).
Playback starts when the first segment is in; the buffer is capped at 30 s (the
next download waits until a whole segment fits). Policies see the buffer before
each download and, after it, the body bytes and body seconds (the RTT apart).

QoE_lin (video ladder) = Σ R_n − 4.3·Σ stall_n − Σ |R_{n+1} − R_n|, R in Mbit/s,
stall in seconds, the start-up wait counted as stall. The audio ladder uses the
scale-free form: R is divided by the top bitrate and a stall second costs 1.0,
the ratio of QoE_lin's 4.3 to Pensieve's 4.3 Mbit/s top bitrate.

The reference is an offline dynamic program over (segment, time, buffer, last
variant) that knows the trace, with the same policy space (no idle time). States
in one 0.05 s cell of time × buffer are merged optimistically (earliest time,
earliest playback end, best reward), and dominated states dropped; since a
later start never finishes earlier, this keeps the DP an upper bound. The path it
picks is replayed exactly: column "path" is that replay's n-QoE, a lower bound on
the true optimum's, so the bound is within (1 - path) of the true optimum.

Columns: "kithara" uses the DEFAULT_* of `kithara_hls.options`; "kit@issue" the
same flow with the values the issue started from (safety 1.5, hysteresis 1.3 /
0.8, buffers 10 / 5 s, interval 30 s), for comparison. Both are told the buffer
the player fills up to, ``buffer_target_secs`` = cap − one segment, as the
runtime's look-ahead would be.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from kithara_hls.abr.controller import AbrController
from kithara_hls.abr.estimator import ThroughputEstimator
from kithara_hls.options import AbrOptions

try:
    from benchmarks.abr_baselines import BASELINES, Policy, PolicyFactory
except ModuleNotFoundError:  # run as a script: python benchmarks/abr.py
    from abr_baselines import BASELINES, Policy, PolicyFactory  # type: ignore[no-redef]

SEGMENT_S = 4.0
SEGMENTS = 60
BUFFER_CAP_S = 30.0
RTT_S = 0.08
DP_STEP_S = 0.05
TRACE_DT_S = 0.5
TRACE_LEN_S = 900.0
SEED = 20240611

VIDEO = (500_000, 1_000_000, 2_000_000, 4_000_000, 8_000_000)
AUDIO = (64_000, 128_000, 256_000, 320_000)


@dataclass(frozen=True)
class Trace:
    """Throughput per TRACE_DT_S step (bits/s, loops) and the request RTT."""

    name: str
    bps: np.ndarray
    rtt: float = RTT_S

    def scaled(self, factor: float) -> Trace:
        """The same trace with every throughput multiplied by factor."""
        return Trace(self.name, self.bps * factor, self.rtt)


class Network:
    """Download finish times over a looping, piecewise-constant trace."""

    def __init__(self, trace: Trace) -> None:
        self.rtt = trace.rtt
        self._times = np.arange(len(trace.bps) + 1) * TRACE_DT_S
        self._cum = np.concatenate([[0.0], np.cumsum(trace.bps * TRACE_DT_S)])
        self._period, self._total = self._times[-1], self._cum[-1]

    def finish(self, start: np.ndarray, bits: float) -> np.ndarray:
        """When a body of `bits` starting at `start` (vectorised) is complete."""
        laps, rest = np.divmod(start, self._period)
        target = laps * self._total + np.interp(rest, self._times, self._cum) + bits
        laps, rest = np.divmod(target, self._total)
        i = np.clip(np.searchsorted(self._cum, rest, side="left"), 1, len(self._cum) - 1)
        lo, hi = self._cum[i - 1], self._cum[i]
        frac = (rest - lo) / np.maximum(hi - lo, 1e-9)
        done: np.ndarray = laps * self._period + self._times[i - 1] + frac * TRACE_DT_S
        return done


def _hold(values: np.ndarray, seconds: float) -> np.ndarray:
    return np.repeat(values, round(seconds / TRACE_DT_S))


def _log_walk(rng: np.random.Generator, mean_bps: float, sigma: float, lo: float, hi: float) -> np.ndarray:
    x, out = math.log(mean_bps), []
    for _ in range(int(TRACE_LEN_S)):
        x += 0.05 * (math.log(mean_bps) - x) + rng.normal(0.0, sigma)
        x = min(max(x, math.log(lo)), math.log(hi))
        out.append(math.exp(x))
    return _hold(np.array(out), 1.0)


def _markov(rng: np.random.Generator) -> np.ndarray:
    """HSDPA-like: five sticky states, 1 s steps, lognormal noise around each state."""
    states, s, out = (0.4e6, 0.9e6, 1.8e6, 3.2e6, 5.0e6), 2, []
    for _ in range(int(TRACE_LEN_S)):
        if rng.random() < 0.12:
            s = min(max(s + int(rng.choice((-2, -1, 1, 2))), 0), len(states) - 1)
        out.append(states[s] * math.exp(rng.normal(0.0, 0.25)))
    return _hold(np.array(out), 1.0)


def traces() -> list[Trace]:
    """The traces at the video ladder's scale (bits/s)."""
    rng = np.random.default_rng(SEED)
    steps = int(TRACE_LEN_S / TRACE_DT_S)
    const = np.full(steps, 3.0e6)
    outage = np.full(steps, 3.5e6)
    outage[int(70 / TRACE_DT_S) : int(80 / TRACE_DT_S)] = 0.0
    return [
        Trace("constant", const),
        Trace("step-down", np.where(np.arange(steps) < 60 / TRACE_DT_S, 6.0e6, 1.5e6)),
        Trace("step-up", np.where(np.arange(steps) < 60 / TRACE_DT_S, 1.2e6, 6.0e6)),
        Trace("square-20s", np.resize(_hold(np.array([5.0e6, 1.5e6]), 10.0), steps)),
        Trace("square-4s", np.resize(_hold(np.array([5.0e6, 1.5e6]), 2.0), steps)),
        Trace("random-walk", _log_walk(rng, 2.5e6, 0.25, 0.3e6, 12e6)),
        Trace("markov", _markov(rng)),
        Trace("outage-10s", outage),
        Trace("rtt-300ms", _log_walk(rng, 2.5e6, 0.25, 0.3e6, 12e6), rtt=0.3),
    ]


@dataclass(frozen=True)
class Score:
    """How one session went."""

    qoe: float
    startup_s: float
    stall_s: float  # after start-up
    variants: tuple[int, ...]


@dataclass(frozen=True)
class Ladder:
    """Bitrates and the QoE weights used with them."""

    name: str
    bitrates: tuple[int, ...]
    unit: float  # R = bitrate / unit
    stall_penalty: float
    trace_scale: float


LADDERS = (
    Ladder("video 0.5-8 Mbit/s, QoE_lin", VIDEO, 1e6, 4.3, 1.0),
    Ladder(
        "audio 64-320 kbit/s, scale-free QoE",
        AUDIO,
        AUDIO[-1],
        1.0,
        math.sqrt(AUDIO[0] * AUDIO[-1]) / math.sqrt(VIDEO[0] * VIDEO[-1]),
    ),
)


def qoe(ladder: Ladder, variants: Sequence[int], stall_total: float) -> float:
    """QoE of a session from its variants and its total stall (start-up included)."""
    rates = [ladder.bitrates[v] / ladder.unit for v in variants]
    switches = sum(abs(b - a) for a, b in itertools.pairwise(rates))
    return sum(rates) - ladder.stall_penalty * stall_total - switches


def simulate(policy: Policy, ladder: Ladder, net: Network) -> Score:
    """Play SEGMENTS segments under `policy`; the clock is simulated."""
    now = play_end = 0.0  # play_end: when playback would run dry
    startup, stall, chosen = 0.0, 0.0, []
    for n in range(SEGMENTS):
        now = max(now, play_end - (BUFFER_CAP_S - SEGMENT_S))
        v = policy.choose(now, max(play_end - now, 0.0))
        chosen.append(v)
        bits = ladder.bitrates[v] * SEGMENT_S
        body_start = now + net.rtt
        done = float(net.finish(np.array([body_start]), bits)[0])
        policy.observe(int(bits / 8), done - body_start, net.rtt, done)
        if n == 0:
            startup = done
        else:
            stall += max(done - play_end, 0.0)
        play_end, now = max(play_end, done) + SEGMENT_S, done
    return Score(qoe(ladder, chosen, startup + stall), startup, stall, tuple(chosen))


class Kithara:
    """kithara-hls: `ThroughputEstimator` feeding `AbrController`, as the runtime wires them."""

    def __init__(self, bitrates: Sequence[int], segment_s: float, options: AbrOptions | None = None) -> None:
        # The player stops fetching once the next segment would overflow the cap:
        # that is the buffer it fills up to, its look-ahead.
        opts = dataclasses.replace(options or AbrOptions(), buffer_target_secs=BUFFER_CAP_S - segment_s)
        self._est = ThroughputEstimator(
            fast_half_life=opts.fast_half_life, slow_half_life=opts.slow_half_life
        )
        self._ctl = AbrController(bitrates, opts)

    def choose(self, now: float, buffer_s: float) -> int:
        """Run the decision flow."""
        return self._ctl.decide(now=now, buffer_s=buffer_s, estimate_bps=self._est.estimate()).to_variant

    def observe(self, nbytes: int, seconds: float, ttfb: float, now: float) -> None:
        """Feed the estimator (network transfers only)."""
        self._est.add(nbytes, seconds, now)
        self._est.add_ttfb(ttfb)


#: The ABR values the issue started from.
ISSUE_OPTIONS = AbrOptions(
    throughput_safety_factor=1.5,
    up_hysteresis_ratio=1.3,
    down_hysteresis_ratio=0.8,
    min_buffer_for_up_switch_secs=10.0,
    down_switch_buffer_secs=5.0,
    min_switch_interval=30.0,
    fast_half_life=2.0,
    slow_half_life=10.0,
)


def _kithara_at_issue(bitrates: Sequence[int], segment_s: float) -> Policy:
    return Kithara(bitrates, segment_s, ISSUE_OPTIONS)


def _pareto(group: np.ndarray, order_by: np.ndarray, snap: np.ndarray, reward: np.ndarray) -> np.ndarray:
    """Indices kept: in each group, snap to its minimum, then drop states no better than an earlier one."""
    idx = np.lexsort((order_by, group))
    g = group[idx]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    snap[idx] = np.repeat(np.minimum.reduceat(snap[idx], starts), np.diff(np.r_[starts, len(g)]))
    gid = np.cumsum(np.r_[True, g[1:] != g[:-1]])
    span = float(reward.max() - reward.min()) + 1.0
    lifted = reward[idx] + gid * span
    best_before = np.r_[-np.inf, np.maximum.accumulate(lifted)[:-1]]
    return np.sort(idx[lifted > best_before])


def optimum(ladder: Ladder, net: Network) -> tuple[float, tuple[int, ...]]:
    """Upper bound on QoE over every variant sequence, and the sequence the DP picked."""
    rates = np.array(ladder.bitrates) / ladder.unit
    t = np.zeros(1)
    end = np.zeros(1)
    reward = np.zeros(1)
    last = np.zeros(1, dtype=np.int64)
    parents: list[tuple[np.ndarray, np.ndarray]] = []
    for n in range(SEGMENTS):
        start = np.maximum(t, end - (BUFFER_CAP_S - SEGMENT_S)) + net.rtt
        cands = []
        for v, bitrate in enumerate(ladder.bitrates):
            done = net.finish(start, bitrate * SEGMENT_S)
            switch = np.abs(rates[v] - rates[last]) if n else np.zeros_like(t)
            cands.append(
                (
                    done,
                    np.maximum(end, done) + SEGMENT_S,
                    reward + rates[v] - switch,
                    np.full(len(t), v),
                    np.arange(len(t)),
                )
            )
        t, end, reward, last, parent = (np.concatenate(c) for c in zip(*cands, strict=True))
        cell = (np.floor(t / DP_STEP_S).astype(np.int64) << 12) | np.floor((end - t) / DP_STEP_S).astype(
            np.int64
        )
        key = (last << 44) | cell
        idx = np.lexsort((-reward, key))
        first = np.flatnonzero(np.r_[True, key[idx][1:] != key[idx][:-1]])
        t = np.minimum.reduceat(t[idx], first)
        end = np.minimum.reduceat(end[idx], first)
        reward, last, parent = reward[idx][first], last[idx][first], parent[idx][first]
        keep = _pareto((last << 32) | np.floor(t / DP_STEP_S).astype(np.int64), end, t, reward)
        t, end, reward, last, parent = t[keep], end[keep], reward[keep], last[keep], parent[keep]
        keep = _pareto((last << 32) | np.floor(end / DP_STEP_S).astype(np.int64), t, end, reward)
        t, end, reward, last, parent = t[keep], end[keep], reward[keep], last[keep], parent[keep]
        parents.append((last, parent))
    total = reward - ladder.stall_penalty * (end - SEGMENTS * SEGMENT_S)
    best = int(np.argmax(total))
    path = []
    for last_n, parent_n in reversed(parents):
        path.append(int(last_n[best]))
        best = int(parent_n[best])
    return float(total.max()), tuple(reversed(path))


class _Replay:
    """Plays a fixed variant sequence (to check the DP's path)."""

    def __init__(self, path: Sequence[int]) -> None:
        self._path, self._n = path, 0

    def choose(self, now: float, buffer_s: float) -> int:
        self._n += 1
        return self._path[self._n - 1]

    def observe(self, nbytes: int, seconds: float, ttfb: float, now: float) -> None:
        pass


def run_ladder(
    ladder: Ladder, policies: dict[str, PolicyFactory]
) -> dict[str, dict[str, tuple[float, Score]]]:
    """n-QoE and score per trace and policy, plus the optimum as policy "opt"."""
    table: dict[str, dict[str, tuple[float, Score]]] = {}
    for trace in traces():
        net = Network(trace.scaled(ladder.trace_scale))
        bound, path = optimum(ladder, net)
        replay = simulate(_Replay(path), ladder, net)
        row = {"opt": (bound, replay)}
        for name, factory in policies.items():
            score = simulate(factory(ladder.bitrates, SEGMENT_S), ladder, net)
            row[name] = (score.qoe / bound, score)
        table[trace.name] = row
    return table


def print_table(ladder: Ladder, table: dict[str, dict[str, tuple[float, Score]]], ours: str) -> None:
    """One row per trace, one column per policy; then median and minimum."""
    names = [k for k in next(iter(table.values())) if k != "opt"]
    print(f"\n{ladder.name}: n-QoE = QoE / offline optimum")
    print(f"{'trace':<12}{'optimum':>9}{'path':>7}" + "".join(f"{n:>10}" for n in names) + f"{'stall':>8}")
    for trace, row in table.items():
        bound, replay = row["opt"]
        cells = "".join(f"{row[n][0]:>10.3f}" for n in names)
        print(f"{trace:<12}{bound:>9.2f}{replay.qoe / bound:>7.3f}{cells}{row[ours][1].stall_s:>7.1f}s")
    for label, fn in (("median", statistics.median), ("min", min)):
        cells = "".join(f"{fn([row[n][0] for row in table.values()]):>10.3f}" for n in names)
        print(f"{label:<28}{cells}")


#: Traces on which ours must not stall after start-up.
NO_STALL_TRACES = ("constant", "step-up", "square-20s", "square-4s")


def check(table: dict[str, dict[str, tuple[float, Score]]], ours: str) -> list[str]:
    """One line per target: met or not, and where it is missed."""
    scores = {trace: row[ours][0] for trace, row in table.items()}
    best = {trace: max(v[0] for k, v in row.items() if k in BASELINES) for trace, row in table.items()}
    low = [f"{t} {x:.3f}" for t, x in scores.items() if x < 0.6]
    behind = [f"{t} {x:.3f}<{best[t]:.3f}" for t, x in scores.items() if x < best[t] - 0.05 * abs(best[t])]
    stalls = [
        f"{t} {table[t][ours][1].stall_s:.1f}s" for t in NO_STALL_TRACES if table[t][ours][1].stall_s > 0
    ]
    beaten = [t for t, row in table.items() if any(v[0] > 1 + 1e-9 for k, v in row.items() if k != "opt")]
    median = statistics.median(scores.values())
    lines = [(median >= 0.85, f"median n-QoE {median:.3f} >= 0.85", "")]
    lines += [
        (not low, "no trace below 0.6", ", ".join(low)),
        (not behind, "within 5% of the best baseline", ", ".join(behind)),
        (not stalls, "no stall after start-up on " + "/".join(NO_STALL_TRACES), ", ".join(stalls)),
        (not beaten, "nobody beats the optimum", ", ".join(beaten)),
    ]
    return [
        f"  [{'x' if ok else ' '}] {label}" + (f": missed on {where}" if where else "")
        for ok, label, where in lines
    ]


def main() -> int:
    """Print both tables and whether ours meets the targets."""
    began = time.process_time()
    policies: dict[str, PolicyFactory] = {"kithara": Kithara, "kit@issue": _kithara_at_issue, **BASELINES}
    for ladder in LADDERS:
        table = run_ladder(ladder, policies)
        print_table(ladder, table, "kithara")
        print("targets for kithara:", *check(table, "kithara"), sep="\n")
    print(f"\n{time.process_time() - began:.1f}s CPU; stall = kithara's stall after start-up")
    return 0


if __name__ == "__main__":
    sys.exit(main())
