"""The abandon rule (after hls.js's): a download that cannot finish before the buffer runs dry
is dropped and its segment fetched again at a variant that can. Pure.

A download in flight is judged once it has run `MIN_ELAPSED_S`: at its own rate
(bytes so far over time so far, which a stalled download makes zero), the rest
of it needs ``(size - loaded) / rate`` seconds; the reader needs its first byte
in `due_s` seconds (the buffer before it). If it finishes in time, or is nearly
whole, it stays. Otherwise the highest lower variant whose whole segment, at the
link estimate, arrives in `due_s` (after one time to first byte) is chosen, the
lowest if none does; the download is abandoned only if that variant would arrive
sooner than the rest of this one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

#: A download younger than this is not judged: its rate is mostly its latency.
MIN_ELAPSED_S = 0.5
#: A download this far along is kept whatever its rate: little is left to gain.
NEARLY_WHOLE = 0.8


@dataclass(frozen=True)
class Pending:
    """A download in flight, as the abandon rule sees it.

    variant / duration: of its segment. due_s: media seconds buffered before the
    reader needs its first byte. loaded / size: bytes so far of its total (None:
    not known yet). elapsed: seconds since its request.
    """

    variant: int
    duration: float
    due_s: float
    loaded: int
    size: int | None
    elapsed: float


def abandon_to(
    pending: Pending, bitrates: Sequence[int], estimate_bps: float, *, ttfb_s: float = 0.0
) -> int | None:
    """The variant to fetch `pending`'s segment at instead, or None to let it finish."""
    if pending.variant <= 0 or pending.elapsed < MIN_ELAPSED_S or pending.duration <= 0:
        return None
    size = pending.size
    if size is None:
        size = int(bitrates[pending.variant] * pending.duration / 8)
    if size <= 0 or pending.loaded >= NEARLY_WHOLE * size:
        return None
    rate = pending.loaded / pending.elapsed  # bytes/s
    left_s = math.inf if rate <= 0 else (size - pending.loaded) / rate
    if left_s <= pending.due_s:
        return None
    link = max(estimate_bps, 1.0) / 8.0  # bytes/s
    choice = 0
    for variant in range(pending.variant - 1, -1, -1):
        if ttfb_s + bitrates[variant] * pending.duration / 8 / link <= pending.due_s:
            choice = variant
            break
    new_s = ttfb_s + bitrates[choice] * pending.duration / 8 / link
    return choice if new_s < left_s else None
