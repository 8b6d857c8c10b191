"""The loopback origin: a folder served on 127.0.0.1 with Range support, latency, a shared
bandwidth limit and per-path faults."""

from __future__ import annotations

import contextlib
import gzip
import logging
import re
import socket
import ssl
import struct
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from socketserver import TCPServer
from types import TracebackType
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
    #: The client's port: one per connection, so tests can tell connections apart.
    port: int = 0


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
            record = RequestRecord(
                method, path, range_header, response.status, query, headers, handler.client_address[1]
            )
            self.requests.append(record)
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
    # socketserver's default backlog of 5 drops the SYNs of a burst of new
    # connections (a client retries them after a second); real servers take hundreds.
    request_queue_size = 1024

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
