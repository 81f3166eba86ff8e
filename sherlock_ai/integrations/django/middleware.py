"""``SherlockMiddleware``: Django's middleware, first in ``MIDDLEWARE``; sync and async capable,
so Django never switches modes because of it."""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Optional, Union

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.urls import Resolver404, resolve

from ...bounded import BoundedCache
from ...guard import SHED_BODY, SHED_HEADERS
from ...logs.lines import safe_name
from ...safety import internal_errors
from ..keys import REQUEST_ID_KEY
from ..measured import CLIENT_DISCONNECTED, UNMATCHED_ROUTE, request_method
from ..options import RequestOptions
from ..policy import RequestPolicy
from .request import DjangoRequest

APP = "sherlock_ai.integrations.django"
APP_LABEL = "sherlock_ai"
MIDDLEWARE_PATH = f"{APP}.SherlockMiddleware"

# Names are bounded: their keys come from the project's URL patterns, but a resolver that
# reports unusual routes must not grow memory without end.
_NAMES_LIMIT = 1024


class Serving:
    """What every :class:`SherlockMiddleware` of the process shares, made from the checked
    ``SHERLOCK_AI`` at start-up: the request policy (with its leak watch and memory guard) and
    the request names of the URL patterns."""

    def __init__(self, options: RequestOptions) -> None:
        self.options = options
        self.policy = policy = RequestPolicy(options, "django")
        self.echo = policy.echo
        self.header_name = policy.header_name
        # Neither excluded paths nor a guard to ask: each request goes straight to its
        # measurement.
        self.plain = policy.exclude_paths.empty and policy.guard is None
        self._names: BoundedCache[str, str] = BoundedCache(_NAMES_LIMIT)

    def open(self, request: HttpRequest) -> Union[DjangoRequest, HttpResponse]:
        """The request's :class:`DjangoRequest`, or the 503 of a request the memory guard sheds."""
        policy = self.policy
        meta = request.META
        request_id = policy.request_id(meta.get(policy.environ_key))
        # In the environ under WSGI: gunicorn's access line and the log filter read it there.
        meta[REQUEST_ID_KEY] = request_id
        measured = True
        if not self.plain:
            measured = request.path_info not in policy.exclude_paths
            guard = policy.guard
            if measured and guard is not None and guard.shedding and guard.should_shed(
                    request_method(request.method), lambda: self.shed_route(request)):
                return self._shed_response(request_id)
        return DjangoRequest(self, request, request_id, measured)

    def route_of(self, request: HttpRequest) -> str:
        """The log-safe name of the URL pattern that served ``request``: Django's route with
        ``include()`` prefixes joined and one leading slash (``/items/<int:pk>/``), a regex
        pattern without its ``^`` (``/archive/(?P<year>[0-9]{4})/$``), ``<unmatched>`` when
        none matched."""
        route = getattr(request.resolver_match, "route", None)
        if not isinstance(route, str):
            return UNMATCHED_ROUTE
        name = self._names.get(route)
        if name is None:
            path = route[1:] if route.startswith("^") else route
            name = self._names.keep(route, safe_name(path if path.startswith("/") else "/" + path))
        return name

    def shed_route(self, request: HttpRequest) -> str:
        """The name of the pattern Django would match for a request the guard sheds before
        Django resolved it (for the metrics of shed requests only)."""
        try:
            match = resolve(request.path_info, getattr(request, "urlconf", None))
        except Resolver404:
            return UNMATCHED_ROUTE
        request.resolver_match = match
        return self.route_of(request)

    def _shed_response(self, request_id: str) -> HttpResponse:
        response = HttpResponse(SHED_BODY, status=503, headers=dict(SHED_HEADERS))
        if self.echo:
            response[self.header_name] = request_id
        return response


class SherlockMiddleware:
    """Give each request an id and measure it (the figures of ``MemoryTracker``), with the
    options of ``settings.SHERLOCK_AI``, checked at start-up by the app
    ``sherlock_ai.integrations.django`` (which must be installed).

    Each request is logged as one MEMORY line named ``"{METHOD} /{route}"`` from the URL
    pattern that matched (``GET /items/<int:pk>/``; ``<unmatched>`` when none did), measured
    until the middleware returns the response, or, for a streamed response, until the server
    closes it after its last chunk. The id is current while the request is served (sync views
    that Django's ASGI handler runs in a thread included), set in ``request.META
    ["sherlock_ai.request_id"]`` and echoed in the response header, 500s included; a 500 line
    names the exception Django turned into it.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)
        self._app = installed_app()
        self._app.handler_built()

    def __call__(self, request: HttpRequest) -> Any:
        if self.async_mode:
            return self.__acall__(request)
        opened = self._open(request)
        if opened is None:
            return self.get_response(request)
        if not isinstance(opened, DjangoRequest):
            return opened
        tokens = opened.enter()
        try:
            response = self.get_response(request)
        except BaseException as exc:
            # Django turns every Exception into a response: this is a SystemExit or the like.
            opened.end(exc)
            raise
        finally:
            opened.leave(tokens)
        return opened.respond(response)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        opened = self._open(request)
        if opened is None:
            return await self.get_response(request)
        if not isinstance(opened, DjangoRequest):
            return opened
        tokens = opened.enter()
        try:
            response = await self.get_response(request)
        except asyncio.CancelledError:
            # Django's ASGI handler cancels the request when its client disconnects.
            opened.end(None, CLIENT_DISCONNECTED)
            raise
        except BaseException as exc:
            opened.end(exc)
            raise
        finally:
            opened.leave(tokens)
        return opened.respond(response)

    def _open(self, request: HttpRequest) -> Union[DjangoRequest, HttpResponse, None]:
        """The request's DjangoRequest (or the guard's 503); ``None`` when opening it failed: the
        request is then served unmeasured."""
        with internal_errors:
            return self._app.serving.open(request)
        return None

    @property
    def leak_watch(self) -> Optional[Any]:
        """The :class:`sherlock_ai.LeakWatch` of ``leak_detection``, else ``None`` (one per
        process, shared by every middleware instance)."""
        return self._app.serving.policy.leak_watch


def installed_app() -> Any:
    """The app's config, checked and ready; ``ImproperlyConfigured`` when the app is not in
    ``INSTALLED_APPS``."""
    try:
        config = apps.get_app_config(APP_LABEL)
    except LookupError:
        config = None
    if config is None or getattr(config, "serving", None) is None:
        raise ImproperlyConfigured(
            f'{MIDDLEWARE_PATH} needs "{APP}" in INSTALLED_APPS: the app checks '
            "settings.SHERLOCK_AI and sets up sherlock_ai's log files at start-up")
    return config
