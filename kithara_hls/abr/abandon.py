"""The abandon rule (after hls.js's): a download that cannot finish before the buffer runs dry
is dropped and its segment fetched again at a variant that can. Pure.

A download in flight is judged once it has run half its segment's duration (and
`MIN_ELAPSED_S`), as hls.js waits, so a download that started beside others is
not judged by its first moments. Alone on the link it goes on at the link
estimate, whose recent rate shows a collapse its own average hides, or, when
the reader needs it `PATIENT_DUE_SEGMENTS` segment durations from now or later,
at the smoothed estimate: a lasting collapse brings that down within seconds, long
before the buffer runs dry, and a tunnel of a few seconds does not; beside
others, at its own rate so far (zero when stalled) or at its share of the link
estimate, whichever is faster (downloads in flight beside it end and leave it
the link); the rest of it needs
``(size - loaded) / rate`` seconds; the reader needs its first byte
in `due_s` seconds (the buffer before it). If it finishes in time, or is nearly
whole, it stays. Otherwise the highest lower variant whose whole segment, at the
link estimate, arrives in `due_s` (after one time to first byte) is chosen, the
lowest if none does; the download is abandoned only if that variant would arrive
sooner than the rest of this one, and within ten segment durations.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

#: A download younger than this is not judged: its rate is mostly its latency.
MIN_ELAPSED_S = 0.5
#: ... nor before this share of its segment's duration.
MIN_ELAPSED_SHARE = 0.5
#: No abandon for a replacement that would take longer than this many segment durations.
MAX_REPLACEMENT_SHARE = 10.0
#: A download this far along is kept whatever its rate: little is left to gain.
NEARLY_WHOLE = 0.8
#: Due this many segment durations away or more, a download alone on the link is judged at the
#: smoothed estimate rather than the recent rate.
PATIENT_DUE_SEGMENTS = 4.0


@dataclass(frozen=True)
class Pending:
    """A download in flight, as the abandon rule sees it.

    variant / duration: of its segment. due_s: media seconds buffered before the
    reader needs its first byte. loaded / size: bytes so far of its total (None:
    not known yet). elapsed: seconds since its request. sharing: downloads in
    flight, itself included.
    """

    variant: int
    duration: float
    due_s: float
    loaded: int
    size: int | None
    elapsed: float
    sharing: int = 1


def abandon_to(
    pending: Pending,
    bitrates: Sequence[int],
    estimate_bps: float,
    *,
    fresh_bps: float | None = None,
    ttfb_s: float = 0.0,
) -> int | None:
    """The variant to fetch `pending`'s segment at instead, or None to let it finish.

    estimate_bps: the link estimate, recent stalls included; fresh_bps: what a new
    request may expect (the smoothed estimate: one stalled connection is not the
    link), `estimate_bps` if None.
    """
    if pending.variant <= 0 or pending.duration <= 0:
        return None
    if pending.elapsed < max(MIN_ELAPSED_S, MIN_ELAPSED_SHARE * pending.duration):
        return None
    size = pending.size
    if size is None:
        size = int(bitrates[pending.variant] * pending.duration / 8)
    if size <= 0 or pending.loaded >= NEARLY_WHOLE * size:
        return None
    fresh = estimate_bps if fresh_bps is None else fresh_bps
    patient = pending.due_s >= PATIENT_DUE_SEGMENTS * pending.duration
    link = max(fresh if patient else estimate_bps, 1.0) / 8.0  # bytes/s
    # Alone on the link, the link's rate (recent unless patient): its own average lags a collapse.
    own = pending.loaded / pending.elapsed if pending.sharing > 1 else 0.0
    rate = max(own, link / max(pending.sharing, 1))
    left_s = math.inf if rate <= 0 else (size - pending.loaded) / rate
    if left_s <= pending.due_s:
        return None
    link = max(fresh, 1.0) / 8.0
    choice = 0
    for variant in range(pending.variant - 1, -1, -1):
        if ttfb_s + bitrates[variant] * pending.duration / 8 / link <= pending.due_s:
            choice = variant
            break
    new_s = ttfb_s + bitrates[choice] * pending.duration / 8 / link
    if new_s >= left_s or new_s > MAX_REPLACEMENT_SHARE * pending.duration:
        return None
    return choice
