"""What the ASGI, WSGI and Flask integrations share: their options (checked once), request ids,
bounded request names, the end of a request's measurement, and request observers.

Imports no web framework.
"""

from __future__ import annotations

import logging
import re
import threading
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Dict, FrozenSet, Iterable, Mapping, Optional, Tuple

from .._safety import report_internal_error
from ..lines import safe_name
from ..log_records import install_request_id_factory
from ..measurement import Measurement
from ..options import check_flag, check_min_duration, from_keywords
from ..request_id import generate_request_id, is_valid_request_id
from ..tracing import hold_tracing, release_tracing
from ..trackers import MemoryTracker

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
PROVISIONAL_NAME = "HTTP request"

_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,128}")
# Names and cached lookups are bounded: their keys come from the application's routes, but a
# router that reports unusual templates must not grow memory without end.
_CACHE_LIMIT = 1024


@dataclass(frozen=True)
class RequestOptions:
    """The options every integration accepts, checked when the middleware is created.

    - ``header_name``: the request header read for an incoming id and the response header that
      echoes it.
    - ``trust_incoming_id``: use a valid incoming id (see
      :func:`sherlock_ai.is_valid_request_id`); anything else is replaced by a fresh id, never
      echoed or logged. Off by default: a client choosing the id can file its lines under
      another request's id; turn it on behind a proxy that sets the header itself.
    - ``id_generator``: makes fresh ids; an id it returns that is not valid (or an exception)
      falls back to :func:`sherlock_ai.generate_request_id`.
    - ``echo_header``: send the id back in ``header_name`` (replacing one the app set).
    - ``trace_malloc``: add Traced/Peak figures; tracemalloc then runs for the middleware's
      lifetime and slows every allocation of the process.
    - ``min_duration``: requests that succeed faster than this many seconds are not logged.
    - ``exclude_paths``: paths that get an id but no measurement: an entry ending in ``/``
      is a prefix (``"/static/"`` matches ``/static/app.css``), any other an exact path
      (``"/health"``).
    - ``leak_detection``: watch for routes whose requests keep retaining memory and log a
      ``LEAK SUSPECT`` warning naming the route and the line (see docs/leak-detection.md).
    - ``leak_settings``: settings of that watch (:class:`sherlock_ai.LeakWatchSettings`),
      e.g. ``{"trace_share": 0.01}`` for the low-cost setting.
    """

    header_name: str = "X-Request-ID"
    trust_incoming_id: bool = False
    id_generator: Callable[[], str] = generate_request_id
    echo_header: bool = True
    trace_malloc: bool = False
    min_duration: float = 0.0
    exclude_paths: FrozenSet[str] = frozenset()
    leak_detection: bool = False
    leak_settings: Optional[Mapping[str, Any]] = None

    def __post_init__(self) -> None:
        name = self.header_name
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise ValueError(
                "header_name must be an HTTP header name such as 'X-Request-ID' (1 to 128 "
                f"letters, digits or !#$%&'*+-.^_`|~), got {name!r}"
            )
        check_flag("trust_incoming_id", self.trust_incoming_id)
        check_flag("echo_header", self.echo_header)
        check_flag("trace_malloc", self.trace_malloc)
        if not callable(self.id_generator):
            raise TypeError(
                "id_generator must be a callable taking no arguments and returning a str id, "
                f"got {self.id_generator!r}"
            )
        object.__setattr__(self, "min_duration", check_min_duration(self.min_duration))
        object.__setattr__(self, "exclude_paths", _check_paths(self.exclude_paths))
        check_flag("leak_detection", self.leak_detection)
        settings = self.leak_settings
        if settings is not None:
            if not isinstance(settings, Mapping):
                raise TypeError(
                    "leak_settings must be a mapping of LeakWatch settings such as "
                    f"{{'trace_share': 0.05}}, got {settings!r}"
                )
            if not self.leak_detection:
                raise ValueError("leak_settings only apply with leak_detection=True")
            from ..leaks import LeakWatchSettings

            LeakWatchSettings.from_kwargs(dict(settings))
            object.__setattr__(self, "leak_settings", dict(settings))

    @classmethod
    def from_kwargs(cls, options: Mapping[str, Any]) -> RequestOptions:
        """Options from keyword arguments, refusing unknown names with the accepted ones."""
        return from_keywords(cls, options, "option(s)")


def _check_paths(paths: object) -> FrozenSet[str]:
    if isinstance(paths, (str, bytes)) or not isinstance(paths, Iterable):
        raise TypeError(
            "exclude_paths must be an iterable of paths such as ['/health', '/static/'], "
            f"got {paths!r}"
        )
    checked = []
    for path in paths:
        if not isinstance(path, str) or not path.startswith("/"):
            raise ValueError(f"each excluded path must be a str starting with '/', got {path!r}")
        if path == "/":
            raise ValueError(
                "exclude_paths entry '/' would be a prefix of every path (entries ending in '/' "
                "are prefixes); to skip all requests, do not install the middleware"
            )
        if any(c in path for c in "*?[]"):
            raise ValueError(
                f"exclude_paths takes exact paths ('/health') and prefixes ending in '/' "
                f"('/static/'), not patterns: got {path!r}"
            )
        checked.append(path)
    return frozenset(checked)


class PathExclusions:
    """Decides whether a path is excluded: equal to an exact entry, or starting with an
    entry that ends in ``/``."""

    def __init__(self, paths: FrozenSet[str]) -> None:
        self._exact = frozenset(p for p in paths if not p.endswith("/"))
        self._prefixes = tuple(sorted(p for p in paths if p.endswith("/")))
        self.empty = not paths

    def __contains__(self, path: object) -> bool:
        if not isinstance(path, str):
            return False
        return path in self._exact or (bool(self._prefixes) and path.startswith(self._prefixes))


class RequestPolicy:
    """Everything an integration needs per request, prepared once from its options."""

    def __init__(self, options: RequestOptions) -> None:
        self.options = options
        self.header_key = options.header_name.lower().encode("latin-1")
        self.environ_key = "HTTP_" + options.header_name.upper().replace("-", "_")
        self.echo = options.echo_header
        self.exclude_paths = PathExclusions(options.exclude_paths)
        self._trust = options.trust_incoming_id
        self._generator = options.id_generator
        self._tracker_template = MemoryTracker._template(
            PROVISIONAL_NAME,
            {"min_duration": options.min_duration, "level": logging.INFO,
             "trace_malloc": options.trace_malloc},
        )
        self._lease = _TracingLease() if options.trace_malloc else None
        self.leak_watch = _leak_watch(options)
        install_request_id_factory()

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

    def start_measurement(self, protocol: str) -> MemoryTracker:
        """Enter a fresh tracker for one request (named when it ends, see
        :func:`end_measurement`) and tell the observers."""
        if self._lease is not None:
            try:
                self._lease.hold(self)
            except Exception as exc:  # noqa: BLE001 - the request goes on without tracing
                report_internal_error("tracemalloc lease", exc)
        tracker: MemoryTracker = MemoryTracker._from(self._tracker_template)  # type: ignore
        tracker.__enter__()
        notify_started(protocol)
        return tracker


def _leak_watch(options: RequestOptions) -> Any:
    """The options' leak watch (settings checked now), or ``None`` when it is off."""
    if not options.leak_detection:
        return None
    from ..leaks import LeakWatch  # imported only by services that turn it on

    return LeakWatch(**(options.leak_settings or {}))


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


def end_measurement(
    tracker: MemoryTracker,
    protocol: str,
    method: str,
    route: str,
    status: Optional[int],
    problem: Optional[str],
    exc: Optional[BaseException],
    leak_watch: Any = None,
    endpoint: Any = None,
) -> None:
    """Name the request's measurement ``"{method} {route}"``, attach its method, route and
    status code, report 5xx responses and ``problem`` as ERROR, end it, tell observers, and
    count the request in ``leak_watch`` (served by the function ``endpoint``) when given."""
    name = f"{method} {route}"
    try:
        tracker.name = name
        tracker.attributes = {"method": method, "route": route, "status_code": status}
        if problem is not None:
            tracker.mark_error(problem)
        elif exc is None and status is not None and status >= 500:
            tracker.mark_error(f"HTTP {status}")
    except Exception as internal:  # noqa: BLE001 - monitoring never hurts the monitored
        report_internal_error(f"{protocol} request name", internal)
    tracker.__exit__(None if exc is None else type(exc), exc, None)
    notify_finished(protocol, tracker.measurement)
    if leak_watch is not None:
        # After the tracker ends: a window's snapshot work stays out of the request's figures.
        leak_watch.request_finished(leak_watch.request_started(name, endpoint))


class RequestObserver:
    """Told when a measured request starts and ends, e.g. for an "in progress" gauge.

    ``request_started(protocol)`` is called when a measured request begins (``protocol`` is
    ``"asgi"`` or ``"wsgi"``; the route is not known yet). ``request_finished(protocol,
    measurement)`` is called exactly once for each start, when the measurement ends;
    ``measurement`` is ``None`` when it was not kept (a success under ``min_duration`` that
    no sink asked for) or monitoring failed. Excluded paths and websockets are not observed.
    Both run on the request's path: keep them quick. Their exceptions are reported, not raised.
    """

    def request_started(self, protocol: str) -> None:
        """A measured request began."""

    def request_finished(self, protocol: str, measurement: Optional[Measurement]) -> None:
        """A measured request's measurement ended."""


_observers_lock = threading.Lock()
# Replaced whole, so the request path iterates it without a lock.
_observers: Tuple[RequestObserver, ...] = ()


def add_request_observer(observer: RequestObserver) -> None:
    """Start telling ``observer`` about measured requests (idempotent)."""
    global _observers
    for method in ("request_started", "request_finished"):
        if not callable(getattr(observer, method, None)):
            raise TypeError(
                "a request observer needs request_started(protocol) and "
                f"request_finished(protocol, measurement) methods, got {observer!r}"
            )
    with _observers_lock:
        if observer not in _observers:
            _observers = _observers + (observer,)


def remove_request_observer(observer: RequestObserver) -> None:
    """Stop telling ``observer``; unknown observers are ignored."""
    global _observers
    with _observers_lock:
        _observers = tuple(o for o in _observers if o is not observer)


def notify_started(protocol: str) -> None:
    """Call every observer's ``request_started``."""
    for observer in _observers:
        try:
            observer.request_started(protocol)
        except Exception as exc:  # noqa: BLE001
            report_internal_error("request observer start", exc)


def notify_finished(protocol: str, measurement: Optional[Measurement]) -> None:
    """Call every observer's ``request_finished``."""
    for observer in _observers:
        try:
            observer.request_finished(protocol, measurement)
        except Exception as exc:  # noqa: BLE001
            report_internal_error("request observer finish", exc)
