"""Events: broadcast to every subscriber, bounded per subscriber, never blocking the stream."""

from __future__ import annotations

import queue
import threading
from pathlib import Path

import pytest

import kithara_hls
from kithara_hls import CacheOptions, HlsOptions, NetworkOptions
from kithara_hls import events as ev
from kithara_hls.testing import Origin, StreamFixture


def opts(tmp_path: Path, **kw: object) -> HlsOptions:
    net = NetworkOptions(backoff=0.01, backoff_max=0.05, read_deadline=30.0)
    return HlsOptions(variant=0, cache=CacheOptions(dir=tmp_path), network=net, **kw)  # type: ignore[arg-type]


def test_two_subscribers_get_the_whole_story(
    fixtures: dict[str, StreamFixture], origin: Origin, tmp_path: Path
):
    fx = fixtures["ts"]
    segments = len(fx.segment_bytes(0))
    with kithara_hls.open(origin.url(fx.entry), opts(tmp_path)) as f:
        subs = [f.events(), f.events()]
        called: list[ev.Event] = []
        f.on_event(called.append)
        assert f.read() == fx.expected(0)
        stories = [list(sub) for sub in subs]  # iteration ends after EndOfStream
    assert stories[0] == stories[1]
    story = stories[0]
    assert [type(e) for e in story].count(ev.EndOfStream) == 1 and isinstance(story[-1], ev.EndOfStream)
    starts = sorted(e.segment_index for e in story if isinstance(e, ev.SegmentStart))
    done = sorted(e.segment_index for e in story if isinstance(e, ev.SegmentComplete))
    assert starts == done == list(range(segments))
    for e in story:
        if isinstance(e, ev.SegmentComplete):
            first = next(
                s for s in story if isinstance(s, ev.SegmentStart) and s.segment_index == e.segment_index
            )
            assert story.index(first) < story.index(e)
    assert max(e.percent for e in story if isinstance(e, ev.DownloadProgress)) == 100.0
    playback = [e.percent for e in story if isinstance(e, ev.PlaybackProgress)]
    assert playback == sorted(playback) and playback[-1] == 100.0
    assert any(isinstance(e, ev.ThroughputSample) and e.bytes_per_second > 0 for e in story)
    assert called[: len(story)] == story
    assert all(sub.lagged == 0 for sub in subs)


def test_slow_subscriber_lags_and_never_blocks(
    fixtures: dict[str, StreamFixture], origin: Origin, tmp_path: Path
):
    fx = fixtures["fmp4"]
    with kithara_hls.open(origin.url(fx.entry), opts(tmp_path, events_queue=3)) as f:
        idle = f.events()  # never read while the stream plays
        assert f.read() == fx.expected(0)
        assert idle.lagged > 0
        kept = list(idle)  # what is left: the newest events, up to EndOfStream
        assert isinstance(kept[-1], ev.EndOfStream)


def test_subscription_get_times_out_and_ends_on_close(
    fixtures: dict[str, StreamFixture], origin: Origin, tmp_path: Path
):
    fx = fixtures["ts"]
    f = kithara_hls.open(origin.url(fx.entry), opts(tmp_path))
    f.read(10)
    sub = f.events()  # after the first read: only new events
    drained = threading.Event()

    def drain() -> None:
        for _ in sub:
            pass
        drained.set()

    t = threading.Thread(target=drain, name="test-drain")
    t.start()
    f.close()
    assert drained.wait(10)
    t.join(10)
    with pytest.raises(queue.Empty):
        sub.get(timeout=0.01)


def test_failing_callback_does_not_break_the_stream(
    fixtures: dict[str, StreamFixture], origin: Origin, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    fx = fixtures["ts"]

    def broken(event: ev.Event) -> None:
        raise RuntimeError("callback bug")

    with kithara_hls.open(origin.url(fx.entry), opts(tmp_path)) as f:
        f.on_event(broken)
        assert f.read() == fx.expected(0)
    assert "callback" in caplog.text


def test_retried_failures_are_recoverable_error_events(
    fixtures: dict[str, StreamFixture], origin: Origin, tmp_path: Path
):
    fx = fixtures["ts"]
    media = Path(fx.media[0])
    first = next(ln for ln in (fx.root / media).read_text().splitlines() if ln and not ln.startswith("#"))
    origin.fail((media.parent / first).as_posix(), status=503, times=2)
    with kithara_hls.open(origin.url(fx.entry), opts(tmp_path)) as f:
        sub = f.events()
        assert f.read() == fx.expected(0)
        errors = [e for e in sub if isinstance(e, ev.Error)]
    assert len(errors) == 2 and all(e.recoverable for e in errors)
