"""The origin's simulated link: latency before each response, and one bandwidth limit shared
fairly by every connection, paced chunk by chunk."""

from __future__ import annotations

import threading
import time
from io import BufferedIOBase

CHUNK_BYTES = 16 * 1024  # body write size: resets and throttling act between chunks
THROTTLE_SLICE_S = 0.05  # a throttled chunk carries at most this much link time
MIN_THROTTLED_CHUNK_BYTES = 1024


class Aborted(Exception):
    """The origin is stopping: drop the connection."""


class Link:
    """A simulated link shared by every connection: one byte at a time on the wire.

    `latency` (seconds before each response) and `bandwidth` (bytes per second,
    None for unlimited) may be changed while serving; a body already being sent
    picks up a new bandwidth at its next chunk. Every wait ends early, raising
    `Aborted`, once `stopping` is set.
    """

    def __init__(self, stopping: threading.Event, *, latency: float = 0.0, bandwidth: float | None = None):
        self.latency = latency
        self.bandwidth = bandwidth
        self._stopping = stopping
        self._lock = threading.Lock()
        self._free_at = 0.0

    def reserve(self, nbytes: int, rate: float) -> float:
        """Book `nbytes` at `rate` bytes/s; return the seconds until they are sent."""
        with self._lock:
            now = time.monotonic()
            # Idle time earns no credit, so bursts never exceed one chunk.
            self._free_at = max(now, self._free_at) + nbytes / rate
            return self._free_at - now

    def delay(self) -> None:
        """Hold a response for `latency` seconds."""
        if self.latency > 0 and self._stopping.wait(self.latency):
            raise Aborted

    def send(self, wfile: BufferedIOBase, data: bytes) -> None:
        """Write `data` to `wfile` in chunks, each waiting for its turn on the link."""
        view = memoryview(data)
        while view:
            rate = self.bandwidth
            size = CHUNK_BYTES
            if rate:
                size = max(MIN_THROTTLED_CHUNK_BYTES, min(size, int(rate * THROTTLE_SLICE_S)))
                # Waiting on the stop event is the simulated wire time, and lets stop() cut it short.
                if self._stopping.wait(self.reserve(min(size, len(view)), rate)):
                    raise Aborted
            wfile.write(view[:size])
            view = view[size:]
