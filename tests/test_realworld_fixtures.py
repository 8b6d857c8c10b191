"""The real-world fixtures are what they claim: files present, ffmpeg's own hls demuxer decodes
each playlist, and tones, sample rates and channels are the documented ones."""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest

from kithara_hls.testing import Origin, oracle
from kithara_hls.testing import realworld as rw
from kithara_hls.testing import realworld_audio as rwa
from kithara_hls.testing.decoding import decode_audio, peak_hz
from kithara_hls.testing.realworld_media import PACKED_START_TICKS, tone_hz

av = pytest.importorskip("av")
np = pytest.importorskip("numpy")

FREQ_TOLERANCE = 0.02  # an FFT over half a second resolves 2 Hz; semitones are 6% apart


@pytest.fixture
def root(realworld: dict[str, rw.RealWorldFixture]) -> Path:
    """The session's real-world root: each builder below finds its stamped build there."""
    return next(iter(realworld.values())).root


def _check_audio(fx: rw.RealWorldFixture, track: rw.Track, *, playlist: bool = True) -> None:
    """The track's tones, rate and channels: decoded by ffmpeg's hls demuxer from its playlist
    (`playlist`), and always from the bytes a client must present."""
    sources: list[Path | bytes] = [fx.root / track.playlist] if playlist else []
    for source in [*sources, track.expected]:
        samples, rate, errors = decode_audio(source)
        assert errors == 0
        assert rate == track.sample_rate
        assert samples.shape[0] == track.channels
        frame = 1152 if track.codec == "mp3" else 1024
        assert abs(samples.shape[1] / rate - track.expected_duration) <= 2 * frame / rate
        for second in range(int(track.expected_duration)):
            assert abs(peak_hz(samples, rate, second) - _tone(track, second)) <= FREQ_TOLERANCE * _tone(
                track, second
            )


def _tone(track: rw.Track, second: float) -> float:
    """The tone of `track` at `second` into the presented stream (each period restarts it)."""
    middle = second + 0.5  # `_peak_hz` looks at the middle of the second
    starts = track.period_starts_s()
    period = max(i for i, start in enumerate(starts) if start <= middle)
    return tone_hz(track.tones_hz[period], middle - starts[period])


def _check_files(fx: rw.RealWorldFixture) -> None:
    assert (fx.root / fx.entry).is_file()
    for track in fx.tracks.values():
        assert (fx.root / track.playlist).is_file()
        present = [s for i, s in enumerate(track.segments) if i not in track.gaps]
        assert all((fx.root / p).is_file() for p in (*track.inits, *present))
        assert track.expected


@pytest.mark.parametrize("single_file", [False, True], ids=["segments", "single"])
@pytest.mark.parametrize("fmp4", [False, True], ids=["ts", "fmp4"])
def test_renditions(root: Path, fmp4: bool, single_file: bool) -> None:
    fx = rw.build_renditions(root, fmp4=fmp4, single_file=single_file)
    assert {len(set(t.segments)) == 1 for t in fx.tracks.values()} == {single_file}
    _check_files(fx)
    master = (fx.root / fx.entry).read_text()
    assert master.count("#EXT-X-MEDIA:TYPE=AUDIO") == 2 and 'AUDIO="group_aud"' in master
    assert fx.tracks["en"].base_hz == rw.EN_HZ and fx.tracks["fr"].base_hz == rw.FR_HZ
    for key in ("en", "fr"):
        _check_audio(fx, fx.tracks[key])
    with av.open(str(fx.root / fx.entry)) as container:
        languages = sorted(s.metadata.get("language") for s in container.streams.audio)
        widths = sorted(s.width for s in container.streams.video)
    assert languages == ["en", "fr"]
    assert widths == [160, 320]
    assert fx.video_paths == {
        p for k in ("v180", "v90") for t in [fx.tracks[k]] for p in (t.playlist, *t.inits, *t.segments)
    }
    assert not any("/en/" in p or "/fr/" in p for p in fx.video_paths)


@pytest.mark.parametrize("fmp4", [False, True], ids=["ts", "fmp4"])
def test_audio_ladder(root: Path, fmp4: bool) -> None:
    fx = rw.build_audio_ladder(root, fmp4=fmp4)
    _check_files(fx)
    assert [t.sample_rate for t in fx.tracks.values()] == [r for _, r, _ in rw.AUDIO_LADDER]
    for track in fx.tracks.values():
        _check_audio(fx, track)
    assert not fx.video_paths


def test_muxed_ladder(root: Path) -> None:
    fx = rw.build_muxed_ladder(root)
    _check_files(fx)
    for track in fx.tracks.values():
        _check_audio(fx, track)
    with av.open(str(fx.root / fx.tracks["av"].playlist)) as container:
        assert len(container.streams.video) == 1
    with av.open(str(fx.root / fx.tracks["audio"].playlist)) as container:
        assert not container.streams.video


@pytest.mark.parametrize("every_variant", [False, True], ids=["one", "all"])
def test_gaps(root: Path, every_variant: bool) -> None:
    fx = rw.build_gaps(root, every_variant=every_variant)
    _check_files(fx)
    gapped = [t for t in fx.tracks.values() if t.gaps]
    assert len(gapped) == (2 if every_variant else 1)
    for track in fx.tracks.values():
        assert (rw.GAP_INDEX in track.gaps) == (track in gapped)
        assert (track.segments[rw.GAP_INDEX] in fx.missing) == (track in gapped)
        assert not (fx.root / track.segments[rw.GAP_INDEX]).exists() or track not in gapped
        text = (fx.root / track.playlist).read_text()
        assert text.count("#EXT-X-GAP") == (1 if track in gapped else 0)
        # ffmpeg's hls demuxer would fetch the absent file: only ungapped playlists go through it.
        _check_audio(fx, track, playlist=track not in gapped)
    a64 = fx.tracks["a64"]
    if every_variant:
        assert a64.stops_at == rw.GAP_INDEX and a64.expected_duration < a64.duration
    else:
        assert a64.stops_at is None and a64.expected_duration == a64.duration


@pytest.mark.parametrize("fmt", ["adts", "mp3"])
def test_packed(root: Path, fmt: str) -> None:
    fx = rwa.build_packed(root, fmt=fmt)
    _check_files(fx)
    track = fx.tracks["audio"]
    datas = [(fx.root / s).read_bytes() for s in track.segments]
    assert all(oracle.id3_length(d) > 0 for d in datas)
    assert track.expected == datas[0] + b"".join(d[oracle.id3_length(d) :] for d in datas[1:])
    ticks = rwa.packed_timestamps(track, fx.root)
    starts = [sum(track.durations[:i]) for i in range(len(track.durations))]
    assert ticks[0] == PACKED_START_TICKS
    # EXTINF is written to the microsecond; a 90 kHz tick is 11 µs.
    assert all(abs(t - PACKED_START_TICKS - s * 90_000) <= 1 for t, s in zip(ticks, starts, strict=True))
    _check_audio(fx, track)


@pytest.mark.parametrize("fmp4", [False, True], ids=["ts", "fmp4"])
def test_discontinuity(root: Path, fmp4: bool) -> None:
    fx = rwa.build_discontinuity(root, fmp4=fmp4)
    _check_files(fx)
    track = fx.tracks["audio"]
    text = (fx.root / track.playlist).read_text()
    assert text.count("#EXT-X-DISCONTINUITY") == 1
    assert text.count("#EXT-X-MAP") == (2 if fmp4 else 0)
    assert track.tones_hz == (rw.EN_HZ, rw.FR_HZ)
    assert len(track.periods) == 2 and track.segments[track.periods[1]].split("/")[1] == "b"
    assert len(track.inits) == (2 if fmp4 else 0)
    second = track.expected[track.period_offsets[1] :]
    first_b = (fx.root / (track.inits[1] if fmp4 else track.segments[track.periods[1]])).read_bytes()
    assert second.startswith(first_b)
    if not fmp4:
        _check_audio(fx, track)
        return
    # One mov demuxer over both periods drops about a second at the tfdt restart (ffmpeg's hls
    # demuxer too, with no error): check each period as its own stream.
    ends = [*track.period_offsets[1:], len(track.expected)]
    firsts = [*track.periods, len(track.segments)]
    for k, (start, end) in enumerate(zip(track.period_offsets, ends, strict=True)):
        period = replace(
            track,
            expected=track.expected[start:end],
            durations=track.durations[firsts[k] : firsts[k + 1]],
            tones_hz=track.tones_hz[k : k + 1],
            periods=(0,),
            period_offsets=(0,),
        )
        _check_audio(fx, period, playlist=False)


def test_apple_style(root: Path) -> None:
    fx = rwa.build_apple_style(root)
    _check_files(fx)
    master = (fx.root / fx.entry).read_text()
    assert "CODECS" not in master and master.count('AUDIO="aud1"') == 2
    media = [line for line in master.splitlines() if line.startswith("#EXT-X-MEDIA")]
    assert len(media) == 3 and "URI=" not in media[0] and "DEFAULT=YES" in media[0]
    assert 'CHANNELS="6"' in media[2] and fx.tracks["en51"].channels == 6
    for track in fx.tracks.values():
        _check_audio(fx, track)
    assert fx.video_paths and all(p.split("/")[1] in ("v180", "v90") for p in fx.video_paths)


def test_define(root: Path) -> None:
    fx = rwa.build_define(root)
    source = rw.build_renditions(root)
    assert fx.url("http://h/") == f"http://h/{fx.entry}?token={rwa.DEFINE_TOKEN}"
    master = (fx.root / fx.entry).read_text()
    assert "EXT-X-DEFINE:QUERYPARAM" in master
    resolved = master.replace("{$group}", "group_aud").replace("{$token}", rwa.DEFINE_TOKEN)
    resolved = resolved.replace("VERSION:8", "VERSION:3")
    expected = (source.root / source.entry).read_text().replace(".m3u8", f".m3u8?token={rwa.DEFINE_TOKEN}")
    assert [line for line in resolved.splitlines() if "EXT-X-DEFINE" not in line] == expected.splitlines()
    for key, track in fx.tracks.items():
        text = (fx.root / track.playlist).read_text()
        assert '#EXT-X-DEFINE:IMPORT="media"' in text
        uris = [line for line in text.splitlines() if line and not line.startswith("#")]
        media_value = f"../../{source.name}"
        resolved_uris = [u.replace("{$media}", media_value) for u in uris]
        paths = [str(Path(f"{fx.name}/{key}") / u) for u in resolved_uris]
        assert [str(Path(p).resolve()) for p in (fx.root / p for p in paths)] == [
            str((fx.root / s).resolve()) for s in source.tracks[key].segments
        ]
        assert track.expected == source.tracks[key].expected


def test_build_realworld(realworld: dict[str, rw.RealWorldFixture]) -> None:
    root = next(iter(realworld.values())).root
    assert len(realworld) == 15 and all(fx.root == root for fx in realworld.values())
    assert all((root / fx.entry).is_file() for fx in realworld.values())
    # Built once: a second call finds every stamp and returns the same fixtures.
    assert rwa.build_realworld(root) == realworld


def test_served(realworld: dict[str, rw.RealWorldFixture], realworld_origin: Origin) -> None:
    """The origin serves the fixtures, and its log tells video and gap requests apart."""
    define, gaps = realworld["define_ts"], realworld["gaps_one_ts"]
    with urllib.request.urlopen(define.url(realworld_origin.base_url), timeout=10) as response:
        assert response.read() == (define.root / define.entry).read_bytes()
    video = next(iter(sorted(define.video_paths)))
    with urllib.request.urlopen(realworld_origin.url(video), timeout=10) as response:
        assert response.read() == (define.root / video).read_bytes()
    gap = next(iter(gaps.missing))
    with pytest.raises(urllib.error.HTTPError) as failed:
        urllib.request.urlopen(realworld_origin.url(gap), timeout=10)
    failed.value.close()
    assert failed.value.code == 404
    records = list(realworld_origin.requests)
    assert records[0].query == define.query
    assert define.video_requests(records) == [video]
    assert gaps.gap_requests(records) == [gap]
    assert not realworld["renditions_ts"].gap_requests(records)
