"""What a store knows of each resource, in memory: sizes, failures, and the waits on them.

A resource's record holds its raw size, AES padding and leading ID3 tag length
once learnt (from headers, a probe, a snapshot or the disk), whether it is
complete, and the failure its readers meet. One lock guards every record, and
one Condition wakes whoever waits on a size, a failure or (in `store.py`) on
bytes. `Store` builds its block I/O on this bookkeeping.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .errors import AssetsError, HlsError, NetError

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


class Resources:
    """The records of a store's resources, under one lock: sizes, completion, failures, waits."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Notified by writers (bytes, size, completion), by fail(), and by close().
        self._changed = threading.Condition(self._lock)
        self._res: dict[str, _Res] = {}
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


def _take(res: _Res, info: SizeInfo) -> None:
    """Fill what `res` lacks from `info` (a record or a snapshot); a size known live wins."""
    if res.size is None:
        res.size = info.size
    if res.size == info.size and res.pad is None:
        res.pad = info.pad
    if res.size == info.size and res.head is None:
        res.head = info.head
