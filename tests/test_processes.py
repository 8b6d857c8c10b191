"""Many streams, many processes: the README recipe on a process pool and on a Dask LocalCluster.

Every process shares one cache folder, so each segment crosses the network once,
whichever process decodes its stream and however often: the origin's request log
is the witness.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

import kithara_hls
from kithara_hls import CacheOptions, HlsOptions, NetworkOptions
from kithara_hls.testing import Origin, StreamFixture
from kithara_hls.testing.oracle import parse_media

STREAMS = ("ts", "fmp4", "mp3")
RESULT_TIMEOUT_S = 90.0


def decode(url: str, cache_dir: str) -> tuple[int, float]:
    """The recipe's worker: decode `url` through PyAV; returns this process's id and the seconds decoded."""
    import av

    options = HlsOptions(
        variant=0,
        cache=CacheOptions(dir=cache_dir),
        network=NetworkOptions(read_timeout=5.0, read_deadline=30.0, backoff=0.01, backoff_max=0.05),
    )
    with (
        kithara_hls.open(url, options) as f,
        av.open(f, options={"skip_estimate_duration_from_pts": "1"}) as container,
    ):
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(stream))
        return os.getpid(), samples / stream.rate


def media_paths(fixtures: dict[str, StreamFixture]) -> set[str]:
    """Origin paths of every segment and init section of variant 0 of `STREAMS`."""
    paths: set[str] = set()
    for name in STREAMS:
        fx = fixtures[name]
        folder = Path(fx.media[0]).parent
        media = parse_media(fx.root / fx.media[0])
        entries = [*media.segments, *([media.init] if media.init else [])]
        paths.update((folder / entry.uri).as_posix() for entry in entries)
    return paths


def body_fetches(origin: Origin) -> Counter[str]:
    """How often each media resource's body was requested (playlists and size probes aside: one
    byte, or the first ten where a segment may begin with an ID3 tag)."""
    return Counter(
        r.path
        for r in origin.requests
        if not r.path.endswith(".m3u8") and r.range_header not in ("bytes=0-0", "bytes=0-9")
    )


def check_durations(
    results: Iterable[tuple[int, float]], fixtures: dict[str, StreamFixture], names: Iterable[str]
) -> set[int]:
    """Assert each stream decoded to its duration; returns the ids of the processes that did it."""
    pids: set[int] = set()
    for (pid, seconds), name in zip(results, names, strict=True):
        assert seconds == pytest.approx(fixtures[name].duration, abs=0.3), name
        pids.add(pid)
    return pids


def test_process_pool_fetches_each_segment_once(
    fixtures: dict[str, StreamFixture], origin: Origin, tmp_path: Path
) -> None:
    pytest.importorskip("av")
    cache_dir = str(tmp_path / "cache")
    urls = [origin.url(fixtures[name].entry) for name in STREAMS]
    spawn = multiprocessing.get_context("spawn")

    with ProcessPoolExecutor(max_workers=2, mp_context=spawn) as pool:
        first = list(pool.map(decode, urls, [cache_dir] * len(urls), timeout=RESULT_TIMEOUT_S))
    check_durations(first, fixtures, STREAMS)
    fetched = body_fetches(origin)
    assert set(fetched) == media_paths(fixtures)
    assert set(fetched.values()) == {1}

    # Fresh processes, streams in another order: everything comes from the shared cache.
    with ProcessPoolExecutor(max_workers=2, mp_context=spawn) as pool:
        again = list(pool.map(decode, urls[::-1], [cache_dir] * len(urls), timeout=RESULT_TIMEOUT_S))
    check_durations(again, fixtures, STREAMS[::-1])
    assert body_fetches(origin) == fetched


def test_dask_local_cluster_fetches_each_segment_once(
    fixtures: dict[str, StreamFixture], origin: Origin, tmp_path: Path
) -> None:
    pytest.importorskip("av")
    distributed = pytest.importorskip("distributed")
    cache_dir = str(tmp_path / "cache")
    urls = [origin.url(fixtures[name].entry) for name in STREAMS]

    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        first_worker, second_worker = sorted(client.scheduler_info()["workers"])

        def run(order: list[str], worker: str) -> list[tuple[int, float]]:
            futures = client.map(decode, order, cache_dir=cache_dir, workers=[worker], pure=False)
            distributed.wait(futures, timeout=RESULT_TIMEOUT_S)
            return list(client.gather(futures))

        first = run(urls, first_worker)
        fetched = body_fetches(origin)
        again = run(urls[::-1], second_worker)

    first_pids = check_durations(first, fixtures, STREAMS)
    again_pids = check_durations(again, fixtures, STREAMS[::-1])
    assert first_pids.isdisjoint(again_pids)
    assert set(fetched) == media_paths(fixtures)
    assert set(fetched.values()) == {1}
    assert body_fetches(origin) == fetched
