"""Master playlists: variants (EXT-X-STREAM-INF) and renditions (EXT-X-MEDIA).

`playlist` hands the tags of a master, as `playlist_tags.master_tags` read
them, to `build_master`. Variants are kept unique by URI and sorted by bitrate;
every URI is resolved and checked like any other. An EXT-X-MEDIA of any TYPE
(AUDIO, VIDEO, SUBTITLES, CLOSED-CAPTIONS) becomes a `Rendition`; one without a
valid TYPE, a GROUP-ID or a NAME is skipped with a warning, as hls.js lists it
leniently and ExoPlayer fails the whole master (a broken subtitle tag should
not stop the audio). An AUDIO rendition's codecs are the audio entries of the
CODECS of the variants that name its group.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from kithara_hls.errors import PlaylistParseError
from kithara_hls.playlist_checks import resolve_uri
from kithara_hls.playlist_tags import (
    MasterTags,
    MediaTag,
    bandwidth_value,
    codec_entries,
    is_audio_codec,
    is_video_codec,
    resolution_value,
)

log = logging.getLogger(__name__)

_RENDITION_TYPES = ("AUDIO", "VIDEO", "SUBTITLES", "CLOSED-CAPTIONS")


@dataclass(frozen=True)
class Variant:
    """One EXT-X-STREAM-INF entry of a master playlist. uri is absolute."""

    uri: str
    bandwidth: int
    average_bandwidth: int | None
    codecs: str | None
    resolution: tuple[int, int] | None
    name: str | None = None
    audio: str | None = None  # the GROUP-ID of its AUDIO renditions
    video: str | None = None  # ... of its VIDEO renditions
    subtitles: str | None = None  # ... of its SUBTITLES renditions

    @property
    def bitrate(self) -> int:
        """AVERAGE-BANDWIDTH if present, else BANDWIDTH, in bits per second."""
        return self.average_bandwidth if self.average_bandwidth is not None else self.bandwidth

    @property
    def audio_only(self) -> bool:
        """Whether CODECS names an audio codec and no video codec.

        An unknown entry (RFC 8216's ``"..."``, a text track) is neither; a
        variant without CODECS is not audio-only.
        """
        entries = codec_entries(self.codecs)
        return any(is_audio_codec(e) for e in entries) and not any(is_video_codec(e) for e in entries)


@dataclass(frozen=True)
class Rendition:
    """One EXT-X-MEDIA of a master playlist.

    type is AUDIO, VIDEO, SUBTITLES or CLOSED-CAPTIONS; channels is CHANNELS as
    written ("2", "6", "16/JOC"); autoselect is true under DEFAULT=YES too (RFC
    8216 §4.3.4.1). uri is absolute, or None when the media is in the variants
    that name the group (always None for CLOSED-CAPTIONS). codecs, for AUDIO, is
    the audio entries of the CODECS of the variants that name its group, where known.
    """

    type: str
    group: str
    name: str
    language: str | None
    channels: str | None
    default: bool
    autoselect: bool
    uri: str | None
    codecs: str | None = None


@dataclass(frozen=True)
class MasterPlaylist:
    """A master playlist: its variants by bitrate, lowest first, unique by URI.

    renditions are its EXT-X-MEDIA in playlist order; variables its EXT-X-DEFINE
    values as (name, value), which its media playlists may IMPORT.
    """

    url: str
    variants: tuple[Variant, ...]
    renditions: tuple[Rendition, ...] = ()
    variables: tuple[tuple[str, str], ...] = ()


def build_master(tags: MasterTags, url: str, variables: tuple[tuple[str, str], ...]) -> MasterPlaylist:
    """The `MasterPlaylist` of `tags`, read from `url`, with the `variables` it defines."""
    variants: list[Variant] = []
    seen: set[str] = set()
    for attrs, ref, lineno in tags.stream_infs:
        bandwidth = bandwidth_value(attrs.get("BANDWIDTH"))
        if bandwidth is None:
            raw = attrs.get("BANDWIDTH")
            found = "none" if raw is None else repr(raw[:40])
            raise PlaylistParseError(
                f"EXT-X-STREAM-INF needs a positive BANDWIDTH, not {found}", url=url, lineno=lineno
            )
        uri = resolve_uri(ref, url)
        if uri in seen:
            continue
        seen.add(uri)
        average = bandwidth_value(attrs.get("AVERAGE-BANDWIDTH"))  # None: absent or unusable for ranking
        variants.append(
            Variant(
                uri,
                bandwidth,
                average,
                attrs.get("CODECS") or None,
                resolution_value(attrs.get("RESOLUTION")),
                audio=attrs.get("AUDIO") or None,
                video=attrs.get("VIDEO") or None,
                subtitles=attrs.get("SUBTITLES") or None,
            )
        )
    if not variants:
        raise PlaylistParseError("the master playlist has no variants", url=url)
    variants.sort(key=lambda v: (v.bitrate, v.bandwidth))
    # Every STREAM-INF counts here, also one dropped as a duplicate URI: Apple's masters
    # repeat a video URI once per audio group, each with that group's audio codec.
    group_codecs = [(attrs.get("AUDIO"), attrs.get("CODECS")) for attrs, _, _ in tags.stream_infs]
    renditions = tuple(r for r in (_rendition(tag, url, group_codecs) for tag in tags.media) if r is not None)
    return MasterPlaylist(url=url, variants=tuple(variants), renditions=renditions, variables=variables)


def _rendition(
    tag: MediaTag, url: str, group_codecs: list[tuple[str | None, str | None]]
) -> Rendition | None:
    """An EXT-X-MEDIA as a `Rendition`; None (and a warning) without TYPE, GROUP-ID or NAME.

    hls.js lists such a tag anyway and ExoPlayer fails the whole master; skipping
    it keeps the variants and the other renditions playable, and does not invent
    a group or a name.
    """
    attrs = tag.attrs
    kind = attrs.get("TYPE", "").strip().upper()
    group, name = attrs.get("GROUP-ID"), attrs.get("NAME")
    if kind not in _RENDITION_TYPES or not group or not name:
        missing = [
            k for k, v in (("TYPE", kind in _RENDITION_TYPES), ("GROUP-ID", group), ("NAME", name)) if not v
        ]
        log.warning("EXT-X-MEDIA on line %d skipped: no valid %s", tag.lineno, ", ".join(missing))
        return None
    ref = attrs.get("URI") or None
    uri = None
    if ref is not None and kind != "CLOSED-CAPTIONS":  # captions live in the video stream: never a URI
        uri = resolve_uri(ref, url)
    default = _yes(attrs.get("DEFAULT"))
    codecs = None
    if kind == "AUDIO":
        entries = [
            entry
            for audio, variant_codecs in group_codecs
            if audio == group
            for entry in codec_entries(variant_codecs)
            if is_audio_codec(entry)
        ]
        codecs = ",".join(dict.fromkeys(entries)) or None
    return Rendition(
        type=kind,
        group=group,
        name=name,
        language=attrs.get("LANGUAGE") or None,
        channels=attrs.get("CHANNELS") or None,
        default=default,
        autoselect=default or _yes(attrs.get("AUTOSELECT")),
        uri=uri,
        codecs=codecs,
    )


def _yes(value: str | None) -> bool:
    # An enumerated-string YES/NO; packagers write either case.
    return (value or "").strip().upper() == "YES"
