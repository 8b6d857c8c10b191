"""HTTP for the fetch threads: one pooled Session, our own retries, resumable ranged reads.

One `HttpClient` is shared by every worker thread. `HttpClient.fetch` streams a
byte range of a resource into a `Sink`; a body cut short is resumed with a Range
request from the first byte not yet delivered, so a sink never sees a byte twice.
A `BufferSink` has sized bodies read straight into its buffers. Segment and probe
GETs of plain URLs skip requests' own layers for its urllib3 pool (`_open_direct`).
`RetryPolicy` is the immutable retry state, in the style of urllib3's ``Retry``.
`HttpClient.abort` shuts down the sockets of the client's connections so that a
read blocked in another thread returns at once; that call then raises `Cancelled`.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import logging
import os
import re
import socket
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.client import HTTPException, HTTPResponse
from typing import Any, Protocol, TypeVar, cast
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.cookies import RequestsCookieJar, extract_cookies_to_jar, merge_cookies
from requests.exceptions import ConnectionError as RequestsConnectionError
from requests.exceptions import (
    ConnectTimeout,
    InvalidHeader,
    InvalidSchema,
    InvalidURL,
    MissingSchema,
    ReadTimeout,
    RequestException,
    TooManyRedirects,
)
from requests.exceptions import SSLError as RequestsSSLError
from requests.structures import CaseInsensitiveDict
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import (
    ClosedPoolError,
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)
from urllib3.exceptions import SSLError as Urllib3SSLError
from urllib3.poolmanager import PoolManager
from urllib3.util import Timeout

from .errors import AssetsError, HlsError, InvalidUrl, NetError, SegmentNotFound, redact_url
from .options import NetworkOptions
from .retry import Cancelled, RetryPolicy, is_retryable_status, parse_retry_after

log = logging.getLogger(__name__)

#: Bytes asked of the socket per read while streaming a body.
DEFAULT_CHUNK_BYTES = 64 * 1024
#: Hosts whose connection pools one client keeps (playlist, CDN and key hosts).
DEFAULT_POOL_HOSTS = 10
#: Connections kept per host beyond one per worker (playlist and key requests).
EXTRA_CONNECTIONS = 2

#: URLs requests would send as they are: http(s), a plain host (no credentials, no IPv6
#: literal), and a path and query of characters that need no quoting.
_PLAIN_URL = re.compile(r"https?://[A-Za-z0-9.-]+(?::[0-9]+)?(?:[/?][A-Za-z0-9._~!$&'()*+,;=:@/?%-]*)?")
_SESSION_SEND = requests.Session.send
_ADAPTER_SEND = HTTPAdapter.send
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)", re.IGNORECASE)
_T = TypeVar("_T")


class _TransientError(NetError):
    """An attempt failed in a way worth retrying: a retryable status, a cut or wrong body."""

    def __init__(
        self, message: str, *, url: str, status: int | None = None, retry_after: float | None = None
    ):
        self.retry_after = retry_after
        super().__init__(message, url=url, status=status)


_BAD_URL_ERRORS = (InvalidURL, InvalidSchema, MissingSchema)
_FATAL_ERRORS = (*_BAD_URL_ERRORS, InvalidHeader, TooManyRedirects)
# Not OSError as a whole: that would take in every HlsError, and a sink's own I/O errors.
_TRANSIENT_ERRORS = (
    _TransientError,
    RequestException,
    HTTPError,
    HTTPException,
    ConnectionError,
    TimeoutError,
)


@dataclass(frozen=True)
class FetchStats:
    """What one `HttpClient.fetch` took.

    bytes: body bytes delivered to the sink. ttfb: seconds from sending the
    request to its response headers, last attempt. transfer: seconds spent
    reading bodies (headers received to last byte, summed over attempts), for
    throughput. attempts: requests made.
    """

    bytes: int
    ttfb: float
    transfer: float
    attempts: int


class Sink(Protocol):
    """Where `HttpClient.fetch` delivers a resource."""

    def on_size(self, size: int) -> None:
        """The resource's total size, as soon as a response's headers tell it."""

    def on_data(self, offset: int, data: memoryview) -> None:
        """Contiguous body bytes at `offset` from the resource start; the view is of immutable bytes."""


class BufferSink(Sink, Protocol):
    """A sink the body can be read straight into, with no copy (see `HttpClient.fetch`)."""

    def buffer(self) -> memoryview:
        """Writable room (never empty) for the bytes that follow those delivered so far."""

    def filled(self, n: int) -> None:
        """The first `n` bytes of the last `buffer()` now hold the next bytes of the resource."""


def _check_redirect(requested: str, final: str) -> None:
    scheme = urlsplit(final).scheme.lower()
    if scheme not in ("http", "https"):
        raise InvalidUrl("redirected to a URL that is not http(s)", url=final)
    if scheme == "http" and urlsplit(requested).scheme.lower() == "https":
        raise InvalidUrl("redirect downgrades https to http", url=final)


def _parse_content_range(value: str | None) -> tuple[int | None, int | None, int | None] | None:
    match = _CONTENT_RANGE.fullmatch(value.strip()) if value else None
    if match is None:
        return None
    first, last, total = (None if g in (None, "*") else int(g) for g in match.groups())
    return first, last, total


def _content_length(resp: requests.Response) -> int | None:
    if "chunked" in resp.headers.get("Transfer-Encoding", "").lower():
        return None
    try:
        length = int(resp.headers.get("Content-Length", ""))
    except ValueError:
        return None
    return length if length >= 0 else None


def _check_status(
    resp: requests.Response, url: str, ok: tuple[int, ...], missing: type[NetError], *, identity: bool = True
) -> None:
    status = resp.status_code
    if status in ok:
        encoding = resp.headers.get("Content-Encoding", "identity").strip().lower()
        if identity and encoding not in ("", "identity"):
            raise NetError(f"Content-Encoding {encoding!r} on a byte-exact request", url=url, status=status)
        return
    if is_retryable_status(status):
        retry_after = parse_retry_after(resp.headers.get("Retry-After"))
        raise _TransientError("server error", url=url, status=status, retry_after=retry_after)
    if status in (404, 410):
        raise missing("not found", url=url, status=status)
    raise NetError("unexpected HTTP status", url=url, status=status)


def _shutdown(sock: Any) -> None:
    if isinstance(sock, socket.socket):
        # The plain socket method: SSLSocket.shutdown would also drop its TLS object under a reader.
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


# Sockets are recorded, not connections: http.client drops `conn.sock` once a response
# says "Connection: close", while that response goes on reading from the socket.
class _TrackingPoolManager(PoolManager):
    """A PoolManager that records each socket its connections open, so `abort` can shut them down."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._lock = threading.Lock()
        self._socks: weakref.WeakSet[socket.socket] = weakref.WeakSet()
        self._aborted = False

    def _new_pool(self, scheme: str, host: str, port: int, request_context: Any = None) -> Any:
        pool = super()._new_pool(scheme, host, port, request_context)
        https = isinstance(pool, HTTPSConnectionPool)
        pool.ConnectionCls = _TrackedHTTPSConnection if https else _TrackedHTTPConnection
        pool.conn_kw["tracker"] = self
        return pool

    def track(self, sock: Any) -> None:
        with self._lock:
            if not self._aborted:
                if isinstance(sock, socket.socket):
                    self._socks.add(sock)
                return
        _shutdown(sock)

    def abort(self) -> None:
        with self._lock:
            self._aborted = True
            socks = list(self._socks)
        for sock in socks:
            _shutdown(sock)


# What to call once this thread's request is on the wire (see HttpClient.fetch's on_sent).
_sending = threading.local()


class _TrackedHTTPConnection(HTTPConnection):
    def __init__(self, *args: Any, tracker: _TrackingPoolManager, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tracker = tracker

    def connect(self) -> None:
        super().connect()
        self._tracker.track(self.sock)

    def request(self, *args: Any, **kwargs: Any) -> None:
        super().request(*args, **kwargs)
        hook = getattr(_sending, "hook", None)
        if hook is not None:
            _sending.hook = None
            try:
                hook()
            except Exception:
                log.exception("on_sent hook failed")


class _TrackedHTTPSConnection(_TrackedHTTPConnection, HTTPSConnection):  # MRO: wraps HTTPS connect()
    pass


class _TrackingAdapter(HTTPAdapter):
    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **kwargs: Any) -> None:
        super().init_poolmanager(connections, maxsize, block, **kwargs)
        self.poolmanager = _TrackingPoolManager(num_pools=connections, maxsize=maxsize, block=block, **kwargs)


class _GuardedSession(requests.Session):
    """A Session that refuses, before following it, a redirect off http(s) or from https to http."""

    def get_redirect_target(self, resp: requests.Response) -> str | None:
        target = super().get_redirect_target(resp)
        if target is not None:
            try:
                _check_redirect(resp.url, urljoin(resp.url, target))
            except InvalidUrl:
                resp.close()
                raise
        return target


@dataclass
class _Transfer:
    """One fetch's progress across attempts; offsets are relative to the resource (or its slice)."""

    url: str
    sink: Sink
    next: int
    end: int | None
    base_offset: int
    sliced: bool
    max_bytes: int | None
    on_sent: Callable[[], None] | None = None
    size: int | None = None
    ttfb: float = 0.0
    transfer: float = 0.0

    def range_header(self) -> str | None:
        if self.next == 0 and self.end is None and not self.sliced:
            return None
        last = "" if self.end is None else str(self.base_offset + self.end - 1)
        return f"bytes={self.base_offset + self.next}-{last}"

    def learn_size(self, size: int) -> None:
        if self.size is not None:
            if size != self.size:
                raise AssetsError(f"resource changed size from {self.size} to {size} bytes", url=self.url)
            return
        if self.max_bytes is not None and size > self.max_bytes:
            raise AssetsError(f"resource of {size} bytes exceeds the limit of {self.max_bytes}", url=self.url)
        if self.next > size:
            raise NetError(f"range starts at {self.next}, beyond the end ({size} bytes)", url=self.url)
        self.size = size
        self.sink.on_size(size)
        if self.end is None or self.end > size:
            self.end = size

    def accept_range(self, header: str | None) -> int:
        """Check a 206's Content-Range against what was asked; return the body length."""
        first, last, total = _parse_content_range(header) or (None, None, None)
        asked_first = self.base_offset + self.next
        if first == asked_first and last is not None and not self.sliced and total is not None:
            self.learn_size(total)
        asked_last = last if self.end is None else self.base_offset + self.end - 1
        if self.sliced and total is not None and asked_last is not None and asked_last >= total:
            # A BYTERANGE past the resource's end: asking again cannot help.
            raise AssetsError(
                f"byte range ends at {asked_last}, beyond the resource ({total} bytes)", url=self.url
            )
        if first != asked_first or last is None or last != asked_last:
            raise _TransientError(
                f"server sent range {header!r}, asked bytes {asked_first}-{asked_last}",
                url=self.url,
                status=206,
            )
        return last - asked_first + 1

    def deliver(self, data: memoryview) -> None:
        self._check_limit(len(data))
        self.sink.on_data(self.next, data)
        self.next += len(data)

    def advance(self, sink: BufferSink, n: int) -> None:
        """`n` bytes were read into `sink.buffer()`."""
        self._check_limit(n)
        sink.filled(n)
        self.next += n

    def _check_limit(self, n: int) -> None:
        if self.max_bytes is not None and self.next + n > self.max_bytes:
            raise AssetsError(f"resource exceeds the limit of {self.max_bytes} bytes", url=self.url)


class HttpClient:
    """HTTP for every worker thread of one source: pooled, retried, resumable, abortable.

    net: timeouts, retries and backoff, headers, TLS verification, pool size.
    cancel: set when the client is aborted (pass the owner's Event to share it); setting
    it stops calls at their next check, while `abort` also wakes reads blocked on a socket.
    on_retry: called as ``on_retry(error, attempt)`` for each failure about to be retried.
    Thread-safe: many workers share one client.
    """

    def __init__(
        self,
        net: NetworkOptions,
        *,
        cancel: threading.Event | None = None,
        on_retry: Callable[[BaseException, int], None] | None = None,
    ) -> None:
        self._net = net
        self._policy = RetryPolicy.from_options(net)
        self._cancel = cancel if cancel is not None else threading.Event()
        self._on_retry = on_retry
        self._timeout = (net.connect_timeout, net.read_timeout)
        self._lock = threading.Lock()
        self._closed = False
        adapter = _TrackingAdapter(
            pool_connections=DEFAULT_POOL_HOSTS,
            pool_maxsize=net.workers + net.probe_workers + EXTRA_CONNECTIONS,
            max_retries=0,
        )
        self._pools = cast(_TrackingPoolManager, adapter.poolmanager)
        session = _GuardedSession()
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.headers.update(net.headers)
        session.verify = net.verify
        # requests reads the proxy environment on every request (about 1.5 ms):
        # read it once per host instead (see _environment).
        session.trust_env = False
        self._session = session
        self._adapter = adapter
        self._direct_timeout = Timeout(connect=net.connect_timeout, read=net.read_timeout)
        # Hosts that answered a request with a redirect: requests follows them there.
        self._redirecting: set[tuple[str, str]] = set()
        self._direct_pools: dict[tuple[tuple[str, str], bool | str], HTTPConnectionPool] = {}
        self._environments: dict[tuple[str, str], tuple[dict[str, str], bool | str]] = {}

    def get(
        self,
        url: str,
        *,
        max_bytes: int,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> tuple[bytes, str]:
        """GET a small body (a playlist, a key): ``(body, final URL after redirects)``.

        Content-Encoding (gzip) is decoded. Transient failures are retried per the
        policy; 404/410 and every other 4xx but 408/429 raise `NetError` at once. A
        body over `max_bytes` raises `AssetsError` before it is read in full.
        """
        sent = dict(headers or {})
        result, _ = self._retrying(url, lambda: self._get_once(url, max_bytes, sent, params))
        return result

    def _get_once(
        self, url: str, max_bytes: int, headers: dict[str, str], params: Mapping[str, str] | None
    ) -> tuple[bytes, str]:
        with self._open(url, headers, params) as resp:
            _check_status(resp, url, (200, 203), NetError, identity=False)
            length = _content_length(resp)
            if length is not None and length > max_bytes:
                raise AssetsError(f"body of {length} bytes exceeds the limit of {max_bytes}", url=url)
            body = bytearray()
            for chunk in resp.iter_content(DEFAULT_CHUNK_BYTES):
                self._check_cancel()
                body += chunk
                if len(body) > max_bytes:
                    raise AssetsError(f"body exceeds the limit of {max_bytes} bytes", url=url)
            return bytes(body), resp.url

    def fetch(
        self,
        url: str,
        sink: Sink,
        *,
        start: int = 0,
        end: int | None = None,
        base: tuple[int, int] | None = None,
        max_bytes: int | None = None,
        chunk_size: int = DEFAULT_CHUNK_BYTES,
        on_sent: Callable[[], None] | None = None,
    ) -> FetchStats:
        """Stream bytes ``[start, end)`` of a resource (``end=None``: to its end) into `sink`, in order.

        base: ``(offset, length)`` of an EXT-X-BYTERANGE; the resource is then that
        slice of `url` and every offset and size the sink sees is relative to it.
        The sink learns the size from the headers (`Sink.on_size`, at most once),
        then gets each byte exactly once: a body cut short is resumed with a Range
        request from the first undelivered byte. 404/410 raise `SegmentNotFound`,
        other 4xx but 408/429 `NetError`, at once; a size over `max_bytes` raises
        `AssetsError`; transient failures end in `RetryExhausted`; `abort` in `Cancelled`.
        on_sent: called once, on this thread, as soon as a request is on the wire.
        """
        if start < 0 or (end is not None and end < start) or chunk_size <= 0:
            raise ValueError(f"bad range [{start}, {end}) or chunk size {chunk_size}")
        offset = base[0] if base is not None else 0
        t = _Transfer(url, sink, start, end, offset, base is not None, max_bytes, on_sent)
        if base is not None:
            t.learn_size(base[1])
        if t.end is not None and t.next >= t.end:
            return FetchStats(0, 0.0, 0.0, 0)
        _, attempts = self._retrying(url, lambda: self._fetch_once(t, chunk_size))
        return FetchStats(t.next - start, t.ttfb, t.transfer, attempts)

    def _fetch_once(self, t: _Transfer, chunk_size: int) -> None:
        if t.end is not None and t.next >= t.end:
            return
        headers = {"Accept-Encoding": "identity"}
        wanted = t.range_header()
        if wanted is not None:
            headers["Range"] = wanted
        on_sent, t.on_sent = t.on_sent, None
        with self._open(t.url, headers, on_sent=on_sent, direct=True) as resp:
            t.ttfb = resp.elapsed.total_seconds()
            if resp.status_code == 416 and t.sliced:
                raise AssetsError("byte range starts beyond the resource", url=t.url, status=416)
            if resp.status_code == 416 and t.size is None and t.end is None and t.next > 0:
                # Asked from byte N on, of a resource that may be N bytes long: a body
                # stored whole by a run killed before it sealed it (see Cache.seal_blob).
                _, _, total = _parse_content_range(resp.headers.get("Content-Range")) or (None, None, None)
                if total == t.next:
                    t.learn_size(total)
                    return
            _check_status(resp, t.url, (200, 206), SegmentNotFound)
            skip, want = self._plan(resp, t)
            began = time.monotonic()
            try:
                body = getattr(resp.raw, "_fp", None)
                into = t.sink if callable(getattr(t.sink, "filled", None)) else None
                if into is not None and not skip and isinstance(body, HTTPResponse) and _sized(body):
                    got = self._pump_into(resp, body, want, t, cast(BufferSink, into))
                else:
                    got = self._pump(resp, skip, want, chunk_size, t.deliver)
            finally:
                t.transfer += time.monotonic() - began
        if want is None:
            t.learn_size(t.next)
        elif got < want:
            raise _TransientError(
                f"body cut short: {got} of {want} bytes", url=t.url, status=resp.status_code
            )

    @staticmethod
    def _plan(resp: requests.Response, t: _Transfer) -> tuple[int, int | None]:
        """Body bytes to skip, then how many to deliver (None: up to the end of the body)."""
        if resp.status_code == 206:
            return 0, t.accept_range(resp.headers.get("Content-Range"))
        # A 200: the server sent the whole resource, whatever Range asked.
        length = _content_length(resp)
        if not t.sliced and length is not None:
            t.learn_size(length)
        skip = t.base_offset + t.next
        if t.end is None:
            return skip, None
        stop = t.base_offset + t.end
        if length is not None and length < stop:
            raise AssetsError(f"resource of {length} bytes is shorter than its byte range", url=t.url)
        return skip, stop - skip

    def _pump(
        self,
        resp: requests.Response,
        skip: int,
        want: int | None,
        chunk_size: int,
        emit: Callable[[memoryview], None],
    ) -> int:
        """Drop `skip` body bytes, pass the next `want` (None: all) to `emit`; return how many passed."""
        # read1 returns what the socket has (no wait for a full chunk); early urllib3 2.x lacks it.
        read = getattr(resp.raw, "read1", None) or resp.raw.read
        got = 0
        while want is None or got < want:
            self._check_cancel()
            ask = chunk_size if want is None else min(chunk_size, skip + want - got)
            data = read(ask, decode_content=False)
            if not data:
                break
            view = memoryview(data)
            if skip:
                dropped = min(skip, len(view))
                skip -= dropped
                view = view[dropped:]
            if view:
                emit(view)
                got += len(view)
        return got

    def _pump_into(
        self, resp: requests.Response, body: HTTPResponse, want: int | None, t: _Transfer, sink: BufferSink
    ) -> int:
        """Read the body (`want` bytes; None: all) straight into `sink`'s buffers; return how many.

        This reads the http.client response under urllib3's: its readinto fills the
        buffer from the socket, where urllib3's read returns new bytes to copy. A
        body read to its end hands the connection back to the pool, as urllib3 does
        for a body read through it; one cut short closes it with the response.
        """
        reader = _BodyReader(body)
        got = 0
        while want is None or got < want:
            self._check_cancel()
            view = sink.buffer()
            if want is not None and len(view) > want - got:
                view = view[: want - got]
            try:
                n = reader.readinto(view)
            except OSError as exc:  # urllib3 would have raised ProtocolError or ReadTimeoutError
                raise _TransientError(
                    f"body read failed ({type(exc).__name__})", url=t.url, status=resp.status_code
                ) from exc
            if not n:
                break
            t.advance(sink, n)
            got += n
        if body.isclosed() and (want is None or got == want):
            resp.raw.release_conn()
        return got

    def probe(self, url: str, *, base: tuple[int, int] | None = None, tail: int = 0) -> tuple[int, bytes]:
        """A resource's size without downloading it, and its last `tail` bytes: ``(size, tail_bytes)``.

        Asks ``Range: bytes=0-0`` (or the last `tail` bytes) and reads the total
        from Content-Range. A server that ignores Range gives the size in
        Content-Length; the tail is then streamed through a bounded buffer.
        base: as in `fetch`; its length is the size. Retries like `fetch`.
        """
        if tail < 0:
            raise ValueError("tail must be 0 or more")
        if base is not None and min(tail, base[1]) == 0:
            return base[1], b""
        result, _ = self._retrying(url, lambda: self._probe_once(url, base, tail))
        return result

    def _probe_once(self, url: str, base: tuple[int, int] | None, tail: int) -> tuple[int, bytes]:
        size: int | None
        want: int | None
        if base is not None:
            tail = min(tail, base[1])
            wanted = f"bytes={base[0] + base[1] - tail}-{base[0] + base[1] - 1}"
        else:
            wanted = f"bytes=-{tail}" if tail else "bytes=0-0"
        with self._open(url, {"Accept-Encoding": "identity", "Range": wanted}, direct=True) as resp:
            content_range = resp.headers.get("Content-Range")
            if (
                resp.status_code == 416
                and base is None
                and _parse_content_range(content_range) == (None, None, 0)
            ):
                return 0, b""
            if resp.status_code == 416 and base is not None:
                raise AssetsError("byte range starts beyond the resource", url=url, status=416)
            _check_status(resp, url, (200, 206), SegmentNotFound)
            skip = 0
            if resp.status_code == 206:
                size, want = _probe_range(content_range, url, base, tail)
            elif base is not None:
                size, skip, want = base[1], base[0], base[1]
            else:
                size = want = _content_length(resp)
                if size is not None and tail == 0:
                    return size, b""
            kept = bytearray()  # the last `tail` bytes so far: memory stays under tail + one chunk

            def keep(data: memoryview) -> None:
                kept.extend(data)
                del kept[: max(0, len(kept) - tail)]

            got = self._pump(resp, skip, want, DEFAULT_CHUNK_BYTES, keep)
        if want is not None and got < want:
            raise _TransientError(f"body cut short: {got} of {want} bytes", url=url, status=resp.status_code)
        return (got if size is None else size), bytes(kept)

    def abort(self) -> None:
        """Cancel every call in flight, from any thread: blocked reads return at once. Idempotent.

        Sets the cancel Event and shuts down the socket of every connection the
        client opened; the interrupted calls raise `Cancelled`, as do later ones.
        """
        self._cancel.set()
        self._pools.abort()

    def close(self) -> None:
        """`abort`, then release the connection pools. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.abort()
        self._session.close()

    def _environment(self, url: str) -> tuple[dict[str, str], bool | str]:
        """Proxies (HTTP(S)_PROXY, NO_PROXY) and CA bundle (REQUESTS_CA_BUNDLE) for `url`'s host."""
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc)
        with self._lock:
            found = self._environments.get(key)
        if found is None:
            verify: bool | str = self._net.verify
            if verify is True:
                verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
            found = (requests.utils.get_environ_proxies(url), verify)
            with self._lock:
                self._environments[key] = found
        return found

    def _check_cancel(self) -> None:
        if self._cancel.is_set():
            raise Cancelled("client closed")

    def _open(
        self,
        url: str,
        headers: dict[str, str],
        params: Mapping[str, str] | None = None,
        *,
        on_sent: Callable[[], None] | None = None,
        direct: bool = False,
    ) -> requests.Response:
        """GET `url`, streaming. direct: try `_open_direct` first (segments and probes, which
        are many; a playlist or key request is better sent once, with requests' redirects)."""
        self._check_cancel()
        proxies, verify = self._environment(url)
        if direct and params is None and not proxies and self._plain(url):
            resp = self._open_direct(url, headers, verify, on_sent)
            if resp is not None:
                return resp
            on_sent = None  # the request went out: that was the hook's one call
        # Prepared here, not by Session.request: its merging of session settings (with
        # runtime-Protocol isinstance checks) cost about a quarter of a probe's CPU.
        request = requests.PreparedRequest()
        jar = self._session.cookies
        request.prepare(
            method="GET",
            url=url,
            headers={**self._session.headers, **headers},
            params=params,
            cookies=merge_cookies(RequestsCookieJar(), jar) if len(jar) else None,
        )
        _sending.hook = on_sent
        try:
            resp = self._session.send(
                request,
                stream=True,
                timeout=self._timeout,
                verify=verify,
                proxies=proxies,
                allow_redirects=True,
            )
        finally:
            _sending.hook = None
        _log_answer(url, headers, resp)
        try:
            _check_redirect(url, resp.url)
        except InvalidUrl:
            resp.close()
            raise
        return resp

    def _plain(self, url: str) -> bool:
        """Whether requests would add nothing to a GET of `url` (no proxy asked for: see `_open`).

        Not when requests' senders are replaced (by a mock, a tracer): those must see
        every request. Not with cookies to send, nor for a URL to quote or with credentials.
        """
        return (
            type(self._session).send is _SESSION_SEND
            and type(self._adapter).send is _ADAPTER_SEND
            and not len(self._session.cookies)
            and _PLAIN_URL.fullmatch(url) is not None
        )

    def _open_direct(
        self, url: str, headers: dict[str, str], verify: bool | str, on_sent: Callable[[], None] | None
    ) -> requests.Response | None:
        """GET `url` on the session's urllib3 pool without requests' own layers; None if it redirects.

        For URLs with nothing for requests to do (no proxy, no cookie, no
        parameters, nothing to quote, no credentials): its layers cost about a
        third of a segment request's CPU on a fast link. The same pools, headers,
        timeouts and TLS settings serve both paths. A redirect is left to requests,
        which follows it with its checks, from then on for that host.
        """
        parts = urlsplit(url)
        host = (parts.scheme, parts.netloc)
        with self._lock:
            if host in self._redirecting:
                return None
        request = requests.PreparedRequest()
        request.url = url
        # Looked up once per host: requests' lookup parses the URL twice more. A pool the
        # manager closed since (it keeps DEFAULT_POOL_HOSTS) is looked up again.
        pool = self._direct_pools.get((host, verify))
        if pool is None or pool.pool is None:
            pool = self._adapter.get_connection_with_tls_context(request, verify)
            self._direct_pools[(host, verify)] = pool
        target = f"{parts.path or '/'}?{parts.query}" if parts.query else parts.path or "/"
        # Merged as requests merges them: a name in two cases is sent once, ours winning.
        sent = CaseInsensitiveDict(self._session.headers)
        sent.update(headers)
        _sending.hook = on_sent
        began = time.perf_counter()
        try:
            raw = pool.urlopen(
                "GET",
                target,
                headers=sent,
                redirect=False,
                assert_same_host=False,
                retries=False,
                preload_content=False,
                decode_content=False,
                timeout=self._direct_timeout,
            )
        except HTTPError as exc:
            raise _as_requests_error(exc, request) from exc
        finally:
            _sending.hook = None
        elapsed = time.perf_counter() - began
        if raw.status in _REDIRECTS and raw.headers.get("Location"):
            raw.drain_conn()
            raw.release_conn()
            with self._lock:
                self._redirecting.add(host)
            return None
        resp = requests.Response()
        resp.status_code = raw.status
        resp.reason = raw.reason or ""
        resp.headers = CaseInsensitiveDict(raw.headers)
        resp.raw = raw
        resp.url = url
        resp.elapsed = datetime.timedelta(seconds=elapsed)
        resp.request = request
        if "Set-Cookie" in raw.headers:
            request.headers = CaseInsensitiveDict(sent)
            extract_cookies_to_jar(self._session.cookies, request, raw)
        _log_answer(url, headers, resp)
        return resp

    def _retrying(self, url: str, attempt: Callable[[], _T]) -> tuple[_T, int]:
        """Run `attempt` until it succeeds: ``(result, attempts made)``; transient failures are retried."""
        policy = self._policy
        while True:
            try:
                return attempt(), policy.attempts + 1
            except _FATAL_ERRORS as exc:  # noqa: PERF203 (a retry loop)
                kind = InvalidUrl if isinstance(exc, _BAD_URL_ERRORS) else NetError
                raise kind(f"request refused ({type(exc).__name__})", url=url) from exc
            except _TRANSIENT_ERRORS as exc:
                if self._cancel.is_set():
                    raise Cancelled("client closed") from exc
                transient = exc if isinstance(exc, _TransientError) else None
                policy = policy.increment(
                    url,
                    exc,
                    status=transient.status if transient else None,
                    retry_after=transient.retry_after if transient else None,
                )
                # Messages from requests quote the URL with its query string: log the type only.
                reason = exc if isinstance(exc, HlsError) else type(exc).__name__
                log.debug("retry %d of %d: %s", policy.attempts, policy.total, reason)
                if self._on_retry is not None:
                    self._on_retry(exc, policy.attempts)
                policy.sleep(self._cancel)
            except Exception as exc:
                # Once aborted, whatever a torn-down connection raised means "cancelled".
                if self._cancel.is_set() and not isinstance(exc, (Cancelled, HlsError)):
                    raise Cancelled("client closed") from exc
                raise


def _log_answer(url: str, headers: Mapping[str, str], resp: requests.Response) -> None:
    # Checked first: redacting the URL for every segment request is work for nothing
    # when debug logging is off.
    if log.isEnabledFor(logging.DEBUG):
        log.debug(
            "GET %s range=%s -> %d in %.3fs",
            redact_url(url),
            headers.get("Range", "-"),
            resp.status_code,
            resp.elapsed.total_seconds(),
        )


def _as_requests_error(exc: HTTPError, request: requests.PreparedRequest) -> Exception:
    """What requests raises for urllib3's `exc`, so errors (and the events that carry them) are
    of one family whichever path sent the request."""
    if isinstance(exc, NewConnectionError | ProtocolError | ClosedPoolError):
        return RequestsConnectionError(exc, request=request)
    if isinstance(exc, ConnectTimeoutError):
        return ConnectTimeout(exc, request=request)
    if isinstance(exc, ReadTimeoutError):
        return ReadTimeout(exc, request=request)
    if isinstance(exc, Urllib3SSLError):
        return RequestsSSLError(exc, request=request)
    return exc


def _sized(body: HTTPResponse) -> bool:
    """Whether `body` has a length to count down (not chunked, not read to the connection's
    close) from a buffered file `_BodyReader` can read."""
    return body.length is not None and not body.chunked and callable(getattr(body.fp, "readinto1", None))


class _BodyReader:
    """Reads a sized http.client body into the caller's buffers as bytes arrive, with no copy.

    http.client's own readinto waits until the whole buffer is full, so a reader
    would wait for a whole block; its buffered file's readinto1 makes one socket
    read at most, and we count the body down as http.client would. The last byte
    goes through http.client, which then knows the body was read and frees the
    connection for the next request.
    """

    def __init__(self, body: HTTPResponse) -> None:
        self._body = body
        # The file may hold body bytes read along with the headers. readinto1 of
        # more than its buffer copies those, then waits on the socket for more:
        # bytes already here would wait behind a stall (and be lost to its
        # timeout). A read of at most its buffer returns them alone, and only
        # one that filled its whole ask can leave more behind.
        self._maybe_buffered = True

    def readinto(self, view: memoryview) -> int:
        """Body bytes into `view` (at least one unless at the end); 0 at the end or once the peer closed."""
        body = self._body
        left = body.length
        if left is None or left <= 1:
            return body.readinto(view)
        ask = min(len(view), left - 1)
        if self._maybe_buffered:
            ask = min(ask, io.DEFAULT_BUFFER_SIZE)  # what socket.makefile gives http.client
        n = body.fp.readinto1(view[:ask])
        self._maybe_buffered = ask <= io.DEFAULT_BUFFER_SIZE and n == ask
        body.length = left - n
        return n


def _probe_range(header: str | None, url: str, base: tuple[int, int] | None, tail: int) -> tuple[int, int]:
    """``(size, body length)`` from a probe's 206, checked against the range asked."""
    first, last, total = _parse_content_range(header) or (None, None, None)
    if base is not None:
        size = base[1]
        expected = (base[0] + size - tail, base[0] + size - 1)
        if total is not None and expected[1] >= total:
            raise AssetsError(
                f"byte range ends at {expected[1]}, beyond the resource ({total} bytes)", url=url
            )
    elif total is None:
        raise NetError("the server does not tell the resource size", url=url, status=206)
    else:
        size = total
        expected = (max(0, total - tail), total - 1) if tail else (0, 0)
    if (first, last) != expected:
        raise _TransientError(
            f"server sent range {header!r}, asked bytes {expected[0]}-{expected[1]}", url=url, status=206
        )
    return size, expected[1] - expected[0] + 1
