"""The encrypted fixtures: AES-128 streams from the hls muxer's key info file, and by hand (IV from
the media sequence, key rotation, an encrypted EXT-X-MAP init), with their keys and IVs."""

from __future__ import annotations

from pathlib import Path

from .building import build_once, hls, single_media, target_duration, write_media
from .oracle import StreamFixture, parse_media

AES_TS_KEY = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
AES_TS_IV = bytes.fromhex("a0a1a2a3a4a5a6a7a8a9aaabacadaeaf")
AES_MANUAL_KEYS = (
    bytes.fromhex("101112131415161718191a1b1c1d1e1f"),
    bytes.fromhex("202122232425262728292a2b2c2d2e2f"),
)
AES_MANUAL_SEQUENCE = 7
AES_FMP4_KEY = bytes.fromhex("303132333435363738393a3b3c3d3e3f")
AES_FMP4_IV = bytes.fromhex("b0b1b2b3b4b5b6b7b8b9babbbcbdbebf")


def encrypt(path: Path, key: bytes, iv: bytes) -> None:
    """Encrypt the file at `path` in place: AES-128-CBC with PKCS#7 padding."""
    from Crypto.Cipher import AES
    from Crypto.Util.Padding import pad

    path.write_bytes(AES.new(key, AES.MODE_CBC, iv).encrypt(pad(path.read_bytes(), AES.block_size)))


def key_line(uri: str | None, iv: bytes | None = None) -> str:
    """An EXT-X-KEY line: METHOD=NONE without `uri`, else AES-128 with the IV if given."""
    if uri is None:
        return "#EXT-X-KEY:METHOD=NONE"
    iv_attr = "" if iv is None else f",IV=0x{iv.hex()}"
    return f'#EXT-X-KEY:METHOD=AES-128,URI="{uri}"{iv_attr}'


def build_aes_ts(
    root: str | Path, *, name: str = "aes", seconds: float = 12.0, segment_seconds: float = 2.0
) -> StreamFixture:
    """AES-128 TS from the hls muxer's key info file: key URI ``key.key``, IV attribute."""

    def make(work: Path) -> None:
        (work / "key.key").write_bytes(AES_TS_KEY)
        info = work / "keyinfo.txt"
        info.write_text(f"key.key\n{work / 'key.key'}\n{AES_TS_IV.hex()}\n")
        hls(work / "index.m3u8", segment_seconds, 64_000, seconds, hls_key_info_file=str(info))
        info.unlink()

    root = build_once(root, name, {"seconds": seconds, "segment_seconds": segment_seconds}, make)
    return single_media(root, name)


def build_aes_manual(
    root: str | Path, *, name: str = "aes_manual", seconds: float = 12.0, segment_seconds: float = 2.0
) -> StreamFixture:
    """Hand-encrypted TS: no IV (IV = sequence), media sequence 7, key rotation, a clear segment."""

    def make(work: Path) -> None:
        hls(work / "index.m3u8", segment_seconds, 64_000, seconds)
        segments = parse_media(work / "index.m3u8").segments
        (work / "keys").mkdir()
        for index, key in enumerate(AES_MANUAL_KEYS):
            (work / "keys" / f"k{index}.key").write_bytes(key)
        clear = len(segments) - 2
        body: list[str] = []
        current: int | None = -1
        for i, seg in enumerate(segments):
            key_index = None if i == clear else int(i >= len(segments) // 2)
            if key_index != current:
                body.append(key_line(None if key_index is None else f"keys/k{key_index}.key"))
                current = key_index
            if key_index is not None:
                sequence = AES_MANUAL_SEQUENCE + i
                encrypt(work / seg.uri, AES_MANUAL_KEYS[key_index], sequence.to_bytes(16, "big"))
            body += [f"#EXTINF:{seg.duration:.6f},", seg.uri]
        header = [
            "#EXT-X-VERSION:3",
            f"#EXT-X-TARGETDURATION:{target_duration(segments)}",
            f"#EXT-X-MEDIA-SEQUENCE:{AES_MANUAL_SEQUENCE}",
        ]
        write_media(work / "index.m3u8", header, body)

    root = build_once(root, name, {"seconds": seconds, "segment_seconds": segment_seconds}, make)
    return single_media(root, name)


def build_aes_fmp4(
    root: str | Path, *, name: str = "aes_fmp4", seconds: float = 12.0, segment_seconds: float = 2.0
) -> StreamFixture:
    """Hand-encrypted fMP4 whose EXT-X-MAP init is encrypted too (KEY before MAP, IV given)."""

    def make(work: Path) -> None:
        segments_pattern = str(work / "seg_%03d.m4s")
        hls(
            work / "index.m3u8",
            segment_seconds,
            64_000,
            seconds,
            hls_segment_type="fmp4",
            hls_segment_filename=segments_pattern,
        )
        media = parse_media(work / "index.m3u8")
        if media.init is None:
            raise RuntimeError("hls muxer wrote no EXT-X-MAP")
        (work / "key.key").write_bytes(AES_FMP4_KEY)
        body = [key_line("key.key", AES_FMP4_IV), f'#EXT-X-MAP:URI="{media.init.uri}"']
        for entry in [media.init, *media.segments]:
            encrypt(work / entry.uri, AES_FMP4_KEY, AES_FMP4_IV)
        for seg in media.segments:
            body += [f"#EXTINF:{seg.duration:.6f},", seg.uri]
        header = [
            "#EXT-X-VERSION:7",
            f"#EXT-X-TARGETDURATION:{target_duration(media.segments)}",
        ]
        write_media(work / "index.m3u8", [*header, "#EXT-X-MEDIA-SEQUENCE:0"], body)

    root = build_once(root, name, {"seconds": seconds, "segment_seconds": segment_seconds}, make)
    return single_media(root, name)
