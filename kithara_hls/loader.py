"""Playlist loading with cache fallback: a stream's master and media playlists.

A playlist fetched over the network is kept in the cache (its final URL, a
newline, its body), so a stream read once opens offline, and plays its cached
copy when the network fails. A playlist on disk (a ``file://`` URL) is read the
same way, through the client's file adapter, and cached alike. The playlists
read while opening stay in memory until the first download is under way
(`take_unsaved`): the first request goes out before the cache database has to
be open.
"""

from __future__ import annotations

import logging
import threading

from .cache import Cache, digest
from .errors import NetError, OfflineMiss, PlaylistParseError
from .localfile import url_path
from .options import HlsOptions
from .playlist import MasterPlaylist, MediaPlaylist, Variant, looks_like_playlist, parse
from .transport import HttpClient

log = logging.getLogger(__name__)


class PlaylistLoader:
    """Loads (and keeps) the playlists of one stream, through the cache."""

    def __init__(self, client: HttpClient, cache: Cache, options: HlsOptions) -> None:
        self._client = client
        self._cache = cache
        self._options = options
        self._lock = threading.Lock()
        self._keys: list[str] = []  # cache keys of the playlists loaded
        self._unsaved: list[tuple[str, bytes]] | None = []
        #: The variants, lowest bitrate first (a media playlist alone is one variant).
        self.variants: list[Variant] = []
        self._media: dict[int, MediaPlaylist] = {}
        self._imports: dict[str, str] | None = None  # the master's EXT-X-DEFINE variables, for IMPORT

    def open(self, url: str) -> None:
        """Load the playlist at `url`: a master's variants, or a media playlist as the only variant."""
        top = self.load_playlist(url)
        if isinstance(top, MasterPlaylist):
            self._imports = dict(top.variables)
            self.variants = list(top.variants)
            return
        self.variants = [Variant(uri=url, bandwidth=0, average_bandwidth=None, codecs=None, resolution=None)]
        self._media[0] = top

    def media(self, variant: int) -> MediaPlaylist:
        """The media playlist of `variant`, loaded on first use and kept."""
        with self._lock:
            media = self._media.get(variant)
        if media is not None:
            return media
        media = self.load_media(variant)
        with self._lock:
            return self._media.setdefault(variant, media)

    def loaded(self) -> dict[int, MediaPlaylist]:
        """The media playlists loaded so far, by variant."""
        with self._lock:
            return dict(self._media)

    def reload(self, variant: int) -> tuple[MediaPlaylist, MediaPlaylist]:
        """(the kept, a fresh copy from the network) of `variant`'s media playlist."""
        return self.media(variant), self.load_media(variant, fresh=True)

    def keys(self) -> list[str]:
        """The cache keys of the playlists loaded (a stream's records, for eviction)."""
        with self._lock:
            return list(self._keys)

    def take_unsaved(self) -> list[tuple[str, bytes]]:
        """The (key, record) of the playlists read so far, to store; later ones are stored at once."""
        with self._lock:
            unsaved, self._unsaved = self._unsaved or [], None
        return unsaved

    def load_playlist(self, url: str, *, fresh: bool = False) -> MasterPlaylist | MediaPlaylist:
        """Fetch (or take from the cache) and parse the playlist at `url`; `fresh`: no cached fallback."""
        key = f"pl:{digest(url)}"
        with self._lock:
            self._keys.append(key)
        net = self._options.network
        if self._options.offline:
            cached = self._cache.get(key)
            if cached is None:
                raise OfflineMiss("playlist not in the cache", url=url)
            return _parse_cached(cached, url, net.max_segments, self._imports)
        try:
            # The cache is asked only if this fails: it may still be opening.
            body, final = self._client.get(url, max_bytes=net.max_playlist_bytes)
        except NetError as exc:
            cached = None if fresh else self._cache.get(key)
            if cached is None:
                _raise_local(url, exc)
                raise
            log.warning("playlist unreachable, playing the cached copy")
            return _parse_cached(cached, url, net.max_segments, self._imports)
        if not looks_like_playlist(body[:64]):
            raise PlaylistParseError("not an HLS playlist", url=final)
        playlist = parse(body, final, max_segments=net.max_segments, imports=self._imports)
        record = final.encode() + b"\n" + body
        with self._lock:
            unsaved = self._unsaved
            if unsaved is not None:
                unsaved.append((key, record))
        if unsaved is None:
            self._cache.set(key, record)
        return playlist

    def load_media(self, variant: int, *, fresh: bool = False) -> MediaPlaylist:
        """Load the media playlist of `variant` (one master→media level only)."""
        playlist = self.load_playlist(self.variants[variant].uri, fresh=fresh)
        if not isinstance(playlist, MediaPlaylist):
            raise PlaylistParseError("a variant points to another master playlist", url=playlist.url)
        return playlist


def _raise_local(url: str, exc: NetError) -> None:
    """For a playlist on disk that cannot be read, an error naming its path instead of an HTTP status."""
    if not url.lower().startswith("file:") or exc.status not in (403, 404):
        return
    what = "no such file" if exc.status == 404 else "permission denied"
    raise NetError(f"{what}: {url_path(url)}", url=url) from exc


def _parse_cached(
    record: bytes, url: str, max_segments: int, imports: dict[str, str] | None
) -> MasterPlaylist | MediaPlaylist:
    final, _, body = record.partition(b"\n")
    return parse(body, final.decode(), max_segments=max_segments, imports=imports)
