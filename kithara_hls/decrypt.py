"""Plaintext of AES-128 parts at any offset, decrypted from the store's raw bytes.

CBC needs only the previous ciphertext block as IV, so a read anywhere costs
one extra block. pycryptodome's CBC mode decrypts one block at a time (about
0.5 GB/s); ECB over a whole span, then one XOR with the ciphertext shifted by
a block, gives the same bytes at several GB/s. Large reads decrypt straight
into the caller's buffer. A small read decrypts what the store already holds
of the store block around it and keeps that span, so the small reads after it
(or a short seek back) are copies. Buffers are reused, so reads allocate
nothing that grows with their size.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from Crypto.Util.strxor import strxor

from .errors import KeyProcessingError
from .keys import BLOCK, BlockDecrypter, pad_length
from .layout import Part
from .store import BLOCK_SIZE, Store

#: A small read decrypts ahead to the end of the store block holding it.
SPAN_BYTES = BLOCK_SIZE
#: Reads at least this large decrypt straight into the caller's buffer (must stay below SPAN_BYTES).
DIRECT_BYTES = 64 * 1024
#: Most plaintext one direct call decrypts (bounds each thread's ciphertext buffer; callers loop).
MAX_DIRECT = 2**20
#: Decrypted spans kept for small reads.
KEPT_SPANS = 2


class _Span:
    """Plaintext of one part from `start`, in a buffer the next span reuses: touched only under the lock."""

    __slots__ = ("buf", "cipher", "filled", "final", "iv", "rid", "start")

    def __init__(self) -> None:
        self.buf = bytearray(SPAN_BYTES)
        self.rid: str | None = None
        self.iv: bytes | None = None
        self.cipher: BlockDecrypter | None = None
        self.start = self.filled = 0
        self.final = False  # ends where the part's plaintext ends (padding removed)

    def holds(self, part: Part, cipher: BlockDecrypter, off: int) -> bool:
        """True when this span answers a read of `part` at `off` (its end too, if it is the part's)."""
        stop = self.start + self.filled
        return (
            self.rid == part.rid
            and self.cipher is cipher
            and self.iv == part.iv
            and self.start <= off
            and (off < stop or (self.final and off == stop))
        )

    def copy(self, off: int, out: memoryview) -> int:
        """Copy from `off` into `out`; 0 at (or, in a final span, past) the part's end."""
        inner = off - self.start
        n = max(0, min(len(out), self.filled - inner))
        out[:n] = memoryview(self.buf)[inner : inner + n]
        return n

    def fill(self, part: Part, cipher: BlockDecrypter, first: int, raw: memoryview, final: bool) -> None:
        """Decrypt `raw` (the IV of block `first`, then whole blocks) as plaintext of `part`."""
        self.rid = None  # if the padding check fails, this span answers nothing
        blocks = len(raw) // BLOCK - 1
        plain = memoryview(self.buf)[: blocks * BLOCK]
        _cbc(cipher, raw, 0, blocks, plain)
        self.filled = blocks * BLOCK - (pad_length(plain[-BLOCK:], part) if final else 0)
        self.iv, self.cipher, self.start, self.final = part.iv, cipher, first * BLOCK, final
        self.rid = part.rid


class Decryptor:
    """Reads plaintext of AES-128 parts out of a `Store`; safe to share between reader threads."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._spans: list[_Span] = []  # most recently used first
        self._local = threading.local()  # each reader thread's ciphertext buffer

    def read_into(
        self,
        part: Part,
        cipher: BlockDecrypter,
        off: int,
        out: memoryview,
        deadline: float,
        need: Callable[[], None],
        asked: int = 0,
    ) -> int:
        """Copy plaintext of `part` at `off` into `out` (`cipher`: its key in ECB mode); 0 at its end.

        asked: how much the caller's read asked for in all, when `out` is its rest
        past a part boundary. A large read decrypts straight into `out`, however
        little of it falls in this part: decrypting ahead into a span would only
        make the next large read copy from it.
        May return fewer bytes than `out` holds before the part's end: callers loop.
        """
        assert part.iv is not None
        with self._lock:
            for i, span in enumerate(self._spans):
                if span.holds(part, cipher, off):
                    self._spans.insert(0, self._spans.pop(i))
                    return span.copy(off, out)
        if max(len(out), asked) >= DIRECT_BYTES:
            return self._read_direct(part, cipher, off, out, deadline, need)
        return self._read_spanned(part, cipher, off, out, deadline, need)

    def _read_spanned(
        self,
        part: Part,
        cipher: BlockDecrypter,
        off: int,
        out: memoryview,
        deadline: float,
        need: Callable[[], None],
    ) -> int:
        """Decrypt from `off`'s block through `out`, and on to the end of the store block as far as the
        store already holds it; keep that span and copy from it."""
        first = off // BLOCK
        needed = -(-(off + len(out)) // BLOCK)
        reach = max(needed, (off // SPAN_BYTES + 1) * SPAN_BYTES // BLOCK)
        raw, end, final = self._ciphertext(part, first, reach, needed, deadline, need)
        if end <= first:
            return 0
        with self._lock:
            span = self._spans.pop() if len(self._spans) == KEPT_SPANS else _Span()
            self._spans.insert(0, span)
            span.fill(part, cipher, first, raw[: (end - first + 1) * BLOCK], final)
            return span.copy(off, out)

    def _read_direct(
        self,
        part: Part,
        cipher: BlockDecrypter,
        off: int,
        out: memoryview,
        deadline: float,
        need: Callable[[], None],
    ) -> int:
        """Decrypt whole blocks straight into `out`; a block cut by `off`, by the end of `out` or by
        the padding passes through a 16-byte scratch."""
        first, skip = divmod(off, BLOCK)
        stop = min(-(-(off + len(out)) // BLOCK), first + MAX_DIRECT // BLOCK)
        raw, end, final = self._ciphertext(part, first, stop, stop, deadline, need)
        if end <= first:
            return 0
        # Blocks [lo, hi) lie whole inside `out` and hold no padding.
        lo = first + 1 if skip else first
        hi = min(end - 1 if final else end, (off + len(out)) // BLOCK)
        if lo < hi:
            _cbc(cipher, raw, lo - first, hi - first, out[lo * BLOCK - off : hi * BLOCK - off])
        limit = end * BLOCK
        for index in (first,) if first == end - 1 else (first, end - 1):
            if lo <= index < hi:
                continue
            plain = memoryview(bytearray(BLOCK))
            _cbc(cipher, raw, index - first, index - first + 1, plain)
            if final and index == end - 1:
                limit -= pad_length(plain, part)
            _place(plain[: limit - index * BLOCK], index * BLOCK - off, out)
        return max(0, min(len(out), limit - off))

    def _ciphertext(
        self, part: Part, first: int, reach: int, needed: int, deadline: float, need: Callable[[], None]
    ) -> tuple[memoryview, int, bool]:
        """The IV of block `first`, then raw blocks from `first`: up to `needed` (fewer only at the
        resource's end), and on towards `reach` as far as the store answers without waiting.

        Also the index past the last whole block read, and whether it is the part's end.
        """
        assert part.iv is not None
        view = self._buffer((reach - first + 1) * BLOCK)
        wanted = (needed - first + 1) * BLOCK
        if first:
            got = self._store.read_at_least(part.rid, (first - 1) * BLOCK, view, wanted, deadline, need)
            raw = view[:got]
        else:
            view[:BLOCK] = part.iv
            got = self._store.read_at_least(part.rid, 0, view[BLOCK:], wanted - BLOCK, deadline, need)
            raw = view[: BLOCK + got]
        end = first + len(raw) // BLOCK - 1
        return raw, end, end * BLOCK == self._size(part, deadline)

    def _buffer(self, size: int) -> memoryview:
        """This thread's ciphertext buffer, `size` bytes long (reused: it grows, up to MAX_DIRECT)."""
        buf: bytearray | None = getattr(self._local, "buf", None)
        if buf is None or len(buf) < size:
            buf = self._local.buf = bytearray(max(size, SPAN_BYTES + BLOCK))
        return memoryview(buf)[:size]

    def _size(self, part: Part, deadline: float) -> int:
        """The raw size of `part` (known once its bytes were read), checked for whole blocks."""
        info = self._store.wait_size(part.rid, False, deadline)
        assert info is not None
        if info.size % BLOCK:
            raise KeyProcessingError(
                "ciphertext length is not a multiple of 16", url=part.url, segment=part.segment
            )
        return info.size


def _cbc(cipher: BlockDecrypter, raw: memoryview, lo: int, hi: int, out: memoryview) -> None:
    """CBC-decrypt blocks [lo, hi) of `raw` into `out`; `raw` starts one block early, with the IV."""
    cipher.decrypt(raw[(lo + 1) * BLOCK : (hi + 1) * BLOCK], output=out)
    strxor(out, raw[lo * BLOCK : hi * BLOCK], output=out)


def _place(plain: memoryview, at: int, out: memoryview) -> None:
    """Copy what fits of `plain`, whose first byte belongs at `out[at]` (`at` may be negative)."""
    lo, hi = max(0, -at), min(len(plain), len(out) - at)
    if lo < hi:
        out[at + lo : at + hi] = plain[lo:hi]
