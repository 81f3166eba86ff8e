"""The one event path: every consumer of measurements is told through this registry.

A consumer is any object with some of these methods (all optional; see :class:`Consumer`):

- ``finished(measurement)``: a tracked block (function, ``with`` block or web request) ended
  and its :class:`~sherlock_ai.engine.measurement.Measurement` was kept. A consumer whose
  ``wants_all`` is true also gets the fast successes that ``min_duration`` keeps out of the
  logs (the engine skips the closing RSS read when none wants them).
- ``request_started(protocol)``: a measured web request began (``"asgi"`` or ``"wsgi"``).
- ``request_finished(protocol, measurement)``: that request's measurement ended, exactly once
  per start; ``measurement`` is ``None`` when it was not kept or monitoring failed.
- ``request_ended(request)``: the same moment with what the integration knows beyond the
  measurement (a :class:`RequestEnd`: its name and the function that served it).

The log line, the JSON lines, the Prometheus and OpenTelemetry exporters and the leak watch
are consumers; ``add_sink`` and ``add_request_observer`` register theirs here. A new consumer
is one module with one class; nothing else changes. A consumer's exceptions are reported once
per site (see :mod:`sherlock_ai.safety`), never raised to the monitored code.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Iterable, Optional, Tuple, TypeVar

from .engine.measurement import Measurement
from .safety import report_internal_error

Installable = TypeVar("Installable", bound="InstallableConsumer")
HOOKS = ("finished", "request_started", "request_finished", "request_ended", "memory_event")


class RequestEnd:
    """What ``request_ended`` consumers learn when a measured request ends."""

    __slots__ = ("protocol", "name", "endpoint", "measurement")

    def __init__(self, protocol: str, name: str, endpoint: Optional[Callable[..., Any]],
                 measurement: Optional[Measurement]) -> None:
        self.protocol = protocol
        #: ``"{METHOD} {route}"``, the measurement's name.
        self.name = name
        #: The function that served the request, when the framework reports it.
        self.endpoint = endpoint
        self.measurement = measurement


class Consumer:
    """A base for consumers: every hook does nothing; override those you need. Only the
    hooks a consumer overrides (or, without this base, defines) are called."""

    #: Also receive the successes faster than ``min_duration`` (see the module docstring).
    wants_all = False

    def finished(self, measurement: Measurement) -> None:
        """A measurement was kept."""

    def request_started(self, protocol: str) -> None:
        """A measured request began."""

    def request_finished(self, protocol: str, measurement: Optional[Measurement]) -> None:
        """A measured request's measurement ended."""

    def request_ended(self, request: RequestEnd) -> None:
        """A measured request ended (with its name and endpoint)."""

    def memory_event(self, event: Any) -> None:
        """The memory guard told an event (a budget warning, a shed request, a limit state)."""


class InstallableConsumer(Consumer):
    """A consumer that registers itself: :meth:`install` adds it to the registry (once, however
    often it is called) and :meth:`uninstall` takes it out. Subclasses put what must happen
    before their first measurement in :meth:`before_install` (the exporters do)."""

    _installed = False
    # One lock for every installable consumer: installing is rare, and this way a subclass
    # needs no __init__ of the base.
    _install_lock = threading.Lock()

    def before_install(self) -> None:
        """Run once per install, before the consumer is registered."""

    def install(self: Installable) -> Installable:
        """Start telling this consumer (idempotent); returns it."""
        with self._install_lock:
            if not self._installed:
                self.before_install()
                add_consumer(self)
                self._installed = True
        return self

    def uninstall(self) -> None:
        """Stop telling this consumer (what it recorded stays)."""
        with self._install_lock:
            remove_consumer(self)
            self._installed = False


def _hooks(consumer: object, hook: str) -> Optional[Callable[..., None]]:
    """``consumer``'s bound ``hook`` when it defines one of its own, else ``None``."""
    method = getattr(consumer, hook, None)
    if not callable(method):
        return None
    if isinstance(consumer, Consumer) and getattr(type(consumer), hook) is getattr(Consumer, hook):
        return None  # the base's no-op: not worth a call per measurement
    return method


class Registry:
    """An ordered set of consumers, with a tuple of bound hooks per event rebuilt on every
    change, so the hot path iterates tuples without a lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._consumers: Tuple[object, ...] = ()
        self.finished: Tuple[Callable[[Measurement], None], ...] = ()
        self.finished_all: Tuple[Callable[[Measurement], None], ...] = ()
        self.started: Tuple[Callable[[str], None], ...] = ()
        self.request_finished: Tuple[Callable[[str, Optional[Measurement]], None], ...] = ()
        self.request_ended: Tuple[Callable[[RequestEnd], None], ...] = ()
        self.memory_event: Tuple[Callable[[Any], None], ...] = ()
        #: The line's figures writer when the line is the only consumer (see
        #: :meth:`set_line_writer`), else ``None``: requests then build no ``Measurement``.
        self.line_only: Optional[Callable[..., None]] = None
        self._line: Tuple[Any, Any] = (None, None)

    def add(self, consumer: object) -> None:
        """Start telling ``consumer`` (idempotent; a second add refreshes its ``wants_all``)."""
        if not any(_hooks(consumer, hook) for hook in HOOKS):
            raise TypeError(f"a consumer needs at least one of the methods {', '.join(HOOKS)}, "
                            f"got {consumer!r}")
        with self._lock:
            if not any(c is consumer for c in self._consumers):
                self._consumers = self._consumers + (consumer,)
            self._rebuild()

    def remove(self, consumer: object) -> None:
        """Stop telling ``consumer``; unknown consumers are ignored."""
        with self._lock:
            self._consumers = tuple(c for c in self._consumers if c is not consumer)
            self._rebuild()

    def __iter__(self) -> Any:
        return iter(self._consumers)

    def _rebuild(self) -> None:
        def bound(hook: str, among: Iterable[object]) -> Tuple[Any, ...]:
            return tuple(m for m in (_hooks(c, hook) for c in among) if m is not None)

        consumers = self._consumers
        self.finished = bound("finished", consumers)
        self.finished_all = bound("finished", [c for c in consumers
                                               if getattr(c, "wants_all", False)])
        self.started = bound("request_started", consumers)
        self.request_finished = bound("request_finished", consumers)
        self.request_ended = bound("request_ended", consumers)
        self.memory_event = bound("memory_event", consumers)
        sink, writer = self._line
        alone = (self.finished == (sink,) and not self.finished_all and not self.started
                 and not self.request_finished and not self.request_ended)
        self.line_only = writer if alone and sink is not None else None

    def set_line_writer(self, sink: Callable[[Measurement], None],
                        writer: Callable[..., None]) -> None:
        """Declare ``writer`` the equivalent of the sink ``sink`` for a request's figures: when
        ``sink`` is the only consumer, a request's end calls ``writer`` (see
        :meth:`sherlock_ai.engine.requests.OpenRequest.finish`) instead of building a
        ``Measurement`` and dispatching it."""
        with self._lock:
            self._line = (sink, writer)
            self._rebuild()


#: Every consumer of this process (the log line is added when sherlock_ai is imported).
registry = Registry()
add_consumer = registry.add
remove_consumer = registry.remove


def wants_all() -> bool:
    """Whether some consumer wants measurements below ``min_duration``."""
    return bool(registry.finished_all)


def measurement_finished(measurement: Measurement) -> None:
    """Tell every consumer about a kept measurement."""
    # Plain try/except per call rather than guarded(): this runs for every tracked block.
    targets = registry.finished_all if measurement.below_threshold else registry.finished
    for hook in targets:
        try:
            hook(measurement)
        except Exception as exc:  # noqa: BLE001 - monitoring never hurts the monitored
            report_internal_error(_site(hook), exc)


def request_started(protocol: str) -> None:
    """Tell every consumer that a measured request began."""
    for hook in registry.started:
        try:
            hook(protocol)
        except Exception as exc:  # noqa: BLE001 - per request: a plain try, see above
            report_internal_error("request observer start", exc)


def request_ended(end: RequestEnd, local: Tuple[Callable[[RequestEnd], None], ...] = ()) -> None:
    """Tell every consumer, then the integration's own ``request_ended`` hooks ``local`` (its
    leak watch: it counts only the requests of its middleware), that a measured request
    ended."""
    for hook in registry.request_finished:
        try:
            hook(end.protocol, end.measurement)
        except Exception as exc:  # noqa: BLE001 - per request: a plain try, see above
            report_internal_error("request observer finish", exc)
    for hooks in (registry.request_ended, local):
        for hook in hooks:
            try:
                hook(end)
            except Exception as exc:  # noqa: BLE001
                report_internal_error(_site(hook), exc)


def memory_event(event: Any) -> None:
    """Tell every consumer about an event of the memory guard."""
    for hook in registry.memory_event:
        try:
            hook(event)
        except Exception as exc:  # noqa: BLE001 - monitoring never hurts the monitored
            report_internal_error(_site(hook), exc)


def _site(hook: Callable[..., Any]) -> str:
    owner = getattr(hook, "__self__", hook)
    site = getattr(owner, "site", None)
    if isinstance(site, str):
        return site
    return f"consumer {getattr(type(owner), '__qualname__', owner)!s}"
