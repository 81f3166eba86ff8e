"""The 503 answered to a request shed by the memory guard (``on_rss_limit="shed"``), before
the application sees it, and the route it would have had (for the metrics only)."""

from __future__ import annotations

from typing import Any, Callable, Iterable, List, MutableMapping, Optional

from ..guard import SHED_BODY, SHED_HEADERS
from ..safety import internal_errors
from .measured import UNMATCHED_ROUTE

_STATUS = "503 Service Unavailable"
_ASGI_HEADERS = [(name.lower().encode("latin-1"), value.encode("latin-1"))
                 for name, value in SHED_HEADERS]


async def shed_asgi(send: Callable[[Any], Any], header_key: bytes,
                    request_id: Optional[str], close: bool = False) -> None:
    """Send the 503 (with the request's id header when it is echoed; ``close``: with
    ``Connection: close``, from a worker that is leaving)."""
    headers = list(_ASGI_HEADERS)
    if request_id is not None:
        headers.append((header_key, request_id.encode("latin-1")))
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": SHED_BODY})


def shed_wsgi(start_response: Callable[..., Any], header_name: Optional[str],
              request_id: str) -> Iterable[bytes]:
    """Start the 503 and return its body."""
    headers: List[Any] = list(SHED_HEADERS)
    if header_name is not None:
        headers.append((header_name, request_id))
    start_response(_STATUS, headers)
    return [SHED_BODY]


def shed_route(scope: MutableMapping[str, Any]) -> str:
    """The route template Starlette's router would match for ``scope`` (its app is in the
    scope before routing), else ``<unmatched>``; only shed requests pay for the lookup."""
    router = getattr(scope.get("app"), "router", None)
    with internal_errors:  # a router we do not know: no route label
        for route in getattr(router, "routes", ()):
            match, _ = route.matches(scope)
            if getattr(match, "name", "") == "FULL":
                path = getattr(route, "path", None)
                return path if isinstance(path, str) else UNMATCHED_ROUTE
    return UNMATCHED_ROUTE
