"""Decoding a source through PyAV: the `play` command and the demo write WAV files with it."""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path

from . import events as ev
from .source import HlsSource

#: Seconds between two redraws of the live status line.
STATUS_INTERVAL_S = 0.1


def decode_to_wav(f: HlsSource, output: str | Path, *, status: bool = False) -> float:
    """Decode the first audio stream of `f` into a 16-bit WAV; returns seconds decoded.

    status: show a live line on stderr (position, buffer, variant, throughput).
    """
    import av

    state = _Status(f) if status else None
    samples = 0
    rate = 0
    # Forward only: under ABR the stream's size changes with each switch, and ffmpeg's MP4
    # demuxer reads no further than the size it saw at open; its TS demuxer would read the
    # end to estimate the duration, which pins every variant before it and stops ABR.
    with (
        av.open(Forward(f), "r") as src,
        av.open(str(output), "w", format="wav") as dst,
    ):
        audio = src.streams.audio[0]
        rate = audio.rate or 44100
        out = dst.add_stream("pcm_s16le", rate=rate)
        out.layout = audio.layout.name if audio.layout else "stereo"
        resampler = av.AudioResampler(format="s16", layout=out.layout, rate=rate)
        for frame in src.decode(audio):
            for rf in resampler.resample(frame):
                samples += rf.samples
                dst.mux(out.encode(rf))
            if state is not None:
                state.show(samples / rate)
        for rf in resampler.resample(None):
            samples += rf.samples
            dst.mux(out.encode(rf))
        dst.mux(out.encode(None))
    if state is not None:
        state.done()
    return samples / rate if rate else 0.0


class Forward(io.RawIOBase):
    """`f` read from where it stands to its end, not seekable: a demuxer then learns no size
    (hand PyAV this rather than `f` to decode fMP4 under ABR, see the README's limitations)."""

    def __init__(self, f: io.RawIOBase) -> None:
        super().__init__()
        self._f = f

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int | None:  # type: ignore[override]
        return self._f.readinto(buffer)


class _Status:
    """A one-line live status: position, buffer, variant, throughput."""

    def __init__(self, f: HlsSource) -> None:
        self._f = f
        self._sub = f.events()
        self._buffer = 0.0
        self._rate = 0.0
        self._last = 0.0

    def show(self, position: float) -> None:
        for event in self._sub.drain():
            if isinstance(event, ev.BufferLevel):
                self._buffer = event.level_seconds
            elif isinstance(event, ev.ThroughputSample):
                self._rate = event.bytes_per_second
        now = time.monotonic()
        if now - self._last < STATUS_INTERVAL_S:
            return
        self._last = now
        line = (
            f"\r{position:7.2f} s  buffer {self._buffer:5.1f} s  variant {self._f.variant}"
            f"  {self._rate * 8 / 1e6:6.2f} Mbit/s"
        )
        sys.stderr.write(line)
        sys.stderr.flush()

    def done(self) -> None:
        sys.stderr.write("\n")
        self._sub.close()
