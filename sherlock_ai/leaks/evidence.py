"""The leak watch's evidence: per window the routes' request counts and the growing sites'
sizes, and per (site, route) whether the pooled evidence says "leak"."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import (
    Callable,
    Deque,
    Dict,
    Generator,
    Hashable,
    List,
    Mapping,
    Optional,
    Sequence,
    Set,
    Tuple,
)

from ..engine.heap import Site, Sizes
from . import rules
from .code_prior import EndpointIndex
from .fit import Estimate, LeakCriteria, fit_group, fit_site
from .series import SiteWindow, WindowCounts, site_window, window_counts

#: ``(allocation site, newest frame in endpoint code or None)``.
Key = Tuple[Site, Optional[Site]]


@dataclass(frozen=True)
class Weighing:
    """What weighing the latest window found besides the flags: whether candidates need a
    confirming window (``needs_confirming``: flags are raised only by one, which collects
    garbage before its last point), and whether one of them is at a site whose growth
    follows every route alike (``needs_holding``: only a holding window, one long enough to
    see a queue emptied, flags it; see :class:`.fit.SiteFit`); whether a route grows a site
    clearly over too few requests yet (``growing``: worth denser windows); per route, the
    bytes per request its growing sites retain, flagged or not (``explained``), and its
    requests in the windows pooled (``traced``): what :mod:`.native` subtracts and
    requires."""

    needs_confirming: bool = False
    needs_holding: bool = False
    growing: bool = False
    explained: Mapping[int, float] = field(default_factory=dict)
    traced: Mapping[int, int] = field(default_factory=dict)


class EvidenceStore:
    """Recent windows and, per key, its sizes in them. The windows kept span at most
    ``rules.WINDOWS_KEPT * windows`` planned windows' requests: a window its traced blocks
    ended early counts for the share of them it spans (see :attr:`.series.WindowCounts.share`),
    so that a route whose requests keep many blocks, one or none per window, still gathers
    ``min_requests`` of them; never more than ``rules.CUT_WINDOWS_KEPT`` times as many
    windows as that."""

    def __init__(self, windows: int, criteria: LeakCriteria) -> None:
        self.windows_pooled = windows
        self.criteria = criteria
        self.candidates = criteria.for_candidates()
        self.windows: Deque[WindowCounts] = deque()
        self._spans = rules.WINDOWS_KEPT * windows
        self._most = rules.CUT_WINDOWS_KEPT * self._spans
        self.sites: Dict[Hashable, Dict[int, SiteWindow]] = {}
        #: (key, route id) -> (estimate, the route's share of the site's growth).
        self.flagged: Dict[Tuple[Hashable, int], Tuple[Estimate, float]] = {}
        #: (key, routes whose counts moved in lockstep) -> their estimate together.
        self.groups: Dict[Tuple[Hashable, Tuple[int, ...]], Estimate] = {}
        #: Allocation site -> the latest window in which it gave back what it held (under
        #: any key: a deep window keys the same line by the endpoint above it).
        self.released: Dict[Hashable, int] = {}

    def add_window(self, number: int, counts: Sequence[Sequence[int]],
                   sizes: Sequence[Sizes],
                   late: Optional[Sequence[Sequence[int]]] = None, deep: bool = False,
                   share: float = 1.0) -> None:
        """Record a window: ``counts[k]`` per-route finished requests and ``sizes[k]`` the
        retained ``[size, blocks]`` per key at point ``k`` (``late[k]``: the counts a few
        requests later; ``deep``: traced with more than one frame; ``share``: the share of a
        planned window's requests it spans)."""
        windows = self.windows
        windows.append(window_counts(number, counts, late, deep, share))
        spans = sum(w.share for w in windows)
        while len(windows) > 1 and (spans > self._spans or len(windows) > self._most):
            spans -= windows.popleft().share
        keys: Set[Hashable] = set()
        for point in sizes:
            keys.update(point)
        for key in keys:
            values = [point.get(key, (0, 0)) for point in sizes]
            ys = [v[0] for v in values]
            if min(ys) == max(ys):
                continue  # no change: no evidence either way
            reduced = site_window(ys, [v[1] for v in values])
            self.sites.setdefault(key, {})[number] = reduced
            if reduced.released:
                self.released[key[0]] = number  # type: ignore[index]
        self._prune()

    def weigh_steps(self, index: EndpointIndex, blamable: Callable[[int], bool],
                    confirming: bool, holding: bool) -> Generator[None, None, Weighing]:
        """Update the flags from the latest window (:attr:`flagged`, :attr:`groups`), one key
        per step (``yield from`` it for the :class:`Weighing`). ``confirming``: the latest
        window was a confirming one; ``holding``: one that traced at least
        ``rules.HOLD_REQUESTS`` requests without a break."""
        if not self.windows:
            return Weighing()
        growing = False
        latest = self.windows[-1].number
        keys = {key for key, seen in self.sites.items() if latest in seen}
        keys.update(key for key, _ in self.flagged)
        keys.update(key for key, _ in self.groups)
        needed = hold = False
        explained: Dict[int, float] = {}
        for key in keys:
            estimates, groups, spread = self._estimate(key, index)
            yield None
            # Growth that follows every route alike is flagged only by a holding window.
            may_flag = confirming and (holding or not spread)
            wanted = self._weigh_groups(key, groups, may_flag)
            needed |= wanted
            hold |= wanted and spread
            for route_id, estimate in estimates.items():
                explained[route_id] = explained.get(route_id, 0.0) + estimate.per_request
            total = sum(e.per_request * e.requests for e in estimates.values())
            for route_id in [r for k, r in self.flagged if k == key and r not in estimates]:
                del self.flagged[(key, route_id)]
            for route_id, estimate in estimates.items():
                if not blamable(route_id):
                    continue
                flag = (key, route_id)
                share = estimate.per_request * estimate.requests / total if total > 0 else 0.0
                if flag in self.flagged:
                    # Staying flagged takes the candidates' criteria: one noisy window does
                    # not retract a real leak.
                    if estimate.is_leak(self.candidates):
                        self.flagged[flag] = (estimate, share)
                    else:
                        del self.flagged[flag]
                elif may_flag and estimate.is_leak(self.criteria):
                    self.flagged[flag] = (estimate, share)
                elif estimate.is_leak(self.candidates):
                    needed = True
                    hold |= spread
                elif estimate.per_request >= self.criteria.min_bytes_per_request and \
                        estimate.t_value >= self.candidates.min_t:
                    # Clear growth, too few requests yet: worth denser windows.
                    growing = True
        traced: Dict[int, int] = {}
        for window in list(self.windows)[-self.windows_pooled:]:
            for route_id, requests in window.requests.items():
                traced[route_id] = traced.get(route_id, 0) + requests
        return Weighing(needed, hold, growing, explained, traced)

    def _weigh_groups(self, key: Hashable, groups: Dict[Tuple[int, ...], Estimate],
                      may_flag: bool) -> bool:
        """The same flags for groups of routes the counts cannot split (raised only when
        ``may_flag``); whether one needs a confirming window."""
        for flag in [f for f in self.groups if f[0] == key and f[1] not in groups]:
            del self.groups[flag]
        needed = False
        for members, estimate in groups.items():
            flag = (key, members)
            if flag in self.groups:
                if estimate.is_leak(self.candidates):
                    self.groups[flag] = estimate
                else:
                    del self.groups[flag]
            elif may_flag and estimate.is_leak(self.criteria):
                self.groups[flag] = estimate
            elif estimate.is_leak(self.candidates):
                needed = True
        return needed

    def groups_by_site(self) -> Dict[Tuple[Site, Tuple[int, ...]], Estimate]:
        """The group flags as (site, route ids)."""
        return {(key[0], members): value  # type: ignore[index]
                for (key, members), value in self.groups.items()}

    def by_site(self) -> Dict[Tuple[Site, int], Tuple[Estimate, float]]:
        """The flags as (site, route id)."""
        return {(key[0], route_id): value  # type: ignore[index]
                for (key, route_id), value in self.flagged.items()}

    def _estimate(self, key: Hashable, index: EndpointIndex
                  ) -> Tuple[Mapping[int, Estimate], Dict[Tuple[int, ...], Estimate], bool]:
        """Per route, its estimate at ``key``; per group of routes the counts cannot split,
        their estimate together; and whether the growth follows every route alike (see
        :class:`.fit.SiteFit`)."""
        seen = self.sites.get(key, {})
        frame = key[1]  # type: ignore[index]
        candidates = None if frame is None else index.routes_at(*frame)
        if candidates is not None:
            candidates = candidates + rules.LEVEL_IDS
        if not seen or key[0] in self.released:  # type: ignore[index]
            # A site seen to give back what it held, in any window kept, holds memory for
            # a while and releases it: not a leak (see .series.released).
            return {}, {}, False
        # Windows before the site first grew say nothing about it (a leak that starts later
        # is not diluted by the quiet windows before it).
        first = min(seen)
        kept = [w for w in self.windows if w.number >= first]
        if frame is not None and frame != key[0]:  # type: ignore[index]
            # Keyed by the endpoint's frame above the allocating line: only windows traced
            # deep enough to see it hold this key.
            kept = [w for w in kept if w.deep]
        windows = kept[-self.windows_pooled:]
        if not self._may_leak(windows, seen):
            return {}, {}, False
        recent = max(1, self.criteria.min_requests // 4)
        floor = self.criteria.min_bytes_per_request
        found = fit_site(windows, seen, candidates, recent, floor)
        estimates, unsplit, dropped = found.estimates, found.unsplit, found.dropped
        spread = found.spread
        weak = any(e.requests < self.criteria.min_requests or self.candidates.min_t
                   <= e.t_value < self.criteria.min_t for e in estimates.values())
        shared = len(estimates) > 1
        if len(kept) > len(windows) and (weak or dropped or shared):
            # A route with little traffic, or one not yet clear of the noise (a second route
            # at a shared site): pool every window kept (up to 8 times as many). So too when
            # the latest windows lost a route in the noise that all of them show clearly
            # (the routes left would carry its share), and when several routes retain at
            # the site (a step in a few windows moves their split).
            longer = fit_site(kept, seen, candidates, recent, floor)
            pooled = longer.estimates
            if weak or shared or any(r in pooled and pooled[r].t_value >= self.candidates.min_t
                                     for r in dropped):
                windows, unsplit, estimates = kept, longer.unsplit, pooled
                spread = longer.spread
        groups = {}
        for members in unsplit:
            members = tuple(r for r in members if r not in rules.LEVEL_IDS)
            if len(members) < 2:
                continue
            estimate = fit_group(windows, seen, members, recent)
            if estimate is not None:
                groups[members] = estimate
        return estimates, groups, spread

    def _may_leak(self, windows: List[WindowCounts], seen: Dict[int, SiteWindow]) -> bool:
        """A cheap test before the fit: the site grew, mostly by rises."""
        kept = [seen[w.number] for w in windows if w.number in seen]
        steps = sum(s.steps for s in kept)
        if not steps:
            return False
        growth = sum(s.growth for s in kept)
        c = self.candidates
        return (sum(s.rises for s in kept) / steps >= c.min_rise_share
                and growth >= c.min_bytes_per_request * c.min_requests)

    def _prune(self) -> None:
        oldest = self.windows[0].number
        for site in [s for s, number in self.released.items() if number < oldest]:
            del self.released[site]
        flagged = {key for key, _ in self.flagged}
        for key in list(self.sites):
            seen = self.sites[key]
            for number in [n for n in seen if n < oldest]:
                del seen[number]
            if not seen and key not in flagged:
                del self.sites[key]
        if len(self.sites) > rules.KEYS_LIMIT:
            by_age = sorted(self.sites, key=lambda k: max(self.sites[k], default=-1))
            for key in by_age[: len(self.sites) - rules.KEYS_LIMIT]:
                if key not in flagged:
                    del self.sites[key]
