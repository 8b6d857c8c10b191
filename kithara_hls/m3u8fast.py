"""A fast scanner for VOD media playlists, beside m3u8.

m3u8 spends over 10 µs a segment in general machinery (a dict of state per
line, model objects for every tag); this scanner reads the tags VOD media
playlists use, line by line, into the raw records `playlist` otherwise makes
from m3u8's model and its line hook. It judges nothing: `playlist` checks and
builds the records exactly as it does m3u8's.

Anything the scanner does not read exactly as m3u8 and the hook would (an
unknown tag, an attribute list in a form the two parse differently, a tag
repeated inside one segment, a value m3u8 would choke on) makes it return None,
and the caller parses with m3u8 instead: correctness never depends on its
coverage. Line numbers count as `playlist`'s do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import NamedTuple

#: An EXT-X-KEY as written (quotes removed): METHOD, URI, IV, KEYFORMAT; None where absent.
KeyFields = tuple[str | None, str | None, str | None, str | None]

# One attribute as both m3u8 and playlist's hook read it alike: an upper-case name, then a
# quoted value or an unquoted one free of quotes (m3u8 splits on single quotes too).
_ATTRIBUTE = r'[A-Z0-9-]+=(?:"[^"]*"|[^"\',]*)'
_ATTRIBUTE_LIST = re.compile(rf"{_ATTRIBUTE}(?:,{_ATTRIBUTE})*")
_PAIR = re.compile(r'([A-Z0-9-]+)=("[^"]*"|[^"\',]*)')
_KEY_NAMES = frozenset({"METHOD", "URI", "IV", "KEYFORMAT", "KEYFORMATVERSIONS"})
_MAP_NAMES = frozenset({"URI", "BYTERANGE"})
# Tags m3u8 reads as integers, and fails on when they are not: the value must convert.
_INTEGER_TAGS = frozenset({"#EXT-X-VERSION", "#EXT-X-DISCONTINUITY-SEQUENCE"})
# Tags whose value nothing reads back (m3u8 only needs the colon).
_IGNORED_VALUE_TAGS = frozenset({"#EXT-X-PLAYLIST-TYPE", "#EXT-X-ALLOW-CACHE"})
# Tags the hook reads and checks itself: handed to it as they are.
_HOOK_TAGS = frozenset({"#EXT-X-TARGETDURATION", "#EXT-X-MEDIA-SEQUENCE"})
# Tags without a value that change nothing.
_BARE_TAGS = frozenset({"#EXTM3U", "#EXT-X-INDEPENDENT-SEGMENTS"})


class RawInit(NamedTuple):
    """The EXT-X-MAP in force at a segment: which MAP tag (counting from 0), URI, BYTERANGE."""

    number: int | None
    uri: str | None
    byterange: str | None


#: One segment as written, nothing resolved or checked: URI, EXTINF duration, BYTERANGE, key,
#: EXT-X-MAP, whether a discontinuity precedes it, and the line of its first tag. A plain tuple:
#: a NamedTuple would cost the scan a third more.
RawSegment = tuple[str | None, float | None, str | None, KeyFields | None, RawInit | None, bool, int | None]


@dataclass
class RawMedia:
    """A scanned media playlist: its segments, and what `playlist`'s line hook needs."""

    segments: list[RawSegment] = field(default_factory=list)
    endlist: bool = False
    #: (line, number) of each tag the hook checks: TARGETDURATION, MEDIA-SEQUENCE, KEY.
    hook_lines: list[tuple[str, int]] = field(default_factory=list)
    #: The key in force at each EXT-X-MAP tag, and the tag's line.
    map_keys: list[KeyFields | None] = field(default_factory=list)
    map_lines: list[int] = field(default_factory=list)


class _Unsupported(Exception):
    """The text holds something only m3u8 may decide."""


def scan_media(body: str, line_offset: int, max_segments: int) -> RawMedia | None:
    """Scan a media playlist `body` (from its ``#EXTM3U``) whose first line is line `line_offset` + 1.

    Returns None when m3u8 must parse it instead: a tag or form the scanner does
    not read exactly as m3u8 does, a master playlist, more than `max_segments`
    segments, or a segment cut short at the end.
    """
    try:
        return _Scanner(line_offset, max_segments).scan(body)
    except _Unsupported:
        return None


class _Scanner:
    """One pass over the lines, with m3u8's notion of the segment being read."""

    def __init__(self, line_offset: int, max_segments: int) -> None:
        self.line_offset = line_offset
        self.max_segments = max_segments
        self.media = RawMedia()
        self.key: KeyFields | None = None  # the key in force, as written on its tag
        self.segment_key: KeyFields | None = None  # the same key as m3u8 hands it to segments
        self.first_keys: dict[tuple[str | None, ...], KeyFields] = {}
        self.init: RawInit | None = None
        self.discontinuity = False
        # The segment being read (m3u8's "expect_segment"): its first tag's line, EXTINF, BYTERANGE.
        self.first_line: int | None = None
        self.duration: float | None = None
        self.byterange: str | None = None

    def scan(self, body: str) -> RawMedia:
        segments = self.media.segments
        for lineno, raw in enumerate(body.splitlines(), self.line_offset + 1):
            line = raw.strip()
            if not line:
                continue
            if line[0] != "#":
                if self.first_line is not None:  # m3u8 ignores a URI line no segment tag announced
                    segments.append(self._segment(line))
            elif line.startswith("#EXTINF:"):
                self._extinf(line, lineno)
            elif line.startswith("#EXT"):
                self._tag(line, lineno)
            # Any other '#' line is a comment, for m3u8 and the hook alike.
        if self.first_line is not None:
            raise _Unsupported("segment without URI")
        return self.media

    def _segment(self, uri: str) -> RawSegment:
        segment = (
            uri,
            self.duration,
            self.byterange,
            self.segment_key,
            self.init,
            self.discontinuity,
            self.first_line,
        )
        self.first_line = self.duration = self.byterange = None
        self.discontinuity = False
        return segment

    def _start(self, lineno: int) -> None:
        if self.first_line is None:
            if len(self.media.segments) >= self.max_segments:
                raise _Unsupported("too many segments")
            self.first_line = lineno

    def _extinf(self, line: str, lineno: int) -> None:
        self._start(lineno)
        if self.duration is not None:  # m3u8 would keep the last, the hook check both
            raise _Unsupported("two EXTINF for one segment")
        try:
            # m3u8's own slicing of the duration, so the float is the one it makes.
            self.duration = float(line.replace("#EXTINF:", "").split(",", 1)[0])
        except ValueError as exc:
            raise _Unsupported("EXTINF m3u8 rejects") from exc

    def _tag(self, line: str, lineno: int) -> None:
        tag, colon, value = line.partition(":")
        if not colon:
            self._bare(tag)
        elif tag == "#EXT-X-BYTERANGE":
            self._start(lineno)
            if self.byterange is not None:
                raise _Unsupported("two BYTERANGE for one segment")
            self.byterange = line.replace("#EXT-X-BYTERANGE:", "")
        elif tag == "#EXT-X-KEY":
            self._key(line, lineno)
        elif tag == "#EXT-X-MAP":
            self._map(line, lineno)
        elif tag in _HOOK_TAGS:
            self.media.hook_lines.append((line, lineno))
        elif tag in _INTEGER_TAGS:
            _integer(value)
        elif tag not in _IGNORED_VALUE_TAGS:
            raise _Unsupported(f"tag {tag[:40]!r}")

    def _bare(self, tag: str) -> None:
        if tag == "#EXT-X-DISCONTINUITY":
            self.discontinuity = True
        elif tag == "#EXT-X-ENDLIST":
            self.media.endlist = True
        elif tag not in _BARE_TAGS:
            raise _Unsupported(f"tag {tag[:40]!r}")

    def _key(self, line: str, lineno: int) -> None:
        attrs = _attributes(line, "#EXT-X-KEY:", _KEY_NAMES)
        method = attrs.get("METHOD")
        if method is None:  # m3u8's model cannot build a key without one
            raise _Unsupported("EXT-X-KEY without METHOD")
        self.key = (method, attrs.get("URI"), attrs.get("IV"), attrs.get("KEYFORMAT"))
        # m3u8 gives a segment the first key tag with its METHOD, URI and IV (`m3u8.model.find_key`).
        self.segment_key = self.first_keys.setdefault(self.key[:3], self.key)
        self.media.hook_lines.append((line, lineno))

    def _map(self, line: str, lineno: int) -> None:
        attrs = _attributes(line, "#EXT-X-MAP:", _MAP_NAMES)
        if "URI" not in attrs:  # m3u8's model cannot build a MAP without one
            raise _Unsupported("EXT-X-MAP without URI")
        media = self.media
        media.map_keys.append(self.key)
        media.map_lines.append(lineno)
        self.init = RawInit(len(media.map_lines) - 1, attrs["URI"], attrs.get("BYTERANGE"))


def _attributes(line: str, prefix: str, names: frozenset[str]) -> dict[str, str]:
    """The attributes of `line` (a `prefix` tag), quotes removed, if m3u8 and the hook read them alike."""
    body = line[len(prefix) :]
    if prefix in body:  # m3u8 deletes the prefix wherever it occurs
        raise _Unsupported("tag name inside its attributes")
    if not _ATTRIBUTE_LIST.fullmatch(body):
        raise _Unsupported("attribute list in a form m3u8 reads differently")
    pairs = _PAIR.findall(body)
    attrs = {name: value[1:-1] if value.startswith('"') else value for name, value in pairs}
    if len(attrs) != len(pairs) or not attrs.keys() <= names:
        raise _Unsupported("repeated or unknown attribute")
    return attrs


def _integer(value: str) -> None:
    try:
        int(value.strip().lower())  # as m3u8 reads EXT-X-VERSION and friends
    except ValueError as exc:
        raise _Unsupported("integer m3u8 rejects") from exc
