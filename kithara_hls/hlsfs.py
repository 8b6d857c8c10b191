"""An fsspec filesystem for HLS: ``fsspec.open("hls://host/path/master.m3u8")`` opens an `HlsSource`.

Registered as the ``hls`` protocol through the ``fsspec.specs`` entry point
(install the ``fsspec`` extra). ``hls://host/path`` means https; the chained
forms ``hls::https://host/path`` and ``hls::http://host/path`` name the scheme.
Storage options are `HlsOptions` fields: flat ones as they are (``variant=0``,
``offline=True``, ``audio="fr"``, ``track="muxed"``), the groups as option objects or as dicts of their fields
(``network={"read_timeout": 5}``, ``cache={"dir": "hls-cache"}``), and
``options=HlsOptions(...)`` as the base they apply to.

An `fsspec.core.OpenFile` of this filesystem pickles (fsspec rebuilds the
filesystem from its storage options), so it can be handed to a process pool or
to Dask and Ray workers, which open it there. That needs storage options that
pickle: a ``KeyOptions.key_processor`` must then be a module-level function,
never a lambda or a closure. An opened file is an `HlsSource` with threads and
sockets: it does not pickle; hand over the `OpenFile`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

try:
    from fsspec import AbstractFileSystem
except ImportError as exc:
    raise ImportError("the hls filesystem needs fsspec: pip install 'kithara-hls[fsspec]'") from exc

try:
    # A chained filesystem gets the inner URL as its path (``hls::http://h/p`` -> ``http://h/p``).
    from fsspec.implementations.chained import ChainedFileSystem as _FileSystem
except ImportError:  # older fsspec: the inner URL arrives only as ``fo``
    _FileSystem = AbstractFileSystem

from .errors import InvalidUrl
from .options import AbrOptions, CacheOptions, HlsOptions, KeyOptions, NetworkOptions
from .source import HlsSource

__all__ = ["DEFAULT_SCHEME", "PROTOCOL", "HlsFileSystem", "hls_options"]

#: The fsspec protocol name.
PROTOCOL = "hls"
#: The scheme of ``hls://host/path``.
DEFAULT_SCHEME = "https"

# What a chained URL may name inside ``hls::``; the library decides what it opens.
_TARGETS = frozenset({"http", "https", "file"})
_GROUPS: dict[str, type[Any]] = {
    "abr": AbrOptions,
    "network": NetworkOptions,
    "cache": CacheOptions,
    "keys": KeyOptions,
}
_FIELDS = frozenset(f.name for f in dataclasses.fields(HlsOptions))
# Storage options that belong to fsspec's base class, not to the stream.
_FSSPEC_OPTIONS = frozenset(
    {"use_listings_cache", "listings_expiry_time", "max_paths", "skip_instance_cache", "asynchronous", "loop"}
)


def hls_options(base: HlsOptions | None = None, **fields: Any) -> HlsOptions:
    """`base` (default `HlsOptions()`) with storage options applied.

    A flat field replaces the base's. A group (``abr``, ``network``, ``cache``,
    ``keys``) given as its option object replaces the base's group; given as a
    dict, it changes only the fields it names. Unknown names raise `TypeError`.
    """
    options = base if base is not None else HlsOptions()
    changes: dict[str, Any] = {}
    for name, value in fields.items():
        group = _GROUPS.get(name)
        if group is not None:
            if isinstance(value, Mapping):
                value = dataclasses.replace(getattr(options, name), **value)
            elif not isinstance(value, group):
                raise TypeError(f"storage option {name!r} takes a {group.__name__} or a dict of its fields")
        elif name not in _FIELDS:
            raise TypeError(
                f"unknown storage option {name!r} (HlsOptions fields: {', '.join(sorted(_FIELDS))})"
            )
        changes[name] = value
    return options.replace(**changes) if changes else options


class HlsFileSystem(_FileSystem):  # type: ignore[misc]
    """The ``hls`` protocol: each path is one HLS VOD, opened as a read-only `HlsSource`.

    Paths are ``host/path/master.m3u8`` (fetched over `DEFAULT_SCHEME`, or over
    ``target_protocol`` when a chained URL names one) or a full inner URL
    (``http://host/path/master.m3u8``). `info` and `size` give the exact size of
    the stream as opened with these options: with ABR (``variant=None``) that is
    the size of the plan when asked, so pin ``variant`` when a size must hold
    for the reads that follow.
    """

    protocol = PROTOCOL
    root_marker = ""

    def __init__(
        self,
        *,
        options: HlsOptions | None = None,
        target_protocol: str | None = None,
        target_options: Mapping[str, Any] | None = None,
        fo: str | None = None,
        **storage_options: Any,
    ) -> None:
        base = {k: storage_options.pop(k) for k in list(storage_options) if k in _FSSPEC_OPTIONS}
        super().__init__(**base)
        if target_options:
            raise TypeError(
                f"options for the inner {target_protocol} filesystem are not used; pass them to hls "
                "(network={'headers': ...})"
            )
        scheme = target_protocol or DEFAULT_SCHEME
        if scheme not in _TARGETS:
            raise InvalidUrl(f"hls:: cannot open {scheme}:// URLs (http, https or file)", url=fo)
        self.scheme = scheme
        self.fo = fo
        self.options = hls_options(options, **storage_options)

    def url(self, path: str) -> str:
        """The URL `path` names: an inner URL as it is, ``host/path`` over this filesystem's scheme."""
        path = self._strip_protocol(path) or (self._strip_protocol(self.fo) if self.fo else "")
        if not path:
            raise InvalidUrl("no stream named: give hls://host/path/master.m3u8")
        if "://" in path:
            return str(path)
        if self.scheme == "file":
            return "file://" + path
        return f"{self.scheme}://{path}"

    def unstrip_protocol(self, name: str) -> str:
        """The full fsspec URL of `name` (``hls::http://...`` for an inner URL)."""
        name = self._strip_protocol(name) or (self.fo or "")
        if self.scheme != DEFAULT_SCHEME and "://" not in name:
            name = self.url(name)
        return f"{PROTOCOL}::{name}" if "://" in name else f"{PROTOCOL}://{name}"

    def _open(
        self,
        path: str,
        mode: str = "rb",
        block_size: int | None = None,
        autocommit: bool = True,
        cache_options: Mapping[str, Any] | None = None,
        **overrides: Any,
    ) -> HlsSource:
        """The stream at `path` as an `HlsSource`; `overrides` are storage options for this file only."""
        if mode != "rb":
            raise NotImplementedError(f"HLS streams are read-only (mode {mode!r})")
        return HlsSource(self.url(path), hls_options(self.options, **overrides))

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        """``name``, exact ``size`` in bytes, ``type`` ``"file"``, ``duration`` in seconds, ``url``."""
        url = self.url(path)
        with HlsSource(url, self.options) as f:
            size = f.size()
            duration = f.duration
        name = self._strip_protocol(path) or self._strip_protocol(self.fo or "")
        return {"name": name, "size": size, "type": "file", "duration": duration, "url": url}

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        """A stream is one file: its own `info` (or name)."""
        entry = self.info(path)
        return [entry] if detail else [entry["name"]]

    def isdir(self, path: str) -> bool:
        """False: a stream is a file, and there are no folders."""
        return False

    def glob(self, path: str, maxdepth: int | None = None, **kwargs: Any) -> Any:
        """`path` itself: paths are URLs, whose ``?`` and ``*`` are never patterns."""
        name = self._strip_protocol(path)
        return {name: self.info(name)} if kwargs.get("detail") else [name]

    def cat_file(self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any) -> bytes:
        """Bytes ``[start:end]`` of the stream (negative values count from the end, as in slices)."""
        with self._open(path, **kwargs) as f:
            begin, stop = start or 0, end
            if begin < 0 or (stop is not None and stop < 0):
                size = f.size()
                begin = max(0, size + begin) if begin < 0 else begin
                stop = size + stop if stop is not None and stop < 0 else stop
            f.seek(begin)
            if stop is None:
                return f.read() or b""
            return (f.read(stop - begin) or b"") if stop > begin else b""
