"""Playlists as real packagers write them: renditions, gaps, variables, DRM.

The masters are modelled on published output: Apple's example streams (a
URI-less default audio rendition plus alternates, CHANNELS "2" and "6", no
CODECS on some), Shaka Packager (audio always in renditions with a URI, mp4a
listed on every video variant) and Bento4 (audio renditions and an audio-only
variant).
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest

import kithara_hls
from kithara_hls import CacheOptions, HlsOptions, NetworkOptions
from kithara_hls.errors import InvalidUrl, KeyProcessingError, PlaylistParseError, UnsupportedEncryption
from kithara_hls.playlist import MasterPlaylist, Rendition, Variant, parse_master, parse_media
from kithara_hls.testing import Origin

URL = "https://media.example.com/stream/master.m3u8"
BASE = "https://media.example.com/stream/"
CORPUS = Path(__file__).parent / "playlists"

# Apple's advanced example (bipbop_adv_example_hevc) cut down: audio groups for stereo AAC
# and 5.1 AC-3 / E-AC-3, a closed-caption group, video variants naming them.
APPLE = (CORPUS / "master-apple-advanced.m3u8").read_text()

# Apple's basic example (bipbop_4x3): the default rendition has no URI (its audio is muxed in
# the variants); the alternate has one. CODECS entries are written with a space after the comma.
APPLE_MUXED_DEFAULT = (CORPUS / "master-apple-muxed-default-audio.m3u8").read_text()

# As Apple's authoring examples without CODECS: a URI-less default rendition (muxed stereo), a
# 5.1 and a French alternate with URIs.
APPLE_NO_CODECS = (CORPUS / "master-apple-no-codecs.m3u8").read_text()


def test_apple_without_codecs() -> None:
    master = parse_master(APPLE_NO_CODECS, URL)
    assert [(r.name, r.channels, r.default, r.uri is None, r.codecs) for r in master.renditions] == [
        ("English", "2", True, True, None),
        ("English (5.1)", "6", False, False, None),
        ("Français", "2", False, False, None),
    ]
    assert [(v.codecs, v.audio, v.audio_only) for v in master.variants] == [(None, "aac", False)] * 3


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


# -- EXT-X-MEDIA quirks -------------------------------------------------------------------------


def master_with(*media: str, stream_inf: str = 'BANDWIDTH=1000,AUDIO="aud"') -> str:
    return (
        "#EXTM3U\n"
        + "".join(f"#EXT-X-MEDIA:{m}\n" for m in media)
        + f"#EXT-X-STREAM-INF:{stream_inf}\nv.m3u8\n"
    )


def test_every_rendition_type_is_listed() -> None:
    master = parse_master(
        master_with(
            'TYPE=AUDIO,GROUP-ID="aud",NAME="a",URI="a.m3u8"',
            'TYPE=VIDEO,GROUP-ID="vid",NAME="v",URI="v2.m3u8"',
            'TYPE=SUBTITLES,GROUP-ID="sub",NAME="s",URI="s.m3u8"',
            'TYPE=CLOSED-CAPTIONS,GROUP-ID="cc",NAME="c",INSTREAM-ID="CC1"',
        ),
        URL,
    )
    assert [r.type for r in master.renditions] == ["AUDIO", "VIDEO", "SUBTITLES", "CLOSED-CAPTIONS"]


def test_attribute_quirks_are_read() -> None:
    master = parse_master(
        master_with(
            'type=audio,group-id="aud",name="English",default=yes,autoselect=no,language="en-US",uri="en.m3u8"',
            'TYPE=AUDIO,GROUP-ID="aud",NAME="Deutsch",DEFAULT=No,AUTOSELECT=Yes,X-FOO="bar",URI="de.m3u8",BAD',
            'TYPE=AUDIO,GROUP-ID="aud",NAME="Bare"',
        ),
        URL,
    )
    en, de, bare = master.renditions
    # DEFAULT=YES implies AUTOSELECT=YES (RFC 8216 §4.3.4.1), whatever AUTOSELECT says.
    assert (en.default, en.autoselect, en.language, en.uri) == (True, True, "en-US", BASE + "en.m3u8")
    assert (de.default, de.autoselect, de.uri) == (False, True, BASE + "de.m3u8")
    assert bare == Rendition("AUDIO", "aud", "Bare", None, None, False, False, None)


@pytest.mark.parametrize(
    "tag",
    [
        'GROUP-ID="aud",NAME="no type",URI="a.m3u8"',
        'TYPE=AUDIO,NAME="no group",URI="a.m3u8"',
        'TYPE=AUDIO,GROUP-ID="aud",URI="no-name.m3u8"',
        'TYPE=AUDIO,GROUP-ID="",NAME="empty group",URI="a.m3u8"',
        'TYPE=METADATA,GROUP-ID="aud",NAME="unknown type",URI="a.m3u8"',
    ],
)
def test_a_rendition_without_type_group_or_name_is_skipped(
    tag: str, caplog: pytest.LogCaptureFixture
) -> None:
    master = parse_master(master_with(tag, 'TYPE=AUDIO,GROUP-ID="aud",NAME="ok",URI="ok.m3u8"'), URL)
    assert [r.name for r in master.renditions] == ["ok"]
    assert len(master.variants) == 1
    assert "EXT-X-MEDIA on line 2 skipped" in caplog.text


def test_closed_captions_never_have_a_uri() -> None:
    master = parse_master(master_with('TYPE=CLOSED-CAPTIONS,GROUP-ID="cc",NAME="c",URI="cc.m3u8"'), URL)
    assert master.renditions[0].uri is None


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("http://media.example.com/a.m3u8", "downgrade"),
        ("file:///etc/passwd", "only http and https"),
        ("ftp://media.example.com/a.m3u8", "only http and https"),
    ],
)
def test_rendition_uris_are_checked(uri: str, message: str) -> None:
    with pytest.raises(InvalidUrl, match=message):
        parse_master(master_with(f'TYPE=AUDIO,GROUP-ID="aud",NAME="a",URI="{uri}"'), URL)


@pytest.mark.parametrize(
    ("codecs", "expected"),
    [
        ("avc1.64001f,mp4a.40.2", "mp4a.40.2"),
        ("avc1.64001f,mp4a.40.34", "mp4a.40.34"),  # MP3
        ("avc1.64001f,mp4a.6b", "mp4a.6b"),  # MP3, as some packagers write it
        ("hvc1.2.4.L123.B0,ec-3", "ec-3"),
        ("avc1.64001f,ac-3", "ac-3"),
        ("avc1.64001f,opus", "opus"),
        ("avc1.64001f,fLaC", "fLaC"),
        ("avc1.64001f,alac", "alac"),
        ("avc1.64001f", None),  # a video-only variant tells nothing about its audio group
        (None, None),
    ],
)
def test_audio_rendition_codecs_come_from_the_variants(codecs: str | None, expected: str | None) -> None:
    attrs = 'BANDWIDTH=1000,AUDIO="aud"' + (f',CODECS="{codecs}"' if codecs else "")
    master = parse_master(
        master_with('TYPE=AUDIO,GROUP-ID="aud",NAME="a",URI="a.m3u8"', stream_inf=attrs), URL
    )
    assert master.renditions[0].codecs == expected


# Shaka Packager: audio always in renditions with a URI; its CODECS list mp4a on every video
# variant; one audio group, and text in a SUBTITLES group.
SHAKA = (CORPUS / "master-shaka-packager.m3u8").read_text()

# Bento4 (mp4hls): an audio group with a URI, video variants naming it, and an audio-only
# variant for the audio alone (the I-frame playlists are ignored).
BENTO4 = (CORPUS / "master-bento4.m3u8").read_text()


def test_shaka_master() -> None:
    master = parse_master(SHAKA, URL)
    en, de, text = master.renditions
    assert (en.uri, en.language, en.default, en.codecs) == (BASE + "stream_0.m3u8", "en", True, "mp4a.40.2")
    assert (de.uri, de.language, de.default, de.autoselect) == (BASE + "stream_1.m3u8", "de", False, True)
    assert text.type == "SUBTITLES" and text.codecs is None
    assert [(v.audio, v.subtitles, v.audio_only) for v in master.variants] == [
        ("default-audio-group", "default-text-group", False)
    ] * 2


def test_bento4_master() -> None:
    master = parse_master(BENTO4, URL)
    (audio,) = master.renditions
    assert (audio.group, audio.uri, audio.codecs) == (
        "audio_aac",
        BASE + "audio/en/aac/media.m3u8",
        "mp4a.40.2",
    )
    assert [(v.uri.removeprefix(BASE), v.audio_only) for v in master.variants] == [
        ("audio/en/aac/media.m3u8", True),
        ("video/avc1/1/media.m3u8", False),
    ]


# -- EXT-X-DEFINE -------------------------------------------------------------------------------


def media_text(body: str, header: str = "") -> str:
    return "#EXTM3U\n#EXT-X-VERSION:8\n#EXT-X-TARGETDURATION:4\n" + header + body + "#EXT-X-ENDLIST\n"


def test_name_value_is_substituted_in_uri_lines_and_quoted_values() -> None:
    text = media_text(
        '#EXT-X-DEFINE:NAME="base",VALUE="https://cdn.example.com/v1"\n'
        '#EXT-X-DEFINE:NAME="k-id",VALUE="42"\n'
        '#EXT-X-MAP:URI="{$base}/init.mp4"\n'
        '#EXT-X-KEY:METHOD=AES-128,URI="{$base}/keys/{$k-id}",IV=0x1\n'
        "#EXTINF:4,\n{$base}/seg-{$k-id}.m4s\n"
    )
    (seg,) = parse_media(text, URL).segments
    assert seg.uri == "https://cdn.example.com/v1/seg-42.m4s"
    assert seg.init is not None and seg.init.uri == "https://cdn.example.com/v1/init.mp4"
    assert seg.key is not None and seg.key.uri == "https://cdn.example.com/v1/keys/42"


def test_master_variables_are_kept_for_import() -> None:
    text = (
        "#EXTM3U\n"
        '#EXT-X-DEFINE:NAME="cdn",VALUE="https://cdn.example.com"\n'
        '#EXT-X-DEFINE:QUERYPARAM="token"\n'
        '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",NAME="en",URI="{$cdn}/audio.m3u8?token={$token}"\n'
        '#EXT-X-STREAM-INF:BANDWIDTH=1000,AUDIO="aud"\n{$cdn}/video.m3u8?token={$token}\n'
    )
    master = parse_master(text, URL + "?token=a%2Fb%20c&other=1")
    assert master.variables == (("cdn", "https://cdn.example.com"), ("token", "a/b c"))
    assert master.renditions[0].uri == "https://cdn.example.com/audio.m3u8?token=a/b c"
    assert master.variants[0].uri == "https://cdn.example.com/video.m3u8?token=a/b c"
    media = parse_media(
        media_text(
            "#EXTINF:4,\n{$cdn}/a.ts?t={$token}\n",
            '#EXT-X-DEFINE:IMPORT="cdn"\n#EXT-X-DEFINE:IMPORT="token"\n',
        ),
        master.variants[0].uri,
        imports=dict(master.variables),
    )
    assert media.segments[0].uri == "https://cdn.example.com/a.ts?t=a/b c"


def test_define_lines_and_values_are_not_substituted_again() -> None:
    text = media_text(
        "#EXTINF:4,\n{$b}.ts\n", '#EXT-X-DEFINE:NAME="a",VALUE="x"\n#EXT-X-DEFINE:NAME="b",VALUE="{$a}y"\n'
    )
    assert parse_media(text, URL).segments[0].uri == BASE + "%7B$a%7Dy.ts".replace("%7B", "{").replace(
        "%7D", "}"
    )


def test_unquoted_attributes_and_comments_are_left_alone() -> None:
    text = media_text(
        "# a comment with {$nothing}\n#EXTINF:4,{$title}\na.ts\n", '#EXT-X-DEFINE:NAME="x",VALUE="1"\n'
    )
    assert parse_media(text, URL).segments[0].uri == BASE + "a.ts"


def test_a_playlist_without_define_is_untouched_by_substitution() -> None:
    text = media_text("#EXTINF:4,\na.ts\n")
    assert parse_media(text, URL).segments[0].uri == BASE + "a.ts"


@pytest.mark.parametrize(
    ("text", "message", "lineno"),
    [
        (media_text("#EXTINF:4,\n{$x}.ts\n"), "variable '{$x}' is not defined", 5),
        (media_text('#EXT-X-MAP:URI="{$x}.mp4"\n#EXTINF:4,\na.ts\n'), "variable '{$x}' is not defined", 4),
        (
            media_text(
                "#EXTINF:4,\n{$x}.ts\n",
                '#EXT-X-DEFINE:NAME="x",VALUE="1"\n#EXT-X-DEFINE:NAME="x",VALUE="2"\n',
            ),
            "variable 'x' is defined twice",
            5,
        ),
        (
            media_text("#EXTINF:4,\na.ts\n", '#EXT-X-DEFINE:IMPORT="x"\n'),
            "IMPORT 'x': not loaded from a master",
            4,
        ),
        (
            media_text("#EXTINF:4,\na.ts\n", '#EXT-X-DEFINE:QUERYPARAM="q"\n'),
            "QUERYPARAM 'q': the playlist URL",
            4,
        ),
        (
            media_text("#EXTINF:4,\na.ts\n", '#EXT-X-DEFINE:NAME="x"\n'),
            "needs NAME and VALUE, QUERYPARAM or IMPORT",
            4,
        ),
        (
            media_text("#EXTINF:4,\na.ts\n", '#EXT-X-DEFINE:NAME="a b",VALUE="1"\n'),
            "invalid variable name 'a b'",
            4,
        ),
    ],
)
def test_define_errors_name_the_variable_and_line(text: str, message: str, lineno: int) -> None:
    with pytest.raises(PlaylistParseError, match=re.escape(message)) as info:
        parse_media(text, URL)
    assert info.value.lineno == lineno


def test_an_import_the_master_lacks_is_an_error() -> None:
    text = media_text("#EXTINF:4,\na.ts\n", '#EXT-X-DEFINE:IMPORT="x"\n')
    with pytest.raises(PlaylistParseError, match="IMPORT 'x': not defined by the master playlist"):
        parse_media(text, URL, imports={"y": "1"})


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("http://evil.example.com/a.ts", InvalidUrl),  # https -> http: a downgrade
        ("file:///etc/passwd", InvalidUrl),
        ("data:text/plain,x", InvalidUrl),
        ("a.ts%0A%23EXT-X-ENDLIST", PlaylistParseError),  # a line break
        ("a.ts%22,URI=%22http://evil", PlaylistParseError),  # a double quote
        ("a%E2%80%A8.ts", PlaylistParseError),  # U+2028, a line break to str.splitlines
    ],
)
def test_a_variable_cannot_smuggle_a_uri_past_the_checks(value: str, error: type[Exception]) -> None:
    text = media_text('#EXT-X-MAP:URI="{$v}"\n#EXTINF:4,\n{$v}\n', '#EXT-X-DEFINE:QUERYPARAM="v"\n')
    with pytest.raises(error):
        parse_media(text, URL + "?v=" + value)


# -- Encryption the library cannot play ---------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "method", "system"),
    [
        ('METHOD=SAMPLE-AES,URI="https://k.example.com/k"', "SAMPLE-AES", None),
        ('METHOD=SAMPLE-AES-CTR,URI="https://k.example.com/k"', "SAMPLE-AES-CTR", None),
        ('METHOD=SAMPLE-AES-CENC,URI="https://k.example.com/k"', "SAMPLE-AES-CENC", None),
        ('METHOD=sample-aes,URI="skd://abc"', "SAMPLE-AES", "FairPlay"),
        (
            'METHOD=SAMPLE-AES,URI="skd://abc",KEYFORMAT="com.apple.streamingkeydelivery"',
            "SAMPLE-AES",
            "FairPlay",
        ),
        (
            'METHOD=SAMPLE-AES-CTR,URI="data:,x",KEYFORMAT="com.microsoft.playready"',
            "SAMPLE-AES-CTR",
            "PlayReady",
        ),
        (
            'METHOD=SAMPLE-AES-CTR,URI="data:text/plain;base64,AA",'
            'KEYFORMAT="urn:uuid:edef8ba9-79d6-4ace-a3c8-27dcd51d21ed"',
            "SAMPLE-AES-CTR",
            "Widevine",
        ),
        (
            'METHOD=AES-128,URI="https://k.example.com/k",KEYFORMAT="com.example.drm"',
            "AES-128",
            "com.example.drm",
        ),
        ('METHOD=AES-128,URI="skd://abc"', "AES-128", "FairPlay"),
        # A Widevine PSSH box in a data: URI, with no KEYFORMAT to name it.
        (
            'METHOD=SAMPLE-AES-CTR,URI="data:text/plain;base64,AAAAW3Bzc2gAAAAA7e+LqXnWSs6jyCfc1R0h7QAAADsIARIQ"',
            "SAMPLE-AES-CTR",
            "Widevine",
        ),
        ('METHOD=AES-256,URI="https://k.example.com/k"', "AES-256", None),
    ],
)
def test_unsupported_encryption_names_the_method(key: str, method: str, system: str | None) -> None:
    text = media_text("#EXTINF:4,\na.ts\n", f"#EXT-X-KEY:{key}\n")
    with pytest.raises(UnsupportedEncryption) as info:
        parse_media(text, URL)
    assert (info.value.method, info.value.system, info.value.lineno) == (method, system, 4)
    drm = "" if system is None else f" ({system} DRM)"
    assert f"the stream is encrypted with {method}{drm}, which kithara-hls cannot play (line 4)" in str(
        info.value
    )
    assert isinstance(info.value, KeyProcessingError)


def test_an_identity_aes_key_beside_drm_keys_plays() -> None:
    keys = (
        '#EXT-X-KEY:METHOD=SAMPLE-AES,URI="skd://abc",KEYFORMAT="com.apple.streamingkeydelivery"\n'
        '#EXT-X-KEY:METHOD=AES-128,URI="https://k.example.com/k"\n'
        '#EXT-X-KEY:METHOD=SAMPLE-AES-CTR,URI="data:,x",KEYFORMAT="com.microsoft.playready"\n'
    )
    (seg,) = parse_media(media_text("#EXTINF:4,\na.ts\n", keys), URL).segments
    assert seg.key is not None and (seg.key.method, seg.key.uri) == ("AES-128", "https://k.example.com/k")


def test_a_session_key_never_fails_the_master() -> None:
    master = parse_master(
        master_with(
            'TYPE=AUDIO,GROUP-ID="aud",NAME="en",URI="en.m3u8"',
            stream_inf='BANDWIDTH=1000,AUDIO="aud"',
        ).replace(
            "#EXTM3U\n",
            '#EXTM3U\n#EXT-X-SESSION-KEY:METHOD=SAMPLE-AES,URI="skd://x",KEYFORMAT="com.apple.streamingkeydelivery"\n',
        ),
        URL,
    )
    assert [r.uri for r in master.renditions] == [BASE + "en.m3u8"]


def test_unsupported_encryption_pickles() -> None:
    error = UnsupportedEncryption("SAMPLE-AES", system="FairPlay", url=URL, segment=0, lineno=3)
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), str(copy), copy.method, copy.system, copy.lineno) == (
        UnsupportedEncryption,
        str(error),
        "SAMPLE-AES",
        "FairPlay",
        3,
    )


def test_open_substitutes_the_masters_variables_into_its_media_playlist(tmp_path: Path) -> None:
    www = tmp_path / "www"
    (www / "audio").mkdir(parents=True)
    (www / "master.m3u8").write_text(
        "#EXTM3U\n"
        '#EXT-X-DEFINE:QUERYPARAM="token"\n'
        '#EXT-X-DEFINE:NAME="dir",VALUE="audio"\n'
        '#EXT-X-STREAM-INF:BANDWIDTH=64000,CODECS="mp4a.40.2"\n'
        "{$dir}/index.m3u8?token={$token}\n"
    )
    (www / "audio" / "index.m3u8").write_text(
        media_text(
            "#EXTINF:4,\nseg0.bin?token={$token}\n#EXTINF:4,\nseg1.bin?token={$token}\n",
            '#EXT-X-DEFINE:IMPORT="token"\n',
        )
    )
    bodies = [bytes([i]) * 1000 for i in range(2)]
    for i, body in enumerate(bodies):
        (www / "audio" / f"seg{i}.bin").write_bytes(body)
    options = HlsOptions(cache=CacheOptions(dir=tmp_path / "cache"), network=NetworkOptions(retries=0))
    with Origin(www) as origin, kithara_hls.open(origin.url("master.m3u8") + "?token=s3cr3t", options) as f:
        assert f.read() == b"".join(bodies)
        fetched = {(r.path, r.query) for r in origin.requests}
    assert {("audio/index.m3u8", "token=s3cr3t"), ("audio/seg0.bin", "token=s3cr3t")} <= fetched


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_substitution_keeps_line_endings_and_numbers(newline: str) -> None:
    lines = [
        "#EXTM3U",
        "#EXT-X-TARGETDURATION:4",
        ' #EXT-X-DEFINE:NAME="s",VALUE="seg"',
        "#EXTINF:4,",
        "{$s}1.ts",
    ]
    text = newline.join([*lines, "#EXT-X-ENDLIST", ""])
    assert parse_media(text, URL).segments[0].uri == BASE + "seg1.ts"
    bad = newline.join([*lines, "#EXTINF:4,", "{$t}2.ts", "#EXT-X-ENDLIST", ""])
    with pytest.raises(PlaylistParseError, match=re.escape("variable '{$t}' is not defined")) as info:
        parse_media(bad, URL)
    assert info.value.lineno == 7
