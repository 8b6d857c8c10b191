"""The real-world fixtures are what they claim: files present, ffmpeg's own hls demuxer decodes
each playlist, and tones, sample rates and channels are the documented ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kithara_hls.testing import realworld as rw
from kithara_hls.testing.realworld_media import tone_hz

av = pytest.importorskip("av")
np = pytest.importorskip("numpy")

FREQ_TOLERANCE = 0.02  # an FFT over half a second resolves 2 Hz; semitones are 6% apart


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("realworld")


def _decode(path: Path) -> tuple[Any, int, int]:
    """All audio of the first audio stream of `path`: (samples (channels, n), rate, errors)."""
    chunks: list[Any] = []
    errors = 0
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        for packet in container.demux(stream):
            errors += _decode_packet(packet, chunks)
        rate = stream.sample_rate
    return np.concatenate(chunks, axis=1), rate, errors


def _decode_packet(packet: Any, chunks: list[Any]) -> int:
    """Append `packet`'s decoded samples to `chunks`; 1 if the decoder refused it, else 0."""
    try:
        chunks.extend(frame.to_ndarray() for frame in packet.decode())
    except av.error.InvalidDataError:
        return 1
    return 0


def _peak_hz(samples: Any, rate: int, second: int) -> float:
    """The strongest frequency in the middle half of `second` of channel 0."""
    window = samples[0, int((second + 0.25) * rate) : int((second + 0.75) * rate)]
    spectrum = np.abs(np.fft.rfft(window * np.hanning(len(window))))
    return float(np.argmax(spectrum) * rate / len(window))


def _check_audio(fx: rw.RealWorldFixture, track: rw.Track) -> None:
    samples, rate, errors = _decode(fx.root / track.playlist)
    assert errors == 0
    assert rate == track.sample_rate
    assert samples.shape[0] == track.channels
    frame = 1152 if track.codec == "mp3" else 1024
    assert abs(samples.shape[1] / rate - track.duration) <= 2 * frame / rate
    assert track.base_hz is not None
    for second in range(int(track.duration)):
        want = tone_hz(track.base_hz, second)
        assert abs(_peak_hz(samples, rate, second) - want) <= FREQ_TOLERANCE * want


def _check_files(fx: rw.RealWorldFixture) -> None:
    assert (fx.root / fx.entry).is_file()
    for track in fx.tracks.values():
        assert (fx.root / track.playlist).is_file()
        present = [s for i, s in enumerate(track.segments) if i not in track.gaps]
        assert all((fx.root / p).is_file() for p in (*track.inits, *present))
        assert track.expected


@pytest.mark.parametrize("fmp4", [False, True], ids=["ts", "fmp4"])
def test_renditions(root: Path, fmp4: bool) -> None:
    fx = rw.build_renditions(root, fmp4=fmp4)
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
