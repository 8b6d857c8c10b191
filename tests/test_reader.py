"""End-to-end reads through `kithara_hls.open` against the loopback origin."""

from __future__ import annotations

import io
import random
import threading
from pathlib import Path

import pytest

import kithara_hls
from kithara_hls import CacheOptions, HlsOptions, NetworkOptions
from kithara_hls.testing import Origin, StreamFixture

CLEAR = ["ts", "fmp4", "byterange", "mp3"]
ENCRYPTED = ["aes", "aes_manual", "aes_fmp4"]


def opts(tmp_path: Path, **network: object) -> HlsOptions:
    net = {"backoff": 0.01, "backoff_max": 0.05, "read_timeout": 5.0, "read_deadline": 30.0}
    net.update(network)
    return HlsOptions(variant=0, cache=CacheOptions(dir=tmp_path / "cache"), network=NetworkOptions(**net))


def library_threads(before: set[threading.Thread]) -> list[threading.Thread]:
    """The library's threads alive now that were not in `before`."""
    return [t for t in threading.enumerate() if t not in before and t.name.startswith("kithara-")]


def read_all(f: io.RawIOBase, size: int = 10_000) -> bytes:
    chunks = []
    while data := f.read(size):
        chunks.append(data)
    return b"".join(chunks)


@pytest.mark.parametrize("name", CLEAR + ENCRYPTED)
def test_whole_read_is_byte_exact(
    name: str, fixtures: dict[str, StreamFixture], origin: Origin, tmp_path: Path
):
    fx = fixtures[name]
    with kithara_hls.open(origin.url(fx.entry), opts(tmp_path)) as f:
        assert f.readable() and f.seekable()
        assert read_all(f) == fx.expected(0)
        assert f.read(100) == b""


@pytest.mark.parametrize("name", ["ts", "fmp4", "byterange", "aes", "aes_manual", "aes_fmp4"])
def test_random_seeks_are_byte_exact(
    name: str, fixtures: dict[str, StreamFixture], origin: Origin, tmp_path: Path
):
    fx = fixtures[name]
    expected = fx.expected(0)
    rng = random.Random(name)
    with kithara_hls.open(origin.url(fx.entry), opts(tmp_path)) as f:
        for _ in range(200):
            pos = rng.randrange(0, len(expected) + 50)
            n = rng.choice([1, 15, 16, 17, 188, 4096, 70_000])
            assert f.seek(pos) == pos
            assert f.read(n) == expected[pos : pos + n], (pos, n)
            assert f.tell() == min(pos + n, max(pos, len(expected)))


@pytest.mark.parametrize("size", [17, 4096, 65_536, 300_000])
@pytest.mark.parametrize("name", ENCRYPTED)
def test_encrypted_reads_of_any_size_cross_segments_exactly(
    name: str, size: int, fixtures: dict[str, StreamFixture], origin: Origin, tmp_path: Path
):
    """Cold, then warm: small reads go through kept spans, large ones decrypt straight into the buffer."""
    fx = fixtures[name]
    for _ in range(2):
        with kithara_hls.open(origin.url(fx.entry), opts(tmp_path)) as f:
            assert read_all(f, size) == fx.expected(0)


@pytest.mark.parametrize("name", ["ts", "aes", "aes_fmp4"])
def test_seek_end_before_any_read(
    name: str, fixtures: dict[str, StreamFixture], origin: Origin, tmp_path: Path
):
    fx = fixtures[name]
    expected = fx.expected(0)
    with kithara_hls.open(origin.url(fx.entry), opts(tmp_path)) as f:
        assert f.seek(-100, io.SEEK_END) == len(expected) - 100
        assert f.read() == expected[-100:]
        assert f.seek(0, io.SEEK_END) == len(expected)
        assert f.seek(-10, io.SEEK_CUR) == len(expected) - 10
        with pytest.raises(ValueError):
            f.seek(0, 3)
        with pytest.raises(ValueError):
            f.seek(-1)


def test_pinned_variant_and_variants_sorted(
    fixtures: dict[str, StreamFixture], origin: Origin, tmp_path: Path
):
    fx = fixtures["ts"]
    options = opts(tmp_path).replace(variant=2)
    with kithara_hls.open(origin.url(fx.entry), options) as f:
        rates = [v.bitrate for v in f.variants]
        assert rates == sorted(rates) and len(rates) == 3
        assert read_all(f) == fx.expected(2)


def test_variant_out_of_range(fixtures: dict[str, StreamFixture], origin: Origin, tmp_path: Path):
    with pytest.raises(kithara_hls.VariantNotFound):
        kithara_hls.open(origin.url(fixtures["ts"].entry), opts(tmp_path).replace(variant=7))


def test_seek_time_lands_on_segment_start(fixtures: dict[str, StreamFixture], origin: Origin, tmp_path: Path):
    fx = fixtures["ts"]
    expected = fx.expected(0)
    segments = fx.segment_bytes(0)
    durations = fx.durations(0)
    target = sum(durations[:3]) + 0.1
    with kithara_hls.open(origin.url(fx.entry), opts(tmp_path)) as f:
        assert f.seek_time(target) == pytest.approx(sum(durations[:3]))
        offset = sum(len(s) for s in segments[:3])
        assert f.read(1000) == expected[offset : offset + 1000]
        assert f.tell() == offset + 1000


@pytest.mark.parametrize("name", ["ts", "fmp4", "aes", "aes_manual", "aes_fmp4"])
def test_pyav_decodes_to_duration(
    name: str, fixtures: dict[str, StreamFixture], origin: Origin, tmp_path: Path
):
    av = pytest.importorskip("av")
    fx = fixtures[name]
    with kithara_hls.open(origin.url(fx.entry), opts(tmp_path)) as f, av.open(f) as container:
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(stream))
    assert samples / stream.rate == pytest.approx(fx.duration, abs=0.3)


def test_soundfile_decodes_packed_mp3(fixtures: dict[str, StreamFixture], origin: Origin, tmp_path: Path):
    soundfile = pytest.importorskip("soundfile")
    fx = fixtures["mp3"]
    with kithara_hls.open(origin.url(fx.entry), opts(tmp_path)) as f:
        data, rate = soundfile.read(f)
    assert len(data) / rate == pytest.approx(fx.duration, abs=0.3)


def _segment_path(fx: StreamFixture, index: int, variant: int = 0) -> str:
    """Origin path of a segment file, from the fixture's media playlist."""
    media = fx.root / fx.media[variant]
    uris = [ln for ln in media.read_text().splitlines() if ln and not ln.startswith("#")]
    return str((Path(fx.media[variant]).parent / uris[index]).as_posix())


@pytest.mark.parametrize("fault", ["fail", "reset", "truncate"])
def test_faults_are_retried_to_exact_bytes(
    fault: str, fixtures: dict[str, StreamFixture], origin: Origin, tmp_path: Path
):
    fx = fixtures["ts"]
    path = _segment_path(fx, 1)
    if fault == "fail":
        origin.fail(path, status=503, times=2)
    elif fault == "reset":
        origin.reset(path, after_bytes=3000)
    else:
        origin.truncate(path, after_bytes=5000)
    with kithara_hls.open(origin.url(fx.entry), opts(tmp_path)) as f:
        assert read_all(f) == fx.expected(0)
    assert origin.count(path) >= 2


def test_missing_segment_raises(fixtures: dict[str, StreamFixture], origin: Origin, tmp_path: Path):
    fx = fixtures["ts"]
    path = _segment_path(fx, 2)
    origin.fail(path, status=404, times=10**6)
    expected = fx.expected(0)
    good = sum(len(s) for s in fx.segment_bytes(0)[:2])
    with kithara_hls.open(origin.url(fx.entry), opts(tmp_path)) as f:
        assert f.read(good) == expected[:good]
        with pytest.raises(kithara_hls.SegmentNotFound) as info:
            f.read(10)
        assert info.value.status == 404
        assert f.tell() == good  # nothing was skipped


def test_exhausted_retries_raise_net_error(
    fixtures: dict[str, StreamFixture], origin: Origin, tmp_path: Path
):
    fx = fixtures["ts"]
    path = _segment_path(fx, 0)
    origin.fail(path, status=500, times=10**6)
    with (
        kithara_hls.open(origin.url(fx.entry), opts(tmp_path, retries=2)) as f,
        pytest.raises(kithara_hls.NetError),
    ):
        f.read(10)


def test_close_mid_download_stops_every_thread(
    fixtures: dict[str, StreamFixture], origin: Origin, tmp_path: Path
):
    fx = fixtures["ts"]
    release = origin.stall(_segment_path(fx, 0), after_bytes=1000)
    before = set(threading.enumerate())
    f = kithara_hls.open(origin.url(fx.entry), opts(tmp_path))
    assert library_threads(before)
    errors: list[BaseException] = []
    reading = threading.Event()

    def reader() -> None:
        reading.set()
        try:
            f.read(50_000)
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=reader, name="test-reader")
    t.start()
    assert reading.wait(5)
    f.close()
    t.join(10)
    assert library_threads(before) == []  # before the stall ends: close() itself ended them
    release.set()
    assert not t.is_alive()
    assert errors and isinstance(errors[0], ValueError)
    f.close()  # idempotent
    with pytest.raises(ValueError):
        f.read(1)
    with pytest.raises(ValueError):
        f.seek(0)


def test_second_open_is_served_from_cache(fixtures: dict[str, StreamFixture], origin: Origin, tmp_path: Path):
    fx = fixtures["fmp4"]
    options = opts(tmp_path)
    with kithara_hls.open(origin.url(fx.entry), options) as f:
        assert read_all(f) == fx.expected(0)
    origin.reset_log()
    with kithara_hls.open(origin.url(fx.entry), options) as f:
        assert read_all(f) == fx.expected(0)
    segment_requests = [r for r in origin.requests if not r.path.endswith(".m3u8")]
    assert segment_requests == []


def test_offline_replay_makes_no_request(fixtures: dict[str, StreamFixture], origin: Origin, tmp_path: Path):
    fx = fixtures["aes"]
    options = opts(tmp_path)
    with kithara_hls.open(origin.url(fx.entry), options) as f:
        assert read_all(f) == fx.expected(0)
    origin.reset_log()
    with kithara_hls.open(origin.url(fx.entry), options.replace(offline=True)) as f:
        assert read_all(f) == fx.expected(0)
    assert origin.count() == 0


def test_offline_miss(fixtures: dict[str, StreamFixture], origin: Origin, tmp_path: Path):
    with pytest.raises(kithara_hls.OfflineMiss):
        kithara_hls.open(origin.url(fixtures["ts"].entry), opts(tmp_path).replace(offline=True))


def test_html_instead_of_playlist(origin: Origin, fixtures: dict[str, StreamFixture], tmp_path: Path):
    page = Path(fixtures["ts"].root) / "page.m3u8"
    page.write_text("<html><body>login</body></html>")
    with pytest.raises(kithara_hls.PlaylistParseError):
        kithara_hls.open(origin.url("page.m3u8"), opts(tmp_path))


def test_a_read_between_a_stored_body_and_its_padding_probes_nothing(
    fixtures: dict[str, StreamFixture], origin: Origin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """An AES-128 part's padding is learnt just after its body is stored: a read in that
    window needs no size probe, of this part or of those ahead."""
    from kithara_hls.tasks import TaskRunner

    fx = fixtures["aes"]
    expected = fx.expected(0)
    learning, release = threading.Event(), threading.Event()
    real = TaskRunner.learn_pad

    def held(runner: TaskRunner, part: object) -> None:
        if getattr(part, "segment", None) == 0:
            learning.set()
            assert release.wait(30)
        real(runner, part)  # type: ignore[arg-type]

    monkeypatch.setattr(TaskRunner, "learn_pad", held)
    origin.reset_log()
    f = kithara_hls.open(origin.url(fx.entry), opts(tmp_path))
    try:
        assert f.read(1000) == expected[:1000]
        assert learning.wait(30)  # segment 0 is stored; its padding is not known yet
        out: list[bytes] = []
        reader = threading.Thread(target=lambda: out.append(f.read(1000)), name="reader")
        reader.start()
        reader.join(5)  # only a read that waits on the held padding takes this long
        waited = reader.is_alive()
        release.set()
        reader.join(30)
        assert out == [expected[1000:2000]]
        assert read_all(f) == expected[2000:]
    finally:
        release.set()
        f.close()
    assert not waited
    assert not [r for r in origin.requests if r.range_header and r.range_header.startswith("bytes=-")]
