"""The real-world cases of the fixtures in `realworld`, played through the public API and decoded
with PyAV: one line a case (`python -m kithara_hls.testing realworld ROOT`).

Each line says what the file carried (track, ladder, switch sets), whether the bytes equal the
oracle's, what PyAV decoded (seconds, sample rates, channels, decoder errors, the tone of the
first half second) and whether the origin saw a request for video or for a gap.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kithara_hls
from kithara_hls import CacheOptions, HlsError, HlsOptions, HlsSource

from .decoding import summarize_frames
from .origin import Origin
from .realworld import RealWorldFixture
from .realworld_audio import build_realworld

Reader = Callable[[HlsSource, list[str]], bytes]


def _decode(data: bytes) -> str:
    """What PyAV makes of `data`: seconds, rates, channels, decoder errors, first tone."""
    got = summarize_frames(data)
    return (
        f"decoded {got.seconds:.3f} s, rates {sorted(got.rates)}, channels {sorted(got.channels)}, "
        f"decoder errors {got.errors}, first tone {got.first_tone_hz:.0f} Hz"
    )


def _whole(f: HlsSource, notes: list[str]) -> bytes:
    return f.read()


def _pin_48k_then_22k(f: HlsSource, notes: list[str]) -> bytes:
    f.set_variant(1)
    head = f.read(100)
    try:
        f.set_variant(0)
    except HlsError as exc:
        notes.append(f"set_variant(0) after a read: {type(exc).__name__}: {exc.args[0]}")
    return head + f.read()


def _second_period(f: HlsSource, notes: list[str]) -> bytes:
    periods = f.periods
    notes.append(
        "periods "
        + ", ".join(f"segment {p.segment} at {p.start_time:g} s, byte {p.byte_offset}" for p in periods)
    )
    f.seek_time(periods[1].start_time)
    return f.read()


def _until_error(f: HlsSource, notes: list[str]) -> bytes:
    data = bytearray()
    try:
        while chunk := f.read(65536):
            data += chunk
    except HlsError as exc:
        notes.append(f"read at byte {len(data)}: {type(exc).__name__}: {exc.args[0]}")
    return bytes(data)


#: (what, fixture, options, how to read, the track whose expected bytes it must equal)
CASES: list[tuple[str, str, HlsOptions, Reader, str | None]] = [
    ("renditions TS, default", "renditions_ts", HlsOptions(), _whole, "en"),
    ("renditions TS, audio='fr'", "renditions_ts", HlsOptions(audio="fr"), _whole, "fr"),
    ("renditions fMP4, audio='fr'", "renditions_fmp4", HlsOptions(audio="fr"), _whole, "fr"),
    ("renditions single_file fMP4, default", "renditions_single_fmp4", HlsOptions(), _whole, "en"),
    ("Apple-style master, default (URI-less default: muxed)", "apple_style_ts", HlsOptions(), _whole, None),
    (
        "Apple-style master, audio='English 5.1'",
        "apple_style_ts",
        HlsOptions(audio="English 5.1"),
        _whole,
        "en51",
    ),
    ("audio ladder fMP4 22.05/48/48 kHz, ABR", "audio_ladder_fmp4", HlsOptions(), _whole, None),
    (
        "audio ladder fMP4, 48 kHz pinned, then 22.05",
        "audio_ladder_fmp4",
        HlsOptions(),
        _pin_48k_then_22k,
        None,
    ),
    ("ffmpeg v:0,a:0 a:1 ladder, default", "muxed_ladder_ts", HlsOptions(), _whole, "audio"),
    ("ffmpeg v:0,a:0 a:1 ladder, track='muxed'", "muxed_ladder_ts", HlsOptions(track="muxed"), _whole, "av"),
    ("packed MP3 with PRIV tags", "packed_mp3", HlsOptions(), _whole, "audio"),
    ("packed ADTS with PRIV tags", "packed_adts", HlsOptions(), _whole, "audio"),
    ("discontinuity TS", "discontinuity_ts", HlsOptions(), _whole, "audio"),
    ("discontinuity TS, seek_time to period 2", "discontinuity_ts", HlsOptions(), _second_period, None),
    ("discontinuity fMP4 (new EXT-X-MAP)", "discontinuity_fmp4", HlsOptions(), _whole, "audio"),
    ("EXT-X-GAP on one variant", "gaps_one_ts", HlsOptions(), _whole, "a64"),
    ("EXT-X-GAP on every variant", "gaps_all_ts", HlsOptions(), _until_error, "a64"),
    ("EXT-X-DEFINE (VALUE, QUERYPARAM, IMPORT)", "define_ts", HlsOptions(), _whole, "en"),
]


def _case(
    fixture: RealWorldFixture, origin: Origin, options: HlsOptions, read: Reader, track: str | None
) -> Iterator[str]:
    with tempfile.TemporaryDirectory() as cache:
        options = dataclasses.replace(options, cache=CacheOptions(dir=cache))
        notes: list[str] = []
        try:
            with kithara_hls.open(fixture.url(origin.base_url), options) as f:
                data = read(f, notes)
                info = f.info()
                sets = f.switch_sets
        except HlsError as exc:
            yield f"  {type(exc).__name__}: {exc}"
            return
    exact = "" if track is None else f", bytes exact: {data == fixture.tracks[track].expected}"
    ladder = f"{len(info.variants)} variant(s), switch sets {sets}"
    yield f"  track {info.track}, {ladder}, {len(data)} bytes{exact}"
    yield f"  {_decode(data)}"
    yield (
        f"  requests for video: {len(fixture.video_requests(origin.requests))}, "
        f"for a gap: {len(fixture.gap_requests(origin.requests))}"
    )
    yield from (f"  {note}" for note in notes)


def check(root: str | Path) -> Iterator[str]:
    """Build the real-world fixtures under `root` and play each case; yields the report's lines."""
    fixtures: dict[str, Any] = build_realworld(Path(root))
    served = next(iter(fixtures.values())).root
    for what, name, options, read, track in CASES:
        with Origin(served) as origin:
            yield what
            yield from _case(fixtures[name], origin, options, read, track)
