"""The exception tree: everything the library raises derives from `HlsError`.

`HlsError` is an `OSError`, so code that already handles I/O failures of a file
handles a stream's failures too. Leaves carry what a caller needs to act on the
failure (URL, HTTP status, segment index) and chain the low-level cause with
``raise ... from``.
"""

from __future__ import annotations


class HlsError(OSError):
    """Base of every error raised by kithara_hls."""

    def __init__(
        self,
        message: str,
        *,
        url: str | None = None,
        status: int | None = None,
        segment: int | None = None,
    ) -> None:
        self.message = message
        self.url = url
        self.status = status
        self.segment = segment
        super().__init__(message)

    def __str__(self) -> str:
        parts = [self.message]
        if self.segment is not None:
            parts.append(f"segment {self.segment}")
        if self.status is not None and f"HTTP {self.status}" not in self.message:
            parts.append(f"HTTP {self.status}")
        if self.url is not None:
            parts.append(redact_url(self.url))
        return " | ".join(parts)

    def __reduce__(self):  # type: ignore[no-untyped-def]
        # OSError pickles through its args; keep the keyword fields, and a leaf's own
        # fields (attempts, cause, lineno) as the state.
        return (
            _rebuild,
            (type(self), self.message, self.url, self.status, self.segment),
            dict(self.__dict__),
        )


def _rebuild(
    cls: type[HlsError], message: str, url: str | None, status: int | None, segment: int | None
) -> HlsError:
    err = cls.__new__(cls)
    HlsError.__init__(err, message, url=url, status=status, segment=segment)
    return err


def redact_url(url: str) -> str:
    """Return `url` without its query string, which may hold access tokens."""
    head, sep, _ = url.partition("?")
    return head + ("?…" if sep else "")


class NetError(HlsError):
    """A request failed: connection, timeout, or an HTTP status that is not success.

    `cause` names what happened in a few words ("connection refused", "HTTP 404
    Not Found"), where the library knows it; the message adds where.
    """

    def __init__(
        self,
        message: str,
        *,
        url: str | None = None,
        status: int | None = None,
        segment: int | None = None,
        cause: str | None = None,
    ) -> None:
        self.cause = cause
        super().__init__(message, url=url, status=status, segment=segment)


class RetryExhausted(NetError):
    """A request kept failing until the retry policy gave up.

    `cause` is what the last attempt met ("connection refused", "read timed out
    after 30 s", "HTTP 503 Service Unavailable"); `detail` is the same naming the
    host ("connection refused by 127.0.0.1:9"), and the message adds the attempts.
    """

    cause: str

    def __init__(
        self,
        url: str,
        attempts: int,
        *,
        status: int | None = None,
        cause: str | None = None,
        detail: str | None = None,
    ) -> None:
        self.attempts = attempts
        plural = "" if attempts == 1 else "s"
        if cause is None:
            message = f"gave up after {attempts} attempt{plural}"
        else:
            message = f"{detail or cause} ({attempts} attempt{plural})"
        super().__init__(message, url=url, status=status, cause=cause or "request failed")


class AssetsError(HlsError):
    """A resource (init section, segment body) is unusable: wrong size, over a limit."""


class StorageError(HlsError):
    """The on-disk cache failed to read or write."""


class PlaylistParseError(HlsError):
    """A body is not a valid HLS playlist, or breaks a limit or a rule."""

    def __init__(self, message: str, *, url: str | None = None, lineno: int | None = None) -> None:
        self.lineno = lineno
        if lineno is not None:
            message = f"{message} (line {lineno})"
        super().__init__(message, url=url)


class VariantNotFound(HlsError):
    """The requested variant index does not exist."""


class NoAudioTrack(VariantNotFound):
    """Audio alone was asked for (``track="audio"``), and the master has none to play alone."""


class IncompatibleVariant(VariantNotFound):
    """`set_variant` to a variant a decoder cannot follow (another switch set) once bytes were read.

    `differences` names what differs ("sample_rate 22050 ≠ 48000").
    """

    def __init__(self, message: str, *, differences: tuple[str, ...] = (), url: str | None = None) -> None:
        self.differences = differences
        super().__init__(message, url=url)


class SegmentNotFound(NetError):
    """A segment could not be fetched (404/410, or it failed for good)."""


class SegmentGap(SegmentNotFound):
    """A segment is marked EXT-X-GAP and no variant that can stand in for it has it.

    It is never requested. Reads before it work; the read that reaches it raises
    this (after returning the bytes before it); `seek_time` past it works.
    """


class NoSuitableVariant(HlsError):
    """No variant fits the constraints: `AbrOptions.max_bandwidth` is below every variant's bitrate."""


class KeyProcessingError(HlsError):
    """A decryption key could not be fetched, processed, or used."""


class UnsupportedEncryption(KeyProcessingError):
    """The stream is encrypted in a way the library cannot decrypt: DRM, or SAMPLE-AES.

    `method` is the EXT-X-KEY METHOD (``SAMPLE-AES``, ``SAMPLE-AES-CTR``, ``AES-128``
    under a DRM KEYFORMAT...); `system` names the DRM system where known
    ("FairPlay", "Widevine", "PlayReady"), else None.
    """

    def __init__(
        self,
        method: str,
        *,
        system: str | None = None,
        url: str | None = None,
        segment: int | None = None,
        lineno: int | None = None,
    ) -> None:
        self.method = method
        self.system = system
        self.lineno = lineno
        drm = "" if system is None else f" ({system} DRM)"
        where = "" if lineno is None else f" (line {lineno})"
        message = f"the stream is encrypted with {method}{drm}, which kithara-hls cannot play{where}"
        super().__init__(message, url=url, segment=segment)


class OfflineMiss(HlsError):
    """Offline mode needs something the cache does not hold."""


class InvalidUrl(HlsError):
    """A URL is malformed, not http(s), or a https→http downgrade."""


class DriverError(HlsError):
    """The background machinery failed in an unexpected way (a bug: please report)."""


class AbrError(DriverError):
    """The adaptive bitrate thread failed in an unexpected way."""


def crashed(
    where: str,
    exc: BaseException,
    *,
    kind: type[DriverError] = DriverError,
    url: str | None = None,
    segment: int | None = None,
) -> DriverError:
    """A `DriverError` (or `kind`) telling that `where` met the unexpected `exc`, chained from it.

    Built on the thread that met it and raised later in the reader, as
    ``raise error from exc`` would have chained it.
    """
    error = kind(f"{where} crashed ({type(exc).__name__}: {exc})", url=url, segment=segment)
    error.__cause__ = exc
    error.__suppress_context__ = True
    return error


__all__ = [
    "AbrError",
    "AssetsError",
    "DriverError",
    "HlsError",
    "IncompatibleVariant",
    "InvalidUrl",
    "KeyProcessingError",
    "NetError",
    "NoAudioTrack",
    "NoSuitableVariant",
    "OfflineMiss",
    "PlaylistParseError",
    "RetryExhausted",
    "SegmentNotFound",
    "StorageError",
    "UnsupportedEncryption",
    "VariantNotFound",
    "crashed",
    "redact_url",
]
