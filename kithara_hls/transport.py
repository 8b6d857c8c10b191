"""HTTP for the fetch threads: one pooled `requests.Session`, retried, abortable.

One `HttpClient` is shared by every worker thread of a source, and every request
goes through its Session, whose urllib3 pool fits the workers. Redirects off
http(s), or from https to http, are refused before they are followed: a redirect
never reaches a local file. ``file://`` URLs (a playlist on disk that the user
named, and the files it names) are answered by `localfile.LocalFileAdapter`,
mounted on the same Session. The ranged
download (`ranged.fetch`) and the size probe (`probes.probe`) are reached through
the client's `fetch` and `probe`. `HttpClient.abort` shuts down the sockets of
the client's connections, so that a read blocked in another thread (on a body or
on response headers) returns at once; that call then raises `Cancelled`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import weakref
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.poolmanager import PoolManager

from . import probes, ranged
from .errors import AssetsError, InvalidUrl, NetError, redact_url
from .localfile import LocalFileAdapter
from .options import NetworkOptions
from .ranged import DEFAULT_CHUNK_BYTES, FetchStats, Sink, content_length
from .retry import Cancelled, RetryPolicy, check_status, retrying

log = logging.getLogger(__name__)

#: Hosts whose connection pools one client keeps (playlist, CDN and key hosts).
DEFAULT_POOL_HOSTS = 10
#: Connections kept per host beyond one per fetch and probe thread (playlist and key requests).
EXTRA_CONNECTIONS = 2

_T = TypeVar("_T")


def _check_redirect(requested: str, final: str) -> None:
    scheme = urlsplit(final).scheme.lower()
    if scheme == "file" and final == requested:
        return  # a local file asked for by name (no redirect): the URL checks allowed it
    if scheme not in ("http", "https"):
        raise InvalidUrl("redirected to a URL that is not http(s)", url=final)
    if scheme == "http" and urlsplit(requested).scheme.lower() == "https":
        raise InvalidUrl("redirect downgrades https to http", url=final)


class _Sockets:
    """The sockets a client's connections opened, to shut down on abort (and any opened after)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._socks: weakref.WeakSet[socket.socket] = weakref.WeakSet()
        self._aborted = False

    def add(self, sock: object) -> None:
        if not isinstance(sock, socket.socket):
            return
        with self._lock:
            if not self._aborted:
                self._socks.add(sock)
                return
        _shutdown(sock)

    def abort(self) -> None:
        with self._lock:
            self._aborted = True
            socks = list(self._socks)
        for sock in socks:
            _shutdown(sock)


def _shutdown(sock: socket.socket) -> None:
    # The plain socket method: SSLSocket.shutdown would also drop its TLS object under a reader.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _pool_classes(sockets: _Sockets) -> dict[str, type[HTTPConnectionPool]]:
    """Pool classes whose connections record their socket in `sockets` as they connect.

    Sockets, not connections, are recorded: http.client lets go of a connection's
    socket once a response says "Connection: close", while that response reads on.
    """

    class Connection(HTTPConnection):
        def connect(self) -> None:
            super().connect()
            sockets.add(self.sock)

    class TLSConnection(HTTPSConnection):
        def connect(self) -> None:
            super().connect()
            sockets.add(self.sock)

    class Pool(HTTPConnectionPool):
        ConnectionCls = Connection

    class TLSPool(HTTPSConnectionPool):
        ConnectionCls = TLSConnection

    return {"http": Pool, "https": TLSPool}


class _TrackingPoolManager(PoolManager):
    def __init__(self, sockets: _Sockets, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pool_classes_by_scheme = _pool_classes(sockets)


class _TrackingAdapter(HTTPAdapter):
    def __init__(self, sockets: _Sockets, **kwargs: Any) -> None:
        self._sockets = sockets  # before HTTPAdapter.__init__, which makes the pool manager
        super().__init__(**kwargs)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> PoolManager:
        manager: PoolManager = super().proxy_manager_for(proxy, **proxy_kwargs)
        # An HTTP(S) proxy's pools track their sockets too (a SOCKS manager has pools of its own).
        if not proxy.lower().startswith("socks"):
            manager.pool_classes_by_scheme = _pool_classes(self._sockets)
        return manager

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **kwargs: Any) -> None:
        super().init_poolmanager(connections, maxsize, block, **kwargs)
        self.poolmanager = _TrackingPoolManager(
            self._sockets, num_pools=connections, maxsize=maxsize, block=block, **kwargs
        )


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


class HttpClient:
    """HTTP for every worker thread of one source: pooled, retried, resumable, abortable.

    net: timeouts, retries and backoff, headers, TLS verification, pool size.
    cancel: set when the client is aborted (pass the owner's Event to share it); setting
    it stops calls at their next check, while `abort` also wakes reads blocked on a socket.
    on_retry: called as ``on_retry(error, attempt)`` for each failure about to be retried.
    Proxies and CA bundles named in the environment apply as requests applies them (read once
    per host); ~/.netrc is not read.
    Thread-safe: many workers share one client.
    """

    def __init__(
        self,
        net: NetworkOptions,
        *,
        cancel: threading.Event | None = None,
        on_retry: Callable[[BaseException, int], None] | None = None,
    ) -> None:
        self._policy = RetryPolicy.from_options(net)
        self._cancel = cancel if cancel is not None else threading.Event()
        self._on_retry = on_retry
        self._timeout = (net.connect_timeout, net.read_timeout)
        self._lock = threading.Lock()
        self._closed = False
        self._sockets = _Sockets()
        adapter = _TrackingAdapter(
            self._sockets,
            pool_connections=DEFAULT_POOL_HOSTS,
            pool_maxsize=net.workers + net.probe_workers + EXTRA_CONNECTIONS,
            max_retries=0,
        )
        session = _GuardedSession()
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.mount("file://", LocalFileAdapter())
        session.headers.update(net.headers)
        # The environment (proxies, CA bundle) is read once per host, not by requests on
        # every request, where scanning os.environ cost more CPU than the request itself.
        session.trust_env = False
        self._session = session
        self._verify = net.verify
        self._environments: dict[tuple[str, str], tuple[dict[str, str], bool | str]] = {}

    @property
    def cancelled(self) -> bool:
        """Whether the client was aborted (or its cancel Event set)."""
        return self._cancel.is_set()

    def open(
        self, url: str, headers: Mapping[str, str], params: Mapping[str, str] | None = None
    ) -> requests.Response:
        """GET `url`, streaming: the response once its headers arrived, redirects followed.

        `headers` are added to the configured ones. Use it as a context manager.
        Raises `Cancelled` once the client is aborted, `InvalidUrl` for a refused
        redirect, and what requests raises otherwise (see `retrying`).
        """
        if self._cancel.is_set():
            raise Cancelled("client closed")
        proxies, verify = self._environment(url)
        resp = self._session.get(
            url,
            headers=headers,
            params=params,
            stream=True,
            timeout=self._timeout,
            verify=verify,
            proxies=proxies,
        )
        _log_answer(url, headers, resp)
        try:
            _check_redirect(url, resp.url)
        except InvalidUrl:
            resp.close()
            raise
        return resp

    def _environment(self, url: str) -> tuple[dict[str, str], bool | str]:
        """Proxies (HTTP(S)_PROXY, NO_PROXY) and TLS verification for `url`'s host, as requests
        takes them from the environment (REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE when verify is True)."""
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc)
        with self._lock:
            found = self._environments.get(key)
        if found is None:
            verify = self._verify
            if verify is True:
                verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
            found = (requests.utils.get_environ_proxies(url), verify)
            with self._lock:
                self._environments[key] = found
        return found

    def retrying(self, url: str, attempt: Callable[[], _T]) -> tuple[_T, int]:
        """Run `attempt` under the client's retry policy: ``(its result, attempts made)``.

        A `RetryExhausted` says in words what the last attempt met, with the host
        (`retry.describe`); a timeout names the seconds configured.
        """
        return retrying(url, attempt, self._policy, self._cancel, self._on_retry, timeouts=self._timeout)

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
        result, _ = self.retrying(url, lambda: self._get_once(url, max_bytes, sent, params))
        return result

    def _get_once(
        self, url: str, max_bytes: int, headers: dict[str, str], params: Mapping[str, str] | None
    ) -> tuple[bytes, str]:
        with self.open(url, headers, params) as resp:
            check_status(resp, url, (200, 203), NetError, identity=False)
            length = content_length(resp)
            if length is not None and length > max_bytes:
                raise AssetsError(f"body of {length} bytes exceeds the limit of {max_bytes}", url=url)
            body = bytearray()
            for chunk in resp.iter_content(DEFAULT_CHUNK_BYTES):
                if self._cancel.is_set():
                    raise Cancelled("client closed")
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
        """Stream bytes ``[start, end)`` of a resource into `sink`, resuming cut bodies (`ranged.fetch`)."""
        return ranged.fetch(
            self,
            url,
            sink,
            start=start,
            end=end,
            base=base,
            max_bytes=max_bytes,
            chunk_size=chunk_size,
            on_sent=on_sent,
        )

    def probe(self, url: str, *, base: tuple[int, int] | None = None, tail: int = 0) -> tuple[int, bytes]:
        """A resource's size and its last `tail` bytes, without downloading it (`probes.probe`)."""
        return probes.probe(self, url, base=base, tail=tail)

    def probe_head(self, url: str, *, base: tuple[int, int] | None = None, head: int) -> tuple[int, bytes]:
        """A resource's size and its first `head` bytes (`probes.probe_head`)."""
        return probes.probe_head(self, url, base=base, head=head)

    def abort(self) -> None:
        """Cancel every call in flight, from any thread: blocked reads return at once. Idempotent.

        Sets the cancel Event and shuts down the socket of every connection the
        client opened; the interrupted calls raise `Cancelled`, as do later ones.
        """
        self._cancel.set()
        self._sockets.abort()

    def close(self) -> None:
        """`abort`, then release the connection pools. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.abort()
        self._session.close()


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
