"""AES-128 keys and decryption.

`KeyManager` resolves each key URI once (one lock per URI; concurrent readers
wait for the first fetch), from the static mapping, memory, the cache, or the
network, in that order, and hands each out in ECB mode for `decrypt`, which
reads plaintext at any offset. Key bytes never reach logs, events or
exception messages.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.parse
from typing import Protocol

from Crypto.Cipher import AES

from . import events as ev
from .cache import Cache, digest
from .errors import HlsError, KeyProcessingError, OfflineMiss
from .layout import Part
from .options import KeyOptions
from .playlist import MediaPlaylist
from .retry import is_retryable_status
from .transport import HttpClient

log = logging.getLogger(__name__)

BLOCK = AES.block_size
KEY_BYTES = 16
#: Largest key response read (a key is 16 bytes; a wrapped one a little more).
MAX_KEY_RESPONSE_BYTES = 4096


def tail_size(part: Part) -> int:
    """Raw tail bytes a size probe must return for `part` (two AES blocks if encrypted)."""
    return 2 * BLOCK if part.key is not None else 0


class BlockDecrypter(Protocol):
    """An AES cipher in ECB mode (`Crypto.Cipher.AES.new(key, AES.MODE_ECB)`)."""

    def decrypt(self, ciphertext: memoryview, output: memoryview) -> None:
        """Decrypt whole blocks of `ciphertext` into `output`."""


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
        self._ciphers: dict[str, BlockDecrypter] = {}
        self._uri_locks: dict[str, threading.Lock] = {}
        # Keys the server refused for good (4xx): every part asks, one request answers.
        self._refused: dict[str, KeyProcessingError] = {}

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
                refused = self._refused.get(uri)
            if refused is not None:
                raise refused
            if key is None:
                try:
                    key = self._resolve(uri, part.segment)
                except KeyProcessingError as exc:
                    if _refused_for_good(exc.status):
                        with self._lock:
                            self._refused[uri] = exc
                    raise
                with self._lock:
                    self._keys[uri] = key
            return key
        finally:
            uri_lock.release()

    def cipher_for(self, part: Part, deadline: float) -> BlockDecrypter:
        """The key of `part` in ECB mode, for `Decryptor`; stateless, so one serves every thread."""
        assert part.key is not None
        with self._lock:
            cipher = self._ciphers.get(part.key.uri)
        if cipher is None:
            # Expanding the key costs more than decrypting a small read.
            cipher = AES.new(self.key_for(part, deadline), AES.MODE_ECB)
            with self._lock:
                cipher = self._ciphers.setdefault(part.key.uri, cipher)
        return cipher

    def prefetch(self, part: Part, deadline: float) -> None:
        """Get `part`'s key ready before a read asks (a background job while the first segment
        downloads); a failure is left for that read to meet."""
        try:
            self.cipher_for(part, deadline)
        except HlsError as exc:
            log.debug("key prefetch failed: %s", exc)

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
        return pad_length(last, part)


def pad_length(last_block: bytes | memoryview, part: Part) -> int:
    """PKCS#7 padding length from the decrypted last block of `part`; a bad one means a wrong key or IV."""
    pad = last_block[-1]
    if not 1 <= pad <= BLOCK or last_block[-pad:] != bytes([pad]) * pad:
        raise KeyProcessingError("bad PKCS#7 padding (wrong key or IV?)", url=part.url, segment=part.segment)
    return pad


def _refused_for_good(status: int | None) -> bool:
    """A 4xx other than 408/429: asking again gets the same answer."""
    return status is not None and 400 <= status < 500 and not is_retryable_status(status)


def _with_query(uri: str, query: dict[str, str] | object) -> str:
    if not query:
        return uri
    parts = urllib.parse.urlsplit(uri)
    extra = urllib.parse.urlencode(dict(query))  # type: ignore[call-overload]
    joined = f"{parts.query}&{extra}" if parts.query else extra
    return urllib.parse.urlunsplit(parts._replace(query=joined))
