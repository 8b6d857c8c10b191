"""The session: builds the machinery behind one open stream, wires it, and closes it.

Each part does one job and is handed the collaborators it uses: `PlaylistLoader`
(playlists through the cache), `Bookkeeping` (the cache's books and their
thread), the fetch pool running `TaskRunner` tasks, `Switcher` (variant
switching and ABR), and `Reader` (the read path). Whatever goes wrong on a
background thread reaches the reader: a failed part through the store, an
unexpected exception as `DriverError`.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from . import events as ev
from . import gaps
from .abr.controller import AbrController
from .abr.estimator import DEFAULT_INITIAL_BPS, ThroughputEstimator
from .abr.meter import LinkMeter
from .abr.schedule import FetchSchedule
from .bookkeeping import Bookkeeping
from .cache import Cache
from .catalog import load_link_estimate, save_link_estimate
from .decrypt import Decryptor
from .errors import AbrError, DriverError, HlsError, NoSuitableVariant, VariantNotFound, crashed
from .fetch import FetchPool, Task
from .heads import Heads
from .keys import KeyManager
from .layout import Layout, Part, build_parts
from .loader import PlaylistLoader
from .options import AbrOptions, HlsOptions
from .playlist import MediaPlaylist, Rendition, Variant
from .reader import Reader
from .store import Store
from .switching import Switcher, learn_byteranges, offline_plan
from .switchsets import SwitchSets
from .tasks import TaskRunner
from .transport import HttpClient

log = logging.getLogger(__name__)

#: The link estimate is kept for the origin at close once this many bytes were measured.
KEEP_ESTIMATE_BYTES = 64 * 1024
#: Bytes measured on the link before the estimate replaces the initial guess (or the stored one).
LINK_MIN_TOTAL_BYTES = 16 * 1024


@dataclass(frozen=True)
class StreamInfo:
    """Facts about an open stream, as `HlsSource.info()` found them.

    variant: the variant the reader is in (before the first read, the one the
    stream starts on). segments / parts: media segments, and those plus init
    sections, in the current plan. encryption: the methods its parts use
    ("AES-128"), empty when clear. parts_cached: parts the cache holds whole.
    size: the stream's size in bytes, None until every part's size is known
    (`HlsSource.size()` probes them). track: what the file carries of a master,
    "audio" or "muxed" (None for a media playlist); rendition: the audio
    rendition played, if one was chosen; renditions: every rendition of the
    master (EXT-X-MEDIA, all types). switch_sets: the variants a decoder can
    follow a switch between, as known so far (`HlsSource.switch_sets` looks at
    every variant). periods: (segment, playlist time) where each period begins
    (`HlsSource.periods` adds byte offsets). gaps: the EXT-X-GAP segments of the
    plan that no variant fills (reading them raises `SegmentGap`).
    """

    url: str
    duration: float
    variants: tuple[Variant, ...]
    variant: int
    segments: int
    encryption: tuple[str, ...]
    parts: int
    parts_cached: int
    size: int | None
    cache_dir: Path
    track: str | None = None
    rendition: Rendition | None = None
    renditions: tuple[Rendition, ...] = ()
    switch_sets: tuple[tuple[int, ...], ...] = ()
    periods: tuple[tuple[int, float], ...] = ()
    gaps: tuple[int, ...] = ()


class Session:
    """Everything behind one `HlsSource`: playlists, layout, store, fetch pool, ABR."""

    def __init__(self, url: str, options: HlsOptions) -> None:
        self.url = url
        self.options = options
        self.bus = ev.EventBus(options.events_queue)
        self._cancel = threading.Event()
        self.cache = Cache(options.cache, background=True)
        self.client = HttpClient(options.network, cancel=self._cancel, on_retry=self._on_retry)
        self.store = Store(self.cache)
        self.keys = KeyManager(self.client, self.cache, options.keys, offline=options.offline, bus=self.bus)
        self.loader = PlaylistLoader(self.client, self.cache, options)
        self.books = Bookkeeping(
            self.cache,
            self.store,
            self.bus,
            url=url,
            max_bytes=options.cache.max_bytes,
            playlist_keys=self.loader.keys,
            on_crash=lambda exc: self._break(crashed("the cache bookkeeping", exc)),
        )
        # Built by _open once the playlists are read; None here for a close() that it fails.
        self._pool: FetchPool | None = None
        self._fills: dict[int, MediaPlaylist] = {}  # variants loaded to fill gaps
        self._switcher: Switcher | None = None
        self._meter: LinkMeter | None = None
        self._start_bps: float | None = None
        self._keep = True  # the link estimate is still to be kept (at close)
        try:
            self._open(url)
        except BaseException:
            self.close()
            raise

    def _open(self, url: str) -> None:
        """Read the playlists, lay out the stream, then wire and start its parts."""
        options, loader = self.options, self.loader
        loader.open(url)
        choice = options.variant
        abr = choice is None and len(loader.variants) > 1 and not options.offline
        # Where the link was: the option, or what the last stream from this origin measured.
        start_bps = options.abr.initial_bandwidth
        if abr and start_bps is None:
            start_bps = load_link_estimate(self.cache, url)
        first = _first_variant(loader.variants, choice, options.abr, url, start_bps if abr else None)
        self._start_bps = start_bps
        media = loader.media(first)
        self.keys.check(media)
        net = options.network
        self._sets = SwitchSets(
            loader=loader, client=self.client, store=self.store, network=net, offline=options.offline
        )
        offline_abr = options.offline and choice is None and len(loader.variants) > 1
        if offline_abr:
            parts = offline_plan(loader, self.store, media, first, self._sets)
        elif gaps.has_gaps(media):
            self._fills = self._stand_ins(first)
            parts = gaps.plan(media, first, self._fills, compatible=self._sets.same_set)
        else:
            parts = build_parts(media, first)
        layout = Layout(parts)
        self.layout = layout
        self.duration = media.duration
        self.store.on_size = layout.learn
        learn_byteranges(layout, layout.parts())
        reason = ev.AbrReason.MANUAL if choice is not None else ev.AbrReason.INITIAL
        if offline_abr:
            reason = ev.AbrReason.CACHED  # each segment on what the cache holds
        self._wire(layout, reason)
        self._start(media, first, choice)

    def _stand_ins(self, first: int) -> dict[int, MediaPlaylist]:
        """The media playlists of the variants that may fill `first`'s gaps (one that fails to
        load fills none)."""
        loaded = {}
        for variant in range(len(self.loader.variants)):
            # As far as CODECS tell: a variant not known to differ may fill a gap.
            if variant != first and self._sets.same_set(first, variant):
                try:
                    media = self.loader.media(variant)
                    self.keys.check(media)
                except HlsError as exc:
                    log.debug("variant %d fills no gap: %s", variant, exc)
                    continue
                loaded[variant] = media
        return loaded

    def _wire(self, layout: Layout, reason: ev.AbrReason) -> None:
        """Build the task runner, the fetch pool, the switcher and the reader over `layout`."""
        options, net, loader = self.options, self.options.network, self.loader
        estimator = ThroughputEstimator(
            fast_half_life=options.abr.fast_half_life,
            slow_half_life=options.abr.slow_half_life,
            initial_bps=self._start_bps or DEFAULT_INITIAL_BPS,
            # Interval samples of the link are believed after one small segment's worth.
            min_total_bytes=LINK_MIN_TOTAL_BYTES,
        )
        meter = self.meter = self._meter = LinkMeter(estimator)
        heads = Heads(store=self.store, keys=self.keys, bus=self.bus)
        self.tasks = TaskRunner(
            store=self.store,
            client=self.client,
            keys=self.keys,
            bus=self.bus,
            layout=layout,
            options=options,
            refresh=loader.reload,
            grow=self._grow,
            response_wait=self._response_wait,
            sample=self._sample,
            progress=self.books.downloaded,
            heads=heads,
            meter=meter,
        )
        pool = self.pool = self._pool = FetchPool(
            layout,
            self.tasks.run,
            workers=net.workers,
            lookahead_s=net.lookahead,
            lookahead_bytes=net.lookahead_bytes,
            probe_workers=net.probe_workers,
        )
        pool.on_finished = self._on_finished
        pool.limit = FetchSchedule(
            meter=meter,
            variants=lambda: loader.variants,
            size_info=layout.info,
            controller=self._controller,
            abr=options.abr,
            workers=net.workers,
            start_known=self._start_bps is not None,
            settling=lambda: self._switcher is not None and self._switcher.settling,
        ).limit
        pool.held = self._held
        pool.on_exit = self.cache.close
        pool.on_crash = self._task_crashed
        switcher = self.switcher = self._switcher = Switcher(
            layout=layout,
            loader=loader,
            store=self.store,
            pool=pool,
            keys=self.keys,
            books=self.books,
            bus=self.bus,
            abandon=self.tasks.abandon,
            reason=reason,
            sets=self._sets,
        )
        switcher.sets.in_flight = pool.in_flight
        self.reader = Reader(
            layout=layout,
            pool=pool,
            store=self.store,
            keys=self.keys,
            decryptor=Decryptor(self.store),
            switcher=switcher,
            bus=self.bus,
            learn_pad=self.tasks.learn_pad,
            heads=heads,
            read_deadline_s=net.read_deadline,
            duration=self.duration,
        )
        switcher.has_read = lambda: self.reader.variant is not None

    def _start(self, media: MediaPlaylist, first: int, choice: int | None) -> None:
        """Start the downloads, the cache's books and (several variants, online) ABR."""
        options, net, loader = self.options, self.options.network, self.loader
        layout, pool = self.layout, self.pool
        stored = len(layout) > 0 and self.cache.blob_length(layout.part(0).rid) > 0
        if stored:
            # Read from the cache: the workers must find its sizes known.
            self.books.load_sizes()
        # The first download starts before the cache's bookkeeping: a stream
        # evicted by another process meanwhile only costs a fetch again.
        pool.start()
        first_key = next((p for p in layout.parts(0, 2) if p.key is not None), None)
        if first_key is not None and not stored:
            # Fetched and expanded beside the first segment, not when the first read asks
            # (from the cache, the read gets it sooner itself than a job on another thread).
            deadline = self.reader.deadline()
            pool.submit(lambda: self.keys.prefetch(first_key, deadline))
        self.books.begin(media, first, loader.take_unsaved(), stored=stored)
        for variant, filler in self._fills.items():
            self.books.record_variant(filler, variant)
        # An audio ladder whose bitrates could not be measured has none for ABR to go by.
        if len(loader.variants) > 1 and not options.offline and all(v.bitrate > 0 for v in loader.variants):
            self.switcher.start_abr(
                options.abr,
                meter=self.meter,
                initial_estimate_bps=self._start_bps,
                lookahead_s=net.lookahead,
                buffer_level=self.reader.buffer_level,
                rest_level=self.reader.rest_level,
                manual=choice,
                on_crash=lambda exc: self._break(crashed("the ABR thread", exc, kind=AbrError)),
            )

    # -- wiring ------------------------------------------------------------------

    def _on_retry(self, error: BaseException, attempt: int) -> None:
        """A request is retried: a recoverable Error event; another worker may start meanwhile
        (a request that never went out, as on a refused connection, started none)."""
        self.bus.publish(ev.Error(error, recoverable=True))
        self._grow(True)

    def _grow(self, always: bool) -> None:
        if self._pool is not None:
            self._pool.grow(always=always)

    def _response_wait(self, seconds: float) -> None:
        if self._pool is not None:
            self._pool.response_wait(seconds)

    def _held(self, part: Part) -> bool:
        """Whether a switch below `part`'s variant waits for its playlist, so a re-plan of it is
        on its way (under the pool's lock)."""
        ctl = self._controller() if self._switcher is not None and self._switcher.replanning else None
        return ctl is not None and ctl.manual is None and part.variant > ctl.current

    def _controller(self) -> AbrController | None:
        """ABR's controller, None while ABR does not run."""
        driver = None if self._switcher is None else self._switcher.driver
        return None if driver is None else driver.controller

    def _sample(self, nbytes: int, transfer_s: float, ttfb_s: float) -> None:
        if self._meter is not None:
            # The interval so far, however short (weighed by its length): on a fast link a
            # whole stream may download within one sampling interval.
            self._meter.sample(force=True)
        if self._switcher is not None:
            self._switcher.sample(nbytes, transfer_s, ttfb_s)

    def _on_finished(self, ok: bool, done: int, idle: bool) -> None:
        """A download ended (on a worker): progress, and EndOfStream once the reader is done too."""
        if ok and self.bus.active:
            percent = min(100.0, 100.0 * done / max(1, self.layout.resource_count()))
            self.bus.publish(ev.DownloadProgress(self.books.fetched_bytes, percent))
        if idle:
            self.reader.downloads_idle()

    def _task_crashed(self, task: Task, exc: BaseException) -> None:
        """A worker's task raised unexpectedly: its part's readers (or, for a job, all) get a DriverError."""
        part = task.part
        if part is None:
            self._break(crashed("a background job", exc))
            return
        what = f"the {'size probe' if task.probe else 'download'} of {part.label}"
        error = crashed(what, exc, url=part.url, segment=part.segment)
        self.store.fail(part.rid, error)
        self.bus.publish(ev.Error(error, recoverable=False))

    def _break(self, error: DriverError) -> None:
        """The machinery broke: every read from now on raises `error`."""
        self.store.fail_all(error)
        self.bus.publish(ev.Error(error, recoverable=False))

    # -- facts -------------------------------------------------------------------

    def info(self) -> StreamInfo:
        """Facts about the stream now (looks at the cache for each part: a few ms for long streams)."""
        parts = self.layout.parts()
        variant = self.reader.variant
        if variant is None:
            variant = parts[0].variant if parts else 0
        choice = self.loader.choice
        return StreamInfo(
            url=self.url,
            duration=self.duration,
            variants=tuple(self.loader.variants),
            variant=variant,
            segments=sum(not p.is_init for p in parts),
            encryption=tuple(sorted({p.key.method for p in parts if p.key is not None})),
            parts=len(parts),
            parts_cached=sum(1 for p in parts if self.store.load(p.rid)[1]),
            size=self.layout.total(),
            cache_dir=self.cache.path,
            track=None if choice is None else choice.track,
            rendition=None if choice is None else choice.rendition,
            renditions=self.loader.renditions,
            switch_sets=self.switcher.sets.sets(),
            periods=tuple((p.segment, p.start) for p in self.layout.periods()),
            gaps=tuple(p.segment for p in parts if p.gap),
        )

    def threads(self) -> list[threading.Thread]:
        """Background threads this session started (fetch, probe, ABR, bookkeeping)."""
        threads = [] if self._pool is None else self._pool.threads()
        threads += [] if self._switcher is None else self._switcher.threads()
        return threads + self.books.threads()

    # -- lifecycle ---------------------------------------------------------------

    def close(self) -> None:
        """Stop and join every thread (bounded; promptly, even mid-download), release the cache.

        Idempotent.
        """
        self._cancel.set()
        self._keep_estimate()
        self.store.close()  # before the abort: a task it interrupts finds the source closed
        self.client.abort()
        if self._switcher is not None:
            self._switcher.close()
        if self._pool is not None:
            self._pool.close()
        self.client.close()
        self.books.close()
        self.bus.close()
        self.cache.close()

    def _keep_estimate(self) -> None:
        """Keep the link estimate for the origin, once: the next stream from it starts there."""
        keep, self._keep = self._keep, False
        meter = self._meter
        if not keep or meter is None or self.options.offline:
            return
        if meter.measured_bytes() < KEEP_ESTIMATE_BYTES:
            return
        save_link_estimate(self.cache, self.url, meter.estimate())


def _first_variant(
    variants: list[Variant], choice: int | None, abr: AbrOptions, url: str, start_bps: float | None
) -> int:
    """The variant a stream starts on: `choice` if pinned, else the highest that fits
    `start_bps` (the link estimate to start from), else the lowest.

    A bandwidth cap below every variant's bitrate leaves ABR nothing to choose:
    `NoSuitableVariant` (a pin may exceed the cap).
    """
    if choice is not None:
        if not 0 <= choice < len(variants):
            raise VariantNotFound(f"variant {choice} of {len(variants)}", url=url)
        return choice
    rates = [v.bitrate for v in variants if v.bitrate > 0]
    cap = abr.max_bandwidth
    if cap is not None and rates and min(rates) > cap:
        raise NoSuitableVariant(
            f"max_bandwidth {cap} bit/s is below every variant (the lowest is {min(rates)} bit/s)", url=url
        )
    if start_bps is None or len(rates) != len(variants):
        return 0
    try:
        return AbrController(rates, abr, initial_estimate_bps=start_bps).current
    except ValueError:  # a ladder the controller refuses starts at the bottom
        return 0
