"""Playlists as real packagers write them: renditions, gaps, variables, DRM.

The masters are modelled on published output: Apple's example streams (a
URI-less default audio rendition plus alternates, CHANNELS "2" and "6", no
CODECS on some), Shaka Packager (audio always in renditions with a URI, mp4a
listed on every video variant) and Bento4 (audio renditions and an audio-only
variant).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kithara_hls.playlist import MasterPlaylist, Rendition, Variant, parse_master, parse_media

URL = "https://media.example.com/stream/master.m3u8"
BASE = "https://media.example.com/stream/"
CORPUS = Path(__file__).parent / "playlists"

# Apple's advanced example (bipbop_adv_example_hevc) cut down: audio groups for stereo AAC
# and 5.1 AC-3 / E-AC-3, a closed-caption group, video variants naming them.
APPLE = (CORPUS / "master-apple-advanced.m3u8").read_text()

# Apple's basic example (bipbop_4x3): the default rendition has no URI (its audio is muxed in
# the variants); the alternate has one. CODECS entries are written with a space after the comma.
APPLE_MUXED_DEFAULT = (CORPUS / "master-apple-muxed-default-audio.m3u8").read_text()


def test_apple_renditions_are_listed_in_order() -> None:
    master = parse_master(APPLE, URL)
    assert [(r.type, r.group, r.channels) for r in master.renditions] == [
        ("AUDIO", "a1", "2"),
        ("AUDIO", "a2", "6"),
        ("AUDIO", "a3", "16/JOC"),
        ("CLOSED-CAPTIONS", "cc1", None),
        ("SUBTITLES", "sub1", None),
    ]
    a1, a2, a3, cc, sub = master.renditions
    assert a1 == Rendition(
        type="AUDIO",
        group="a1",
        name="English",
        language="en",
        channels="2",
        default=True,
        autoselect=True,
        uri=BASE + "a1/prog_index.m3u8",
        codecs="mp4a.40.2",
    )
    assert (a2.codecs, a3.codecs) == ("ac-3", "ec-3")
    assert cc.uri is None and cc.codecs is None
    assert sub.uri == BASE + "s1/en/prog_index.m3u8" and sub.codecs is None


def test_apple_variants_name_their_groups() -> None:
    master = parse_master(APPLE, URL)
    # Variants stay unique by URI: the first STREAM-INF of v5 (audio group a1) is kept.
    assert [(v.uri.removeprefix(BASE), v.audio, v.subtitles, v.video) for v in master.variants] == [
        ("v5/prog_index.m3u8", "a1", "sub1", None),
        ("v8/prog_index.m3u8", "a1", "sub1", None),
    ]
    assert not any(v.audio_only for v in master.variants)


def test_a_default_rendition_without_uri_is_muxed_audio() -> None:
    master = parse_master(APPLE_MUXED_DEFAULT, URL)
    first, second, subs = master.renditions
    assert (first.name, first.uri, first.default, first.autoselect) == ("BipBop Audio 1", None, True, True)
    assert (second.uri, second.default, second.autoselect) == (
        BASE + "alternate_audio_aac_sinewave/prog_index.m3u8",
        False,
        False,
    )
    assert first.codecs == second.codecs == "mp4a.40.2"
    assert first.language == "eng" and subs.type == "SUBTITLES"
    assert [v.audio_only for v in master.variants] == [True, False, False]


@pytest.mark.parametrize(
    ("codecs", "audio_only"),
    [
        (None, False),
        ("", False),
        ("...", False),  # RFC 8216's examples: a placeholder, not an audio codec
        ("stpp.ttml.im1t", False),
        ("mp4a.40.2", True),
        ("mp4a.40.34", True),
        ("ec-3", True),
        ("Opus", True),
        ("fLaC", True),
        ("avc1.64001f,mp4a.40.2", False),
        ("hvc1.2.4.L123.B0", False),
        ("mp4a.40.2, dvh1.05.06", False),
        ("av01.0.04M.08", False),
        ("vp09.00.10.08", False),
    ],
)
def test_audio_only_needs_codecs_without_video(codecs: str | None, audio_only: bool) -> None:
    assert Variant(URL, 1, None, codecs, None).audio_only is audio_only


def test_gap_segments_are_marked() -> None:
    text = (
        "#EXTM3U\n#EXT-X-TARGETDURATION:4\n"
        "#EXTINF:4,\na.ts\n"
        "#EXT-X-GAP\n#EXTINF:4,\nb.ts\n"  # before its EXTINF
        "#EXTINF:4,\n#EXT-X-GAP\nc.ts\n"  # between EXTINF and URI
        "#EXTINF:4,\nd.ts\n"
        "#EXT-X-GAP\n#EXT-X-ENDLIST\n"  # dangling: marks nothing
    )
    playlist = parse_media(text, URL)
    assert [(s.uri.removeprefix(BASE), s.gap) for s in playlist.segments] == [
        ("a.ts", False),
        ("b.ts", True),
        ("c.ts", True),
        ("d.ts", False),
    ]
    assert playlist.duration == 16.0


def test_a_master_without_media_tags_has_no_renditions() -> None:
    master = parse_master("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1000\nv.m3u8\n", URL)
    assert isinstance(master, MasterPlaylist)
    assert (master.renditions, master.variables) == ((), ())
