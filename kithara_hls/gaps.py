"""EXT-X-GAP: a segment one variant lacks is taken from another variant that can stand in for it.

A gap is never requested. Where another variant of the same switch set has a
segment covering the gap's start (not itself a gap), that segment takes the
gap's place in the plan, nearest variant first (init sections spliced as for
any switch). Where none has it, the gap stays in the plan with size 0
(`Part.gap`) and the read that reaches it raises `SegmentGap`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from .layout import Part, build_mixed
from .playlist import InitSection, MediaPlaylist

#: A substitute segment must begin within this many seconds of the gap it fills.
ALIGN_S = 0.1


def has_gaps(media: MediaPlaylist, first: int = 0) -> bool:
    """Whether a segment of `media` from `first` on is marked EXT-X-GAP."""
    return any(seg.gap for seg in media.segments[first:])


def plan(
    media: MediaPlaylist,
    variant: int,
    others: Mapping[int, MediaPlaylist],
    first: int = 0,
    current_init: InitSection | None = None,
    *,
    compatible: Callable[[int, int], bool],
) -> list[Part]:
    """Parts for `media`'s segments from `first` on (as `build_parts`), each gap filled from
    `others` (media playlists by variant) where a variant of the same switch set has the
    segment: `compatible(variant, other)`, as `Switcher.same_set`."""
    order = sorted((v for v in others if v != variant), key=lambda v: (abs(v - variant), v))
    choices = []
    for seg in media.segments[first:]:
        pick = (media, variant, seg.index)
        if seg.gap:
            for v in order:
                other = others[v]
                stand_in = other.segments[other.segment_at(seg.start + 1e-3)]
                if not stand_in.gap and abs(stand_in.start - seg.start) <= ALIGN_S and compatible(variant, v):
                    pick = (other, v, stand_in.index)
                    break
        choices.append(pick)
    return build_mixed(choices, current_init)
