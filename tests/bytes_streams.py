"""Streams for the packed-audio, period and gap tests, built with ffmpeg's muxers through PyAV.

Packed audio: ffmpeg's segment muxer cuts raw MP3 or ADTS, and each segment gets
the ID3 PRIV transportStreamTimestamp tag RFC 8216 §3.4 asks for (no packager
here writes it). Periods: two contents (one tone each) from the hls muxer,
joined by EXT-X-DISCONTINUITY. Gaps: two bitrates of one content from the hls
muxer, EXT-X-GAP written on a segment (its file removed, so a request would 404).
Each builder returns the bytes a client must present, computed from the files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from kithara_hls import id3

RATE = 44_100
TONE_A = 440.0
TONE_B = 660.0
#: The PRIV timestamp of a packed stream's first segment (a packager's clock does not start at 0).
FIRST_STAMP_S = 10.0


@dataclass
class Built:
    """A built stream: the playlist to open (relative to the served root), what a client presents."""

    root: Path
    entry: str
    expected: bytes = field(repr=False)
    durations: list[float] = field(default_factory=list)
    stamps: list[float] = field(default_factory=list)  # packed: each segment's PRIV timestamp
    period_offsets: list[int] = field(default_factory=list)
    period_starts: list[float] = field(default_factory=list)
    segments: list[str] = field(default_factory=list)  # paths, relative to the root


def encode_tone(
    target: Path,
    fmt: str,
    options: dict[str, str],
    *,
    codec: str,
    hz: float,
    seconds: float,
    bitrate: int = 64_000,
) -> None:
    """A mono sine of `hz` encoded with `codec` through ffmpeg's `fmt` muxer into `target`."""
    import av
    import numpy as np

    n = int(RATE * seconds)
    pcm = (0.3 * np.sin(2 * np.pi * hz * np.arange(n) / RATE)).astype(np.float32)[None, :]
    with av.open(str(target), "w", format=fmt, options=options) as out:
        stream = out.add_stream(codec, rate=RATE, layout="mono")
        stream.bit_rate = bitrate
        for start in range(0, n, 1024):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(pcm[:, start : start + 1024]), format="fltp", layout="mono"
            )
            frame.sample_rate = RATE
            frame.pts = start
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def _media_lines(path: Path) -> list[str]:
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]


def _segments(path: Path) -> tuple[list[str], list[float]]:
    """Segment URIs and EXTINF durations of a media playlist."""
    uris, durations = [], []
    for line in _media_lines(path):
        if line.startswith("#EXTINF:"):
            durations.append(float(line[8:].split(",")[0]))
        elif not line.startswith("#"):
            uris.append(line)
    return uris, durations


def _write_media(path: Path, entries: list[str], target: int, *, map_uri: str | None = None) -> None:
    head = ["#EXTM3U", "#EXT-X-VERSION:7", f"#EXT-X-TARGETDURATION:{target}", "#EXT-X-PLAYLIST-TYPE:VOD"]
    if map_uri is not None:
        head.append(f'#EXT-X-MAP:URI="{map_uri}"')
    path.write_text("\n".join([*head, *entries, "#EXT-X-ENDLIST"]) + "\n")


def build_packed(
    root: Path, codec: str, *, seconds: float = 8.0, segment_s: float = 2.0, name: str | None = None
) -> Built:
    """Packed audio (`codec` "mp3" or "aac": raw ADTS), each segment led by an ID3 PRIV timestamp."""
    name = name or f"packed-{codec}"
    folder = root / name
    folder.mkdir(parents=True)
    ext = "mp3" if codec == "mp3" else "aac"
    fmt = "mp3" if codec == "mp3" else "adts"
    options = {
        "segment_time": f"{segment_s:g}",
        "segment_format": fmt,
        "segment_list": str(folder / "raw.m3u8"),
        "segment_list_type": "m3u8",
    }
    if codec == "mp3":
        options["segment_format_options"] = "write_xing=0:id3v2_version=0"
    encode_tone(folder / f"seg_%03d.{ext}", "segment", options, codec=codec, hz=TONE_A, seconds=seconds)
    uris, durations = _segments(folder / "raw.m3u8")
    expected = bytearray()
    stamps, entries = [], []
    start = 0.0
    for i, (uri, duration) in enumerate(zip(uris, durations, strict=True)):
        stamp = FIRST_STAMP_S + start
        tag = id3.priv_timestamp_tag(stamp)
        body = (folder / uri).read_bytes()
        (folder / uri).write_bytes(tag + body)
        expected += (tag + body) if i == 0 else body
        stamps.append(stamp)
        entries += [f"#EXTINF:{duration:.6f},", uri]
        start += duration
    _write_media(folder / "index.m3u8", entries, int(max(durations)) + 1)
    return Built(
        root, f"{name}/index.m3u8", bytes(expected), durations, stamps, segments=[f"{name}/{u}" for u in uris]
    )


def _hls(
    folder: Path, *, hz: float, seconds: float, fmp4: bool, bitrate_tag: str = "", bitrate: int = 64_000
) -> None:
    options = {
        "hls_time": "1",
        "hls_playlist_type": "vod",
        "hls_segment_filename": str(folder / f"s{bitrate_tag}_%03d.{'m4s' if fmp4 else 'ts'}"),
    }
    if fmp4:
        options.update(hls_segment_type="fmp4", hls_fmp4_init_filename=f"init{bitrate_tag}.mp4")
    encode_tone(
        folder / f"index{bitrate_tag}.m3u8",
        "hls",
        options,
        codec="aac",
        hz=hz,
        seconds=seconds,
        bitrate=bitrate,
    )


def build_periods(root: Path, *, fmp4: bool, seconds: float = 3.0) -> Built:
    """Two contents (TONE_A, then TONE_B), each from the hls muxer, joined by EXT-X-DISCONTINUITY;
    fMP4: each content has its own init section (a new EXT-X-MAP after the discontinuity)."""
    name = f"periods-{'fmp4' if fmp4 else 'ts'}"
    folder = root / name
    expected = bytearray()
    entries: list[str] = []
    offsets, starts, durations = [], [], []
    t = 0.0
    for k, hz in enumerate((TONE_A, TONE_B)):
        part = folder / f"c{k}"
        part.mkdir(parents=True)
        _hls(part, hz=hz, seconds=seconds, fmp4=fmp4)
        uris, durs = _segments(part / "index.m3u8")
        offsets.append(len(expected))
        starts.append(t)
        if k:
            entries.append("#EXT-X-DISCONTINUITY")
        if fmp4:
            entries.append(f'#EXT-X-MAP:URI="c{k}/init.mp4"')
            expected += (part / "init.mp4").read_bytes()
        for uri, d in zip(uris, durs, strict=True):
            entries += [f"#EXTINF:{d:.6f},", f"c{k}/{uri}"]
            expected += (part / uri).read_bytes()
            durations.append(d)
            t += d
    _write_media(folder / "index.m3u8", entries, 2)
    return Built(
        root, f"{name}/index.m3u8", bytes(expected), durations, period_offsets=offsets, period_starts=starts
    )


def build_gaps(root: Path, *, gap: int, on_all: bool, seconds: float = 5.0) -> Built:
    """Two TS variants of one content; segment `gap` is EXT-X-GAP on the first (and, `on_all`, on
    both), its file removed. `expected`: the first variant's plan, the gap filled from the second
    (or, `on_all`, ending before the gap)."""
    name = f"gaps-{'all' if on_all else 'one'}"
    folder = root / name
    folder.mkdir(parents=True)
    bodies: list[list[bytes]] = []
    uris_of: list[list[str]] = []
    for v in range(2):
        _hls(folder, hz=TONE_A, seconds=seconds, fmp4=False, bitrate_tag=str(v), bitrate=48_000 * (v + 1))
        uris, durations = _segments(folder / f"index{v}.m3u8")
        bodies.append([(folder / u).read_bytes() for u in uris])
        uris_of.append(uris)
        entries: list[str] = []
        for i, (uri, d) in enumerate(zip(uris, durations, strict=True)):
            if i == gap and (v == 0 or on_all):
                entries.append("#EXT-X-GAP")
                (folder / uri).unlink()
            entries += [f"#EXTINF:{d:.6f},", uri]
        _write_media(folder / f"v{v}.m3u8", entries, 2)
    (folder / "master.m3u8").write_text(
        "#EXTM3U\n"
        '#EXT-X-STREAM-INF:BANDWIDTH=100000,CODECS="mp4a.40.2"\nv0.m3u8\n'
        '#EXT-X-STREAM-INF:BANDWIDTH=200000,CODECS="mp4a.40.2"\nv1.m3u8\n'
    )
    plan = bodies[0][:gap] if on_all else [*bodies[0][:gap], bodies[1][gap], *bodies[0][gap + 1 :]]
    return Built(
        root,
        f"{name}/master.m3u8",
        b"".join(plan),
        durations,
        segments=[f"{name}/{u}" for u in uris_of[0]],
    )


AES_KEY = bytes(range(16))
AES_IV = bytes(range(16, 32))


def build_packed_aes(root: Path, codec: str) -> Built:
    """`build_packed`, each segment (its ID3 tag inside the plaintext) encrypted with AES-128."""
    from Crypto.Cipher import AES
    from Crypto.Util.Padding import pad

    clear = build_packed(root, codec, name=f"packed-{codec}-plain")
    name = f"packed-{codec}-aes"
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "key.bin").write_bytes(AES_KEY)
    entries = [f'#EXT-X-KEY:METHOD=AES-128,URI="key.bin",IV=0x{AES_IV.hex()}']
    for path, duration in zip(clear.segments, clear.durations, strict=True):
        body = (root / path).read_bytes()
        uri = Path(path).name
        (folder / uri).write_bytes(AES.new(AES_KEY, AES.MODE_CBC, AES_IV).encrypt(pad(body, 16)))
        entries += [f"#EXTINF:{duration:.6f},", uri]
    _write_media(folder / "index.m3u8", entries, int(max(clear.durations)) + 1)
    segments = [f"{name}/{Path(p).name}" for p in clear.segments]
    return Built(root, f"{name}/index.m3u8", clear.expected, clear.durations, clear.stamps, segments=segments)
