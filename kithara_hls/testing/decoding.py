"""What PyAV makes of a stream, for tests and checks: the samples, the rate, the packets refused,
and the tone of a second (PyAV and numpy are imported lazily: the `av` extra)."""

from __future__ import annotations

import io
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
