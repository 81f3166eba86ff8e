"""One measured ASGI HTTP request: its messages watched, its id header added, its measurement
ended once (when the server accepted the last body message, or the client went away)."""

from __future__ import annotations

import sys
from operator import itemgetter, methodcaller
from typing import Any, Awaitable, Callable, MutableMapping, Optional, Tuple

from ..engine.requests import OpenRequest
from ..formatting import exception_summary
from ..safety import internal_errors
from .measured import (
    CLIENT_DISCONNECTED,
    OTHER_METHOD,
    STANDARD_METHODS,
    UNMATCHED_ROUTE,
    MeasuredRequest,
    scope_connection,
)
from .policy import LATER, RequestPolicy

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
#: The log-safe route template of a request that ended: ``(scope, root_path) -> template``.
RouteTemplate = Callable[[Scope, str], str]


#: What a leaving worker answers, so that the client's next request goes to a sibling.
CONNECTION_CLOSE = (b"connection", b"close")
#: A header's name, from its ``(name, value)`` pair.
header_name = itemgetter(0)
_lowered = methodcaller("lower")


def with_header(message: Message, header: Tuple[bytes, bytes]) -> Message:
    """A copy of ``message`` whose headers end with ``header`` instead of any of that name
    (the app's header list is not changed: it may be shared between responses)."""
    name = header[0]
    given = message.get("headers") or ()
    if type(given) is not list and type(given) is not tuple:
        given = list(given)  # any iterable: looked through twice below
    # Looked for at C speed first: an app rarely sets the id header itself.
    if name in map(_lowered, map(header_name, given)):
        headers = [h for h in given if h[0].lower() != name]
        headers.append(header)
    else:
        headers = [*given, header]
    return {**message, "headers": headers}


class ASGIRequest(MeasuredRequest):
    """One measured HTTP request: watches its messages and ends its measurement once."""

    __slots__ = ("route_template", "scope", "_receive", "_send", "trailers", "header",
                 "handled_before", "done", "root_path", "guard")

    def __init__(self, policy: RequestPolicy, route_template: RouteTemplate, scope: Scope,
                 receive: Receive, send: Send, request_id: str) -> None:
        self.route_template = route_template
        self.scope = scope
        self._receive = receive
        self._send = send
        # Read now: routers rewrite the scope's root_path as they descend into mounts.
        self.root_path = scope.get("root_path", "")
        self.done = False
        self.trailers = False
        self.header = (policy.header_key, request_id.encode("latin-1")) if policy.echo else None
        self.guard = policy.guard
        # An exception the caller was already handling is not this request's cause.
        self.handled_before = sys.exc_info()[1]
        # MeasuredRequest's fields, set here: one call less on every request.
        method = scope.get("method")  # request_method() inline: one call less per request
        self.method = method if method in STANDARD_METHODS else OTHER_METHOD
        self.status: Optional[int] = None
        # open_request() inline when it would only open the measurement.
        path = scope.get("path", "")
        connection = scope_connection(scope)
        self.measuring = (policy.open_request(self.method, path, connection) if policy.leased
                          else OpenRequest(policy.meter, self.method, path, connection))

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.disconnect" and not self.done:
            self.end(None, CLIENT_DISCONNECTED)
        return message

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.status = message.get("status")
            self.trailers = message.get("trailers", False)  # read for its truth only
            if self.header is not None:
                message = with_header(message, self.header)
            guard = self.guard
            if guard is not None and guard.draining:
                message = with_header(message, CONNECTION_CLOSE)
            await self._send(message)
            return
        if kind == "http.response.body":  # the common case of _is_last, inline
            last = not self.trailers and not message.get("more_body", False)
        else:
            last = _is_last(kind, message, self.trailers)
        if self.done or not last:
            await self._send(message)
            return
        problem = None
        if self.status is not None and self.status >= 500:
            # Starlette's ServerErrorMiddleware and exception handlers send their 5xx while
            # handling the exception: name it, as the Flask line does.
            cause = sys.exc_info()[1]
            if cause is not None and cause is not self.handled_before \
                    and not _is_http_exception(cause):
                problem = f"HTTP {self.status} ({exception_summary(cause)})"
        try:
            await self._send(message)
        except OSError:
            self.end(None, CLIENT_DISCONNECTED)
            raise
        except BaseException as exc:
            self.end(exc)
            raise
        if problem is None:
            self.end(None, None)
            return
        # The exception is re-raised to the server (ServerErrorMiddleware does), which then
        # closes the connection; a keep-alive client that sends its next request on it before
        # the close sees a failure. The line and the consumers' hooks (span attributes, metrics)
        # end the request now, while its span is open; the middleware's own consumers (the leak
        # watch's counting and snapshots, the guard) wait for the next step of the event loop.
        token = LATER.set(True)
        try:
            self.end(None, problem)
        finally:
            LATER.reset(token)

    def failed(self, exc: BaseException) -> None:
        """The application raised ``exc``: end the measurement with it (a client that went
        away, Starlette's ``ClientDisconnect``, is a disconnect rather than a failure)."""
        if type(exc).__name__ == "ClientDisconnect":
            self.end(None, CLIENT_DISCONNECTED)
        else:
            self.end(exc)

    def endpoint(self) -> Optional[Callable[..., Any]]:
        return self.scope.get("endpoint")

    def end(self, exc: Optional[BaseException], problem: Optional[str] = None) -> None:
        """End the measurement, named by its route (later calls do nothing)."""
        if self.done:
            return
        self.done = True
        route = UNMATCHED_ROUTE
        with internal_errors:
            route = self.route_template(self.scope, self.root_path)
        self.end_as(route, problem, exc)


def _is_http_exception(exc: BaseException) -> bool:
    """An ``HTTPException`` (Starlette's, FastAPI's) is the app's chosen answer, not a failure
    to name: its 5xx reads ``HTTP 503`` as with Flask's ``abort(503)``."""
    return any(cls.__name__ == "HTTPException" for cls in type(exc).__mro__)


def _is_last(kind: str, message: Message, trailers: bool) -> bool:
    if kind == "http.response.body" or kind == "http.response.zerocopysend":
        return not trailers and not message.get("more_body", False)
    if kind == "http.response.trailers":
        return not message.get("more_trailers", False)
    return kind == "http.response.pathsend" and not trailers
