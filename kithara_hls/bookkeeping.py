"""Cache bookkeeping for one stream: its record and lease, its sizes snapshot, the size cap.

The work runs in order on one thread of its own, ``kithara-catalog``, started by
the first job: a new stream's record and lease come first (the database may
still be opening; the first read need not wait for it), then an eviction check
every `EVICT_CHECK_BYTES` downloaded and a snapshot write every
`SIZES_SAVE_INTERVAL_S`. So an eviction check always finds this stream leased,
however late the thread starts. A stream read from the cache is recorded and
leased before its first read instead, on the opening thread, so that no other
process evicts its bytes meanwhile.
"""

from __future__ import annotations

import collections
import logging
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable

from . import events as ev
from .cache import OPEN_DEADLINE_S, SQLITE_TIMEOUT_S, Cache, digest
from .catalog import Catalog, sizes_key, stream_id
from .layout import build_parts
from .playlist import MediaPlaylist
from .store import Store

log = logging.getLogger(__name__)

#: The longest close waits for the bookkeeping thread: a database's open and a write
#: that finds it locked.
BOOKKEEPING_DEADLINE_S = OPEN_DEADLINE_S + SQLITE_TIMEOUT_S
#: Seconds between two writes of the stream's sizes snapshot while downloading: what a
#: process killed meanwhile loses (its bodies stay; a later run asks each one's size again).
SIZES_SAVE_INTERVAL_S = 5.0
#: Bytes downloaded between two checks of the cache's size cap.
EVICT_CHECK_BYTES = 32 * 2**20  # 32 MiB
#: The thread re-checks its queue this often with nothing to do (it is woken on every job).
IDLE_WAIT_S = 30.0

Job = Callable[[], None]


class Bookkeeping:
    """Keeps the cache's books for the stream opened at `url`.

    playlist_keys: the cache keys of the stream's playlists (recorded with it).
    on_crash(exc): an unexpected exception in a job (a bug); a failing cache
    (`OSError`, `sqlite3.Error`) is a warning and a recoverable `Error` event.
    """

    def __init__(
        self,
        cache: Cache,
        store: Store,
        bus: ev.EventBus,
        *,
        url: str,
        max_bytes: int,
        playlist_keys: Callable[[], list[str]],
        on_crash: Callable[[BaseException], None],
    ) -> None:
        self.catalog = Catalog(cache)
        self._cache = cache
        self._store = store
        self._bus = bus
        self._url = url
        self._sid = stream_id(url)
        self._max_bytes = max_bytes
        self._playlist_keys = playlist_keys
        self._on_crash = on_crash
        self._lock = threading.Lock()
        # Notified by _submit() and close().
        self._work = threading.Condition(self._lock)
        self._jobs: collections.deque[tuple[Job, bool]] = collections.deque()  # (job, run at close)
        self._thread: threading.Thread | None = None
        self._closed = False
        self._fetched = 0
        # The cap is first checked once this stream has stored something: a stream
        # read from the cache adds nothing to evict.
        self._unevicted = EVICT_CHECK_BYTES
        self._saved_at = time.monotonic()
        self._snapshot = False  # this run keeps the stream's sizes snapshot (it read it)
        self._sizes_lock = threading.Lock()  # one snapshot write at a time
        self._learnt_kept = 0  # the store's count of sizes learnt, when last kept
        self._lease: str | None = None
        self._released = False

    @property
    def fetched_bytes(self) -> int:
        """Bytes this stream downloaded so far."""
        with self._lock:
            return self._fetched

    def load_sizes(self) -> None:
        """Take the sizes an earlier run of this stream knew (its snapshot) into the store."""
        self._snapshot = True
        self._store.preload(self.catalog.sizes(self._sid))

    def begin(
        self, media: MediaPlaylist, variant: int, playlists: list[tuple[str, bytes]], *, stored: bool
    ) -> None:
        """Store the playlists read while opening, record the stream and lease it.

        stored: its bytes come from the cache: done now, failures raised (call
        `load_sizes` first). Otherwise queued first on the thread, which then
        also takes the sizes snapshot.
        """
        if stored:
            self.bookkeep(media, variant, playlists, sizes=False)
        else:
            self._submit(lambda: self.bookkeep(media, variant, playlists, sizes=True), at_close=True)

    def bookkeep(
        self, media: MediaPlaylist, variant: int, playlists: list[tuple[str, bytes]], *, sizes: bool
    ) -> None:
        """Store `playlists`, take the sizes snapshot (if `sizes`), record the stream, lease it."""
        for key, record in playlists:
            self._cache.set(key, record)
        if sizes:
            self.load_sizes()
        self._record(media, variant)
        token = self.catalog.lease(self._sid)
        with self._lock:
            late = self._released
            if not late:
                self._lease = token
        if late:  # close() gave up waiting for this thread
            self.catalog.release(self._sid, token)

    def record_variant(self, media: MediaPlaylist, variant: int) -> None:
        """Record the resources of another variant the stream now uses (on the thread)."""
        self._submit(lambda: self._record(media, variant), at_close=True)

    def downloaded(self, nbytes: int) -> None:
        """A download stored `nbytes`: check the cap and keep the sizes when it is time."""
        with self._lock:
            self._fetched += nbytes
            self._unevicted += nbytes
            evict = nbytes > 0 and self._unevicted >= EVICT_CHECK_BYTES
            if evict:
                self._unevicted = 0
            now = time.monotonic()
            save = now - self._saved_at >= SIZES_SAVE_INTERVAL_S
            if save:
                self._saved_at = now
        if evict:
            # Run even if close() comes first: a short read must not leave the cache over its cap.
            self._submit(self._evict, at_close=True)
        if save:
            self._submit(self.save_sizes, at_close=False)

    def save_sizes(self) -> None:
        """Keep every size known now in the stream's snapshot, if some were learnt since it was
        last kept: at close, and every `SIZES_SAVE_INTERVAL_S` while downloading."""
        with self._sizes_lock:
            learnt = self._store.sizes_learnt
            if not self._snapshot or learnt == self._learnt_kept:
                return
            try:
                self.catalog.keep_sizes(self._sid, self._store.known_sizes())
            except (OSError, sqlite3.Error) as exc:  # StorageError is an OSError
                log.warning("could not keep the stream's sizes: %s", exc)
                return
            self._learnt_kept = learnt

    def close(self) -> None:
        """Run the queued records, join the thread (bounded), keep the sizes, release the lease.

        Idempotent; a snapshot write still queued is dropped (close keeps the sizes itself).
        """
        with self._lock:
            self._closed = True
            self._jobs = collections.deque(item for item in self._jobs if item[1])
            self._work.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(BOOKKEEPING_DEADLINE_S)
            if thread.is_alive():
                log.warning("the cache bookkeeping did not end within %.0f s", BOOKKEEPING_DEADLINE_S)
        self.save_sizes()
        with self._lock:
            lease, self._lease = self._lease, None
            self._released = True
        if lease is not None:
            self.catalog.release(self._sid, lease)

    def threads(self) -> list[threading.Thread]:
        """The bookkeeping thread, once a job started it."""
        return [] if self._thread is None else [self._thread]

    def _record(self, media: MediaPlaylist, variant: int) -> None:
        """Tell the catalog which resources and keys the stream uses (for `cache ls` and eviction)."""
        parts = build_parts(media, variant)
        keys = {f"key:{digest(p.key.uri)}" for p in parts if p.key is not None}
        extra = [*self._playlist_keys(), *([sizes_key(self._sid)] if self._snapshot else [])]
        self.catalog.record(self._url, (p.rid for p in parts), [*extra, *keys])

    def _evict(self) -> None:
        removed = self.catalog.evict(self._max_bytes)
        if removed:
            log.info("cache over its cap: evicted %d stream(s)", removed)

    def _submit(self, job: Job, *, at_close: bool) -> None:
        with self._lock:
            if self._closed:
                return
            self._jobs.append((job, at_close))
            self._work.notify()
            if self._thread is None:
                self._thread = threading.Thread(
                    target=_serve, args=(weakref.ref(self),), name="kithara-catalog", daemon=True
                )
                # Started under the lock, so close() never meets a thread it cannot join.
                self._thread.start()

    def _next(self) -> Job | None:
        """The next job, waiting while there is none; None once closed and done."""
        with self._lock:
            while not self._jobs and not self._closed:
                self._work.wait(IDLE_WAIT_S)
            return self._jobs.popleft()[0] if self._jobs else None

    def _run(self, job: Job) -> None:
        try:
            job()
        except (OSError, sqlite3.Error) as exc:  # StorageError is an OSError
            # The stream plays on; a later run stores what this one could not.
            log.warning("cache bookkeeping failed: %s", exc)
            self._bus.publish(ev.Error(exc, recoverable=True))
        except Exception as exc:
            log.exception("cache bookkeeping crashed")
            self._on_crash(exc)

    def _close_connection(self) -> None:
        self._cache.close()  # this thread's connection


def _serve(ref: weakref.ReferenceType[Bookkeeping]) -> None:
    while True:
        books = ref()
        if books is None:
            return
        job = books._next()
        if job is None:
            books._close_connection()
            return
        books._run(job)
        del books, job
