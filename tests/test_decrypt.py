"""`Decryptor`: plaintext of AES-128 parts at every offset, straight from a `Store`."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from Crypto.Cipher import AES
from Crypto.Util.Padding import pad

from kithara_hls import CacheOptions, KeyProcessingError
from kithara_hls.cache import Cache
from kithara_hls.decrypt import DIRECT_BYTES, MAX_DIRECT, SPAN_BYTES, Decryptor
from kithara_hls.layout import Part
from kithara_hls.playlist import Key
from kithara_hls.store import BLOCK_SIZE, Store

KEY = bytes(range(16))
IV = bytes(range(100, 116))
#: Plaintext sizes: padding of 9 bytes, and a whole padding block (size a multiple of 16).
SIZES = [2 * BLOCK_SIZE + 1000 + 7, 2 * BLOCK_SIZE + 4096]


def plaintext(size: int) -> bytes:
    return random.Random(size).randbytes(size)


def encrypt(plain: bytes, key: bytes = KEY, iv: bytes = IV) -> bytes:
    return AES.new(key, AES.MODE_CBC, iv).encrypt(pad(plain, 16))


def part_of(rid: str, iv: bytes = IV, uri: str = "http://127.0.0.1/k.key") -> Part:
    return Part(rid, f"http://127.0.0.1/{rid}.ts", None, Key("AES-128", uri, None), iv, 0, 0, False, 4.0, 0.0)


def cipher(key: bytes = KEY) -> object:
    return AES.new(key, AES.MODE_ECB)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    st = Store(Cache(CacheOptions(dir=tmp_path / "cache")))
    yield st
    st.close()
    st.cache.close()


def put(store: Store, rid: str, raw: bytes) -> None:
    writer = store.writer(rid, 0)
    writer.on_size(len(raw))
    writer.on_data(0, memoryview(raw))
    writer.finish()


def count_store_reads(store: Store, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Offsets of every store read from now on."""
    offsets: list[int] = []
    real = store.read_into

    def read_into(rid: str, offset: int, out: memoryview, deadline: float, need: Callable[[], None]) -> int:
        offsets.append(offset)
        return real(rid, offset, out, deadline, need)

    monkeypatch.setattr(store, "read_into", read_into)
    return offsets


def read(dec: Decryptor, part: Part, ecb: object, off: int, size: int, deadline: float = 10.0) -> bytes:
    """Like `Reader.read_into` within one part: loop until `size` bytes or the part's end."""
    out = memoryview(bytearray(size))
    filled = 0
    while filled < size:
        until = time.monotonic() + deadline
        n = dec.read_into(part, ecb, off + filled, out[filled:], until, lambda: None)  # type: ignore[arg-type]
        if n == 0:
            break
        filled += n
    return bytes(out[:filled])


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize(
    "step", [1, 15, 16, 17, 4096, 10_000, DIRECT_BYTES - 1, DIRECT_BYTES, BLOCK_SIZE + 5]
)
def test_sequential_reads_are_exact(store: Store, size: int, step: int):
    plain = plaintext(size)
    put(store, "seg", encrypt(plain))
    dec, part, ecb = Decryptor(store), part_of("seg"), cipher()
    got, off = [], 0
    while chunk := read(dec, part, ecb, off, step):
        got.append(chunk)
        off += len(chunk)
    assert b"".join(got) == plain


@pytest.mark.parametrize("size", SIZES)
def test_reads_around_the_padding(store: Store, size: int):
    plain = plaintext(size)
    put(store, "seg", encrypt(plain))
    dec, part, ecb = Decryptor(store), part_of("seg"), cipher()
    for off in range(size - 40, size + 20):
        for length in (1, 7, 16, 33, DIRECT_BYTES):
            assert read(dec, part, ecb, off, length) == plain[off : off + length], (off, length)


@pytest.mark.parametrize("fresh", [False, True], ids=["shared", "fresh"])
def test_random_reads_are_exact(store: Store, fresh: bool):
    size = SIZES[0]
    plain = plaintext(size)
    put(store, "seg", encrypt(plain))
    part, ecb, rng = part_of("seg"), cipher(), random.Random(7)
    dec = Decryptor(store)
    for _ in range(400):
        off = rng.randrange(size + 10)
        length = rng.choice([1, 16, 100, 4096, DIRECT_BYTES, BLOCK_SIZE, 3 * BLOCK_SIZE])
        got = read(Decryptor(store) if fresh else dec, part, ecb, off, length)
        assert got == plain[off : off + length], (off, length)


def test_a_read_larger_than_one_direct_step(store: Store):
    size = MAX_DIRECT + BLOCK_SIZE + 3
    plain = plaintext(size)
    put(store, "seg", encrypt(plain))
    dec, part, ecb = Decryptor(store), part_of("seg"), cipher()
    assert read(dec, part, ecb, 0, size + 100) == plain
    assert read(dec, part, ecb, 5, size) == plain[5:]


def test_small_reads_are_served_from_the_kept_span(store: Store, monkeypatch: pytest.MonkeyPatch):
    plain = plaintext(SIZES[0])
    put(store, "seg", encrypt(plain))
    dec, part, ecb = Decryptor(store), part_of("seg"), cipher()
    offsets = count_store_reads(store, monkeypatch)
    assert read(dec, part, ecb, 1000, 4096) == plain[1000:5096]
    first = len(offsets)
    for off in range(5096, SPAN_BYTES - 4096, 4096):  # the rest of the store block
        assert read(dec, part, ecb, off, 4096) == plain[off : off + 4096]
    assert read(dec, part, ecb, 1001, 100) == plain[1001:1101]  # a seek back into the span
    assert len(offsets) == first
    off = SPAN_BYTES - 100  # crosses into the next store block: a new span
    assert read(dec, part, ecb, off, 4096) == plain[off : off + 4096]
    second = len(offsets)
    assert second > first
    assert read(dec, part, ecb, off + 4096, 4096) == plain[off + 4096 : off + 8192]
    assert len(offsets) == second


def test_the_small_rest_of_a_large_read_decrypts_straight_into_it(
    store: Store, monkeypatch: pytest.MonkeyPatch
):
    plain = plaintext(SIZES[0])
    put(store, "seg", encrypt(plain))
    dec, part, ecb = Decryptor(store), part_of("seg"), cipher()
    for off, length in ((0, 4096), (17, 100), (BLOCK_SIZE - 5, 3000)):
        out = memoryview(bytearray(length))
        n = dec.read_into(part, ecb, off, out, time.monotonic() + 10, lambda: None, BLOCK_SIZE)  # type: ignore[arg-type]
        assert bytes(out[:n]) == plain[off : off + length], (off, length)
    # Nothing was decrypted ahead into a span for the next read to copy from: a small
    # read where those were goes to the store again.
    offsets = count_store_reads(store, monkeypatch)
    assert read(dec, part, ecb, 20, 16) == plain[20:36]
    assert offsets


def test_a_large_read_starting_in_a_kept_span(store: Store):
    plain = plaintext(SIZES[0])
    put(store, "seg", encrypt(plain))
    dec, part, ecb = Decryptor(store), part_of("seg"), cipher()
    assert read(dec, part, ecb, BLOCK_SIZE - 100, 50) == plain[BLOCK_SIZE - 100 : BLOCK_SIZE - 50]
    off = BLOCK_SIZE - 3000
    assert read(dec, part, ecb, off, 2 * BLOCK_SIZE) == plain[off : off + 2 * BLOCK_SIZE]


def test_spans_tell_parts_apart(store: Store):
    """Same resource, another IV or key: kept plaintext of one never answers a read of the other."""
    plain = plaintext(SIZES[1])
    raw = encrypt(plain)
    put(store, "seg", raw)
    other_iv, other_key = bytes(16), bytes(range(1, 17))
    dec = Decryptor(store)
    assert read(dec, part_of("seg"), cipher(), 0, 100) == plain[:100]
    assert (
        read(dec, part_of("seg", iv=other_iv), cipher(), 0, 100)
        == (AES.new(KEY, AES.MODE_CBC, other_iv).decrypt(raw[:112])[:100])
    )
    key2 = part_of("seg", uri="http://127.0.0.1/k2.key")
    assert (
        read(dec, key2, cipher(other_key), 0, 100)
        == (AES.new(other_key, AES.MODE_CBC, IV).decrypt(raw[:112])[:100])
    )
    assert read(dec, part_of("seg"), cipher(), 50, 100) == plain[50:150]


@pytest.mark.parametrize("length", [100, DIRECT_BYTES])
def test_wrong_key_fails_on_the_padding(store: Store, length: int):
    put(store, "seg", encrypt(plaintext(SIZES[0])))
    dec = Decryptor(store)
    with pytest.raises(KeyProcessingError, match="padding"):
        read(dec, part_of("seg"), cipher(bytes(16)), SIZES[0] - 10, length)


def test_a_small_read_waits_only_for_its_own_bytes(store: Store):
    """While a part downloads, a small read returns what it asked for; its span ends where the data does."""
    plain = plaintext(SIZES[0])
    raw = encrypt(plain)
    writer = store.writer("seg", 0)
    writer.on_size(len(raw))
    writer.on_data(0, memoryview(raw[:100_000]))
    dec, part, ecb = Decryptor(store), part_of("seg"), cipher()
    assert read(dec, part, ecb, 0, 4096, deadline=5.0) == plain[:4096]
    assert read(dec, part, ecb, 90_000, 9_000, deadline=5.0) == plain[90_000:99_000]
    writer.on_data(100_000, memoryview(raw[100_000:]))
    writer.finish()
    assert read(dec, part, ecb, 99_000, len(plain)) == plain[99_000:]


def test_concurrent_readers_share_one_decryptor(store: Store):
    plain = plaintext(SIZES[0])
    put(store, "seg", encrypt(plain))
    dec, part, ecb = Decryptor(store), part_of("seg"), cipher()
    errors: list[tuple[int, int]] = []

    def reader(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(300):
            off, length = rng.randrange(len(plain)), rng.choice([1, 17, 4096, 30_000, DIRECT_BYTES])
            if read(dec, part, ecb, off, length) != plain[off : off + length]:
                errors.append((off, length))

    threads = [threading.Thread(target=reader, args=(seed,), name=f"test-reader-{seed}") for seed in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
