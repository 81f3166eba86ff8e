"""Why a route is flagged, in one place: which routes make an allocation site grow and by how
much per request (:func:`fit_site`, returning a :class:`SiteFit`), and when that evidence
says "leak" (:class:`LeakCriteria`, judged by :meth:`Estimate.is_leak`). Read top to bottom:
the criteria, the result, the fit's rules in order, then how its data is prepared.

The fit is a non-negative least-squares fit of the site's retained size on the routes'
request counts.

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
from dataclasses import dataclass, replace
from functools import partial
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Set, Tuple, Union

from . import rules
from .linear import dot, invert, nnls, ols
from .series import SiteWindow, WindowCounts, centred

# -- when the evidence says "leak" ------------------------------------------------------------

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
    min_t: float = rules.MIN_T
    min_rise_share: float = rules.MIN_RISE_SHARE
    min_latest_share: float = rules.MIN_LATEST_SHARE
    min_latest_t: float = rules.MIN_LATEST_T
    min_retained: float = rules.MIN_RETAINED

    def for_candidates(self) -> LeakCriteria:
        """A quarter of the requests and half the t-value: enough to spend a confirming
        window on."""
        share, t_share = rules.CANDIDATE_SHARE, rules.CANDIDATE_T_SHARE
        return replace(self, min_requests=max(1, int(self.min_requests * share)),
                       min_t=self.min_t * t_share, min_latest_t=self.min_latest_t * t_share,
                       min_retained=self.min_retained * share)


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


# -- the fit of one site -------------------------------------------------------------------

@dataclass(frozen=True)
class SiteFit:
    """What one site's fit found: per route, the estimate of what it retains there
    (``estimates``: only routes with a positive share that can be told apart); the groups of
    routes whose counts moved in lockstep, so that the counts cannot split the growth between
    them (``unsplit``: see :func:`fit_group`); the routes that had a positive slope in the
    first fit but left it in the noise (``dropped``); and whether the growth follows every
    candidate route's requests alike (``spread``: one common rate on all their counts fits
    about as well as the routes kept; never for a single candidate).

    Growth that follows every request alike is a leak in code every request runs, or a queue
    every request feeds and something empties in batches (spans waiting for their exporter,
    records in a buffering log handler, finished threads a server reaps now and then): only
    a window long enough to hold one of its releases tells them apart (see
    :data:`.rules.HOLD_REQUESTS`)."""

    estimates: Mapping[int, Estimate]
    unsplit: Tuple[Tuple[int, ...], ...] = ()
    dropped: Tuple[int, ...] = ()
    spread: bool = False


NOTHING = SiteFit({})


def fit_site(windows: Sequence[WindowCounts], site: Mapping[int, SiteWindow],
             candidates: Optional[Sequence[int]], recent_requests: int = 1,
             floor: float = 0.0) -> SiteFit:
    """Fit one site's growth over ``windows`` on the routes' counts (``site`` holds the
    site's reduction per window number; a window it is missing from saw no change).
    ``candidates``: the routes that may be blamed (``None``: every route that served
    requests in the windows). The rules, in order:

    1. the counts and the site's steps are prepared (:func:`prepare`: which counts, steps
       clipped);
    2. non-negative least squares; routes lost in the noise leave one by one, unless
       together they matter (:func:`_eliminate`); a singular fit is routes in lockstep;
    3. when the growth spread evenly over several routes, below ``floor`` bytes per request,
       fits about as well as the routes kept, nothing is pinned (not attributable);
    4. routes whose counts moved in lockstep with another's are not named alone (their
       group goes to ``unsplit``);
    5. where growth spread over every candidate would be below ``floor``, a route whose
       latest slope fell well below its pooled one is not named (:func:`_unsteady`);
    6. each route kept gets its :class:`Estimate`, which :meth:`Estimate.is_leak` judges;
       the fit says whether one rate on every route's counts fits about as well (``spread``)."""
    routes: List[int] = sorted({r for w in windows for r in w.dx}) if candidates is None \
        else [r for r in candidates if any(r in w.dx for w in windows)]
    if not routes:
        return NOTHING
    if len(routes) > rules.MAX_CANDIDATES:
        # Screen by correlation with the site's growth: many routes, few points.
        screen_gram, screen_cross, _ = normal_equations(windows, site, routes)
        score = {r: screen_cross[i] / math.sqrt(screen_gram[i][i])
                 if screen_gram[i][i] > 0 else 0.0 for i, r in enumerate(routes)}
        routes = sorted(routes, key=lambda r: score[r], reverse=True)[:rules.MAX_CANDIDATES]
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

    def group(indexes: Sequence[int]) -> Tuple[Tuple[int, ...], ...]:
        return (tuple(sorted(routes[i] for i in indexes)),) if len(indexes) > 1 else ()

    every = [i for i, r in enumerate(routes) if r not in rules.LEVEL_IDS]
    fitted = _eliminate(gram, cross, yy, points, active)
    if isinstance(fitted, list):
        return SiteFit({}, group(fitted))
    active, slopes, t_values, rss, full_active = fitted
    dropped = tuple(routes[i] for i in full_active if i not in active)
    if _spread_fits_as_well(windows, site, routes, gram, cross, yy, points, active, rss,
                            floor, [list(range(len(routes))), full_active]):
        return SiteFit({}, (), dropped)
    # (One candidate route, the endpoint's own code: its growth follows that route alone.)
    spread = len(every) > 1 and _spread_fits_as_well(
        windows, site, routes, gram, cross, yy, points, [i for i in active if i in every], rss,
        math.inf, [every])
    b = [0.0] * len(routes)
    for k, i in enumerate(active):
        b[i] = slopes[k]
    # A route whose counts moved in lockstep with another candidate's cannot be told from
    # it: nothing is pinned on either.
    twins = {(i, j) for i in active for j in range(len(routes)) if j != i and
             gram[i][j] >= rules.TWIN_CORRELATION * math.sqrt(gram[i][i] * gram[j][j]) > 0}
    twinned = {i for i, _ in twins}
    unsplit = group(sorted(twinned | {j for _, j in twins})) if twins else ()
    if sum(cross) < floor * sum(map(sum, gram)):
        # Spread over every candidate this growth would be below the threshold: the kind of
        # site where one route's counts can match growth that is not its own by chance.
        twinned = twinned | _unsteady(windows, site, routes, b, active,
                                      rss / max(points - len(active), 1))
    variance = rss / max(points - len(active), 1)
    return SiteFit(_estimates(windows, site, routes, b, t_values, active, twinned,
                              recent_requests, variance), unsplit, dropped, spread)


def _latest_t(windows: Sequence[WindowCounts], site: Mapping[int, SiteWindow], routes: List[int],
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


def _unsteady(windows: Sequence[WindowCounts], site: Mapping[int, SiteWindow], routes: List[int],
              b: List[float], active: List[int], variance: float) -> Set[int]:
    """The kept routes whose slope in the latest window (the others' slopes held) falls more
    than :data:`rules.STEADY_SE` standard errors below their pooled slope. A leak keeps the same
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
        if own < b[i] - rules.STEADY_SE * math.sqrt(variance / g):
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
        if t_values[weakest] >= rules.KEEP_T:
            break
        del active[weakest]
        fit = ols(gram, cross, yy, points, active)
        if fit is None:
            return active
        slopes, t_values, rss = fit
    dropped = len(full[0]) - len(active)
    full_dof = points - len(full[0])
    if dropped and full_dof > 0 and full[3] > 0 and \
            (rss - full[3]) / dropped / (full[3] / full_dof) > rules.JOINT_F:
        # The dropped routes matter together (growth spread over several routes whose
        # counts move alike): pinning it on the few left would be a guess. Keep the split.
        # (The reduced fit's residuals stay the ones the spread is compared with.)
        return full[0], full[1], full[2], rss, full[0]
    return active, slopes, t_values, rss, full[0]


def _estimates(windows: Sequence[WindowCounts], site: Mapping[int, SiteWindow], routes: List[int],
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


def _spread_fits_as_well(windows: Sequence[WindowCounts], site: Mapping[int, SiteWindow],
                         routes: List[int], gram: List[List[float]], cross: List[float],
                         yy: float, points: int, active: List[int], rss: float, floor: float,
                         groups: Sequence[Sequence[int]]) -> bool:
    """Whether growth spread evenly over any of ``groups`` (sets of route indexes holding
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
        if not chosen <= set(members):
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
        if (spread_rss - rss) / (rss / dof) <= rules.EVEN_F:
            return True
    return False


def _latest_share(windows: Sequence[WindowCounts], site: Mapping[int, SiteWindow],
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


def fit_group(windows: Sequence[WindowCounts], site: Mapping[int, SiteWindow],
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
    return fit_site(merged, site, [-1], recent_requests).estimates.get(-1)


# -- the data the fit reads: which counts, and steps clipped ---------------------------------
#
# Which counts: a snapshot holds what requests still in flight have already kept, but they are
# counted only when they finish; of the counts at the snapshot and their mean with the counts
# a few requests later (``late``), the fit takes the one that leaves the smaller residual once
# the steps are clipped (:func:`prepare`).
#
# Steps: a list's item array reallocated during a window shows at once at the line that
# appends, and a request in flight that has kept its bytes lifts one point and drops the next;
# neither follows any route's counts. Each increment of the site between consecutive points
# is clipped to within rules.CLIP_DEVIATIONS robust deviations of what the routes' slopes
# predict for it, and the fit redone, for rules.CLIP_ROUNDS rounds (:func:`clip_steps`).
# Windows of two points (the RSS readings of .native, which clip their own) are left alone.

Normal = Tuple[List[List[float]], List[float], float]


def normal_equations(windows: Sequence[WindowCounts], site: Mapping[int, SiteWindow],
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


def cross_products(windows: Sequence[WindowCounts], site: Mapping[int, SiteWindow],
           routes: Sequence[int]) -> List[float]:
    return [sum(dot(w.dx[r], site[w.number].dy) for w in windows
                if r in w.dx and w.number in site) for r in routes]


def squares(windows: Sequence[WindowCounts], site: Mapping[int, SiteWindow]) -> float:
    return sum(site[w.number].yy for w in windows if w.number in site)


def _residual(gram: List[List[float]], cross: List[float], yy: float) -> Tuple[List[float],
                                                                            float]:
    b = nnls(gram, cross)
    return b, yy - sum(v * c for v, c in zip(b, cross))


#: ``slopes(windows, gram, version, first)``: the slopes that predict a version of the site
#: (see :func:`clip_steps`).
Slopes = Callable[[List[WindowCounts], List[List[float]], Dict[int, SiteWindow], bool],
                  Dict[int, float]]


def prepare(windows: Sequence[WindowCounts], site: Mapping[int, SiteWindow],
            routes: Sequence[int], slopes: Slopes
            ) -> Tuple[List[WindowCounts], List[List[float]], Dict[int, SiteWindow]]:
    """The windows with the counts that fit the site best once its steps are clipped (see
    the module), the routes' Gram matrix on them, and the clipped site."""
    timings = rules.LATE_WEIGHTS if all(w.late is not None for w in windows) else (0.0,)
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


def clip_steps(windows: Sequence[WindowCounts], site: Mapping[int, SiteWindow],
               slopes_of: Callable[[Dict[int, SiteWindow], bool], Dict[int, float]]
               ) -> Dict[int, SiteWindow]:
    """The site's windows with their steps clipped (see the module); ``slopes_of(version,
    first)`` fits a version of the site and returns the slopes that predict it (``first``:
    the raw site). Growth, blocks and rises stay the site's own."""
    fitted = [w for w in windows if w.number in site and w.points >= 3]
    if not fitted:
        return dict(site)
    rises = {w.number: _increments(site[w.number].dy) for w in fitted}
    current = dict(site)
    for round_ in range(rules.CLIP_ROUNDS):
        slopes = slopes_of(current, round_ == 0)
        predicted = {w.number: _predicted(w, slopes) for w in fitted}
        residuals = [d - p for w in fitted
                     for d, p in zip(rises[w.number], predicted[w.number])]
        low, high = band(residuals, rules.SPREAD_FLOOR)
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
    """The range within ``rules.CLIP_DEVIATIONS`` robust deviations of the residuals' median
    (the median absolute deviation scaled to a standard deviation, at least ``floor``)."""
    centre = median(residuals)
    spread = max(rules.MAD_SCALE * median([abs(e - centre) for e in residuals]), floor)
    return centre - rules.CLIP_DEVIATIONS * spread, centre + rules.CLIP_DEVIATIONS * spread
