"""Hostile inputs against the loopback origin: each is a clean `HlsError` with no side effect.

A case stages a private copy of the fixtures, plants one hostile playlist, key or
origin fault, opens the stream and reads it. It must end in the exact bytes, or
in an `HlsError` after exact bytes, with no request to a forbidden target and no
local file opened (an audit hook watches `open`). The last test replays every
case and prints what each kind of fault and hostile input ended in.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import socket
import ssl
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import kithara_hls
from kithara_hls import CacheOptions, HlsError, HlsOptions, NetworkOptions
from kithara_hls.playlist import check_url, parse
from kithara_hls.testing import FOREVER, Origin, StreamFixture, self_signed_tls

Fixtures = dict[str, StreamFixture]
FAST = {"backoff": 0.01, "backoff_max": 0.05, "read_timeout": 5.0, "read_deadline": 5.0}
SECRET = "kithara_secret"  # a file whose name holds this must never be opened
STAGED = ("ts", "aes", "fmp4", "byterange")
MEDIA = "ts/32k/index.m3u8"
ENTRY = {"ts": "ts/master.m3u8", "aes": "aes/index.m3u8", "byterange": "byterange/index.m3u8"}
_IU, _PPE = kithara_hls.InvalidUrl, kithara_hls.PlaylistParseError
_KPE, _AE = kithara_hls.KeyProcessingError, kithara_hls.AssetsError
_opened: list[str] = []


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "open" and SECRET in str(args[0]):
        _opened.append(str(args[0]))


sys.addaudithook(_audit)


def read_outcome(f: Any) -> tuple[bytes, BaseException | None]:
    """Read to the end; return what was read and the `HlsError` that stopped it, if any."""
    chunks: list[bytes] = []
    try:
        while data := f.read(16_384):
            chunks.append(data)
    except HlsError as exc:
        return b"".join(chunks), exc
    return b"".join(chunks), None


def free_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def options(tmp_path: Path, **network: Any) -> HlsOptions:
    net = NetworkOptions(**{**FAST, **network})
    return HlsOptions(variant=0, cache=CacheOptions(dir=tmp_path / "cache"), network=net)


@dataclass
class Stage:
    """A private copy of the fixtures behind its own origin, and a secret file beside it."""

    root: Path
    origin: Origin
    secret: Path

    def text(self, rel: str) -> str:
        return (self.root / rel).read_text()

    def write(self, rel: str, body: str | bytes) -> str:
        """Write `body` at `rel`; return its URL."""
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body if isinstance(body, bytes) else body.encode())
        return self.origin.url(rel)

    def swap(self, rel: str, old: str, new: str, out: str | None = None) -> str:
        """Write `rel` (or `out`) with `old` replaced by `new` ({secret} is filled in); return its URL."""
        text = self.text(rel)
        assert old in text, f"{old!r} not in {rel}"
        return self.write(out or rel, text.replace(old, new.replace("{secret}", str(self.secret))))


@contextlib.contextmanager
def staged(tmp_path: Path, fixtures: Fixtures) -> Iterator[Stage]:
    root = tmp_path / "root"
    for name in STAGED:
        shutil.copytree(fixtures[name].root / name, root / name)
    secret = tmp_path / f"{SECRET}.key"
    secret.write_bytes(bytes(16))
    with Origin(root) as origin:
        yield Stage(root, origin, secret)


@dataclass(frozen=True)
class Case:
    """One fault or hostile input: `arrange` plants it and returns the URL to open."""

    kind: str  # "fault" or "hostile"
    name: str
    arrange: Callable[[Stage], str]
    expect: type[HlsError] | None  # None: the exact bytes of `fixture`
    fixture: str = "ts"
    network: dict[str, Any] = field(default_factory=dict)
    forbidden: str | None = None  # a path prefix the origin must never be asked for


def run_case(case: Case, fixtures: Fixtures, tmp_path: Path) -> tuple[str, BaseException | None]:
    """Play `case`; return ("exact" | "clean" | "bad: why", the error)."""
    expected = fixtures[case.fixture].expected(0)
    with staged(tmp_path, fixtures) as stage:
        url = case.arrange(stage)
        opened = len(_opened)  # staging itself writes the secret
        data, error = b"", None
        try:
            with kithara_hls.open(url, options(tmp_path, **case.network)) as f:
                data, error = read_outcome(f)
        except HlsError as exc:
            error = exc
        except Exception as exc:
            return f"bad: {type(exc).__name__} escaped", exc
        if len(_opened) > opened:
            return "bad: a local file was opened", error
        if case.forbidden is not None and stage.origin.count(prefix=case.forbidden):
            return "bad: a forbidden target was requested", error
    if error is None:
        return ("exact", None) if data == expected else ("bad: wrong bytes", None)
    if data != expected[: len(data)]:
        return "bad: wrong bytes before the error", error
    return "clean", error


def matches(case: Case, outcome: str, error: BaseException | None) -> bool:
    if case.expect is None:
        return outcome == "exact"
    return outcome == "clean" and isinstance(error, case.expect)


# --- the cases ----------------------------------------------------------------------------------


def _media(*body: str) -> str:
    return "\n".join(["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:2", *body, "#EXT-X-ENDLIST", ""])


def _swap(rel: str, old: str, new: str, out: str | None = None) -> Callable[[Stage], str]:
    return lambda s: s.swap(rel, old, new, out)


def _write(rel: str, body: str | bytes, entry: str | None = None) -> Callable[[Stage], str]:
    return lambda s: s.write(rel, body) if entry is None else (s.write(rel, body), s.origin.url(entry))[1]


def _segment_uri(uri: str) -> Callable[[Stage], str]:
    return _swap(MEDIA, "\nseg_001.ts\n", f"\n{uri}\n", "ts/32k/evil.m3u8")


def _key(body: bytes) -> Callable[[Stage], str]:
    return _write("aes/key.key", body, "aes/index.m3u8")


def _master_of(uri: str) -> Callable[[Stage], str]:
    return _write("ts/outer.m3u8", f"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1000\n{uri}\n")


def _h(
    name: str, expect: type[HlsError], arrange: Callable[[Stage], str], fixture: str = "ts", **kw: Any
) -> Case:
    forbidden = kw.pop("forbidden", None)
    return Case("hostile", name, arrange, expect, fixture, kw, forbidden)


_MANY = _media(*(f"#EXTINF:1.0,\nseg_{i % 6:03d}.ts" for i in range(300)))
_BR = "byterange/index.m3u8"
_ABSURD = ("1e300", "nan", "inf", "-1", "99999999", "0x10")

HOSTILE = [
    _h("segment file://", _IU, _segment_uri("file://{secret}")),
    _h("segment ftp://", _IU, _segment_uri("ftp://127.0.0.1/x.ts")),
    _h("segment data:", _IU, _segment_uri("data:video/mp2t;base64,R0A=")),
    _h("segment javascript:", _IU, _segment_uri("javascript:alert(1)")),
    _h("segment control char", _IU, _segment_uri("seg\x01_001.ts")),
    _h("segment local path", kithara_hls.SegmentNotFound, _segment_uri("{secret}")),  # resolves to http
    _h("map file://", _IU, _swap("fmp4/64k/index.m3u8", 'URI="init.mp4"', 'URI="file://{secret}"'), "fmp4"),
    _h("key file://", _IU, _swap("aes/index.m3u8", 'URI="key.key"', 'URI="file://{secret}"'), "aes"),
    _h(
        "variant file://",
        _IU,
        _swap(ENTRY["ts"], "\n32k/index.m3u8", "\nfile://{secret}"),
        forbidden="ts/32k",
    ),
    _h("master to itself", _PPE, _master_of("outer.m3u8")),
    _h("master to master", _PPE, _master_of("master.m3u8"), forbidden="ts/32k"),
    _h("HTML playlist", _PPE, _write("x.m3u8", "<!doctype html><p>login")),
    _h("JSON playlist", _PPE, _write("x.m3u8", '{"segments": []}')),
    _h("binary playlist", _PPE, _write("x.m3u8", bytes(range(256)))),
    _h("empty playlist", _PPE, _write("x.m3u8", b"")),
    _h("HTML media playlist", _PPE, _write(MEDIA, "<html>expired</html>", ENTRY["ts"]), forbidden="ts/32k/s"),
    _h("playlist over max_playlist_bytes", _AE, _write("x.m3u8", _MANY), max_playlist_bytes=1000),
    _h(
        "segments over max_segments",
        _PPE,
        _write("ts/32k/x.m3u8", _MANY),
        max_segments=100,
        forbidden="ts/32k/s",
    ),
    *(
        _h(f"EXTINF {v}", _PPE, _write("ts/32k/x.m3u8", _media(f"#EXTINF:{v},", "seg_000.ts")))
        for v in _ABSURD
    ),
    _h("TARGETDURATION 1e12", _PPE, _swap(MEDIA, "TARGETDURATION:2", "TARGETDURATION:1e12", "ts/32k/x.m3u8")),
    _h(
        "live playlist",  # no ENDLIST, and an EVENT playlist (PLAYLIST-TYPE VOD would be complete without it)
        _PPE,
        lambda s: (
            s.swap(MEDIA, "#EXT-X-ENDLIST", "", "ts/32k/live.m3u8"),
            s.swap("ts/32k/live.m3u8", "PLAYLIST-TYPE:VOD", "PLAYLIST-TYPE:EVENT"),
        )[1],
    ),
    _h("SAMPLE-AES", _KPE, _swap("aes/index.m3u8", "METHOD=AES-128", "METHOD=SAMPLE-AES"), "aes"),
    _h("key of 17 bytes", _KPE, _key(bytes(17)), "aes"),
    _h("key with a newline", _KPE, _key(bytes(16) + b"\n"), "aes"),
    _h("key of 15 bytes", _KPE, _key(bytes(15)), "aes"),
    _h("empty key", _KPE, _key(b""), "aes"),
    _h("HTML key", _KPE, _key(b"<html><body>Sign in</body></html>"), "aes"),
    _h(
        "init over max_init_bytes",
        _AE,
        lambda s: s.origin.url("fmp4/64k/index.m3u8"),
        "fmp4",
        max_init_bytes=100,
    ),
    _h("segment over max_segment_bytes", _AE, lambda s: s.origin.url(MEDIA), max_segment_bytes=10_000),
    _h("BYTERANGE past the end", _AE, _swap(_BR, "30644@153972", "40644@153972"), "byterange"),
    _h("BYTERANGE after the end", _AE, _swap(_BR, "30644@153972", "30644@953972"), "byterange"),
    _h("BYTERANGE of 2 TiB", _PPE, _swap(_BR, "30644@153972", f"{2**41}@0"), "byterange"),
]


def _f(
    name: str, plant: Callable[[Origin, str], Any], expect: type[HlsError] | None, fx: str = "ts", **net: Any
) -> Case:
    """A fault planted on segment 1 of fixture `fx`."""

    def arrange(s: Stage) -> str:
        media = MEDIA if fx == "ts" else ENTRY[fx]
        uris = [ln for ln in s.text(media).splitlines() if ln and not ln.startswith("#")]
        path = (Path(media).parent / uris[1]).as_posix()
        if plant is _moved:
            s.write("moved/seg.ts", (s.root / path).read_bytes())
        plant(s.origin, path)
        return s.origin.url(ENTRY[fx])

    return Case("fault", name, arrange, expect, fx, net)


def _moved(o: Origin, p: str) -> None:
    o.redirect(p, "/moved/seg.ts", status=308)


FAULTS = [
    *(
        _f(f"HTTP {c}", lambda o, p, c=c: o.fail(p, status=c, times=2), None)
        for c in (500, 502, 503, 408, 429)
    ),
    _f("429 Retry-After", lambda o, p: o.fail(p, status=429, times=2, retry_after=3600), None),
    _f("retries exhausted", lambda o, p: o.fail(p, status=503, times=FOREVER), kithara_hls.RetryExhausted),
    _f("reset mid-body", lambda o, p: o.reset(p, after_bytes=3000, times=2), None),
    _f("truncated body", lambda o, p: o.truncate(p, after_bytes=5000, times=2), None),
    _f("stall after headers", lambda o, p: o.stall(p, after_bytes=4000), None, read_timeout=0.3),
    _f("Range ignored", lambda o, p: (o.reset(p, after_bytes=9000), o.ignore_range(p)), None),
    _f("Content-Length too big", lambda o, p: o.lie_length(p, 100), kithara_hls.NetError),
    _f("Content-Length too small", lambda o, p: o.lie_length(p, -100, times=2), None, "byterange"),
    _f("Content-Length small, AES", lambda o, p: o.lie_length(p, -32), _KPE, "aes"),
    _f("gzip segment", lambda o, p: o.gzip(p), kithara_hls.NetError),
    _f("gzip key", lambda o, p: o.gzip("aes/key.key"), None, "aes"),
    _f("redirect", _moved, None),
    _f("redirect to file://", lambda o, p: o.redirect(p, "file:///etc/passwd"), _IU),
    _f("redirect loop", lambda o, p: o.redirect(p, "/" + p), kithara_hls.NetError),
    _f("403", lambda o, p: o.fail(p, status=403, times=FOREVER), kithara_hls.NetError),
    _f("404", lambda o, p: o.fail(p, status=404, times=FOREVER), kithara_hls.SegmentNotFound),
    Case(
        "fault",
        "connection refused",
        lambda s: f"http://127.0.0.1:{free_port()}/m.m3u8",
        kithara_hls.RetryExhausted,
    ),
]


@pytest.mark.parametrize("case", HOSTILE, ids=lambda c: c.name)
def test_hostile_input_is_a_clean_error(case: Case, fixtures: Fixtures, tmp_path: Path) -> None:
    outcome, error = run_case(case, fixtures, tmp_path)
    assert matches(case, outcome, error), (outcome, repr(error))


def test_the_audit_hook_sees_opens(tmp_path: Path) -> None:
    before = len(_opened)
    (tmp_path / f"{SECRET}.txt").write_bytes(b"x")
    assert len(_opened) == before + 1


# --- in detail ----------------------------------------------------------------------------------


def test_a_master_is_followed_one_level_only(fixtures: Fixtures, tmp_path: Path) -> None:
    with staged(tmp_path, fixtures) as stage:
        url = _master_of("outer.m3u8")(stage)
        with pytest.raises(kithara_hls.PlaylistParseError, match="another master"):
            kithara_hls.open(url, options(tmp_path))
        assert stage.origin.count("ts/outer.m3u8") == 2  # as the master, then as its variant: no loop


def test_a_bad_key_is_not_kept(fixtures: Fixtures, tmp_path: Path) -> None:
    with staged(tmp_path, fixtures) as stage:
        good = (stage.root / "aes/key.key").read_bytes()
        url = _key(good + b"\n")(stage)
        with kithara_hls.open(url, options(tmp_path)) as f, pytest.raises(kithara_hls.KeyProcessingError):
            f.read()
        stage.write("aes/key.key", good)
        with kithara_hls.open(url, options(tmp_path)) as f:  # the same cache: the bad key was not stored
            assert f.read() == fixtures["aes"].expected(0)


@pytest.mark.parametrize("encoded", [False, True])
def test_an_oversized_playlist_is_refused_before_it_is_read(
    encoded: bool, fixtures: Fixtures, tmp_path: Path
) -> None:
    noise = random.Random(0).randbytes(4 * 2**20).hex()  # 8 MiB that gzip halves only
    body = "#EXTM3U\n" + "\n".join("#" + noise[i : i + 1023] for i in range(0, len(noise), 1023))
    with staged(tmp_path, fixtures) as stage:
        url = stage.write("big.m3u8", body)
        if encoded:
            stage.origin.gzip("big.m3u8")  # Content-Length is then the compressed size
        # The origin holds back the rest: a client that waited for all of it would fail
        # with a NetError after read_timeout, not with AssetsError at once.
        release = stage.origin.stall("big.m3u8", after_bytes=2 * 2**20)
        net = {"max_playlist_bytes": 2**20, "read_timeout": 60.0, "retries": 0}
        with pytest.raises(kithara_hls.AssetsError, match="exceeds the limit"):
            kithara_hls.open(url, options(tmp_path, **net))
        assert not release.is_set() and stage.origin.count("big.m3u8") == 1


@pytest.mark.parametrize("line", ["segment", "map", "key", "variant"])
def test_parse_refuses_an_https_to_http_downgrade(line: str) -> None:
    body = {
        "segment": _media("#EXTINF:2,", "http://cdn.test/seg.ts"),
        "map": _media('#EXT-X-MAP:URI="http://cdn.test/init.mp4"', "#EXTINF:2,", "s.m4s"),
        "key": _media('#EXT-X-KEY:METHOD=AES-128,URI="http://keys.test/k"', "#EXTINF:2,", "s.ts"),
        "variant": "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1000\nhttp://cdn.test/v.m3u8\n",
    }[line]
    with pytest.raises(kithara_hls.InvalidUrl, match="downgrade"):
        parse(body, "https://origin.test/a/index.m3u8")
    assert parse(body, "http://origin.test/a/index.m3u8")  # from an http playlist it is fine
    assert parse(body.replace("http://", "https://"), "https://origin.test/a/index.m3u8")
    with pytest.raises(kithara_hls.InvalidUrl):
        check_url("http://cdn.test/x.ts", parent="https://origin.test/m.m3u8")


# --- TLS: verification on, and no downgrade through a redirect ----------------------------------


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, str]:
    pytest.importorskip("cryptography")
    return self_signed_tls(tmp_path_factory.mktemp("tls"))


def test_tls_is_verified_by_default(
    fixtures: Fixtures, tmp_path: Path, tls: tuple[ssl.SSLContext, str]
) -> None:
    context, ca_file = tls
    fx = fixtures["aes"]
    with Origin(fx.root, tls=context) as secure:
        url = secure.url(fx.entry)
        with pytest.raises(kithara_hls.NetError) as info:
            kithara_hls.open(url, options(tmp_path, retries=1))
        assert "CERTIFICATE_VERIFY_FAILED" in repr(info.value.__cause__)
        assert secure.count() == 0  # refused in the handshake: no request was sent
        with kithara_hls.open(url, options(tmp_path, verify=ca_file)) as f:
            assert url.startswith("https://") and f.read() == fx.expected(0)


@pytest.mark.parametrize("how", ["redirect", "playlist"])
def test_tls_downgrade_to_http_is_refused(
    how: str, fixtures: Fixtures, tmp_path: Path, tls: tuple[ssl.SSLContext, str]
) -> None:
    context, ca_file = tls
    with staged(tmp_path, fixtures) as stage, Origin(stage.root, tls=context) as secure:
        entry = ENTRY["ts"]
        if how == "redirect":
            secure.redirect(entry, stage.origin.url(entry))
        else:
            entry = "ts/down.m3u8"
            stage.write(entry, f"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1000\n{stage.origin.url(MEDIA)}\n")
        with pytest.raises(kithara_hls.InvalidUrl, match="downgrade"):
            kithara_hls.open(secure.url(entry), options(tmp_path, verify=ca_file))
        assert stage.origin.count() == 0  # the http target was never asked
        assert secure.count(entry) == 1


# --- the summary --------------------------------------------------------------------------------


def test_summary_every_fault_and_hostile_input_ends_exact_or_clean(
    fixtures: Fixtures, tmp_path: Path
) -> None:
    """Replay every case; each must end in exact bytes or in the expected clean `HlsError`."""
    counts: Counter[tuple[str, str]] = Counter()
    wrong: list[tuple[str, str, str]] = []
    for n, case in enumerate(FAULTS + HOSTILE):
        outcome, error = run_case(case, fixtures, tmp_path / f"case{n}")
        counts[case.kind, outcome] += 1
        if not matches(case, outcome, error):
            wrong.append((case.name, outcome, repr(error)))
    for (kind, outcome), count in sorted(counts.items()):
        print(f"{kind:8} {outcome:40} {count:3}")
    print(f"{len(FAULTS)} fault kinds, {len(HOSTILE)} hostile inputs: {len(wrong)} wrong")
    assert wrong == []
    assert counts["fault", "exact"] + counts["fault", "clean"] == len(FAULTS) >= 20
    assert counts["fault", "exact"] >= 10 and counts["fault", "clean"] >= 8
    assert counts["hostile", "clean"] == len(HOSTILE) >= 30
