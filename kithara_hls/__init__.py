"""kithara_hls: an HLS VOD stream as a seekable binary file.

with kithara_hls.open(url) as f:
    container = av.open(f)
"""

from .download import DownloadResult, download
from .errors import (
    AbrError,
    AssetsError,
    DriverError,
    HlsError,
    IncompatibleVariant,
    InvalidUrl,
    KeyProcessingError,
    NetError,
    NoAudioTrack,
    NoSuitableVariant,
    OfflineMiss,
    PlaylistParseError,
    RetryExhausted,
    SegmentGap,
    SegmentNotFound,
    StorageError,
    UnsupportedEncryption,
    VariantNotFound,
)
from .events import (
    AbrReason,
    BufferLevel,
    DownloadProgress,
    EndOfStream,
    Error,
    Event,
    KeyFetch,
    PlaybackProgress,
    SegmentComplete,
    SegmentStart,
    SegmentTimestamp,
    Subscription,
    ThroughputSample,
    VariantApplied,
)
from .options import AbrOptions, CacheOptions, HlsOptions, KeyOptions, NetworkOptions
from .playlist import Rendition, Variant
from .session import StreamInfo
from .source import HlsSource, Period, open

__version__ = "0.1.0"

__all__ = [
    "AbrError",
    "AbrOptions",
    "AbrReason",
    "AssetsError",
    "BufferLevel",
    "CacheOptions",
    "DownloadProgress",
    "DownloadResult",
    "DriverError",
    "EndOfStream",
    "Error",
    "Event",
    "HlsError",
    "HlsOptions",
    "HlsSource",
    "IncompatibleVariant",
    "InvalidUrl",
    "KeyFetch",
    "KeyOptions",
    "KeyProcessingError",
    "NetError",
    "NetworkOptions",
    "NoAudioTrack",
    "NoSuitableVariant",
    "OfflineMiss",
    "Period",
    "PlaybackProgress",
    "PlaylistParseError",
    "Rendition",
    "RetryExhausted",
    "SegmentComplete",
    "SegmentGap",
    "SegmentNotFound",
    "SegmentStart",
    "SegmentTimestamp",
    "StorageError",
    "StreamInfo",
    "Subscription",
    "ThroughputSample",
    "UnsupportedEncryption",
    "Variant",
    "VariantApplied",
    "VariantNotFound",
    "download",
    "open",
]
