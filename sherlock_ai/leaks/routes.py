"""The routes a leak watch counts: an id and a finished-request counter per route key, and
the index of their endpoints' code (the prior of the attribution)."""

from __future__ import annotations

from typing import Any, Dict, List, Set

from .code_prior import EndpointIndex, code_ranges

#: The route key that requests of routes beyond ``max_routes`` are counted under. Its
#: requests take part in the fits (growth they cause is not pinned on another route) but it
#: is never reported.
OVERFLOW_ROUTE = "OTHER <more routes>"
#: Route id 0 is not a route: its count at a point is the number of requests in flight that
#: started while tracing ran. What they hold until they end (frames, scratch objects) rises
#: and falls with it; fitted as one more column, it is not pinned on the routes' counts.
IN_FLIGHT_ID = 0
_IN_FLIGHT_NAME = "<requests in flight>"
#: Route id 1 is not a route either: its count at a point is the number of threads alive that
#: started while tracing ran. A server that serves each request on a new thread (werkzeug's
#: threaded server) holds that thread's socket, buffers and handler before the request is
#: counted as started and after it is counted as finished; that memory rises and falls with
#: the threads alive, not with any route's count.
THREADS_ID = 1
_THREADS_NAME = "<threads started while tracing>"
#: The ids of those two levels: fitted like routes, never blamed.
LEVEL_IDS = (IN_FLIGHT_ID, THREADS_ID)


class RouteRegistry:
    """Route ids, counters and endpoint code. Not thread-safe: the watch's lock guards it."""

    def __init__(self, max_routes: int) -> None:
        self.max_routes = max_routes
        self.names: List[str] = [_IN_FLIGHT_NAME, _THREADS_NAME]
        self.finished: List[int] = [0, 0]
        self.index = EndpointIndex()
        self._ids: Dict[str, int] = {}
        self._with_code: Set[int] = set()
        self._ranges: Dict[int, list] = {}
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
