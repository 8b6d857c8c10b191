"""Renditions and the choice of what the file carries: the pure choice, then real masters on loopback."""

from __future__ import annotations

import pytest

from kithara_hls import HlsOptions, NoAudioTrack, VariantNotFound
from kithara_hls.playlist import MasterPlaylist, Rendition, Variant
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
