"""The fetch pool's contract with its callers: which work it hands out, and when."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from kithara_hls.fetch import BASE_WORKERS, SLOW_RESPONSE_S, FetchPool, Task
from kithara_hls.layout import Layout, build_parts
from kithara_hls.playlist import parse_media

URL = "http://127.0.0.1/p/index.m3u8"
WAIT_S = 10.0


def playlist(segments: int) -> str:
    lines = ["#EXTM3U", "#EXT-X-TARGETDURATION:4", "#EXT-X-MEDIA-SEQUENCE:0"]
    for i in range(segments):
        lines += ["#EXTINF:4.0,", f"s{i}.ts"]
    return "\n".join([*lines, "#EXT-X-ENDLIST", ""])


class Runner:
    """Records probes; a download of `hold` blocks until `release` and ends cancelled (no size
    learnt); a probe of `hold_probe` blocks until `release_probe`."""

    def __init__(self, hold: int, hold_probe: int = -1) -> None:
        self.hold, self.hold_probe = hold, hold_probe
        self.holding = threading.Event()
        self.release = threading.Event()
        self.probing = threading.Event()
        self.release_probe = threading.Event()
        self.probed: list[int] = []
        self.probe_seen = threading.Condition()

    def __call__(self, task: Task) -> bool | None:
        if task.probe:
            if task.index == self.hold_probe:
                self.probing.set()
                assert self.release_probe.wait(WAIT_S)
            with self.probe_seen:
                self.probed.append(task.index)
                self.probe_seen.notify_all()
            return True
        if task.index == self.hold:
            self.holding.set()
            assert self.release.wait(WAIT_S)
            return None
        return True

    def wait_probed(self, count: int) -> list[int]:
        with self.probe_seen:
            assert self.probe_seen.wait_for(lambda: len(self.probed) >= count, WAIT_S)
            return list(self.probed)


@pytest.fixture
def pool_and_runner() -> Iterator[tuple[FetchPool, Runner]]:
    layout = Layout(build_parts(parse_media(playlist(4), URL), 0))
    runner = Runner(hold=1, hold_probe=3)
    pool = FetchPool(layout, runner, workers=2, lookahead_s=0.0, lookahead_bytes=0, probe_workers=1)
    pool.start()
    try:
        yield pool, runner
    finally:
        runner.release.set()
        runner.release_probe.set()
        pool.close(WAIT_S)


def test_probe_skips_a_download_in_flight_and_is_asked_again_after_it(
    pool_and_runner: tuple[FetchPool, Runner],
) -> None:
    pool, runner = pool_and_runner
    pool.demand(1)
    assert runner.holding.wait(WAIT_S)
    pool.probe([1, 2])  # 1 is downloading: its headers will tell
    assert runner.wait_probed(1) == [2]
    ended = threading.Event()
    pool.on_finished = lambda ok, done, idle: ended.set()
    runner.release.set()  # ...but the download ends cancelled, before any header
    assert ended.wait(WAIT_S)
    pool.probe([1])
    assert runner.wait_probed(2) == [2, 1]


def test_a_part_queued_or_probing_is_not_queued_again(pool_and_runner: tuple[FetchPool, Runner]) -> None:
    pool, runner = pool_and_runner
    pool.probe([3])
    assert runner.probing.wait(WAIT_S)
    pool.probe([3, 3, 2, 2])  # 3 is being probed; 2 goes in once
    runner.release_probe.set()
    assert sorted(runner.wait_probed(2)) == [2, 3]
    pool.close(WAIT_S)  # every queued probe ran first or was dropped: nothing ran twice
    assert sorted(runner.probed) == [2, 3]


@pytest.mark.parametrize(("wait_s", "started"), [(None, 8), (0.002, BASE_WORKERS), (SLOW_RESPONSE_S, 8)])
def test_workers_past_the_base_start_only_while_responses_are_slow(
    wait_s: float | None, started: int
) -> None:
    layout = Layout(build_parts(parse_media(playlist(4), URL), 0))
    pool = FetchPool(layout, Runner(hold=-1), workers=8, lookahead_s=0.0, lookahead_bytes=0)
    try:
        if wait_s is not None:
            pool.response_wait(wait_s)
        pool.start()
        for _ in range(20):
            pool.grow()
        assert len(pool.threads()) == started
        pool.grow(always=True)  # a worker about to sit out a retry's backoff
        assert len(pool.threads()) == min(8, started + 1)
    finally:
        pool.close(WAIT_S)


def test_a_demand_while_every_worker_is_busy_starts_another() -> None:
    class Busy:
        """Look-ahead downloads block until released; the demanded part runs at once."""

        def __init__(self) -> None:
            self.cond = threading.Condition()
            self.holding = 0
            self.release = threading.Event()
            self.demanded = threading.Event()

        def __call__(self, task: Task) -> bool | None:
            if task.urgent:
                self.demanded.set()
                return True
            with self.cond:
                self.holding += 1
                self.cond.notify_all()
            assert self.release.wait(WAIT_S)
            return None

    layout = Layout(build_parts(parse_media(playlist(12), URL), 0))
    runner = Busy()
    pool = FetchPool(layout, runner, workers=8, lookahead_s=600.0, lookahead_bytes=2**40)
    try:
        pool.response_wait(0.001)  # a near link: no more than the base workers start by themselves
        pool.start()
        for _ in range(BASE_WORKERS):
            pool.grow()
        with runner.cond:
            assert runner.cond.wait_for(lambda: runner.holding == BASE_WORKERS, WAIT_S)
        pool.demand(11)
        assert runner.demanded.wait(WAIT_S)
        assert len(pool.threads()) == BASE_WORKERS + 1
        pool.demand(0)  # in flight already: its worker brings it
        assert len(pool.threads()) == BASE_WORKERS + 1
    finally:
        runner.release.set()
        pool.close(WAIT_S)
