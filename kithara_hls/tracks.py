"""What the file carries: the muxed variant ladder, or one audio track. Pure: a master in, a ladder out.

A master may keep its audio apart from the video: ``EXT-X-MEDIA:TYPE=AUDIO``
renditions with a URI (Shaka Packager always, Bento4 and ffmpeg's
``var_stream_map`` with ``agroup`` when audio is not muxed), or audio-only
``EXT-X-STREAM-INF`` variants (CODECS with no video codec). This library is
audio-first, so `choose` plays the audio alone wherever the master offers it,
and the muxed ladder otherwise.

The rendition is chosen as hls.js and ExoPlayer do: the user's preference (a
LANGUAGE, RFC 5646 tags compared case-insensitively, "en" matching "en-US" and
"en-US" falling back to "en" as RFC 4647 lookup does; or a NAME), then
DEFAULT=YES, then AUTOSELECT=YES, then the first with a URI. A rendition with
no URI has its audio muxed in the variants of its group, which are then played.

Renditions with the same NAME and LANGUAGE in several AUDIO groups (a 64k and a
128k AAC group referenced by different variants) are one track at several
bitrates, as ExoPlayer groups them: they form the ladder ABR moves over.
EXT-X-MEDIA has no BANDWIDTH, so a rung's bitrate is measured after the master
is read (`PlaylistLoader`: BYTERANGE lengths, else the size of the first
segment); the ladder's order is that of the groups' lowest referencing variant
BANDWIDTH, which needs the master alone, so an index means the same rung online
and offline. A ladder never mixes channel counts or (where CODECS tell)
codec families.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import NoAudioTrack, VariantNotFound
from .options import TRACKS
from .playlist import MasterPlaylist, Rendition, Variant


@dataclass(frozen=True)
class TrackChoice:
    """What a master's file carries.

    track: "audio" (the audio alone) or "muxed" (the variants, video and all).
    variants: the ladder played, lowest bitrate first; a rung made from a
    rendition has the rendition's URI, NAME and codecs, its group as `audio`,
    and bandwidth 0 until measured. rendition: the rendition whose audio is
    played (in the muxed ladder, a URI-less one whose group the variants were
    taken from), None when no rendition was chosen. measure: the rungs'
    bitrates are unknown (they came from renditions) and need measuring.
    """

    track: str
    variants: tuple[Variant, ...]
    rendition: Rendition | None = None
    measure: bool = False


def choose(master: MasterPlaylist, *, track: str = "auto", audio: str | None = None) -> TrackChoice:
    """The ladder to play from `master` for `track` ("auto", "audio", "muxed") and an `audio` preference.

    "auto" plays the audio alone when the master's audio lives only in
    renditions with a URI, or when it has audio-only variants; else the muxed
    ladder. An `audio` preference (a language or a name) implies the audio.
    Raises `VariantNotFound` when no rendition matches `audio` (naming those
    there are) and `NoAudioTrack` when the audio cannot be played alone.
    """
    if track not in TRACKS:
        raise ValueError(f"track must be one of {', '.join(TRACKS)}, not {track!r}")
    renditions = [r for r in master.renditions if r.type == "AUDIO"]
    if track == "muxed":
        return TrackChoice("muxed", muxed_ladder(master))
    if audio is not None:
        return _preferred(master, renditions, audio, strict=track == "audio")
    with_uri = [r for r in renditions if r.uri is not None]
    audio_only = [v for v in master.variants if v.audio_only]
    if track == "auto" and not (audio_only or _audio_apart(master, renditions)):
        return TrackChoice("muxed", muxed_ladder(master))
    if with_uri:
        chosen = pick_rendition(with_uri)
        assert chosen is not None
        return TrackChoice("audio", audio_ladder(master, chosen), chosen, measure=True)
    if audio_only:
        return TrackChoice("audio", tuple(audio_only))
    raise NoAudioTrack(
        "the master has no audio to play alone (no audio rendition with a URI, no audio-only variant)",
        url=master.url,
    )


def muxed_ladder(master: MasterPlaylist) -> tuple[Variant, ...]:
    """The variants with video, or all of them when none has (audio-only variants join no video
    ladder, as hls.js and ExoPlayer drop them beside video)."""
    video = tuple(v for v in master.variants if not v.audio_only)
    return video or master.variants


def pick_rendition(renditions: Sequence[Rendition], preference: str | None = None) -> Rendition | None:
    """The rendition a player picks: the best `preference` match, then DEFAULT, AUTOSELECT, a URI.

    None when `preference` matches none of them (or there are none).
    """
    ranked = []
    for position, rendition in enumerate(renditions):
        rank = 0 if preference is None else match_rank(rendition, preference)
        if rank is not None:
            key = (rank, not rendition.default, not rendition.autoselect, rendition.uri is None, position)
            ranked.append((key, rendition))
    return min(ranked, key=lambda kr: kr[0])[1] if ranked else None


def match_rank(rendition: Rendition, preference: str) -> int | None:
    """How well `rendition` matches a language or name: 0 exactly, 1 the language extends it
    ("en" for "en-US"), 2 it extends the language ("en-US" for "en"); None not at all."""
    wanted = preference.strip().casefold()
    if not wanted:
        return None
    if rendition.name.strip().casefold() == wanted:
        return 0
    language = (rendition.language or "").strip().casefold()
    if not language:
        return None
    if language == wanted:
        return 0
    if language.startswith(wanted + "-"):
        return 1
    if wanted.startswith(language + "-"):
        return 2
    return None


def audio_ladder(master: MasterPlaylist, chosen: Rendition) -> tuple[Variant, ...]:
    """The rungs of `chosen`'s track: its NAME and LANGUAGE with a URI in each AUDIO group,
    of the same channels and codec family, ordered by the lowest BANDWIDTH of the variants
    referencing each group (a group no variant references goes last)."""

    def group_rank(rendition: Rendition) -> float:
        rates = [v.bandwidth for v in master.variants if v.audio == rendition.group]
        return min(rates) if rates else math.inf

    rungs: list[Rendition] = []
    groups: set[str] = set()
    uris: set[str] = set()
    for rendition in master.renditions:
        if (
            rendition.type == "AUDIO"
            and rendition.uri is not None
            and _same_track(rendition, chosen)
            and rendition.group not in groups
            and rendition.uri not in uris
        ):
            rungs.append(rendition)
            groups.add(rendition.group)
            uris.add(rendition.uri)
    if chosen not in rungs:  # a second rendition of the same track in one group
        rungs = [r for r in rungs if r.group != chosen.group] + [chosen]
    rungs.sort(key=group_rank)  # stable: master order among equals
    return tuple(rung(r) for r in rungs)


def rung(rendition: Rendition, bandwidth: int = 0) -> Variant:
    """A ladder rung (a `Variant`) made of an audio rendition with a URI."""
    assert rendition.uri is not None
    return Variant(
        uri=rendition.uri,
        bandwidth=bandwidth,
        average_bandwidth=None,
        codecs=rendition.codecs,
        resolution=None,
        name=rendition.name,
        audio=rendition.group,
    )


def ladder_bitrates(measured: Sequence[int | None]) -> list[int]:
    """Bitrates for rungs measured in ladder order (None: unknown), made ascending as ABR needs.

    An unknown rung takes the rate of the rung below it (else the one above);
    a rung measured below the one before it takes that one's rate. All unknown:
    all 0 (unknown, and ABR does not run over them).
    """
    known = [m for m in measured if m is not None and m > 0]
    if not known:
        return [0] * len(measured)
    rates: list[int] = []
    floor = known[0]
    for m in measured:
        floor = max(floor, m) if m is not None and m > 0 else floor
        rates.append(floor)
    return rates


def describe(renditions: Sequence[Rendition]) -> str:
    """The languages and names of `renditions`, for an error message."""
    languages = sorted({r.language for r in renditions if r.language})
    names = sorted({r.name for r in renditions if r.name})
    if not languages and not names:
        return "the master names no audio rendition"
    return f"languages: {', '.join(languages) or 'none'}; names: {', '.join(names) or 'none'}"


def _preferred(
    master: MasterPlaylist, renditions: list[Rendition], audio: str, *, strict: bool
) -> TrackChoice:
    """The track for an `audio` preference; `strict` (track="audio"): the audio alone or an error."""
    chosen = pick_rendition(renditions, audio)
    if chosen is None:
        raise VariantNotFound(
            f"no audio rendition matches {audio!r} ({describe(renditions)})", url=master.url
        )
    if chosen.uri is not None:
        return TrackChoice("audio", audio_ladder(master, chosen), chosen, measure=True)
    # The audio is muxed in its group's variants.
    alone = pick_rendition([r for r in renditions if r.uri is not None], audio)
    if strict:
        if alone is not None:
            return TrackChoice("audio", audio_ladder(master, alone), alone, measure=True)
        raise NoAudioTrack(
            f"the audio {chosen.name!r} is muxed in the variants, not a rendition of its own "
            "(track='auto' plays those variants)",
            url=master.url,
        )
    ladder = tuple(v for v in muxed_ladder(master) if v.audio == chosen.group)
    return TrackChoice("muxed", ladder or muxed_ladder(master), chosen)


def _audio_apart(master: MasterPlaylist, renditions: list[Rendition]) -> bool:
    """True when the audio lives only in renditions with a URI: every such rendition has one, and
    every variant names an AUDIO group (a variant naming none carries its audio muxed)."""
    return (
        bool(renditions)
        and all(r.uri is not None for r in renditions)
        and all(v.audio is not None for v in master.variants)
    )


def _same_track(rendition: Rendition, chosen: Rendition) -> bool:
    """Same NAME, LANGUAGE and CHANNELS, and the same codec family where both CODECS are known."""
    if rendition is chosen:
        return True
    same = (
        rendition.name == chosen.name
        and (rendition.language or "").casefold() == (chosen.language or "").casefold()
        and rendition.channels == chosen.channels
    )
    families = {_family(r.codecs) for r in (rendition, chosen)}
    return same and (None in families or len(families) == 1)


def _family(codecs: str | None) -> str | None:
    """The codec family: the first entry's sample entry, lower-case ("mp4a" of "mp4a.40.2")."""
    if not codecs or not codecs.strip():
        return None
    return codecs.split(",")[0].strip().split(".")[0].casefold()
