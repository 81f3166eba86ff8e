"""``SherlockWSGIMiddleware``: request ids and one MEMORY measurement per request for any WSGI
application, under threaded servers too.

Each request runs in its own ``contextvars`` copy: the application call, every step of the
response iterable and its ``close()`` re-enter that same context, so the id and the
measurement follow the response wherever the server iterates it, and nothing is ever set on
(or reset from) the server thread's own context.
"""

from __future__ import annotations

import contextvars
from typing import Any, Callable, Iterable, Iterator, List, Optional, Tuple

from .._safety import report_internal_error
from ..request_id import _request_id
from ..trackers import MemoryTracker
from ._common import (
    CLIENT_DISCONNECTED,
    ENDPOINT_KEY,
    ERROR_KEY,
    REQUEST_ID_KEY,
    ROUTE_KEY,
    UNMATCHED_ROUTE,
    BoundedNames,
    RequestOptions,
    RequestPolicy,
    end_measurement,
    request_method,
)

Environ = dict
Headers = List[Tuple[str, str]]
StartResponse = Callable[..., Callable[[bytes], Any]]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]

_CLOSED_EARLY = CLIENT_DISCONNECTED + " (the server closed the response before its end)"


class SherlockWSGIMiddleware:
    """Give each request an id and measure it with :class:`sherlock_ai.MemoryTracker`.

    Accepts the options of :class:`~sherlock_ai.integrations.RequestOptions` as keywords.
    A request is measured from the application call until the server calls ``close()`` on
    the response iterable (after its last chunk, or when it gives up on the client), and
    logged as one MEMORY line named ``"{METHOD} {route}"``; the route template is read from
    ``environ["sherlock_ai.route"]``, which the Flask extension fills in (other frameworks
    may too), else ``<unmatched>``. The id is also left in ``environ["sherlock_ai.request_id"]``.
    """

    def __init__(self, app: WSGIApp, **options: Any) -> None:
        if not callable(app):
            raise TypeError(f"SherlockWSGIMiddleware wraps a WSGI application, got {app!r}")
        self.app = app
        self.policy = RequestPolicy(RequestOptions.from_kwargs(options))
        #: The :class:`sherlock_ai.LeakWatch` of ``leak_detection=True``, else ``None``.
        self.leak_watch = self.policy.leak_watch
        self._header_name = self.policy.options.header_name
        self._names = BoundedNames()

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if REQUEST_ID_KEY in environ:
            # An outer SherlockWSGIMiddleware already owns this request: one id, one line.
            return self.app(environ, start_response)
        policy = self.policy
        request_id = policy.request_id(environ.get(policy.environ_key))
        environ[REQUEST_ID_KEY] = request_id
        context = contextvars.copy_context()
        context.run(_request_id.set, request_id)
        response = _Response(self, environ, start_response, context, request_id)
        if environ.get("PATH_INFO", "") not in policy.exclude_paths:
            response.tracker = context.run(policy.start_measurement, "wsgi")
        return response.run()

    def route_name(self, environ: Environ) -> str:
        """The log-safe route template the framework left in the environ."""
        template = environ.get(ROUTE_KEY)
        if not isinstance(template, str) or not template:
            return UNMATCHED_ROUTE
        return self._names.safe(template)


class _Response:
    """The response iterable handed to the server: runs each step in the request's context
    and ends the measurement when closed."""

    __slots__ = ("middleware", "environ", "_start_response", "context", "header", "tracker",
                 "status", "_chunks", "_body", "_error", "_exhausted", "_done")

    def __init__(self, middleware: SherlockWSGIMiddleware, environ: Environ,
                 start_response: StartResponse, context: contextvars.Context,
                 request_id: str) -> None:
        self.middleware = middleware
        self.environ = environ
        self._start_response = start_response
        self.context = context
        self.header = (middleware._header_name, request_id) if middleware.policy.echo else None
        self.tracker: Optional[MemoryTracker] = None
        self.status: Optional[int] = None
        self._body: Any = None
        self._chunks: Optional[Iterator[bytes]] = None
        self._error: Optional[BaseException] = None
        self._exhausted = False
        self._done = False

    def run(self) -> _Response:
        try:
            self._body = self.context.run(self.middleware.app, self.environ, self.start_response)
            self._chunks = self.context.run(iter, self._body)
        except BaseException as exc:
            self._finish(exc)
            raise
        return self

    def start_response(self, status: str, headers: Headers, exc_info: Any = None) -> Any:
        try:
            self.status = int(status[:3])
        except (TypeError, ValueError):
            self.status = None
        if self.header is not None:
            name = self.header[0].lower()
            headers = [h for h in headers if h[0].lower() != name]
            headers.append(self.header)
        return self._start_response(status, headers, exc_info)

    def __iter__(self) -> _Response:
        return self

    def __next__(self) -> bytes:
        try:
            return self.context.run(next, self._chunks)
        except StopIteration:
            self._exhausted = True
            raise
        except BaseException as exc:
            self._error = exc
            raise

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                self.context.run(close)
        except BaseException as exc:
            if self._error is None:
                self._error = exc
            raise
        finally:
            self._finish(self._error)

    def _finish(self, exc: Optional[BaseException]) -> None:
        if self._done or self.tracker is None:
            return
        self._done = True
        problem = None
        try:
            environ = self.environ
            method = request_method(environ.get("REQUEST_METHOD"))
            route = self.middleware.route_name(environ)
            if exc is None and not self._exhausted:
                problem = _CLOSED_EARLY
            elif exc is None and self.status is not None and self.status >= 500:
                cause = environ.get(ERROR_KEY)
                if isinstance(cause, BaseException):
                    problem = f"HTTP {self.status} ({type(cause).__name__}: {cause})"
        except Exception as internal:  # noqa: BLE001 - monitoring never hurts the monitored
            report_internal_error("wsgi request name", internal)
            method, route = "OTHER", UNMATCHED_ROUTE
        watch = self.middleware.leak_watch
        endpoint = None if watch is None else self.environ.get(ENDPOINT_KEY)
        self.context.run(end_measurement, self.tracker, "wsgi", method, route, self.status,
                         problem, exc, watch, endpoint)
