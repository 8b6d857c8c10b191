"""Variable substitution (EXT-X-DEFINE, RFC 8216bis §4.3 and §4.4.2.3), before any parsing.

An EXT-X-DEFINE defines a variable for the lines after it: NAME with VALUE;
QUERYPARAM, whose value is that query parameter of the URL the playlist was
read from, percent-decoded; or IMPORT (media playlists only), whose value is
the master playlist's variable of that name. A reference ``{$name}`` is
replaced in URI lines and in double-quoted attribute values of tags; the
EXT-X-DEFINE lines themselves and values put in are not scanned again. m3u8
6.0 substitutes nothing, so this runs on the text it is given.

Every URI is checked after substitution, like any other: a variable cannot
bring in a URL the checks would refuse, and a value that holds a double quote
or a control character (which could end an attribute value, or start a new
line) is refused. So are a reference to an undefined variable, a NAME defined
twice, an IMPORT in a master playlist or one the master does not define, and
a QUERYPARAM that the URL lacks; each `PlaylistParseError` names the variable
and its line. A playlist without EXT-X-DEFINE and without ``{$`` is returned
as it is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import parse_qsl, urlsplit

from kithara_hls.errors import PlaylistParseError
from kithara_hls.playlist_checks import attributes

_DEFINE = "#EXT-X-DEFINE"
_REFERENCE = re.compile(r"\{\$([A-Za-z0-9_-]*)\}")
_NAME = re.compile(r"[A-Za-z0-9_-]+")
_QUOTED = re.compile(r'"[^"]*"')
_UNSAFE = re.compile(r'["\x00-\x1f\x7f\x85\u2028\u2029]')  # also what str.splitlines breaks at
# Tags only a master playlist holds: an IMPORT beside one of them is in a master.
_MASTER_TAG = re.compile(r"(?:^|[\r\n])[ \t]*#EXT-X-(?:I-FRAME-)?STREAM-INF:")


def substitute(
    body: str, url: str, line_offset: int, imports: Mapping[str, str] | None
) -> tuple[str, tuple[tuple[str, str], ...]]:
    """`body` with its variable references replaced, and the variables it defines, in order.

    `url` is the URL the playlist was read from (for QUERYPARAM), `line_offset`
    the lines before `body` (for the line numbers of errors), `imports` the
    master playlist's variables (for IMPORT; None: not loaded from a master).
    """
    if _DEFINE not in body and "{$" not in body:
        return body, ()
    variables: dict[str, str] = {}
    master = _MASTER_TAG.search(body) is not None
    lines = body.splitlines(keepends=True)  # the line breaks m3u8 and `LineHook` count
    for i, line in enumerate(lines):
        n = i + 1 + line_offset
        if line.lstrip().startswith(_DEFINE):
            name, value = _define(line.strip(), n, url, imports, master)
            if name in variables:
                raise PlaylistParseError(
                    f"EXT-X-DEFINE: variable {name!r} is defined twice", url=url, lineno=n
                )
            variables[name] = value
        elif "{$" in line:
            lines[i] = _replace_line(line, variables, url, n)
    return "".join(lines), tuple(variables.items())


def _define(line: str, n: int, url: str, imports: Mapping[str, str] | None, master: bool) -> tuple[str, str]:
    """The (name, value) an EXT-X-DEFINE line defines."""
    attrs = attributes(line)
    if "NAME" in attrs and "VALUE" in attrs:
        name, value, how = attrs["NAME"], attrs["VALUE"], "NAME"
    elif "QUERYPARAM" in attrs:
        name, how = attrs["QUERYPARAM"], "QUERYPARAM"
        value = _query_param(name, url, n)
    elif "IMPORT" in attrs:
        name, how = attrs["IMPORT"], "IMPORT"
        value = _imported(name, imports, master, url, n)
    else:
        raise PlaylistParseError("EXT-X-DEFINE needs NAME and VALUE, QUERYPARAM or IMPORT", url=url, lineno=n)
    if not _NAME.fullmatch(name):
        raise PlaylistParseError(
            f"EXT-X-DEFINE {how}: invalid variable name {name[:64]!r}", url=url, lineno=n
        )
    if _UNSAFE.search(value):
        raise PlaylistParseError(
            f"EXT-X-DEFINE: the value of {name!r} holds a double quote or a control character",
            url=url,
            lineno=n,
        )
    return name, value


def _query_param(name: str, url: str, n: int) -> str:
    for key, value in parse_qsl(urlsplit(url).query, keep_blank_values=True):
        if key == name:
            return value  # the first, as URLSearchParams.get (hls.js) reads it
    raise PlaylistParseError(
        f"EXT-X-DEFINE QUERYPARAM {name[:64]!r}: the playlist URL has no such query parameter",
        url=url,
        lineno=n,
    )


def _imported(name: str, imports: Mapping[str, str] | None, master: bool, url: str, n: int) -> str:
    if master:
        raise PlaylistParseError(
            f"EXT-X-DEFINE IMPORT {name[:64]!r} is not allowed in a master playlist", url=url, lineno=n
        )
    if imports is None or name not in imports:
        where = (
            "not loaded from a master playlist" if imports is None else "not defined by the master playlist"
        )
        raise PlaylistParseError(f"EXT-X-DEFINE IMPORT {name[:64]!r}: {where}", url=url, lineno=n)
    return imports[name]


def _replace_line(line: str, variables: dict[str, str], url: str, n: int) -> str:
    """A URI line, or a tag's double-quoted values, with their references replaced."""

    def replace(match: re.Match[str]) -> str:
        value = variables.get(match[1])
        if value is None:
            raise PlaylistParseError(
                f"variable {match[0][:70]!r} is not defined (no EXT-X-DEFINE before it)", url=url, lineno=n
            )
        return value

    start = line.lstrip()
    if not start.startswith("#"):
        return _REFERENCE.sub(replace, line)
    if not start.startswith("#EXT"):
        return line  # a comment
    return _QUOTED.sub(lambda quoted: _REFERENCE.sub(replace, quoted[0]), line)
