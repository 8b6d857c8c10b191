"""The ABR thread: feeds the estimator, asks the controller, hands switches over.

It is woken by the reader (advancing, or blocking on missing data) and by
downloads ending; while downloads are in flight it also looks at the link
every `SAMPLE_INTERVAL_S` (a stalled link brings no bytes to wake it), and it
decides again when a switch the interval held may go; otherwise it waits for
a change alone. It owns no network I/O. Switches
are applied by the caller's `apply`, which changes only parts the reader has
not reached. An unexpected exception ends the thread and goes to `on_crash`,
which delivers it to the reader.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable

from ..events import AbrReason, BufferLevel, EventBus, ThroughputSample
from ..options import AbrOptions
from .abandon import Pending, abandon_to
from .controller import AbrController, AbrDecision
from .meter import SAMPLE_INTERVAL_S, LinkMeter

log = logging.getLogger(__name__)

#: Longest the thread sleeps with nothing new (it is woken on every change anyway).
IDLE_WAIT_S = 30.0
#: A held switch is decided again this long after its interval ends (so the interval has passed).
HELD_MARGIN_S = 0.01
#: The longest `close` waits for the thread (a step does no I/O: it ends at once).
JOIN_TIMEOUT_S = 5.0
#: The controller is told the link's rate over this much of its last link time: one interval
#: sample, so a rise shows within a second (the estimate's recent window takes two).
NOW_WINDOW_S = SAMPLE_INTERVAL_S


class AbrDriver:
    """Runs `AbrController` on its own named thread.

    meter: the link meter, whose estimate the controller is given.
    buffer_level(): media seconds buffered ahead of the reader. rest_level(buffer_s): media
    seconds from the end of that buffer to the end of the stream (None: not told). frontier(buffer_s):
    the download in flight of the first part not stored ahead of the reader, if
    any, for the abandon rule. apply(decision): carries out a switch (an urgent
    one abandons downloads in flight). on_crash(exc): told, on the thread, of an
    unexpected exception that ended it. initial_estimate_bps: start at the
    highest variant that fits it (the lowest when None). segment_s: the segments'
    duration. on_first(): told after the first decision on a measured link (after
    its switch is applied, if any), which the look-ahead waits for. on_wait(): told when
    the controller starts waiting for the buffer to grow before an up-switch (the
    look-ahead, held while ABR may move up, goes on).
    """

    def __init__(
        self,
        bitrates: list[int],
        options: AbrOptions,
        *,
        meter: LinkMeter,
        buffer_level: Callable[[], float],
        rest_level: Callable[[float], float] | None = None,
        apply: Callable[[AbrDecision], None],
        bus: EventBus,
        frontier: Callable[[float], Pending | None] | None = None,
        manual: int | None = None,
        on_crash: Callable[[BaseException], None] | None = None,
        initial_estimate_bps: float | None = None,
        segment_s: float = 4.0,
        on_first: Callable[[], None] | None = None,
        on_wait: Callable[[], None] | None = None,
        name: str = "kithara-abr",
    ) -> None:
        self.meter = meter
        self.controller = AbrController(
            bitrates, options, initial_estimate_bps=initial_estimate_bps, segment_s=segment_s
        )
        self._bitrates = list(bitrates)
        self._buffer_level = buffer_level
        self._rest_level = rest_level
        self._frontier = frontier
        self._apply = apply
        self._bus = bus
        self._on_crash = on_crash
        self._on_first = on_first  # None once told
        self._on_wait = on_wait
        self._lock = threading.Lock()
        # Notified by sample(), poke(), the meter's first download, and close().
        self._wake = threading.Condition(self._lock)
        self._dirty = False
        self._closed = False
        if manual is not None:
            self.controller.set_manual(manual, time.monotonic())
        meter.on_busy = self.poke
        self._thread = threading.Thread(target=_run, args=(weakref.ref(self),), name=name, daemon=True)
        self._thread.start()

    @property
    def current(self) -> int:
        """The variant the controller has chosen."""
        return self.controller.current

    def sample(self, nbytes: int, transfer_s: float, ttfb_s: float) -> None:
        """A network download finished (never called for cache hits): an event, and a decision."""
        self.meter.add_ttfb(ttfb_s)
        self.poke()
        if transfer_s > 0 and nbytes > 0:
            self._bus.publish(ThroughputSample(nbytes / transfer_s))

    def poke(self) -> None:
        """The buffer changed (the reader advanced, or blocked): decide again."""
        with self._lock:
            self._dirty = True
            self._wake.notify()

    def set_manual(self, variant: int | None) -> None:
        """Pin `variant` (ABR off), or None to go back to automatic choice."""
        with self._lock:
            decision = self.controller.set_manual(variant, time.monotonic())
        if decision is not None and decision.changed:
            self._apply(decision)
        self.poke()

    def exclude(self, variants: frozenset[int], planned: int) -> None:
        """Never switch to `variants` (another switch set); if the controller already chose one,
        it is back on `planned`, the variant the stream's plan is on."""
        with self._lock:
            self.controller.excluded = variants
            if self.controller.current in variants:
                self.controller.current = planned
            self._dirty = True
            self._wake.notify()

    def decisions(self) -> list[AbrDecision]:
        """The controller's recent decisions, oldest first."""
        with self._lock:
            return list(self.controller.decisions)

    def _wait(self) -> bool:
        """Wait for a change; while downloads are in flight, no longer than the next look at the
        link (a stall brings no bytes to wake on); while a switch is held for the interval, no
        longer than the interval (the look-ahead may be waiting for that switch, and the reader's
        next move is seconds away). False once closed."""
        with self._lock:
            while not self._dirty and not self._closed:
                busy, held = self.meter.busy, self.controller.held_until
                timeout = SAMPLE_INTERVAL_S if busy else IDLE_WAIT_S
                if held is not None:
                    timeout = min(timeout, max(held - time.monotonic(), 0.0) + HELD_MARGIN_S)
                # With nothing in flight and nothing held, only a change is worth a step.
                if not self._wake.wait(timeout) and (busy or held is not None):
                    break
            self._dirty = False
            return not self._closed

    def _step(self) -> bool:
        if not self._wait():
            return False
        level = self._buffer_level()
        rest = None if self._rest_level is None else self._rest_level(level)
        self._bus.publish(BufferLevel(level))
        if self.meter.measured_bytes() == 0:
            return True  # nothing measured yet: the start variant stands
        estimate = self.meter.estimate()
        smoothed = self.meter.estimate(recent=False)
        recent = self.meter.recent_rate(NOW_WINDOW_S)
        now = time.monotonic()
        with self._lock:
            if self.controller.manual is not None:
                return True
            waited = self.controller.waiting
            decision = self.controller.decide(
                now=now,
                buffer_s=level,
                estimate_bps=estimate,
                steady_bps=smoothed,
                rest_s=rest,
                recent_bps=recent,
            )
            waits = self.controller.waiting and not waited
        if waits and self._on_wait is not None:
            self._on_wait()
        chosen = decision if decision.changed else self._abandon(now, level, estimate)
        if chosen is not None and chosen.changed:
            log.debug("abr: %s", chosen.note)
            self._apply(chosen)
        if self._on_first is not None:
            told, self._on_first = self._on_first, None
            told()
        return True

    def _abandon(self, now: float, level: float, estimate: float) -> AbrDecision | None:
        """The abandon rule on the download the reader needs next (see `abr.abandon`)."""
        pending = None if self._frontier is None else self._frontier(level)
        if pending is None:
            return None
        fresh = self.meter.estimate(recent=False)
        to = abandon_to(pending, self._bitrates, estimate, fresh_bps=fresh, ttfb_s=self.meter.ttfb() or 0.0)
        if to is None:
            return None
        note = (
            f"abandon a v{pending.variant} download ({pending.loaded} of {pending.size} bytes in "
            f"{pending.elapsed:.1f}s, due in {pending.due_s:.1f}s): v{to} at {estimate / 1e3:.0f} kbit/s"
        )
        with self._lock:
            to = min(to, self.controller.current)
            decision = self.controller.force(to, now=now, buffer_s=level, estimate_bps=estimate, note=note)
            to = self.controller.current  # within the switch set
        # Unchanged when the choice was lower already: the re-plan still drops the download.
        return AbrDecision(now, pending.variant, to, AbrReason.URGENT, level, estimate, decision.note)

    def close(self) -> None:
        """Stop the thread and join it (outside the lock). Idempotent."""
        with self._lock:
            self._closed = True
            self._wake.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join(JOIN_TIMEOUT_S)
            if self._thread.is_alive():
                log.warning("the ABR thread did not end within %.0f s", JOIN_TIMEOUT_S)

    def _crashed(self, exc: BaseException) -> None:
        log.error("abr thread crashed", exc_info=exc)
        if self._on_crash is not None:
            self._on_crash(exc)

    @property
    def thread(self) -> threading.Thread:
        """The ABR thread."""
        return self._thread


def _run(ref: weakref.ReferenceType[AbrDriver]) -> None:
    while True:
        driver = ref()
        if driver is None:
            return
        try:
            if not driver._step():
                return
        except Exception as exc:
            driver._crashed(exc)
            return
        del driver


__all__ = ["AbrDriver", "AbrReason"]
