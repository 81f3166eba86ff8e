"""One Django request: its id and measurement, lent to the code that serves it (the middleware
chain and view, each chunk of a streamed response, ``close()``), and the measurement's end.

A response produced in full is measured until the middleware returns it. A streamed one
(``StreamingHttpResponse``, ``FileResponse``) is measured until the server closes it, after
its last chunk was sent (or when it gives up on the client); one nobody closes ends when it is
garbage collected (ERROR). The measurement opens and ends in a private copy of the context, so
nothing of it is left in the server thread's context between requests.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import weakref
from contextvars import Token
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, Iterable, Optional, Tuple

from ...engine.requests import OpenRequest
from ...engine.span import Span
from ...request_id import request_id_var
from ...safety import report_internal_error
from ..collected import end_when_collected
from ..keys import ERROR_KEY
from ..measured import (
    CLIENT_DISCONNECTED,
    UNMATCHED_ROUTE,
    MeasuredRequest,
    environ_connection,
    request_method,
)
from ..wsgi import NOT_CLOSED

if TYPE_CHECKING:
    from django.http import HttpRequest
    from django.http.response import HttpResponseBase

    from .middleware import Serving

CLOSED_EARLY = CLIENT_DISCONNECTED + " (the server closed the response before its end)"
Tokens = Tuple[Optional[Token[Optional[Span]]], Token[str]]


class DjangoRequest(MeasuredRequest):
    """One request of :class:`~.middleware.SherlockMiddleware` (``measuring`` is ``None`` for
    an excluded path: it gets an id only). Holds no reference to a streamed response, so that
    one nobody closes can be collected and end the measurement."""

    __slots__ = ("serving", "request", "request_id", "context", "streamed", "exhausted",
                 "_done", "_finalizer")

    def __init__(self, serving: Serving, request: HttpRequest, request_id: str,
                 measured: bool) -> None:
        self.serving = serving
        self.request = request
        self.request_id = request_id
        self.streamed = self.exhausted = self._done = False
        self._finalizer: Optional[weakref.finalize[[Callable[[], None]], object]] = None
        self.context = context = contextvars.copy_context()
        context.run(request_id_var.set, request_id)
        method = request_method(request.method)
        MeasuredRequest.__init__(
            self, context.run(serving.policy.open_request, method, request.path_info,
                              environ_connection(request.META))
            if measured else None, method)

    def enter(self) -> Tokens:
        """Make the request's id and measurement current in this context; undo with
        :meth:`leave` in the same context."""
        measuring = self.measuring
        return (None if measuring is None else measuring.lend(),
                request_id_var.set(self.request_id))

    @staticmethod
    def leave(tokens: Tokens) -> None:
        request_id_var.reset(tokens[1])
        OpenRequest.take_back(tokens[0])

    def lend(self, step: Callable[..., Any], *args: Any) -> Any:
        """Run one step of serving the request with its id and measurement current."""
        tokens = self.enter()
        try:
            return step(*args)
        finally:
            self.leave(tokens)

    def respond(self, response: HttpResponseBase) -> HttpResponseBase:
        """Add the id header to the response and end the measurement, or hook its end on the
        close of a streamed response."""
        serving = self.serving
        try:
            if serving.echo:
                response[serving.header_name] = self.request_id
            if self.measuring is None:
                return response
            status = response.status_code
            self.status = status if isinstance(status, int) else None
            if not getattr(response, "streaming", False):
                self.end(None)
                return response
            self._end_at_close(response)
        except Exception as internal:  # noqa: BLE001 - monitoring never hurts the monitored
            report_internal_error("django response", internal)
            self.end(None)
        return response

    def _end_at_close(self, response: Any) -> None:
        # A FileResponse of a file keeps it for the server's own file path (sendfile): its
        # chunks are not wrapped, only its close (and so for a streaming response of some
        # other kind than Django's, which may have no streaming_content).
        if getattr(response, "file_to_stream", None) is None and hasattr(response, "is_async"):
            content = response.streaming_content
            response.streaming_content = (
                _AsyncChunks(self, content) if response.is_async else _Chunks(self, content))
            self.streamed = True
        close = response.close

        def close_and_end() -> None:
            try:
                self.lend(close)
            except BaseException as exc:
                self.end(exc)
                raise
            early = self.streamed and not self.exhausted
            self.end(None, CLOSED_EARLY if early else None)

        # An attribute of this response: WSGI servers, Django's file wrapper path, its ASGI
        # handler and its test client all call response.close().
        response.close = close_and_end
        try:
            self._finalizer = end_when_collected(response, self.collected)
        except TypeError:  # not weakly referenceable: it ends at close() only
            pass

    def collected(self) -> None:
        """The streamed response was garbage collected without being closed (run on the
        finisher thread)."""
        self.end(None, NOT_CLOSED)

    def end(self, exc: Optional[BaseException], problem: Optional[str] = None) -> None:
        """End the measurement (later calls do nothing): named by the URL pattern, ERROR with
        ``exc``, ``problem``, or a 5xx response (with the exception Django turned into it)."""
        if self._done or self.measuring is None:
            return
        self._done = True
        if self._finalizer is not None:
            self._finalizer.detach()
        try:
            route = self.serving.route_of(self.request)
            status = self.status
            if exc is None and status is not None and status >= 500:
                cause = self.request.META.get(ERROR_KEY)
                if isinstance(cause, str):
                    served = f"HTTP {status} ({cause})"
                    problem = served if problem is None else f"{served}; {problem}"
        except Exception as internal:  # noqa: BLE001 - monitoring never hurts the monitored
            report_internal_error("django request name", internal)
            route = UNMATCHED_ROUTE
        self.context.run(self.end_as, route, problem, exc)

    def endpoint(self) -> Optional[Callable[..., Any]]:
        """The view (for the leak watch): the function of the URL pattern, or the class of a
        Django REST framework viewset, whose ``as_view()`` function names it as ``cls``."""
        func = getattr(self.request.resolver_match, "func", None)
        if func is not None and not hasattr(func, "view_class"):
            view_class = getattr(func, "cls", None)
            if inspect.isclass(view_class):
                return view_class
        return func


class _Chunks:
    """A streamed response's chunks, each made with the request's id and measurement
    current."""

    __slots__ = ("exchange", "_chunks")

    def __init__(self, exchange: DjangoRequest, content: Iterable[bytes]) -> None:
        self.exchange = exchange
        self._chunks = iter(content)

    def __iter__(self) -> _Chunks:
        return self

    def __next__(self) -> bytes:
        exchange = self.exchange
        try:
            return exchange.lend(next, self._chunks)  # type: ignore[no-any-return]
        except StopIteration:
            exchange.exhausted = True
            raise
        except BaseException as exc:
            exchange.end(exc)
            raise


class _AsyncChunks:
    """The same for an asynchronous iterator."""

    __slots__ = ("exchange", "_chunks")

    def __init__(self, exchange: DjangoRequest, content: AsyncIterator[bytes]) -> None:
        self.exchange = exchange
        self._chunks = content.__aiter__()

    def __aiter__(self) -> _AsyncChunks:
        return self

    async def __anext__(self) -> bytes:
        exchange = self.exchange
        tokens = exchange.enter()
        try:
            return await self._chunks.__anext__()
        except StopAsyncIteration:
            exchange.exhausted = True
            raise
        except (asyncio.CancelledError, GeneratorExit):
            exchange.end(None, CLOSED_EARLY)
            raise
        except BaseException as exc:
            exchange.end(exc)
            raise
        finally:
            exchange.leave(tokens)
