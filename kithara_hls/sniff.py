"""What a variant's bytes hold: container, codecs, sample rate, channels (pure byte parsing).

`sniff` reads an fMP4 init section (the sample entry of each track's
``moov/trak/mdia/minf/stbl/stsd``), the head of an MPEG-TS segment (PAT, PMT,
then the first audio frame header of the audio PES), or packed audio (ADTS,
MPEG audio, AC-3, E-AC-3 frames, after a leading ID3 tag). What it cannot tell
stays None: an unknown field never makes two formats differ. The TS packets and
tables are read in `mpegts`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, fields, replace

from .mpegts import first_pes, is_ts, ts_streams

#: Bytes of a segment's head that tell a TS PID layout and its first audio frame.
HEAD_BYTES = 64 * 1024

ADTS_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)
MPEG_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}
AC3_RATES = (48000, 44100, 32000)
EAC3_HALF_RATES = (24000, 22050, 16000)
AC3_CHANNELS = (2, 1, 2, 3, 3, 4, 4, 5)  # full-bandwidth channels by acmod

#: Sample entry fourcc -> codec family.
MP4_ENTRIES = {
    "mp4a": "aac",
    "ac-3": "ac-3",
    "ec-3": "ec-3",
    "ac-4": "ac-4",
    "Opus": "opus",
    "fLaC": "flac",
    ".mp3": "mp3",
    "alac": "alac",
    "avc1": "avc",
    "avc3": "avc",
    "hvc1": "hevc",
    "hev1": "hevc",
    "dvh1": "hevc",
    "dvhe": "hevc",
    "av01": "av1",
    "vp08": "vp8",
    "vp09": "vp9",
    "mp4v": "mp4v",
}
#: MPEG-4 objectTypeIndication of an mp4a entry that is not AAC.
MP4_OBJECT_TYPES = {0x69: "mpa", 0x6B: "mpa", 0xA5: "ac-3", 0xA6: "ec-3", 0xAD: "opus"}
#: AudioSpecificConfig object types of MPEG audio carried as mp4a (mp4a.40.32..34).
MPEG_AOTS = (32, 33, 34)
#: Packed audio: the container named by its frames' family.
PACKED_CONTAINERS = {"aac": "adts", "mpa": "mp3", "ac-3": "ac-3", "ec-3": "ec-3"}
AUDIO_FAMILIES = frozenset({"aac", "mpa", "mp3", "ac-3", "ec-3", "ac-4", "opus", "flac", "alac"})


@dataclass(frozen=True)
class MediaFormat:
    """What one variant's media is, as far as its bytes (or CODECS) tell; None = unknown.

    container: "fmp4", "ts", or the packed audio's "adts", "mp3", "ac-3", "ec-3".
    codecs: the codec families of its tracks, sorted ("aac", "avc", "mpa", ...).
    sample_rate / channels: of its (first) audio track. pids: for TS, the
    (PID, stream_type) of each elementary stream.
    """

    container: str | None = None
    codecs: tuple[str, ...] | None = None
    sample_rate: int | None = None
    channels: int | None = None
    pids: tuple[tuple[int, int], ...] | None = None

    def differences(self, other: MediaFormat) -> list[str]:
        """The fields both know and that differ, each as 'name a ≠ b'."""
        found = []
        for field in fields(self):
            mine, theirs = getattr(self, field.name), getattr(other, field.name)
            if mine is not None and theirs is not None and mine != theirs:
                found.append(f"{field.name} {_show(mine)} ≠ {_show(theirs)}")
        return found

    def merged(self, fallback: MediaFormat) -> MediaFormat:
        """This format, with `fallback`'s fields where this one does not know."""
        changes = {f.name: getattr(fallback, f.name) for f in fields(self) if getattr(self, f.name) is None}
        return replace(self, **changes)

    @property
    def known(self) -> bool:
        """True when the bytes told anything."""
        return any(getattr(self, f.name) is not None for f in fields(self))


def _show(value: object) -> str:
    if isinstance(value, tuple):
        return "+".join(f"{v[0]:#x}:{v[1]:#x}" if isinstance(v, tuple) else str(v) for v in value)
    return str(value)


def sniff(data: bytes) -> MediaFormat:
    """The format of an init section or a segment's first bytes; unknown bytes give all None."""
    view = memoryview(data)
    if len(view) >= 8 and bytes(view[4:8]) in (b"ftyp", b"moov", b"styp", b"moof", b"sidx", b"free"):
        return sniff_mp4(view)
    if is_ts(view):
        return sniff_ts(view)
    start = id3_length(view)
    return sniff_packed(view[start:])


def id3_length(data: memoryview | bytes) -> int:
    """Bytes of a leading ID3v2 tag (header, body, footer), 0 when there is none."""
    if len(data) < 10 or bytes(data[:3]) != b"ID3":
        return 0
    size = 0
    for byte in data[6:10]:
        size = (size << 7) | (byte & 0x7F)
    footer = 10 if data[5] & 0x10 else 0
    return 10 + size + footer


# -- fMP4 ----------------------------------------------------------------------


def _boxes(data: memoryview) -> Iterator[tuple[bytes, memoryview]]:
    """(type, body) of each box in `data`, stopping at a truncated one."""
    pos = 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack_from(">I4s", data, pos)
        head = 8
        if size == 1 and pos + 16 <= len(data):
            size, head = struct.unpack_from(">Q", data, pos + 8)[0], 16
        elif size == 0:
            size = len(data) - pos
        if size < head or pos + size > len(data):
            return
        yield kind, data[pos + head : pos + size]
        pos += size


def _find(data: memoryview, path: tuple[bytes, ...]) -> Iterator[memoryview]:
    """Bodies of the boxes at `path` (every match at each level)."""
    for kind, body in _boxes(data):
        if kind == path[0]:
            if len(path) == 1:
                yield body
            else:
                yield from _find(body, path[1:])


def sniff_mp4(data: memoryview) -> MediaFormat:
    """An fMP4 init section's tracks; a media segment alone tells only the container."""
    codecs: list[str] = []
    rate = channels = None
    for stsd in _find(data, (b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stsd")):
        for kind, entry in _boxes(stsd[8:]):
            family, entry_rate, entry_channels = _sample_entry(kind, entry)
            if family is None:
                continue
            codecs.append(family)
            if family in AUDIO_FAMILIES and rate is None:
                rate, channels = entry_rate, entry_channels
    return MediaFormat("fmp4", tuple(sorted(codecs)) if codecs else None, rate, channels)


def _sample_entry(kind: bytes, entry: memoryview) -> tuple[str | None, int | None, int | None]:
    """(family, sample rate, channels) of one stsd sample entry."""
    fourcc = kind.decode("latin-1")
    children = entry[28:] if len(entry) >= 28 else memoryview(b"")
    if fourcc in ("enca", "encv"):
        # Protected: the original format is in sinf/frma.
        inner = entry[28:] if fourcc == "enca" else entry[78:]
        for frma in _find(inner, (b"sinf", b"frma")):
            fourcc = bytes(frma[:4]).decode("latin-1")
    family = MP4_ENTRIES.get(fourcc)
    if family is None or family not in AUDIO_FAMILIES or len(entry) < 28:
        return family, None, None
    version = struct.unpack_from(">H", entry, 8)[0]
    channels, _, _, _, rate = struct.unpack_from(">HHHHI", entry, 16)
    rate >>= 16  # 16.16 fixed point
    if version == 1:
        children = entry[44:]
    elif version == 2:
        # QuickTime SoundDescriptionV2: a float64 rate and a 32-bit channel count.
        children = entry[64:]
        if len(entry) >= 44:
            rate = round(struct.unpack_from(">d", entry, 32)[0])
            channels = struct.unpack_from(">I", entry, 40)[0]
    if fourcc == "mp4a":
        family = _esds_family(children) or family
    return family, rate or None, channels or None


def _esds_family(children: memoryview) -> str | None:
    """The family an mp4a entry's esds names (MP3 and AC-3 also travel as mp4a)."""
    for esds in _find(children, (b"esds",)):
        body = bytes(esds[4:])
        config = _descriptor(body, 0x03)
        if config is None or len(config) < 3:
            return None
        flags, skip = config[2], 3
        skip += (2 if flags & 0x80 else 0) + (2 if flags & 0x20 else 0)
        if flags & 0x40 and len(config) > skip:
            skip += 1 + config[skip]
        decoder = _descriptor(config[skip:], 0x04)
        if not decoder:
            return None
        if decoder[0] in MP4_OBJECT_TYPES:
            return MP4_OBJECT_TYPES[decoder[0]]
        specific = _descriptor(decoder[13:], 0x05)
        if decoder[0] == 0x40 and specific:
            aot = specific[0] >> 3
            if aot == 31 and len(specific) > 1:
                aot = 32 + ((specific[0] & 0x07) << 3 | specific[1] >> 5)
            return "mpa" if aot in MPEG_AOTS else "aac"
    return None


def _descriptor(data: bytes, tag: int) -> bytes | None:
    """The body of the MPEG-4 descriptor at the start of `data` if it has `tag`."""
    if len(data) < 2 or data[0] != tag:
        return None
    size, pos = 0, 1
    while pos < len(data) and pos <= 4:
        byte = data[pos]
        size = (size << 7) | (byte & 0x7F)
        pos += 1
        if not byte & 0x80:
            break
    return data[pos : pos + size]


# -- MPEG-TS -------------------------------------------------------------------


def sniff_ts(data: memoryview) -> MediaFormat:
    """A TS segment's PMT streams and the first frame header of its audio."""
    streams = ts_streams(data)
    if not streams:
        return MediaFormat("ts")
    families = tuple(sorted({f for _, _, f in streams if f is not None})) or None
    pids = tuple((pid, kind) for pid, kind, _ in streams)
    audio = next(((pid, f) for pid, _, f in streams if f in AUDIO_FAMILIES), None)
    rate = channels = None
    if audio is not None:
        frame = _frame(first_pes(data, audio[0]), audio[1])
        rate, channels = frame.sample_rate, frame.channels
    return MediaFormat("ts", families, rate, channels, pids)


# -- frame headers ---------------------------------------------------------------


def sniff_packed(data: memoryview | bytes) -> MediaFormat:
    """Packed audio (its leading ID3 tag already skipped): the first frame's header."""
    head = bytes(data[:8])
    if len(head) < 7:
        return MediaFormat()
    for family in ("aac", "mpa", "ac-3"):
        frame = _frame(head, family)
        if frame.codecs is not None:
            container = PACKED_CONTAINERS[frame.codecs[0]]
            return MediaFormat(container, frame.codecs, frame.sample_rate, frame.channels)
    return MediaFormat()


def _frame(data: bytes, family: str) -> MediaFormat:
    """Sample rate and channels from the first frame header of `family` found at the start of `data`."""
    if family == "aac":
        return _adts(data)
    if family in ("mpa", "mp3"):
        return _mpeg_audio(data)
    if family in ("ac-3", "ec-3"):
        return _ac3(data)
    return MediaFormat()


def _adts(data: bytes) -> MediaFormat:
    if len(data) < 7 or data[0] != 0xFF or data[1] & 0xF6 != 0xF0:
        return MediaFormat()
    index = (data[2] >> 2) & 0x0F
    config = (data[2] & 0x01) << 2 | data[3] >> 6
    rate = ADTS_RATES[index] if index < len(ADTS_RATES) else None
    channels = 8 if config == 7 else (config or None)
    return MediaFormat(codecs=("aac",), sample_rate=rate, channels=channels)


def _mpeg_audio(data: bytes) -> MediaFormat:
    if len(data) < 4 or data[0] != 0xFF or data[1] & 0xE0 != 0xE0:
        return MediaFormat()
    version, layer = (data[1] >> 3) & 0x3, (data[1] >> 1) & 0x3
    index = (data[2] >> 2) & 0x3
    if version == 1 or layer == 0 or index == 3 or (data[2] >> 4) == 0xF:
        return MediaFormat()
    channels = 1 if data[3] >> 6 == 3 else 2
    return MediaFormat(codecs=("mpa",), sample_rate=MPEG_RATES[version][index], channels=channels)


def _ac3(data: bytes) -> MediaFormat:
    if len(data) < 7 or data[:2] != b"\x0b\x77":
        return MediaFormat()
    bsid = data[5] >> 3
    if bsid > 16:
        return MediaFormat()
    bits = _Bits(data)
    if bsid <= 10:
        bits.skip(32)  # syncword, crc1
        fscod = bits.take(2)
        bits.skip(6 + 5 + 3)  # frmsizecod, bsid, bsmod
        acmod = bits.take(3)
        if acmod & 1 and acmod != 1:
            bits.skip(2)  # cmixlev
        if acmod & 4:
            bits.skip(2)  # surmixlev
        if acmod == 2:
            bits.skip(2)  # dsurmod
        lfe = bits.take(1)
        rate = AC3_RATES[fscod] if fscod < 3 else None
        return MediaFormat(codecs=("ac-3",), sample_rate=rate, channels=AC3_CHANNELS[acmod] + lfe)
    bits.skip(16 + 2 + 3 + 11)  # syncword, strmtyp, substreamid, frmsiz
    fscod = bits.take(2)
    code = bits.take(2)  # fscod2, or numblkscod
    rate = EAC3_HALF_RATES[code] if fscod == 3 and code < 3 else (AC3_RATES[fscod] if fscod < 3 else None)
    acmod = bits.take(3)
    lfe = bits.take(1)
    return MediaFormat(codecs=("ec-3",), sample_rate=rate, channels=AC3_CHANNELS[acmod] + lfe)


class _Bits:
    """A big-endian bit reader over a frame header."""

    def __init__(self, data: bytes) -> None:
        self._value = int.from_bytes(data[:8].ljust(8, b"\0"), "big")
        self._pos = 0

    def skip(self, count: int) -> None:
        self._pos += count

    def take(self, count: int) -> int:
        self._pos += count
        return (self._value >> (64 - self._pos)) & ((1 << count) - 1)


__all__ = ["HEAD_BYTES", "MediaFormat", "id3_length", "sniff"]
