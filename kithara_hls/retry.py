"""Retrying a failing request: which failures to retry, and for how long.

`RetryPolicy` is a value object in the manner of urllib3's `Retry`: each
failure yields a new policy (`increment`), `backoff_s` is pure, and `sleep`
waits on the client's cancel event, so closing a source ends a backoff at once.
`retrying` runs an attempt under a policy: it sorts what requests, urllib3 and
http.client raise into fatal failures (raised at once) and transient ones
(connection errors, timeouts, retryable statuses, cut bodies: retried).
`describe` names a failure in words, with the host it happened at ("connection
refused by 127.0.0.1:9"), from the exception chain's public attributes.
"""

from __future__ import annotations

import dataclasses
import email.utils
import logging
import random
import re
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from http import HTTPStatus
from http.client import HTTPException, RemoteDisconnected
from http.client import IncompleteRead as ChunkCutShort
from typing import TypeVar
from urllib.parse import urlsplit

import requests
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
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    IncompleteRead,
    NameResolutionError,
    NewConnectionError,
    ReadTimeoutError,
)
from urllib3.exceptions import SSLError as Urllib3SSLError

from .errors import HlsError, InvalidUrl, NetError, RetryExhausted, redact_url
from .options import DEFAULT_BACKOFF_MAX_S, DEFAULT_BACKOFF_S, DEFAULT_RETRIES, NetworkOptions

log = logging.getLogger(__name__)

_DELAY_SECONDS = re.compile(r"\d+(?:\.\d+)?")
_T = TypeVar("_T")

_BAD_URL_ERRORS = (InvalidURL, InvalidSchema, MissingSchema)
_FATAL_ERRORS = (*_BAD_URL_ERRORS, InvalidHeader, TooManyRedirects)
# Not OSError as a whole: that would take in every HlsError, and a sink's own I/O errors.
# urllib3's and http.client's own errors arrive as they are from reads of `resp.raw`.
_TRANSIENT_ERRORS = (RequestException, HTTPError, HTTPException, ConnectionError, TimeoutError)


class Cancelled(Exception):
    """The client was aborted while a call was in flight (an internal signal, not an `HlsError`)."""


class TransientError(NetError):
    """An attempt failed in a way worth retrying: a retryable status, a cut or wrong body."""

    def __init__(
        self,
        message: str,
        *,
        url: str,
        status: int | None = None,
        retry_after: float | None = None,
        cause: str | None = None,
    ) -> None:
        self.retry_after = retry_after
        super().__init__(message, url=url, status=status, cause=cause)


def is_retryable_status(status: int) -> bool:
    """Whether an HTTP status is worth retrying: 408, 429 and 5xx."""
    return status in (408, 429) or 500 <= status <= 599


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delay-seconds or HTTP-date); None if absent or bad."""
    if value is None:
        return None
    value = value.strip()
    if _DELAY_SECONDS.fullmatch(value):
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def check_status(
    resp: requests.Response,
    url: str,
    ok: tuple[int, ...],
    missing: type[NetError],
    *,
    identity: bool = True,
) -> None:
    """Raise unless `resp` has a status in `ok` (and, if `identity`, no Content-Encoding).

    A retryable status raises `TransientError` (with its Retry-After), 404/410
    `missing`, any other status `NetError`; each names the status, its reason
    and the host that answered ("HTTP 404 Not Found from cdn.example:443").
    """
    status = resp.status_code
    if status in ok:
        encoding = resp.headers.get("Content-Encoding", "identity").strip().lower()
        if identity and encoding not in ("", "identity"):
            cause = f"Content-Encoding {encoding!r} on a byte-exact request"
            raise NetError(f"{cause} from {host_of(resp.url or url)}", url=url, status=status, cause=cause)
        return
    phrase = status_phrase(status)
    # Named only for a failure: parsing the URL on every success costs each request.
    message = f"{phrase} from {host_of(resp.url or url)}"
    if is_retryable_status(status):
        retry_after = parse_retry_after(resp.headers.get("Retry-After"))
        raise TransientError(message, url=url, status=status, retry_after=retry_after, cause=phrase)
    kind = missing if status in (404, 410) else NetError
    raise kind(message, url=url, status=status, cause=phrase)


def status_phrase(status: int) -> str:
    """``HTTP 503 Service Unavailable``: the status with its reason phrase, where it has one."""
    try:
        return f"HTTP {status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP {status}"


def host_of(url: str) -> str:
    """The host and port of `url` (``127.0.0.1:9``), without user info; the URL itself if it has none."""
    parts = urlsplit(url)
    host = parts.hostname
    if not host:
        return redact_url(url)
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    return host if port is None else f"{host}:{port}"


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry a failing request; each failure yields a new policy.

    total: retries allowed after the first attempt. backoff: the first delay in
    seconds, doubled on each retry, with full jitter. backoff_max: the ceiling of
    one delay, and of an honoured Retry-After. attempts: failures so far.
    retry_after: the delay the last response asked for (capped at backoff_max).
    """

    total: int = DEFAULT_RETRIES
    backoff: float = DEFAULT_BACKOFF_S
    backoff_max: float = DEFAULT_BACKOFF_MAX_S
    attempts: int = 0
    retry_after: float | None = None

    @classmethod
    def from_options(cls, net: NetworkOptions) -> RetryPolicy:
        """The policy that `net` describes."""
        return cls(total=net.retries, backoff=net.backoff, backoff_max=net.backoff_max)

    @classmethod
    def from_value(cls, value: int | RetryPolicy | None) -> RetryPolicy:
        """Coerce a retry count, a policy, or None (the defaults) to a policy."""
        if value is None:
            return cls()
        if isinstance(value, RetryPolicy):
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"retries must be an int or a RetryPolicy, not {type(value).__name__}")
        if value < 0:
            raise ValueError("retries must be 0 or more")
        return cls(total=value)

    def increment(
        self,
        url: str,
        error: BaseException | None = None,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        cause: str | None = None,
        detail: str | None = None,
    ) -> RetryPolicy:
        """Count a failure of `url`: a new policy, or `RetryExhausted` from `error` when none is left.

        cause, detail: the failure in words, without and with its host (see `describe`).
        """
        attempts = self.attempts + 1
        if attempts > self.total:
            raise RetryExhausted(url, attempts, status=status, cause=cause, detail=detail) from error
        if retry_after is not None:
            retry_after = min(max(retry_after, 0.0), self.backoff_max)
        return dataclasses.replace(self, attempts=attempts, retry_after=retry_after)

    def backoff_s(self, rng: random.Random | None = None) -> float:
        """The delay before the next attempt: Retry-After if given, else full-jitter exponential."""
        if self.retry_after is not None:
            return min(self.retry_after, self.backoff_max)
        if self.attempts <= 0:
            return 0.0
        ceiling = min(self.backoff_max, self.backoff * 2.0 ** min(self.attempts - 1, 64))
        return (rng.uniform if rng is not None else random.uniform)(0.0, ceiling)

    def sleep(self, cancel: threading.Event) -> None:
        """Wait `backoff_s()` seconds; raise `Cancelled` if `cancel` is or becomes set."""
        if cancel.wait(self.backoff_s()) or cancel.is_set():
            raise Cancelled("client closed")


def retrying(
    url: str,
    attempt: Callable[[], _T],
    policy: RetryPolicy,
    cancel: threading.Event,
    on_retry: Callable[[BaseException, int], None] | None = None,
    *,
    timeouts: tuple[float, float] | None = None,
) -> tuple[_T, int]:
    """Run `attempt` until it succeeds: ``(its result, attempts made)``.

    A bad URL raises `InvalidUrl`, an invalid header or too many redirects
    `NetError`, at once. Transient failures are retried per `policy` (each
    reported as ``on_retry(error, attempt)``), then end in `RetryExhausted`
    chained from the last one, its `cause` told by `describe` (`timeouts`, the
    ``(connect, read)`` seconds the requests had, go into a timeout's words).
    Once `cancel` is set, a failure raises `Cancelled`.
    """
    while True:
        try:
            return attempt(), policy.attempts + 1
        except _FATAL_ERRORS as exc:  # noqa: PERF203 (a retry loop)
            raise _refused(url, exc) from exc
        except (TransientError, *_TRANSIENT_ERRORS) as exc:
            if cancel.is_set():
                raise Cancelled("client closed") from exc
            transient = exc if isinstance(exc, TransientError) else None
            cause, detail = describe(exc, url, timeouts)
            policy = policy.increment(
                url,
                exc,
                status=transient.status if transient else None,
                retry_after=transient.retry_after if transient else None,
                cause=cause,
                detail=detail,
            )
            # Only the host is named: messages from requests quote the URL with its query string.
            log.debug("retry %d of %d: %s", policy.attempts, policy.total, detail)
            if on_retry is not None:
                on_retry(exc, policy.attempts)
            policy.sleep(cancel)
        except Exception as exc:
            # Once aborted, whatever a torn-down connection raised means "cancelled".
            if cancel.is_set() and not isinstance(exc, (Cancelled, HlsError)):
                raise Cancelled("client closed") from exc
            raise


def _refused(url: str, exc: Exception) -> HlsError:
    """The error for a request refused before it went out, or for a redirect loop."""
    scheme = urlsplit(url).scheme.lower()
    if isinstance(exc, MissingSchema):
        return InvalidUrl("not a URL: it needs http:// or https://", url=url)
    if isinstance(exc, InvalidSchema) and scheme not in ("http", "https"):
        return InvalidUrl(f"unsupported URL scheme {scheme!r}: http and https only", url=url)
    if isinstance(exc, InvalidURL) and not urlsplit(url).hostname:
        return InvalidUrl("malformed URL: no host", url=url)
    if isinstance(exc, _BAD_URL_ERRORS):
        # A proxy named in the environment, or an unusual URL requests cannot send.
        return InvalidUrl(f"malformed URL or proxy ({type(exc).__name__})", url=url)
    host = host_of(_request_url(_chain(exc)) or url)
    if isinstance(exc, TooManyRedirects):
        return NetError(f"too many redirects from {host}", url=url, cause="too many redirects")
    return NetError(f"invalid request header for {host}", url=url, cause="invalid request header")


#: Links followed when walking an exception chain: bounds the walk of a pathological chain.
_MAX_CHAIN = 32
#: getaddrinfo errors that mean the name does not exist (rather than a failed lookup).
_NAME_NOT_FOUND = frozenset({socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)})
_Words = tuple[str, str]


def describe(error: BaseException, url: str, timeouts: tuple[float, float] | None = None) -> _Words:
    """``(cause, detail)``: what `error` was, in words, then the same naming its host.

    For example ``("connection refused", "connection refused by 127.0.0.1:9")``,
    ``("DNS name not found", "DNS name not found: cdn.example")``, ``("read timed
    out after 30 s", ...)``, ``("TLS failure: self-signed certificate", ...)``,
    ``("HTTP 503 Service Unavailable", ...)``. The chain is walked through
    ``__cause__``, ``__context__``, urllib3's ``reason`` and the exceptions an
    error carries as arguments. `timeouts`: the ``(connect, read)`` seconds the
    request had. The host is the one of the request that failed (after
    redirects), else `url`'s; user info and query strings never appear.
    """
    if isinstance(error, NetError) and error.cause:
        return error.cause, error.message
    if isinstance(error, HlsError):
        return error.message, error.message
    chain = _chain(error)
    target = _request_url(chain) or url
    host = host_of(target)
    found = _connect_failure(chain, target, host) or _transfer_failure(chain, host, timeouts)
    return found or _other_failure(chain, host)


def _chain(error: BaseException) -> list[BaseException]:
    found: list[BaseException] = []
    todo = [error]
    seen: set[int] = set()
    while todo and len(found) < _MAX_CHAIN:
        exc = todo.pop(0)
        if id(exc) in seen:
            continue
        seen.add(id(exc))
        found.append(exc)
        links = (exc.__cause__, exc.__context__, getattr(exc, "reason", None), *exc.args)
        todo.extend(link for link in links if isinstance(link, BaseException))
    return found


def _first(chain: list[BaseException], kinds: type | tuple[type, ...]) -> BaseException | None:
    return next((exc for exc in chain if isinstance(exc, kinds)), None)


def _request_url(chain: list[BaseException]) -> str | None:
    for exc in chain:
        request = exc.request if isinstance(exc, RequestException) else None
        if request is not None and request.url:
            return str(request.url)
    return None


def _connect_failure(chain: list[BaseException], target: str, host: str) -> _Words | None:
    """A failure to reach the server: name lookup, refused connection, TLS handshake."""
    gai = _first(chain, socket.gaierror)
    if gai is not None or _first(chain, NameResolutionError) is not None:
        name = urlsplit(target).hostname or host
        if not isinstance(gai, socket.gaierror) or gai.errno in _NAME_NOT_FOUND:
            return "DNS name not found", f"DNS name not found: {name}"
        reason = _sentence(gai.strerror) or "no answer"
        return f"DNS lookup failed: {reason}", f"DNS lookup of {name} failed: {reason}"
    if _first(chain, ConnectionRefusedError) is not None:
        return "connection refused", f"connection refused by {host}"
    tls = _tls_reason(chain)
    if tls is not None:
        return f"TLS failure: {tls}", f"TLS failure with {host}: {tls}"
    return None


def _tls_reason(chain: list[BaseException]) -> str | None:
    for exc in chain:
        if isinstance(exc, ssl.SSLCertVerificationError):
            return _sentence(exc.verify_message) or "certificate not trusted"
    for exc in chain:
        if isinstance(exc, ssl.SSLError):
            return _sentence(exc.reason) or _sentence(exc.strerror) or type(exc).__name__
    if _first(chain, (Urllib3SSLError, requests.exceptions.SSLError)) is not None:
        return "handshake failed"
    return None


def _transfer_failure(
    chain: list[BaseException], host: str, timeouts: tuple[float, float] | None
) -> _Words | None:
    """A failure once connected (or while connecting, for a timeout): silence, reset, cut body."""
    connect_timeout = _first(chain, ConnectTimeout) or next(
        (e for e in chain if isinstance(e, ConnectTimeoutError) and not isinstance(e, NewConnectionError)),
        None,
    )
    if connect_timeout is not None:
        return _timed_out("connect", f"connecting to {host}", timeouts[0] if timeouts else None)
    if _first(chain, (ReadTimeout, ReadTimeoutError, TimeoutError)) is not None:
        return _timed_out("read", f"reading from {host}", timeouts[1] if timeouts else None)
    if _first(chain, RemoteDisconnected) is not None:
        return "connection closed before a response", f"connection closed by {host} before a response"
    if _first(chain, (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)) is not None:
        return "connection reset", f"connection reset by {host}"
    cut = _first(chain, (IncompleteRead, ChunkCutShort))
    if cut is not None:
        cause = "body cut short"
        partial, expected = getattr(cut, "partial", None), getattr(cut, "expected", None)
        if isinstance(cut, IncompleteRead) and isinstance(partial, int) and isinstance(expected, int):
            # urllib3 counts bytes: read so far, and still expected.
            cause = f"body cut short at {partial} of {partial + expected} bytes"
        return cause, f"{cause} from {host}"
    return None


def _timed_out(kind: str, doing: str, seconds: float | None) -> _Words:
    after = "" if seconds is None else f" after {seconds:g} s"
    return f"{kind} timed out{after}", f"{doing} timed out{after}"


def _other_failure(chain: list[BaseException], host: str) -> _Words:
    for exc in chain:
        if isinstance(exc, OSError) and not isinstance(exc, HlsError):
            reason = _sentence(exc.strerror)
            if reason:
                return reason, f"{reason}: {host}"
    name = type(chain[-1]).__name__
    return f"request failed ({name})", f"request to {host} failed ({name})"


def _sentence(text: str | None) -> str:
    """`text` as words inside a sentence: ``WRONG_VERSION_NUMBER`` and ``Network is unreachable.``
    become ``wrong version number`` and ``network is unreachable``."""
    text = (text or "").strip().rstrip(".")
    if "_" in text and text.replace("_", "").isupper():
        return text.replace("_", " ").lower()
    if text[:1].isupper() and text[1:2].islower():
        return text[0].lower() + text[1:]
    return text
