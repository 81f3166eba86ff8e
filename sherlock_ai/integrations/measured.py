"""What one measured request of an integration knows (its method, then its status) and its
one call when it is over; the bounded names its measurement carries. Imports no web
framework."""

from __future__ import annotations

from typing import Any, Callable, Dict, Hashable, Mapping, Optional

from ..engine.requests import OpenRequest
from ..logs.lines import safe_name

#: The methods a request name may carry; any other token a client sends becomes OTHER_METHOD.
STANDARD_METHODS = frozenset(
    ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")
)
OTHER_METHOD = "OTHER"
#: The route of a request that no route matched (or whose router reports no template).
UNMATCHED_ROUTE = "<unmatched>"
CLIENT_DISCONNECTED = "client disconnected before the response was complete"



def environ_connection(environ: Mapping[str, Any]) -> Optional[Hashable]:
    """The key of the connection a WSGI request (or a Django request's ``META``) came on:
    the client's address and port; ``None`` when the server does not give the port."""
    port = environ.get("REMOTE_PORT")
    return None if port is None else (environ.get("REMOTE_ADDR"), port)


def scope_connection(scope: Mapping[str, Any]) -> Optional[Hashable]:
    """The key of the connection an ASGI request came on: the client's address and port
    (``scope["client"]``, a list with some servers); ``None`` when the server gives none."""
    client = scope.get("client")
    return None if not client else tuple(client)


# Names are bounded: their keys come from the application's routes, but a router that reports
# unusual templates must not grow memory without end.
_CACHE_LIMIT = 1024


class MeasuredRequest:
    """One measured request of an integration: its method, then its status, and
    :meth:`end_as`, the integration's one call when the request is over. The ASGI
    :class:`~sherlock_ai.integrations.asgi_request.ASGIRequest` and the WSGI request are made of
    it."""

    __slots__ = ("measuring", "method", "status")

    def __init__(self, measuring: Optional[OpenRequest], method: str) -> None:
        #: The engine's open measurement (``None`` for a request that is not measured).
        self.measuring = measuring
        self.method = method
        self.status: Optional[int] = None

    def endpoint(self) -> Optional[Callable[..., Any]]:
        """The function that served the request, for the leak watch (``None`` unknown)."""
        return None

    def end_as(self, route: str, problem: Optional[str] = None,
               exc: Optional[BaseException] = None) -> None:
        """Name the measurement ``"{method} {route}"``, attach its method, route and status
        code, report a 5xx response and ``problem`` as ERROR, and end it."""
        measuring = self.measuring
        if measuring is None or measuring.meter is None:
            return  # not measured, or ended already
        status = self.status
        if problem is None and exc is None and status is not None and status >= 500:
            problem = f"HTTP {status}"
        method = self.method
        measuring.end(f"{method} {route}",
                      {"method": method, "route": route, "status_code": status},
                      problem, exc, self.endpoint())


def request_method(method: object) -> str:
    """The request's method when standard, else :data:`OTHER_METHOD` (clients send any token)."""
    return method if isinstance(method, str) and method in STANDARD_METHODS else OTHER_METHOD


class BoundedNames:
    """Log-safe versions of route templates, computed once per template."""

    def __init__(self) -> None:
        self._safe: Dict[str, str] = {}

    def safe(self, template: str) -> str:
        name = self._safe.get(template)
        if name is None:
            name = safe_name(template)
            if len(self._safe) < _CACHE_LIMIT:
                self._safe[template] = name
        return name
