"""Retrying a failing request: which failures to retry, and for how long.

`RetryPolicy` is a value object in the manner of urllib3's `Retry`: each
failure yields a new policy (`increment`), `backoff_s` is pure, and `sleep`
waits on the client's cancel event, so closing a source ends a backoff at once.
"""

from __future__ import annotations

import dataclasses
import email.utils
import random
import re
import threading
from dataclasses import dataclass
from datetime import datetime, timezone

from .errors import RetryExhausted
from .options import DEFAULT_BACKOFF_MAX_S, DEFAULT_BACKOFF_S, DEFAULT_RETRIES, NetworkOptions

_DELAY_SECONDS = re.compile(r"\d+(?:\.\d+)?")


class Cancelled(Exception):
    """The client was aborted while a call was in flight (an internal signal, not an `HlsError`)."""


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
