"""The loopback origin: a folder served on 127.0.0.1 over HTTP/1.1 keep-alive, with Range support,
optional TLS, and the latency, bandwidth and fault knobs of `link` and `faults`."""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import struct
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from socketserver import TCPServer
from types import TracebackType
from typing import Any, NamedTuple
from urllib.parse import unquote, urlsplit

from .faults import FOREVER, Fault, FaultKnobs
from .link import CHUNK_BYTES, MIN_THROTTLED_CHUNK_BYTES, THROTTLE_SLICE_S, Aborted, Link
from .response import CONTENT_TYPES, DEFAULT_CONTENT_TYPE, plan
from .tls import self_signed_tls

# The names this module held before the split stay importable from it.
__all__ = [
    "CHUNK_BYTES",
    "CONTENT_TYPES",
    "DEFAULT_CONTENT_TYPE",
    "FOREVER",
    "MIN_THROTTLED_CHUNK_BYTES",
    "SERVE_POLL_S",
    "THROTTLE_SLICE_S",
    "Origin",
    "RequestRecord",
    "self_signed_tls",
]

log = logging.getLogger(__name__)

SERVE_POLL_S = 0.05  # serve_forever's shutdown check; bounds how long stop() waits for the loop


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


class Origin(FaultKnobs):
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
        super().__init__()
        self.root = Path(root).resolve()
        self.port = port
        self.tls = tls
        self.requests: list[RequestRecord] = []
        self._logged = threading.Condition(self._lock)  # notified as each request is logged
        self._conns: set[socket.socket] = set()
        self._link = Link(self._stopping, latency=latency, bandwidth=bandwidth)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def latency(self) -> float:
        """Seconds added before each response."""
        return self._link.latency

    @latency.setter
    def latency(self, value: float) -> None:
        self._link.latency = value

    @property
    def bandwidth(self) -> float | None:
        """The limit, in bytes per second, shared by every connection; None for unlimited."""
        return self._link.bandwidth

    @bandwidth.setter
    def bandwidth(self, value: float | None) -> None:
        self._link.bandwidth = value

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

    def wait_for(self, path: str, *, timeout: float) -> bool:
        """Wait until a request for `path` is logged (before its response is sent, so also one a
        fault holds); False if `timeout` seconds pass first."""
        wanted = path.lstrip("/")
        with self._logged:
            return self._logged.wait_for(lambda: any(r.path == wanted for r in self.requests), timeout)

    def reset_log(self) -> None:
        """Empty the request log."""
        with self._lock:
            self.requests.clear()

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
        self._link.delay()
        response = plan(self.root, path, range_header, action, modifiers)
        with self._lock:
            query = urlsplit(handler.path).query
            headers = tuple(handler.headers.items())
            record = RequestRecord(
                method, path, range_header, response.status, query, headers, handler.client_address[1]
            )
            self.requests.append(record)
            self._logged.notify_all()
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

    def _deliver(self, handler: _Handler, body: bytes, action: Fault | None) -> None:
        kind = action.kind if action is not None else None
        if action is None or kind not in ("reset", "truncate", "stall"):
            self._link.send(handler.wfile, body)
            return
        cut = min(action.after_bytes, len(body))
        self._link.send(handler.wfile, body[:cut])
        if kind == "reset":
            _abort_connection(handler)
        elif kind == "truncate":
            handler.close_connection = True
        elif action.event is not None:
            action.event.wait()
            if self._stopping.is_set():
                raise Aborted
            self._link.send(handler.wfile, body[cut:])


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
        except Aborted:
            _abort_connection(self)
        except OSError:
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass
