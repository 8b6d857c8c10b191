"""Retrying a failing request: which failures to retry, and for how long.

`RetryPolicy` is a value object in the manner of urllib3's `Retry`: each
failure yields a new policy (`increment`), `backoff_s` is pure, and `sleep`
waits on the client's cancel event, so closing a source ends a backoff at once.
`retrying` runs an attempt under a policy: it sorts what requests, urllib3 and
http.client raise into fatal failures (raised at once) and transient ones
(connection errors, timeouts, retryable statuses, cut bodies: retried).
"""

from __future__ import annotations

import dataclasses
import email.utils
import logging
import random
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from http.client import HTTPException
from typing import TypeVar

import requests
from requests.exceptions import (
    InvalidHeader,
    InvalidSchema,
    InvalidURL,
    MissingSchema,
    RequestException,
    TooManyRedirects,
)
from urllib3.exceptions import HTTPError

from .errors import HlsError, InvalidUrl, NetError, RetryExhausted
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
        self, message: str, *, url: str, status: int | None = None, retry_after: float | None = None
    ) -> None:
        self.retry_after = retry_after
        super().__init__(message, url=url, status=status)


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
    `missing`, any other status `NetError`.
    """
    status = resp.status_code
    if status in ok:
        encoding = resp.headers.get("Content-Encoding", "identity").strip().lower()
        if identity and encoding not in ("", "identity"):
            raise NetError(f"Content-Encoding {encoding!r} on a byte-exact request", url=url, status=status)
        return
    if is_retryable_status(status):
        retry_after = parse_retry_after(resp.headers.get("Retry-After"))
        raise TransientError("server error", url=url, status=status, retry_after=retry_after)
    if status in (404, 410):
        raise missing("not found", url=url, status=status)
    raise NetError("unexpected HTTP status", url=url, status=status)


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
    ) -> RetryPolicy:
        """Count a failure of `url`: a new policy, or `RetryExhausted` from `error` when none is left."""
        attempts = self.attempts + 1
        if attempts > self.total:
            raise RetryExhausted(url, attempts, status=status) from error
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
) -> tuple[_T, int]:
    """Run `attempt` until it succeeds: ``(its result, attempts made)``.

    A bad URL raises `InvalidUrl`, an invalid header or too many redirects
    `NetError`, at once. Transient failures are retried per `policy` (each
    reported as ``on_retry(error, attempt)``), then end in `RetryExhausted`
    chained from the last one. Once `cancel` is set, a failure raises `Cancelled`.
    """
    while True:
        try:
            return attempt(), policy.attempts + 1
        except _FATAL_ERRORS as exc:  # noqa: PERF203 (a retry loop)
            kind = InvalidUrl if isinstance(exc, _BAD_URL_ERRORS) else NetError
            raise kind(f"request refused ({type(exc).__name__})", url=url) from exc
        except (TransientError, *_TRANSIENT_ERRORS) as exc:
            if cancel.is_set():
                raise Cancelled("client closed") from exc
            transient = exc if isinstance(exc, TransientError) else None
            policy = policy.increment(
                url,
                exc,
                status=transient.status if transient else None,
                retry_after=transient.retry_after if transient else None,
            )
            # Messages from requests quote the URL with its query string: log the type only.
            reason = exc if isinstance(exc, HlsError) else type(exc).__name__
            log.debug("retry %d of %d: %s", policy.attempts, policy.total, reason)
            if on_retry is not None:
                on_retry(exc, policy.attempts)
            policy.sleep(cancel)
        except Exception as exc:
            # Once aborted, whatever a torn-down connection raised means "cancelled".
            if cancel.is_set() and not isinstance(exc, (Cancelled, HlsError)):
                raise Cancelled("client closed") from exc
            raise
