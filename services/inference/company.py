"""How many windows per second a waiting batch can expect to join it: the batcher's company rate.

Counting every arrival would be wrong for a client that sends its next request only when the last
is answered: waiting for "company" would only delay the one request it will ever send meanwhile,
and cap it at one request per wait. Such requests always find the batcher idle. So only arrivals
that find it busy (something queued or in the model) count, and their rate is divided by the share
of time the batcher is busy: arrivals independent of the batcher find it busy in that share of
cases (Poisson arrivals see time averages), so the quotient is their whole rate, while a client
waiting for its answers contributes nothing. The share is floored at ``MIN_BUSY_SHARE`` so that a
stray overlap on a nearly idle service does not read as a crowd.

Both averages are exponential over ``HORIZON_S``: long enough to smooth a gateway's bursts (its
sessions' windows come in step every 0.5 s hop), short enough to follow a load that changes.
"""

from __future__ import annotations

import math

HORIZON_S = 2.0
MIN_BUSY_SHARE = 0.25


class CompanyRate:
    """Feed it every arrival (``arrived``) and every change between idle and busy (``busy``)."""

    def __init__(self) -> None:
        self._overlapping = 0.0  # windows/s that arrived while busy, as of _overlapping_at
        self._overlapping_at = 0.0
        self._busy_share = 0.0  # share of time busy, as of _busy_at, ...
        self._busy_at = 0.0
        self._busy = False  # ... and whether it has been busy since

    def arrived(self, windows: int, now: float) -> None:
        """``windows`` were submitted at ``now``; call before they are queued."""
        if self._busy:
            self._overlapping = self.overlapping_rate(now) + windows / HORIZON_S
            self._overlapping_at = now
        else:
            self.busy(True, now)

    def busy(self, busy: bool, now: float) -> None:
        """The batcher became busy (a request queued on an idle batcher) or idle (nothing queued
        and nothing in the model)."""
        if busy != self._busy:
            self._busy_share = self.busy_share(now)
            self._busy_at = now
            self._busy = busy

    def overlapping_rate(self, now: float) -> float:
        """Windows per second that arrived while the batcher was busy."""
        return self._overlapping * math.exp(-max(0.0, now - self._overlapping_at) / HORIZON_S)

    def busy_share(self, now: float) -> float:
        """The share of the recent past the batcher was busy."""
        decay = math.exp(-max(0.0, now - self._busy_at) / HORIZON_S)
        return self._busy_share * decay + (1.0 - decay) * (1.0 if self._busy else 0.0)

    def rate(self, now: float) -> float:
        """Windows per second of company: the overlapping rate over the busy share."""
        return self.overlapping_rate(now) / max(MIN_BUSY_SHARE, self.busy_share(now))
