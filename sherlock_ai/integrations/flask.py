"""``Sherlock``: the Flask extension. Request ids and one MEMORY line per request, named by the
Flask route rule (``GET /items/<int:item_id>``)."""

from __future__ import annotations

import types
import weakref
from typing import TYPE_CHECKING, Any, Dict, FrozenSet, Iterable, Optional

from .._extras import missing_extra

try:
    from flask import Flask, current_app, request, request_finished
except ImportError as _exc:
    raise missing_extra(_exc, __name__) from _exc

from ..formatting import exception_summary
from ..safety import internal_errors
from .keys import ENDPOINT_KEY, ERROR_KEY, ROUTE_KEY, STREAMED_KEY
from .options import RequestKeywords, RequestOptions, resolve_options
from .wsgi import Environ, SherlockWSGIMiddleware, StartResponse

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ..leaks import LeakWatch

EXTENSION_NAME = "sherlock_ai"


class Sherlock:
    """Measure every request of a Flask app: ``Sherlock(app, **options)`` or, with an app
    factory, ``sherlock = Sherlock(**options)`` then ``sherlock.init_app(app)``.

    Options as for :class:`~sherlock_ai.integrations.asgi.SherlockMiddleware`
    (``options=RequestOptions(...)`` and/or its fields as keywords), checked here, once, and
    kept as :attr:`options`: every app set up with this extension gets a middleware with
    that same object.
    ``init_app`` wraps ``app.wsgi_app`` with :class:`SherlockWSGIMiddleware` and registers a
    ``teardown_request`` hook (it runs on every outcome) that hands the matched rule, and the
    exception behind a 500, to the middleware, and a ``request_finished`` signal receiver that
    tells it whether the final response is streamed (``Response.is_streamed``): a response
    produced in full is measured until the app returned it, a streamed one until the server
    closes it (see :class:`SherlockWSGIMiddleware`). The extension keeps no reference to an app,
    and the middleware holds the app's own ``wsgi_app`` weakly, so that an instrumented app is
    freed when nothing else refers to it, as a bare one is (a ``wsgi_app`` another middleware
    wrapped before is held as it is).

    With ``leak_detection=True`` each app gets its own watch: ``sherlock.leak_watch`` is the
    one of the app set up last (``app.extensions["sherlock_ai_leak_watch"]`` for any app).
    """

    def __init__(self, app: Optional[Flask] = None, *,
                 options: Optional[RequestOptions] = None,
                 **keywords: Unpack[RequestKeywords]) -> None:
        self.options = resolve_options(options, keywords)
        self.leak_watch: Optional[LeakWatch] = None
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Instrument ``app`` and register the extension as ``app.extensions["sherlock_ai"]``."""
        if EXTENSION_NAME in app.extensions:
            raise RuntimeError("sherlock_ai's Flask extension is already set up for this app")
        wrapped: Any = app.wsgi_app
        if isinstance(wrapped, types.MethodType) and wrapped.__self__ is app:
            # app.wsgi_app -> middleware -> bound method -> app would be a reference cycle:
            # the app would outlive its last reference until the cycle collector ran.
            wrapped = _WeakAppMethod(wrapped)
        middleware = SherlockWSGIMiddleware(wrapped, options=self.options)
        if middleware.policy.guard is not None:
            middleware.route_of_environ = _RuleOf(app)
            middleware.app_routes = _RulesOf(app)
        app.wsgi_app = middleware  # type: ignore[method-assign]
        app.teardown_request(_hand_route_to_middleware)
        request_finished.connect(_hand_streaming_to_middleware, app)
        app.extensions[EXTENSION_NAME] = self
        if middleware.leak_watch is not None:
            self.leak_watch = middleware.leak_watch
            app.extensions[EXTENSION_NAME + "_leak_watch"] = middleware.leak_watch


class _WeakAppMethod:
    """The app's own ``wsgi_app``, held without keeping the app alive."""

    __slots__ = ("_method", "_name")

    def __init__(self, method: types.MethodType) -> None:
        self._method = weakref.WeakMethod(method)
        self._name = repr(method.__self__)

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        method = self._method()
        if method is None:
            raise ReferenceError(
                f"the Flask app {self._name} was freed while its wsgi_app is still served: "
                "keep a reference to the Flask app (serve the app, or keep it in a variable)")
        body: Iterable[bytes] = method(environ, start_response)
        return body

    def __repr__(self) -> str:
        return f"<wsgi_app of {self._name}, held weakly>"


class _RuleOf:
    """The rule Flask's URL map matches for a request not routed yet (a request the memory
    guard sheds), holding the app weakly."""

    __slots__ = ("_app",)

    def __init__(self, app: Flask) -> None:
        self._app = weakref.ref(app)

    def __call__(self, environ: Environ) -> Optional[str]:
        app = self._app()
        if app is None:
            return None
        try:
            rule, _ = app.url_map.bind_to_environ(environ).match(return_rule=True)
        except Exception:  # noqa: BLE001 - no match, a redirect, a bad method: no route label
            return None
        return rule.rule


class _RulesOf:
    """The rules of Flask's URL map and their methods, holding the app weakly."""

    __slots__ = ("_app",)

    def __init__(self, app: Flask) -> None:
        self._app = weakref.ref(app)

    def __call__(self) -> Optional[Dict[str, FrozenSet[str]]]:
        app = self._app()
        if app is None:
            return None
        routes: Dict[str, FrozenSet[str]] = {}
        for rule in app.url_map.iter_rules():
            routes[rule.rule] = routes.get(rule.rule, frozenset()) | frozenset(rule.methods or ())
        return routes


def _hand_route_to_middleware(exc: Optional[BaseException]) -> None:
    environ = request.environ
    rule = request.url_rule
    if rule is not None:
        environ[ROUTE_KEY] = rule.rule
        environ[ENDPOINT_KEY] = current_app.view_functions.get(rule.endpoint)
    if exc is not None:
        # Its text, not the exception: the frames of its traceback reach the response body,
        # and a body the server never closes must stay collectable to end its measurement.
        with internal_errors:
            environ[ERROR_KEY] = exception_summary(exc)


def _hand_streaming_to_middleware(sender: Flask, response: Any, **extra: Any) -> None:
    with internal_errors:
        request.environ[STREAMED_KEY] = bool(response.is_streamed)
