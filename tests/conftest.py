"""Shared fixtures: real HLS streams built once per session, and a loopback origin serving them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kithara_hls import HlsOptions, source
from kithara_hls.session import Session
from kithara_hls.testing import Origin, StreamFixture, build_all
from kithara_hls.testing.realworld import RealWorldFixture
from kithara_hls.testing.realworld_audio import build_realworld


@pytest.fixture(scope="session")
def fixtures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, StreamFixture]:
    """Every codec fixture of `kithara_hls.testing.build_all`, by name."""
    pytest.importorskip("av")
    return build_all(tmp_path_factory.mktemp("streams"))


@pytest.fixture
def origin(fixtures: dict[str, StreamFixture]) -> Iterator[Origin]:
    """A fresh loopback origin serving the fixtures' root (no faults, empty log)."""
    root = next(iter(fixtures.values())).root
    with Origin(root) as served:
        yield served


@pytest.fixture(scope="session")
def realworld(tmp_path_factory: pytest.TempPathFactory) -> dict[str, RealWorldFixture]:
    """Every fixture of `kithara_hls.testing.realworld_audio.build_realworld`, by name."""
    pytest.importorskip("av")
    return build_realworld(tmp_path_factory.mktemp("realworld"))


@pytest.fixture
def realworld_origin(realworld: dict[str, RealWorldFixture]) -> Iterator[Origin]:
    """A fresh loopback origin serving the real-world fixtures' root (empty log)."""
    root = next(iter(realworld.values())).root
    with Origin(root) as served:
        yield served


@pytest.fixture
def sessions(monkeypatch: pytest.MonkeyPatch) -> list[Session]:
    """The sessions behind the sources a test opens: their layout tells which variant each part
    was planned on, which no public API says."""
    made: list[Session] = []

    class Recorded(Session):
        def __init__(self, url: str, options: HlsOptions) -> None:
            super().__init__(url, options)
            made.append(self)

    monkeypatch.setattr(source, "Session", Recorded)
    return made
