"""Seeking by time: reads start at the target segment before the offsets before it are known.

The titles are generated here: tiny segment files whose bytes spell their index,
served by the loopback origin, so a read that lands anywhere else shows. Request
counts come from the origin's log; nothing here measures time.
"""

from __future__ import annotations

import io
import itertools
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kithara_hls
from kithara_hls import CacheOptions, HlsError, HlsOptions, NetworkOptions
from kithara_hls import events as ev
from kithara_hls.layout import Layout, Part
from kithara_hls.testing import Origin, StreamFixture

SEGMENT_S = 4.0
#: Look-ahead of the sources here: the part being read and the one after it.
LOOKAHEAD_S = 2 * SEGMENT_S
#: Bound for a thread a test starts; never reached when the code works.
WAIT_S = 60.0


@dataclass(frozen=True)
class Title:
    """A generated media playlist: `entry` under the origin's root, and its segments' bytes."""

    entry: str
    segments: tuple[bytes, ...]

    def offset(self, index: int) -> int:
        """Byte offset of segment `index`."""
        return sum(len(s) for s in self.segments[:index])

    @property
    def expected(self) -> bytes:
        """The whole stream."""
        return b"".join(self.segments)

    def path(self, index: int) -> str:
        """The origin path of segment `index`."""
        return f"{Path(self.entry).parent}/s{index:05d}.ts"


@dataclass(frozen=True)
class Titles:
    """The generated titles and the folder that holds them."""

    root: Path
    long: Title
    medium: Title
    short: Title


def segment_body(index: int) -> bytes:
    """Segment `index`'s bytes: its index over and over, 100 to 249 bytes long."""
    return (index.to_bytes(4, "big") * 64)[: 100 + (index * 37) % 150]


def write_title(root: Path, name: str, count: int) -> Title:
    """`count` segments of EXTINF 4.0 under root/name."""
    folder = root / name
    folder.mkdir(parents=True)
    segments = []
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:4", "#EXT-X-PLAYLIST-TYPE:VOD"]
    for i in range(count):
        body = segment_body(i)
        with open(folder / f"s{i:05d}.ts", "wb") as f:
            f.write(body)
        segments.append(body)
        lines += [f"#EXTINF:{SEGMENT_S:.1f},", f"s{i:05d}.ts"]
    lines.append("#EXT-X-ENDLIST")
    (folder / "index.m3u8").write_text("\n".join(lines) + "\n")
    return Title(f"{name}/index.m3u8", tuple(segments))


@pytest.fixture(scope="module")
def titles(tmp_path_factory: pytest.TempPathFactory) -> Titles:
    """A 40,000-segment title, a 1,500-segment one and a 120-segment one."""
    root = tmp_path_factory.mktemp("titles")
    return Titles(
        root,
        write_title(root, "long", 40_000),
        write_title(root, "medium", 1_500),
        write_title(root, "short", 120),
    )


@pytest.fixture
def served(titles: Titles) -> Iterator[Origin]:
    """A loopback origin serving the generated titles."""
    with Origin(titles.root) as origin:
        yield origin


def options(cache: Path, **network: Any) -> HlsOptions:
    """Options for these tests: their own cache, a short look-ahead."""
    return HlsOptions(cache=CacheOptions(dir=cache), network=NetworkOptions(lookahead=LOOKAHEAD_S, **network))


# --- long titles ----------------------------------------------------------------------------


def test_a_far_seek_time_reads_the_target_without_the_sizes_before_it(
    titles: Titles, served: Origin, tmp_path: Path
) -> None:
    title = titles.long
    index = len(title.segments) // 2 + 7
    with kithara_hls.open(served.url(title.entry), options(tmp_path / "cache")) as f:
        served.reset_log()
        assert f.seek_time(index * SEGMENT_S + 1.5) == index * SEGMENT_S
        want = title.segments[index] + title.segments[index + 1][:10]
        assert f.read(len(want)) == want
        first_read = list(served.requests)
    # The target and the look-ahead window after it (0 and 1: the look-ahead open() started),
    # and no size probe.
    paths = [r.path for r in first_read]
    assert title.path(index) in paths
    assert set(paths) <= {title.path(i) for i in (0, 1, index, index + 1, index + 2)}, paths
    assert len(paths) <= 5
    assert not [r for r in first_read if r.range_header in ("bytes=0-0", "bytes=0-9")]


def test_tell_and_relative_seeks_after_seek_time_are_exact(
    titles: Titles, served: Origin, tmp_path: Path
) -> None:
    title = titles.medium
    expected = title.expected
    index = len(title.segments) // 2
    with kithara_hls.open(served.url(title.entry), options(tmp_path / "cache")) as f:
        f.seek_time(index * SEGMENT_S)
        assert f.read(50) == title.segments[index][:50]
        start = title.offset(index)
        assert f.tell() == start + 50
        assert f.seek(-20, io.SEEK_CUR) == start + 30
        assert f.read(400) == expected[start + 30 : start + 430]
        assert f.seek_time(3 * SEGMENT_S) == 3 * SEGMENT_S
        assert f.seek(0, io.SEEK_CUR) == title.offset(3)
        assert f.seek(-5, io.SEEK_END) == len(expected) - 5
        assert f.read() == expected[-5:]


def test_sizes_learnt_after_a_seek_time_are_kept_for_the_next_open(
    titles: Titles, served: Origin, tmp_path: Path
) -> None:
    title = titles.medium
    index = len(title.segments) // 3
    cache = tmp_path / "cache"
    start = title.offset(index)
    with kithara_hls.open(served.url(title.entry), options(cache)) as f:
        assert f.read(10) == title.segments[0][:10]
        f.seek_time(index * SEGMENT_S)
        assert f.read(30) == title.segments[index][:30]
        assert f.tell() == start + 30
    served.reset_log()
    offline = options(cache).replace(offline=True)
    with kithara_hls.open(served.url(title.entry), offline) as f:
        f.seek_time(index * SEGMENT_S)
        assert f.tell() == start
        assert f.read(30) == title.segments[index][:30]
    assert served.requests == []


def test_close_during_tell_ends_its_probes(titles: Titles, served: Origin, tmp_path: Path) -> None:
    title = titles.medium
    release = served.stall(title.path(3))  # the probe of segment 3 hangs: tell() cannot finish
    before = set(threading.enumerate())
    outcome: list[BaseException] = []
    f = kithara_hls.open(served.url(title.entry), options(tmp_path / "cache"))

    def tell() -> None:
        try:
            f.tell()
        except (ValueError, HlsError) as exc:
            outcome.append(exc)

    try:
        f.seek_time(len(title.segments) // 2 * SEGMENT_S)
        thread = threading.Thread(target=tell, name="test-tell")
        thread.start()
        thread.join(0.2)
        assert thread.is_alive()  # it blocked on the sizes
    finally:
        f.close()
        release.set()
    thread.join(WAIT_S)
    assert not thread.is_alive() and len(outcome) == 1
    assert [t.name for t in threading.enumerate() if t not in before and t.name.startswith("kithara-")] == []


# --- reads and seeks, mixed --------------------------------------------------------------------

_op = st.one_of(
    st.tuples(st.just("seek_time"), st.floats(-10.0, 500.0, allow_nan=False)),
    st.tuples(st.just("read"), st.integers(-1, 3_000)),
    st.tuples(st.just("readinto"), st.integers(0, 3_000)),
    st.tuples(st.just("tell")),
    st.tuples(
        st.just("seek"), st.integers(-2_000, 30_000), st.sampled_from([io.SEEK_SET, io.SEEK_CUR, io.SEEK_END])
    ),
)


def test_random_seek_time_read_tell_and_seek_stay_exact(
    titles: Titles, served: Origin, tmp_path: Path
) -> None:
    title = titles.short
    expected = title.expected
    count = itertools.count()

    @settings(max_examples=30, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
    @given(ops=st.lists(_op, min_size=1, max_size=12))
    def run(ops: list[tuple[Any, ...]]) -> None:
        # A fresh cache each time: sizes start unknown, so seek_time anchors.
        cache = tmp_path / f"cache{next(count)}"
        with kithara_hls.open(served.url(title.entry), options(cache)) as f:
            pos = 0
            for op in ops:
                pos = _apply(f, op, pos, title, expected)

    run()


def _apply(f: kithara_hls.HlsSource, op: tuple[Any, ...], pos: int, title: Title, expected: bytes) -> int:
    """Run one operation on `f`, check it against `expected`, return the position after it."""
    kind = op[0]
    if kind == "seek_time":
        index = min(max(int(op[1] // SEGMENT_S), 0), len(title.segments) - 1)
        assert f.seek_time(op[1]) == index * SEGMENT_S
        return title.offset(index)
    if kind == "read":
        want = expected[pos:] if op[1] < 0 else expected[pos : pos + op[1]]
        assert f.read(op[1]) == want, (pos, op)
        return pos + len(want)
    if kind == "readinto":
        buf = bytearray(op[1])
        n = f.readinto(buf)
        assert bytes(buf[:n]) == expected[pos : pos + op[1]], (pos, op)
        return pos + n
    if kind == "tell":
        assert f.tell() == pos
        return pos
    base = {io.SEEK_SET: 0, io.SEEK_CUR: pos, io.SEEK_END: len(expected)}[op[2]]
    if base + op[1] < 0:
        with pytest.raises(ValueError):
            f.seek(op[1], op[2])
        return pos
    assert f.seek(op[1], op[2]) == base + op[1]
    return base + op[1]


# --- what follows the reader -------------------------------------------------------------------


def test_playback_progress_follows_a_seek_time(titles: Titles, served: Origin, tmp_path: Path) -> None:
    title = titles.short
    index = 77
    with kithara_hls.open(served.url(title.entry), options(tmp_path / "cache")) as f:
        sub = f.events()
        landed = f.seek_time(index * SEGMENT_S + 2.0)
        assert f.read(20) == title.segments[index][:20]
        progress = [e for e in sub.drain() if isinstance(e, ev.PlaybackProgress)]
    assert progress and progress[0].position == landed == index * SEGMENT_S


def _part(index: int, start: float, duration: float, *, init: bool = False) -> Part:
    return Part(f"r{index}", f"u{index}", None, None, None, 0, index, init, duration, start)


def test_index_at_time_takes_the_media_part_holding_t() -> None:
    parts = [
        _part(0, 0.0, 0.0, init=True),
        _part(1, 0.0, 4.0),
        _part(2, 4.0, 0.0),  # zero-length: shares its start with the next
        _part(3, 4.0, 4.0),
        _part(4, 8.0, 0.0, init=True),  # the init of a switch
        _part(5, 8.0, 4.0),
    ]
    layout = Layout(parts)
    at = layout.index_at_time
    assert [at(t) for t in (-3.0, 0.0, 3.9, 4.0, 7.9, 8.0, 11.0, 99.0)] == [1, 1, 1, 2, 2, 5, 5, 5]


# --- decoders --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ts", "aes"])
def test_pyav_decodes_from_where_seek_time_landed(
    name: str, fixtures: dict[str, StreamFixture], origin: Origin, tmp_path: Path
) -> None:
    av = pytest.importorskip("av")
    fx = fixtures[name]
    target = fx.duration / 2
    starts = list(itertools.accumulate(fx.durations(0)[:-1], initial=0.0))
    opts = HlsOptions(variant=0, cache=CacheOptions(dir=tmp_path / "cache"))
    with kithara_hls.open(origin.url(fx.entry), opts) as f, av.open(f) as container:
        stream = container.streams.audio[0]
        landed = f.seek_time(target)
        times = [float(frame.pts * frame.time_base) for frame in container.decode(stream)]
    assert landed == pytest.approx(max(s for s in starts if s <= target))
    # Frames buffered before the seek may come first; from the target on, time runs to the end.
    after = [t for t in times if t >= landed - 0.05]
    assert after == sorted(after)
    assert after[0] == pytest.approx(landed, abs=0.1)
    assert after[-1] == pytest.approx(fx.duration, abs=0.1)


@pytest.mark.parametrize("name", ["fmp4", "mp3"])
def test_pyav_seeks_fmp4_and_packed_audio_through_its_container(
    name: str, fixtures: dict[str, StreamFixture], origin: Origin, tmp_path: Path
) -> None:
    # Their demuxers keep their own byte positions: a seek behind their back breaks them.
    av = pytest.importorskip("av")
    fx = fixtures[name]
    opts = HlsOptions(variant=0, cache=CacheOptions(dir=tmp_path / "cache"))
    target = fx.duration / 2
    with kithara_hls.open(origin.url(fx.entry), opts) as f, av.open(f) as container:
        stream = container.streams.audio[0]
        container.seek(int(target / stream.time_base), stream=stream)
        times = [float(frame.pts * frame.time_base) for frame in container.decode(stream)]
    assert times[0] <= target < times[0] + 2.5
    assert times == sorted(times)
    assert times[-1] == pytest.approx(fx.duration, abs=0.1)
