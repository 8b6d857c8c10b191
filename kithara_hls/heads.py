"""The ID3 tag a media part begins with (packed audio), learnt from its plaintext's first bytes.

A packed audio segment begins with an ID3 tag (RFC 8216 §3.4); the stream
presents every media part after its first without it, so a part's presented
size needs the tag's length. It is learnt from the stored bytes once a
download has them (or by the reader, which needs them anyway), or from a size
probe's first bytes; for AES-128 the tag lies in the plaintext, so the first
block is decrypted. The tag's PRIV timestamp is published as `SegmentTimestamp`.
"""

from __future__ import annotations

from collections.abc import Callable

from Crypto.Util.strxor import strxor

from . import events as ev
from . import id3
from .keys import BLOCK, KeyManager
from .layout import Part
from .store import Store

#: The most of a tag read to find its PRIV timestamp (packagers write about 70 bytes).
MAX_TAG_READ = 64 * 1024


class Heads:
    """Learns the leading ID3 tag of parts (into the store, which the layout follows).

    `packed` is None until a media part's first bytes were seen, then whether
    that part began with an ID3 tag: a size probe of an AES-128 part asks for
    its first block only while it is not False.
    """

    def __init__(self, *, store: Store, keys: KeyManager, bus: ev.EventBus) -> None:
        self._store = store
        self._keys = keys
        self._bus = bus
        self.packed: bool | None = None

    def learn(self, part: Part, deadline: float, need: Callable[[], None] | None = None) -> int:
        """The length of the ID3 tag `part` begins with (0: none), read from its stored bytes
        (waiting for them until `deadline`; `need()` asks for them if they are not coming)."""
        known = self._store.head_of(part.rid)
        if known is not None:
            return known
        length = id3.tag_length(self._read(part, id3.HEADER_BYTES, deadline, need))
        stamp = None
        if length:
            stamp = id3.transport_timestamp(self._read(part, min(length, MAX_TAG_READ), deadline, need))
        self._learnt(part, length, stamp)
        head = self._store.head_of(part.rid)
        return length if head is None else head

    def from_probe(self, part: Part, first: bytes, deadline: float) -> int:
        """The tag length from a probe's first raw bytes of `part` (AES-128: its first block)."""
        if part.key is not None:
            if len(first) < BLOCK:
                return 0
            assert part.iv is not None
            plain = bytearray(BLOCK)
            self._keys.cipher_for(part, deadline).decrypt(memoryview(first[:BLOCK]), output=memoryview(plain))
            first = strxor(bytes(plain), part.iv)
        length = id3.tag_length(first)
        self._learnt(part, length, None)
        return length

    def _learnt(self, part: Part, length: int, stamp: float | None) -> None:
        if self.packed is None:
            self.packed = length > 0
        if self._store.learn_head(part.rid, length) and stamp is not None and self._bus.active:
            self._bus.publish(ev.SegmentTimestamp(part.variant, part.segment, stamp))

    def _read(self, part: Part, count: int, deadline: float, need: Callable[[], None] | None) -> bytes:
        """The first `count` plaintext bytes of `part` (fewer if it is shorter)."""
        if part.key is None:
            buf = bytearray(count)
            got = self._store.read_at_least(part.rid, 0, memoryview(buf), count, deadline, need)
            return bytes(buf[:got])
        # Only the blocks holding them are decrypted (CBC from the IV), not a reader's span.
        blocks = -(-count // BLOCK)
        raw = bytearray(blocks * BLOCK)
        got = self._store.read_at_least(part.rid, 0, memoryview(raw), len(raw), deadline, need)
        got -= got % BLOCK
        if not got:
            return b""
        assert part.iv is not None
        plain = bytearray(got)
        self._keys.cipher_for(part, deadline).decrypt(memoryview(raw)[:got], output=memoryview(plain))
        chained = part.iv + bytes(raw[: got - BLOCK])
        return strxor(bytes(plain), chained)[:count]
