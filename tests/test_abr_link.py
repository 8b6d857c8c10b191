"""ABR on the link: the link meter, the fetch schedule near the reader, the abandon rule, and the
start estimate kept per origin. Scores are benchmarks (benchmarks/abr_real.py), never asserted here."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import kithara_hls
from kithara_hls import AbrOptions, AbrReason, CacheOptions, HlsOptions, NetworkOptions, playlist
from kithara_hls import events as ev
from kithara_hls.abr.abandon import Pending, abandon_to
from kithara_hls.abr.controller import AbrDecision
from kithara_hls.abr.driver import AbrDriver
from kithara_hls.abr.estimator import ThroughputEstimator
from kithara_hls.abr.meter import LinkMeter
from kithara_hls.abr.schedule import FetchSchedule, parallel_limit
from kithara_hls.cache import Cache
from kithara_hls.catalog import load_link_estimate, origin_of, save_link_estimate
from kithara_hls.events import EventBus
from kithara_hls.layout import Layout, Part, build_parts
from kithara_hls.session import Session
from kithara_hls.testing import Origin, StreamFixture, build_fmp4, build_ts_variants
from kithara_hls.testing.decoding import decoded_seconds
from kithara_hls.testing.oracle import parse_media

WAIT_S = 30.0


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def fx(tmp_path_factory: pytest.TempPathFactory) -> StreamFixture:
    pytest.importorskip("av")
    root = tmp_path_factory.mktemp("abr_link")
    return build_ts_variants(root, name="link_ts", seconds=12.0, segment_seconds=2.0)


@pytest.fixture
def link_origin(fx: StreamFixture) -> Iterator[Origin]:
    with Origin(fx.root) as served:
        yield served


def options(
    tmp_path: Path, abr: AbrOptions | None = None, variant: int | None = None, **net: object
) -> HlsOptions:
    network = NetworkOptions(backoff=0.01, read_deadline=60.0, **net)  # type: ignore[arg-type]
    return HlsOptions(
        variant=variant, cache=CacheOptions(dir=tmp_path), network=network, abr=abr or AbrOptions()
    )


def expected_for(session: Session, fx: StreamFixture) -> bytes:
    """The stream the reader should have seen: each part's bytes, by the variant it was planned on."""
    return b"".join(fx.segment_bytes(p.variant)[p.segment] for p in session.layout.parts())


def segment_path(fx: StreamFixture, variant: int, segment: int) -> str:
    media = fx.root / fx.media[variant]
    return (Path(fx.media[variant]).parent / parse_media(media).segments[segment].uri).as_posix()


class Waiter:
    """Collects events on the publishing thread and wakes a test waiting for one that matches."""

    def __init__(self) -> None:
        self.events: list[ev.Event] = []
        self._cond = threading.Condition()

    def __call__(self, event: ev.Event) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def wait_for(self, match: object) -> ev.Event:
        with self._cond:
            found: list[ev.Event] = []

            def seen() -> bool:
                found[:] = [e for e in self.events if match(e)]  # type: ignore[operator]
                return bool(found)

            assert self._cond.wait_for(seen, WAIT_S), "the event never came"
            return found[0]


# -- the link meter ---------------------------------------------------------------------------


def hand_meter() -> tuple[Clock, LinkMeter]:
    """A link meter on a clock the test moves, whose estimator takes every sample."""
    clock = Clock()
    return clock, LinkMeter(ThroughputEstimator(min_sample_bytes=0, min_total_bytes=0), clock=clock)


def test_concurrent_downloads_count_together() -> None:
    clock, meter = hand_meter()
    a = meter.begin("a", 0, 0)
    b = meter.begin("b", 1, 0)
    meter.sized(a, 1_000_000)
    clock.now += 1.0
    meter.arrived(a, 100_000)
    meter.arrived(b, 100_000)
    assert meter.sample()
    # 200 kB over one second of link time: the link, not one connection's 100 kB/s.
    assert meter.estimate() == pytest.approx(1_600_000)
    progress = {p.rid: p for p in meter.downloads()}
    assert (progress["a"].loaded, progress["a"].size, progress["a"].elapsed) == (100_000, 1_000_000, 1.0)


def test_idle_time_is_not_link_time() -> None:
    clock, meter = hand_meter()
    d = meter.begin("a", 0, 0)
    meter.sized(d, 50_000)
    clock.now += 0.25
    meter.arrived(d, 50_000)
    meter.end(d)
    clock.now += 60.0  # nothing in flight: no link time passes
    assert not meter.busy
    assert meter.sample(force=True)
    assert meter.estimate() == pytest.approx(1_600_000)


def test_the_wait_for_a_response_is_not_link_time() -> None:
    clock, meter = hand_meter()
    a = meter.begin("a", 0, 0)
    clock.now += 0.08  # the request's round trip: latency, not bandwidth
    assert meter.busy
    meter.sized(a, 100_000)
    b = meter.begin("b", 1, 0)
    clock.now += 0.25
    meter.arrived(a, 50_000)
    clock.now += 0.25  # b's response, still awaited, adds no time while a flows
    meter.arrived(a, 50_000)
    meter.end(a)
    clock.now += 1.0  # and none while b alone waits
    meter.sized(b, 50_000)
    clock.now += 0.25
    meter.arrived(b, 50_000)
    meter.end(b)
    assert meter.sample(force=True)
    # 150 kB over 0.75 s of flowing responses: 1.6 Mbit/s, where the waits would make it 0.65.
    assert meter.estimate() == pytest.approx(1_600_000)


def test_a_stalled_link_is_seen_within_two_seconds_without_a_byte() -> None:
    clock, meter = hand_meter()
    d = meter.begin("a", 0, 0)
    meter.sized(d, 100_000_000)
    for _ in range(20):  # 10 s at 8 Mbit/s
        clock.now += 0.5
        meter.arrived(d, 500_000)
        meter.sample()
    assert meter.estimate() == pytest.approx(8_000_000)
    for _ in range(4):  # 2 s, and not one byte
        clock.now += 0.5
        assert meter.sample()
    assert meter.estimate() < 1_000_000


def test_a_slow_sample_is_forgotten_by_the_clock_when_link_time_is_scarce() -> None:
    est = ThroughputEstimator(min_sample_bytes=0, min_total_bytes=0, fast_half_life=3.0, slow_half_life=6.0)
    est.add_interval(40_000, 2.0, now=0.0)  # 160 kbit/s over 2 s of link time
    for k in range(1, 4):  # then a short fast download every 4 s: little link time each
        est.add_interval(60_000, 0.3, now=4.0 * k, min_weight=3.0)
    # The 2-s slow sample left the recent window with time, not only with link time.
    assert est.estimate() == pytest.approx(min(est.estimate(recent=False), 1_600_000))
    assert est.estimate() > 800_000


def test_the_recent_rate_is_where_the_link_is_now_while_the_averages_climb() -> None:
    clock, meter = hand_meter()
    d = meter.begin("a", 0, 0)
    meter.sized(d, 100_000_000)
    clock.now += 0.5
    meter.arrived(d, 25_000)
    assert meter.sample()
    assert meter.recent_rate() is None  # a quarter of its window: not yet
    for _ in range(10):  # 5 s at 400 kbit/s, then 2 s at 8 Mbit/s
        clock.now += 0.5
        meter.arrived(d, 25_000)
        meter.sample()
    for i in range(4):
        clock.now += 0.5
        meter.arrived(d, 500_000)
        meter.sample()
        if i == 0:  # half a second into the rise: a short window shows it, the whole one not yet
            assert meter.recent_rate(0.5) == pytest.approx(8_000_000)
            assert meter.recent_rate() < 4_000_000  # type: ignore[operator]
    assert meter.recent_rate() == pytest.approx(8_000_000)
    assert meter.estimate() < 6_000_000  # the averages are still on their way up


# -- the schedule and the abandon rule, pure ----------------------------------------------------


def test_parallel_limit_follows_the_link() -> None:
    # A link that barely carries the variant: one download, whatever the buffer.
    assert parallel_limit(link_bps=300_000, media_bps=256_000, workers=12) == 1
    # Each of n downloads must arrive at 1.5x real time: 2 Mbit/s carries three of 400 kbit/s.
    assert parallel_limit(link_bps=2_000_000, media_bps=400_000, workers=12) == 3
    fast = parallel_limit(link_bps=160_000_000, media_bps=4_000_000, workers=12)
    assert fast == 12  # a fast link: every worker at once
    assert parallel_limit(link_bps=1.0, media_bps=0.0, workers=12) == 12


LADDER = (64_000, 128_000, 256_000, 512_000, 1_024_000)


class IdleMeter:
    """A link meter with no download in flight and an estimate the test sets."""

    busy = False
    on_busy = None

    def __init__(self, bps: float, now_bps: float | None = None) -> None:
        self.bps = bps
        self.now_bps = now_bps  # the link's rate now

    def estimate(self, *, recent: bool = True) -> float:
        return self.bps

    def recent_rate(self, window_s: float | None = None) -> float | None:
        return self.now_bps

    def measured_bytes(self) -> int:
        return 1_000_000


def test_a_switch_held_for_the_interval_is_made_when_it_ends_without_a_poke() -> None:
    applied: list[int] = []
    first, second = threading.Event(), threading.Event()

    def apply(decision: AbrDecision) -> None:
        applied.append(decision.to_variant)
        (first if len(applied) == 1 else second).set()

    meter = IdleMeter(300_000)  # fits 200 kbit/s only
    abr = AbrOptions(min_switch_interval=0.5, min_buffer_for_up_switch_secs=0.0)
    driver = AbrDriver(
        [100_000, 200_000, 400_000],
        abr,
        meter=meter,  # type: ignore[arg-type]
        buffer_level=lambda: 20.0,
        apply=apply,
        bus=EventBus(),
    )
    try:
        driver.poke()
        assert first.wait(WAIT_S)
        meter.bps = 1_000_000
        # Decided again within the interval: held. Nothing pokes the driver after this, and no
        # download is in flight: the look-ahead may be waiting for exactly this switch.
        driver.poke()
        assert second.wait(WAIT_S), f"the held switch was not made: {applied}"
        assert applied == [1, 2]
    finally:
        driver.close()


def test_while_an_up_switch_waits_for_the_buffer_the_look_ahead_goes_on() -> None:
    waiting, applied = threading.Event(), threading.Event()
    level = [8.0]
    # The averages pay for 512 kbit/s with the up margin; the link's last half second, for the
    # top, which one more segment of buffer carries at the averages (5.9 s of fetch, 6 s left).
    meter = IdleMeter(700_000, now_bps=1_400_000)
    abr = AbrOptions()
    driver = AbrDriver(
        list(LADDER),
        abr,
        meter=meter,  # type: ignore[arg-type]
        buffer_level=lambda: level[0],
        apply=lambda decision: applied.set(),
        on_wait=waiting.set,
        initial_estimate_bps=300_000,  # on 256 kbit/s
        bus=EventBus(),
    )
    variants = [playlist.Variant(f"v{i}.m3u8", b, None, None, None) for i, b in enumerate(LADDER)]
    schedule = FetchSchedule(
        meter=meter,  # type: ignore[arg-type]
        variants=lambda: variants,
        size_info=lambda rid: None,
        controller=lambda: driver.controller,
        abr=abr,
        workers=12,
        start_known=True,
    )
    part = Part(
        "v2/s3", "v2/s3.ts", None, None, None, variant=2, segment=3, is_init=False, duration=4.0, start=12.0
    )
    try:
        assert schedule.limit(8.0, part) == 0  # ABR may go up: the look-ahead holds for it
        driver.poke()
        assert waiting.wait(WAIT_S), "the controller did not wait for the buffer"
        assert not applied.is_set() and driver.current == 2  # no step to 512 kbit/s between
        assert schedule.limit(8.0, part) == 1  # the segment the switch waits for is fetched
        meter.bps = meter.now_bps = 8_000_000  # even where the link would carry many at once
        assert schedule.limit(8.0, part) == 1
        level[0] = 12.0
        driver.poke()
        assert applied.wait(WAIT_S)
        assert driver.current == 4  # one switch, to where the link is now
    finally:
        driver.close()


def test_abandon_a_download_that_cannot_finish_before_the_buffer_runs_dry() -> None:
    # 4 s of the 1 Mbit/s rung (512 kB), 50 kB in after 2 s: 18 s to go, 6 s of buffer left.
    late = Pending(variant=4, duration=4.0, due_s=6.0, loaded=50_000, size=512_000, elapsed=2.0)
    # At 0.3 Mbit/s the 256 kbit/s rung arrives in 3.4 s, the 512 kbit/s one in 6.8 s.
    assert abandon_to(late, LADDER, 300_000) == 2
    # A stalled download is abandoned too, for the lowest rung if nothing else arrives in time.
    stalled = Pending(variant=4, duration=4.0, due_s=1.0, loaded=0, size=None, elapsed=2.0)
    assert abandon_to(stalled, LADDER, 100_000) == 0


def test_a_download_alone_on_a_link_that_collapsed_is_judged_at_the_link_now() -> None:
    # 200 kB of 512 kB in 2 s: at its average (0.8 Mbit/s) the rest comes in 3.1 s, before the
    # 4 s of buffer run dry; but the link now carries 0.1 Mbit/s, and it would take 25 s.
    fast_then_slow = Pending(variant=4, duration=4.0, due_s=4.0, loaded=200_000, size=512_000, elapsed=2.0)
    assert abandon_to(fast_then_slow, LADDER, 100_000) == 0
    # Beside another download, its own rate still counts (the other one may end first).
    shared = Pending(4, 4.0, 4.0, 200_000, 512_000, 2.0, sharing=2)
    assert abandon_to(shared, LADDER, 100_000) is None


def test_a_download_due_many_segments_away_rides_out_a_tunnel() -> None:
    # 87 kB of 512 kB in 3 s, then the link fell to 78 kbit/s: at that rate the rest takes 44 s.
    tunnel = Pending(variant=4, duration=4.0, due_s=28.0, loaded=86_708, size=512_000, elapsed=3.0)
    # 28 s of buffer before it: judged at the smoothed estimate (still 970 kbit/s: the fall is 2 s
    # old), the rest comes in 3.5 s. Kept; should the fall last, that estimate follows it down
    # within seconds, with the buffer still long.
    assert abandon_to(tunnel, LADDER, 78_000, fresh_bps=970_000) is None
    assert abandon_to(tunnel, LADDER, 78_000, fresh_bps=100_000) is not None
    # A buffer of a segment or two is not that patient: the recent rate judges.
    short = Pending(variant=4, duration=4.0, due_s=8.0, loaded=86_708, size=512_000, elapsed=3.0)
    assert abandon_to(short, LADDER, 78_000, fresh_bps=970_000) is not None


def test_keep_a_download_that_finishes_in_time_or_is_nearly_whole_or_young() -> None:
    on_time = Pending(variant=4, duration=4.0, due_s=20.0, loaded=100_000, size=512_000, elapsed=2.0)
    assert abandon_to(on_time, LADDER, 300_000) is None
    nearly = Pending(variant=4, duration=4.0, due_s=0.5, loaded=450_000, size=512_000, elapsed=20.0)
    assert abandon_to(nearly, LADDER, 300_000) is None
    young = Pending(variant=4, duration=4.0, due_s=0.5, loaded=0, size=512_000, elapsed=1.9)
    assert abandon_to(young, LADDER, 300_000) is None
    lowest = Pending(variant=0, duration=4.0, due_s=0.0, loaded=0, size=32_000, elapsed=5.0)
    assert abandon_to(lowest, LADDER, 300_000) is None


# -- through the reader ------------------------------------------------------------------------


def test_an_abandoned_download_is_fetched_again_lower_and_the_bytes_stay_exact(
    fx: StreamFixture, link_origin: Origin, tmp_path: Path, sessions: list[Session]
) -> None:
    top = len(fx.media) - 1
    # Segment 3 of the top variant stalls after its first bytes: it cannot arrive before the
    # three segments ahead of it are played.
    release = link_origin.stall(segment_path(fx, top, 3), after_bytes=1000)
    waiter = Waiter()
    abr = AbrOptions(initial_bandwidth=100_000_000)  # start on the top variant
    with kithara_hls.open(link_origin.url(fx.entry), options(tmp_path, abr, read_timeout=30.0)) as f:
        f.on_event(waiter)
        head = f.read(len(fx.segment_bytes(top)[0]))  # playing: the first segment read
        first = waiter.wait_for(lambda e: isinstance(e, ev.SegmentStart) and e.segment_index == 3)
        assert isinstance(first, ev.SegmentStart) and first.variant == top
        # The reader waits for no byte of it: the download is dropped on its own.
        lower = waiter.wait_for(
            lambda e: isinstance(e, ev.SegmentStart) and e.segment_index == 3 and e.variant < top
        )
        data = head + f.read()
        release.set()
    assert data == expected_for(sessions[0], fx)
    assert decoded_seconds(data) == pytest.approx(fx.duration, abs=0.3)
    parts = sessions[0].layout.parts()
    assert [p.variant for p in parts[:3]] == [top] * 3  # what was stored stays
    # Fetched again lower (and again lower, should the re-fetch itself miss its time).
    assert isinstance(lower, ev.SegmentStart) and lower.variant < top and parts[3].variant < top
    applied = [e for e in waiter.events if isinstance(e, ev.VariantApplied)]
    assert applied[0] == ev.VariantApplied(None, top, AbrReason.INITIAL)
    assert applied[1] == ev.VariantApplied(top, parts[3].variant, AbrReason.URGENT)


def test_the_segment_the_reader_waits_on_with_no_byte_is_fetched_again_lower(
    fx: StreamFixture, link_origin: Origin, tmp_path: Path, sessions: list[Session]
) -> None:
    top = len(fx.media) - 1
    # Segment 3 of the top variant sends its headers, then nothing.
    release = link_origin.stall(segment_path(fx, top, 3), after_bytes=0)
    waiter = Waiter()
    abr = AbrOptions(initial_bandwidth=100_000_000)  # start on the top variant
    head_size = sum(len(b) for b in fx.segment_bytes(top)[:3])
    with kithara_hls.open(link_origin.url(fx.entry), options(tmp_path, abr, read_timeout=30.0)) as f:
        f.on_event(waiter)
        head = f.read(head_size)  # up to the start of segment 3: the next read waits on it
        data = head + f.read()  # woken when segment 3 is re-planned lower under it
        release.set()
    parts = sessions[0].layout.parts()
    assert [p.variant for p in parts[:3]] == [top] * 3  # what was read stays
    assert parts[3].variant < top
    assert data == expected_for(sessions[0], fx)
    assert decoded_seconds(data) == pytest.approx(fx.duration, abs=0.3)
    applied = [e for e in waiter.events if isinstance(e, ev.VariantApplied)]
    assert applied[0] == ev.VariantApplied(None, top, AbrReason.INITIAL)
    assert applied[1] == ev.VariantApplied(top, parts[3].variant, AbrReason.URGENT)


def test_in_fmp4_the_re_planned_segment_the_reader_waits_on_gets_its_init_section(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, sessions: list[Session]
) -> None:
    fmp4 = build_fmp4(tmp_path_factory.mktemp("abr_link_fmp4"), name="link_fmp4", bitrates=(64_000, 256_000))
    top = len(fmp4.media) - 1
    init = fmp4.init_bytes(top)
    assert init is not None
    head_size = len(init) + sum(len(b) for b in fmp4.segment_bytes(top)[:3])
    with Origin(fmp4.root) as origin:
        release = origin.stall(segment_path(fmp4, top, 3), after_bytes=0)
        abr = AbrOptions(initial_bandwidth=100_000_000)
        with kithara_hls.open(origin.url(fmp4.entry), options(tmp_path, abr, read_timeout=30.0)) as f:
            head = f.read(head_size)  # the init section and three segments: the next read waits
            data = head + f.read()
            release.set()
    parts = sessions[0].layout.parts()
    # The new plan starts where segment 3 of the top variant was: the lower variant's init
    # section, then its segment 3.
    assert [(p.is_init, p.variant) for p in parts[:6]] == [(True, top)] + [(False, top)] * 3 + [
        (True, parts[5].variant),
        (False, parts[5].variant),
    ]
    assert parts[5].variant < top and parts[5].segment == 3
    expected = b"".join(
        (fmp4.init_bytes(p.variant) or b"") if p.is_init else fmp4.segment_bytes(p.variant)[p.segment]
        for p in parts
    )
    assert data == expected
    assert decoded_seconds(data) == pytest.approx(fmp4.duration, abs=0.3)


def test_the_rest_after_the_buffer_is_what_is_not_stored_to_the_end(
    fx: StreamFixture, link_origin: Origin, tmp_path: Path, sessions: list[Session]
) -> None:
    segments = len(fx.segment_bytes(0))
    stored = threading.Event()
    done: set[int] = set()

    def on_event(event: ev.Event) -> None:
        if isinstance(event, ev.SegmentComplete):
            done.add(event.segment_index)
            if len(done) == segments:
                stored.set()

    release = link_origin.stall(segment_path(fx, 0, 3), after_bytes=0)  # the buffer ends there
    with kithara_hls.open(link_origin.url(fx.entry), options(tmp_path, variant=0)) as f:
        f.on_event(on_event)
        f.read(len(fx.segment_bytes(0)[0]))
        reader = sessions[0].reader
        buffer = reader.buffer_level()
        rest = reader.rest_level(buffer)
        assert buffer <= 3 * 2.0 + 1e-6 and rest + buffer == pytest.approx(fx.duration, abs=1e-6)
        release.set()
        assert stored.wait(WAIT_S), "the look-ahead did not store the stream"
        buffer = reader.buffer_level()
        assert reader.rest_level(buffer) == 0.0
        assert buffer == pytest.approx(fx.duration, abs=1e-6)


def test_a_part_the_reader_was_returned_bytes_of_is_never_replaced(fx: StreamFixture) -> None:
    top = len(fx.media) - 1
    media = playlist.parse_media((fx.root / fx.media[top]).read_bytes(), "http://origin/top.m3u8")
    low = playlist.parse_media((fx.root / fx.media[0]).read_bytes(), "http://origin/low.m3u8")
    layout = Layout(build_parts(media, top))
    layout.enter(3)
    assert layout.committed == 3  # the parts before the reader's are frozen, not its own
    assert layout.replace_from(3, build_parts(low, 0, 3))  # no byte of it returned: re-planned
    assert layout.part(3).variant == 0
    assert not layout.hold(3, build_parts(media, top)[3])  # the old part's bytes do not count
    assert layout.hold(3, layout.part(3))  # bytes of it returned: frozen
    assert not layout.replace_from(3, build_parts(media, top, 3))
    assert layout.part(3).variant == 0


def test_a_link_cut_steps_down_before_the_buffer_runs_dry(
    fx: StreamFixture, link_origin: Origin, tmp_path: Path, sessions: list[Session]
) -> None:
    top = len(fx.media) - 1
    sizes = [len(b) for b in fx.segment_bytes(top)]
    link_origin.bandwidth = 2 * sum(sizes) / fx.duration  # twice the top rate
    waiter = Waiter()
    abr = AbrOptions(initial_bandwidth=2 * sum(sizes) * 8 / fx.duration)  # the link, known
    with kithara_hls.open(link_origin.url(fx.entry), options(tmp_path, abr)) as f:
        f.on_event(waiter)
        head = f.read(sizes[0] + sizes[1])  # two segments played; the next ones are on their way
        # The link falls to a third of the top rate: no top segment completes for seconds.
        link_origin.bandwidth = sum(sizes) / fx.duration / 3
        lower = waiter.wait_for(lambda e: isinstance(e, ev.SegmentStart) and e.variant < top)
        link_origin.bandwidth = None
        data = head + f.read()
        decisions = f.abr_decisions()
    assert isinstance(lower, ev.SegmentStart)
    assert data == expected_for(sessions[0], fx)
    down = next(d for d in decisions if d.to_variant < d.from_variant)
    assert down.reason in (AbrReason.DOWN, AbrReason.URGENT)
    assert down.buffer_s > 0  # decided while the reader still had media ahead
    applied = [e for e in waiter.events if isinstance(e, ev.VariantApplied)]
    assert applied[0] == ev.VariantApplied(None, top, AbrReason.INITIAL)
    assert applied[1].reason in (AbrReason.DOWN, AbrReason.URGENT)


def test_near_the_reader_downloads_go_one_at_a_time_on_a_slow_link(
    fx: StreamFixture, link_origin: Origin, tmp_path: Path
) -> None:
    top = len(fx.media) - 1
    with kithara_hls.open(link_origin.url(fx.entry), options(tmp_path / "probe")) as f:
        rate = f.variants[top].bitrate
    # The link carries the pinned variant 1.25 times over: two downloads at once would each
    # arrive slower than real time, so the next segment must have the link to itself.
    link_origin.bandwidth = rate * 1.25 / 8
    waiter = Waiter()
    abr = AbrOptions(initial_bandwidth=rate * 1.25)
    with kithara_hls.open(link_origin.url(fx.entry), options(tmp_path, abr, variant=top)) as f:
        f.on_event(waiter)
        waiter.wait_for(lambda e: isinstance(e, ev.SegmentComplete) and e.segment_index == 2)
    flow = [
        (type(e).__name__, e.segment_index)
        for e in waiter.events
        if isinstance(e, ev.SegmentStart | ev.SegmentComplete)
    ]
    expected = [("SegmentStart", 0), ("SegmentComplete", 0), ("SegmentStart", 1), ("SegmentComplete", 1)]
    assert flow[:6] == [*expected, ("SegmentStart", 2), ("SegmentComplete", 2)]


def test_a_fast_link_fetches_in_parallel(fx: StreamFixture, link_origin: Origin, tmp_path: Path) -> None:
    top = len(fx.media) - 1
    link_origin.latency = 0.05  # a WAN's round trip: parallel requests hide it
    waiter = Waiter()
    abr = AbrOptions(initial_bandwidth=100_000_000)  # a link known to be fast
    with kithara_hls.open(link_origin.url(fx.entry), options(tmp_path, abr, variant=top)) as f:
        f.on_event(waiter)
        assert f.read() == fx.expected(top)
    starts = [i for i, e in enumerate(waiter.events) if isinstance(e, ev.SegmentStart)]
    first_done = next(i for i, e in enumerate(waiter.events) if isinstance(e, ev.SegmentComplete))
    assert sum(1 for i in starts if i < first_done) > 1


def test_after_the_first_segment_the_look_ahead_waits_for_abr_to_choose(
    fx: StreamFixture, link_origin: Origin, tmp_path: Path
) -> None:
    last = len(parse_media(fx.root / fx.media[0]).segments) - 1
    waiter = Waiter()
    # Nothing known of the link: the first segment alone, on the lowest variant, measures it.
    with kithara_hls.open(link_origin.url(fx.entry), options(tmp_path)) as f:
        f.on_event(waiter)
        f.read(1)  # the reader stays in the first segment: all that follows is look-ahead
        waiter.wait_for(lambda e: isinstance(e, ev.SegmentComplete) and e.segment_index == last)
    lowest = Path(fx.media[0]).parent.as_posix() + "/"
    fetched_low = [
        r.path for r in link_origin.requests if r.path.startswith(lowest) and r.path.endswith(".ts")
    ]
    # The loopback link pays for more than the lowest: no look-ahead part was fetched there.
    assert fetched_low == [segment_path(fx, 0, 0)]


# -- the start estimate ------------------------------------------------------------------------


def test_origin_of_names_scheme_host_and_port() -> None:
    assert origin_of("https://CDN.example.com/a/master.m3u8?t=1") == "https://cdn.example.com:443"
    assert origin_of("http://127.0.0.1:8080/x.m3u8") == "http://127.0.0.1:8080"
    assert origin_of("file:///tmp/x.m3u8") is None


def test_a_stored_estimate_picks_the_start_variant(
    fx: StreamFixture, link_origin: Origin, tmp_path: Path
) -> None:
    url = link_origin.url(fx.entry)
    with kithara_hls.open(url, options(tmp_path / "fresh")) as f:
        rates = [v.bitrate for v in f.variants]
        first = f.events()
        f.read(1)
    assert next(e for e in first if isinstance(e, ev.VariantApplied)).to_variant == 0  # nothing known

    def start_variant(abr: AbrOptions | None = None) -> int:
        with kithara_hls.open(url, options(tmp_path, abr)) as f:
            sub = f.events()
            f.read(1)
            return next(e for e in sub if isinstance(e, ev.VariantApplied)).to_variant

    cache = Cache(CacheOptions(dir=tmp_path))
    try:
        # Between the middle and the top rung, with the safety factor: the middle one.
        save_link_estimate(cache, url, rates[1] * 1.2)
        assert load_link_estimate(cache, url) == pytest.approx(rates[1] * 1.2, abs=1)
    finally:
        cache.close()
    assert start_variant() == 1
    # The option wins over what is stored.
    assert start_variant(AbrOptions(initial_bandwidth=rates[2] * 2)) == 2


def test_a_read_keeps_the_estimate_for_its_origin(
    fx: StreamFixture, link_origin: Origin, tmp_path: Path
) -> None:
    url = link_origin.url(fx.entry)
    with kithara_hls.open(url, options(tmp_path, variant=len(fx.media) - 1)) as f:
        assert f.read()
    cache = Cache(CacheOptions(dir=tmp_path))
    try:
        kept = load_link_estimate(cache, url)
    finally:
        cache.close()
    assert kept is not None and kept > 0
