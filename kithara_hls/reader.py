"""The read path: reads at virtual offsets become store reads, AES-128 decrypted on the way.

A read locates its part in the layout, tells the pool (and ABR) where the
reader is, and copies from the store, waiting on a range, never on a whole
segment. Offsets past the known sizes are resolved first: a part's size comes
from its download's headers, or from a probe batched with those ahead. A read
after a seek by time names its part instead (`read_at`): it needs no size of
the parts before it.

A packed audio part after the stream's first is read past its ID3 tag (whose
length its first bytes tell). A gap no variant fills (size 0) raises
`SegmentGap` in the read that reaches it, once the bytes before it are returned.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from . import events as ev
from .decrypt import Decryptor
from .errors import AssetsError, HlsError, NetError, SegmentGap
from .fetch import PROBE_BATCH, FetchPool
from .heads import Heads
from .keys import KeyManager
from .layout import Layout, Part
from .store import Store, Superseded
from .switching import Switcher


class Reader:
    """Reads the stream for one source.

    learn_pad(part): learns an AES part's padding from its stored last blocks.
    """

    def __init__(
        self,
        *,
        layout: Layout,
        pool: FetchPool,
        store: Store,
        keys: KeyManager,
        decryptor: Decryptor,
        switcher: Switcher,
        bus: ev.EventBus,
        learn_pad: Callable[[Part], None],
        heads: Heads,
        read_deadline_s: float,
        duration: float,
    ) -> None:
        self._layout = layout
        self._pool = pool
        self._store = store
        self._keys = keys
        self._decryptor = decryptor
        self._switcher = switcher
        self._bus = bus
        self._learn_pad = learn_pad
        self._heads = heads
        self._read_deadline_s = read_deadline_s
        self._duration = duration
        self._lock = threading.Lock()
        self._part = -1
        self._ended = False
        self._eos_sent = False
        self._shown: Part | None = None  # the part whose bytes were last returned
        #: The variant the reader was last returned bytes of (None before the first read).
        self.variant: int | None = None

    @property
    def part(self) -> int:
        """Index of the part the reader is in (-1 before the first read)."""
        return self._part

    def deadline(self) -> float:
        """The monotonic deadline of a read starting now."""
        return time.monotonic() + self._read_deadline_s

    def read_into(self, pos: int, out: memoryview) -> int:
        """Fill `out` from virtual offset `pos`; short only at the end of the stream."""
        deadline = self.deadline()
        filled = 0
        layout, pool = self._layout, self._pool
        if self._part < 0:
            self._bus.seal()
        while filled < len(out):
            if time.monotonic() > deadline:
                raise NetError("no data within the read deadline")
            index, off = layout.locate(pos + filled)
            if index >= len(layout):
                self._end()
                break
            if filled and layout.part(index).gap:
                break  # the bytes before the gap now; the next read raises
            part = self._enter(index)
            # Past its start, the part's size placed `pos`: it is frozen before the read.
            if off > 0 and not layout.hold(index, part):
                continue  # re-planned meanwhile: locate again
            # A part still in its download task will tell its size: from its headers, or
            # (AES-128 padding) just after its body is stored.
            if off > 0 and layout.size_of(index) is None and not pool.in_flight(part.rid):
                self.resolve_sizes(index, index + 1, deadline, ahead=PROBE_BATCH)
                continue
            n = self._read_held(index, part, off, out[filled:], deadline, len(out))
            if n is None:
                continue
            if n == 0:
                self._settle_size(index, part, off)
                continue
            filled += n
        return filled

    def read_at(self, index: int, inner: int, out: memoryview) -> tuple[int, int, int]:
        """Fill `out` from offset `inner` in part `index`, whatever the part's absolute offset.

        Returns (bytes read, part, offset in it) of the position after them; short
        only at the end of the stream. The sizes of earlier parts are never needed.
        """
        deadline = self.deadline()
        filled = 0
        if self._part < 0:
            self._bus.seal()
        while filled < len(out):
            if time.monotonic() > deadline:
                raise NetError("no data within the read deadline")
            if index >= len(self._layout):
                self._end()
                break
            if filled and self._layout.part(index).gap:
                break
            part = self._enter(index)
            if inner > 0 and not self._layout.hold(index, part):
                continue  # re-planned meanwhile: read the new part from `inner` (never reached)
            n = self._read_held(index, part, inner, out[filled:], deadline, len(out))
            if n is None:
                continue
            if n == 0:
                self._settle_size(index, part, inner)
                index, inner = index + 1, 0
                continue
            filled += n
            inner += n
        return filled, index, inner

    def land(self, index: int) -> None:
        """A seek lands at the start of part `index`: freeze the parts before it (an ABR switch
        may re-plan from it until its first bytes are read), download it now, and look ahead."""
        if index < len(self._layout):
            self._layout.commit(index - 1)
            if not self._layout.part(index).gap:  # a gap is never requested
                self._pool.demand(index)
            self._pool.set_reader(index)

    def resolve_sizes(self, start: int, stop: int, deadline: float, ahead: int = 0) -> None:
        """Wait until parts [start, stop) have known sizes; probes them (and `ahead` more) in parallel.

        An ABR switch may replace parts meanwhile: the wait then starts over on
        the new plan, so no part is waited for that nobody will fetch.
        """
        while True:
            generation = self._store.generation
            unknown = self._layout.unknown(start, stop + ahead)
            # Asked again on each plan: the pool skips what is queued or running, and a
            # probe an ABR switch cancelled must be asked for again.
            self._pool.probe(unknown)
            waiting = [i for i in unknown if i < stop]
            if not waiting:
                return
            # Waited for in order, each once: sizes arrive about in order, so a pass
            # costs the number of parts, not that many times over.
            for index in waiting:
                if not self._wait_size(index, deadline, generation):
                    break

    def buffer_level(self) -> float:
        """Media seconds stored contiguously ahead of the read position."""
        index = max(self._part, 0)
        if index >= len(self._layout):
            return 0.0
        level = 0.0
        for part in self._layout.parts(index):
            if not self._pool.is_done(part.rid):
                break
            level += part.duration
        return level

    def rest_level(self, buffer_s: float) -> float:
        """Media seconds from the end of the buffer (`buffer_s`, as `buffer_level` measured it)
        to the end of the stream."""
        index = max(self._part, 0)
        if index >= len(self._layout):
            return 0.0
        return max(self._duration - self._layout.part(index).start - buffer_s, 0.0)

    def downloads_idle(self) -> None:
        """No download is in flight: EndOfStream follows if the reader reached the end."""
        with self._lock:
            if not self._ended or self._eos_sent:
                return
            self._eos_sent = True
        self._bus.publish(ev.EndOfStream())

    def _enter(self, index: int) -> Part:
        """Part `index`, where the reader is now (the parts before it are frozen; it is, once
        bytes of it are returned); look-ahead and ABR follow. A gap raises `SegmentGap`."""
        part = self._layout.part(index)
        self._layout.enter(index)
        if index != self._part:
            self._entered(index, part)
        if part.gap:
            raise SegmentGap("EXT-X-GAP: no variant has this segment", url=part.url, segment=part.segment)
        return part

    def _entered(self, index: int, part: Part) -> None:
        """The reader moved into part `index`: events, look-ahead and ABR follow."""
        self._part = index
        self._pool.set_reader(index)
        if self._duration > 0:
            percent = min(100.0, 100.0 * part.start / self._duration)
            self._bus.publish(ev.PlaybackProgress(part.start, percent))
        self._switcher.poke()

    def _read_held(
        self, index: int, part: Part, off: int, out: memoryview, deadline: float, asked: int
    ) -> int | None:
        """`_read_part`, whose bytes count only if part `index` is still `part` once they are
        here (it is then frozen); None if a re-plan replaced it first: read the plan again."""
        try:
            n = self._read_part(index, part, off, out, deadline, asked)
        except Superseded:
            return None  # (its mark was cleared on the way out)
        if n and not self._layout.hold(index, part):
            self._store.clear_error(part.rid)  # a mark the re-plan left for this read
            return None
        if n and part is not self._shown:
            self._shown = part
            if part.variant != self.variant:
                previous, self.variant = self.variant, part.variant
                self._bus.publish(ev.VariantApplied(previous, part.variant, self._switcher.reason_at(index)))
        return n

    def _read_part(
        self, index: int, part: Part, off: int, out: memoryview, deadline: float, asked: int
    ) -> int:
        pool, switcher = self._pool, self._switcher

        def need() -> None:
            pool.demand(index)
            switcher.poke()

        try:
            skip = self._layout.skip(index)
            if skip is None:
                skip = self._heads.learn(part, deadline, need)
            if part.key is None:
                return self._store.read_into(part.rid, off + skip, out, deadline, need)
            cipher = self._keys.cipher_for(part, deadline)
            plain = self._layout.size_of(index)
            if plain is not None:
                # A read that ends where the plaintext does needs no look at the padding block.
                out = out[: max(0, plain - off)]
            return self._decryptor.read_into(part, cipher, off + skip, out, deadline, need, asked)
        except HlsError:
            self._store.clear_error(part.rid)
            raise

    def _settle_size(self, index: int, part: Part, off: int) -> None:
        """A part read to its end: make sure the layout knows its size, or the loop would spin."""
        size = self._layout.size_of(index)
        if size is not None:
            if off < size:
                message = f"ended at {off} of {size} bytes (the resource changed?)"
                raise AssetsError(message, url=part.url, segment=part.segment)
            return
        info = self._store.size_info(part.rid)
        if part.key is not None and (info is None or info.pad is None):
            self._learn_pad(part)
            info = self._store.size_info(part.rid)
        if info is not None:
            self._layout.learn(part.rid, info)  # the store may have learnt it from another writer
        if info is None or self._layout.size_of(index) is None:
            raise HlsError("size of a finished part is unknown", url=part.url, segment=part.segment)

    def _wait_size(self, index: int, deadline: float, generation: int) -> bool:
        """Wait for the size of part `index`; False if the plan changed first (an ABR switch)."""
        found = self._layout.parts(index, index + 1)
        if not found:  # a switch shortened the plan
            return False
        part = found[0]
        try:
            need_head = self._layout.strips(index)
            info = self._store.wait_size(part.rid, part.key is not None, deadline, generation, need_head)
        except HlsError:
            self._store.clear_error(part.rid)
            raise
        if info is None:
            return False
        # The layout may have been built after the store learnt this size.
        self._layout.learn(part.rid, info)
        return True

    def _end(self) -> None:
        """The reader reached the end; EndOfStream follows once downloads in flight have finished."""
        with self._lock:
            if self._ended:
                return
            self._ended = True
        self._bus.publish(ev.PlaybackProgress(self._duration, 100.0))
        if self._pool.idle():
            self.downloads_idle()
