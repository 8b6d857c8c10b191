"""The ranged, resumable download of one resource into a `Sink`.

`fetch` streams bytes ``[start, end)`` of a resource, or of an EXT-X-BYTERANGE
slice of it, into a sink that sees each byte once and in order: a body cut short
is resumed with a Range request from the first byte not yet delivered. A server
that ignores Range (a 200) has the bytes before the offset skipped. Bodies are
read with urllib3's public ``read1`` on ``resp.raw``, which returns bytes as they
arrive, so readers of a segment still downloading on a slow link see them early.
The HTTP client is reached through the small `Requester` protocol (a
`transport.HttpClient` is one).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol, TypeVar

import requests

from .errors import AssetsError, NetError, SegmentNotFound
from .retry import Cancelled, TransientError, check_status, host_of

#: Most bytes taken per read while streaming a body. A read returns what one socket read
#: brings (readers see bytes as they land); a large ask means fewer reads on a fast link.
DEFAULT_CHUNK_BYTES = 256 * 1024

_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)", re.IGNORECASE)
_T = TypeVar("_T")


@dataclass(frozen=True)
class FetchStats:
    """What one `fetch` took.

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
    """Where `fetch` delivers a resource."""

    def on_size(self, size: int) -> None:
        """The resource's total size, as soon as a response's headers tell it."""

    def on_data(self, offset: int, data: memoryview) -> None:
        """Contiguous body bytes at `offset` from the resource start; the view is of immutable bytes."""


class Requester(Protocol):
    """What a download needs of its HTTP client."""

    @property
    def cancelled(self) -> bool:
        """Whether the client was aborted: calls stop at their next check."""

    def open(
        self, url: str, headers: Mapping[str, str], params: Mapping[str, str] | None = None
    ) -> requests.Response:
        """GET `url` with `headers`, streaming: the response once its headers arrived."""

    def retrying(self, url: str, attempt: Callable[[], _T]) -> tuple[_T, int]:
        """Run `attempt` under the client's retry policy: ``(its result, attempts made)``."""


def parse_content_range(value: str | None) -> tuple[int | None, int | None, int | None] | None:
    """``(first, last, total)`` of a Content-Range header (None for a ``*``); None if malformed."""
    match = _CONTENT_RANGE.fullmatch(value.strip()) if value else None
    if match is None:
        return None
    first, last, total = (None if g in (None, "*") else int(g) for g in match.groups())
    return first, last, total


def content_length(resp: requests.Response) -> int | None:
    """The body length the headers promise; None if chunked, absent or malformed."""
    if "chunked" in resp.headers.get("Transfer-Encoding", "").lower():
        return None
    try:
        length = int(resp.headers.get("Content-Length", ""))
    except ValueError:
        return None
    return length if length >= 0 else None


def pump(
    client: Requester,
    resp: requests.Response,
    skip: int,
    want: int | None,
    chunk_size: int,
    emit: Callable[[memoryview], None],
) -> int:
    """Drop `skip` body bytes, pass the next `want` (None: all) to `emit`; return how many passed.

    Each read returns what the socket has, up to `chunk_size`: no wait for a
    full chunk. Raises `Cancelled` once the client is aborted.
    """
    got = 0
    while want is None or got < want:
        if client.cancelled:
            raise Cancelled("client closed")
        ask = chunk_size if want is None else min(chunk_size, skip + want - got)
        data = resp.raw.read1(ask, decode_content=False)
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
        first, last, total = parse_content_range(header) or (None, None, None)
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
            raise TransientError(
                f"{host_of(self.url)} sent range {header!r}, asked bytes {asked_first}-{asked_last}",
                url=self.url,
                status=206,
                cause="another range than asked",
            )
        return last - asked_first + 1

    def plan(self, resp: requests.Response) -> tuple[int, int | None]:
        """Body bytes to skip, then how many to deliver (None: up to the end of the body)."""
        if resp.status_code == 206:
            return 0, self.accept_range(resp.headers.get("Content-Range"))
        # A 200: the server sent the whole resource, whatever Range asked.
        length = content_length(resp)
        if not self.sliced and length is not None:
            self.learn_size(length)
        skip = self.base_offset + self.next
        if self.end is None:
            return skip, None
        stop = self.base_offset + self.end
        if length is not None and length < stop:
            raise AssetsError(f"resource of {length} bytes is shorter than its byte range", url=self.url)
        return skip, stop - skip

    def deliver(self, data: memoryview) -> None:
        if self.max_bytes is not None and self.next + len(data) > self.max_bytes:
            raise AssetsError(f"resource exceeds the limit of {self.max_bytes} bytes", url=self.url)
        self.sink.on_data(self.next, data)
        self.next += len(data)


def fetch(
    client: Requester,
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
    `AssetsError`; transient failures end in `RetryExhausted`; an abort in `Cancelled`.
    on_sent: called once, on this thread, just before the first request is sent.
    """
    if start < 0 or (end is not None and end < start) or chunk_size <= 0:
        raise ValueError(f"bad range [{start}, {end}) or chunk size {chunk_size}")
    offset = base[0] if base is not None else 0
    t = _Transfer(url, sink, start, end, offset, base is not None, max_bytes, on_sent)
    if base is not None:
        t.learn_size(base[1])
    if t.end is not None and t.next >= t.end:
        return FetchStats(0, 0.0, 0.0, 0)
    _, attempts = client.retrying(url, lambda: _fetch_once(client, t, chunk_size))
    return FetchStats(t.next - start, t.ttfb, t.transfer, attempts)


def _fetch_once(client: Requester, t: _Transfer, chunk_size: int) -> None:
    if t.end is not None and t.next >= t.end:
        return
    headers = {"Accept-Encoding": "identity"}
    wanted = t.range_header()
    if wanted is not None:
        headers["Range"] = wanted
    on_sent, t.on_sent = t.on_sent, None
    if on_sent is not None:
        on_sent()
    with client.open(t.url, headers) as resp:
        t.ttfb = resp.elapsed.total_seconds()
        if resp.status_code == 416 and t.sliced:
            raise AssetsError("byte range starts beyond the resource", url=t.url, status=416)
        if resp.status_code == 416 and t.size is None and t.end is None and t.next > 0:
            # Asked from byte N on, of a resource that may be N bytes long: a body
            # stored whole by an earlier run that did not record its size.
            _, _, total = parse_content_range(resp.headers.get("Content-Range")) or (None, None, None)
            if total == t.next:
                t.learn_size(total)
                return
        check_status(resp, t.url, (200, 206), SegmentNotFound)
        skip, want = t.plan(resp)
        began = time.monotonic()
        try:
            got = pump(client, resp, skip, want, chunk_size, t.deliver)
        finally:
            t.transfer += time.monotonic() - began
    if want is None:
        t.learn_size(t.next)
    elif got < want:
        total = t.size if t.size is not None else t.end
        cause = f"body cut short at {t.next} of {total} bytes"
        raise TransientError(
            f"{cause} from {host_of(t.url)}", url=t.url, status=resp.status_code, cause=cause
        )
