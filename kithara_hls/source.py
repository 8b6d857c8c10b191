"""`HlsSource`: the stream as an `io.RawIOBase`, seekable, for PyAV and soundfile."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import dataclass

from . import events as ev
from .abr.controller import AbrDecision
from .errors import HlsError
from .localfile import to_url
from .options import HlsOptions
from .playlist import Rendition, Variant
from .session import Session, StreamInfo

_CLOSED_MSG = "I/O operation on closed file."
#: Tries of `size()` whose resolved sizes an ABR switch replaced before they were added up.
SIZE_TRIES = 8


@dataclass(frozen=True)
class Period:
    """One period of the stream: from its start, or from an EXT-X-DISCONTINUITY, to the next one.

    index: 0 for the first. segment: the media segment it begins with.
    start_time: playlist time of that segment (sum of the EXTINFs before it), what
    `HlsSource.seek_time` takes. byte_offset: where it begins in the stream (at
    the init section that opens it, if one does). Media timestamps usually
    restart in each period: a decoder sees them jump back.
    """

    index: int
    segment: int
    start_time: float
    byte_offset: int


class HlsSource(io.RawIOBase):
    """An HLS VOD as one binary file: ``[init][seg0][seg1]...`` at exact offsets.

    `url` is an http(s) URL, or a playlist on disk: a path (`str` or path-like,
    relative to the working directory) or a ``file://`` URL. Reads block until
    the bytes arrive (or the read deadline passes) and raise the `HlsError` of a
    segment that failed; they never return a hole.
    """

    def __init__(self, url: str | os.PathLike[str], options: HlsOptions | None = None) -> None:
        super().__init__()
        self._pos = 0
        # After seek_time(): (part index, offset in it) while that part's absolute offset
        # is unknown; reads go on from there, and tell() or a relative seek resolves it.
        self._anchor: tuple[int, int] | None = None
        self._session = Session(to_url(url), options or HlsOptions())

    # -- stream facts ------------------------------------------------------------

    @property
    def variants(self) -> list[Variant]:
        """The ladder played, sorted by bandwidth, lowest first: the master's variants, or the
        rungs of the audio track (`HlsOptions.track`)."""
        return list(self._session.loader.variants)

    @property
    def renditions(self) -> list[Rendition]:
        """Every rendition (EXT-X-MEDIA) of the master, in its order; empty for a media playlist."""
        return list(self._session.loader.renditions)

    @property
    def duration(self) -> float:
        """Media duration in seconds (sum of EXTINF)."""
        return self._session.duration

    @property
    def periods(self) -> list[Period]:
        """The periods: the stream's start and each EXT-X-DISCONTINUITY, in order.

        Their byte offsets are exact, so this waits for the sizes of the
        segments before the last period (probing those not known, as `tell()`).
        """
        self._check_open()
        reader, layout = self._session.reader, self._session.layout
        starts = layout.periods()
        if starts:
            reader.resolve_sizes(0, starts[-1].part, reader.deadline())
        periods = []
        for i, found in enumerate(starts):
            offset = layout.start_of(found.part)
            if offset is None:
                raise HlsError("period offset unknown", segment=found.segment)
            periods.append(Period(i, found.segment, found.start, offset))
        return periods

    @property
    def variant(self) -> int | None:
        """Index of the variant the reader is in (None before the first read)."""
        return self._session.reader.variant

    @property
    def switch_sets(self) -> tuple[tuple[int, ...], ...]:
        """The variants a decoder can follow a switch between, as tuples of indices into `variants`.

        ABR and `set_variant` stay in the set the stream started in. Looks at the
        first bytes of every variant not seen yet (a small request each).
        """
        self._check_open()
        return self._session.switcher.switch_sets()

    def info(self) -> StreamInfo:
        """Facts about the stream: the track played, variants, renditions, plan, encryption, what
        the cache holds, size if known."""
        self._check_open()
        return self._session.info()

    def set_variant(self, variant: int | None) -> None:
        """Pin `variant` (ABR off) from the next segment not yet fetched; None lets ABR choose again."""
        self._check_open()
        self._session.switcher.set_variant(variant)

    def abr_decisions(self) -> list[AbrDecision]:
        """The ABR controller's recent decisions (what, when, why), oldest first."""
        self._check_open()
        return self._session.switcher.decisions()

    def events(self) -> ev.Subscription:
        """A new subscription to this source's events."""
        self._check_open()
        return self._session.bus.subscribe()

    def on_event(self, fn: Callable[[ev.Event], None]) -> None:
        """Call `fn(event)` for every event (on a background thread; keep it quick)."""
        self._check_open()
        self._session.bus.on_event(fn)

    # -- RawIOBase -----------------------------------------------------------------

    def readable(self) -> bool:
        """True."""
        self._check_open()
        return True

    def seekable(self) -> bool:
        """True."""
        self._check_open()
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        """Fill `buffer` from the current position; fewer bytes only at the end of the stream."""
        self._check_open()
        out = memoryview(buffer).cast("B")
        if self._anchor is None:
            n = self._session.reader.read_into(self._pos, out)
            self._pos += n
            return n
        n, index, inner = self._session.reader.read_at(*self._anchor, out)
        self._anchor = (index, inner)
        self._settle()
        return n

    def tell(self) -> int:
        """The current position (after `seek_time`, waits for the sizes of the segments before it)."""
        self._check_open()
        return self._absolute()

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move to `offset` (whence 0, 1 or 2) and return the new position."""
        self._check_open()
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._absolute() + offset
        elif whence == io.SEEK_END:
            pos = self.size() + offset
        else:
            raise ValueError(f"invalid whence ({whence}, should be 0, 1 or 2)")
        if pos < 0:
            raise ValueError(f"negative seek position {pos}")
        if self._anchored_at() != pos:
            # (A seek to where the anchor stands keeps it: just after a gap, see _settle.)
            self._pos, self._anchor = pos, None
        return pos

    def size(self) -> int:
        """The stream's exact size in bytes (probes segment sizes not yet known)."""
        self._check_open()
        reader, layout = self._session.reader, self._session.layout
        deadline = reader.deadline()
        for _ in range(SIZE_TRIES):
            reader.resolve_sizes(0, len(layout), deadline)
            total = layout.total()
            if total is not None:
                return total
            # An ABR switch re-planned parts after their sizes were resolved: resolve the new plan.
        raise HlsError("stream size unknown")

    def seek_time(self, seconds: float) -> float:
        """Move to the start of the segment holding `seconds` (clamped); returns that segment's
        start time.

        The segment's download starts at once and reads begin there without
        waiting for the sizes of the segments before it; `tell()` and relative
        seeks learn those sizes (probing them) when they are called.
        """
        self._check_open()
        reader, layout = self._session.reader, self._session.layout
        index = layout.index_at_time(float(seconds))
        if index >= len(layout):
            raise HlsError("the stream has no media segment")
        reader.land(index)
        self._anchor = (index, 0)
        self._settle()
        return layout.part(index).start

    def _settle(self) -> None:
        """Leave the anchor for an absolute position once its part's offset is known.

        Kept at the start of a part just after a gap (whose size is 0): a read at
        that absolute offset would meet the gap, a read at the anchor does not.
        """
        if self._anchor is not None:
            index, inner = self._anchor
            layout = self._session.layout
            start = layout.start_of(index)
            if start is not None and not (inner == 0 and index > 0 and layout.part(index - 1).gap):
                self._pos, self._anchor = start + inner, None

    def _anchored_at(self) -> int | None:
        """The absolute position of the anchor if its part's offset is known (without probing)."""
        if self._anchor is None:
            return self._pos
        start = self._session.layout.start_of(self._anchor[0])
        return None if start is None else start + self._anchor[1]

    def _absolute(self) -> int:
        """The absolute position, resolving the anchor (probing the sizes before it) if needed."""
        if self._anchor is not None:
            index = self._anchor[0]
            reader = self._session.reader
            reader.resolve_sizes(0, index, reader.deadline())
            self._settle()
            pos = self._anchored_at()
            if pos is None:
                parts = self._session.layout.parts(index, index + 1)
                raise HlsError("segment offset unknown", segment=parts[0].segment if parts else None)
            return pos
        return self._pos

    def close(self) -> None:
        """Stop every background thread and release the cache. Idempotent."""
        if self.closed:
            return
        try:
            session = getattr(self, "_session", None)
            if session is not None:
                session.close()
        finally:
            super().close()

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError(_CLOSED_MSG)

    def __repr__(self) -> str:
        if self.closed:
            state = "closed"
        elif self._anchor is not None:
            state = f"part={self._anchor[0]}+{self._anchor[1]}"
        else:
            state = f"pos={self._pos}"
        return f"<HlsSource {state}>"


def open(url: str | os.PathLike[str], options: HlsOptions | None = None) -> HlsSource:
    """Open the HLS VOD at `url` (master or media playlist) as a seekable binary file.

    `url` is an http(s) URL, a ``file://`` URL or a path of a playlist on disk;
    a playlist on disk resolves its relative URIs on disk, its http(s) URIs over
    the network.
    """
    return HlsSource(url, options)
