"""`HlsSource`: the stream as an `io.RawIOBase`, seekable, for PyAV and soundfile."""

from __future__ import annotations

import io
import os
from collections.abc import Callable

from . import events as ev
from .abr.controller import AbrDecision
from .errors import HlsError
from .localfile import to_url
from .options import HlsOptions
from .playlist import Variant
from .session import Session, StreamInfo

_CLOSED_MSG = "I/O operation on closed file."


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
        self._session = Session(to_url(url), options or HlsOptions())

    # -- stream facts ------------------------------------------------------------

    @property
    def variants(self) -> list[Variant]:
        """The variants, sorted by bandwidth, lowest first."""
        return list(self._session.loader.variants)

    @property
    def duration(self) -> float:
        """Media duration in seconds (sum of EXTINF)."""
        return self._session.duration

    @property
    def variant(self) -> int | None:
        """Index of the variant the reader is in (None before the first read)."""
        return self._session.reader.variant

    def info(self) -> StreamInfo:
        """Facts about the stream: variants, plan, encryption, what the cache holds, size if known."""
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
        n = self._session.reader.read_into(self._pos, out)
        self._pos += n
        return n

    def tell(self) -> int:
        """The current position."""
        self._check_open()
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move to `offset` (whence 0, 1 or 2) and return the new position."""
        self._check_open()
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self.size() + offset
        else:
            raise ValueError(f"invalid whence ({whence}, should be 0, 1 or 2)")
        if pos < 0:
            raise ValueError(f"negative seek position {pos}")
        self._pos = pos
        return pos

    def size(self) -> int:
        """The stream's exact size in bytes (probes segment sizes not yet known)."""
        self._check_open()
        reader, layout = self._session.reader, self._session.layout
        reader.resolve_sizes(0, len(layout), reader.deadline())
        total = layout.total()
        if total is None:
            raise HlsError("stream size unknown")
        return total

    def seek_time(self, seconds: float) -> int:
        """Move to the start of the segment holding `seconds`; returns the byte offset."""
        self._check_open()
        reader, layout = self._session.reader, self._session.layout
        index = layout.index_at_time(float(seconds))
        deadline = reader.deadline()
        reader.prefetch(index)  # its download starts while earlier sizes are probed
        reader.resolve_sizes(0, index, deadline)
        start = layout.start_of(index)
        if start is None:
            raise HlsError("segment offset unknown", segment=index)
        self._pos = start
        return start

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
        state = "closed" if self.closed else f"pos={self._pos}"
        return f"<HlsSource {state}>"


def open(url: str | os.PathLike[str], options: HlsOptions | None = None) -> HlsSource:
    """Open the HLS VOD at `url` (master or media playlist) as a seekable binary file.

    `url` is an http(s) URL, a ``file://`` URL or a path of a playlist on disk;
    a playlist on disk resolves its relative URIs on disk, its http(s) URIs over
    the network.
    """
    return HlsSource(url, options)
