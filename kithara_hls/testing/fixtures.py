"""Real HLS fixtures written by ffmpeg's own muxers (through PyAV), with an independent oracle of
the bytes a client must produce: the clear builders and `build_all`.

The oracle is in `oracle`, the shared build steps in `building`, the encrypted
builders in `encrypted`; their public names are importable from here too.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

from .building import (
    AAC_CODECS,
    BUILD_VERSION,
    CHANNELS_LAYOUT,
    CHUNK_SAMPLES,
    ENCODER_PADDING_SAMPLES,
    SAMPLE_RATE,
    TONE_STEP_S,
    build_once,
    encode,
    hls,
    single_media,
    write_master,
    write_media,
)
from .encrypted import (
    AES_FMP4_IV,
    AES_FMP4_KEY,
    AES_MANUAL_KEYS,
    AES_MANUAL_SEQUENCE,
    AES_TS_IV,
    AES_TS_KEY,
    build_aes_fmp4,
    build_aes_manual,
    build_aes_ts,
)
from .oracle import StreamFixture

__all__ = [
    "AAC_CODECS",
    "AES_FMP4_IV",
    "AES_FMP4_KEY",
    "AES_MANUAL_KEYS",
    "AES_MANUAL_SEQUENCE",
    "AES_TS_IV",
    "AES_TS_KEY",
    "BUILD_VERSION",
    "CHANNELS_LAYOUT",
    "CHUNK_SAMPLES",
    "ENCODER_PADDING_SAMPLES",
    "LARGE_SEED",
    "LARGE_SEGMENT_S",
    "SAMPLE_RATE",
    "TONE_STEP_S",
    "StreamFixture",
    "build_aes_fmp4",
    "build_aes_manual",
    "build_aes_ts",
    "build_all",
    "build_byterange",
    "build_fmp4",
    "build_large",
    "build_packed_mp3",
    "build_ts_variants",
]

log = logging.getLogger(__name__)

LARGE_SEGMENT_S = 4.0
LARGE_SEED = 20240601


def build_ts_variants(
    root: str | Path,
    *,
    name: str = "ts",
    seconds: float = 12.0,
    segment_seconds: float = 2.0,
    bitrates: tuple[int, ...] = (32_000, 64_000, 128_000),
) -> StreamFixture:
    """AAC in MPEG-TS at each bitrate, time-aligned segments, behind an unsorted master."""
    rates = sorted(bitrates)
    playlists = [f"{rate // 1000}k/index.m3u8" for rate in rates]

    def make(work: Path) -> None:
        for rate, rel in zip(rates, playlists, strict=True):
            (work / rel).parent.mkdir()
            hls(work / rel, segment_seconds, rate, seconds)
        write_master(work, playlists)

    params = {"seconds": seconds, "segment_seconds": segment_seconds, "bitrates": rates}
    root = build_once(root, name, params, make)
    return StreamFixture(name, root, f"{name}/master.m3u8", tuple(f"{name}/{p}" for p in playlists))


def build_fmp4(
    root: str | Path,
    *,
    name: str = "fmp4",
    seconds: float = 12.0,
    segment_seconds: float = 2.0,
    bitrates: tuple[int, ...] = (64_000, 128_000),
) -> StreamFixture:
    """AAC in fragmented MP4 (EXT-X-MAP init per variant) behind a master."""
    rates = sorted(bitrates)
    playlists = [f"{rate // 1000}k/index.m3u8" for rate in rates]

    def make(work: Path) -> None:
        for rate, rel in zip(rates, playlists, strict=True):
            target = work / rel
            target.parent.mkdir()
            segments = str(target.parent / "seg_%03d.m4s")
            hls(
                target, segment_seconds, rate, seconds, hls_segment_type="fmp4", hls_segment_filename=segments
            )
        write_master(work, playlists)

    params = {"seconds": seconds, "segment_seconds": segment_seconds, "bitrates": rates}
    root = build_once(root, name, params, make)
    return StreamFixture(name, root, f"{name}/master.m3u8", tuple(f"{name}/{p}" for p in playlists))


def build_byterange(
    root: str | Path, *, name: str = "byterange", seconds: float = 12.0, segment_seconds: float = 2.0
) -> StreamFixture:
    """One TS file sliced by EXT-X-BYTERANGE; media playlist only."""

    def make(work: Path) -> None:
        single = str(work / "stream.ts")
        hls(
            work / "index.m3u8",
            segment_seconds,
            64_000,
            seconds,
            hls_flags="single_file",
            hls_segment_filename=single,
        )

    root = build_once(root, name, {"seconds": seconds, "segment_seconds": segment_seconds}, make)
    return single_media(root, name)


def build_packed_mp3(
    root: str | Path, *, name: str = "mp3", seconds: float = 12.0, segment_seconds: float = 2.0
) -> StreamFixture:
    """Packed MP3 segments from the segment muxer, without Xing or ID3 headers."""

    def make(work: Path) -> None:
        playlist = work / "index.m3u8"
        options = {
            "segment_time": f"{segment_seconds:g}",
            "segment_format": "mp3",
            "segment_list": str(playlist),
            "segment_list_type": "m3u8",
            # A Xing header stops soundfile after segment 0; per-segment ID3 tags trip PyAV mid-stream.
            "segment_format_options": "write_xing=0:id3v2_version=0",
        }
        encode(work / "seg_%03d.mp3", "segment", options, codec="mp3", bitrate=128_000, seconds=seconds)
        lines = playlist.read_text().splitlines()
        if "#EXT-X-ENDLIST" not in lines:
            raise RuntimeError("segment muxer wrote no #EXT-X-ENDLIST")
        if not any(s.startswith("#EXT-X-PLAYLIST-TYPE") for s in lines):
            lines.insert(1, "#EXT-X-PLAYLIST-TYPE:VOD")
        playlist.write_text("\n".join(lines) + "\n")

    root = build_once(root, name, {"seconds": seconds, "segment_seconds": segment_seconds}, make)
    return single_media(root, name)


def build_large(
    root: str | Path, *, name: str = "large", segments: int = 100, segment_bytes: int = 512 * 1024
) -> StreamFixture:
    """A codec-free benchmark stream: `segments` seeded random segments of EXTINF 4.0."""

    def make(work: Path) -> None:
        rng = random.Random(LARGE_SEED)
        body: list[str] = []
        for i in range(segments):
            (work / f"seg_{i:05d}.ts").write_bytes(rng.randbytes(segment_bytes))
            body += [f"#EXTINF:{LARGE_SEGMENT_S:.6f},", f"seg_{i:05d}.ts"]
        header = ["#EXT-X-VERSION:3", f"#EXT-X-TARGETDURATION:{LARGE_SEGMENT_S:g}", "#EXT-X-MEDIA-SEQUENCE:0"]
        write_media(work / "index.m3u8", header, body)

    root = build_once(root, name, {"segments": segments, "segment_bytes": segment_bytes}, make)
    return single_media(root, name)


def build_all(root: str | Path) -> dict[str, StreamFixture]:
    """Every codec fixture with default parameters (not `build_large`), by name."""
    builders = (
        build_ts_variants,
        build_fmp4,
        build_byterange,
        build_packed_mp3,
        build_aes_ts,
        build_aes_manual,
        build_aes_fmp4,
    )
    built = [build(root) for build in builders]
    return {fixture.name: fixture for fixture in built}
