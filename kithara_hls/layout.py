"""The virtual stream: which resource holds which bytes, at exact offsets.

The stream is a list of parts, ``[init][seg0][seg1]...``: an init section
(EXT-X-MAP) appears at the start and again only where it changes. A part's
size is its plaintext size; it becomes known from BYTERANGE, headers, a probe
or the cache. Offsets are prefix sums over the leading parts whose sizes are
known, so they are exact, never estimates.

Parts before `committed` are frozen (the reader has reached them); an ABR
switch replaces only parts after it.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from .cache import digest
from .playlist import ByteRange, InitSection, Key, MediaPlaylist, Segment
from .store import SizeInfo


@dataclass(frozen=True)
class Part:
    """One resource in the virtual stream: an init section or a media segment."""

    rid: str
    url: str
    byterange: ByteRange | None
    key: Key | None
    iv: bytes | None
    variant: int
    segment: int  # for an init section: the segment it precedes
    is_init: bool
    duration: float
    start: float  # media time at the part's start

    @property
    def base(self) -> tuple[int, int] | None:
        """The BYTERANGE as (offset, length), for the HTTP client."""
        br = self.byterange
        return None if br is None else (br.offset, br.length)

    @property
    def label(self) -> str:
        """A short human name: 'init 3@v1' or 'segment 3@v1'."""
        kind = "init" if self.is_init else "segment"
        return f"{kind} {self.segment}@v{self.variant}"


def resource_id(url: str, byterange: ByteRange | None) -> str:
    """The cache id of a URL (or a BYTERANGE slice of it); the URL never appears in clear."""
    if byterange is None:
        return digest("res", url)
    return digest("res", url, byterange.offset, byterange.length)


def _init_part(init: InitSection, variant: int, segment: int, start: float) -> Part:
    key = init.key
    iv = None
    if key is not None:
        iv = key.iv if key.iv is not None else bytes(16)
    return Part(
        resource_id(init.uri, init.byterange),
        init.uri,
        init.byterange,
        key,
        iv,
        variant,
        segment,
        True,
        0.0,
        start,
    )


def build_parts(
    media: MediaPlaylist, variant: int, first_segment: int = 0, current_init: InitSection | None = None
) -> list[Part]:
    """Parts for `media`'s segments from `first_segment` on, with init sections where they change."""
    parts: list[Part] = []
    for seg in media.segments[first_segment:]:
        current_init = _add_segment(parts, seg, variant, current_init)
    return parts


def build_mixed(
    choices: Iterable[tuple[MediaPlaylist, int, int]], current_init: InitSection | None = None
) -> list[Part]:
    """Parts for (media, variant, segment index) choices in order, with init sections where they change."""
    parts: list[Part] = []
    for media, variant, index in choices:
        current_init = _add_segment(parts, media.segments[index], variant, current_init)
    return parts


def _add_segment(
    parts: list[Part], seg: Segment, variant: int, current_init: InitSection | None
) -> InitSection | None:
    """Append `seg`'s part, after its init section if that changes; return the init now in force."""
    init = seg.init
    # Segments share their InitSection object: `is` spares the field-by-field comparison.
    if init is not None and init is not current_init and init != current_init:
        parts.append(_init_part(init, variant, seg.index, seg.start))
        current_init = init
    key = seg.key
    iv = None if key is None else seg.iv
    rid = resource_id(seg.uri, seg.byterange)
    parts.append(_new_part(rid, seg.uri, seg.byterange, key, iv, variant, seg.index, seg.duration, seg.start))
    return current_init


def _new_part(
    rid: str,
    url: str,
    byterange: ByteRange | None,
    key: Key | None,
    iv: bytes | None,
    variant: int,
    segment: int,
    duration: float,
    start: float,
) -> Part:
    """A media segment's `Part`."""
    return Part(rid, url, byterange, key, iv, variant, segment, False, duration, start)


def plain_size(part: Part, info: SizeInfo | None) -> int | None:
    """A part's plaintext size from its raw size info, or None while unknown."""
    if info is None:
        return None
    if part.key is None:
        return info.size
    return None if info.pad is None else info.size - info.pad


class Layout:
    """Thread-safe list of parts with exact offsets over the known prefix."""

    def __init__(self, parts: Iterable[Part]) -> None:
        self._lock = threading.Lock()
        self._parts = list(parts)
        self._info: dict[str, SizeInfo] = {}
        self._offsets = [0]  # offsets[i]: start of part i, for i < len(offsets)
        self._index_times()
        self._resources: int | None = None
        self.committed = 0

    def _index_times(self) -> None:
        """The media times `window` and `index_at_time` bisect. Call under the lock (or in __init__)."""
        self._starts = [p.start for p in self._parts]
        self._media = [i for i, p in enumerate(self._parts) if not p.is_init]
        self._media_starts = [self._parts[i].start for i in self._media]

    def __len__(self) -> int:
        return len(self._parts)

    def resource_count(self) -> int:
        """How many distinct resources the parts use."""
        with self._lock:
            if self._resources is None:
                self._resources = len({p.rid for p in self._parts})
            return self._resources

    def part(self, index: int) -> Part:
        """The part at `index`."""
        with self._lock:
            return self._parts[index]

    def parts(self, start: int = 0, stop: int | None = None) -> list[Part]:
        """A snapshot of parts[start:stop]."""
        with self._lock:
            return self._parts[start:stop]

    def learn(self, rid: str, info: SizeInfo) -> None:
        """Record the raw size (and padding) of a resource."""
        with self._lock:
            self._info[rid] = info
            self._extend()

    def _extend(self) -> None:
        offsets, parts = self._offsets, self._parts
        while len(offsets) <= len(parts):
            i = len(offsets) - 1
            size = plain_size(parts[i], self._info.get(parts[i].rid))
            if size is None:
                return
            offsets.append(offsets[-1] + size)

    def size_of(self, index: int) -> int | None:
        """Plaintext size of part `index`, if known."""
        with self._lock:
            part = self._parts[index]
            return plain_size(part, self._info.get(part.rid))

    def info(self, rid: str) -> SizeInfo | None:
        """Raw size info of a resource, if known."""
        with self._lock:
            return self._info.get(rid)

    def start_of(self, index: int) -> int | None:
        """Byte offset of part `index` (len(self) for the end), if known."""
        with self._lock:
            return self._offsets[index] if index < len(self._offsets) else None

    def total(self) -> int | None:
        """The stream's size, if every part's size is known."""
        return self.start_of(len(self))

    def locate(self, pos: int) -> tuple[int, int]:
        """(part index, offset in part) for `pos`.

        Beyond the known prefix, answers the first part of unknown size with the
        offset from its start: reading it teaches its size. Past the end, the
        index is len(self).
        """
        with self._lock:
            offsets = self._offsets
            i = bisect.bisect_right(offsets, pos) - 1
            if i >= len(self._parts):
                return len(self._parts), pos - offsets[-1]
            return i, pos - offsets[i]

    def unknown(self, start: int, stop: int) -> list[int]:
        """Indices in [start, stop) whose sizes are unknown."""
        with self._lock:
            stop = min(stop, len(self._parts))
            first = max(start, len(self._offsets) - 1)
            return [
                i
                for i in range(first, stop)
                if plain_size(self._parts[i], self._info.get(self._parts[i].rid)) is None
            ]

    def window(self, start: int, seconds: float) -> list[tuple[Part, int | None]]:
        """Parts from `start` that begin less than `seconds` after it (at least one), with their sizes."""
        with self._lock:
            if start >= len(self._parts):
                return []
            stop = max(start + 1, bisect.bisect_left(self._starts, self._starts[start] + seconds, lo=start))
            info = self._info
            return [(p, plain_size(p, info.get(p.rid))) for p in self._parts[start:stop]]

    def index_at_time(self, t: float) -> int:
        """Index of the media part holding media time `t` (clamped to the first and last), in O(log n).

        Of media parts sharing a start (zero-length segments), the first.
        """
        with self._lock:
            starts = self._media_starts
            if not starts:
                return len(self._parts)
            k = max(0, bisect.bisect_right(starts, t) - 1)
            return self._media[bisect.bisect_left(starts, starts[k], hi=k)]

    def commit(self, index: int) -> None:
        """Freeze parts up to and including `index`."""
        with self._lock:
            self.committed = max(self.committed, min(index + 1, len(self._parts)))

    def replace_from(self, index: int, parts: list[Part]) -> bool:
        """Replace parts from `index` on; False (and no change) if the reader already reached it."""
        with self._lock:
            if index < self.committed:
                return False
            self._parts[index:] = parts
            self._index_times()
            self._resources = None
            del self._offsets[index + 1 :]
            self._extend()
            return True
