"""Tests of the HTTP layer (transport, ranged, probes, retry): the retry policy, status handling
(responses), socket faults (a local server)."""

from __future__ import annotations

import contextlib
import gzip
import random
import re
import socket
import ssl
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import responses

from kithara_hls.errors import AssetsError, InvalidUrl, NetError, RetryExhausted, SegmentNotFound
from kithara_hls.options import NetworkOptions
from kithara_hls.retry import Cancelled, RetryPolicy, is_retryable_status, parse_retry_after
from kithara_hls.testing import self_signed_tls
from kithara_hls.transport import HttpClient

BODY = bytes(random.Random(7).randrange(256) for _ in range(1000))
MOCK_URL = "http://origin.test/seg.ts"
WAIT_S = 10.0  # upper bound for a thread to reach a sync point; never reached when the code works
STALL_S = 60.0  # a stalled handler outlasts every WAIT_S: only the client can end the stall early


class RecordingSink:
    """A sink that insists on contiguous, never repeated data."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.start: int | None = None
        self.data = bytearray()
        self.first = threading.Event()

    def on_size(self, size: int) -> None:
        self.sizes.append(size)

    def on_data(self, offset: int, data: memoryview) -> None:
        if self.start is None:
            self.start = offset
        assert offset == self.start + len(self.data), "data re-delivered or out of order"
        self.data += data
        self.first.set()


@pytest.fixture
def make_client() -> Iterator[Callable[..., HttpClient]]:
    clients: list[HttpClient] = []

    def make(on_retry: Callable[[BaseException, int], None] | None = None, **options: object) -> HttpClient:
        options = {"backoff": 0.001, "backoff_max": 0.002, "read_timeout": 5.0, **options}
        client = HttpClient(NetworkOptions(**options), on_retry=on_retry)  # type: ignore[arg-type]
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


# --- RetryPolicy and helpers ---------------------------------------------------------------


def test_increment_returns_a_new_policy() -> None:
    policy = RetryPolicy(total=3)
    after = policy.increment("http://x/a", status=503, retry_after=1.0)
    assert policy.attempts == 0 and policy.retry_after is None
    assert after.attempts == 1 and after.retry_after == 1.0
    assert after.increment("http://x/a").retry_after is None


def test_backoff_is_full_jitter_under_a_doubling_ceiling() -> None:
    rng = random.Random(1)
    policy = RetryPolicy(total=10, backoff=0.5, backoff_max=3.0)
    assert policy.backoff_s(rng) == 0.0
    for attempt in range(1, 8):
        policy = policy.increment("http://x/a")
        ceiling = min(3.0, 0.5 * 2 ** (attempt - 1))
        values = [policy.backoff_s(rng) for _ in range(50)]
        assert all(0.0 <= v <= ceiling for v in values)
        assert max(values) > ceiling / 2
    assert policy.backoff_s(random.Random(5)) == policy.backoff_s(random.Random(5))


def test_retry_after_is_capped_and_wins_over_backoff() -> None:
    policy = RetryPolicy(total=2, backoff=0.1, backoff_max=2.0)
    assert policy.increment("http://x/a", retry_after=30.0).backoff_s() == 2.0
    assert policy.increment("http://x/a", retry_after=0.5).backoff_s(random.Random(0)) == 0.5


def test_exhausted_policy_raises_with_attempts_and_cause() -> None:
    policy = RetryPolicy(total=1).increment("http://x/a")
    cause = ConnectionResetError("reset")
    with pytest.raises(RetryExhausted) as info:
        policy.increment("http://x/a?token=secret", cause, status=503)
    assert info.value.attempts == 2
    assert info.value.status == 503
    assert info.value.__cause__ is cause
    assert "secret" not in str(info.value)


def test_zero_retries_fail_on_the_first_error() -> None:
    with pytest.raises(RetryExhausted) as info:
        RetryPolicy(total=0).increment("http://x/a")
    assert info.value.attempts == 1


def test_from_value_and_from_options() -> None:
    assert RetryPolicy.from_value(None) == RetryPolicy()
    assert RetryPolicy.from_value(7).total == 7
    policy = RetryPolicy(total=1, backoff=1.0)
    assert RetryPolicy.from_value(policy) is policy
    with pytest.raises(TypeError):
        RetryPolicy.from_value("3")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        RetryPolicy.from_value(-1)
    opts = NetworkOptions(retries=2, backoff=0.3, backoff_max=4.0)
    assert RetryPolicy.from_options(opts) == RetryPolicy(total=2, backoff=0.3, backoff_max=4.0)


def test_sleep_raises_cancelled_when_the_event_is_set() -> None:
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        RetryPolicy(backoff_max=100.0).increment("http://x/a", retry_after=100.0).sleep(cancel)


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        (408, True),
        (429, True),
        (500, True),
        (503, True),
        (599, True),
        (404, False),
        (403, False),
        (200, False),
    ],
)
def test_is_retryable_status(status: int, retryable: bool) -> None:
    assert is_retryable_status(status) is retryable


def test_parse_retry_after() -> None:
    assert parse_retry_after(None) is None
    assert parse_retry_after(" 120 ") == 120.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    future = parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT")
    assert future is not None and future > 1e9


# --- status-level behaviour, with responses ----------------------------------------------------


@responses.activate
def test_404_is_segment_not_found_at_once(make_client: Callable[..., HttpClient]) -> None:
    responses.get(MOCK_URL, status=404)
    with pytest.raises(SegmentNotFound) as info:
        make_client().fetch(MOCK_URL, RecordingSink())
    assert info.value.status == 404
    assert len(responses.calls) == 1


@responses.activate
def test_get_404_is_net_error_at_once(make_client: Callable[..., HttpClient]) -> None:
    responses.get(MOCK_URL, status=410)
    with pytest.raises(NetError) as info:
        make_client().get(MOCK_URL, max_bytes=100)
    assert info.value.status == 410
    assert len(responses.calls) == 1


@responses.activate
def test_403_is_not_retried(make_client: Callable[..., HttpClient]) -> None:
    responses.get(MOCK_URL, status=403)
    with pytest.raises(NetError) as info:
        make_client().fetch(MOCK_URL, RecordingSink())
    assert not isinstance(info.value, (RetryExhausted, SegmentNotFound))
    assert info.value.status == 403
    assert len(responses.calls) == 1


@responses.activate
def test_server_errors_are_retried_until_success(make_client: Callable[..., HttpClient]) -> None:
    responses.get(MOCK_URL, status=500)
    responses.get(MOCK_URL, status=500)
    responses.get(MOCK_URL, body=BODY)
    retries: list[tuple[int | None, int]] = []
    client = make_client(on_retry=lambda exc, n: retries.append((getattr(exc, "status", None), n)))
    sink = RecordingSink()
    stats = client.fetch(MOCK_URL, sink)
    assert bytes(sink.data) == BODY
    assert sink.sizes == [len(BODY)]
    assert stats.attempts == 3 and stats.bytes == len(BODY)
    assert retries == [(500, 1), (500, 2)]


@responses.activate
@pytest.mark.parametrize(("header", "cap", "expected"), [("120", 0.05, 0.05), ("2", 5.0, 2.0)])
def test_retry_after_is_honoured_up_to_the_cap(
    make_client: Callable[..., HttpClient],
    monkeypatch: pytest.MonkeyPatch,
    header: str,
    cap: float,
    expected: float,
) -> None:
    delays: list[float] = []
    monkeypatch.setattr(RetryPolicy, "sleep", lambda self, cancel: delays.append(self.backoff_s()))
    responses.get(MOCK_URL, status=503, headers={"Retry-After": header})
    responses.get(MOCK_URL, body=b"ok")
    body, _ = make_client(backoff_max=cap).get(MOCK_URL, max_bytes=100)
    assert body == b"ok"
    assert delays == [expected]


@responses.activate
def test_exhausted_retries_raise_with_attempts_and_cause(make_client: Callable[..., HttpClient]) -> None:
    responses.get(MOCK_URL, status=503)
    with pytest.raises(RetryExhausted) as info:
        make_client(retries=2).fetch(MOCK_URL, RecordingSink())
    assert info.value.attempts == 3
    assert info.value.status == 503
    assert isinstance(info.value.__cause__, NetError) and info.value.__cause__.status == 503
    assert len(responses.calls) == 3


@responses.activate
def test_get_returns_the_final_url_and_decodes_gzip(make_client: Callable[..., HttpClient]) -> None:
    responses.get("https://a.test/master.m3u8", status=302, headers={"Location": "https://b.test/m.m3u8?t=1"})
    responses.get(
        "https://b.test/m.m3u8", body=gzip.compress(b"#EXTM3U\n"), headers={"Content-Encoding": "gzip"}
    )
    body, final = make_client().get("https://a.test/master.m3u8", max_bytes=100)
    assert body == b"#EXTM3U\n"
    assert final == "https://b.test/m.m3u8?t=1"


@responses.activate
@pytest.mark.parametrize("target", ["http://b.test/m.m3u8", "file:///etc/passwd"])
def test_redirect_downgrade_is_refused_before_it_is_followed(
    make_client: Callable[..., HttpClient], target: str
) -> None:
    responses.get("https://a.test/m.m3u8", status=302, headers={"Location": target})
    with pytest.raises(InvalidUrl):
        make_client().get("https://a.test/m.m3u8", max_bytes=100)
    assert len(responses.calls) == 1


@responses.activate
def test_get_refuses_a_body_over_the_limit(make_client: Callable[..., HttpClient]) -> None:
    responses.get(MOCK_URL, body=BODY)
    with pytest.raises(AssetsError):
        make_client().get(MOCK_URL, max_bytes=999)
    assert len(responses.calls) == 1


@responses.activate
def test_headers_are_sent_and_segments_ask_for_identity(make_client: Callable[..., HttpClient]) -> None:
    responses.get(MOCK_URL, body=BODY)
    make_client(headers={"X-Token": "abc"}).fetch(MOCK_URL, RecordingSink())
    sent = responses.calls[0].request.headers
    assert sent["X-Token"] == "abc"
    assert sent["Accept-Encoding"] == "identity"
    assert "Range" not in sent


# --- socket-level faults, with a local server ------------------------------------------------


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    names: list[str]  # every header name as sent, lowercased: one sent twice shows twice


Handler = Callable[[socket.socket, Request, "Server"], None]


class Server:
    """A one-request-per-connection HTTP server on 127.0.0.1: the n-th connection gets handlers[n]."""

    def __init__(self, *handlers: Handler, tls: ssl.SSLContext | None = None) -> None:
        self.handlers = handlers
        self.tls = tls
        self.requests: list[Request] = []
        self.release = threading.Event()  # set on exit: stalled handlers return
        self.seen = threading.Event()  # set when a request has been read
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}/media.ts"
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self._acceptor = threading.Thread(target=self._accept, name="test-server")

    def __enter__(self) -> Server:
        self._acceptor.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping = True
        self.release.set()
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", self.port), timeout=WAIT_S).close()
        self._acceptor.join(WAIT_S)
        for thread in self._threads:
            thread.join(WAIT_S)
        self._listener.close()

    def _accept(self) -> None:
        index = 0
        while True:
            conn, _ = self._listener.accept()
            if self._stopping:
                conn.close()
                return
            handler = self.handlers[min(index, len(self.handlers) - 1)]
            index += 1
            thread = threading.Thread(target=self._serve, args=(conn, handler), name="test-conn")
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket, handler: Handler) -> None:
        with contextlib.ExitStack() as stack, contextlib.suppress(OSError):
            conn = stack.enter_context(conn)
            if self.tls is not None:
                conn = stack.enter_context(self.tls.wrap_socket(conn, server_side=True))
            request = _read_request(conn)
            if request is not None:
                self.requests.append(request)
                self.seen.set()
                handler(conn, request, self)

    @property
    def ranges(self) -> list[str | None]:
        return [r.headers.get("range") for r in self.requests]


def _read_request(conn: socket.socket) -> Request | None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            return None
        data += chunk
    lines = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    pairs = [(k.strip().lower(), v.strip()) for k, v in (line.split(":", 1) for line in lines[1:])]
    return Request(method, path, dict(pairs), [k for k, _ in pairs])


def _select(body: bytes, request: Request, ignore_range: bool) -> tuple[int, bytes, dict[str, str]]:
    match = re.fullmatch(r"bytes=(\d*)-(\d*)", request.headers.get("range", ""))
    if match is None or ignore_range:
        return 200, body, {}
    first, last = match.groups()
    if not first:
        start, stop = max(0, len(body) - int(last)), len(body)
    else:
        start, stop = int(first), min(len(body), int(last) + 1) if last else len(body)
    return 206, body[start:stop], {"Content-Range": f"bytes {start}-{stop - 1}/{len(body)}"}


def serve(
    body: bytes = BODY,
    *,
    ignore_range: bool = False,
    send: int | None = None,
    then: str = "close",
    wait_for: threading.Event | None = None,
    content_range: str | None = None,
    chunked: bool = False,
) -> Handler:
    """A handler: answer `body` (honouring Range), send only `send` body bytes, then close/reset/stall."""

    def handler(conn: socket.socket, request: Request, server: Server) -> None:
        status, part, headers = _select(body, request, ignore_range)
        if content_range is not None:
            status, headers = 206, {"Content-Range": content_range}
        headers["Connection"] = "close"
        if chunked:
            headers["Transfer-Encoding"] = "chunked"
            payload = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in _chunks(part, 100)) + b"0\r\n\r\n"
        else:
            headers["Content-Length"] = str(len(part))
            payload = part
        head = f"HTTP/1.1 {status} X\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        conn.sendall(head.encode() + payload[:send])
        if wait_for is not None:
            wait_for.wait(WAIT_S)
        if then == "reset":
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif then == "stall":
            server.release.wait(STALL_S)

    return handler


def stall_before_headers(conn: socket.socket, request: Request, server: Server) -> None:
    server.release.wait(STALL_S)


def _chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def test_reset_mid_body_resumes_from_the_next_byte(make_client: Callable[..., HttpClient]) -> None:
    sink = RecordingSink()
    delivered_at_retry: list[int] = []
    client = make_client(on_retry=lambda exc, n: delivered_at_retry.append(len(sink.data)))
    with Server(serve(send=400, then="reset", wait_for=sink.first), serve()) as server:
        stats = client.fetch(server.url, sink, chunk_size=100)
    assert bytes(sink.data) == BODY
    assert len(delivered_at_retry) == 1 and 0 < delivered_at_retry[0] <= 400
    assert server.ranges == [None, f"bytes={delivered_at_retry[0]}-999"]
    assert stats.attempts == 2 and stats.bytes == len(BODY)


def test_cookies_set_by_one_response_and_configured_headers_go_with_the_next_requests(
    make_client: Callable[..., HttpClient],
) -> None:
    def set_cookie(conn: socket.socket, request: Request, server: Server) -> None:
        body = b"#EXTM3U\n"
        head = f"HTTP/1.1 200 OK\r\nSet-Cookie: edge=abc; Path=/\r\nContent-Length: {len(body)}\r\n"
        conn.sendall(head.encode() + b"Connection: close\r\n\r\n" + body)

    client = make_client(headers={"X-Token": "t1"})
    sink = RecordingSink()
    with Server(set_cookie, serve()) as server:
        assert client.get(server.url, max_bytes=100)[0] == b"#EXTM3U\n"
        client.fetch(server.url, sink)
    assert bytes(sink.data) == BODY
    first, second = server.requests
    assert "cookie" not in first.headers and second.headers["cookie"] == "edge=abc"
    assert first.headers["x-token"] == second.headers["x-token"] == "t1"
    assert "python-requests" in second.headers["user-agent"]


def test_on_sent_is_called_once_as_the_first_request_goes_out(make_client: Callable[..., HttpClient]) -> None:
    sink = RecordingSink()
    calls: list[str] = []
    out = threading.Event()
    answered_after_it: list[bool] = []

    def on_sent() -> None:
        calls.append(threading.current_thread().name)
        out.set()

    def after_on_sent(conn: socket.socket, request: Request, server: Server) -> None:
        answered_after_it.append(out.wait(WAIT_S))  # no response before the hook ran
        serve(send=400, then="reset")(conn, request, server)

    with Server(after_on_sent, serve()) as server:
        stats = make_client().fetch(server.url, sink, chunk_size=100, on_sent=on_sent)
    assert bytes(sink.data) == BODY and stats.attempts == 2
    assert answered_after_it == [True]
    assert calls == [threading.current_thread().name]  # once, though two requests went out


def test_truncated_body_is_resumed(make_client: Callable[..., HttpClient]) -> None:
    sink = RecordingSink()
    with Server(serve(send=600), serve()) as server:
        make_client().fetch(server.url, sink)
    assert bytes(sink.data) == BODY
    assert sink.sizes == [len(BODY)]
    assert server.ranges == [None, "bytes=600-999"]  # the size is known by then


def test_truncated_range_is_resumed_up_to_its_end(make_client: Callable[..., HttpClient]) -> None:
    sink = RecordingSink()
    with Server(serve(send=300), serve()) as server:
        make_client().fetch(server.url, sink, start=100, end=900)
    assert sink.start == 100
    assert bytes(sink.data) == BODY[100:900]
    assert server.ranges == ["bytes=100-899", "bytes=400-899"]


def test_stall_after_headers_times_out_and_resumes(make_client: Callable[..., HttpClient]) -> None:
    sink = RecordingSink()
    with Server(serve(send=500, then="stall"), serve()) as server:
        make_client(read_timeout=0.3).fetch(server.url, sink)
    assert bytes(sink.data) == BODY
    assert server.ranges == [None, "bytes=500-999"]


def test_server_ignoring_range_gives_exact_bytes(make_client: Callable[..., HttpClient]) -> None:
    sink = RecordingSink()
    with Server(serve(ignore_range=True)) as server:
        stats = make_client().fetch(server.url, sink, start=300, end=700, chunk_size=128)
    assert sink.start == 300
    assert bytes(sink.data) == BODY[300:700]
    assert sink.sizes == [len(BODY)]
    assert stats.bytes == 400


@pytest.mark.parametrize("ignore_range", [False, True])
def test_byterange_offsets_are_relative_to_the_slice(
    make_client: Callable[..., HttpClient], ignore_range: bool
) -> None:
    sink = RecordingSink()
    with Server(serve(ignore_range=ignore_range)) as server:
        make_client().fetch(server.url, sink, start=50, base=(100, 500))
    assert sink.sizes == [500]
    assert sink.start == 50
    assert bytes(sink.data) == BODY[150:600]
    assert server.ranges == ["bytes=150-599"]


def test_cut_byterange_slice_resumes(make_client: Callable[..., HttpClient]) -> None:
    sink = RecordingSink()
    with Server(serve(send=100), serve()) as server:
        make_client().fetch(server.url, sink, base=(100, 500))
    assert bytes(sink.data) == BODY[100:600]
    assert server.ranges == ["bytes=100-599", "bytes=200-599"]


def test_range_mismatch_is_an_error(make_client: Callable[..., HttpClient]) -> None:
    sink = RecordingSink()
    with Server(serve(content_range="bytes 0-999/1000")) as server, pytest.raises(RetryExhausted) as info:
        make_client(retries=1).fetch(server.url, sink, start=200)
    assert isinstance(info.value.__cause__, NetError) and info.value.__cause__.status == 206
    assert server.ranges == ["bytes=200-", "bytes=200-"]
    assert not sink.data


def test_body_to_connection_close_learns_the_size_at_the_end(make_client: Callable[..., HttpClient]) -> None:
    def no_length(conn: socket.socket, request: Request, server: Server) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + BODY)

    sink = RecordingSink()
    with Server(no_length) as server:
        stats = make_client().fetch(server.url, sink)
    assert bytes(sink.data) == BODY
    assert sink.sizes == [len(BODY)]
    assert stats.bytes == len(BODY)


def test_probe_size_with_range_0_0(make_client: Callable[..., HttpClient]) -> None:
    with Server(serve()) as server:
        assert make_client().probe(server.url) == (len(BODY), b"")
    assert server.ranges == ["bytes=0-0"]


def test_probe_tail(make_client: Callable[..., HttpClient]) -> None:
    client = make_client()
    with Server(serve()) as server:
        assert client.probe(server.url, tail=32) == (len(BODY), BODY[-32:])
        assert client.probe(server.url, base=(100, 500), tail=16) == (500, BODY[584:600])
        assert client.probe(server.url, tail=5000) == (len(BODY), BODY)
    assert server.ranges == ["bytes=-32", "bytes=584-599", "bytes=-5000"]


@pytest.mark.parametrize(("tail", "chunked"), [(0, False), (32, False), (32, True)])
def test_probe_when_range_is_ignored(
    make_client: Callable[..., HttpClient], tail: int, chunked: bool
) -> None:
    with Server(serve(ignore_range=True, chunked=chunked)) as server:
        assert make_client().probe(server.url, tail=tail) == (len(BODY), BODY[len(BODY) - tail :])


def test_probe_of_a_byterange_slice_ignoring_range(make_client: Callable[..., HttpClient]) -> None:
    with Server(serve(ignore_range=True)) as server:
        assert make_client().probe(server.url, base=(100, 500), tail=16) == (500, BODY[584:600])


def test_body_over_max_bytes_is_refused_from_headers(make_client: Callable[..., HttpClient]) -> None:
    sink = RecordingSink()
    with Server(serve()) as server, pytest.raises(AssetsError):
        make_client().fetch(server.url, sink, max_bytes=999)
    assert not sink.data
    assert len(server.requests) == 1


def test_chunked_body_over_max_bytes_is_refused_while_streaming(
    make_client: Callable[..., HttpClient],
) -> None:
    sink = RecordingSink()
    with Server(serve(chunked=True)) as server, pytest.raises(AssetsError):
        make_client().fetch(server.url, sink, max_bytes=500, chunk_size=100)
    assert len(sink.data) <= 500
    assert len(server.requests) == 1


def _fetch_in_thread(
    client: HttpClient, url: str, sink: RecordingSink
) -> tuple[threading.Thread, list[BaseException]]:
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            client.fetch(url, sink)
        except BaseException as exc:  # handed to the test thread
            outcome.append(exc)

    thread = threading.Thread(target=run, name="test-fetch")
    thread.start()
    return thread, outcome


def test_abort_interrupts_a_stalled_body(make_client: Callable[..., HttpClient]) -> None:
    client = make_client(read_timeout=60.0)
    sink = RecordingSink()
    with Server(serve(send=300, then="stall")) as server:
        thread, outcome = _fetch_in_thread(client, server.url, sink)
        assert sink.first.wait(WAIT_S)
        client.abort()
        thread.join(WAIT_S)
        assert not thread.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], Cancelled)
    assert len(server.requests) == 1


def test_abort_interrupts_a_body_read_through_a_proxy(
    make_client: Callable[..., HttpClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    client = make_client(read_timeout=60.0)
    sink = RecordingSink()
    with Server(serve(send=300, then="stall")) as proxy:
        # The loopback server plays the proxy: the request for the far host goes to it.
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        thread, outcome = _fetch_in_thread(client, "http://media.invalid/media.ts", sink)
        assert sink.first.wait(WAIT_S)
        client.abort()
        thread.join(WAIT_S)
        assert not thread.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], Cancelled)
    assert proxy.requests[0].path == "http://media.invalid/media.ts"


def test_abort_interrupts_a_wait_for_headers(make_client: Callable[..., HttpClient]) -> None:
    client = make_client(read_timeout=60.0)
    with Server(stall_before_headers) as server:
        thread, outcome = _fetch_in_thread(client, server.url, RecordingSink())
        assert server.seen.wait(WAIT_S)
        client.abort()
        thread.join(WAIT_S)
        assert not thread.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], Cancelled)


@pytest.fixture
def tls(tmp_path: Path) -> tuple[ssl.SSLContext, str]:
    """A server context with a fresh self-signed certificate for 127.0.0.1, and the CA file to trust."""
    pytest.importorskip("cryptography.x509")
    return self_signed_tls(tmp_path)


def test_tls_resume_and_abort(
    make_client: Callable[..., HttpClient], tls: tuple[ssl.SSLContext, str]
) -> None:
    context, ca_file = tls
    client = make_client(verify=ca_file, read_timeout=60.0)
    sink = RecordingSink()
    with Server(serve(send=600), serve(), tls=context) as server:
        client.fetch(server.url, sink)
    assert bytes(sink.data) == BODY
    assert server.ranges == [None, "bytes=600-999"]
    sink = RecordingSink()
    with Server(serve(send=300, then="stall"), tls=context) as server:
        thread, outcome = _fetch_in_thread(client, server.url, sink)
        assert sink.first.wait(WAIT_S)
        client.abort()
        thread.join(WAIT_S)
        assert not thread.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], Cancelled)


def test_the_configured_ca_bundle_wins_over_the_environment_and_true_takes_the_environments(
    make_client: Callable[..., HttpClient], tls: tuple[ssl.SSLContext, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    context, ca_file = tls
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", requests.certs.where())  # public CAs: not ours
    with Server(serve(), serve(), tls=context) as server:
        sink = RecordingSink()
        make_client(verify=ca_file).fetch(server.url, sink)
        assert bytes(sink.data) == BODY
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca_file)
        assert make_client(verify=True).probe(server.url) == (len(BODY), b"")


def test_probe_of_an_empty_resource(make_client: Callable[..., HttpClient]) -> None:
    def unsatisfiable(conn: socket.socket, request: Request, server: Server) -> None:
        conn.sendall(
            b"HTTP/1.1 416 X\r\nContent-Range: bytes */0\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )

    with Server(unsatisfiable) as server:
        assert make_client().probe(server.url) == (0, b"")


def test_calls_after_close_are_cancelled(make_client: Callable[..., HttpClient]) -> None:
    client = make_client()
    client.close()
    client.close()
    with pytest.raises(Cancelled):
        client.fetch("http://127.0.0.1:9/x.ts", RecordingSink())


@responses.activate
def test_a_resume_from_the_end_of_a_resource_of_unknown_size_finds_it_whole(
    make_client: Callable[..., HttpClient],
) -> None:
    # A body stored whole in an earlier run, whose size record was lost: the resume asks from its end.
    responses.add(responses.GET, MOCK_URL, status=416, headers={"Content-Range": f"bytes */{len(BODY)}"})
    sink = RecordingSink()
    stats = make_client().fetch(MOCK_URL, sink, start=len(BODY))
    assert (sink.sizes, bytes(sink.data), stats.bytes) == ([len(BODY)], b"", 0)
    assert responses.calls[0].request.headers["Range"] == f"bytes={len(BODY)}-"


@responses.activate
def test_a_resume_past_the_end_of_a_resource_is_an_error(make_client: Callable[..., HttpClient]) -> None:
    responses.add(responses.GET, MOCK_URL, status=416, headers={"Content-Range": f"bytes */{len(BODY) - 1}"})
    with pytest.raises(NetError) as caught:
        make_client().fetch(MOCK_URL, RecordingSink(), start=len(BODY))
    assert caught.value.status == 416


# --- redirects, headers, TLS and bad URLs on segment requests --------------------------------


def test_a_redirected_segment_is_followed(make_client: Callable[..., HttpClient]) -> None:
    def moved(conn: socket.socket, request: Request, server: Server) -> None:
        head = "HTTP/1.1 302 Found\r\nLocation: /moved.ts\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        conn.sendall(head.encode())

    client = make_client()
    with Server(moved, serve(), moved, serve()) as server:
        for _ in range(2):
            sink = RecordingSink()
            client.fetch(server.url, sink)
            assert bytes(sink.data) == BODY
    assert [r.path for r in server.requests] == ["/media.ts", "/moved.ts"] * 2


def test_a_configured_header_in_another_case_is_sent_once_and_a_segments_own_wins(
    make_client: Callable[..., HttpClient],
) -> None:
    # Named in another case than requests' own default Accept-Encoding.
    client = make_client(headers={"X-Token": "t1", "accept-encoding": "gzip"})
    with Server(serve()) as server:
        sink = RecordingSink()
        client.fetch(server.url, sink)
    assert bytes(sink.data) == BODY
    (request,) = server.requests
    assert request.headers["x-token"] == "t1"
    assert request.headers["accept-encoding"] == "identity"
    assert sorted(request.names) == sorted(set(request.names))


@pytest.mark.parametrize("url", ["http://", "ftp://origin.test/seg.ts", "origin.test/seg.ts"])
def test_a_bad_url_is_invalid_at_once(make_client: Callable[..., HttpClient], url: str) -> None:
    retries: list[int] = []
    client = make_client(on_retry=lambda exc, n: retries.append(n))
    with pytest.raises(InvalidUrl):
        client.fetch(url, RecordingSink())
    with pytest.raises(InvalidUrl):
        client.get(url, max_bytes=100)
    assert not retries


def test_an_untrusted_certificate_is_refused_on_segment_requests(
    make_client: Callable[..., HttpClient], tls: tuple[ssl.SSLContext, str]
) -> None:
    context, _ = tls
    with Server(serve(), tls=context) as server, pytest.raises(RetryExhausted) as info:
        make_client(retries=0).fetch(server.url, RecordingSink())
    assert isinstance(info.value.__cause__, requests.exceptions.SSLError)


# --- errors that name their cause, where, and the attempts ------------------------------------


def free_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy from the environment: a request for a made-up host goes to no machine."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "*")


@pytest.fixture
def unknown_host(monkeypatch: pytest.MonkeyPatch, no_proxy: None) -> str:
    """A host name whose lookup fails as an unknown name would, without asking any DNS server."""
    host = "media.invalid"
    real = socket.getaddrinfo

    def getaddrinfo(name: object, *args: object, **kwargs: object) -> object:
        if name == host:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return host


def test_a_refused_connection_is_named_with_host_and_attempts(make_client: Callable[..., HttpClient]) -> None:
    port = free_port()
    with pytest.raises(RetryExhausted) as info:
        make_client(retries=2).get(f"http://127.0.0.1:{port}/master.m3u8?token=secret", max_bytes=100)
    error = info.value
    assert error.cause == "connection refused" and error.attempts == 3
    assert f"connection refused by 127.0.0.1:{port} (3 attempts)" in str(error)
    assert "secret" not in str(error)
    assert isinstance(error.__cause__, requests.ConnectionError)


def test_an_unknown_host_is_named(make_client: Callable[..., HttpClient], unknown_host: str) -> None:
    with pytest.raises(RetryExhausted) as info:
        make_client(retries=1).fetch(f"http://{unknown_host}/seg.ts", RecordingSink())
    assert info.value.cause == "DNS name not found"
    assert f"DNS name not found: {unknown_host} (2 attempts)" in str(info.value)


def test_a_failed_lookup_other_than_an_unknown_name_says_what_the_resolver_said(
    make_client: Callable[..., HttpClient], monkeypatch: pytest.MonkeyPatch, no_proxy: None
) -> None:
    def getaddrinfo(*args: object, **kwargs: object) -> object:
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    with pytest.raises(RetryExhausted) as info:
        make_client(retries=0).get("http://cdn.invalid:8080/a.m3u8", max_bytes=100)
    assert info.value.cause == "DNS lookup failed: temporary failure in name resolution"
    assert "DNS lookup of cdn.invalid failed" in str(info.value) and "(1 attempt)" in str(info.value)


def test_a_server_silent_before_headers_is_a_read_timeout_with_its_seconds(
    make_client: Callable[..., HttpClient],
) -> None:
    with Server(stall_before_headers) as server, pytest.raises(RetryExhausted) as info:
        make_client(retries=1, read_timeout=0.2).get(server.url, max_bytes=100)
    assert info.value.cause == "read timed out after 0.2 s"
    assert f"reading from 127.0.0.1:{server.port} timed out after 0.2 s (2 attempts)" in str(info.value)
    assert len(server.requests) == 2


def test_a_body_that_stalls_is_a_read_timeout(make_client: Callable[..., HttpClient]) -> None:
    with Server(serve(send=500, then="stall")) as server, pytest.raises(RetryExhausted) as info:
        make_client(retries=0, read_timeout=0.2).fetch(server.url, RecordingSink())
    assert info.value.cause == "read timed out after 0.2 s"


def test_a_connect_timeout_names_the_connect_seconds(
    make_client: Callable[..., HttpClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A real connect timeout needs an address that drops packets; loopback refuses at once.
    # The connect of this one address fails as a timed-out connect does.
    port = free_port()
    real_connect = socket.socket.connect

    def connect(self: socket.socket, address: object) -> None:
        if address == ("127.0.0.1", port):
            raise TimeoutError("timed out")
        real_connect(self, address)  # type: ignore[arg-type]

    monkeypatch.setattr(socket.socket, "connect", connect)
    with pytest.raises(RetryExhausted) as info:
        make_client(retries=1, connect_timeout=1.5).get(f"http://127.0.0.1:{port}/a.m3u8", max_bytes=100)
    assert info.value.cause == "connect timed out after 1.5 s"
    assert f"connecting to 127.0.0.1:{port} timed out after 1.5 s (2 attempts)" in str(info.value)


def test_a_reset_and_a_cut_body_are_named(make_client: Callable[..., HttpClient]) -> None:
    with Server(serve(send=400, then="reset")) as server, pytest.raises(RetryExhausted) as reset:
        make_client(retries=0).fetch(server.url, RecordingSink(), chunk_size=100)
    assert reset.value.cause == "connection reset"
    assert f"connection reset by 127.0.0.1:{server.port}" in str(reset.value)
    with Server(serve(send=600)) as server, pytest.raises(RetryExhausted) as cut:
        make_client(retries=0).fetch(server.url, RecordingSink())
    assert cut.value.cause == "body cut short at 600 of 1000 bytes"
    assert f"from 127.0.0.1:{server.port} (1 attempt)" in str(cut.value)


def test_a_connection_closed_before_the_answer_is_named(make_client: Callable[..., HttpClient]) -> None:
    def hang_up(conn: socket.socket, request: Request, server: Server) -> None:
        conn.close()

    with Server(hang_up) as server, pytest.raises(RetryExhausted) as info:
        make_client(retries=0).get(server.url, max_bytes=100)
    assert info.value.cause == "connection closed before a response"


def test_an_untrusted_certificate_is_a_tls_failure_with_its_reason(
    make_client: Callable[..., HttpClient], tls: tuple[ssl.SSLContext, str]
) -> None:
    context, _ = tls
    with Server(serve(), tls=context) as server, pytest.raises(RetryExhausted) as info:
        make_client(retries=0).get(server.url, max_bytes=100)
    assert info.value.cause.startswith("TLS failure: ")
    assert "certificate" in info.value.cause
    assert f"TLS failure with 127.0.0.1:{server.port}: " in str(info.value)


@responses.activate
def test_statuses_are_named_with_their_reason_and_host(make_client: Callable[..., HttpClient]) -> None:
    responses.get(MOCK_URL, status=503)
    responses.get("http://origin.test/gone.ts", status=404)
    responses.get("http://origin.test/private.ts", status=403)
    with pytest.raises(RetryExhausted) as exhausted:
        make_client(retries=2).fetch(MOCK_URL, RecordingSink())
    assert exhausted.value.cause == "HTTP 503 Service Unavailable"
    assert "HTTP 503 Service Unavailable from origin.test (3 attempts)" in str(exhausted.value)
    assert str(exhausted.value).count("503") == 1
    with pytest.raises(SegmentNotFound) as missing:
        make_client().fetch("http://origin.test/gone.ts", RecordingSink())
    assert missing.value.cause == "HTTP 404 Not Found"
    assert str(missing.value).startswith("HTTP 404 Not Found from origin.test | ")
    with pytest.raises(NetError) as forbidden:
        make_client().get("http://origin.test/private.ts", max_bytes=100)
    assert str(forbidden.value).startswith("HTTP 403 Forbidden from origin.test | ")


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://", "malformed URL: no host"),
        ("ftp://origin.test/seg.ts", "unsupported URL scheme 'ftp'"),
        ("origin.test/seg.ts", "not a URL: it needs http:// or https://"),
    ],
)
def test_a_bad_url_says_what_is_wrong_with_it(
    make_client: Callable[..., HttpClient], url: str, words: str
) -> None:
    with pytest.raises(InvalidUrl) as info:
        make_client().get(url, max_bytes=100)
    assert str(info.value).startswith(words)
