"""The engine's request API: how a web integration measures one request.

An integration makes one :class:`RequestMeter` from its options and the consumers its requests
tell (its :class:`Listeners`: ``sherlock_ai.consumers.registry``, or that registry with the
integration's own consumers), calls :meth:`RequestMeter.open` when a request starts and
:meth:`OpenRequest.end` once when it ends, with the request's final name, attributes and
outcome. ``end`` closes the request's :class:`~.span.Span`, makes the one
:class:`~sherlock_ai.engine.measurement.Measurement` and hands it to the listeners. The
integration never builds a tracker or touches the engine's context variables:
:meth:`OpenRequest.lend` and :meth:`OpenRequest.leave` do what it needs of them.
"""

from __future__ import annotations

import logging
from contextvars import Token
from time import perf_counter
from typing import Any, Callable, Dict, Hashable, Optional, Protocol

from ..deaths import recorder as flight
from ..formatting import exception_summary, log_safe
from ..request_id import request_id_var
from ..safety import report_internal_error
from .measurement import ERROR, SUCCESS, Measurement
from .rss import current_rss
from .span import Span, _current

_ERROR_LEVEL = logging.ERROR


class Listeners(Protocol):
    """Who a request tells (see :mod:`sherlock_ai.consumers`): ``request_started`` when it
    opens, ``measurement_ended`` once when it ends; ``wants_all``: whether some listener wants
    the successes under ``min_duration`` too (their closing RSS is read for it)."""

    @property
    def wants_all(self) -> bool: ...

    def request_started(self, request: OpenRequest) -> None: ...

    def measurement_ended(self, measurement: Measurement) -> None: ...


class RequestMeter:
    """Opens request measurements with settings checked once (by the integration's options),
    told to ``listeners``."""

    __slots__ = ("protocol", "min_duration", "trace_malloc", "level", "listeners")

    def __init__(self, *, protocol: str, min_duration: float, trace_malloc: bool,
                 listeners: Listeners, level: int = logging.INFO) -> None:
        self.protocol = protocol
        self.min_duration = min_duration
        self.trace_malloc = trace_malloc
        self.level = level
        self.listeners = listeners

    def open(self, method: str = "", path: str = "",
             connection: Optional[Hashable] = None) -> OpenRequest:
        """Start measuring a request in the current context and tell the listeners
        (``method`` and ``path`` name it in the process's flight record while in flight;
        ``connection`` keys the connection it came on, see :class:`OpenRequest`)."""
        return OpenRequest(self, method, path, connection)


class OpenRequest(Span):
    """A request's measurement in progress (made by :meth:`RequestMeter.open`): the request's
    own :class:`~.span.Span`, with the settings it was opened with and the id of the request
    it measures."""

    __slots__ = ("meter", "measured", "protocol", "request_id", "flight", "slot", "connection")

    def __init__(self, meter: RequestMeter, method: str = "", path: str = "",
                 connection: Optional[Hashable] = None) -> None:
        """``method`` and ``path`` name the request in the process's flight record while it
        is in flight (its route is known only when it ends)."""
        #: A hashable key of the connection the request came on (the client's address and
        #: port), ``None`` when unknown; for listeners that count connections, never logged.
        self.connection = connection
        #: The settings it was opened with; ``None`` once it ended.
        self.meter: Optional[RequestMeter] = meter
        #: ``"asgi"``, ``"wsgi"``, ``"django"``, ``"celery"``: the integration's kind.
        self.protocol = meter.protocol
        #: The id of the request (current when it opened).
        self.request_id = request_id = request_id_var.get()
        self.flight = record = flight.current
        try:
            rss = current_rss()
            if record is not None:
                # In flight in the record a dead worker leaves (sherlock_ai.deaths), written
                # between the RSS read and the span's start: none of it is in the request's
                # figures.
                try:
                    self.slot = record.opened(method, path, rss, request_id)
                except Exception as exc:  # noqa: BLE001 - the request goes on unrecorded
                    self.flight = None
                    report_internal_error("worker record", exc)
            Span.__init__(self, meter.trace_malloc, rss)
        except Exception as exc:  # noqa: BLE001 - the request goes on unmeasured
            self.measured = False
            report_internal_error(f"{meter.protocol} request start", exc)
            if self.flight is not None:
                self.flight.closed(getattr(self, "slot", -1))
                self.flight = None
            return
        self.measured = True
        meter.listeners.request_started(self)

    def end(self, name: str, attributes: Dict[str, Any], error: Optional[str] = None,
            exc: Optional[BaseException] = None,
            endpoint: Optional[Callable[..., Any]] = None,
            status: Optional[str] = None) -> Optional[Measurement]:
        """End the measurement as ``name`` with ``attributes``; ERROR with ``exc`` (what the
        application raised) or with ``error`` (a 5xx response, a client gone away) when given;
        ``status`` names a run that did not fail but did not succeed either (``RETRY``: kept
        whatever its duration); ``endpoint`` is the function that served the request. Hands
        the measurement to the listeners and returns it; ``None`` when none was kept (a fast
        success nobody wants, a request that ended already or was never measured). Never
        raises."""
        meter = self.meter
        if meter is None:
            return None  # ended before
        self.meter = None
        if not self.measured:
            return None  # never measured: its listeners were not told it started
        record = self.flight
        if record is not None:
            record.closed(self.slot)
        listeners = meter.listeners
        min_duration = meter.min_duration
        # GeneratorExit is a body closed early by its consumer, not a failure.
        success = error is None and (exc is None or isinstance(exc, GeneratorExit))
        try:
            wants_all = listeners.wants_all
            # The closing RSS read is skipped only when no line and no listener shows it.
            duration, rss, rss_change, traced, traced_peak, concurrent = self.close(
                min_duration if success and exc is None and min_duration and not wants_all
                and status is None else -1.0)
        except Exception as internal:  # noqa: BLE001 - monitoring never hurts the monitored
            report_internal_error(f"{meter.protocol} request end", internal)
            # Its listeners are told all the same: each start is followed by one end.
            wants_all = True
            duration, rss, rss_change, traced, traced_peak, concurrent = (
                perf_counter() - self.t0, None, None, None, None, 0)
        message: Optional[str]
        if success:
            below = duration < min_duration
            if below and not wants_all and status is None:
                return None
            status, level, message = status or SUCCESS, meter.level, None
        else:
            below, status, level = False, ERROR, _ERROR_LEVEL
            try:
                if exc is None:
                    message = log_safe(error)
                else:
                    message = log_safe(exception_summary(exc))
                    attributes["error_type"] = type(exc).__name__
            except Exception as internal:  # noqa: BLE001 - an exception whose str() fails
                report_internal_error(f"{meter.protocol} request error text", internal)
                message = "the error could not be described"
        measurement = Measurement(
            "memory", name, status, duration, level, self.request_id, message, rss, rss_change,
            traced, traced_peak, concurrent, below, attributes, endpoint, self.protocol)
        listeners.measurement_ended(measurement)
        return measurement

    def lend(self) -> Optional[Token[Optional[Span]]]:
        """Make this request's span current in this context for one step of work that belongs
        to it but runs elsewhere (a chunk of a streamed WSGI body, iterated by the server);
        undo with :meth:`take_back` in the same context right after the step."""
        return _current.set(self) if self.measured and self.meter is not None else None

    @staticmethod
    def take_back(token: Optional[Token[Optional[Span]]]) -> None:
        """Undo :meth:`lend`."""
        if token is not None:
            _current.reset(token)

    def leave(self) -> None:
        """Make the span that was current when the request began current again in this
        context, where a response streamed from a child task ended the request in that task's
        context copy, which could not restore this one."""
        if self.measured and _current.get() is not self.parent:
            _current.set(self.parent)
