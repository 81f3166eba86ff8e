"""The engine's request API: how a web integration measures one request.

An integration makes one :class:`RequestMeter` from its options, calls :meth:`RequestMeter.open`
when a request starts and :meth:`OpenRequest.finish` once when it ends, with the request's final
name, attributes and outcome, and gets the one :class:`~sherlock_ai.engine.measurement.Measurement`
back (``None`` when it was not kept). It never builds a tracker or touches the engine's
context variables itself.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Optional

from ..trackers import MemoryTracker
from .measurement import Measurement

#: The name a request's measurement has until it ends (its route is known only then).
PROVISIONAL_NAME = "HTTP request"


class OpenRequest(MemoryTracker):
    """A request's measurement in progress (made by :meth:`RequestMeter.open`)."""

    def finish(self, name: str, attributes: Dict[str, Any], error: Optional[str] = None,
               exc: Optional[BaseException] = None) -> Optional[Measurement]:
        """End the measurement as ``name`` with ``attributes``; ERROR with ``exc`` (what the
        application raised) or with ``error`` (a 5xx response, a client gone away) when given.
        Returns the measurement, or ``None`` when it was not kept (a fast success)."""
        try:
            self.name = name
            self.attributes = attributes
            if error is not None:
                self.mark_error(error)
        finally:
            self.__exit__(None if exc is None else type(exc), exc, None)
        return self.measurement


class RequestMeter:
    """Opens request measurements with settings checked once (by the integration's options)."""

    __slots__ = ("_template",)

    def __init__(self, *, min_duration: float, trace_malloc: bool) -> None:
        self._template = OpenRequest._template(
            PROVISIONAL_NAME,
            {"min_duration": min_duration, "level": logging.INFO, "trace_malloc": trace_malloc},
        )

    def open(self) -> OpenRequest:
        """Start measuring a request in the current context."""
        request: OpenRequest = OpenRequest._from(self._template)  # type: ignore[assignment]
        request.__enter__()
        return request
