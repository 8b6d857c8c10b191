"""The `kithara-hls` command, run as a subprocess (and in-process, for its error lines) against
the loopback origin."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kithara_hls import cli
from kithara_hls.options import HlsOptions, NetworkOptions
from kithara_hls.testing import FOREVER, Origin, StreamFixture


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
    done = run("info", "ftp://media.invalid/master.m3u8", "--cache-dir", str(tmp_path))
    assert done.returncode == 1
    lines = done.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kithara-hls: error: ") and "ftp" in lines[0]


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


# --- errors: one line naming the cause, the chain with -v -----------------------------------

#: Few, quick retries and a short read timeout, for the error cases.
FAST_NET = NetworkOptions(retries=1, backoff=0.001, backoff_max=0.002, read_timeout=0.3)
WAIT_S = 10.0  # upper bound for a sync point; never reached when the code works


@pytest.fixture
def fast_net(monkeypatch: pytest.MonkeyPatch) -> None:
    """The command's options take `FAST_NET` (no command-line flag sets retries or timeouts)."""

    def options(**kwargs: Any) -> HlsOptions:
        return HlsOptions(network=FAST_NET, **kwargs)

    monkeypatch.setattr(cli, "HlsOptions", options)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "*")


def main_err(capsys: pytest.CaptureFixture[str], *args: str) -> list[str]:
    """Run the command in this process; it must fail with exit 1: its stderr lines."""
    assert cli.main(list(args)) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    return captured.err.splitlines()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A loopback port that accepts connections and never answers: the port."""
    listener = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()
    held: list[socket.socket] = []

    def accept() -> None:
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            held.append(conn)

    thread = threading.Thread(target=accept, name="test-silent-server")
    thread.start()
    yield listener.getsockname()[1]
    done.set()
    with socket.create_connection(listener.getsockname(), timeout=WAIT_S):
        pass
    thread.join(WAIT_S)
    listener.close()
    for conn in held:
        conn.close()


def test_refused_is_one_line_and_the_chain_with_v(
    fast_net: None, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/master.m3u8"
    (line,) = main_err(capsys, "info", url, "--cache-dir", str(tmp_path))
    assert line.startswith(f"kithara-hls: error: connection refused by 127.0.0.1:{port} (2 attempts)")
    lines = main_err(capsys, "-v", "info", url, "--cache-dir", str(tmp_path))
    assert lines[0] == line
    assert lines[1].startswith("  caused by: requests.exceptions.ConnectionError: ")
    assert lines[-1].startswith("  caused by: ConnectionRefusedError: ")
    assert not any("Traceback" in x for x in lines)


def test_an_unknown_host_is_one_line(
    fast_net: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    real = socket.getaddrinfo

    def getaddrinfo(host: object, *args: object, **kwargs: object) -> object:
        if host == "media.invalid":  # never asks a DNS server
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    url = "http://media.invalid/master.m3u8"
    (line,) = main_err(capsys, "info", url, "--cache-dir", str(tmp_path))
    assert line == f"kithara-hls: error: DNS name not found: media.invalid (2 attempts) | {url}"
    lines = main_err(capsys, "-v", "info", url, "--cache-dir", str(tmp_path))
    assert lines[-1] == f"  caused by: socket.gaierror: [Errno {socket.EAI_NONAME}] Name or service not known"


def test_a_silent_server_is_a_timeout_with_its_seconds(
    fast_net: None, capsys: pytest.CaptureFixture[str], silent_server: int, tmp_path: Path
) -> None:
    url = f"http://127.0.0.1:{silent_server}/master.m3u8"
    (line,) = main_err(capsys, "info", url, "--cache-dir", str(tmp_path))
    assert f"reading from 127.0.0.1:{silent_server} timed out after 0.3 s (2 attempts)" in line


def test_404_and_503_from_the_origin_name_status_reason_and_host(
    fast_net: None, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "master.m3u8").write_text("#EXTM3U\n")
    with Origin(tmp_path / "www") as origin:
        host = origin.base_url.split("/")[2]
        (missing,) = main_err(capsys, "info", origin.url("nope.m3u8"), "--cache-dir", str(tmp_path / "c"))
        origin.fail("master.m3u8", status=503, times=FOREVER)
        lines = main_err(capsys, "-v", "info", origin.url("master.m3u8"), "--cache-dir", str(tmp_path / "c"))
    assert missing.startswith(f"kithara-hls: error: HTTP 404 Not Found from {host} | ")
    assert lines[0].startswith(
        f"kithara-hls: error: HTTP 503 Service Unavailable from {host} (2 attempts) | "
    )
    assert lines[1].startswith("  caused by: TransientError: HTTP 503 Service Unavailable")


def test_other_exceptions_keep_their_traceback(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def broken(args: Any) -> int:
        raise RuntimeError("a bug")

    monkeypatch.setattr(cli, "cmd_info", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        cli.main(["info", "http://127.0.0.1:9/master.m3u8", "--cache-dir", str(tmp_path)])
