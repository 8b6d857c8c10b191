"""The ABR thread: feeds the estimator, asks the controller, hands switches over.

It is woken by new throughput samples and by the reader (advancing, or
blocking on missing data); it never polls and owns no network I/O. Switches
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
from .controller import AbrController, AbrDecision
from .estimator import ThroughputEstimator

log = logging.getLogger(__name__)

#: Longest the thread sleeps with nothing new (it is woken on every change anyway).
IDLE_WAIT_S = 30.0
#: The longest `close` waits for the thread (a step does no I/O: it ends at once).
JOIN_TIMEOUT_S = 5.0


class AbrDriver:
    """Runs `AbrController` on its own named thread.

    buffer_level(): media seconds buffered ahead of the reader. apply(decision):
    carries out a switch. on_crash(exc): told, on the thread, of an unexpected
    exception that ended it.
    """

    def __init__(
        self,
        bitrates: list[int],
        options: AbrOptions,
        *,
        buffer_level: Callable[[], float],
        apply: Callable[[AbrDecision], None],
        bus: EventBus,
        manual: int | None = None,
        on_crash: Callable[[BaseException], None] | None = None,
        name: str = "kithara-abr",
    ) -> None:
        self.estimator = ThroughputEstimator(
            fast_half_life=options.fast_half_life, slow_half_life=options.slow_half_life
        )
        self.controller = AbrController(bitrates, options)
        self._buffer_level = buffer_level
        self._apply = apply
        self._bus = bus
        self._on_crash = on_crash
        self._lock = threading.Lock()
        # Notified by sample(), poke() and close().
        self._wake = threading.Condition(self._lock)
        self._dirty = False
        self._closed = False
        if manual is not None:
            self.controller.set_manual(manual, time.monotonic())
        self._thread = threading.Thread(target=_run, args=(weakref.ref(self),), name=name, daemon=True)
        self._thread.start()

    @property
    def current(self) -> int:
        """The variant the controller has chosen."""
        return self.controller.current

    def sample(self, nbytes: int, transfer_s: float, ttfb_s: float) -> None:
        """A network download finished (never called for cache hits)."""
        now = time.monotonic()
        with self._lock:
            counted = self.estimator.add(nbytes, transfer_s, now)
            self.estimator.add_ttfb(ttfb_s)
            self._dirty = True
            self._wake.notify()
        if counted and transfer_s > 0:
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

    def _step(self) -> bool:
        with self._lock:
            while not self._dirty and not self._closed:
                self._wake.wait(IDLE_WAIT_S)
            if self._closed:
                return False
            self._dirty = False
        level = self._buffer_level()
        self._bus.publish(BufferLevel(level))
        with self._lock:
            if self.controller.manual is not None:
                return True
            decision = self.controller.decide(
                now=time.monotonic(), buffer_s=level, estimate_bps=self.estimator.estimate()
            )
        if decision.changed:
            log.debug("abr: %s", decision.note)
            self._apply(decision)
        return True

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
