"""AES-128: keys fetched once, hooks, bad keys, padding, offline replay, events."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

import kithara_hls
from kithara_hls import CacheOptions, HlsOptions, KeyOptions, NetworkOptions
from kithara_hls import events as ev
from kithara_hls.testing import AES_TS_KEY, Origin, StreamFixture


@pytest.fixture
def aes_copy(
    fixtures: dict[str, StreamFixture], tmp_path: Path
) -> Iterator[tuple[Origin, StreamFixture, Path]]:
    """A private copy of the `aes` fixture (so a test may damage it), served by its own origin."""
    fx = fixtures["aes"]
    root = tmp_path / "www"
    shutil.copytree(fx.root / "aes", root / "aes")
    with Origin(root) as served:
        yield served, fx, root / "aes"


def opts(tmp_path: Path, keys: KeyOptions | None = None, **kw: object) -> HlsOptions:
    net = NetworkOptions(backoff=0.01, backoff_max=0.05, retries=2, read_deadline=30.0)
    return HlsOptions(
        cache=CacheOptions(dir=tmp_path / "cache"),
        network=net,
        keys=keys or KeyOptions(),
        **kw,  # type: ignore[arg-type]
    )


def test_key_fetched_once_and_reported(aes_copy: tuple[Origin, StreamFixture, Path], tmp_path: Path):
    origin, fx, _ = aes_copy
    with kithara_hls.open(origin.url(fx.entry), opts(tmp_path)) as f:
        sub = f.events()
        assert f.read() == fx.expected()
        fetches = [e for e in sub if isinstance(e, ev.KeyFetch)]
    assert origin.count("aes/key.key") == 1
    assert fetches == [ev.KeyFetch(origin.url("aes/key.key"), True, False)]


def test_the_key_is_fetched_while_the_first_segment_downloads(
    aes_copy: tuple[Origin, StreamFixture, Path], tmp_path: Path
) -> None:
    origin, fx, folder = aes_copy
    segments = [ln for ln in (folder / "index.m3u8").read_text().splitlines() if ln.endswith(".ts")]
    stalls = [origin.stall(f"aes/{name}", times=100) for name in segments]
    try:
        with kithara_hls.open(origin.url(fx.entry), opts(tmp_path)) as f:
            sub = f.events()
            # No segment has arrived, and nothing was read: only a prefetch asks for the key.
            event = sub.get(timeout=10)
            while not isinstance(event, ev.KeyFetch):
                event = sub.get(timeout=10)
            assert event == ev.KeyFetch(origin.url("aes/key.key"), True, False)
            for stall in stalls:
                stall.set()
            assert f.read() == fx.expected()
    finally:
        for stall in stalls:
            stall.set()
    assert origin.count("aes/key.key") == 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (AES_TS_KEY + b"\n", "exactly 16 bytes, got 17"),
        (b"<html>login</html>", "an HTML page"),
        (AES_TS_KEY * 3, "got 48"),
    ],
)
def test_a_key_that_is_not_16_bytes(
    body: bytes, message: str, aes_copy: tuple[Origin, StreamFixture, Path], tmp_path: Path
):
    origin, fx, folder = aes_copy
    (folder / "key.key").write_bytes(body)
    with (
        kithara_hls.open(origin.url(fx.entry), opts(tmp_path)) as f,
        pytest.raises(kithara_hls.KeyProcessingError) as info,
    ):
        f.read(100)
    assert message in str(info.value)
    assert AES_TS_KEY.hex() not in str(info.value)


def test_key_forbidden_fails_fast(aes_copy: tuple[Origin, StreamFixture, Path], tmp_path: Path):
    origin, fx, _ = aes_copy
    origin.fail("aes/key.key", status=403, times=10**6)
    with (
        kithara_hls.open(origin.url(fx.entry), opts(tmp_path)) as f,
        pytest.raises(kithara_hls.KeyProcessingError) as info,
    ):
        f.read(100)
    assert info.value.status == 403
    assert origin.count("aes/key.key") == 1  # 403 is final: every part takes that answer


def test_key_processor_unwraps(aes_copy: tuple[Origin, StreamFixture, Path], tmp_path: Path):
    origin, fx, folder = aes_copy
    (folder / "key.key").write_bytes(bytes(b ^ 0x5A for b in AES_TS_KEY))
    seen: list[str] = []

    def unwrap(raw: bytes, uri: str) -> bytes:
        seen.append(uri)
        return bytes(b ^ 0x5A for b in raw)

    with kithara_hls.open(origin.url(fx.entry), opts(tmp_path, KeyOptions(key_processor=unwrap))) as f:
        assert f.read() == fx.expected()
    assert seen == [origin.url("aes/key.key")]


def test_static_keys_make_no_request(aes_copy: tuple[Origin, StreamFixture, Path], tmp_path: Path):
    origin, fx, folder = aes_copy
    (folder / "key.key").unlink()
    keys = KeyOptions(static_keys={origin.url("aes/key.key"): AES_TS_KEY})
    with kithara_hls.open(origin.url(fx.entry), opts(tmp_path, keys)) as f:
        assert f.read() == fx.expected()
    assert origin.count("aes/key.key") == 0


def test_wrong_key_is_bad_padding_not_garbage(aes_copy: tuple[Origin, StreamFixture, Path], tmp_path: Path):
    origin, fx, folder = aes_copy
    (folder / "key.key").write_bytes(bytes(16))
    with (
        kithara_hls.open(origin.url(fx.entry), opts(tmp_path)) as f,
        pytest.raises(kithara_hls.KeyProcessingError) as info,
    ):
        f.seek(0, 2)
    assert "padding" in str(info.value) and info.value.segment is not None


def test_ciphertext_not_a_multiple_of_16(aes_copy: tuple[Origin, StreamFixture, Path], tmp_path: Path):
    origin, fx, folder = aes_copy
    seg = folder / "seg_000.ts"
    seg.write_bytes(seg.read_bytes()[:-5])
    with (
        kithara_hls.open(origin.url(fx.entry), opts(tmp_path)) as f,
        pytest.raises(kithara_hls.KeyProcessingError) as info,
    ):
        f.read()
    assert "multiple of 16" in str(info.value) and info.value.segment == 0


def test_key_request_headers_and_query(aes_copy: tuple[Origin, StreamFixture, Path], tmp_path: Path):
    origin, fx, _ = aes_copy
    keys = KeyOptions(headers={"X-Token": "abc"}, query={"auth": "xyz"})
    with kithara_hls.open(origin.url(fx.entry), opts(tmp_path, keys)) as f:
        assert f.read() == fx.expected()
    key_requests = [r for r in origin.requests if r.path == "aes/key.key"]
    assert len(key_requests) == 1
    assert ("X-Token", "abc") in key_requests[0].headers
    assert key_requests[0].query == "auth=xyz"
    segments = [r for r in origin.requests if r.path.endswith(".ts")]
    assert segments and all(("X-Token", "abc") not in r.headers for r in segments)


def test_offline_replay_uses_the_stored_key(aes_copy: tuple[Origin, StreamFixture, Path], tmp_path: Path):
    origin, fx, _ = aes_copy
    with kithara_hls.open(origin.url(fx.entry), opts(tmp_path)) as f:
        assert f.read() == fx.expected()
    origin.reset_log()
    with kithara_hls.open(origin.url(fx.entry), opts(tmp_path, offline=True)) as f:
        sub = f.events()
        assert f.read() == fx.expected()
        fetches = [e for e in sub if isinstance(e, ev.KeyFetch)]
    assert origin.count() == 0
    assert fetches == [ev.KeyFetch(origin.url("aes/key.key"), True, True)]


def test_keys_not_persisted_means_no_offline(aes_copy: tuple[Origin, StreamFixture, Path], tmp_path: Path):
    origin, fx, _ = aes_copy
    keys = KeyOptions(persist=False)
    with kithara_hls.open(origin.url(fx.entry), opts(tmp_path, keys)) as f:
        assert f.read() == fx.expected()
    with (
        kithara_hls.open(origin.url(fx.entry), opts(tmp_path, keys, offline=True)) as f,
        pytest.raises(kithara_hls.OfflineMiss),
    ):
        f.read(100)


def test_sample_aes_is_refused_at_open(origin: Origin, fixtures: dict[str, StreamFixture], tmp_path: Path):
    folder = fixtures["aes"].root / "sample_aes"
    folder.mkdir(exist_ok=True)
    text = (fixtures["aes"].root / "aes" / "index.m3u8").read_text().replace("AES-128", "SAMPLE-AES")
    (folder / "index.m3u8").write_text(text)
    with pytest.raises(
        kithara_hls.UnsupportedEncryption, match="encrypted with SAMPLE-AES, which kithara-hls cannot"
    ):
        kithara_hls.open(origin.url("sample_aes/index.m3u8"), opts(tmp_path))
