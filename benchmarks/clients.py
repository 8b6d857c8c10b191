"""The benchmark clients, each run in its own process by `benchmarks.run`.

``python -m benchmarks.clients CLIENT URL [options]`` imports what the client
needs, prints ``ready``, waits for ``go`` on stdin, runs, prints one JSON line
(bytes, ttfb_s, wall_s, cpu_s, rss_growth_mib, ...), then waits for stdin to
close, so the parent can sample the process's CPU time before it exits.

Times are taken from just before the client opens the stream; imports and
interpreter start-up are outside the window. TTFB is the time until the first
read returns data (the first read asks for 16 KiB, later ones for 256 KiB).
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import json
import logging
import queue
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

KIB = 1024
#: Size of the reused read buffer of a whole-stream read.
READ_BUFFER_BYTES = 256 * KIB
#: The first read is this small, so TTFB means the first bytes, not a full buffer.
FIRST_READ_BYTES = 16 * KIB
#: Read size of the memory lines.
SMALL_READ_BYTES = 16 * KIB
#: Longest wait for the look-ahead to fill in the paused-reader line.
FILL_TIMEOUT_S = 60.0
#: The look-ahead counts as full once no segment completed for this long.
FILL_QUIET_S = 1.0
#: CPU of the paused reader is measured over this window.
IDLE_WINDOW_S = 3.0

Runner = Callable[["Probe"], dict[str, Any]]


def _reset_peak_rss() -> bool:
    """Reset the peak RSS to the current RSS (Linux >= 4.0), so imports' peak is not the baseline."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def _peak_rss_kib() -> int:
    """This process's peak RSS in KiB: VmHWM where /proc has it, else ``ru_maxrss``.

    ``ru_maxrss`` also holds the peak of the image replaced by exec, which is the
    parent's own (subprocess forks with vfork), so a large parent hides the growth.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


class Probe:
    """The measurement window of one client run: wall, first byte, CPU, peak RSS.

    Peak RSS growth is the peak at the end minus the peak at the start, with the
    high-water mark first reset to the current RSS where Linux allows.
    """

    def __init__(self) -> None:
        self.peak_reset = _reset_peak_rss()
        self.rss0 = _peak_rss_kib()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self.cpu0 = usage.ru_utime + usage.ru_stime
        self.t0 = time.perf_counter()
        self.ttfb: float | None = None
        self.nbytes = 0

    def got(self, n: int) -> None:
        """Count `n` bytes delivered to the caller (the first nonzero count sets TTFB)."""
        if n and self.ttfb is None:
            self.ttfb = time.perf_counter() - self.t0
        self.nbytes += n

    def result(self, extra: dict[str, Any]) -> dict[str, Any]:
        """The JSON-ready measurements of the window so far, plus `extra`."""
        wall = time.perf_counter() - self.t0
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "bytes": self.nbytes,
            "ttfb_s": self.ttfb,
            "wall_s": wall,
            "cpu_s": usage.ru_utime + usage.ru_stime - self.cpu0,
            "rss_growth_mib": (_peak_rss_kib() - self.rss0) / KIB,
            "peak_reset": self.peak_reset,
            **extra,
        }


def _drain(read: Callable[[memoryview], int], probe: Probe, size: int = READ_BUFFER_BYTES) -> None:
    """Read to EOF through `read(view) -> n`, first FIRST_READ_BYTES then `size` at a time."""
    view = memoryview(bytearray(size))
    first = min(size, FIRST_READ_BYTES)
    n = read(view[:first])
    probe.got(n)
    while n:
        n = read(view)
        probe.got(n)


def _kithara_options(args: argparse.Namespace) -> Any:
    from kithara_hls import CacheOptions, HlsOptions

    return HlsOptions(cache=CacheOptions(dir=args.cache))


def kithara(args: argparse.Namespace) -> Runner:
    """A whole-stream read through `kithara_hls.open` with readinto (cold or warm: the cache decides)."""
    import kithara_hls

    def run(probe: Probe) -> dict[str, Any]:
        with kithara_hls.open(args.url, _kithara_options(args)) as f:
            _drain(f.readinto, probe, args.read_bytes)
        return {}

    return run


class _ResponseCount(logging.Handler):
    """Counts the responses urllib3's connection pools receive: it logs one DEBUG record each,
    ``'%s://%s:%s "%s %s %s" %s %s'``."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if isinstance(record.msg, str) and record.msg.startswith("%s://%s:%s "):
            self.count += 1


def kithara_seek(args: argparse.Namespace) -> Runner:
    """Open, seek_time() to `--seek` seconds at once, read `--seek-read` bytes: the time from
    seek to first byte, and the HTTP responses in between."""
    import kithara_hls

    responses = _ResponseCount()
    pool_log = logging.getLogger("urllib3.connectionpool")
    pool_log.setLevel(logging.DEBUG)
    pool_log.addHandler(responses)
    pool_log.propagate = False

    def run(probe: Probe) -> dict[str, Any]:
        with kithara_hls.open(args.url, _kithara_options(args)) as f:
            opened = time.perf_counter() - probe.t0
            before = responses.count
            t0 = time.perf_counter()
            f.seek_time(args.seek)
            sought = time.perf_counter() - t0
            n = f.readinto(bytearray(args.seek_read))
            first = time.perf_counter() - t0
            requests = responses.count - before
            probe.got(n)
        return {"open_s": opened, "seek_call_s": sought, "seek_ttfb_s": first, "seek_requests": requests}

    return run


def seek_floor(args: argparse.Namespace) -> Runner:
    """The least any client needs for the seek line on this origin, with no HTTP library:
    the playlist, then every size before `--seek` by HEAD requests on raw sockets (all at
    once, FLOOR_HEADS_PER_CONNECTION pipelined per connection), then 16 KiB of the target."""
    import http.client
    from urllib.parse import urljoin, urlsplit

    import m3u8

    def run(probe: Probe) -> dict[str, Any]:
        host = urlsplit(args.url)
        conn = http.client.HTTPConnection(host.hostname, host.port, timeout=30)
        conn.request("GET", host.path)
        playlist = m3u8.loads(conn.getresponse().read().decode(), uri=args.url)
        t0 = time.perf_counter()
        ends = list(itertools.accumulate(seg.duration for seg in playlist.segments))
        target = bisect.bisect_right(ends, args.seek)
        paths = [urlsplit(urljoin(args.url, seg.uri)).path for seg in playlist.segments[:target]]
        offset = sum(_head_sizes(host.hostname or "127.0.0.1", host.port or 80, paths))
        sized = time.perf_counter() - t0
        conn.request(
            "GET",
            urlsplit(urljoin(args.url, playlist.segments[target].uri)).path,
            headers={"Range": f"bytes=0-{FIRST_READ_BYTES - 1}"},
        )
        probe.got(len(conn.getresponse().read()))
        first = time.perf_counter() - t0
        conn.close()
        return {"seek_ttfb_s": first, "sizes_s": sized, "offset": offset, "heads": len(paths)}

    return run


def cache_floor(args: argparse.Namespace) -> Runner:
    """What a caching reader needs at least on this origin, with no library but urllib3:
    `--threads` workers each GET one segment at a time (readinto a reused buffer) and write
    it to its own file under `--cache`; the reader reads the files back in playlist order
    as they complete. No retries, no checks, no look-ahead bound: a floor, not a client."""
    import os
    import threading

    import m3u8
    import urllib3

    def run(probe: Probe) -> dict[str, Any]:
        pool = urllib3.PoolManager(maxsize=args.threads)
        playlist = m3u8.loads(pool.request("GET", args.url).data.decode(), uri=args.url)
        uris = [seg.absolute_uri for seg in playlist.segments]
        folder = Path(args.cache)
        folder.mkdir(parents=True, exist_ok=True)
        todo = iter(range(len(uris)))
        lock = threading.Lock()
        done = threading.Condition()
        finished: set[int] = set()
        failures: list[BaseException] = []

        def fetch(index: int, view: memoryview) -> None:
            resp = pool.request("GET", uris[index], preload_content=False)
            fd = os.open(folder / str(index), os.O_WRONLY | os.O_CREAT, 0o600)
            offset = 0
            while n := resp.readinto(view):
                os.pwrite(fd, view[:n], offset)
                offset += n
            os.close(fd)
            resp.release_conn()

        def work() -> None:
            view = memoryview(bytearray(READ_BUFFER_BYTES))
            while True:
                with lock:
                    index = next(todo, None)
                if index is None:
                    return
                try:
                    fetch(index, view)
                except BaseException as exc:
                    with done:
                        failures.append(exc)
                        done.notify_all()
                    raise
                with done:
                    finished.add(index)
                    done.notify_all()

        workers = [threading.Thread(target=work, daemon=True) for _ in range(args.threads)]
        for worker in workers:
            worker.start()
        view = memoryview(bytearray(READ_BUFFER_BYTES))
        first = True
        for index in range(len(uris)):
            with done:
                if not done.wait_for(lambda i=index: i in finished or bool(failures), timeout=60):  # type: ignore[misc]
                    raise TimeoutError(f"segment {index} did not arrive")
                if index not in finished:
                    raise failures[0]
            fd = os.open(folder / str(index), os.O_RDONLY)
            offset = 0
            while n := os.preadv(fd, [view[:FIRST_READ_BYTES] if first else view], offset):
                probe.got(n)
                offset += n
                first = False
            os.close(fd)
        for worker in workers:
            worker.join()
        return {}

    return run


#: HEAD requests written at once on each raw connection of `seek_floor`.
FLOOR_HEADS_PER_CONNECTION = 2


def _head_sizes(host: str, port: int, paths: list[str]) -> list[int]:
    """Content-Length of each path, by pipelined HEAD requests over many raw sockets at once."""
    import selectors
    import socket

    sel = selectors.DefaultSelector()
    sizes = [0] * len(paths)
    for first in range(0, len(paths), FLOOR_HEADS_PER_CONNECTION):
        batch = list(range(first, min(first + FLOOR_HEADS_PER_CONNECTION, len(paths))))
        sock = socket.create_connection((host, port), timeout=30)
        sock.sendall(b"".join(f"HEAD {paths[i]} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode() for i in batch))
        sock.setblocking(False)
        sel.register(sock, selectors.EVENT_READ, (batch, bytearray()))
    while sel.get_map():
        for key, _ in sel.select(30):
            batch, buf = key.data
            data = key.fileobj.recv(65536)  # type: ignore[union-attr]
            buf += data
            heads = bytes(buf).split(b"\r\n\r\n")
            if len(heads) > len(batch) or not data:
                for index, head in zip(batch, heads, strict=False):
                    for line in head.split(b"\r\n"):
                        name, _, value = line.partition(b":")
                        if name.strip().lower() == b"content-length":
                            sizes[index] = int(value)
                sel.unregister(key.fileobj)
                key.fileobj.close()  # type: ignore[union-attr]
    return sizes


def _wait_filled(sub: Any, segment_complete: type) -> int:
    """Wait until no segment completed for FILL_QUIET_S (bounded by FILL_TIMEOUT_S); return the count."""
    deadline = time.monotonic() + FILL_TIMEOUT_S
    completed = 0
    quiet_since = time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - quiet_since < FILL_QUIET_S:
        try:
            event = sub.get(timeout=0.1)
        except queue.Empty:
            continue
        if isinstance(event, segment_complete):
            completed += 1
            quiet_since = time.monotonic()
    return completed


def kithara_idle(args: argparse.Namespace) -> Runner:
    """Open, read 64 KiB, let the look-ahead fill, then measure process CPU over IDLE_WINDOW_S."""
    import kithara_hls

    def run(probe: Probe) -> dict[str, Any]:
        with kithara_hls.open(args.url, _kithara_options(args)) as f:
            sub = f.events()
            probe.got(f.readinto(bytearray(64 * KIB)))
            completed = _wait_filled(sub, kithara_hls.SegmentComplete)
            sub.close()
            before = resource.getrusage(resource.RUSAGE_SELF)
            time.sleep(IDLE_WINDOW_S)
            after = resource.getrusage(resource.RUSAGE_SELF)
        idle = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        return {"idle_cpu_s": idle, "segments_ahead": completed}

    return run


def requests_loop(args: argparse.Namespace) -> Runner:
    """A bare sequential loop: requests.Session, m3u8 parses the playlist, one GET per segment."""
    import m3u8
    import requests

    def run(probe: Probe) -> dict[str, Any]:
        with requests.Session() as session:
            session.trust_env = False
            response = session.get(args.url, timeout=30)
            response.raise_for_status()
            playlist = m3u8.loads(response.text, uri=response.url)
            for segment in playlist.segments:
                with session.get(segment.absolute_uri, stream=True, timeout=30) as r:
                    r.raise_for_status()
                    first = probe.ttfb is None
                    for chunk in r.iter_content(FIRST_READ_BYTES if first else READ_BUFFER_BYTES):
                        probe.got(len(chunk))
        return {}

    return run


def files(args: argparse.Namespace) -> Runner:
    """The same bytes from local files: the segment files of the playlist at local path URL."""
    playlist = Path(args.url)
    lines = (line.strip() for line in playlist.read_text().splitlines())
    paths = [playlist.parent / line for line in lines if line and not line.startswith("#")]

    def run(probe: Probe) -> dict[str, Any]:
        view = memoryview(bytearray(READ_BUFFER_BYTES))
        for path in paths:
            with path.open("rb", buffering=0) as f:
                n = f.readinto(view)
                while n:
                    probe.got(n)
                    n = f.readinto(view)
        return {}

    return run


def files_aes(args: argparse.Namespace) -> Runner:
    """The AES-128 stream's segment files at local path URL, read and decrypted as kithara does
    (ECB over each read, then one XOR with the ciphertext a block earlier): the decryption's
    own cost, with no store and no HTTP."""
    import m3u8
    from Crypto.Cipher import AES
    from Crypto.Util.strxor import strxor

    playlist = m3u8.loads(Path(args.url).read_text(), uri=args.url)
    folder = Path(args.url).parent
    segments = [
        (folder / seg.uri, folder / seg.key.uri, (playlist.media_sequence + i).to_bytes(16, "big"))
        for i, seg in enumerate(playlist.segments)
    ]

    def run(probe: Probe) -> dict[str, Any]:
        raw = memoryview(bytearray(AES.block_size + READ_BUFFER_BYTES))
        out = memoryview(bytearray(READ_BUFFER_BYTES))
        ciphers: dict[Path, Any] = {}
        for path, key, iv in segments:
            if key not in ciphers:
                ciphers[key] = AES.new(key.read_bytes(), AES.MODE_ECB)
            cipher = ciphers[key]
            raw[: AES.block_size] = iv
            with path.open("rb", buffering=0) as f:
                n = f.readinto(raw[AES.block_size :])
                while n:
                    # Whole blocks only: a file's length is a multiple of the block size.
                    cipher.decrypt(raw[AES.block_size : AES.block_size + n], output=out[:n])
                    strxor(out[:n], raw[:n], output=out[:n])
                    raw[: AES.block_size] = raw[n : n + AES.block_size]
                    probe.got(n)  # the padding is counted: the last block is not unpadded
                    n = f.readinto(raw[AES.block_size :])
        return {}

    return run


def streamlink_client(args: argparse.Namespace) -> Runner:
    """streamlink's HLSStream on the media playlist, `--threads` segment threads, read to EOF."""
    from streamlink.session.session import Streamlink
    from streamlink.stream.hls.hls import HLSStream

    def run(probe: Probe) -> dict[str, Any]:
        session = Streamlink()
        session.set_option("stream-segment-threads", args.threads)
        stream = HLSStream(session, args.url)
        fd = stream.open()  # type: ignore[no-untyped-call]
        try:

            def read(view: memoryview) -> int:
                data = fd.read(len(view))
                view[: len(data)] = data
                return len(data)

            _drain(read, probe, args.read_bytes)
        finally:
            fd.close()
        return {}

    return run


def ytdlp(args: argparse.Namespace) -> Runner:
    """yt-dlp's native HLS downloader, `--threads` concurrent fragments, into the file `--out`.

    The format is handed to yt-dlp directly (as an extractor would return it), so
    the generic extractor's page probing is not timed, only the download.
    """
    import yt_dlp

    def run(probe: Probe) -> dict[str, Any]:
        def hook(status: dict[str, Any]) -> None:
            if probe.ttfb is None and status.get("downloaded_bytes"):
                probe.ttfb = time.perf_counter() - probe.t0

        opts = {
            "concurrent_fragment_downloads": args.threads,
            "hls_prefer_native": True,
            "outtmpl": args.out,
            "quiet": True,
            "no_warnings": True,
            "noprogress": True,
            "cachedir": False,
            "fixup": "never",
            "overwrites": True,
            "progress_hooks": [hook],
        }
        fmt = {"format_id": "hls", "url": args.url, "protocol": "m3u8_native", "ext": "ts", "vcodec": "none"}
        info = {"id": "bench", "title": "bench", "formats": [fmt], "extractor": "generic"}
        with yt_dlp.YoutubeDL(opts) as ydl:
            ydl.process_ie_result(info, download=True)
        probe.nbytes = Path(args.out).stat().st_size
        return {}

    return run


def _decode_all(container: Any, probe: Probe) -> dict[str, Any]:
    frames = samples = 0
    for frame in container.decode(audio=0):
        if probe.ttfb is None:
            probe.ttfb = time.perf_counter() - probe.t0
        frames += 1
        samples += frame.samples
    return {"frames": frames, "samples": samples}


def ffmpeg_av(args: argparse.Namespace) -> Runner:
    """ffmpeg's own HLS demuxer through PyAV (`av.open(url)`), decoding every audio frame."""
    import av

    def run(probe: Probe) -> dict[str, Any]:
        with av.open(args.url) as container:
            extra = _decode_all(container, probe)
        return extra

    return run


def kithara_av(args: argparse.Namespace) -> Runner:
    """PyAV decoding from `av.open(kithara_hls.open(url))`, every audio frame."""
    import av

    import kithara_hls

    def run(probe: Probe) -> dict[str, Any]:
        with kithara_hls.open(args.url, _kithara_options(args)) as f:
            with av.open(f) as container:
                extra = _decode_all(container, probe)
            probe.nbytes = f.tell()
        return extra

    return run


CLIENTS: dict[str, Callable[[argparse.Namespace], Runner]] = {
    "kithara": kithara,
    "kithara-seek": kithara_seek,
    "seek-floor": seek_floor,
    "cache-floor": cache_floor,
    "kithara-idle": kithara_idle,
    "kithara-av": kithara_av,
    "ffmpeg-av": ffmpeg_av,
    "requests": requests_loop,
    "files": files,
    "files-aes": files_aes,
    "streamlink": streamlink_client,
    "yt-dlp": ytdlp,
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m benchmarks.clients``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.clients", description=__doc__.split("\n")[0])
    parser.add_argument("client", choices=sorted(CLIENTS))
    parser.add_argument("url", help="playlist URL (a local playlist path for 'files')")
    parser.add_argument("--cache", help="kithara cache folder")
    parser.add_argument("--out", help="yt-dlp output file")
    parser.add_argument("--threads", type=int, default=1, help="peer concurrency")
    parser.add_argument("--read-bytes", type=int, default=READ_BUFFER_BYTES, help="read size after the first")
    parser.add_argument("--seek", type=float, default=0.0, help="seek_time target, seconds")
    parser.add_argument(
        "--seek-read", type=int, default=FIRST_READ_BYTES, help="bytes the seek client reads after seek_time"
    )
    args = parser.parse_args(argv)
    run = CLIENTS[args.client](args)
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return 2
    probe = Probe()
    extra = run(probe)
    print(json.dumps(probe.result(extra)), flush=True)
    sys.stdin.read()  # the parent samples our CPU time, then closes stdin
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
