"""A tracing window's points, reduced to what the fit needs: per route its centred cumulative
request counts, per site its centred sizes and how they moved."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence


def centred(values: Sequence[float]) -> List[float]:
    """``values`` minus their mean."""
    mean = sum(values) / len(values) if values else 0.0
    return [v - mean for v in values]


@dataclass
class WindowCounts:
    """One window's per-route request counts: centred cumulative counts at each point
    (routes that served requests in it only) and the requests each route finished."""

    number: int
    points: int
    dx: Dict[int, List[float]]
    requests: Dict[int, int]


@dataclass
class SiteWindow:
    """One site's sizes in one window: centred ``dy``, their sum of squares, the growth in
    bytes and blocks from the first point to the last, and how many of the size's changes
    between consecutive points were rises."""

    dy: List[float]
    yy: float
    growth: int
    blocks: int
    steps: int
    rises: int


def site_window(sizes: Sequence[int], blocks: Sequence[int]) -> SiteWindow:
    """Reduce a site's sizes (and block counts) at a window's points."""
    dy = centred(sizes)
    steps = rises = 0
    for before, after in zip(sizes, sizes[1:]):
        if after != before:
            steps += 1
            rises += after > before
    return SiteWindow(dy, sum(v * v for v in dy), sizes[-1] - sizes[0],
                      blocks[-1] - blocks[0], steps, rises)


def window_counts(number: int, counts: Sequence[Sequence[int]],
                  late: Optional[Sequence[Sequence[int]]] = None) -> WindowCounts:
    """A window's :class:`WindowCounts` from the per-route counts at each point.

    ``late[k]``, when given, holds the counts a few requests after point ``k``'s snapshot.
    The snapshot already holds what requests in flight kept before it, yet they are counted
    only when they finish: a route whose requests are in flight at a point has its count
    low there and the other routes' relatively high, which biases the split between two
    routes that retain at one site (the larger rate pulled down, the smaller pushed up).
    The mean of the counts at the snapshot and a little later is fitted instead."""
    points = len(counts)
    width = max((len(c) for c in counts), default=0)
    dx: Dict[int, List[float]] = {}
    requests: Dict[int, int] = {}
    for r in range(width):
        column = [c[r] if r < len(c) else 0 for c in counts]
        if column[-1] != column[0]:
            if late is not None and len(late) == points:
                after = [c[r] if r < len(c) else 0 for c in late]
                dx[r] = centred([(a + b) / 2 for a, b in zip(column, after)])
            else:
                dx[r] = centred(column)
            requests[r] = column[-1] - column[0]
    return WindowCounts(number, points, dx, requests)
