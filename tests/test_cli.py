"""The `kithara-hls` command, run as a subprocess against the loopback origin."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kithara_hls.testing import Origin, StreamFixture


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "kithara_hls", *args], capture_output=True, timeout=timeout, check=False
    )


@pytest.mark.parametrize("command", [[], ["info"], ["cat"], ["play"], ["download"], ["cache"], ["demo"]])
def test_help_everywhere(command: list[str]):
    done = run(*command, "--help")
    assert done.returncode == 0
    assert b"usage: kithara-hls" in done.stdout


def test_usage_error_exits_2():
    done = run("cat")
    assert done.returncode == 2
    assert b"usage:" in done.stderr


def test_cat_is_byte_exact(fixtures: dict[str, StreamFixture], origin: Origin, tmp_path: Path):
    fx = fixtures["ts"]
    done = run("cat", origin.url(fx.entry), "--variant", "1", "--cache-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout == fx.expected(1)


def test_cat_from_a_start_time(fixtures: dict[str, StreamFixture], origin: Origin, tmp_path: Path):
    fx = fixtures["fmp4"]
    segments = fx.segment_bytes(0)
    done = run("cat", origin.url(fx.entry), "--variant", "0", "--start", "4.5", "--cache-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"".join(segments[2:])


def test_info_lists_variants(fixtures: dict[str, StreamFixture], origin: Origin, tmp_path: Path):
    done = run("info", origin.url(fixtures["ts"].entry), "--cache-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    out = done.stdout.decode()
    assert out.count("kbit/s") == 3 and "duration: 11.9" in out and "encryption: none" in out


def test_bad_url_is_one_line_exit_1(tmp_path: Path):
    done = run("info", "file:///etc/passwd", "--cache-dir", str(tmp_path))
    assert done.returncode == 1
    lines = done.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kithara-hls: InvalidUrl")


def test_missing_playlist_exit_1(origin: Origin, tmp_path: Path):
    done = run("cat", origin.url("nope/index.m3u8"), "--cache-dir", str(tmp_path))
    assert done.returncode == 1
    assert len(done.stderr.decode().strip().splitlines()) == 1
    assert b"Traceback" not in done.stderr


def test_download_then_cache_commands(fixtures: dict[str, StreamFixture], origin: Origin, tmp_path: Path):
    url = origin.url(fixtures["byterange"].entry)
    cache = ["--cache-dir", str(tmp_path)]
    done = run("download", url, *cache)
    assert done.returncode == 0, done.stderr
    assert b"100.0 %" in done.stderr and b"cached" in done.stderr
    listing = run("cache", "ls", *cache).stdout.decode()
    assert "byterange/index.m3u8" in listing
    size = run("cache", "size", *cache).stdout.decode()
    assert int(size.split()[0]) > len(fixtures["byterange"].expected())
    offline = run("cat", url, "--offline", *cache)
    assert offline.stdout == fixtures["byterange"].expected()
    assert run("cache", "clear", url, *cache).returncode == 0
    assert "byterange" not in run("cache", "ls", *cache).stdout.decode()


def test_play_writes_a_wav(fixtures: dict[str, StreamFixture], origin: Origin, tmp_path: Path):
    soundfile = pytest.importorskip("soundfile")
    fx = fixtures["fmp4"]
    wav = tmp_path / "out.wav"
    done = run("play", origin.url(fx.entry), "-o", str(wav), "-q", "--cache-dir", str(tmp_path / "c"))
    assert done.returncode == 0, done.stderr
    data, rate = soundfile.read(wav)
    assert len(data) / rate == pytest.approx(fx.duration, abs=0.3)


@pytest.mark.timeout(400)
def test_demo_runs_to_completion_in_the_cache_named(tmp_path: Path):
    pytest.importorskip("av")
    cache = ["--cache-dir", str(tmp_path / "cache")]
    done = run("demo", "-q", *cache, timeout=300)
    assert done.returncode == 0, done.stderr
    out = done.stdout.decode()
    assert "offline replay:" in out and "as online, 0 requests" in out
    assert "variant switches:" in out
    # The cache outlives the demo's temporary files, and holds its stream.
    listing = run("cache", "ls", *cache)
    assert listing.returncode == 0 and "demo/" in listing.stdout.decode()
