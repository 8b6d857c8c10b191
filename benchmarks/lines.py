"""The benchmark lines: each measures what it needs through `Bench` and returns table rows.

A line's figures are memoized in the `Bench`, so lines that share a measurement
(the WAN cold read and its TTFB, the loopback warm read and the decrypt line)
run it once.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .abr_real import line as abr_real
from .clients import (
    FIRST_READ_BYTES,
    FLOOR_HEADS_PER_CONNECTION,
    IDLE_WINDOW_S,
    KIB,
    READ_BUFFER_BYTES,
    SMALL_READ_BYTES,
)
from .fixtures import Stream
from .run import MB, WAN_BANDWIDTH, WAN_LATENCY_S, Bench, Measure, Row, verdict

#: Goals (see the module docstring of `benchmarks.run` for how each is measured).
WAN_LIMIT_FACTOR = 1.10
LAN_FLOOR_FACTOR = 1.5
WARM_MIN_MBPS = 1000.0
TTFB_RTTS = 2
SEEK_FLOOR_FACTOR = 1.2
#: A far seek_time in a long title, on the loopback: its first byte within this, whatever the length.
LONG_SEEK_MAX_S = 1.0
RSS_MAX_MIB = 32.0
IDLE_MAX_CPU_S = 0.030
PARSE_MAX_S = 0.300
#: Seconds a warm AES-128 read may add to the clear one beyond what decryption alone adds.
DECRYPT_MARGIN_S = 0.010
#: Peers and their concurrency, as the targets name them.
STREAMLINK_THREADS = 10
YTDLP_FRAGMENTS = 8
#: Workers of the LAN floor line: kithara's base worker count on a near link.
CACHE_FLOOR_THREADS = 4


def _faster(label: str, ours: Measure | None, peer: Measure | None) -> Row:
    """A peer's row, with kithara's wall time relative to it and 'kithara faster' as the goal."""
    row = Row.of(label, peer, target="kithara faster")
    if ours is not None and peer is not None:
        row.ratio = f"kithara {ours.wall_s / peer.wall_s:.2f}×"
        row.result = verdict(ours.wall_s < peer.wall_s)
    return row


def _peers(bench: Bench, scenario: str, stream: Stream) -> list[tuple[str, Measure | None]]:
    """streamlink and yt-dlp on `stream`, each only if installed."""
    out: list[tuple[str, Measure | None]] = []
    if bench.has("yt-dlp"):
        m = bench.measure(scenario, "yt-dlp", stream, "--threads", str(YTDLP_FRAGMENTS))
        out.append((f"yt-dlp ×{YTDLP_FRAGMENTS} fragments", m))
    if bench.has("streamlink"):
        m = bench.measure(scenario, "streamlink", stream, "--threads", str(STREAMLINK_THREADS))
        out.append((f"streamlink ×{STREAMLINK_THREADS} threads", m))
    return out


def wan(bench: Bench) -> list[Row]:
    """WAN-like cold read: within 1.10× of the link limit, faster than yt-dlp and streamlink."""
    stream = bench.fx.large
    limit_s = stream.nbytes / WAN_BANDWIDTH
    rows = [Row(f"WAN link limit ({stream.nbytes / MB:.0f} MB)", wall_s=limit_s, mbps=WAN_BANDWIDTH / MB)]
    cold = bench.measure("wan", "kithara", stream)
    row = Row.of("WAN kithara cold", cold, target=f"≤ {WAN_LIMIT_FACTOR}× link limit")
    if cold is not None:
        row.ratio = f"{cold.wall_s / limit_s:.2f}× limit"
        row.result = verdict(cold.wall_s <= WAN_LIMIT_FACTOR * limit_s)
    rows.append(row)
    rows += [_faster(f"WAN {label}", cold, m) for label, m in _peers(bench, "wan", stream)]
    seq = bench.measure("wan", "requests", stream)
    rows.append(Row.of("WAN requests sequential", seq, ratio=_relative(cold, seq)))
    return rows


def _relative(ours: Measure | None, ref: Measure | None) -> str:
    if ours is None or ref is None:
        return ""
    return f"kithara {ours.wall_s / ref.wall_s:.2f}×"


def ttfb(bench: Bench) -> list[Row]:
    """Time to first byte after open() on the WAN: 2 round trips + one 256 KiB block at link rate."""
    stream = bench.fx.large
    goal = TTFB_RTTS * WAN_LATENCY_S + READ_BUFFER_BYTES / WAN_BANDWIDTH
    target = f"≤ {TTFB_RTTS} RTT + 256 KiB = {goal * 1000:.0f} ms"
    cold = bench.measure("wan", "kithara", stream)
    row = Row.of("WAN TTFB kithara", cold, target=target)
    if cold is not None and cold.ttfb_s is not None:
        row.ratio = f"{cold.ttfb_s / goal:.2f}× target"
        row.result = verdict(cold.ttfb_s <= goal)
    rows = [row]
    if bench.has("streamlink"):
        peer = bench.measure("wan", "streamlink", stream, "--threads", str(STREAMLINK_THREADS))
        peer_row = Row.of(f"WAN TTFB streamlink ×{STREAMLINK_THREADS}", peer)
        if peer is not None and cold is not None and peer.ttfb_s and cold.ttfb_s:
            peer_row.ratio = f"kithara {cold.ttfb_s / peer.ttfb_s:.2f}×"
        rows.append(peer_row)
    bench.notes.append(
        f"TTFB: first read asks {FIRST_READ_BYTES // KIB} KiB; RTT = {WAN_LATENCY_S * 1000:.0f} ms"
    )
    return rows


def lan(bench: Bench) -> list[Row]:
    """Unthrottled cold read: within 1.5× of the LAN floor (urllib3 workers writing files), faster
    than streamlink."""
    stream = bench.fx.large
    floor_opts = ("--threads", str(CACHE_FLOOR_THREADS))
    bench.interleave("lan", stream, [("requests", ()), ("cache-floor", floor_opts)])
    seq = bench.measure("lan", "requests", stream)
    cold, _ = bench.pair("lan", stream)
    rows = [Row.of("LAN requests sequential", seq)]
    row = Row.of("LAN kithara cold", cold, target=f"≤ {LAN_FLOOR_FACTOR}× floor")
    if cold is not None and seq is not None:
        row.ratio = f"{cold.wall_s / seq.wall_s:.2f}× requests"
    rows.append(row)
    floor = bench.measure("lan", "cache-floor", stream, *floor_opts)
    floor_row = Row.of(f"LAN floor: urllib3 ×{CACHE_FLOOR_THREADS} + files", floor, target="(reported)")
    if floor is not None and seq is not None:
        floor_row.ratio = f"{floor.wall_s / seq.wall_s:.2f}× requests"
    if floor is not None and cold is not None:
        row.ratio = ", ".join(filter(None, [row.ratio, f"{cold.wall_s / floor.wall_s:.2f}× floor"]))
        row.result = verdict(cold.wall_s <= LAN_FLOOR_FACTOR * floor.wall_s)
    rows.append(floor_row)
    for label, m in _peers(bench, "lan", stream):
        peer_row = _faster(f"LAN {label}", cold, m)
        if label.startswith("yt-dlp"):  # no goal against yt-dlp on the loopback: shown for reference
            peer_row.target, peer_row.result = "", ""
        rows.append(peer_row)
    return rows


def warm(bench: Bench) -> list[Row]:
    """Warm (cached) read of the same stream: at least 1 GB/s; plain local files for reference."""
    stream = bench.fx.large
    _, hot = bench.pair("lan", stream)
    files = bench.measure("lan", "files", stream)
    row = Row.of("LAN kithara warm (cached)", hot, target=f"≥ {WARM_MIN_MBPS:.0f} MB/s")
    if hot is not None:
        row.result = verdict(hot.mbps >= WARM_MIN_MBPS)
        if files is not None:
            row.ratio = f"{hot.wall_s / files.wall_s:.1f}× files"
    return [row, Row.of("plain files (page cache)", files)]


def seek(bench: Bench) -> list[Row]:
    """seek_time() to the middle of the 900-segment stream, cold, WAN: first byte within 1.2× the
    seek floor (raw-socket HEADs of the same sizes, all at once)."""
    stream = bench.fx.hour
    middle = stream.segments * 4.0 / 2
    m = bench.measure("wan", "kithara-seek", stream, "--seek", f"{middle:g}")
    label = f"WAN seek_time({middle:g}) {stream.segments} seg"
    row = Row.of(label, m, target=f"≤ {SEEK_FLOOR_FACTOR}× seek floor")
    if m is not None:
        row.ttfb_s = m.extra["seek_ttfb_s"]
        row.mbps = None
        opened, call = m.extra["open_s"] * 1000, m.extra["seek_call_s"] * 1000
        bench.notes.append(
            f"seek: open() {opened:.0f} ms, then seek_time() {call:.0f} ms of the TTFB"
            " (TTFB column = from the seek_time() call to the first byte after it)"
        )
    floor = bench.measure("wan", "seek-floor", stream, "--seek", f"{middle:g}")
    floor_row = Row.of("WAN seek floor: raw-socket HEADs", floor, target="(reported)")
    if floor is not None:
        floor_row.ttfb_s = floor.extra["seek_ttfb_s"]
        floor_row.mbps = None
        if m is not None:
            row.ratio = f"{m.extra['seek_ttfb_s'] / floor_row.ttfb_s:.2f}× floor"
            row.result = verdict(m.extra["seek_ttfb_s"] <= SEEK_FLOOR_FACTOR * floor_row.ttfb_s)
        bench.notes.append(
            f"seek floor: {floor.extra['heads']:.0f} sizes by HEAD on raw sockets"
            f" ({FLOOR_HEADS_PER_CONNECTION} pipelined per connection, all at once) took"
            f" {floor.extra['sizes_s'] * 1000:.0f} ms: the origin's own cost, before any client's"
        )
    return [row, floor_row]


def seek_long(bench: Bench) -> list[Row]:
    """seek_time() to the middle of long titles (900 and 40,000 tiny segments), cold, loopback: the
    first byte within 1 s whatever the length, and the HTTP responses it took."""
    rows = []
    for segments in bench.fx.sizes.long_segments:
        stream = bench.fx.long_title(segments)
        middle = segments * 4.0 / 2
        read = str(stream.segment_bytes)  # one segment: the first read needs the target only
        m = bench.measure("lan", "kithara-seek", stream, "--seek", f"{middle:g}", "--seek-read", read)
        label = f"LAN seek_time({middle:g}) {segments:,} seg"
        row = Row.of(label, m, target=f"first byte ≤ {LONG_SEEK_MAX_S * 1000:.0f} ms")
        if m is not None:
            row.ttfb_s, row.mbps = m.extra["seek_ttfb_s"], None
            row.ratio = f"{m.extra['seek_requests']:.0f} requests"
            row.result = verdict(m.extra["seek_ttfb_s"] <= LONG_SEEK_MAX_S)
            bench.notes.append(
                f"long title, {segments:,} segments of {stream.segment_bytes} B: open() took"
                f" {m.extra['open_s'] * 1000:.0f} ms before the seek (TTFB column = from the"
                " seek_time() call to the first byte; requests = HTTP responses in between)"
            )
        rows.append(row)
    return rows


def memory(bench: Bench) -> list[Row]:
    """Peak RSS growth of a cold read with 16 KiB reads: under 32 MiB (also 500 MB with --full)."""
    streams = [bench.fx.large] + ([bench.fx.huge] if bench.args.full else [])
    rows = []
    for stream in streams:
        m = bench.measure("lan", "kithara", stream, "--read-bytes", str(SMALL_READ_BYTES))
        row = Row.of(
            f"LAN {stream.nbytes / MB:.0f} MB, 16 KiB reads", m, target=f"RSS growth < {RSS_MAX_MIB:g} MiB"
        )
        if m is not None:
            row.ratio = f"{m.rss_mib / RSS_MAX_MIB:.2f}× limit"
            row.result = verdict(m.rss_mib < RSS_MAX_MIB)
        rows.append(row)
    return rows


def idle(bench: Bench) -> list[Row]:
    """A paused reader with a full look-ahead: under 30 ms of process CPU over 3 s."""
    m = bench.measure("lan", "kithara-idle", bench.fx.large)
    target = f"< {IDLE_MAX_CPU_S * 1000:.0f} ms CPU / {IDLE_WINDOW_S:g} s"
    if m is None:
        return [Row.of("paused reader, look-ahead full", None, target=target)]
    cpu = m.extra["idle_cpu_s"]
    row = Row(
        "paused reader, look-ahead full", wall_s=IDLE_WINDOW_S, cpu_s=cpu, rss_mib=m.rss_mib, target=target
    )
    row.ratio = f"{cpu * 1000:.1f} ms CPU"
    row.result = verdict(cpu < IDLE_MAX_CPU_S)
    bench.notes.append(
        f"paused reader: {m.extra['segments_ahead']:.0f} segments fetched ahead before the window"
    )
    return [row]


def parse(bench: Bench) -> list[Row]:
    """A 1,200-segment playlist parsed and laid out (in-process): under 300 ms."""
    from kithara_hls.layout import Layout, build_parts
    from kithara_hls.playlist import MediaPlaylist
    from kithara_hls.playlist import parse as parse_playlist

    text = bench.fx.playlist_text
    url = "http://127.0.0.1/parse/index.m3u8"

    def once() -> tuple[float, float]:
        t0, c0 = time.perf_counter(), time.process_time()
        media = parse_playlist(text, url)
        assert isinstance(media, MediaPlaylist)
        layout = Layout(build_parts(media, 0))
        assert len(layout) == bench.fx.sizes.parse_segments
        return time.perf_counter() - t0, time.process_time() - c0

    once()  # imports and first-call costs stay out of the figure
    runs = sorted(once() for _ in range(bench.args.repeat))
    wall, cpu = runs[len(runs) // 2]
    n = bench.fx.sizes.parse_segments
    row = Row(
        f"parse + layout {n:,} segments", wall_s=wall, cpu_s=cpu, target=f"< {PARSE_MAX_S * 1000:.0f} ms"
    )
    row.ratio = f"{wall / PARSE_MAX_S:.2f}× limit"
    row.result = verdict(wall < PARSE_MAX_S)
    return [row]


def decrypt(bench: Bench) -> list[Row]:
    """Warm read of the cached AES-128 copy: adds at most 10 ms to the clear read beyond what decryption
    alone adds (the AES-128 floor: the same files read plain and decrypted, with no library)."""
    (clear_cold, clear), (aes_cold, aes) = bench.pairs_in_turn("lan", [bench.fx.large, bench.fx.aes])
    rows = [
        Row.of(
            "LAN AES-128 cold", aes_cold, ratio=_relative(aes_cold, clear_cold).replace("kithara", "clear")
        )
    ]
    rows.append(Row.of("LAN kithara warm clear", clear))
    row = Row.of("LAN kithara warm AES-128", aes, target=f"≤ floor + {DECRYPT_MARGIN_S * 1000:.0f} ms")
    if aes is not None and clear is not None:
        row.ratio = f"{aes.wall_s / clear.wall_s:.2f}× clear"
    rows.append(row)
    # What decryption alone adds, with no library: the same files read plain and read decrypted.
    files = bench.measure("lan", "files", bench.fx.large)
    files_aes = bench.measure("lan", "files-aes", bench.fx.aes)
    floor = Row.of("AES-128 floor: files + ECB, XOR", files_aes, target="(reported)")
    if files is not None and files_aes is not None:
        floor.ratio = f"{files_aes.wall_s / files.wall_s:.2f}× files"
        if aes is not None and clear is not None:
            floor.ratio += f", +{1e3 * (files_aes.wall_s - files.wall_s):.0f} ms"
            row.ratio += f", +{1e3 * (aes.wall_s - clear.wall_s):.0f} ms"
            added, floor_added = aes.wall_s - clear.wall_s, files_aes.wall_s - files.wall_s
            row.result = verdict(added <= floor_added + DECRYPT_MARGIN_S)
    rows.append(floor)
    return rows


def av(bench: Bench) -> list[Row]:
    """Decode a real AAC stream over the WAN: ffmpeg's HLS demuxer vs kithara feeding PyAV."""
    if not bench.has("av"):
        return []
    stream = bench.fx.aac
    ffmpeg = bench.measure("wan", "ffmpeg-av", stream)
    ours = bench.measure("wan", "kithara-av", stream)
    seconds = bench.fx.sizes.aac_seconds
    rows = [Row.of(f"WAN ffmpeg HLS demuxer ({seconds:g} s AAC)", ffmpeg)]
    rows.append(Row.of("WAN kithara + PyAV decode", ours, ratio=_relative(ours, ffmpeg), target="(reported)"))
    for row, m in zip(rows, (ffmpeg, ours), strict=True):
        if m is not None:  # ffmpeg reports no byte count: both read the whole stream
            row.mbps = stream.nbytes / MB / m.wall_s
    for name, m in (("ffmpeg", ffmpeg), ("kithara", ours)):
        if m is not None:
            frames, samples = m.extra.get("frames", 0), m.extra.get("samples", 0)
            bench.notes.append(f"AV {name}: decoded {frames:.0f} frames, {samples:.0f} samples")
    return rows


LINES: dict[str, Callable[[Bench], list[Row]]] = {
    "wan": wan,
    "ttfb": ttfb,
    "lan": lan,
    "warm": warm,
    "seek": seek,
    "seek-long": seek_long,
    "memory": memory,
    "idle": idle,
    "parse": parse,
    "decrypt": decrypt,
    "av": av,
    "abr-real": abr_real,
}
#: Lines that run only when `--only` names them (the real-time ABR line takes about five minutes).
ON_REQUEST = frozenset({"abr-real"})
