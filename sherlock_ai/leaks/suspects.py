"""Leak suspects: what a confirmed route looks like, and when its WARNING is logged."""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Tuple

from ..engine.heap import Site, site_path
from ..formatting import format_bytes, log_safe
from ..logs import writer
from ..logs.lines import MONITORING_LOGGER
from ..logs.schema import NATIVE, NATIVE_NOTE, NOT_ATTRIBUTABLE, PYTHON, SHARED_BY
from . import rules
from .fit import Estimate

_logger = logging.getLogger(MONITORING_LOGGER)


class LeakSuspect:
    """A route whose requests keep leaving memory behind.

    ``per_request``: bytes retained per request (the fitted slopes, summed over its sites);
    ``requests``: the route's requests the evidence spans; ``sites``: the growing allocation
    sites, largest first, as ``{"file", "line", "size", "count", "share"}``: the file's path
    relative to the project or its ``sys.path`` entry, the bytes and blocks this route's
    requests added there over those requests, and the share of the site's growth that is
    this route's (below 1 when other routes retain at the same line).

    ``kind_of_leak``: ``"python"`` (seen by tracemalloc, at ``sites``) or ``"native"``
    (growth of the RSS that the traced sites do not explain: ``sites`` is empty and
    ``rss_growth`` the bytes the RSS's high-water mark gained over those requests).

    ``attribution``: ``"route"`` (one route's), ``"shared"`` (``name`` is ``"shared by A,
    B"``: routes whose request counts moved in lockstep, so the counts cannot split the
    growth between them; ``per_request`` is per request of any of them) or ``"none"``
    (``name`` is ``"not attributable"``: more than three such routes); ``routes`` names them.
    """

    __slots__ = ("name", "method", "route", "per_request", "requests", "sites",
                 "kind_of_leak", "rss_growth", "attribution", "routes")

    def __init__(self, name: str, per_request: float, requests: int,
                 sites: List[Dict[str, Any]], kind_of_leak: str = PYTHON,
                 rss_growth: int = 0, routes: Optional[List[str]] = None) -> None:
        self.name = name
        self.routes = [name] if routes is None else routes
        self.attribution = ("shared" if name.startswith(SHARED_BY) else
                            "none" if name == NOT_ATTRIBUTABLE else "route")
        method, _, route = name.partition(" ")
        self.method, self.route = (method, route) if route and self.attribution == "route" \
            else ("", name)
        self.per_request = per_request
        self.requests = requests
        self.sites = sites
        self.kind_of_leak = kind_of_leak
        self.rss_growth = rss_growth

    def __repr__(self) -> str:
        return (f"LeakSuspect({self.name!r}, per_request={self.per_request:.0f}, "
                f"kind_of_leak={self.kind_of_leak!r})")

    @property
    def site(self) -> str:
        """The largest growing site as ``path:line`` (path relative to the project), or ``""``."""
        if not self.sites:
            return ""
        return f"{self.sites[0]['file']}:{self.sites[0]['line']}"

    def as_dict(self) -> Dict[str, Any]:
        """The structured fields of the WARNING's JSON line."""
        return {
            "kind": "leak_suspect", "name": self.name, "method": self.method,
            "route": self.route, "per_request": float(self.per_request),
            "requests": self.requests, "sites": [dict(site) for site in self.sites],
            "kind_of_leak": self.kind_of_leak, "attribution": self.attribution,
            "routes": list(self.routes),
            **({"rss_growth": self.rss_growth} if self.kind_of_leak == NATIVE else {}),
        }

    def message(self) -> str:
        """``LEAK SUSPECT | GET /route | +4.04KB/request | path.py:LINE +size (+n blocks)...``,
        a site shared with other routes as ``(+n blocks, 25% of its growth)``; a native
        leak as ``LEAK SUSPECT | GET /route | +64.00KB/request (native: not seen by
        tracemalloc) | RSS +3.00MB over 48 requests``."""
        name = log_safe(self.name, limit=200)
        if self.kind_of_leak == NATIVE:
            return (f"LEAK SUSPECT | {name} | +{format_bytes(self.per_request)}/request"
                    f" ({NATIVE_NOTE}) | RSS +{format_bytes(self.rss_growth)}"
                    f" over {self.requests} requests")
        parts = []
        for site in self.sites:
            share = site.get("share", 1.0)
            shared = f", {share:.0%} of its growth" if share < rules.WHOLE_SHARE else ""
            parts.append(f"{log_safe(site['file'], limit=200)}:{site['line']}"
                         f" +{format_bytes(site['size'])} ({site['count']:+d} blocks{shared})")
        return (
            f"LEAK SUSPECT | {name}"
            f" | +{format_bytes(self.per_request)}/request"
            f" | {', '.join(parts)} over {self.requests} requests"
        )


class SuspectBook:
    """The current suspects, built from the flagged (site, route) estimates; logs a route
    once, and again only when its estimate moves by more than a quarter."""

    def __init__(self) -> None:
        self.suspects: Dict[Tuple[int, str], LeakSuspect] = {}
        self._logged: Dict[Tuple[int, str], float] = {}

    def update(self, flagged: Dict[Tuple[Site, int], Tuple[Estimate, float]],
               names: List[str], native: Optional[Dict[int, Estimate]] = None,
               groups: Optional[Dict[Tuple[Site, Tuple[int, ...]], Estimate]] = None
               ) -> None:
        """``flagged`` maps (site, route id) to the estimate and the route's share of the
        site's growth; ``native``, route id to the estimate of its RSS growth that no
        traced site explains; ``groups``, (site, route ids whose counts moved in lockstep)
        to their estimate together; ``names`` are the route keys by id."""
        by_route: Dict[Any, List[Tuple[Site, Estimate, float]]] = {}
        for (site, route_id), (estimate, share) in flagged.items():
            by_route.setdefault(route_id, []).append((site, estimate, share))
        for (site, group), estimate in (groups or {}).items():
            by_route.setdefault(group, []).append((site, estimate, 1.0))
        suspects: Dict[Tuple[Any, str], LeakSuspect] = {}
        for route_id, found in by_route.items():
            found.sort(key=lambda item: -item[1].per_request)
            members: List[str]
            if isinstance(route_id, tuple):
                members = [names[r] for r in route_id]
                name = (SHARED_BY + ", ".join(members) if len(members) <= rules.SHARED_NAMED
                        else NOT_ATTRIBUTABLE)
            else:
                name, members = names[route_id], [names[route_id]]
            suspects[(route_id, PYTHON)] = LeakSuspect(
                name,
                sum(estimate.per_request for _, estimate, _ in found),
                max(estimate.requests for _, estimate, _ in found),
                [{"file": log_safe(site_path(site[0])), "line": site[1],
                  "size": estimate.growth, "count": estimate.blocks,
                  "share": round(share, 3)}
                 for site, estimate, share in found[:rules.SITES_SHOWN]],
                routes=members,
            )
        for route_id, estimate in (native or {}).items():
            suspects[(route_id, NATIVE)] = LeakSuspect(
                names[route_id], estimate.per_request, estimate.requests, [], NATIVE,
                estimate.growth)
        for key, suspect in suspects.items():
            logged = self._logged.get(key)
            if logged is None or abs(suspect.per_request - logged) > rules.REPEAT_CHANGE * logged:
                self._logged[key] = suspect.per_request
                writer.current.write_event(_logger, logging.WARNING, suspect.message(),
                                           event=suspect)
        self.suspects = suspects

    def ordered(self) -> List[LeakSuspect]:
        """Largest retention per request first."""
        return sorted(self.suspects.values(), key=lambda s: -s.per_request)
