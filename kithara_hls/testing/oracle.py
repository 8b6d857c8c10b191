"""The independent oracle of the fixtures: `StreamFixture`, and the bytes a client must produce,
read from a built stream by plain line parsing and PyCryptodome, trusting no HLS library."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Key:
    """An AES-128 key: its URI, and its IV (None: the media sequence number)."""

    uri: str
    iv: bytes | None


@dataclass(frozen=True)
class Entry:
    """A segment or EXT-X-MAP init section of a media playlist."""

    uri: str
    duration: float
    sequence: int
    byterange: tuple[int, int] | None  # (offset, length)
    key: Key | None


@dataclass
class Media:
    """A parsed media playlist: its segments, and its init section if any."""

    segments: list[Entry] = field(default_factory=list)
    init: Entry | None = None


@dataclass(frozen=True)
class StreamFixture:
    """A built stream: where it is, what to open, and the bytes a client must produce."""

    name: str
    root: Path
    entry: str
    media: tuple[str, ...]

    @property
    def duration(self) -> float:
        """Sum of the EXTINF durations of variant 0."""
        return sum(self.durations(0))

    def durations(self, variant: int = 0) -> list[float]:
        """The EXTINF duration of each segment of `variant`."""
        return [seg.duration for seg in self._media(variant)[1].segments]

    def init_bytes(self, variant: int = 0) -> bytes | None:
        """The (decrypted) EXT-X-MAP section of `variant`, or None."""
        base, media = self._media(variant)
        return None if media.init is None else load(base, media.init)

    def segment_bytes(self, variant: int = 0) -> list[bytes]:
        """Each segment's (decrypted) bytes, without the init section."""
        base, media = self._media(variant)
        return [load(base, seg) for seg in media.segments]

    def expected(self, variant: int = 0) -> bytes:
        """The stitched stream of `variant`: init section once, then every segment."""
        return (self.init_bytes(variant) or b"") + b"".join(self.segment_bytes(variant))

    def _media(self, variant: int) -> tuple[Path, Media]:
        path = self.root / self.media[variant]
        return path.parent, parse_media(path)


def _attrs(text: str) -> dict[str, str]:
    return {k: v.strip('"') for k, v in re.findall(r'([A-Z0-9-]+)=("[^"]*"|[^,]*)', text)}


def parse_media(path: Path) -> Media:
    """A media playlist, read by plain line parsing (the oracle trusts no HLS library)."""
    media, sequence, key = Media(), 0, None
    duration, pending_range = 0.0, None
    ends: dict[str, int] = {}
    for line in (s.strip() for s in path.read_text().splitlines()):
        tag, _, value = line.partition(":")
        if tag == "#EXT-X-MEDIA-SEQUENCE":
            sequence = int(value)
        elif tag == "#EXT-X-KEY":
            attrs = _attrs(value)
            iv = bytes.fromhex(attrs["IV"][2:]) if "IV" in attrs else None
            key = None if attrs["METHOD"] == "NONE" else Key(attrs["URI"], iv)
        elif tag == "#EXT-X-MAP":
            attrs = _attrs(value)
            span = _byterange(attrs.get("BYTERANGE"), 0)
            media.init = Entry(attrs["URI"], 0.0, sequence + len(media.segments), span, key)
        elif tag == "#EXTINF":
            duration = float(value.split(",")[0])
        elif tag == "#EXT-X-BYTERANGE":
            pending_range = value
        elif line and not line.startswith("#"):
            span = _byterange(pending_range, ends.get(line, 0))
            if span is not None:
                ends[line] = span[0] + span[1]
            media.segments.append(Entry(line, duration, sequence + len(media.segments), span, key))
            pending_range = None
    return media


def _byterange(value: str | None, default_offset: int) -> tuple[int, int] | None:
    if value is None:
        return None
    length, _, offset = value.partition("@")
    return (int(offset) if offset else default_offset), int(length)


def load(base: Path, entry: Entry) -> bytes:
    """The bytes of `entry`, whose URIs are relative to `base`: its byte range, decrypted."""
    data = (base / entry.uri).read_bytes()
    if entry.byterange is not None:
        offset, length = entry.byterange
        data = data[offset : offset + length]
    if entry.key is None:
        return data
    from Crypto.Cipher import AES
    from Crypto.Util.Padding import unpad

    iv = entry.key.iv or entry.sequence.to_bytes(16, "big")
    cipher = AES.new((base / entry.key.uri).read_bytes(), AES.MODE_CBC, iv)
    return bytes(unpad(cipher.decrypt(data), AES.block_size))


@dataclass(frozen=True)
class Placed:
    """A segment of a media playlist with what surrounds it: the init section in force,
    whether EXT-X-GAP marks it, and whether EXT-X-DISCONTINUITY comes before it."""

    segment: Entry
    init: Entry | None
    gap: bool
    discontinuity: bool


def parse_placed(path: Path) -> list[Placed]:
    """Every segment of a media playlist, in order, with its init section, byte ranges, and its
    GAP and DISCONTINUITY flags (plain line parsing; no keys, which these fixtures lack)."""
    placed: list[Placed] = []
    sequence, duration, init = 0, 0.0, None
    gap = discontinuity = False
    pending_range = None
    ends: dict[str, int] = {}
    for line in (s.strip() for s in path.read_text().splitlines()):
        tag, _, value = line.partition(":")
        if tag == "#EXT-X-MEDIA-SEQUENCE":
            sequence = int(value)
        elif tag == "#EXT-X-MAP":
            attrs = _attrs(value)
            span = _byterange(attrs.get("BYTERANGE"), 0)
            init = Entry(attrs["URI"], 0.0, sequence + len(placed), span, None)
        elif tag == "#EXTINF":
            duration = float(value.split(",")[0])
        elif tag == "#EXT-X-BYTERANGE":
            pending_range = value
        elif tag == "#EXT-X-GAP":
            gap = True
        elif tag == "#EXT-X-DISCONTINUITY":
            discontinuity = True
        elif line and not line.startswith("#"):
            span = _byterange(pending_range, ends.get(line, 0))
            if span is not None:
                ends[line] = span[0] + span[1]
            seg = Entry(line, duration, sequence + len(placed), span, None)
            placed.append(Placed(seg, init, gap, discontinuity))
            gap = discontinuity = False
            pending_range = None
    return placed


def read_span(path: Path, span: tuple[int, int] | None) -> bytes:
    """The bytes of `path`, or of its (offset, length) `span`."""
    data = path.read_bytes()
    return data if span is None else data[span[0] : span[0] + span[1]]


def id3_length(data: bytes) -> int:
    """The length of the ID3v2 tag `data` begins with (header, frames and footer), or 0."""
    if len(data) < 10 or data[:3] != b"ID3" or data[3] == 0xFF or data[4] == 0xFF:
        return 0
    size = 0
    for byte in data[6:10]:
        if byte & 0x80:
            return 0
        size = (size << 7) | byte
    footer = 10 if data[5] & 0x10 else 0
    return 10 + size + footer


def presented(segments: list[bytes], inits: list[tuple[str, bytes] | None], *, packed: bool = False) -> bytes:
    """The stream a client presents from `segments` in order, each after its init section
    (uri, bytes), written again only where the EXT-X-MAP URI changes. Packed audio: every segment
    after the first without its leading ID3 tag, so one decoder reads it as one elementary stream."""
    out: list[bytes] = []
    current: str | None = None
    for i, (data, init) in enumerate(zip(segments, inits, strict=True)):
        if init is not None and init[0] != current:
            out.append(init[1])
            current = init[0]
        out.append(data[id3_length(data) :] if packed and i > 0 else data)
    return b"".join(out)
