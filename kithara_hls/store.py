"""Sparse block store: raw resource bytes on disk, readable while they download.

A resource (a URL, or a BYTERANGE slice of one) is kept in the `Cache` as one
body file written in fixed-size blocks, in order from its start: a block reaches
disk only once it is whole (or is the final, short block). A body downloads into
a ``.part`` file, renamed into place when whole, so a file at the final name is
whole and a ``.part``'s length tells which blocks it holds: a crash never leaves
bytes that read back wrong, and a resumed download fetches only what is missing.
The block being downloaded lives in memory and is readable as it fills: readers
wait on a range, never on a whole segment.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .blocks import BLOCK_SIZE as BLOCK_SIZE
from .blocks import BlockMemory
from .cache import Cache
from .errors import AssetsError, HlsError, NetError
from .writer import Writer as Writer

_CLOSED_MSG = "I/O operation on closed file."


class Superseded(HlsError):
    """A re-plan dropped the resource its reader waits on: read the plan again (never surfaced)."""


@dataclass(frozen=True)
class SizeInfo:
    """What is known of a resource's size: raw bytes, AES padding and the leading ID3 tag, if learnt.

    head: bytes of the ID3v2 tag the (plaintext) resource begins with, 0 when
    it begins with none; packed audio segments after the first are presented
    without it.
    """

    size: int
    pad: int | None = None
    head: int | None = None


@dataclass
class _Res:
    rid: str
    size: int | None = None
    pad: int | None = None
    head: int | None = None
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
        self._blocks = BlockMemory()  # used under the lock
        self._closed = False
        self._broken: BaseException | None = None  # set by fail_all
        self._generation = 0
        # Counts sizes (and paddings) learnt: the session keeps them when this moved.
        self.sizes_learnt = 0
        #: Called (under the lock) with (rid, SizeInfo) whenever a size or padding is learnt.
        self.on_size: Callable[[str, SizeInfo], None] | None = None

    # -- state ---------------------------------------------------------------

    def _get(self, rid: str) -> _Res:
        res = self._res.get(rid)
        if res is None:
            res = self._res[rid] = _Res(rid)
        return res

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

    def preload(self, sizes: dict[str, SizeInfo]) -> None:
        """Take sizes known from an earlier run (a stream's snapshot); a size learnt
        meanwhile, live, wins over a different one here."""
        with self._lock:
            for rid, info in sizes.items():
                res = self._get(rid)
                _take(res, info)
                self._tell(res)
            self._changed.notify_all()

    def known_sizes(self) -> dict[str, SizeInfo]:
        """Every size (and padding) known in memory, by resource id."""
        with self._lock:
            return {
                rid: SizeInfo(r.size, r.pad, r.head) for rid, r in self._res.items() if r.size is not None
            }

    @staticmethod
    def _info(res: _Res) -> SizeInfo | None:
        return None if res.size is None else SizeInfo(res.size, res.pad, res.head)

    def _tell(self, res: _Res) -> SizeInfo | None:
        """What is known of the size of `res`, told to `on_size` too. Call under the lock."""
        info = self._info(res)
        if info is not None and self.on_size is not None:
            self.on_size(res.rid, info)
        return info

    def size_info(self, rid: str) -> SizeInfo | None:
        """The size known in memory, without disk I/O."""
        with self._lock:
            res = self._res.get(rid)
            return None if res is None else self._info(res)

    def learn_size(self, rid: str, size: int, pad: int | None = None, head: int | None = None) -> None:
        """Record a size (from headers or a probe), and padding and ID3 tag length, if learnt.

        A size that contradicts the one known raises `AssetsError`: the resource
        changed under us (or a header lies), and offsets already handed out
        depend on the old size.
        """
        with self._lock:
            res = self._get(rid)
            if res.size is not None and res.size != size:
                raise AssetsError(f"resource changed size: {res.size} bytes before, {size} now")
            changed = (
                res.size != size
                or (pad is not None and res.pad != pad)
                or (head is not None and res.head is None)
            )
            res.size = size
            if pad is not None:
                res.pad = pad
            if head is not None and res.head is None:
                res.head = head
            # The layout learns under this lock, so a woken waiter finds its offsets.
            self._tell(res)
            self._changed.notify_all()
            if changed:
                self.sizes_learnt += 1

    def learn_head(self, rid: str, head: int) -> bool:
        """Record the length of the ID3 tag `rid` begins with (0: none), learnt from its first
        bytes; True if it was not known before.

        The first length learnt stays: offsets handed out depend on it.
        """
        with self._lock:
            res = self._get(rid)
            if res.head is not None:
                return False
            res.head = head
            if res.size is not None:
                self.sizes_learnt += 1
                self._tell(res)
            self._changed.notify_all()
            return True

    def head_of(self, rid: str) -> int | None:
        """The ID3 tag length known for `rid` (0: none), or None."""
        with self._lock:
            res = self._res.get(rid)
            return None if res is None else res.head

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

    def _adopt_whole(self, rid: str, length: int) -> bool:
        """The body of `rid` is on disk whole, `length` bytes long: mark it complete if that is
        its size; returns whether it was."""
        with self._lock:
            res = self._get(rid)
            if res.size is None:
                res.size = length
                self.sizes_learnt += 1
            res.complete = res.size == length
            self._tell(res)
            self._changed.notify_all()
            return res.complete

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

    def supersede(self, rid: str) -> None:
        """A re-plan dropped `rid` under the reader: its wait for bytes ends with `Superseded`
        (once; or never, after `clear_error` or a new download of it)."""
        with self._lock:
            res = self._get(rid)
            if res.error is None:
                res.error = Superseded("the plan replaced this resource", url=None)
            self._changed.notify_all()

    def fail_all(self, error: BaseException) -> None:
        """Make every reader raise `error` from now on: the machinery behind the store broke."""
        with self._lock:
            if self._broken is None:
                self._broken = error
            self._changed.notify_all()

    def _check(self, res: _Res, *, superseded: bool = True) -> None:
        """Raise what a reader of `res` meets: a closed store, a broken one, its failure; and,
        if `superseded`, a re-plan's mark, once (a reader that moved on before it was set
        meets it at most in one read, which it then repeats)."""
        if self._closed:
            raise ValueError(_CLOSED_MSG)
        if self._broken is not None:
            raise self._broken
        error = res.error
        if isinstance(error, Superseded):
            if superseded:
                res.error = None
                raise error
        elif error is not None:
            raise error

    def clear_error(self, rid: str) -> None:
        """Forget a failure so the next read fetches again."""
        with self._lock:
            res = self._res.get(rid)
            if res is not None:
                res.error = None

    def wait_size(
        self,
        rid: str,
        need_pad: bool,
        deadline: float,
        generation: int | None = None,
        need_head: bool = False,
    ) -> SizeInfo | None:
        """Wait until the size (and padding, if `need_pad`; ID3 tag length, if `need_head`) of `rid` is known.

        With `generation`, returns None as soon as `poke()` moved past it (the
        caller's plan changed and `rid` may no longer be wanted).
        """
        with self._lock:
            res = self._get(rid)
            while res.size is None or (need_pad and res.pad is None) or (need_head and res.head is None):
                # A re-plan's mark does not end a wait for a size: the poke that follows it does.
                self._check(res, superseded=False)
                if generation is not None and generation != self._generation:
                    return None
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise NetError("size unknown within the read deadline")
                self._changed.wait(remaining)
            return SizeInfo(res.size, res.pad, res.head)

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


def _take(res: _Res, info: SizeInfo) -> None:
    """Fill what `res` lacks from `info` (a record or a snapshot); a size known live wins."""
    if res.size is None:
        res.size = info.size
    if res.size == info.size and res.pad is None:
        res.pad = info.pad
    if res.size == info.size and res.head is None:
        res.head = info.head


def _copy(block: memoryview, inner: int, out: memoryview) -> int:
    # Nothing (0: the resource's end) when `inner` lies past a final block: a read aimed
    # by offsets not yet known, whose size was learnt while its block loaded.
    n = max(0, min(len(out), len(block) - inner))
    out[:n] = block[inner : inner + n]
    return n
