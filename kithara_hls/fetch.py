"""The fetch pool: named worker threads that pick the most useful work next.

Instead of a queue of stale tasks, workers ask `FetchPool.claim()`, which looks
at the current state under one lock and answers, in order: a part the reader
is blocked on, a size probe a seek waits for, then look-ahead in playback
order within the window (seconds of media and bytes ahead of the reader). With
nothing to do a worker waits on a Condition, woken when the reader advances,
seeks, demands, or the layout changes; so a seek needs no epoch bookkeeping.
Look-ahead downloads share the link with the one the reader needs next, so
`FetchPool.limit` caps how many are in flight (`abr.schedule`: one on a link
that barely carries the stream, every worker on a fast one or with a healthy
buffer); a part the reader is blocked on is never held back.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass

from .layout import Layout, Part

log = logging.getLogger(__name__)

#: A worker with nothing to do re-checks the pool this often (it is woken on every change anyway).
IDLE_WAIT_S = 30.0
#: A part the reader is blocked on that a re-plan is about to replace (`held`) waits at most
#: this long for it (a playlist load on a slow link) before it is downloaded as planned.
DEMAND_HOLD_S = 10.0
#: Parts probed ahead when a read lands beyond the known offsets.
PROBE_BATCH = 64
#: Download workers that start whatever the network: enough to keep a near, fast link busy.
BASE_WORKERS = 4
#: Past BASE_WORKERS, more start only while the quickest recent response took this long
#: or more (request sent to headers). Latency then sets the pace and more requests in
#: flight hide it; on a near link they only contend for the GIL (a loopback read with
#: 12 workers took about 15 % longer than with 3).
SLOW_RESPONSE_S = 0.010
#: The longest `close` waits for the workers, all together: each request has a
#: timeout, and close aborts the ones in flight.
JOIN_TIMEOUT_S = 10.0
#: Recent response waits kept. The quickest tells the link's latency: a slower one
#: may be a busy server or our own busy CPU (at the start, loopback answers took up
#: to 30 ms).
RECENT_WAITS = 8


@dataclass(frozen=True)
class Task:
    """One unit of work: download a part, or learn its size."""

    index: int
    part: Part | None
    probe: bool = False
    urgent: bool = False
    job: Callable[[], None] | None = None

    @property
    def label(self) -> str:
        """What the task works on, for logs."""
        return "job" if self.part is None else self.part.label


class FetchPool:
    """Chooses work for `workers` threads that run `runner(task)`."""

    def __init__(
        self,
        layout: Layout,
        runner: Callable[[Task], bool | None],
        *,
        workers: int,
        lookahead_s: float,
        lookahead_bytes: int,
        probe_workers: int = 0,
        name: str = "kithara-fetch",
    ) -> None:
        self._layout = layout
        self._runner = runner
        self._lookahead_s = lookahead_s
        self._lookahead_bytes = lookahead_bytes
        self._lock = threading.Lock()
        # Download workers wait on _work, probe threads on _probe_work. Each wake-up
        # wakes one thread, and a thread that finds a task wakes the next (a baton):
        # waking them all on every reader step cost thousands of idle wake-ups a stream.
        self._work = threading.Condition(self._lock)
        self._probe_work = threading.Condition(self._lock)
        self._reader = 0
        self._demand: collections.deque[int] = collections.deque()
        # (index, rid) of parts to probe; _queued holds the rids, so a part is queued once.
        self._probes: collections.deque[tuple[int, str]] = collections.deque()
        self._queued: set[str] = set()
        self._jobs: collections.deque[Callable[[], None]] = collections.deque()
        self._inflight: set[str] = set()
        self._probing: set[str] = set()
        self._done: set[str] = set()
        self._failed: set[str] = set()
        self._closed = False
        #: Called on a worker, outside the lock, after each download ends:
        #: on_finished(ok, parts stored so far, nothing left in flight).
        self.on_finished: Callable[[bool, int, bool], None] | None = None
        #: Called under the pool's lock (so it must not call the pool) before a look-ahead
        #: download starts: limit(media seconds stored ahead of the reader, the part) gives
        #: how many downloads may be in flight then (`abr.schedule`); None: `workers`.
        #: Parts the reader is blocked on are never held back.
        self.limit: Callable[[float, Part], int] | None = None
        #: Called under the pool's lock: held(part) tells whether a re-plan of `part` is on
        #: its way (ABR moved below its variant), so a reader blocked on it, with no byte of it
        #: yet, waits for the new part rather than starting this download (for `DEMAND_HOLD_S`).
        self.held: Callable[[Part], bool] | None = None
        self._demanded: dict[int, float] = {}  # demanded part index -> when
        self._hold_until: float | None = None  # when the earliest hold of a demand ends
        #: Called on each worker as it exits (to close its per-thread cache connection).
        self.on_exit: Callable[[], None] | None = None
        #: Called on a worker, outside the lock, when the runner raised instead of
        #: returning: on_crash(task, exception), to deliver it to the reader.
        self.on_crash: Callable[[Task, BaseException], None] | None = None
        self._ref = weakref.ref(self)
        self._name = name
        self._workers = workers
        self._started = 0  # download workers started
        self._waits: collections.deque[float] = collections.deque(maxlen=RECENT_WAITS)
        self._threads: list[threading.Thread] = []
        # Probes are tiny requests: they get threads of their own, started at the
        # first probe, so a seek's sizes arrive many at a time beside downloads.
        self._probe_workers = probe_workers

    def start(self) -> None:
        """Start the first worker (set hooks first); the runner starts the others with `grow()`."""
        self.grow(always=True)

    def grow(self, *, always: bool = False) -> None:
        """Start one more download worker, up to `workers`: the runner calls it when a task is
        about to wait (on the network), so another worker may take the next one.

        Started one by one, the first request goes on the wire before the other
        threads cost anything, and a stream stored whole is walked by one thread
        instead of a dozen contending with the reader for the GIL. Past
        BASE_WORKERS, only while responses are slow (see `response_wait`), or
        `always` (a worker about to sit out a retry's backoff).
        """
        with self._lock:
            if self._closed or self._started >= self._workers:
                return
            fast = bool(self._waits) and min(self._waits) < SLOW_RESPONSE_S
            if fast and not always and self._started >= BASE_WORKERS:
                return
            thread = threading.Thread(
                target=_worker, args=(self._ref, False), name=f"{self._name}-{self._started}", daemon=True
            )
            self._started += 1
            self._threads.append(thread)
            # Started under the lock, so close() never meets a thread it cannot join.
            thread.start()

    def response_wait(self, seconds: float) -> None:
        """A download's response came `seconds` after its request was sent."""
        with self._lock:
            self._waits.append(seconds)

    # -- what the reader says ------------------------------------------------

    def set_reader(self, index: int) -> None:
        """The reader is in part `index`: look ahead from there."""
        with self._lock:
            if index != self._reader:
                self._reader = index
                self._work.notify()

    def demand(self, index: int) -> None:
        """The reader is blocked on part `index`: fetch it first (again, if it failed)."""
        part = self._layout.part(index)
        with self._lock:
            self._failed.discard(part.rid)
            self._done.discard(part.rid)  # a demanded part is not (or no longer) in the store
            if index not in self._demand:
                self._demand.appendleft(index)
                self._demanded[index] = time.monotonic()
            self._work.notify()
            # Every worker is in another download (look-ahead, maybe a slow one): one more takes this now.
            stuck = part.rid not in self._inflight and len(self._inflight) >= self._started
        if stuck:
            self.grow(always=True)

    def probe(self, indices: list[int]) -> None:
        """Learn the sizes of these parts, before look-ahead.

        Parts already queued, being probed or downloading are skipped: ask
        again whenever a size is still missing, as a probe or download that
        ends without one (an ABR switch cancelled it) leaves nothing queued.
        """
        if not indices:
            return
        # One snapshot, taken outside the pool's lock: a far seek asks for thousands of parts.
        first = min(indices)
        parts = self._layout.parts(first, max(indices) + 1)
        with self._lock:
            fresh = []
            for index in indices:
                if index - first >= len(parts):
                    continue
                rid = parts[index - first].rid
                if rid not in self._queued and rid not in self._probing and rid not in self._inflight:
                    self._queued.add(rid)
                    fresh.append((index, rid))
            if not fresh:
                return
            self._probes.extendleft(reversed(fresh))
            self._probe_work.notify()
            self._work.notify()
            if self._closed or not self._probe_workers:
                return
            count, self._probe_workers = self._probe_workers, 0
            for i in range(count):
                thread = threading.Thread(
                    target=_worker, args=(self._ref, True), name=f"kithara-probe-{i}", daemon=True
                )
                self._threads.append(thread)
                # Started under the lock, so close() never meets a thread it cannot join.
                thread.start()

    def submit(self, job: Callable[[], None]) -> None:
        """Run `job()` on a worker, before look-ahead (playlist loads for ABR)."""
        with self._lock:
            self._jobs.append(job)
            self._work.notify()

    def first_unstarted(self, start: int, *, started_counts: bool = True) -> int:
        """The first part index from `start` on that is not stored (nor, if `started_counts`, downloading)."""
        layout = self._layout
        with self._lock:
            for offset, part in enumerate(layout.parts(start)):
                if part.rid not in self._done and (not started_counts or part.rid not in self._inflight):
                    return start + offset
            return len(layout)

    def invalidate(self) -> None:
        """The layout changed after the reader (ABR switch): re-plan."""
        with self._lock:
            self._work.notify()

    def in_flight(self, rid: str) -> bool:
        """True while a worker downloads `rid` (until its task ends, after the body is stored)."""
        with self._lock:
            return rid in self._inflight

    def is_done(self, rid: str) -> bool:
        """True once `rid` was stored whole by this pool."""
        with self._lock:
            return rid in self._done

    # -- what workers ask ----------------------------------------------------

    def claim(self, probes_only: bool = False) -> Task | None:
        """The next task (only probes if `probes_only`), waiting while there is none; None once closed."""
        wake = self._probe_work if probes_only else self._work
        with self._lock:
            while not self._closed:
                task = self._pick_probe() if probes_only else self._pick()
                if task is not None:
                    if task.part is not None:
                        (self._probing if task.probe else self._inflight).add(task.part.rid)
                    wake.notify()  # the baton: there may be more
                    return task
                until = self._hold_until
                wake.wait(IDLE_WAIT_S if until is None else max(0.0, until - time.monotonic()))
            return None

    def _pick(self) -> Task | None:
        layout = self._layout
        self._hold_until = None
        while self._demand:
            index = self._demand[-1]
            part = layout.part(index) if index < len(layout) else None
            if part is None or part.rid in self._done:
                self._demanded.pop(self._demand.pop(), None)
                continue
            if part.rid in self._inflight:
                break
            until = self._demanded.get(index, 0.0) + DEMAND_HOLD_S
            # Replaceable (not frozen), and its re-plan on its way: other work meanwhile.
            if index >= layout.committed and until > time.monotonic() and self._held(part):
                self._hold_until = until
                break
            self._demanded.pop(self._demand.pop(), None)
            return Task(index, part, urgent=True)
        if self._jobs:
            return Task(-1, None, job=self._jobs.popleft())
        return self._pick_probe() or self._next_ahead()

    def _held(self, part: Part) -> bool:
        return self.held is not None and self.held(part)

    def _pick_probe(self) -> Task | None:
        layout = self._layout
        while self._probes:
            index, rid = self._probes.popleft()
            self._queued.discard(rid)
            # A part the layout replaced meanwhile is skipped: its waiter asks for the new one.
            if index < len(layout) and layout.size_of(index) is None:
                part = layout.part(index)
                if part.rid == rid and rid not in self._inflight and rid not in self._probing:
                    return Task(index, part, probe=True)
        return None

    def _next_ahead(self) -> Task | None:
        first = self._reader
        ahead = 0
        buffered = 0.0  # media seconds stored contiguously from the reader's part
        contiguous = True
        # Downloads of this plan before the candidate: one a switch abandoned may still wait
        # on its socket, but it no longer holds a place.
        flying = 0
        # Only the window is looked at: a claim costs the same on a 10,000-part stream.
        for offset, (part, size) in enumerate(self._layout.window(first, self._lookahead_s)):
            if ahead >= self._lookahead_bytes:
                return None
            rid = part.rid
            if part.gap:  # an EXT-X-GAP no variant fills: never requested
                continue
            done = rid in self._done
            if contiguous and done:
                buffered += part.duration
            contiguous = contiguous and done
            if rid in self._inflight:
                flying += 1
            elif not done and rid not in self._failed:
                if self.limit is not None and flying >= self.limit(buffered, part):
                    return None
                return Task(first + offset, part)
            ahead += size or 0
        return None

    def finished(self, task: Task, ok: bool | None) -> None:
        """Record the outcome of a task a worker claimed (ok None: it was cancelled)."""
        with self._lock:
            if task.part is not None and task.probe:
                self._probing.discard(task.part.rid)
            elif task.part is not None:
                self._inflight.discard(task.part.rid)
                if ok is not None:
                    (self._done if ok else self._failed).add(task.part.rid)
            # No wake-up: the finishing worker claims next itself, and nothing that
            # finishes opens work another worker could take first.
            idle = not self._inflight
            done = len(self._done)
        if task.part is not None and not task.probe and self.on_finished is not None:
            self.on_finished(bool(ok), done, idle)

    def idle(self) -> bool:
        """True when no download is in flight."""
        with self._lock:
            return not self._inflight

    def run(self, task: Task) -> bool | None:
        """Run one task through the runner: True on success, False on failure, None if cancelled."""
        return self._runner(task)

    def crashed(self, task: Task, exc: BaseException) -> None:
        """The runner raised `exc` on `task` (a bug): logged, and handed to `on_crash`."""
        log.error("fetch worker crashed on %s", task.label, exc_info=exc)
        if self.on_crash is not None:
            try:
                self.on_crash(task, exc)
            except Exception:
                log.exception("could not deliver a fetch worker's crash")

    @property
    def closed(self) -> bool:
        """True after close()."""
        return self._closed

    def close(self, timeout: float = JOIN_TIMEOUT_S) -> None:
        """Stop handing out work and join the workers (outside the lock), `timeout` seconds
        at most in all. Idempotent."""
        with self._lock:
            self._closed = True
            self._demand.clear()
            self._demanded.clear()
            self._probes.clear()
            self._queued.clear()
            self._jobs.clear()
            self._work.notify_all()
            self._probe_work.notify_all()
        current = threading.current_thread()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            if thread is not current:
                thread.join(max(0.0, deadline - time.monotonic()))
        alive = [t.name for t in self._threads if t.is_alive() and t is not current]
        if alive:
            log.warning("fetch threads still running after %.0f s: %s", timeout, ", ".join(alive))

    def threads(self) -> list[threading.Thread]:
        """The worker threads."""
        return list(self._threads)


def _worker(ref: weakref.ReferenceType[FetchPool], probes_only: bool) -> None:
    while True:
        pool = ref()
        if pool is None:
            return
        task = pool.claim(probes_only)
        if task is None:
            if pool.on_exit is not None:
                pool.on_exit()
            return
        ok: bool | None = False
        try:
            ok = pool.run(task)
        except Exception as exc:
            pool.crashed(task, exc)
        finally:
            pool.finished(task, ok)
        del pool
