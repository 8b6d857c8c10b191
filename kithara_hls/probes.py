"""Size probes: a resource's size without downloading it, and its first or last bytes.

A probe asks ``Range: bytes=0-0``, the last `tail` bytes (whose PKCS#7
padding gives an AES-128 segment's plaintext size) or the first `head` bytes
(whose ID3 header tells how much of a packed audio segment the stream skips),
and reads the total from Content-Range. A server that ignores Range gives the size in Content-Length;
the tail is then streamed through a bounded buffer.
"""

from __future__ import annotations

from .errors import AssetsError, NetError, SegmentNotFound
from .ranged import DEFAULT_CHUNK_BYTES, Requester, content_length, parse_content_range, pump
from .retry import TransientError, check_status, host_of


def probe(
    client: Requester, url: str, *, base: tuple[int, int] | None = None, tail: int = 0
) -> tuple[int, bytes]:
    """``(size, tail_bytes)`` of `url`: its size, and its last `tail` bytes.

    base: ``(offset, length)`` of an EXT-X-BYTERANGE; the resource is that slice
    of `url`, its length the size. Transient failures are retried per the
    client's policy; 404/410 raise `SegmentNotFound`.
    """
    if tail < 0:
        raise ValueError("tail must be 0 or more")
    if base is not None and min(tail, base[1]) == 0:
        return base[1], b""
    result, _ = client.retrying(url, lambda: _probe_once(client, url, base, tail))
    return result


def _probe_once(client: Requester, url: str, base: tuple[int, int] | None, tail: int) -> tuple[int, bytes]:
    size: int | None
    want: int | None
    if base is not None:
        tail = min(tail, base[1])
        wanted = f"bytes={base[0] + base[1] - tail}-{base[0] + base[1] - 1}"
    else:
        wanted = f"bytes=-{tail}" if tail else "bytes=0-0"
    with client.open(url, {"Accept-Encoding": "identity", "Range": wanted}) as resp:
        content_range = resp.headers.get("Content-Range")
        if resp.status_code == 416 and base is None and parse_content_range(content_range) == (None, None, 0):
            return 0, b""
        if resp.status_code == 416 and base is not None:
            raise AssetsError("byte range starts beyond the resource", url=url, status=416)
        check_status(resp, url, (200, 206), SegmentNotFound)
        skip = 0
        if resp.status_code == 206:
            size, want = _probe_range(content_range, url, base, tail)
        elif base is not None:
            size, skip, want = base[1], base[0], base[1]
        else:
            size = want = content_length(resp)
            if size is not None and tail == 0:
                return size, b""
        kept = bytearray()  # the last `tail` bytes so far: memory stays under tail + one chunk

        def keep(data: memoryview) -> None:
            kept.extend(data)
            del kept[: max(0, len(kept) - tail)]

        got = pump(client, resp, skip, want, DEFAULT_CHUNK_BYTES, keep)
    if want is not None and got < want:
        cause = f"body cut short at {got} of {want} bytes"
        raise TransientError(f"{cause} from {host_of(url)}", url=url, status=resp.status_code, cause=cause)
    return (got if size is None else size), bytes(kept)


def _probe_range(header: str | None, url: str, base: tuple[int, int] | None, tail: int) -> tuple[int, int]:
    """``(size, body length)`` from a probe's 206, checked against the range asked."""
    first, last, total = parse_content_range(header) or (None, None, None)
    if base is not None:
        size = base[1]
        expected = (base[0] + size - tail, base[0] + size - 1)
        if total is not None and expected[1] >= total:
            raise AssetsError(
                f"byte range ends at {expected[1]}, beyond the resource ({total} bytes)", url=url
            )
    elif total is None:
        raise NetError(
            f"{host_of(url)} does not tell the resource size (Content-Range {header!r})",
            url=url,
            status=206,
            cause="no size in Content-Range",
        )
    else:
        size = total
        expected = (max(0, total - tail), total - 1) if tail else (0, 0)
    if (first, last) != expected:
        raise TransientError(
            f"{host_of(url)} sent range {header!r}, asked bytes {expected[0]}-{expected[1]}",
            url=url,
            status=206,
            cause="another range than asked",
        )
    return size, expected[1] - expected[0] + 1


def probe_head(
    client: Requester, url: str, *, base: tuple[int, int] | None = None, head: int
) -> tuple[int, bytes]:
    """``(size, head_bytes)`` of `url`: its size and its first `head` bytes (fewer if it is shorter).

    What a size probe asks of a part that may begin with an ID3 tag (packed
    audio): the tag's header tells how much of the part the stream skips.
    base: as in `probe`.
    """
    if head <= 0:
        raise ValueError("head must be 1 or more")
    if base is not None and base[1] == 0:
        return 0, b""
    result, _ = client.retrying(url, lambda: _head_once(client, url, base, head))
    return result


def _head_once(client: Requester, url: str, base: tuple[int, int] | None, head: int) -> tuple[int, bytes]:
    first = 0 if base is None else base[0]
    count = head if base is None else min(head, base[1])
    with client.open(
        url, {"Accept-Encoding": "identity", "Range": f"bytes={first}-{first + count - 1}"}
    ) as resp:
        content_range = resp.headers.get("Content-Range")
        if resp.status_code == 416 and base is None and parse_content_range(content_range) == (None, None, 0):
            return 0, b""
        if resp.status_code == 416 and base is not None:
            raise AssetsError("byte range starts beyond the resource", url=url, status=416)
        check_status(resp, url, (200, 206), SegmentNotFound)
        size: int | None
        skip = 0
        if resp.status_code == 206:
            lo, hi, total = parse_content_range(content_range) or (None, None, None)
            if base is not None:
                size = base[1]
            elif total is None:
                raise NetError(
                    f"{host_of(url)} does not tell the resource size (Content-Range {content_range!r})",
                    url=url,
                    status=206,
                    cause="no size in Content-Range",
                )
            else:
                size = total
                count = min(count, total)
            if (lo, hi) != (first, first + count - 1):
                raise TransientError(
                    f"{host_of(url)} sent range {content_range!r}, asked bytes {first}-{first + count - 1}",
                    url=url,
                    status=206,
                    cause="another range than asked",
                )
            want: int | None = count
        elif base is not None:
            size, skip, want = base[1], base[0], count
        else:
            size = content_length(resp)
            want = None if size is None else min(count, size)
        kept = bytearray()

        def keep(data: memoryview) -> None:
            if len(kept) < count:
                kept.extend(data[: count - len(kept)])

        got = pump(client, resp, skip, want, DEFAULT_CHUNK_BYTES, keep)
    if want is not None and got < want:
        cause = f"body cut short at {got} of {want} bytes"
        raise TransientError(f"{cause} from {host_of(url)}", url=url, status=resp.status_code, cause=cause)
    return (got if size is None else size), bytes(kept)
