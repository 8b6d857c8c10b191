"""The origin's fault knobs: per-path faults queued by tests, taken one use per request."""

from __future__ import annotations

import threading
from dataclasses import dataclass

FOREVER = 10**9  # `times` for knobs that stay on until clear_faults()

ACTIONS = ("fail", "redirect", "reset", "truncate", "stall")
MODIFIERS = ("ignore_range", "gzip", "lie_length")


@dataclass
class Fault:
    """One queued fault: its `kind`, the uses left, and the parameters its kind reads."""

    kind: str
    times: int
    status: int = 0
    after_bytes: int = 0
    retry_after: float | None = None
    location: str = ""
    event: threading.Event | None = None
    delta: int = 0


class FaultKnobs:
    """The fault knobs of `Origin` (which documents how they combine), keyed by path.

    `_lock` guards the queues and is shared with the origin's own state;
    `_stopping` is set by the origin's stop(), and stalls set after it are released at once.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._faults: dict[str, list[Fault]] = {}
        self._stalls: list[threading.Event] = []

    def fail(self, path: str, *, status: int = 500, times: int = 1, retry_after: float | None = None) -> None:
        """Answer the next `times` requests for `path` with `status` (and Retry-After if given)."""
        self._add(path, Fault("fail", times, status=status, retry_after=retry_after))

    def reset(self, path: str, *, after_bytes: int = 0, times: int = 1) -> None:
        """Send headers and `after_bytes` of body, then abort the connection with a TCP RST."""
        self._add(path, Fault("reset", times, after_bytes=after_bytes))

    def truncate(self, path: str, *, after_bytes: int, times: int = 1) -> None:
        """Announce the full Content-Length, send only `after_bytes`, then close cleanly."""
        self._add(path, Fault("truncate", times, after_bytes=after_bytes))

    def stall(self, path: str, *, after_bytes: int = 0, times: int = 1) -> threading.Event:
        """Send headers and `after_bytes`, then hold until the returned Event is set.

        Setting the Event sends the rest of the body; `stop` sets it too, and the
        stalled connection is then dropped.
        """
        event = threading.Event()
        with self._lock:
            self._stalls = [e for e in self._stalls if not e.is_set()] + [event]
        if self._stopping.is_set():
            event.set()
        self._add(path, Fault("stall", times, after_bytes=after_bytes, event=event))
        return event

    def ignore_range(self, path: str, *, times: int = FOREVER) -> None:
        """Answer Range requests for `path` with the full 200 body."""
        self._add(path, Fault("ignore_range", times))

    def redirect(self, path: str, to_url: str, *, status: int = 302, times: int = FOREVER) -> None:
        """Redirect requests for `path` to `to_url` (absolute or relative)."""
        self._add(path, Fault("redirect", times, status=status, location=to_url))

    def lie_length(self, path: str, delta: int, *, times: int = FOREVER) -> None:
        """Announce a Content-Length `delta` bytes off the truth on 200/206 answers for `path`.

        The real body is sent whole, then the connection is closed, so the lie
        does not spill into the next response on a kept-alive connection.
        """
        self._add(path, Fault("lie_length", times, delta=delta))

    def gzip(self, path: str, *, times: int = FOREVER) -> None:
        """Serve `path` gzip-encoded (Content-Encoding: gzip); such responses ignore Range."""
        self._add(path, Fault("gzip", times))

    def clear_faults(self) -> None:
        """Forget every pending fault (responses already stalled stay stalled)."""
        with self._lock:
            self._faults.clear()

    def _add(self, path: str, fault: Fault) -> None:
        with self._lock:
            self._faults.setdefault(path.lstrip("/"), []).append(fault)

    def _take_faults(self, path: str) -> tuple[Fault | None, dict[str, Fault]]:
        """Consume one use of the first queued action and of each modifier for `path`."""
        action: Fault | None = None
        modifiers: dict[str, Fault] = {}
        with self._lock:
            queue = self._faults.get(path, [])
            for fault in queue:
                if fault.kind in ACTIONS and action is None:
                    action = fault
                elif fault.kind in MODIFIERS and fault.kind not in modifiers:
                    modifiers[fault.kind] = fault
                else:
                    continue
                fault.times -= 1
            queue[:] = [f for f in queue if f.times > 0]
        return action, modifiers
