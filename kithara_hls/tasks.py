"""What a fetch worker does with a task: download a part, probe a size, run a job.

Downloads go into the store through a `Writer` (registered here, so an ABR
switch can abandon the ones its new plan drops); failures are handed to the
store, which raises them in the reader that needs the bytes. An unexpected
exception is not caught here: the pool's worker delivers it (see `FetchPool.on_crash`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from . import events as ev
from .abr.meter import Download, LinkMeter
from .errors import HlsError, NetError, OfflineMiss, SegmentGap
from .fetch import Task
from .heads import Heads
from .id3 import HEADER_BYTES
from .keys import KeyManager, tail_size
from .layout import Layout, Part, build_parts
from .options import HlsOptions
from .playlist import MediaPlaylist
from .ranged import FetchStats, Sink
from .retry import Cancelled
from .store import Store, Superseded, Writer
from .transport import HttpClient

log = logging.getLogger(__name__)

#: Statuses that mean "this signed URL expired": the media playlist is reloaded once.
EXPIRED_STATUSES = (401, 403)


class TaskRunner:
    """Runs fetch-pool tasks over the collaborators they use.

    refresh(variant): (kept, freshly loaded) media playlist of `variant`, for expired URLs.
    grow(always): lets the pool start another worker (this one is about to wait).
    response_wait(seconds): a response's headers came that long after its request.
    sample(bytes, transfer_s, ttfb_s): a network download's throughput, for ABR.
    progress(bytes): a download stored that many bytes.
    meter: told of every download's bytes as they arrive (the link estimate).
    """

    def __init__(
        self,
        *,
        store: Store,
        client: HttpClient,
        keys: KeyManager,
        bus: ev.EventBus,
        layout: Layout,
        options: HlsOptions,
        refresh: Callable[[int], tuple[MediaPlaylist, MediaPlaylist]],
        grow: Callable[[bool], None],
        response_wait: Callable[[float], None],
        sample: Callable[[int, float, float], None],
        progress: Callable[[int], None],
        heads: Heads,
        meter: LinkMeter | None = None,
    ) -> None:
        self._store = store
        self._client = client
        self._keys = keys
        self._bus = bus
        self._layout = layout
        self._offline = options.offline
        self._net = options.network
        self._refresh_playlist = refresh
        self._grow = grow
        self._response_wait = response_wait
        self._sample = sample
        self._progress = progress
        self._heads = heads
        self._meter = meter
        self._lock = threading.Lock()
        self._writers: dict[str, Writer] = {}  # downloads in flight, by resource id
        self._metered: dict[str, Download] = {}  # their records in the link meter
        self._urls: dict[str, str] = {}  # resource id -> URL from a refreshed playlist
        self._refreshed: set[str] = set()  # resources that already had their one refresh

    def abandon(self, rids: set[str]) -> None:
        """Stop the downloads of these resources at their next chunk."""
        with self._lock:
            writers = [self._writers[rid] for rid in rids if rid in self._writers]
            metered = [self._metered[rid] for rid in rids if rid in self._metered]
        for writer in writers:
            writer.cancel()
        if self._meter is not None:
            # Out of the link's count at once: a stalled one may wait on its socket a while.
            for download in metered:
                self._meter.end(download)

    def run(self, task: Task) -> bool | None:
        """Run one task: True when done, False if it failed (the store keeps the error), None if cancelled."""
        part = task.part
        if part is None:
            return self._run_job(task)
        try:
            if part.gap:  # never requested (the pool does not claim gaps either)
                raise SegmentGap("EXT-X-GAP segment", url=part.url, segment=part.segment)
            if task.probe:
                self._probe(task.index, part)
            else:
                self._fetch(task.index, part)
            return True
        except (Cancelled, Superseded):  # Superseded: a re-plan dropped the part under the reader
            return None
        except ValueError:
            if self._store.closed:  # the source closed under this task
                return None
            raise
        except HlsError as exc:
            if self._store.closed:
                return False
            log.debug("%s failed: %s", part.label, exc)
            self._store.fail(part.rid, exc)
            self._bus.publish(ev.Error(exc, recoverable=False))
            return False

    def learn_pad(self, part: Part) -> None:
        """Learn an AES part's padding from its stored last blocks."""
        info = self._store.size_info(part.rid)
        if info is None or info.size < 16:
            return
        tail = bytearray(min(32, info.size))
        start = info.size - len(tail)
        deadline = time.monotonic() + self._net.read_deadline
        self._store.read_at_least(part.rid, start, memoryview(tail), len(tail), deadline)
        self._store.learn_size(part.rid, info.size, self._keys.padding(part, bytes(tail), info.size))

    def _blocking(self, *, always: bool = False) -> None:
        """This worker is about to wait (on the network, or a job's I/O): let the pool start
        another (`always`: whatever the network's latency, as `FetchPool.grow` says)."""
        self._grow(always)

    def _run_job(self, task: Task) -> bool:
        assert task.job is not None
        self._blocking()
        try:
            task.job()
            return True
        except Cancelled:
            return False
        except HlsError as exc:
            log.debug("background job failed: %s", exc)
            self._bus.publish(ev.Error(exc, recoverable=True))
            return False
        except ValueError:
            if not self._store.closed:
                raise
            # The source closed under the job (an ABR switch's playlist load): not a crash.
            log.debug("background job ended by close")
            return False

    def _probe(self, index: int, part: Part) -> None:
        strips = self._layout.strips(index)
        info, complete = self._store.load(part.rid, if_stored=not self._offline)
        if (
            info is not None
            and (part.key is None or info.pad is not None)
            and (not strips or info.head is not None)
        ):
            return
        if complete:
            if part.key is not None and (info is None or info.pad is None):
                self.learn_pad(part)
            if strips:
                self._learn_head(part)
            return
        if self._offline:
            raise OfflineMiss("segment size not in the cache", url=part.url, segment=part.segment)
        self._blocking()
        head = None
        if strips and part.key is None:
            # Its first bytes tell the ID3 tag a packed audio part begins with, at no extra cost.
            size, first = self._client.probe_head(part.url, base=part.base, head=HEADER_BYTES)
            head = self._heads.from_probe(part, first, self._deadline())
            tail = b""
        else:
            size, tail = self._client.probe(part.url, base=part.base, tail=tail_size(part))
        pad = self._keys.padding(part, tail, size) if part.key is not None else None
        if strips and part.key is not None:
            # The tag lies in the plaintext: one more request, for the first block. A stream
            # whose first segment seen has no tag is taken to have none (see Heads.packed).
            if self._heads.packed is False:
                head = 0
            else:
                _, first = self._client.probe_head(part.url, base=part.base, head=16)
                head = self._heads.from_probe(part, first, self._deadline())
        # Kept by the stream's sizes snapshot.
        self._store.learn_size(part.rid, size, pad, head)

    def _deadline(self) -> float:
        return time.monotonic() + self._net.read_deadline

    def _learn_head(self, part: Part) -> None:
        """Learn the ID3 tag a stored media part begins with (and publish its timestamp)."""
        if not part.is_init:
            self._heads.learn(part, self._deadline())

    def _fetch(self, index: int, part: Part) -> None:
        store, bus = self._store, self._bus
        # Nothing on disk (the usual cold case): the request goes out at once.
        info, complete = store.load(part.rid, if_stored=True)
        if complete:
            if part.key is not None and (info is None or info.pad is None):
                self.learn_pad(part)
            self._learn_head(part)
            if bus.active:
                bus.publish(ev.SegmentComplete(part.variant, part.segment, 0, part.duration))
            return
        if self._offline:
            raise OfflineMiss("segment not in the cache", url=part.url, segment=part.segment)
        start = store.first_missing(part.rid)
        info = store.size_info(part.rid)
        if info is not None and start >= info.size > 0:
            # Another process (or source) stored it all meanwhile.
            store.adopt(part.rid)
            if part.key is not None and info.pad is None:
                self.learn_pad(part)
            self._learn_head(part)
            return
        if bus.active:
            bus.publish(ev.SegmentStart(part.variant, part.segment, self._layout.start_of(index)))
        try:
            stats = self._download(index, part, start)
        except NetError as exc:
            if exc.status not in EXPIRED_STATUSES or part.rid in self._refreshed:
                raise
            # Signed URLs expire: reload the media playlist once and try its new URL.
            self._refreshed.add(part.rid)
            self._refresh(part)
            stats = self._download(index, part, store.first_missing(part.rid))
        if part.key is not None:
            self.learn_pad(part)
        self._learn_head(part)
        self._sample(stats.bytes, stats.transfer, stats.ttfb)
        if bus.active:
            bus.publish(ev.SegmentComplete(part.variant, part.segment, stats.bytes, part.duration))
        self._progress(stats.bytes)

    def _download(self, index: int, part: Part, start: int) -> FetchStats:
        writer = self._store.writer(part.rid, start)
        meter = self._meter
        download = None if meter is None else meter.begin(part.rid, index, part.variant)
        sink: Sink = writer if meter is None or download is None else _Metered(writer, meter, download)
        limit = self._net.max_init_bytes if part.is_init else self._net.max_segment_bytes
        with self._lock:
            self._writers[part.rid] = writer
            if download is not None:
                self._metered[part.rid] = download
            url = self._urls.get(part.rid, part.url)
        try:
            # Another worker starts once this request is out, not while it is being made.
            stats = self._client.fetch(
                url, sink, start=start, base=part.base, max_bytes=limit, on_sent=self._blocking
            )
            writer.finish()
        except BaseException:
            writer.abandon()
            raise
        finally:
            if meter is not None and download is not None:
                meter.end(download)
            with self._lock:
                self._writers.pop(part.rid, None)
                self._metered.pop(part.rid, None)
        if stats.bytes:
            self._response_wait(stats.ttfb)
        return stats

    def _refresh(self, part: Part) -> None:
        """Reload `part`'s media playlist; its resources keep their ids but take the new URLs."""
        old, fresh = self._refresh_playlist(part.variant)
        if len(fresh.segments) != len(old.segments):
            raise NetError("the refreshed playlist has other segments", url=fresh.url, segment=part.segment)
        now = {(p.segment, p.is_init): p.url for p in build_parts(fresh, part.variant)}
        urls = {}
        for before in build_parts(old, part.variant):
            after = now.get((before.segment, before.is_init))
            if after is not None and after != before.url:
                urls[before.rid] = after
        with self._lock:
            self._urls.update(urls)
        log.debug("refreshed the playlist of variant %d: %d new URLs", part.variant, len(urls))


class _Metered:
    """A download's sink that also tells the link meter of each arrival."""

    __slots__ = ("_download", "_meter", "_writer")

    def __init__(self, writer: Writer, meter: LinkMeter, download: Download) -> None:
        self._writer = writer
        self._meter = meter
        self._download = download

    def on_size(self, size: int) -> None:
        self._writer.on_size(size)
        self._meter.sized(self._download, size)

    def on_data(self, offset: int, data: memoryview) -> None:
        self._writer.on_data(offset, data)
        self._meter.arrived(self._download, len(data))
