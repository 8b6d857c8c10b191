"""The persistent cache: offline replay, crash safety, sharing, eviction, pre-caching."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import kithara_hls
from kithara_hls import CacheOptions, HlsOptions, NetworkOptions
from kithara_hls import events as ev
from kithara_hls.cache import BLOBS_FOLDER, LEGACY_BLOBS_FOLDERS, PART_SUFFIX, Cache
from kithara_hls.catalog import Catalog, stream_id
from kithara_hls.store import BLOCK_SIZE
from kithara_hls.testing import Origin, StreamFixture, build_large

SEGMENT_BYTES = 600_000  # more than two store blocks, so a segment can be half stored


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> dict[str, StreamFixture]:
    root = tmp_path_factory.mktemp("big")
    built = {
        name: build_large(root, name=name, segments=6, segment_bytes=SEGMENT_BYTES)
        for name in ("a", "b", "c")
    }
    # Segments of whole blocks: a stored body is as long as a resume point can be.
    built["blocks"] = build_large(root, name="blocks", segments=3, segment_bytes=2 * BLOCK_SIZE)
    return built


@pytest.fixture
def big_origin(big: dict[str, StreamFixture]) -> Iterator[Origin]:
    with Origin(big["a"].root) as served:
        yield served


def opts(cache: Path, **kw: object) -> HlsOptions:
    net = NetworkOptions(backoff=0.01, backoff_max=0.05, read_timeout=5.0, read_deadline=30.0)
    return HlsOptions(cache=CacheOptions(dir=cache), network=net, **kw)  # type: ignore[arg-type]


def read_all(url: str, options: HlsOptions) -> bytes:
    with kithara_hls.open(url, options) as f:
        return f.read()


def stored(fx: StreamFixture, origin: Origin, cache: Path) -> str:
    """Read `fx` whole through a fresh cache in `cache` (checking its bytes); its URL."""
    url = origin.url(fx.entry)
    assert read_all(url, opts(cache)) == fx.expected()
    return url


def segment_paths(fx: StreamFixture) -> list[str]:
    media = fx.root / fx.media[0]
    base = Path(fx.media[0]).parent
    return [(base / ln).as_posix() for ln in media.read_text().splitlines() if ln and not ln.startswith("#")]


def test_offline_replay_with_seeks(fixtures: dict[str, StreamFixture], origin: Origin, tmp_path: Path):
    fx = fixtures["ts"]
    url = origin.url(fx.entry)
    expected = fx.expected(0)
    assert read_all(url, opts(tmp_path, variant=0)) == expected
    origin.reset_log()
    with kithara_hls.open(url, opts(tmp_path, variant=0, offline=True)) as f:
        assert f.seek(0, os.SEEK_END) == len(expected)
        for pos in range(0, len(expected), 7919):
            f.seek(pos)
            assert f.read(500) == expected[pos : pos + 500]
    assert origin.count() == 0


def test_offline_miss_at_the_read_that_needs_it(
    big: dict[str, StreamFixture], big_origin: Origin, tmp_path: Path
):
    fx = big["a"]
    url = big_origin.url(fx.entry)
    online = opts(tmp_path).replace(network=NetworkOptions(workers=1, lookahead=0.0, read_deadline=30.0))
    with kithara_hls.open(url, online) as f:
        assert f.read(SEGMENT_BYTES + 1000) == fx.expected()[: SEGMENT_BYTES + 1000]
    with kithara_hls.open(url, opts(tmp_path, offline=True)) as f:
        assert f.read(1000) == fx.expected()[:1000]
        f.seek(SEGMENT_BYTES * 4)
        with pytest.raises(kithara_hls.OfflineMiss):
            f.read(10)


CHILD = textwrap.dedent(
    """
    import hashlib, sys
    import kithara_hls
    from kithara_hls import CacheOptions, HlsOptions
    url, cache, stop = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with kithara_hls.open(url, HlsOptions(cache=CacheOptions(dir=cache))) as f:
        if stop:
            assert len(f.read(stop)) == stop
            print("READY", flush=True)
            f.read(10**9)
        else:
            print(hashlib.sha256(f.read()).hexdigest(), flush=True)
    """
)


def child(url: str, cache: Path, stop: int = 0) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, url, str(cache), str(stop)], stdout=subprocess.PIPE, text=True
    )


def test_sigkill_mid_segment_resumes_missing_blocks_only(
    big: dict[str, StreamFixture], big_origin: Origin, tmp_path: Path
):
    fx = big["a"]
    url = big_origin.url(fx.entry)
    paths = segment_paths(fx)
    stalled = big_origin.stall(paths[3], after_bytes=BLOCK_SIZE + 40_000)
    # Reading one byte past the first block of segment 3 proves that block reached disk.
    with child(url, tmp_path, stop=3 * SEGMENT_BYTES + BLOCK_SIZE + 1) as proc:
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "READY"
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(30) == -signal.SIGKILL
        finally:
            proc.kill()
            stalled.set()
    big_origin.clear_faults()
    big_origin.reset_log()
    assert read_all(url, opts(tmp_path)) == fx.expected()
    # The killed process may not have written segment 3's size: a one-byte probe may ask it.
    probes = ("bytes=0-0", "bytes=0-9")
    resumed = [r for r in big_origin.requests if r.path == paths[3] and r.range_header not in probes]
    assert len(resumed) == 1
    assert (resumed[0].range_header or "").startswith(f"bytes={BLOCK_SIZE}-")
    # Whole blocks of the segments read before the kill are not fetched again (a
    # final short block may have been in memory only).
    again = [r for r in big_origin.requests if r.path in paths[:3]]
    assert all(r.range_header and not r.range_header.startswith("bytes=0-") for r in again), again


#: A link slow enough that a child is killed while it writes blocks, not after.
CAPPED_BYTES_PER_S = 1_000_000
#: Bound on waiting for the child's download to reach a state on disk.
CHILD_WAIT_S = 60.0
POLL_S = 0.01


def body_files(cache: Path) -> list[Path]:
    """The body files under `cache`, whole and partial."""
    return sorted(p for p in (cache / BLOBS_FOLDER).rglob("*") if p.is_file())


def whole_and_partial(cache: Path) -> tuple[int, list[int]]:
    """How many whole bodies are under `cache`, and the lengths of its ``.part`` files (a
    download renames them meanwhile)."""
    whole, held = 0, []
    for path in body_files(cache):
        if not path.name.endswith(PART_SUFFIX):
            whole += 1
            continue
        with contextlib.suppress(FileNotFoundError):
            held.append(path.stat().st_size)
    return whole, held


def wait_for(ready: Callable[[], bool], timeout: float) -> bool:
    """Look until `ready()` holds (True) or `timeout` seconds pass (False): another process's
    files give nothing to wait on."""
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL_S)
    return True


def test_sigkill_while_writing_blocks_leaves_bodies_that_read_back_right(
    big: dict[str, StreamFixture], tmp_path: Path
):
    fx = big["a"]
    segments = {path: (fx.root / path).read_bytes() for path in segment_paths(fx)}
    cache = tmp_path / "cache"
    with Origin(fx.root, bandwidth=CAPPED_BYTES_PER_S) as origin:
        url = origin.url(fx.entry)
        with child(url, cache) as proc:
            try:
                # Killed once a body is whole and another download has put a whole block in its
                # .part, and goes on.
                def ready() -> bool:
                    whole, held = whole_and_partial(cache)
                    return whole > 0 and any(n >= BLOCK_SIZE for n in held)

                assert wait_for(ready, CHILD_WAIT_S)
                proc.send_signal(signal.SIGKILL)
                assert proc.wait(CHILD_WAIT_S) == -signal.SIGKILL
            finally:
                proc.kill()
        # Every body on disk is whole at its final name, or a prefix of its segment as a .part.
        resume: dict[str, tuple[int, int]] = {}  # segment -> (bytes its .part holds, resume point)
        whole: set[str] = set()
        for path in body_files(cache):
            data = path.read_bytes()
            partial = path.name.endswith(PART_SUFFIX)
            matches = [
                s for s, body in segments.items() if (body.startswith(data) if partial else body == data)
            ]
            assert len(matches) == 1 or (partial and not data), f"{path.name} reads back wrong"
            if not partial:
                whole.add(matches[0])
            elif data:
                resume[matches[0]] = (len(data), len(data) // BLOCK_SIZE * BLOCK_SIZE)
        assert whole and any(held >= BLOCK_SIZE for held, _ in resume.values()), (whole, resume)
        origin.bandwidth = None
        origin.reset_log()
        assert read_all(url, opts(cache)) == fx.expected()
        asked = {s: [r.range_header for r in origin.requests if r.path == s] for s in segments}
    assert not any(path.name.endswith(PART_SUFFIX) for path in body_files(cache))
    for segment, ranges in asked.items():
        # The killed process may not have kept the sizes: a one-byte probe may ask one.
        ranges = [r for r in ranges if r not in ("bytes=0-0", "bytes=0-9")]
        if segment in whole:
            assert ranges == [], segment
        elif segment in resume:
            held, start = resume[segment]
            # A .part holding every byte needs no request once its size is known.
            allowed = [[f"bytes={start}-" if start else None]]
            if held == len(segments[segment]):
                allowed.append([])
            assert ranges in allowed, (segment, held, ranges)
        else:
            assert ranges == [None], segment


#: A link on which two processes surely download the same bodies at the same time.
SHARED_BYTES_PER_S = 4_000_000


@pytest.mark.parametrize("bandwidth", [None, SHARED_BYTES_PER_S])
def test_two_processes_share_one_cache(
    big: dict[str, StreamFixture], big_origin: Origin, tmp_path: Path, bandwidth: float | None
):
    fx = big["b"]
    url = big_origin.url(fx.entry)
    big_origin.bandwidth = bandwidth
    procs = [child(url, tmp_path) for _ in range(2)]
    digests = []
    for proc in procs:
        with proc:
            digests.append(proc.communicate(timeout=CHILD_WAIT_S)[0].strip())
    assert [p.returncode for p in procs] == [0, 0]
    want = hashlib.sha256(fx.expected()).hexdigest()
    assert digests == [want, want]
    # Each body is whole at its final name, however the two writers met.
    segments = {(fx.root / path).read_bytes() for path in segment_paths(fx)}
    assert sorted(f.read_bytes() in segments for f in body_files(tmp_path)) == [True] * len(segments)
    big_origin.reset_log()
    assert read_all(url, opts(tmp_path, offline=True)) == fx.expected()


def test_eviction_keeps_cap_and_spares_open_readers(
    big: dict[str, StreamFixture], big_origin: Origin, tmp_path: Path
):
    urls = {name: big_origin.url(fx.entry) for name, fx in big.items()}
    for name in ("a", "b"):
        assert read_all(urls[name], opts(tmp_path)) == big[name].expected()
    cache = Cache(CacheOptions(dir=tmp_path))
    catalog = Catalog(cache)
    try:
        with kithara_hls.open(urls["b"], opts(tmp_path, offline=True)) as held:
            leased = {r.stream_id for r in catalog.streams() if r.leased}
            assert leased == {stream_id(urls["b"])}
            cap = 4 * SEGMENT_BYTES * 6 // 3
            assert cache.volume() > cap
            assert catalog.evict(cap) == 1
            assert cache.volume() <= cap
            assert [r.url for r in catalog.streams()] == [urls["b"]]
            assert held.read() == big["b"].expected()
        with pytest.raises(kithara_hls.OfflineMiss):
            read_all(urls["a"], opts(tmp_path, offline=True))
        catalog.clear(urls["b"])
        assert catalog.streams() == []
    finally:
        cache.close()


def test_a_session_that_downloads_keeps_the_cap(
    big: dict[str, StreamFixture], big_origin: Origin, tmp_path: Path
) -> None:
    urls = {name: big_origin.url(fx.entry) for name, fx in big.items()}
    assert read_all(urls["a"], opts(tmp_path)) == big["a"].expected()
    capped = opts(tmp_path).replace(cache=CacheOptions(dir=tmp_path, max_bytes=7 * SEGMENT_BYTES))
    # b's first stored segment takes the cache past the cap: a, not leased, goes.
    assert read_all(urls["b"], capped) == big["b"].expected()
    with pytest.raises(kithara_hls.OfflineMiss):
        read_all(urls["a"], opts(tmp_path, offline=True))
    assert read_all(urls["b"], opts(tmp_path, offline=True)) == big["b"].expected()


def test_a_stream_read_from_the_cache_runs_one_fetch_thread(
    big: dict[str, StreamFixture], big_origin: Origin, tmp_path: Path
) -> None:
    url = big_origin.url(big["c"].entry)
    assert read_all(url, opts(tmp_path)) == big["c"].expected()
    big_origin.reset_log()
    with kithara_hls.open(url, opts(tmp_path)) as f:
        assert f.read() == big["c"].expected()
        names = [
            t.name for t in threading.enumerate() if t.name.startswith(("kithara-fetch", "kithara-probe"))
        ]
    # Threads start only as others wait on the network: nothing here did.
    assert names == ["kithara-fetch-0"]
    assert [r.path for r in big_origin.requests if not r.path.endswith(".m3u8")] == []


def drop_keys(cache: Path, prefix: str) -> int:
    """Delete the cache records whose key starts with `prefix`; returns how many."""
    import diskcache

    raw = diskcache.Cache(str(cache))
    try:
        keys = [k for k in raw.iterkeys() if isinstance(k, str) and k.startswith(prefix)]
        for key in keys:
            raw.delete(key)
        return len(keys)
    finally:
        raw.close()


def test_a_reopened_stream_knows_every_offset_from_its_sizes_snapshot(
    big: dict[str, StreamFixture], big_origin: Origin, tmp_path: Path
) -> None:
    fx = big["a"]
    url = big_origin.url(fx.entry)
    expected = fx.expected()
    assert read_all(url, opts(tmp_path)) == expected
    # No record per segment: the snapshot alone tells the sizes (and so that the
    # stored files are whole).
    assert drop_keys(tmp_path, "size:") == 0
    big_origin.reset_log()
    with kithara_hls.open(url, opts(tmp_path)) as f:
        assert f.seek(0, os.SEEK_END) == len(expected)
        f.seek(len(expected) - 5000)
        assert f.read() == expected[-5000:]
    assert [r.path for r in big_origin.requests if not r.path.endswith(".m3u8")] == []


@pytest.mark.parametrize(
    ("held", "sizes_kept", "asked"),
    [
        # A body at its final name is whole.
        (None, False, []),
        # A .part holding every byte, killed before its rename: asked from its end, it gets
        # a 416 that tells its size; with the size known it needs no request at all.
        (2 * BLOCK_SIZE, False, [(f"bytes={2 * BLOCK_SIZE}-", 416)]),
        (2 * BLOCK_SIZE, True, []),
        # A .part cut inside its second block: asked from its last whole block on.
        (BLOCK_SIZE + 1000, False, [(f"bytes={BLOCK_SIZE}-", 206)]),
        (BLOCK_SIZE + 1000, True, [(f"bytes={BLOCK_SIZE}-", 206)]),
        # A .part without a whole block: asked whole.
        (1000, False, [(None, 200)]),
    ],
)
def test_bodies_left_by_a_killed_run_fetch_only_what_they_lack(
    big: dict[str, StreamFixture],
    big_origin: Origin,
    tmp_path: Path,
    held: int | None,
    sizes_kept: bool,
    asked: list[tuple[str | None, int]],
) -> None:
    fx = big["blocks"]  # segments of two whole blocks
    url = stored(fx, big_origin, tmp_path)
    whole = body_files(tmp_path)
    assert len(whole) == 3 and not any(p.name.endswith(PART_SUFFIX) for p in whole)
    if not sizes_kept:  # as a process killed before writing its sizes snapshot leaves them
        assert drop_keys(tmp_path, "sizes:") == 1
    if held is not None:
        for body in whole:
            part = body.with_name(body.name + PART_SUFFIX)
            body.rename(part)
            with open(part, "r+b") as f:
                f.truncate(held)
    big_origin.reset_log()
    assert read_all(url, opts(tmp_path)) == fx.expected()
    got = [(r.range_header, r.status) for r in big_origin.requests if not r.path.endswith(".m3u8")]
    assert got == asked * 3
    # Every body is renamed into place, whole; a run without sizes asks nothing again.
    assert body_files(tmp_path) == whole
    drop_keys(tmp_path, "sizes:")
    big_origin.reset_log()
    assert read_all(url, opts(tmp_path)) == fx.expected()
    assert [r.path for r in big_origin.requests if not r.path.endswith(".m3u8")] == []


def test_the_sizes_snapshot_is_kept_while_downloading(
    big: dict[str, StreamFixture], big_origin: Origin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not only at close: a process killed later still leaves the sizes it had learnt."""
    import threading

    from kithara_hls import bookkeeping

    monkeypatch.setattr(bookkeeping, "SIZES_SAVE_INTERVAL_S", 0.0)  # at every finished download
    kept = threading.Event()
    keep = Catalog.keep_sizes

    def keep_and_tell(self: Catalog, sid: str, sizes: dict[str, object]) -> None:
        keep(self, sid, sizes)  # type: ignore[arg-type]
        kept.set()

    monkeypatch.setattr(Catalog, "keep_sizes", keep_and_tell)
    bookkept = threading.Event()  # the stream's snapshot has a name once the catalog knows it
    bookkeep = bookkeeping.Bookkeeping.bookkeep

    def bookkeep_and_tell(self: bookkeeping.Bookkeeping, *args: Any, **kwargs: Any) -> None:
        bookkeep(self, *args, **kwargs)
        bookkept.set()

    monkeypatch.setattr(bookkeeping.Bookkeeping, "bookkeep", bookkeep_and_tell)
    fx = big["c"]
    url = big_origin.url(fx.entry)
    last = big_origin.stall(segment_paths(fx)[-1], after_bytes=1000)
    try:
        with kithara_hls.open(url, opts(tmp_path)) as f:
            assert f.read(1000) == fx.expected()[:1000]
            assert bookkept.wait(30.0)
            last.set()  # its download now ends after the bookkeeping
            assert kept.wait(30.0)
            cache = Cache(CacheOptions(dir=tmp_path))
            try:
                assert Catalog(cache).sizes(stream_id(url))  # on disk while the stream is open
            finally:
                cache.close()
    finally:
        last.set()


def test_the_sizes_snapshot_keeps_what_another_process_kept_meanwhile(
    big: dict[str, StreamFixture], big_origin: Origin, tmp_path: Path
) -> None:
    fx = big["c"]
    url = big_origin.url(fx.entry)
    snapshot = f"sizes:{stream_id(url)}"
    with kithara_hls.open(url, opts(tmp_path)) as f:
        assert f.read() == fx.expected()
        other = Cache(CacheOptions(dir=tmp_path))
        try:
            other.set(snapshot, b'{"elsewhere": [123, null]}')
        finally:
            other.close()
    cache = Cache(CacheOptions(dir=tmp_path))
    try:
        blob = cache.get(snapshot)
    finally:
        cache.close()
    assert blob is not None
    kept = json.loads(blob)
    assert kept.pop("elsewhere") == [123, None]
    assert sorted(entry[0] for entry in kept.values()) == sorted(map(len, fx.segment_bytes()))


def test_a_corrupt_sizes_snapshot_is_ignored(
    big: dict[str, StreamFixture], big_origin: Origin, tmp_path: Path
) -> None:
    fx = big["b"]
    url = stored(fx, big_origin, tmp_path)
    cache = Cache(CacheOptions(dir=tmp_path))
    try:
        snapshot = f"sizes:{stream_id(url)}"
        assert cache.get(snapshot) is not None
        cache.set(snapshot, b'{"x": [1, 2], "y": "z", "w": [-1, null]')
    finally:
        cache.close()
    with kithara_hls.open(url, opts(tmp_path, offline=True)) as f:
        assert f.seek(0, os.SEEK_END) == len(fx.expected())
        f.seek(0)
        assert f.read() == fx.expected()


def test_download_then_offline(fixtures: dict[str, StreamFixture], origin: Origin, tmp_path: Path):
    fx = fixtures["ts"]
    url = origin.url(fx.entry)
    seen: list[float] = []
    result = kithara_hls.download(
        url, opts(tmp_path), all_variants=True, progress=lambda e: seen.append(e.percent)
    )
    assert result.variants == (0, 1, 2)
    assert seen[-1] == 100.0 and seen == sorted(seen)
    origin.reset_log()
    again = kithara_hls.download(url, opts(tmp_path), all_variants=True)
    assert again.bytes == result.bytes
    assert [r for r in origin.requests if not r.path.endswith(".m3u8")] == []
    for variant in range(3):
        assert read_all(url, opts(tmp_path, variant=variant, offline=True)) == fx.expected(variant)
    # Offline with ABR: the best variant the cache holds, and the event says why.
    with kithara_hls.open(url, opts(tmp_path, offline=True)) as f:
        sub = f.events()
        assert f.read() == fx.expected(2)
    applied = [e for e in sub if isinstance(e, ev.VariantApplied)]
    assert applied == [ev.VariantApplied(None, 2, ev.AbrReason.CACHED)]


def test_cache_folder_is_private_and_keys_hide_urls(
    origin: Origin, fixtures: dict[str, StreamFixture], tmp_path: Path
):
    fx = fixtures["byterange"]
    url = origin.url(fx.entry) + "?token=SECRET-TOKEN"
    assert read_all(url, opts(tmp_path / "c")) == fx.expected()
    mode = stat.S_IMODE((tmp_path / "c").stat().st_mode)
    assert mode == 0o700
    with sqlite3.connect(tmp_path / "c" / "cache.db") as db:
        keys = [row[0] for row in db.execute("SELECT key FROM Cache")]
    assert keys and not any("SECRET" in str(k) or "127.0.0.1" in str(k) for k in keys)


def test_pickled_values_are_never_unpickled(tmp_path: Path):
    import diskcache

    raw = diskcache.Cache(str(tmp_path))
    raw.set("size:x", {"size": 1})  # a pickle, as a hostile writer might leave
    raw.close()
    cache = Cache(CacheOptions(dir=tmp_path))
    try:
        assert cache.get("size:x") is None
        with pytest.raises(TypeError):
            cache.set("k", {"not": "bytes"})  # type: ignore[arg-type]
    finally:
        cache.close()


def test_torn_part_resumes_at_its_last_whole_block(
    big: dict[str, StreamFixture], big_origin: Origin, tmp_path: Path
):
    # A process killed inside a write leaves a .part ending mid-block: that block is fetched again.
    fx = big["a"]
    url = stored(fx, big_origin, tmp_path)
    path = segment_paths(fx)[2]
    cache = Cache(CacheOptions(dir=tmp_path))
    try:
        rid = next(r for r in _rids(cache) if _is(cache, r, fx, path))
        os.rename(cache.blob_path(rid), cache.part_path(rid))
        with open(cache.part_path(rid), "r+b") as part:
            part.truncate(BLOCK_SIZE + 1000)
    finally:
        cache.close()
    big_origin.reset_log()
    assert read_all(url, opts(tmp_path)) == fx.expected()
    again = [r.range_header for r in big_origin.requests if r.path == path]
    assert again == [f"bytes={BLOCK_SIZE}-"]


def test_blob_shorter_than_the_resume_point_is_refused(tmp_path: Path):
    from kithara_hls.errors import StorageError
    from kithara_hls.store import Store

    store = Store(Cache(CacheOptions(dir=tmp_path)))
    try:
        writer = store.writer("res:gap", BLOCK_SIZE)  # block 0 is not on disk: a gap would read as zeros
        with pytest.raises(StorageError):
            writer.on_data(BLOCK_SIZE, memoryview(bytes(BLOCK_SIZE)))
        writer.abandon()
        assert store.cache.blob_length("res:gap") == 0
    finally:
        store.close()
        store.cache.close()


def test_blobs_count_in_volume_and_leave_with_their_stream(
    big: dict[str, StreamFixture], big_origin: Origin, tmp_path: Path
):
    fx = big["b"]
    url = stored(fx, big_origin, tmp_path)
    cache = Cache(CacheOptions(dir=tmp_path))
    try:
        blobs = body_files(tmp_path)
        assert sum(p.stat().st_size for p in blobs) == len(fx.expected())
        assert cache.volume() >= len(fx.expected())
        Catalog(cache).remove(stream_id(url))
        assert not body_files(tmp_path)
        assert cache.volume() < len(fx.expected())
    finally:
        cache.close()


def _rids(cache: Cache) -> list[str]:
    catalog = Catalog(cache)
    return [rid for s in catalog.streams() for rid in catalog._members(s.stream_id)[0]]


def _is(cache: Cache, rid: str, fx: StreamFixture, path: str) -> bool:
    buf = bytearray(SEGMENT_BYTES + 1)
    n = cache.read_blob_into(rid, 0, buf)
    return buf[:n] == (fx.root / path).read_bytes()


def test_a_failed_open_leaves_no_cache_thread(origin: Origin, tmp_path: Path):
    import threading

    with pytest.raises(kithara_hls.NetError, match="404"):
        kithara_hls.open(origin.url("missing/index.m3u8"), opts(tmp_path))
    ours = [t for t in threading.enumerate() if t.name.startswith("kithara-") and t.name != "kithara-origin"]
    assert not ours


def test_a_new_stream_plays_when_the_cache_database_cannot_open(
    fixtures: dict[str, StreamFixture], origin: Origin, tmp_path: Path
):
    """The catalog's bookkeeping fails on its own thread: an Error event, not a failed open."""
    import threading

    from kithara_hls import events as ev

    (tmp_path / "cache.db").mkdir()  # where diskcache keeps its database
    fx = fixtures["ts"]
    errors: list[ev.Error] = []
    with kithara_hls.open(origin.url(fx.entry), opts(tmp_path, variant=0)) as f:
        f.on_event(lambda e: errors.append(e) if isinstance(e, ev.Error) else None)
        assert f.read() == fx.expected(0)
    # close() waited for the bookkeeping, so its Error is in.
    assert errors and all(e.recoverable and "cannot open the cache" in str(e.error) for e in errors)
    ours = [t for t in threading.enumerate() if t.name.startswith("kithara-") and t.name != "kithara-origin"]
    assert not ours


@pytest.mark.parametrize("legacy", LEGACY_BLOBS_FOLDERS)
def test_bodies_in_an_old_folder_layout_are_removed_on_open(tmp_path: Path, legacy: str):
    old = tmp_path / legacy / "a"
    old.mkdir(parents=True)
    (old / ("a" + "0" * 39)).write_bytes(b"x" * SEGMENT_BYTES)  # maybe partial: nothing tells
    cache = Cache(CacheOptions(dir=tmp_path))
    try:
        assert not (tmp_path / legacy).exists()
        assert cache.volume() < SEGMENT_BYTES
    finally:
        cache.close()


def test_a_body_file_removed_or_damaged_behind_a_done_record_is_fetched_again(
    big: dict[str, StreamFixture], big_origin: Origin, tmp_path: Path
):
    fx = big["c"]
    url = stored(fx, big_origin, tmp_path)
    paths = segment_paths(fx)
    segments = {(fx.root / path).read_bytes(): path for path in paths}
    files = {segments[f.read_bytes()]: f for f in body_files(tmp_path)}
    files[paths[1]].unlink()  # as another process's eviction, or a hand, leaves it
    # A body at its final name is whole by construction; one damaged by hand contradicts the
    # size its stream's snapshot knows (taken before the first read, as segment 0 is stored).
    with open(files[paths[3]], "r+b") as body:
        body.truncate(1000)
    big_origin.reset_log()
    assert read_all(url, opts(tmp_path)) == fx.expected()
    fetched = [(r.path, r.range_header) for r in big_origin.requests if not r.path.endswith(".m3u8")]
    assert sorted(fetched) == [(paths[1], None), (paths[3], None)]


def test_block_buffers_reused_under_concurrent_readers_and_writers_keep_bytes_exact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Blocks leave memory (and their buffers are reused) while other threads read and write."""
    import random
    import threading

    from kithara_hls import blocks
    from kithara_hls.store import Store

    # Memory keeps two blocks: nearly every read loads one from disk and drops another.
    monkeypatch.setattr(blocks, "RECENT_BLOCKS", 2)
    store = Store(Cache(CacheOptions(dir=tmp_path)))
    blocks = 12
    bodies = {f"res:{i}": random.Random(i).randbytes(blocks * BLOCK_SIZE - 100 * i) for i in range(3)}
    stored = ["res:0"]

    def put(rid: str) -> None:
        writer = store.writer(rid, 0)
        writer.on_size(len(bodies[rid]))
        body = memoryview(bodies[rid])
        for at in range(0, len(body), 100_000):  # chunks that do not line up with blocks
            writer.on_data(at, body[at : at + 100_000])
        writer.finish()

    put("res:0")
    errors: list[str] = []

    def read(seed: int) -> None:
        rng = random.Random(seed)
        out = memoryview(bytearray(70_000))
        for _ in range(500):
            rid = rng.choice(stored)
            body = bodies[rid]
            offset = rng.randrange(len(body))
            try:
                n = store.read_into(rid, offset, out, time.monotonic() + 30)
            except Exception as exc:  # any failure here is the finding
                errors.append(f"{rid} at {offset}: {exc!r}")
                return
            if bytes(out[:n]) != body[offset : offset + n] or n == 0:
                errors.append(f"{rid} at {offset}: {n} bytes differ")
                return

    readers = [threading.Thread(target=read, args=(seed,), name=f"reader-{seed}") for seed in range(4)]
    try:
        for thread in readers:
            thread.start()
        for rid in ("res:1", "res:2"):
            put(rid)
            stored.append(rid)
        for thread in readers:
            thread.join(30)
    finally:
        store.close()  # wakes a reader still waiting, should one be stuck
        for thread in readers:
            thread.join(30)
        store.cache.close()
    assert not errors, errors[:3]
    assert not any(thread.is_alive() for thread in readers)


def test_a_read_past_the_end_learnt_while_its_block_loads_ends_cleanly(tmp_path: Path):
    """Offsets aimed before the sizes were known may lie past a resource's end; its size
    may arrive (from another thread) while the final block is read from disk."""
    from kithara_hls.store import Store

    folder = CacheOptions(dir=tmp_path)
    theirs, ours = Store(Cache(folder)), Store(Cache(folder))
    body = bytes(range(256)) * 70  # one short block
    writer = theirs.writer("res:short", 0)
    writer.on_size(len(body))
    writer.on_data(0, memoryview(body))
    writer.finish()
    real = ours.cache.read_blob_into

    def read_blob_into(name: str, offset: int, buf: bytearray) -> int:
        ours.learn_size(name, len(body))  # as a download's headers would, meanwhile
        return real(name, offset, buf)

    ours.cache.read_blob_into = read_blob_into  # type: ignore[method-assign]
    try:
        out = memoryview(bytearray(5000))
        assert ours.read_into("res:short", len(body) + 2000, out, time.monotonic() + 10) == 0
        assert ours.read_into("res:short", 100, out, time.monotonic() + 10) == 5000
        assert bytes(out) == body[100:5100]
    finally:
        for store in (theirs, ours):
            store.close()
            store.cache.close()
