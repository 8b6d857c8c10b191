"""What the origin answers: status, headers and body for a path, its Range header and the
faults it drew, with no I/O but reading the file."""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass
from pathlib import Path

from .faults import Fault

CONTENT_TYPES = {
    ".m3u8": "application/vnd.apple.mpegurl",
    ".ts": "video/mp2t",
    ".m4s": "video/mp4",
    ".mp4": "video/mp4",
    ".mp3": "audio/mpeg",
    ".key": "application/octet-stream",
}
DEFAULT_CONTENT_TYPE = "application/octet-stream"

_RANGE_RE = re.compile(r"bytes=(\d*)-(\d*)")


@dataclass(frozen=True)
class Response:
    """A planned answer; Content-Length is left to the sender."""

    status: int
    headers: dict[str, str]
    body: bytes


class _Unsatisfiable(Exception):
    """A Range header that no byte of the resource satisfies."""


def plan(
    root: Path, path: str, range_header: str | None, action: Fault | None, modifiers: dict[str, Fault]
) -> Response:
    """Decide status, headers and body of a response (no I/O but reading the file)."""
    if action is not None and action.kind == "fail":
        headers = {} if action.retry_after is None else {"Retry-After": f"{action.retry_after:g}"}
        return Response(action.status, headers, f"injected failure {action.status}\n".encode())
    if action is not None and action.kind == "redirect":
        return Response(action.status, {"Location": action.location}, b"")
    file = _resolve(root, path)
    if file is None:
        return Response(404, {"Content-Type": "text/plain"}, b"not found\n")
    body = file.read_bytes()
    headers = {"Content-Type": CONTENT_TYPES.get(file.suffix, DEFAULT_CONTENT_TYPE), "Accept-Ranges": "bytes"}
    if "gzip" in modifiers:
        headers["Content-Encoding"] = "gzip"
        return Response(200, headers, gzip.compress(body, mtime=0))
    if range_header is None or "ignore_range" in modifiers:
        return Response(200, headers, body)
    try:
        span = _parse_range(range_header, len(body))
    except _Unsatisfiable:
        return Response(416, {"Content-Range": f"bytes */{len(body)}"}, b"")
    if span is None:
        return Response(200, headers, body)
    first, last = span
    headers["Content-Range"] = f"bytes {first}-{last}/{len(body)}"
    return Response(206, headers, body[first : last + 1])


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
