"""Test support: a loopback HTTP origin with fault knobs, and real HLS fixtures.

`Origin` serves a folder on 127.0.0.1 over HTTP/1.1 keep-alive, with Range
support, added latency, one shared bandwidth limit, and per-path faults (status
failures, connection resets, short bodies, stalls, ignored ranges, redirects,
gzip). The ``build_*`` functions write real HLS streams through ffmpeg's own
muxers (PyAV, imported lazily), and each returns a `StreamFixture` that knows the
bytes a client must produce, computed by an oracle independent of the library.

Run ``python -m kithara_hls.testing serve ROOT`` to serve a folder from its own
process (the first stdout line is the base URL; it stops when stdin closes or on
SIGTERM), and ``python -m kithara_hls.testing build ROOT`` to build every fixture.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import logging
import os
import random
import re
import shutil
import signal
import socket
import ssl
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from socketserver import TCPServer
from types import FrameType, TracebackType
from typing import Any, NamedTuple
from urllib.parse import unquote, urlsplit

log = logging.getLogger(__name__)

CHUNK_BYTES = 16 * 1024  # body write size: resets and throttling act between chunks
THROTTLE_SLICE_S = 0.05  # a throttled chunk carries at most this much link time
MIN_THROTTLED_CHUNK_BYTES = 1024
SERVE_POLL_S = 0.05  # serve_forever's shutdown check; bounds how long stop() waits for the loop
FOREVER = 10**9  # `times` for knobs that stay on until clear_faults()

CONTENT_TYPES = {
    ".m3u8": "application/vnd.apple.mpegurl",
    ".ts": "video/mp2t",
    ".m4s": "video/mp4",
    ".mp4": "video/mp4",
    ".mp3": "audio/mpeg",
    ".key": "application/octet-stream",
}
DEFAULT_CONTENT_TYPE = "application/octet-stream"

_ACTIONS = ("fail", "redirect", "reset", "truncate", "stall")
_MODIFIERS = ("ignore_range", "gzip", "lie_length")
_RANGE_RE = re.compile(r"bytes=(\d*)-(\d*)")


class RequestRecord(NamedTuple):
    """One request the origin answered: path is relative, without its query (kept in `query`)."""

    method: str
    path: str
    range_header: str | None
    status: int
    query: str = ""
    headers: tuple[tuple[str, str], ...] = ()


@dataclass
class _Fault:
    kind: str
    times: int
    status: int = 0
    after_bytes: int = 0
    retry_after: float | None = None
    location: str = ""
    event: threading.Event | None = None
    delta: int = 0


@dataclass(frozen=True)
class _Response:
    status: int
    headers: dict[str, str]
    body: bytes


class _Aborted(Exception):
    """The origin is stopping: drop the connection."""


class _Unsatisfiable(Exception):
    """A Range header that no byte of the resource satisfies."""


class _Link:
    """A simulated link shared by every connection: one byte at a time on the wire."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._free_at = 0.0

    def reserve(self, nbytes: int, rate: float) -> float:
        """Book `nbytes` at `rate` bytes/s; return the seconds until they are sent."""
        with self._lock:
            now = time.monotonic()
            # Idle time earns no credit, so bursts never exceed one chunk.
            self._free_at = max(now, self._free_at) + nbytes / rate
            return self._free_at - now


class Origin:
    """A loopback HTTP origin serving `root`, with latency, bandwidth and fault knobs.

    Action faults (`fail`, `redirect`, `reset`, `truncate`, `stall`) queue per path
    in the order they were set; each request takes at most one. Modifiers
    (`ignore_range`, `gzip`, `lie_length`) apply alongside. `latency` and `bandwidth`
    may be changed while serving. `port` 0 binds a free port; a fixed port lets a
    new origin stand in for a stopped one. `tls`, a server-side context, serves
    https instead. Use as a context manager, or call `start`/`stop`.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        latency: float = 0.0,
        bandwidth: float | None = None,
        port: int = 0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.root = Path(root).resolve()
        self.port = port
        self.tls = tls
        self.latency = latency
        self.bandwidth = bandwidth
        self.requests: list[RequestRecord] = []
        self._lock = threading.Lock()
        self._faults: dict[str, list[_Fault]] = {}
        self._stalls: list[threading.Event] = []
        self._conns: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._link = _Link()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Origin:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/`` (https with `tls`); only while serving."""
        if self._server is None:
            raise RuntimeError("origin is not running")
        scheme = "http" if self.tls is None else "https"
        return f"{scheme}://127.0.0.1:{self._server.server_port}/"

    def url(self, path: str) -> str:
        """The URL of `path`, relative to the served root."""
        return self.base_url + path.lstrip("/")

    def start(self) -> None:
        """Bind a free port and serve on a background thread."""
        with self._lock:
            if self._server is not None:
                raise RuntimeError("origin is already running")
            self._stopping.clear()
            self._server = _Server(self, self.port)
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": SERVE_POLL_S},
                name="kithara-origin",
                daemon=True,
            )
            self._thread.start()

    def stop(self) -> None:
        """Stop serving: release stalls, drop open connections, join. Idempotent."""
        with self._lock:
            server, self._server = self._server, None
            thread, self._thread = self._thread, None
            if server is None:
                return
            self._stopping.set()
            stalls = list(self._stalls)
        for event in stalls:
            event.set()
        server.shutdown()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            _shutdown_quietly(conn)
        server.server_close()
        if thread is not None:
            thread.join()

    def fail(self, path: str, *, status: int = 500, times: int = 1, retry_after: float | None = None) -> None:
        """Answer the next `times` requests for `path` with `status` (and Retry-After if given)."""
        self._add(path, _Fault("fail", times, status=status, retry_after=retry_after))

    def reset(self, path: str, *, after_bytes: int = 0, times: int = 1) -> None:
        """Send headers and `after_bytes` of body, then abort the connection with a TCP RST."""
        self._add(path, _Fault("reset", times, after_bytes=after_bytes))

    def truncate(self, path: str, *, after_bytes: int, times: int = 1) -> None:
        """Announce the full Content-Length, send only `after_bytes`, then close cleanly."""
        self._add(path, _Fault("truncate", times, after_bytes=after_bytes))

    def stall(self, path: str, *, after_bytes: int = 0, times: int = 1) -> threading.Event:
        """Send headers and `after_bytes`, then hold until the returned Event is set.

        Setting the Event sends the rest of the body; `stop` sets it too, and the
        stalled connection is then dropped.
        """
        event = threading.Event()
        with self._lock:
            self._stalls = [e for e in self._stalls if not e.is_set()] + [event]
        if self._stopping.is_set():
            event.set()
        self._add(path, _Fault("stall", times, after_bytes=after_bytes, event=event))
        return event

    def ignore_range(self, path: str, *, times: int = FOREVER) -> None:
        """Answer Range requests for `path` with the full 200 body."""
        self._add(path, _Fault("ignore_range", times))

    def redirect(self, path: str, to_url: str, *, status: int = 302, times: int = FOREVER) -> None:
        """Redirect requests for `path` to `to_url` (absolute or relative)."""
        self._add(path, _Fault("redirect", times, status=status, location=to_url))

    def lie_length(self, path: str, delta: int, *, times: int = FOREVER) -> None:
        """Announce a Content-Length `delta` bytes off the truth on 200/206 answers for `path`.

        The real body is sent whole, then the connection is closed, so the lie
        does not spill into the next response on a kept-alive connection.
        """
        self._add(path, _Fault("lie_length", times, delta=delta))

    def gzip(self, path: str, *, times: int = FOREVER) -> None:
        """Serve `path` gzip-encoded (Content-Encoding: gzip); such responses ignore Range."""
        self._add(path, _Fault("gzip", times))

    def clear_faults(self) -> None:
        """Forget every pending fault (responses already stalled stay stalled)."""
        with self._lock:
            self._faults.clear()

    def count(self, path: str | None = None, *, method: str | None = None, prefix: str | None = None) -> int:
        """How many logged requests match `path` exactly, `method`, and a path `prefix`."""
        with self._lock:
            records = list(self.requests)
        return sum(
            1
            for r in records
            if (path is None or r.path == path.lstrip("/"))
            and (method is None or r.method == method)
            and (prefix is None or r.path.startswith(prefix.lstrip("/")))
        )

    def reset_log(self) -> None:
        """Empty the request log."""
        with self._lock:
            self.requests.clear()

    def _add(self, path: str, fault: _Fault) -> None:
        with self._lock:
            self._faults.setdefault(path.lstrip("/"), []).append(fault)

    def _take_faults(self, path: str) -> tuple[_Fault | None, dict[str, _Fault]]:
        """Consume one use of the first queued action and of each modifier for `path`."""
        action: _Fault | None = None
        modifiers: dict[str, _Fault] = {}
        with self._lock:
            queue = self._faults.get(path, [])
            for fault in queue:
                if fault.kind in _ACTIONS and action is None:
                    action = fault
                elif fault.kind in _MODIFIERS and fault.kind not in modifiers:
                    modifiers[fault.kind] = fault
                else:
                    continue
                fault.times -= 1
            queue[:] = [f for f in queue if f.times > 0]
        return action, modifiers

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)
        if add and self._stopping.is_set():
            _shutdown_quietly(conn)

    def _serve(self, handler: _Handler, method: str) -> None:
        path = unquote(urlsplit(handler.path).path).lstrip("/")
        range_header = handler.headers.get("Range")
        action, modifiers = self._take_faults(path)
        if self.latency > 0 and self._stopping.wait(self.latency):
            raise _Aborted
        response = _plan(self.root, path, range_header, action, modifiers)
        with self._lock:
            query = urlsplit(handler.path).query
            headers = tuple(handler.headers.items())
            self.requests.append(RequestRecord(method, path, range_header, response.status, query, headers))
        handler.send_response(response.status)
        for name, value in response.headers.items():
            handler.send_header(name, value)
        length = len(response.body)
        lie = modifiers.get("lie_length")
        if lie is not None and response.status in (200, 206):
            length = max(0, length + lie.delta)
            handler.send_header("Connection", "close")  # also sets handler.close_connection
        handler.send_header("Content-Length", str(length))
        handler.end_headers()
        if method != "HEAD":
            self._deliver(handler, response.body, action)

    def _deliver(self, handler: _Handler, body: bytes, action: _Fault | None) -> None:
        kind = action.kind if action is not None else None
        if action is None or kind not in ("reset", "truncate", "stall"):
            self._write(handler, body)
            return
        cut = min(action.after_bytes, len(body))
        self._write(handler, body[:cut])
        if kind == "reset":
            _abort_connection(handler)
        elif kind == "truncate":
            handler.close_connection = True
        elif action.event is not None:
            action.event.wait()
            if self._stopping.is_set():
                raise _Aborted
            self._write(handler, body[cut:])

    def _write(self, handler: _Handler, data: bytes) -> None:
        view = memoryview(data)
        while view:
            rate = self.bandwidth
            size = CHUNK_BYTES
            if rate:
                size = max(MIN_THROTTLED_CHUNK_BYTES, min(size, int(rate * THROTTLE_SLICE_S)))
                # Waiting on the stop event is the simulated wire time, and lets stop() cut it short.
                if self._stopping.wait(self._link.reserve(min(size, len(view)), rate)):
                    raise _Aborted
            handler.wfile.write(view[:size])
            view = view[size:]


def _plan(
    root: Path, path: str, range_header: str | None, action: _Fault | None, modifiers: dict[str, _Fault]
) -> _Response:
    """Decide status, headers and body of a response (no I/O but reading the file)."""
    if action is not None and action.kind == "fail":
        headers = {} if action.retry_after is None else {"Retry-After": f"{action.retry_after:g}"}
        return _Response(action.status, headers, f"injected failure {action.status}\n".encode())
    if action is not None and action.kind == "redirect":
        return _Response(action.status, {"Location": action.location}, b"")
    file = _resolve(root, path)
    if file is None:
        return _Response(404, {"Content-Type": "text/plain"}, b"not found\n")
    body = file.read_bytes()
    headers = {"Content-Type": CONTENT_TYPES.get(file.suffix, DEFAULT_CONTENT_TYPE), "Accept-Ranges": "bytes"}
    if "gzip" in modifiers:
        headers["Content-Encoding"] = "gzip"
        return _Response(200, headers, gzip.compress(body, mtime=0))
    if range_header is None or "ignore_range" in modifiers:
        return _Response(200, headers, body)
    try:
        span = _parse_range(range_header, len(body))
    except _Unsatisfiable:
        return _Response(416, {"Content-Range": f"bytes */{len(body)}"}, b"")
    if span is None:
        return _Response(200, headers, body)
    first, last = span
    headers["Content-Range"] = f"bytes {first}-{last}/{len(body)}"
    return _Response(206, headers, body[first : last + 1])


def _parse_range(header: str, total: int) -> tuple[int, int] | None:
    """The inclusive span of a single-range header; None when the header is to be ignored."""
    match = _RANGE_RE.fullmatch(header.strip())
    if match is None or match.group(1) == match.group(2) == "":
        return None
    first_s, last_s = match.groups()
    if first_s == "":
        suffix = int(last_s)
        if suffix == 0 or total == 0:
            raise _Unsatisfiable
        return max(0, total - suffix), total - 1
    first = int(first_s)
    if last_s != "" and int(last_s) < first:
        return None
    if first >= total:
        raise _Unsatisfiable
    return first, total - 1 if last_s == "" else min(int(last_s), total - 1)


def _resolve(root: Path, path: str) -> Path | None:
    """The file `path` names under `root`, or None if missing or outside it."""
    if ".." in path.split("/"):
        return None
    file = (root / path).resolve()
    if not file.is_relative_to(root) or not file.is_file():
        return None
    return file


def _shutdown_quietly(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_RDWR)


def _abort_connection(handler: _Handler) -> None:
    """Close the handler's socket with SO_LINGER 0, so the peer sees a TCP RST."""
    conn = handler.connection
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    # The reader file holds a reference that would otherwise defer the real close.
    handler.rfile.close()
    conn.close()
    handler.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, origin: Origin, port: int = 0) -> None:
        self.origin = origin
        super().__init__(("127.0.0.1", port), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup that can take seconds.
        TCPServer.server_bind(self)
        self.server_name, self.server_port = "127.0.0.1", self.server_address[1]

    def finish_request(self, request: Any, client_address: Any) -> None:
        tls = self.origin.tls
        if tls is None:
            super().finish_request(request, client_address)
            return
        # The handshake runs here, on the connection's thread, not in the accept loop.
        conn = tls.wrap_socket(request, server_side=True)
        try:
            super().finish_request(conn, client_address)
        finally:
            conn.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], OSError):
            log.error("origin handler failed for %s", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kithara-origin/1"
    # Headers and body go out in separate writes: with Nagle's algorithm on, each
    # small response would wait ~40 ms for the client's delayed ACK.
    disable_nagle_algorithm = True
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.origin._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.server.origin._track(self.connection, add=False)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def _dispatch(self, method: str) -> None:
        try:
            self.server.origin._serve(self, method)
        except _Aborted:
            _abort_connection(self)
        except OSError:
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass


def self_signed_tls(folder: str | Path) -> tuple[ssl.SSLContext, str]:
    """A server context for ``Origin(tls=...)`` with a fresh certificate for 127.0.0.1.

    Returns the context and the path of the certificate, to trust as a CA bundle
    (``NetworkOptions(verify=path)``). Needs the ``cryptography`` package.
    """
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    folder = Path(folder)
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context, str(cert_file)


# ---------------------------------------------------------------- fixtures

SAMPLE_RATE = 44_100
CHANNELS_LAYOUT = "stereo"
TONE_STEP_S = 1.0  # the tone changes every second, so a decoded position is recognisable
CHUNK_SAMPLES = 1024  # PCM fed to the encoder per frame
ENCODER_PADDING_SAMPLES = 2048  # priming + flush; without the trim the last segment is ~20 ms
AAC_CODECS = "mp4a.40.2"
LARGE_SEGMENT_S = 4.0
LARGE_SEED = 20240601
BUILD_VERSION = 2  # bump when a builder's output changes, so stale builds are redone
_MARKER = ".complete"

AES_TS_KEY = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
AES_TS_IV = bytes.fromhex("a0a1a2a3a4a5a6a7a8a9aaabacadaeaf")
AES_MANUAL_KEYS = (
    bytes.fromhex("101112131415161718191a1b1c1d1e1f"),
    bytes.fromhex("202122232425262728292a2b2c2d2e2f"),
)
AES_MANUAL_SEQUENCE = 7
AES_FMP4_KEY = bytes.fromhex("303132333435363738393a3b3c3d3e3f")
AES_FMP4_IV = bytes.fromhex("b0b1b2b3b4b5b6b7b8b9babbbcbdbebf")


@dataclass(frozen=True)
class _Key:
    uri: str
    iv: bytes | None


@dataclass(frozen=True)
class _Entry:
    uri: str
    duration: float
    sequence: int
    byterange: tuple[int, int] | None  # (offset, length)
    key: _Key | None


@dataclass
class _Media:
    segments: list[_Entry] = field(default_factory=list)
    init: _Entry | None = None


@dataclass(frozen=True)
class StreamFixture:
    """A built stream: where it is, what to open, and the bytes a client must produce."""

    name: str
    root: Path
    entry: str
    media: tuple[str, ...]

    @property
    def duration(self) -> float:
        """Sum of the EXTINF durations of variant 0."""
        return sum(self.durations(0))

    def durations(self, variant: int = 0) -> list[float]:
        """The EXTINF duration of each segment of `variant`."""
        return [seg.duration for seg in self._media(variant)[1].segments]

    def init_bytes(self, variant: int = 0) -> bytes | None:
        """The (decrypted) EXT-X-MAP section of `variant`, or None."""
        base, media = self._media(variant)
        return None if media.init is None else _load(base, media.init)

    def segment_bytes(self, variant: int = 0) -> list[bytes]:
        """Each segment's (decrypted) bytes, without the init section."""
        base, media = self._media(variant)
        return [_load(base, seg) for seg in media.segments]

    def expected(self, variant: int = 0) -> bytes:
        """The stitched stream of `variant`: init section once, then every segment."""
        return (self.init_bytes(variant) or b"") + b"".join(self.segment_bytes(variant))

    def _media(self, variant: int) -> tuple[Path, _Media]:
        path = self.root / self.media[variant]
        return path.parent, _parse_media(path)


def _attrs(text: str) -> dict[str, str]:
    return {k: v.strip('"') for k, v in re.findall(r'([A-Z0-9-]+)=("[^"]*"|[^,]*)', text)}


def _parse_media(path: Path) -> _Media:
    """A media playlist, read by plain line parsing (the oracle trusts no HLS library)."""
    media, sequence, key = _Media(), 0, None
    duration, pending_range = 0.0, None
    ends: dict[str, int] = {}
    for line in (s.strip() for s in path.read_text().splitlines()):
        tag, _, value = line.partition(":")
        if tag == "#EXT-X-MEDIA-SEQUENCE":
            sequence = int(value)
        elif tag == "#EXT-X-KEY":
            attrs = _attrs(value)
            iv = bytes.fromhex(attrs["IV"][2:]) if "IV" in attrs else None
            key = None if attrs["METHOD"] == "NONE" else _Key(attrs["URI"], iv)
        elif tag == "#EXT-X-MAP":
            attrs = _attrs(value)
            span = _byterange(attrs.get("BYTERANGE"), 0)
            media.init = _Entry(attrs["URI"], 0.0, sequence + len(media.segments), span, key)
        elif tag == "#EXTINF":
            duration = float(value.split(",")[0])
        elif tag == "#EXT-X-BYTERANGE":
            pending_range = value
        elif line and not line.startswith("#"):
            span = _byterange(pending_range, ends.get(line, 0))
            if span is not None:
                ends[line] = span[0] + span[1]
            media.segments.append(_Entry(line, duration, sequence + len(media.segments), span, key))
            pending_range = None
    return media


def _byterange(value: str | None, default_offset: int) -> tuple[int, int] | None:
    if value is None:
        return None
    length, _, offset = value.partition("@")
    return (int(offset) if offset else default_offset), int(length)


def _load(base: Path, entry: _Entry) -> bytes:
    data = (base / entry.uri).read_bytes()
    if entry.byterange is not None:
        offset, length = entry.byterange
        data = data[offset : offset + length]
    if entry.key is None:
        return data
    from Crypto.Cipher import AES
    from Crypto.Util.Padding import unpad

    iv = entry.key.iv or entry.sequence.to_bytes(16, "big")
    cipher = AES.new((base / entry.key.uri).read_bytes(), AES.MODE_CBC, iv)
    return bytes(unpad(cipher.decrypt(data), AES.block_size))


def _encrypt(path: Path, key: bytes, iv: bytes) -> None:
    from Crypto.Cipher import AES
    from Crypto.Util.Padding import pad

    path.write_bytes(AES.new(key, AES.MODE_CBC, iv).encrypt(pad(path.read_bytes(), AES.block_size)))


def _tones(seconds: float) -> Any:
    """Stereo float32 PCM, shape (2, n): a tone that steps up a semitone every second."""
    import numpy as np

    n = max(int(SAMPLE_RATE * seconds) - ENCODER_PADDING_SAMPLES, SAMPLE_RATE // 10)
    t = np.arange(n) / SAMPLE_RATE
    step = np.floor(t / TONE_STEP_S)
    freq = 220.0 * 2.0 ** (step / 12.0)
    left = 0.3 * np.sin(2 * np.pi * freq * t)
    right = 0.2 * np.sin(2 * np.pi * 1.5 * freq * t)
    return np.stack([left, right]).astype(np.float32)


def _encode(
    target: Path, fmt: str, options: dict[str, str], *, codec: str, bitrate: int, seconds: float
) -> None:
    """Encode the test tones with `codec` into `target` through ffmpeg's `fmt` muxer."""
    import av
    import numpy as np

    pcm = _tones(seconds)
    with av.open(str(target), "w", format=fmt, options=options) as out:
        stream = out.add_stream(codec, rate=SAMPLE_RATE, layout=CHANNELS_LAYOUT)
        stream.bit_rate = bitrate
        for start in range(0, pcm.shape[1], CHUNK_SAMPLES):
            chunk = np.ascontiguousarray(pcm[:, start : start + CHUNK_SAMPLES])
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=CHANNELS_LAYOUT)
            frame.sample_rate = SAMPLE_RATE
            frame.pts = start
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def _hls(target: Path, segment_seconds: float, bitrate: int, seconds: float, **extra: str) -> None:
    """One AAC media playlist `target` through the hls muxer (segments beside it)."""
    options = {"hls_time": f"{segment_seconds:g}", "hls_playlist_type": "vod", **extra}
    options.setdefault("hls_segment_filename", str(target.parent / "seg_%03d.ts"))
    _encode(target, "hls", options, codec="aac", bitrate=bitrate, seconds=seconds)


def _build(root: str | Path, name: str, params: dict[str, Any], make: Callable[[Path], None]) -> Path:
    """Run `make` into a scratch folder and move it to root/name, unless already built."""
    root = Path(root)
    folder = root / name
    stamp = json.dumps({"version": BUILD_VERSION, **params}, sort_keys=True)
    marker = folder / _MARKER
    if marker.is_file() and marker.read_text() == stamp:
        return root
    work = root / f".{name}.building"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    make(work)
    (work / _MARKER).write_text(stamp)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(work, folder)
    return root


def _bandwidths(playlist: Path) -> tuple[int, int]:
    """(peak, average) bits per second of a built media playlist."""
    media = _parse_media(playlist)
    sizes = [len(_load(playlist.parent, seg)) for seg in media.segments]
    peak = max(size * 8 / seg.duration for size, seg in zip(sizes, media.segments, strict=True))
    average = sum(sizes) * 8 / sum(seg.duration for seg in media.segments)
    return round(peak), round(average)


def _write_master(folder: Path, playlists: list[str]) -> None:
    """A master over `playlists` (lowest first), listed out of bandwidth order on purpose."""
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for rel in playlists[1:] + playlists[:1]:
        peak, average = _bandwidths(folder / rel)
        lines += [
            f'#EXT-X-STREAM-INF:BANDWIDTH={peak},AVERAGE-BANDWIDTH={average},CODECS="{AAC_CODECS}"',
            rel,
        ]
    lines.append(f'#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=8000,CODECS="{AAC_CODECS}",URI="iframes.m3u8"')
    (folder / "master.m3u8").write_text("\n".join(lines) + "\n")


def _single(root: Path, name: str) -> StreamFixture:
    """A fixture whose entry is its only media playlist, ``name/index.m3u8``."""
    return StreamFixture(name, root, f"{name}/index.m3u8", (f"{name}/index.m3u8",))


def _write_media(path: Path, header: list[str], body: list[str]) -> None:
    lines = ["#EXTM3U", *header, "#EXT-X-PLAYLIST-TYPE:VOD", *body, "#EXT-X-ENDLIST"]
    path.write_text("\n".join(lines) + "\n")


def build_ts_variants(
    root: str | Path,
    *,
    name: str = "ts",
    seconds: float = 12.0,
    segment_seconds: float = 2.0,
    bitrates: tuple[int, ...] = (32_000, 64_000, 128_000),
) -> StreamFixture:
    """AAC in MPEG-TS at each bitrate, time-aligned segments, behind an unsorted master."""
    rates = sorted(bitrates)
    playlists = [f"{rate // 1000}k/index.m3u8" for rate in rates]

    def make(work: Path) -> None:
        for rate, rel in zip(rates, playlists, strict=True):
            (work / rel).parent.mkdir()
            _hls(work / rel, segment_seconds, rate, seconds)
        _write_master(work, playlists)

    params = {"seconds": seconds, "segment_seconds": segment_seconds, "bitrates": rates}
    root = _build(root, name, params, make)
    return StreamFixture(name, root, f"{name}/master.m3u8", tuple(f"{name}/{p}" for p in playlists))


def build_fmp4(
    root: str | Path,
    *,
    name: str = "fmp4",
    seconds: float = 12.0,
    segment_seconds: float = 2.0,
    bitrates: tuple[int, ...] = (64_000, 128_000),
) -> StreamFixture:
    """AAC in fragmented MP4 (EXT-X-MAP init per variant) behind a master."""
    rates = sorted(bitrates)
    playlists = [f"{rate // 1000}k/index.m3u8" for rate in rates]

    def make(work: Path) -> None:
        for rate, rel in zip(rates, playlists, strict=True):
            target = work / rel
            target.parent.mkdir()
            segments = str(target.parent / "seg_%03d.m4s")
            _hls(
                target, segment_seconds, rate, seconds, hls_segment_type="fmp4", hls_segment_filename=segments
            )
        _write_master(work, playlists)

    params = {"seconds": seconds, "segment_seconds": segment_seconds, "bitrates": rates}
    root = _build(root, name, params, make)
    return StreamFixture(name, root, f"{name}/master.m3u8", tuple(f"{name}/{p}" for p in playlists))


def build_byterange(
    root: str | Path, *, name: str = "byterange", seconds: float = 12.0, segment_seconds: float = 2.0
) -> StreamFixture:
    """One TS file sliced by EXT-X-BYTERANGE; media playlist only."""

    def make(work: Path) -> None:
        single = str(work / "stream.ts")
        _hls(
            work / "index.m3u8",
            segment_seconds,
            64_000,
            seconds,
            hls_flags="single_file",
            hls_segment_filename=single,
        )

    root = _build(root, name, {"seconds": seconds, "segment_seconds": segment_seconds}, make)
    return _single(root, name)


def build_packed_mp3(
    root: str | Path, *, name: str = "mp3", seconds: float = 12.0, segment_seconds: float = 2.0
) -> StreamFixture:
    """Packed MP3 segments from the segment muxer, without Xing or ID3 headers."""

    def make(work: Path) -> None:
        playlist = work / "index.m3u8"
        options = {
            "segment_time": f"{segment_seconds:g}",
            "segment_format": "mp3",
            "segment_list": str(playlist),
            "segment_list_type": "m3u8",
            # A Xing header stops soundfile after segment 0; per-segment ID3 tags trip PyAV mid-stream.
            "segment_format_options": "write_xing=0:id3v2_version=0",
        }
        _encode(work / "seg_%03d.mp3", "segment", options, codec="mp3", bitrate=128_000, seconds=seconds)
        lines = playlist.read_text().splitlines()
        if "#EXT-X-ENDLIST" not in lines:
            raise RuntimeError("segment muxer wrote no #EXT-X-ENDLIST")
        if not any(s.startswith("#EXT-X-PLAYLIST-TYPE") for s in lines):
            lines.insert(1, "#EXT-X-PLAYLIST-TYPE:VOD")
        playlist.write_text("\n".join(lines) + "\n")

    root = _build(root, name, {"seconds": seconds, "segment_seconds": segment_seconds}, make)
    return _single(root, name)


def build_aes_ts(
    root: str | Path, *, name: str = "aes", seconds: float = 12.0, segment_seconds: float = 2.0
) -> StreamFixture:
    """AES-128 TS from the hls muxer's key info file: key URI ``key.key``, IV attribute."""

    def make(work: Path) -> None:
        (work / "key.key").write_bytes(AES_TS_KEY)
        info = work / "keyinfo.txt"
        info.write_text(f"key.key\n{work / 'key.key'}\n{AES_TS_IV.hex()}\n")
        _hls(work / "index.m3u8", segment_seconds, 64_000, seconds, hls_key_info_file=str(info))
        info.unlink()

    root = _build(root, name, {"seconds": seconds, "segment_seconds": segment_seconds}, make)
    return _single(root, name)


def build_aes_manual(
    root: str | Path, *, name: str = "aes_manual", seconds: float = 12.0, segment_seconds: float = 2.0
) -> StreamFixture:
    """Hand-encrypted TS: no IV (IV = sequence), media sequence 7, key rotation, a clear segment."""

    def make(work: Path) -> None:
        _hls(work / "index.m3u8", segment_seconds, 64_000, seconds)
        segments = _parse_media(work / "index.m3u8").segments
        (work / "keys").mkdir()
        for index, key in enumerate(AES_MANUAL_KEYS):
            (work / "keys" / f"k{index}.key").write_bytes(key)
        clear = len(segments) - 2
        body: list[str] = []
        current: int | None = -1
        for i, seg in enumerate(segments):
            key_index = None if i == clear else int(i >= len(segments) // 2)
            if key_index != current:
                body.append(_key_line(None if key_index is None else f"keys/k{key_index}.key"))
                current = key_index
            if key_index is not None:
                sequence = AES_MANUAL_SEQUENCE + i
                _encrypt(work / seg.uri, AES_MANUAL_KEYS[key_index], sequence.to_bytes(16, "big"))
            body += [f"#EXTINF:{seg.duration:.6f},", seg.uri]
        header = [
            "#EXT-X-VERSION:3",
            f"#EXT-X-TARGETDURATION:{_target_duration(segments)}",
            f"#EXT-X-MEDIA-SEQUENCE:{AES_MANUAL_SEQUENCE}",
        ]
        _write_media(work / "index.m3u8", header, body)

    root = _build(root, name, {"seconds": seconds, "segment_seconds": segment_seconds}, make)
    return _single(root, name)


def _target_duration(segments: list[_Entry]) -> int:
    # RFC 8216: every EXTINF rounded half-up to an integer must not exceed the target.
    return int(max(seg.duration for seg in segments) + 0.5)


def _key_line(uri: str | None, iv: bytes | None = None) -> str:
    if uri is None:
        return "#EXT-X-KEY:METHOD=NONE"
    iv_attr = "" if iv is None else f",IV=0x{iv.hex()}"
    return f'#EXT-X-KEY:METHOD=AES-128,URI="{uri}"{iv_attr}'


def build_aes_fmp4(
    root: str | Path, *, name: str = "aes_fmp4", seconds: float = 12.0, segment_seconds: float = 2.0
) -> StreamFixture:
    """Hand-encrypted fMP4 whose EXT-X-MAP init is encrypted too (KEY before MAP, IV given)."""

    def make(work: Path) -> None:
        segments_pattern = str(work / "seg_%03d.m4s")
        _hls(
            work / "index.m3u8",
            segment_seconds,
            64_000,
            seconds,
            hls_segment_type="fmp4",
            hls_segment_filename=segments_pattern,
        )
        media = _parse_media(work / "index.m3u8")
        if media.init is None:
            raise RuntimeError("hls muxer wrote no EXT-X-MAP")
        (work / "key.key").write_bytes(AES_FMP4_KEY)
        body = [_key_line("key.key", AES_FMP4_IV), f'#EXT-X-MAP:URI="{media.init.uri}"']
        for entry in [media.init, *media.segments]:
            _encrypt(work / entry.uri, AES_FMP4_KEY, AES_FMP4_IV)
        for seg in media.segments:
            body += [f"#EXTINF:{seg.duration:.6f},", seg.uri]
        header = [
            "#EXT-X-VERSION:7",
            f"#EXT-X-TARGETDURATION:{_target_duration(media.segments)}",
        ]
        _write_media(work / "index.m3u8", [*header, "#EXT-X-MEDIA-SEQUENCE:0"], body)

    root = _build(root, name, {"seconds": seconds, "segment_seconds": segment_seconds}, make)
    return _single(root, name)


def build_large(
    root: str | Path, *, name: str = "large", segments: int = 100, segment_bytes: int = 512 * 1024
) -> StreamFixture:
    """A codec-free benchmark stream: `segments` seeded random segments of EXTINF 4.0."""

    def make(work: Path) -> None:
        rng = random.Random(LARGE_SEED)
        body: list[str] = []
        for i in range(segments):
            (work / f"seg_{i:05d}.ts").write_bytes(rng.randbytes(segment_bytes))
            body += [f"#EXTINF:{LARGE_SEGMENT_S:.6f},", f"seg_{i:05d}.ts"]
        header = ["#EXT-X-VERSION:3", f"#EXT-X-TARGETDURATION:{LARGE_SEGMENT_S:g}", "#EXT-X-MEDIA-SEQUENCE:0"]
        _write_media(work / "index.m3u8", header, body)

    root = _build(root, name, {"segments": segments, "segment_bytes": segment_bytes}, make)
    return _single(root, name)


def build_all(root: str | Path) -> dict[str, StreamFixture]:
    """Every codec fixture with default parameters (not `build_large`), by name."""
    builders = (
        build_ts_variants,
        build_fmp4,
        build_byterange,
        build_packed_mp3,
        build_aes_ts,
        build_aes_manual,
        build_aes_fmp4,
    )
    built = [build(root) for build in builders]
    return {fixture.name: fixture for fixture in built}


# ---------------------------------------------------------------- command line


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def _serve(root: str, latency: float, bandwidth: float | None) -> int:
    signal.signal(signal.SIGTERM, _exit_on_signal)
    with Origin(root, latency=latency, bandwidth=bandwidth) as origin:
        print(origin.base_url, flush=True)
        sys.stdin.buffer.read()  # until the parent closes our stdin
    return 0


def _build_cli(root: str) -> Iterator[str]:
    fixtures = {**build_all(root), "large": build_large(root)}
    for name, fixture in fixtures.items():
        yield f"{name}\t{fixture.entry}"


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m kithara_hls.testing``."""
    parser = argparse.ArgumentParser(prog="python -m kithara_hls.testing", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve ROOT on 127.0.0.1 until stdin closes or SIGTERM")
    serve.add_argument("root")
    serve.add_argument("--latency", type=float, default=0.0, help="seconds before each response")
    serve.add_argument("--bandwidth", type=float, default=None, help="shared limit, bytes per second")
    build = commands.add_parser("build", help="build every fixture under ROOT")
    build.add_argument("root")
    args = parser.parse_args(argv)
    if args.command == "serve":
        return _serve(args.root, args.latency, args.bandwidth)
    for line in _build_cli(args.root):
        print(line, flush=True)
    return 0


__all__ = [
    "AES_FMP4_IV",
    "AES_FMP4_KEY",
    "AES_MANUAL_KEYS",
    "AES_MANUAL_SEQUENCE",
    "AES_TS_IV",
    "AES_TS_KEY",
    "Origin",
    "RequestRecord",
    "StreamFixture",
    "build_aes_fmp4",
    "build_aes_manual",
    "build_aes_ts",
    "build_all",
    "build_byterange",
    "build_fmp4",
    "build_large",
    "build_packed_mp3",
    "build_ts_variants",
    "main",
    "self_signed_tls",
]

if __name__ == "__main__":
    raise SystemExit(main())
