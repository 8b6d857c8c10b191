"""Switch sets: the variants a decoder can follow a switch between.

Two variants are in one set when their container, codec families, sample rate,
channel count and (TS) PID layout agree. What a variant is comes from its bytes
(`sniff`: its init section, or the head of its first segment) and, while those
are not known, from its CODECS. CODECS of a variant that takes its audio from a
rendition group names the group's codec, not what its own segments hold (Shaka
lists mp4a on video-only variants), so it is not used there. A field nobody
knows never separates two variants.

The bytes are learnt as late as they can be: the start variant's from the part
the stream downloads first (no request of its own), another's just before ABR
would switch to it (a small ranged GET, on the thread that asks), and kept for
the life of the stream.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from .errors import HlsError, OfflineMiss
from .layout import Part, build_parts
from .loader import PlaylistLoader
from .options import NetworkOptions
from .playlist import Variant
from .sniff import HEAD_BYTES, MP4_ENTRIES, MediaFormat, sniff
from .store import Store
from .transport import HttpClient

log = logging.getLogger(__name__)

#: mp4a object types (RFC 6381: mp4a.<oti hex>[.<aot>]) that are not AAC.
MP4A_FAMILIES = {"69": "mpa", "6b": "mpa", "a5": "ac-3", "a6": "ec-3", "ad": "opus"}
#: AAC audio object types that are MPEG-1/2 audio in an mp4a wrapper (mp4a.40.34 is MP3).
MP4A_MPEG_AOTS = ("32", "33", "34")
#: A segment's head asked for first: a TS PAT, PMT and first audio frame, or a packed frame.
FIRST_BYTES = 4096
_ENTRY_FAMILIES = {fourcc.lower(): family for fourcc, family in MP4_ENTRIES.items()}


def codec_family(entry: str) -> str | None:
    """The family of one CODECS entry ("mp4a.40.2" -> "aac"), None if unknown."""
    head, _, rest = entry.strip().lower().partition(".")
    if head == "mp4a":
        oti, _, aot = rest.partition(".")
        if oti == "40":
            return "mpa" if aot in MP4A_MPEG_AOTS else "aac"
        return MP4A_FAMILIES.get(oti)
    return _ENTRY_FAMILIES.get(head)


def codecs_format(variant: Variant) -> MediaFormat:
    """What a variant's CODECS says its own segments hold (nothing when that is not reliable)."""
    # A variant with an AUDIO group lists the group's codec too: not proof of its own bytes.
    if not variant.codecs or variant.audio:
        return MediaFormat()
    families = [codec_family(entry) for entry in variant.codecs.split(",") if entry.strip()]
    if not families or None in families:
        return MediaFormat()
    return MediaFormat(codecs=tuple(sorted({f for f in families if f is not None})))


def group(formats: Sequence[MediaFormat]) -> tuple[tuple[int, ...], ...]:
    """Switch sets over `formats` (indices), in order: each joins the first set it agrees with wholly."""
    sets: list[list[int]] = []
    for index, fmt in enumerate(formats):
        for members in sets:
            if all(not formats[m].differences(fmt) for m in members):
                members.append(index)
                break
        else:
            sets.append([index])
    return tuple(tuple(members) for members in sets)


def _further(fmt: MediaFormat) -> bool:
    """Whether more of a segment's head may tell its audio: a container was recognised, its
    audio not yet (bytes nothing recognises tell no more further on, and a switch waits)."""
    return fmt.container is not None and fmt.sample_rate is None


class _Head:
    """A `ranged.Sink` keeping the first bytes of a resource."""

    def __init__(self) -> None:
        self.data = bytearray()

    def on_size(self, size: int) -> None:
        """Unused: the head is what arrives."""

    def on_data(self, offset: int, data: memoryview) -> None:
        """Keep bytes at `offset`."""
        self.data[offset : offset + len(data)] = data


class SwitchSets:
    """What each variant of a stream is, learnt once, and the sets they form.

    in_flight(rid): True while the fetch pool downloads that resource (its bytes
    then come through the store, with no request of their own). offline: bytes
    come only from the cache.
    """

    def __init__(
        self,
        *,
        loader: PlaylistLoader,
        client: HttpClient,
        store: Store,
        network: NetworkOptions,
        offline: bool = False,
    ) -> None:
        self._loader = loader
        self._client = client
        self._store = store
        self._net = network
        self._lock = threading.Lock()
        self._codecs = [codecs_format(v) for v in loader.variants]
        self._offline = offline
        self._learnt: dict[int, MediaFormat] = {}
        self._looking: dict[int, threading.Lock] = {}
        self.in_flight: Callable[[str], bool] = lambda rid: False

    def known(self, variant: int) -> bool:
        """True once `variant`'s bytes were looked at (even if they told nothing)."""
        with self._lock:
            return variant in self._learnt

    def format(self, variant: int) -> MediaFormat:
        """What `variant` is, as far as known now: its bytes, then its CODECS."""
        with self._lock:
            learnt = self._learnt.get(variant)
        codecs = self._codecs[variant]
        return codecs if learnt is None else learnt.merged(codecs)

    def differences(self, a: int, b: int) -> list[str]:
        """How variants `a` and `b` differ, as far as known now (empty: one set)."""
        return self.format(a).differences(self.format(b))

    def same_set(self, a: int, b: int) -> bool:
        """Whether a decoder can follow a switch from `a` to `b`, as far as known now (no I/O)."""
        return not self.differences(a, b)

    def sets(self) -> tuple[tuple[int, ...], ...]:
        """The switch sets as known now (indices into the variants)."""
        return group([self.format(v) for v in range(len(self._codecs))])

    def learn(self, variant: int, parts: Sequence[Part] = ()) -> MediaFormat:
        """Look at `variant`'s first bytes (once): from the store when its first part is stored or
        arriving, else with a small ranged GET on this thread. `parts`: the variant's plan, if the
        stream already has one. Failures leave it unknown."""
        with self._lock:
            # One look per variant: a second asker waits for the first one's answer.
            looking = self._looking.setdefault(variant, threading.Lock())
        with looking:
            with self._lock:
                found = self._learnt.get(variant)
            if found is not None:
                return found
            try:
                fmt = self._read(parts[0] if parts else self._first_part(variant))
            except HlsError as exc:
                log.debug("variant %d: its first bytes could not be read (%s)", variant, exc)
                fmt = MediaFormat()
            log.debug("variant %d is %s", variant, fmt)
            with self._lock:
                return self._learnt.setdefault(variant, fmt)

    def _first_part(self, variant: int) -> Part:
        parts = build_parts(self._loader.media(variant), variant)
        if not parts:
            raise HlsError("the variant has no segment", url=self._loader.variants[variant].uri)
        return parts[0]

    def _read(self, part: Part) -> MediaFormat:
        """The format `part`'s first bytes tell (an encrypted part tells nothing without its key)."""
        if part.key is not None:
            return MediaFormat()
        limit = self._net.max_init_bytes if part.is_init else HEAD_BYTES
        info, complete = self._store.load(part.rid, if_stored=True)
        if complete or self.in_flight(part.rid):
            size = limit if info is None else min(limit, info.size)
            head = memoryview(bytearray(size))
            deadline = time.monotonic() + self._net.read_deadline
            # Waits for the first bytes only (what is here beyond them comes along), then more if need be.
            got = self._store.read_at_least(part.rid, 0, head, min(size, FIRST_BYTES), deadline)
            fmt = sniff(bytes(head[:got]))
            if got < size and _further(fmt):
                got += self._store.read_at_least(part.rid, got, head[got:], size - got, deadline)
                fmt = sniff(bytes(head[:got]))
            return fmt
        if self._offline:
            raise OfflineMiss("the variant's first bytes are not in the cache", url=part.url)
        sink = _Head()
        first = limit if part.is_init else FIRST_BYTES
        self._client.fetch(part.url, sink, start=0, end=first, base=part.base, max_bytes=None)
        fmt = sniff(bytes(sink.data))
        if len(sink.data) >= first < limit and _further(fmt):
            # The audio's first frame is further on (after video, or a long ID3 tag).
            self._client.fetch(part.url, sink, start=first, end=limit, base=part.base, max_bytes=None)
            fmt = sniff(bytes(sink.data))
        return fmt


__all__ = ["SwitchSets", "codec_family", "codecs_format", "group"]
