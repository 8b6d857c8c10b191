"""The tags of a playlist that the library reads itself, beside m3u8.

m3u8 sees only the tags whose meaning the library takes from it (EXTINF,
EXT-X-BYTERANGE, EXT-X-DISCONTINUITY, EXT-X-ENDLIST, EXT-X-I-FRAMES-ONLY),
matched by their exact name. `LineHook`, m3u8's ``custom_tags_parser``, reads
EXT-X-TARGETDURATION, EXT-X-MEDIA-SEQUENCE, EXT-X-PLAYLIST-TYPE, EXT-X-KEY and
EXT-X-MAP itself (m3u8 refuses attributes it does not know, or without a value)
and hides every other tag from m3u8: RFC 8216 §4.2 has clients ignore unknown
tags and attributes, so neither they nor a tag the library does not use
(PROGRAM-DATE-TIME, DATERANGE, PART, RENDITION-REPORT, ...) fails a playlist.
`master_tags` reads a master playlist's variants and renditions, without m3u8.
EXT-X-GAP is read here too (m3u8 never sees it): the segment it marks gets ``gap``.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from m3u8.parser import get_segment_custom_value, save_segment_custom_value

from kithara_hls.errors import PlaylistParseError
from kithara_hls.playlist_checks import attributes, check_duration, check_media_sequence, check_tag

#: Appended after the body: m3u8 hands it to the hook last, which tells a failure
#: in m3u8's line pass (whose line we know) from one in its model building.
END_MARK = "#X-KITHARA-HLS-END"
# The tags whose meaning the library takes from m3u8; m3u8 never sees the others.
_M3U8_TAGS = frozenset(
    {"#EXTINF", "#EXT-X-BYTERANGE", "#EXT-X-DISCONTINUITY", "#EXT-X-ENDLIST", "#EXT-X-I-FRAMES-ONLY"}
)
_VARIANT_TAGS = frozenset({"#EXT-X-STREAM-INF", "#EXT-X-I-FRAME-STREAM-INF"})
# Tags only a master playlist holds (RFC 8216 §4.3.4), and their 8216bis successors.
_MASTER_TAGS = _VARIANT_TAGS | {
    "#EXT-X-MEDIA",
    "#EXT-X-SESSION-DATA",
    "#EXT-X-SESSION-KEY",
    "#EXT-X-CONTENT-STEERING",
}
_NUMBER = re.compile(r"\d{1,20}(?:\.\d{0,20})?")
_RESOLUTION = re.compile(r"(\d{1,9})[xX](\d{1,9})")
# The sample-entry (or RFC 6381 object type) names of CODECS entries, lower-cased.
_VIDEO_CODECS = frozenset(
    {
        "avc1",
        "avc3",
        "hvc1",
        "hev1",
        "dvh1",
        "dvhe",
        "dva1",
        "dvav",
        "dav1",
        "av01",
        "vp08",
        "vp09",
        "vp8",
        "vp9",
    }
    | {
        "mp4v",
        "vvc1",
        "vvi1",
        "evc1",
        "theora",
        "h264",
        "h265",
        "hevc",
        "mjpg",
        "jpeg",
        "avc",
        "s263",
        "encv",
    }
)
_AUDIO_CODECS = frozenset(
    {"mp4a", "ac-3", "ec-3", "ac-4", "mp3", "opus", "flac", "alac", "vorbis", "dtsc", "dtse", "dtsh"}
    | {"dtsl", "dtsx", "dtsy", "mha1", "mha2", "mhm1", "mhm2", "aac", "ipcm", "fpcm", "lpcm", "samr", "enca"}
)

#: An EXT-X-KEY as written: METHOD, URI, IV, KEYFORMAT (None where absent).
KeyFields = tuple[str | None, str | None, str | None, str | None]


class MapTag(NamedTuple):
    """An EXT-X-MAP as the hook read it: its attributes, the key in force there, its line."""

    uri: str | None
    byterange: str | None
    key: KeyFields | None
    lineno: int


class StreamInf(NamedTuple):
    """An EXT-X-STREAM-INF: its attributes (names upper-cased), the URI line after it, its line."""

    attrs: dict[str, str]
    uri: str
    lineno: int


class MediaTag(NamedTuple):
    """An EXT-X-MEDIA: its attributes (names upper-cased, values unquoted) and its line."""

    attrs: dict[str, str]
    lineno: int


class MasterTags(NamedTuple):
    """The tags of a master playlist that make its variants and renditions, in playlist order."""

    stream_infs: list[StreamInf]
    media: list[MediaTag]


class LineHook:
    """m3u8's ``custom_tags_parser``: sees each tag line, with its number, first.

    It refuses the values m3u8 would choke on (so the error names the line),
    reads the tags listed in the module docstring, hides from m3u8 every tag it
    does not need, and tags each segment with its first line, the key in force (and
    its line) and the MAP in force.
    """

    def __init__(self, url: str, line_offset: int, max_segments: int) -> None:
        self.url = url
        self.line_offset = line_offset
        self.max_segments = max_segments
        self.lineno: int | None = None  # the tag line m3u8 is on
        self.finished = False  # m3u8 is past its line pass
        self.target_duration: float | None = None
        self.media_sequence = 0
        self.playlist_type: str | None = None
        self.key: KeyFields | None = None  # the EXT-X-KEY in force
        self.key_line: int | None = None  # its line
        self.key_run = -1  # the EXTINF count when it was read
        self.map: MapTag | None = None  # the EXT-X-MAP in force
        self.gap = False  # an EXT-X-GAP not yet given to its segment (the next one)
        self.extinf_count = 0
        self.variant_tags = 0  # STREAM-INF and I-FRAME-STREAM-INF lines
        self.master_tags = 0  # lines of tags only a master holds

    def __call__(self, line: str, lineno: int, data: dict[str, Any], state: dict[str, Any]) -> bool:
        if line == END_MARK:
            self.finished = True
            return True
        n = self.lineno = lineno + self.line_offset
        name = line.partition(":")[0]
        self._read(name, line, n)
        # EXTINF and BYTERANGE start a segment in m3u8; the tags after them up to its URI are its own.
        if "segment" in state or name in ("#EXTINF", "#EXT-X-BYTERANGE"):
            if get_segment_custom_value(state, "lineno") is None:
                save_segment_custom_value(state, "lineno", n)
            save_segment_custom_value(state, "key", self.key)
            save_segment_custom_value(state, "key_line", self.key_line)
            save_segment_custom_value(state, "map", self.map)
            if self.gap:
                save_segment_custom_value(state, "gap", True)
                self.gap = False
        return name not in _M3U8_TAGS

    def is_master(self) -> bool:
        """Whether the playlist is a master: it names variants, or holds master tags and no segments."""
        return self.variant_tags > 0 or (self.master_tags > 0 and self.extinf_count == 0)

    def is_complete(self, endlist: bool) -> bool:
        """Whether the playlist can no longer change: EXT-X-ENDLIST, or PLAYLIST-TYPE VOD."""
        return endlist or self.playlist_type == "VOD"

    def _read(self, name: str, line: str, n: int) -> None:
        value = line.partition(":")[2]
        if name == "#EXT-X-TARGETDURATION":
            self.target_duration = check_duration(value, "EXT-X-TARGETDURATION", self.url, n)
        elif name == "#EXT-X-MEDIA-SEQUENCE":
            self.media_sequence = check_media_sequence(value, self.url, n)
        elif name == "#EXT-X-PLAYLIST-TYPE":
            self.playlist_type = value.strip().upper()
        elif name == "#EXT-X-KEY":
            check_tag(line, self.url, n)
            attrs = attributes(line)
            key = (attrs.get("METHOD"), attrs.get("URI"), attrs.get("IV"), attrs.get("KEYFORMAT"))
            # Keys in a row are alternatives for one segment (one per KEYFORMAT): the identity
            # key, which the library can use, wins over the others; else the last counts.
            if not (self.key_run == self.extinf_count and _identity(self.key) and not _identity(key)):
                self.key, self.key_line, self.key_run = key, n, self.extinf_count
        elif name == "#EXT-X-MAP":
            # A MAP without attributes ends the one in force, as m3u8 reads it.
            attrs = attributes(line)
            self.map = MapTag(attrs.get("URI"), attrs.get("BYTERANGE"), self.key, n) if attrs else None
        elif name == "#EXT-X-GAP":
            self.gap = True
        elif name == "#EXTINF":
            check_tag(line, self.url, n)
            self.extinf_count += 1
            if self.extinf_count > self.max_segments:
                raise PlaylistParseError(f"more than {self.max_segments} segments", url=self.url, lineno=n)
        elif name in _MASTER_TAGS:
            self.master_tags += 1
            self.variant_tags += name in _VARIANT_TAGS


def _identity(key: KeyFields | None) -> bool:
    return key is not None and (key[3] or "identity").strip().lower() == "identity"


def master_tags(body: str, line_offset: int) -> MasterTags:
    """The EXT-X-STREAM-INF (each with the URI line that follows it) and EXT-X-MEDIA tags of a master.

    A STREAM-INF with no URI before the next one is dropped, as m3u8 drops it;
    line numbers count as `LineHook`'s do.
    """
    found = MasterTags([], [])
    pending: tuple[dict[str, str], int] | None = None
    for n, raw in enumerate(body.strip().splitlines(), 1 + line_offset):
        line = raw.strip()
        name = line.partition(":")[0]
        if name == "#EXT-X-STREAM-INF":
            pending = (attributes(line), n)
        elif name == "#EXT-X-MEDIA":
            found.media.append(MediaTag(attributes(line), n))
        elif line and not line.startswith("#") and pending is not None:
            found.stream_infs.append(StreamInf(pending[0], line, pending[1]))
            pending = None
    return found


def codec_entries(codecs: str | None) -> list[str]:
    """The entries of a CODECS value, stripped, empty ones left out."""
    return [entry.strip() for entry in (codecs or "").split(",") if entry.strip()]


def is_video_codec(entry: str) -> bool:
    """Whether a CODECS entry (``avc1.64001f``, ``hvc1.2.4.L123``, ``vp09...``) names a video codec."""
    return entry.partition(".")[0].lower() in _VIDEO_CODECS


def is_audio_codec(entry: str) -> bool:
    """Whether a CODECS entry names an audio codec (``mp4a.40.2``, ``ec-3``, ``opus``, ``mp4a.40.34``...)."""
    return entry.partition(".")[0].lower() in _AUDIO_CODECS


def bandwidth_value(raw: str | None) -> int | None:
    """A BANDWIDTH-like value in bits per second, or None if absent or not a positive number.

    RFC 8216 asks for a decimal-integer; a decimal fraction (``1280000.5``) is
    read too, rounded to the nearest integer.
    """
    value = (raw or "").strip()
    if not _NUMBER.fullmatch(value):
        return None
    bandwidth = round(float(value))
    return bandwidth if bandwidth > 0 else None


def resolution_value(raw: str | None) -> tuple[int, int] | None:
    """A RESOLUTION ``WIDTHxHEIGHT`` as a pair, or None if absent or unreadable."""
    match = _RESOLUTION.fullmatch((raw or "").strip())
    return None if match is None else (int(match[1]), int(match[2]))
