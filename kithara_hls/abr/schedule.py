"""How many downloads may be in flight ahead of the reader (no thread, no I/O).

Downloads in flight share the link: with `n` of them, the one the reader
needs next gets about a n-th of it. So parallel look-ahead is allowed only as
far as the link pays for it: ``n`` downloads of segments at `media_bps` need
``n × media_bps × NEAR_HEADROOM`` of link for each to arrive at `NEAR_HEADROOM`
times real time. On a fast link (a pinned variant on a WAN, a seek on loopback)
that is every worker; on a link that barely carries the variant it is one. The buffer is not
spent on parallelism: a next segment slowed by sharing the link is what stalls
a reader when the link drops.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ..options import AbrOptions
from .controller import AbrController
from .meter import LinkMeter

if TYPE_CHECKING:
    from ..layout import Part
    from ..playlist import Variant
    from ..store import SizeInfo

#: How much faster than real time the next segment must arrive while it shares the link.
NEAR_HEADROOM = 1.5


def parallel_limit(*, link_bps: float, media_bps: float, workers: int) -> int:
    """Downloads allowed in flight ahead of the reader (at least 1, at most `workers`).

    link_bps: the link estimate. media_bps: the bitrate of what is fetched (0:
    unknown, then every worker).
    """
    if media_bps <= 0 or link_bps <= 0:
        return workers if media_bps <= 0 else 1
    return max(1, min(workers, int(link_bps / (media_bps * NEAR_HEADROOM))))


class FetchSchedule:
    """The fetch pool's `limit`: downloads allowed in flight before a part starts.

    variants(): the ladder. size_info(rid): a resource's size, where known (for a ladder
    without BANDWIDTH). controller(): ABR's controller, None while ABR does not run.
    start_known: the link's rate was known at open (the option or the origin's stored
    estimate), so the first download need not measure it alone. settling(): ABR's first
    choice on the measured link is not in the plan yet (without `start_known`, the
    look-ahead waits for it: the parts after the first are fetched where the link is).
    """

    def __init__(
        self,
        *,
        meter: LinkMeter,
        variants: Callable[[], Sequence[Variant]],
        size_info: Callable[[str], SizeInfo | None],
        controller: Callable[[], AbrController | None],
        abr: AbrOptions,
        workers: int,
        start_known: bool,
        settling: Callable[[], bool] = lambda: False,
    ) -> None:
        self._meter = meter
        self._variants = variants
        self._size_info = size_info
        self._controller = controller
        self._abr = abr
        self._workers = workers
        self._start_known = start_known
        self._settling = settling
        self._media_bps = 0.0  # the last segment's bitrate from its size, for a ladder without BANDWIDTH

    def limit(self, buffer_s: float, part: Part) -> int:
        """Downloads allowed in flight before `part` starts (called under the pool's lock)."""
        variants = self._variants()
        rate = float(variants[part.variant].bitrate) if part.variant < len(variants) else 0.0
        if rate <= 0:
            # No BANDWIDTH: the bitrate of the segments whose sizes are known.
            info = self._size_info(part.rid) if part.duration > 0 else None
            if info is not None:
                self._media_bps = info.size * 8 / part.duration
            rate = self._media_bps
        meter = self._meter
        # A link neither measured nor known: one download, until the first one measures it.
        known = self._start_known or meter.measured_bytes() > 0
        link = meter.estimate() if known else 0.0
        ctl = self._controller()
        if ctl is not None and ctl.manual is None and link > 0:
            if not self._start_known and self._settling():
                return 0  # the link was just measured: the look-ahead waits for ABR's first choice
            # ABR may move up to what the link affords: look ahead as if it had ...
            if part.variant > ctl.current:
                return 0  # ABR moved down: the re-plan of this part is on its way
            rate = max(rate, float(variants[ctl.affordable(link)].bitrate))
            # ... and hold the look-ahead once ABR may move up, or the buffer fills with the
            # low variant while the switch waits for its interval; while the switch waits for
            # a segment of buffer, that segment alone goes.
            hold = self._abr.min_buffer_for_up_switch_secs + part.duration
            if buffer_s >= hold and part.variant < ctl.affordable(link, up=True):
                return 1 if ctl.waiting else 0
            # With ABR the buffer stops at its target: what lies beyond is fetched at the
            # variant chosen then, and a long buffer of a low variant outlasts a better link.
            if buffer_s >= self._abr.buffer_target_secs:
                return 0
        return parallel_limit(link_bps=link, media_bps=rate, workers=self._workers)
