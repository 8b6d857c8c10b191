"""How many downloads may be in flight ahead of the reader. Pure.

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
