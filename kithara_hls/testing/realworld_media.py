"""The media steps of the real-world fixtures: tones and tiny test video encoded together through
one ffmpeg muxer (PyAV, imported lazily), and the ID3v2.4 PRIV timestamp tag of packed audio.

Every audio track is a tone that starts at its base frequency and steps up a semitone every
second of its content (`tone_hz`), so a decoded window tells which track and which second it is.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

TONE_STEP_S = 1.0  # the tone steps up a semitone every second of content
AUDIO_CHUNK_SAMPLES = 1024  # PCM fed to the encoder per frame
#: Encoder delay per codec, trimmed from the input so a stream ends on its last full second
#: instead of in a last segment a few milliseconds long.
PRIMING_SAMPLES = {"aac": 1024, "mp3": 1152}
VIDEO_FPS = 10  # tiny, slow video: the fixtures are about audio, video only has to be real
PRIV_OWNER = b"com.apple.streaming.transportStreamTimestamp"
#: The 90 kHz timestamp of a stream's first sample in the packed-audio fixtures: the value
#: ffmpeg's MPEG-TS muxer starts at (1.4 s), so clients cannot assume zero.
PACKED_START_TICKS = 126_000
_LAYOUTS = {1: "mono", 2: "stereo", 6: "5.1"}


def tone_hz(base_hz: float, t: float) -> float:
    """The frequency of a fixture tone of base `base_hz` at `t` seconds into its content."""
    return float(base_hz * 2.0 ** (math.floor(t / TONE_STEP_S) / 12.0))


@dataclass(frozen=True)
class AudioSpec:
    """One audio stream to encode: a tone of `base_hz` (see `tone_hz`)."""

    base_hz: float
    sample_rate: int = 48_000
    channels: int = 2
    bitrate: int = 64_000
    codec: str = "aac"


@dataclass(frozen=True)
class VideoSpec:
    """One H.264 stream to encode: a tiny moving gradient."""

    width: int
    height: int
    bitrate: int


def pcm(spec: AudioSpec, seconds: float) -> Any:
    """Float32 planar PCM, shape (channels, n), of `spec`'s tone for `seconds` of content."""
    import numpy as np

    priming = PRIMING_SAMPLES.get(spec.codec, 0)
    n = round(spec.sample_rate * seconds) - priming
    t = np.arange(n) / spec.sample_rate
    freq = spec.base_hz * 2.0 ** (np.floor(t / TONE_STEP_S) / 12.0)
    # Integrate the frequency so the phase stays continuous across the steps.
    phase = 2 * np.pi * np.cumsum(freq) / spec.sample_rate
    wave = (0.3 * np.sin(phase)).astype(np.float32)
    return np.stack([wave] * spec.channels)


def encode_streams(
    target: Path | str,
    fmt: str,
    options: dict[str, str],
    *,
    videos: tuple[VideoSpec, ...] = (),
    audios: tuple[AudioSpec, ...] = (),
    seconds: float,
) -> None:
    """Encode `videos` then `audios` (stream order, as var_stream_map counts them) into `target`."""
    import av

    with av.open(str(target), "w", format=fmt, options=options) as out:
        vstreams = [_add_video(out, spec) for spec in videos]
        astreams = [_add_audio(out, spec) for spec in audios]
        signals = [pcm(spec, seconds) for spec in audios]
        sent = [0] * len(audios)
        for i in range(round(seconds * VIDEO_FPS)):
            for stream in vstreams:
                out.mux(stream.encode(_video_frame(stream, i)))
            # Audio follows the video clock, so the muxer never holds much to interleave.
            until = (i + 1) / VIDEO_FPS
            for k, (stream, spec) in enumerate(zip(astreams, audios, strict=True)):
                sent[k] = _feed_audio(out, stream, spec, signals[k], sent[k], until)
        for k, (stream, spec) in enumerate(zip(astreams, audios, strict=True)):
            _feed_audio(out, stream, spec, signals[k], sent[k], math.inf)
        for stream in [*vstreams, *astreams]:
            out.mux(stream.encode(None))


def _add_video(out: Any, spec: VideoSpec) -> Any:
    gop = str(VIDEO_FPS)  # a keyframe every second, so 1 s and 2 s segments cut cleanly
    options = {"preset": "ultrafast", "g": gop, "keyint_min": gop, "sc_threshold": "0"}
    stream = out.add_stream("libx264", rate=VIDEO_FPS, options=options)
    stream.width, stream.height = spec.width, spec.height
    stream.pix_fmt = "yuv420p"
    stream.bit_rate = spec.bitrate
    return stream


def _add_audio(out: Any, spec: AudioSpec) -> Any:
    stream = out.add_stream(spec.codec, rate=spec.sample_rate, layout=_LAYOUTS[spec.channels])
    stream.bit_rate = spec.bitrate
    return stream


def _video_frame(stream: Any, index: int) -> Any:
    import av
    import numpy as np

    ramp = (np.arange(stream.width, dtype=np.int32) + 8 * index) % 256
    image = np.broadcast_to(ramp.astype(np.uint8)[None, :, None], (stream.height, stream.width, 3))
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
    frame.pts = index
    frame.time_base = Fraction(1, VIDEO_FPS)
    return frame


def _feed_audio(out: Any, stream: Any, spec: AudioSpec, signal: Any, start: int, until: float) -> int:
    """Encode `signal` from sample `start` up to `until` seconds; return the next sample."""
    import av
    import numpy as np

    end = min(signal.shape[1], int(until * spec.sample_rate) if until != math.inf else signal.shape[1])
    while start < end:
        chunk = np.ascontiguousarray(signal[:, start : start + AUDIO_CHUNK_SAMPLES])
        frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=_LAYOUTS[spec.channels])
        frame.sample_rate = spec.sample_rate
        frame.pts = start
        out.mux(stream.encode(frame))
        start += chunk.shape[1]
    return start


def priv_timestamp_tag(ticks: int) -> bytes:
    """An ID3v2.4 tag with the PRIV frame of RFC 8216 §3.4: `ticks` (90 kHz, 33 bits) big-endian."""
    body = PRIV_OWNER + b"\x00" + struct.pack(">Q", ticks % 2**33)
    frame = b"PRIV" + _syncsafe(len(body)) + b"\x00\x00" + body
    return b"ID3\x04\x00\x00" + _syncsafe(len(frame)) + frame


def _syncsafe(n: int) -> bytes:
    return bytes((n >> shift) & 0x7F for shift in (21, 14, 7, 0))
