"""What the site fit of :mod:`.attribution` does to its data first: it picks the moment the
counts stand for, and it clips the steps a site takes that no route's counts explain.

**Which counts.** A snapshot holds what requests still in flight have already kept, but they
are counted only when they finish. Whether an in-flight request has kept its bytes depends on
the app: behind uvicorn, with most of the concurrency waiting in the client and the network,
the finished counts at the snapshot fitted the sites almost exactly and their mean with the
counts a few requests later (``late``) added noise that moved two rates at one site by 20% to
40%; with eight handlers in flight in one event loop, the mean was the better measure. Of the
counts at the snapshot and their mean with the late ones, the fit takes the one that leaves
the smaller residual once the steps below are clipped (:func:`prepare`; steps left in would
decide the choice).

**Steps.** A list's item array grows by reallocation: when it is reallocated during a window,
tracemalloc sees the whole new array at once (a step of 8 bytes per item, tens of KB for a list
of thousands), once, at the line that appends. A request in flight at a snapshot that has kept
its bytes but is not counted yet lifts one point and drops the next. Neither follows any
route's counts, yet either can outweigh a small route's share of the site. So each increment
of the site's size between consecutive points is clipped to within :data:`_CLIP` robust
deviations of what the routes' slopes predict for it (first the slopes of every candidate
route, then those of the routes the fit keeps), and the fit redone, for :data:`_ROUNDS`
rounds (:func:`clip_steps`). Windows of two points (one increment, as the RSS readings of
:mod:`.native` are, which clip their own) are left alone.

Nothing here touches tracemalloc: the functions take plain numbers.
"""

from __future__ import annotations

from functools import partial
from typing import Callable, Dict, List, Sequence, Tuple

from .linear import dot, nnls
from .series import SiteWindow, WindowCounts, centred

# How far the late counts weigh in: the counts at the snapshot, or their mean with them.
_TIMINGS = (0.0, 0.5)
_ROUNDS = 6
_CLIP = 3.0
_MAD_SCALE = 1.4826  # a normal distribution's standard deviation per median deviation
# The robust deviation is at least this many bytes: a site that the slopes fit to a few bytes
# would otherwise have every small misfit clipped.
_SPREAD_FLOOR = 256.0

Normal = Tuple[List[List[float]], List[float], float]


def normal_equations(windows: Sequence[WindowCounts], site: Dict[int, SiteWindow],
                     routes: Sequence[int]) -> Normal:
    """The sums of products the least-squares fit of the site on ``routes`` needs: the
    routes' Gram matrix, their products with the site's sizes, and the sizes' squares."""
    return gram_of(windows, routes), cross_products(windows, site, routes), \
        squares(windows, site)


def gram_of(windows: Sequence[WindowCounts], routes: Sequence[int]) -> List[List[float]]:
    """The routes' Gram matrix over ``windows`` (symmetric: each product once)."""
    n = len(routes)
    gram = [[0.0] * n for _ in range(n)]
    for w in windows:
        rows = [(k, w.dx[r]) for k, r in enumerate(routes) if r in w.dx]
        for a, (i, x) in enumerate(rows):
            for j, z in rows[a:]:
                gram[i][j] += dot(x, z)
    for i in range(n):
        for j in range(i):
            gram[i][j] = gram[j][i]
    return gram


def cross_products(windows: Sequence[WindowCounts], site: Dict[int, SiteWindow],
           routes: Sequence[int]) -> List[float]:
    return [sum(dot(w.dx[r], site[w.number].dy) for w in windows
                if r in w.dx and w.number in site) for r in routes]


def squares(windows: Sequence[WindowCounts], site: Dict[int, SiteWindow]) -> float:
    return sum(site[w.number].yy for w in windows if w.number in site)


def _residual(gram: List[List[float]], cross: List[float], yy: float) -> Tuple[List[float],
                                                                            float]:
    b = nnls(gram, cross)
    return b, yy - sum(v * c for v, c in zip(b, cross))


#: ``slopes(windows, gram, version, first)``: the slopes that predict a version of the site
#: (see :func:`clip_steps`).
Slopes = Callable[[List[WindowCounts], List[List[float]], Dict[int, SiteWindow], bool],
                  Dict[int, float]]


def prepare(windows: Sequence[WindowCounts], site: Dict[int, SiteWindow],
            routes: Sequence[int], slopes: Slopes
            ) -> Tuple[List[WindowCounts], List[List[float]], Dict[int, SiteWindow]]:
    """The windows with the counts that fit the site best once its steps are clipped (see
    the module), the routes' Gram matrix on them, and the clipped site."""
    timings = _TIMINGS if all(w.late is not None for w in windows) else (0.0,)
    best: Tuple[List[WindowCounts], List[List[float]], Dict[int, SiteWindow]] = ([], [], {})
    best_rss = 0.0
    for weight in timings:
        moved = [w.at(weight) for w in windows]
        gram = gram_of(moved, routes)
        clipped = clip_steps(moved, site, partial(slopes, moved, gram))
        if len(timings) == 1:
            return moved, gram, clipped
        _, rss = _residual(gram, cross_products(moved, clipped, routes),
                           squares(moved, clipped))
        if not best[0] or rss < best_rss:
            best, best_rss = (moved, gram, clipped), rss
    return best


def clip_steps(windows: Sequence[WindowCounts], site: Dict[int, SiteWindow],
               slopes_of: Callable[[Dict[int, SiteWindow], bool], Dict[int, float]]
               ) -> Dict[int, SiteWindow]:
    """The site's windows with their steps clipped (see the module); ``slopes_of(version,
    first)`` fits a version of the site and returns the slopes that predict it (``first``:
    the raw site). Growth, blocks and rises stay the site's own."""
    fitted = [w for w in windows if w.number in site and w.points >= 3]
    if not fitted:
        return site
    rises = {w.number: _increments(site[w.number].dy) for w in fitted}
    current = dict(site)
    for round_ in range(_ROUNDS):
        slopes = slopes_of(current, round_ == 0)
        predicted = {w.number: _predicted(w, slopes) for w in fitted}
        residuals = [d - p for w in fitted
                     for d, p in zip(rises[w.number], predicted[w.number])]
        low, high = band(residuals, _SPREAD_FLOOR)
        if round_ and all(low <= d - p <= high for w in fitted
                          for d, p in zip(rises[w.number], predicted[w.number])):
            return current  # nothing (more) to clip against the kept routes' fit
        clipped = dict(site)
        for w in fitted:
            level = [0.0]
            for d, p in zip(rises[w.number], predicted[w.number]):
                level.append(level[-1] + p + min(max(d - p, low), high))
            own = site[w.number]
            dy = centred(level)
            clipped[w.number] = SiteWindow(dy, dot(dy, dy), own.growth, own.blocks,
                                           own.steps, own.rises)
        current = clipped
    return current


def _increments(values: Sequence[float]) -> List[float]:
    return [b - a for a, b in zip(values, values[1:])]


def _predicted(window: WindowCounts, slopes: Dict[int, float]) -> List[float]:
    out = [0.0] * (window.points - 1)
    for r, v in slopes.items():
        if r in window.dx:
            out = [o + v * d for o, d in zip(out, _increments(window.dx[r]))]
    return out


def median(values: Sequence[float]) -> float:
    """The median of ``values`` (0 for none)."""
    ordered = sorted(values)
    n = len(ordered)
    return (ordered[(n - 1) // 2] + ordered[n // 2]) / 2 if n else 0.0


def band(residuals: Sequence[float], floor: float) -> Tuple[float, float]:
    """The range within :data:`_CLIP` robust deviations of the residuals' median (the median
    absolute deviation scaled to a standard deviation, at least ``floor``)."""
    centre = median(residuals)
    spread = max(_MAD_SCALE * median([abs(e - centre) for e in residuals]), floor)
    return centre - _CLIP * spread, centre + _CLIP * spread
