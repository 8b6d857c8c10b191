"""Playlist loading with cache fallback: a stream's master and media playlists.

A playlist fetched over the network is kept in the cache (its final URL, a
newline, its body), so a stream read once opens offline, and plays its cached
copy when the network fails. A playlist on disk (a ``file://`` URL) is read the
same way, through the client's file adapter, and cached alike. The playlists
read while opening stay in memory until the first download is under way
(`take_unsaved`): the first request goes out before the cache database has to
be open.

Of a master, `tracks.choose` says which ladder the file carries (the muxed
variants or an audio track). The rungs of an audio ladder made of renditions
have no BANDWIDTH: their bitrates are measured at open, from the BYTERANGE
lengths of a rung's playlist where it gives them all, else from the size of its
first segment over its duration (the cache's copy where it is whole, else one
size probe; offline, a segment the cache lacks leaves the rate unknown, 0, and
offline ABR does not run). Those playlists are kept for the switches to come.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from .cache import Cache, digest
from .errors import HlsError, NetError, OfflineMiss, PlaylistParseError, VariantNotFound
from .layout import resource_id
from .localfile import url_path
from .options import HlsOptions
from .playlist import MasterPlaylist, MediaPlaylist, Rendition, Variant, looks_like_playlist, parse
from .tracks import TrackChoice, choose, ladder_bitrates
from .transport import HttpClient

log = logging.getLogger(__name__)

#: Rungs of an audio ladder measured at once while opening.
MAX_MEASURE_THREADS = 8


class PlaylistLoader:
    """Loads (and keeps) the playlists of one stream, through the cache."""

    def __init__(self, client: HttpClient, cache: Cache, options: HlsOptions) -> None:
        self._client = client
        self._cache = cache
        self._options = options
        self._lock = threading.Lock()
        self._keys: list[str] = []  # cache keys of the playlists loaded
        self._unsaved: list[tuple[str, bytes]] | None = []
        #: The ladder played, lowest bitrate first (a media playlist alone is one variant).
        self.variants: list[Variant] = []
        #: Every rendition (EXT-X-MEDIA) of the master; none for a media playlist.
        self.renditions: tuple[Rendition, ...] = ()
        #: What the file carries (None for a media playlist: no choice there).
        self.choice: TrackChoice | None = None
        self._media: dict[int, MediaPlaylist] = {}
        # Media playlists read while measuring the rungs, not yet handed out by media().
        self._read: dict[int, MediaPlaylist] = {}
        self._imports: dict[str, str] | None = None  # the master's EXT-X-DEFINE variables, for IMPORT

    def open(self, url: str) -> None:
        """Load the playlist at `url`: a master's ladder for the track chosen, or a media playlist
        as the only variant."""
        top = self.load_playlist(url)
        options = self._options
        if isinstance(top, MasterPlaylist):
            self._imports = dict(top.variables)
            choice = self.choice = choose(top, track=options.track, audio=options.audio)
            self.renditions = top.renditions
            self.variants = list(choice.variants)
            if choice.measure and len(self.variants) > 1:
                self._measure()
            return
        if options.audio is not None:
            raise VariantNotFound(
                f"no audio rendition matches {options.audio!r} (a media playlist has no renditions)", url=url
            )
        self.variants = [Variant(uri=url, bandwidth=0, average_bandwidth=None, codecs=None, resolution=None)]
        self._media[0] = top

    def media(self, variant: int) -> MediaPlaylist:
        """The media playlist of `variant`, loaded on first use and kept."""
        with self._lock:
            media = self._media.get(variant)
            read = self._read.pop(variant, None)
        if media is not None:
            return media
        media = read if read is not None else self.load_media(variant)
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

    def _measure(self) -> None:
        """Give the rungs of an audio ladder their measured bitrates (see the module's docstring).

        The rungs are measured at once, one short-lived thread each, so opening costs the round
        trips of one rung, not of all; each request has its timeouts, so every thread ends.
        """
        count = len(self.variants)
        measured: list[int | None] = [None] * count
        with ThreadPoolExecutor(
            max_workers=min(count, MAX_MEASURE_THREADS), thread_name_prefix="kithara-measure"
        ) as run:
            futures = {run.submit(self._rung, variant): variant for variant in range(count)}
            for future, variant in futures.items():
                try:
                    media, measured[variant] = future.result()
                except HlsError as exc:
                    # Unknown: its neighbours' rate stands in; a real failure shows when it is played.
                    log.info("bitrate of audio rung %d unknown (%s)", variant, type(exc).__name__)
                    continue
                with self._lock:
                    self._read[variant] = media
        rates = ladder_bitrates(measured)
        self.variants = [
            dataclasses.replace(v, bandwidth=b) for v, b in zip(self.variants, rates, strict=True)
        ]

    def _rung(self, variant: int) -> tuple[MediaPlaylist, int | None]:
        """A rung's media playlist and its measured bitrate."""
        media = self.load_media(variant)
        return media, self._bitrate(media)

    def _bitrate(self, media: MediaPlaylist) -> int | None:
        """Bits per second of `media`: over the BYTERANGEs, else over its first segment's size
        (the cache's copy, else a probe)."""
        segments = media.segments
        ranges = [s.byterange.length for s in segments if s.byterange is not None]
        if len(ranges) == len(segments) and media.duration > 0:
            return round(sum(ranges) * 8 / media.duration)
        first = segments[0]
        if first.duration <= 0:
            return None
        size, whole = self._cache.blob_state(resource_id(first.uri, first.byterange))
        if not whole:
            if self._options.offline:
                return None
            base = None if first.byterange is None else (first.byterange.offset, first.byterange.length)
            size, _ = self._client.probe(first.uri, base=base)
        return round(size * 8 / first.duration)


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
