"""Real-world fixtures, continued: packed audio with ID3 PRIV timestamps, discontinuities, the
hand-written Apple-style master, the EXT-X-DEFINE copy, and `build_realworld` over them all."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from .building import _bandwidths, build_once
from .realworld import (
    CONTENT_S,
    EN_HZ,
    FR_HZ,
    REALWORLD_VERSION,
    SEGMENT_S,
    VIDEO_LADDER,
    RealWorldFixture,
    Track,
    build_audio_ladder,
    build_gaps,
    build_muxed_ladder,
    build_renditions,
    finish_fixture,
    hls_options,
    make_track,
    video_paths,
)
from .realworld_media import PACKED_START_TICKS, AudioSpec, encode_streams, priv_timestamp_tag

__all__ = [
    "APPLE_NAMES",
    "DEFINE_TOKEN",
    "PACKED_RATE",
    "build_apple_style",
    "build_define",
    "build_discontinuity",
    "build_packed",
    "build_realworld",
    "packed_timestamps",
]

PACKED_RATE = 44_100
_PACKED = {"adts": ("aac", "aac", ""), "mp3": ("mp3", "mp3", "write_xing=0:id3v2_version=0")}


def build_packed(root: str | Path, *, fmt: str = "adts", name: str | None = None) -> RealWorldFixture:
    """Packed audio (`fmt` "adts" for AAC, or "mp3"), 44.1 kHz stereo `EN_HZ` tone, 1 s segments
    from ffmpeg's segment muxer, each given a leading ID3v2.4 tag with the PRIV
    com.apple.streaming.transportStreamTimestamp frame of RFC 8216 §3.4 (see `packed_timestamps`).

    No packager here writes that tag: ffmpeg's hls muxer makes only MPEG-TS and fMP4 segments,
    and its segment muxer writes raw ADTS/MP3 (the MP3 muxer's own ID3 tag and Xing header are
    turned off, as packagers do), so the tag is prepended here. The entry is the media playlist
    (track "audio"); the expected bytes keep the first segment's tag and strip the others'.
    """
    name = name or f"packed_{fmt}"
    codec, ext, format_options = _PACKED[fmt]
    spec = AudioSpec(EN_HZ, PACKED_RATE, bitrate=96_000, codec=codec)

    def make(work: Path) -> None:
        playlist = work / "index.m3u8"
        options = {
            "segment_time": f"{SEGMENT_S:g}",
            "segment_format": fmt,
            "segment_list": str(playlist),
            "segment_list_type": "m3u8",
        }
        if format_options:
            options["segment_format_options"] = format_options
        encode_streams(work / f"seg_%03d.{ext}", "segment", options, audios=(spec,), seconds=CONTENT_S)
        lines = playlist.read_text().splitlines()
        if not any(line.startswith("#EXT-X-PLAYLIST-TYPE") for line in lines):
            lines.insert(1, "#EXT-X-PLAYLIST-TYPE:VOD")
        playlist.write_text("\n".join(lines) + "\n")
        segments = [work / line for line in lines if line and not line.startswith("#")]
        for path, ticks in zip(segments, _timestamps(segments), strict=True):
            path.write_bytes(priv_timestamp_tag(ticks) + path.read_bytes())

    root = build_once(root, name, {"rw": REALWORLD_VERSION, "fmt": fmt}, make)
    tracks = {"audio": make_track(root, "audio", f"{name}/index.m3u8", "audio", spec=spec, packed=True)}
    fixture = finish_fixture(root, name, tracks, packager="ffmpeg segment muxer; ID3 PRIV tags by hand")
    return replace(fixture, entry=f"{name}/index.m3u8")


def _timestamps(segments: list[Path]) -> list[int]:
    """The 90 kHz time of each segment's first sample: `PACKED_START_TICKS` plus what came before."""
    import av

    ticks, elapsed = [], 0.0
    for path in segments:
        ticks.append(PACKED_START_TICKS + round(elapsed * 90_000))
        with av.open(str(path)) as container:
            stream = container.streams.audio[0]
            durations = [p.duration for p in container.demux(stream) if p.size and p.duration]
            elapsed += float(sum(durations) * stream.time_base)
    return ticks


def packed_timestamps(track: Track, root: Path) -> list[int]:
    """The PRIV timestamp each segment of a packed track carries, read back from its files."""
    pattern = re.compile(rb"com\.apple\.streaming\.transportStreamTimestamp\x00(.{8})", re.S)
    out = []
    for seg in track.segments:
        found = pattern.search((root / seg).read_bytes()[:128])
        if found is None:
            raise ValueError(f"{seg}: no PRIV timestamp")
        out.append(int.from_bytes(found.group(1), "big"))
    return out


def build_discontinuity(root: str | Path, *, fmp4: bool = False, name: str | None = None) -> RealWorldFixture:
    """One media playlist joining two ffmpeg runs (48 kHz stereo AAC, 3 s each; period 0 the
    `EN_HZ` tone from a/, period 1 the `FR_HZ` tone from b/) with EXT-X-DISCONTINUITY between
    them; both runs start at the same timestamps, so they restart at the join. In fMP4 each run
    has its own init section and a new EXT-X-MAP follows the discontinuity. The joined playlist
    is written by hand from the two ffmpeg playlists (ad insertion stitches this way)."""
    name = name or ("discontinuity_fmp4" if fmp4 else "discontinuity_ts")
    specs = {"a": AudioSpec(EN_HZ), "b": AudioSpec(FR_HZ)}
    seconds = 3.0

    def make(work: Path) -> None:
        body: list[str] = []
        header: list[str] = []
        for run, spec in specs.items():
            options = hls_options(work, "a:0,name:" + run, fmp4)
            del options["master_pl_name"]
            encode_streams(work / "%v" / "index.m3u8", "hls", options, audios=(spec,), seconds=seconds)
            lines = (work / run / "index.m3u8").read_text().splitlines()
            start = next(i for i, line in enumerate(lines) if line.startswith(("#EXTINF", "#EXT-X-MAP")))
            header = header or [
                line for line in lines[:start] if not line.startswith("#EXT-X-TARGETDURATION")
            ]
            if body:
                body.append("#EXT-X-DISCONTINUITY")
            body += [_prefix(line, run) for line in lines[start:] if line != "#EXT-X-ENDLIST"]
        target = max(round(float(line[8:].split(",")[0])) for line in body if line.startswith("#EXTINF:"))
        text = [*header, f"#EXT-X-TARGETDURATION:{target}", *body, "#EXT-X-ENDLIST"]
        (work / "index.m3u8").write_text("\n".join(text) + "\n")

    root = build_once(root, name, {"rw": REALWORLD_VERSION, "fmp4": fmp4, "seconds": seconds}, make)
    tones = tuple(spec.base_hz for spec in specs.values())
    track = make_track(root, "audio", f"{name}/index.m3u8", "audio", spec=specs["a"], tones_hz=tones)
    fixture = finish_fixture(
        root, name, {"audio": track}, packager="ffmpeg hls muxer, two runs; joined by hand"
    )
    return replace(fixture, entry=f"{name}/index.m3u8")


def _prefix(line: str, run: str) -> str:
    """`line` with its URI (a segment line, or EXT-X-MAP's) made relative to the joined playlist."""
    if line.startswith("#EXT-X-MAP:"):
        return re.sub(r'URI="([^"]+)"', lambda m: f'URI="{run}/{m.group(1)}"', line)
    return line if line.startswith("#") or not line else f"{run}/{line}"


#: The NAMEs of the hand-written Apple-style master's renditions, by track.
APPLE_NAMES = {"en": "English", "fr": "Français", "en51": "English 5.1"}


def build_apple_style(root: str | Path, *, name: str = "apple_style_ts") -> RealWorldFixture:
    """A master written by hand after Apple's published example masters (bipbop 16x9 and the
    advanced stream examples): video variants with AUDIO="aud1" and no CODECS; a URI-less
    DEFAULT=YES English rendition (its audio, `EN_HZ`, is muxed in the variants), and alternates
    with URIs: French stereo (`FR_HZ`, CHANNELS="2") and English 5.1 (`EN_HZ`, 6-channel AAC,
    CHANNELS="6"). The media are ffmpeg's (one hls muxer run, no master). Tracks: "v180" and
    "v90" (muxed), "fr", "en51"; "en" is the URI-less rendition, so it has no track."""
    audios = (
        AudioSpec(EN_HZ),
        AudioSpec(EN_HZ),
        AudioSpec(FR_HZ),
        AudioSpec(EN_HZ, channels=6, bitrate=192_000),
    )
    vmap = "v:0,a:0,name:v180 v:1,a:1,name:v90 a:2,name:fr a:3,name:en51"

    def make(work: Path) -> None:
        options = hls_options(work, vmap, False)
        del options["master_pl_name"]
        encode_streams(
            work / "%v" / "index.m3u8", "hls", options, videos=VIDEO_LADDER, audios=audios, seconds=CONTENT_S
        )
        lines = [
            "#EXTM3U",
            "#EXT-X-VERSION:4",
            "#EXT-X-INDEPENDENT-SEGMENTS",
            f'#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud1",LANGUAGE="en",NAME="{APPLE_NAMES["en"]}",'
            'AUTOSELECT=YES,DEFAULT=YES,CHANNELS="2"',
            f'#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud1",LANGUAGE="fr",NAME="{APPLE_NAMES["fr"]}",'
            'AUTOSELECT=YES,DEFAULT=NO,CHANNELS="2",URI="fr/index.m3u8"',
            f'#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud1",LANGUAGE="en",NAME="{APPLE_NAMES["en51"]}",'
            'AUTOSELECT=YES,DEFAULT=NO,CHANNELS="6",URI="en51/index.m3u8"',
        ]
        for video, key in zip(VIDEO_LADDER, ("v180", "v90"), strict=True):
            peak, average = _bandwidths(work / key / "index.m3u8")
            lines += [
                f"#EXT-X-STREAM-INF:BANDWIDTH={peak},AVERAGE-BANDWIDTH={average},"
                f'RESOLUTION={video.width}x{video.height},FRAME-RATE=10.000,AUDIO="aud1"',
                f"{key}/index.m3u8",
            ]
        (work / "master.m3u8").write_text("\n".join(lines) + "\n")

    root = build_once(root, name, {"rw": REALWORLD_VERSION, "vmap": vmap}, make)
    tracks = {
        key: make_track(root, key, f"{name}/{key}/index.m3u8", kind, spec=spec, language=lang)
        for key, kind, spec, lang in (
            ("v180", "muxed", audios[0], "en"),
            ("v90", "muxed", audios[1], "en"),
            ("fr", "audio", audios[2], "fr"),
            ("en51", "audio", audios[3], "en"),
        )
    }
    return finish_fixture(
        root, name, tracks, packager="hand-written master after Apple's examples; ffmpeg media"
    )


DEFINE_TOKEN = "s3cr3t"  # the `token` query parameter the EXT-X-DEFINE copy must be opened with


def build_define(root: str | Path, *, name: str = "define_ts") -> RealWorldFixture:
    """`build_renditions` (TS) rewritten with EXT-X-DEFINE (RFC 8216bis, version 8): the master
    defines NAME="group" (the audio GROUP-ID) and NAME="media" (the path to the renditions
    folder), takes QUERYPARAM="token" and appends ``?token={$token}`` to every URI; each media
    playlist IMPORTs "media" and names its segments ``{$media}/TRACK/seg_NNN.ts``. Open `url()`
    (the entry with ``?token=DEFINE_TOKEN``). Tracks are the renditions' with these playlists; the
    segments are the renditions' own files. Written by hand: no packager here writes EXT-X-DEFINE."""
    source = build_renditions(root)
    src = source.folder

    def make(work: Path) -> None:
        master = (src / "master.m3u8").read_text()
        master = master.replace("#EXT-X-VERSION:3", "#EXT-X-VERSION:8")
        defines = [
            '#EXT-X-DEFINE:NAME="group",VALUE="group_aud"',
            f'#EXT-X-DEFINE:NAME="media",VALUE="../../{source.name}"',
            '#EXT-X-DEFINE:QUERYPARAM="token"',
        ]
        master = master.replace("#EXT-X-VERSION:8\n", "#EXT-X-VERSION:8\n" + "\n".join(defines) + "\n", 1)
        master = master.replace('"group_aud"', '"{$group}"')
        master = re.sub(r'URI="([^"]+)"', r'URI="\1?token={$token}"', master)
        master = re.sub(r"(?m)^([^#\n].*\.m3u8)$", r"\1?token={$token}", master)
        (work / "master.m3u8").write_text(master)
        for key in source.tracks:
            text = (src / key / "index.m3u8").read_text().replace("#EXT-X-VERSION:3", "#EXT-X-VERSION:8")
            text = text.replace("#EXT-X-VERSION:8\n", '#EXT-X-VERSION:8\n#EXT-X-DEFINE:IMPORT="media"\n', 1)
            text = re.sub(r"(?m)^(seg_\d+\.ts)$", rf"{{$media}}/{key}/\1", text)
            (work / key).mkdir()
            (work / key / "index.m3u8").write_text(text)

    root = build_once(root, name, {"rw": REALWORLD_VERSION, "source": source.name}, make)
    tracks = {key: replace(t, playlist=f"{name}/{key}/index.m3u8") for key, t in source.tracks.items()}
    fixture = finish_fixture(root, name, tracks, packager="ffmpeg hls muxer; EXT-X-DEFINE by hand")
    return replace(fixture, video_paths=video_paths(tracks), query=f"token={DEFINE_TOKEN}")


def build_realworld(root: str | Path) -> dict[str, RealWorldFixture]:
    """Every real-world fixture with default parameters, by name, all under `root`."""
    built = [
        build_renditions(root),
        build_renditions(root, fmp4=True),
        build_renditions(root, single_file=True),
        build_renditions(root, fmp4=True, single_file=True),
        build_audio_ladder(root),
        build_audio_ladder(root, fmp4=True),
        build_muxed_ladder(root),
        build_packed(root, fmt="adts"),
        build_packed(root, fmt="mp3"),
        build_discontinuity(root),
        build_discontinuity(root, fmp4=True),
        build_gaps(root),
        build_gaps(root, every_variant=True),
        build_apple_style(root),
        build_define(root),
    ]
    return {fixture.name: fixture for fixture in built}
