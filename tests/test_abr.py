"""ThroughputEstimator and AbrController: plain values, no threads, no clock."""

from __future__ import annotations

import dataclasses
import math

import pytest

from kithara_hls.abr.controller import (
    DECISIONS_KEPT,
    STARTUP_SPEED,
    AbrController,
    AbrDecision,
)
from kithara_hls.abr.estimator import DEFAULT_MIN_WEIGHT_S, ThroughputEstimator
from kithara_hls.events import AbrReason
from kithara_hls.options import AbrOptions

MBIT = 1_000_000
LADDER = (500_000, 1 * MBIT, 2 * MBIT, 4 * MBIT, 8 * MBIT)
# Explicit values, so the tests do not follow the tuned defaults.
OPTS = AbrOptions(
    min_buffer_for_up_switch_secs=10.0,
    down_switch_buffer_secs=6.0,
    throughput_safety_factor=1.5,
    up_hysteresis_ratio=1.2,
    down_hysteresis_ratio=0.8,
    min_switch_interval=30.0,
    buffer_rule_secs=20.0,
    buffer_target_secs=40.0,
)


def feed(est: ThroughputEstimator, bps: float, seconds: float, now: float = 0.0) -> bool:
    """One transfer at `bps` lasting `seconds`."""
    return est.add(int(bps * seconds / 8), seconds, now)


def settled(fast: float = 2.0, slow: float = 10.0, min_weight: float = 0.0) -> ThroughputEstimator:
    """An estimator with no start-up rules and 200 s of history at 8 Mbit/s."""
    est = ThroughputEstimator(
        fast_half_life=fast,
        slow_half_life=slow,
        min_sample_bytes=0,
        min_total_bytes=0,
        min_weight_s=min_weight,
    )
    for i in range(200):
        feed(est, 8 * MBIT, 1.0, float(i))
    return est


# -- estimator -----------------------------------------------------------------------------------


def test_initial_estimate_until_enough_bytes() -> None:
    est = ThroughputEstimator(initial_bps=300_000, min_sample_bytes=1_000, min_total_bytes=100_000)
    assert est.estimate() == 300_000
    assert est.samples == 0
    assert feed(est, 2 * MBIT, 0.2)  # 50 kB at 2 Mbit/s: faster, but not enough bytes yet
    assert est.estimate() == 300_000
    assert feed(est, 2 * MBIT, 0.2)
    assert est.estimate() == pytest.approx(2 * MBIT)


def test_slow_network_is_believed_before_min_total_bytes() -> None:
    est = ThroughputEstimator(initial_bps=1 * MBIT, min_sample_bytes=1_000, min_total_bytes=1_000_000)
    feed(est, 200_000, 1.0)
    assert est.estimate() == pytest.approx(200_000)


def test_tiny_and_empty_samples_are_ignored() -> None:
    est = ThroughputEstimator(initial_bps=500_000, min_sample_bytes=16_000, min_total_bytes=0)
    assert est.add(15_999, 0.001, 1.0) is False
    assert est.add(100_000, 0.0, 1.0) is False
    assert est.add(100_000, -1.0, 1.0) is False
    assert est.samples == 0
    assert est.last_sample_at is None
    assert est.estimate() == 500_000
    assert est.add(16_000, 0.064, 2.0) is True
    assert (est.samples, est.total_bytes) == (1, 16_000)
    assert est.last_sample_at == 2.0


def test_first_sample_is_exact_thanks_to_zero_bias_correction() -> None:
    est = ThroughputEstimator(min_sample_bytes=0, min_total_bytes=0)
    feed(est, 3 * MBIT, 0.5)
    assert est.estimate() == pytest.approx(3 * MBIT)


def test_fast_ewma_moves_halfway_in_one_half_life_of_transfer_time() -> None:
    est = settled(fast=2.0, slow=10.0)
    feed(est, 2 * MBIT, 2.0, 200.0)  # one fast half-life at 2 Mbit/s
    # fast: halfway from 8 to 2 = 5; slow: 8 - 6 * (1 - 0.5 ** 0.2) ≈ 7.22; the estimate is the min.
    assert est.estimate() == pytest.approx(5 * MBIT, rel=1e-6)


def test_slow_ewma_holds_back_a_rise() -> None:
    est = ThroughputEstimator(
        fast_half_life=2.0, slow_half_life=10.0, min_sample_bytes=0, min_total_bytes=0, min_weight_s=0.0
    )
    for i in range(100):
        feed(est, 1 * MBIT, 1.0, float(i))
    feed(est, 9 * MBIT, 10.0, 100.0)  # one slow half-life at 9 Mbit/s
    # fast is nearly at 9; slow went halfway, to 5: the min wins.
    assert est.estimate() == pytest.approx(5 * MBIT, rel=1e-3)


def test_weight_is_transfer_time_above_the_floor() -> None:
    one = settled(min_weight=1.0)
    feed(one, 2 * MBIT, 4.0, 200.0)
    split = settled(min_weight=1.0)
    for i in range(4):
        feed(split, 2 * MBIT, 1.0, 200.0 + i)
    assert one.estimate() == pytest.approx(split.estimate())


def test_short_samples_weigh_the_floor() -> None:
    floored = settled(min_weight=1.0)
    feed(floored, 2 * MBIT, 0.1, 200.0)
    full = settled(min_weight=0.0)
    feed(full, 2 * MBIT, 1.0, 200.0)  # the same weight as the floored 0.1 s sample
    assert floored.estimate() == pytest.approx(full.estimate())


def test_small_segments_on_a_fast_link_ramp_up_within_a_few_samples() -> None:
    def ramp(min_weight: float) -> float:
        est = ThroughputEstimator(min_weight_s=min_weight)
        for i in range(10):  # 30 s of history at 1 Mbit/s
            feed(est, 1 * MBIT, 3.0, float(i))
        for i in range(6):  # then 32 kB audio segments at 50 Mbit/s: 5 ms each
            assert est.add(32_000, 32_000 * 8 / (50 * MBIT), 10.0 + i)
        return est.estimate()

    assert ramp(DEFAULT_MIN_WEIGHT_S) > 25 * MBIT
    assert ramp(0.0) < 2 * MBIT  # weighed by transfer time alone, they barely count


def test_negative_min_weight_is_rejected() -> None:
    with pytest.raises(ValueError):
        ThroughputEstimator(min_weight_s=-1.0)


def test_ttfb_is_tracked_apart_from_throughput() -> None:
    est = ThroughputEstimator(min_sample_bytes=0, min_total_bytes=0)
    assert est.ttfb is None
    feed(est, 4 * MBIT, 1.0)
    before = est.estimate()
    est.add_ttfb(0.3)
    assert est.ttfb == pytest.approx(0.3)
    est.add_ttfb(0.1)
    assert 0.1 < est.ttfb < 0.3  # type: ignore[operator]
    assert est.estimate() == before
    assert est.samples == 1


def test_invalid_half_life_is_rejected() -> None:
    with pytest.raises(ValueError):
        ThroughputEstimator(fast_half_life=0.0)


# -- controller ----------------------------------------------------------------------------------


def up_threshold(variant: int) -> float:
    """The estimate that lets ABR move up to `variant` under OPTS."""
    return LADDER[variant] * OPTS.throughput_safety_factor * OPTS.up_hysteresis_ratio


def test_starts_at_the_lowest_variant() -> None:
    ctl = AbrController(LADDER, OPTS)
    assert ctl.current == 0
    assert ctl.manual is None
    assert ctl.decisions == []


def test_starts_higher_only_when_the_initial_estimate_clearly_fits() -> None:
    assert AbrController(LADDER, OPTS, initial_estimate_bps=3 * MBIT).current == 2  # 2 Mbit/s × 1.5 ≤ 3
    assert AbrController(LADDER, OPTS, initial_estimate_bps=2.9 * MBIT).current == 1
    assert AbrController(LADDER, OPTS, initial_estimate_bps=100_000).current == 0


def test_up_needs_the_buffer_threshold() -> None:
    # Below the threshold, only what arrives at twice real time, and only if the margin goes no
    # higher: 1 Mbit/s both ways at 3 Mbit/s.
    slow = LADDER[1] * OPTS.throughput_safety_factor * STARTUP_SPEED
    assert AbrController(LADDER, OPTS).decide(now=0.0, buffer_s=9.9, estimate_bps=slow).to_variant == 1
    est = up_threshold(4)  # 14.4 Mbit/s: the top with the margin, variant 3 at twice real time
    d = AbrController(LADDER, OPTS).decide(now=0.0, buffer_s=9.9, estimate_bps=est)
    assert not d.changed  # one switch to the top once the buffer is there, not two
    ctl = AbrController(LADDER, OPTS)
    d = ctl.decide(now=0.0, buffer_s=10.0, estimate_bps=est)
    assert (d.changed, d.reason, d.from_variant, d.to_variant) == (True, AbrReason.UP, 0, 4)
    assert ctl.current == 4


def test_up_needs_safety_times_hysteresis() -> None:
    ctl = AbrController(LADDER, OPTS)
    # Fits with the safety factor alone, but not with the hysteresis on top: stay.
    below = up_threshold(1) * 0.999
    assert below >= LADDER[1] * OPTS.throughput_safety_factor
    assert not ctl.decide(now=0.0, buffer_s=15.0, estimate_bps=below).changed
    d = ctl.decide(now=0.0, buffer_s=15.0, estimate_bps=up_threshold(1))
    assert (d.reason, d.to_variant) == (AbrReason.UP, 1)
    assert "≥" in d.note


def test_up_goes_to_the_highest_variant_meeting_the_margin() -> None:
    ctl = AbrController(LADDER, OPTS)
    d = ctl.decide(now=0.0, buffer_s=15.0, estimate_bps=up_threshold(3))
    assert d.to_variant == 3


def test_down_keeps_a_variant_while_the_buffer_carries_it_then_goes_where_the_link_is() -> None:
    ctl = AbrController(LADDER, OPTS, initial_estimate_bps=100 * MBIT, segment_s=4.0)
    assert ctl.current == 4
    low = 2.5 * MBIT  # fits variant 1 only (1 Mbit/s × 1.5)
    # One more 4 s segment of 8 Mbit/s takes 12.8 s at 2.5 Mbit/s: 18.8 s of buffer leaves
    # the 6 s of down_switch_buffer_secs, so the variant is kept.
    assert not ctl.decide(now=100.0, buffer_s=18.8, estimate_bps=low).changed
    # Below that the buffer no longer carries it: in one switch down to the highest variant the
    # rule would keep at the link now, 2 Mbit/s (× 1.5 × 0.8 ≤ 2.5, and carried), not to the
    # 4 Mbit/s the buffer would carry a segment or two longer (18.7 - 6.4 >= 6) and then leave.
    d = ctl.decide(now=100.0, buffer_s=18.7, estimate_bps=low)
    assert (d.reason, d.from_variant, d.to_variant) == (AbrReason.DOWN, 4, 2)
    assert "does not carry" in d.note


def test_down_goes_within_the_margin_of_the_link_now_when_the_buffer_carries_nothing() -> None:
    ctl = AbrController(LADDER, OPTS, initial_estimate_bps=100 * MBIT, segment_s=4.0)
    # 6.5 s of buffer carries no segment of 1 Mbit/s or more at 2.5 Mbit/s (1.6 s leaves 4.9 s),
    # but 2 Mbit/s is within the down margin (× 1.5 × 0.8 ≤ 2.5): the rule would keep it.
    d = ctl.decide(now=100.0, buffer_s=6.5, estimate_bps=2.5 * MBIT)
    assert (d.reason, d.to_variant) == (AbrReason.DOWN, 2)
    d = AbrController(LADDER, OPTS, initial_estimate_bps=100 * MBIT).decide(
        now=100.0, buffer_s=6.5, estimate_bps=2.3 * MBIT
    )
    assert (d.reason, d.to_variant) == (AbrReason.DOWN, 1)  # 2.4 > 2.3: what fits


def test_down_reckons_the_fetch_at_the_averages_when_only_the_recent_rate_dipped() -> None:
    ctl = AbrController(LADDER, OPTS, initial_estimate_bps=100 * MBIT, segment_s=4.0)
    # 2.5 Mbit/s of late, 8 Mbit/s on average: one segment of the top takes 4 s, carried.
    d = ctl.decide(now=100.0, buffer_s=12.0, estimate_bps=2.5 * MBIT, steady_bps=8 * MBIT)
    assert not d.changed
    d = ctl.decide(now=100.0, buffer_s=12.0, estimate_bps=2.5 * MBIT)
    # The top takes 12.8 s at 2.5 Mbit/s: not carried; 2 Mbit/s is within the down margin.
    assert (d.reason, d.to_variant) == (AbrReason.DOWN, 2)


def test_down_keeps_the_current_variant_inside_the_hysteresis_band() -> None:
    ctl = AbrController(LADDER, OPTS, initial_estimate_bps=6 * MBIT)
    assert ctl.current == 3
    fit = LADDER[3] * OPTS.throughput_safety_factor  # 6 Mbit/s
    inside = fit * OPTS.down_hysteresis_ratio * 1.01  # misses the fit, but by less than the margin
    assert not ctl.decide(now=100.0, buffer_s=4.0, estimate_bps=inside).changed
    d = ctl.decide(now=100.0, buffer_s=4.0, estimate_bps=fit * OPTS.down_hysteresis_ratio * 0.99)
    assert (d.reason, d.to_variant) == (AbrReason.DOWN, 2)


def test_urgent_ignores_the_interval() -> None:
    ctl = AbrController(LADDER, OPTS)
    assert ctl.decide(now=0.0, buffer_s=12.0, estimate_bps=up_threshold(4)).to_variant == 4
    # 1 s later the buffer is nearly empty and the network collapsed.
    d = ctl.decide(now=1.0, buffer_s=2.0, estimate_bps=800_000)
    assert (d.reason, d.from_variant, d.to_variant) == (AbrReason.URGENT, 4, 0)


def test_urgent_drops_to_what_the_estimate_supports() -> None:
    ctl = AbrController(LADDER, OPTS, initial_estimate_bps=100 * MBIT)
    d = ctl.decide(now=0.0, buffer_s=1.0, estimate_bps=3.5 * MBIT)
    assert (d.reason, d.to_variant) == (AbrReason.URGENT, 2)


def test_urgent_needs_the_current_variant_to_miss_the_estimate() -> None:
    ctl = AbrController(LADDER, OPTS, initial_estimate_bps=100 * MBIT)
    # An empty buffer (a seek, the start) on a fast network is no reason to drop.
    assert not ctl.decide(now=0.0, buffer_s=0.0, estimate_bps=100 * MBIT).changed


def test_interval_blocks_a_second_normal_switch() -> None:
    ctl = AbrController(LADDER, OPTS)
    assert ctl.decide(now=0.0, buffer_s=12.0, estimate_bps=up_threshold(1)).to_variant == 1
    d = ctl.decide(now=29.9, buffer_s=12.0, estimate_bps=up_threshold(4))
    assert not d.changed and "held" in d.note
    d = ctl.decide(now=29.9, buffer_s=5.0, estimate_bps=900_000)  # a normal down is held too
    assert not d.changed and "held" in d.note
    d = ctl.decide(now=30.0, buffer_s=12.0, estimate_bps=up_threshold(4))
    assert (d.reason, d.to_variant) == (AbrReason.UP, 4)


def test_below_the_up_buffer_only_a_variant_that_arrives_fast_enough() -> None:
    ctl = AbrController(LADDER, OPTS)
    # No buffer: 4 Mbit/s arrives at twice real time on 8 Mbit/s, 8 Mbit/s would not.
    d = ctl.decide(now=0.0, buffer_s=0.0, estimate_bps=8 * MBIT)
    assert (d.reason, d.to_variant) == (AbrReason.UP, 3)
    assert LADDER[3] * STARTUP_SPEED == 8 * MBIT


def test_a_deep_buffer_needs_no_up_margin() -> None:
    fits = LADDER[1] * OPTS.throughput_safety_factor  # fits, under the up margin
    assert not AbrController(LADDER, OPTS).decide(now=0.0, buffer_s=19.9, estimate_bps=fits).changed
    d = AbrController(LADDER, OPTS).decide(now=0.0, buffer_s=20.0, estimate_bps=fits)
    assert (d.reason, d.to_variant) == (AbrReason.UP, 1)


def test_up_never_chooses_what_the_estimate_cannot_pay_for() -> None:
    ctl = AbrController(LADDER, OPTS)
    d = ctl.decide(now=0.0, buffer_s=40.0, estimate_bps=2.5 * MBIT)  # a full buffer
    assert (d.reason, d.to_variant) == (AbrReason.UP, 1)  # 2 Mbit/s × 1.5 > 2.5


def test_on_a_deep_buffer_an_up_switch_goes_where_the_link_is_now() -> None:
    est = 1.6 * MBIT  # the averages, still climbing: 1 Mbit/s fits (× 1.5)
    now = 13 * MBIT  # the recent rate fits 8 Mbit/s, but one segment of it at est takes 20 s
    d = AbrController(LADDER, OPTS).decide(now=0.0, buffer_s=20.0, estimate_bps=est, recent_bps=now)
    assert (d.reason, d.to_variant) == (AbrReason.UP, 3)  # 4 Mbit/s: 10 s, 10 s of buffer left
    assert "the link brings" in d.note
    # Below buffer_rule_secs, a segment short of it or more, the averages alone say how high (here
    # 1 Mbit/s × 1.5 × 1.2).
    est = 1.8 * MBIT
    d = AbrController(LADDER, OPTS).decide(now=0.0, buffer_s=15.0, estimate_bps=est, recent_bps=now)
    assert (d.reason, d.to_variant) == (AbrReason.UP, 1)


def test_an_up_switch_waits_a_segment_of_buffer_rather_than_step_between() -> None:
    est = 1.8 * MBIT  # the averages: 1 Mbit/s fits with the up margin (× 1.5 × 1.2)
    ctl = AbrController(LADDER, OPTS)
    # 17 s of buffer: below buffer_rule_secs, and a segment more (21 s) makes it deep. Half a
    # second into a rise, the link's last half second (2.5 Mbit/s) pays for no more than the
    # averages yet: wait for that segment, which the link brings in a fraction of its duration.
    d = ctl.decide(now=0.0, buffer_s=17.0, estimate_bps=est, recent_bps=2.5 * MBIT)
    assert (d.changed, ctl.current, ctl.waiting) == (False, 0, True)
    assert "waits for a segment of buffer" in d.note
    # A segment later the link now fits 4 Mbit/s, which the deep buffer carries (8.9 s at est).
    d = ctl.decide(now=1.0, buffer_s=21.0, estimate_bps=est, recent_bps=7 * MBIT)
    assert (d.reason, d.to_variant, ctl.waiting) == (AbrReason.UP, 3, False)  # one switch, not 0 → 1 → 3
    # A deep buffer that does not carry where the link is now (8 Mbit/s: 17.8 s at est) but
    # would with a segment more also waits for it.
    ctl = AbrController(LADDER, OPTS)
    d = ctl.decide(now=0.0, buffer_s=20.0, estimate_bps=est, recent_bps=13 * MBIT)
    assert (d.changed, ctl.waiting) == (False, True)
    # Where a segment more would not make the buffer deep, the averages go up now.
    d = AbrController(LADDER, OPTS).decide(now=0.0, buffer_s=15.0, estimate_bps=est, recent_bps=13 * MBIT)
    assert (d.reason, d.to_variant) == (AbrReason.UP, 1)
    # Nor does it wait for a segment the look-ahead would not fetch: past the buffer target, or
    # after the end of the stream.
    short = dataclasses.replace(OPTS, buffer_target_secs=17.0)
    d = AbrController(LADDER, short).decide(now=0.0, buffer_s=17.0, estimate_bps=est, recent_bps=7 * MBIT)
    assert (d.reason, d.to_variant) == (AbrReason.UP, 1)
    ctl = AbrController(LADDER, OPTS)
    d = ctl.decide(now=0.0, buffer_s=17.0, estimate_bps=est, recent_bps=7 * MBIT, rest_s=2.0)
    assert d.reason is AbrReason.UP and not ctl.waiting


def test_near_the_end_the_buffer_above_the_reserve_pays_for_the_rest() -> None:
    est = 2.5 * MBIT  # fits 1 Mbit/s only (× 1.5)
    far = AbrController(LADDER, OPTS).decide(now=0.0, buffer_s=30.0, estimate_bps=est, rest_s=240.0)
    assert far.to_variant == 1  # paced ×1.08: 2.7 Mbit/s still does not pay for 2 Mbit/s × 1.5
    # 24 s of media left after the buffer: the link has 30 + 24 s for them, of which 6 s of
    # reserve and a segment stay, so it brings them at 1.83 × the estimate: 2 Mbit/s × 1.5 ≤
    # 4.6 Mbit/s.
    d = AbrController(LADDER, OPTS).decide(now=0.0, buffer_s=30.0, estimate_bps=est, rest_s=24.0)
    assert (d.reason, d.to_variant) == (AbrReason.UP, 2)
    assert "to the end" in d.note
    assert d.estimate_bps == est  # the decision keeps the measured estimate (fast switching reads it)


def test_near_the_end_a_variant_the_rest_pays_for_is_kept() -> None:
    est = 3 * MBIT  # misses 4 Mbit/s × 1.5 × 0.8; a 4 s segment of it takes 5.3 s
    d = AbrController(LADDER, OPTS, initial_estimate_bps=6 * MBIT).decide(
        now=100.0, buffer_s=11.0, estimate_bps=est, rest_s=100.0
    )
    assert (d.reason, d.to_variant) == (AbrReason.DOWN, 2)  # 11 - 5.3 s leaves less than 6 s
    d = AbrController(LADDER, OPTS, initial_estimate_bps=6 * MBIT).decide(
        now=100.0, buffer_s=11.0, estimate_bps=est, rest_s=1.0
    )
    assert not d.changed  # paced ×2: the last second of media comes in time


def test_near_the_end_a_variant_that_finishes_the_stream_is_kept() -> None:
    est = 3 * MBIT  # misses 4 Mbit/s × 1.5 × 0.8; a 4 s segment of it takes 5.3 s
    ctl = AbrController(LADDER, OPTS, initial_estimate_bps=6 * MBIT)
    # 11 s of buffer: one more segment leaves 5.7 s, under the 6 s reserve, and the pace
    # (×1.14) does not reach the down margin; but the last 7 s of media, at 4 Mbit/s × 1.5,
    # take 14 s and are due in 11 + 7 - 4 = 14 s.
    d = ctl.decide(now=100.0, buffer_s=11.0, estimate_bps=est, rest_s=7.0)
    assert not d.changed
    d = ctl.decide(now=100.0, buffer_s=11.0, estimate_bps=est, rest_s=12.0)
    assert (d.reason, d.to_variant) == (AbrReason.DOWN, 2)  # 24 s to fetch, due in 19 s


def test_a_fade_takes_the_stream_to_what_the_averages_pay_for_and_the_buffer_carries() -> None:
    ctl = AbrController(LADDER, OPTS, initial_estimate_bps=100 * MBIT)
    # A fade to 1 Mbit/s under averages of 6: the top is not carried (10 s - 5.3 s < 6 s). The
    # averages pay for 4 Mbit/s within the down margin, but at 1 Mbit/s only a 1 Mbit/s segment
    # leaves the reserve (10 - 4 = 6 s): there, not to the bottom rung that fits 1 Mbit/s.
    d = ctl.decide(now=100.0, buffer_s=10.0, estimate_bps=1 * MBIT, steady_bps=6 * MBIT)
    assert (d.reason, d.from_variant, d.to_variant) == (AbrReason.DOWN, 4, 1)


def test_a_down_switch_goes_to_what_finishes_the_stream_at_the_link_now() -> None:
    ctl = AbrController(LADDER, OPTS, initial_estimate_bps=100 * MBIT)
    # The averages (5 Mbit/s) lag a drop to 2.5: the last 6 s of media at 4 Mbit/s × 1.5 would
    # take 7.2 s at them, 14.4 s at the link now, and are due in 9 + 6 - 4 = 11 s.
    d = ctl.decide(now=100.0, buffer_s=9.0, estimate_bps=2.5 * MBIT, steady_bps=5 * MBIT, rest_s=6.0)
    assert (d.reason, d.from_variant, d.to_variant) == (AbrReason.DOWN, 4, 2)  # 2 Mbit/s: 7.2 s


def test_no_pace_from_a_buffer_below_the_reserve_nor_once_everything_is_stored() -> None:
    est = 2.5 * MBIT
    for buffer_s, rest_s in ((OPTS.down_switch_buffer_secs + 4.0, 1.0), (30.0, 0.0)):
        d = AbrController(LADDER, OPTS, initial_estimate_bps=est).decide(
            now=100.0, buffer_s=buffer_s, estimate_bps=est, rest_s=rest_s
        )
        assert not d.changed


def test_manual_pin_and_back_to_auto() -> None:
    ctl = AbrController(LADDER, OPTS)
    assert ctl.decide(now=0.0, buffer_s=12.0, estimate_bps=up_threshold(2)).to_variant == 2
    d = ctl.set_manual(4, now=1.0)  # inside the interval: manual ignores it
    assert d is not None and (d.reason, d.from_variant, d.to_variant) == (AbrReason.MANUAL, 2, 4)
    assert ctl.manual == 4
    assert ctl.set_manual(4, now=2.0) is None
    d = ctl.decide(now=100.0, buffer_s=0.5, estimate_bps=100_000)  # ABR is off
    assert not d.changed and ctl.current == 4
    d = ctl.set_manual(None, now=101.0)
    assert d is not None and not d.changed and ctl.manual is None
    assert ctl.set_manual(None, now=101.0) is None
    d = ctl.decide(now=102.0, buffer_s=0.5, estimate_bps=100_000)  # ABR again, at once
    assert (d.reason, d.to_variant) == (AbrReason.URGENT, 0)


def test_manual_rejects_unknown_variants() -> None:
    with pytest.raises(ValueError):
        AbrController(LADDER, OPTS).set_manual(len(LADDER), now=0.0)


def test_max_bandwidth_caps_abr() -> None:
    capped = dataclasses.replace(OPTS, max_bandwidth=3 * MBIT)
    ctl = AbrController(LADDER, capped, initial_estimate_bps=100 * MBIT)
    assert ctl.current == 2 and ctl.cap_index == 2
    assert not ctl.decide(now=0.0, buffer_s=25.0, estimate_bps=100 * MBIT).changed
    ctl.set_manual(4, now=1.0)  # a pin may exceed the cap ...
    assert ctl.current == 4
    d = ctl.set_manual(None, now=2.0)  # ... but back to auto it drops to the cap
    assert d is not None and (d.reason, d.to_variant) == (AbrReason.MANUAL, 2)


def test_max_bandwidth_below_the_ladder_keeps_the_lowest() -> None:
    capped = dataclasses.replace(OPTS, max_bandwidth=1)
    ctl = AbrController(LADDER, capped, initial_estimate_bps=100 * MBIT)
    assert ctl.current == 0
    assert not ctl.decide(now=0.0, buffer_s=25.0, estimate_bps=100 * MBIT).changed


def test_decisions_keep_the_last_switches_only() -> None:
    ctl = AbrController(LADDER, OPTS)
    for i in range(DECISIONS_KEPT + 10):
        ctl.set_manual(i % 2 + 1, now=float(i))
    kept = ctl.decisions
    assert len(kept) == DECISIONS_KEPT
    assert kept[-1].at == DECISIONS_KEPT + 9
    assert all(isinstance(d, AbrDecision) and d.changed for d in kept)


def test_steady_decisions_are_not_kept() -> None:
    ctl = AbrController(LADDER, OPTS)
    d = ctl.decide(now=0.0, buffer_s=7.0, estimate_bps=1 * MBIT)
    assert not d.changed and d.reason is None and d.note.startswith("steady")
    assert ctl.decisions == []


@pytest.mark.parametrize("bitrates", [(), (2, 1), (0, 1)])
def test_bad_ladders_are_rejected(bitrates: tuple[int, ...]) -> None:
    with pytest.raises(ValueError):
        AbrController(bitrates, OPTS)


def test_decision_records_its_inputs() -> None:
    ctl = AbrController(LADDER, OPTS)
    d = ctl.decide(now=3.0, buffer_s=12.5, estimate_bps=up_threshold(1))
    assert (d.at, d.buffer_s, d.estimate_bps) == (3.0, 12.5, up_threshold(1))
    manual = ctl.set_manual(0, now=4.0)
    assert manual is not None and math.isnan(manual.buffer_s)
