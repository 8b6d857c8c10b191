"""Block buffers shared by a store's readers and writers.

Resource bytes move in fixed-size blocks. The whole blocks read or written last
stay in memory (a small LRU that readers copy from), and buffers nobody needs any
more are kept for the next block: a new 256 KiB bytearray costs 64 page faults.
A buffer a writer is still putting on disk is reused only once that write returns.
"""

from __future__ import annotations

import collections

#: Bytes per stored block (a multiple of the AES block size).
BLOCK_SIZE = 256 * 1024
#: Whole blocks kept in memory for readers, shared by all resources.
RECENT_BLOCKS = 24  # 6 MiB
#: Block buffers kept for reuse once readers no longer need them.
SPARE_BUFFERS = 8


class BlockMemory:
    """Recent whole blocks, by (resource id, block index), and spare block buffers.

    Not locked: its owner calls it under its own lock, and readers copy from a
    block under that lock too, so a buffer is reused only when nobody reads it.
    """

    def __init__(self) -> None:
        self._recent: collections.OrderedDict[tuple[str, int], memoryview] = collections.OrderedDict()
        self._spare: list[bytearray] = []
        # Ids of the buffers a writer is putting on disk (outside the lock).
        self._writing: set[int] = set()
        self._closed = False

    def get(self, rid: str, index: int) -> memoryview | None:
        """Block `index` of `rid`, if in memory (it becomes the most recent)."""
        block = self._recent.get((rid, index))
        if block is not None:
            self._recent.move_to_end((rid, index))
        return block

    def remember(self, rid: str, index: int, data: memoryview) -> None:
        """Keep `data` as block `index` of `rid`, dropping the least recent blocks beyond the cap."""
        self._recent[(rid, index)] = data
        self._recent.move_to_end((rid, index))
        while len(self._recent) > RECENT_BLOCKS:
            _, dropped = self._recent.popitem(last=False)
            self.recycle(dropped)

    def new_buffer(self) -> bytearray:
        """A block buffer: a spare one if any."""
        return self._spare.pop() if self._spare else bytearray(BLOCK_SIZE)

    def recycle(self, view: memoryview) -> None:
        """Keep the buffer under `view` (no longer among the recent blocks) for a next block,
        unless a writer is still putting it on disk: `written` recycles it then."""
        buf = view.obj
        if id(buf) in self._writing or not isinstance(buf, bytearray):
            return
        view.release()
        self.keep_spare(buf)

    def keep_spare(self, buf: bytearray) -> None:
        """Keep `buf` for a next block, if there is room."""
        if len(self._spare) < SPARE_BUFFERS and not self._closed:
            self._spare.append(buf)

    def writing(self, data: memoryview) -> None:
        """A writer puts `data` on disk now: its buffer is not to be reused until `written`."""
        self._writing.add(id(data.obj))

    def written(self, rid: str, index: int, data: memoryview) -> None:
        """The write of `data`, block `index` of `rid`, returned."""
        self._writing.discard(id(data.obj))
        if self._recent.get((rid, index)) is not data:
            self.recycle(data)  # readers dropped it while it was being written

    def close(self) -> None:
        """Drop every block and spare buffer; keep none from now on."""
        self._closed = True
        self._recent.clear()
        self._spare.clear()
