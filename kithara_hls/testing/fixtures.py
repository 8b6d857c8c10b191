"""Real HLS fixtures written by ffmpeg's own muxers (through PyAV), with an independent oracle of
the bytes a client must produce."""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SAMPLE_RATE = 44_100
CHANNELS_LAYOUT = "stereo"
TONE_STEP_S = 1.0  # the tone changes every second, so a decoded position is recognisable
CHUNK_SAMPLES = 1024  # PCM fed to the encoder per frame
ENCODER_PADDING_SAMPLES = 2048  # priming + flush; without the trim the last segment is ~20 ms
AAC_CODECS = "mp4a.40.2"
LARGE_SEGMENT_S = 4.0
LARGE_SEED = 20240601
BUILD_VERSION = 2  # bump when a builder's output changes, so stale builds are redone
_MARKER = ".complete"

AES_TS_KEY = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
AES_TS_IV = bytes.fromhex("a0a1a2a3a4a5a6a7a8a9aaabacadaeaf")
AES_MANUAL_KEYS = (
    bytes.fromhex("101112131415161718191a1b1c1d1e1f"),
    bytes.fromhex("202122232425262728292a2b2c2d2e2f"),
)
AES_MANUAL_SEQUENCE = 7
AES_FMP4_KEY = bytes.fromhex("303132333435363738393a3b3c3d3e3f")
AES_FMP4_IV = bytes.fromhex("b0b1b2b3b4b5b6b7b8b9babbbcbdbebf")


@dataclass(frozen=True)
class _Key:
    uri: str
    iv: bytes | None


@dataclass(frozen=True)
class _Entry:
    uri: str
    duration: float
    sequence: int
    byterange: tuple[int, int] | None  # (offset, length)
    key: _Key | None


@dataclass
class _Media:
    segments: list[_Entry] = field(default_factory=list)
    init: _Entry | None = None


@dataclass(frozen=True)
class StreamFixture:
    """A built stream: where it is, what to open, and the bytes a client must produce."""

    name: str
    root: Path
    entry: str
    media: tuple[str, ...]

    @property
    def duration(self) -> float:
        """Sum of the EXTINF durations of variant 0."""
        return sum(self.durations(0))

    def durations(self, variant: int = 0) -> list[float]:
        """The EXTINF duration of each segment of `variant`."""
        return [seg.duration for seg in self._media(variant)[1].segments]

    def init_bytes(self, variant: int = 0) -> bytes | None:
        """The (decrypted) EXT-X-MAP section of `variant`, or None."""
        base, media = self._media(variant)
        return None if media.init is None else _load(base, media.init)

    def segment_bytes(self, variant: int = 0) -> list[bytes]:
        """Each segment's (decrypted) bytes, without the init section."""
        base, media = self._media(variant)
        return [_load(base, seg) for seg in media.segments]

    def expected(self, variant: int = 0) -> bytes:
        """The stitched stream of `variant`: init section once, then every segment."""
        return (self.init_bytes(variant) or b"") + b"".join(self.segment_bytes(variant))

    def _media(self, variant: int) -> tuple[Path, _Media]:
        path = self.root / self.media[variant]
        return path.parent, _parse_media(path)


def _attrs(text: str) -> dict[str, str]:
    return {k: v.strip('"') for k, v in re.findall(r'([A-Z0-9-]+)=("[^"]*"|[^,]*)', text)}


def _parse_media(path: Path) -> _Media:
    """A media playlist, read by plain line parsing (the oracle trusts no HLS library)."""
    media, sequence, key = _Media(), 0, None
    duration, pending_range = 0.0, None
    ends: dict[str, int] = {}
    for line in (s.strip() for s in path.read_text().splitlines()):
        tag, _, value = line.partition(":")
        if tag == "#EXT-X-MEDIA-SEQUENCE":
            sequence = int(value)
        elif tag == "#EXT-X-KEY":
            attrs = _attrs(value)
            iv = bytes.fromhex(attrs["IV"][2:]) if "IV" in attrs else None
            key = None if attrs["METHOD"] == "NONE" else _Key(attrs["URI"], iv)
        elif tag == "#EXT-X-MAP":
            attrs = _attrs(value)
            span = _byterange(attrs.get("BYTERANGE"), 0)
            media.init = _Entry(attrs["URI"], 0.0, sequence + len(media.segments), span, key)
        elif tag == "#EXTINF":
            duration = float(value.split(",")[0])
        elif tag == "#EXT-X-BYTERANGE":
            pending_range = value
        elif line and not line.startswith("#"):
            span = _byterange(pending_range, ends.get(line, 0))
            if span is not None:
                ends[line] = span[0] + span[1]
            media.segments.append(_Entry(line, duration, sequence + len(media.segments), span, key))
            pending_range = None
    return media


def _byterange(value: str | None, default_offset: int) -> tuple[int, int] | None:
    if value is None:
        return None
    length, _, offset = value.partition("@")
    return (int(offset) if offset else default_offset), int(length)


def _load(base: Path, entry: _Entry) -> bytes:
    data = (base / entry.uri).read_bytes()
    if entry.byterange is not None:
        offset, length = entry.byterange
        data = data[offset : offset + length]
    if entry.key is None:
        return data
    from Crypto.Cipher import AES
    from Crypto.Util.Padding import unpad

    iv = entry.key.iv or entry.sequence.to_bytes(16, "big")
    cipher = AES.new((base / entry.key.uri).read_bytes(), AES.MODE_CBC, iv)
    return bytes(unpad(cipher.decrypt(data), AES.block_size))


def _encrypt(path: Path, key: bytes, iv: bytes) -> None:
    from Crypto.Cipher import AES
    from Crypto.Util.Padding import pad

    path.write_bytes(AES.new(key, AES.MODE_CBC, iv).encrypt(pad(path.read_bytes(), AES.block_size)))


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


def _encode(
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


def _hls(target: Path, segment_seconds: float, bitrate: int, seconds: float, **extra: str) -> None:
    """One AAC media playlist `target` through the hls muxer (segments beside it)."""
    options = {"hls_time": f"{segment_seconds:g}", "hls_playlist_type": "vod", **extra}
    options.setdefault("hls_segment_filename", str(target.parent / "seg_%03d.ts"))
    _encode(target, "hls", options, codec="aac", bitrate=bitrate, seconds=seconds)


def _build(root: str | Path, name: str, params: dict[str, Any], make: Callable[[Path], None]) -> Path:
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
    media = _parse_media(playlist)
    sizes = [len(_load(playlist.parent, seg)) for seg in media.segments]
    peak = max(size * 8 / seg.duration for size, seg in zip(sizes, media.segments, strict=True))
    average = sum(sizes) * 8 / sum(seg.duration for seg in media.segments)
    return round(peak), round(average)


def _write_master(folder: Path, playlists: list[str]) -> None:
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


def _single(root: Path, name: str) -> StreamFixture:
    """A fixture whose entry is its only media playlist, ``name/index.m3u8``."""
    return StreamFixture(name, root, f"{name}/index.m3u8", (f"{name}/index.m3u8",))


def _write_media(path: Path, header: list[str], body: list[str]) -> None:
    lines = ["#EXTM3U", *header, "#EXT-X-PLAYLIST-TYPE:VOD", *body, "#EXT-X-ENDLIST"]
    path.write_text("\n".join(lines) + "\n")


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
            _hls(work / rel, segment_seconds, rate, seconds)
        _write_master(work, playlists)

    params = {"seconds": seconds, "segment_seconds": segment_seconds, "bitrates": rates}
    root = _build(root, name, params, make)
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
            _hls(
                target, segment_seconds, rate, seconds, hls_segment_type="fmp4", hls_segment_filename=segments
            )
        _write_master(work, playlists)

    params = {"seconds": seconds, "segment_seconds": segment_seconds, "bitrates": rates}
    root = _build(root, name, params, make)
    return StreamFixture(name, root, f"{name}/master.m3u8", tuple(f"{name}/{p}" for p in playlists))


def build_byterange(
    root: str | Path, *, name: str = "byterange", seconds: float = 12.0, segment_seconds: float = 2.0
) -> StreamFixture:
    """One TS file sliced by EXT-X-BYTERANGE; media playlist only."""

    def make(work: Path) -> None:
        single = str(work / "stream.ts")
        _hls(
            work / "index.m3u8",
            segment_seconds,
            64_000,
            seconds,
            hls_flags="single_file",
            hls_segment_filename=single,
        )

    root = _build(root, name, {"seconds": seconds, "segment_seconds": segment_seconds}, make)
    return _single(root, name)


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
        _encode(work / "seg_%03d.mp3", "segment", options, codec="mp3", bitrate=128_000, seconds=seconds)
        lines = playlist.read_text().splitlines()
        if "#EXT-X-ENDLIST" not in lines:
            raise RuntimeError("segment muxer wrote no #EXT-X-ENDLIST")
        if not any(s.startswith("#EXT-X-PLAYLIST-TYPE") for s in lines):
            lines.insert(1, "#EXT-X-PLAYLIST-TYPE:VOD")
        playlist.write_text("\n".join(lines) + "\n")

    root = _build(root, name, {"seconds": seconds, "segment_seconds": segment_seconds}, make)
    return _single(root, name)


def build_aes_ts(
    root: str | Path, *, name: str = "aes", seconds: float = 12.0, segment_seconds: float = 2.0
) -> StreamFixture:
    """AES-128 TS from the hls muxer's key info file: key URI ``key.key``, IV attribute."""

    def make(work: Path) -> None:
        (work / "key.key").write_bytes(AES_TS_KEY)
        info = work / "keyinfo.txt"
        info.write_text(f"key.key\n{work / 'key.key'}\n{AES_TS_IV.hex()}\n")
        _hls(work / "index.m3u8", segment_seconds, 64_000, seconds, hls_key_info_file=str(info))
        info.unlink()

    root = _build(root, name, {"seconds": seconds, "segment_seconds": segment_seconds}, make)
    return _single(root, name)


def build_aes_manual(
    root: str | Path, *, name: str = "aes_manual", seconds: float = 12.0, segment_seconds: float = 2.0
) -> StreamFixture:
    """Hand-encrypted TS: no IV (IV = sequence), media sequence 7, key rotation, a clear segment."""

    def make(work: Path) -> None:
        _hls(work / "index.m3u8", segment_seconds, 64_000, seconds)
        segments = _parse_media(work / "index.m3u8").segments
        (work / "keys").mkdir()
        for index, key in enumerate(AES_MANUAL_KEYS):
            (work / "keys" / f"k{index}.key").write_bytes(key)
        clear = len(segments) - 2
        body: list[str] = []
        current: int | None = -1
        for i, seg in enumerate(segments):
            key_index = None if i == clear else int(i >= len(segments) // 2)
            if key_index != current:
                body.append(_key_line(None if key_index is None else f"keys/k{key_index}.key"))
                current = key_index
            if key_index is not None:
                sequence = AES_MANUAL_SEQUENCE + i
                _encrypt(work / seg.uri, AES_MANUAL_KEYS[key_index], sequence.to_bytes(16, "big"))
            body += [f"#EXTINF:{seg.duration:.6f},", seg.uri]
        header = [
            "#EXT-X-VERSION:3",
            f"#EXT-X-TARGETDURATION:{_target_duration(segments)}",
            f"#EXT-X-MEDIA-SEQUENCE:{AES_MANUAL_SEQUENCE}",
        ]
        _write_media(work / "index.m3u8", header, body)

    root = _build(root, name, {"seconds": seconds, "segment_seconds": segment_seconds}, make)
    return _single(root, name)


def _target_duration(segments: list[_Entry]) -> int:
    # RFC 8216: every EXTINF rounded half-up to an integer must not exceed the target.
    return int(max(seg.duration for seg in segments) + 0.5)


def _key_line(uri: str | None, iv: bytes | None = None) -> str:
    if uri is None:
        return "#EXT-X-KEY:METHOD=NONE"
    iv_attr = "" if iv is None else f",IV=0x{iv.hex()}"
    return f'#EXT-X-KEY:METHOD=AES-128,URI="{uri}"{iv_attr}'


def build_aes_fmp4(
    root: str | Path, *, name: str = "aes_fmp4", seconds: float = 12.0, segment_seconds: float = 2.0
) -> StreamFixture:
    """Hand-encrypted fMP4 whose EXT-X-MAP init is encrypted too (KEY before MAP, IV given)."""

    def make(work: Path) -> None:
        segments_pattern = str(work / "seg_%03d.m4s")
        _hls(
            work / "index.m3u8",
            segment_seconds,
            64_000,
            seconds,
            hls_segment_type="fmp4",
            hls_segment_filename=segments_pattern,
        )
        media = _parse_media(work / "index.m3u8")
        if media.init is None:
            raise RuntimeError("hls muxer wrote no EXT-X-MAP")
        (work / "key.key").write_bytes(AES_FMP4_KEY)
        body = [_key_line("key.key", AES_FMP4_IV), f'#EXT-X-MAP:URI="{media.init.uri}"']
        for entry in [media.init, *media.segments]:
            _encrypt(work / entry.uri, AES_FMP4_KEY, AES_FMP4_IV)
        for seg in media.segments:
            body += [f"#EXTINF:{seg.duration:.6f},", seg.uri]
        header = [
            "#EXT-X-VERSION:7",
            f"#EXT-X-TARGETDURATION:{_target_duration(media.segments)}",
        ]
        _write_media(work / "index.m3u8", [*header, "#EXT-X-MEDIA-SEQUENCE:0"], body)

    root = _build(root, name, {"seconds": seconds, "segment_seconds": segment_seconds}, make)
    return _single(root, name)


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
        _write_media(work / "index.m3u8", header, body)

    root = _build(root, name, {"segments": segments, "segment_bytes": segment_bytes}, make)
    return _single(root, name)


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
