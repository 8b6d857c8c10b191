"""What PyAV makes of a stream, for tests and checks: the samples, the rate, the packets refused,
and the tone of a second (PyAV and numpy are imported lazily: the `av` extra)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any


def decode_audio(source: Path | bytes | IO[bytes]) -> tuple[Any, int, int]:
    """All audio of the first audio stream of a playlist path, bytes or a file object:
    (samples (channels, n), sample rate, packets the decoder refused)."""
    import av
    import numpy as np

    if isinstance(source, Path):
        opened: Any = str(source)
    elif isinstance(source, bytes):
        opened = io.BytesIO(source)
    else:
        opened = source
    chunks: list[Any] = []
    errors = 0
    with av.open(opened, mode="r") as container:
        stream = container.streams.audio[0]
        for packet in container.demux(stream):
            errors += _decode_packet(packet, chunks)
        rate = stream.sample_rate
    return np.concatenate(chunks, axis=1), rate, errors


def _decode_packet(packet: Any, chunks: list[Any]) -> int:
    """Append `packet`'s decoded samples to `chunks`; 1 if the decoder refused it, else 0."""
    import av

    try:
        chunks.extend(frame.to_ndarray() for frame in packet.decode())
    except av.error.InvalidDataError:
        return 1
    return 0


def peak_hz(samples: Any, rate: int, second: int) -> float:
    """The strongest frequency in the middle half of `second` of channel 0."""
    import numpy as np

    window = samples[0, int((second + 0.25) * rate) : int((second + 0.75) * rate)]
    spectrum = np.abs(np.fft.rfft(window * np.hanning(len(window))))
    return float(np.argmax(spectrum) * rate / len(window))


def decoded_seconds(data: bytes) -> float:
    """Seconds of audio PyAV decodes from `data` (its first audio stream)."""
    import av

    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(stream))
        return float(samples / stream.rate)


@dataclass(frozen=True)
class FrameSummary:
    """What each decoded frame of a stream said: seconds (each frame at its own rate), the
    sample rates and channel counts seen, the packets the decoder refused, and the strongest
    frequency of the first half second of channel 0."""

    seconds: float
    rates: frozenset[int]
    channels: frozenset[int]
    errors: int
    first_tone_hz: float


def summarize_frames(data: bytes) -> FrameSummary:
    """Decode the first audio stream of `data` frame by frame (a switch may change the rate)."""
    import av
    import numpy as np

    seconds, errors, rates, channels, pcm = 0.0, 0, set(), set(), []
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        for packet in container.demux(stream):
            frames, refused = _frames(packet)
            errors += refused
            for frame in frames:
                rates.add(frame.sample_rate)
                channels.add(len(frame.layout.channels))
                pcm.append(np.atleast_2d(frame.to_ndarray())[0].astype(np.float64))
                seconds += frame.samples / frame.sample_rate
    rate = max(rates, default=1)
    head = np.concatenate(pcm)[: rate // 2] if pcm else np.zeros(2)
    tone = float(np.argmax(np.abs(np.fft.rfft(head * np.hanning(len(head)))))) * rate / len(head)
    return FrameSummary(seconds, frozenset(rates), frozenset(channels), errors, tone)


def _frames(packet: Any) -> tuple[list[Any], int]:
    """`packet`'s frames, and 1 if the decoder refused it (else 0)."""
    import av

    try:
        return packet.decode(), 0
    except av.error.FFmpegError:
        return [], 1
