"""Sparse block store: raw resource bytes on disk, readable while they download.

A resource (a URL, or a BYTERANGE slice of one) is kept in the `Cache` as one
blob written in fixed-size blocks, in order from its start: a block reaches
disk only once it is whole (or is the final, short block), so the blob's length
tells which blocks are stored, and a crash never leaves bytes that read back
wrong. Sizes live in memory; the session keeps them in its stream's sizes
snapshot (see `Catalog.keep_sizes`), which tells a later run which blobs are
whole. The block being downloaded lives in memory and is readable as it fills:
readers wait on a range, never on a whole segment.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .cache import Cache
from .errors import AssetsError, HlsError, NetError, StorageError
from .retry import Cancelled

log = logging.getLogger(__name__)

#: Bytes per stored block (a multiple of the AES block size).
BLOCK_SIZE = 256 * 1024
#: Whole blocks kept in memory for readers, shared by all resources.
RECENT_BLOCKS = 24  # 6 MiB
#: Block buffers kept for reuse once readers no longer need them (a new one costs 64 page faults).
SPARE_BUFFERS = 8
_CLOSED_MSG = "I/O operation on closed file."


@dataclass(frozen=True)
class SizeInfo:
    """What is known of a resource's size: raw bytes, and AES padding if learnt."""

    size: int
    pad: int | None = None


@dataclass
class _Res:
    rid: str
    size: int | None = None
    pad: int | None = None
    complete: bool = False
    blocks: set[int] = field(default_factory=set)
    # The block a writer is filling: readable up to buf_len.
    buf: bytearray | None = None
    buf_block: int = -1
    buf_len: int = 0
    writing: bool = False
    error: BaseException | None = None


class Store:
    """Blocks of raw resources, in memory while they arrive and on disk once whole."""

    def __init__(self, cache: Cache) -> None:
        self.cache = cache
        self._lock = threading.Lock()
        # Notified by writers (bytes, size, completion), by fail(), and by close().
        self._changed = threading.Condition(self._lock)
        self._res: dict[str, _Res] = {}
        self._recent: collections.OrderedDict[tuple[str, int], memoryview] = collections.OrderedDict()
        self._closed = False
        self._broken: BaseException | None = None  # set by fail_all
        self._generation = 0
        # Counts sizes (and paddings) learnt: the session keeps them when this moved.
        self.sizes_learnt = 0
        # Block buffers: spare ones, and the ids of those a writer is still putting on disk.
        self._spare: list[bytearray] = []
        self._on_disk_soon: set[int] = set()
        #: Called (outside the lock) with (rid, SizeInfo) whenever a size or padding is learnt.
        self.on_size: Callable[[str, SizeInfo], None] | None = None

    # -- state ---------------------------------------------------------------

    def _get(self, rid: str) -> _Res:
        res = self._res.get(rid)
        if res is None:
            res = self._res[rid] = _Res(rid)
        return res

    def load(self, rid: str, *, if_stored: bool = False) -> tuple[SizeInfo | None, bool]:
        """Learn what the cache holds of `rid`: (size info, complete). Disk I/O: call outside locks.

        Whole once its blob is sealed so (its size is then its length), or is as
        long as its size (known from a snapshot, or live). if_stored: no disk look
        when no byte of `rid` is on disk.
        """
        with self._lock:
            res = self._get(rid)
            if res.complete:
                info = self._info(res)
                if info is not None and self.on_size is not None:
                    self.on_size(rid, info)
                return info, True
        length, sealed = self.cache.blob_state(rid)
        if if_stored and not length:
            return None, False
        with self._lock:
            if sealed and res.size is None:
                res.size = length
                self.sizes_learnt += 1
            # Blocks are written in order, so a body file as long as the size is whole;
            # one gone or short (removed by hand, cut by a crash) is fetched where it stops.
            if res.size is not None and length >= res.size:
                res.complete = True
            complete, info = res.complete, self._info(res)
            if info is not None and self.on_size is not None:
                self.on_size(rid, info)
            self._changed.notify_all()
        return info, complete

    def preload(self, sizes: dict[str, SizeInfo]) -> None:
        """Take sizes known from an earlier run (a stream's snapshot); a size learnt
        meanwhile, live, wins over a different one here."""
        with self._lock:
            for rid, info in sizes.items():
                res = self._get(rid)
                _take(res, info)
                known = self._info(res)
                if known is not None and self.on_size is not None:
                    self.on_size(rid, known)
            self._changed.notify_all()

    def known_sizes(self) -> dict[str, SizeInfo]:
        """Every size (and padding) known in memory, by resource id."""
        with self._lock:
            return {
                rid: SizeInfo(res.size, res.pad) for rid, res in self._res.items() if res.size is not None
            }

    @staticmethod
    def _info(res: _Res) -> SizeInfo | None:
        return None if res.size is None else SizeInfo(res.size, res.pad)

    def size_info(self, rid: str) -> SizeInfo | None:
        """The size known in memory, without disk I/O."""
        with self._lock:
            res = self._res.get(rid)
            return None if res is None else self._info(res)

    def learn_size(self, rid: str, size: int, pad: int | None = None) -> None:
        """Record a size (from headers or a probe) and padding, if learnt.

        A size that contradicts the one known raises `AssetsError`: the resource
        changed under us (or a header lies), and offsets already handed out
        depend on the old size.
        """
        with self._lock:
            res = self._get(rid)
            if res.size is not None and res.size != size:
                raise AssetsError(f"resource changed size: {res.size} bytes before, {size} now")
            changed = res.size != size or (pad is not None and res.pad != pad)
            res.size = size
            if pad is not None:
                res.pad = pad
            info = self._info(res)
            # The layout learns under this lock, so a woken waiter finds its offsets.
            if info is not None and self.on_size is not None:
                self.on_size(rid, info)
            self._changed.notify_all()
            if changed:
                self.sizes_learnt += 1

    def first_missing(self, rid: str) -> int:
        """Byte offset of the first block not on disk (resume point), at most the size. Disk I/O."""
        with self._lock:
            res = self._get(rid)
            if res.complete and res.size is not None:
                return res.size
            size = res.size
        length = self.cache.blob_length(rid)
        if size is not None and length >= size:
            return size
        whole = length // BLOCK_SIZE
        with self._lock:
            res.blocks.update(range(whole))
        return whole * BLOCK_SIZE

    def adopt(self, rid: str) -> None:
        """Every block of `rid` is on disk (another process stored them): mark it complete."""
        with self._lock:
            res = self._get(rid)
            res.complete = res.size is not None
            self._changed.notify_all()

    # -- failures ------------------------------------------------------------

    def fail(self, rid: str, error: BaseException) -> None:
        """Make readers of `rid` raise `error` (until `clear_error`)."""
        with self._lock:
            res = self._get(rid)
            res.error = error
            res.writing = False
            self._changed.notify_all()

    def fail_all(self, error: BaseException) -> None:
        """Make every reader raise `error` from now on: the machinery behind the store broke."""
        with self._lock:
            if self._broken is None:
                self._broken = error
            self._changed.notify_all()

    def clear_error(self, rid: str) -> None:
        """Forget a failure so the next read fetches again."""
        with self._lock:
            res = self._res.get(rid)
            if res is not None:
                res.error = None

    def wait_size(
        self, rid: str, need_pad: bool, deadline: float, generation: int | None = None
    ) -> SizeInfo | None:
        """Wait until the size (and padding, if `need_pad`) of `rid` is known.

        With `generation`, returns None as soon as `poke()` moved past it (the
        caller's plan changed and `rid` may no longer be wanted).
        """
        with self._lock:
            res = self._get(rid)
            while res.size is None or (need_pad and res.pad is None):
                if self._closed:
                    raise ValueError(_CLOSED_MSG)
                if self._broken is not None:
                    raise self._broken
                if res.error is not None:
                    raise res.error
                if generation is not None and generation != self._generation:
                    return None
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise NetError("size unknown within the read deadline")
                self._changed.wait(remaining)
            return SizeInfo(res.size, res.pad)

    @property
    def generation(self) -> int:
        """Counts `poke()` calls."""
        return self._generation

    def poke(self) -> None:
        """Wake every waiter: what they wait for may have changed (an ABR switch)."""
        with self._lock:
            self._generation += 1
            self._changed.notify_all()

    # -- reading -------------------------------------------------------------

    def read_into(
        self,
        rid: str,
        offset: int,
        out: memoryview,
        deadline: float,
        need: Callable[[], None] | None = None,
    ) -> int:
        """Copy bytes of `rid` at `offset` into `out`; returns the count, 0 at the resource's end.

        Waits (until the monotonic `deadline`) for at least one byte; calls `need()`
        once, outside the lock, when the bytes are neither stored nor arriving.
        Copies from one block at most: callers loop.
        """
        index, inner = divmod(offset, BLOCK_SIZE)
        asked = probed = False
        while True:
            with self._lock:
                res = self._get(rid)
                while True:
                    if self._closed:
                        raise ValueError(_CLOSED_MSG)
                    if self._broken is not None:
                        raise self._broken
                    if res.error is not None:
                        raise res.error
                    if res.size is not None and offset >= res.size:
                        return 0
                    block = self._recent.get((rid, index))
                    if block is not None:
                        self._recent.move_to_end((rid, index))
                        return _copy(block, inner, out)
                    if res.buf_block == index and res.buf_len > inner and res.buf is not None:
                        return _copy(memoryview(res.buf)[: res.buf_len], inner, out)
                    known = res.complete or index in res.blocks
                    # A writer here brings the block through memory: no disk look needed.
                    probed = probed or res.writing
                    if known or not asked:
                        break
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise NetError(f"no data within the read deadline (offset {offset})")
                    self._changed.wait(remaining)
            if known or not probed:
                # A block not known here may still be on disk: stored by an earlier
                # run or another process.
                probed = True
                copied = self._load_block(rid, index, known, inner, out)
                if copied is not None:
                    return copied
            if not asked and need is not None:
                need()
            asked = True

    def read_at_least(
        self,
        rid: str,
        start: int,
        view: memoryview,
        wanted: int,
        deadline: float,
        need: Callable[[], None] | None = None,
    ) -> int:
        """Copy bytes of `rid` from `start` into `view`: at least `wanted` (fewer only at its end).

        Every read asks for the whole rest of `view` but waits only while wanted
        bytes are missing, so what lies beyond them comes only if already here.
        """
        got = 0
        while got < wanted:
            n = self.read_into(rid, start + got, view[got:], deadline, need)
            if n == 0:
                break
            got += n
        return got

    def _load_block(self, rid: str, index: int, known: bool, inner: int, out: memoryview) -> int | None:
        """Load block `index` of `rid` from disk, keep it, and copy from `inner` of it into `out`;
        None if the disk does not hold it whole."""
        with self._lock:
            buf = self._new_buffer()
        n = self.cache.read_blob_into(rid, index * BLOCK_SIZE, buf)
        data = memoryview(buf)[:n]
        with self._lock:
            res = self._get(rid)
            # A short read is the final block only if it ends where the resource does.
            whole = n == BLOCK_SIZE or (n and res.size == index * BLOCK_SIZE + n)
            if not whole:
                if known:
                    # Evicted: forget it so a fetch brings it back.
                    res.blocks.discard(index)
                    res.complete = False
                self._recycle(data)
                return None
            res.blocks.add(index)
            self._remember(rid, index, data)
            # Under the lock: once it is released, the block may leave `_recent` and its buffer be reused.
            return _copy(data, inner, out)

    def _remember(self, rid: str, index: int, data: memoryview) -> None:
        self._recent[(rid, index)] = data
        self._recent.move_to_end((rid, index))
        while len(self._recent) > RECENT_BLOCKS:
            _, dropped = self._recent.popitem(last=False)
            self._recycle(dropped)

    def _new_buffer(self) -> bytearray:
        """A block buffer: a spare one if any. Call under the lock."""
        return self._spare.pop() if self._spare else bytearray(BLOCK_SIZE)

    def _recycle(self, view: memoryview) -> None:
        """Keep the buffer under `view` for a next block, unless a writer is still putting it
        on disk (the writer recycles it then).

        Call under the lock, with `view` gone from `_recent` (readers copy under the
        lock, so nobody else reads it).
        """
        buf = view.obj
        if id(buf) in self._on_disk_soon or not isinstance(buf, bytearray):
            return
        view.release()
        self._keep_spare(buf)

    def _keep_spare(self, buf: bytearray) -> None:
        """Keep `buf` for a next block, if there is room. Call under the lock."""
        if len(self._spare) < SPARE_BUFFERS and not self._closed:
            self._spare.append(buf)

    # -- writing -------------------------------------------------------------

    def writer(self, rid: str, start: int) -> Writer:
        """A sink that stores `rid` from the block-aligned `start` on."""
        if start % BLOCK_SIZE:
            raise ValueError("writes start on a block boundary")
        with self._lock:
            res = self._get(rid)
            res.writing = True
            res.error = None
            res.buf = self._new_buffer()
            res.buf_block, res.buf_len = start // BLOCK_SIZE, 0
        return Writer(self, res, start)

    def _room(self, res: _Res, position: int) -> memoryview:
        """The unfilled rest of the block buffer of `res` at `position` (a writer reads into it)."""
        index, inner = divmod(position, BLOCK_SIZE)
        with self._lock:
            buf = res.buf
            if buf is None or res.buf_block != index:
                raise HlsError(f"no block buffer at offset {position}")
        return memoryview(buf)[inner:]

    def _filled(self, res: _Res, index: int, end: int) -> None:
        """The buffer of block `index` now holds bytes up to `end`: readers may take them."""
        with self._lock:
            if res.buf is not None and res.buf_block == index:
                res.buf_len = end
                self._changed.notify_all()

    def _commit_block(self, res: _Res, index: int, length: int, fd: int) -> None:
        with self._lock:
            if res.buf is None:
                return
            # The filled buffer becomes the block readers keep: no copy; the writer takes a new one.
            buf = res.buf
            data = memoryview(buf)[:length]
            # (A short block is the last one: nothing follows it.)
            res.buf = self._new_buffer() if length == BLOCK_SIZE else None
            res.buf_block, res.buf_len = index + 1, 0
            self._on_disk_soon.add(id(buf))
            self._remember(res.rid, index, data)
        try:
            written = os.pwrite(fd, data, index * BLOCK_SIZE)
        except OSError as exc:
            raise StorageError(f"cache write failed: {exc}") from exc
        finally:
            with self._lock:
                self._on_disk_soon.discard(id(buf))
                if self._recent.get((res.rid, index)) is not data:
                    self._recycle(data)  # readers dropped it while it was being written
        if written != length:
            raise StorageError(f"cache write failed: {written} of {length} bytes written")
        with self._lock:
            res.blocks.add(index)
            self._changed.notify_all()

    def _finish(self, res: _Res, size: int) -> None:
        with self._lock:
            res.size = size
            res.complete = True
            res.writing = False
            if res.buf is not None:
                # Taken for a block after the last (the size is a multiple of BLOCK_SIZE).
                self._keep_spare(res.buf)
            res.buf = None
            res.buf_block, res.buf_len = -1, 0
            self._changed.notify_all()

    def _abandon(self, res: _Res) -> None:
        with self._lock:
            res.writing = False
            res.buf = None
            res.buf_block, res.buf_len = -1, 0
            self._changed.notify_all()

    def close(self) -> None:
        """Wake every waiting reader with ValueError; drop memory. Idempotent."""
        with self._lock:
            self._closed = True
            self._recent.clear()
            self._spare.clear()
            self._changed.notify_all()

    @property
    def closed(self) -> bool:
        """True after close()."""
        return self._closed


def _take(res: _Res, info: SizeInfo) -> None:
    """Fill what `res` lacks from `info` (a record or a snapshot); a size known live wins."""
    if res.size is None:
        res.size = info.size
    if res.size == info.size and res.pad is None:
        res.pad = info.pad


def _copy(block: memoryview, inner: int, out: memoryview) -> int:
    # Nothing (0: the resource's end) when `inner` lies past a final block: a read aimed
    # by offsets not yet known, whose size was learnt while its block loaded.
    n = max(0, min(len(out), len(block) - inner))
    out[:n] = block[inner : inner + n]
    return n


class Writer:
    """Sink of one download into the store (see `net.Sink`)."""

    def __init__(self, store: Store, res: _Res, start: int) -> None:
        self._store = store
        self._res = res
        self.position = start
        self._cancelled = False
        self._fd: int | None = None

    def cancel(self) -> None:
        """Stop this download at its next chunk (an ABR switch dropped the part)."""
        self._cancelled = True

    def on_size(self, size: int) -> None:
        """Total raw size, learnt from the response headers."""
        self._store.learn_size(self._res.rid, size)

    def on_data(self, offset: int, data: memoryview) -> None:
        """Contiguous bytes at `offset` of the resource."""
        if self._cancelled:
            raise Cancelled("download abandoned")
        if offset != self.position:
            raise HlsError(f"store writer expected offset {self.position}, got {offset}")
        while len(data):
            room = self.buffer()
            take = min(len(data), len(room))
            room[:take] = data[:take]
            self.filled(take)
            data = data[take:]

    def buffer(self) -> memoryview:
        """The rest of the block being filled: the response is read straight into it."""
        if self._cancelled:
            raise Cancelled("download abandoned")
        return self._store._room(self._res, self.position)

    def filled(self, n: int) -> None:
        """`n` more bytes are in the block buffer (readers see them; a whole block goes to disk)."""
        index, inner = divmod(self.position, BLOCK_SIZE)
        end = inner + n
        if n <= 0 or end > BLOCK_SIZE:
            raise HlsError(f"store writer filled {n} bytes at offset {self.position}")
        self._store._filled(self._res, index, end)
        self.position += n
        if end == BLOCK_SIZE:
            self._commit(index, BLOCK_SIZE)

    def _commit(self, index: int, length: int) -> None:
        if self._fd is None:
            fd = self._store.cache.open_blob(self._res.rid)
            stored = os.fstat(fd).st_size
            if stored < index * BLOCK_SIZE:
                os.close(fd)
                # Blocks must follow each other: a gap would read back as zeros.
                raise StorageError(
                    f"cache file ends before the resume point: {stored} < {index * BLOCK_SIZE}"
                )
            self._fd = fd
        self._store._commit_block(self._res, index, length, self._fd)

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def finish(self) -> None:
        """The download ended at the resource's end: store the short final block."""
        try:
            if self._res.size is None:
                self._store.learn_size(self._res.rid, self.position)
            size = self._res.size if self._res.size is not None else self.position
            if self.position != size:
                raise HlsError(f"download ended at {self.position} of {size} bytes")
            if size % BLOCK_SIZE:
                self._commit(size // BLOCK_SIZE, size % BLOCK_SIZE)
            if size:
                # Also when nothing was left to write: a body stored whole by a run
                # killed before its seal (the resume point was its end).
                self._store.cache.seal_blob(self._res.rid, size, self._fd)
        finally:
            self._close()
        self._store._finish(self._res, size)

    def abandon(self) -> None:
        """The download stopped early; whole blocks stay stored, the rest is dropped."""
        self._close()
        self._store._abandon(self._res)
