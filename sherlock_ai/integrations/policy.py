"""``RequestPolicy``: everything an integration needs per request, prepared once from its
options: request ids, excluded paths, the tracemalloc lease, and the engine's
:class:`~sherlock_ai.engine.requests.RequestMeter` told to the process's consumers and the
integration's own (its leak watch and memory guard). Imports no web framework."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import weakref
from contextvars import ContextVar
from typing import TYPE_CHECKING, Callable, Hashable, Iterable, Optional, Tuple

from ..consumers import Hooks, check_consumer, ended_teller, registry, teller
from ..engine.measurement import Measurement
from ..engine.requests import OpenRequest, RequestMeter
from ..engine.tracing import hold_tracing, release_tracing
from ..request_id import generate_request_id, is_valid_request_id
from ..safety import report_internal_error
from .options import RequestOptions

if TYPE_CHECKING:
    from ..guard import MemoryGuard
    from ..leaks import LeakWatch


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
    (``protocol`` is ``"asgi"``, ``"wsgi"``, ``"django"`` or ``"celery"``, as the consumers
    are told)."""

    def __init__(self, options: RequestOptions, protocol: str) -> None:
        self.options = options
        self.header_name = options.header_name
        self.header_key = options.header_name.lower().encode("latin-1")
        self.environ_key = "HTTP_" + options.header_name.upper().replace("-", "_")
        self.echo = options.echo_header
        self.exclude_paths = PathExclusions(options.exclude_paths)
        self._trust = options.trust_incoming_id
        self._generator = options.id_generator
        self._lease = TracingLease() if options.trace_malloc else None
        self.leak_watch = watch = _leak_watch(options)
        #: The memory guard of ``memory_budget`` / ``rss_limit``, else ``None``.
        self.guard = guard = _memory_guard(options)
        # The leak watch, then the guard: its snapshot work stays out of the guard's view.
        own: Tuple[object, ...] = tuple(c for c in (None if watch is None else LeakCount(watch),
                                                    guard) if c is not None)
        if protocol == "asgi" and own:
            own = (Deferrable(own),)
        self.meter = RequestMeter(
            protocol=protocol, min_duration=options.min_duration,
            trace_malloc=options.trace_malloc, listeners=registry.with_own(own))
        #: Whether :meth:`open_request` has more to do than open the measurement.
        self.leased = self._lease is not None

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

    def open_request(self, method: str = "", path: str = "",
                     connection: Optional[Hashable] = None) -> OpenRequest:
        """Open one request's measurement (named when it ends, see
        :class:`~sherlock_ai.integrations.measured.MeasuredRequest`; ``method`` and ``path``
        name it while in flight; ``connection`` keys the connection it came on) and tell the
        consumers."""
        if self._lease is not None:
            try:
                self._lease.hold(self)
            except Exception as exc:  # noqa: BLE001 - the request goes on without tracing
                report_internal_error("tracemalloc lease", exc)
        return OpenRequest(self.meter, method, path, connection)


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
    from ..leaks import LeakWatch, LeakWatchSettings  # imported only by services that use it

    settings = options.leak_settings
    return LeakWatch(settings=settings if isinstance(settings, LeakWatchSettings) else None)


class TracingLease:
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


#: Set by an integration around ending a request whose own consumers (the leak watch, the
#: memory guard) are to be told in the next step of the event loop rather than now (see
#: ``ASGIRequest.send``: a 500 whose exception the server is about to see).
LATER: ContextVar[bool] = ContextVar("sherlock_ai_hooks_later", default=False)


class Deferrable:
    """An ASGI middleware's own consumers, told a measurement's end now, or in the next step
    of the event loop (in a copy of the request's context) while :data:`LATER` is set."""

    __slots__ = ("hooks", "wants_all", "request_started", "_tell_ended")
    site = "asgi request hooks"

    def __init__(self, consumers: Tuple[object, ...]) -> None:
        self.hooks = hooks = Hooks(tuple(check_consumer(c) for c in consumers))
        #: Whether one of them wants the successes under ``min_duration`` too.
        self.wants_all = bool(hooks.ended_all)
        self.request_started: Callable[[OpenRequest], None] = teller(hooks.started)
        self._tell_ended = ended_teller(hooks.ended, hooks.ended_all)

    def measurement_ended(self, measurement: Measurement) -> None:
        if LATER.get():
            try:
                asyncio.get_running_loop().call_soon(self._tell_ended, measurement,
                                                     context=contextvars.copy_context())
                return
            except RuntimeError:  # not on an asyncio loop (trio): now
                pass
        self._tell_ended(measurement)


class LeakCount:
    """A middleware's leak watch as a consumer of its own requests: each request that ends
    counts on its route (fast successes too)."""

    __slots__ = ("watch",)
    site = "LeakWatch.request_finished"
    wants_all = True

    def __init__(self, watch: LeakWatch) -> None:
        self.watch = watch

    def request_started(self, request: OpenRequest) -> None:
        self.watch.request_started("", None, request.connection)

    def measurement_ended(self, measurement: Measurement) -> None:
        # The request that started last in this context: the one ending (see LeakWatch).
        self.watch.request_finished(None, measurement.name, measurement.endpoint)
