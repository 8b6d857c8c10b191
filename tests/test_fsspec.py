"""The ``hls`` fsspec protocol: URL mapping, storage options, reads, sizes, and pickled OpenFiles."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import ssl
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from kithara_hls import CacheOptions, HlsError, HlsOptions, HlsSource, InvalidUrl, NetworkOptions
from kithara_hls.testing import Origin, StreamFixture, self_signed_tls

fsspec = pytest.importorskip("fsspec")
hlsfs = pytest.importorskip("kithara_hls.hlsfs")

NETWORK = {"backoff": 0.01, "backoff_max": 0.05, "read_timeout": 5.0, "read_deadline": 30.0}


def storage(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    """Storage options for a pinned variant 0, a private cache and quick retries."""
    return {"variant": 0, "cache": {"dir": str(tmp_path / "cache")}, "network": dict(NETWORK), **extra}


def chained(origin: Origin, path: str) -> str:
    """``hls::http://127.0.0.1:PORT/path``: the loopback origin speaks plain http."""
    return "hls::" + origin.url(path)


def read_open_file(open_file: Any) -> tuple[int, bytes]:
    """Run in a child process: the process id, and every byte of the (unpickled) OpenFile."""
    with open_file as f:
        return os.getpid(), f.read()


@pytest.fixture
def tls_origin(fixtures: dict[str, StreamFixture], tmp_path: Path) -> Iterator[tuple[Origin, str]]:
    """The fixtures served over https with a self-signed certificate, and that certificate's path."""
    context, ca_file = self_signed_tls(tmp_path)
    assert isinstance(context, ssl.SSLContext)
    with Origin(next(iter(fixtures.values())).root, tls=context) as served:
        yield served, ca_file


def test_protocol_is_registered_through_the_entry_point() -> None:
    assert fsspec.get_filesystem_class("hls") is hlsfs.HlsFileSystem


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("hls://media.example/a/master.m3u8", "https://media.example/a/master.m3u8"),
        (
            "hls://media.example:8443/a/master.m3u8?token=x",
            "https://media.example:8443/a/master.m3u8?token=x",
        ),
        ("hls::https://media.example/a/master.m3u8", "https://media.example/a/master.m3u8"),
        ("hls::http://127.0.0.1:8080/a/master.m3u8", "http://127.0.0.1:8080/a/master.m3u8"),
        ("hls::file:///data/a/master.m3u8", "file:///data/a/master.m3u8"),
    ],
)
def test_urls_map_to_the_stream_url(url: str, expected: str) -> None:
    open_file = fsspec.open(url)
    assert isinstance(open_file.fs, hlsfs.HlsFileSystem)
    assert open_file.fs.url(open_file.path) == expected
    assert fsspec.open(open_file.full_name).fs.url(open_file.path) == expected


def test_a_target_protocol_sets_the_scheme_of_bare_paths() -> None:
    fs = hlsfs.HlsFileSystem(target_protocol="http")
    assert fs.url("hls://127.0.0.1:8080/a/master.m3u8") == "http://127.0.0.1:8080/a/master.m3u8"
    assert fs.url("https://h.example/m.m3u8") == "https://h.example/m.m3u8"
    assert hlsfs.HlsFileSystem(fo="http://h.example/m.m3u8", target_protocol="http").url("") == (
        "http://h.example/m.m3u8"
    )
    with pytest.raises(InvalidUrl, match="ftp"):
        hlsfs.HlsFileSystem(target_protocol="ftp")
    with pytest.raises(InvalidUrl):
        hlsfs.HlsFileSystem().url("hls://")


def test_storage_options_build_hls_options(tmp_path: Path) -> None:
    fs = hlsfs.HlsFileSystem(
        variant=1,
        offline=True,
        network={"read_timeout": 5, "retries": 1},
        cache=CacheOptions(dir=tmp_path),
        skip_instance_cache=True,
    )
    options = fs.options
    assert (options.variant, options.offline) == (1, True)
    assert (options.network.read_timeout, options.network.retries) == (5.0, 1)
    assert options.network.connect_timeout == NetworkOptions().connect_timeout
    assert options.cache.dir == tmp_path

    base = HlsOptions(network=NetworkOptions(retries=0, read_timeout=3.0))
    merged = hlsfs.hls_options(base, network={"retries": 2})
    assert (merged.network.retries, merged.network.read_timeout) == (2, 3.0)
    assert hlsfs.hls_options(base) is base


@pytest.mark.parametrize(
    "options",
    [{"varient": 0}, {"network": 5}, {"network": {"read_timeuot": 1}}, {"http": {"headers": {}}}],
)
def test_unknown_storage_options_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(TypeError):
        hlsfs.HlsFileSystem(skip_instance_cache=True, **options)


def test_write_modes_are_refused() -> None:
    fs = hlsfs.HlsFileSystem()
    for mode in ("wb", "ab", "r+b"):
        with pytest.raises(NotImplementedError, match="read-only"):
            fs.open("media.example/a/master.m3u8", mode)


def test_hls_url_reads_over_https(
    fixtures: dict[str, StreamFixture], tls_origin: tuple[Origin, str], tmp_path: Path
) -> None:
    origin, ca_file = tls_origin
    fx = fixtures["ts"]
    url = origin.url(fx.entry).replace("https://", "hls://") + "?token=abc"
    options = storage(tmp_path)
    options["network"]["verify"] = ca_file
    with fsspec.open(url, **options) as f:
        assert isinstance(f, HlsSource)
        assert f.read() == fx.expected(0)
    assert (origin.requests[0].path, origin.requests[0].query) == (fx.entry, "token=abc")
    assert all(r.status < 400 for r in origin.requests)


@pytest.mark.parametrize("name", ["ts", "fmp4", "aes"])
def test_chained_http_reads_byte_exact(
    name: str, fixtures: dict[str, StreamFixture], origin: Origin, tmp_path: Path
) -> None:
    fx = fixtures[name]
    expected = fx.expected(0)
    with fsspec.open(chained(origin, fx.entry), **storage(tmp_path)) as f:
        assert f.read(1000) == expected[:1000]
        assert f.seek(-500, os.SEEK_END) == len(expected) - 500
        assert f.read() == expected[-500:]


def test_chained_local_playlist_reads_byte_exact(fixtures: dict[str, StreamFixture], tmp_path: Path) -> None:
    fx = fixtures["fmp4"]
    path = fx.root / fx.entry
    for url in (f"hls::{path.as_uri()}", f"hls::{path}"):
        with fsspec.open(url, **storage(tmp_path)) as f:
            assert f.read() == fx.expected(0)


def test_size_info_ls_and_cat_are_exact(
    fixtures: dict[str, StreamFixture], origin: Origin, tmp_path: Path
) -> None:
    fx = fixtures["aes"]
    expected = fx.expected(0)
    fs, path = fsspec.core.url_to_fs(chained(origin, fx.entry), **storage(tmp_path))
    assert fs.size(path) == len(expected)
    info = fs.info(path)
    name = path or fs.fo  # fsspec before 2025.10 leaves a chained URL's path empty
    assert (info["type"], info["size"], info["name"]) == ("file", len(expected), name)
    assert info["duration"] == pytest.approx(fx.duration)
    assert fs.ls(path) == [info]
    assert fs.ls(path, detail=False) == [name]
    assert fs.glob(path) == [path]
    assert fs.exists(path) and fs.isfile(path) and not fs.isdir(path)
    assert fs.cat_file(path) == expected
    assert fs.cat_file(path, start=100, end=5000) == expected[100:5000]
    assert fs.cat_file(path, start=-300) == expected[-300:]
    assert fs.cat_file(path, start=10, end=-10) == expected[10:-10]
    assert fs.cat_file(path, start=50, end=20) == b""


def test_a_missing_stream_is_an_hls_error(origin: Origin, tmp_path: Path) -> None:
    fs, path = fsspec.core.url_to_fs(chained(origin, "missing/master.m3u8"), **storage(tmp_path))
    assert not fs.exists(path)
    with pytest.raises(HlsError) as info:
        fs.open(path)
    assert info.value.status == 404


def test_soundfile_reads_packed_mp3(
    fixtures: dict[str, StreamFixture], origin: Origin, tmp_path: Path
) -> None:
    soundfile = pytest.importorskip("soundfile")
    fx = fixtures["mp3"]
    with fsspec.open(chained(origin, fx.entry), **storage(tmp_path)) as f:
        data, rate = soundfile.read(f)
    assert len(data) / rate == pytest.approx(fx.duration, abs=0.3)


@pytest.mark.parametrize("name", ["ts", "fmp4"])
def test_pyav_decodes_an_open_file(
    name: str, fixtures: dict[str, StreamFixture], origin: Origin, tmp_path: Path
) -> None:
    av = pytest.importorskip("av")
    fx = fixtures[name]
    f = fsspec.open(chained(origin, fx.entry), **storage(tmp_path)).open()
    try:
        with av.open(f) as container:
            stream = container.streams.audio[0]
            samples = sum(frame.samples for frame in container.decode(stream))
    finally:
        f.close()
    assert samples / stream.rate == pytest.approx(fx.duration, abs=0.3)


def test_a_pickled_open_file_reads_in_another_process(
    fixtures: dict[str, StreamFixture], origin: Origin, tmp_path: Path
) -> None:
    fx = fixtures["aes_fmp4"]
    open_file = fsspec.open(chained(origin, fx.entry), **storage(tmp_path))
    copy = pickle.loads(pickle.dumps(open_file))
    assert copy.fs.options == open_file.fs.options
    with copy as f:
        assert f.read(4096) == fx.expected(0)[:4096]

    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
        pid, data = pool.submit(read_open_file, open_file).result(timeout=90)
    assert pid != os.getpid()
    assert data == fx.expected(0)


def test_per_file_overrides(fixtures: dict[str, StreamFixture], origin: Origin, tmp_path: Path) -> None:
    fx = fixtures["ts"]
    fs, path = fsspec.core.url_to_fs(chained(origin, fx.entry), **storage(tmp_path))
    with fs.open(path, variant=2) as f:
        assert f.read() == fx.expected(2)
    assert fs.options.variant == 0
