"""Events: frozen dataclasses broadcast to every subscriber of a source.

Publishing never blocks a worker: each subscription has a bounded queue, and
when it is full the oldest event is dropped and counted in `Subscription.lagged`.
"""

from __future__ import annotations

import collections
import enum
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

#: Events kept per subscriber before the oldest are dropped.
DEFAULT_QUEUE_LEN = 1024


class AbrReason(str, enum.Enum):
    """Why a variant was chosen.

    INITIAL: where the stream starts. UP / DOWN / URGENT: ABR's switches. MANUAL: a pin
    (`HlsOptions.variant`, `set_variant`). CACHED: offline, the best variant the cache
    holds whole for that segment.
    """

    INITIAL = "initial"
    UP = "up"
    DOWN = "down"
    URGENT = "urgent"
    MANUAL = "manual"
    CACHED = "cached"


@dataclass(frozen=True)
class VariantApplied:
    """The reader entered a segment of another variant."""

    from_variant: int | None
    to_variant: int
    reason: AbrReason


@dataclass(frozen=True)
class SegmentStart:
    """A segment download started; byte_offset is its place in the virtual stream if known."""

    variant: int
    segment_index: int
    byte_offset: int | None


@dataclass(frozen=True)
class SegmentComplete:
    """A segment was downloaded (or found whole in the cache: bytes_transferred 0)."""

    variant: int
    segment_index: int
    bytes_transferred: int
    duration: float


@dataclass(frozen=True)
class SegmentTimestamp:
    """A packed audio segment's ID3 PRIV ``com.apple.streaming.transportStreamTimestamp``:
    the MPEG-2 timestamp of its first sample, in seconds (33 bits of 90 kHz ticks).

    Published once per segment, when its first bytes are first seen (downloaded
    or found in the cache).
    """

    variant: int
    segment_index: int
    seconds: float


@dataclass(frozen=True)
class KeyFetch:
    """A key was resolved (network, cache or static mapping)."""

    key_url: str
    success: bool
    cached: bool


@dataclass(frozen=True)
class BufferLevel:
    """Media seconds downloaded contiguously ahead of the read position."""

    level_seconds: float


@dataclass(frozen=True)
class ThroughputSample:
    """One network throughput measurement (body bytes over body transfer time)."""

    bytes_per_second: float


@dataclass(frozen=True)
class DownloadProgress:
    """Bytes fetched so far, and the percent of the known layout they cover."""

    offset: int
    percent: float


@dataclass(frozen=True)
class PlaybackProgress:
    """The read position, in media seconds and percent of the duration."""

    position: float
    percent: float


@dataclass(frozen=True)
class Error:
    """A failure; recoverable=True when it was retried (or will be)."""

    error: BaseException
    recoverable: bool


@dataclass(frozen=True)
class EndOfStream:
    """The reader reached the end of the stream (published once)."""


Event = (
    VariantApplied
    | SegmentStart
    | SegmentComplete
    | SegmentTimestamp
    | KeyFetch
    | BufferLevel
    | ThroughputSample
    | DownloadProgress
    | PlaybackProgress
    | Error
    | EndOfStream
)

_CLOSED = object()


def _call(fn: Callable[[Event], None], event: Event) -> None:
    try:
        fn(event)
    except Exception:
        log.exception("event callback %r failed", fn)


class Subscription:
    """One subscriber's view of the event stream: iterate, or call `get`."""

    def __init__(self, bus: EventBus, maxlen: int) -> None:
        self._bus = bus
        self._items: collections.deque[Any] = collections.deque()
        self._maxlen = maxlen
        # Notified by EventBus.publish and by close.
        self._ready = threading.Condition(threading.Lock())
        self._ended = False
        self._complete = False  # EndOfStream was queued: nothing after it
        self.lagged = 0

    def _push(self, item: Any) -> None:
        with self._ready:
            if self._ended or self._complete:
                return
            if isinstance(item, EndOfStream):
                self._complete = True
            if len(self._items) >= self._maxlen:
                self._items.popleft()
                self.lagged += 1
            self._items.append(item)
            self._ready.notify()

    def get(self, timeout: float | None = None) -> Event:
        """The next event; raises `queue.Empty` on timeout or once the stream has ended."""
        item = self._take(timeout)
        if item is None:
            raise queue.Empty
        return item

    def drain(self) -> list[Event]:
        """The events queued now, without waiting."""
        events = []
        while (item := self._take(0.0)) is not None:
            events.append(item)
        return events

    def __iter__(self) -> Iterator[Event]:
        while (item := self._take(None)) is not None:
            yield item

    def _take(self, timeout: float | None) -> Event | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._ready:
            while not self._items or self._ended:
                if self._ended:
                    return None
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._ready.wait(remaining)
            item = self._items.popleft()
            if item is _CLOSED or isinstance(item, EndOfStream):
                # Nothing is delivered after the end.
                self._ended = True
                self._items.clear()
            return None if item is _CLOSED else item

    def close(self) -> None:
        """Stop receiving events."""
        self._bus._unsubscribe(self)
        with self._ready:
            self._ended = True
            self._items.clear()
            self._ready.notify_all()


class EventBus:
    """Broadcast hub: subscribers and callbacks get every event published after they joined."""

    def __init__(self, maxlen: int = DEFAULT_QUEUE_LEN) -> None:
        self._lock = threading.Lock()
        self._subs: list[Subscription] = []
        self._callbacks: list[Callable[[Event], None]] = []
        self._maxlen = maxlen
        self._closed = False
        # Events from before the first read, replayed to early subscribers: the
        # fetch pool starts at open, before a caller can subscribe.
        self._early: collections.deque[Event] | None = collections.deque(maxlen=maxlen)

    def subscribe(self) -> Subscription:
        """A new subscription (before the first read, it also gets the events since open)."""
        sub = Subscription(self, self._maxlen)
        with self._lock:
            for event in self._early or ():
                sub._push(event)
            if self._closed:
                sub._push(_CLOSED)
            else:
                self._subs.append(sub)
        return sub

    def seal(self) -> None:
        """Stop keeping early events (called at the first read)."""
        with self._lock:
            self._early = None

    def on_event(self, fn: Callable[[Event], None]) -> None:
        """Call `fn(event)` on the publishing thread; exceptions are logged and ignored.

        Registered before the first read, `fn` first gets the events since open.
        """
        with self._lock:
            early = list(self._early or ())
            self._callbacks.append(fn)
        for event in early:
            _call(fn, event)

    def _unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)

    @property
    def active(self) -> bool:
        """True when anybody listens or may still subscribe early (lets publishers skip work)."""
        return bool(self._subs or self._callbacks or self._early is not None)

    def publish(self, event: Event) -> None:
        """Deliver `event` to everybody; never blocks for long."""
        with self._lock:
            if self._early is not None:
                self._early.append(event)
            subs = list(self._subs)
            callbacks = list(self._callbacks)
        for sub in subs:
            sub._push(event)
        for fn in callbacks:
            _call(fn, event)

    def close(self) -> None:
        """End every subscription's iteration."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            subs, self._subs = self._subs, []
            self._callbacks = []
        for sub in subs:
            sub._push(_CLOSED)
