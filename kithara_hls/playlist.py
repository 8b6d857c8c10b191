"""Playlists: HLS text in, frozen dataclasses out.

This module and `playlist_tags` are the only ones that see m3u8. It does no
network I/O: the caller fetches a body and passes it here with the final
(post-redirect) URL, which every URI in the playlist is resolved against and
checked (http(s) only, no https→http downgrade; see `playlist_checks`). m3u8 is
not trusted: whatever it raises on a bad body comes out as `PlaylistParseError`,
with the line where m3u8 was, and only `HlsError` subclasses leave `parse`.

m3u8 reads only the segment lines of a media playlist; `playlist_tags` reads
the other tags the library uses, hides the rest from m3u8 (RFC 8216 §4.2: a
client ignores unknown tags and attributes), and reads a master's tags, which
`playlist_master` makes into variants and renditions. EXT-X-DEFINE variables
are substituted first (`playlist_vars`), so every check sees the final text.

Scope: complete media playlists (EXT-X-ENDLIST, or PLAYLIST-TYPE VOD) and
masters; keys METHOD=NONE or identity AES-128 (of several EXT-X-KEY tags in a
row, the identity key counts, else the last). SAMPLE-AES, SAMPLE-AES-CTR,
SAMPLE-AES-CENC, a DRM KEYFORMAT (FairPlay, PlayReady, Widevine, any other
but identity) and DRM key URIs (``skd:``, a ``data:`` PSSH) raise
`UnsupportedEncryption` naming the method and system, when the media
playlist is parsed; a master's EXT-X-SESSION-KEY is ignored, so renditions in
the clear still play. An error names its line where it has one, and the
checks run in the order that names the real problem: I-frames only, no
segments (a master: no variants), live, too many segments. EXT-X-MEDIA
renditions of every TYPE are listed (`MasterPlaylist.renditions`); which one
plays is the caller's choice. I-frame playlists are ignored in a master and
refused as media playlists. An EXT-X-GAP segment stays listed, with
`Segment.gap` set: the caller must not fetch it.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping
from dataclasses import dataclass

import m3u8

from kithara_hls.errors import HlsError, PlaylistParseError, UnsupportedEncryption
from kithara_hls.options import DEFAULT_MAX_SEGMENTS
from kithara_hls.playlist_checks import (
    byterange_values,
    check_byterange,
    check_duration,
    drm_system,
    iv_bytes,
    playlist_body,
    resolve_uri,
)
from kithara_hls.playlist_checks import check_url as check_url
from kithara_hls.playlist_checks import looks_like_playlist as looks_like_playlist
from kithara_hls.playlist_master import MasterPlaylist as MasterPlaylist
from kithara_hls.playlist_master import Rendition as Rendition
from kithara_hls.playlist_master import Variant as Variant
from kithara_hls.playlist_master import build_master
from kithara_hls.playlist_tags import (
    END_MARK,
    KeyFields,
    LineHook,
    MapTag,
    master_tags,
)
from kithara_hls.playlist_vars import substitute


@dataclass(frozen=True)
class ByteRange:
    """`length` bytes of a resource from `offset` (EXT-X-BYTERANGE, MAP BYTERANGE)."""

    offset: int
    length: int

    @property
    def end(self) -> int:
        """The offset just past the range (exclusive)."""
        return self.offset + self.length


@dataclass(frozen=True)
class Key:
    """An AES-128 key (EXT-X-KEY); METHOD=NONE is a segment whose key is None.

    uri is absolute; iv is the 16 bytes of the IV attribute, or None when the
    IV derives from the media sequence number.
    """

    method: str
    uri: str
    iv: bytes | None
    keyformat: str = "identity"


@dataclass(frozen=True)
class InitSection:
    """A media initialization section (EXT-X-MAP).

    key is the EXT-X-KEY in force on the MAP tag's line (RFC 8216 4.3.2.4), which
    may differ from the key of the segments that follow it. Segments sharing a MAP
    tag share one `InitSection` object.
    """

    uri: str
    byterange: ByteRange | None
    key: Key | None

    @property
    def iv(self) -> bytes:
        """The IV for an encrypted init: the key's IV, else zeros (as hls.js does).

        RFC 8216 requires an IV attribute on a key that applies to an EXT-X-MAP.
        """
        if self.key is not None and self.key.iv is not None:
            return self.key.iv
        return bytes(16)


@dataclass(frozen=True)
class Segment:
    """One media segment. uri is absolute; start is the sum of earlier durations."""

    index: int
    sequence: int
    uri: str
    duration: float
    start: float
    byterange: ByteRange | None
    key: Key | None
    init: InitSection | None
    discontinuity: bool
    gap: bool = False  # EXT-X-GAP: listed, but its media is missing from this variant

    @property
    def iv(self) -> bytes:
        """The AES-128 IV: the key's IV, else the sequence number as 16 big-endian bytes."""
        if self.key is not None and self.key.iv is not None:
            return self.key.iv
        return self.sequence.to_bytes(16, "big")


@dataclass(frozen=True)
class MediaPlaylist:
    """A complete (VOD) media playlist: at least one segment, in playback order."""

    url: str
    segments: tuple[Segment, ...]
    target_duration: float
    media_sequence: int

    @property
    def duration(self) -> float:
        """Seconds of media: the sum of the EXTINF durations."""
        if not self.segments:
            return 0.0
        last = self.segments[-1]
        return last.start + last.duration

    def segment_at(self, t: float) -> int:
        """Index of the segment holding time `t`, clamped to the first and the last."""
        i = bisect.bisect_right(self.segments, t, key=lambda s: s.start) - 1
        return min(max(i, 0), len(self.segments) - 1)


def parse(
    text: str | bytes,
    url: str,
    *,
    max_segments: int = DEFAULT_MAX_SEGMENTS,
    imports: Mapping[str, str] | None = None,
) -> MasterPlaylist | MediaPlaylist:
    """Parse a master or a media playlist fetched from `url` (the final URL).

    `imports` are the variables of the master playlist a media playlist was
    named by (`MasterPlaylist.variables`), for its EXT-X-DEFINE IMPORT. Raises
    `PlaylistParseError` for a body that is not a playlist or breaks a rule or a
    limit, `InvalidUrl` for a URI that is not allowed, `UnsupportedEncryption`
    for encryption the library cannot decrypt (DRM, SAMPLE-AES), and
    `KeyProcessingError` for a key it cannot use.
    """
    return _parse(text, url, max_segments, None, imports)


def parse_master(
    text: str | bytes,
    url: str,
    *,
    max_segments: int = DEFAULT_MAX_SEGMENTS,
    imports: Mapping[str, str] | None = None,
) -> MasterPlaylist:
    """Like `parse`, but a media playlist raises `PlaylistParseError`."""
    result = _parse(text, url, max_segments, MasterPlaylist, imports)
    assert isinstance(result, MasterPlaylist)
    return result


def parse_media(
    text: str | bytes,
    url: str,
    *,
    max_segments: int = DEFAULT_MAX_SEGMENTS,
    imports: Mapping[str, str] | None = None,
) -> MediaPlaylist:
    """Like `parse`, but a master playlist raises `PlaylistParseError`."""
    result = _parse(text, url, max_segments, MediaPlaylist, imports)
    assert isinstance(result, MediaPlaylist)
    return result


def _parse(
    text: str | bytes, url: str, max_segments: int, want: type | None, imports: Mapping[str, str] | None
) -> MasterPlaylist | MediaPlaylist:
    """`parse`, expecting `want` (None: either kind)."""
    check_url(url, local=True)  # the URL it was read from: a file: one only if the user chose it
    body, line_offset = playlist_body(text, url)
    body, variables = substitute(body, url, line_offset, imports)
    hook = LineHook(url, line_offset, max_segments)
    loaded = _load(body, url, hook)
    is_master = hook.is_master()
    if want is MediaPlaylist and is_master:
        raise PlaylistParseError("expected a media playlist, got a master playlist", url=url)
    if want is MasterPlaylist and not is_master:
        raise PlaylistParseError("expected a master playlist, got a media playlist", url=url)
    if is_master:
        return build_master(master_tags(body, line_offset), url, variables)
    return _MediaBuilder(url, hook).build(loaded, max_segments)


def _load(body: str, url: str, hook: LineHook) -> m3u8.M3U8:
    try:
        return m3u8.loads(body + "\n" + END_MARK, uri=url, custom_tags_parser=hook)
    except HlsError:
        raise
    except Exception as exc:  # m3u8 raises bare ValueError, KeyError, TypeError... on bad input
        where = None if hook.finished else hook.lineno
        raise PlaylistParseError(f"malformed playlist ({type(exc).__name__})", url=url, lineno=where) from exc


class _MediaBuilder:
    """Turns m3u8's segments into ours, in playlist order (BYTERANGE offsets chain)."""

    def __init__(self, url: str, hook: LineHook) -> None:
        self.url = url
        self.hook = hook
        self.start = 0.0
        self.range_ends: dict[str, int] = {}  # absolute URI -> end of its last range
        self.inits: dict[MapTag, InitSection] = {}
        self.keys: dict[KeyFields, Key | None] = {}

    def build(self, loaded: m3u8.M3U8, max_segments: int) -> MediaPlaylist:
        if loaded.is_i_frames_only:
            raise PlaylistParseError("I-frame playlists are not supported", url=self.url)
        if not loaded.segments:
            raise PlaylistParseError("the playlist has no segments", url=self.url)
        if not self.hook.is_complete(bool(loaded.is_endlist)):
            raise PlaylistParseError(
                "live playlists are not supported (no #EXT-X-ENDLIST, PLAYLIST-TYPE is not VOD)", url=self.url
            )
        if len(loaded.segments) > max_segments:
            raise PlaylistParseError(f"more than {max_segments} segments", url=self.url)
        segments = tuple(self._segment(i, s) for i, s in enumerate(loaded.segments))
        duration = segments[-1].start + segments[-1].duration
        if not math.isfinite(duration):
            raise PlaylistParseError("total duration is not finite", url=self.url)
        target = self.hook.target_duration
        if target is None:  # RFC 8216 requires the tag; fall back to what it bounds
            target = max(s.duration for s in segments)
        return MediaPlaylist(self.url, segments, target, self.hook.media_sequence)

    def _segment(self, index: int, raw: m3u8.Segment) -> Segment:
        values = raw.custom_parser_values
        lineno = values.get("lineno")
        if not raw.uri:
            raise PlaylistParseError("segment without URI", url=self.url, lineno=lineno)
        if raw.duration is None:
            raise PlaylistParseError("segment without EXTINF", url=self.url, lineno=lineno)
        duration = check_duration(raw.duration, "EXTINF", self.url, lineno)
        uri = resolve_uri(raw.uri, self.url)
        tag = values.get("map")
        init = None if tag is None else self._init(tag, index)
        byterange = None if raw.byterange is None else self._range(raw.byterange, uri, lineno, None)
        key = self._key(values.get("key"), index, values.get("key_line"))
        segment = Segment(
            index=index,
            sequence=self.hook.media_sequence + index,
            uri=uri,
            duration=duration,
            start=self.start,
            byterange=byterange,
            key=key,
            init=init,
            discontinuity=bool(raw.discontinuity),
            gap=bool(values.get("gap")),
        )
        self.start += duration
        return segment

    def _init(self, tag: MapTag, index: int) -> InitSection:
        init = self.inits.get(tag)
        if init is None:
            if not tag.uri:
                raise PlaylistParseError("EXT-X-MAP without URI", url=self.url, lineno=tag.lineno)
            uri = resolve_uri(tag.uri, self.url)
            byterange = None
            if tag.byterange is not None:
                # An init sits at the start of its resource when nothing precedes it
                # there (ExoPlayer and hls.js read an offset-less MAP range so too).
                byterange = self._range(tag.byterange, uri, tag.lineno, 0)
            key = self._key(tag.key, index, tag.lineno)
            init = self.inits[tag] = InitSection(uri=uri, byterange=byterange, key=key)
        return init

    def _range(self, raw: str, uri: str, lineno: int | None, default_offset: int | None) -> ByteRange:
        length, offset = byterange_values(raw, self.url, lineno)
        if offset is None:
            offset = self.range_ends.get(uri, default_offset)
        if offset is None:
            raise PlaylistParseError(
                "BYTERANGE without offset, and no earlier range of the same URI", url=self.url, lineno=lineno
            )
        check_byterange(length, offset, self.url, lineno)
        self.range_ends[uri] = offset + length
        return ByteRange(offset=offset, length=length)

    def _key(self, fields: KeyFields | None, index: int, lineno: int | None) -> Key | None:
        if fields is None:
            return None
        if fields not in self.keys:
            self.keys[fields] = self._make_key(fields, index, lineno)
        return self.keys[fields]

    def _make_key(self, fields: KeyFields, index: int, lineno: int | None) -> Key | None:
        method, uri, iv, keyformat = fields
        method = (method or "").strip().upper()
        if not method:
            raise PlaylistParseError("EXT-X-KEY without METHOD", url=self.url, lineno=lineno)
        if method == "NONE":
            return None
        system = drm_system(uri, keyformat)
        if method != "AES-128" or system is not None:
            raise UnsupportedEncryption(
                method[:40], system=system, url=self.url, segment=index, lineno=lineno
            )
        if not uri:
            raise PlaylistParseError("AES-128 key without URI", url=self.url, lineno=lineno)
        iv_value = None if iv is None else iv_bytes(iv, self.url, lineno)
        uri = resolve_uri(uri, self.url)
        return Key(method="AES-128", uri=uri, iv=iv_value)
