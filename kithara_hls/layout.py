"""The virtual stream: which resource holds which bytes, at exact offsets.

The stream is a list of parts, ``[init][seg0][seg1]...``: an init section
(EXT-X-MAP) appears at the start and again only where it changes. A part's
size is its plaintext size; it becomes known from BYTERANGE, headers, a probe
or the cache. Offsets are prefix sums over the leading parts whose sizes are
known, so they are exact, never estimates.

Parts before `committed` are frozen; an ABR switch replaces only parts from
it on. The parts before the reader's are frozen, and the reader's own once it
was returned bytes of it (or read from past its start): a part the reader waits
on with nothing returned may still be re-planned, at the same start offset.

Packed audio: a media part after the stream's first that begins with an ID3
tag is presented without it (see `id3.py`), so its size counts only once the
tag's length is known (`SizeInfo.head`). A gap (EXT-X-GAP) no other variant
fills has size 0: it is never fetched, and a read that reaches it raises
`SegmentGap`.
"""

from __future__ import annotations

import bisect
import dataclasses
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
    discontinuity: bool = False  # its segment has EXT-X-DISCONTINUITY: a period starts here
    gap: bool = False  # EXT-X-GAP with no substitute: never fetched, size 0

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
    part = _new_part(rid, seg.uri, seg.byterange, key, iv, variant, seg.index, seg.duration, seg.start)
    if seg.discontinuity or seg.gap:
        part = dataclasses.replace(part, discontinuity=seg.discontinuity, gap=seg.gap)
    parts.append(part)
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


def plain_size(part: Part, info: SizeInfo | None, strip: bool = False) -> int | None:
    """A part's presented size from its raw size info, or None while unknown.

    That is the plaintext size, less the leading ID3 tag when `strip` (a media
    part after the stream's first).
    """
    if part.gap:
        return 0
    if info is None:
        return None
    size = info.size if part.key is None else None if info.pad is None else info.size - info.pad
    if size is None or not strip:
        return size
    # (A tag said to run past the part's end strips the whole part, no more.)
    return None if info.head is None else size - min(info.head, size)


@dataclass(frozen=True)
class PeriodStart:
    """Where a period begins in the plan: its first part (an init section, if one opens it)."""

    part: int
    segment: int
    start: float


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
        #: The part the reader is in (-1 before its first read).
        self.reader = -1

    def _index_times(self) -> None:
        """The media times `window` and `index_at_time` bisect. Call under the lock (or in __init__)."""
        self._starts = [p.start for p in self._parts]
        self._media = [i for i, p in enumerate(self._parts) if not p.is_init]
        self._media_starts = [self._parts[i].start for i in self._media]
        # Packed audio keeps the ID3 tag of this part only.
        self._first_media = self._media[0] if self._media else -1

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
            size = self._plain(len(offsets) - 1)
            if size is None:
                return
            offsets.append(offsets[-1] + size)

    def _strips(self, index: int) -> bool:
        """Whether part `index` is presented without a leading ID3 tag. Call under the lock."""
        return index != self._first_media and not self._parts[index].is_init

    def _plain(self, index: int) -> int | None:
        """Presented size of part `index`, if known. Call under the lock."""
        part = self._parts[index]
        return plain_size(part, self._info.get(part.rid), self._strips(index))

    def size_of(self, index: int) -> int | None:
        """Presented (plaintext, less a stripped ID3 tag) size of part `index`, if known."""
        with self._lock:
            return self._plain(index)

    def strips(self, index: int) -> bool:
        """Whether part `index` is presented without the ID3 tag it may begin with (a media
        part after the stream's first)."""
        with self._lock:
            return self._strips(index)

    def skip(self, index: int) -> int | None:
        """Bytes at the head of part `index` the stream does not present (its stripped ID3 tag);
        None while that is unknown."""
        with self._lock:
            if not self._strips(index):
                return 0
            info = self._info.get(self._parts[index].rid)
            return None if info is None else info.head

    def periods(self) -> list[PeriodStart]:
        """Where each period begins: the first part, and each EXT-X-DISCONTINUITY (at the init
        section that opens it, if any)."""
        with self._lock:
            parts = self._parts
            if not parts:
                return []
            found = [PeriodStart(0, parts[self._first_media].segment if self._media else 0, parts[0].start)]
            for i in self._media[1:]:
                part = parts[i]
                if part.discontinuity:
                    first = i - 1 if parts[i - 1].is_init and parts[i - 1].segment == part.segment else i
                    found.append(PeriodStart(first, part.segment, part.start))
            return found

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
        index is len(self). A gap at `pos` (size 0) is answered rather than the
        part after it, so a read that reaches it meets it.
        """
        with self._lock:
            offsets = self._offsets
            i = bisect.bisect_right(offsets, pos) - 1
            for k in range(bisect.bisect_left(offsets, pos), min(i, len(self._parts))):
                if self._parts[k].gap:
                    return k, 0
            if i >= len(self._parts):
                return len(self._parts), pos - offsets[-1]
            return i, pos - offsets[i]

    def unknown(self, start: int, stop: int) -> list[int]:
        """Indices in [start, stop) whose sizes are unknown."""
        with self._lock:
            stop = min(stop, len(self._parts))
            first = max(start, len(self._offsets) - 1)
            return [i for i in range(first, stop) if self._plain(i) is None]

    def window(self, start: int, seconds: float) -> list[tuple[Part, int | None]]:
        """Parts from `start` that begin less than `seconds` after it (at least one), with their sizes."""
        with self._lock:
            if start >= len(self._parts):
                return []
            stop = max(start + 1, bisect.bisect_left(self._starts, self._starts[start] + seconds, lo=start))
            return [(self._parts[i], self._plain(i)) for i in range(start, stop)]

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

    def enter(self, index: int) -> None:
        """The reader is at part `index`: freeze the parts before it (not `index` itself yet)."""
        with self._lock:
            self.reader = index
            self.committed = max(self.committed, min(index, len(self._parts)))

    def hold(self, index: int, part: Part) -> bool:
        """Freeze parts up to and including `index` if it is still `part` (the reader is about to
        return bytes of it); False, and no change, if a re-plan replaced it first.

        Under the lock `replace_from` takes: of the two, exactly one wins.
        """
        with self._lock:
            if index >= len(self._parts) or self._parts[index] != part:
                return False
            self.committed = max(self.committed, index + 1)
            return True

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
