"""Playlists on disk: a path made a ``file://`` URL, and a requests adapter that serves such URLs.

A playlist the user names by path (or by ``file://`` URL) is read through the
same client, ranged download, probes and cache as one over HTTP: `to_url` turns
the path into an absolute ``file://`` URL, and `LocalFileAdapter`, mounted on the
client's Session, answers a GET for it as an origin would: 200 with
Content-Length, or 206 with Content-Range for a Range header (416 past the end),
404 for a missing file. Which ``file:`` URLs are ever asked for is decided
elsewhere: `playlist_checks` lets only a playlist on disk name them, and the
transport's redirect guard never follows a redirect to one.
"""

from __future__ import annotations

import errno
import io
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, Literal
from urllib.parse import urlsplit
from urllib.request import url2pathname

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict
from urllib3.response import HTTPResponse

#: URL schemes `to_url` passes through as URLs; any other ``scheme://`` is left for the URL checks to refuse.
URL_SCHEMES = ("http", "https", "file")

_RANGE = re.compile(r"bytes\s*=\s*(\d*)\s*-\s*(\d*)", re.IGNORECASE)
_REASONS = {200: "OK", 206: "Partial Content", 404: "Not Found", 405: "Method Not Allowed"}


def to_url(target: str | os.PathLike[str]) -> str:
    """`target` as a URL: an http(s) or ``file:`` URL as it is, a path as an absolute ``file://`` URL.

    A path is made absolute against the working directory (symbolic links are
    kept, so a playlist's relative URIs resolve beside the name the user gave)
    and percent-quoted. A string with another ``scheme://`` is returned as it is,
    for the URL checks to refuse.
    """
    if not isinstance(target, str):
        return _path_url(os.fspath(target))
    scheme, colon, _ = target.partition(":")
    if colon and (scheme.lower() in URL_SCHEMES or "://" in target):
        return target
    return _path_url(target)


def _path_url(path: str | bytes) -> str:
    return Path(os.path.abspath(os.fsdecode(path))).as_uri()


def url_path(url: str) -> str:
    """The local path a ``file://`` URL names (its query and fragment ignored)."""
    return url2pathname(urlsplit(url).path)


class LocalFileAdapter(BaseAdapter):
    """A requests transport adapter that answers GET and HEAD for ``file://`` URLs from the disk.

    The body is the open file, read through urllib3's `HTTPResponse` on
    ``resp.raw`` as a socket's body would be; closing the response (or reading
    it to the end) closes the file. A missing file is a 404, an unreadable one
    a 403, one on another host a 400; a Range header the adapter cannot parse
    is ignored, as servers do.
    Thread-safe: it holds no state.
    """

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """Answer `request` from the file its URL names (the other arguments do not apply)."""
        url = request.url or ""
        method = (request.method or "GET").upper()
        if method not in ("GET", "HEAD"):
            return _response(request, _empty(405, {"Allow": "GET, HEAD"}, method))
        if urlsplit(url).netloc.lower() not in ("", "localhost"):
            return _response(request, _empty(400, {}, method, reason="Not a file on this machine"))
        try:
            file = open(url_path(url), "rb", buffering=0)  # noqa: SIM115 - the response owns it
        except OSError as exc:
            return _response(request, _failure(exc, method))
        try:
            wanted = request.headers.get("Range")
            raw = _answer(file, method, wanted if isinstance(wanted, str) else None)
        except BaseException:
            file.close()
            raise
        return _response(request, raw)

    def close(self) -> None:
        """Nothing to release: each response owns its file."""


def _answer(file: io.FileIO, method: str, range_header: str | None) -> HTTPResponse:
    """The response for `file`: its whole body, or the range asked for."""
    size = os.fstat(file.fileno()).st_size
    headers = {"Accept-Ranges": "bytes"}
    status, first, length = 200, 0, size
    wanted = _parse_range(range_header, size)
    if wanted == "unsatisfiable":
        file.close()
        return _empty(416, {**headers, "Content-Range": f"bytes */{size}"}, method)
    if wanted is not None:
        first, last = wanted
        status, length = 206, last - first + 1
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    headers["Content-Length"] = str(length)
    if method == "HEAD" or length == 0:
        file.close()
        return _empty(status, headers, method)
    file.seek(first)
    return _raw(status, headers, io.BufferedReader(_Slice(file, length)), method)


def _parse_range(header: str | None, size: int) -> tuple[int, int] | Literal["unsatisfiable"] | None:
    """``(first, last)`` of a single byte range; "unsatisfiable"; None to send the whole body."""
    match = _RANGE.fullmatch(header.strip()) if header else None
    if match is None or not (match[1] or match[2]):
        return None
    if not match[1]:  # a suffix: the last N bytes
        suffix = int(match[2])
        if suffix == 0 or size == 0:
            return "unsatisfiable"
        return max(0, size - suffix), size - 1
    first = int(match[1])
    last = int(match[2]) if match[2] else None
    if last is not None and last < first:
        return None  # invalid: ignored, as RFC 9110 asks
    if first >= size:
        return "unsatisfiable"
    return first, size - 1 if last is None else min(last, size - 1)


def _failure(exc: OSError, method: str) -> HTTPResponse:
    if isinstance(exc, PermissionError):
        return _empty(403, {}, method, reason="Permission denied")
    missing = isinstance(exc, (FileNotFoundError, NotADirectoryError, IsADirectoryError))
    if missing or exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.EISDIR):
        return _empty(404, {}, method, reason="No such file")
    return _empty(500, {}, method, reason=exc.strerror or type(exc).__name__)


def _empty(status: int, headers: dict[str, str], method: str, *, reason: str | None = None) -> HTTPResponse:
    """A response without a body (the Content-Length in `headers` is kept, for HEAD)."""
    return _raw(status, {"Content-Length": "0", **headers}, io.BytesIO(), method, reason)


def _raw(
    status: int, headers: dict[str, str], body: IO[bytes], method: str, reason: str | None = None
) -> HTTPResponse:
    return HTTPResponse(
        body=body,
        headers=headers,
        status=status,
        reason=reason or _REASONS.get(status),
        preload_content=False,
        decode_content=False,
        request_method=method,
    )


def _response(request: requests.PreparedRequest, raw: HTTPResponse) -> requests.Response:
    """A `requests.Response` around `raw`, as requests' own HTTP adapter builds one."""
    resp = requests.Response()
    resp.status_code = raw.status
    resp.reason = raw.reason or ""
    resp.headers = CaseInsensitiveDict(raw.headers)
    resp.raw = raw
    resp.url = request.url or ""
    resp.request = request
    resp.encoding = requests.utils.get_encoding_from_headers(resp.headers)
    return resp


class _Slice(io.RawIOBase):
    """`length` bytes of an open file from its current position; closing it closes the file."""

    def __init__(self, file: io.FileIO, length: int) -> None:
        super().__init__()
        self._file = file
        self._left = length

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        out = memoryview(buffer).cast("B")[: self._left]
        if not out:
            return 0
        n = self._file.readinto(out) or 0
        self._left -= n
        return n

    def close(self) -> None:
        try:
            self._file.close()
        finally:
            super().close()
