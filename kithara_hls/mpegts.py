"""MPEG-TS heads (pure byte parsing): which elementary streams a segment carries.

The packets of a TS segment's head, its PAT and first PMT: each stream's PID,
stream_type and codec family (from the stream_type, or the descriptors of a
private-data stream), and the payload of a PID's first PES, where `sniff` reads
the audio's first frame header.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

TS_PACKET = 188

#: PMT stream_type -> codec family (ISO/IEC 13818-1, ATSC A/52, SCTE and Apple's HLS usage).
TS_STREAM_TYPES = {
    0x01: "mpeg2video",
    0x02: "mpeg2video",
    0x03: "mpa",
    0x04: "mpa",
    0x0F: "aac",
    0x11: "aac",
    0x1B: "avc",
    0x24: "hevc",
    0x81: "ac-3",
    0x87: "ec-3",
    0xC1: "ac-3",  # SAMPLE-AES AC-3
    0xC2: "ec-3",  # SAMPLE-AES E-AC-3
    0xCF: "aac",  # SAMPLE-AES ADTS AAC
    0xDB: "avc",  # SAMPLE-AES H.264
}
#: Registration (0x05) and DVB descriptors that name the codec of a stream_type 0x06 stream.
TS_REGISTRATIONS = {b"AC-3": "ac-3", b"EAC3": "ec-3", b"Opus": "opus", b"HEVC": "hevc"}
TS_DESCRIPTOR_TAGS = {0x6A: "ac-3", 0x7A: "ec-3"}


def is_ts(data: memoryview) -> bool:
    """True when `data` begins with TS packets (a sync byte every 188 bytes)."""
    if len(data) < TS_PACKET or data[0] != 0x47:
        return False
    return all(data[i] == 0x47 for i in range(0, min(len(data), 3 * TS_PACKET), TS_PACKET))


def _packets(data: memoryview) -> Iterator[tuple[int, bool, memoryview]]:
    """(PID, payload_unit_start, payload) of each whole TS packet."""
    for pos in range(0, len(data) - TS_PACKET + 1, TS_PACKET):
        packet = data[pos : pos + TS_PACKET]
        if packet[0] != 0x47:
            return
        pid = (packet[1] & 0x1F) << 8 | packet[2]
        control = (packet[3] >> 4) & 0x3
        start = 4
        if control & 0x2:
            start += 1 + packet[4]
        if not control & 0x1 or start >= TS_PACKET:
            continue
        yield pid, bool(packet[1] & 0x40), packet[start:]


def _section(payload: memoryview) -> memoryview | None:
    """A PSI section (after its pointer field), up to its CRC."""
    if not payload:
        return None
    pos = 1 + payload[0]
    if pos + 3 > len(payload):
        return None
    length = (payload[pos + 1] & 0x0F) << 8 | payload[pos + 2]
    end = pos + 3 + length - 4
    return payload[pos:end] if end <= len(payload) else None


def ts_streams(data: memoryview) -> list[tuple[int, int, str | None]]:
    """(PID, stream_type, family) of each stream the first PMT lists; empty when the head holds none."""
    pmt_pid = None
    streams: list[tuple[int, int, str | None]] = []
    for pid, unit_start, payload in _packets(data):
        if pid == 0 and unit_start and pmt_pid is None:
            pat = _section(payload)
            if pat is not None and len(pat) >= 12:
                programs = [struct.unpack_from(">HH", pat, i) for i in range(8, len(pat) - 3, 4)]
                pmt_pid = next((p & 0x1FFF for n, p in programs if n != 0), None)
        elif pid == pmt_pid and unit_start:
            pmt = _section(payload)
            if pmt is not None:
                streams = _pmt_streams(pmt)
                break
    return streams


def _pmt_streams(pmt: memoryview) -> list[tuple[int, int, str | None]]:
    """(PID, stream_type, family) of each elementary stream a PMT lists (not timed metadata)."""
    streams = []
    info = (pmt[10] & 0x0F) << 8 | pmt[11] if len(pmt) >= 12 else 0
    pos = 12 + info
    while pos + 5 <= len(pmt):
        kind = pmt[pos]
        pid = (pmt[pos + 1] & 0x1F) << 8 | pmt[pos + 2]
        length = (pmt[pos + 3] & 0x0F) << 8 | pmt[pos + 4]
        descriptors = pmt[pos + 5 : pos + 5 + length]
        family = TS_STREAM_TYPES.get(kind)
        if kind == 0x06:
            family = _described(descriptors)
        if kind != 0x15:  # ID3 timed metadata travels beside any audio
            streams.append((pid, kind, family))
        pos += 5 + length
    return streams


def _described(descriptors: memoryview) -> str | None:
    """The codec a private-data stream's descriptors name."""
    pos = 0
    while pos + 2 <= len(descriptors):
        tag, length = descriptors[pos], descriptors[pos + 1]
        body = bytes(descriptors[pos + 2 : pos + 2 + length])
        if tag in TS_DESCRIPTOR_TAGS:
            return TS_DESCRIPTOR_TAGS[tag]
        if tag == 0x05 and body[:4] in TS_REGISTRATIONS:
            return TS_REGISTRATIONS[body[:4]]
        pos += 2 + length
    return None


def first_pes(data: memoryview, wanted: int) -> bytes:
    """The payload of the first PES of PID `wanted` (as much as `data` holds of it)."""
    out = bytearray()
    for pid, unit_start, payload in _packets(data):
        if pid != wanted:
            continue
        if unit_start:
            if out:
                break
            if len(payload) < 9 or bytes(payload[:3]) != b"\x00\x00\x01":
                continue
            out += payload[9 + payload[8] :]
        elif out:
            out += payload
    return bytes(out)


__all__ = ["TS_PACKET", "first_pes", "is_ts", "ts_streams"]
