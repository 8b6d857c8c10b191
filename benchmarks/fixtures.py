"""Benchmark fixtures: the streams the benchmark lines read, built once under a work folder.

Codec-free streams come from `kithara_hls.testing.build_large` (seeded random
bytes, EXTINF 4.0), the long titles of the far-seek line too, with tiny
segments so that 40,000 of them build in seconds; the AES-128 copy is encrypted here with pycryptodome (IV =
media sequence number, no IV attribute); the AAC stream is written by ffmpeg's
HLS muxer through PyAV. Every build leaves a marker, so a kept ``--workdir`` is
reused by the next run.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

from kithara_hls import testing

KIB = 1024
#: The AES-128 key of the encrypted copy (served as ``key.key`` beside its playlist).
AES_KEY = bytes.fromhex("6b697468617261206265636e63686b31")
#: Media sequence number of the first segment, also its IV.
AES_SEQUENCE = 0
_MARKER = ".bench-complete"


@dataclass(frozen=True)
class Sizes:
    """How big each fixture is (segments × bytes), for a full run or a smoke test."""

    large_segments: int
    large_bytes: int
    hour_segments: int
    hour_bytes: int
    huge_segments: int
    huge_bytes: int
    parse_segments: int
    aac_seconds: float
    #: Segment counts of the long titles (the far-seek line), and their segments' size.
    long_segments: tuple[int, ...] = (900, 40_000)
    long_bytes: int = 1 * KIB


#: The sizes the targets are stated for: 100 × 512 KiB, 900 × 64 KiB, 1000 × 512 KiB.
FULL = Sizes(100, 512 * KIB, 900, 64 * KIB, 1000, 512 * KIB, 1_200, 240.0)
#: A smoke test: the same shapes, smaller bodies (the long titles stay: their length is the point).
QUICK = Sizes(20, 512 * KIB, 900, 16 * KIB, 100, 512 * KIB, 1_200, 48.0)


@dataclass(frozen=True)
class Stream:
    """A built media playlist: `entry` relative to the served root, its segment files, its bytes."""

    name: str
    entry: str
    files: tuple[Path, ...]
    nbytes: int
    segment_bytes: int

    @property
    def segments(self) -> int:
        """How many segments the playlist lists."""
        return len(self.files)


def _media_files(playlist: Path) -> tuple[Path, ...]:
    lines = (line.strip() for line in playlist.read_text().splitlines())
    return tuple(playlist.parent / line for line in lines if line and not line.startswith("#"))


def _stream(root: Path, name: str, entry: str, plain_bytes: int | None = None) -> Stream:
    files = _media_files(root / entry)
    sizes = [f.stat().st_size for f in files]
    nbytes = plain_bytes if plain_bytes is not None else sum(sizes)
    return Stream(name, entry, files, nbytes, max(sizes))


class Fixtures:
    """Builds each fixture on first use, under `root` (the folder the origin serves)."""

    def __init__(self, root: str | Path, sizes: Sizes) -> None:
        self.root = Path(root)
        self.sizes = sizes
        self.root.mkdir(parents=True, exist_ok=True)
        self._long: dict[int, Stream] = {}

    def _large(self, name: str, segments: int, segment_bytes: int) -> Stream:
        fixture = testing.build_large(self.root, name=name, segments=segments, segment_bytes=segment_bytes)
        return _stream(self.root, name, fixture.entry)

    @functools.cached_property
    def large(self) -> Stream:
        """The WAN / loopback / 50 MB stream: 100 × 512 KiB by default."""
        s = self.sizes
        return self._large(f"large_{s.large_segments}", s.large_segments, s.large_bytes)

    @functools.cached_property
    def hour(self) -> Stream:
        """The "1-hour" stream for the seek line: 900 segments of EXTINF 4.0."""
        s = self.sizes
        return self._large(f"hour_{s.hour_segments}", s.hour_segments, s.hour_bytes)

    def long_title(self, segments: int) -> Stream:
        """A title of `segments` tiny segments (`Sizes.long_bytes` each, EXTINF 4.0), for far seeks."""
        if segments not in self._long:
            self._long[segments] = self._large(f"long_{segments}", segments, self.sizes.long_bytes)
        return self._long[segments]

    @functools.cached_property
    def huge(self) -> Stream:
        """The 500 MB stream (``--full`` only): 1000 × 512 KiB by default."""
        s = self.sizes
        return self._large(f"huge_{s.huge_segments}", s.huge_segments, s.huge_bytes)

    @functools.cached_property
    def aes(self) -> Stream:
        """An AES-128 copy of `large`: key ``key.key``, IV = media sequence number."""
        clear = self.large
        name = f"aes_{clear.name}"
        folder = self.root / name
        stamp = json.dumps({"from": clear.name, "key": AES_KEY.hex(), "sequence": AES_SEQUENCE})
        marker = folder / _MARKER
        if not (marker.is_file() and marker.read_text() == stamp):
            _encrypt_copy(clear, folder)
            marker.write_text(stamp)
        return _stream(self.root, name, f"{name}/index.m3u8", plain_bytes=clear.nbytes)

    @functools.cached_property
    def aac(self) -> Stream:
        """Real AAC in MPEG-TS from ffmpeg's HLS muxer: one 128 kbit/s variant, 4 s segments."""
        seconds = self.sizes.aac_seconds
        name = f"aac_{seconds:g}"
        fixture = testing.build_ts_variants(
            self.root, name=name, seconds=seconds, segment_seconds=4.0, bitrates=(128_000,)
        )
        return _stream(self.root, name, fixture.media[0])

    @functools.cached_property
    def playlist_text(self) -> str:
        """A media playlist of `parse_segments` segments (text only, never served)."""
        n = self.sizes.parse_segments
        lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:4", "#EXT-X-MEDIA-SEQUENCE:0"]
        lines.append("#EXT-X-PLAYLIST-TYPE:VOD")
        for i in range(n):
            lines += ["#EXTINF:4.000000,", f"seg_{i:05d}.ts"]
        lines.append("#EXT-X-ENDLIST")
        return "\n".join(lines) + "\n"


def _encrypt_copy(clear: Stream, folder: Path) -> None:
    """Write an AES-128-CBC copy of `clear` into `folder` (PKCS#7, IV = sequence number)."""
    from Crypto.Cipher import AES
    from Crypto.Util.Padding import pad

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "key.key").write_bytes(AES_KEY)
    body: list[str] = []
    for i, path in enumerate(clear.files):
        iv = (AES_SEQUENCE + i).to_bytes(16, "big")
        cipher = AES.new(AES_KEY, AES.MODE_CBC, iv)
        (folder / path.name).write_bytes(cipher.encrypt(pad(path.read_bytes(), AES.block_size)))
        body += [f"#EXTINF:{testing.LARGE_SEGMENT_S:.6f},", path.name]
    header = [
        "#EXTM3U",
        "#EXT-X-VERSION:3",
        f"#EXT-X-TARGETDURATION:{testing.LARGE_SEGMENT_S:g}",
        f"#EXT-X-MEDIA-SEQUENCE:{AES_SEQUENCE}",
        "#EXT-X-PLAYLIST-TYPE:VOD",
        '#EXT-X-KEY:METHOD=AES-128,URI="key.key"',
    ]
    (folder / "index.m3u8").write_text("\n".join([*header, *body, "#EXT-X-ENDLIST"]) + "\n")
