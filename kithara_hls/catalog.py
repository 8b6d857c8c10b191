"""What the cache holds, stream by stream: records, leases and LRU eviction.

A stream record lists the resources (by id) and the extra keys (playlists,
keys, the sizes snapshot) of one opened URL, with when it was last used. The
sizes snapshot keeps every size a stream's last run knew, so a reopened
stream knows its offsets from one record. An open `HlsSource`
holds a lease on its stream; eviction removes whole streams, least recently
used first, and never a leased one. The index lives in the cache itself and
is changed in diskcache transactions, so several processes can share it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import urllib.parse
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from .cache import Cache, digest
from .errors import StorageError, redact_url
from .store import SizeInfo

log = logging.getLogger(__name__)

INDEX_KEY = "streams"
#: Most PKCS#7 padding of an AES-128 segment (one 16-byte block).
MAX_PAD = 16
#: A lease whose process vanished without releasing it lapses after this long.
LEASE_TTL_S = 24 * 3600.0
_HOST = socket.gethostname()


@dataclass(frozen=True)
class StreamRecord:
    """One stream in the cache."""

    stream_id: str
    url: str  # query string redacted
    last_used: float
    bytes: int
    resources: int
    leased: bool


def stream_id(url: str) -> str:
    """The id of the stream opened at `url`."""
    return digest("stream", url)


class Catalog:
    """Stream records, leases and eviction over one `Cache`."""

    def __init__(self, cache: Cache) -> None:
        self.cache = cache

    def _index(self) -> dict[str, dict[str, object]]:
        raw = self.cache.get(INDEX_KEY)
        if raw is None:
            return {}
        try:
            index = json.loads(raw)
        except ValueError:
            log.warning("cache index is corrupt; starting a new one")
            return {}
        return index if isinstance(index, dict) else {}

    def _save(self, index: dict[str, dict[str, object]]) -> None:
        self.cache.set(INDEX_KEY, json.dumps(index).encode())

    def _members(self, sid: str) -> tuple[list[str], list[str]]:
        raw = self.cache.get(f"stream:{sid}")
        if raw is None:
            return [], []
        try:
            data = json.loads(raw)
            return list(data.get("rids", [])), list(data.get("keys", []))
        except (ValueError, AttributeError):
            return [], []

    def record(self, url: str, rids: Iterable[str], keys: Iterable[str] = ()) -> str:
        """Note that `url` uses these resources and keys; marks it used now. Returns the stream id."""
        sid = stream_id(url)
        with self.cache.transact():
            old_rids, old_keys = self._members(sid)
            merged_rids = sorted(set(old_rids).union(rids))
            merged_keys = sorted(set(old_keys).union(keys))
            if merged_rids != sorted(old_rids) or merged_keys != sorted(old_keys):
                self.cache.set(
                    f"stream:{sid}", json.dumps({"rids": merged_rids, "keys": merged_keys}).encode()
                )
            index = self._index()
            entry = index.setdefault(sid, {"url": redact_url(url), "leases": {}})
            entry["last_used"] = time.time()
            self._save(index)
        return sid

    def lease(self, sid: str) -> str:
        """Protect stream `sid` from eviction until `release`; returns the lease token."""
        token = f"{_HOST}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        with self.cache.transact():
            index = self._index()
            entry = index.setdefault(sid, {"url": "?", "leases": {}})
            leases = entry.setdefault("leases", {})
            assert isinstance(leases, dict)
            leases[token] = time.time() + LEASE_TTL_S
            entry["last_used"] = time.time()
            self._save(index)
        return token

    def release(self, sid: str, token: str) -> None:
        """End a lease."""
        try:
            with self.cache.transact():
                index = self._index()
                leases = index.get(sid, {}).get("leases")
                if isinstance(leases, dict) and leases.pop(token, None) is not None:
                    self._save(index)
        except StorageError as exc:
            log.warning("could not release a cache lease: %s", exc)

    def streams(self) -> list[StreamRecord]:
        """Every stream in the cache, most recently used first."""
        records = []
        for sid, entry in self._index().items():
            rids, _ = self._members(sid)
            records.append(
                StreamRecord(
                    sid,
                    str(entry.get("url", "?")),
                    float(entry.get("last_used", 0.0)),  # type: ignore[arg-type]
                    sum(self._size(rid) for rid in rids),
                    len(rids),
                    _leased(entry),
                )
            )
        return sorted(records, key=lambda r: r.last_used, reverse=True)

    def _size(self, rid: str) -> int:
        return self.cache.blob_length(rid)

    def sizes(self, sid: str) -> dict[str, SizeInfo]:
        """The sizes snapshot of stream `sid`, by resource id (empty if none; bad entries skipped)."""
        blob = self.cache.get(sizes_key(sid))
        return {} if blob is None else _parse_sizes(blob)

    def keep_sizes(self, sid: str, sizes: dict[str, SizeInfo]) -> None:
        """Merge `sizes` into the snapshot of stream `sid`, in one transaction: sizes another
        process kept meanwhile stay. StorageError (or sqlite3.Error) on failure."""
        with self.cache.transact():
            merged = {**self.sizes(sid), **sizes}
            record = {rid: _entry(info) for rid, info in merged.items()}
            self.cache.set(sizes_key(sid), json.dumps(record, separators=(",", ":")).encode())

    def evict(self, max_bytes: int) -> int:
        """Remove least recently used, unleased streams until the cache fits `max_bytes`; returns how many."""
        removed = 0
        if self.cache.volume() <= max_bytes:
            return 0
        index = self._index()
        protected: set[str] = set()
        for sid, entry in index.items():
            if _leased(entry):
                protected.update(self._members(sid)[0])
        order = sorted((float(e.get("last_used", 0.0)), sid) for sid, e in index.items() if not _leased(e))  # type: ignore[arg-type]
        for _, sid in order:
            if self.cache.volume() <= max_bytes:
                break
            self.remove(sid, protected)
            removed += 1
        return removed

    def remove(self, sid: str, protected: set[str] | None = None) -> None:
        """Remove stream `sid` and its resources (except `protected` ones, shared with leased streams)."""
        rids, keys = self._members(sid)
        for rid in rids:
            if protected is None or rid not in protected:
                self.cache.evict_tag(rid)
        for key in keys:
            self.cache.delete(key)
        self.cache.delete(f"stream:{sid}")
        with self.cache.transact():
            index = self._index()
            if index.pop(sid, None) is not None:
                self._save(index)
        log.debug("evicted stream %s", sid)

    def clear(self, url: str | None = None) -> None:
        """Remove one stream's data, or (url None) everything."""
        if url is None:
            self.cache.clear()
        else:
            self.remove(stream_id(url))


def origin_of(url: str) -> str | None:
    """``scheme://host:port`` of an http(s) URL (the link its downloads share); None otherwise."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    return f"{parts.scheme}://{parts.hostname.lower()}:{port}"


def link_key(origin: str) -> str:
    """The cache key of the link estimate last measured for `origin` (hashed: no host in clear)."""
    return f"link:{digest('link', origin)}"


def load_link_estimate(cache: Cache, url: str) -> float | None:
    """The link estimate (bits/s) last kept for `url`'s origin, or None."""
    origin = origin_of(url)
    blob = None if origin is None else cache.get(link_key(origin))
    if blob is None:
        return None
    try:
        value = float(blob.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return None
    return value if value > 0 and value != float("inf") else None


def save_link_estimate(cache: Cache, url: str, bps: float) -> None:
    """Keep `bps` as the link estimate of `url`'s origin (a failed write is only logged)."""
    origin = origin_of(url)
    if origin is None or not bps > 0:
        return
    try:
        cache.set(link_key(origin), b"%d" % int(bps))
    except StorageError as exc:
        log.warning("could not keep the link estimate: %s", exc)


def sizes_key(sid: str) -> str:
    """The cache key of stream `sid`'s sizes snapshot (one of the stream's keys, for eviction)."""
    return f"sizes:{sid}"


def _entry(info: SizeInfo) -> list[int | None]:
    """A snapshot entry: ``[size, pad]``, plus the ID3 tag length where known."""
    return [info.size, info.pad] if info.head is None else [info.size, info.pad, info.head]


def _parse_sizes(blob: bytes) -> dict[str, SizeInfo]:
    """A sizes snapshot: ``{rid: [size, pad or null]}`` or ``{rid: [size, pad or null, id3 tag length]}``."""
    try:
        raw = json.loads(blob)
    except ValueError:
        raw = None
    if not isinstance(raw, dict):
        log.warning("ignoring a corrupt sizes snapshot")
        return {}
    sizes = {}
    for rid, entry in raw.items():
        if isinstance(entry, list) and len(entry) in (2, 3):
            size, pad = entry[:2]
            head = entry[2] if len(entry) == 3 else None
            if (
                _is_count(size)
                and (pad is None or (_is_count(pad) and 1 <= pad <= MAX_PAD))
                and (head is None or (_is_count(head) and head <= size))
            ):
                sizes[rid] = SizeInfo(size, pad, head)
    return sizes


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _leased(entry: dict[str, object]) -> bool:
    leases = entry.get("leases")
    if not isinstance(leases, dict):
        return False
    now = time.time()
    for token, expiry in leases.items():
        host, _, rest = str(token).partition(":")
        pid = rest.partition(":")[0]
        if float(expiry) <= now:
            continue
        if host == _HOST and pid.isdigit() and not _pid_alive(int(pid)):
            continue
        return True
    return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
