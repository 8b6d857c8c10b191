"""Options: keyword-constructed frozen dataclasses, durations in float seconds.

Every duration also accepts a `datetime.timedelta`; it is converted to seconds
when the options object is built, so the rest of the library sees floats only.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Connect timeout of every request, in seconds.
DEFAULT_CONNECT_TIMEOUT_S = 5.0
#: Longest silence while reading a response body before it counts as a stall.
DEFAULT_READ_TIMEOUT_S = 10.0
#: Retries of one request after the first attempt.
DEFAULT_RETRIES = 4
#: First retry delay; doubles each time, with full jitter.
DEFAULT_BACKOFF_S = 0.2
#: Ceiling of one retry delay, and of an honoured Retry-After.
DEFAULT_BACKOFF_MAX_S = 5.0
#: Fetch worker threads (and HTTP connections kept alive), started one by one as
#: work appears. Downloads sharing a link finish together and then all wait a
#: round trip for their next response; with a few more than the bandwidth-delay
#: product needs, others fill that gap (50 ms, 20 MB/s: 8 -> 12 took a cold read
#: from 1.06x to 1.05x the link limit).
DEFAULT_WORKERS = 12
#: Threads that only probe segment sizes (for seeks before the data is there).
#: A probe is one round trip and a few hundred bytes: a far seek into a long
#: stream waits for hundreds of them, so they go many at a time.
DEFAULT_PROBE_WORKERS = 64
#: Media seconds fetched ahead of the read position.
DEFAULT_LOOKAHEAD_S = 60.0
#: Bytes fetched ahead of the read position, whatever the duration.
DEFAULT_LOOKAHEAD_BYTES = 64 * 2**20  # 64 MiB
#: How long a read waits for data before it gives up.
DEFAULT_READ_DEADLINE_S = 120.0
#: Largest playlist body accepted.
DEFAULT_MAX_PLAYLIST_BYTES = 8 * 2**20  # 8 MiB
#: Most segments accepted in one media playlist.
DEFAULT_MAX_SEGMENTS = 200_000
#: Largest EXT-X-MAP init section accepted.
DEFAULT_MAX_INIT_BYTES = 16 * 2**20  # 16 MiB
#: Largest single segment accepted.
DEFAULT_MAX_SEGMENT_BYTES = 1 * 2**30  # 1 GiB
#: The values of `HlsOptions.track`.
TRACKS = ("auto", "audio", "muxed")
#: Size cap of the on-disk cache.
DEFAULT_CACHE_BYTES = 2**30  # 1 GiB
#: ABR defaults (see `AbrOptions`), tuned with ``python -m benchmarks.abr_real``.
DEFAULT_MIN_BUFFER_FOR_UP_SWITCH_S = 4.0
DEFAULT_DOWN_SWITCH_BUFFER_S = 6.0
DEFAULT_THROUGHPUT_SAFETY_FACTOR = 1.1
DEFAULT_UP_HYSTERESIS_RATIO = 1.05
DEFAULT_DOWN_HYSTERESIS_RATIO = 0.8
DEFAULT_MIN_SWITCH_INTERVAL_S = 2.0
DEFAULT_FAST_HALF_LIFE_S = 3.0
DEFAULT_SLOW_HALF_LIFE_S = 6.0
DEFAULT_BUFFER_RULE_S = 10.0
DEFAULT_BUFFER_TARGET_S = 30.0


def seconds(value: float | datetime.timedelta | None) -> float | None:
    """Coerce a duration given as float seconds or `timedelta` to float seconds."""
    if value is None:
        return None
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    return float(value)


def _coerce_durations(obj: Any, names: tuple[str, ...]) -> None:
    for name in names:
        object.__setattr__(obj, name, seconds(getattr(obj, name)))


def default_cache_dir() -> Path:
    """The per-user cache folder: ``$XDG_CACHE_HOME/kithara-hls`` or ``~/.cache/kithara-hls``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "kithara-hls"


@dataclass(frozen=True, kw_only=True)
class NetworkOptions:
    """HTTP behaviour.

    connect_timeout / read_timeout: seconds; read_timeout is the longest silence
    inside a response. retries: retries per request after the first attempt, on
    connection errors, timeouts, 408, 429 and 5xx. backoff / backoff_max: jittered
    exponential backoff, and the cap on an honoured Retry-After. headers: sent with
    every request. verify: TLS verification (a CA bundle path is accepted).
    workers: fetch threads at most (one more starts each time one waits on the
    network; past four, only while responses take 10 ms or more, since on a near
    link more threads only contend for the GIL, or when a read waits for a part
    and every worker is busy); probe_workers: threads that only learn sizes (a seek
    far ahead probes many segments at once); the connection pool fits both.
    lookahead / lookahead_bytes: how far ahead of the reader to fetch.
    read_deadline: the longest a read waits for data before raising `NetError`.
    max_playlist_bytes / max_segments / max_init_bytes / max_segment_bytes: limits.
    """

    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S
    read_timeout: float = DEFAULT_READ_TIMEOUT_S
    retries: int = DEFAULT_RETRIES
    backoff: float = DEFAULT_BACKOFF_S
    backoff_max: float = DEFAULT_BACKOFF_MAX_S
    headers: Mapping[str, str] = field(default_factory=dict)
    verify: bool | str = True
    workers: int = DEFAULT_WORKERS
    probe_workers: int = DEFAULT_PROBE_WORKERS
    lookahead: float = DEFAULT_LOOKAHEAD_S
    lookahead_bytes: int = DEFAULT_LOOKAHEAD_BYTES
    read_deadline: float = DEFAULT_READ_DEADLINE_S
    max_playlist_bytes: int = DEFAULT_MAX_PLAYLIST_BYTES
    max_segments: int = DEFAULT_MAX_SEGMENTS
    max_init_bytes: int = DEFAULT_MAX_INIT_BYTES
    max_segment_bytes: int = DEFAULT_MAX_SEGMENT_BYTES

    def __post_init__(self) -> None:
        _coerce_durations(
            self,
            ("connect_timeout", "read_timeout", "backoff", "backoff_max", "lookahead", "read_deadline"),
        )
        object.__setattr__(self, "headers", dict(self.headers))
        if self.workers < 1:
            raise ValueError("workers must be at least 1")
        if self.retries < 0:
            raise ValueError("retries must be 0 or more")


@dataclass(frozen=True, kw_only=True)
class CacheOptions:
    """The persistent store.

    dir: cache folder (default `default_cache_dir()`), created with mode 0700.
    max_bytes: size cap; least recently used streams are evicted past it (checked once a
    source stored its first segment, then every 32 MiB it downloads).
    """

    dir: str | os.PathLike[str] | None = None
    max_bytes: int = DEFAULT_CACHE_BYTES

    @property
    def path(self) -> Path:
        """The resolved cache folder."""
        return Path(self.dir) if self.dir is not None else default_cache_dir()


@dataclass(frozen=True, kw_only=True)
class KeyOptions:
    """AES-128 key handling.

    headers / query: added to key requests only. key_processor(raw_key, key_uri)
    returns the 16-byte key (for wrapped or obfuscated keys). static_keys maps a
    key URI to its key bytes (no request is made for those). persist: keep keys in
    the cache so encrypted streams play offline.
    """

    headers: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)
    key_processor: Callable[[bytes, str], bytes] | None = None
    static_keys: Mapping[str, bytes] = field(default_factory=dict)
    persist: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "headers", dict(self.headers))
        object.__setattr__(self, "query", dict(self.query))
        object.__setattr__(self, "static_keys", dict(self.static_keys))


@dataclass(frozen=True, kw_only=True)
class AbrOptions:
    """Adaptive bitrate.

    min_buffer_for_up_switch_secs: buffer needed before switching up (below it, only
    to a variant whose segments arrive at twice real time).
    down_switch_buffer_secs: a variant the estimate no longer pays for is kept while
    fetching one more segment of it leaves at least this buffer; below half of it,
    a variant that does not fit is dropped at once.
    throughput_safety_factor: a variant fits when bitrate × factor ≤ estimate.
    up_hysteresis_ratio / down_hysteresis_ratio: margins against flapping.
    min_switch_interval: seconds between two non-urgent switches.
    fast_half_life / slow_half_life: the throughput EWMAs' half-lives, seconds.
    buffer_rule_secs: from this buffer on, an up-switch needs no hysteresis margin (the
    buffer is the margin) and goes as high as the link's rate now (its last half second)
    fits, as far as the buffer carries that variant.
    buffer_target_secs: the buffer ABR fills up to (at most the look-ahead, which a
    pinned variant fills).
    max_bandwidth: optional cap in bits per second.
    initial_bandwidth: the link estimate to start from, bits per second; None: the
    estimate last measured for the stream's origin (kept in the cache), or, for an
    origin never measured, the lowest variant and a conservative guess. The stream
    starts on the highest variant that fits it.
    fast_switching: an up-switch on a link well faster than the new variant also
    fetches again, on it, what is stored beyond the next 8 s (False: only what is
    not fetched yet moves to the new variant).
    """

    min_buffer_for_up_switch_secs: float = DEFAULT_MIN_BUFFER_FOR_UP_SWITCH_S
    down_switch_buffer_secs: float = DEFAULT_DOWN_SWITCH_BUFFER_S
    throughput_safety_factor: float = DEFAULT_THROUGHPUT_SAFETY_FACTOR
    up_hysteresis_ratio: float = DEFAULT_UP_HYSTERESIS_RATIO
    down_hysteresis_ratio: float = DEFAULT_DOWN_HYSTERESIS_RATIO
    min_switch_interval: float = DEFAULT_MIN_SWITCH_INTERVAL_S
    fast_half_life: float = DEFAULT_FAST_HALF_LIFE_S
    slow_half_life: float = DEFAULT_SLOW_HALF_LIFE_S
    buffer_rule_secs: float = DEFAULT_BUFFER_RULE_S
    buffer_target_secs: float = DEFAULT_BUFFER_TARGET_S
    max_bandwidth: int | None = None
    initial_bandwidth: float | None = None
    fast_switching: bool = True

    def __post_init__(self) -> None:
        if self.initial_bandwidth is not None and not self.initial_bandwidth > 0:
            raise ValueError("initial_bandwidth must be positive")
        _coerce_durations(
            self,
            (
                "min_buffer_for_up_switch_secs",
                "down_switch_buffer_secs",
                "min_switch_interval",
                "fast_half_life",
                "slow_half_life",
                "buffer_rule_secs",
                "buffer_target_secs",
            ),
        )


@dataclass(frozen=True, kw_only=True)
class HlsOptions:
    """Everything `kithara_hls.open` takes.

    variant: index into `HlsSource.variants` (the ladder of the track played) to pin
    (ABR off), or None for ABR.
    track: what the file carries from a master: "auto" (the audio alone when the
    master keeps it apart, in renditions with a URI or audio-only variants; else
    the muxed variants), "audio" (the audio alone, or `NoAudioTrack`), "muxed"
    (the variants as they are).
    audio: the audio rendition to play, by LANGUAGE ("en" matches "en-US",
    case-insensitive) or NAME; implies the audio unless `track` says "muxed",
    which it contradicts. No match raises `VariantNotFound` naming those there are.
    offline: serve from the cache only; anything missing raises `OfflineMiss`.
    abr / network / cache / keys: the option groups above.
    events_queue: per-subscriber event queue length (oldest dropped past it).
    """

    variant: int | None = None
    track: str = "auto"
    audio: str | None = None
    offline: bool = False
    abr: AbrOptions = field(default_factory=AbrOptions)
    network: NetworkOptions = field(default_factory=NetworkOptions)
    cache: CacheOptions = field(default_factory=CacheOptions)
    keys: KeyOptions = field(default_factory=KeyOptions)
    events_queue: int = 1024

    def __post_init__(self) -> None:
        if self.track not in TRACKS:
            raise ValueError(f"track must be one of {', '.join(TRACKS)}, not {self.track!r}")
        if self.audio is not None and self.track == "muxed":
            raise ValueError("audio= chooses an audio rendition: it needs track='auto' or 'audio'")

    def replace(self, **changes: Any) -> HlsOptions:
        """A copy with `changes` applied."""
        return dataclasses.replace(self, **changes)
