"""Route templates of ASGI requests that ended, read from what Starlette's routers leave in the
scope (``route``, ``endpoint``, ``router``, a grown ``root_path``); imports no framework."""

from __future__ import annotations

from typing import Any, Dict, FrozenSet, List, MutableMapping, Optional, Tuple

from ..bounded import BoundedCache
from .measured import UNMATCHED_ROUTE, BoundedNames

Scope = MutableMapping[str, Any]

# Lookups are keyed by the app's routers and mounts: bounded all the same.
_CACHE_LIMIT = 1024


class RouteNames:
    """Log-safe route templates (``/items/{item_id}``, ``/v1/admin/{path}``) for one
    middleware, with the lookups of its routers cached."""

    def __init__(self) -> None:
        self._names = BoundedNames()
        self._mounts: BoundedCache[Tuple[int, str], Tuple[Optional[str], Any]] = \
            BoundedCache(_CACHE_LIMIT)
        self._routes: BoundedCache[Tuple[int, int], Any] = BoundedCache(_CACHE_LIMIT)
        # id(route) -> (route, name) for routes matched outside any mount: the common case in
        # one dict lookup. The route is kept and compared, so a reused id never misnames.
        self._plain: BoundedCache[int, Tuple[Any, str]] = BoundedCache(_CACHE_LIMIT)

    def template(self, scope: Scope, root_path: str) -> str:
        """The log-safe route template of a request that ended: Starlette's routers leave the
        matched route in ``scope["route"]`` and grow ``root_path`` by each mount's prefix."""
        route = scope.get("route")
        mounted = scope.get("root_path", "")
        if mounted == root_path:
            known = self._plain.get(id(route))
            if known is not None and known[0] is route:
                return known[1]
        if route is None and "endpoint" in scope:
            # Starlette before 1.0 (and other routers) leave only the matched endpoint.
            route = self._route_of(scope)
        path = getattr(route, "path", None)
        if len(mounted) > len(root_path) and mounted.startswith(root_path):
            prefix, innermost = self._mount_template(scope, mounted[len(root_path):])
            if prefix is not None and innermost is not None and (
                    route is None or route is innermost):
                if getattr(innermost, "routes", None):
                    return UNMATCHED_ROUTE  # the mounted router matched nothing
                # A mounted app that is not a router: the mount is the route.
                return self._names.safe(prefix + "/{path}")
            if isinstance(path, str):
                return self._names.safe((prefix or "<mount>") + path)
        if not isinstance(path, str):
            return UNMATCHED_ROUTE
        name = self._names.safe(path)
        if mounted == root_path and route is scope.get("route"):
            self._plain.keep(id(route), (route, name))
        return name

    def _route_of(self, scope: Scope) -> Any:
        """The route whose endpoint served the request, found in the router's tree (the
        first one that matches the scope when several share the endpoint)."""
        router, endpoint = scope.get("router"), scope["endpoint"]
        key = (id(router), id(endpoint))
        found = self._routes.get(key)
        if found is not None:
            return found
        candidates = _routes_with_endpoint(getattr(router, "routes", ()), endpoint)
        if len(candidates) == 1:
            return self._routes.keep(key, candidates[0])
        for candidate in candidates:
            matches = getattr(candidate, "matches", None)
            if matches is not None and matches(scope)[0].name == "FULL":
                return candidate
        return candidates[0] if candidates else None

    def _mount_template(self, scope: Scope, concrete: str) -> Tuple[Optional[str], Any]:
        router = scope.get("router")
        key = (id(router), concrete)
        found = self._mounts.get(key)
        if found is None:
            found = self._mounts.keep(key, _walk_mounts(getattr(router, "routes", ()), concrete))
        return found


def _routes_with_endpoint(routes: Any, endpoint: Any) -> List[Any]:
    found = []
    for route in routes:
        children = getattr(route, "routes", None)
        if getattr(route, "endpoint", None) is endpoint and children is None:
            found.append(route)
        elif children:
            found += _routes_with_endpoint(children, endpoint)
    return found


def _walk_mounts(routes: Any, concrete: str) -> Tuple[Optional[str], Any]:
    """The template of the mounts that matched the ``concrete`` path prefix, and the
    innermost of them (``None, None`` when not found)."""
    for route in routes:
        regex = getattr(route, "path_regex", None)
        children = getattr(route, "routes", None)
        if children is None:
            continue
        if regex is None:  # a Host: its routes see the same path
            found = _walk_mounts(children, concrete)
            if found[0] is not None:
                return found
            continue
        match = regex.match(concrete + "/")
        if match is None or "path" not in match.groupdict():
            continue
        rest = match.group("path")
        if rest == "":
            return route.path, route
        inner, innermost = _walk_mounts(children, "/" + rest[:-1])
        if inner is not None:
            return route.path + inner, innermost
    return None, None


def app_routes(app: Any) -> Optional[Dict[str, Optional[FrozenSet[str]]]]:
    """The route templates of a Starlette (or FastAPI) app as its requests are named (mounted
    routes under their mount's prefix, a mounted app as ``{prefix}/{path}``), each with its
    HTTP methods (``None``: any); ``None`` when ``app`` has no router we know."""
    routes = getattr(getattr(app, "router", None), "routes", None)
    if routes is None:
        routes = getattr(app, "routes", None)
    if routes is None:
        return None
    found: Dict[str, Optional[FrozenSet[str]]] = {}
    _collect_routes(routes, "", found)
    return found


def _collect_routes(routes: Any, prefix: str, found: Dict[str, Optional[FrozenSet[str]]]) -> None:
    for route in routes:
        path = getattr(route, "path", None)
        children = getattr(route, "routes", None)
        if children is not None and getattr(route, "path_regex", None) is None:
            _collect_routes(children, prefix, found)  # a Host: its routes see the same path
        elif not isinstance(path, str):
            continue
        elif children:
            _collect_routes(children, prefix + path, found)
        elif children is not None or hasattr(route, "app") and not hasattr(route, "endpoint"):
            found[prefix + path + "/{path}"] = None  # a mounted app: the mount is the route
        elif type(route).__name__ != "WebSocketRoute":
            methods = getattr(route, "methods", None)
            known = found.get(prefix + path, frozenset())
            found[prefix + path] = None if methods is None or known is None \
                else known | frozenset(methods)
