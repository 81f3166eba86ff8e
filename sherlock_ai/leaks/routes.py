"""The routes a leak watch counts: an id and a finished-request counter per route key, and
the index of their endpoints' code (the prior of the attribution)."""

from __future__ import annotations

from typing import Any, Dict, List, Set

from .code_prior import EndpointIndex, LineRange, code_ranges
from .rules import CONNECTIONS_NAME, IN_FLIGHT_NAME, LEVEL_IDS, OVERFLOW_ROUTE, THREADS_NAME


class RouteRegistry:
    """Route ids, counters and endpoint code. Not thread-safe: the watch's lock guards it."""

    def __init__(self, max_routes: int) -> None:
        self.max_routes = max_routes
        self.names: List[str] = [IN_FLIGHT_NAME, THREADS_NAME, CONNECTIONS_NAME]
        self.finished: List[int] = [0] * len(self.names)
        self.index = EndpointIndex()
        self._ids: Dict[str, int] = {}
        self._with_code: Set[int] = set()
        self._ranges: Dict[int, List[LineRange]] = {}
        self._endpoints: List[Any] = []  # kept alive so that their id() keys stay unique

    def count(self, route_key: str, endpoint: Any) -> None:
        """Count one finished request of ``route_key`` (served by ``endpoint`` if known)."""
        route_id = self._ids.get(route_key)
        if route_id is None:
            route_id = self._add(route_key)
        self.finished[route_id] += 1
        if endpoint is not None and route_id not in self._with_code \
                and self.names[route_id] != OVERFLOW_ROUTE:
            self._learn(route_id, endpoint)

    def blamable(self, route_id: int) -> bool:
        """Whether a route may be named in a suspect (the overflow bucket and the levels of
        :data:`LEVEL_IDS` may not)."""
        return route_id not in LEVEL_IDS and self.names[route_id] != OVERFLOW_ROUTE

    def __len__(self) -> int:
        return len(self._ids)

    def _add(self, route_key: str) -> int:
        if len(self._ids) >= self.max_routes or route_key == OVERFLOW_ROUTE:
            route_id = self._ids.get(OVERFLOW_ROUTE)
            if route_id is not None:
                return route_id
            route_key = OVERFLOW_ROUTE
        route_id = len(self.names)
        self.names.append(route_key)
        self.finished.append(0)
        self._ids[route_key] = route_id
        return route_id

    def _learn(self, route_id: int, endpoint: Any) -> None:
        self._with_code.add(route_id)
        ranges = self._ranges.get(id(endpoint))
        if ranges is None:
            ranges = self._ranges[id(endpoint)] = code_ranges(endpoint)
            self._endpoints.append(endpoint)
        if ranges:
            self.index = self.index.with_endpoint(route_id, ranges)
