"""Packed audio (raw MP3/ADTS segments, each led by an ID3 PRIV timestamp): every segment after the
first is presented without its tag, offsets stay exact, decoders see no errors."""

from __future__ import annotations

import io
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from bytes_streams import Built, build_packed, build_packed_aes

import kithara_hls
from kithara_hls import CacheOptions, HlsOptions, NetworkOptions, SegmentTimestamp
from kithara_hls.testing import Origin
from kithara_hls.testing.realworld import RealWorldFixture
from kithara_hls.testing.realworld_audio import packed_timestamps

FRAME_SAMPLES = {"mp3": 1152, "aac": 1024}
NAMES = ["mp3", "aac", "mp3-aes", "aac-aes"]


@pytest.fixture(scope="module")
def streams(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Built]:
    pytest.importorskip("av")
    root = tmp_path_factory.mktemp("packed")
    built = {codec: build_packed(root, codec) for codec in ("mp3", "aac")}
    built.update({f"{codec}-aes": build_packed_aes(root, codec) for codec in ("mp3", "aac")})
    return built


@pytest.fixture
def server(streams: dict[str, Built]) -> Iterator[Origin]:
    with Origin(streams["mp3"].root) as served:
        yield served


def opts(tmp_path: Path, *, offline: bool = False) -> HlsOptions:
    net = NetworkOptions(backoff=0.01, backoff_max=0.05, read_timeout=5.0, read_deadline=30.0)
    return HlsOptions(cache=CacheOptions(dir=tmp_path / "cache"), network=net, offline=offline)


@pytest.mark.parametrize("name", NAMES)
def test_whole_read_is_the_stream_without_later_tags(
    name: str, streams: dict[str, Built], server: Origin, tmp_path: Path
) -> None:
    fx = streams[name]
    with kithara_hls.open(server.url(fx.entry), opts(tmp_path)) as f:
        assert f.read() == fx.expected
        assert f.tell() == len(fx.expected)


@pytest.mark.parametrize("name", NAMES)
def test_random_seeks_and_size_on_a_cold_stream(
    name: str, streams: dict[str, Built], server: Origin, tmp_path: Path
) -> None:
    fx = streams[name]
    rng = random.Random(18)
    with kithara_hls.open(server.url(fx.entry), opts(tmp_path)) as f:
        # The size needs every part's tag length before any segment is downloaded: probes.
        assert f.seek(0, io.SEEK_END) == len(fx.expected)
        for _ in range(40):
            pos, n = rng.randrange(len(fx.expected)), rng.randrange(1, 5000)
            f.seek(pos)
            assert f.read(n) == fx.expected[pos : pos + n]


@pytest.mark.parametrize("name", ["mp3", "aac"])
def test_size_probes_ask_the_first_bytes(
    name: str, streams: dict[str, Built], server: Origin, tmp_path: Path
) -> None:
    fx = streams[name]
    with kithara_hls.open(server.url(fx.entry), opts(tmp_path)) as f:
        size = f.size()
    assert size == len(fx.expected)
    ranges = {r.range_header for r in server.requests if r.path in fx.segments[1:]}
    assert "bytes=0-9" in ranges or None in ranges  # a probe of the first bytes, or a download


@pytest.mark.parametrize("name", ["mp3", "aac"])
def test_pyav_decodes_with_no_errors(
    name: str, streams: dict[str, Built], server: Origin, tmp_path: Path
) -> None:
    av = pytest.importorskip("av")

    fx = streams[name]
    av.logging.set_level(av.logging.VERBOSE)
    try:
        with (
            av.logging.Capture() as logs,
            kithara_hls.open(server.url(fx.entry), opts(tmp_path)) as f,
            av.open(f) as container,
        ):
            stream = container.streams.audio[0]
            samples = sum(frame.samples for frame in container.decode(stream))
            rate = stream.rate
    finally:
        av.logging.set_level(None)
    errors = [entry for entry in logs if entry[0] <= av.logging.ERROR]
    assert errors == []
    assert abs(samples - sum(fx.durations) * rate) <= FRAME_SAMPLES[name]


def test_soundfile_decodes_packed_mp3(streams: dict[str, Built], server: Origin, tmp_path: Path) -> None:
    soundfile = pytest.importorskip("soundfile")
    fx = streams["mp3"]
    with kithara_hls.open(server.url(fx.entry), opts(tmp_path)) as f:
        data, rate = soundfile.read(f)
    assert abs(len(data) - sum(fx.durations) * rate) <= FRAME_SAMPLES["mp3"]


@pytest.mark.parametrize("name", ["mp3", "aac-aes"])
def test_priv_timestamps_are_reported(
    name: str, streams: dict[str, Built], server: Origin, tmp_path: Path
) -> None:
    fx = streams[name]
    with kithara_hls.open(server.url(fx.entry), opts(tmp_path)) as f:
        events = f.events()
        assert f.read() == fx.expected
    stamps = {
        (e.segment_index, round(e.seconds, 3)) for e in events.drain() if isinstance(e, SegmentTimestamp)
    }
    assert stamps == {(i, round(s, 3)) for i, s in enumerate(fx.stamps)}


@pytest.mark.parametrize("name", ["mp3", "aac-aes"])
def test_cached_sizes_carry_the_tag_lengths(
    name: str, streams: dict[str, Built], server: Origin, tmp_path: Path
) -> None:
    fx = streams[name]
    with kithara_hls.open(server.url(fx.entry), opts(tmp_path)) as f:
        assert f.read() == fx.expected
    server.requests.clear()
    with kithara_hls.open(server.url(fx.entry), opts(tmp_path, offline=True)) as f:
        assert f.size() == len(fx.expected)
        f.seek(len(fx.expected) // 2)
        assert f.read() == fx.expected[len(fx.expected) // 2 :]
    assert server.requests == []


# -- the shared fixtures (kithara_hls.testing.realworld_audio) -------------------------

PACKED_FIXTURES = ["packed_adts", "packed_mp3"]


@pytest.mark.parametrize("name", PACKED_FIXTURES)
def test_realworld_packed_is_byte_exact(
    name: str, realworld: dict[str, RealWorldFixture], realworld_origin: Origin, tmp_path: Path
) -> None:
    fx = realworld[name]
    track = fx.tracks["audio"]
    with kithara_hls.open(fx.url(realworld_origin.base_url), opts(tmp_path)) as f:
        assert f.read() == track.expected
    rng = random.Random(7)
    with kithara_hls.open(fx.url(realworld_origin.base_url), opts(tmp_path / "cold")) as f:
        assert f.size() == len(track.expected)
        for _ in range(30):
            pos, n = rng.randrange(len(track.expected)), rng.randrange(1, 4000)
            f.seek(pos)
            assert f.read(n) == track.expected[pos : pos + n]


@pytest.mark.parametrize("name", PACKED_FIXTURES)
def test_realworld_packed_decodes_and_reports_timestamps(
    name: str, realworld: dict[str, RealWorldFixture], realworld_origin: Origin, tmp_path: Path
) -> None:
    av = pytest.importorskip("av")
    fx = realworld[name]
    track = fx.tracks["audio"]
    av.logging.set_level(av.logging.VERBOSE)
    try:
        with (
            av.logging.Capture() as logs,
            kithara_hls.open(fx.url(realworld_origin.base_url), opts(tmp_path)) as f,
        ):
            events = f.events()
            with av.open(f) as container:
                stream = container.streams.audio[0]
                samples = sum(frame.samples for frame in container.decode(stream))
                rate = stream.rate
    finally:
        av.logging.set_level(None)
    assert [entry for entry in logs if entry[0] <= av.logging.ERROR] == []
    frame = FRAME_SAMPLES["mp3" if name.endswith("mp3") else "aac"]
    assert abs(samples - track.duration * rate) <= frame
    stamps = {e.segment_index: e.seconds for e in events.drain() if isinstance(e, SegmentTimestamp)}
    ticks = packed_timestamps(track, fx.root)
    assert stamps == {i: pytest.approx(t / 90_000) for i, t in enumerate(ticks)}


def test_realworld_packed_mp3_through_soundfile(
    realworld: dict[str, RealWorldFixture], realworld_origin: Origin, tmp_path: Path
) -> None:
    soundfile = pytest.importorskip("soundfile")
    fx = realworld["packed_mp3"]
    with kithara_hls.open(fx.url(realworld_origin.base_url), opts(tmp_path)) as f:
        data, rate = soundfile.read(f)
    assert abs(len(data) - fx.tracks["audio"].duration * rate) <= FRAME_SAMPLES["mp3"]
