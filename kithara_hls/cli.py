"""The `kithara-hls` command: info, cat, play, download, cache, demo.

Exit codes: 0 ok, 2 usage, 1 a stream error: one line on stderr,
``kithara-hls: error: <what happened, where>``; with -v each cause chained
below it, with -vv the traceback too. Any other exception is a bug and shows its
traceback.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import time
from collections.abc import Sequence
from typing import Any, BinaryIO, TextIO

from . import events as ev
from .decode import decode_to_wav
from .errors import HlsError
from .options import TRACKS, CacheOptions, HlsOptions
from .playlist import Rendition
from .source import HlsSource
from .source import open as hls_open

log = logging.getLogger(__name__)

#: Bytes per read when copying the stream out.
COPY_CHUNK = 256 * 1024
#: Most chained causes printed under an error with -v.
MAX_CAUSES = 16

_QUERY = re.compile(r"\?[^\s'\"()]+")


def _options(args: argparse.Namespace, **extra: Any) -> HlsOptions:
    kwargs: dict[str, Any] = {"variant": getattr(args, "variant", None)}
    if getattr(args, "audio", None):
        kwargs["audio"] = args.audio
    if getattr(args, "track", None):
        kwargs["track"] = args.track
    if getattr(args, "cache_dir", None):
        kwargs["cache"] = CacheOptions(dir=args.cache_dir)
    if getattr(args, "offline", False):
        kwargs["offline"] = True
    kwargs.update(extra)
    try:
        return HlsOptions(**kwargs)
    except ValueError as exc:  # contradicting options: a usage error
        print(f"kithara-hls: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc


def cmd_info(args: argparse.Namespace) -> int:
    """Print variants, switch sets, duration, segments, encryption and what the cache holds."""
    with hls_open(args.url, _options(args)) as f:
        info = f.info()
        switch_sets = f.switch_sets
    print(f"duration: {info.duration:.3f} s")
    print(f"segments: {info.segments} (variant {info.variant})")
    print(f"encryption: {', '.join(info.encryption) or 'none'}")
    if info.track is not None:
        played = f" ({_rendition_label(info.rendition)})" if info.rendition is not None else ""
        print(f"track: {info.track}{played}")
    print("variants:" if info.track != "audio" else "variants (the audio ladder):")
    for i, v in enumerate(info.variants):
        res = f" {v.resolution[0]}x{v.resolution[1]}" if v.resolution else ""
        codecs = f" {v.codecs}" if v.codecs else ""
        if v.bitrate:
            rate = f"{v.bitrate / 1000:.0f} kbit/s"
        else:
            rate = "media playlist (no master)" if info.track is None else "bitrate unknown"
        group = f" group {v.audio}" if info.track == "audio" and v.audio else ""
        print(f"  [{i}] {rate}{codecs}{res}{group}")
    if info.renditions:
        print("renditions:")
        for r in info.renditions:
            print(f"  {r.type} group {r.group}: {_rendition_label(r)}")
    print("switch sets: " + " ".join("[" + " ".join(map(str, members)) + "]" for members in switch_sets))
    if len(info.periods) > 1:
        starts = ", ".join(f"segment {segment} at {start:.3f} s" for segment, start in info.periods)
        print(f"periods: {len(info.periods)} ({starts})")
    if info.gaps:
        print(f"gaps no variant fills: segments {', '.join(map(str, info.gaps))}")
    print(f"cached: {info.parts_cached} of {info.parts} parts in {info.cache_dir}")
    if info.size is not None:
        print(f"size: {info.size} bytes")
    return 0


def _rendition_label(r: Rendition) -> str:
    """``"English" en 2ch default autoselect mp4a.40.2`` and where its media is."""
    facts = [repr(r.name)]
    facts += [x for x in (r.language, f"{r.channels}ch" if r.channels else None) if x]
    facts += [flag for flag, on in (("default", r.default), ("autoselect", r.autoselect)) if on]
    facts += [r.codecs] if r.codecs else []
    facts.append("own playlist" if r.uri is not None else "muxed in the variants")
    return " ".join(facts)


def cmd_cat(args: argparse.Namespace) -> int:
    """Write the stitched stream to stdout."""
    out: BinaryIO = sys.stdout.buffer
    with hls_open(args.url, _options(args)) as f:
        if args.start:
            f.seek_time(args.start)
        _copy(f, out)
    out.flush()
    return 0


def _copy(f: HlsSource, out: BinaryIO) -> int:
    buf = bytearray(COPY_CHUNK)
    view = memoryview(buf)
    total = 0
    while n := f.readinto(view):
        out.write(view[:n])
        total += n
    return total


def cmd_play(args: argparse.Namespace) -> int:
    """Decode the stream through PyAV into a WAV file, with a live status line."""
    with hls_open(args.url, _options(args)) as f:
        seconds = decode_to_wav(f, args.output, status=not args.quiet)
    print(f"wrote {args.output} ({seconds:.2f} s of audio)", file=sys.stderr)
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    """Fill the cache with a whole stream, with a progress bar."""
    from .download import download

    bar = _ProgressBar(quiet=args.quiet)
    result = download(args.url, _options(args), all_variants=args.all_variants, progress=bar)
    bar.done()
    rate = result.bytes / result.seconds / 1e6 if result.seconds > 0 else 0.0
    print(
        f"cached {result.bytes} bytes of variant(s) {list(result.variants)} in {result.seconds:.2f} s "
        f"({rate:.1f} MB/s)",
        file=sys.stderr,
    )
    return 0


class _ProgressBar:
    """`[#####.....]  45.0 %  12.3 MB  4.5 MB/s  ETA 0:12` on stderr."""

    WIDTH = 30

    def __init__(self, quiet: bool = False) -> None:
        self._quiet = quiet
        self._started = time.monotonic()
        self._last = 0.0

    def __call__(self, event: ev.DownloadProgress) -> None:
        now = time.monotonic()
        if self._quiet or (now - self._last < 0.1 and event.percent < 100.0):
            return
        self._last = now
        elapsed = max(now - self._started, 1e-6)
        filled = int(self.WIDTH * event.percent / 100.0)
        eta = int(elapsed * (100.0 - event.percent) / event.percent) if event.percent > 0 else 0
        sys.stderr.write(
            f"\r[{'#' * filled}{'.' * (self.WIDTH - filled)}] {event.percent:5.1f} %  "
            f"{event.offset / 1e6:8.1f} MB  {event.offset / elapsed / 1e6:6.1f} MB/s  "
            f"ETA {eta // 60}:{eta % 60:02d}"
        )
        sys.stderr.flush()

    def done(self) -> None:
        if not self._quiet:
            sys.stderr.write("\n")


def cmd_cache(args: argparse.Namespace) -> int:
    """Inspect or clear the cache."""
    from .cache import Cache
    from .catalog import Catalog, stream_id
    from .localfile import to_url

    cache = Cache(CacheOptions(dir=args.cache_dir) if args.cache_dir else CacheOptions())
    # A stream opened by path is recorded under its file:// URL.
    url = to_url(args.url) if args.url else None
    try:
        catalog = Catalog(cache)
        if args.action == "size":
            print(f"{cache.volume()} bytes in {cache.path}")
        elif args.action == "ls":
            wanted = stream_id(url) if url else None
            for rec in catalog.streams():
                if wanted is None or rec.stream_id == wanted:
                    used = time.strftime("%Y-%m-%d %H:%M", time.localtime(rec.last_used))
                    lease = "  (open)" if rec.leased else ""
                    print(f"{rec.bytes:>12}  {rec.resources:>5} res  {used}  {rec.url}{lease}")
        else:
            catalog.clear(url)
            print("cleared " + ("everything" if url is None else "one stream"))
    finally:
        cache.close()
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Generate a stream, serve it on loopback, play it through the library, replay offline."""
    from .demo import run_demo

    return run_demo(keep=args.keep, quiet=args.quiet, cache_dir=args.cache_dir)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `kithara-hls`."""
    parser = argparse.ArgumentParser(prog="kithara-hls", description="Play HLS VOD streams as files.")
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="more logging and the causes of an error (-vv: debug logging and tracebacks)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, fn: Any, help_: str, url: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(func=fn)
        if url:
            p.add_argument("url", help="master or media playlist URL")
            p.add_argument("--cache-dir", help="cache folder (default: the user cache dir)")
            p.add_argument("--offline", action="store_true", help="serve from the cache only")
        return p

    p = add("info", cmd_info, "show the track, variants, renditions, duration, segments, encryption")
    _add_selection(p, variant=False)
    p = add("cat", cmd_cat, "write the stitched stream to stdout")
    _add_selection(p)
    p.add_argument("--start", type=float, default=0.0, help="start at this media time, seconds")
    p = add("play", cmd_play, "decode through PyAV into a WAV file")
    p.add_argument("-o", "--output", required=True, help="WAV file to write")
    _add_selection(p)
    p.add_argument("-q", "--quiet", action="store_true", help="no live status line")
    p = add("download", cmd_download, "fill the cache with a whole stream for offline playback")
    _add_selection(p, default="the lowest")
    p.add_argument("--all-variants", action="store_true", help="fetch every variant")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p = add("cache", cmd_cache, "inspect or clear the cache: ls | size | clear [URL]", url=False)
    p.add_argument("action", choices=["ls", "size", "clear"])
    p.add_argument("url", nargs="?", help="one stream (ls, clear)")
    p.add_argument("--cache-dir", help="cache folder (default: the user cache dir)")
    p = add("demo", cmd_demo, "serve a generated stream on loopback and play it", url=False)
    p.add_argument("--keep", action="store_true", help="keep the generated files")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the summary")
    p.add_argument("--cache-dir", help="cache folder, kept (default: a temporary one, removed)")
    return parser


def _add_selection(p: argparse.ArgumentParser, *, variant: bool = True, default: str = "ABR") -> None:
    """The options that choose what is played: the track, the audio rendition, the variant."""
    p.add_argument(
        "--track",
        choices=TRACKS,
        help="the audio alone or the muxed variants (default: auto, the audio where kept apart)",
    )
    p.add_argument(
        "--audio", metavar="LANG|NAME", help="audio rendition by language (en matches en-US) or name"
    )
    if variant:
        p.add_argument(
            "--variant", type=int, metavar="N", help=f"index in the track's ladder (default: {default})"
        )


def report(error: HlsError, *, verbose: int = 0, file: TextIO | None = None) -> None:
    """Print `error` as the command does: one line; with `verbose`, a line per chained cause.

    ``kithara-hls: error: <message>``, then ``  caused by: Type: message`` for each
    ``__cause__`` (or unsuppressed ``__context__``), as Python's tracebacks follow
    them, query strings of the URLs they quote left out; with `verbose` of 2 or
    more, the traceback is logged at debug level.
    """
    out = file if file is not None else sys.stderr
    print(f"kithara-hls: error: {_one_line(str(error))}", file=out)
    if not verbose:
        return
    for cause in _causes(error):
        # The messages of requests and urllib3 quote URLs, whose query strings may hold tokens.
        text = _QUERY.sub("?…", _one_line(str(cause)))
        print(f"  caused by: {_type_name(cause)}{': ' + text if text else ''}", file=out)
    if verbose >= 2:
        log.debug("traceback of the error", exc_info=error)


def _causes(error: BaseException) -> list[BaseException]:
    found: list[BaseException] = []
    seen = {id(error)}
    exc: BaseException | None = error
    while exc is not None and len(found) < MAX_CAUSES:
        exc = exc.__cause__ if exc.__cause__ is not None or exc.__suppress_context__ else exc.__context__
        if exc is None or id(exc) in seen:
            break
        seen.add(id(exc))
        found.append(exc)
    return found


def _type_name(exc: BaseException) -> str:
    kind = type(exc)
    if kind.__module__ == "builtins" or kind.__module__.startswith("kithara_hls"):
        return kind.__qualname__
    return f"{kind.__module__}.{kind.__qualname__}"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `kithara-hls`."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.verbose == 0 else logging.INFO if args.verbose == 1 else logging.DEBUG,
        format="%(asctime)s %(threadName)s %(name)s %(levelname)s %(message)s",
    )
    try:
        return int(args.func(args))
    except HlsError as exc:
        report(exc, verbose=args.verbose)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
