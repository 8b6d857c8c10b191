"""Switch sets: ABR and `set_variant` never hand a decoder a change it cannot follow.

On ffmpeg-made ladders whose variants differ in sample rate (fMP4, 22.05/48 kHz) and in TS PID
layout (``var_stream_map "v:0,a:0 a:1"``): ABR under a changing link stays in the set it started
in, PyAV decodes the whole stream with no error at one sample rate, and `set_variant` across sets
raises after a read and works before it.
"""

from __future__ import annotations

import dataclasses
import re
import threading
from pathlib import Path
from typing import Any

import pytest

import kithara_hls
from kithara_hls import AbrOptions, CacheOptions, HlsOptions, NetworkOptions, cli
from kithara_hls import events as ev
from kithara_hls.abr.controller import AbrController
from kithara_hls.errors import IncompatibleVariant, VariantNotFound
from kithara_hls.playlist import Variant
from kithara_hls.session import Session
from kithara_hls.sniff import MediaFormat
from kithara_hls.switchsets import codec_family, codecs_format, group
from kithara_hls.testing import EAGER_ABR, Origin
from kithara_hls.testing import realworld as rw
from kithara_hls.testing.decoding import summarize_frames

#: Link speeds, bytes per second: every variant fits, then only the lowest.
FAST = 400_000
SLOW = 6_000


# -- rules ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "family"),
    [
        ("mp4a.40.2", "aac"),
        ("mp4a.40.5", "aac"),
        ("mp4a.40.34", "mpa"),
        ("mp4a.6B", "mpa"),
        ("ac-3", "ac-3"),
        ("ec-3", "ec-3"),
        ("Opus", "opus"),
        ("fLaC", "flac"),
        ("avc1.64001f", "avc"),
        ("hvc1.1.6.L93.B0", "hevc"),
        ("wvtt", None),
    ],
)
def test_codec_family(entry: str, family: str | None) -> None:
    assert codec_family(entry) == family


def _variant(codecs: str | None, **extra: Any) -> Variant:
    return Variant(
        uri="http://h/v.m3u8", bandwidth=1, average_bandwidth=None, codecs=codecs, resolution=None, **extra
    )


def test_codecs_format_trusts_codecs_only_where_they_describe_the_variants_own_bytes() -> None:
    assert codecs_format(_variant("avc1.64001f,mp4a.40.2")) == MediaFormat(codecs=("aac", "avc"))
    assert codecs_format(_variant(None)) == MediaFormat()
    assert codecs_format(_variant("mp4a.40.2,wvtt")) == MediaFormat()  # an unknown entry: unknown
    # Shaka lists the audio group's mp4a on video-only variants.
    assert codecs_format(_variant("avc1.64001f,mp4a.40.2", audio="aud")) == MediaFormat()


def test_group_splits_on_known_differences_only() -> None:
    a22 = MediaFormat("fmp4", ("aac",), 22050, 2)
    a48 = MediaFormat("fmp4", ("aac",), 48000, 2)
    unknown = MediaFormat()
    assert group([a22, a48, a48]) == ((0,), (1, 2))
    assert group([a48, unknown, a48]) == ((0, 1, 2),)
    ts_audio = MediaFormat("ts", ("aac",), 48000, 2, ((256, 0x0F),))
    ts_muxed = MediaFormat("ts", ("aac", "avc"), 48000, 2, ((256, 0x1B), (257, 0x0F)))
    assert group([ts_audio, ts_muxed]) == ((0,), (1,))


def test_controller_never_switches_to_an_excluded_variant() -> None:
    controller = AbrController([100, 200, 300, 400], EAGER_ABR)
    controller.excluded = frozenset({1, 3})
    up = controller.decide(now=0.0, buffer_s=0.0, estimate_bps=1e9)
    assert up.to_variant == 2
    controller.excluded = frozenset({0, 1, 3})
    down = controller.decide(now=1.0, buffer_s=0.0, estimate_bps=1.0)
    assert down.to_variant == 2 and not down.changed
    assert controller.decide(now=2.0, buffer_s=0.0, estimate_bps=1e9).to_variant == 2


# -- streams -------------------------------------------------------------------


@pytest.fixture
def ladders(realworld: dict[str, rw.RealWorldFixture]) -> dict[str, rw.RealWorldFixture]:
    """The shared real-world ladders: fMP4 AAC at 22.05/48/48 kHz, TS ``v:0,a:0 a:1``, TS 22.05/48/48."""
    return {
        "fmp4": realworld["audio_ladder_fmp4"],
        "muxed": realworld["muxed_ladder_ts"],
        "ts": realworld["audio_ladder_ts"],
    }


@pytest.fixture
def served(realworld_origin: Origin) -> Origin:
    return realworld_origin


def _options(tmp_path: Path, abr: AbrOptions = EAGER_ABR) -> HlsOptions:
    network = NetworkOptions(backoff=0.01, read_deadline=60.0, lookahead=1.0)
    return HlsOptions(cache=CacheOptions(dir=tmp_path), network=network, abr=abr)


def _expected(session: Session, origin: Origin) -> bytes:
    """The bytes of the parts the session planned, read from the origin's folder."""
    parts = session.layout.parts()
    return b"".join((origin.root / p.url.removeprefix(origin.base_url)).read_bytes() for p in parts)


def _decode(data: bytes) -> tuple[float, frozenset[int], int]:
    """(seconds decoded, the sample rates of the frames, decoder errors) of the first audio stream."""
    got = summarize_frames(data)
    return got.seconds, got.rates, got.errors


def _play_with_link_change(f: kithara_hls.HlsSource, origin: Origin) -> tuple[bytes, list[ev.VariantApplied]]:
    """Read all of `f` while the link goes fast, then slow after the first segment, then fast."""
    seen: list[ev.VariantApplied] = []
    slowed = threading.Event()

    def on_event(event: ev.Event) -> None:
        if isinstance(event, ev.SegmentComplete) and not slowed.is_set():
            slowed.set()
            origin.bandwidth = SLOW
        elif isinstance(event, ev.VariantApplied):
            seen.append(event)

    origin.bandwidth = FAST
    f.on_event(on_event)
    data = f.read()
    origin.bandwidth = None
    return data, seen


@pytest.mark.parametrize("name", ["fmp4", "ts"])
def test_audio_ladder_sets_by_sample_rate(
    name: str, ladders: dict[str, rw.RealWorldFixture], served: Origin, tmp_path: Path
) -> None:
    fx = ladders[name]
    with kithara_hls.open(fx.url(served.base_url), _options(tmp_path)) as f:
        assert [v.uri.rsplit("/", 2)[-2] for v in f.variants] == ["a22k", "a48k64", "a48k128"]
        assert f.info().switch_sets == ((0, 1, 2),)  # nothing known yet: nothing separates them
        assert f.switch_sets == ((0,), (1, 2))
        assert f.info().switch_sets == ((0,), (1, 2))


@pytest.mark.flaky(reruns=2)
def test_abr_stays_on_the_start_sample_rate(
    ladders: dict[str, rw.RealWorldFixture], served: Origin, tmp_path: Path, sessions: list[Session]
) -> None:
    fx = ladders["fmp4"]
    with kithara_hls.open(fx.url(served.base_url), _options(tmp_path)) as f:
        data, seen = _play_with_link_change(f, served)
    assert {p.variant for p in sessions[0].layout.parts()} == {0}
    assert [e.to_variant for e in seen] == [0]
    assert data == fx.tracks["a22k"].expected
    seconds, rates, errors = _decode(data)
    assert (rates, errors) == ({22050}, 0)
    assert seconds == pytest.approx(fx.tracks["a22k"].duration, abs=0.1)
    # The start variant's init came once: its format was read from the stored part.
    assert served.count(f"/{fx.name}/a22k/init_0.mp4") == 1


@pytest.mark.flaky(reruns=2)
def test_abr_on_the_48k_set_never_drops_to_22k(
    ladders: dict[str, rw.RealWorldFixture], served: Origin, tmp_path: Path, sessions: list[Session]
) -> None:
    fx = ladders["fmp4"]
    with kithara_hls.open(fx.url(served.base_url), _options(tmp_path)) as f:
        f.set_variant(2)  # before the first read: the stream starts on the 48 kHz set
        f.set_variant(None)
        data, seen = _play_with_link_change(f, served)
    # ABR may aim at the 22 kHz variant when the link slows: it is looked at, left out, never played.
    assert {p.variant for p in sessions[0].layout.parts()} <= {1, 2}
    assert seen and all(e.to_variant != 0 for e in seen)
    assert data == _expected(sessions[0], served)
    seconds, rates, errors = _decode(data)
    assert (rates, errors) == ({48000}, 0)
    assert seconds == pytest.approx(fx.tracks["a48k64"].duration, abs=0.1)


def test_set_variant_across_sets_raises_after_a_read(
    ladders: dict[str, rw.RealWorldFixture], served: Origin, tmp_path: Path
) -> None:
    fx = ladders["fmp4"]
    with kithara_hls.open(fx.url(served.base_url), _options(tmp_path, AbrOptions())) as f:
        f.set_variant(1)
        head = f.read(100)
        with pytest.raises(IncompatibleVariant, match="sample_rate 48000 ≠ 22050") as caught:
            f.set_variant(0)
        assert isinstance(caught.value, VariantNotFound)
        assert caught.value.differences == ("sample_rate 48000 ≠ 22050",)
        f.set_variant(2)  # same set: allowed
        data = head + f.read()
    _, rates, errors = _decode(data)
    assert (rates, errors) == ({48000}, 0)


def _without_codecs(fx: rw.RealWorldFixture, served: Origin) -> str:
    """The URL of a copy of `fx`'s master with no CODECS (as many packagers write it): the track
    choice cannot tell its audio-only variant from the muxed one, so both are in the ladder and
    only their bytes set them apart."""
    master = fx.root / fx.entry
    copy = master.with_name("master-nocodecs.m3u8")
    text = re.sub(r',CODECS="[^"]*"', "", master.read_text())
    if not copy.exists() or copy.read_text() != text:
        copy.write_text(text)
    return served.url(str(copy.relative_to(fx.root)))


def test_muxed_ladder_sets_by_pid_layout(
    ladders: dict[str, rw.RealWorldFixture], served: Origin, tmp_path: Path, sessions: list[Session]
) -> None:
    fx = ladders["muxed"]
    with kithara_hls.open(_without_codecs(fx, served), _options(tmp_path)) as f:
        assert [v.uri.rsplit("/", 2)[-2] for v in f.variants] == ["audio", "av"]
        data, seen = _play_with_link_change(f, served)
        assert [e.to_variant for e in seen] == [0]
        with pytest.raises(IncompatibleVariant, match="pids") as caught:
            f.set_variant(1)
        assert any(d.startswith("codecs aac ≠ aac+avc") for d in caught.value.differences)
        assert f.switch_sets == ((0,), (1,))
    assert {p.variant for p in sessions[0].layout.parts()} == {0}
    assert data == fx.tracks["audio"].expected
    seconds, rates, errors = _decode(data)
    assert (rates, errors) == ({48000}, 0)
    assert seconds == pytest.approx(fx.tracks["audio"].duration, abs=0.1)


def test_set_variant_before_the_first_read_moves_the_stream_to_that_set(
    ladders: dict[str, rw.RealWorldFixture], served: Origin, tmp_path: Path
) -> None:
    fx = ladders["muxed"]
    with kithara_hls.open(_without_codecs(fx, served), _options(tmp_path)) as f:
        f.set_variant(1)
        data = f.read()
        assert f.variant == 1
    assert data == fx.tracks["av"].expected
    _, rates, errors = _decode(data)
    assert (rates, errors) == ({48000}, 0)


def test_a_single_variant_stream_makes_no_request_of_its_own(
    ladders: dict[str, rw.RealWorldFixture], served: Origin, tmp_path: Path
) -> None:
    fx = ladders["muxed"]
    track = fx.tracks["audio"]
    with kithara_hls.open(served.url(track.playlist), _options(tmp_path)) as f:
        assert f.read() == track.expected
        assert f.switch_sets == ((0,),)
    assert served.count() == 1 + len(track.segments)


def test_cli_info_shows_the_switch_sets(
    ladders: dict[str, rw.RealWorldFixture],
    served: Origin,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fx = ladders["fmp4"]
    assert cli.main(["info", fx.url(served.base_url), "--cache-dir", str(tmp_path)]) == 0
    assert "switch sets: [0] [1 2]\n" in capsys.readouterr().out


def test_offline_abr_plays_the_start_set_from_the_cache(
    ladders: dict[str, rw.RealWorldFixture], served: Origin, tmp_path: Path, sessions: list[Session]
) -> None:
    fx = ladders["fmp4"]
    url = fx.url(served.base_url)
    kithara_hls.download(url, _options(tmp_path), all_variants=True)
    offline = dataclasses.replace(_options(tmp_path), offline=True)
    with kithara_hls.open(url, offline) as f:
        data = f.read()
    assert {p.variant for p in sessions[-1].layout.parts()} == {0}
    assert data == fx.tracks["a22k"].expected


def test_bytes_nothing_recognises_cost_one_small_request(tmp_path: Path) -> None:
    # A format the sniffer does not know: more of its head would tell no more, and an ABR
    # switch waits for the look (on a link that just collapsed, a 64 KiB head took seconds).
    root = tmp_path / "stream"
    master = ["#EXTM3U"]
    for v in range(2):
        (root / f"v{v}").mkdir(parents=True)
        (root / f"v{v}" / "seg0.bin").write_bytes(bytes([v + 1]) * 100_000)
        media = ["#EXTM3U", "#EXT-X-TARGETDURATION:4", "#EXTINF:4.0,", "seg0.bin", "#EXT-X-ENDLIST"]
        (root / f"v{v}" / "index.m3u8").write_text("\n".join(media) + "\n")
        master += [f"#EXT-X-STREAM-INF:BANDWIDTH={(v + 1) * 100_000}", f"v{v}/index.m3u8"]
    (root / "master.m3u8").write_text("\n".join(master) + "\n")
    with Origin(root) as origin:
        options = dataclasses.replace(_options(tmp_path / "cache"), variant=0)
        with kithara_hls.open(origin.url("master.m3u8"), options) as f:
            assert f.read(1) == b"\x01"
            assert f.switch_sets == ((0, 1),)  # nothing known separates them
        other = [r.range_header for r in origin.requests if r.path == "v1/seg0.bin"]
    assert other == ["bytes=0-4095"]
