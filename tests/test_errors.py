"""The exception tree's values, and failures told in words: `retry.describe`, `cli.report`."""

from __future__ import annotations

import errno
import io
import itertools
import pickle
import ssl

import pytest
import requests
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError

from kithara_hls.cli import report
from kithara_hls.errors import HlsError, NetError, RetryExhausted, SegmentNotFound
from kithara_hls.retry import RetryPolicy, describe, host_of, status_phrase

URL = "http://user:pw@cdn.test:8080/v1/seg.ts?token=secret"


def chained(*errors: BaseException) -> BaseException:
    """The first of `errors`, each raised from the next (the last is the root cause)."""
    for outer, inner in itertools.pairwise(errors):
        outer.__cause__ = inner
    return errors[0]


def test_host_of_keeps_host_and_port_only() -> None:
    assert host_of(URL) == "cdn.test:8080"
    assert host_of("https://[::1]:8443/a") == "[::1]:8443"
    assert host_of("https://Example.COM/a?x=1") == "example.com"
    assert host_of("not a url?token=secret") == "not a url?…"


def test_status_phrase_has_the_reason_where_there_is_one() -> None:
    assert status_phrase(503) == "HTTP 503 Service Unavailable"
    assert status_phrase(404) == "HTTP 404 Not Found"
    assert status_phrase(599) == "HTTP 599"


def test_a_refused_connection_deep_in_urllib3s_chain() -> None:
    refused = ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
    new_conn = chained(NewConnectionError(None, "Failed to establish a new connection"), refused)  # type: ignore[arg-type]
    # requests raises its ConnectionError while handling MaxRetryError: a context, not a cause.
    outer = requests.ConnectionError(MaxRetryError(None, "/seg.ts", new_conn))  # type: ignore[arg-type]
    assert describe(outer, URL) == ("connection refused", "connection refused by cdn.test:8080")


def test_the_host_is_the_one_of_the_request_that_failed() -> None:
    request = requests.Request("GET", "http://edge.test/moved.ts?sig=1").prepare()
    error = requests.ConnectionError(ConnectionResetError(errno.ECONNRESET, "reset"), request=request)
    assert describe(error, URL) == ("connection reset", "connection reset by edge.test")


@pytest.mark.parametrize(
    ("error", "timeouts", "words"),
    [
        (
            requests.ConnectTimeout("connect timed out"),
            (3.0, 30.0),
            ("connect timed out after 3 s", "connecting to cdn.test:8080 timed out after 3 s"),
        ),
        (
            requests.ReadTimeout("read timed out"),
            (3.0, 0.25),
            ("read timed out after 0.25 s", "reading from cdn.test:8080 timed out after 0.25 s"),
        ),
        (TimeoutError("timed out"), None, ("read timed out", "reading from cdn.test:8080 timed out")),
    ],
)
def test_timeouts_tell_connect_from_read_and_their_seconds(
    error: BaseException, timeouts: tuple[float, float] | None, words: tuple[str, str]
) -> None:
    assert describe(error, URL, timeouts) == words


def test_tls_reasons_are_short_words() -> None:
    cert = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    cert.verify_message = "certificate has expired"
    assert describe(requests.exceptions.SSLError(cert), URL)[0] == "TLS failure: certificate has expired"
    other = ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number")
    other.reason = "WRONG_VERSION_NUMBER"
    assert describe(other, URL) == (
        "TLS failure: wrong version number",
        "TLS failure with cdn.test:8080: wrong version number",
    )


def test_other_socket_errors_say_what_the_system_said() -> None:
    unreachable = OSError(errno.ENETUNREACH, "Network is unreachable")
    error = requests.ConnectionError(chained(NewConnectionError(None, "failed"), unreachable))  # type: ignore[arg-type]
    assert describe(error, URL) == ("network is unreachable", "network is unreachable: cdn.test:8080")


def test_an_unknown_failure_names_its_type_and_never_the_query() -> None:
    cause, detail = describe(ProtocolError("Response ended prematurely"), URL)
    assert cause == "request failed (ProtocolError)"
    assert detail == "request to cdn.test:8080 failed (ProtocolError)"


def test_our_own_errors_keep_their_words() -> None:
    error = NetError(
        "HTTP 503 Service Unavailable from cdn.test", url=URL, cause="HTTP 503 Service Unavailable"
    )
    assert describe(error, URL) == (
        "HTTP 503 Service Unavailable",
        "HTTP 503 Service Unavailable from cdn.test",
    )


def test_a_chain_that_loops_ends() -> None:
    first, second = OSError("first"), ValueError("second")
    first.__context__, second.__context__ = second, first
    assert describe(first, URL)[0] == "request failed (ValueError)"


def test_retry_exhausted_carries_the_cause_and_the_attempts() -> None:
    last = ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
    cause, detail = describe(last, URL)
    with pytest.raises(RetryExhausted) as info:
        RetryPolicy(total=0).increment(URL, last, cause=cause, detail=detail)
    error = info.value
    assert (error.attempts, error.cause, error.url, error.__cause__) == (1, "connection refused", URL, last)
    assert (
        str(error)
        == "connection refused by cdn.test:8080 (1 attempt) | http://user:pw@cdn.test:8080/v1/seg.ts?…"
    )


def test_errors_pickle_with_every_field() -> None:
    error = RetryExhausted(
        URL, 5, status=503, cause="HTTP 503 Service Unavailable", detail="HTTP 503 … from x"
    )
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is RetryExhausted
    assert (copy.attempts, copy.cause, copy.status, copy.url, str(copy)) == (
        5,
        error.cause,
        503,
        URL,
        str(error),
    )
    missing = pickle.loads(pickle.dumps(SegmentNotFound("gone", url=URL, status=404, segment=3, cause="x")))
    assert (missing.segment, missing.status, missing.cause) == (3, 404, "x")


def test_the_status_is_not_repeated_when_the_message_names_it() -> None:
    assert str(NetError("HTTP 404 Not Found from cdn.test", status=404)) == "HTTP 404 Not Found from cdn.test"
    assert str(NetError("range refused", status=416)) == "range refused | HTTP 416"


def _raised_from(error: HlsError, cause: BaseException) -> HlsError:
    try:
        try:
            raise cause
        except BaseException as exc:
            raise error from exc
    except HlsError as exc:
        return exc


def test_report_prints_one_line_and_with_verbose_the_causes() -> None:
    root = ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
    middle = requests.ConnectionError("Max retries exceeded with url: /seg.ts?token=secret")
    middle.__context__ = root
    error = _raised_from(
        RetryExhausted(URL, 3, cause="connection refused", detail="connection refused by h"), middle
    )
    quiet, loud = io.StringIO(), io.StringIO()
    report(error, file=quiet)
    report(error, verbose=1, file=loud)
    assert quiet.getvalue() == "kithara-hls: error: connection refused by h (3 attempts) | " + (
        "http://user:pw@cdn.test:8080/v1/seg.ts?…\n"
    )
    lines = loud.getvalue().splitlines()
    assert lines[0] == quiet.getvalue().rstrip("\n")
    assert lines[1:] == [
        "  caused by: requests.exceptions.ConnectionError: Max retries exceeded with url: /seg.ts?…",
        f"  caused by: ConnectionRefusedError: [Errno {errno.ECONNREFUSED}] Connection refused",
    ]
    assert "secret" not in loud.getvalue()


def test_report_honours_a_suppressed_context_and_multi_line_messages() -> None:
    error = HlsError("first line\nsecond line")
    error.__context__ = TimeoutError("hidden")
    error.__suppress_context__ = True
    out = io.StringIO()
    report(error, verbose=1, file=out)
    assert out.getvalue() == "kithara-hls: error: first line second line\n"
