"""Test support: a loopback HTTP origin with fault knobs, and real HLS fixtures.

`Origin` serves a folder on 127.0.0.1 over HTTP/1.1 keep-alive, with Range
support, added latency, one shared bandwidth limit, and per-path faults (status
failures, connection resets, short bodies, stalls, ignored ranges, redirects,
gzip). The ``build_*`` functions write real HLS streams through ffmpeg's own
muxers (PyAV, imported lazily), and each returns a `StreamFixture` that knows the
bytes a client must produce, computed by an oracle independent of the library.

Run ``python -m kithara_hls.testing serve ROOT`` to serve a folder from its own
process (the first stdout line is the base URL; it stops when stdin closes or on
SIGTERM), and ``python -m kithara_hls.testing build ROOT`` to build every fixture.
"""

from ..options import AbrOptions
from .fixtures import (
    AES_FMP4_IV,
    AES_FMP4_KEY,
    AES_MANUAL_KEYS,
    AES_MANUAL_SEQUENCE,
    AES_TS_IV,
    AES_TS_KEY,
    LARGE_SEGMENT_S,
    StreamFixture,
    build_aes_fmp4,
    build_aes_manual,
    build_aes_ts,
    build_all,
    build_byterange,
    build_fmp4,
    build_large,
    build_packed_mp3,
    build_ts_variants,
)
from .origin import CONTENT_TYPES, FOREVER, Origin, RequestRecord, self_signed_tls

#: ABR that moves at the first chance, whichever way the link goes: on a loopback link
#: transfers take milliseconds, so the averages must forget within the test.
EAGER_ABR = AbrOptions(
    min_buffer_for_up_switch_secs=0.0,
    down_switch_buffer_secs=100.0,
    min_switch_interval=0.0,
    throughput_safety_factor=1.0,
    up_hysteresis_ratio=1.0,
    down_hysteresis_ratio=1.0,
    fast_half_life=0.01,
    slow_half_life=0.02,
)

__all__ = [
    "AES_FMP4_IV",
    "AES_FMP4_KEY",
    "AES_MANUAL_KEYS",
    "AES_MANUAL_SEQUENCE",
    "AES_TS_IV",
    "AES_TS_KEY",
    "CONTENT_TYPES",
    "EAGER_ABR",
    "FOREVER",
    "LARGE_SEGMENT_S",
    "Origin",
    "RequestRecord",
    "StreamFixture",
    "build_aes_fmp4",
    "build_aes_manual",
    "build_aes_ts",
    "build_all",
    "build_byterange",
    "build_fmp4",
    "build_large",
    "build_packed_mp3",
    "build_ts_variants",
    "self_signed_tls",
]
