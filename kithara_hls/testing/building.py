"""The steps the fixture builders share: test tones encoded through ffmpeg's muxers (PyAV,
imported lazily), playlists written by hand, and build folders stamped so each is built once."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .oracle import Entry, StreamFixture, load, parse_media

SAMPLE_RATE = 44_100
CHANNELS_LAYOUT = "stereo"
TONE_STEP_S = 1.0  # the tone changes every second, so a decoded position is recognisable
CHUNK_SAMPLES = 1024  # PCM fed to the encoder per frame
ENCODER_PADDING_SAMPLES = 2048  # priming + flush; without the trim the last segment is ~20 ms
AAC_CODECS = "mp4a.40.2"
BUILD_VERSION = 2  # bump when a builder's output changes, so stale builds are redone
_MARKER = ".complete"


def _tones(seconds: float) -> Any:
    """Stereo float32 PCM, shape (2, n): a tone that steps up a semitone every second."""
    import numpy as np

    n = max(int(SAMPLE_RATE * seconds) - ENCODER_PADDING_SAMPLES, SAMPLE_RATE // 10)
    t = np.arange(n) / SAMPLE_RATE
    step = np.floor(t / TONE_STEP_S)
    freq = 220.0 * 2.0 ** (step / 12.0)
    left = 0.3 * np.sin(2 * np.pi * freq * t)
    right = 0.2 * np.sin(2 * np.pi * 1.5 * freq * t)
    return np.stack([left, right]).astype(np.float32)


def encode(
    target: Path, fmt: str, options: dict[str, str], *, codec: str, bitrate: int, seconds: float
) -> None:
    """Encode the test tones with `codec` into `target` through ffmpeg's `fmt` muxer."""
    import av
    import numpy as np

    pcm = _tones(seconds)
    with av.open(str(target), "w", format=fmt, options=options) as out:
        stream = out.add_stream(codec, rate=SAMPLE_RATE, layout=CHANNELS_LAYOUT)
        stream.bit_rate = bitrate
        for start in range(0, pcm.shape[1], CHUNK_SAMPLES):
            chunk = np.ascontiguousarray(pcm[:, start : start + CHUNK_SAMPLES])
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=CHANNELS_LAYOUT)
            frame.sample_rate = SAMPLE_RATE
            frame.pts = start
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def hls(target: Path, segment_seconds: float, bitrate: int, seconds: float, **extra: str) -> None:
    """One AAC media playlist `target` through the hls muxer (segments beside it)."""
    options = {"hls_time": f"{segment_seconds:g}", "hls_playlist_type": "vod", **extra}
    options.setdefault("hls_segment_filename", str(target.parent / "seg_%03d.ts"))
    encode(target, "hls", options, codec="aac", bitrate=bitrate, seconds=seconds)


def build_once(root: str | Path, name: str, params: dict[str, Any], make: Callable[[Path], None]) -> Path:
    """Run `make` into a scratch folder and move it to root/name, unless already built."""
    root = Path(root)
    folder = root / name
    stamp = json.dumps({"version": BUILD_VERSION, **params}, sort_keys=True)
    marker = folder / _MARKER
    if marker.is_file() and marker.read_text() == stamp:
        return root
    work = root / f".{name}.building"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    make(work)
    (work / _MARKER).write_text(stamp)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(work, folder)
    return root


def _bandwidths(playlist: Path) -> tuple[int, int]:
    """(peak, average) bits per second of a built media playlist."""
    media = parse_media(playlist)
    sizes = [len(load(playlist.parent, seg)) for seg in media.segments]
    peak = max(size * 8 / seg.duration for size, seg in zip(sizes, media.segments, strict=True))
    average = sum(sizes) * 8 / sum(seg.duration for seg in media.segments)
    return round(peak), round(average)


def write_master(folder: Path, playlists: list[str]) -> None:
    """A master over `playlists` (lowest first), listed out of bandwidth order on purpose."""
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for rel in playlists[1:] + playlists[:1]:
        peak, average = _bandwidths(folder / rel)
        lines += [
            f'#EXT-X-STREAM-INF:BANDWIDTH={peak},AVERAGE-BANDWIDTH={average},CODECS="{AAC_CODECS}"',
            rel,
        ]
    lines.append(f'#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=8000,CODECS="{AAC_CODECS}",URI="iframes.m3u8"')
    (folder / "master.m3u8").write_text("\n".join(lines) + "\n")


def single_media(root: Path, name: str) -> StreamFixture:
    """A fixture whose entry is its only media playlist, ``name/index.m3u8``."""
    return StreamFixture(name, root, f"{name}/index.m3u8", (f"{name}/index.m3u8",))


def write_media(path: Path, header: list[str], body: list[str]) -> None:
    """A VOD media playlist at `path`: EXTM3U, `header` lines, the type, `body` lines, ENDLIST."""
    lines = ["#EXTM3U", *header, "#EXT-X-PLAYLIST-TYPE:VOD", *body, "#EXT-X-ENDLIST"]
    path.write_text("\n".join(lines) + "\n")


def target_duration(segments: list[Entry]) -> int:
    """The EXT-X-TARGETDURATION of `segments`."""
    # RFC 8216: every EXTINF rounded half-up to an integer must not exceed the target.
    return int(max(seg.duration for seg in segments) + 0.5)
