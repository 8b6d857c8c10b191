"""AES-128 keys and decryption.

`KeyManager` resolves each key URI once (one lock per URI; concurrent readers
wait for the first fetch), from the static mapping, memory, the cache, or the
network, in that order. `read_decrypted` turns a read of plaintext at any
offset into a read of the raw (stored) bytes around it: CBC needs only the
previous ciphertext block as IV, so random access costs one extra block.
Key bytes never reach logs, events or exception messages.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.parse
from collections.abc import Callable

from Crypto.Cipher import AES

from . import events as ev
from .cache import Cache, digest
from .errors import HlsError, KeyProcessingError, OfflineMiss
from .layout import Part
from .net import HttpClient
from .options import KeyOptions
from .playlist import MediaPlaylist
from .store import Store

log = logging.getLogger(__name__)

BLOCK = AES.block_size
KEY_BYTES = 16
#: Largest key response read (a key is 16 bytes; a wrapped one a little more).
MAX_KEY_RESPONSE_BYTES = 4096
#: Raw bytes read per decrypting step beyond the caller's request.
_SLACK = 2 * BLOCK


def tail_size(part: Part) -> int:
    """Raw tail bytes a size probe must return for `part` (two AES blocks if encrypted)."""
    return 2 * BLOCK if part.key is not None else 0


class KeyManager:
    """Fetches, checks, caches and hands out AES-128 keys."""

    def __init__(
        self,
        client: HttpClient,
        cache: Cache,
        options: KeyOptions,
        *,
        offline: bool = False,
        bus: ev.EventBus | None = None,
    ) -> None:
        self._client = client
        self._cache = cache
        self._options = options
        self._offline = offline
        self._bus = bus
        self._lock = threading.Lock()
        self._keys: dict[str, bytes] = {}
        self._uri_locks: dict[str, threading.Lock] = {}

    def check(self, media: MediaPlaylist) -> None:
        """Refuse playlists whose encryption we cannot decrypt (the parser already rejects SAMPLE-AES)."""
        for seg in media.segments:
            if seg.key is not None and seg.key.method != "AES-128":
                raise KeyProcessingError(
                    f"{seg.key.method} is not supported", url=media.url, segment=seg.index
                )

    def key_for(self, part: Part, deadline: float) -> bytes:
        """The 16-byte key of `part`."""
        assert part.key is not None
        uri = part.key.uri
        with self._lock:
            key = self._keys.get(uri)
            if key is not None:
                return key
            uri_lock = self._uri_locks.setdefault(uri, threading.Lock())
        if not uri_lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise KeyProcessingError("timed out waiting for a key", url=uri, segment=part.segment)
        try:
            with self._lock:
                key = self._keys.get(uri)
            if key is None:
                key = self._resolve(uri, part.segment)
                with self._lock:
                    self._keys[uri] = key
            return key
        finally:
            uri_lock.release()

    def _resolve(self, uri: str, segment: int) -> bytes:
        static = self._options.static_keys.get(uri)
        if static is not None:
            self._publish(uri, True, cached=True)
            return self._checked(static, uri, segment)
        cache_key = f"key:{digest(uri)}"
        if self._options.persist:
            stored = self._cache.get(cache_key)
            if stored is not None and len(stored) == KEY_BYTES:
                self._publish(uri, True, cached=True)
                return stored
        if self._offline:
            self._publish(uri, False, cached=False)
            raise OfflineMiss("key not in the cache", url=uri, segment=segment)
        key = self._download(uri, segment)
        if self._options.persist:
            self._cache.set(cache_key, key)
        return key

    def _download(self, uri: str, segment: int) -> bytes:
        url = _with_query(uri, self._options.query)
        try:
            raw, _ = self._client.get(url, max_bytes=MAX_KEY_RESPONSE_BYTES, headers=self._options.headers)
        except HlsError as exc:
            self._publish(uri, False, cached=False)
            raise KeyProcessingError(
                f"key request failed: {exc.message}", url=uri, status=exc.status, segment=segment
            ) from exc
        processor = self._options.key_processor
        if processor is not None:
            try:
                raw = processor(raw, uri)
            except Exception as exc:
                self._publish(uri, False, cached=False)
                raise KeyProcessingError("key_processor failed", url=uri, segment=segment) from exc
        try:
            key = self._checked(raw, uri, segment)
        except KeyProcessingError:
            self._publish(uri, False, cached=False)
            raise
        self._publish(uri, True, cached=False)
        return key

    @staticmethod
    def _checked(key: object, uri: str, segment: int) -> bytes:
        if not isinstance(key, (bytes, bytearray)):
            raise KeyProcessingError("a key must be bytes", url=uri, segment=segment)
        if len(key) != KEY_BYTES:
            hint = " (an HTML page?)" if bytes(key[:1]) == b"<" else ""
            raise KeyProcessingError(
                f"a key must be exactly {KEY_BYTES} bytes, got {len(key)}{hint}", url=uri, segment=segment
            )
        return bytes(key)

    def _publish(self, uri: str, success: bool, cached: bool) -> None:
        if self._bus is not None:
            self._bus.publish(ev.KeyFetch(uri, success, cached))

    def padding(self, part: Part, tail: bytes, size: int, deadline: float | None = None) -> int:
        """PKCS#7 padding length of `part`, from its last raw bytes (one or two AES blocks) and raw size."""
        if deadline is None:
            deadline = time.monotonic() + 60.0
        if size % BLOCK or len(tail) < BLOCK or len(tail) % BLOCK:
            raise KeyProcessingError(
                "ciphertext length is not a multiple of 16", url=part.url, segment=part.segment
            )
        iv = tail[-2 * BLOCK : -BLOCK] if len(tail) >= 2 * BLOCK else part.iv
        assert iv is not None
        last = AES.new(self.key_for(part, deadline), AES.MODE_CBC, iv).decrypt(tail[-BLOCK:])
        return _pad_length(last, part)


def _pad_length(last_block: bytes, part: Part) -> int:
    pad = last_block[-1]
    if not 1 <= pad <= BLOCK or last_block[-pad:] != bytes([pad]) * pad:
        raise KeyProcessingError("bad PKCS#7 padding (wrong key or IV?)", url=part.url, segment=part.segment)
    return pad


def _with_query(uri: str, query: dict[str, str] | object) -> str:
    if not query:
        return uri
    parts = urllib.parse.urlsplit(uri)
    extra = urllib.parse.urlencode(dict(query))  # type: ignore[call-overload]
    joined = f"{parts.query}&{extra}" if parts.query else extra
    return urllib.parse.urlunsplit(parts._replace(query=joined))


def read_decrypted(
    store: Store,
    part: Part,
    key: bytes,
    off: int,
    out: memoryview,
    deadline: float,
    need: Callable[[], None],
) -> int:
    """Copy plaintext of `part` at `off` into `out`; 0 at the part's end."""
    assert part.iv is not None
    first = off // BLOCK
    raw_start = (first - 1) * BLOCK if first else 0
    raw = _read_raw(store, part.rid, raw_start, len(out) + off % BLOCK + _SLACK, deadline, need)
    info = store.wait_size(part.rid, False, deadline)
    assert info is not None
    if info.size % BLOCK:
        raise KeyProcessingError(
            "ciphertext length is not a multiple of 16", url=part.url, segment=part.segment
        )
    iv: bytes | memoryview = part.iv
    if first:
        if len(raw) < 2 * BLOCK:
            return 0  # off is at (or past) the end of the plaintext
        iv, raw = raw[:BLOCK], raw[BLOCK:]
    usable = len(raw) - len(raw) % BLOCK
    if usable == 0:
        return 0
    cipher = AES.new(key, AES.MODE_CBC, iv)
    end = first * BLOCK + usable
    direct = min(usable, len(out) - len(out) % BLOCK)
    if off % BLOCK == 0 and direct and first * BLOCK + direct < info.size:
        # The common case: whole blocks, not the last one: decrypt straight into the caller's buffer.
        cipher.decrypt(raw[:direct], output=out[:direct])
        return direct
    plain = cipher.decrypt(raw[:usable])
    if end == info.size:
        plain = plain[: len(plain) - _pad_length(plain[-BLOCK:], part)]
    skip = off % BLOCK
    n = min(len(out), max(0, len(plain) - skip))
    out[:n] = plain[skip : skip + n]
    return n


def _read_raw(
    store: Store, rid: str, start: int, want: int, deadline: float, need: Callable[[], None]
) -> memoryview:
    """Raw bytes [start, start+want), fewer only at the resource's end."""
    view = memoryview(bytearray(want))
    got = 0
    while got < want:
        n = store.read_into(rid, start + got, view[got:], deadline, need)
        if n == 0:
            break
        got += n
    return view[:got]
