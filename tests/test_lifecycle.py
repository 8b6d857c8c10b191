"""Errors that always arrive, threads that always end, and what `info()` tells.

A crash on a background thread (a fetch worker, the ABR thread, a pool job, the
cache bookkeeping) reaches the reader as `DriverError`, chained from it, long
before the read deadline; `close()` leaves no thread of the library running.
Bounds on waits (WAIT_S) are never reached when the code works.
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import kithara_hls
from kithara_hls import AbrOptions, AbrReason, CacheOptions, HlsOptions, NetworkOptions, bookkeeping
from kithara_hls import events as ev
from kithara_hls.abr.controller import AbrController, AbrDecision
from kithara_hls.bookkeeping import Bookkeeping
from kithara_hls.catalog import Catalog
from kithara_hls.keys import KeyManager
from kithara_hls.session import Session
from kithara_hls.store import Store
from kithara_hls.testing import Origin, StreamFixture

#: Bound on every wait here: far below the read deadline, never reached when the code works.
WAIT_S = 30.0
#: The read deadline: a crash that only this ended would fail the WAIT_S bounds.
READ_DEADLINE_S = 300.0
Fixtures = dict[str, StreamFixture]


def opts(tmp_path: Path, *, variant: int | None = 0, lookahead: float = 60.0, **abr: Any) -> HlsOptions:
    net = NetworkOptions(
        backoff=0.01, backoff_max=0.05, read_timeout=5.0, read_deadline=READ_DEADLINE_S, lookahead=lookahead
    )
    return HlsOptions(
        variant=variant, cache=CacheOptions(dir=tmp_path / "cache"), network=net, abr=AbrOptions(**abr)
    )


def seg_path(fx: StreamFixture, index: int, variant: int = 0) -> str:
    """Origin path of segment `index` of `variant`, from the fixture's media playlist."""
    media = fx.root / fx.media[variant]
    uris = [ln for ln in media.read_text().splitlines() if ln and not ln.startswith("#")]
    return (Path(fx.media[variant]).parent / uris[index]).as_posix()


def read_all(f: io.RawIOBase, size: int = 16_384) -> bytes:
    chunks = []
    while data := f.read(size):
        chunks.append(data)
    return b"".join(chunks)


def library_threads(before: set[threading.Thread]) -> list[threading.Thread]:
    """The library's threads alive now that were not in `before`."""
    return [t for t in threading.enumerate() if t not in before and t.name.startswith("kithara-")]


def read_error(f: io.RawIOBase) -> BaseException | None:
    """Read `f` to its end on a thread; the exception that stopped it (None: it ended cleanly)."""
    done = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            read_all(f)
        except BaseException as exc:
            errors.append(exc)
        finally:
            done.set()

    threading.Thread(target=run, name="test-reader", daemon=True).start()
    assert done.wait(WAIT_S), "the read hung"
    return errors[0] if errors else None


def boom(*args: object, **kwargs: object) -> Any:
    raise RuntimeError("boom")


@pytest.fixture
def stalled(fixtures: Fixtures, origin: Origin) -> Iterator[Callable[[str, int], None]]:
    """stall(name, segment): hold that segment of variant 0 after its first bytes until the test ends,
    so a read must wait for the background work."""
    releases: list[threading.Event] = []

    def stall(name: str, segment: int) -> None:
        releases.append(origin.stall(seg_path(fixtures[name], segment), after_bytes=1000))

    yield stall
    for release in releases:
        release.set()


# --- errors always arrive -------------------------------------------------------------------


def assert_crash(error: BaseException | None, kind: type[kithara_hls.DriverError]) -> None:
    assert isinstance(error, kind), repr(error)
    assert isinstance(error.__cause__, RuntimeError) and str(error.__cause__) == "boom"


def test_a_fetch_worker_crash_reaches_the_reader(
    fixtures: Fixtures, origin: Origin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Store, "writer", boom)
    fx = fixtures["ts"]
    with kithara_hls.open(origin.url(fx.entry), opts(tmp_path)) as f:
        sub = f.events()
        error = read_error(f)
        assert_crash(error, kithara_hls.DriverError)
        assert isinstance(error, kithara_hls.DriverError) and error.segment is not None
        failures = [e for e in sub.drain() if isinstance(e, ev.Error)]
        assert failures and not failures[0].recoverable


@pytest.mark.parametrize(
    ("target", "name", "stream", "variant", "stalled_segment", "kind"),
    [
        pytest.param(AbrController, "decide", "ts", None, 1, kithara_hls.AbrError, id="abr-thread"),
        # A job beside the first download.
        pytest.param(KeyManager, "prefetch", "aes", 0, 0, kithara_hls.DriverError, id="pool-job"),
        pytest.param(Catalog, "record", "ts", 0, 0, kithara_hls.DriverError, id="bookkeeping"),
    ],
)
def test_a_background_crash_reaches_the_reader(
    fixtures: Fixtures,
    origin: Origin,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    stalled: Callable[[str, int], None],
    target: type,
    name: str,
    stream: str,
    variant: int | None,
    stalled_segment: int,
    kind: type[kithara_hls.DriverError],
) -> None:
    monkeypatch.setattr(target, name, boom)
    fx = fixtures[stream]
    stalled(stream, stalled_segment)
    with kithara_hls.open(origin.url(fx.entry), opts(tmp_path, variant=variant)) as f:
        assert_crash(read_error(f), kind)


def test_a_failing_cache_write_in_the_bookkeeping_only_warns(
    fixtures: Fixtures, origin: Origin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(*args: object, **kwargs: object) -> Any:
        raise kithara_hls.StorageError("cache write failed: disk full")

    monkeypatch.setattr(Catalog, "record", full)
    fx = fixtures["ts"]
    events: list[ev.Event] = []
    with kithara_hls.open(origin.url(fx.entry), opts(tmp_path)) as f:
        f.on_event(events.append)
        assert read_all(f) == fx.expected(0)
    errors = [e for e in events if isinstance(e, ev.Error)]  # close ran the record, if it had not yet
    assert [(type(e.error), e.recoverable) for e in errors] == [(kithara_hls.StorageError, True)]


# --- the cache bookkeeping's thread -----------------------------------------------------------


def test_an_eviction_check_before_the_bookkeeping_thread_starts_waits_for_it(
    fixtures: Fixtures,
    origin: Origin,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A download that ends before the bookkeeping thread runs queues its eviction check behind
    the stream's record and lease: no error, and the check finds the stream leased."""
    go = threading.Event()
    serve = bookkeeping._serve

    def held(ref: Any) -> None:
        assert go.wait(WAIT_S)
        serve(ref)

    monkeypatch.setattr(bookkeeping, "_serve", held)
    queued = threading.Event()
    downloaded = Bookkeeping.downloaded

    def downloaded_and_tell(self: Bookkeeping, nbytes: int) -> None:
        downloaded(self, nbytes)
        if nbytes:
            queued.set()

    monkeypatch.setattr(Bookkeeping, "downloaded", downloaded_and_tell)
    checked = threading.Event()
    leased_at_check: list[bool] = []
    evict = Catalog.evict

    def evict_and_look(self: Catalog, max_bytes: int) -> int:
        leased_at_check.append(any(r.leased for r in self.streams()))
        checked.set()
        return evict(self, max_bytes)

    monkeypatch.setattr(Catalog, "evict", evict_and_look)
    fx = fixtures["ts"]
    with caplog.at_level(logging.WARNING, logger="kithara_hls"):
        with kithara_hls.open(origin.url(fx.entry), opts(tmp_path)) as f:
            assert queued.wait(WAIT_S)  # a download ended; the bookkeeping thread has not run
            assert not checked.is_set()
            go.set()
            assert checked.wait(WAIT_S)
            assert read_all(f) == fx.expected(0)
        assert leased_at_check == [True]
    ours = [r for r in caplog.records if not r.name.startswith("kithara_hls.testing")]
    assert [r.getMessage() for r in ours] == []


# --- bounded threads --------------------------------------------------------------------------


def test_close_mid_download_ends_every_thread(
    fixtures: Fixtures, origin: Origin, tmp_path: Path, stalled: Callable[[str, int], None]
) -> None:
    fx = fixtures["aes"]
    stalled("aes", 1)
    before = set(threading.enumerate())
    f = kithara_hls.open(origin.url(fx.entry), opts(tmp_path, variant=None))
    assert f.read(1000) == fx.expected(0)[:1000]
    names = {t.name for t in library_threads(before)}
    assert "kithara-fetch-0" in names
    f.close()
    assert library_threads(before) == []


def test_close_during_a_switch_playlist_load_ends_every_thread(
    fixtures: Fixtures, origin: Origin, tmp_path: Path, sessions: list[Session]
) -> None:
    fx = fixtures["ts"]
    top = len(fx.media) - 1
    release = origin.stall(fx.media[top], after_bytes=0)  # its headers, then nothing
    before = set(threading.enumerate())
    try:
        f = kithara_hls.open(origin.url(fx.entry), opts(tmp_path, variant=0))
        assert f.read(1000) == fx.expected(0)[:1000]
        # An up-switch to a variant whose playlist is not loaded: a job on a fetch worker loads it.
        decision = AbrDecision(0.0, 0, top, AbrReason.UP, 10.0, 1e9, "up")
        sessions[0].switcher.apply(decision)
        assert origin.wait_for(fx.media[top], timeout=WAIT_S), "the switch did not load the playlist"
        f.close()  # while the job waits on the stalled playlist
        assert library_threads(before) == []
    finally:
        release.set()


def test_close_after_a_full_read_ends_every_thread(
    fixtures: Fixtures, origin: Origin, tmp_path: Path
) -> None:
    fx = fixtures["ts"]
    before = set(threading.enumerate())
    # No look-ahead past the reader's part: the seek to the end probes the sizes.
    with kithara_hls.open(origin.url(fx.entry), opts(tmp_path, variant=None, lookahead=0.0)) as f:
        f.seek(0, io.SEEK_END)  # the probe threads start
        f.seek(0)
        read_all(f)
        names = {t.name.rstrip("0123456789") for t in library_threads(before)}
        assert {"kithara-fetch-", "kithara-probe-", "kithara-abr", "kithara-catalog"} <= names
    assert library_threads(before) == []


# --- variants and facts ----------------------------------------------------------------------


def test_a_bandwidth_cap_below_every_variant_is_no_suitable_variant(
    fixtures: Fixtures, origin: Origin, tmp_path: Path
) -> None:
    url = origin.url(fixtures["ts"].entry)
    with pytest.raises(kithara_hls.NoSuitableVariant):
        kithara_hls.open(url, opts(tmp_path, variant=None, max_bandwidth=1000))
    with kithara_hls.open(url, opts(tmp_path, variant=0, max_bandwidth=1000)) as f:  # a pin may exceed it
        assert f.read(10)


def test_info_tells_the_plan_and_what_the_cache_holds(
    fixtures: Fixtures, origin: Origin, tmp_path: Path
) -> None:
    fx = fixtures["aes"]
    url = origin.url(fx.entry)
    segments = len(fx.segment_bytes(0))
    with kithara_hls.open(url, opts(tmp_path)) as f:
        first = f.info()
        assert first.url == url and first.duration == pytest.approx(fx.duration)
        assert first.variant == 0 and first.segments == segments and first.encryption == ("AES-128",)
        assert first.parts == segments + (fx.init_bytes(0) is not None)
        assert first.variants == tuple(f.variants) and first.cache_dir == tmp_path / "cache"
        sub = f.events()
        read_all(f)
        while not isinstance(sub.get(timeout=WAIT_S), ev.EndOfStream):
            pass  # then no download is finishing
        after = f.info()
    assert after.parts_cached == after.parts and after.size == len(fx.expected(0))
    with kithara_hls.open(url, opts(tmp_path)) as f:
        assert f.info().parts_cached == after.parts
    with pytest.raises(ValueError):
        f.info()
