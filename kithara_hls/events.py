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
from typing import Any, Union

log = logging.getLogger(__name__)

#: Events kept per subscriber before the oldest are dropped.
DEFAULT_QUEUE_LEN = 1024


class AbrReason(str, enum.Enum):
    """Why a variant was chosen."""

    INITIAL = "initial"
    UP = "up"
    DOWN = "down"
    URGENT = "urgent"
    MANUAL = "manual"


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


Event = Union[
    VariantApplied,
    SegmentStart,
    SegmentComplete,
    KeyFetch,
    BufferLevel,
    ThroughputSample,
    DownloadProgress,
    PlaybackProgress,
    Error,
    EndOfStream,
]

_CLOSED = object()


class Subscription:
    """One subscriber's view of the event stream: iterate, or call `get`."""

    def __init__(self, bus: EventBus, maxlen: int) -> None:
        self._bus = bus
        self._items: collections.deque[Any] = collections.deque()
        self._maxlen = maxlen
        # Notified by EventBus.publish and by close.
        self._ready = threading.Condition(threading.Lock())
        self._ended = False
        self.lagged = 0

    def _push(self, item: Any) -> None:
        with self._ready:
            if self._ended:
                return
            if len(self._items) >= self._maxlen:
                self._items.popleft()
                self.lagged += 1
            self._items.append(item)
            self._ready.notify()

    def get(self, timeout: float | None = None) -> Event:
        """The next event; raises `queue.Empty` on timeout or once the stream has ended."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._ready:
            while not self._items:
                if self._ended:
                    raise queue.Empty
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise queue.Empty
                self._ready.wait(remaining)
            item = self._items.popleft()
            if item is _CLOSED:
                self._ended = True
                self._items.clear()
                raise queue.Empty
            if isinstance(item, EndOfStream):
                self._ended = True
            return item  # type: ignore[no-any-return]

    def __iter__(self) -> Iterator[Event]:
        while True:
            try:
                yield self.get()
            except queue.Empty:
                return

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

    def subscribe(self) -> Subscription:
        """A new subscription."""
        sub = Subscription(self, self._maxlen)
        with self._lock:
            if self._closed:
                sub._push(_CLOSED)
            else:
                self._subs.append(sub)
        return sub

    def on_event(self, fn: Callable[[Event], None]) -> None:
        """Call `fn(event)` on the publishing thread; exceptions are logged and ignored."""
        with self._lock:
            self._callbacks.append(fn)

    def _unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)

    @property
    def active(self) -> bool:
        """True when anybody listens (lets publishers skip building events)."""
        return bool(self._subs or self._callbacks)

    def publish(self, event: Event) -> None:
        """Deliver `event` to everybody; never blocks for long."""
        with self._lock:
            subs = list(self._subs)
            callbacks = list(self._callbacks)
        for sub in subs:
            sub._push(event)
        for fn in callbacks:
            try:
                fn(event)
            except Exception:
                log.exception("event callback %r failed", fn)

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
