"""A tracing window's points, reduced to what the fit needs: per route its centred cumulative
request counts, per site its centred sizes and how they moved."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

from .rules import LEVEL_IDS, RELEASE_BYTES, RELEASE_SHARE


def centred(values: Sequence[float]) -> List[float]:
    """``values`` minus their mean."""
    mean = sum(values) / len(values) if values else 0.0
    return [v - mean for v in values]


@dataclass
class WindowCounts:
    """One window's per-route request counts: centred cumulative counts at each point
    (routes that served requests in it only), the requests each route finished, and (when
    they were read) the centred counts a few requests after each point (``late``)."""

    number: int
    points: int
    dx: Dict[int, List[float]]
    requests: Dict[int, int]
    late: Optional[Dict[int, List[float]]] = None
    #: Traced with more than one frame: an allocation made under an endpoint's call is keyed
    #: by that endpoint's frame (see :meth:`.code_prior.EndpointIndex.key_of`).
    deep: bool = False
    #: The share of a planned window's requests it spans (below 1 for a window its traced
    #: blocks ended early: see :class:`.evidence.EvidenceStore`).
    share: float = 1.0

    def at(self, weight: float) -> WindowCounts:
        """The same window with the counts ``dx + weight * (late - dx)`` (``self`` when
        there are no late counts or ``weight`` is 0)."""
        if not weight or self.late is None:
            return self
        dx = {r: [a + weight * (b - a) for a, b in zip(x, self.late[r])]
              for r, x in self.dx.items()}
        return WindowCounts(self.number, self.points, dx, self.requests, deep=self.deep,
                            share=self.share)


@dataclass
class SiteWindow:
    """One site's sizes in one window: centred ``dy``, their sum of squares, the growth in
    bytes and blocks from the first point to the last, how many of the size's changes
    between consecutive points were rises, and whether the site gave back, in one step, most
    of what it had gained in the window (``released``: see :func:`released`)."""

    dy: List[float]
    yy: float
    growth: int
    blocks: int
    steps: int
    rises: int
    released: bool = False


def site_window(sizes: Sequence[int], blocks: Sequence[int]) -> SiteWindow:
    """Reduce a site's sizes (and block counts) at a window's points."""
    dy = centred(sizes)
    steps = rises = 0
    for before, after in zip(sizes, sizes[1:]):
        if after != before:
            steps += 1
            rises += after > before
    return SiteWindow(dy, sum(v * v for v in dy), sizes[-1] - sizes[0],
                      blocks[-1] - blocks[0], steps, rises, released(sizes))


def released(sizes: Sequence[int]) -> bool:
    """Whether the site, having gained at least ``RELEASE_BYTES`` since the window's first
    point, fell between two consecutive points to less than ``RELEASE_SHARE`` of that gain.
    A leak never gives back what it kept; a queue or buffer that holds something per request
    and is emptied in batches (spans waiting for their exporter, records in a buffering log
    handler, finished threads a server reaps now and then) does: between its releases it
    grows with every request like a leak, and a window that holds no release cannot tell the
    two apart."""
    first = sizes[0] if sizes else 0
    for before, after in zip(sizes, sizes[1:]):
        gained = before - first
        if gained >= RELEASE_BYTES and after - first < RELEASE_SHARE * gained:
            return True
    return False


def window_counts(number: int, counts: Sequence[Sequence[int]],
                  late: Optional[Sequence[Sequence[int]]] = None,
                  deep: bool = False, share: float = 1.0) -> WindowCounts:
    """A window's :class:`WindowCounts` from the per-route counts at each point (``share``:
    see :attr:`WindowCounts.share`).

    ``late[k]``, when given, holds the counts a few requests after point ``k``'s snapshot.
    The snapshot already holds what requests in flight kept before it, yet they are counted
    only when they finish. How many of them had kept their bytes depends on the app (where
    in the handler it keeps them, how much of the concurrency waits in the client): the fit
    chooses between the counts at the snapshot and their mean with the late ones
    (:func:`.fit.prepare`), so both are kept."""
    points = len(counts)
    width = max((len(c) for c in counts), default=0)
    dx: Dict[int, List[float]] = {}
    after: Dict[int, List[float]] = {}
    requests: Dict[int, int] = {}
    has_late = late is not None and len(late) == points
    for r in range(width):
        column = [c[r] if r < len(c) else 0 for c in counts]
        if r in LEVEL_IDS:
            # A level, not a count: it moves both ways, and no request finished under it.
            if max(column) == min(column):
                continue
        elif column[-1] == column[0]:
            continue
        dx[r] = centred(column)
        if has_late:
            after[r] = centred([c[r] if r < len(c) else 0 for c in late])  # type: ignore
        requests[r] = 0 if r in LEVEL_IDS else column[-1] - column[0]
    return WindowCounts(number, points, dx, requests, after if has_late else None, deep, share)
