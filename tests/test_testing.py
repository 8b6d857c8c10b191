"""The loopback origin and the fixture builders of kithara_hls.testing."""

from __future__ import annotations

import contextlib
import http.client
import io
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from kithara_hls.testing import (
    AES_MANUAL_SEQUENCE,
    CONTENT_TYPES,
    Origin,
    StreamFixture,
    build_all,
    build_large,
)
from kithara_hls.testing.decoding import decoded_seconds

DATA = bytes(range(256)) * 40  # 10240 bytes
BIG = bytes(i * 7 % 251 for i in range(200_000))  # several body chunks
BLOCKED_CHECK_S = 0.2  # how long a call must stay blocked to count as blocked
DURATION_TOLERANCE_S = 0.3
CLIENT_ERRORS = (requests.ConnectionError, requests.exceptions.ChunkedEncodingError)


@pytest.fixture
def files(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (root / "data.bin").write_bytes(DATA)
    (root / "big.bin").write_bytes(BIG)
    (root / "a" / "list.m3u8").write_text("#EXTM3U\n")
    for suffix in CONTENT_TYPES:
        (root / f"typed{suffix}").write_bytes(b"x")
    (tmp_path / "secret").write_bytes(b"outside")
    return root


@pytest.fixture
def plain(files: Path) -> Iterator[Origin]:
    with Origin(files) as served:
        yield served


@contextlib.contextmanager
def raw_get(origin: Origin, path: str) -> Iterator[http.client.HTTPResponse]:
    """A GET through http.client, which sends the path exactly as given."""
    port = int(origin.base_url.rstrip("/").rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        yield conn.getresponse()
    finally:
        conn.close()


# ---------------------------------------------------------------- serving


@pytest.mark.parametrize(("suffix", "content_type"), sorted(CONTENT_TYPES.items()))
def test_content_type_by_extension(plain: Origin, suffix: str, content_type: str) -> None:
    r = requests.get(plain.url(f"typed{suffix}"), timeout=10)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == content_type


def test_full_get_and_head(plain: Origin) -> None:
    r = requests.get(plain.url("data.bin"), timeout=10)
    assert (r.status_code, r.content, r.headers["Content-Length"]) == (200, DATA, str(len(DATA)))
    head = requests.head(plain.url("/data.bin"), timeout=10)
    assert (head.status_code, head.content, head.headers["Content-Length"]) == (200, b"", str(len(DATA)))


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [
        ("bytes=0-99", 0, 99),
        ("bytes=100-", 100, len(DATA) - 1),
        ("bytes=-50", len(DATA) - 50, len(DATA) - 1),
        ("bytes=10-999999", 10, len(DATA) - 1),
        ("bytes=-999999", 0, len(DATA) - 1),
    ],
)
def test_range(plain: Origin, header: str, first: int, last: int) -> None:
    r = requests.get(plain.url("data.bin"), headers={"Range": header}, timeout=10)
    assert r.status_code == 206
    assert r.headers["Content-Range"] == f"bytes {first}-{last}/{len(DATA)}"
    assert r.content == DATA[first : last + 1]


@pytest.mark.parametrize("header", [f"bytes={len(DATA)}-", "bytes=99999-100000", "bytes=-0"])
def test_unsatisfiable_range(plain: Origin, header: str) -> None:
    r = requests.get(plain.url("data.bin"), headers={"Range": header}, timeout=10)
    assert r.status_code == 416
    assert r.headers["Content-Range"] == f"bytes */{len(DATA)}"


def test_malformed_range_is_ignored(plain: Origin) -> None:
    r = requests.get(plain.url("data.bin"), headers={"Range": "bytes=5-2"}, timeout=10)
    assert (r.status_code, r.content) == (200, DATA)


@pytest.mark.parametrize("path", ["/nope.bin", "/a", "/../secret", "/%2e%2e/secret", "/a/../../secret"])
def test_missing_or_outside_root_is_404(plain: Origin, path: str) -> None:
    with raw_get(plain, path) as response:
        assert response.status == 404
        assert b"outside" not in response.read()


def test_query_is_not_part_of_the_path(plain: Origin) -> None:
    r = requests.get(plain.url("data.bin?token=1"), timeout=10)
    assert r.content == DATA
    assert plain.requests[-1][:4] == ("GET", "data.bin", None, 200)


def test_latency_and_bandwidth_can_change_while_serving(plain: Origin) -> None:
    with requests.Session() as session:
        assert session.get(plain.url("big.bin"), timeout=10).content == BIG
        plain.latency = 0.01
        plain.bandwidth = 20_000_000
        assert session.get(plain.url("big.bin"), timeout=10).content == BIG
        plain.bandwidth = None
        assert session.get(plain.url("big.bin"), headers={"Range": "bytes=5-"}, timeout=10).content == BIG[5:]


# ---------------------------------------------------------------- faults


def test_fail_with_retry_after(plain: Origin) -> None:
    plain.fail("data.bin", status=503, times=2, retry_after=3)
    with requests.Session() as session:
        statuses = [session.get(plain.url("data.bin"), timeout=10) for _ in range(3)]
    assert [r.status_code for r in statuses] == [503, 503, 200]
    assert statuses[0].headers["Retry-After"] == "3"
    assert "Retry-After" not in statuses[2].headers


def test_actions_queue_in_order(plain: Origin) -> None:
    plain.fail("data.bin", status=500)
    plain.fail("/data.bin", status=404)
    codes = [requests.get(plain.url("data.bin"), timeout=10).status_code for _ in range(3)]
    assert codes == [500, 404, 200]


def test_clear_faults(plain: Origin) -> None:
    plain.fail("data.bin", times=5)
    plain.clear_faults()
    assert requests.get(plain.url("data.bin"), timeout=10).status_code == 200


@pytest.mark.parametrize("after_bytes", [0, 20_000])
def test_reset_aborts_the_connection(plain: Origin, after_bytes: int) -> None:
    plain.reset("big.bin", after_bytes=after_bytes)
    with pytest.raises(CLIENT_ERRORS):
        requests.get(plain.url("big.bin"), timeout=10)
    assert requests.get(plain.url("big.bin"), timeout=10).content == BIG


def test_truncate_sends_a_short_body(plain: Origin) -> None:
    plain.truncate("big.bin", after_bytes=1000)
    with raw_get(plain, "/big.bin") as response, pytest.raises(http.client.IncompleteRead) as caught:
        assert response.getheader("Content-Length") == str(len(BIG))
        response.read()
    assert caught.value.partial == BIG[:1000]


def test_stall_holds_until_released(plain: Origin) -> None:
    release = plain.stall("big.bin", after_bytes=100)
    body: list[bytes] = []
    with requests.get(plain.url("big.bin"), stream=True, timeout=10) as r:
        reader = threading.Thread(target=lambda: body.append(r.raw.read()))
        reader.start()
        reader.join(BLOCKED_CHECK_S)
        assert reader.is_alive(), "the read should block while stalled"
        release.set()
        reader.join()
    assert body == [BIG]


def test_stop_returns_with_a_stalled_response(files: Path) -> None:
    origin = Origin(files)
    origin.start()
    release = origin.stall("big.bin")
    with requests.get(origin.url("big.bin"), stream=True, timeout=10) as r:
        origin.stop()
        assert release.is_set()
        with pytest.raises(Exception):  # noqa: B017 - any transport error: the origin dropped us
            r.raw.read(decode_content=False, enforce_content_length=True)
    origin.stop()


def test_ignore_range(plain: Origin) -> None:
    plain.ignore_range("data.bin", times=1)
    ranged = {"Range": "bytes=0-9"}
    first = requests.get(plain.url("data.bin"), headers=ranged, timeout=10)
    second = requests.get(plain.url("data.bin"), headers=ranged, timeout=10)
    assert (first.status_code, first.content) == (200, DATA)
    assert (second.status_code, second.content) == (206, DATA[:10])


def test_redirect(plain: Origin) -> None:
    plain.redirect("old.bin", plain.url("data.bin"), status=301)
    r = requests.get(plain.url("old.bin"), timeout=10)
    assert (r.status_code, r.content, r.url) == (200, DATA, plain.url("data.bin"))
    assert [h.status_code for h in r.history] == [301]


def test_gzip(plain: Origin) -> None:
    plain.gzip("data.bin")
    r = requests.get(plain.url("data.bin"), timeout=10)
    assert r.headers["Content-Encoding"] == "gzip"
    assert int(r.headers["Content-Length"]) < len(DATA)
    assert r.content == DATA


def test_request_log(plain: Origin) -> None:
    with requests.Session() as session:
        session.get(plain.url("data.bin"), headers={"Range": "bytes=0-1"}, timeout=10)
        session.head(plain.url("data.bin"), timeout=10)
        session.get(plain.url("a/list.m3u8"), timeout=10)
        session.get(plain.url("a/missing"), timeout=10)
    assert plain.requests[0][:4] == ("GET", "data.bin", "bytes=0-1", 206)
    assert plain.count() == 4
    assert plain.count("data.bin") == 2
    assert plain.count("/data.bin", method="HEAD") == 1
    assert plain.count(prefix="a/") == 2
    assert plain.count(prefix="a/", method="GET") == 2
    assert plain.requests[-1].status == 404
    plain.reset_log()
    assert plain.count() == 0


def test_url_needs_a_running_origin(files: Path) -> None:
    with pytest.raises(RuntimeError):
        Origin(files).url("data.bin")


def test_cli_serves_until_stdin_closes(files: Path) -> None:
    command = [sys.executable, "-m", "kithara_hls.testing", "serve", str(files), "--latency", "0.001"]
    with subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None and proc.stdin is not None
        base_url = proc.stdout.readline().strip()
        assert requests.get(base_url + "data.bin", timeout=10).content == DATA
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0


# ---------------------------------------------------------------- fixtures


def all_variants() -> list[tuple[str, int]]:
    counts = {"ts": 3, "fmp4": 2, "byterange": 1, "mp3": 1, "aes": 1, "aes_manual": 1, "aes_fmp4": 1}
    return [(name, v) for name, n in counts.items() for v in range(n)]


@pytest.mark.parametrize(("name", "variant"), all_variants())
def test_expected_decodes_with_pyav(fixtures: dict[str, StreamFixture], name: str, variant: int) -> None:
    fixture = fixtures[name]
    assert len(fixture.media) > variant
    duration = sum(fixture.durations(variant))
    assert decoded_seconds(fixture.expected(variant)) == pytest.approx(duration, abs=DURATION_TOLERANCE_S)


def test_packed_mp3_decodes_with_soundfile(fixtures: dict[str, StreamFixture]) -> None:
    import soundfile

    data, rate = soundfile.read(io.BytesIO(fixtures["mp3"].expected()))
    assert len(data) / rate == pytest.approx(fixtures["mp3"].duration, abs=DURATION_TOLERANCE_S)


def test_master_lists_variants_unsorted(fixtures: dict[str, StreamFixture]) -> None:
    ts = fixtures["ts"]
    master = (ts.root / ts.entry).read_text()
    bandwidths = [
        int(line.split("BANDWIDTH=")[1].split(",")[0])
        for line in master.splitlines()
        if line.startswith("#EXT-X-STREAM-INF")
    ]
    assert bandwidths != sorted(bandwidths) and len(bandwidths) == 3
    assert "#EXT-X-I-FRAME-STREAM-INF" in master
    sizes = [len(ts.expected(v)) for v in range(3)]
    assert sizes == sorted(sizes)
    assert [len(ts.durations(v)) for v in range(3)] == [len(ts.durations(0))] * 3


def test_fixture_shapes(fixtures: dict[str, StreamFixture]) -> None:
    def playlist(name: str) -> str:
        return (fixtures[name].root / fixtures[name].media[0]).read_text()

    assert "#EXT-X-BYTERANGE" in playlist("byterange")
    manual = playlist("aes_manual")
    assert f"#EXT-X-MEDIA-SEQUENCE:{AES_MANUAL_SEQUENCE}" in manual and "METHOD=NONE" in manual
    assert "IV=" not in manual and manual.count("k1.key") >= 1 and "k0.key" in manual
    aes_fmp4 = playlist("aes_fmp4")
    assert aes_fmp4.index("#EXT-X-KEY") < aes_fmp4.index("#EXT-X-MAP") and "IV=0x" in aes_fmp4
    assert "IV=0x" in playlist("aes")
    for name in ("fmp4", "aes_fmp4"):
        assert fixtures[name].init_bytes()[4:8] == b"ftyp"  # type: ignore[index]
    for name in ("ts", "aes", "aes_manual", "byterange"):
        assert all(seg[0] == 0x47 for seg in fixtures[name].segment_bytes())  # TS sync byte
    assert fixtures["ts"].init_bytes() is None
    assert "#EXT-X-PLAYLIST-TYPE:VOD" in playlist("mp3") and "#EXT-X-ENDLIST" in playlist("mp3")


def test_origin_serves_the_fixtures(origin: Origin, fixtures: dict[str, StreamFixture]) -> None:
    ts = fixtures["ts"]
    r = requests.get(origin.url(ts.entry), timeout=10)
    assert r.headers["Content-Type"] == "application/vnd.apple.mpegurl"
    assert r.text.startswith("#EXTM3U")
    assert origin.count(ts.entry) == 1


def test_builds_are_reused(fixtures: dict[str, StreamFixture]) -> None:
    root = next(iter(fixtures.values())).root
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    assert build_all(root) == fixtures
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == before


def test_large_is_deterministic(tmp_path: Path) -> None:
    first = build_large(tmp_path / "one", segments=3, segment_bytes=1000)
    second = build_large(tmp_path / "two", segments=3, segment_bytes=1000)
    assert first.durations() == [4.0, 4.0, 4.0]
    assert len(first.expected()) == 3000
    assert first.expected() == second.expected()
