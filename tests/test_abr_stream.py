"""ABR in the stream: switches splice exactly and decode, and follow the bandwidth."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import pytest

import kithara_hls
from kithara_hls import AbrOptions, AbrReason, CacheOptions, HlsOptions, NetworkOptions
from kithara_hls import events as ev
from kithara_hls.abr.controller import AbrDecision
from kithara_hls.session import Session
from kithara_hls.switching import REPLACE_LEAD_S, REPLACE_SPEED
from kithara_hls.testing import EAGER_ABR, Origin, StreamFixture, build_fmp4, build_ts_variants
from kithara_hls.testing.decoding import decoded_seconds

#: Link speeds for the bandwidth test, bytes per second: all variants fit, then only the lowest.
FAST = 400_000
SLOW = 12_000


@pytest.fixture(scope="module")
def streams(tmp_path_factory: pytest.TempPathFactory) -> dict[str, StreamFixture]:
    pytest.importorskip("av")
    root = tmp_path_factory.mktemp("abr")
    return {
        "ts": build_ts_variants(root, name="abr_ts", seconds=16.0, segment_seconds=1.0),
        "fmp4": build_fmp4(root, name="abr_fmp4", seconds=16.0, segment_seconds=1.0),
    }


@pytest.fixture
def abr_origin(streams: dict[str, StreamFixture]) -> Origin:
    with Origin(streams["ts"].root) as served:
        yield served


def expected_for(session: Session, fx: StreamFixture) -> bytes:
    """The stream the reader should have seen: each part's bytes, by the variant it was planned on."""
    out = []
    for part in session.layout.parts():
        if part.is_init:
            init = fx.init_bytes(part.variant)
            assert init is not None
            out.append(init)
        else:
            out.append(fx.segment_bytes(part.variant)[part.segment])
    return b"".join(out)


def options(tmp_path: Path, abr: AbrOptions | None = None, **net: object) -> HlsOptions:
    network = NetworkOptions(backoff=0.01, read_deadline=60.0, **net)  # type: ignore[arg-type]
    return HlsOptions(cache=CacheOptions(dir=tmp_path), network=network, abr=abr or AbrOptions())


@pytest.mark.parametrize("name", ["ts", "fmp4"])
def test_manual_switch_splices_exactly(
    name: str, streams: dict[str, StreamFixture], abr_origin: Origin, tmp_path: Path, sessions: list[Session]
):
    fx = streams[name]
    top = len(fx.media) - 1
    # Pinned first, so that ABR (free to move up at once on a fast link) does not switch first.
    pinned = dataclasses.replace(options(tmp_path, lookahead=3.0), variant=0)
    with kithara_hls.open(abr_origin.url(fx.entry), pinned) as f:
        sub = f.events()
        head = f.read(len(fx.expected(0)) // 3)
        f.set_variant(top)
        data = head + f.read()
        assert f.variant == top
        assert data == expected_for(sessions[0], fx)
        applied = [e for e in sub if isinstance(e, ev.VariantApplied)]
    assert applied[0] == ev.VariantApplied(None, 0, AbrReason.MANUAL)
    assert applied[-1] == ev.VariantApplied(0, top, AbrReason.MANUAL)
    assert {p.variant for p in sessions[0].layout.parts()} == {0, top}
    assert decoded_seconds(data) == pytest.approx(fx.duration, abs=0.3)


# The origin's link really slows down and speeds up: under a loaded machine the
# switches can land too late in a 16-second stream. Byte-exactness never varies.
@pytest.mark.flaky(reruns=2)
def test_abr_follows_the_bandwidth(
    streams: dict[str, StreamFixture], abr_origin: Origin, tmp_path: Path, sessions: list[Session]
):
    fx = streams["ts"]
    abr_origin.bandwidth = FAST
    seen: list[ev.VariantApplied] = []
    went_down = threading.Event()

    def on_event(event: ev.Event) -> None:
        # Runs on the reader's thread when it enters a segment of another variant.
        if not isinstance(event, ev.VariantApplied):
            return
        seen.append(event)
        if event.to_variant == 2 and not went_down.is_set():
            abr_origin.bandwidth = SLOW
        elif event.reason in (AbrReason.DOWN, AbrReason.URGENT):
            went_down.set()
            abr_origin.bandwidth = FAST

    with kithara_hls.open(abr_origin.url(fx.entry), options(tmp_path, EAGER_ABR, lookahead=2.0)) as f:
        f.on_event(on_event)
        data = f.read()
        assert data == expected_for(sessions[0], fx)
        decisions = f.abr_decisions()
    reasons = [e.reason for e in seen]
    assert reasons[0] == AbrReason.INITIAL
    first_down = next(i for i, r in enumerate(reasons) if r in (AbrReason.DOWN, AbrReason.URGENT))
    assert AbrReason.UP in reasons[:first_down]
    assert AbrReason.UP in reasons[first_down:]
    assert any(d.changed for d in decisions)
    assert decoded_seconds(data) == pytest.approx(fx.duration, abs=0.3)


@pytest.mark.parametrize(("fast", "enabled"), [(True, True), (False, True), (True, False)])
def test_an_up_switch_fetches_the_buffer_past_its_lead_again(
    fast: bool,
    enabled: bool,
    streams: dict[str, StreamFixture],
    abr_origin: Origin,
    tmp_path: Path,
    sessions: list[Session],
):
    fx = streams["ts"]
    top = len(fx.media) - 1
    segments = len(fx.segment_bytes(0))
    stored = threading.Event()
    done: set[int] = set()

    def on_event(event: ev.Event) -> None:
        if isinstance(event, ev.SegmentComplete) and event.variant == 0:
            done.add(event.segment_index)
            if len(done) == segments:
                stored.set()

    abr = AbrOptions(fast_switching=enabled)
    pinned = dataclasses.replace(options(tmp_path, abr, lookahead=60.0), variant=top)
    with kithara_hls.open(abr_origin.url(fx.entry), pinned) as f:
        f.on_event(on_event)
        f.set_variant(0)  # before the first read: the stream starts on 0, both playlists loaded
        head = f.read(len(fx.segment_bytes(0)[0]))
        assert stored.wait(30), "the look-ahead did not store the lowest variant"
        session = sessions[0]
        assert f.switch_sets == ((0, 1, 2),)  # looked at: an ABR switch needs no look of its own
        # ABR's up-switch on a link that brings the top many times faster than it plays, or
        # one that brings it less than REPLACE_SPEED times faster (or with fast switching
        # off): then the buffer stays and nothing is left to re-plan.
        estimate = 1e12 if fast else f.variants[top].bitrate * REPLACE_SPEED * 0.95
        session.switcher.apply(AbrDecision(0.0, 0, top, AbrReason.UP, float(segments), estimate, "up"))
        data = head + f.read()
    assert data == expected_for(session, fx)
    parts = session.layout.parts()
    # The reader's part and the lead stay on what was stored; after them the top is fetched again.
    lead = next(k for k in range(len(parts)) if sum(p.duration for p in parts[1 : 1 + k]) >= REPLACE_LEAD_S)
    kept = 1 + lead if fast and enabled else segments
    assert [p.variant for p in session.layout.parts()] == [0] * kept + [top] * (segments - kept)
    assert decoded_seconds(data) == pytest.approx(fx.duration, abs=0.3)
