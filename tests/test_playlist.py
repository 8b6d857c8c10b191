"""kithara_hls.playlist: text in, frozen dataclasses out; only HlsError comes out."""

from __future__ import annotations

import contextlib
import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kithara_hls.errors import HlsError, InvalidUrl, KeyProcessingError, PlaylistParseError
from kithara_hls.playlist import (
    ByteRange,
    Key,
    MasterPlaylist,
    MediaPlaylist,
    check_url,
    looks_like_playlist,
    parse,
    parse_master,
    parse_media,
)

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
    with pytest.raises(KeyProcessingError, match="KEYFORMAT"):
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
    with pytest.raises(InvalidUrl):
        parse(SIMPLE, "file:///tmp/index.m3u8")


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
