"""The engine's request API: how a web integration measures one request.

An integration makes one :class:`RequestMeter` from its options, calls :meth:`RequestMeter.open`
when a request starts and :meth:`OpenRequest.finish` once when it ends, with the request's final
name, attributes and outcome. ``finish`` closes the request's :class:`~.span.Span`, makes the one
:class:`~sherlock_ai.engine.measurement.Measurement`, hands it to the consumers and tells their
request hooks. The integration never builds a tracker or touches the engine's context variables:
:meth:`OpenRequest.lend` and :meth:`OpenRequest.leave` do what it needs of them.
"""

from __future__ import annotations

import logging
from contextvars import Token
from typing import Any, Callable, Dict, Optional, Tuple

from .. import consumers
from ..consumers import RequestEnd, registry
from ..deaths import recorder as flight
from ..logs.formatting import exception_summary, log_safe
from ..request_id import request_id_var
from ..safety import report_internal_error
from .measurement import ERROR, SUCCESS, Measurement
from .span import Span, _current

_ERROR_LEVEL = logging.ERROR
EndHook = Callable[[RequestEnd], None]


class RequestMeter:
    """Opens request measurements with settings checked once (by the integration's options).

    ``ended`` are the integration's own ``request_ended`` hooks, told after the process-wide
    consumers (its leak watch and memory guard: they count only the requests of their
    middleware). ``keep_all``: keep (and read the closing RSS of) the successes faster than
    ``min_duration`` too (the memory guard compares every request); they still write no line
    (``below_threshold``)."""

    __slots__ = ("protocol", "min_duration", "trace_malloc", "level", "ended", "keep_all",
                 "plain")

    def __init__(self, *, protocol: str, min_duration: float, trace_malloc: bool,
                 level: int = logging.INFO, ended: Tuple[EndHook, ...] = (),
                 keep_all: bool = False) -> None:
        self.keep_all = keep_all
        self.protocol = protocol
        self.min_duration = min_duration
        self.trace_malloc = trace_malloc
        self.level = level
        self.ended = ended
        #: Every request is kept and its end told to nobody of the integration's own.
        self.plain = not min_duration and not keep_all and not ended

    def open(self, method: str = "", path: str = "") -> OpenRequest:
        """Start measuring a request in the current context and tell the consumers."""
        return OpenRequest(self, method, path)


class OpenRequest(Span):
    """A request's measurement in progress (made by :meth:`RequestMeter.open`): the request's
    own :class:`~.span.Span`, with the settings it was opened with."""

    __slots__ = ("meter", "measured", "flight", "slot")

    def __init__(self, meter: RequestMeter, method: str = "", path: str = "") -> None:
        """``method`` and ``path`` name the request in the process's flight record while it
        is in flight (its route is known only when it ends)."""
        #: The settings it was opened with; ``None`` once it finished.
        self.meter: Optional[RequestMeter] = meter
        # In flight in the record a dead worker leaves (sherlock_ai.deaths): the entry is
        # written before the span opens and its RSS, without allocating, after; none of it is
        # in the request's figures.
        record = flight.current
        if record is not None:
            try:
                self.slot = record.opened(method, path)
            except Exception as exc:  # noqa: BLE001 - the request goes on unrecorded
                record = None
                report_internal_error("worker record", exc)
        self.flight = record
        # Plain try/except rather than guarded(): once per request, free until it raises.
        try:
            Span.__init__(self, meter.trace_malloc)
        except Exception as exc:  # noqa: BLE001 - the request goes on unmeasured
            self.measured = False
            report_internal_error(f"{meter.protocol} request start", exc)
        else:
            self.measured = True
            if record is not None:
                record.set_rss(self.slot, self.rss_start)
        if registry.started:
            consumers.request_started(meter.protocol)

    def finish(self, name: str, attributes: Dict[str, Any], error: Optional[str] = None,
               exc: Optional[BaseException] = None,
               endpoint: Optional[Callable[..., Any]] = None,
               status: Optional[str] = None) -> Optional[Measurement]:
        """End the measurement as ``name`` with ``attributes``; ERROR with ``exc`` (what the
        application raised) or with ``error`` (a 5xx response, a client gone away) when given;
        ``status`` names a run that did not fail but did not succeed either (``RETRY``: kept
        whatever its duration).
        Then tell the request hooks (``endpoint`` is the function that served the request).
        Returns the measurement, or ``None`` when none was built: not kept (a fast success),
        the request ended already, or nothing but the MEMORY line reads it (its writer then
        renders the line from the figures, see ``consumers.Registry.set_line_writer``).
        Never raises."""
        meter = self.meter
        if meter is None:
            return None  # finished before
        self.meter = None
        record = self.flight
        if record is not None:
            record.closed(self.slot)
        line_only = registry.line_only
        if line_only is not None and meter.plain and error is None and exc is None \
                and status is None and self.measured:
            # The common request, in few steps: a success that only the line reads.
            try:
                line_only(name, SUCCESS, meter.level, self.close(), None, attributes)
            except Exception as internal:  # noqa: BLE001 - monitoring never hurts the monitored
                report_internal_error(f"{meter.protocol} request finish", internal)
            return None
        measurement = None
        if self.measured:
            # One function, not two: this runs once per request and every call counts.
            try:
                min_duration = meter.min_duration
                # GeneratorExit is a body closed early by its consumer, not a failure.
                success = error is None and (exc is None or isinstance(exc, GeneratorExit))
                eager = meter.keep_all or registry.finished_all
                # The closing RSS read is skipped only when no line and no consumer shows it.
                figures = self.close(
                    min_duration if success and exc is None and min_duration and not eager
                    and status is None else -1.0)
                duration = figures[0]
                if success:
                    kept = duration >= min_duration or eager or status is not None
                    status, level, message = status or SUCCESS, meter.level, None
                else:
                    kept, status, level = True, ERROR, _ERROR_LEVEL
                    if exc is None:
                        message = log_safe(error)
                    else:
                        message = log_safe(exception_summary(exc))
                        attributes["error_type"] = type(exc).__name__
                if not kept:
                    pass
                elif line_only is not None and not meter.ended:
                    # Nobody but the line reads the measurement: the line's writer builds it
                    # only if it needs one (a JSON line, a record for logging).
                    line_only(name, status, level, figures, message, attributes)
                else:
                    measurement = Measurement(
                        "memory", name, status, duration, level, request_id_var.get(), message,
                        *figures[1:], success and duration < min_duration, attributes)
                    consumers.measurement_finished(measurement)
            except Exception as internal:  # noqa: BLE001 - monitoring never hurts the monitored
                report_internal_error(f"{meter.protocol} request finish", internal)
        # After the span closed: a leak window's snapshot work stays out of the figures.
        if registry.request_finished or registry.request_ended or meter.ended:
            consumers.request_ended(RequestEnd(meter.protocol, name, endpoint, measurement),
                                    meter.ended)
        return measurement

    def lend(self) -> Optional[Token]:
        """Make this request's span current in this context for one step of work that belongs
        to it but runs elsewhere (a chunk of a streamed WSGI body, iterated by the server);
        undo with :meth:`take_back` in the same context right after the step."""
        return _current.set(self) if self.measured and self.meter is not None else None

    @staticmethod
    def take_back(token: Optional[Token]) -> None:
        """Undo :meth:`lend`."""
        if token is not None:
            _current.reset(token)

    def leave(self) -> None:
        """Make the span that was current when the request began current again in this
        context, where a response streamed from a child task ended the request in that task's
        context copy, which could not restore this one."""
        if _current.get() is not self.parent:
            _current.set(self.parent)
