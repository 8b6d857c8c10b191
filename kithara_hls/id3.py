"""ID3v2 tags at the head of packed audio segments; pure functions over bytes.

RFC 8216 §3.4: each packed audio segment (raw ADTS AAC, MP3, AC-3, E-AC-3)
begins with an ID3v2 tag holding a PRIV frame named
``com.apple.streaming.transportStreamTimestamp``: the 33-bit MPEG-2 timestamp
(90 kHz) of the segment's first sample. Concatenated as they are, the tags of
the second segment on sit in the middle of the audio, where decoders report
errors; the stream therefore presents them without those tags.
"""

from __future__ import annotations

#: Bytes of an ID3v2 header (and of its optional footer).
HEADER_BYTES = 10
#: The owner of the PRIV frame that holds a packed audio segment's timestamp.
TIMESTAMP_OWNER = b"com.apple.streaming.transportStreamTimestamp"
#: The MPEG-2 timestamp clock, in ticks per second.
TIMESTAMP_HZ = 90_000

_FOOTER_FLAG = 0x10


def _syncsafe(data: bytes | memoryview) -> int | None:
    """A 28-bit syncsafe integer (7 bits a byte), or None if a byte has its top bit set."""
    value = 0
    for byte in data:
        if byte & 0x80:
            return None
        value = value << 7 | byte
    return value


def tag_length(head: bytes | memoryview) -> int:
    """Length of the ID3v2 tag `head` begins with (header, frames, footer); 0 if it begins with none.

    `head` needs only the first HEADER_BYTES bytes; fewer (a tiny resource)
    reads as no tag.
    """
    if len(head) < HEADER_BYTES or bytes(head[:3]) != b"ID3":
        return 0
    major, flags = head[3], head[5]
    size = _syncsafe(head[6:10])
    if major == 0xFF or head[4] == 0xFF or size is None:
        return 0
    footer = HEADER_BYTES if flags & _FOOTER_FLAG and major >= 4 else 0
    return HEADER_BYTES + size + footer


def transport_timestamp(tag: bytes | memoryview) -> float | None:
    """Seconds of the PRIV transportStreamTimestamp in the ID3v2 tag `tag` (whole), or None.

    Frames of ID3v2.3 and v2.4 are read (v2.4 frame sizes are syncsafe); a tag
    using unsynchronisation or an extended header is skipped over as far as its
    flags tell.
    """
    data = bytes(tag)
    if tag_length(data) == 0:
        return None
    major, flags = data[3], data[5]
    end = min(len(data), HEADER_BYTES + (_syncsafe(data[6:10]) or 0))  # the frames, before any footer
    pos = HEADER_BYTES
    if flags & 0x40 and pos + 4 <= end:  # extended header: its size comes first
        ext = _syncsafe(data[pos : pos + 4]) if major >= 4 else int.from_bytes(data[pos : pos + 4], "big") + 4
        pos += ext or 0
    while pos + HEADER_BYTES <= end:
        frame_id = data[pos : pos + 4]
        raw_size = data[pos + 4 : pos + 8]
        size = _syncsafe(raw_size) if major >= 4 else int.from_bytes(raw_size, "big")
        if size is None or frame_id == b"\0\0\0\0":
            return None
        body = data[pos + HEADER_BYTES : pos + HEADER_BYTES + size]
        if frame_id == b"PRIV" and body.startswith(TIMESTAMP_OWNER + b"\0"):
            stamp = body[len(TIMESTAMP_OWNER) + 1 :]
            if len(stamp) < 8:
                return None
            return (int.from_bytes(stamp[:8], "big") & (2**33 - 1)) / TIMESTAMP_HZ
        pos += HEADER_BYTES + size
    return None


def priv_timestamp_tag(seconds: float) -> bytes:
    """An ID3v2.4 tag holding only the PRIV transportStreamTimestamp of `seconds` (as packagers
    write it): for building test streams."""
    ticks = round(seconds * TIMESTAMP_HZ) & (2**33 - 1)
    body = TIMESTAMP_OWNER + b"\0" + ticks.to_bytes(8, "big")
    frame = b"PRIV" + _to_syncsafe(len(body)) + b"\0\0" + body
    return b"ID3\x04\x00\x00" + _to_syncsafe(len(frame)) + frame


def _to_syncsafe(value: int) -> bytes:
    return bytes((value >> shift) & 0x7F for shift in (21, 14, 7, 0))
