"""The sink of one download into the store, and the only writer of body files.

Bytes fill the store's block buffer (readable at once); each whole block goes
to the body's ``.part`` file at its offset, in order, so the ``.part``'s length
always ends at a block the download wrote whole (or at the short final block).
At the resource's end the ``.part`` is renamed into place: a file at the final
name is whole. Two writers of one ``.part`` (two processes sharing a cache)
write the same bytes at the same offsets; the second to finish finds the body
already renamed and is done, and one that finds it renamed before its first
write adopts it and stops.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .blocks import BLOCK_SIZE
from .errors import HlsError, StorageError
from .retry import Cancelled

if TYPE_CHECKING:
    from .store import Store


class Writer:
    """Sink of one download into the store (see `ranged.Sink`), from a block boundary on."""

    def __init__(self, store: Store, rid: str, start: int) -> None:
        self._store = store
        self._rid = rid
        self.position = start
        self._cancelled = False
        self._fd: int | None = None

    def cancel(self) -> None:
        """Stop this download at its next chunk (an ABR switch dropped the part)."""
        self._cancelled = True

    def on_size(self, size: int) -> None:
        """Total raw size, learnt from the response headers."""
        self._store.learn_size(self._rid, size)

    def on_data(self, offset: int, data: memoryview) -> None:
        """Contiguous bytes at `offset` of the resource."""
        if self._cancelled:
            raise Cancelled("download abandoned")
        if offset != self.position:
            raise HlsError(f"store writer expected offset {self.position}, got {offset}")
        while len(data):
            index, inner = divmod(self.position, BLOCK_SIZE)
            took = self._store._fill(self._rid, self.position, data)
            self.position += took
            data = data[took:]
            if inner + took == BLOCK_SIZE:
                self._commit(index, BLOCK_SIZE)

    def _commit(self, index: int, length: int) -> None:
        """Put block `index` (`length` bytes, in the block buffer) on disk."""
        if self._fd is None:
            self._fd = self._open(index * BLOCK_SIZE)
        data = self._store._full(self._rid, index, length)
        if data is None:
            return
        try:
            written = os.pwrite(self._fd, data, index * BLOCK_SIZE)
        except OSError as exc:
            self._store._stored(self._rid, index, data, False)
            raise StorageError(f"cache write failed: {exc}") from exc
        self._store._stored(self._rid, index, data, written == length)
        if written != length:
            raise StorageError(f"cache write failed: {written} of {length} bytes written")

    def _open(self, start: int) -> int:
        """The ``.part`` of this resource, open to write from `start` on.

        `Cancelled` when another process has stored the body whole meanwhile (the
        store then holds it complete); `StorageError` when the ``.part`` ends before
        `start`, as a gap would read back as zeros.
        """
        cache = self._store.cache
        # Only a download from the start makes a .part: a resumed one without it would leave a gap.
        fd = cache.open_blob(self._rid, create=not start)
        if fd is not None:
            if os.fstat(fd).st_size >= start:
                return fd
            os.close(fd)
        # The .part we resume from was renamed whole meanwhile, or removed.
        length, whole = cache.blob_state(self._rid)
        if whole and self._store._adopt_whole(self._rid, length):
            raise Cancelled("stored whole by another process")
        raise StorageError(f"cache file ends before the resume point: {length} < {start}")

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def finish(self) -> None:
        """The download ended at the resource's end: store the short final block, and rename the
        body into place."""
        try:
            info = self._store.size_info(self._rid)
            if info is None:
                self._store.learn_size(self._rid, self.position)
            size = self.position if info is None else info.size
            if self.position != size:
                raise HlsError(f"download ended at {self.position} of {size} bytes")
            if size % BLOCK_SIZE:
                self._commit(size // BLOCK_SIZE, size % BLOCK_SIZE)
        finally:
            self._close()
        if size:
            # Also when nothing was left to write: a .part holding every byte, left by a
            # run killed before its rename (the resume point was its end).
            self._store.cache.complete_blob(self._rid, size)
        self._store._ended(self._rid, size)

    def abandon(self) -> None:
        """The download stopped early; whole blocks stay stored, the rest is dropped."""
        self._close()
        self._store._ended(self._rid, None)
