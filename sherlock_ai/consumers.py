"""The one event path: every consumer of measurements is told through this registry.

A consumer is any object with some of these methods (see :class:`Consumer`), one per moment:

- ``request_started(request)``: a measured request began (an
  :class:`~sherlock_ai.engine.requests.OpenRequest`: its ``protocol``, ``"asgi"`` or ``"wsgi"``,
  and ``request_id``; its name is known only when it ends).
- ``measurement_ended(measurement)``: a measured block (function, ``with`` block or request)
  ended and its :class:`~sherlock_ai.engine.measurement.Measurement` was kept. A consumer whose
  ``wants_all`` is true, or that defines ``request_started``, also gets the fast successes that
  ``min_duration`` keeps out of the logs (``below_threshold``; the engine skips their closing
  RSS read when nobody wants them). A consumer that saw a request start is told its end
  exactly once.
- ``memory_event(event)``: the memory guard told an event (a budget warning, a shed request, a
  change of the RSS limit's state).

The MEMORY, PERFORMANCE and RESOURCES lines (:data:`log_line`), the Prometheus and
OpenTelemetry exporters, the leak watch and the memory guard are consumers. The registry
starts with the log line in it, so lines are written without any set-up;
``remove_consumer(log_line)`` turns them off. A consumer's exceptions are reported once per
site (see :mod:`sherlock_ai.safety`), never raised to the monitored code.
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING, Any, Callable, Iterator, Tuple, TypeVar

from .engine.measurement import Measurement
from .logs.lines import LogLine
from .safety import report_internal_error

if TYPE_CHECKING:
    from .engine.requests import OpenRequest

HOOKS = ("request_started", "measurement_ended", "memory_event")
C = TypeVar("C")


class Consumer:
    """A base for consumers: every hook does nothing; override those you need. Only the
    hooks a consumer overrides (or, without this base, defines) are called."""

    #: Also receive the successes faster than ``min_duration`` (see the module docstring).
    wants_all = False

    def request_started(self, request: OpenRequest) -> None:
        """A measured request began; its :meth:`measurement_ended` follows exactly once."""

    def measurement_ended(self, measurement: Measurement) -> None:
        """A measurement ended and was kept."""

    def memory_event(self, event: Any) -> None:
        """The memory guard told an event (a budget warning, a shed request, a limit state)."""


def _hook(consumer: object, hook: str) -> Callable[..., None] | None:
    """``consumer``'s bound ``hook`` when it defines one of its own, else ``None``."""
    method = getattr(consumer, hook, None)
    if not callable(method):
        return None
    if isinstance(consumer, Consumer) and getattr(type(consumer), hook) is getattr(Consumer, hook):
        return None  # the base's no-op: not worth a call per measurement
    return method  # type: ignore[no-any-return]


def _wants_all(consumer: object) -> bool:
    return bool(getattr(consumer, "wants_all", False)) or _hook(consumer, "request_started") \
        is not None


class Hooks:
    """The bound hooks of some consumers, one tuple per moment (``ended_all``: the
    ``measurement_ended`` hooks of those that want every measurement)."""

    __slots__ = ("started", "ended", "ended_all", "memory_event")

    def __init__(self, consumers: Tuple[object, ...]) -> None:
        def bound(hook: str, among: Tuple[object, ...]) -> Tuple[Callable[..., None], ...]:
            return tuple(m for m in (_hook(c, hook) for c in among) if m is not None)

        self.started: Tuple[Callable[[OpenRequest], None], ...] = bound(
            "request_started", consumers)
        self.ended: Tuple[Callable[[Measurement], None], ...] = bound(
            "measurement_ended", consumers)
        self.ended_all: Tuple[Callable[[Measurement], None], ...] = bound(
            "measurement_ended", tuple(c for c in consumers if _wants_all(c)))
        self.memory_event: Tuple[Callable[[Any], None], ...] = bound("memory_event", consumers)


def check_consumer(consumer: C) -> C:
    """``consumer`` when it has at least one hook, else ``TypeError`` saying which."""
    if not any(_hook(consumer, hook) for hook in HOOKS):
        raise TypeError(f"a consumer needs at least one of the methods {', '.join(HOOKS)}, "
                        f"got {consumer!r}")
    return consumer


def teller(hooks: Tuple[Callable[[Any], None], ...]) -> Callable[[Any], None]:
    """One callable telling each of ``hooks`` its argument in turn, compiled when the hooks
    change: a hook's exception is reported once per site and never raised, and the hooks after
    it are told all the same."""
    if not hooks:
        return _tell_nobody

    def tell_each(value: Any) -> None:
        for hook in hooks:
            try:
                hook(value)
            except Exception as exc:  # noqa: BLE001 - monitoring never hurts the monitored
                report_internal_error(_site(hook), exc)

    return tell_each


def ended_teller(ended: Tuple[Callable[[Measurement], None], ...],
                 ended_all: Tuple[Callable[[Measurement], None], ...]
                 ) -> Callable[[Measurement], None]:
    """:func:`teller` of a measurement's end: ``ended_all`` for one under ``min_duration``
    (``below_threshold``), else ``ended``."""
    if not ended and not ended_all:
        return _tell_nobody

    def measurement_ended(measurement: Measurement) -> None:
        for hook in ended_all if measurement.below_threshold else ended:
            try:
                hook(measurement)
            except Exception as exc:  # noqa: BLE001 - monitoring never hurts the monitored
                report_internal_error(_site(hook), exc)

    return measurement_ended


def _tell_nobody(value: Any) -> None:
    """The teller of no hooks."""


class Registry:
    """An ordered set of consumers. On every change it compiles, for each moment, one callable
    telling the hooks of that moment (see :func:`teller`), so the hot path neither locks nor
    looks anything up. What the engine's requests tell (it is their
    :class:`~sherlock_ai.engine.requests.Listeners`), alone or :meth:`with_own` consumers.

    ``request_started(request)``, ``measurement_ended(measurement)`` and
    ``memory_event(event)`` tell every consumer of that moment, in the order they were added.
    """

    request_started: Callable[[OpenRequest], None]
    measurement_ended: Callable[[Measurement], None]
    memory_event: Callable[[Any], None]

    def __init__(self, consumers: Tuple[object, ...] = ()) -> None:
        self._lock = threading.Lock()
        self._consumers = tuple(check_consumer(c) for c in consumers)
        # The integrations' views of this registry with their own consumers after it: compiled
        # again with it.
        self._extended: weakref.WeakSet[WithOwn] = weakref.WeakSet()
        self._rebuild()

    def _rebuild(self) -> None:
        self.hooks = hooks = Hooks(self._consumers)
        #: Whether some consumer wants the measurements under ``min_duration`` too (read once
        #: per measured block).
        self.wants_all = bool(hooks.ended_all)
        self.request_started = teller(hooks.started)
        self.measurement_ended = ended_teller(hooks.ended, hooks.ended_all)
        self.memory_event = teller(hooks.memory_event)
        for extended in list(self._extended):
            extended.compile()

    def add(self, consumer: C) -> C:
        """Start telling ``consumer`` (idempotent; a second add reads its ``wants_all`` again);
        returns it."""
        check_consumer(consumer)
        with self._lock:
            if not any(c is consumer for c in self._consumers):
                self._consumers = self._consumers + (consumer,)
            self._rebuild()
        return consumer

    def remove(self, consumer: object) -> None:
        """Stop telling ``consumer``; unknown consumers are ignored."""
        with self._lock:
            self._consumers = tuple(c for c in self._consumers if c is not consumer)
            self._rebuild()

    def __iter__(self) -> Iterator[object]:
        return iter(self._consumers)

    def __contains__(self, consumer: object) -> bool:
        return any(c is consumer for c in self._consumers)

    def with_own(self, consumers: Tuple[object, ...]) -> Registry | WithOwn:
        """What one integration's requests tell: this registry's consumers, then its own
        ``consumers`` (its leak watch and memory guard, which count only its requests)."""
        if not consumers:
            return self
        extended = WithOwn(self, consumers)
        with self._lock:
            self._extended.add(extended)
            extended.compile()
        return extended


class WithOwn:
    """A registry's consumers followed by an integration's own (see :meth:`Registry.with_own`):
    the hooks of both in one :func:`teller` per moment, compiled again when the registry
    changes."""

    __slots__ = ("shared", "own", "wants_all", "request_started", "measurement_ended",
                 "__weakref__")

    def __init__(self, shared: Registry, consumers: Tuple[object, ...]) -> None:
        self.shared = shared
        self.own = Hooks(tuple(check_consumer(c) for c in consumers))
        self.compile()

    def compile(self) -> None:
        """Compile the tellers from the registry's hooks now and the integration's own."""
        shared, own = self.shared.hooks, self.own
        self.wants_all = bool(shared.ended_all or own.ended_all)
        self.request_started: Callable[[OpenRequest], None] = teller(
            shared.started + own.started)
        self.measurement_ended: Callable[[Measurement], None] = ended_teller(
            shared.ended + own.ended, shared.ended_all + own.ended_all)


def _site(hook: Callable[..., Any]) -> str:
    owner = getattr(hook, "__self__", hook)
    site = getattr(owner, "site", None)
    if isinstance(site, str):
        return site
    return f"consumer {getattr(type(owner), '__qualname__', owner)!s}"


#: The MEMORY, PERFORMANCE and RESOURCES lines on ``MonitoringLogger`` and
#: ``PerformanceLogger``: the consumer the registry starts with.
log_line = LogLine()
#: Every consumer of this process, the log line first.
registry = Registry((log_line,))
#: Start telling a consumer (idempotent).
add_consumer = registry.add
#: Stop telling a consumer; unknown consumers are ignored.
remove_consumer = registry.remove
