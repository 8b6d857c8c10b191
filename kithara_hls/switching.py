"""Variant switching: ABR's decisions and `set_variant` re-plan the parts the reader has not reached.

A switch replaces the layout's parts from the first one neither frozen (see
`layout`: the reader's own is not while it was returned no byte of it) nor being
downloaded (an urgent switch also abandons downloads in flight) with the same
media time on the new variant; the reason is kept by the part where the new
plan starts, so the reader can tell why when it gets there. Offline, ABR plays
per segment the best variant the cache holds whole (`offline_plan`).

Switches stay inside the switch set the stream started in (`switchsets`): before
ABR first switches to a variant, that variant's first bytes are looked at (on a
fetch worker); one a decoder could not follow is excluded from ABR's choice,
and `set_variant` to it raises `IncompatibleVariant` once bytes were read.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
from collections.abc import Callable

from . import events as ev
from . import gaps
from .abr.abandon import Pending
from .abr.controller import AbrDecision
from .abr.driver import AbrDriver
from .abr.meter import LinkMeter
from .abr.schedule import NEAR_HEADROOM
from .bookkeeping import Bookkeeping
from .errors import IncompatibleVariant, OfflineMiss, VariantNotFound
from .fetch import FetchPool
from .keys import KeyManager
from .layout import Layout, Part, build_mixed
from .loader import PlaylistLoader
from .options import AbrOptions
from .playlist import MediaPlaylist
from .store import SizeInfo, Store
from .switchsets import SwitchSets

log = logging.getLogger(__name__)

#: Parts after the reader looked at for downloads an urgent switch drops before its re-plan.
DROP_WINDOW = 64
#: Tries of a switch whose re-plan meets the reader moving past its first part.
SWITCH_TRIES = 8
#: An up-switch re-plans stored parts this many media seconds past the reader's part: the
#: buffer beyond is fetched again on the better variant (dash.js's fast switching).
REPLACE_LEAD_S = 8.0
#: ... when the estimate brings the better variant at least this many times faster than it plays:
#: the replacements are segments near the reader, which the fetch schedule asks to arrive this
#: much faster than real time; on a link that only just brings the variant, a replaced buffer
#: is the one a dip then finds empty.
REPLACE_SPEED = NEAR_HEADROOM


class Switcher:
    """Moves the stream's plan between variants, for ABR (its thread) and for `set_variant`.

    reason: why the plan starts on the variant it does (initial, or a manual pin).
    abandon(rids): stops the downloads of resources a new plan dropped.
    sets: what each variant is; `home` is the variant whose switch set the stream plays.
    has_read(): whether bytes of the stream were read (its set is then fixed).
    """

    def __init__(
        self,
        *,
        layout: Layout,
        loader: PlaylistLoader,
        store: Store,
        pool: FetchPool,
        keys: KeyManager,
        books: Bookkeeping,
        bus: ev.EventBus,
        abandon: Callable[[set[str]], None],
        reason: ev.AbrReason,
        sets: SwitchSets,
    ) -> None:
        self._layout = layout
        self._loader = loader
        self._store = store
        self._pool = pool
        self._keys = keys
        self._books = books
        self._bus = bus
        self._abandon = abandon
        self._lock = threading.Lock()
        self._reasons: dict[int, ev.AbrReason] = {0: reason}  # part index where a plan starts -> why
        self.driver: AbrDriver | None = None
        self.sets = sets
        self.home = layout.part(0).variant if len(layout) else 0
        self.has_read: Callable[[], bool] = lambda: False
        self._pinned: int | None = None  # the variant set_variant pinned (and checked)
        self._fast_switching = False  # AbrOptions.fast_switching, once ABR runs
        #: A switch waits for its variant's playlist (the pool holds back a demand it replaces).
        self.replanning = False
        #: ABR's first choice on the measured link is not in the plan yet.
        self.settling = True

    def start_abr(
        self,
        options: AbrOptions,
        *,
        meter: LinkMeter,
        lookahead_s: float,
        buffer_level: Callable[[], float],
        rest_level: Callable[[float], float] | None = None,
        manual: int | None,
        on_crash: Callable[[BaseException], None],
        initial_estimate_bps: float | None = None,
    ) -> None:
        """Start the ABR thread over the variants' bitrates, on the link `meter` measures."""
        self._fast_switching = options.fast_switching
        if options.buffer_target_secs > lookahead_s:
            # The buffer can never hold more than the look-ahead window.
            options = dataclasses.replace(options, buffer_target_secs=lookahead_s)
        self.driver = AbrDriver(
            [v.bitrate for v in self._loader.variants],
            options,
            meter=meter,
            buffer_level=buffer_level,
            rest_level=rest_level,
            frontier=self.frontier,
            initial_estimate_bps=initial_estimate_bps,
            segment_s=self._loader.loaded()[self.home].target_duration,
            on_first=self._settled,
            on_wait=self._pool.invalidate,
            apply=self.apply,
            bus=self._bus,
            manual=manual,
            on_crash=on_crash,
        )

    def reason_at(self, index: int) -> ev.AbrReason:
        """Why the plan holding part `index` was made."""
        with self._lock:
            return self._reasons[max(k for k in self._reasons if k <= index)]

    def poke(self) -> None:
        """The buffer changed (the reader advanced, or blocked): ABR decides again."""
        if self.driver is not None:
            self.driver.poke()

    def sample(self, nbytes: int, transfer_s: float, ttfb_s: float) -> None:
        """A download of `nbytes` took `transfer_s` (after `ttfb_s` to its headers): feed ABR."""
        if self.driver is not None:
            self.driver.sample(nbytes, transfer_s, ttfb_s)
        elif self._bus.active and transfer_s > 0 and nbytes > 0:
            self._bus.publish(ev.ThroughputSample(nbytes / transfer_s))

    def frontier(self, buffer_s: float) -> Pending | None:
        """The download in flight of the first part not stored from the first one a re-plan may
        replace (the reader's own, while it was returned no byte of it), which the abandon rule
        may drop, if the reader started; due when the reader gets there (`buffer_s`, or the media
        time from the start of the reader's part if longer)."""
        layout = self._layout
        reader = layout.reader
        if reader < 0 or self.driver is None:
            return None  # not playing yet: nothing runs dry
        index = self._pool.first_unstarted(max(reader, layout.committed), started_counts=False)
        found = layout.parts(reader, index + 1)
        if len(found) < index - reader + 1:
            return None
        here, part = found[0], found[-1]
        due = max(buffer_s, part.start - here.start)
        downloads = self.driver.meter.downloads()
        for d in downloads:
            if d.rid == part.rid:
                return Pending(part.variant, part.duration, due, d.loaded, d.size, d.elapsed, len(downloads))
        return None

    def decisions(self) -> list[AbrDecision]:
        """What ABR decided, and why (oldest first)."""
        return [] if self.driver is None else self.driver.decisions()

    def set_variant(self, variant: int | None) -> None:
        """Pin `variant` (ABR off) or, with None, let ABR choose again.

        Once bytes were read, a variant of another switch set raises
        `IncompatibleVariant`; before, the stream starts on that variant's set.
        """
        count = len(self._loader.variants)
        if variant is not None and not 0 <= variant < count:
            raise VariantNotFound(f"variant {variant} of {count}")
        if variant is not None:
            # Loaded (and its bytes looked at) on the caller's thread, so the switch is
            # planned, or refused, before this returns.
            self._add_variant(variant)
            self._check_set(variant)
        self._pinned = variant
        if self.driver is not None:
            self.driver.set_manual(variant)
            if variant is not None:
                # ABR may have chosen this variant already (its switch still on a worker): the
                # pin is then no change to it, yet the plan must move now, as a pin's does.
                self._switch(variant, ev.AbrReason.MANUAL)

    def same_set(self, a: int, b: int) -> bool:
        """Whether a decoder can follow a switch from variant `a` to `b`, as far as known now (no I/O)."""
        return self.sets.same_set(a, b)

    def switch_sets(self) -> tuple[tuple[int, ...], ...]:
        """The switch sets (indices into the variants), after looking at the first bytes of each
        variant not seen yet (a small request each, on the caller's thread)."""
        if len(self._loader.variants) == 1:
            return ((0,),)
        for variant in range(len(self._loader.variants)):
            self._learn(variant)
        return self.sets.sets()

    def apply(self, decision: AbrDecision) -> None:
        """Carry out an ABR decision (on the ABR thread, or the caller's of `set_variant`)."""
        reason = decision.reason or ev.AbrReason.MANUAL
        variant = decision.to_variant
        bitrate = self._loader.variants[variant].bitrate
        replace = (
            self._fast_switching
            and reason == ev.AbrReason.UP
            and 0 < bitrate * REPLACE_SPEED <= decision.estimate_bps
        )
        # A pin was checked by set_variant; any other choice (ABR's, or where the controller
        # goes back to when unpinned) is looked at once, before its first switch.
        pinned = reason == ev.AbrReason.MANUAL and variant == self._pinned
        known = pinned or (self.sets.known(variant) and self.sets.known(self.home))
        if variant in self._loader.loaded() and known:
            if pinned or self._admit(variant):
                self._switch(variant, reason, replace=replace)
        else:
            if reason == ev.AbrReason.URGENT:
                # The link is too slow for what is in flight: free it for the playlist load.
                self._drop_above(variant)
            self.replanning = True
            self._pool.submit(lambda: self._load_and_switch(variant, reason, replace))

    def _settled(self) -> None:
        """ABR made its first choice on the measured link (its playlist load ends the wait, if one
        is on its way): the look-ahead goes on."""
        if not self.replanning:
            self.settling = False
            self._pool.invalidate()

    def _drop_above(self, variant: int) -> None:
        """Abandon downloads in flight of parts not reached yet, planned above `variant` (the pool
        holds them back until the re-plan replaces them)."""
        layout = self._layout
        ahead = layout.parts(layout.committed, layout.committed + DROP_WINDOW)
        self._abandon({p.rid for p in ahead if p.variant > variant and self._pool.in_flight(p.rid)})

    def close(self) -> None:
        """Stop the ABR thread (joined, bounded). Idempotent."""
        if self.driver is not None:
            self.driver.close()

    def threads(self) -> list[threading.Thread]:
        """The ABR thread, if ABR runs."""
        return [] if self.driver is None else [self.driver.thread]

    def _add_variant(self, variant: int) -> None:
        """Load, check and record the media playlist of another variant."""
        fresh = variant not in self._loader.loaded()
        media = self._loader.media(variant)
        if fresh:
            self._keys.check(media)
            self._books.record_variant(media, variant)

    def _load_and_switch(self, variant: int, reason: ev.AbrReason, replace: bool) -> None:
        try:
            self._add_variant(variant)
            self._learn(self.home)
            self._learn(variant)
            if self._admit(variant) and self.driver is not None and self.driver.current == variant:
                self._switch(variant, reason, replace=replace)
        finally:
            self.replanning = self.settling = False
            self._pool.invalidate()  # a demand held for this re-plan goes on

    def _learn(self, variant: int) -> None:
        """Look at `variant`'s first bytes, from its part in the plan if it has one (no request)."""
        if self.sets.known(variant):
            return
        planned = [p for p in self._layout.parts(0, 2) if p.variant == variant]
        self.sets.learn(variant, planned[:1])

    def _check_set(self, variant: int) -> None:
        """Before the first read the stream moves to `variant`'s set; after, it must be in it."""
        if not self.has_read():
            self.home = variant
            self._exclude()
            return
        self._learn(self.home)
        self._learn(variant)
        differences = self.sets.differences(self.home, variant)
        if differences:
            raise IncompatibleVariant(
                f"variant {variant} is not in the switch set of variant {self.home} the stream plays "
                f"({'; '.join(differences)}): a decoder cannot follow that switch",
                differences=tuple(differences),
                url=self._loader.variants[variant].uri,
            )

    def _admit(self, variant: int) -> bool:
        """Whether ABR may switch to `variant`; if not, it is excluded and ABR decides again."""
        if self.sets.same_set(self.home, variant):
            return True
        log.info(
            "variant %d left out of ABR: %s", variant, "; ".join(self.sets.differences(self.home, variant))
        )
        self._exclude()
        return False

    def _exclude(self) -> None:
        """Tell ABR the variants known to be outside the stream's switch set."""
        if self.driver is None:
            return
        known = [v for v in range(len(self._loader.variants)) if self.sets.known(v)]
        excluded = frozenset(v for v in known if not self.sets.same_set(self.home, v))
        parts = self._layout.parts()
        self.driver.exclude(excluded, parts[-1].variant if parts else self.home)

    def _switch(self, variant: int, reason: ev.AbrReason, *, replace: bool = False) -> None:
        """Re-plan the parts the reader has not reached (nor the pool started) on `variant`;
        `replace`: also those stored beyond REPLACE_LEAD_S past the reader's part."""
        layout, loaded = self._layout, self._loader.loaded()
        media = loaded[variant]
        urgent = reason == ev.AbrReason.URGENT
        # A pin before the first read: the stream starts on it, whatever was fetched already.
        restart = reason == ev.AbrReason.MANUAL and not self.has_read()
        with self._lock:
            for _ in range(SWITCH_TRIES):
                # Urgent: also re-plan (and abandon) downloads in flight.
                index = self._pool.first_unstarted(layout.committed, started_counts=not urgent)
                if replace:
                    # The parts beginning within the lead stay; the first after it is re-planned.
                    lead = layout.window(layout.committed, REPLACE_LEAD_S)
                    index = min(index, layout.committed + len(lead))
                index = layout.committed if restart else index
                if index >= len(layout) or layout.part(index).variant == variant:
                    return
                old = layout.part(index)
                first = media.segment_at(old.start + 1e-3)
                before = layout.part(index - 1) if index else None
                current_init = (
                    None if before is None else loaded[before.variant].segments[before.segment].init
                )
                parts = gaps.plan(media, variant, loaded, first, current_init, compatible=self.same_set)
                olds = layout.parts(index)
                dropped = {p.rid for p in olds} - {p.rid for p in parts}
                if layout.replace_from(index, parts):
                    self._abandon(dropped)
                    if layout.reader == index and olds[0].rid in dropped:
                        # The reader waits on the part it replaced (it had no byte of it).
                        self._store.supersede(olds[0].rid)
                    self._store.poke()
                    for start in [k for k in self._reasons if k >= index]:
                        del self._reasons[start]
                    self._reasons[index] = reason
                    learn_byteranges(layout, parts)
                    self._pool.invalidate()
                    log.debug("switch to variant %d (%s) from part %d", variant, reason.value, index)
                    return


def learn_byteranges(layout: Layout, parts: list[Part]) -> None:
    """Teach `layout` the sizes BYTERANGE tells (of clear parts: an AES part's padding is unknown)."""
    for part in parts:
        if part.byterange is not None and part.key is None:
            layout.learn(part.rid, SizeInfo(part.byterange.length))


def offline_plan(
    loader: PlaylistLoader, store: Store, base: MediaPlaylist, first: int, sets: SwitchSets
) -> list[Part]:
    """Offline with ABR: per segment of `base` (variant `first`), the best variant of its switch
    set the cache holds whole."""
    for variant in range(len(loader.variants)):
        with contextlib.suppress(OfflineMiss):  # a variant the cache lacks plays nowhere
            loader.media(variant)
    loaded = loader.loaded()
    for variant in loaded:
        sets.learn(variant)  # from the cache: a variant it lacks stays unknown
    order = sorted((v for v in loaded if sets.same_set(first, v)), reverse=True)  # highest bitrate first
    choices = []
    for seg in base.segments:
        pick = (base, first, seg.index)
        for variant in order:
            media = loaded[variant]
            index = media.segment_at(seg.start + 1e-3)
            if store.load(build_mixed([(media, variant, index)])[-1].rid)[1]:
                pick = (media, variant, index)
                break
        choices.append(pick)
    return build_mixed(choices)
