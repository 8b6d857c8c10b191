"""The on-disk cache: one diskcache.Cache per folder, holding bytes only, plus blobs.

Keys are ``kind:sha256(...)`` so URLs (whose query strings may carry tokens)
never reach disk in clear. Values are raw bytes; `BytesDisk` refuses to store
anything else and refuses to unpickle what another writer may have left.

Segment bodies do not go through diskcache: each resource is one file under
``media/``, named by a hash of the resource id (also the tag of its records, so
evicting the tag removes it too). A body downloads into ``<name>.part``, written
in order at block offsets, and is renamed into place (`os.replace`, atomic) once
whole: a file at the final name is whole by construction, a ``.part`` holds the
blocks a download (maybe killed, maybe still running in another process) wrote.
Writers of one ``.part`` write the same bytes at the same offsets, so two
processes sharing a cache cannot corrupt each other.
"""

from __future__ import annotations

import functools
import hashlib
import io
import logging
import os
import shutil
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import diskcache

from .errors import StorageError
from .options import CacheOptions

log = logging.getLogger(__name__)

#: diskcache writes values of this size and more as files, read back whole.
FILE_THRESHOLD_BYTES = 32 * 1024
#: Folder (inside the cache folder) of the resource bodies.
BLOBS_FOLDER = "media"
#: Folders of earlier layouts, removed on open: nothing reads there, left they would count
#: against the cap forever, and a partial body in "bodies" bears no ``.part`` to tell it.
LEGACY_BLOBS_FOLDERS = ("blobs", "bodies")
#: How long a writer waits for SQLite's lock before failing.
SQLITE_TIMEOUT_S = 30.0
#: How long a first use waits for a database opening in the background.
OPEN_DEADLINE_S = 2 * SQLITE_TIMEOUT_S
#: Attempts, and the backoff step between them, when SQLite reports a locked database.
LOCKED_RETRIES = 8
LOCKED_BACKOFF_S = 0.05


class BytesDisk(diskcache.Disk):  # type: ignore[misc]
    """A diskcache Disk that stores and returns bytes only, never pickles."""

    def store(self, value: Any, read: bool, key: Any = diskcache.core.UNKNOWN) -> Any:
        if not read and not isinstance(value, (bytes, bytearray, memoryview)):
            raise TypeError(f"kithara_hls cache stores bytes only, not {type(value).__name__}")
        if isinstance(value, (bytearray, memoryview)):
            value = bytes(value)
        if not read and len(value) >= self.min_file_size:
            # diskcache writes a bytes value by iterating a BytesIO (line by line);
            # as a file-like it copies in large chunks.
            return super().store(io.BytesIO(value), True, key)
        return super().store(value, read, key)

    def fetch(self, mode: int, filename: str, value: Any, read: bool) -> Any:
        if mode == diskcache.core.MODE_PICKLE:
            raise StorageError("refusing to unpickle a cache value")
        return super().fetch(mode, filename, value, read)


def _open_diskcache(path: Path) -> diskcache.Cache:
    # Opening runs schema statements that fail with "database is locked" while
    # another process opens the same folder: retry a few times.
    for attempt in range(LOCKED_RETRIES):
        try:
            return diskcache.Cache(
                str(path),
                disk=BytesDisk,
                timeout=SQLITE_TIMEOUT_S,
                eviction_policy="none",
                # Nothing is stored with an expiry: each write need not look for expired keys.
                cull_limit=0,
                size_limit=2**62,
                disk_min_file_size=FILE_THRESHOLD_BYTES,
                tag_index=True,
            )
        except (sqlite3.OperationalError, diskcache.Timeout) as exc:  # noqa: PERF203 (a retry loop)
            if attempt == LOCKED_RETRIES - 1:
                raise StorageError(f"cannot open the cache: {exc}") from exc
            time.sleep(LOCKED_BACKOFF_S * (attempt + 1))
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(f"cannot open the cache: {exc}") from exc
    raise StorageError("cannot open the cache")


#: Suffix of a body still downloading (or left by a killed download).
PART_SUFFIX = ".part"
#: Reads into a reused buffer: a new 256 KiB bytes object costs 64 page faults.
_PREADV = hasattr(os, "preadv")


def _folder_bytes(path: str) -> int:
    try:
        with os.scandir(path) as entries:
            names = {entry.name for entry in entries}
    except OSError:  # the folder went meanwhile
        return 0
    total = 0
    for name in names:
        size = _size_of(os.path.join(path, name))
        whole = name.removesuffix(PART_SUFFIX)
        if size is None and whole != name and whole not in names:
            size = _size_of(os.path.join(path, whole))  # renamed into place since the listing
        total += size or 0  # (none: evicted meanwhile)
    return total


@functools.lru_cache(maxsize=4096)
def _blob_name(name: str) -> str:
    # A stream's reads and look-ahead ask for the same few names over and over.
    hashed = hashlib.sha256(name.encode()).hexdigest()[:40]
    # Sixteen subfolders: a fresh cache creates them once. With 256, nearly every
    # segment of the first streams made a folder, and creating one on ext4 costs
    # more than the file in it.
    return os.path.join(hashed[:1], hashed)


def _open_first(final: str, part: str) -> int | None:
    """A descriptor open for reading `final`, else `part`, else None."""
    # A last try of the final name: the .part may be renamed between the first two.
    for path in (final, part, final):
        fd = _open_to_read(path)
        if fd is not None:
            return fd
    return None


def _open_to_read(path: str) -> int | None:
    try:
        return os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None


def _size_of(path: str) -> int | None:
    try:
        return os.stat(path).st_size
    except OSError:
        return None


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("cache removal failed: %s", exc)


def digest(*parts: object) -> str:
    """A stable hex digest of `parts`: resource ids and cache keys."""
    h = hashlib.sha256()
    for part in parts:
        h.update(repr(part).encode())
        h.update(b"\0")
    return h.hexdigest()[:40]


class Cache:
    """Bytes-only key/value store on disk, shared safely by threads and processes."""

    def __init__(self, options: CacheOptions, *, background: bool = False) -> None:
        """Open (creating) the cache folder of `options`.

        background: open the database on a thread of its own, so the caller's
        first network request overlaps it; the first use waits for it.
        """
        path = options.path
        try:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(path, 0o700)
        except OSError as exc:
            raise StorageError(f"cannot create cache folder: {exc}") from exc
        self.path = Path(path)
        self._blobs = str(self.path / BLOBS_FOLDER)
        self._opened = threading.Event()
        self._db: diskcache.Cache | None = None
        self._error: StorageError | None = None
        self._opener: threading.Thread | None = None
        if background:
            self._opener = threading.Thread(
                target=self._open, args=(True,), name="kithara-cache-open", daemon=True
            )
            self._opener.start()
        else:
            self._open(False)

    def _open(self, own_thread: bool) -> None:
        try:
            self._db = _open_diskcache(self.path)
            for name in LEGACY_BLOBS_FOLDERS:
                if (self.path / name).is_dir():
                    shutil.rmtree(self.path / name, ignore_errors=True)
            if own_thread:
                self._db.close()  # this thread's connection; each user thread opens its own
        except StorageError as exc:
            self._error = exc
        finally:
            self._opened.set()

    @property
    def ready(self) -> bool:
        """Whether the database is open (or failed to): a first use would not wait."""
        return self._opened.is_set()

    @property
    def _dc(self) -> diskcache.Cache:
        if not self._opened.wait(OPEN_DEADLINE_S):
            raise StorageError("the cache database did not open in time")
        if self._db is None:
            raise self._error or StorageError("cannot open the cache")
        return self._db

    def get(self, key: str) -> bytes | None:
        """The value at `key`, or None."""
        try:
            value = self._dc.get(key, default=None, retry=True)
        except (OSError, sqlite3.Error) as exc:
            log.warning("cache read failed for %s: %s", key, exc)
            return None
        return value if isinstance(value, bytes) else None

    def set(
        self,
        key: str,
        value: bytes | bytearray | memoryview,
        *,
        tag: str | None = None,
    ) -> None:
        """Store `value` at `key` (tagged with a resource id, for eviction); StorageError on failure."""
        try:
            ok = self._dc.set(key, value, retry=True, tag=tag)
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(f"cache write failed: {exc}") from exc
        if not ok:
            raise StorageError("cache write failed")

    def delete(self, key: str) -> None:
        """Remove `key` if present."""
        try:
            self._dc.delete(key, retry=True)
        except (OSError, sqlite3.Error) as exc:
            log.warning("cache delete failed for %s: %s", key, exc)

    def evict_tag(self, tag: str) -> int:
        """Remove every key stored with `tag`, and the blob of that name; returns how many keys."""
        self.drop_blob(tag)
        try:
            return int(self._dc.evict(tag, retry=True))
        except (OSError, sqlite3.Error) as exc:
            log.warning("cache eviction failed: %s", exc)
            return 0

    def volume(self) -> int:
        """Bytes the cache uses on disk (whole bodies and ``.part`` files alike)."""
        total = int(self._dc.volume())
        try:
            with os.scandir(self._blobs) as entries:
                folders = [entry.path for entry in entries]
        except FileNotFoundError:
            return total
        return total + sum(_folder_bytes(folder) for folder in folders)

    # -- blobs ---------------------------------------------------------------

    def blob_path(self, name: str) -> str:
        """Where the whole body `name` (a resource id) lives."""
        return os.path.join(self._blobs, _blob_name(name))

    def part_path(self, name: str) -> str:
        """Where the body `name` downloads until it is whole."""
        return self.blob_path(name) + PART_SUFFIX

    def open_blob(self, name: str, *, create: bool) -> int | None:
        """A file descriptor open for writing the ``.part`` of `name`, or None when the body is
        already whole or (unless `create`) has no ``.part``; the caller closes it."""
        path = self.part_path(name)
        if os.path.exists(self.blob_path(name)):
            return None
        flags = os.O_WRONLY | getattr(os, "O_CLOEXEC", 0) | (os.O_CREAT if create else 0)
        try:
            try:
                return os.open(path, flags, 0o600)
            except FileNotFoundError:
                if not create:
                    return None
                os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
                return os.open(path, flags, 0o600)
        except OSError as exc:
            raise StorageError(f"cannot open a cache file: {exc}") from exc

    def complete_blob(self, name: str, length: int) -> None:
        """Rename the ``.part`` of `name`, holding all its `length` bytes, into place.

        Another writer may have renamed it first (the whole body is then there);
        a ``.part`` of another length is refused with `StorageError`.
        """
        part = self.part_path(name)
        held = _size_of(part)
        if held == length:
            try:
                os.replace(part, self.blob_path(name))
                return
            except FileNotFoundError:
                held = None
            except OSError as exc:
                raise StorageError(f"cache write failed: {exc}") from exc
        if self.blob_state(name) == (length, True):
            return  # another writer of the same body renamed it first
        if held is None:
            log.warning("a cache file was removed before it was whole")  # evicted meanwhile
            return
        raise StorageError(f"cache file holds {held} bytes, not {length}")

    def drop_blob(self, name: str) -> None:
        """Remove the body `name`, whole or partial."""
        _unlink(self.blob_path(name))
        _unlink(self.part_path(name))

    def blob_state(self, name: str) -> tuple[int, bool]:
        """Bytes the body `name` holds (0 if absent), and whether it is whole (renamed into place)."""
        final = self.blob_path(name)
        # A last look at the final name: the .part may be renamed between the first two.
        for path, whole in ((final, True), (final + PART_SUFFIX, False), (final, True)):
            size = _size_of(path)
            if size is not None:
                return size, whole
        return 0, False

    def settle_blob(self, name: str, size: int | None) -> tuple[int, bool]:
        """`blob_state` of `name`, after settling what its `size` (if known) decides: a ``.part``
        holding every byte is renamed into place; a body of another size (damaged, or the
        resource changed) is removed, to be fetched again."""
        length, whole = self.blob_state(name)
        if size is None or not length or (whole and length == size):
            return length, whole
        if length == size:
            self.complete_blob(name, size)
            return self.blob_state(name)
        if whole or length > size:
            log.warning("a cached body of %d bytes, not %d, is fetched again", length, size)
            self.drop_blob(name)
            return 0, False
        return length, whole

    def blob_length(self, name: str) -> int:
        """Bytes the body `name` holds, whole or partial (0 if absent)."""
        return self.blob_state(name)[0]

    def read_blob_into(self, name: str, offset: int, buf: bytearray) -> int:
        """Read the body `name` (whole, or else its ``.part``) at `offset` into `buf`; returns how
        many bytes (fewer, maybe none, past its end)."""
        fd = _open_first(self.blob_path(name), self.part_path(name))
        if fd is None:
            return 0
        try:
            if _PREADV:
                return os.preadv(fd, [buf], offset)
            data = os.pread(fd, len(buf), offset)
            buf[: len(data)] = data
            return len(data)
        except OSError as exc:
            log.warning("cache read failed: %s", exc)
            return 0
        finally:
            os.close(fd)

    def transact(self) -> Any:
        """A context manager making the enclosed reads and writes one transaction (across processes)."""
        return self._dc.transact(retry=True)

    def clear(self) -> None:
        """Remove everything."""
        self._dc.clear(retry=True)
        shutil.rmtree(self._blobs, ignore_errors=True)

    def close(self) -> None:
        """Close the calling thread's connection (diskcache connections are per thread).

        Waits for a background open to end first, so no thread outlives its source;
        a database that failed to open has nothing to close.
        """
        self._opened.wait(OPEN_DEADLINE_S)
        opener = self._opener
        if opener is not None and opener is not threading.current_thread():
            opener.join(OPEN_DEADLINE_S)
        if self._db is not None:
            self._db.close()
