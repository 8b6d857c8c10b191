"""Sparse block store: raw resource bytes on disk, readable while they download.

A resource (a URL, or a BYTERANGE slice of one) is kept in the `Cache` as one
body file written in fixed-size blocks, in order from its start: a block reaches
disk only once it is whole (or is the final, short block). A body downloads into
a ``.part`` file, renamed into place when whole, so a file at the final name is
whole and a ``.part``'s length tells which blocks it holds: a crash never leaves
bytes that read back wrong, and a resumed download fetches only what is missing.
The block being downloaded lives in memory and is readable as it fills: readers
wait on a range, never on a whole segment. What is known of each resource
(sizes, failures, the waits for a size) is kept by `resources.Resources`, which
`Store` extends with this block I/O.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .blocks import BLOCK_SIZE as BLOCK_SIZE
from .blocks import BlockMemory
from .cache import Cache
from .errors import HlsError, NetError
from .resources import Resources
from .resources import SizeInfo as SizeInfo
from .resources import Superseded as Superseded
from .writer import Writer as Writer


class Store(Resources):
    """Blocks of raw resources, in memory while they arrive and on disk once whole."""

    def __init__(self, cache: Cache) -> None:
        super().__init__()
        self.cache = cache
        self._blocks = BlockMemory()  # used under the lock

    # -- what the disk holds -------------------------------------------------

    def load(self, rid: str, *, if_stored: bool = False) -> tuple[SizeInfo | None, bool]:
        """Learn what the cache holds of `rid`: (size info, complete). Disk I/O: call outside locks.

        Whole once its body is renamed into place (its size is then its length),
        or once its ``.part`` is as long as its size (known from a snapshot, or
        live). if_stored: no size learnt when no byte of `rid` is on disk.
        """
        with self._lock:
            res = self._get(rid)
            complete, size = res.complete, res.size
        if not complete:
            length, whole = self.cache.settle_blob(rid, size)
            if if_stored and not length:
                return None, False
            if whole:
                complete = self._adopt_whole(rid, length)
                return self.size_info(rid), complete
        with self._lock:
            res.complete = res.complete or res.size == 0
            self._changed.notify_all()
            return self._tell(res), res.complete

    def first_missing(self, rid: str) -> int:
        """Byte offset of the first block not on disk (resume point), at most the size. Disk I/O."""
        with self._lock:
            res = self._get(rid)
            if res.complete and res.size is not None:
                return res.size
            size = res.size
        length, whole = self.cache.settle_blob(rid, size)
        if whole:
            # Another process (or source) stored it all meanwhile.
            return length if self._adopt_whole(rid, length) else 0
        blocks = length // BLOCK_SIZE
        with self._lock:
            res.blocks.update(range(blocks))
            start = blocks * BLOCK_SIZE
            return start if res.size is None else min(start, res.size)

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
                    self._check(res)
                    if res.size is not None and offset >= res.size:
                        return 0
                    block = self._blocks.get(rid, index)
                    if block is not None:
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
            buf = self._blocks.new_buffer()
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
                self._blocks.recycle(data)
                return None
            res.blocks.add(index)
            self._blocks.remember(rid, index, data)
            # Under the lock: once it is released, the block may leave memory and its buffer be reused.
            return _copy(data, inner, out)

    # -- writing -------------------------------------------------------------

    def writer(self, rid: str, start: int) -> Writer:
        """A sink that stores `rid` from the block-aligned `start` on."""
        if start % BLOCK_SIZE:
            raise ValueError("writes start on a block boundary")
        with self._lock:
            res = self._get(rid)
            res.writing = True
            res.error = None
            res.buf = self._blocks.new_buffer()
            res.buf_block, res.buf_len = start // BLOCK_SIZE, 0
        return Writer(self, rid, start)

    # The Writer's side: it fills the block buffer and puts whole blocks on disk.

    def _fill(self, rid: str, position: int, data: memoryview) -> int:
        """Copy the head of `data` into the block buffer of `rid` at `position`, up to the block's
        end; returns how many bytes. Readers see them at once."""
        index, inner = divmod(position, BLOCK_SIZE)
        with self._lock:
            res = self._get(rid)
            buf = res.buf
            if buf is None or res.buf_block != index:
                raise HlsError(f"no block buffer at offset {position}")
        took = min(len(data), BLOCK_SIZE - inner)
        buf[inner : inner + took] = data[:took]
        with self._lock:
            if res.buf is buf:
                res.buf_len = inner + took
                self._changed.notify_all()
        return took

    def _full(self, rid: str, index: int, length: int) -> memoryview | None:
        """Block `index` (`length` bytes) is whole: it becomes a block readers keep, and the
        writer takes a new buffer. Returns its bytes, to put on disk; None if abandoned."""
        with self._lock:
            res = self._get(rid)
            if res.buf is None:
                return None
            data = memoryview(res.buf)[:length]
            # (A short block is the last one: nothing follows it.)
            res.buf = self._blocks.new_buffer() if length == BLOCK_SIZE else None
            res.buf_block, res.buf_len = index + 1, 0
            self._blocks.writing(data)
            self._blocks.remember(rid, index, data)
            return data

    def _stored(self, rid: str, index: int, data: memoryview, ok: bool) -> None:
        """The write of block `index` returned (`ok`: whole, on disk)."""
        with self._lock:
            self._blocks.written(rid, index, data)
            if ok:
                self._get(rid).blocks.add(index)
                self._changed.notify_all()

    def _ended(self, rid: str, size: int | None) -> None:
        """The writer of `rid` is done: the body is whole at `size` bytes, or (None) abandoned."""
        with self._lock:
            res = self._get(rid)
            if size is not None:
                res.size, res.complete = size, True
                if res.buf is not None:
                    # Taken for a block after the last (the size is a multiple of BLOCK_SIZE).
                    self._blocks.keep_spare(res.buf)
            res.writing = False
            res.buf = None
            res.buf_block, res.buf_len = -1, 0
            self._changed.notify_all()

    def close(self) -> None:
        """Wake every waiting reader with ValueError; drop memory. Idempotent."""
        with self._lock:
            self._closed = True
            self._blocks.close()
            self._changed.notify_all()

    @property
    def closed(self) -> bool:
        """True after close()."""
        return self._closed


def _copy(block: memoryview, inner: int, out: memoryview) -> int:
    # Nothing (0: the resource's end) when `inner` lies past a final block: a read aimed
    # by offsets not yet known, whose size was learnt while its block loaded.
    n = max(0, min(len(out), len(block) - inner))
    out[:n] = block[inner : inner + n]
    return n
