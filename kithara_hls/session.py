"""The session: owns the machinery behind one open stream and reads through it.

It loads the playlists (through the cache, so a stream read once opens
offline), lays out the virtual stream, runs the fetch pool, and turns reads
at virtual offsets into store reads, decrypting AES-128 parts on the way.
"""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
import threading
import time

from . import events as ev
from .abr.controller import AbrDecision
from .abr.driver import AbrDriver
from .cache import OPEN_DEADLINE_S, SQLITE_TIMEOUT_S, Cache, digest
from .catalog import Catalog, sizes_key, stream_id
from .decrypt import Decryptor
from .errors import (
    AssetsError,
    HlsError,
    NetError,
    OfflineMiss,
    PlaylistParseError,
    VariantNotFound,
)
from .fetch import PROBE_BATCH, FetchPool
from .keys import KeyManager
from .layout import Layout, Part, build_mixed, build_parts
from .options import HlsOptions
from .playlist import MasterPlaylist, MediaPlaylist, Variant, looks_like_playlist, parse
from .store import SizeInfo, Store
from .tasks import TaskRunner
from .transport import HttpClient

log = logging.getLogger(__name__)

#: The longest close (or an eviction) waits for the cache bookkeeping of `open`: that of
#: the database's open and of a write that finds it locked.
BOOKKEEPING_DEADLINE_S = OPEN_DEADLINE_S + SQLITE_TIMEOUT_S
#: Seconds between two writes of the stream's sizes snapshot while downloading: what a
#: process killed meanwhile loses (its bodies stay; a later run asks each one's size again).
SIZES_SAVE_INTERVAL_S = 5.0
#: Bytes downloaded between two checks of the cache's size cap.
EVICT_CHECK_BYTES = 32 * 2**20  # 32 MiB


class Session:
    """Everything behind one `HlsSource`: playlists, layout, store, fetch pool."""

    def __init__(self, url: str, options: HlsOptions) -> None:
        self.options = options
        self.bus = ev.EventBus(options.events_queue)
        self._cancel = threading.Event()
        self.cache = Cache(options.cache, background=True)
        self.tasks = TaskRunner(self)
        self.client = HttpClient(options.network, cancel=self._cancel, on_retry=self.tasks.on_retry)
        self.store = Store(self.cache)
        self.keys = KeyManager(self.client, self.cache, options.keys, offline=options.offline, bus=self.bus)
        self.decryptor = Decryptor(self.store)
        self._ended = False
        self._eos_sent = False
        self._pool: FetchPool | None = None
        self.abr_driver: AbrDriver | None = None
        self._switch_lock = threading.Lock()
        self._reasons: dict[int, ev.AbrReason] = {}  # part index where a plan starts -> why
        self._reader_part = -1
        self.variant: int | None = None  # the variant the reader is in
        self._fetched_bytes = 0
        # The cap is first checked once this session has stored something: a
        # stream read from the cache adds nothing to evict.
        self._unevicted_bytes = EVICT_CHECK_BYTES
        self._stream_keys: list[str] = []  # playlists and the sizes snapshot, for eviction
        self._sizes_sid: str | None = None  # the stream whose sizes snapshot this run keeps
        self._sizes_lock = threading.Lock()  # one snapshot write at a time
        self._sizes_learnt_kept = 0  # the store's count of sizes learnt, when last kept
        self._sizes_saved_at = time.monotonic()
        # Playlists read while opening, stored once the first download is under way.
        self._unsaved_playlists: list[tuple[str, bytes]] | None = []
        self.catalog = Catalog(self.cache)
        self._lease: tuple[str, str] | None = None
        self._bookkeeping: threading.Thread | None = None
        try:
            self._open(url)
        except BaseException:
            self.close()
            raise

    # -- opening ---------------------------------------------------------------

    def _open(self, url: str) -> None:
        top = self.load_playlist(url)
        if isinstance(top, MasterPlaylist):
            self.variants: list[Variant] = list(top.variants)
        else:
            self.variants = [
                Variant(uri=url, bandwidth=0, average_bandwidth=None, codecs=None, resolution=None)
            ]
        choice = self.options.variant
        if choice is not None and not 0 <= choice < len(self.variants):
            raise VariantNotFound(f"variant {choice} of {len(self.variants)}", url=url)
        first = choice if choice is not None else 0
        self._reasons[0] = ev.AbrReason.MANUAL if choice is not None else ev.AbrReason.INITIAL
        media = top if isinstance(top, MediaPlaylist) else self.load_media(first)
        self.media: dict[int, MediaPlaylist] = {first: media}
        self.keys.check(media)
        offline_abr = self.options.offline and choice is None and len(self.variants) > 1
        self.layout = Layout(self._offline_plan(media, first) if offline_abr else build_parts(media, first))
        self.duration = media.duration
        self.store.on_size = self.layout.learn
        self._learn_byteranges(self.layout.parts())
        self.url = url
        net = self.options.network
        self._pool = FetchPool(
            self.layout,
            self.tasks.run,
            workers=net.workers,
            lookahead_s=net.lookahead,
            lookahead_bytes=net.lookahead_bytes,
            probe_workers=net.probe_workers,
        )
        self._pool.on_finished = self._on_finished
        self._pool.on_exit = self.cache.close
        sid = stream_id(url)
        stored_before = len(self.layout) > 0 and self.cache.blob_length(self.layout.part(0).rid) > 0
        if stored_before:
            # Read from the cache: the workers must find its sizes known.
            self._load_sizes(sid)
        # The first download starts before the catalog's bookkeeping: a stream
        # evicted by another process meanwhile only costs a fetch again.
        self._pool.start()
        first_key = next((p for p in self.layout.parts(0, 2) if p.key is not None), None)
        if first_key is not None and not stored_before:
            # Fetched and expanded beside the first segment, not when the first read asks
            # (from the cache, the read gets it sooner itself than a job on another thread).
            deadline = time.monotonic() + net.read_deadline
            self._pool.submit(lambda: self.keys.prefetch(first_key, deadline))
        unsaved, self._unsaved_playlists = self._unsaved_playlists or [], None
        job = (media, first, sid, unsaved, not stored_before)
        if stored_before:
            # Its bytes come from the cache: leased before the first read, so that no
            # other process evicts them meanwhile (the database is open by now).
            self._bookkeep(*job, own_thread=False)
        else:
            # A new stream's bookkeeping waits for the database, which a fresh cache
            # creates meanwhile (tens of ms; far more while the file system commits a
            # big delete): on a thread of its own, the first read need not wait for it.
            self._bookkeeping = threading.Thread(
                target=self._bookkeep, args=job, name="kithara-catalog", daemon=True
            )
            self._bookkeeping.start()
        if len(self.variants) > 1 and not self.options.offline:
            abr = self.options.abr
            if abr.buffer_target_secs > net.lookahead:
                # The buffer can never hold more than the look-ahead window.
                abr = dataclasses.replace(abr, buffer_target_secs=net.lookahead)
            self.abr_driver = AbrDriver(
                [v.bitrate for v in self.variants],
                abr,
                buffer_level=self.buffer_level,
                apply=self._apply_decision,
                bus=self.bus,
                manual=choice,
            )

    def _bookkeep(
        self,
        media: MediaPlaylist,
        variant: int,
        sid: str,
        playlists: list[tuple[str, bytes]],
        sizes: bool,
        *,
        own_thread: bool = True,
    ) -> None:
        """Store the playlists read while opening, take an earlier run's sizes (if `sizes`),
        record the stream in the catalog and lease it."""
        try:
            for key, blob in playlists:
                self.cache.set(key, blob)
            if sizes:
                self._load_sizes(sid)
            self._record(media, variant)
            self._lease = (sid, self.catalog.lease(sid))
        except (OSError, sqlite3.Error) as exc:  # StorageError is an OSError
            if not own_thread:
                raise
            # The stream plays on; a later run stores what this one could not.
            log.warning("could not record the stream in the cache: %s", exc)
            self.bus.publish(ev.Error(exc, recoverable=True))
        finally:
            if own_thread:
                self.cache.close()  # this thread's connection

    def _bookkept(self) -> None:
        """Wait for `_bookkeep` (its cache calls have deadlines of their own)."""
        if self._bookkeeping is not None:
            self._bookkeeping.join(BOOKKEEPING_DEADLINE_S)

    def _offline_plan(self, base: MediaPlaylist, first: int) -> list[Part]:
        """Offline with ABR: per segment, the best variant the cache holds whole."""
        for variant in range(len(self.variants)):
            if variant not in self.media:
                try:
                    self.media[variant] = self.load_media(variant)
                except OfflineMiss:
                    continue
        order = sorted(self.media, reverse=True)  # highest bitrate first
        choices = []
        for seg in base.segments:
            pick = (base, first, seg.index)
            for variant in order:
                media = self.media[variant]
                index = media.segment_at(seg.start + 1e-3)
                if self.store.load(build_mixed([(media, variant, index)])[-1].rid)[1]:
                    pick = (media, variant, index)
                    break
            choices.append(pick)
        return build_mixed(choices)

    def _record(self, media: MediaPlaylist, variant: int) -> str:
        """Tell the catalog which resources and keys this stream uses (for `cache ls` and eviction)."""
        parts = build_parts(media, variant)
        keys = {f"key:{digest(p.key.uri)}" for p in parts if p.key is not None}
        return self.catalog.record(self.url, (p.rid for p in parts), [*self._stream_keys, *keys])

    def _load_sizes(self, sid: str) -> None:
        """Take the sizes an earlier run of this stream knew (its snapshot)."""
        self._sizes_sid = sid
        self._stream_keys.append(sizes_key(sid))
        self.store.preload(self.catalog.sizes(sid))

    def _save_sizes(self) -> None:
        """Keep every size known now in the stream's snapshot, if some were learnt since
        it was last kept: at close, and every `SIZES_SAVE_INTERVAL_S` while downloading."""
        with self._sizes_lock:
            learnt = self.store.sizes_learnt
            if self._sizes_sid is None or learnt == self._sizes_learnt_kept:
                return
            try:
                self.catalog.keep_sizes(self._sizes_sid, self.store.known_sizes())
            except (OSError, sqlite3.Error) as exc:  # StorageError is an OSError
                log.warning("could not keep the stream's sizes: %s", exc)
                return
            self._sizes_learnt_kept = learnt

    def _evict(self) -> None:
        self._bookkept()  # this stream's lease protects it
        removed = self.catalog.evict(self.options.cache.max_bytes)
        if removed:
            log.info("cache over its cap: evicted %d stream(s)", removed)

    def _learn_byteranges(self, parts: list[Part]) -> None:
        for part in parts:
            if part.byterange is not None and part.key is None:
                self.layout.learn(part.rid, SizeInfo(part.byterange.length))

    def load_playlist(self, url: str, *, fresh: bool = False) -> MasterPlaylist | MediaPlaylist:
        """Fetch (or take from the cache) and parse the playlist at `url`; `fresh`: no cached fallback."""
        key = f"pl:{digest(url)}"
        self._stream_keys.append(key)
        if self.options.offline:
            cached = self.cache.get(key)
            if cached is None:
                raise OfflineMiss("playlist not in the cache", url=url)
            return _parse_cached(cached, url, self.options.network.max_segments)
        try:
            # The cache is asked only if this fails: it may still be opening.
            body, final = self.client.get(url, max_bytes=self.options.network.max_playlist_bytes)
        except NetError:
            cached = None if fresh else self.cache.get(key)
            if cached is None:
                raise
            log.warning("playlist unreachable, playing the cached copy")
            return _parse_cached(cached, url, self.options.network.max_segments)
        if not looks_like_playlist(body[:64]):
            raise PlaylistParseError("not an HLS playlist", url=final)
        playlist = parse(body, final, max_segments=self.options.network.max_segments)
        blob = final.encode() + b"\n" + body
        if self._unsaved_playlists is None:
            self.cache.set(key, blob)
        else:
            self._unsaved_playlists.append((key, blob))
        return playlist

    def load_media(self, variant: int, *, fresh: bool = False) -> MediaPlaylist:
        """The media playlist of `variant` (one master→media level only)."""
        playlist = self.load_playlist(self.variants[variant].uri, fresh=fresh)
        if not isinstance(playlist, MediaPlaylist):
            raise PlaylistParseError("a variant points to another master playlist", url=playlist.url)
        return playlist

    # -- background work ---------------------------------------------------------

    def _progress(self, nbytes: int) -> None:
        with self._switch_lock:
            self._fetched_bytes += nbytes
            self._unevicted_bytes += nbytes
            evict = nbytes > 0 and self._unevicted_bytes >= EVICT_CHECK_BYTES
            if evict:
                self._unevicted_bytes = 0
            now = time.monotonic()
            save = now - self._sizes_saved_at >= SIZES_SAVE_INTERVAL_S
            if save:
                self._sizes_saved_at = now
        if self._pool is not None:
            if evict:
                self._pool.submit(self._evict)
            if save:
                self._pool.submit(self._save_sizes)

    def _on_finished(self, ok: bool, done: int, idle: bool) -> None:
        """A download ended (on a worker): progress, and EndOfStream once the reader is done too."""
        if ok and self.bus.active:
            percent = min(100.0, 100.0 * done / max(1, self.layout.resource_count()))
            self.bus.publish(ev.DownloadProgress(self._fetched_bytes, percent))
        if idle:
            self._end_of_stream()

    # -- adaptive bitrate ----------------------------------------------------------

    @property
    def reader_part(self) -> int:
        """Index of the part the reader is in (-1 before the first read)."""
        return self._reader_part

    def buffer_level(self) -> float:
        """Media seconds stored contiguously ahead of the read position."""
        pool = self._pool
        index = max(self._reader_part, 0)
        if pool is None or index >= len(self.layout):
            return 0.0
        level = 0.0
        for part in self.layout.parts(index):
            if not pool.is_done(part.rid):
                break
            level += part.duration
        return level

    def _apply_decision(self, decision: AbrDecision) -> None:
        reason = decision.reason or ev.AbrReason.MANUAL
        variant = decision.to_variant
        if variant in self.media:
            self._switch(variant, reason)
        elif self._pool is not None:
            self._pool.submit(lambda: self._load_and_switch(variant, reason))

    def _add_variant(self, variant: int) -> None:
        """Load, check and record the media playlist of another variant."""
        media = self.load_media(variant)
        self.keys.check(media)
        self.media.setdefault(variant, media)
        self._record(media, variant)

    def _load_and_switch(self, variant: int, reason: ev.AbrReason) -> None:
        self._add_variant(variant)
        if self.abr_driver is not None and self.abr_driver.current == variant:
            self._switch(variant, reason)

    def _switch(self, variant: int, reason: ev.AbrReason) -> None:
        """Re-plan the parts the reader has not reached (nor the pool started) on `variant`."""
        pool, layout, media = self._pool, self.layout, self.media[variant]
        assert pool is not None
        urgent = reason == ev.AbrReason.URGENT
        with self._switch_lock:
            for _ in range(8):
                # Urgent: also re-plan (and abandon) downloads in flight.
                index = pool.first_unstarted(layout.committed, started_counts=not urgent)
                if index >= len(layout) or layout.part(index).variant == variant:
                    return
                old = layout.part(index)
                first = media.segment_at(old.start + 1e-3)
                before = layout.part(index - 1) if index else None
                current_init = (
                    None if before is None else self.media[before.variant].segments[before.segment].init
                )
                parts = build_parts(media, variant, first, current_init)
                dropped = {p.rid for p in layout.parts(index)} - {p.rid for p in parts}
                if layout.replace_from(index, parts):
                    self.tasks.abandon(dropped)
                    self.store.poke()
                    for start in [k for k in self._reasons if k >= index]:
                        del self._reasons[start]
                    self._reasons[index] = reason
                    self._learn_byteranges(parts)
                    pool.invalidate()
                    log.debug("switch to variant %d (%s) from part %d", variant, reason.value, index)
                    return

    def set_variant(self, variant: int | None) -> None:
        """Pin `variant` (ABR off) or, with None, let ABR choose again."""
        if variant is not None and not 0 <= variant < len(self.variants):
            raise VariantNotFound(f"variant {variant} of {len(self.variants)}")
        if variant is not None and variant not in self.media:
            # Loaded on the caller's thread, so the switch is planned before this returns.
            self._add_variant(variant)
        if self.abr_driver is not None:
            self.abr_driver.set_manual(variant)

    def abr_decisions(self) -> list[AbrDecision]:
        """What ABR decided, and why (oldest first)."""
        return [] if self.abr_driver is None else self.abr_driver.decisions()

    def _entered(self, index: int, part: Part) -> None:
        """The reader moved into part `index`: events, look-ahead and ABR follow."""
        self._reader_part = index
        assert self._pool is not None
        self._pool.set_reader(index)
        if part.variant != self.variant:
            previous, self.variant = self.variant, part.variant
            reason = self._reasons[max(k for k in self._reasons if k <= index)]
            self.bus.publish(ev.VariantApplied(previous, part.variant, reason))
        if self.duration > 0:
            self.bus.publish(ev.PlaybackProgress(part.start, min(100.0, 100.0 * part.start / self.duration)))
        if self.abr_driver is not None:
            self.abr_driver.poke()

    # -- reading -----------------------------------------------------------------

    def read_into(self, pos: int, out: memoryview) -> int:
        """Fill `out` from virtual offset `pos`; short only at the end of the stream."""
        deadline = time.monotonic() + self.options.network.read_deadline
        filled = 0
        layout, pool = self.layout, self._pool
        assert pool is not None
        if self._reader_part < 0:
            self.bus.seal()
        while filled < len(out):
            if time.monotonic() > deadline:
                raise NetError("no data within the read deadline")
            index, off = layout.locate(pos + filled)
            if index >= len(layout):
                self._end()
                break
            part = layout.part(index)
            layout.commit(index)
            if index != self._reader_part:
                self._entered(index, part)
            # A part still in its download task will tell its size: from its headers, or
            # (AES-128 padding) just after its body is stored.
            if off > 0 and layout.size_of(index) is None and not pool.in_flight(part.rid):
                self.resolve_sizes(index, index + 1, deadline, ahead=PROBE_BATCH)
                continue
            n = self._read_part(index, part, off, out[filled:], deadline, len(out))
            if n == 0:
                self._settle_size(index, part, off)
                continue
            filled += n
        return filled

    def _read_part(
        self, index: int, part: Part, off: int, out: memoryview, deadline: float, asked: int
    ) -> int:
        pool = self._pool
        assert pool is not None

        def need() -> None:
            pool.demand(index)
            if self.abr_driver is not None:
                self.abr_driver.poke()

        try:
            if part.key is None:
                return self.store.read_into(part.rid, off, out, deadline, need)
            cipher = self.keys.cipher_for(part, deadline)
            plain = self.layout.size_of(index)
            if plain is not None:
                # A read that ends where the plaintext does needs no look at the padding block.
                out = out[: max(0, plain - off)]
            return self.decryptor.read_into(part, cipher, off, out, deadline, need, asked)
        except HlsError:
            self.store.clear_error(part.rid)
            raise

    def _settle_size(self, index: int, part: Part, off: int) -> None:
        """A part read to its end: make sure the layout knows its size, or the loop would spin."""
        size = self.layout.size_of(index)
        if size is not None:
            if off < size:
                message = f"ended at {off} of {size} bytes (the resource changed?)"
                raise AssetsError(message, url=part.url, segment=part.segment)
            return
        info = self.store.size_info(part.rid)
        if part.key is not None and (info is None or info.pad is None):
            self.tasks.learn_pad(part)
            info = self.store.size_info(part.rid)
        if info is not None:
            self.layout.learn(part.rid, info)  # the store may have learnt it from another writer
        if info is None or self.layout.size_of(index) is None:
            raise HlsError("size of a finished part is unknown", url=part.url, segment=part.segment)

    def prefetch(self, index: int) -> None:
        """Start downloading part `index` now (a seek is about to read it)."""
        assert self._pool is not None
        self._pool.demand(index)

    def resolve_sizes(self, start: int, stop: int, deadline: float, ahead: int = 0) -> None:
        """Wait until parts [start, stop) have known sizes; probes them (and `ahead` more) in parallel.

        An ABR switch may replace parts meanwhile: the wait then starts over on
        the new plan, so no part is waited for that nobody will fetch.
        """
        layout, pool = self.layout, self._pool
        assert pool is not None
        while True:
            generation = self.store.generation
            unknown = layout.unknown(start, stop + ahead)
            # Asked on every pass: the pool skips what is queued or running, and a
            # probe an ABR switch cancelled must be asked for again.
            pool.probe(unknown)
            waiting = [i for i in unknown if i < stop]
            if not waiting:
                return
            self._wait_size(waiting[0], deadline, generation)

    def _wait_size(self, index: int, deadline: float, generation: int) -> None:
        part = self.layout.part(index)
        try:
            info = self.store.wait_size(part.rid, part.key is not None, deadline, generation)
            if info is not None:
                # The layout may have been built after the store learnt this size.
                self.layout.learn(part.rid, info)
        except HlsError:
            self.store.clear_error(part.rid)
            raise

    def _end(self) -> None:
        """The reader reached the end; EndOfStream follows once downloads in flight have finished."""
        if not self._ended:
            self._ended = True
            self.bus.publish(ev.PlaybackProgress(self.duration, 100.0))
            assert self._pool is not None
            if self._pool.idle():
                self._end_of_stream()

    def _end_of_stream(self) -> None:
        with self._switch_lock:
            if not self._ended or self._eos_sent:
                return
            self._eos_sent = True
        self.bus.publish(ev.EndOfStream())

    # -- lifecycle ---------------------------------------------------------------

    def close(self) -> None:
        """Stop every thread (promptly, even mid-download) and release the cache. Idempotent."""
        self._cancel.set()
        self.client.abort()
        self.store.close()
        if self.abr_driver is not None:
            self.abr_driver.close()
        if self._pool is not None:
            self._pool.close()
        self.client.close()
        self._bookkept()
        self._save_sizes()
        lease, self._lease = self._lease, None
        if lease is not None:
            self.catalog.release(*lease)
        self.bus.close()
        self.cache.close()

    def threads(self) -> list[threading.Thread]:
        """Background threads started by this session (for tests)."""
        threads = [] if self._pool is None else self._pool.threads()
        return threads + ([] if self.abr_driver is None else [self.abr_driver.thread])


def _parse_cached(blob: bytes, url: str, max_segments: int) -> MasterPlaylist | MediaPlaylist:
    final, _, body = blob.partition(b"\n")
    return parse(body, final.decode(), max_segments=max_segments)
