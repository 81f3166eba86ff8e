"""What the ASGI, WSGI and Flask integrations share: the per-request policy made from their
options, request ids, bounded request names and the end of a request's measurement.

Imports no web framework. ``RequestOptions`` and ``RequestObserver`` live in
:mod:`~sherlock_ai.integrations.options` and :mod:`~sherlock_ai.integrations.observers` (and
are imported here too, where they used to live).
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import weakref
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, Optional, Tuple

from ..consumers import RequestEnd
from ..engine.requests import OpenRequest, RequestMeter
from ..engine.tracing import hold_tracing, release_tracing
from ..logs.lines import safe_name
from ..request_id import generate_request_id, is_valid_request_id
from ..safety import report_internal_error
from .observers import (  # noqa: F401 - RequestObserver and its functions used to live here
    RequestObserver,
    add_request_observer,
    notify_started,
    remove_request_observer,
)
from .options import RequestOptions

if TYPE_CHECKING:
    from ..guard import MemoryGuard
    from ..leaks import LeakWatch, LeakWatchSettings

#: The methods a request name may carry; any other token a client sends becomes OTHER_METHOD.
STANDARD_METHODS = frozenset(
    ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")
)
OTHER_METHOD = "OTHER"
#: The route of a request that no route matched (or whose router reports no template).
UNMATCHED_ROUTE = "<unmatched>"
#: The request id, in the ASGI scope and the WSGI environ.
REQUEST_ID_KEY = "sherlock_ai.request_id"
#: Where a WSGI framework puts the matched route template (the Flask extension does).
ROUTE_KEY = "sherlock_ai.route"
#: Where a WSGI framework puts the exception it turned into a 5xx response, or its log-safe
#: summary (``exception_summary``): the Flask extension puts the summary, since the exception's
#: traceback would keep a response body alive.
ERROR_KEY = "sherlock_ai.error"
#: Where a WSGI framework puts the function that served the request (for the leak watch).
ENDPOINT_KEY = "sherlock_ai.endpoint"
#: ``False`` where a WSGI framework reports that the response body it returned was produced in
#: full (the Flask extension does): the measurement then ends when the application returns.
STREAMED_KEY = "sherlock_ai.streamed"

CLIENT_DISCONNECTED = "client disconnected before the response was complete"

# Names and cached lookups are bounded: their keys come from the application's routes, but a
# router that reports unusual templates must not grow memory without end.
_CACHE_LIMIT = 1024


class PathExclusions:
    """Decides whether a path is excluded: equal to an exact entry, or starting with an
    entry that ends in ``/``."""

    def __init__(self, paths: Iterable[str]) -> None:
        self._exact = frozenset(p for p in paths if not p.endswith("/"))
        self._prefixes = tuple(sorted(p for p in paths if p.endswith("/")))
        self.empty = not self._exact and not self._prefixes

    def __contains__(self, path: object) -> bool:
        if not isinstance(path, str):
            return False
        return path in self._exact or (bool(self._prefixes) and path.startswith(self._prefixes))


class RequestPolicy:
    """Everything an integration needs per request, prepared once from its options
    (``protocol`` is ``"asgi"`` or ``"wsgi"``, as the consumers are told)."""

    def __init__(self, options: RequestOptions, protocol: str) -> None:
        self.options = options
        self.header_name = options.header_name
        self.header_key = options.header_name.lower().encode("latin-1")
        self.environ_key = "HTTP_" + options.header_name.upper().replace("-", "_")
        self.echo = options.echo_header
        self.exclude_paths = PathExclusions(options.exclude_paths)
        self._trust = options.trust_incoming_id
        self._generator = options.id_generator
        self._lease = _TracingLease() if options.trace_malloc else None
        self.leak_watch = watch = _leak_watch(options)
        #: The memory guard of ``memory_budget`` / ``rss_limit``, else ``None``.
        self.guard = guard = _memory_guard(options)
        ended = () if watch is None else (_LeakCount(watch).request_ended,)
        if guard is not None:
            ended += (guard.request_ended,)
        if protocol == "asgi" and ended:
            ended = (_Deferrable(ended).request_ended,)
        self.meter = RequestMeter(
            protocol=protocol, min_duration=options.min_duration,
            trace_malloc=options.trace_malloc,
            ended=ended,
            # The guard compares every request's figures, the fast successes' included.
            keep_all=guard is not None)
        #: Whether :meth:`start_measurement` has more to do than open the measurement.
        self.lease_or_guard = self._lease is not None or guard is not None or watch is not None

    def request_id(self, incoming: Optional[str]) -> str:
        """The incoming id when trusted and valid, else a fresh one."""
        if incoming is not None and self._trust and is_valid_request_id(incoming):
            return incoming
        if self._generator is generate_request_id:
            return generate_request_id()
        try:
            fresh = self._generator()
        except Exception as exc:  # noqa: BLE001 - a broken generator must not fail requests
            report_internal_error("id_generator", exc)
            return generate_request_id()
        if is_valid_request_id(fresh):
            return fresh
        report_internal_error(
            "id_generator", ValueError("it returned an id that is not 1 to 128 of [A-Za-z0-9._:-]")
        )
        return generate_request_id()

    def start_measurement(self, method: str = "", path: str = "") -> OpenRequest:
        """Open one request's measurement (named when it ends, see :class:`MeasuredRequest`;
        ``method`` and ``path`` name it while in flight) and tell the consumers."""
        if self._lease is not None:
            try:
                self._lease.hold(self)
            except Exception as exc:  # noqa: BLE001 - the request goes on without tracing
                report_internal_error("tracemalloc lease", exc)
        if self.guard is not None:
            self.guard.request_started()
        if self.leak_watch is not None:
            self.leak_watch.request_started()
        return OpenRequest(self.meter, method, path)  # RequestMeter.open(), one call less


class MeasuredRequest:
    """What one measured request of an integration knows (its method, then its status), and
    :meth:`end`, the integration's one call when the request is over. The ASGI exchange and
    the WSGI request are made of it."""

    __slots__ = ("measuring", "method", "status")

    def __init__(self, measuring: Optional[OpenRequest], method: str) -> None:
        #: The engine's open measurement (``None`` for a request that is not measured).
        self.measuring = measuring
        self.method = method
        self.status: Optional[int] = None

    def endpoint(self) -> Optional[Callable[..., Any]]:
        """The function that served the request, for the leak watch (``None`` unknown)."""
        return None

    def end(self, route: str, problem: Optional[str] = None,
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
        endpoint = self.endpoint() if measuring.meter.ended else None  # asked only when used
        measuring.finish(f"{method} {route}",
                         {"method": method, "route": route, "status_code": status},
                         problem, exc, endpoint)


def _memory_guard(options: RequestOptions) -> Optional[MemoryGuard]:
    """The options' memory guard, or ``None`` when neither a budget nor a limit is set."""
    if options.memory_budget is None and options.rss_limit is None:
        return None
    from ..guard import MemoryGuard  # imported only by services that turn it on

    return MemoryGuard(options.memory_budget, options.rss_limit,  # type: ignore[arg-type]
                       options.on_rss_limit, options.shed_timeout, options.trace_malloc)


def _leak_watch(options: RequestOptions) -> Optional[LeakWatch]:
    """The options' leak watch, or ``None`` when it is off."""
    if not options.leak_detection:
        return None
    from ..leaks import LeakWatch  # imported only by services that turn it on

    settings: Optional[LeakWatchSettings] = options.leak_settings  # type: ignore[assignment]
    return LeakWatch(settings=settings)


class _TracingLease:
    """One tracemalloc lease for a middleware's lifetime, taken on its first request and
    given back when the middleware is garbage collected."""

    def __init__(self) -> None:
        self._held = False
        self._lock = threading.Lock()

    def hold(self, owner: object) -> None:
        if self._held:
            return
        with self._lock:
            if not self._held:
                hold_tracing()
                weakref.finalize(owner, release_tracing)
                self._held = True


def status_class(status: Optional[int]) -> str:
    """``"2xx"`` ... ``"5xx"`` for metrics labels; ``"none"`` when no response started."""
    if isinstance(status, int) and 100 <= status <= 599:
        return f"{status // 100}xx"
    return "none"


def request_method(method: object) -> str:
    """The request's method when standard, else :data:`OTHER_METHOD` (clients send any token)."""
    return method if method in STANDARD_METHODS else OTHER_METHOD  # type: ignore[return-value]


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


#: Set by an integration around ending a request whose own hooks (the leak watch, the memory
#: guard) are to run in the next step of the event loop rather than now (see
#: ``Exchange.send``: a 500 whose exception the server is about to see).
LATER: ContextVar[bool] = ContextVar("sherlock_ai_hooks_later", default=False)


class _Deferrable:
    """An ASGI middleware's own ``request_ended`` hooks, run now, or in the next step of the
    event loop (in a copy of the request's context) while :data:`LATER` is set."""

    __slots__ = ("hooks", "site")

    def __init__(self, hooks: Tuple[Callable[[RequestEnd], None], ...]) -> None:
        self.hooks = hooks
        self.site = "asgi request hooks"

    def request_ended(self, end: RequestEnd) -> None:
        if LATER.get():
            try:
                asyncio.get_running_loop().call_soon(self._run, end,
                                                     context=contextvars.copy_context())
                return
            except RuntimeError:  # not on an asyncio loop (trio): now
                pass
        self._run(end)

    def _run(self, end: RequestEnd) -> None:
        for hook in self.hooks:
            try:
                hook(end)
            except Exception as exc:  # noqa: BLE001 - monitoring never hurts the monitored
                owner = getattr(hook, "__self__", None)
                report_internal_error(getattr(owner, "site", "request hook"), exc)


class _LeakCount:
    """A middleware's leak watch as a consumer of its own requests' ends."""

    __slots__ = ("watch", "site")

    def __init__(self, watch: LeakWatch) -> None:
        self.watch = watch
        self.site = "LeakWatch.request_finished"

    def request_ended(self, end: RequestEnd) -> None:
        # The request that started last in this context: the one ending (see LeakWatch).
        self.watch.request_finished(None, end.name, end.endpoint)
