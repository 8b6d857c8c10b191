"""The ABR decision flow: a pure state machine over (time, buffer, estimate).

Reading of `AbrOptions` (bitrates in bits/s, E the throughput estimate, B the
buffer). Two rule sets share the flow, as in dash.js's "dynamic" strategy: the
throughput rules while the buffer is low, the buffer rule once it is high.

- A variant *fits* when ``bitrate × throughput_safety_factor ≤ E``.
- Urgent, in either mode: when B is nearly empty (below `URGENT_BUFFER_FRACTION`
  of ``down_switch_buffer_secs``) and the current variant does not fit, drop at
  once to the highest variant that fits (the lowest if none), whatever the
  interval.
- Throughput rules, until B first reaches ``buffer_rule_secs`` and again once it
  falls below ``min_buffer_for_up_switch_secs``:
  Down: when B is below ``down_switch_buffer_secs`` and the current variant
  misses the fit by the down margin, ``E < bitrate × safety ×
  down_hysteresis_ratio``, switch to the highest variant that fits.
  Up: when B is at least ``min_buffer_for_up_switch_secs`` and the next variant
  fits with the up margin, ``E ≥ next_bitrate × safety × up_hysteresis_ratio``,
  switch to the highest variant that meets that margin. Between those two
  margins the current variant is kept: the hysteresis band.
- Buffer rule, from B ≥ ``buffer_rule_secs`` until B falls below
  ``min_buffer_for_up_switch_secs``: a BBA-0 rate map (Huang et al., 2014) turns
  B into a bitrate, linear from the lowest variant at
  ``min_buffer_for_up_switch_secs`` to the top one (under the cap) at
  ``buffer_target_secs``. It moves up once the map of ``B - UP_LAG_S`` reaches
  the next variant (a full buffer asks for the top at once), and down once the
  map of ``B + DOWN_LAG_S`` falls to the previous one, so the buffer swings
  widely between switches: filled on the lower variant, spent on the higher one.
  Throughput bounds it both ways: never below the variant the up margin allows,
  nor below the current one while the down margin holds; never above what the
  link pays for, ``bitrate ≤ max(E, S)``, S the estimate's averages without
  its recent-rate cap (E when not given).
- Abandon (`force`, from the driver's abandon rule, `abr.abandon`): a download
  that cannot finish before the buffer runs dry moves the choice down at once,
  as an urgent switch does.
- At most one up or down switch per ``min_switch_interval`` seconds; urgent and
  manual switches ignore the interval (an urgent one restarts it, a manual one
  does not count).
- ``max_bandwidth`` caps what ABR may choose (never below the lowest variant); a
  manual pin may exceed it.
- Variants in ``excluded`` (another switch set) are never switched to: a switch
  aimed at one goes to the nearest allowed variant, or does not happen.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Sequence
from dataclasses import dataclass

from kithara_hls.events import AbrReason
from kithara_hls.options import AbrOptions

#: Switch decisions kept in `AbrController.decisions`.
DECISIONS_KEPT = 256
#: The buffer is "nearly empty" below this fraction of down_switch_buffer_secs.
URGENT_BUFFER_FRACTION = 0.5
#: Buffer seconds the rate map lags behind on the way up ...
UP_LAG_S = 3.0
#: ... and on the way down.
DOWN_LAG_S = 4.0


@dataclass(frozen=True)
class AbrDecision:
    """One outcome of the decision flow.

    at: the caller's time. from_variant / to_variant: indices into the ladder.
    reason: why it changed, None when it did not. buffer_s / estimate_bps: the
    inputs. note: a short human explanation.
    """

    at: float
    from_variant: int
    to_variant: int
    reason: AbrReason | None
    buffer_s: float
    estimate_bps: float
    note: str

    @property
    def changed(self) -> bool:
        """True when the variant changes."""
        return self.to_variant != self.from_variant


def _rate(bps: float) -> str:
    if bps >= 1e6:
        return f"{bps / 1e6:.1f} Mbit/s"
    return f"{bps / 1e3:.0f} kbit/s"


class AbrController:
    """Chooses the variant from the buffer level and the throughput estimate.

    bitrates: the ladder in bits/s, sorted ascending (variant i = bitrates[i]).
    options: the thresholds (see the module docstring for how they are read).
    initial_estimate_bps: when given, start at the highest variant that fits it
    (bitrate × safety ≤ estimate) instead of the lowest. Pure: no thread, no clock.
    """

    def __init__(
        self,
        bitrates: Sequence[int],
        options: AbrOptions = AbrOptions(),  # noqa: B008 - frozen, immutable
        *,
        initial_estimate_bps: float | None = None,
    ) -> None:
        if not bitrates:
            raise ValueError("bitrates must not be empty")
        if any(b <= 0 for b in bitrates) or list(bitrates) != sorted(bitrates):
            raise ValueError("bitrates must be positive and sorted ascending")
        if options.throughput_safety_factor <= 0:
            raise ValueError("throughput_safety_factor must be positive")
        self._bitrates = tuple(bitrates)
        self._opts = options
        cap = options.max_bandwidth
        within = [i for i, b in enumerate(self._bitrates) if cap is None or b <= cap]
        self._cap_index = within[-1] if within else 0
        self._manual: int | None = None
        self._last_switch_at = -math.inf
        self._buffer_mode = False
        self._decisions: collections.deque[AbrDecision] = collections.deque(maxlen=DECISIONS_KEPT)
        self._steady = 0.0  # the buffer rule's bound, set by each decide()
        #: The variant in use now.
        self.current = 0 if initial_estimate_bps is None else self._fit(initial_estimate_bps)
        #: Variants ABR never switches to (another switch set than the stream's).
        self.excluded: frozenset[int] = frozenset()

    @property
    def manual(self) -> int | None:
        """The pinned variant, or None while ABR chooses."""
        return self._manual

    @property
    def decisions(self) -> list[AbrDecision]:
        """The last `DECISIONS_KEPT` switches (changed decisions only), oldest first."""
        return list(self._decisions)

    @property
    def cap_index(self) -> int:
        """The highest variant ABR may choose under max_bandwidth."""
        return self._cap_index

    def affordable(self, estimate_bps: float, *, up: bool = False) -> int:
        """The highest variant (under the cap) that fits `estimate_bps` (`up`: with the up margin, as
        an up-switch asks); reads no state that changes, so any thread may ask."""
        return self._fit(estimate_bps, self._opts.up_hysteresis_ratio if up else 1.0)

    def _fit(self, estimate_bps: float, margin: float = 1.0) -> int:
        """The highest variant ≤ the cap with bitrate × safety × margin ≤ estimate, else 0."""
        return self._below(estimate_bps / (self._opts.throughput_safety_factor * margin))

    def _below(self, limit_bps: float) -> int:
        """The highest variant ≤ the cap whose bitrate is at most limit_bps, else 0."""
        best = 0
        for i in range(self._cap_index + 1):
            if self._bitrates[i] <= limit_bps:
                best = i
        return best

    def _make(
        self, now: float, to: int, reason: AbrReason | None, buffer_s: float, est: float, note: str
    ) -> AbrDecision:
        changed = to != self.current
        decision = AbrDecision(now, self.current, to, reason if changed else None, buffer_s, est, note)
        if decision.changed:
            self._decisions.append(decision)
            self.current = to
        return decision

    def decide(
        self, *, now: float, buffer_s: float, estimate_bps: float, steady_bps: float | None = None
    ) -> AbrDecision:
        """Apply the decision flow at time `now` and update `current`.

        buffer_s: media seconds buffered ahead of the read position.
        estimate_bps: the throughput estimate (`ThroughputEstimator.estimate()`).
        steady_bps: the estimate without its recent-rate cap (`estimate(recent=False)`),
        which bounds the buffer rule instead, if larger; None: the estimate.
        """
        self._steady = estimate_bps if steady_bps is None else max(estimate_bps, steady_bps)
        if self._manual is not None:
            return self._make(
                now, self.current, None, buffer_s, estimate_bps, f"manual pin on {self.current}"
            )
        if buffer_s >= self._opts.buffer_rule_secs:
            self._buffer_mode = True
        elif buffer_s < self._opts.min_buffer_for_up_switch_secs:
            self._buffer_mode = False
        rules = (self._urgent, self._by_buffer) if self._buffer_mode else (self._urgent, self._down, self._up)
        for rule in rules:
            decision = rule(now, buffer_s, estimate_bps)
            if decision is not None:
                return decision
        note = f"steady: buffer {buffer_s:.1f}s, {_rate(estimate_bps)}"
        return self._make(now, self.current, None, buffer_s, estimate_bps, note)

    def _switch(
        self, now: float, to: int, reason: AbrReason, buffer_s: float, est: float, note: str
    ) -> AbrDecision:
        """Switch unless the interval holds it (urgent switches are never held)."""
        waited = now - self._last_switch_at
        if reason is not AbrReason.URGENT and waited < self._opts.min_switch_interval:
            note += f"; held: {waited:.1f}s since the last switch < {self._opts.min_switch_interval:.1f}s"
            return self._make(now, self.current, None, buffer_s, est, note)
        to = self._allowed(to)
        if to == self.current:
            return self._make(now, to, None, buffer_s, est, note + "; no variant of the switch set there")
        self._last_switch_at = now
        return self._make(now, to, reason, buffer_s, est, note)

    def _allowed(self, to: int) -> int:
        """`to` if not excluded; else, down, the highest allowed below it, else (and up) the
        nearest allowed between it and the current variant."""
        cur = self.current
        if to < cur:
            below = [v for v in range(to, -1, -1) if v not in self.excluded]
            if below:
                return below[0]
        step = 1 if to < cur else -1
        while to != cur and to in self.excluded:
            to += step
        return to

    def _urgent(self, now: float, buffer_s: float, est: float) -> AbrDecision | None:
        """Nearly empty buffer and the current variant does not fit: drop at once."""
        cur, safety = self.current, self._opts.throughput_safety_factor
        threshold = self._opts.down_switch_buffer_secs * URGENT_BUFFER_FRACTION
        if cur == 0 or buffer_s >= threshold or est >= self._bitrates[cur] * safety:
            return None
        note = (
            f"buffer {buffer_s:.1f}s < {threshold:.1f}s and "
            f"{_rate(est)} < {safety:g}×{_rate(self._bitrates[cur])}"
        )
        return self._switch(now, min(self._fit(est), cur - 1), AbrReason.URGENT, buffer_s, est, note)

    def _down(self, now: float, buffer_s: float, est: float) -> AbrDecision | None:
        """Low buffer and the current variant misses the fit by the down margin."""
        opts, cur = self._opts, self.current
        margin, safety = opts.down_hysteresis_ratio, opts.throughput_safety_factor
        if cur == 0 or buffer_s >= opts.down_switch_buffer_secs:
            return None
        if est >= self._bitrates[cur] * safety * margin:
            return None
        note = (
            f"buffer {buffer_s:.1f}s < {opts.down_switch_buffer_secs:.1f}s and "
            f"{_rate(est)} < {margin:g}×{safety:g}×{_rate(self._bitrates[cur])}"
        )
        return self._switch(now, min(self._fit(est), cur - 1), AbrReason.DOWN, buffer_s, est, note)

    def _up(self, now: float, buffer_s: float, est: float) -> AbrDecision | None:
        """Enough buffer and the next variant fits with the up margin: go as high as that margin allows."""
        opts, nxt = self._opts, self.current + 1
        margin, safety = opts.up_hysteresis_ratio, opts.throughput_safety_factor
        if nxt > self._cap_index or buffer_s < opts.min_buffer_for_up_switch_secs:
            return None
        if est < self._bitrates[nxt] * safety * margin:
            return None
        note = (
            f"buffer {buffer_s:.1f}s ≥ {opts.min_buffer_for_up_switch_secs:.1f}s and "
            f"{_rate(est)} ≥ {margin:g}×{safety:g}×{_rate(self._bitrates[nxt])}"
        )
        return self._switch(now, max(self._fit(est, margin), nxt), AbrReason.UP, buffer_s, est, note)

    def _mapped_rate(self, buffer_s: float) -> float:
        """The BBA-0 rate map: bits/s for a buffer level."""
        low, high = self._opts.min_buffer_for_up_switch_secs, self._opts.buffer_target_secs
        share = min(max((buffer_s - low) / max(high - low, 1e-9), 0.0), 1.0)
        bottom, top = self._bitrates[0], self._bitrates[self._cap_index]
        return bottom + (top - bottom) * share

    def _mapped(self, buffer_s: float) -> int:
        """The variant the rate map asks for, the current one inside its stay band."""
        cur, top = self.current, self._cap_index
        if buffer_s >= self._opts.buffer_target_secs:
            return top
        up = self._mapped_rate(buffer_s - UP_LAG_S)
        if cur < top and up >= self._bitrates[cur + 1]:
            return self._below(up)
        down = self._mapped_rate(buffer_s + DOWN_LAG_S)
        if cur > 0 and down <= self._bitrates[cur - 1]:
            return min(i for i in range(top + 1) if self._bitrates[i] >= down)
        return min(cur, top)

    def _by_buffer(self, now: float, buffer_s: float, est: float) -> AbrDecision | None:
        """High buffer: the rate map, bounded by what the throughput rules and the buffer allow."""
        opts, cur = self._opts, self.current
        safety = opts.throughput_safety_factor
        floor = self._fit(est, opts.up_hysteresis_ratio)
        if floor < cur and est >= self._bitrates[cur] * safety * opts.down_hysteresis_ratio:
            floor = cur
        # Never above what the link pays for (its averages; a high buffer absorbs a dip
        # of the last seconds, not a deficit).
        payable = self._below(self._steady)
        to = max(floor, min(self._mapped(buffer_s), payable))
        if to == cur:
            return None
        if to > cur:
            note = f"buffer {buffer_s:.1f}s maps up to {_rate(self._bitrates[to])}"
        else:
            note = f"buffer {buffer_s:.1f}s maps down to {_rate(self._bitrates[to])}"
        note += f" ({_rate(est)})"
        reason = AbrReason.UP if to > cur else AbrReason.DOWN
        return self._switch(now, to, reason, buffer_s, est, note)

    def force(
        self, variant: int, *, now: float, buffer_s: float, estimate_bps: float, note: str
    ) -> AbrDecision:
        """Move down to `variant` at once, as an urgent switch (the abandon rule); restarts the interval."""
        to = self._allowed(min(max(variant, 0), self._cap_index))  # within the switch set
        self._last_switch_at = now
        return self._make(now, to, AbrReason.URGENT, buffer_s, estimate_bps, note)

    def set_manual(self, variant: int | None, now: float) -> AbrDecision | None:
        """Pin `variant` (ABR off), or give control back to ABR with None.

        A pin switches at once, whatever the interval. Back to auto, a variant
        above max_bandwidth drops to the cap. Returns the decision, or None when
        the call changes nothing.
        """
        if variant is not None and not 0 <= variant < len(self._bitrates):
            raise ValueError(f"variant {variant} not in 0..{len(self._bitrates) - 1}")
        if variant == self._manual:
            return None
        self._manual = variant
        if variant is None:
            to = min(self.current, self._cap_index)
            return self._make(now, to, AbrReason.MANUAL, math.nan, math.nan, "back to auto")
        return self._make(now, variant, AbrReason.MANUAL, math.nan, math.nan, f"pinned to {variant}")
