"""Playlists as other tools write them: the corpus in tests/playlists and what `parse` makes of each.

The corpus holds the examples of RFC 8216 §8, masters as Apple's examples, Shaka
Packager and Bento4 write them, and playlists written by hand around every tag
RFC 8216 and its successor (8216bis) define (EXT-X-DEFINE, DRM keys, gaps), with unknown tags and
attributes, odd case and whitespace, CRLF and byte-order marks. Each file has one
row in `CORPUS`: accepted (segment count and duration, or the variants), or
refused with the exact error class, a message and the line it names. Unknown tags
and attributes are ignored (RFC 8216 §4.2) and a tag the library does not use
never fails a playlist; whatever else happens, only `HlsError` leaves `parse`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kithara_hls.errors import HlsError, PlaylistParseError, UnsupportedEncryption
from kithara_hls.playlist import ByteRange, Key, MasterPlaylist, MediaPlaylist, parse, parse_media

CORPUS_DIR = Path(__file__).parent / "playlists"
# http, so that the RFC's examples may name http and https URIs alike (no downgrade).
BASE = "http://media.example.com/corpus/"


@dataclass(frozen=True)
class Media:
    """Accepted as a media playlist of `segments` segments lasting `duration` seconds."""

    segments: int
    duration: float
    media_sequence: int = 0


@dataclass(frozen=True)
class Master:
    """Accepted as a master: its variants' URIs (relative to BASE) and BANDWIDTH, lowest first.

    renditions: how many of its EXT-X-MEDIA tags make a `Rendition`.
    """

    variants: tuple[tuple[str, int], ...]
    renditions: int = 0


@dataclass(frozen=True)
class Refused:
    """Refused with exactly `error`, a message holding `message`, naming line `lineno` (None: no line)."""

    error: type[HlsError]
    message: str
    lineno: int | None = None


LIVE = "live playlists are not supported"
NO_SEGMENTS = "the playlist has no segments"
NO_VARIANTS = "the master playlist has no variants"
RFC_BANDWIDTHS = [65000, 1280000, 2560000, 7680000]  # the ladder of RFC 8216 §8.5 to §8.7

CORPUS: dict[str, Media | Master | Refused] = {
    # RFC 8216 §8, as printed (8.7 and 8.8 with their folded lines joined).
    "rfc8216-8.2-simple-media.m3u8": Media(3, 21.021),
    "rfc8216-8.3-live-media.m3u8": Refused(PlaylistParseError, LIVE),
    "rfc8216-8.4-encrypted-media.m3u8": Refused(PlaylistParseError, LIVE),
    "rfc8216-8.4-encrypted-media-ended.m3u8": Media(4, 46.166, media_sequence=7794),
    "rfc8216-8.5-master.m3u8": Master(
        (
            ("http://example.com/audio-only.m3u8", 65000),
            ("http://example.com/low.m3u8", 1280000),
            ("http://example.com/mid.m3u8", 2560000),
            ("http://example.com/hi.m3u8", 7680000),
        )
    ),
    "rfc8216-8.6-master-iframes.m3u8": Master(
        (
            ("audio-only.m3u8", 65000),
            ("low/audio-video.m3u8", 1280000),
            ("mid/audio-video.m3u8", 2560000),
            ("hi/audio-video.m3u8", 7680000),
        )
    ),
    "rfc8216-8.7-audio-alternates.m3u8": Master(
        (
            ("main/english-audio.m3u8", 65000),
            ("low/video-only.m3u8", 1280000),
            ("mid/video-only.m3u8", 2560000),
            ("hi/video-only.m3u8", 7680000),
        ),
        renditions=3,
    ),
    "rfc8216-8.8-video-alternates.m3u8": Master(
        (
            ("low/main/audio-video.m3u8", 1280000),
            ("mid/main/audio-video.m3u8", 2560000),
            ("hi/main/audio-video.m3u8", 7680000),
        ),
        renditions=9,
    ),
    # Masters as packagers write them: audio in EXT-X-MEDIA renditions.
    "master-apple-advanced.m3u8": Master(
        (("v5/prog_index.m3u8", 2177116), ("v8/prog_index.m3u8", 6230533)), renditions=5
    ),
    "master-apple-muxed-default-audio.m3u8": Master(
        (
            ("gear0/prog_index.m3u8", 41457),
            ("gear1/prog_index.m3u8", 263851),
            ("gear2/prog_index.m3u8", 577610),
        ),
        renditions=3,
    ),
    "master-apple-no-codecs.m3u8": Master(
        (
            ("gear1/prog_index.m3u8", 800000),
            ("gear2/prog_index.m3u8", 1600000),
            ("gear3/prog_index.m3u8", 3200000),
        ),
        renditions=3,
    ),
    "master-shaka-packager.m3u8": Master(
        (("stream_2.m3u8", 1105129), ("stream_3.m3u8", 2632261)), renditions=3
    ),
    "master-bento4.m3u8": Master(
        (("audio/en/aac/media.m3u8", 134400), ("video/avc1/1/media.m3u8", 1456312)), renditions=1
    ),
    # Tags the library does not use: never a failure.
    "media-daterange.m3u8": Media(3, 16.5),
    "media-program-date-time.m3u8": Media(2, 8.0),
    "media-program-date-time-bad.m3u8": Media(3, 12.0),
    "master-program-date-time-bad.m3u8": Master((("lo.m3u8", 500000), ("hi.m3u8", 900000))),
    "master-session-tags.m3u8": Master(
        (("cdn-a/lo.m3u8", 1280000), ("cdn-b/lo.m3u8", 1280000), ("cdn-a/hi.m3u8", 2560000))
    ),
    "media-start-independent.m3u8": Media(2, 8.0, media_sequence=100),
    "media-gap.m3u8": Media(4, 16.0),
    "media-bitrate.m3u8": Media(3, 10.0),
    "media-low-latency-ended.m3u8": Media(2, 8.00016, media_sequence=266),
    "media-unknown-tags.m3u8": Media(2, 12.0),
    "media-unknown-attributes.m3u8": Media(2, 12.0),
    "master-unknown-attributes.m3u8": Master((("lo.m3u8", 800000), ("hi.m3u8", 1600000)), renditions=1),
    "master-i-frame-garbage-bandwidth.m3u8": Master((("video/360p.m3u8", 800000),)),
    "media-comments.m3u8": Media(2, 12.0),
    "media-discontinuity.m3u8": Media(4, 35.0),
    "media-fmp4-byterange.m3u8": Media(3, 9.5),
    "media-without-target-duration.m3u8": Media(2, 7.75),
    # Values read liberally: a decimal fraction for BANDWIDTH, odd RESOLUTION, PLAYLIST-TYPE.
    "master-float-bandwidth.m3u8": Master((("lo.m3u8", 1280001), ("hi.m3u8", 2560000))),
    "master-resolution-odd.m3u8": Master((("a.m3u8", 800000), ("b.m3u8", 900000), ("c.m3u8", 1000000))),
    "master-stream-inf-without-uri.m3u8": Master((("b.m3u8", 900000),)),
    "media-playlist-type-odd.m3u8": Media(1, 10.0),
    # Text forms.
    "media-crlf.m3u8": Media(3, 13.5),
    "media-cr-only.m3u8": Media(1, 6.0),
    "media-bom.m3u8": Media(2, 12.0),
    "media-bom-crlf-bad-extinf.m3u8": Refused(PlaylistParseError, "invalid EXTINF", 5),
    "media-lowercase-attributes-whitespace.m3u8": Media(3, 14.25, media_sequence=5),
    "media-lowercase-tags.m3u8": Refused(PlaylistParseError, "no #EXTM3U header; tags are upper case"),
    "media-lowercase-segment-tags.m3u8": Refused(PlaylistParseError, NO_SEGMENTS),
    # Complete or live: ENDLIST, or PLAYLIST-TYPE VOD; the real problem first.
    "media-vod-without-endlist.m3u8": Media(3, 27.5),
    "media-event-ended.m3u8": Media(2, 20.0),
    "media-event-without-endlist.m3u8": Refused(PlaylistParseError, LIVE),
    "media-low-latency-live.m3u8": Refused(PlaylistParseError, LIVE),
    "media-skip-delta-update.m3u8": Refused(PlaylistParseError, LIVE),
    "media-no-segments.m3u8": Refused(PlaylistParseError, NO_SEGMENTS),
    "media-no-segments-no-endlist.m3u8": Refused(PlaylistParseError, NO_SEGMENTS),
    "header-only.m3u8": Refused(PlaylistParseError, NO_SEGMENTS),
    "master-no-variants.m3u8": Refused(PlaylistParseError, NO_VARIANTS),
    "master-session-data-only.m3u8": Refused(PlaylistParseError, NO_VARIANTS),
    "media-i-frames-only.m3u8": Refused(PlaylistParseError, "I-frame playlists are not supported"),
    # Broken values of tags the library uses: the line and the attribute named.
    "master-garbage-bandwidth.m3u8": Refused(
        PlaylistParseError, "EXT-X-STREAM-INF needs a positive BANDWIDTH, not 'fast'", 4
    ),
    "master-no-bandwidth.m3u8": Refused(PlaylistParseError, "needs a positive BANDWIDTH, not none", 2),
    "media-extinf-bad.m3u8": Refused(PlaylistParseError, "invalid EXTINF", 5),
    "media-key-bad-iv.m3u8": Refused(PlaylistParseError, "IV must be 0x", 5),
    "media-byterange-without-offset.m3u8": Refused(PlaylistParseError, "BYTERANGE without offset", 3),
    # Encryption the library cannot decrypt: the method (and the DRM system) named.
    "media-sample-aes.m3u8": Refused(
        UnsupportedEncryption, "encrypted with SAMPLE-AES (FairPlay DRM), which kithara-hls cannot play", 3
    ),
    "media-sample-aes-identity.m3u8": Refused(
        UnsupportedEncryption, "encrypted with SAMPLE-AES, which kithara-hls cannot play", 4
    ),
    "media-fairplay.m3u8": Refused(UnsupportedEncryption, "encrypted with SAMPLE-AES (FairPlay DRM)", 6),
    # Of several keys for a segment, with no identity key, the last one is named.
    "media-multi-drm-cenc.m3u8": Refused(
        UnsupportedEncryption, "encrypted with SAMPLE-AES-CTR (Widevine DRM)", 7
    ),
    "media-multi-drm-with-identity-key.m3u8": Media(2, 12.0),
    "master-session-key-fairplay.m3u8": Master((("video/v.m3u8", 2000000),), renditions=1),
    # EXT-X-DEFINE (RFC 8216bis): substituted before parsing, in URI lines and quoted values.
    "media-define-variable-in-uri.m3u8": Media(2, 8.0),
    "master-define-variable-in-uri.m3u8": Master((("lo.m3u8?token=abc", 500000),)),
    "media-define-unused.m3u8": Refused(
        PlaylistParseError, "EXT-X-DEFINE IMPORT 'token': not loaded from a master playlist", 4
    ),
    "media-define-undefined.m3u8": Refused(PlaylistParseError, "variable '{$host}' is not defined", 5),
    "master-define-queryparam-missing.m3u8": Refused(
        PlaylistParseError, "EXT-X-DEFINE QUERYPARAM 'token': the playlist URL has no such query parameter", 2
    ),
    "master-define-import.m3u8": Refused(
        PlaylistParseError, "EXT-X-DEFINE IMPORT 'token' is not allowed in a master playlist", 2
    ),
}
# The query of the URL a corpus playlist is read from, for its EXT-X-DEFINE QUERYPARAM.
QUERIES = {"master-define-variable-in-uri.m3u8": "?token=abc", "master-session-tags.m3u8": "?auth=x"}


def load(name: str) -> MasterPlaylist | MediaPlaylist:
    return parse((CORPUS_DIR / name).read_bytes(), BASE + name + QUERIES.get(name, ""))


def test_the_table_covers_the_corpus() -> None:
    assert sorted(p.name for p in CORPUS_DIR.glob("*.m3u8")) == sorted(CORPUS)


@pytest.mark.parametrize("name", CORPUS)
def test_corpus(name: str) -> None:
    expected = CORPUS[name]
    if isinstance(expected, Refused):
        with pytest.raises(HlsError) as info:
            load(name)
        assert type(info.value) is expected.error
        assert expected.message in str(info.value)
        if expected.lineno is not None:
            assert f"(line {expected.lineno})" in str(info.value)
        assert getattr(info.value, "lineno", None) == expected.lineno
        return
    result = load(name)
    if isinstance(expected, Master):
        assert isinstance(result, MasterPlaylist)
        assert tuple((v.uri.removeprefix(BASE), v.bandwidth) for v in result.variants) == expected.variants
        assert len(result.renditions) == expected.renditions
        return
    assert isinstance(result, MediaPlaylist)
    assert len(result.segments) == expected.segments
    assert result.duration == pytest.approx(expected.duration)
    assert result.media_sequence == expected.media_sequence
    assert [s.sequence for s in result.segments] == [
        expected.media_sequence + i for i in range(expected.segments)
    ]


def test_no_message_names_a_parser_exception() -> None:
    for name, expected in CORPUS.items():
        if isinstance(expected, Refused):
            with pytest.raises(HlsError) as info:
                load(name)
            assert "malformed playlist" not in str(info.value), name


def test_rfc_encrypted_example_keys() -> None:
    playlist = parse_media((CORPUS_DIR / "rfc8216-8.4-encrypted-media-ended.m3u8").read_bytes(), BASE)
    keys = [s.key.uri if s.key else None for s in playlist.segments]
    assert keys == ["https://priv.example.com/key.php?r=52"] * 3 + ["https://priv.example.com/key.php?r=53"]
    # No IV attribute: the IV is the media sequence number of each segment.
    assert playlist.segments[0].iv == (7794).to_bytes(16, "big")


def test_the_rfc_masters_share_one_ladder() -> None:
    for name in (
        "rfc8216-8.5-master.m3u8",
        "rfc8216-8.6-master-iframes.m3u8",
        "rfc8216-8.7-audio-alternates.m3u8",
    ):
        result = load(name)
        assert isinstance(result, MasterPlaylist)
        assert [v.bandwidth for v in result.variants] == RFC_BANDWIDTHS
        # The RFC's AVERAGE-BANDWIDTH (8.5) ranks as it reads; the audio-only variant stays lowest.
        assert result.variants[0].codecs == "mp4a.40.5"


def test_values_read_liberally() -> None:
    result = load("master-float-bandwidth.m3u8")
    assert isinstance(result, MasterPlaylist)
    assert [(v.bandwidth, v.average_bandwidth) for v in result.variants] == [
        (1280001, 1000000),
        (2560000, None),
    ]
    result = load("master-resolution-odd.m3u8")
    assert isinstance(result, MasterPlaylist)
    assert [v.resolution for v in result.variants] == [(640, 360), (1920, 1080), None]
    result = load("master-unknown-attributes.m3u8")
    assert isinstance(result, MasterPlaylist)
    lo, hi = result.variants
    assert (lo.average_bandwidth, lo.codecs, lo.resolution) == (None, None, None)
    assert (hi.average_bandwidth, hi.codecs, hi.resolution) == (1200000, "mp4a.40.2,avc1.4d401e", (1280, 720))


def test_lowercase_attributes_and_whitespace() -> None:
    result = load("media-lowercase-attributes-whitespace.m3u8")
    assert isinstance(result, MediaPlaylist)
    assert [s.uri.removeprefix(BASE) for s in result.segments] == ["a.ts", "b.ts", "c.mp4"]
    assert {s.key for s in result.segments} == {Key("AES-128", BASE + "k.bin", (1).to_bytes(16, "big"))}
    init = result.segments[2].init
    assert init is not None and (init.uri, init.byterange) == (BASE + "init.mp4", ByteRange(0, 100))


def test_unknown_attributes_leave_the_used_ones() -> None:
    result = load("media-unknown-attributes.m3u8")
    assert isinstance(result, MediaPlaylist)
    a, b = result.segments
    assert a.key == Key("AES-128", BASE + "k.bin", (0x0102).to_bytes(16, "big"))
    assert b.key is None
    assert a.init is not None and a.init.uri == BASE + "init.mp4" and a.init.byterange is None
    assert b.init is not None and (b.init.uri, b.init.byterange) == (BASE + "init2.mp4", ByteRange(0, 500))


def test_gap_segments_stay_listed() -> None:
    result = load("media-gap.m3u8")
    assert isinstance(result, MediaPlaylist)
    assert [(s.uri.removeprefix(BASE), s.gap) for s in result.segments] == [
        ("a.ts", False),
        ("b.ts", True),
        ("c.ts", True),
        ("d.ts", False),
    ]


def test_low_latency_parts_are_ignored() -> None:
    result = load("media-low-latency-ended.m3u8")
    assert isinstance(result, MediaPlaylist)
    assert [s.uri.removeprefix(BASE) for s in result.segments] == [
        "fileSequence266.mp4",
        "fileSequence267.mp4",
    ]
    assert all(s.init is not None and s.init.uri == BASE + "init.mp4" for s in result.segments)


_SEEDS = sorted(CORPUS)
_LINE = st.sampled_from(
    [
        "",
        "#EXT-X-FOO:X=1,BAD",
        "#EXT-X-KEY:METHOD=AES-128,URI=k,FOO",
        "#EXT-X-MAP:URI=i.mp4,X=1",
        "#EXT-X-STREAM-INF:BANDWIDTH=1.5,FRAME-RATE=x",
        "#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=x",
        "#EXT-X-PLAYLIST-TYPE:VOD",
        "#EXT-X-ENDLIST",
        "#EXTINF:1,",
        "#EXT-X-BYTERANGE:10@0",
        "#EXT-X-DEFINE:NAME=x,VALUE=y",
        "{$x}.ts",
        "a.ts",
    ]
)


@settings(max_examples=300, deadline=None, database=None)
@given(
    name=st.sampled_from(_SEEDS),
    edits=st.lists(st.tuples(st.integers(0, 60), st.booleans(), _LINE), max_size=5),
)
def test_edited_corpus_only_hls_errors(name: str, edits: list[tuple[int, bool, str]]) -> None:
    lines = (CORPUS_DIR / name).read_text(encoding="utf-8-sig").splitlines()
    for at, delete, line in edits:
        i = 1 + at % len(lines)  # keep #EXTM3U
        if delete and i < len(lines):
            del lines[i]
        else:
            lines.insert(i, line)
    try:
        parse("\n".join(lines), BASE + name, max_segments=50)
    except HlsError as exc:
        assert "malformed playlist" not in str(exc)
