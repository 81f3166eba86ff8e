"""``SherlockWSGIMiddleware``: request ids and one MEMORY measurement per request for any WSGI
application, under threaded servers too.

The server gets what the application returned whenever the measurement allows it: a body
produced in full is handed over unchanged (servers still compute its ``Content-Length``), and
so is a ``wsgi.file_wrapper`` body (servers keep their sendfile path). Only a streamed body is
wrapped, so that each of its steps runs with the request's id and measurement.

Application code (the call, every step of a streamed body, ``close()``) runs in the context of
the thread that calls it, as it would without the middleware: frameworks push a context in one
call and pop it in another (Flask's preserved contexts, ``stream_with_context``), so they must
all see the same context. The request's id and open measurement are lent to that context for
each step and taken back right after it, in the same context, so nothing is left on a server
thread between requests. The measurement itself opens and ends in a private copy of the
context.
"""

from __future__ import annotations

import contextvars
import weakref
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Tuple,
    TypeVar,
)

from ..formatting import exception_summary
from ..request_id import request_id_var
from ..safety import internal_errors
from .collected import end_when_collected
from .keys import ENDPOINT_KEY, ERROR_KEY, REQUEST_ID_KEY, ROUTE_KEY, STREAMED_KEY
from .measured import (
    CLIENT_DISCONNECTED,
    OTHER_METHOD,
    UNMATCHED_ROUTE,
    BoundedNames,
    MeasuredRequest,
    environ_connection,
    request_method,
)
from .options import RequestKeywords, RequestOptions, resolve_options
from .policy import RequestPolicy
from .shedding import shed_wsgi

if TYPE_CHECKING:
    from typing_extensions import Unpack

Environ = Dict[str, Any]
Headers = List[Tuple[str, str]]
StartResponse = Callable[..., Callable[[bytes], Any]]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]

T = TypeVar("T")
_CLOSED_EARLY = CLIENT_DISCONNECTED + " (the server closed the response before its end)"
NOT_CLOSED = "the response was never closed (measured until it was garbage collected)"


class SherlockWSGIMiddleware:
    """Give each request an id and measure it (the figures of ``MemoryTracker``).

    Options as for :class:`~sherlock_ai.integrations.asgi.SherlockMiddleware`
    (``options=RequestOptions(...)`` and/or its fields as keywords), checked here, once, and
    kept as :attr:`options`. A request is measured from the application call until:

    - the application returned, for a body produced in full: a list or tuple, or a body the
      framework reports as not streamed (``environ["sherlock_ai.streamed"] = False``; the
      Flask extension does so from Flask's ``Response.is_streamed``);
    - the server calls ``close()`` on the body, for any other body (after its last chunk, or
      when it gives up on the client), ``wsgi.file_wrapper`` bodies included;
    - the body is garbage collected, for a streamed body the server never closes (``ERROR``).

    It is logged then as one MEMORY line named ``"{METHOD} {route}"``; the route template is
    read from ``environ["sherlock_ai.route"]``, which the Flask extension fills in (other
    frameworks may too), else ``<unmatched>``. The id is also left in
    ``environ["sherlock_ai.request_id"]``.
    """

    def __init__(self, app: WSGIApp, *, options: Optional[RequestOptions] = None,
                 **keywords: Unpack[RequestKeywords]) -> None:
        if not callable(app):
            raise TypeError(f"SherlockWSGIMiddleware wraps a WSGI application, got {app!r}")
        self.app = app
        #: The checked options this middleware runs with.
        self.options = resolve_options(options, keywords)
        self.policy = RequestPolicy(self.options, "wsgi")
        #: The :class:`sherlock_ai.LeakWatch` of ``leak_detection=True``, else ``None``.
        self.leak_watch = self.policy.leak_watch
        self._names = BoundedNames()
        #: Finds the route template of a request the app has not routed yet, for the metrics of
        #: shed requests (``None``: they count as ``<unmatched>``).
        self.route_of_environ: Optional[Callable[[Environ], Optional[str]]] = None
        #: The app's route templates and their methods, for the memory budgets' keys (the
        #: Flask extension sets it; ``None``: unknown, not compared).
        self.app_routes: Optional[Callable[[], Optional[Mapping[str, Any]]]] = None

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if REQUEST_ID_KEY in environ:
            # An outer SherlockWSGIMiddleware already owns this request: one id, one line.
            return self.app(environ, start_response)
        policy = self.policy
        request_id = policy.request_id(environ.get(policy.environ_key))
        environ[REQUEST_ID_KEY] = request_id
        measured = environ.get("PATH_INFO", "") not in policy.exclude_paths
        guard = policy.guard
        if guard is not None and not guard.routes_checked and self.app_routes is not None:
            # A WSGI app has no start-up event: its routes are all known at its first request.
            guard.check_routes_now(self.app_routes)
        if guard is not None and guard.shedding and guard.should_shed(
                request_method(environ.get("REQUEST_METHOD")), lambda: self.shed_route(environ),
                not measured):
            return shed_wsgi(start_response, policy.header_name if policy.echo else None,
                             request_id)
        return WSGIRequest(self, environ, start_response, request_id, measured).respond()

    def shed_route(self, environ: Environ) -> str:
        """The route template of a request shed before the app saw it: what
        :attr:`route_of_environ` finds (the Flask extension sets it), else ``<unmatched>``."""
        find = self.route_of_environ
        template = None if find is None else find(environ)
        return self._names.safe(template) if isinstance(template, str) else UNMATCHED_ROUTE

    def route_name(self, environ: Environ) -> str:
        """The log-safe route template the framework left in the environ."""
        template = environ.get(ROUTE_KEY)
        if not isinstance(template, str) or not template:
            return UNMATCHED_ROUTE
        return self._names.safe(template)


class WSGIRequest(MeasuredRequest):
    """One request: its id, its measurement (opened and ended in a private context) and the
    way each step of the application borrows them. Holds no reference to the body handed to
    the server, so that a body nobody closes can be collected and end the measurement."""

    __slots__ = ("middleware", "environ", "_start_response", "context", "request_id",
                 "header", "error", "_done", "_finalizer")

    def __init__(self, middleware: SherlockWSGIMiddleware, environ: Environ,
                 start_response: StartResponse, request_id: str, measured: bool) -> None:
        self.middleware = middleware
        self.environ = environ
        self._start_response = start_response
        self.request_id = request_id
        policy = middleware.policy
        self.header = (policy.header_name, request_id) if policy.echo else None
        self.error: Optional[BaseException] = None
        self._done = False
        self._finalizer: Optional[weakref.finalize[..., Any]] = None
        self.context = context = contextvars.copy_context()
        context.run(request_id_var.set, request_id)
        # The method is read when the request ends: see end().
        MeasuredRequest.__init__(
            self, context.run(policy.open_request, environ.get("REQUEST_METHOD", ""),
                              environ.get("PATH_INFO", ""), environ_connection(environ))
            if measured else None,
            OTHER_METHOD)

    def lend(self, step: Callable[..., T], *args: Any) -> T:
        """Run one step of the application in the caller's context, with the request's id and
        open measurement current for that step only."""
        measuring = self.measuring
        span_token = None if measuring is None else measuring.lend()
        id_token = request_id_var.set(self.request_id)
        try:
            return step(*args)
        finally:
            request_id_var.reset(id_token)
            if span_token is not None:
                measuring.take_back(span_token)  # type: ignore[union-attr]

    def respond(self) -> Iterable[bytes]:
        try:
            body = self.lend(self.middleware.app, self.environ, self.start_response)
        except BaseException as exc:
            self.end(exc)
            raise
        in_full = file_body = False
        with internal_errors:  # e.g. a hostile __instancecheck__
            in_full, file_body = self._body_kind(body)
        if in_full:
            self.end(None)
            return body
        if file_body:
            if self.measuring is not None and not self._end_at_close_of(body):
                self.end(None)
            return body
        try:
            streamed = _Body(self, body)
        except BaseException as exc:
            self.end(exc)
            raise
        self._end_when_collected(streamed)
        return streamed

    def _body_kind(self, body: Iterable[bytes]) -> Tuple[bool, bool]:
        """(produced in full, the server's own file wrapper)."""
        if isinstance(body, (list, tuple)) or self.environ.get(STREAMED_KEY) is False:
            return True, False
        wrapper = self.environ.get("wsgi.file_wrapper")
        return False, isinstance(wrapper, type) and isinstance(body, wrapper)

    def _end_at_close_of(self, body: Any) -> bool:
        """Hook the measurement's end on a file wrapper's ``close()`` without changing its type
        (servers recognise their wrapper by type); ``False`` when it takes no attribute."""
        original = getattr(body, "close", None)

        def close() -> None:
            try:
                if original is not None:
                    self.lend(original)
            except BaseException as exc:
                self.end(exc)
                raise
            self.end(None)

        try:
            body.close = close
        except Exception:  # noqa: BLE001 - __slots__ or a read-only close: end it now
            return False
        self._end_when_collected(body)
        return True

    def _end_when_collected(self, body: object) -> None:
        if self.measuring is None:
            return
        try:
            self._finalizer = end_when_collected(body, self.collected)
        except TypeError:  # not weakly referenceable: it ends at close() only
            pass

    def collected(self) -> None:
        """The body was garbage collected without being closed (run on the finisher thread)."""
        self.end(self.error, None if self.error is not None else NOT_CLOSED)

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

    def end(self, exc: Optional[BaseException], problem: Optional[str] = None) -> None:
        """End the measurement, named by its route (later calls do nothing)."""
        if self._done or self.measuring is None:
            return
        self._done = True
        if self._finalizer is not None:
            self._finalizer.detach()
        environ = self.environ
        method, route = OTHER_METHOD, UNMATCHED_ROUTE
        with internal_errors:
            method, route = (request_method(environ.get("REQUEST_METHOD")),
                             self.middleware.route_name(environ))
        self.method = method
        if exc is None and self.status is not None and self.status >= 500:
            cause = environ.get(ERROR_KEY)
            if isinstance(cause, BaseException):
                cause = exception_summary(cause)
            if isinstance(cause, str):
                served = f"HTTP {self.status} ({cause})"
                problem = served if problem is None else f"{served}; {problem}"
        self.context.run(self.end_as, route, problem, exc)

    def endpoint(self) -> Optional[Callable[..., Any]]:
        return self.environ.get(ENDPOINT_KEY)


class _Body:
    """A streamed body handed to the server: each step borrows the request's id and
    measurement; ``close()`` ends the measurement."""

    __slots__ = ("request", "_body", "_chunks", "_exhausted", "__weakref__")

    def __init__(self, request: WSGIRequest, body: Iterable[bytes]) -> None:
        self.request = request
        self._body = body
        self._exhausted = False
        self._chunks: Iterator[bytes] = request.lend(iter, body)

    def __iter__(self) -> _Body:
        return self

    def __next__(self) -> bytes:
        try:
            chunk: bytes = self.request.lend(next, self._chunks)
            return chunk
        except StopIteration:
            self._exhausted = True
            raise
        except BaseException as exc:
            self.request.error = exc
            raise

    def close(self) -> None:
        request = self.request
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                request.lend(close)
        except BaseException as exc:
            if request.error is None:
                request.error = exc
            raise
        finally:
            early = not self._exhausted and request.error is None
            request.end(request.error, _CLOSED_EARLY if early else None)
