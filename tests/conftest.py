"""Shared fixtures: real HLS streams built once per session, and a loopback origin serving them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kithara_hls.testing import Origin, StreamFixture, build_all


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
