"""When the leak watch's evidence says "leak": the criteria, and the estimate they judge."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class LeakCriteria:
    """When pooled evidence says "leak".

    - ``min_bytes_per_request``: smallest retained bytes per request worth a warning.
    - ``min_requests``: requests of the endpoint the evidence must span.
    - ``min_t``: how far the slope must stand out of the noise (slope / its standard error).
    - ``min_rise_share``: share of the size's changes between consecutive points that were
      rises.
    - ``min_latest_share``: the most recent windows (enough of them to span a quarter of
      ``min_requests``) must have grown by at least this share of what the slope predicts
      for their requests.
    - ``min_retained``: bytes the route's requests inside the windows pooled must have kept at
      that rate. A bounded cache, pool or table that fills and then stops holds less than
      this when full and is never named however fast it fills, nor is a fill that tracing
      sees anew in every window; a leak passes it once it has kept that much.
    - ``min_latest_t``: the route's slope in the latest window alone (the other routes'
      slopes held) must stand this far out of the noise. When that window is a confirming
      one, this is evidence the candidate was not chosen on: a route whose counts matched
      noise by chance in earlier windows has a slope about 0 there.
    """

    min_bytes_per_request: float = 256.0
    min_requests: int = 20
    min_t: float = 8.0
    min_rise_share: float = 0.8
    min_latest_share: float = 0.5
    min_latest_t: float = 2.0
    min_retained: float = 64 * 1024

    def for_candidates(self) -> LeakCriteria:
        """A quarter of the requests and half the t-value: enough to spend a confirming
        window on."""
        return replace(self, min_requests=max(1, self.min_requests // 4), min_t=self.min_t / 2,
                       min_latest_t=self.min_latest_t / 2, min_retained=self.min_retained / 4)


@dataclass(frozen=True)
class Estimate:
    """Pooled evidence of one key: ``per_request`` bytes retained per request (the slope),
    its ``t_value``, ``requests`` spanned, ``growth`` bytes and ``blocks`` gained over them,
    the share of ``rises``, and the most recent windows' growth against the slope's
    prediction, ``retained`` the bytes kept at that rate by the route's requests inside the
    windows pooled, and ``latest_t`` the t-value of the slope
    in the latest window alone (infinite when that window holds too few of the route's
    requests to say)."""

    per_request: float
    t_value: float
    requests: int
    growth: int
    blocks: int
    rise_share: float
    windows: int
    latest_share: float
    latest_t: float = math.inf
    retained: float = math.inf

    def is_leak(self, criteria: LeakCriteria) -> bool:
        """Whether this evidence meets ``criteria``."""
        return (
            self.requests >= criteria.min_requests
            and self.per_request >= criteria.min_bytes_per_request
            and self.t_value >= criteria.min_t
            and self.rise_share >= criteria.min_rise_share
            and self.latest_share >= criteria.min_latest_share
            and self.latest_t >= criteria.min_latest_t
            and self.retained >= criteria.min_retained
        )
