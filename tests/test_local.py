"""Playlists on disk, by path or ``file://`` URL, read as over HTTP; remote playlists never reach a file."""

from __future__ import annotations

import gc
import io
import random
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

import kithara_hls
from kithara_hls import CacheOptions, HlsOptions, KeyOptions, NetworkOptions, localfile
from kithara_hls.decode import Forward
from kithara_hls.localfile import LocalFileAdapter, to_url, url_path
from kithara_hls.playlist_checks import check_url, resolve_uri
from kithara_hls.testing import Origin, StreamFixture

CLEAR = ["ts", "fmp4", "byterange", "mp3"]
ENCRYPTED = ["aes", "aes_manual", "aes_fmp4"]


def opts(tmp_path: Path, **options: object) -> HlsOptions:
    net = NetworkOptions(backoff=0.01, backoff_max=0.05, read_timeout=5.0, read_deadline=30.0)
    return HlsOptions(cache=CacheOptions(dir=tmp_path / "cache"), network=net, **options)


def read_all(f: io.RawIOBase, size: int = 10_000) -> bytes:
    chunks = []
    while data := f.read(size):
        chunks.append(data)
    return b"".join(chunks)


def copy_stream(fx: StreamFixture, dest: Path) -> Path:
    """A copy of `fx`'s folder at `dest`; returns the copied entry playlist."""
    folder = (fx.root / fx.entry).parent
    shutil.copytree(folder, dest)
    return dest / Path(fx.entry).name


@pytest.fixture
def adapter_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The URLs the file adapter is asked for during the test."""
    calls: list[str] = []
    send = LocalFileAdapter.send

    def spy(self: LocalFileAdapter, request: requests.PreparedRequest, **kwargs: object) -> requests.Response:
        calls.append(request.url or "")
        return send(self, request, **kwargs)

    monkeypatch.setattr(LocalFileAdapter, "send", spy)
    return calls


# -- opening by path --------------------------------------------------------------------------------


def _as_str(path: Path) -> str:
    return str(path)


def _as_path(path: Path) -> Path:
    return path


def _as_file_url(path: Path) -> str:
    return path.as_uri()


@pytest.mark.parametrize("name", CLEAR + ENCRYPTED)
@pytest.mark.parametrize("named", [_as_str, _as_path, _as_file_url], ids=["str", "pathlib", "file-url"])
def test_whole_read_by_path_is_byte_exact(
    name: str, named: Callable[[Path], object], fixtures: dict[str, StreamFixture], tmp_path: Path
):
    fx = fixtures[name]
    with kithara_hls.open(named(fx.root / fx.entry), opts(tmp_path, variant=0)) as f:
        assert f.info().url.startswith("file:///")
        assert read_all(f) == fx.expected(0)
        assert f.read(100) == b""


@pytest.mark.parametrize("name", ["ts", "aes_fmp4"])
def test_relative_path_resolves_against_the_working_directory(
    name: str, fixtures: dict[str, StreamFixture], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    fx = fixtures[name]
    monkeypatch.chdir(fx.root)
    with kithara_hls.open(f"./{fx.entry}", opts(tmp_path, variant=0)) as f:
        assert read_all(f) == fx.expected(0)


def test_every_variant_of_a_local_master(fixtures: dict[str, StreamFixture], tmp_path: Path):
    fx = fixtures["ts"]
    for variant in range(3):
        with kithara_hls.open(fx.root / fx.entry, opts(tmp_path, variant=variant)) as f:
            assert len(f.variants) == 3
            assert read_all(f, 65_536) == fx.expected(variant)


def test_folder_names_that_need_quoting(fixtures: dict[str, StreamFixture], tmp_path: Path):
    fx = fixtures["fmp4"]
    entry = copy_stream(fx, tmp_path / "my music #1 100% ?x")
    with kithara_hls.open(entry, opts(tmp_path, variant=1)) as f:
        assert read_all(f) == fx.expected(1)


@pytest.mark.parametrize("name", ["ts", "fmp4", "byterange", "aes", "aes_manual", "aes_fmp4"])
def test_random_seeks_are_byte_exact(name: str, fixtures: dict[str, StreamFixture], tmp_path: Path):
    fx = fixtures[name]
    expected = fx.expected(0)
    rng = random.Random(name)
    with kithara_hls.open(fx.root / fx.entry, opts(tmp_path, variant=0)) as f:
        assert f.seek(0, io.SEEK_END) == len(expected)
        for _ in range(200):
            pos = rng.randrange(0, len(expected) + 50)
            n = rng.choice([1, 15, 16, 17, 188, 4096, 70_000])
            assert f.seek(pos) == pos
            assert f.read(n) == expected[pos : pos + n], (pos, n)


@pytest.mark.parametrize("name", ["ts", "aes_manual"])
def test_seek_time_lands_on_segment_start(name: str, fixtures: dict[str, StreamFixture], tmp_path: Path):
    fx = fixtures[name]
    expected = fx.expected(0)
    segments = fx.segment_bytes(0)
    target = sum(fx.durations(0)[:3]) + 0.1
    offset = sum(len(s) for s in segments[:3])
    with kithara_hls.open(fx.root / fx.entry, opts(tmp_path, variant=0)) as f:
        f.seek_time(target)
        assert f.read(1000) == expected[offset : offset + 1000]
        assert f.tell() == offset + 1000


@pytest.mark.parametrize("name", ["ts", "fmp4", "mp3", "aes", "aes_fmp4"])
def test_pyav_decodes_a_local_playlist(name: str, fixtures: dict[str, StreamFixture], tmp_path: Path):
    av = pytest.importorskip("av")
    fx = fixtures[name]
    # No variant pinned: ABR runs on a local master as on a remote one. PyAV's MP4 demuxer
    # reads no further than the size it saw at open, which a switch changes: fMP4 is handed
    # over forward only, as the README says.
    with (
        kithara_hls.open(fx.root / fx.entry, opts(tmp_path)) as f,
        av.open(Forward(f) if name.endswith("fmp4") else f) as container,
    ):
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(stream))
    assert samples / stream.rate == pytest.approx(fx.duration, abs=0.3)


# -- errors -----------------------------------------------------------------------------------------


def test_missing_playlist_names_its_path(tmp_path: Path):
    missing = tmp_path / "nowhere" / "master.m3u8"
    with pytest.raises(kithara_hls.NetError) as caught:
        kithara_hls.open(missing, opts(tmp_path))
    assert f"no such file: {missing}" in str(caught.value)
    assert caught.value.url == missing.as_uri()


def test_missing_segment_raises_segment_not_found(fixtures: dict[str, StreamFixture], tmp_path: Path):
    fx = fixtures["byterange"]
    entry = copy_stream(fx, tmp_path / "copy")
    (entry.parent / "stream.ts").unlink()
    with kithara_hls.open(entry, opts(tmp_path)) as f, pytest.raises(kithara_hls.SegmentNotFound) as caught:
        f.read(100)
    assert caught.value.url == (entry.parent / "stream.ts").as_uri()


def test_a_file_that_is_not_a_playlist(tmp_path: Path):
    page = tmp_path / "page.m3u8"
    page.write_text("<html><body>login</body></html>")
    with pytest.raises(kithara_hls.PlaylistParseError):
        kithara_hls.open(page, opts(tmp_path))


# -- mixing disk and network ------------------------------------------------------------------------


def _rewrite(playlist: Path, dest: Path, uri: Callable[[str], str]) -> None:
    """Write `playlist` to `dest` with each segment URI line passed through `uri`."""
    lines = playlist.read_text().splitlines()
    dest.write_text("\n".join(uri(s) if s and not s.startswith("#") else s for s in lines) + "\n")


def test_local_playlist_fetches_absolute_http_uris_from_the_origin(
    fixtures: dict[str, StreamFixture], origin: Origin, tmp_path: Path, adapter_calls: list[str]
):
    fx = fixtures["ts"]
    media = fx.media[0]
    folder = Path(media).parent.as_posix()
    local = tmp_path / "index.m3u8"
    _rewrite(fx.root / media, local, lambda s: origin.url(f"{folder}/{s}"))
    with kithara_hls.open(local, opts(tmp_path)) as f:
        assert read_all(f) == fx.expected(0)
    assert origin.count(prefix=f"{folder}/", method="GET") >= len(fx.segment_bytes(0))
    assert adapter_calls == [local.as_uri()]


def test_local_master_with_a_remote_variant(
    fixtures: dict[str, StreamFixture], origin: Origin, tmp_path: Path, adapter_calls: list[str]
):
    fx = fixtures["fmp4"]
    master = tmp_path / "master.m3u8"
    master.write_text(f"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=64000\n{origin.url(fx.media[0])}\n")
    with kithara_hls.open(master, opts(tmp_path)) as f:
        assert read_all(f) == fx.expected(0)
    assert origin.count(fx.media[0]) == 1
    assert adapter_calls == [master.as_uri()]


def test_a_remote_hop_drops_the_local_trust(tmp_path: Path, adapter_calls: list[str]):
    """A local master may name a remote playlist; that one still may not name a file."""
    secret = tmp_path / "secret.ts"
    secret.write_bytes(b"secret")
    remote = tmp_path / "remote"
    remote.mkdir()
    (remote / "index.m3u8").write_text(f"#EXTM3U\n#EXTINF:1,\n{secret.as_uri()}\n#EXT-X-ENDLIST\n")
    with Origin(remote) as served:
        master = tmp_path / "master.m3u8"
        master.write_text(f"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=64000\n{served.url('index.m3u8')}\n")
        with pytest.raises(kithara_hls.InvalidUrl):
            kithara_hls.open(master, opts(tmp_path))
    assert adapter_calls == [master.as_uri()]


# -- a remote playlist never reaches a local file ---------------------------------------------------


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "secret" / "passwd.ts"
    path.parent.mkdir()
    path.write_bytes(b"root:x:0:0" * 100)
    return path


@pytest.mark.parametrize(
    "line",
    [
        "#EXTINF:1,\n{file}",
        '#EXT-X-MAP:URI="{file}"\n#EXTINF:1,\na.ts',
        '#EXT-X-KEY:METHOD=AES-128,URI="{file}"\n#EXTINF:1,\na.ts',
        "#EXTINF:1,\nfile:///etc/passwd",
        "#EXTINF:1,\nfile://localhost/etc/passwd",
        "#EXTINF:1,\nFILE:///etc/passwd",
    ],
)
def test_a_remote_playlist_naming_a_file_is_refused(
    line: str, secret: Path, tmp_path: Path, adapter_calls: list[str]
):
    remote = tmp_path / "remote"
    remote.mkdir()
    body = line.format(file=secret.as_uri())
    (remote / "index.m3u8").write_text(f"#EXTM3U\n{body}\n#EXT-X-ENDLIST\n")
    with Origin(remote) as served, pytest.raises(kithara_hls.InvalidUrl):
        kithara_hls.open(served.url("index.m3u8"), opts(tmp_path))
    assert adapter_calls == []


@pytest.mark.parametrize("escape", [0, 12], ids=["absolute-path", "dot-dot"])
def test_relative_uris_of_a_remote_playlist_stay_on_its_origin(
    escape: int, secret: Path, tmp_path: Path, adapter_calls: list[str]
):
    remote = tmp_path / "remote"
    remote.mkdir()
    ref = "../" * escape + secret.as_posix().lstrip("/") if escape else secret.as_posix()
    (remote / "index.m3u8").write_text(f"#EXTM3U\n#EXTINF:1,\n{ref}\n#EXT-X-ENDLIST\n")
    with Origin(remote) as served:
        with kithara_hls.open(served.url("index.m3u8"), opts(tmp_path)) as f:
            with pytest.raises(kithara_hls.SegmentNotFound) as caught:
                f.read(10)
            assert caught.value.url == served.url(secret.as_posix())
        asked = {r.path for r in served.requests}
    assert secret.as_posix().lstrip("/") in asked
    assert adapter_calls == []


def test_a_redirect_to_a_file_is_refused(
    fixtures: dict[str, StreamFixture], origin: Origin, secret: Path, tmp_path: Path, adapter_calls: list[str]
):
    fx = fixtures["byterange"]
    origin.redirect("byterange/stream.ts", secret.as_uri())
    with kithara_hls.open(origin.url(fx.entry), opts(tmp_path)) as f, pytest.raises(kithara_hls.InvalidUrl):
        f.read(100)
    assert adapter_calls == []


# -- keys, cache, offline ---------------------------------------------------------------------------


def test_key_options_apply_to_a_local_key(fixtures: dict[str, StreamFixture], tmp_path: Path):
    fx = fixtures["aes"]
    entry = copy_stream(fx, tmp_path / "copy")
    key_file = entry.parent / "key.key"
    key_file.write_bytes(key_file.read_bytes()[::-1])  # "wrapped": the processor unwraps it
    seen: list[str] = []

    def unwrap(raw: bytes, uri: str) -> bytes:
        seen.append(uri)
        return raw[::-1]

    keys = KeyOptions(key_processor=unwrap, query={"token": "t"}, headers={"X-Key": "1"})
    with kithara_hls.open(entry, opts(tmp_path, keys=keys)) as f:
        assert read_all(f) == fx.expected(0)
    assert seen == [key_file.as_uri()]


def test_static_keys_need_no_key_file(fixtures: dict[str, StreamFixture], tmp_path: Path):
    fx = fixtures["aes_fmp4"]
    entry = copy_stream(fx, tmp_path / "copy")
    keys = {}
    for key_file in entry.parent.rglob("*.key"):
        keys[key_file.as_uri()] = key_file.read_bytes()
        key_file.unlink()
    assert keys
    with kithara_hls.open(entry, opts(tmp_path, keys=KeyOptions(static_keys=keys))) as f:
        assert read_all(f) == fx.expected(0)


def test_cache_serves_a_local_stream_offline_once_read(fixtures: dict[str, StreamFixture], tmp_path: Path):
    fx = fixtures["aes_manual"]
    entry = copy_stream(fx, tmp_path / "copy")
    with kithara_hls.open(entry, opts(tmp_path)) as f:
        assert read_all(f) == fx.expected(0)
    shutil.rmtree(entry.parent)
    with kithara_hls.open(entry, opts(tmp_path, offline=True)) as f:
        assert read_all(f) == fx.expected(0)
    with pytest.raises(kithara_hls.OfflineMiss):
        kithara_hls.open(tmp_path / "other.m3u8", opts(tmp_path, offline=True))


def test_second_open_reads_bodies_from_the_cache(
    fixtures: dict[str, StreamFixture], tmp_path: Path, adapter_calls: list[str]
):
    fx = fixtures["fmp4"]
    entry = copy_stream(fx, tmp_path / "copy")
    with kithara_hls.open(entry, opts(tmp_path, variant=0)) as f:
        assert read_all(f) == fx.expected(0)
    adapter_calls.clear()
    with kithara_hls.open(entry, opts(tmp_path, variant=0)) as f:
        assert read_all(f) == fx.expected(0)
    assert all(url.endswith(".m3u8") for url in adapter_calls), adapter_calls


# -- the command line -------------------------------------------------------------------------------


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "kithara_hls", *args], capture_output=True, timeout=120, check=False, cwd=cwd
    )


def test_cli_info_of_a_relative_path(fixtures: dict[str, StreamFixture], tmp_path: Path):
    fx = fixtures["ts"]
    done = _cli("info", f"./{fx.entry}", "--cache-dir", str(tmp_path), cwd=fx.root)
    assert done.returncode == 0, done.stderr
    out = done.stdout.decode()
    assert out.count("kbit/s") == 3 and "encryption: none" in out


def test_cli_cat_of_a_path_is_byte_exact(fixtures: dict[str, StreamFixture], tmp_path: Path):
    fx = fixtures["aes_fmp4"]
    done = _cli("cat", str(fx.root / fx.entry), "--cache-dir", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == fx.expected(0)


def test_cli_cache_ls_and_clear_find_a_stream_opened_by_path(
    fixtures: dict[str, StreamFixture], tmp_path: Path
):
    fx, cache = fixtures["ts"], str(tmp_path / "cache")
    assert _cli("cat", f"./{fx.entry}", "--variant", "0", "--cache-dir", cache, cwd=fx.root).returncode == 0
    listed = _cli("cache", "ls", f"./{fx.entry}", "--cache-dir", cache, cwd=fx.root)
    assert listed.returncode == 0, listed.stderr
    assert fx.entry in listed.stdout.decode()
    cleared = _cli("cache", "clear", f"./{fx.entry}", "--cache-dir", cache, cwd=fx.root)
    assert cleared.stdout.decode().strip() == "cleared one stream"
    assert _cli("cache", "ls", "--cache-dir", cache, cwd=fx.root).stdout == b""


def test_cli_names_a_missing_path(tmp_path: Path):
    done = _cli("info", "./folder/master.m3u8", "--cache-dir", str(tmp_path / "cache"), cwd=tmp_path)
    assert done.returncode == 1
    assert str(tmp_path / "folder" / "master.m3u8") in done.stderr.decode()


# -- the pieces: to_url, the URL checks, the adapter ------------------------------------------------


def test_to_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    assert to_url("https://a.test/m.m3u8") == "https://a.test/m.m3u8"
    assert to_url("HTTP://a.test/m.m3u8") == "HTTP://a.test/m.m3u8"
    assert to_url("file:///x/m.m3u8") == "file:///x/m.m3u8"
    assert to_url("ftp://a.test/m.m3u8") == "ftp://a.test/m.m3u8"  # left for the checks to refuse
    assert to_url("m.m3u8") == (tmp_path / "m.m3u8").as_uri()
    assert to_url("./a/../b/m.m3u8") == (tmp_path / "b" / "m.m3u8").as_uri()
    assert to_url(Path("a b#c?.m3u8")) == (tmp_path / "a b#c?.m3u8").as_uri()
    assert url_path(to_url("a b#c?%41.m3u8")) == str(tmp_path / "a b#c?%41.m3u8")
    assert to_url("weird:name.m3u8") == (tmp_path / "weird:name.m3u8").as_uri()


def test_file_urls_pass_only_where_the_user_chose_them():
    local = "file:///music/master.m3u8"
    assert check_url(local, local=True) == local
    assert check_url("file:///music/a.ts", parent=local) == "file:///music/a.ts"
    assert resolve_uri("a/seg 1.ts", local) == "file:///music/a/seg 1.ts"
    assert resolve_uri("/elsewhere/k.key", local) == "file:///elsewhere/k.key"
    assert resolve_uri("http://cdn.test/a.ts", local) == "http://cdn.test/a.ts"
    for refused in (
        lambda: check_url(local),
        lambda: check_url(local, parent="https://a.test/m.m3u8"),
        lambda: resolve_uri(local, "http://a.test/m.m3u8"),
        lambda: resolve_uri("file:///etc/passwd", "https://a.test/m.m3u8"),
        lambda: check_url("file://otherhost/share/m.m3u8", local=True),
        lambda: check_url("file:relative.m3u8", local=True),
        lambda: check_url("ftp://a.test/m.m3u8", local=True),
    ):
        with pytest.raises(kithara_hls.InvalidUrl):
            refused()
    assert resolve_uri("/etc/passwd", "http://a.test/x/m.m3u8") == "http://a.test/etc/passwd"


@pytest.fixture
def files(tmp_path: Path) -> Iterator[tuple[requests.Session, Path]]:
    session = requests.Session()
    session.mount("file://", LocalFileAdapter())
    path = tmp_path / "ten bytes.bin"
    path.write_bytes(b"0123456789")
    yield session, path
    session.close()


@pytest.mark.parametrize(
    ("header", "status", "body", "content_range"),
    [
        (None, 200, b"0123456789", None),
        ("bytes=2-5", 206, b"2345", "bytes 2-5/10"),
        ("bytes=5-", 206, b"56789", "bytes 5-9/10"),
        ("bytes=8-99", 206, b"89", "bytes 8-9/10"),
        ("bytes=-3", 206, b"789", "bytes 7-9/10"),
        ("bytes=-30", 206, b"0123456789", "bytes 0-9/10"),
        ("bytes=10-", 416, b"", "bytes */10"),
        ("bytes=-0", 416, b"", "bytes */10"),
        ("bytes=5-2", 200, b"0123456789", None),
        ("items=1-2", 200, b"0123456789", None),
    ],
)
def test_adapter_answers_ranges(
    files: tuple[requests.Session, Path],
    header: str | None,
    status: int,
    body: bytes,
    content_range: str | None,
):
    session, path = files
    headers = {} if header is None else {"Range": header}
    with session.get(path.as_uri(), headers=headers) as resp:
        assert resp.status_code == status
        assert resp.content == body
        assert resp.headers.get("Content-Range") == content_range
        assert resp.headers["Content-Length"] == str(len(body))
        assert resp.url == path.as_uri()


def test_adapter_on_an_empty_file_and_odd_requests(files: tuple[requests.Session, Path]):
    session, path = files
    empty = path.with_name("empty")
    empty.write_bytes(b"")
    with session.get(empty.as_uri()) as resp:
        assert (resp.status_code, resp.content) == (200, b"")
    with session.get(empty.as_uri(), headers={"Range": "bytes=0-0"}) as resp:
        assert (resp.status_code, resp.headers["Content-Range"]) == (416, "bytes */0")
    with session.head(path.as_uri()) as resp:
        assert (resp.status_code, resp.headers["Content-Length"], resp.content) == (200, "10", b"")
    with session.post(path.as_uri(), data=b"x") as resp:
        assert resp.status_code == 405
    for missing in (path.with_name("nothing"), path.parent, path / "below"):
        with session.get(missing.as_uri()) as resp:
            assert resp.status_code == 404
    with session.get(path.as_uri() + "?token=t") as resp:
        assert resp.content == b"0123456789"
    with session.get("file://otherhost" + path.as_posix()) as resp:
        assert resp.status_code == 400


def test_adapter_body_streams_through_read1_and_closes_its_file(
    files: tuple[requests.Session, Path], recwarn: pytest.WarningsRecorder
):
    session, path = files
    resp = session.get(path.as_uri(), headers={"Range": "bytes=1-8"}, stream=True)
    assert resp.raw.read1(3, decode_content=False) == b"123"
    resp.close()
    assert resp.raw.closed
    whole = session.get(path.as_uri(), stream=True)
    got = b""
    while data := whole.raw.read1(4, decode_content=False):
        got += data
    assert got == b"0123456789" and whole.raw.closed  # read to the end: the file is closed
    del resp, whole
    gc.collect()
    assert not [w for w in recwarn if issubclass(w.category, ResourceWarning)]


@pytest.mark.parametrize(
    ("error", "status"),
    [(PermissionError(13, "denied"), 403), (IsADirectoryError(21, "dir"), 404), (OSError(5, "EIO"), 500)],
)
def test_adapter_maps_open_errors_to_statuses(
    files: tuple[requests.Session, Path], monkeypatch: pytest.MonkeyPatch, error: OSError, status: int
):
    session, path = files

    def refuse(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(localfile, "open", refuse, raising=False)
    with session.get(path.as_uri()) as resp:
        assert (resp.status_code, resp.content) == (status, b"")
