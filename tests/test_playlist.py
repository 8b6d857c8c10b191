"""kithara_hls.playlist: text in, frozen dataclasses out; only HlsError comes out."""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any
from urllib.parse import urljoin

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kithara_hls.errors import (
    HlsError,
    InvalidUrl,
    KeyProcessingError,
    PlaylistParseError,
    UnsupportedEncryption,
)
from kithara_hls.playlist import (
    ByteRange,
    InitSection,
    Key,
    MasterPlaylist,
    MediaPlaylist,
    check_url,
    looks_like_playlist,
    parse,
    parse_master,
    parse_media,
)
from kithara_hls.playlist_checks import resolve_uri
from kithara_hls.testing import StreamFixture

# The final URL after redirects: relative URIs resolve against this, not the first URL.
URL = "https://cdn.example.com/redirected/path/index.m3u8?token=secret"
BASE = "https://cdn.example.com/redirected/path/"


def media(body: str, *, header: str = "#EXT-X-TARGETDURATION:10", endlist: bool = True) -> str:
    return "#EXTM3U\n#EXT-X-VERSION:7\n" + header + "\n" + body + ("#EXT-X-ENDLIST\n" if endlist else "")


SIMPLE = media("#EXTINF:10.0,\na.ts\n#EXTINF:10.0,\nb.ts\n#EXTINF:5.5,\nc.ts\n")

MASTER = """#EXTM3U
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",NAME="en",URI="audio/en.m3u8"
#EXT-X-STREAM-INF:BANDWIDTH=3000000,AVERAGE-BANDWIDTH=900000,CODECS="avc1.64001f,mp4a.40.2",RESOLUTION=1280x720
hi/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=1000000,RESOLUTION=640x360
https://other.example.net/lo.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=2000000
/abs/mid.m3u8
#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=100000,URI="iframe.m3u8"
#EXT-X-STREAM-INF:BANDWIDTH=5000000
hi/index.m3u8
"""

RICH = media(
    """#EXT-X-MAP:URI="init.mp4",BYTERANGE="720@0"
#EXT-X-KEY:METHOD=AES-128,URI="k1.bin",IV=0x1
#EXTINF:4.0,
#EXT-X-BYTERANGE:1000@720
media.mp4
#EXTINF:4.0,
#EXT-X-BYTERANGE:500
media.mp4
#EXT-X-DISCONTINUITY
#EXT-X-KEY:METHOD=NONE
#EXTINF:4.0,
plain.mp4
#EXT-X-KEY:METHOD=AES-128,URI="https://keys.example.com/k2"
#EXTINF:2.0,
enc.mp4
""",
    header="#EXT-X-TARGETDURATION:4\n#EXT-X-MEDIA-SEQUENCE:7",
)


def test_master_sorted_by_bitrate_iframe_ignored_duplicates_removed() -> None:
    result = parse(MASTER, URL)
    assert isinstance(result, MasterPlaylist)
    uris = [v.uri for v in result.variants]
    # hi: AVERAGE-BANDWIDTH 900k ranks it below lo (1M) and mid (2M) despite BANDWIDTH=3M.
    assert uris == [
        BASE + "hi/index.m3u8",
        "https://other.example.net/lo.m3u8",
        "https://cdn.example.com/abs/mid.m3u8",
    ]
    hi = result.variants[0]
    assert (hi.bandwidth, hi.average_bandwidth, hi.bitrate) == (3_000_000, 900_000, 900_000)
    assert hi.codecs == "avc1.64001f,mp4a.40.2"
    assert hi.resolution == (1280, 720)
    assert result.variants[1].average_bandwidth is None
    assert result.variants[1].bitrate == 1_000_000
    assert result.variants[2].resolution is None
    assert parse_master(MASTER, URL) == result


def test_master_ties_break_on_bandwidth_then_order() -> None:
    text = """#EXTM3U
#EXT-X-STREAM-INF:BANDWIDTH=900,AVERAGE-BANDWIDTH=500
a.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=500
b.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=500
c.m3u8
"""
    assert [v.uri.rsplit("/", 1)[1] for v in parse_master(text, URL).variants] == [
        "b.m3u8",
        "c.m3u8",
        "a.m3u8",
    ]


@pytest.mark.parametrize(
    "stream_inf",
    ['#EXT-X-STREAM-INF:CODECS="avc1"', "#EXT-X-STREAM-INF:BANDWIDTH=0", "#EXT-X-STREAM-INF:BANDWIDTH=-5"],
)
def test_master_bandwidth_required(stream_inf: str) -> None:
    with pytest.raises(PlaylistParseError) as info:
        parse(f"#EXTM3U\n{stream_inf}\nv.m3u8\n", URL)
    assert info.value.lineno == 2


def test_master_ignores_unusable_average_bandwidth() -> None:
    text = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=800,AVERAGE-BANDWIDTH=-1\nv.m3u8\n"
    (variant,) = parse_master(text, URL).variants
    assert variant.average_bandwidth is None
    assert variant.bitrate == 800


def test_master_without_variants() -> None:
    text = '#EXTM3U\n#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=1000,URI="i.m3u8"\n'
    with pytest.raises(PlaylistParseError, match="no variants"):
        parse(text, URL)


def test_parse_master_and_media_check_the_kind() -> None:
    with pytest.raises(PlaylistParseError, match="expected a master"):
        parse_master(SIMPLE, URL)
    with pytest.raises(PlaylistParseError, match="expected a media"):
        parse_media(MASTER, URL)


def test_simple_media() -> None:
    result = parse_media(SIMPLE, URL)
    assert isinstance(result, MediaPlaylist)
    assert [s.uri for s in result.segments] == [BASE + "a.ts", BASE + "b.ts", BASE + "c.ts"]
    assert [s.start for s in result.segments] == [0.0, 10.0, 20.0]
    assert [s.index for s in result.segments] == [0, 1, 2]
    assert [s.sequence for s in result.segments] == [0, 1, 2]
    assert result.duration == 25.5
    assert result.target_duration == 10.0
    assert result.media_sequence == 0
    assert all(s.key is None and s.init is None and s.byterange is None for s in result.segments)


def test_media_accepts_bytes_with_bom_and_leading_blank_lines() -> None:
    result = parse(b"\xef\xbb\xbf\n\n" + SIMPLE.encode(), URL)
    assert isinstance(result, MediaPlaylist)
    assert len(result.segments) == 3
    # Line numbers count the blank lines before #EXTM3U.
    with pytest.raises(PlaylistParseError) as info:
        parse(b"\xef\xbb\xbf\n\n" + media("#EXTINF:x,\na.ts\n").encode(), URL)
    assert info.value.lineno == 6


def test_uris_resolve_against_the_final_url() -> None:
    text = media(
        "#EXTINF:1,\n../up/a.ts\n#EXTINF:1,\n//other.example.org/b.ts\n#EXTINF:1,\nc.ts?sig=1\n"
        "#EXTINF:1,\n/root/d.ts\n#EXTINF:1,\nhttps://abs.example.net/e.ts\n"
    )
    assert [s.uri for s in parse_media(text, URL).segments] == [
        "https://cdn.example.com/redirected/up/a.ts",
        "https://other.example.org/b.ts",
        BASE + "c.ts?sig=1",
        "https://cdn.example.com/root/d.ts",
        "https://abs.example.net/e.ts",
    ]


def test_rich_media() -> None:
    result = parse_media(RICH, URL)
    s0, s1, s2, s3 = result.segments
    assert result.media_sequence == 7
    assert [s.sequence for s in result.segments] == [7, 8, 9, 10]
    assert s0.byterange == ByteRange(720, 1000)
    assert s1.byterange == ByteRange(1720, 500)
    assert s1.byterange.end == 2220
    assert s0.uri == s1.uri == BASE + "media.mp4"
    assert not s1.discontinuity and s2.discontinuity
    # Key rotation: k1, then NONE, then an absolute k2 without IV.
    assert s0.key == s1.key == Key("AES-128", BASE + "k1.bin", (1).to_bytes(16, "big"))
    assert s2.key is None
    assert s3.key == Key("AES-128", "https://keys.example.com/k2", None)
    # IV padding: 0x1 -> 15 zero bytes then 0x01; default IV: sequence 10 big-endian.
    assert s0.iv == bytes(15) + b"\x01"
    assert s3.iv == (10).to_bytes(16, "big")
    # The MAP came before any key: its init is not encrypted, and it is shared.
    assert s0.init is not None
    assert s0.init.uri == BASE + "init.mp4"
    assert s0.init.byterange == ByteRange(0, 720)
    assert s0.init.key is None
    assert all(s.init is s0.init for s in result.segments)


def test_init_takes_the_key_in_force_at_the_map_tag() -> None:
    text = media(
        """#EXT-X-KEY:METHOD=AES-128,URI="k1",IV=0x0A
#EXT-X-MAP:URI="init1.mp4"
#EXT-X-KEY:METHOD=AES-128,URI="k2"
#EXTINF:4,
a.mp4
#EXT-X-MAP:URI="init2.mp4",BYTERANGE="100"
#EXTINF:4,
b.mp4
"""
    )
    a, b = parse_media(text, URL).segments
    assert a.init is not None and b.init is not None
    assert a.init.key == Key("AES-128", BASE + "k1", (10).to_bytes(16, "big"))
    assert a.init.iv == (10).to_bytes(16, "big")
    assert a.key is not None and a.key.uri == BASE + "k2"
    assert b.init.key == a.key
    assert b.init.byterange == ByteRange(0, 100)
    assert b.init.iv == bytes(16)


def test_iv_full_length_and_uppercase_prefix() -> None:
    iv = "0X" + "ab" * 16
    text = media(f'#EXT-X-KEY:METHOD=AES-128,URI="k",IV={iv}\n#EXTINF:1,\na.ts\n')
    (seg,) = parse_media(text, URL).segments
    assert seg.iv == bytes.fromhex("ab" * 16)


@pytest.mark.parametrize("iv", ["0x" + "0" * 33, "1234", "0xZZ", "0x"])
def test_bad_iv(iv: str) -> None:
    text = media(f'#EXT-X-KEY:METHOD=AES-128,URI="k",IV={iv}\n#EXTINF:1,\na.ts\n')
    with pytest.raises(PlaylistParseError) as info:
        parse(text, URL)
    assert info.value.lineno == 4


def test_byterange_without_offset_needs_a_previous_range() -> None:
    text = media("#EXTINF:1,\n#EXT-X-BYTERANGE:100\na.ts\n")
    with pytest.raises(PlaylistParseError, match="without offset") as info:
        parse(text, URL)
    assert info.value.lineno == 4


def test_byterange_offset_follows_the_same_uri_only() -> None:
    text = media(
        "#EXTINF:1,\n#EXT-X-BYTERANGE:10@0\na.ts\n"
        "#EXTINF:1,\n#EXT-X-BYTERANGE:20@5\nb.ts\n"
        "#EXTINF:1,\n#EXT-X-BYTERANGE:30\na.ts\n"
    )
    ranges = [s.byterange for s in parse_media(text, URL).segments]
    assert ranges == [ByteRange(0, 10), ByteRange(5, 20), ByteRange(10, 30)]


@pytest.mark.parametrize("value", ["-5@0", "10@-1", "0@0", "abc", f"{2**41}@0", "1@" + str(2**40)])
def test_bad_byterange(value: str) -> None:
    text = media(f"#EXTINF:1,\n#EXT-X-BYTERANGE:{value}\na.ts\n")
    with pytest.raises(PlaylistParseError):
        parse(text, URL)


@pytest.mark.parametrize("method", ["SAMPLE-AES", "SAMPLE-AES-CTR", "AES-256"])
def test_unsupported_method(method: str) -> None:
    text = media(f'#EXT-X-KEY:METHOD={method},URI="skd://x"\n#EXTINF:1,\na.ts\n')
    with pytest.raises(KeyProcessingError, match=method):
        parse(text, URL)


def test_unsupported_keyformat() -> None:
    text = media(
        '#EXT-X-KEY:METHOD=AES-128,URI="k",KEYFORMAT="com.apple.streamingkeydelivery"\n#EXTINF:1,\na\n'
    )
    with pytest.raises(UnsupportedEncryption, match=r"encrypted with AES-128 \(FairPlay DRM\)"):
        parse(text, URL)


def test_aes_key_needs_uri() -> None:
    with pytest.raises(PlaylistParseError, match="without URI"):
        parse(media("#EXT-X-KEY:METHOD=AES-128\n#EXTINF:1,\na.ts\n"), URL)


@pytest.mark.parametrize(
    "body",
    [
        "",
        "   \n\n",
        "<!DOCTYPE html><html><body>#EXTM3U</body></html>",
        '{"error": "not found"}',
        "#EXTINF:10,\na.ts\n",
        b"\xff\xfe#\x00E\x00",
    ],
)
def test_not_a_playlist(body: str | bytes) -> None:
    with pytest.raises(PlaylistParseError, match="not an HLS playlist"):
        parse(body, URL)


def test_looks_like_playlist() -> None:
    assert looks_like_playlist(b"#EXTM3U\n")
    assert looks_like_playlist(b"\xef\xbb\xbf  \r\n#EXTM3U")
    assert not looks_like_playlist(b"<html>")
    assert not looks_like_playlist(b"")


def test_live_rejected() -> None:
    with pytest.raises(PlaylistParseError, match="live"):
        parse(media("#EXTINF:10,\na.ts\n", endlist=False), URL)


def test_no_segments_rejected() -> None:
    with pytest.raises(PlaylistParseError, match="no segments"):
        parse(media(""), URL)


@pytest.mark.parametrize(
    "text",
    [
        media("#EXTINF:1,\nfile:///etc/passwd\n"),
        media('#EXT-X-KEY:METHOD=AES-128,URI="file:///etc/key"\n#EXTINF:1,\na.ts\n'),
        media('#EXT-X-MAP:URI="file:///etc/init.mp4"\n#EXTINF:1,\na.ts\n'),
        media('#EXT-X-KEY:METHOD=AES-128,URI="data:text/plain;base64,AAAA"\n#EXTINF:1,\na.ts\n'),
        "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nfile:///etc/v.m3u8\n",
        media("#EXTINF:1,\nhttp:///nohost.ts\n"),
        media("#EXTINF:1,\nftp://example.com/a.ts\n"),
    ],
)
def test_local_and_non_http_uris_rejected(text: str) -> None:
    with pytest.raises(InvalidUrl):
        parse(text, URL)


@pytest.mark.parametrize(
    "text",
    [
        media("#EXTINF:1,\nhttp://cdn.example.com/a.ts\n"),
        media('#EXT-X-KEY:METHOD=AES-128,URI="http://keys.example.com/k"\n#EXTINF:1,\na.ts\n'),
        media('#EXT-X-MAP:URI="http://cdn.example.com/init.mp4"\n#EXTINF:1,\na.ts\n'),
        "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nhttp://cdn.example.com/v.m3u8\n",
    ],
)
def test_https_to_http_downgrade_rejected(text: str) -> None:
    with pytest.raises(InvalidUrl, match="downgrade"):
        parse(text, URL)


def test_http_playlist_may_name_https() -> None:
    text = media("#EXTINF:1,\nhttps://cdn.example.com/a.ts\n#EXTINF:1,\nb.ts\n")
    segments = parse_media(text, "http://origin.example.com/x/index.m3u8").segments
    assert [s.uri for s in segments] == ["https://cdn.example.com/a.ts", "http://origin.example.com/x/b.ts"]


def test_check_url() -> None:
    assert check_url("https://a.example/x") == "https://a.example/x"
    assert check_url("http://a.example/x", parent="http://b.example/") == "http://a.example/x"
    for bad in (
        "file:///etc/passwd",
        "data:,x",
        "/relative",
        "https://",
        "http://a\r\nb/",
        "http://a:99999/",
    ):
        with pytest.raises(InvalidUrl):
            check_url(bad)
    with pytest.raises(InvalidUrl):
        check_url("http://a.example/x", parent="https://a.example/")


def test_invalid_url_message_hides_the_query() -> None:
    with pytest.raises(InvalidUrl) as info:
        parse(media("#EXTINF:1,\nhttp://cdn.example.com/a.ts?token=secret\n"), URL)
    assert "secret" not in str(info.value)


def test_too_many_segments() -> None:
    text = media("".join(f"#EXTINF:1,\ns{i}.ts\n" for i in range(5)))
    assert len(parse_media(text, URL, max_segments=5).segments) == 5
    with pytest.raises(PlaylistParseError, match="more than 4 segments") as info:
        parse(text, URL, max_segments=4)
    assert info.value.lineno == 12


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "86401", "1e308", "ten", ""])
def test_absurd_extinf(value: str) -> None:
    text = media(f"#EXTINF:1,\na.ts\n#EXTINF:{value},\nb.ts\n")
    with pytest.raises(PlaylistParseError, match="EXTINF") as info:
        parse(text, URL)
    assert info.value.lineno == 6
    assert "line 6" in str(info.value)


def test_bad_media_sequence_and_target_duration() -> None:
    with pytest.raises(PlaylistParseError, match="MEDIA-SEQUENCE") as info:
        parse(media("#EXTINF:1,\na.ts\n", header="#EXT-X-MEDIA-SEQUENCE:-3"), URL)
    assert info.value.lineno == 3
    with pytest.raises(PlaylistParseError, match="TARGETDURATION"):
        parse(media("#EXTINF:1,\na.ts\n", header="#EXT-X-TARGETDURATION:inf"), URL)


def test_target_duration_may_be_fractional_or_missing() -> None:
    fractional = media("#EXTINF:3,\na.ts\n", header="#EXT-X-TARGETDURATION:6.0")
    assert parse_media(fractional, URL).target_duration == 6
    assert parse_media(media("#EXTINF:3,\na.ts\n", header=""), URL).target_duration == 3


def test_segment_at() -> None:
    playlist = parse_media(SIMPLE, URL)  # starts 0, 10, 20; ends 25.5
    times = (-5, 0, 9.99, 10, 19.5, 20, 25.5, 1e9)
    assert [playlist.segment_at(t) for t in times] == [0, 0, 0, 1, 1, 2, 2, 2]


def test_segment_at_skips_zero_length_segments() -> None:
    playlist = parse_media(media("#EXTINF:0,\na.ts\n#EXTINF:2,\nb.ts\n"), URL)
    assert playlist.segment_at(0.0) == 1
    assert playlist.duration == 2.0


def test_models_are_frozen() -> None:
    playlist = parse_media(SIMPLE, URL)
    with pytest.raises(dataclasses.FrozenInstanceError):
        playlist.segments[0].uri = "x"  # type: ignore[misc]


def test_malformed_tag_reports_its_line() -> None:
    text = media("#EXTINF:1,\na.ts\n#EXT-X-KEY:METHOD\n#EXTINF:1,\nb.ts\n")
    with pytest.raises(PlaylistParseError) as info:
        parse(text, URL)
    assert info.value.lineno == 6


_TAGS = [
    "",
    "#EXTINF:",
    "#EXT-X-KEY:",
    "#EXT-X-MAP:",
    "#EXT-X-BYTERANGE:",
    "#EXT-X-STREAM-INF:",
    "#EXT-X-I-FRAME-STREAM-INF:",
    "#EXT-X-MEDIA:",
    "#EXT-X-MEDIA-SEQUENCE:",
    "#EXT-X-TARGETDURATION:",
    "#EXT-X-PROGRAM-DATE-TIME:",
    "#EXT-X-DATERANGE:",
    "#EXT-X-PART:",
    "#EXT-X-ENDLIST",
    "#EXT-X-DISCONTINUITY",
]
_junk = st.builds(lambda tag, rest: tag + rest, st.sampled_from(_TAGS), st.text(max_size=30))
_op = st.one_of(
    st.tuples(st.just("delete"), st.integers(0, 40)),
    st.tuples(st.just("duplicate"), st.integers(0, 40)),
    st.tuples(st.just("swap"), st.integers(0, 40), st.integers(0, 40)),
    st.tuples(st.just("insert"), st.integers(0, 40), _junk),
)


def _mutate(lines: list[str], op: tuple) -> None:  # type: ignore[type-arg]
    if not lines:
        return
    i = op[1] % len(lines)
    if op[0] == "delete":
        del lines[i]
    elif op[0] == "duplicate":
        lines.insert(i, lines[i])
    elif op[0] == "swap":
        j = op[2] % len(lines)
        lines[i], lines[j] = lines[j], lines[i]
    else:
        lines.insert(i, op[2])


@settings(max_examples=300, deadline=None, database=None)
@given(
    seed=st.sampled_from([RICH, MASTER, SIMPLE]),
    ops=st.lists(_op, max_size=6),
    cut=st.none() | st.integers(0, 800),
    as_bytes=st.booleans(),
)
def test_fuzz_only_hls_errors_escape(seed: str, ops: list[tuple], cut: int | None, as_bytes: bool) -> None:  # type: ignore[type-arg]
    header, *lines = seed.splitlines()  # keep #EXTM3U (truncation may still cut it)
    for op in ops:
        _mutate(lines, op)
    text = "\n".join([header, *lines])
    if cut is not None:
        text = text[:cut]
    with contextlib.suppress(HlsError):
        parse(text.encode("utf-8", "surrogatepass") if as_bytes else text, URL, max_segments=50)


# --- forms, tags and attributes: what RFC 8216 asks, whatever m3u8 makes of them ------------------


def names(playlist: MediaPlaylist) -> list[tuple[str, float]]:
    """Each segment's URI relative to BASE, with its duration."""
    return [(s.uri.removeprefix(BASE), s.duration) for s in playlist.segments]


def test_every_fixture_playlist_parses(fixtures: dict[str, StreamFixture]) -> None:
    for fx in fixtures.values():
        assert isinstance(parse((fx.root / fx.entry).read_bytes(), URL), (MasterPlaylist, MediaPlaylist))
        for rel in fx.media:
            assert parse_media((fx.root / rel).read_bytes(), URL).segments


def test_a_title_of_1200_segments() -> None:
    n = 1200
    text = media("".join(f"#EXTINF:4.000000,\nseg_{i:05d}.ts\n" for i in range(n)))
    playlist = parse_media(text, URL)
    assert names(playlist) == [(f"seg_{i:05d}.ts", 4.0) for i in range(n)]
    assert playlist.duration == 4.0 * n
    assert playlist.segment_at(4.0 * 600 + 1) == 600
    with pytest.raises(PlaylistParseError, match=f"more than {n - 1} segments") as info:
        parse(text, URL, max_segments=n - 1)
    assert info.value.lineno == 4 + 2 * (n - 1)  # the EXTINF of the segment too many


def test_models_hold_their_fields_only() -> None:
    playlist = parse_media(RICH, URL)
    for obj in (playlist, *playlist.segments):
        assert vars(obj).keys() == {f.name for f in dataclasses.fields(obj)}
        assert dataclasses.replace(obj) == obj


_FORMS: dict[str, tuple[str, list[tuple[str, float]]]] = {
    "key before map, map changes": (
        media(
            '#EXT-X-KEY:METHOD=AES-128,URI="k1",IV=0x0A\n#EXT-X-MAP:URI="init1.mp4"\n'
            '#EXT-X-KEY:METHOD=AES-128,URI="k2"\n#EXTINF:4,\na.mp4\n'
            '#EXT-X-MAP:URI="init2.mp4",BYTERANGE="100"\n#EXTINF:4,\nb.mp4\n#EXTINF:4,\nc.mp4\n'
        ),
        [("a.mp4", 4.0), ("b.mp4", 4.0), ("c.mp4", 4.0)],
    ),
    "byterange before extinf": (
        media("#EXT-X-BYTERANGE:10@3\n#EXTINF:1,\na.ts\n#EXT-X-BYTERANGE:4\n#EXTINF:2,\na.ts\n"),
        [("a.ts", 1.0), ("a.ts", 2.0)],
    ),
    "tags between extinf and uri": (
        media(
            '#EXTINF:1,\n#EXT-X-MAP:URI="i.mp4"\n#EXT-X-KEY:METHOD=AES-128,URI="k"\n#EXT-X-DISCONTINUITY\na.mp4\n'
            "#EXTINF:1,\n#EXT-X-KEY:METHOD=NONE\nb.mp4\n"
        ),
        [("a.mp4", 1.0), ("b.mp4", 1.0)],
    ),
    "comments, blank lines, padding": (
        "\n\n  #EXTM3U \n# a comment\n#EXT-X-TARGETDURATION:4\n\n"
        "#EXTINF:4.5,title, with commas\n\n  a.ts\t\n#comment #EXTINF:9\n#EXT-X-DISCONTINUITY\n"
        "#EXTINF:1,\nb.ts\n#EXT-X-DISCONTINUITY\n#EXT-X-ENDLIST\n#EXTM3U\n",
        [("a.ts", 4.5), ("b.ts", 1.0)],
    ),
    "uri lines without extinf are ignored": (media("stray.ts\n#EXTINF:1,\na.ts\nb.ts\n"), [("a.ts", 1.0)]),
    "crlf": (SIMPLE.replace("\n", "\r\n"), [("a.ts", 10.0), ("b.ts", 10.0), ("c.ts", 5.5)]),
    "cr": (SIMPLE.replace("\n", "\r"), [("a.ts", 10.0), ("b.ts", 10.0), ("c.ts", 5.5)]),
    "unicode line breaks": (SIMPLE.replace("\n", "\u2028"), [("a.ts", 10.0), ("b.ts", 10.0), ("c.ts", 5.5)]),
    "segments after endlist": (
        SIMPLE + "#EXTINF:2,\nz.ts\n",
        [("a.ts", 10.0), ("b.ts", 10.0), ("c.ts", 5.5), ("z.ts", 2.0)],
    ),
    "header tags anywhere": (
        "#EXTM3U\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-VERSION: 3 \n#EXT-X-ALLOW-CACHE:YES\n"
        "#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-DISCONTINUITY-SEQUENCE:2\n#EXT-X-MEDIA-SEQUENCE:18446744073709551615\n"
        "#EXTINF:3,\na.ts\n#EXT-X-TARGETDURATION:3\n#EXT-X-ENDLIST\n",
        [("a.ts", 3.0)],
    ),
    "odd durations": (
        media("#EXTINF:-0,\na.ts\n#EXTINF: 1e1 ,\nb.ts\n#EXTINF:2_5\nc.ts\n#EXTINF:86400,\nd.ts\n"),
        [("a.ts", 0.0), ("b.ts", 10.0), ("c.ts", 25.0), ("d.ts", 86400.0)],
    ),
    "lower-case attributes, spaces, single quotes": (
        media(
            '#EXT-X-KEY:method=AES-128,uri="k"\n#EXTINF:1,\na.ts\n#EXT-X-KEY:METHOD=AES-128, URI="k"\n'
            "#EXTINF:1,\nb.ts\n#EXT-X-KEY:METHOD=AES-128,URI='k'\n#EXTINF:1,\nc.ts\n"
        ),
        [("a.ts", 1.0), ("b.ts", 1.0), ("c.ts", 1.0)],
    ),
    "a tag twice in one segment: the last counts": (
        media("#EXTINF:1,\n#EXTINF:2,\na.ts\n#EXTINF:1,\n#EXT-X-BYTERANGE:5@0\n#EXT-X-BYTERANGE:6@0\nb.ts\n"),
        [("a.ts", 2.0), ("b.ts", 1.0)],
    ),
}


@pytest.mark.parametrize("text, expected", _FORMS.values(), ids=_FORMS.keys())
@pytest.mark.parametrize("as_bytes", [False, True])
def test_forms(text: str, expected: list[tuple[str, float]], as_bytes: bool) -> None:
    assert names(parse_media(text.encode() if as_bytes else text, URL)) == expected


def test_a_repeated_tag_and_equal_keys() -> None:
    text = _FORMS["a tag twice in one segment: the last counts"][0]
    assert parse_media(text, URL).segments[1].byterange == ByteRange(0, 6)
    keys = [
        s.key for s in parse_media(_FORMS["lower-case attributes, spaces, single quotes"][0], URL).segments
    ]
    assert keys == [Key("AES-128", BASE + "k", None)] * 3


def test_an_empty_map_ends_the_one_in_force() -> None:
    text = media('#EXT-X-MAP:URI="i.mp4"\n#EXTINF:1,\na.mp4\n#EXT-X-MAP:\n#EXTINF:1,\nb.ts\n')
    a, b = parse_media(text, URL).segments
    assert a.init is not None and a.init.uri == BASE + "i.mp4"
    assert b.init is None


# Tags the library does not use, some with values or attributes m3u8 refuses: never an error.
_UNUSED_TAGS = [
    "#EXT-X-FOO:1",
    "# a comment",
    "#EXT-X-VERSION:x",
    "#EXT-X-DISCONTINUITY-SEQUENCE:x",
    "#EXT-X-PROGRAM-DATE-TIME:2024-01-01T00:00:00Z",
    "#EXT-X-PROGRAM-DATE-TIME:yesterday",
    "#EXT-X-BITRATE:800",
    "#EXT-X-BITRATE:fast",
    "#EXT-X-START:TIME-OFFSET=2,X-FOO=1",
    '#EXT-X-DATERANGE:ID="x",START-DATE="2024-01-01T00:00:00Z",X-FOO=1',
    '#EXT-X-PART:DURATION=1,URI="p.ts",X-FOO=1',
    "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,X-FOO=1",
    '#EXT-X-SESSION-DATA:DATA-ID="a",VALUE="b",X-FOO=1',
    '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="a",NAME="x"',
    "#EXT-X-CUE-OUT:DURATION=30",
    "#EXT-X-PLAYLIST-TYPE:VOD",
]


_PLACES = {
    "before a segment": "#EXTINF:1,\na.ts\n{tag}#EXTINF:2,\nb.ts\n",
    "inside a segment": "#EXTINF:1,\na.ts\n#EXTINF:2,\n{tag}b.ts\n",
    "after the last segment": "#EXTINF:1,\na.ts\n#EXTINF:2,\nb.ts\n{tag}",
}


@pytest.mark.parametrize("tag", _UNUSED_TAGS)
@pytest.mark.parametrize("where", _PLACES.keys())
def test_unused_tags_change_nothing(tag: str, where: str) -> None:
    body = _PLACES[where]
    assert parse_media(media(body.format(tag=tag + "\n")), URL) == parse_media(
        media(body.format(tag="")), URL
    )


def test_unknown_attributes_of_used_tags_are_ignored() -> None:
    text = media(
        '#EXT-X-MAP:URI="i.mp4",BYTERANGE="700@0",X-FOO=1\n'
        '#EXT-X-KEY:METHOD=AES-128,URI="k",IV=0x1,KEYFORMATVERSIONS="1",X-FOO="a,b"\n'
        "#EXTINF:1,\n#EXT-X-BYTERANGE:100@700\ni.mp4\n"
    )
    (seg,) = parse_media(text, URL).segments
    assert seg.init is not None
    assert (seg.init.uri, seg.init.byterange) == (BASE + "i.mp4", ByteRange(0, 700))
    assert seg.key == Key("AES-128", BASE + "k", (1).to_bytes(16, "big"))
    master = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=800,X-FOO=1,FRAME-RATE=25.000\nv.m3u8\n"
    (variant,) = parse_master(master, URL).variants
    assert (variant.uri, variant.bandwidth) == (BASE + "v.m3u8", 800)


_ERRORS = {
    "bad iv on an unused key": (media("#EXT-X-KEY:METHOD=NONE,IV=1\n#EXTINF:1,\na.ts\n"), PlaylistParseError),
    "empty method": (media('#EXT-X-KEY:METHOD="",URI="k"\n#EXTINF:1,\na.ts\n'), PlaylistParseError),
    "keyformat of the last key": (
        media(
            '#EXT-X-KEY:METHOD=AES-128,URI="k"\n#EXTINF:1,\na.ts\n'
            '#EXT-X-KEY:METHOD=AES-128,URI="k",KEYFORMAT="com.example"\n#EXTINF:1,\nb.ts\n'
        ),
        KeyProcessingError,
    ),
    "map without uri": (media('#EXT-X-MAP:URI=""\n#EXTINF:1,\na.ts\n'), PlaylistParseError),
    "map attributes without uri": (media("#EXT-X-MAP:BYTERANGE=5@0\n#EXTINF:1,\na.ts\n"), PlaylistParseError),
    "map range": (media('#EXT-X-MAP:URI="i",BYTERANGE="x"\n#EXTINF:1,\na.ts\n'), PlaylistParseError),
    "range without extinf": (media("#EXT-X-BYTERANGE:5@0\na.ts\n"), PlaylistParseError),
    "extinf without uri": (media("#EXTINF:1,\na.ts\n#EXTINF:1,\n"), PlaylistParseError),
    "two target durations": (
        media("#EXTINF:1,\na.ts\n", header="#EXT-X-TARGETDURATION:x\n#EXT-X-TARGETDURATION:4"),
        PlaylistParseError,
    ),
    "media sequence": (media("#EXTINF:1,\na.ts\n", header="#EXT-X-MEDIA-SEQUENCE:2e3"), PlaylistParseError),
    "no segments": (media("stray.ts\n"), PlaylistParseError),
    "i-frames only": (
        media("#EXT-X-I-FRAMES-ONLY\n#EXTINF:1,\n#EXT-X-BYTERANGE:5@0\na.ts\n"),
        PlaylistParseError,
    ),
    "control character": (media("#EXTINF:1,\na\x00b.ts\n"), InvalidUrl),
    "key without uri after a key with one": (
        media(
            '#EXT-X-KEY:METHOD=AES-128,URI="k"\n#EXTINF:1,\na.ts\n#EXT-X-KEY:METHOD=AES-128\n#EXTINF:1,\nb.ts\n'
        ),
        PlaylistParseError,
    ),
}


@pytest.mark.parametrize("text, error", _ERRORS.values(), ids=_ERRORS.keys())
def test_errors(text: str, error: type[HlsError]) -> None:
    with pytest.raises(error):
        parse(text, URL)


def test_the_identity_key_of_keys_in_a_row_counts() -> None:
    other = '#EXT-X-KEY:METHOD=SAMPLE-AES,URI="skd://k",KEYFORMAT="com.apple.streamingkeydelivery"\n'
    identity = '#EXT-X-KEY:METHOD=AES-128,URI="k",KEYFORMAT="identity"\n'
    for keys in (other + identity, identity + other):
        (seg,) = parse_media(media(keys + "#EXTINF:1,\na.ts\n"), URL).segments
        assert seg.key == Key("AES-128", BASE + "k", None)
    # A key after a segment replaces the one in force, whatever its KEYFORMAT.
    with pytest.raises(KeyProcessingError):
        parse(media(identity + "#EXTINF:1,\na.ts\n" + other + "#EXTINF:1,\nb.ts\n"), URL)


def test_an_attribute_without_a_value_is_ignored() -> None:
    text = media('#EXT-X-KEY:METHOD=AES-128,URI="k",FOO\n#EXT-X-MAP:URI="i.mp4",BAR\n#EXTINF:1,\na.mp4\n')
    (seg,) = parse_media(text, URL).segments
    assert seg.key == Key("AES-128", BASE + "k", None)
    assert seg.init is not None and seg.init.uri == BASE + "i.mp4"


def test_a_map_range_without_offset_follows_the_segment_ranges() -> None:
    text = media(
        "#EXTINF:1,\n#EXT-X-BYTERANGE:10@0\na.ts\n#EXT-X-MAP:URI=a.ts,BYTERANGE=5\n#EXTINF:1,\nb.ts\n"
    )
    assert parse_media(text, URL).segments[1].init == InitSection(BASE + "a.ts", ByteRange(10, 5), None)


_GEN_KEYS = [
    "#EXT-X-KEY:METHOD=NONE",
    '#EXT-X-KEY:METHOD=AES-128,URI="k1.key"',
    '#EXT-X-KEY:METHOD=AES-128,URI="k1.key",IV=0x0102',
    '#EXT-X-KEY:METHOD=AES-128,URI="k1.key",KEYFORMAT="identity",KEYFORMATVERSIONS="1"',
    "#EXT-X-KEY:METHOD=AES-128,URI=../k2.key,IV=0X000000000000000000000000000000FF",
]
# Rare in a generated playlist, as one of them anywhere is an error.
_GEN_BAD_KEYS = [
    '#EXT-X-KEY:METHOD=AES-128,URI="k1.key",KEYFORMAT="com.example"',
    '#EXT-X-KEY:METHOD=SAMPLE-AES,URI="skd://x"',
    '#EXT-X-KEY:METHOD=AES-128,URI="k3.key",IV=0x123456789012345678901234567890123',
]
_GEN_MAPS = [
    '#EXT-X-MAP:URI="init.mp4"',
    '#EXT-X-MAP:URI="init.mp4",BYTERANGE="700@0"',
    '#EXT-X-MAP:URI="media.mp4",BYTERANGE="64"',
    "#EXT-X-MAP:BYTERANGE=32@8,URI=media.mp4",
]
_GEN_EXTRAS = [*_GEN_KEYS, *_GEN_MAPS, *_UNUSED_TAGS, "#EXT-X-DISCONTINUITY", "", "  ", "#EXTM3U"]
_gen_segment = st.tuples(
    st.lists(st.sampled_from(_GEN_EXTRAS * 4 + _GEN_BAD_KEYS), max_size=3),
    st.floats(0, 30).map(lambda d: f"{d:.6f}") | st.integers(0, 30).map(str) | st.sampled_from(["1e1", "-0"]),
    st.none()
    | st.tuples(st.integers(1, 10**6), st.sampled_from([None, 0, 100, 10**6]) | st.integers(0, 10**6)),
    st.sampled_from(["a.ts", "b.ts", "media.mp4", "d/e.ts", "../up.ts", "https://cdn.test/x.ts"]),
    st.booleans(),  # BYTERANGE before EXTINF
)
_gen_header = st.lists(
    st.sampled_from(
        [
            "#EXT-X-TARGETDURATION:30",
            "#EXT-X-TARGETDURATION:6.5",
            "#EXT-X-MEDIA-SEQUENCE:7",
            "#EXT-X-VERSION:7",
            "#EXT-X-PLAYLIST-TYPE:VOD",
            "#EXT-X-INDEPENDENT-SEGMENTS",
        ]
    ),
    max_size=4,
)


def _render_media(header: list[str], segments: list[Any]) -> list[str]:
    lines = ["#EXTM3U", *header]
    for extras, duration, byterange, uri, range_first in segments:
        tags = [f"#EXTINF:{duration},"]
        if byterange is not None:
            length, offset = byterange
            tags.insert(
                0 if range_first else 1,
                f"#EXT-X-BYTERANGE:{length}" + ("" if offset is None else f"@{offset}"),
            )
        lines += [*extras, *tags, uri]
    return [*lines, "#EXT-X-ENDLIST"]


@settings(max_examples=400, deadline=None, database=None)
@given(
    header=_gen_header,
    segments=st.lists(_gen_segment, min_size=1, max_size=12),
    newline=st.sampled_from(["\n", "\r\n", "\r"]),
    pad=st.sampled_from(["", " ", "\t"]),
    bom=st.booleans(),
)
def test_fuzz_generated_media_playlists(
    header: list[str], segments: list[Any], newline: str, pad: str, bom: bool
) -> None:
    lines = _render_media(header, segments)
    text = ("\ufeff" if bom else "") + newline.join(pad + line + pad for line in lines) + newline
    try:
        playlist = parse_media(text, URL)
    except KeyProcessingError:
        assert any(bad in lines for bad in _GEN_BAD_KEYS[:2])
        return
    except PlaylistParseError as exc:  # a bad IV, or a first range of a URI without offset
        assert _GEN_BAD_KEYS[2] in lines or "without offset" in str(exc)
        return
    durations = [float(duration) for _, duration, *_ in segments]
    assert [s.duration for s in playlist.segments] == durations
    assert [s.start for s in playlist.segments] == [sum(durations[:i]) for i in range(len(durations))]
    assert [s.uri for s in playlist.segments] == [urljoin(URL, uri) for *_, uri, _ in segments]
    for seg, (_, _, byterange, _, _) in zip(playlist.segments, segments, strict=True):
        assert seg.sequence == playlist.media_sequence + seg.index
        if byterange is None:
            assert seg.byterange is None
        else:
            assert seg.byterange is not None and seg.byterange.length == byterange[0]
            assert byterange[1] is None or seg.byterange.offset == byterange[1]


_NAME = st.text(alphabet="abcXYZ019._~-", min_size=1, max_size=8).filter(lambda s: s[0] != ".")


@given(
    base=st.sampled_from(
        [
            "http://h/a/b/index.m3u8",
            "https://h:8443/index.m3u8?token=1",
            "http://h",
            "https://h/dir/",
            "https://h/a;p/b.m3u8",
            "file:///media/x/y.m3u8",
        ]
    ),
    names=st.lists(_NAME, min_size=1, max_size=3),
)
def test_a_plain_relative_name_resolves_as_urljoin_does(base: str, names: list[str]) -> None:
    ref = "/".join(names)
    assert resolve_uri(ref, base) == urljoin(base, ref)
