"""``SherlockMiddleware``: request ids and one MEMORY measurement per HTTP request, for any
ASGI application (Starlette and FastAPI name requests by their route template).

Add it with ``app.add_middleware(SherlockMiddleware, ...)``, wrap any ASGI app with
``SherlockMiddleware(app, ...)``, or call :func:`instrument_app` to put it outside Starlette's
``ServerErrorMiddleware`` so that the 500 built for an unhandled exception carries the id too.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Optional, Protocol, TypeVar, Union, cast, overload

from asgiref.compatibility import double_to_single_callable, is_double_callable

from ..deaths.recorder import closing_record_at_shutdown
from ..logs.records import ESCAPED_REQUEST_ID
from ..request_id import generate_request_id, request_id_var
from ..safety import report_internal_error
from .asgi_request import (
    CONNECTION_CLOSE,
    ASGIApp,
    ASGIRequest,
    Message,
    Receive,
    Scope,
    Send,
    header_name,
    with_header,
)
from .asgi_routes import RouteNames, app_routes
from .keys import REQUEST_ID_KEY
from .measured import request_method
from .options import RequestKeywords, RequestOptions, resolve_options
from .policy import RequestPolicy
from .shedding import shed_asgi, shed_route

if TYPE_CHECKING:
    from typing_extensions import Unpack

_INCOMPLETE = "the application returned without completing the response"


class SherlockMiddleware:
    """Give each HTTP request an id and measure it (the figures of ``MemoryTracker``).

    Options: ``options=RequestOptions(...)``, the fields of
    :class:`~sherlock_ai.integrations.RequestOptions` as keywords, or both (keywords replace
    those fields); checked here, once, and kept as :attr:`options`.

    Each request is measured from its start until the last byte of its response body is
    handed to the server (or the client disconnects) and logged as one MEMORY line named
    ``"{METHOD} {route template}"``. The id is set for the whole request, background tasks
    included, and the previous id is restored afterwards. Websockets get an id (echoed in
    the accept message) but no measurement; lifespan passes through untouched.
    """

    def __init__(self, app: ASGIApp, *, options: Optional[RequestOptions] = None,
                 **keywords: Unpack[RequestKeywords]) -> None:
        if not callable(app):
            raise TypeError(f"SherlockMiddleware wraps an ASGI application, got {app!r}")
        self.app = _single_callable(app)
        #: The checked options this middleware runs with.
        self.options = resolve_options(options, keywords)
        self.policy = RequestPolicy(self.options, "asgi")
        #: The :class:`sherlock_ai.LeakWatch` of ``leak_detection=True``, else ``None``.
        self.leak_watch = self.policy.leak_watch
        self._header = self.policy.header_key
        #: The route templates that name its requests (see :class:`RouteNames`).
        self.route_names = RouteNames()
        #: The log-safe route template of a request that ended (see :class:`RouteNames`).
        self.route_template = self.route_names.template
        self._guard = self.policy.guard
        # Neither excluded paths nor a guard to ask: each request goes straight to its
        # measurement.
        self._plain = self.policy.exclude_paths.empty and self._guard is None
        self._fresh_ids = self.options.id_generator is generate_request_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if REQUEST_ID_KEY in scope or (kind != "http" and kind != "websocket"):
            # Lifespan and other types pass through untouched, and so does a request an outer
            # SherlockMiddleware already owns: one id, one line. The server's shutdown is a
            # graceful exit for the worker's record (uvicorn then ends the process by
            # re-raising SIGTERM, which runs no atexit handler). The start-up of an app whose
            # budgets name routes is checked against its routes.
            if kind == "lifespan":
                receive = closing_record_at_shutdown(receive)
                if self._guard is not None and not self._guard.routes_checked:
                    send = self._starting(scope, send)
            await self.app(scope, receive, send)
            return
        headers = scope.get("headers")
        # Most requests carry no id: a list of headers (what servers give) is searched at C
        # speed, and a fresh id is taken without the policy's checks.
        if type(headers) is list and self._header not in map(header_name, headers) \
                and self._fresh_ids:
            request_id = generate_request_id()
        else:
            request_id = self.policy.request_id(self._incoming_id(scope))
        scope[REQUEST_ID_KEY] = request_id
        token = request_id_var.set(request_id)
        try:
            if self._guard is not None and not self._guard.routes_checked:
                # No lifespan start-up ran (the server's lifespan off, a test client).
                self._guard.check_routes_now(lambda: app_routes(scope.get("app") or self.app))
            if kind == "websocket":
                await self.app(scope, receive, self._echoing(send, request_id, "websocket.accept"))
            elif not self._plain and self._excluded(scope):
                if self._shed(scope, excluded=True):
                    await self._answer_shed(send, request_id)
                else:
                    await self.app(scope, receive, self._echoing(send, request_id,
                                                                 "http.response.start"))
            elif not self._plain and self._shed(scope):
                await self._answer_shed(send, request_id)
            else:
                # Measured here rather than in a coroutine of its own: one frame less on the
                # common path.
                request = ASGIRequest(self.policy, self.route_template, scope, receive, send,
                                      request_id)
                try:
                    await self.app(scope, request.receive, request.send)
                except BaseException as exc:
                    request.failed(exc)
                    raise
                else:
                    if not request.done:
                        request.end(None, _INCOMPLETE)
                finally:
                    # A response streamed from a child task ends the measurement in that
                    # task's context copy, which cannot restore this one: do it here.
                    if request.measuring is not None:
                        request.measuring.leave()
        except BaseException as exc:
            # The server logs it after the id below is restored: the record factory reads the
            # request's id from the exception instead.
            _tag_escaped(exc, request_id)
            raise
        finally:
            request_id_var.reset(token)

    def _starting(self, scope: Scope, send: Send) -> Send:
        """``send`` of a lifespan: its start-up fails when the budgets name routes the app
        does not serve (the routes are all known once the app says it started)."""
        guard = self._guard
        failed = False

        async def starting_send(message: Message) -> None:
            nonlocal failed
            kind = message.get("type")
            if failed and kind == "lifespan.startup.failed":
                return  # the app's own report of the error raised below: told already
            if kind == "lifespan.startup.complete" and guard is not None:
                try:
                    problem = guard.route_problem(app_routes(scope.get("app") or self.app))
                except Exception as exc:  # noqa: BLE001 - monitoring never hurts the monitored
                    report_internal_error("memory guard routes", exc)
                    problem = None
                if problem is not None:
                    failed = True
                    text = f"sherlock_ai memory guard: {problem}"
                    await send({"type": "lifespan.startup.failed", "message": text})
                    # Ends the app's lifespan, as a start-up that fails does.
                    raise ValueError(text)
            await send(message)

        return starting_send

    def _incoming_id(self, scope: Scope) -> Optional[str]:
        wanted = self._header
        for name, value in scope.get("headers") or ():
            if name == wanted:
                return value.decode("latin-1") if isinstance(value, bytes) else None
        return None

    def _shed(self, scope: Scope, excluded: bool = False) -> bool:
        guard = self._guard
        return guard is not None and guard.shedding and guard.should_shed(
            request_method(scope.get("method")), lambda: shed_route(scope), excluded)

    async def _answer_shed(self, send: Send, request_id: str) -> None:
        guard = self._guard
        await shed_asgi(send, self._header, request_id if self.policy.echo else None,
                        close=guard is not None and guard.draining)

    def _excluded(self, scope: Scope) -> bool:
        paths = self.policy.exclude_paths
        if paths.empty:
            return False
        path = scope.get("path", "")
        if path in paths:
            return True
        root = scope.get("root_path", "")
        return bool(root) and path.startswith(root) and path[len(root):] in paths

    def _echoing(self, send: Send, request_id: str, message_type: str) -> Send:
        guard = self._guard
        if not self.policy.echo and (guard is None or not guard.draining):
            return send
        header = (self._header, request_id.encode("latin-1")) if self.policy.echo else None

        async def echoing_send(message: Message) -> None:
            if message["type"] == message_type:
                if header is not None:
                    message = with_header(message, header)
                if guard is not None and guard.draining and message_type != "websocket.accept":
                    message = with_header(message, CONNECTION_CLOSE)
            await send(message)

        return echoing_send


def _tag_escaped(exc: BaseException, request_id: str) -> None:
    try:
        if ESCAPED_REQUEST_ID not in exc.__dict__:  # an inner request tagged it first
            setattr(exc, ESCAPED_REQUEST_ID, request_id)
    except Exception:  # noqa: BLE001 - an exception type that refuses attributes
        pass


def _single_callable(app: Any) -> ASGIApp:
    """``app`` as an ASGI 3 callable. A class whose instances are awaitable is an ASGI 3 app
    (``cls(scope, receive, send)`` then ``await``: Starlette's ``HTTPEndpoint`` and
    ``WebSocketEndpoint``); asgiref would take every class for an ASGI 2 app."""
    if inspect.isclass(app) and hasattr(app, "__await__"):
        return cast(ASGIApp, app)
    return cast(ASGIApp, double_to_single_callable(app) if is_double_callable(app) else app)


class _StarletteLike(Protocol):
    def build_middleware_stack(self) -> ASGIApp: ...


App = TypeVar("App", bound=_StarletteLike)


@overload
def instrument_app(app: App, *, options: Optional[RequestOptions] = None,
                   **keywords: Unpack[RequestKeywords]) -> App: ...


@overload
def instrument_app(app: ASGIApp, *, options: Optional[RequestOptions] = None,
                   **keywords: Unpack[RequestKeywords]) -> SherlockMiddleware: ...


def instrument_app(app: Union[_StarletteLike, ASGIApp], *,
                   options: Optional[RequestOptions] = None,
                   **keywords: Unpack[RequestKeywords]) -> Union[_StarletteLike, ASGIApp]:
    """Make :class:`SherlockMiddleware` the outermost layer of ``app`` and return the app to
    serve.

    For Starlette and FastAPI apps the middleware goes outside ``ServerErrorMiddleware`` (by
    wrapping ``app.build_middleware_stack``), so the 500 answered for an unhandled exception
    carries the id header and is measured as ERROR; ``app`` itself is returned, instrumented
    in place. Any other ASGI app is returned wrapped. Options as for
    :class:`SherlockMiddleware`, checked now, once.
    """
    checked = resolve_options(options, keywords)
    build = getattr(app, "build_middleware_stack", None)
    if not callable(build):
        return SherlockMiddleware(app, options=checked)  # type: ignore[arg-type]
    if getattr(app, "_sherlock_ai_instrumented", False):
        raise RuntimeError("instrument_app() was already called for this app")

    def build_instrumented_stack() -> ASGIApp:
        return SherlockMiddleware(build(), options=checked)

    app.build_middleware_stack = build_instrumented_stack  # type: ignore[method-assign,union-attr]
    app._sherlock_ai_instrumented = True  # type: ignore[union-attr]
    if getattr(app, "middleware_stack", None) is not None:
        app.middleware_stack = build_instrumented_stack()  # type: ignore[union-attr]
    return app
