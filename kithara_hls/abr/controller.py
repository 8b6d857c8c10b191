"""The ABR decision flow: a pure state machine over (time, buffer, estimate).

Reading of `AbrOptions` (bitrates in bits/s, E the throughput estimate, S the
estimate's averages without its recent-rate cap, B the buffer, T the segment
duration). Throughput chooses how high to go; the buffer decides how long a
variant the link no longer pays for is kept, as ExoPlayer keeps its selection
while the buffer is long and dash.js lets BOLA ride a dip.

- A variant *fits* when ``bitrate × throughput_safety_factor ≤ E``.
- Up: when the next variant fits with the up margin, ``E ≥ next_bitrate × safety
  × up_hysteresis_ratio``, switch to the highest variant that meets that margin,
  if B is at least ``min_buffer_for_up_switch_secs``. Below that (the start, after
  a seek) only to a variant whose segment arrives in half its playing time
  (``STARTUP_SPEED``), and only if the margin would take it no higher: else the
  start waits a segment and makes one switch where it would make two. From
  ``buffer_rule_secs`` on, the buffer is the margin and a variant that fits is
  enough, and the switch goes as high as the link's rate now alone fits (its
  last half second: after a rise the averages lag it), as long as the buffer
  carries that variant at max(E, S) (see Down): one switch where the averages
  would climb a rung per interval. The switch waits for one more segment of
  the current variant (`waiting`: the look-ahead goes on meanwhile; not past
  ``buffer_target_secs`` or the end of the stream, where it would not come),
  which the link brings in a fraction of its duration: where that segment
  makes the buffer reach ``buffer_rule_secs`` and the link now pays for at
  least what the averages pick (half a second into a rise it still holds some
  of the low rate), or where the buffer is there, does not carry what the
  link now pays for, and would with that segment. One switch where a step
  between would make two.
- Down: when the current variant misses the fit by the down margin, ``E <
  bitrate × safety × down_hysteresis_ratio``, it is kept while the buffer
  *carries* it: while fetching one more segment of it at max(E, S), ``T ×
  bitrate / max(E, S)`` seconds, leaves at least ``down_switch_buffer_secs`` of
  buffer. Once it does not, switch in one step to the highest lower variant
  this rule would not leave at E: within the down margin of E, or within that
  of max(E, S) and carried by the buffer at E, or finishing the stream at E
  (below); else what fits. A long buffer rides a dip of the link on the
  variant it has; a drop that lasts has spent the buffer on it by then, and a
  variant between, which the buffer would carry a segment or two longer and
  then leave, would only add a switch (the end of the stream spends what is
  left); E's margin alone would take a short fade to the bottom.
- The end of the stream: with R seconds of media after the buffer to the end,
  the link has about B + R seconds to bring them, so the buffer above
  ``down_switch_buffer_secs`` and one segment (what the down rule keeps) may be
  spent on them: the up and down rules read the estimate as ``E × (1 + (B −
  down_switch_buffer_secs − T) / R)`` (the *pace*).
  On a long stream that is E; near the end the stream goes up rather than
  ending on a full buffer that the link could have brought better. Whether the
  buffer carries a variant is still reckoned at E. Near the end the down rule
  also keeps a variant that *finishes* the stream: all R seconds of it, fetched
  at max(E, S) with the safety factor, arrive before the last segment is due
  (``R × bitrate × safety / max(E, S) ≤ B + R − T``); the reserve guards the
  segments after the next ones, and there are none. A down-switch may go to a
  variant that finishes the stream at E (the averages lag a drop).
- Urgent: when B is nearly empty (below `URGENT_BUFFER_FRACTION` of
  ``down_switch_buffer_secs``) and the current variant does not fit, drop at
  once to the highest variant that fits (the lowest if none), whatever the
  interval.
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
#: Below min_buffer_for_up_switch_secs, an up-switch needs a segment to arrive this many
#: times faster than it plays.
STARTUP_SPEED = 2.0


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
    (bitrate × safety ≤ estimate) instead of the lowest. segment_s: the segments'
    duration (the target duration), for how long one takes to fetch. Pure: no
    thread, no clock.
    """

    def __init__(
        self,
        bitrates: Sequence[int],
        options: AbrOptions = AbrOptions(),  # noqa: B008 - frozen, immutable
        *,
        initial_estimate_bps: float | None = None,
        segment_s: float = 4.0,
    ) -> None:
        if not bitrates:
            raise ValueError("bitrates must not be empty")
        if any(b <= 0 for b in bitrates) or list(bitrates) != sorted(bitrates):
            raise ValueError("bitrates must be positive and sorted ascending")
        if options.throughput_safety_factor <= 0:
            raise ValueError("throughput_safety_factor must be positive")
        self._bitrates = tuple(bitrates)
        self._opts = options
        self._segment_s = segment_s
        self._steady = 0.0  # max(E, S), at which fetches are reckoned, set by each decide()
        self._pace = 1.0  # what the end of the stream lets the buffer add to it, set by each decide()
        self._rest: float | None = None  # media seconds after the buffer to the end, set by each decide()
        self._recent: float | None = None  # the link's rate now, set by each decide()
        cap = options.max_bandwidth
        within = [i for i, b in enumerate(self._bitrates) if cap is None or b <= cap]
        self._cap_index = within[-1] if within else 0
        self._manual: int | None = None
        self._last_switch_at = -math.inf
        self._decisions: collections.deque[AbrDecision] = collections.deque(maxlen=DECISIONS_KEPT)
        #: When the switch the last decision held for the interval may go (None: none held).
        self.held_until: float | None = None
        #: An up-switch waits for the buffer to grow (the look-ahead must go on), set by each decide().
        self.waiting = False
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
        self,
        *,
        now: float,
        buffer_s: float,
        estimate_bps: float,
        steady_bps: float | None = None,
        rest_s: float | None = None,
        recent_bps: float | None = None,
    ) -> AbrDecision:
        """Apply the decision flow at time `now` and update `current`.

        buffer_s: media seconds buffered ahead of the read position.
        estimate_bps: the throughput estimate (`ThroughputEstimator.estimate()`).
        steady_bps: the estimate without its recent-rate cap (`estimate(recent=False)`),
        at which the down rule reckons a segment's fetch, if larger; None: the estimate.
        rest_s: media seconds after the buffer to the end of the stream (None: unknown).
        recent_bps: the link's rate now (`ThroughputEstimator.recent_rate` over a short window),
        how high an up-switch on a deep buffer goes; None: unknown.
        """
        self._steady = estimate_bps if steady_bps is None else max(estimate_bps, steady_bps)
        self.held_until = None
        self.waiting = False
        self._rest = rest_s
        self._recent = recent_bps
        # The reserve and one segment, as `_carried` keeps: a variant the pace lets in is carried.
        spare = buffer_s - self._opts.down_switch_buffer_secs - self._segment_s
        self._pace = 1.0 + spare / rest_s if rest_s and rest_s > 0 and spare > 0 else 1.0
        if self._manual is not None:
            return self._make(
                now, self.current, None, buffer_s, estimate_bps, f"manual pin on {self.current}"
            )
        for rule in (self._urgent, self._down, self._up):
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
            self.held_until = self._last_switch_at + self._opts.min_switch_interval
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

    def _fetch_s(self, variant: int, media_s: float, rate: float | None = None) -> float:
        """Seconds to fetch `media_s` of `variant` at `rate`, by default max(E, S) (the recent
        rate shows a dip; how long the dip lasts, the averages tell better)."""
        return media_s * self._bitrates[variant] / max(self._steady if rate is None else rate, 1.0)

    def _carried(self, variant: int, buffer_s: float, rate: float | None = None) -> bool:
        """Whether the buffer left after fetching one more segment of `variant` at `rate` (see
        `_fetch_s`) stays at least down_switch_buffer_secs."""
        fetch_s = self._fetch_s(variant, self._segment_s, rate)
        return buffer_s - fetch_s >= self._opts.down_switch_buffer_secs

    def _finishes(self, variant: int, buffer_s: float, rate: float | None = None) -> bool:
        """Whether the rest of the stream at `variant`, fetched at `rate` (see `_fetch_s`) with the
        safety factor, arrives before its last segment is due."""
        if self._rest is None:
            return False
        fetch_s = self._fetch_s(variant, self._rest * self._opts.throughput_safety_factor, rate)
        return fetch_s <= buffer_s + self._rest - self._segment_s

    def _within_down_margin(self, variant: int, rate: float) -> bool:
        """Whether `rate` pays for `variant` within the down margin (the down rule leaves it alone)."""
        opts = self._opts
        return rate >= self._bitrates[variant] * opts.throughput_safety_factor * opts.down_hysteresis_ratio

    def _kept(self, variant: int, buffer_s: float) -> bool:
        """The buffer carries `variant` one more segment, or it finishes the stream."""
        return self._carried(variant, buffer_s) or self._finishes(variant, buffer_s)

    def _down(self, now: float, buffer_s: float, est: float) -> AbrDecision | None:
        """The current variant misses the fit by the down margin and the buffer no longer carries it."""
        opts, cur = self._opts, self.current
        margin, safety = opts.down_hysteresis_ratio, opts.throughput_safety_factor
        paced = est * self._pace
        if cur == 0 or self._within_down_margin(cur, paced):
            return None
        if self._kept(cur, buffer_s):
            return None
        # The buffer was spent on the current variant: in one switch, go to the highest variant
        # this rule would not leave at E: within the margin of E, or within that of the
        # averages and carried by the buffer at E, or finishing the stream at E (E's margin
        # alone would take a short fade to the bottom; the averages alone, to a variant the
        # drop then takes down again).
        steady = self._steady * self._pace
        to = max(
            (
                v
                for v in range(cur)
                if self._within_down_margin(v, paced)
                or (self._within_down_margin(v, steady) and self._carried(v, buffer_s, est))
                or self._finishes(v, buffer_s, est)
            ),
            default=0,
        )
        note = (
            f"{_rate(paced)}{self._paced()} < {margin:g}×{safety:g}×{_rate(self._bitrates[cur])} and "
            f"buffer {buffer_s:.1f}s does not carry it"
        )
        return self._switch(now, max(to, self._fit(paced)), AbrReason.DOWN, buffer_s, est, note)

    def _paced(self) -> str:
        return f" (paced ×{self._pace:.2f} to the end)" if self._pace > 1.0 else ""

    def _up(self, now: float, buffer_s: float, est: float) -> AbrDecision | None:
        """Enough buffer and the next variant fits with the up margin: go as high as that margin allows."""
        opts, nxt = self._opts, self.current + 1
        margin, safety = opts.up_hysteresis_ratio, opts.throughput_safety_factor
        if nxt > self._cap_index:
            return None
        paced = est * self._pace
        low = buffer_s < opts.min_buffer_for_up_switch_secs
        if low:
            # Little buffer: only as high as a segment that arrives in half its playing time, and
            # only if the buffer's margin would go no higher (else the start waits a segment and
            # makes one switch where it would make two).
            startup = max(margin, STARTUP_SPEED / safety)
            if self._fit(paced, startup) < self._fit(paced, margin):
                return None
            margin = startup
        elif buffer_s >= opts.buffer_rule_secs:
            margin = 1.0  # a deep buffer is the margin: the down rule keeps what it carries
        if paced < self._bitrates[nxt] * safety * margin:
            return None
        note = (
            f"buffer {buffer_s:.1f}s {'<' if low else '≥'} {opts.min_buffer_for_up_switch_secs:.1f}s and "
            f"{_rate(paced)}{self._paced()} ≥ {margin * safety:.3g}×{_rate(self._bitrates[nxt])}"
            + (f" (arrives at {STARTUP_SPEED:g}× real time)" if low else "")
        )
        to = max(self._fit(paced, margin), nxt)
        recent = self._recent
        if recent is not None and not low:
            # Where the link is now (the averages lag a rise), read only on a buffer past the start.
            lead = self._fit(recent * self._pace)
            if self._waits_for_buffer(lead, to, buffer_s):
                self.waiting = True
                note += f"; waits for a segment of buffer to go up to {_rate(self._bitrates[lead])}"
                return self._make(now, self.current, None, buffer_s, est, note)
            if buffer_s >= opts.buffer_rule_secs:
                # Go where the link is now, as far as the buffer carries it.
                while lead > to and not self._carried(lead, buffer_s):
                    lead -= 1
                if lead > to:
                    note += f"; up to {_rate(self._bitrates[lead])}: the link brings {_rate(recent)} now"
                    to = lead
        return self._switch(now, to, AbrReason.UP, buffer_s, est, note)

    def _waits_for_buffer(self, lead: int, to: int, buffer_s: float) -> bool:
        """Whether the up-switch waits for one more segment of the current variant (the link brings
        it in a fraction of its duration): where that segment makes the buffer deep and the link now
        pays for what the averages pick (on a deep buffer the switch goes where the link is now, in
        one switch where the averages would step), or where the buffer is deep and carries `lead`
        with that segment but not without."""
        opts = self._opts
        grown = buffer_s + self._segment_s
        # The look-ahead stops at the buffer target and at the end of the stream: no wait for a
        # segment it would not fetch.
        if buffer_s >= opts.buffer_target_secs or (self._rest is not None and self._rest < self._segment_s):
            return False
        if buffer_s < opts.buffer_rule_secs:
            return grown >= opts.buffer_rule_secs and lead >= to
        return lead > to and not self._carried(lead, buffer_s) and self._carried(lead, grown)

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
