"""Is a heap site retaining memory per request? The statistics behind the leak watch.

The watch traces in windows. Within a window it snapshots the heap at regular points and, for
each (allocation site, endpoint) key, records the site's retained size ``y`` and the endpoint's
finished request count ``x`` at each point. Objects of requests still in flight make ``y``
jump up and down at random; memory that requests leave behind makes it climb with ``x``.

Per key, the evidence of its recent windows is pooled into one least-squares slope of ``y``
on ``x`` with a separate intercept per window (levels are not comparable across windows:
tracing restarts). The slope is the bytes retained per request; its t-value says whether the
climb stands out of the in-flight noise, which is bounded and does not grow with ``x``. A key
is a leak when the slope is large enough, clearly non-zero, the size's changes were nearly all
rises (in-flight memory falls as often as it rises), there are enough requests behind it, and
its most recent windows still grew (a cache that filled up and stopped fails this).

Nothing here touches tracemalloc: the functions take plain numbers, so they are tested on
synthetic series.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, replace
from typing import Deque, Iterable, List, Optional, Sequence


@dataclass(frozen=True)
class WindowFit:
    """One key's points in one tracing window, reduced to what pooling needs.

    ``cxx``, ``cxy``, ``cyy`` are sums of products of deviations from the window's means;
    ``requests`` and ``growth``/``blocks`` are the changes from the first point to the last;
    ``steps`` counts consecutive points between which the size changed, ``rises`` those where
    it rose (retained memory only rises; in-flight memory rises and falls alike).
    """

    points: int
    cxx: float
    cxy: float
    cyy: float
    requests: int
    growth: int
    blocks: int
    steps: int
    rises: int

    @property
    def slope(self) -> float:
        """Bytes per request within this window alone (0 without spread in ``x``)."""
        return self.cxy / self.cxx if self.cxx > 0 else 0.0


def fit_window(
    requests: Sequence[int], sizes: Sequence[int], blocks: Optional[Sequence[int]] = None
) -> WindowFit:
    """Reduce one window's points: ``requests[i]`` finished requests of the endpoint and
    ``sizes[i]`` bytes retained at the site (``blocks[i]`` blocks) at point ``i``."""
    n = len(requests)
    if n != len(sizes) or (blocks is not None and len(blocks) != n):
        raise ValueError("requests, sizes and blocks need one value per point")
    if n == 0:
        return WindowFit(0, 0.0, 0.0, 0.0, 0, 0, 0, 0, 0)
    mean_x = sum(requests) / n
    mean_y = sum(sizes) / n
    cxx = cxy = cyy = 0.0
    for x, y in zip(requests, sizes):
        dx, dy = x - mean_x, y - mean_y
        cxx += dx * dx
        cxy += dx * dy
        cyy += dy * dy
    steps = rises = 0
    for i in range(1, n):
        if sizes[i] != sizes[i - 1]:
            steps += 1
            rises += sizes[i] > sizes[i - 1]
    return WindowFit(
        n, cxx, cxy, cyy, requests[-1] - requests[0], sizes[-1] - sizes[0],
        blocks[-1] - blocks[0] if blocks is not None else 0, steps, rises,
    )


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
    """

    min_bytes_per_request: float = 256.0
    min_requests: int = 20
    min_t: float = 8.0
    min_rise_share: float = 0.8
    min_latest_share: float = 0.5

    def for_candidates(self) -> LeakCriteria:
        """A quarter of the requests and half the t-value: enough to spend a confirming
        window on."""
        return replace(self, min_requests=max(1, self.min_requests // 4), min_t=self.min_t / 2)


@dataclass(frozen=True)
class Estimate:
    """Pooled evidence of one key: ``per_request`` bytes retained per request (the slope),
    its ``t_value``, ``requests`` spanned, ``growth`` bytes and ``blocks`` gained over them,
    the share of ``rises``, and the most recent windows' growth against the slope's
    prediction."""

    per_request: float
    t_value: float
    requests: int
    growth: int
    blocks: int
    rise_share: float
    windows: int
    latest_share: float

    def is_leak(self, criteria: LeakCriteria) -> bool:
        """Whether this evidence meets ``criteria``."""
        return (
            self.requests >= criteria.min_requests
            and self.per_request >= criteria.min_bytes_per_request
            and self.t_value >= criteria.min_t
            and self.rise_share >= criteria.min_rise_share
            and self.latest_share >= criteria.min_latest_share
        )


def pool(fits: Iterable[WindowFit], recent_requests: int = 1) -> Estimate:
    """One slope over several windows, each with its own intercept. ``latest_share`` compares
    the most recent windows spanning at least ``recent_requests`` requests (at least the last
    window) with the slope's prediction for them."""
    fits = [f for f in fits if f.points > 0]
    points = sum(f.points for f in fits)
    cxx = sum(f.cxx for f in fits)
    cxy = sum(f.cxy for f in fits)
    cyy = sum(f.cyy for f in fits)
    steps = sum(f.steps for f in fits)
    rise_share = sum(f.rises for f in fits) / steps if steps else 0.0
    slope = cxy / cxx if cxx > 0 else 0.0
    dof = points - len(fits) - 1
    if cxx <= 0 or dof <= 0:
        t_value = 0.0
    else:
        residual = max(cyy - slope * cxy, 0.0)
        standard_error = math.sqrt(residual / dof / cxx)
        # A perfectly straight climb has no error: as certain as evidence gets.
        no_error = math.inf if slope > 0 else 0.0
        t_value = slope / standard_error if standard_error > 0 else no_error
    recent_growth = recent = 0
    for fit in reversed(fits):
        recent_growth += fit.growth
        recent += fit.requests
        if recent >= recent_requests:
            break
    expected = slope * recent
    latest_share = recent_growth / expected if expected > 0 else 0.0
    return Estimate(
        slope, t_value, sum(f.requests for f in fits), sum(f.growth for f in fits),
        sum(f.blocks for f in fits), rise_share, len(fits), latest_share,
    )


class Evidence:
    """One key's recent window fits. :meth:`estimate` pools the latest ``windows`` of them, or
    more when those span fewer than ``requests`` requests (a route with little traffic),
    up to ``8 * windows``."""

    __slots__ = ("fits", "last_window", "windows", "requests")

    def __init__(self, windows: int, requests: int = 1) -> None:
        self.fits: Deque[WindowFit] = deque(maxlen=8 * windows)
        self.last_window = -1
        self.windows = windows
        self.requests = requests

    def add(self, fit: WindowFit, window: int) -> None:
        """Record ``fit`` as this key's evidence from window number ``window``."""
        self.fits.append(fit)
        self.last_window = window

    def estimate(self) -> Estimate:
        """The pooled estimate over the latest windows (see the class)."""
        chosen: List[WindowFit] = []
        spanned = 0
        for fit in reversed(self.fits):
            if len(chosen) >= self.windows and spanned >= self.requests:
                break
            chosen.append(fit)
            spanned += fit.requests
        chosen.reverse()
        return pool(chosen, recent_requests=max(1, self.requests // 4))
