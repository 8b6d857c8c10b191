"""kithara_hls.playlist: text in, frozen dataclasses out; only HlsError comes out."""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

import pytest
import test_fuzz as fuzz_grammar  # its playlist grammar and mutations
from hypothesis import given, settings
from hypothesis import strategies as st

from kithara_hls.errors import HlsError, InvalidUrl, KeyProcessingError, PlaylistParseError
from kithara_hls.m3u8fast import scan_media
from kithara_hls.options import DEFAULT_MAX_SEGMENTS
from kithara_hls.playlist import (
    ByteRange,
    Key,
    MasterPlaylist,
    MediaPlaylist,
    _decode,
    _parse,
    _parse_fast,
    check_url,
    looks_like_playlist,
    parse,
    parse_master,
    parse_media,
)
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


# --- the m3u8fast path against the m3u8 path ---------------------------------------------------

Outcome = MasterPlaylist | MediaPlaylist | HlsError


def _outcome(text: str | bytes, *, fast: bool, max_segments: int) -> Outcome:
    try:
        return _parse(text, URL, max_segments, None, fast=fast)
    except HlsError as exc:
        return exc


def _sharing(media: MediaPlaylist) -> list[tuple[int | None, int | None]]:
    """For each segment, the first segment holding the very same init and key objects."""
    firsts: dict[int, int] = {}

    def first(obj: object, index: int) -> int | None:
        return None if obj is None else firsts.setdefault(id(obj), index)

    return [(first(s.init, i), first(s.key, i)) for i, s in enumerate(media.segments)]


def assert_same(text: str | bytes, max_segments: int = DEFAULT_MAX_SEGMENTS) -> Outcome:
    """Parse `text` with and without `m3u8fast`: equal playlists, or the same error."""
    slow = _outcome(text, fast=False, max_segments=max_segments)
    quick = _outcome(text, fast=True, max_segments=max_segments)
    if isinstance(slow, HlsError):
        assert type(quick) is type(slow)
        assert (str(quick), vars(quick)) == (str(slow), vars(slow))
        return slow
    assert quick == slow
    if isinstance(quick, MediaPlaylist):
        assert isinstance(slow, MediaPlaylist)
        assert _sharing(quick) == _sharing(slow)
        # Built without Segment.__init__: the very fields __init__ would have set.
        assert all(vars(s) == vars(dataclasses.replace(s)) for s in quick.segments)
    return slow


def fast_only(text: str | bytes, max_segments: int = DEFAULT_MAX_SEGMENTS) -> MediaPlaylist | None:
    """The `m3u8fast` path alone: None where it hands over to m3u8."""
    body, line_offset = _decode(text, URL)
    return _parse_fast(body, URL, line_offset, max_segments)


def assert_fast(text: str | bytes, max_segments: int = DEFAULT_MAX_SEGMENTS) -> MediaPlaylist:
    """`text` parses on the fast path, to what m3u8 gives."""
    slow = assert_same(text, max_segments)
    assert isinstance(slow, MediaPlaylist)
    assert fast_only(text, max_segments) == slow
    return slow


def test_fast_path_on_every_fixture_playlist(fixtures: dict[str, StreamFixture]) -> None:
    for fx in fixtures.values():
        assert isinstance(assert_same((fx.root / fx.entry).read_bytes()), (MasterPlaylist, MediaPlaylist))
        for rel in fx.media:
            media = assert_fast((fx.root / rel).read_bytes())
            assert media.segments


def test_fast_path_on_a_long_playlist() -> None:
    text = media("".join(f"#EXTINF:4.000000,\nseg_{i:05d}.ts\n" for i in range(3000)))
    assert len(assert_fast(text).segments) == 3000
    assert fast_only(text, max_segments=2999) is None
    assert isinstance(assert_same(text, max_segments=2999), PlaylistParseError)


_COVERED = {
    "simple": SIMPLE,
    "rich": RICH,
    "key before map, map changes": media(
        '#EXT-X-KEY:METHOD=AES-128,URI="k1",IV=0x0A\n#EXT-X-MAP:URI="init1.mp4"\n'
        '#EXT-X-KEY:METHOD=AES-128,URI="k2"\n#EXTINF:4,\na.mp4\n'
        '#EXT-X-MAP:URI="init2.mp4",BYTERANGE="100"\n#EXTINF:4,\nb.mp4\n#EXTINF:4,\nc.mp4\n'
    ),
    "map range chains after segment ranges": media(
        "#EXTINF:1,\n#EXT-X-BYTERANGE:10@0\nall.mp4\n#EXT-X-MAP:URI=all.mp4,BYTERANGE=5\n"
        "#EXTINF:1,\n#EXT-X-BYTERANGE:7\nall.mp4\n"
    ),
    "byterange before extinf": media(
        "#EXT-X-BYTERANGE:10@3\n#EXTINF:1,\na.ts\n#EXT-X-BYTERANGE:4\n#EXTINF:2,\na.ts\n"
    ),
    "tags between extinf and uri": media(
        '#EXTINF:1,\n#EXT-X-MAP:URI="i.mp4"\n#EXT-X-KEY:METHOD=AES-128,URI="k"\n#EXT-X-DISCONTINUITY\na.mp4\n'
        "#EXTINF:1,\n#EXT-X-KEY:METHOD=NONE\nb.mp4\n"
    ),
    "key rotation back to an earlier key": media(
        '#EXT-X-KEY:METHOD=AES-128,URI="k1",IV=0x1\n#EXTINF:1,\na.ts\n'
        '#EXT-X-KEY:METHOD=AES-128,URI="k1",IV=0x2\n#EXTINF:1,\nb.ts\n'
        '#EXT-X-KEY:METHOD=AES-128,URI="k1",IV=0x1,KEYFORMAT="identity",KEYFORMATVERSIONS="1"\n'
        "#EXTINF:1,\nc.ts\n#EXT-X-KEY:METHOD=aes-128,URI=k1,IV=0X01\n#EXTINF:1,\nd.ts\n"
    ),
    "quoted commas and equals": media('#EXT-X-KEY:METHOD=AES-128,URI="k?a=1,b=2"\n#EXTINF:1,\na.ts\n'),
    "comments, blank lines, padding": "\n\n  #EXTM3U \n# a comment\n#EXT-X-TARGETDURATION:4\n\n"
    "#EXTINF:4.5,title, with commas\n\n  a.ts\t\n#comment #EXTINF:9\n#EXT-X-DISCONTINUITY\n"
    "#EXTINF:1,\nb.ts\n#EXT-X-DISCONTINUITY\n#EXT-X-ENDLIST\n#EXTM3U\n",
    "uri lines without extinf are ignored": media("stray.ts\n#EXTINF:1,\na.ts\nb.ts\n"),
    "crlf": SIMPLE.replace("\n", "\r\n"),
    "cr": SIMPLE.replace("\n", "\r"),
    "unicode line breaks": SIMPLE.replace("\n", "\u2028"),
    "bom": "\ufeff" + SIMPLE,
    "segments after endlist": SIMPLE + "#EXTINF:2,\nz.ts\n",
    "header tags": "#EXTM3U\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-VERSION: 3 \n#EXT-X-ALLOW-CACHE:YES\n"
    "#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-DISCONTINUITY-SEQUENCE:2\n#EXT-X-MEDIA-SEQUENCE:18446744073709551615\n"
    "#EXTINF:3,\na.ts\n#EXT-X-TARGETDURATION:3\n#EXT-X-ENDLIST\n",
    "odd durations": media(
        "#EXTINF:-0,\na.ts\n#EXTINF: 1e1 ,\nb.ts\n#EXTINF:2_5\nc.ts\n#EXTINF:86400,\nd.ts\n"
    ),
    "uris to resolve": media(
        "#EXTINF:1,\n../up/a.ts\n#EXTINF:1,\n//other.example.org/b.ts\n#EXTINF:1,\nc.ts?sig=1#frag\n"
        "#EXTINF:1,\n/root/d.ts\n#EXTINF:1,\nhttps://abs.example.net/e.ts\n#EXTINF:1,\na b.ts\n"
    ),
}


@pytest.mark.parametrize("text", _COVERED.values(), ids=_COVERED.keys())
@pytest.mark.parametrize("as_bytes", [False, True])
def test_fast_path_reads_what_m3u8_reads(text: str, as_bytes: bool) -> None:
    assert_fast(text.encode() if as_bytes else text)


_HANDED_OVER = {
    "unknown tag": media("#EXT-X-FOO:1\n#EXTINF:1,\na.ts\n"),
    "program date time": media("#EXT-X-PROGRAM-DATE-TIME:2024-01-01T00:00:00Z\n#EXTINF:1,\na.ts\n"),
    "gap": media("#EXTINF:1,\n#EXT-X-GAP\na.ts\n"),
    "bitrate": media("#EXT-X-BITRATE:800\n#EXTINF:1,\na.ts\n"),
    "start": media("#EXT-X-START:TIME-OFFSET=2\n#EXTINF:1,\na.ts\n"),
    "daterange": media('#EXT-X-DATERANGE:ID="x",START-DATE="2024-01-01T00:00:00Z"\n#EXTINF:1,\na.ts\n'),
    "tag name with a suffix": media("#EXTINF:1,\na.ts\n#EXT-X-ENDLISTS\n"),
    "bare tag with a value": media("#EXTINF:1,\n#EXT-X-DISCONTINUITY:1\na.ts\n"),
    "lower-case attribute": media('#EXT-X-KEY:method=AES-128,uri="k"\n#EXTINF:1,\na.ts\n'),
    "space after comma": media('#EXT-X-KEY:METHOD=AES-128, URI="k"\n#EXTINF:1,\na.ts\n'),
    "single quotes": media("#EXT-X-KEY:METHOD=AES-128,URI='k'\n#EXTINF:1,\na.ts\n"),
    "unknown key attribute": media('#EXT-X-KEY:METHOD=AES-128,URI="k",FOO=1\n#EXTINF:1,\na.ts\n'),
    "repeated attribute": media('#EXT-X-KEY:METHOD=NONE,METHOD=AES-128,URI="k"\n#EXTINF:1,\na.ts\n'),
    "two extinf": media("#EXTINF:1,\n#EXTINF:2,\na.ts\n"),
    "two byteranges": media("#EXTINF:1,\n#EXT-X-BYTERANGE:5@0\n#EXT-X-BYTERANGE:6@0\na.ts\n"),
    "master": MASTER,
    "i-frames only": media("#EXT-X-I-FRAMES-ONLY\n#EXTINF:1,\n#EXT-X-BYTERANGE:5@0\na.ts\n"),
    "rendition in a media playlist": media(
        '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="a",NAME="x"\n#EXTINF:1,\na.ts\n'
    ),
}


@pytest.mark.parametrize("text", _HANDED_OVER.values(), ids=_HANDED_OVER.keys())
def test_fast_path_hands_the_rest_to_m3u8(text: str) -> None:
    body, line_offset = _decode(text, URL)
    assert scan_media(body, line_offset, DEFAULT_MAX_SEGMENTS) is None
    assert_same(text)


_ERRORS = {
    "bad iv": (media('#EXT-X-KEY:METHOD=AES-128,URI="k",IV=0xZZ\n#EXTINF:1,\na.ts\n'), PlaylistParseError),
    "bad iv on an unused key": (media("#EXT-X-KEY:METHOD=NONE,IV=1\n#EXTINF:1,\na.ts\n"), PlaylistParseError),
    "empty method": (media('#EXT-X-KEY:METHOD="",URI="k"\n#EXTINF:1,\na.ts\n'), PlaylistParseError),
    "key without uri": (media("#EXT-X-KEY:METHOD=AES-128\n#EXTINF:1,\na.ts\n"), PlaylistParseError),
    "sample-aes": (media('#EXT-X-KEY:METHOD=SAMPLE-AES,URI="k"\n#EXTINF:1,\na.ts\n'), KeyProcessingError),
    "keyformat of the first equal key": (
        media(
            '#EXT-X-KEY:METHOD=AES-128,URI="k",KEYFORMAT="com.example"\n#EXT-X-KEY:METHOD=AES-128,URI="k"\n'
            "#EXTINF:1,\na.ts\n"
        ),
        KeyProcessingError,
    ),
    "range without offset": (media("#EXTINF:1,\n#EXT-X-BYTERANGE:100\na.ts\n"), PlaylistParseError),
    "range too long": (media(f"#EXTINF:1,\n#EXT-X-BYTERANGE:{2**41}@0\na.ts\n"), PlaylistParseError),
    "map without uri": (media('#EXT-X-MAP:URI=""\n#EXTINF:1,\na.ts\n'), PlaylistParseError),
    "map range": (media('#EXT-X-MAP:URI="i",BYTERANGE="x"\n#EXTINF:1,\na.ts\n'), PlaylistParseError),
    "extinf nan": (media("#EXTINF:nan,\na.ts\n"), PlaylistParseError),
    "extinf too long": (media("#EXTINF:86401,\na.ts\n"), PlaylistParseError),
    "extinf not a number": (media("#EXTINF:ten,\na.ts\n"), PlaylistParseError),
    "range without extinf": (media("#EXT-X-BYTERANGE:5@0\na.ts\n"), PlaylistParseError),
    "extinf without uri": (media("#EXTINF:1,\na.ts\n#EXTINF:1,\n"), PlaylistParseError),
    "target duration": (media("#EXTINF:1,\na.ts\n", header="#EXT-X-TARGETDURATION:-1"), PlaylistParseError),
    "two target durations": (
        media("#EXTINF:1,\na.ts\n", header="#EXT-X-TARGETDURATION:x\n#EXT-X-TARGETDURATION:4"),
        PlaylistParseError,
    ),
    "media sequence": (media("#EXTINF:1,\na.ts\n", header="#EXT-X-MEDIA-SEQUENCE:2e3"), PlaylistParseError),
    "version": (media("#EXTINF:1,\na.ts\n", header="#EXT-X-VERSION:x"), PlaylistParseError),
    "live": (media("#EXTINF:1,\na.ts\n", endlist=False), PlaylistParseError),
    "no segments": (media("stray.ts\n"), PlaylistParseError),
    "local file": (media("#EXTINF:1,\nfile:///etc/passwd\n"), InvalidUrl),
    "downgrade": (
        media('#EXT-X-KEY:METHOD=AES-128,URI="http://k.example/k"\n#EXTINF:1,\na.ts\n'),
        InvalidUrl,
    ),
    "control character": (media("#EXTINF:1,\na\x00b.ts\n"), InvalidUrl),
}


@pytest.mark.parametrize("text, error", _ERRORS.values(), ids=_ERRORS.keys())
def test_fast_path_errors_are_m3u8_errors(text: str, error: type[HlsError]) -> None:
    assert type(assert_same(text)) is error
    assert fast_only(text) is None


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
_GEN_EXTRAS = [*_GEN_KEYS, *_GEN_MAPS, "#EXT-X-DISCONTINUITY", "# comment", "", "  ", "#EXTM3U"]
_gen_segment = st.tuples(
    st.lists(st.sampled_from(_GEN_EXTRAS * 8 + _GEN_BAD_KEYS), max_size=3),
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


def _render_media(header: list[str], segments: list[Any], endlist: bool) -> list[str]:
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
    return lines + (["#EXT-X-ENDLIST"] if endlist else [])


@settings(max_examples=400, deadline=None, database=None)
@given(
    header=_gen_header,
    segments=st.lists(_gen_segment, min_size=1, max_size=12),
    endlist=st.sampled_from([True, True, True, False]),
    newline=st.sampled_from(["\n", "\r\n", "\r"]),
    pad=st.sampled_from(["", " ", "\t"]),
    bom=st.booleans(),
    max_segments=st.sampled_from([DEFAULT_MAX_SEGMENTS, DEFAULT_MAX_SEGMENTS, 8]),
)
def test_fuzz_generated_media_playlists_take_the_fast_path(
    header: list[str],
    segments: list[Any],
    endlist: bool,
    newline: str,
    pad: str,
    bom: bool,
    max_segments: int,
) -> None:
    lines = _render_media(header, segments, endlist)
    text = ("\ufeff" if bom else "") + newline.join(pad + line + pad for line in lines) + newline
    outcome = assert_same(text, max_segments)
    if isinstance(outcome, MediaPlaylist):  # every tag here is one the scanner reads
        assert fast_only(text, max_segments) == outcome


@settings(max_examples=400, deadline=None, database=None)
@given(
    header=_gen_header,
    segments=st.lists(_gen_segment, max_size=8),
    junk=st.lists(st.tuples(st.integers(0, 100), fuzz_grammar._line), max_size=3),
    ops=st.lists(fuzz_grammar._op, max_size=4),
    as_bytes=st.booleans(),
)
def test_fuzz_fast_path_agrees_on_hostile_playlists(
    header: list[str], segments: list[Any], junk: list[tuple[int, str]], ops: list[Any], as_bytes: bool
) -> None:
    lines = _render_media(header, segments, True)
    for at, line in junk:
        lines.insert(1 + at % len(lines), line)
    for op in ops:
        fuzz_grammar._mutate(lines, op)
    text = "\n".join(lines)
    assert_same(text.encode("utf-8", "surrogatepass") if as_bytes else text, max_segments=20)


@pytest.fixture(scope="module")
def fixture_texts(fixtures: dict[str, StreamFixture]) -> list[str]:
    """Every media playlist the fixtures hold, with the hand-written ones above."""
    texts = {(fx.root / rel).read_text() for fx in fixtures.values() for rel in fx.media}
    return sorted(texts | set(_COVERED.values()))


def test_fuzz_fast_path_agrees_on_mutated_playlists(fixture_texts: list[str]) -> None:
    @settings(max_examples=400, deadline=None, database=None)
    @given(seed=st.sampled_from(fixture_texts), ops=st.lists(fuzz_grammar._op, max_size=6))
    def run(seed: str, ops: list[Any]) -> None:
        lines = seed.splitlines()
        for op in ops:
            fuzz_grammar._mutate(lines, op)
        assert_same("\n".join(lines), max_segments=20)

    run()


def test_fast_path_never_changes_a_master() -> None:
    assert isinstance(assert_same(MASTER), MasterPlaylist)
    with pytest.raises(PlaylistParseError, match="expected a master"):
        _parse(SIMPLE, URL, DEFAULT_MAX_SEGMENTS, MasterPlaylist)
