"""The rules a playlist's text and values must meet.

`playlist` reads playlists through m3u8 and holds what it reads to these rules:
a body starts with ``#EXTM3U``; URIs are http(s) with a host and never step down
from https to http; durations, byte ranges and the media sequence stay within
limits; an IV is at most 32 hex digits; a tag m3u8 would choke on is refused
first, with its line. A failure is a `PlaylistParseError` (with the line where
it is known) or an `InvalidUrl`.

Local files: a playlist on disk that the user named (a path or a ``file://``
URL) may name files on disk, relative or absolute, as well as http(s) URLs: the
user chose that trust. A playlist fetched over the network never names a local
file: its URIs resolve against its http(s) URL and must stay http(s).
"""

from __future__ import annotations

import base64
import binascii
import functools
import math
import re
import uuid
from urllib.parse import SplitResult, urljoin, urlsplit, urlunsplit

from kithara_hls.errors import InvalidUrl, PlaylistParseError

#: Longest EXTINF (and EXT-X-TARGETDURATION) accepted, in seconds.
MAX_SEGMENT_DURATION_S = 24 * 3600.0
#: Largest length, and end, of a BYTERANGE.
MAX_BYTERANGE_BYTES = 2**40  # 1 TiB
#: Largest EXT-X-MEDIA-SEQUENCE (a decimal-integer of RFC 8216).
MAX_MEDIA_SEQUENCE = 2**64 - 1

# KEYFORMATs (lower-cased) and PSSH system IDs of the DRM systems met in HLS.
_DRM_SYSTEMS = {
    "com.apple.streamingkeydelivery": "FairPlay",
    "com.microsoft.playready": "PlayReady",
    "org.w3.clearkey": "ClearKey",
    "urn:uuid:edef8ba9-79d6-4ace-a3c8-27dcd51d21ed": "Widevine",
    "urn:uuid:9a04f079-9840-4286-ab92-e65be0885f95": "PlayReady",
    "urn:uuid:94ce86fb-07ff-4f43-adb8-93d2fa968ca2": "FairPlay",
    "urn:uuid:1077efec-c0b2-4d02-ace3-3c1e52e2fb4b": "ClearKey",
    "urn:uuid:e2719d58-a985-b3c9-781a-b030af78d30e": "ClearKey",
}
_BOM = "\ufeff"
_HEADER = "#EXTM3U"
_RANGE = re.compile(r"(\d{1,19})(?:@(\d{1,19}))?")
_IV = re.compile(r"0[xX]([0-9a-fA-F]{1,32})")
_DECIMAL = re.compile(r"\d{1,20}")
_ATTRIBUTE = re.compile(r'([^=,"]+)=("[^"]*"|[^,"]*)')
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# A relative path of plain names (no scheme, query, escapes, or "." and ".." steps): the
# common segment URI, which resolves to the playlist's folder plus the name.
_PLAIN_PATH = re.compile(r"[A-Za-z0-9_~-][A-Za-z0-9._~-]*(?:/[A-Za-z0-9_~-][A-Za-z0-9._~-]*)*")


def check_url(url: str, *, parent: str | None = None, local: bool = False) -> str:
    """Return `url` if it is an http(s) URL with a host, else raise `InvalidUrl`.

    With `parent` (the URL of the playlist that names `url`), an https parent
    with an http child is a downgrade and raises `InvalidUrl` too. A ``file:``
    URL (an absolute path on this machine) passes only under a ``file:`` parent
    (a playlist on disk names a file), or with `local` (the user named it, or it
    is the URL of a playlist already read from disk); never under an http(s) parent.
    """
    parts = _split(url)
    if parts.scheme == "file" and (local or (parent is not None and _split(parent).scheme == "file")):
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise InvalidUrl("a file URL must name an absolute path on this machine", url=url)
        return url
    if parts.scheme not in ("http", "https"):
        raise InvalidUrl(f"only http and https URLs are allowed, not {parts.scheme or 'none'!r}", url=url)
    if not parts.hostname:
        raise InvalidUrl("URL has no host", url=url)
    if parent is not None and parts.scheme == "http" and _split(parent).scheme == "https":
        raise InvalidUrl("https→http downgrade refused", url=url)
    return url


def resolve_uri(ref: str, base: str) -> str:
    """`ref` as named in the playlist at `base`, made absolute and checked by `check_url`.

    Under a ``file:`` base (a playlist on disk the user named) a relative `ref`
    is a file beside it; under an http(s) base it is never a local file.
    """
    if _PLAIN_PATH.fullmatch(ref):
        # Same scheme and host as `base`, which was checked when its playlist was read.
        return _folder(base) + ref
    if _CONTROL.search(ref):
        raise InvalidUrl("URI holds control characters", url=ref)
    try:
        joined = urljoin(base, ref)
    except ValueError as exc:
        raise InvalidUrl("malformed URI", url=ref) from exc
    return check_url(joined, parent=base)


@functools.lru_cache(maxsize=64)
def _folder(base: str) -> str:
    """What `urljoin` puts before a plain relative name: `base` up to its path's last slash."""
    parts = _split(base)
    path = parts.path[: parts.path.rfind("/") + 1] or "/"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def looks_like_playlist(head: bytes) -> bool:
    """Whether a body's first bytes (after a BOM and whitespace) are ``#EXTM3U``."""
    head = bytes(head).lstrip()
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:].lstrip()
    return head.startswith(_HEADER.encode())


def playlist_body(text: str | bytes, url: str) -> tuple[str, int]:
    """The text from its ``#EXTM3U`` on, and how many lines came before it.

    Raises `PlaylistParseError` for a body that is not UTF-8 or lacks the header
    (an HTML page, JSON, an empty body).
    """
    if isinstance(text, (bytes, bytearray, memoryview)):
        try:
            text = bytes(text).decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise PlaylistParseError("not an HLS playlist (not UTF-8 text)", url=url) from exc
    body = text.lstrip().removeprefix(_BOM).lstrip()
    if not body.startswith(_HEADER):
        # Tags are case-sensitive (RFC 8216 §4.1): a lower-case header is no header.
        case = "; tags are upper case" if body[: len(_HEADER)].upper() == _HEADER else ""
        raise PlaylistParseError(f"not an HLS playlist (no #EXTM3U header{case})", url=url)
    leading = text[: len(text) - len(body)]
    return body, len((leading + "x").splitlines()) - 1


def attributes(line: str) -> dict[str, str]:
    """A tag's attribute list: names upper-cased, values unquoted; what does not parse is left out."""
    body = line.partition(":")[2]
    return {m[1].strip().upper(): _unquote(m[2].strip()) for m in _ATTRIBUTE.finditer(body)}


def _unquote(value: str) -> str:
    # Quoted in double quotes as RFC 8216 asks, or in single quotes as some packagers write.
    return value[1:-1] if len(value) > 1 and value[0] == value[-1] and value[0] in "\"'" else value


def check_duration(raw: str | float, what: str, url: str, lineno: int | None) -> float:
    """`raw` as seconds, finite and within `MAX_SEGMENT_DURATION_S`; `what` names the tag."""
    try:
        value = float(raw)
    except ValueError as exc:
        raise PlaylistParseError(f"invalid {what}", url=url, lineno=lineno) from exc
    if not (math.isfinite(value) and 0.0 <= value <= MAX_SEGMENT_DURATION_S):
        raise PlaylistParseError(f"{what} out of range: {value}", url=url, lineno=lineno)
    return value


def check_media_sequence(raw: str, url: str, lineno: int | None) -> int:
    """EXT-X-MEDIA-SEQUENCE's value: a decimal integer up to `MAX_MEDIA_SEQUENCE`."""
    value = raw.strip()
    if not _DECIMAL.fullmatch(value) or int(value) > MAX_MEDIA_SEQUENCE:
        raise PlaylistParseError("invalid EXT-X-MEDIA-SEQUENCE", url=url, lineno=lineno)
    return int(value)


def check_tag(line: str, url: str, lineno: int) -> None:
    """Refuse a tag whose value m3u8 would choke on, naming its line.

    m3u8 raises bare errors on them, some only after its line pass, where the
    line is lost: a bad EXTINF; the key would fail later, without the line: an
    EXT-X-KEY without METHOD or with a bad IV.
    """
    if line.startswith("#EXTINF"):
        # m3u8's own slicing, so a value that passes here parses there.
        check_duration(line.replace("#EXTINF:", "").split(",", 1)[0], "EXTINF", url, lineno)
    elif line.startswith("#EXT-X-KEY"):
        attrs = attributes(line)
        if not attrs.get("METHOD"):
            raise PlaylistParseError("EXT-X-KEY without METHOD", url=url, lineno=lineno)
        if "IV" in attrs:
            iv_bytes(attrs["IV"], url, lineno)


def drm_system(uri: str | None, keyformat: str | None) -> str | None:
    """The DRM system an EXT-X-KEY names, or None for an identity key with a plain URI.

    Read from KEYFORMAT (FairPlay, PlayReady, Widevine, ClearKey; another one is
    named as written), from an ``skd:`` URI (FairPlay), or from the system ID of
    a PSSH box in a ``data:`` URI.
    """
    name = (keyformat or "identity").strip()
    if name.lower() != "identity":
        return _DRM_SYSTEMS.get(name.lower(), name[:60])
    ref = (uri or "").strip()
    if ref[:4].lower() == "skd:":
        return "FairPlay"
    if ref[:5].lower() == "data:":
        return _pssh_system(ref)
    return None


def _pssh_system(ref: str) -> str | None:
    head, _, data = ref.partition(",")
    try:
        raw = base64.b64decode(data + "=" * (-len(data) % 4)) if head.lower().endswith(";base64") else b""
    except (ValueError, binascii.Error):
        return None
    at = raw.find(b"pssh")
    if at < 0:
        return None
    system_id = raw[at + 8 : at + 24]  # after the box type, its version and flags
    if len(system_id) < 16:
        return "an unknown"
    return _DRM_SYSTEMS.get(f"urn:uuid:{uuid.UUID(bytes=system_id)}", "an unknown")


def iv_bytes(raw: str, url: str, lineno: int | None) -> bytes:
    """An IV attribute (``0x`` and up to 32 hex digits) as 16 big-endian bytes."""
    match = _IV.fullmatch(raw.strip())
    if match is None:
        raise PlaylistParseError("IV must be 0x and at most 32 hex digits", url=url, lineno=lineno)
    return int(match[1], 16).to_bytes(16, "big")


def byterange_values(raw: str, url: str, lineno: int | None) -> tuple[int, int | None]:
    """A BYTERANGE's ``length[@offset]`` as (length, offset or None)."""
    match = _RANGE.fullmatch(raw.strip())
    if match is None:
        raise PlaylistParseError(f"invalid BYTERANGE {raw[:40]!r}", url=url, lineno=lineno)
    return int(match[1]), None if match[2] is None else int(match[2])


def check_byterange(length: int, offset: int, url: str, lineno: int | None) -> None:
    """Refuse an empty range, or one that ends past `MAX_BYTERANGE_BYTES`."""
    if not 0 < length <= MAX_BYTERANGE_BYTES or offset + length > MAX_BYTERANGE_BYTES:
        raise PlaylistParseError(f"BYTERANGE out of range: {length}@{offset}", url=url, lineno=lineno)


def _split(url: str) -> SplitResult:
    if not isinstance(url, str):
        raise InvalidUrl(f"URL must be a string, not {type(url).__name__}")
    if _CONTROL.search(url):
        raise InvalidUrl("URL holds control characters", url=url)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError as exc:
        raise InvalidUrl("malformed URL", url=url) from exc
    return parts
