"""Leaks tracemalloc cannot see: per route, growth of the process's RSS that the traced
growth does not explain (memory a C library allocates with its own ``malloc``).

Between tracing windows the watch reads the RSS every ``snapshot_every`` requests (about a
microsecond: no tracing, no snapshot) together with the routes' counts. The readings form
*segments* (a pause between two windows, cut into at most ``rules.NATIVE_POINTS`` readings). What is
fitted is the **high-water mark** (the largest RSS of the segment so far), and its
*increments* between consecutive readings on the routes' counts in the same intervals: the
same fit as a traced site's (:func:`.fit.fit_site`), each interval a window of two
points. The allocator returns memory in steps and takes it back in steps: a drop and the
rise that refills it leave the high-water mark where it was. A step it does not give back
(a new arena) is one outlying interval, which lowers every route's t-value rather than
shaping a slope; growth that follows all requests alike is the fit's even spread, not
attributable. Memory a route keeps raises the mark with that route's count.

From a route's RSS slope the watch subtracts what its traced sites explain (the per-request
estimates of the latest traced window's fits, flagged or not: a Python leak raises the RSS
too). What is left, when it meets the criteria at ``native_min_bytes_per_request``, is a
native suspect. Nothing here touches the RSS or tracemalloc: the methods take plain
numbers, so they are tested on synthetic series.
"""

from __future__ import annotations

from collections import deque
from dataclasses import replace
from typing import (
    Callable,
    Deque,
    Dict,
    Generator,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
)

from . import rules
from .fit import Estimate, LeakCriteria, band, fit_site, median
from .series import SiteWindow, WindowCounts, site_window, window_counts

#: Two consecutive readings: the routes' counts and the high-water mark between them.
Interval = Tuple[WindowCounts, SiteWindow]


class NativeEvidence:
    """The RSS segments, and per route whether its unexplained RSS growth is a leak."""

    def __init__(self, criteria: LeakCriteria, floor: int, windows: int) -> None:
        self.criteria = replace(criteria, min_bytes_per_request=floor)
        self.candidates = self.criteria.for_candidates()
        self.floor = floor
        self.pooled = 2 * windows
        #: Per segment, its readings (turned into intervals only when fitted: most weighings
        #: skip the fit, and building them at every cut cost a few µs per request).
        self.segments: Deque[_Segment] = deque(maxlen=rules.WINDOWS_KEPT * windows)
        #: Route id -> the estimate of its unexplained growth, while flagged.
        self.flagged: Dict[int, Estimate] = {}
        self._counts: List[Sequence[int]] = []
        self._marks: List[int] = []
        self._number = 0

    def sample(self, counts: Sequence[int], rss: Optional[int]) -> None:
        """One reading: the routes' finished-request counts and the RSS (``None``: unknown,
        the reading is skipped)."""
        if rss is None:
            return
        self._counts.append(counts)
        self._marks.append(max(rss, self._marks[-1]) if self._marks else rss)
        if len(self._marks) >= rules.NATIVE_POINTS:
            self.cut()

    def cut(self) -> None:
        """End the current segment (a window opens, or it is full)."""
        points = len(self._marks)
        if points >= 3:
            self.segments.append(_Segment(self._number, self._counts, self._marks))
            self._number += points - 1
        self._counts, self._marks = [], []

    def weigh_steps(self, explained: Mapping[int, float], traced: Mapping[int, int],
                    blamable: Callable[[int], bool]) -> Iterator[None]:
        """Update the flags, one round of the robust fit per step. ``explained``: per route,
        the bytes per request its traced sites account for; ``traced``: per route, its
        requests inside the traced windows the estimates pool (a route tracemalloc has not
        watched cannot be called native)."""
        kept = list(self.segments)
        if len(kept) < 2:
            return
        if not self._grew(kept[-self.pooled:]):
            # The fit pools hundreds of intervals (tens of milliseconds); a mark that did not
            # rise by what a route must keep to stay flagged leaves nothing to find (the
            # latest intervals of a native leak keep growing).
            self.flagged = {}
            return
        recent = self.criteria.min_requests
        estimates = yield from self._fit(kept[-self.pooled:], recent)
        if any(e.requests < self.criteria.min_requests for e in estimates.values()) and \
                len(kept) > self.pooled:
            # A route with little traffic: pool more.
            estimates = yield from self._fit(kept, recent)
        flagged: Dict[int, Estimate] = {}
        for route_id, estimate in estimates.items():
            if not blamable(route_id) or traced.get(route_id, 0) < self.candidates.min_requests:
                continue
            left = estimate.per_request - explained.get(route_id, 0.0)
            if left < rules.UNEXPLAINED_SHARE * estimate.per_request:
                continue
            share = left / estimate.per_request
            unexplained = replace(estimate, per_request=left,
                                  growth=round(estimate.growth * share))
            criteria = self.candidates if route_id in self.flagged else self.criteria
            if unexplained.is_leak(criteria):
                flagged[route_id] = unexplained
        self.flagged = flagged

    def _grew(self, kept: List[_Segment]) -> bool:
        """Whether the high-water mark rose over ``kept`` by what the candidates' criteria
        ask of a route at the least (``min_requests`` requests at the floor)."""
        least = self.candidates.min_bytes_per_request * self.candidates.min_requests
        return sum(segment.marks[-1] - segment.marks[0] for segment in kept) >= least

    def _fit(self, segments: List[_Segment], recent: int
             ) -> Generator[None, None, Mapping[int, Estimate]]:
        """The fit on the intervals of ``kept``, robust to steps: each interval's increment
        is clipped to within three robust deviations of its prediction (first the
        median increment, then the fit's), and the fit redone on the clipped increments."""
        kept = [segment.intervals() for segment in segments]
        windows = [w for segment in kept for w, _ in segment]
        rises = [float(s.growth) for segment in kept for _, s in segment]
        middle = median(rises)
        predicted = [middle] * len(rises)
        estimates: Mapping[int, Estimate] = {}
        for _ in range(rules.NATIVE_ROUNDS):
            clipped = _clip(rises, predicted)
            site = {w.number: site_window([0, round(v)], [0, 0])
                    for w, v in zip(windows, clipped)}
            estimates = fit_site(windows, site, None, recent, self.floor).estimates
            yield None
            predicted = [sum(e.per_request * w.requests.get(r, 0) for r, e in estimates.items())
                         for w in windows]
        return estimates


class _Segment:
    """The readings of one segment: per reading the routes' counts and the high-water mark;
    its intervals are numbered from ``first + 1``."""

    __slots__ = ("first", "counts", "marks")

    def __init__(self, first: int, counts: List[Sequence[int]], marks: List[int]) -> None:
        self.first = first
        self.counts = counts
        self.marks = marks

    def intervals(self) -> List[Interval]:
        """Two consecutive readings each: the counts and the mark between them."""
        return [(window_counts(self.first + k, self.counts[k - 1:k + 1]),
                 site_window(self.marks[k - 1:k + 1], [0, 0]))
                for k in range(1, len(self.marks))]


def _clip(values: Sequence[float], predicted: Sequence[float]) -> List[float]:
    """``values`` clipped to their prediction plus or minus three times the
    residuals' robust deviation (at least a page)."""
    low, high = band([v - p for v, p in zip(values, predicted)], rules.PAGE)
    return [min(max(v, p + low), p + high) for v, p in zip(values, predicted)]
