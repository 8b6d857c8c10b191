"""Network faults against the loopback origin: every read ends in exact bytes or a clean `HlsError`.

Each test injects one kind of fault (status, refused connection, reset, cut or
stalled body, ignored Range, lying Content-Length, gzip, redirects, 403, an
origin that goes away and comes back) and checks the outcome; the last tests pin
the safe defaults. Sixteen sources under faults at once are in test_fuzz.py.
Bounds on waits (WAIT_S) are never reached when the code works.
"""

from __future__ import annotations

import io
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

import kithara_hls
from kithara_hls import CacheOptions, HlsOptions, NetworkOptions
from kithara_hls import events as ev
from kithara_hls.options import DEFAULT_RETRIES
from kithara_hls.retry import RetryPolicy
from kithara_hls.testing import FOREVER, Origin, StreamFixture
from kithara_hls.transport import HttpClient

WAIT_S = 30.0  # bound for a reader thread; never reached when the code works
Fixtures = dict[str, StreamFixture]
FAST = {"backoff": 0.01, "backoff_max": 0.05, "read_timeout": 5.0, "read_deadline": 20.0}


def opts(tmp_path: Path, *, variant: int | None = 0, **network: Any) -> HlsOptions:
    """Pinned variant, private cache, quick retries; `network` overrides."""
    net = NetworkOptions(**{**FAST, **network})
    return HlsOptions(variant=variant, cache=CacheOptions(dir=tmp_path / "cache"), network=net)


def read_all(f: io.RawIOBase, size: int = 16_384) -> bytes:
    chunks = []
    while data := f.read(size):
        chunks.append(data)
    return b"".join(chunks)


def seg_path(fx: StreamFixture, index: int, variant: int = 0) -> str:
    """Origin path of segment `index` of `variant`, from the fixture's media playlist."""
    media = fx.root / fx.media[variant]
    uris = [ln for ln in media.read_text().splitlines() if ln and not ln.startswith("#")]
    return (Path(fx.media[variant]).parent / uris[index]).as_posix()


def free_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_of(origin: Origin) -> int:
    return int(origin.base_url.rstrip("/").rsplit(":", 1)[1])


def read_n(f: io.RawIOBase, n: int) -> bytes:
    """Exactly `n` bytes (fewer only at the end)."""
    chunks = []
    while n > 0 and (data := f.read(min(n, 16_384))):
        chunks.append(data)
        n -= len(data)
    return b"".join(chunks)


def read_outcome(f: io.RawIOBase) -> tuple[bytes, BaseException | None]:
    """Read to the end; return what was read and the `HlsError` that stopped it, if any."""
    chunks: list[bytes] = []
    try:
        while data := f.read(16_384):
            chunks.append(data)
    except kithara_hls.HlsError as exc:
        return b"".join(chunks), exc
    return b"".join(chunks), None


def fails_after(f: io.RawIOBase, expected: bytes, good: int) -> BaseException:
    """Check the first `good` bytes, then that the rest reads exact up to an `HlsError`; return it."""
    assert read_n(f, good) == expected[:good]
    data, error = read_outcome(f)
    assert data == expected[good : good + len(data)] and f.tell() == good + len(data)
    assert error is not None, "the fault went unnoticed"
    return error


def in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    """Run `fn` on a thread; the dict gets 'value' or 'error'."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = fn()
        except BaseException as exc:
            out["error"] = exc

    thread = threading.Thread(target=run, name="test-reader", daemon=True)
    thread.start()
    return thread, out


# --- statuses and connections ---------------------------------------------------------------


def test_connections_are_reused_across_segments(fixtures: Fixtures, origin: Origin, tmp_path: Path) -> None:
    """A body read to its end frees its connection: one worker fetches every segment on one."""
    fx = fixtures["ts"]
    with kithara_hls.open(origin.url(fx.entry), opts(tmp_path, workers=1)) as f:
        assert read_all(f) == fx.expected(0)
    segments = {seg_path(fx, i) for i in range(len(fx.durations(0)))}
    ports = [r.port for r in origin.requests if r.path in segments]
    assert len(ports) == len(segments) and len(set(ports)) == 1


RETRYABLE = [(c, None) for c in (500, 502, 503, 408, 429)] + [(503, 0.01), (429, 0.01), (429, 3600.0)]


@pytest.mark.parametrize(("status", "retry_after"), RETRYABLE)
def test_retryable_status_recovers(
    status: int, retry_after: float | None, fixtures: Fixtures, origin: Origin, tmp_path: Path
) -> None:
    fx = fixtures["ts"]
    path = seg_path(fx, 1)
    origin.fail(path, status=status, times=2, retry_after=retry_after)  # Retry-After 3600 is capped
    origin.fail(fx.media[0], status=status, times=1, retry_after=retry_after)
    errors: list[ev.Error] = []
    with kithara_hls.open(origin.url(fx.entry), opts(tmp_path)) as f:
        f.on_event(lambda e: errors.append(e) if isinstance(e, ev.Error) else None)
        assert read_all(f) == fx.expected(0)
    assert origin.count(path) == 3 and origin.count(fx.media[0]) == 2
    assert [getattr(e.error, "status", None) for e in errors if e.recoverable].count(status) >= 2


def test_retries_are_bounded(fixtures: Fixtures, origin: Origin, tmp_path: Path) -> None:
    fx = fixtures["ts"]
    path = seg_path(fx, 0)
    origin.fail(path, status=503, times=FOREVER, retry_after=0.01)
    with kithara_hls.open(origin.url(fx.entry), opts(tmp_path, retries=3)) as f:
        with pytest.raises(kithara_hls.RetryExhausted) as info:
            f.read(10)
        assert f.tell() == 0
    assert info.value.attempts == 4 and info.value.status == 503
    # Look-ahead and the reader's demand may each run the policy once (fetch.py re-runs a
    # demanded part whose download failed); never more.
    assert 4 <= origin.count(path) <= 8


def test_connection_refused_is_a_clear_error(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/ts/master.m3u8"
    with pytest.raises(kithara_hls.RetryExhausted) as info:
        kithara_hls.open(url, opts(tmp_path, retries=2, connect_timeout=2.0))
    assert info.value.attempts == 3
    assert isinstance(info.value.__cause__, requests.ConnectionError)
    assert "127.0.0.1" in str(info.value)


def test_a_refused_segment_retrying_lets_another_worker_fetch_the_rest(
    fixtures: Fixtures, origin: Origin, tmp_path: Path
) -> None:
    fx = fixtures["ts"]
    media = fx.root / fx.media[0]
    dead = f"http://127.0.0.1:{free_port()}/gone.ts"
    lines = media.read_text().splitlines()
    first = next(i for i, ln in enumerate(lines) if ln and not ln.startswith("#"))
    lines[first] = dead  # segment 0 is refused, for as long as the test runs
    (media.parent / "refused.m3u8").write_text("\n".join(lines) + "\n")
    url = origin.url(f"{Path(fx.media[0]).parent.as_posix()}/refused.m3u8")
    # A request that never goes out starts no worker; its retries must.
    with kithara_hls.open(url, opts(tmp_path, retries=10**6, workers=4)) as f:
        sub = f.events()
        fetched = set()
        deadline = time.monotonic() + WAIT_S  # retries keep Error events coming: bound them all
        while 1 not in fetched:
            event = sub.get(timeout=max(0.0, deadline - time.monotonic()))
            if isinstance(event, ev.SegmentComplete):
                fetched.add(event.segment_index)
    assert origin.count(seg_path(fx, 1)) == 1


@pytest.mark.parametrize("target", ["playlist", "segment", "key"])
def test_reset_mid_body_resumes(target: str, fixtures: Fixtures, origin: Origin, tmp_path: Path) -> None:
    fx = fixtures["aes"]
    path = {"playlist": fx.entry, "segment": seg_path(fx, 2), "key": "aes/key.key"}[target]
    origin.reset(path, after_bytes={"playlist": 100, "segment": 3000, "key": 8}[target], times=2)
    with kithara_hls.open(origin.url(fx.entry), opts(tmp_path)) as f:
        assert read_all(f) == fx.expected(0)
    assert origin.count(path) == 3


def test_truncated_body_resumes_with_range(fixtures: Fixtures, origin: Origin, tmp_path: Path) -> None:
    fx = fixtures["ts"]
    path = seg_path(fx, 1)
    origin.truncate(path, after_bytes=5000)
    origin.truncate(fx.media[0], after_bytes=40)
    with kithara_hls.open(origin.url(fx.entry), opts(tmp_path)) as f:
        assert read_all(f) == fx.expected(0)
    ranges = [r.range_header for r in origin.requests if r.path == path]
    assert ranges[0] is None and ranges[1] is not None and ranges[1].startswith("bytes=5000-")


def test_stall_after_headers_times_out_and_resumes(
    fixtures: Fixtures, origin: Origin, tmp_path: Path
) -> None:
    fx = fixtures["ts"]
    path = seg_path(fx, 1)
    release = origin.stall(path, after_bytes=4000)
    try:
        with kithara_hls.open(origin.url(fx.entry), opts(tmp_path, read_timeout=0.3)) as f:
            assert read_all(f) == fx.expected(0)
    finally:
        release.set()
    ranges = [r.range_header for r in origin.requests if r.path == path]
    assert len(ranges) == 2 and ranges[1] is not None and ranges[1].startswith("bytes=4000-")


def test_read_deadline_bounds_a_stalled_read(fixtures: Fixtures, origin: Origin, tmp_path: Path) -> None:
    fx = fixtures["ts"]
    release = origin.stall(seg_path(fx, 0), after_bytes=100)
    try:
        before = set(threading.enumerate())
        f = kithara_hls.open(origin.url(fx.entry), opts(tmp_path, read_timeout=60.0, read_deadline=0.5))
        with pytest.raises(kithara_hls.NetError):
            f.read(1000)  # the first 100 bytes arrive; the rest never does
        f.close()
        # Checked before the stall ends: close() itself ended them.
        assert not [t for t in threading.enumerate() if t not in before and t.name.startswith("kithara-")]
    finally:
        release.set()


# --- servers that bend HTTP -----------------------------------------------------------------


@pytest.mark.parametrize("cut", ["reset", "truncate"])
def test_server_ignoring_range_on_resume(
    cut: str, fixtures: Fixtures, origin: Origin, tmp_path: Path
) -> None:
    fx = fixtures["ts"]
    path = seg_path(fx, 1)
    getattr(origin, cut)(path, after_bytes=10_000)
    origin.ignore_range(path)
    with kithara_hls.open(origin.url(fx.entry), opts(tmp_path)) as f:
        assert read_all(f) == fx.expected(0)
    resumed = [r for r in origin.requests if r.path == path and r.range_header is not None]
    assert resumed and all(r.status == 200 for r in resumed)


def test_byteranges_and_probes_when_range_is_ignored(
    fixtures: Fixtures, origin: Origin, tmp_path: Path
) -> None:
    fx = fixtures["byterange"]
    origin.ignore_range("byterange/stream.ts")
    expected = fx.expected(0)
    with kithara_hls.open(origin.url(fx.entry), opts(tmp_path)) as f:
        assert f.seek(-1000, io.SEEK_END) == len(expected) - 1000
        assert f.read() == expected[-1000:]
        f.seek(0)
        assert read_all(f) == expected


@pytest.mark.parametrize(
    ("name", "delta", "times", "error"),
    [
        ("ts", +100, FOREVER, kithara_hls.NetError),  # the resume asks past the end: 416
        ("byterange", -100, 2, None),  # the slice's length is known: the cut is resumed
        ("aes", -32, FOREVER, kithara_hls.KeyProcessingError),  # the padding no longer checks
    ],
)
def test_lying_content_length(
    name: str,
    delta: int,
    times: int,
    error: type[Exception] | None,
    fixtures: Fixtures,
    origin: Origin,
    tmp_path: Path,
) -> None:
    fx = fixtures[name]
    origin.lie_length(seg_path(fx, 1), delta, times=times)
    with kithara_hls.open(origin.url(fx.entry), opts(tmp_path)) as f:
        if error is None:
            assert read_all(f) == fx.expected(0)
        else:
            assert isinstance(fails_after(f, fx.expected(0), len(fx.segment_bytes(0)[0])), error)


def test_content_length_contradicting_a_probed_size(
    fixtures: Fixtures, origin: Origin, tmp_path: Path
) -> None:
    fx = fixtures["ts"]
    expected = fx.expected(0)
    f = kithara_hls.open(origin.url(fx.entry), opts(tmp_path, read_deadline=1.0, lookahead=0.01, workers=1))
    try:
        assert f.seek(0, io.SEEK_END) == len(expected)  # every size is now known from probes
        origin.lie_length(seg_path(fx, 1), -100)
        f.seek(0)
        thread, out = in_thread(lambda: read_outcome(f))
        thread.join(4.0)  # read_deadline 1 s, with room to spare
        finished = not thread.is_alive()
    finally:
        f.close()  # ends a spinning reader: the store raises ValueError once closed
    assert finished, "read neither returned nor raised"
    data, error = out["value"]
    assert data == expected[: len(data)]
    assert error is None or isinstance(error, kithara_hls.AssetsError)


def test_gzip(fixtures: Fixtures, origin: Origin, tmp_path: Path) -> None:
    fx = fixtures["aes"]
    expected = fx.expected(0)
    for path in (fx.entry, "aes/key.key"):
        origin.gzip(path)  # decoded: playlists and keys are small bodies
    origin.gzip(seg_path(fx, 1), times=1)  # refused: a segment must arrive byte-exact
    with kithara_hls.open(origin.url(fx.entry), opts(tmp_path)) as f:
        error = fails_after(f, expected, len(fx.segment_bytes(0)[0]))
        assert isinstance(error, kithara_hls.NetError) and "Content-Encoding" in str(error)
        good = f.tell()
        assert read_all(f) == expected[good:]  # the failure did not poison the segment


# --- redirects ----------------------------------------------------------------------------


def test_redirects_between_loopback_origins_are_followed(
    fixtures: Fixtures, origin: Origin, tmp_path: Path
) -> None:
    fx = fixtures["ts"]
    path = seg_path(fx, 2)
    origin.redirect("elsewhere/master.m3u8", origin.url(fx.entry), status=301)
    with Origin(fx.root) as mirror:
        origin.redirect(path, mirror.url(path), status=307)
        with kithara_hls.open(origin.url("elsewhere/master.m3u8"), opts(tmp_path)) as f:
            assert read_all(f) == fx.expected(0)
        assert mirror.count(path) == 1 and mirror.count() == 1


REFUSALS: list[tuple[str, Callable[[Origin, str], Any], type[Exception]]] = [
    ("redirect to file://", lambda o, p: o.redirect(p, "file:///etc/passwd"), kithara_hls.InvalidUrl),
    ("redirect to ftp://", lambda o, p: o.redirect(p, "ftp://127.0.0.1/x.ts"), kithara_hls.InvalidUrl),
    ("redirect loop", lambda o, p: o.redirect(p, "/" + p), kithara_hls.NetError),
    ("403", lambda o, p: o.fail(p, status=403, times=FOREVER), kithara_hls.NetError),
]


@pytest.mark.parametrize(("name", "plant", "error"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refused_segment_fails_clearly(
    name: str,
    plant: Callable[[Origin, str], Any],
    error: type[Exception],
    fixtures: Fixtures,
    origin: Origin,
    tmp_path: Path,
) -> None:
    fx = fixtures["ts"]
    path = seg_path(fx, 1)
    plant(origin, path)
    with kithara_hls.open(origin.url(fx.entry), opts(tmp_path)) as f:
        raised = fails_after(f, fx.expected(0), len(fx.segment_bytes(0)[0]))
    assert isinstance(raised, error)
    assert name != "403" or raised.status == 403  # type: ignore[attr-defined]
    # Bounded: requests' redirect cap, twice at most, after the direct request that met the redirect.
    assert origin.count(path) <= 63


# --- expiring URLs, and an origin that goes away --------------------------------------------


@pytest.mark.parametrize("times", [1, FOREVER])
def test_403_refreshes_the_media_playlist_once(
    times: int, fixtures: Fixtures, origin: Origin, tmp_path: Path
) -> None:
    fx = fixtures["ts"]
    origin.fail(seg_path(fx, 1), status=403, times=times)
    with kithara_hls.open(origin.url(fx.entry), opts(tmp_path)) as f:
        data, error = read_outcome(f)
    assert origin.count(fx.media[0]) == 2
    if times == 1:
        assert error is None and data == fx.expected(0)
    else:
        assert isinstance(error, kithara_hls.NetError) and error.status == 403


def test_origin_gone_then_back_on_the_same_port(fixtures: Fixtures, tmp_path: Path) -> None:
    fx = fixtures["ts"]
    expected = fx.expected(0)
    first = len(fx.segment_bytes(0)[0])
    gone = threading.Event()
    errors: list[ev.Error] = []

    def on_event(event: ev.Event) -> None:
        if isinstance(event, ev.Error) and event.recoverable:
            errors.append(event)
            gone.set()

    patient = opts(tmp_path, retries=200, backoff=0.02, backoff_max=0.1, lookahead=0.01, workers=2)
    with Origin(fx.root) as before:
        port = port_of(before)
        f = kithara_hls.open(before.url(fx.entry), patient)
        f.on_event(on_event)
        head = f.read(first)
    with f:
        thread, out = in_thread(lambda: read_all(f))
        assert gone.wait(WAIT_S), "no recoverable Error while the origin was down"
        with Origin(fx.root, port=port) as after:
            thread.join(WAIT_S)
            assert not thread.is_alive()
            assert after.count() > 0
    assert "error" not in out
    assert head + out["value"] == expected
    assert errors and all(
        isinstance(e.error, kithara_hls.NetError | requests.RequestException) for e in errors
    )


# --- safe defaults --------------------------------------------------------------------------


def test_defaults_are_safe(origin: Origin) -> None:
    net = NetworkOptions()
    assert net.verify is True
    assert 0 < net.connect_timeout <= 30 and 0 < net.read_timeout <= 60 and net.read_deadline < float("inf")
    assert 0 < net.retries == DEFAULT_RETRIES <= 10 and RetryPolicy.from_options(net).backoff_max <= 30
    assert net.max_playlist_bytes < 2**30 and net.max_segments < 10**7
    origin.fail("ts/master.m3u8", status=503, times=FOREVER, retry_after=0.01)
    client = HttpClient(net)
    try:
        with pytest.raises(kithara_hls.RetryExhausted) as info:
            client.get(origin.url("ts/master.m3u8"), max_bytes=1000)
    finally:
        client.close()
    assert info.value.attempts == DEFAULT_RETRIES + 1 == origin.count()


def test_every_request_has_timeouts_and_verifies_tls(
    fixtures: Fixtures, origin: Origin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[tuple[Any, Any]] = []
    real_send = requests.adapters.HTTPAdapter.send

    def spy(self: requests.adapters.HTTPAdapter, request: Any, **kwargs: Any) -> Any:
        sent.append((kwargs.get("timeout"), kwargs.get("verify")))
        return real_send(self, request, **kwargs)

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", spy)
    fx = fixtures["aes"]
    options = HlsOptions(cache=CacheOptions(dir=tmp_path / "cache"))  # default NetworkOptions
    with kithara_hls.open(origin.url(fx.entry), options) as f:
        assert f.seek(0, io.SEEK_END) == len(fx.expected(0))  # probes too
        f.seek(0)
        assert read_all(f) == fx.expected(0)
    net = NetworkOptions()
    assert len(sent) == origin.count() > 6
    assert {timeout for timeout, _ in sent} == {(net.connect_timeout, net.read_timeout)}
    # True, or the CA bundle requests takes from REQUESTS_CA_BUNDLE: never False.
    assert all(verify is True or (isinstance(verify, str) and verify) for _, verify in sent)
