"""Renditions and the choice of what the file carries: the pure choice, then real masters on loopback."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import kithara_hls
from kithara_hls import CacheOptions, HlsOptions, HlsSource, NetworkOptions, NoAudioTrack, VariantNotFound
from kithara_hls.errors import UnsupportedEncryption
from kithara_hls.playlist import MasterPlaylist, Rendition, Variant
from kithara_hls.testing import Origin
from kithara_hls.testing import realworld as rw
from kithara_hls.testing.decoding import decode_audio, peak_hz
from kithara_hls.testing.realworld_audio import build_apple_style
from kithara_hls.testing.realworld_media import tone_hz
from kithara_hls.tracks import choose, ladder_bitrates, match_rank, pick_rendition

BASE = "http://127.0.0.1:1/"


def rendition(
    name: str,
    language: str | None = None,
    *,
    group: str = "aud",
    uri: str | None = "auto",
    default: bool = False,
    autoselect: bool = False,
    channels: str | None = None,
    codecs: str | None = None,
    type: str = "AUDIO",
) -> Rendition:
    if uri == "auto":
        uri = f"{BASE}{group}/{name}.m3u8"
    return Rendition(
        type=type,
        group=group,
        name=name,
        language=language,
        channels=channels,
        default=default,
        autoselect=autoselect or default,
        uri=uri,
        codecs=codecs,
    )


def variant(
    bandwidth: int, codecs: str | None = "avc1.64001f,mp4a.40.2", audio: str | None = None
) -> Variant:
    return Variant(
        uri=f"{BASE}v{bandwidth}.m3u8",
        bandwidth=bandwidth,
        average_bandwidth=None,
        codecs=codecs,
        resolution=None,
        audio=audio,
    )


def master(variants: list[Variant], renditions: list[Rendition] = ()) -> MasterPlaylist:  # type: ignore[assignment]
    ordered = tuple(sorted(variants, key=lambda v: v.bandwidth))
    return MasterPlaylist(url=BASE + "master.m3u8", variants=ordered, renditions=tuple(renditions))


def shaka() -> MasterPlaylist:
    """Video variants referencing one audio group, English (default) and French with URIs."""
    return master(
        [variant(800_000, audio="aud"), variant(2_000_000, audio="aud")],
        [rendition("English", "en", default=True), rendition("Français", "fr")],
    )


# -- the choice ------------------------------------------------------------------------


def test_audio_apart_defaults_to_the_default_rendition() -> None:
    choice = choose(shaka())
    assert choice.track == "audio"
    assert choice.rendition is not None and choice.rendition.language == "en"
    assert [v.uri for v in choice.variants] == [BASE + "aud/English.m3u8"]
    assert choice.variants[0].audio == "aud" and choice.variants[0].name == "English"


@pytest.mark.parametrize("wanted", ["fr", "FR", "fr-CA", "Français", " français "])
def test_preference_by_language_or_name(wanted: str) -> None:
    choice = choose(shaka(), audio=wanted)
    assert choice.track == "audio"
    assert choice.rendition is not None and choice.rendition.language == "fr"


def test_language_prefix_matches_a_regional_tag() -> None:
    m = master(
        [variant(1_000_000, audio="a")],
        [rendition("US", "en-US", group="a"), rendition("D", "de", group="a")],
    )
    choice = choose(m, audio="en")
    assert choice.rendition is not None and choice.rendition.name == "US"
    assert match_rank(m.renditions[0], "en") == 1
    assert match_rank(m.renditions[0], "EN-us") == 0
    assert match_rank(m.renditions[0], "eng") is None


def test_no_match_names_what_there_is() -> None:
    with pytest.raises(VariantNotFound, match=r"xx.*languages: en, fr; names: English, Français"):
        choose(shaka(), audio="xx")


def test_player_order_default_then_autoselect_then_uri() -> None:
    plain = rendition("A", "en", uri=None)
    with_uri = rendition("B", "en")
    auto = rendition("C", "en", autoselect=True)
    default = rendition("D", "en", default=True)
    assert pick_rendition([plain, with_uri, auto, default]) is default
    assert pick_rendition([plain, with_uri, auto]) is auto
    assert pick_rendition([plain, with_uri]) is with_uri
    assert pick_rendition([plain]) is plain
    assert pick_rendition([plain], "fr") is None


def test_audio_ladder_across_groups_ordered_by_the_variants_that_use_them() -> None:
    # The 128k group is listed first; the variants referencing the 64k one are cheaper.
    m = master(
        [
            variant(3_000_000, audio="hi"),
            variant(600_000, audio="lo"),
            variant(1_200_000, audio="lo"),
        ],
        [
            rendition("English", "en", group="hi", default=True, codecs="mp4a.40.2"),
            rendition("Français", "fr", group="hi", codecs="mp4a.40.2"),
            rendition("English", "en", group="lo", default=True, codecs="mp4a.40.2"),
            rendition("Français", "fr", group="lo", codecs="mp4a.40.2"),
        ],
    )
    choice = choose(m)
    assert choice.track == "audio" and choice.measure
    assert [(v.audio, v.name) for v in choice.variants] == [("lo", "English"), ("hi", "English")]
    assert all(v.bandwidth == 0 and v.resolution is None for v in choice.variants)  # measured at open
    french = choose(m, audio="fr")
    assert [(v.audio, v.name) for v in french.variants] == [("lo", "Français"), ("hi", "Français")]


def test_ladder_keeps_channels_and_codec_families_apart() -> None:
    m = master(
        [variant(1_000_000, audio="st"), variant(2_000_000, audio="sur"), variant(3_000_000, audio="ac3")],
        [
            rendition("English", "en", group="st", default=True, channels="2", codecs="mp4a.40.2"),
            rendition("English", "en", group="sur", channels="6", codecs="mp4a.40.2"),
            rendition("English", "en", group="ac3", channels="2", codecs="ac-3"),
        ],
    )
    assert [v.audio for v in choose(m).variants] == ["st"]


def test_apple_style_uri_less_default_plays_the_muxed_ladder() -> None:
    m = master(
        [variant(1_000_000, codecs=None, audio="aud"), variant(2_000_000, codecs=None, audio="aud")],
        [
            rendition("English", "en", default=True, uri=None, channels="2"),
            rendition("Surround", "en", uri=f"{BASE}surround.m3u8", channels="6"),
        ],
    )
    auto = choose(m)
    assert auto.track == "muxed" and auto.variants == m.variants
    by_language = choose(m, audio="en")  # the default English is in the variants
    assert by_language.track == "muxed" and by_language.variants == m.variants
    assert by_language.rendition is not None and by_language.rendition.uri is None
    alone = choose(m, track="audio")
    assert alone.track == "audio" and [v.uri for v in alone.variants] == [f"{BASE}surround.m3u8"]
    assert choose(m, audio="Surround").track == "audio"


def test_track_audio_when_the_audio_is_only_muxed() -> None:
    m = master([variant(1_000_000, audio="aud")], [rendition("English", "en", default=True, uri=None)])
    with pytest.raises(NoAudioTrack, match="muxed in the variants"):
        choose(m, track="audio", audio="en")
    with pytest.raises(NoAudioTrack, match="no audio to play alone"):
        choose(m, track="audio")
    plain = master([variant(1_000_000), variant(2_000_000)])
    with pytest.raises(NoAudioTrack):
        choose(plain, track="audio")
    assert isinstance(NoAudioTrack("x"), VariantNotFound)


def test_audio_only_variants_are_the_audio() -> None:
    aac = "mp4a.40.2"
    m = master(
        [variant(64_000, codecs=aac), variant(800_000), variant(128_000, codecs=aac), variant(2_000_000)]
    )
    auto = choose(m)
    assert auto.track == "audio" and [v.bandwidth for v in auto.variants] == [64_000, 128_000]
    assert not auto.measure  # their BANDWIDTH is theirs
    muxed = choose(m, track="muxed")
    assert [v.bandwidth for v in muxed.variants] == [800_000, 2_000_000]


def test_a_plain_master_keeps_its_ladder() -> None:
    m = master([variant(1_000_000, codecs=None), variant(2_000_000, codecs=None)])
    choice = choose(m)
    assert choice.track == "muxed" and choice.variants == m.variants and choice.rendition is None
    audio_ladder = master([variant(64_000, codecs="mp4a.40.2"), variant(128_000, codecs="mp4a.40.2")])
    assert choose(audio_ladder).variants == audio_ladder.variants


def test_variants_without_an_audio_group_carry_their_audio() -> None:
    m = master(
        [variant(1_000_000), variant(2_000_000, audio="aud")], [rendition("English", "en", default=True)]
    )
    assert choose(m).track == "muxed"
    assert choose(m, audio="en").track == "audio"


def test_subtitles_are_listed_not_played() -> None:
    m = master(
        [variant(1_000_000, audio="aud")],
        [rendition("English", "en", default=True), rendition("Subs", "en", group="subs", type="SUBTITLES")],
    )
    choice = choose(m)
    assert choice.rendition is not None and choice.rendition.type == "AUDIO"
    with pytest.raises(VariantNotFound):
        choose(m, audio="Subs")


def test_ladder_bitrates_are_ascending_and_fill_unknowns() -> None:
    assert ladder_bitrates([64_000, 128_000]) == [64_000, 128_000]
    assert ladder_bitrates([None, 128_000]) == [128_000, 128_000]
    assert ladder_bitrates([64_000, None, 128_000]) == [64_000, 64_000, 128_000]
    assert ladder_bitrates([128_000, 64_000]) == [128_000, 128_000]
    assert ladder_bitrates([None, None]) == [0, 0]


def test_options_check_the_track() -> None:
    assert HlsOptions().track == "auto" and HlsOptions(audio="en").audio == "en"
    with pytest.raises(ValueError, match="track must be one of"):
        HlsOptions(track="video")
    with pytest.raises(ValueError, match="audio="):
        HlsOptions(track="muxed", audio="en")


# -- real masters over the loopback origin ---------------------------------------------------

av = pytest.importorskip("av")
np = pytest.importorskip("numpy")

FREQ_TOLERANCE = 0.02  # an FFT over half a second resolves 2 Hz; semitones are 6% apart


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("renditions")


@pytest.fixture(
    scope="module",
    params=[(False, False), (True, False), (False, True), (True, True)],
    ids=["ts", "fmp4", "single_ts", "single_fmp4"],
)
def renditions(request: pytest.FixtureRequest, root: Path) -> rw.RealWorldFixture:
    fmp4, single_file = request.param
    return rw.build_renditions(root, fmp4=fmp4, single_file=single_file)


@pytest.fixture
def served(root: Path) -> Iterator[Origin]:
    with Origin(root) as origin:
        yield origin


def options(tmp_path: Path, **fields: Any) -> HlsOptions:
    return HlsOptions(cache=CacheOptions(dir=tmp_path / "cache"), **fields)


def requested(origin: Origin) -> set[str]:
    return {r.path for r in origin.requests}


def check_tone(f: HlsSource, track: rw.Track) -> None:
    """`f` decodes with no error over the track's whole duration, at its rate, with its tone."""
    samples, rate, errors = decode_audio(f)
    assert errors == 0
    assert rate == track.sample_rate and samples.shape[0] == track.channels
    assert abs(samples.shape[1] / rate - track.duration) <= 2 * 1024 / rate
    assert track.base_hz is not None
    for second in range(int(track.duration)):
        want = tone_hz(track.base_hz, second)
        assert abs(peak_hz(samples, rate, second) - want) <= FREQ_TOLERANCE * want


@pytest.mark.parametrize("language", [None, "fr", "EN", "fr-FR"])
def test_audio_renditions_play_alone(
    renditions: rw.RealWorldFixture, served: Origin, tmp_path: Path, language: str | None
) -> None:
    """By default the English (DEFAULT=YES) rendition, else the one asked for: byte-exact, its tone,
    and not one video playlist or segment requested."""
    fx = renditions
    track = fx.tracks["en" if language is None else language[:2].lower()]
    with kithara_hls.open(fx.url(served.base_url), options(tmp_path, audio=language)) as f:
        assert f.read() == track.expected
        info = f.info()
        assert info.track == "audio" and info.rendition is not None
        assert info.rendition.language == track.language
        assert [v.uri for v in f.variants] == [served.url(track.playlist)]
        assert len(f.renditions) == 2 and {r.language for r in f.renditions} == {"en", "fr"}
        f.seek(0)
        check_tone(f, track)
    assert fx.entry in requested(served) and track.playlist in requested(served)
    assert not requested(served) & fx.video_paths


def test_muxed_track_plays_the_video_variants(
    renditions: rw.RealWorldFixture, served: Origin, tmp_path: Path
) -> None:
    fx = renditions
    with kithara_hls.open(fx.url(served.base_url), options(tmp_path, track="muxed", variant=1)) as f:
        assert [v.uri for v in f.variants] == [served.url(fx.tracks[k].playlist) for k in ("v90", "v180")]
        assert f.read() == fx.tracks["v180"].expected
        assert f.info().track == "muxed" and f.info().rendition is None
    audio = {fx.tracks[k].playlist for k in ("en", "fr")}
    assert not requested(served) & audio


def test_no_match_names_the_languages(
    renditions: rw.RealWorldFixture, served: Origin, tmp_path: Path
) -> None:
    with pytest.raises(VariantNotFound, match=r"'de'.*languages: en, fr"):
        kithara_hls.open(renditions.url(served.base_url), options(tmp_path, audio="de"))


def test_audio_only_variant_beside_muxed_is_the_audio(root: Path, served: Origin, tmp_path: Path) -> None:
    """ffmpeg's ``v:0,a:0 a:1`` ladder: the audio-only variant alone, or the muxed one alone."""
    fx = rw.build_muxed_ladder(root)
    url = fx.url(served.base_url)
    with kithara_hls.open(url, options(tmp_path)) as f:
        assert f.read() == fx.tracks["audio"].expected and f.info().track == "audio"
        f.seek(0)
        check_tone(f, fx.tracks["audio"])
    assert not any(p.startswith(f"{fx.name}/av/") for p in requested(served))
    served.reset_log()
    with kithara_hls.open(url, options(tmp_path, track="muxed")) as f:
        assert f.read() == fx.tracks["av"].expected and len(f.variants) == 1
    assert not any(p.startswith(f"{fx.name}/audio/") for p in requested(served))


def test_audio_only_ladder_is_unchanged(root: Path, served: Origin, tmp_path: Path) -> None:
    fx = rw.build_audio_ladder(root)
    with kithara_hls.open(fx.url(served.base_url), options(tmp_path, variant=2)) as f:
        assert [v.bitrate > 0 for v in f.variants] == [True] * 3 and f.info().track == "audio"
        assert f.read() == fx.tracks["a48k128"].expected


def write_master(root: Path, name: str, text: str) -> str:
    """A hand-written master at `root/name` (for what no packager here writes); its path."""
    (root / name).write_text("#EXTM3U\n#EXT-X-VERSION:4\n" + text)
    return name


def test_apple_style_master_over_real_media(root: Path, served: Origin, tmp_path: Path) -> None:
    """D's master after Apple's examples: a URI-less DEFAULT English (muxed in the variants, no
    CODECS) beside French stereo and English 5.1 renditions with URIs."""
    fx = build_apple_style(root)
    url = fx.url(served.base_url)
    muxed = [served.url(fx.tracks[k].playlist) for k in ("v90", "v180")]
    with kithara_hls.open(url, options(tmp_path, variant=1)) as f:
        info = f.info()
        assert info.track == "muxed" and [v.uri for v in f.variants] == muxed
        assert len(f.renditions) == 3 and info.rendition is None
        assert f.read() == fx.tracks["v180"].expected
        f.seek(0)
        check_tone(f, fx.tracks["v180"])  # the English muxed in the variant
    # English is the muxed one: DEFAULT=YES wins at an equal match.
    with kithara_hls.open(url, options(tmp_path, audio="en")) as f:
        info = f.info()
        assert info.track == "muxed" and [v.uri for v in f.variants] == muxed
        assert info.rendition is not None and info.rendition.uri is None
    served.reset_log()
    for wanted, key in (("fr", "fr"), ("English 5.1", "en51")):
        with kithara_hls.open(url, options(tmp_path, audio=wanted)) as f:
            assert f.info().track == "audio" and f.read() == fx.tracks[key].expected
            f.seek(0)
            check_tone(f, fx.tracks[key])
    # The audio alone in English: the 5.1 rendition, the stereo one being muxed.
    with kithara_hls.open(url, options(tmp_path, track="audio", audio="en")) as f:
        assert f.read() == fx.tracks["en51"].expected
    assert not requested(served) & set(muxed_paths(fx))


def muxed_paths(fx: rw.RealWorldFixture) -> list[str]:
    return [p for k in ("v180", "v90") for p in (fx.tracks[k].playlist, *fx.tracks[k].segments)]


def test_no_audio_to_play_alone(root: Path, served: Origin, tmp_path: Path) -> None:
    fx = rw.build_renditions(root)
    entry = write_master(
        root,
        "video_only.m3u8",
        f'#EXT-X-STREAM-INF:BANDWIDTH=66000,CODECS="avc1.42c00d"\n{fx.tracks["v180"].playlist}\n',
    )
    with pytest.raises(NoAudioTrack, match="no audio to play alone"):
        kithara_hls.open(served.url(entry), options(tmp_path, track="audio"))
    with kithara_hls.open(served.url(entry), options(tmp_path)) as f:
        assert f.info().track == "muxed" and f.read() == fx.tracks["v180"].expected


def test_audio_ladder_across_groups(root: Path, served: Origin, tmp_path: Path) -> None:
    """A 64k and a 128k AAC group of one English track, referenced by the 90p and 180p variants:
    a two-rung ladder with measured (not the video's) bitrates, ABR over it, no video requested."""
    audio = rw.build_audio_ladder(root)
    video = rw.build_renditions(root)
    lo, hi = audio.tracks["a48k64"], audio.tracks["a48k128"]
    entry = write_master(
        root,
        "two_groups.m3u8",
        # The 128k group comes first, as packagers may write it; the variants order the ladder.
        f'#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="hi",NAME="English",LANGUAGE="en",DEFAULT=YES,URI="{hi.playlist}"\n'
        f'#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="lo",NAME="English",LANGUAGE="en",DEFAULT=YES,URI="{lo.playlist}"\n'
        f'#EXT-X-STREAM-INF:BANDWIDTH=2000000,CODECS="avc1.42c00d,mp4a.40.2",AUDIO="hi"\n'
        f"{video.tracks['v180'].playlist}\n"
        f'#EXT-X-STREAM-INF:BANDWIDTH=800000,CODECS="avc1.42c00b,mp4a.40.2",AUDIO="lo"\n'
        f"{video.tracks['v90'].playlist}\n",
    )
    url = served.url(entry)
    with kithara_hls.open(url, options(tmp_path, variant=1)) as f:
        assert [(v.audio, v.uri) for v in f.variants] == [
            ("lo", served.url(lo.playlist)),
            ("hi", served.url(hi.playlist)),
        ]
        low, high = (v.bitrate for v in f.variants)
        assert 32_000 <= low < high <= 256_000  # audio rates, not the 0.8 and 2 Mbit/s of the video
        assert f.read() == hi.expected
    with kithara_hls.open(url, options(tmp_path / "abr")) as f:  # ABR over the ladder
        check_tone(f, hi)
    # A switch between the rungs mid-stream: the low rung's first segments, then the high one's.
    near = HlsOptions(
        cache=CacheOptions(dir=tmp_path / "switch"), variant=0, network=NetworkOptions(lookahead=1.0)
    )
    with kithara_hls.open(url, near) as f:
        first = f.read(len(lo.expected) // 8)
        f.set_variant(1)
        data = first + f.read()
        f.seek(0)
        check_tone(f, hi)
    # Offline: the rates from the cache's copies, the best rung the cache holds.
    kithara_hls.download(url, options(tmp_path / "all"), all_variants=True)
    with kithara_hls.open(url, options(tmp_path / "all", offline=True)) as f:
        assert [v.bitrate for v in f.variants] == [low, high]
        assert f.read() == hi.expected
    lo_segs, hi_segs = segments(root, lo), segments(root, hi)
    joins = [b"".join(lo_segs[:k] + hi_segs[k:]) for k in range(1, len(lo_segs))]
    assert data in joins
    assert not requested(served) & video.video_paths


def segments(root: Path, track: rw.Track) -> list[bytes]:
    return [(root / p).read_bytes() for p in track.segments]


def test_cli_selects_and_lists(renditions: rw.RealWorldFixture, served: Origin, tmp_path: Path) -> None:
    url = renditions.url(served.base_url)
    cache = str(tmp_path / "cache")
    done = run_cli("cat", url, "--audio", "fr", "--cache-dir", cache)
    assert done.returncode == 0, done.stderr
    assert done.stdout == renditions.tracks["fr"].expected
    done = run_cli("cat", url, "--track", "muxed", "--variant", "0", "--cache-dir", cache)
    assert done.stdout == renditions.tracks["v90"].expected
    done = run_cli("info", url, "--cache-dir", cache)
    out = done.stdout.decode()
    assert done.returncode == 0 and "track: audio ('audio_2' en 2ch default" in out
    assert out.count("AUDIO group group_aud") == 2 and "'audio_3' fr 2ch" in out
    done = run_cli("cat", url, "--audio", "de", "--cache-dir", cache)
    assert done.returncode == 1 and b"no audio rendition matches 'de'" in done.stderr
    done = run_cli("cat", url, "--track", "muxed", "--audio", "fr", "--cache-dir", cache)
    assert done.returncode == 2


def run_cli(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "kithara_hls", *args], capture_output=True, timeout=120, check=False
    )


def test_audio_track_replays_offline(renditions: rw.RealWorldFixture, served: Origin, tmp_path: Path) -> None:
    url, track = renditions.url(served.base_url), renditions.tracks["fr"]
    with kithara_hls.open(url, options(tmp_path, audio="fr")) as f:
        assert f.read() == track.expected
    served.reset_log()
    with kithara_hls.open(url, options(tmp_path, audio="fr", offline=True)) as f:
        assert f.read() == track.expected and f.info().rendition is not None
    assert not served.requests


def test_storage_options_choose_the_track() -> None:
    pytest.importorskip("fsspec")
    from kithara_hls.hlsfs import hls_options

    chosen = hls_options(track="audio", audio="fr")
    assert chosen.track == "audio" and chosen.audio == "fr"


def test_clear_audio_plays_beside_drm_video(root: Path, served: Origin, tmp_path: Path) -> None:
    """The video playlists use FairPlay (written by hand: no packager here makes DRM); the clear
    English rendition plays, and the muxed track names the DRM at open."""
    fx = rw.build_renditions(root)
    en = fx.tracks["en"]
    lines = (root / fx.tracks["v180"].playlist).read_text().splitlines()
    lines.insert(
        1, '#EXT-X-KEY:METHOD=SAMPLE-AES,URI="skd://key42",KEYFORMAT="com.apple.streamingkeydelivery"'
    )
    (root / "drm_video.m3u8").write_text("\n".join(lines).replace("seg_", f"{fx.name}/v180/seg_") + "\n")
    entry = write_master(
        root,
        "drm_master.m3u8",
        f'#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",NAME="English",LANGUAGE="en",DEFAULT=YES,URI="{en.playlist}"\n'
        '#EXT-X-STREAM-INF:BANDWIDTH=66000,CODECS="avc1.42c00d,mp4a.40.2",AUDIO="aud"\ndrm_video.m3u8\n',
    )
    with kithara_hls.open(served.url(entry), options(tmp_path)) as f:
        assert f.read() == en.expected
    assert "drm_video.m3u8" not in requested(served)
    with pytest.raises(UnsupportedEncryption, match="FairPlay"):
        kithara_hls.open(served.url(entry), options(tmp_path, track="muxed"))


def test_rung_bitrates_from_byteranges(root: Path, served: Origin, tmp_path: Path) -> None:
    """Rungs sliced by EXT-X-BYTERANGE (hls_flags single_file) are measured from their playlists:
    no size probe. (The two tracks stand in for two bitrates of one track here.)"""
    fx = rw.build_renditions(root, single_file=True)
    en, fr = fx.tracks["en"], fx.tracks["fr"]
    entry = write_master(
        root,
        "byterange_groups.m3u8",
        f'#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="a",NAME="English",LANGUAGE="en",DEFAULT=YES,URI="{en.playlist}"\n'
        f'#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="b",NAME="English",LANGUAGE="en",DEFAULT=YES,URI="{fr.playlist}"\n'
        f'#EXT-X-STREAM-INF:BANDWIDTH=800000,AUDIO="a"\n{fx.tracks["v90"].playlist}\n'
        f'#EXT-X-STREAM-INF:BANDWIDTH=2000000,AUDIO="b"\n{fx.tracks["v180"].playlist}\n',
    )
    rates = [round(len(t.expected) * 8 / t.duration) for t in (en, fr)]
    with kithara_hls.open(served.url(entry), options(tmp_path, variant=0)) as f:
        assert [v.bitrate for v in f.variants] == [rates[0], max(rates)]
        assert f.read() == en.expected
    assert not [r for r in served.requests if r.range_header == "bytes=0-0"]
