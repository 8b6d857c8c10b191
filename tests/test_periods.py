"""Discontinuities: f.periods lists where each period begins (bytes and playlist time), seek_time
lands in every period, and fMP4's new EXT-X-MAP after a discontinuity is spliced."""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from bytes_streams import TONE_A, TONE_B, Built, build_periods

import kithara_hls
from kithara_hls import CacheOptions, HlsOptions, NetworkOptions, Period
from kithara_hls.testing import Origin
from kithara_hls.testing.realworld import RealWorldFixture


@pytest.fixture(scope="module")
def streams(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Built]:
    pytest.importorskip("av")
    root = tmp_path_factory.mktemp("periods")
    return {kind: build_periods(root, fmp4=kind == "fmp4") for kind in ("ts", "fmp4")}


@pytest.fixture
def server(streams: dict[str, Built]) -> Iterator[Origin]:
    with Origin(streams["ts"].root) as served:
        yield served


def opts(tmp_path: Path) -> HlsOptions:
    net = NetworkOptions(backoff=0.01, backoff_max=0.05, read_timeout=5.0, read_deadline=30.0)
    return HlsOptions(cache=CacheOptions(dir=tmp_path / "cache"), network=net)


@pytest.mark.parametrize("kind", ["ts", "fmp4"])
def test_whole_read_splices_each_period(
    kind: str, streams: dict[str, Built], server: Origin, tmp_path: Path
) -> None:
    fx = streams[kind]
    with kithara_hls.open(server.url(fx.entry), opts(tmp_path)) as f:
        assert f.read() == fx.expected  # fMP4: the second period's init section at its start


@pytest.mark.parametrize("kind", ["ts", "fmp4"])
def test_periods_on_a_cold_stream(
    kind: str, streams: dict[str, Built], server: Origin, tmp_path: Path
) -> None:
    fx = streams[kind]
    second = len(fx.durations) // 2
    with kithara_hls.open(server.url(fx.entry), opts(tmp_path)) as f:
        periods = f.periods
    assert [p.index for p in periods] == [0, 1]
    assert [p.segment for p in periods] == [0, second]
    assert [p.start_time for p in periods] == pytest.approx(fx.period_starts)
    assert [p.byte_offset for p in periods] == fx.period_offsets
    assert isinstance(periods[0], Period)


def _dominant_hz(samples: object, rate: int) -> float:
    import numpy as np

    data = np.asarray(samples, dtype=np.float64).reshape(-1)
    spectrum = np.abs(np.fft.rfft(data * np.hanning(len(data))))
    return float(np.fft.rfftfreq(len(data), 1 / rate)[int(np.argmax(spectrum))])


@pytest.mark.parametrize("period", [0, 1])
def test_seek_time_into_each_period_decodes_its_tone(
    period: int, streams: dict[str, Built], server: Origin, tmp_path: Path
) -> None:
    av = pytest.importorskip("av")
    np = pytest.importorskip("numpy")
    fx = streams["ts"]
    target = fx.period_starts[period] + 0.5
    # The README's recipe: open the container plainly, then move by time.
    with kithara_hls.open(server.url(fx.entry), opts(tmp_path)) as f, av.open(f) as container:
        assert f.seek_time(target) <= target
        stream = container.streams.audio[0]
        frames = [
            frame.to_ndarray()[0] for _, frame in zip(range(20), container.decode(stream), strict=False)
        ]
        rate = stream.rate
    # Frames the decoder buffered before the move may come first: judge the last ones.
    assert _dominant_hz(np.concatenate(frames[-10:]), rate) == pytest.approx((TONE_A, TONE_B)[period], abs=10)


def test_fmp4_periods_decode_through_the_new_init(
    streams: dict[str, Built], server: Origin, tmp_path: Path
) -> None:
    av = pytest.importorskip("av")
    np = pytest.importorskip("numpy")
    fx = streams["fmp4"]
    with kithara_hls.open(server.url(fx.entry), opts(tmp_path)) as f, av.open(f) as container:
        stream = container.streams.audio[0]
        pcm = np.concatenate([frame.to_ndarray()[0] for frame in container.decode(stream)])
        rate = stream.rate
    half = rate // 2
    assert _dominant_hz(pcm[:half], rate) == pytest.approx(TONE_A, abs=10)
    assert _dominant_hz(pcm[-2 * half : -half // 2], rate) == pytest.approx(TONE_B, abs=10)


def test_decoder_sees_timestamps_restart(streams: dict[str, Built], server: Origin, tmp_path: Path) -> None:
    av = pytest.importorskip("av")
    fx = streams["ts"]
    with kithara_hls.open(server.url(fx.entry), opts(tmp_path)) as f, av.open(f) as container:
        stream = container.streams.audio[0]
        times = [float(frame.time) for frame in container.decode(stream) if frame.time is not None]
    jumps = [b - a for a, b in itertools.pairwise(times) if b < a]
    assert len(jumps) == 1  # the second period's timestamps start again


# -- the shared fixtures (kithara_hls.testing.realworld_audio) -------------------------


@pytest.mark.parametrize("name", ["discontinuity_ts", "discontinuity_fmp4"])
def test_realworld_periods(
    name: str, realworld: dict[str, RealWorldFixture], realworld_origin: Origin, tmp_path: Path
) -> None:
    fx = realworld[name]
    track = fx.tracks["audio"]
    with kithara_hls.open(fx.url(realworld_origin.base_url), opts(tmp_path)) as f:
        periods = f.periods  # on a cold stream: the sizes before the second period are probed
        assert [p.segment for p in periods] == list(track.periods)
        assert [p.byte_offset for p in periods] == list(track.period_offsets)
        assert [p.start_time for p in periods] == pytest.approx(track.period_starts_s())
        assert f.read() == track.expected


@pytest.mark.parametrize("period", [0, 1])
def test_realworld_seek_time_into_each_period(
    period: int, realworld: dict[str, RealWorldFixture], realworld_origin: Origin, tmp_path: Path
) -> None:
    av = pytest.importorskip("av")
    np = pytest.importorskip("numpy")
    fx = realworld["discontinuity_ts"]
    track = fx.tracks["audio"]
    target = track.period_starts_s()[period] + 0.25
    with kithara_hls.open(fx.url(realworld_origin.base_url), opts(tmp_path)) as f, av.open(f) as container:
        assert f.seek_time(target) == pytest.approx(track.period_starts_s()[period])
        stream = container.streams.audio[0]
        frames = [
            frame.to_ndarray()[0] for _, frame in zip(range(16), container.decode(stream), strict=False)
        ]
        rate = stream.rate
    assert _dominant_hz(np.concatenate(frames[-8:]), rate) == pytest.approx(track.tones_hz[period], abs=15)


def test_info_lists_the_periods(streams: dict[str, Built], server: Origin, tmp_path: Path) -> None:
    fx = streams["ts"]
    second = len(fx.durations) // 2
    with kithara_hls.open(server.url(fx.entry), opts(tmp_path)) as f:
        periods = f.info().periods
    assert [segment for segment, _ in periods] == [0, second]
    assert [start for _, start in periods] == pytest.approx(fx.period_starts)


class From(io.RawIOBase):
    """The README's recipe: `f` from byte `start` on, as a file of its own."""

    def __init__(self, f: kithara_hls.HlsSource, start: int) -> None:
        self.f, self.start = f, start
        f.seek(start)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        return self.f.readinto(b)

    def tell(self) -> int:
        return self.f.tell() - self.start

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        return self.f.seek(pos + self.start if whence == io.SEEK_SET else pos, whence) - self.start


@pytest.mark.parametrize("name", ["discontinuity_fmp4", "discontinuity_ts"])
def test_a_container_over_the_second_period_decodes_its_tone(
    name: str, realworld: dict[str, RealWorldFixture], realworld_origin: Origin, tmp_path: Path
) -> None:
    av = pytest.importorskip("av")
    np = pytest.importorskip("numpy")
    fx = realworld[name]
    track = fx.tracks["audio"]
    with (
        kithara_hls.open(fx.url(realworld_origin.base_url), opts(tmp_path)) as f,
        av.open(From(f, f.periods[1].byte_offset)) as container,
    ):
        stream = container.streams.audio[0]
        frames = [frame.to_ndarray()[0] for frame in container.decode(stream)]
        rate = stream.rate
    assert _dominant_hz(np.concatenate(frames[:8]), rate) == pytest.approx(track.tones_hz[1], abs=15)
    second = sum(track.durations[track.periods[1] :])
    assert sum(len(x) for x in frames) / rate == pytest.approx(second, abs=0.05)
