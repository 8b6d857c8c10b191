"""`sniff`: container, codecs, sample rate and channels from bytes ffmpeg's muxers wrote."""

from __future__ import annotations

import io
from typing import Any

import pytest

from kithara_hls.sniff import MediaFormat, id3_length, sniff

av = pytest.importorskip("av")
np = pytest.importorskip("numpy")

SECONDS = 0.5


def _mux(fmt: str, codec: str, rate: int, layout: str, *, video: bool = False, **options: str) -> bytes:
    """Half a second of tone through ffmpeg's `fmt` muxer (and, with `video`, a small H.264 track)."""
    out = io.BytesIO()
    with av.open(out, "w", format=fmt, options=options) as container:
        vstream: Any = None
        if video:
            vstream = container.add_stream("libx264", rate=10)
            vstream.width, vstream.height, vstream.pix_fmt = 64, 64, "yuv420p"
        stream = container.add_stream(codec, rate=rate, layout=layout)
        size = stream.codec_context.frame_size or 1024
        channels = stream.codec_context.layout.nb_channels
        total = int(rate * SECONDS)
        for start in range(0, total, size):
            t = (np.arange(size) + start) / rate
            pcm = np.tile(0.2 * np.sin(2 * np.pi * 440 * t), (channels, 1)).astype(np.float32)
            # The encoder converts to its own sample format.
            frame = av.AudioFrame.from_ndarray(pcm, format="fltp", layout=layout)
            frame.sample_rate, frame.pts = rate, start
            container.mux(stream.encode(frame))
            if vstream is not None and start % (rate // 10) < size:
                image = av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24")
                image.pts = start * 10 // rate
                container.mux(vstream.encode(image.reformat(format="yuv420p")))
        container.mux(stream.encode(None))
        if vstream is not None:
            container.mux(vstream.encode(None))
    return out.getvalue()


def _init(data: bytes) -> bytes:
    """The init section of a fragmented MP4: its boxes before the first moof."""
    return data[: data.index(b"moof") - 4]


@pytest.mark.parametrize(
    ("codec", "rate", "layout", "family", "channels"),
    [
        ("aac", 22050, "mono", "aac", 1),
        ("aac", 48000, "stereo", "aac", 2),
        ("ac3", 48000, "5.1", "ac-3", 6),
        ("eac3", 44100, "stereo", "ec-3", 2),
        ("libopus", 48000, "stereo", "opus", 2),
        ("flac", 44100, "mono", "flac", 1),
        ("mp3", 44100, "stereo", "mpa", 2),
    ],
)
def test_fmp4_init_section(codec: str, rate: int, layout: str, family: str, channels: int) -> None:
    # The muxer writes AC-3/E-AC-3 headers only once it parsed a packet: a delayed moov.
    flags = "delay_moov" if codec in ("ac3", "eac3") else "empty_moov"
    data = _mux("mp4", codec, rate, layout, movflags=f"frag_keyframe+{flags}+default_base_moof")
    assert sniff(_init(data)) == MediaFormat("fmp4", (family,), rate, channels)


def test_fmp4_with_video_names_both_tracks() -> None:
    data = _mux("mp4", "aac", 44100, "stereo", video=True, movflags="frag_keyframe+empty_moov")
    assert sniff(_init(data)) == MediaFormat("fmp4", ("aac", "avc"), 44100, 2)


def test_fmp4_media_segment_alone_tells_only_the_container() -> None:
    data = _mux("mp4", "aac", 44100, "stereo", movflags="frag_keyframe+empty_moov")
    segment = data[data.index(b"moof") - 4 :]
    assert sniff(segment) == MediaFormat("fmp4")


@pytest.mark.parametrize(
    ("codec", "rate", "layout", "family", "stream_type", "channels"),
    [
        ("aac", 22050, "mono", "aac", 0x0F, 1),
        ("aac", 48000, "stereo", "aac", 0x0F, 2),
        ("mp3", 44100, "stereo", "mpa", 0x03, 2),
        ("ac3", 48000, "5.1", "ac-3", 0x81, 6),
        ("eac3", 48000, "stereo", "ec-3", 0x87, 2),
    ],
)
def test_ts_audio(codec: str, rate: int, layout: str, family: str, stream_type: int, channels: int) -> None:
    fmt = sniff(_mux("mpegts", codec, rate, layout))
    assert fmt.container == "ts"
    assert fmt.codecs == (family,)
    assert fmt.pids is not None and [kind for _, kind in fmt.pids] == [stream_type]
    assert (fmt.sample_rate, fmt.channels) == (rate, channels)


def test_ts_pid_layout_of_a_muxed_variant_differs_from_an_audio_only_one() -> None:
    muxed = sniff(_mux("mpegts", "aac", 44100, "stereo", video=True))
    audio = sniff(_mux("mpegts", "aac", 44100, "stereo"))
    assert muxed.codecs == ("aac", "avc")
    assert muxed.pids is not None and sorted(kind for _, kind in muxed.pids) == [0x0F, 0x1B]
    assert (muxed.sample_rate, muxed.channels) == (44100, 2)
    assert any(d.startswith("pids") for d in muxed.differences(audio))
    assert any(d.startswith("codecs") for d in muxed.differences(audio))


def test_ts_head_cut_before_the_audio_keeps_what_it_saw() -> None:
    data = _mux("mpegts", "aac", 44100, "stereo")
    fmt = sniff(data[: 188 * 2])
    assert fmt.container == "ts"
    assert fmt.sample_rate is None  # no audio packet in the head: unknown, not a difference


@pytest.mark.parametrize(
    ("fmt_name", "codec", "rate", "layout", "expected"),
    [
        ("adts", "aac", 22050, "mono", MediaFormat("adts", ("aac",), 22050, 1)),
        ("adts", "aac", 48000, "stereo", MediaFormat("adts", ("aac",), 48000, 2)),
        ("mp3", "mp3", 44100, "stereo", MediaFormat("mp3", ("mpa",), 44100, 2)),
        ("mp3", "mp3", 24000, "mono", MediaFormat("mp3", ("mpa",), 24000, 1)),
        ("ac3", "ac3", 48000, "5.1", MediaFormat("ac-3", ("ac-3",), 48000, 6)),
        ("ac3", "ac3", 44100, "stereo", MediaFormat("ac-3", ("ac-3",), 44100, 2)),
        ("eac3", "eac3", 48000, "5.1", MediaFormat("ec-3", ("ec-3",), 48000, 6)),
    ],
)
def test_packed_audio(fmt_name: str, codec: str, rate: int, layout: str, expected: MediaFormat) -> None:
    data = _mux(fmt_name, codec, rate, layout)
    assert sniff(data) == expected


def test_packed_audio_after_an_id3_tag() -> None:
    data = _mux("mp3", "mp3", 44100, "stereo", id3v2_version="4", write_xing="0")
    assert id3_length(data) > 0
    assert data[:3] == b"ID3"
    assert sniff(data) == MediaFormat("mp3", ("mpa",), 44100, 2)
    adts = _mux("adts", "aac", 32000, "stereo")
    tagged = b"ID3\x04\x00\x00\x00\x00\x00\x05" + b"\0" * 5 + adts
    assert id3_length(tagged) == 15
    assert sniff(tagged) == MediaFormat("adts", ("aac",), 32000, 2)


@pytest.mark.parametrize("data", [b"", b"\0" * 64, b"#EXTM3U\n", bytes(range(256)) * 4, b"ID3\x04"])
def test_unknown_bytes_give_unknown_fields(data: bytes) -> None:
    fmt = sniff(data)
    assert fmt == MediaFormat()
    assert not fmt.known
    assert fmt.differences(MediaFormat("ts", ("aac",), 48000, 2, ((256, 15),))) == []


def test_differences_name_only_known_fields() -> None:
    a = MediaFormat("fmp4", ("aac",), 22050, 1)
    b = MediaFormat("fmp4", ("aac",), 48000, None)
    assert a.differences(b) == ["sample_rate 22050 ≠ 48000"]
    assert b.merged(a) == MediaFormat("fmp4", ("aac",), 48000, 1)
