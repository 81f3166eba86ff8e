"""Which routes make a site grow, and by how much per request: a non-negative least-squares
fit of the site's retained size on the routes' request counts.

Within a tracing window the heap is snapshotted at several points. At each point a growing
site's retained size ``y`` is, up to the memory of requests still in flight (bounded, it does
not grow), the sum over routes of ``bytes per request x finished requests``. So per site::

    y[w, k] = a[w] + sum over routes r of b[r] * x[w, k, r] + noise

with one intercept ``a[w]`` per window (tracing restarts, levels are not comparable) and
``b[r] >= 0`` (a route cannot un-leak). The fit uses centred values per window, so only
sums of products are kept. Routes whose counts moved together cannot be told apart: their
``b`` are then uncertain and their t-values low, which the criteria turn into "not flagged"
rather than a wrong name.

Nothing here touches tracemalloc: the functions take plain numbers, so they are tested on
synthetic series.
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Set, Tuple, Union

from .criteria import Estimate
from .linear import dot, invert, nnls, ols
from .robust import cross_products, normal_equations, prepare, squares
from .series import SiteWindow, WindowCounts, centred, site_window, window_counts

__all__ = ["SiteWindow", "WindowCounts", "attribute", "group_estimate", "site_window",
           "window_counts"]

_MAX_CANDIDATES = 16
# A route stays in the fit while its slope stands this far out of the noise.
_KEEP_T = 4.0
# Dropped routes that together reduce the residual this much (an F statistic) stay in.
_JOINT_F = 4.0
# Count series this correlated belong to routes served together.
_TWIN = 0.999
# The routes kept must fit this much better (an F statistic) than the site's growth spread
# evenly over the routes that could share it, or nothing is pinned on them.
_EVEN_F = 4.0


def attribute(windows: Sequence[WindowCounts], site: Dict[int, SiteWindow],
              candidates: Optional[Sequence[int]], recent_requests: int = 1,
              floor: float = 0.0, unsplit: Optional[List[Tuple[int, ...]]] = None,
              dropped: Optional[List[int]] = None) -> Dict[int, Estimate]:
    """Per route, the pooled estimate of what it retains at one site over ``windows``
    (``site`` holds the site's reduction per window number; a window it is missing from saw
    no change). ``candidates``: the routes that may be blamed (``None``: every route that
    served requests in the windows). Only routes with a positive share are returned. When the
    growth spread evenly over several routes, below ``floor`` bytes per request, fits about as
    well as the routes the fit keeps, nothing is returned (not attributable). Routes the fit
    keeps whose counts moved in lockstep cannot be split: none of them is returned, and the
    group is added to ``unsplit`` (see :func:`group_estimate`). Routes that had a positive
    slope but left the fit in the noise are added to ``dropped``. The counts and the site's
    steps are prepared by :mod:`.robust` first."""
    routes: List[int] = sorted({r for w in windows for r in w.dx}) if candidates is None \
        else [r for r in candidates if any(r in w.dx for w in windows)]
    if not routes:
        return {}
    if len(routes) > _MAX_CANDIDATES:
        # Screen by correlation with the site's growth: many routes, few points.
        screen_gram, screen_cross, _ = normal_equations(windows, site, routes)
        score = {r: screen_cross[i] / math.sqrt(screen_gram[i][i])
                 if screen_gram[i][i] > 0 else 0.0 for i, r in enumerate(routes)}
        routes = sorted(routes, key=score.get, reverse=True)[:_MAX_CANDIDATES]
    points = sum(w.points for w in windows) - len(windows)

    def slopes_of(moved: List[WindowCounts], gram: List[List[float]],
                  version: Dict[int, SiteWindow], first: bool) -> Dict[int, float]:
        # The first prediction is the fit on every candidate, which cannot miss a route
        # whose share a step hides; then the fit of the routes kept.
        c, y = cross_products(moved, version, routes), squares(moved, version)
        b0 = nnls(gram, c)
        if first:
            return {routes[i]: v for i, v in enumerate(b0) if v > 0}
        kept = _eliminate(gram, c, y, points, [i for i, v in enumerate(b0) if v > 0])
        if isinstance(kept, list):
            return {}
        return {routes[i]: v for i, v in zip(kept[0], kept[1])}

    windows, gram, site = prepare(windows, site, routes, slopes_of)
    cross, yy = cross_products(windows, site, routes), squares(windows, site)
    b = nnls(gram, cross)
    active = [i for i in range(len(routes)) if b[i] > 0]

    def lockstep(indexes: Sequence[int]) -> Dict[int, Estimate]:
        if unsplit is not None and len(indexes) > 1:
            unsplit.append(tuple(sorted(routes[i] for i in indexes)))
        return {}

    fitted = _eliminate(gram, cross, yy, points, active)
    if isinstance(fitted, list):
        return lockstep(fitted)
    active, slopes, t_values, rss, full_active = fitted
    if dropped is not None:
        dropped.extend(routes[i] for i in full_active if i not in active)
    if _spread_fits_as_well(windows, site, routes, gram, cross, yy, points, active, rss,
                            floor, [list(range(len(routes))), full_active]):
        return {}
    b = [0.0] * len(routes)
    for k, i in enumerate(active):
        b[i] = slopes[k]
    # A route whose counts moved in lockstep with another candidate's cannot be told from
    # it: nothing is pinned on either.
    twins = {(i, j) for i in active for j in range(len(routes)) if j != i and
             gram[i][j] >= _TWIN * math.sqrt(gram[i][i] * gram[j][j]) > 0}
    twinned = {i for i, _ in twins}
    if twins:
        lockstep(sorted(twinned | {j for _, j in twins}))
    if sum(cross) < floor * sum(map(sum, gram)):
        # Spread over every candidate this growth would be below the threshold: the kind of
        # site where one route's counts can match growth that is not its own by chance.
        twinned = twinned | _unsteady(windows, site, routes, b, active,
                                      rss / max(points - len(active), 1))
    variance = rss / max(points - len(active), 1)
    return _estimates(windows, site, routes, b, t_values, active, twinned, recent_requests,
                      variance)


# How many standard errors below its pooled slope a route's slope in the latest window may be.
_STEADY_SE = 2.0


def _latest_t(windows: Sequence[WindowCounts], site: Dict[int, SiteWindow], routes: List[int],
              b: List[float], active: List[int], i: int, variance: float,
              recent_requests: int) -> float:
    """The t-value of route ``routes[i]``'s slope in the latest window alone, the other kept
    routes' slopes held (infinite when that window holds fewer than ``recent_requests`` of
    its requests, or no change of the site)."""
    latest = windows[-1]
    x = latest.dx.get(routes[i])
    if x is None or latest.requests.get(routes[i], 0) < recent_requests or latest.points < 3:
        return math.inf
    own = site.get(latest.number)
    g = dot(x, x)
    if g <= 0:
        return math.inf
    dy = own.dy if own is not None else [0.0] * latest.points
    others = [sum(b[j] * latest.dx[routes[j]][k] for j in active
                  if j != i and routes[j] in latest.dx) for k in range(latest.points)]
    slope = dot(x, [y - o for y, o in zip(dy, others)]) / g
    error = math.sqrt(variance / g)
    return slope / error if error > 0 else (math.inf if slope > 0 else 0.0)


def _unsteady(windows: Sequence[WindowCounts], site: Dict[int, SiteWindow], routes: List[int],
              b: List[float], active: List[int], variance: float) -> Set[int]:
    """The kept routes whose slope in the latest window (the others' slopes held) falls more
    than :data:`_STEADY_SE` standard errors below their pooled slope. A leak keeps the same
    bytes per request in every window; growth that one route's counts followed by chance in
    earlier windows (Starlette's ``HTTPEndpoint.__init__`` growing fast in the first windows
    and slower after, shared by four routes) does not."""
    latest = windows[-1]
    if len(windows) < 2 or latest.number not in site or latest.points < 3:
        return set()  # (two points: one increment of the RSS readings, too coarse alone)
    dy = site[latest.number].dy
    out = set()
    for i in active:
        x = latest.dx.get(routes[i])
        if x is None:
            continue
        others = [sum(b[j] * latest.dx[routes[j]][k] for j in active
                      if j != i and routes[j] in latest.dx) for k in range(latest.points)]
        g = dot(x, x)
        if g <= 0:
            continue
        own = dot(x, [y - o for y, o in zip(dy, others)]) / g
        if own < b[i] - _STEADY_SE * math.sqrt(variance / g):
            out.add(i)
    return out


Fit = Tuple[List[int], List[float], List[float], float, List[int]]


def _eliminate(gram: List[List[float]], cross: List[float], yy: float, points: int,
               active: List[int]) -> Union[Fit, List[int]]:
    """Backward elimination: routes whose share is lost in the noise leave the fit one by one
    (weakest first), so that they do not blur the estimate of the routes that do retain.
    Returns (kept routes, their slopes, t-values, residual sum of squares, the routes of the
    first fit), or the routes that could not be split (a list) when a fit is singular."""
    first = ols(gram, cross, yy, points, active)
    if first is None:
        return active
    full = (list(active),) + first
    slopes, t_values, rss = first
    while len(active) > 1:
        weakest = min(range(len(active)), key=lambda k: t_values[k])
        if t_values[weakest] >= _KEEP_T:
            break
        del active[weakest]
        fit = ols(gram, cross, yy, points, active)
        if fit is None:
            return active
        slopes, t_values, rss = fit
    dropped = len(full[0]) - len(active)
    full_dof = points - len(full[0])
    if dropped and full_dof > 0 and full[3] > 0 and \
            (rss - full[3]) / dropped / (full[3] / full_dof) > _JOINT_F:
        # The dropped routes matter together (growth spread over several routes whose
        # counts move alike): pinning it on the few left would be a guess. Keep the split.
        # (The reduced fit's residuals stay the ones the spread is compared with.)
        return full[0], full[1], full[2], rss, full[0]
    return active, slopes, t_values, rss, full[0]


def _estimates(windows: Sequence[WindowCounts], site: Dict[int, SiteWindow], routes: List[int],
               b: List[float], t_values: List[float], active: List[int], twinned: Set[int],
               recent_requests: int, variance: float) -> Dict[int, Estimate]:
    """The estimate of each kept route that is not in ``twinned`` (a twin, or unsteady): its
    slope and its share of the site's growth, blocks and rises."""
    empty = SiteWindow([], 0.0, 0, 0, 0, 0)
    kept = [site.get(w.number, empty) for w in windows]
    growth = sum(s.growth for s in kept)
    blocks = sum(s.blocks for s in kept)
    steps = sum(s.steps for s in kept)
    rise_share = sum(s.rises for s in kept) / steps if steps else 0.0
    requests = {routes[i]: sum(w.requests.get(routes[i], 0) for w in windows) for i in active}
    explained = sum(b[i] * requests[routes[i]] for i in active)
    latest = _latest_share(windows, site, {routes[i]: b[i] for i in active}, recent_requests)
    out: Dict[int, Estimate] = {}
    for k, i in enumerate(active):
        if i in twinned:
            continue
        route = routes[i]
        share = b[i] * requests[route] / explained if explained > 0 else 0.0
        out[route] = Estimate(b[i], t_values[k], requests[route], round(growth * share),
                              round(blocks * share), rise_share, len(windows), latest,
                              _latest_t(windows, site, routes, b, active, i, variance,
                                        recent_requests),
                              b[i] * requests[route])
    return out


def _spread_fits_as_well(windows: Sequence[WindowCounts], site: Dict[int, SiteWindow],
                         routes: List[int], gram: List[List[float]], cross: List[float],
                         yy: float, points: int, active: List[int], rss: float, floor: float,
                         groups: Sequence[Sequence[int]]) -> bool:
    """Whether growth spread evenly over any of ``groups`` (sets of route indexes larger than
    ``active``) at a common rate below ``floor`` explains the site about as well as the
    ``active`` routes' slopes (residual ``rss``). The spread is fitted on the group's summed
    counts and their square (growth that fills like a cache turning over rises fast, then
    slower). Growth that follows every request alike fits a sum of many routes' counts, and
    one of several routes' counts can match it by chance: such growth is not attributable."""
    dof = points - len(active)
    if dof <= 0:
        return False
    chosen = set(active)
    empty = SiteWindow([], 0.0, 0, 0, 0, 0)
    for group in groups:
        members = [i for i in group if gram[i][i] > 0]
        if not chosen < set(members):
            continue
        g = sum(gram[i][j] for i in members for j in members)
        c = sum(cross[i] for i in members)
        if g <= 0 or c <= 0 or c / g >= floor:
            continue
        spread_rss = max(yy - c * c / g, 0.0)
        # The same with the square of the group's count (one shape shared by the windows).
        m = [[0.0, 0.0], [0.0, 0.0]]
        v = [0.0, 0.0]
        ids = {routes[i] for i in members}
        for w in windows:
            total = [0.0] * w.points
            for r in ids & set(w.dx):
                total = [a + b for a, b in zip(total, w.dx[r])]
            square = centred([t * t for t in total])
            dy = site.get(w.number, empty).dy or [0.0] * w.points
            for a, xa in enumerate((total, square)):
                v[a] += dot(xa, dy)
                for b, xb in enumerate((total, square)):
                    m[a][b] += dot(xa, xb)
        inverse = invert(m)
        if inverse is not None:
            coef = [dot(row, v) for row in inverse]
            spread_rss = min(spread_rss, max(yy - dot(coef, v), 0.0))
        if rss <= 0:
            if spread_rss <= 0:
                return True
            continue
        if (spread_rss - rss) / (rss / dof) <= _EVEN_F:
            return True
    return False


def _latest_share(windows: Sequence[WindowCounts], site: Dict[int, SiteWindow],
                  slopes: Dict[int, float], recent_requests: int) -> float:
    """The most recent windows' growth (enough of them to span ``recent_requests`` requests
    of the blamed routes) against what the slopes predict for their requests."""
    growth = 0
    expected = 0.0
    spanned = 0
    for w in reversed(windows):
        s = site.get(w.number)
        growth += s.growth if s is not None else 0
        expected += sum(b * w.requests.get(r, 0) for r, b in slopes.items())
        spanned += sum(w.requests.get(r, 0) for r in slopes)
        if spanned >= recent_requests:
            break
    return growth / expected if expected > 0 else 0.0


def group_estimate(windows: Sequence[WindowCounts], site: Dict[int, SiteWindow],
                   members: Sequence[int], recent_requests: int = 1) -> Optional[Estimate]:
    """What ``members`` retain together at a site, per request of any of them: the fit on
    their summed counts (``None`` when they served no request in ``windows``)."""
    merged = []
    for w in windows:
        rows = [w.dx[r] for r in members if r in w.dx]
        late = None if w.late is None else [w.late[r] for r in members if r in w.dx]
        merged.append(WindowCounts(
            w.number, w.points, {-1: [sum(v) for v in zip(*rows)]} if rows else {},
            {-1: sum(w.requests.get(r, 0) for r in members)},
            None if late is None else {-1: [sum(v) for v in zip(*late)]} if rows else {}))
    return attribute(merged, site, [-1], recent_requests).get(-1)
