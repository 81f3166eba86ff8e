"""Request observers: told when a measured request starts and ends (an "in progress" gauge).

The public ``add_request_observer`` API over :mod:`sherlock_ai.consumers`, the one event path.
"""

from __future__ import annotations

import threading
from typing import List, Optional, Tuple

from .. import consumers
from ..engine.measurement import Measurement


class RequestObserver:
    """Told when a measured request starts and ends, e.g. for an "in progress" gauge.

    ``request_started(protocol)`` is called when a measured request begins (``protocol`` is
    ``"asgi"``, ``"wsgi"``, or ``"django"`` for Django's middleware under either; the route is
    not known yet). ``request_finished(protocol,
    measurement)`` is called exactly once for each start, when the measurement ends;
    ``measurement`` is ``None`` when it was not kept (a success under ``min_duration`` that
    no sink asked for) or monitoring failed. Excluded paths and websockets are not observed.
    Both run on the request's path: keep them quick. Their exceptions are reported, not raised.
    """

    def request_started(self, protocol: str) -> None:
        """A measured request began."""

    def request_finished(self, protocol: str, measurement: Optional[Measurement]) -> None:
        """A measured request's measurement ended."""


class _ObserverConsumer:
    """A request observer as a consumer of :mod:`sherlock_ai.consumers` (only its two
    methods, bound once: no extra call per request)."""

    __slots__ = ("observer", "request_started", "request_finished")

    def __init__(self, observer: RequestObserver) -> None:
        self.observer = observer
        self.request_started = observer.request_started
        self.request_finished = observer.request_finished


_observers_lock = threading.Lock()
_adapters: List[_ObserverConsumer] = []


def add_request_observer(observer: RequestObserver) -> None:
    """Start telling ``observer`` about measured requests (idempotent)."""
    for method in ("request_started", "request_finished"):
        if not callable(getattr(observer, method, None)):
            raise TypeError(
                "a request observer needs request_started(protocol) and "
                f"request_finished(protocol, measurement) methods, got {observer!r}"
            )
    with _observers_lock:
        if not any(a.observer is observer for a in _adapters):
            adapter = _ObserverConsumer(observer)
            _adapters.append(adapter)
            consumers.add_consumer(adapter)


def remove_request_observer(observer: RequestObserver) -> None:
    """Stop telling ``observer``; unknown observers are ignored."""
    with _observers_lock:
        for adapter in [a for a in _adapters if a.observer is observer]:
            _adapters.remove(adapter)
            consumers.remove_consumer(adapter)


def request_observers() -> Tuple[RequestObserver, ...]:
    """The observers told now, in the order they are told."""
    return tuple(a.observer for a in _adapters)


#: Tell every consumer that a measured request began (the name observers have always used).
notify_started = consumers.request_started
