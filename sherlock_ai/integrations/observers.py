"""Request observers: told when a measured request starts and ends (an "in progress" gauge)."""

from __future__ import annotations

import threading
from typing import Optional, Tuple

from .._safety import report_internal_error
from ..measurement import Measurement


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


def request_observers() -> Tuple[RequestObserver, ...]:
    """The observers told now, in the order they are told."""
    return _observers


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
