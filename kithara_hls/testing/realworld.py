"""Real-world fixtures for issue 18: the masters real packagers write, built with ffmpeg's HLS
muxer through PyAV where it can make them, by hand (and said so) where no packager here can.

Each builder returns a `RealWorldFixture`: where the stream is, what to open, and per media
playlist a `Track` with the bytes a client must present when it plays that playlist alone, and
the facts a test checks (tone, sample rate, channels, gaps, periods, which paths are video).

Tones (see `realworld_media.tone_hz`): every audio track steps up a semitone each second from its
base: English and the first period are `EN_HZ` (440 Hz), French and the second period `FR_HZ`
(660 Hz); over the few seconds a fixture lasts the two never overlap (440-523 vs 660-784 Hz).

What ffmpeg's master lacks that other packagers write, kept as ffmpeg writes it: the rendition
NAME is always ``audio_N`` (the var_stream_map ``name`` only names the folder), AUTOSELECT is
never written, and a blank line follows each variant URI.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from .building import build_once
from .oracle import parse_placed, presented, read_span
from .origin import RequestRecord
from .realworld_media import AudioSpec, VideoSpec, encode_streams

__all__ = [
    "AUDIO_LADDER",
    "CONTENT_S",
    "EN_HZ",
    "FR_HZ",
    "GAP_INDEX",
    "GAP_LADDER",
    "SEGMENT_S",
    "RealWorldFixture",
    "Track",
    "build_audio_ladder",
    "build_gaps",
    "build_muxed_ladder",
    "build_renditions",
]

EN_HZ = 440.0  # English, and the first period of the discontinuity fixtures
FR_HZ = 660.0  # French, and the second period
SEGMENT_S = 1.0
CONTENT_S = 4.0
REALWORLD_VERSION = 1  # bump when a real-world builder's output changes
_CODEC_NAMES = {"libmp3lame": "mp3"}
VIDEO_LADDER = (VideoSpec(320, 180, 200_000), VideoSpec(160, 90, 80_000))


@dataclass(frozen=True)
class Track:
    """One media playlist of a fixture, and what a client must present when it plays it.

    Paths are relative to the fixture's root (the folder the origin serves). `expected` is the
    init section and every segment in order (init again where EXT-X-MAP changes; packed audio
    without the leading ID3 tag of every segment after the first). For a gap that another variant
    fills, that variant's segment stands in; where no variant has it, `expected` ends before it.
    """

    name: str
    playlist: str
    kind: str  # "audio", "video" or "muxed" (video and audio in one variant)
    expected: bytes = field(repr=False)
    segments: tuple[str, ...] = ()
    durations: tuple[float, ...] = ()
    inits: tuple[str, ...] = ()
    language: str | None = None
    tones_hz: tuple[float, ...] = ()  # the base tone of each period (one unless discontinuous)
    sample_rate: int | None = None
    channels: int | None = None
    codec: str | None = None  # "aac", "mp3", "h264"
    gaps: tuple[int, ...] = ()  # indices of the segments marked EXT-X-GAP
    periods: tuple[int, ...] = (0,)  # the segment index each period starts at
    period_offsets: tuple[int, ...] = (0,)  # where each period starts in `expected`
    stops_at: int | None = None  # the gap no variant fills, where `expected` ends

    @property
    def expected_duration(self) -> float:
        """The playlist duration `expected` covers (up to `stops_at`)."""
        return sum(self.durations[: self.stops_at])

    @property
    def duration(self) -> float:
        """Sum of the EXTINF durations."""
        return sum(self.durations)

    @property
    def base_hz(self) -> float | None:
        """The base tone of the first period, None for video."""
        return self.tones_hz[0] if self.tones_hz else None

    def period_starts_s(self) -> tuple[float, ...]:
        """The playlist time each period starts at."""
        return tuple(sum(self.durations[:i]) for i in self.periods)


@dataclass(frozen=True)
class RealWorldFixture:
    """A built real-world stream: open `entry` (with `query`, if any) on an origin serving `root`."""

    name: str
    root: Path
    entry: str
    tracks: Mapping[str, Track]
    video_paths: frozenset[str] = frozenset()  # every path of a video or muxed track
    missing: frozenset[str] = frozenset()  # gap segments absent from the origin
    query: str = ""  # the query the entry must be opened with (EXT-X-DEFINE QUERYPARAM)
    packager: str = "ffmpeg hls muxer"

    @property
    def folder(self) -> Path:
        """The fixture's own folder under `root`."""
        return self.root / self.name

    def url(self, base_url: str) -> str:
        """The URL to open, given the origin's base URL."""
        return base_url + self.entry + (f"?{self.query}" if self.query else "")

    def video_requests(self, records: Iterable[RequestRecord]) -> list[str]:
        """The paths of an origin's request log that are video (audio mode must have none)."""
        return [r.path for r in records if r.path in self.video_paths]

    def gap_requests(self, records: Iterable[RequestRecord]) -> list[str]:
        """The paths of an origin's request log that are gap segments (there must be none)."""
        return [r.path for r in records if r.path in self.missing]


def make_track(
    root: Path,
    name: str,
    playlist: str,
    kind: str,
    *,
    spec: AudioSpec | None = None,
    language: str | None = None,
    tones_hz: tuple[float, ...] | None = None,
    fills: Mapping[int, str] | None = None,
    packed: bool = False,
) -> Track:
    """A `Track` for the built media playlist `playlist` (relative to `root`).

    `spec` is the audio it carries (tone, rate, channels, codec; None for video), `tones_hz`
    the base tone of each period where there are several. `fills` maps a gap segment's index
    to the root-relative segment that stands in for it.
    """
    placed = parse_placed(root / playlist)
    base = posixpath.dirname(playlist)
    segs = tuple(posixpath.normpath(posixpath.join(base, p.segment.uri)) for p in placed)
    inits = [None if p.init is None else posixpath.normpath(posixpath.join(base, p.init.uri)) for p in placed]
    gaps = tuple(i for i, p in enumerate(placed) if p.gap)
    periods = (0, *(i for i, p in enumerate(placed) if p.discontinuity and i > 0))
    datas: list[bytes] = []
    stops_at = None
    for i, (seg, p) in enumerate(zip(segs, placed, strict=True)):
        span = p.segment.byterange
        if i in gaps:
            if fills is None or i not in fills:
                stops_at = i
                break
            seg, span = fills[i], None
        datas.append(read_span(root / seg, span))
    init_bytes: list[tuple[str, bytes] | None] = []
    for uri, p in zip(inits[: len(datas)], placed, strict=False):
        init_span = None if p.init is None else p.init.byterange
        init_bytes.append(None if uri is None else (f"{uri}@{init_span}", read_span(root / uri, init_span)))
    offsets = tuple(len(presented(datas[:i], init_bytes[:i], packed=packed)) for i in periods)
    return Track(
        name,
        playlist,
        kind,
        presented(datas, init_bytes, packed=packed),
        segments=segs,
        durations=tuple(p.segment.duration for p in placed),
        inits=tuple(dict.fromkeys(i for i in inits if i is not None)),
        gaps=gaps,
        periods=periods,
        period_offsets=offsets,
        stops_at=stops_at,
        language=language,
        tones_hz=tones_hz or (() if spec is None else (spec.base_hz,)),
        sample_rate=None if spec is None else spec.sample_rate,
        channels=None if spec is None else spec.channels,
        codec="h264" if spec is None else _CODEC_NAMES.get(spec.codec, spec.codec),
    )


def video_paths(tracks: Mapping[str, Track]) -> frozenset[str]:
    """Every path of the tracks that carry video (alone or muxed): playlists, inits, segments."""
    video = [t for t in tracks.values() if t.kind != "audio"]
    return frozenset(p for t in video for p in (t.playlist, *t.inits, *t.segments))


def hls_options(work: Path, var_stream_map: str, fmp4: bool, **extra: str) -> dict[str, str]:
    """The hls muxer's options for one run writing `master.m3u8` and a folder per variant."""
    ext = "m4s" if fmp4 else "ts"
    options = {
        "hls_time": f"{SEGMENT_S:g}",
        "hls_playlist_type": "vod",
        "master_pl_name": "master.m3u8",
        "var_stream_map": var_stream_map,
        "hls_segment_filename": str(work / "%v" / f"seg_%03d.{ext}"),
        **extra,
    }
    if fmp4:
        options["hls_segment_type"] = "fmp4"
    return options


def finish_fixture(
    root: Path, name: str, tracks: dict[str, Track], packager: str = "ffmpeg hls muxer"
) -> RealWorldFixture:
    return RealWorldFixture(name, root, f"{name}/master.m3u8", tracks, video_paths(tracks), packager=packager)


def build_renditions(
    root: str | Path, *, fmp4: bool = False, single_file: bool = False, name: str | None = None
) -> RealWorldFixture:
    """Two video variants (320x180, 160x90; tracks "v180", "v90") that reference one audio group
    of two renditions with URIs, English (DEFAULT=YES, `EN_HZ`, "en") and French (`FR_HZ`, "fr"),
    48 kHz stereo AAC; master by ffmpeg's hls muxer (var_stream_map with agroup/language/default).
    `single_file`: ``hls_flags single_file``, one file per track sliced by EXT-X-BYTERANGE.
    """
    kind = ("fmp4" if fmp4 else "ts") if not single_file else ("single_fmp4" if fmp4 else "single_ts")
    name = name or f"renditions_{kind}"
    vmap = (
        "v:0,agroup:aud,name:v180 v:1,agroup:aud,name:v90 "
        "a:0,agroup:aud,language:en,name:en,default:yes a:1,agroup:aud,language:fr,name:fr"
    )
    audios = (AudioSpec(EN_HZ), AudioSpec(FR_HZ))

    def make(work: Path) -> None:
        extra = {}
        if single_file:
            ext = "m4s" if fmp4 else "ts"
            extra = {"hls_flags": "single_file", "hls_segment_filename": str(work / "%v" / f"stream.{ext}")}
        options = hls_options(work, vmap, fmp4, **extra)
        encode_streams(
            work / "%v" / "index.m3u8", "hls", options, videos=VIDEO_LADDER, audios=audios, seconds=CONTENT_S
        )

    params = {"rw": REALWORLD_VERSION, "fmp4": fmp4, "single": single_file, "vmap": vmap}
    root = build_once(root, name, params, make)
    tracks = {
        "v180": make_track(root, "v180", f"{name}/v180/index.m3u8", "video"),
        "v90": make_track(root, "v90", f"{name}/v90/index.m3u8", "video"),
    }
    for key, spec in zip(("en", "fr"), audios, strict=True):
        tracks[key] = make_track(root, key, f"{name}/{key}/index.m3u8", "audio", language=key, spec=(spec))
    return finish_fixture(root, name, tracks)


#: The audio-only ladder: (track name, sample rate, bitrate), lowest first.
AUDIO_LADDER = (("a22k", 22_050, 32_000), ("a48k64", 48_000, 64_000), ("a48k128", 48_000, 128_000))


def build_audio_ladder(root: str | Path, *, fmp4: bool = False, name: str | None = None) -> RealWorldFixture:
    """Three audio-only variants of one `EN_HZ` tone in one ffmpeg run (`AUDIO_LADDER`:
    22.05 kHz 32k, 48 kHz 64k, 48 kHz 128k AAC stereo); master by ffmpeg's hls muxer."""
    name = name or ("audio_ladder_fmp4" if fmp4 else "audio_ladder_ts")
    specs = tuple(AudioSpec(EN_HZ, rate, bitrate=bitrate) for _, rate, bitrate in AUDIO_LADDER)
    vmap = " ".join(f"a:{i},name:{key}" for i, (key, _, _) in enumerate(AUDIO_LADDER))

    def make(work: Path) -> None:
        options = hls_options(work, vmap, fmp4)
        encode_streams(work / "%v" / "index.m3u8", "hls", options, audios=specs, seconds=CONTENT_S)

    root = build_once(root, name, {"rw": REALWORLD_VERSION, "fmp4": fmp4, "vmap": vmap}, make)
    tracks = {
        key: make_track(root, key, f"{name}/{key}/index.m3u8", "audio", spec=(spec))
        for (key, _, _), spec in zip(AUDIO_LADDER, specs, strict=True)
    }
    return finish_fixture(root, name, tracks)


def build_muxed_ladder(root: str | Path, *, name: str = "muxed_ladder_ts") -> RealWorldFixture:
    """ffmpeg's ``var_stream_map "v:0,a:0 a:1"`` ladder in TS: variant "av" muxes 320x180 video
    with 48 kHz AAC (96k), variant "audio" is audio only (48 kHz, 64k); both carry the `EN_HZ`
    tone. The two have different TS PID layouts (video + audio vs audio alone)."""
    vmap = "v:0,a:0,name:av a:1,name:audio"
    specs = (AudioSpec(EN_HZ, bitrate=96_000), AudioSpec(EN_HZ, bitrate=64_000))

    def make(work: Path) -> None:
        options = hls_options(work, vmap, False)
        videos = VIDEO_LADDER[:1]
        encode_streams(
            work / "%v" / "index.m3u8", "hls", options, videos=videos, audios=specs, seconds=CONTENT_S
        )

    root = build_once(root, name, {"rw": REALWORLD_VERSION, "vmap": vmap}, make)
    tracks = {
        "av": make_track(root, "av", f"{name}/av/index.m3u8", "muxed", spec=(specs[0])),
        "audio": make_track(root, "audio", f"{name}/audio/index.m3u8", "audio", spec=(specs[1])),
    }
    return finish_fixture(root, name, tracks)


GAP_INDEX = 2  # the segment marked EXT-X-GAP in the gap fixtures
#: The gap fixtures' ladder: (track name, bitrate), both 48 kHz stereo AAC of the `EN_HZ` tone.
GAP_LADDER = (("a64", 64_000), ("a128", 128_000))


def build_gaps(root: str | Path, *, every_variant: bool = False, name: str | None = None) -> RealWorldFixture:
    """An audio TS ladder by ffmpeg's hls muxer (`GAP_LADDER`, one switch set) with segment
    `GAP_INDEX` marked EXT-X-GAP and its file deleted: in variant "a64" only, where "a128" has
    it (the expected bytes of "a64" take it from "a128"), or with `every_variant` in both (the
    expected bytes end before it). No packager here writes EXT-X-GAP: the tag is added by hand."""
    name = name or ("gaps_all_ts" if every_variant else "gaps_one_ts")
    specs = tuple(AudioSpec(EN_HZ, bitrate=bitrate) for _, bitrate in GAP_LADDER)
    vmap = " ".join(f"a:{i},name:{key}" for i, (key, _) in enumerate(GAP_LADDER))
    gapped = [key for key, _ in GAP_LADDER] if every_variant else [GAP_LADDER[0][0]]

    def make(work: Path) -> None:
        options = hls_options(work, vmap, False)
        encode_streams(work / "%v" / "index.m3u8", "hls", options, audios=specs, seconds=CONTENT_S)
        for key in gapped:
            _mark_gap(work / key / "index.m3u8", GAP_INDEX)

    root = build_once(
        root, name, {"rw": REALWORLD_VERSION, "vmap": vmap, "gapped": gapped, "index": GAP_INDEX}, make
    )
    fills = None if every_variant else {GAP_INDEX: f"{name}/{GAP_LADDER[1][0]}/seg_{GAP_INDEX:03d}.ts"}
    tracks = {
        key: make_track(
            root, key, f"{name}/{key}/index.m3u8", "audio", spec=spec, fills=fills if key in gapped else None
        )
        for (key, _), spec in zip(GAP_LADDER, specs, strict=True)
    }
    missing = frozenset(t.segments[GAP_INDEX] for t in tracks.values() if GAP_INDEX in t.gaps)
    fixture = finish_fixture(root, name, tracks, packager="ffmpeg hls muxer; EXT-X-GAP by hand")
    return replace(fixture, missing=missing)


def _mark_gap(playlist: Path, index: int) -> None:
    """Put EXT-X-GAP before segment `index`'s EXTINF and delete its file."""
    lines = playlist.read_text().splitlines()
    uris = [i for i, line in enumerate(lines) if line and not line.startswith("#")]
    extinf = uris[index] - 1
    if not lines[extinf].startswith("#EXTINF"):
        raise RuntimeError(f"{playlist}: no EXTINF before segment {index}")
    (playlist.parent / lines[uris[index]]).unlink()
    lines.insert(extinf, "#EXT-X-GAP")
    playlist.write_text("\n".join(lines) + "\n")
