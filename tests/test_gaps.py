"""EXT-X-GAP: a gap is never requested; another variant fills it, or reading it raises SegmentGap."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from bytes_streams import Built, build_gaps

import kithara_hls
from kithara_hls import CacheOptions, HlsOptions, NetworkOptions, SegmentGap, SegmentNotFound
from kithara_hls.testing import Origin
from kithara_hls.testing.realworld import RealWorldFixture

GAP = 2


@pytest.fixture(scope="module")
def streams(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Built]:
    pytest.importorskip("av")
    root = tmp_path_factory.mktemp("gaps")
    return {kind: build_gaps(root, gap=GAP, on_all=kind == "all") for kind in ("one", "all")}


@pytest.fixture
def server(streams: dict[str, Built]) -> Iterator[Origin]:
    with Origin(streams["one"].root) as served:
        yield served


def opts(tmp_path: Path, variant: int | None = 0) -> HlsOptions:
    net = NetworkOptions(backoff=0.01, backoff_max=0.05, read_timeout=5.0, read_deadline=30.0)
    return HlsOptions(variant=variant, cache=CacheOptions(dir=tmp_path / "cache"), network=net)


def _gap_requested(server: Origin, fx: Built) -> list[str]:
    gap_uri = fx.segments[GAP]
    return [r.path for r in server.requests if r.path == gap_uri]


@pytest.mark.parametrize("variant", [0, None])
def test_a_gap_on_one_variant_is_filled_from_the_other(
    variant: int | None, streams: dict[str, Built], server: Origin, tmp_path: Path
) -> None:
    fx = streams["one"]
    with kithara_hls.open(server.url(fx.entry), opts(tmp_path, variant)) as f:
        data = f.read()
    if variant == 0:
        assert data == fx.expected  # the first variant's plan, segment GAP from the second
    assert _gap_requested(server, fx) == []


def test_a_filled_gap_keeps_offsets_exact_on_a_cold_stream(
    streams: dict[str, Built], server: Origin, tmp_path: Path
) -> None:
    fx = streams["one"]
    with kithara_hls.open(server.url(fx.entry), opts(tmp_path)) as f:
        assert f.seek(0, io.SEEK_END) == len(fx.expected)
        for pos in range(0, len(fx.expected), 7919):
            f.seek(pos)
            assert f.read(3000) == fx.expected[pos : pos + 3000]
    assert _gap_requested(server, fx) == []


def test_a_gap_on_every_variant_raises_at_that_segment(
    streams: dict[str, Built], server: Origin, tmp_path: Path
) -> None:
    fx = streams["all"]
    with kithara_hls.open(server.url(fx.entry), opts(tmp_path)) as f:
        assert f.read(len(fx.expected) + 10_000) == fx.expected  # the bytes before the gap
        with pytest.raises(SegmentGap) as caught:
            f.read(100)
        assert caught.value.segment == GAP
        assert isinstance(caught.value, SegmentNotFound)
        with pytest.raises(SegmentGap):
            f.read(100)  # again: the position stays at the gap
    assert _gap_requested(server, fx) == []


def test_seek_time_past_an_unfilled_gap_reads_on(
    streams: dict[str, Built], server: Origin, tmp_path: Path
) -> None:
    fx = streams["all"]
    after = fx.root / fx.segments[GAP + 1]
    with kithara_hls.open(server.url(fx.entry), opts(tmp_path)) as f:
        start = f.seek_time(sum(fx.durations[: GAP + 1]) + 0.01)
        assert start == pytest.approx(sum(fx.durations[: GAP + 1]))
        assert f.read(1000) == after.read_bytes()[:1000]
        # Where the next segment begins is where the gap (size 0) sits.
        assert f.tell() == len(fx.expected) + 1000
        f.seek(0)
        assert f.read(1000) == fx.expected[:1000]
    assert _gap_requested(server, fx) == []


def test_seek_time_to_where_the_gap_begins_keeps_reading_after_it(
    streams: dict[str, Built], server: Origin, tmp_path: Path
) -> None:
    fx = streams["all"]
    after = fx.root / fx.segments[GAP + 1]
    with kithara_hls.open(server.url(fx.entry), opts(tmp_path)) as f:
        f.size()  # every size known: the part after the gap has an absolute offset
        f.seek_time(sum(fx.durations[: GAP + 1]) + 0.01)
        assert f.tell() == len(fx.expected)
        f.seek(0, io.SEEK_CUR)  # as decoders do: where the anchor stands, past the gap
        assert f.read(1000) == after.read_bytes()[:1000]


# -- the shared fixtures (kithara_hls.testing.realworld) --------------------------------


@pytest.mark.parametrize("variant", [0, None])
def test_realworld_gap_on_one_variant(
    variant: int | None, realworld: dict[str, RealWorldFixture], realworld_origin: Origin, tmp_path: Path
) -> None:
    fx = realworld["gaps_one_ts"]
    with kithara_hls.open(fx.url(realworld_origin.base_url), opts(tmp_path, variant)) as f:
        gapped = "a64" if f.variants[0].uri.endswith("a64/index.m3u8") else "a128"
        data = f.read()
    if variant == 0:
        assert data == fx.tracks[gapped].expected  # the gap filled from the other variant
    assert fx.gap_requests(realworld_origin.requests) == []


def test_realworld_gap_on_every_variant(
    realworld: dict[str, RealWorldFixture], realworld_origin: Origin, tmp_path: Path
) -> None:
    fx = realworld["gaps_all_ts"]
    with kithara_hls.open(fx.url(realworld_origin.base_url), opts(tmp_path)) as f:
        track = fx.tracks["a64" if f.variants[0].uri.endswith("a64/index.m3u8") else "a128"]
        assert f.read(len(track.expected) + 50_000) == track.expected
        with pytest.raises(SegmentGap) as caught:
            f.read(10)
        assert caught.value.segment == track.stops_at
        f.seek_time(track.duration - 0.5)  # past the gap: reads go on
        assert f.read(188)[:1] == b"\x47"
    assert fx.gap_requests(realworld_origin.requests) == []


def test_info_names_the_gaps_and_the_cli_prints_them(
    streams: dict[str, Built], server: Origin, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from kithara_hls import cli

    fx = streams["all"]
    with kithara_hls.open(server.url(fx.entry), opts(tmp_path)) as f:
        assert f.info().gaps == (GAP,)
    assert cli.main(["info", server.url(fx.entry), "--cache-dir", str(tmp_path / "cli")]) == 0
    assert f"gaps no variant fills: segments {GAP}" in capsys.readouterr().out
