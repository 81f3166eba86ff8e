"""Consumers of finished measurements: the log line, metrics exporters, the leak watcher.

A sink is a callable taking a :class:`~sherlock_ai.measurement.Measurement`. Sinks added with
``wants_all=True`` also receive the fast successful blocks that ``min_duration`` keeps out of
the logs; the engine skips the closing RSS read when no such sink is registered.
"""

from __future__ import annotations

import threading
from typing import Callable, Tuple

from ._safety import report_internal_error
from .measurement import Measurement

Sink = Callable[[Measurement], None]

_lock = threading.Lock()
# Tuples replaced whole, so the hot path iterates them without a lock.
_sinks: Tuple[Sink, ...] = ()
_eager: Tuple[Sink, ...] = ()


def add_sink(sink: Sink, *, wants_all: bool = False) -> None:
    """Register ``sink`` for every finished measurement (idempotent)."""
    global _sinks, _eager
    if not callable(sink):
        raise TypeError(f"a sink must be callable with a Measurement, got {sink!r}")
    with _lock:
        if sink not in _sinks:
            _sinks = _sinks + (sink,)
        if wants_all and sink not in _eager:
            _eager = _eager + (sink,)


def remove_sink(sink: Sink) -> None:
    """Stop sending measurements to ``sink``; unknown sinks are ignored."""
    global _sinks, _eager
    with _lock:
        _sinks = tuple(s for s in _sinks if s is not sink)
        _eager = tuple(s for s in _eager if s is not sink)


def has_eager_sinks() -> bool:
    """Whether some sink wants measurements below ``min_duration``."""
    return bool(_eager)


def dispatch(measurement: Measurement) -> None:
    """Hand ``measurement`` to each sink; a failing sink never affects the others or the caller."""
    targets = _eager if measurement.below_threshold else _sinks
    for sink in targets:
        try:
            sink(measurement)
        except Exception as exc:  # noqa: BLE001 - monitoring never hurts the monitored
            report_internal_error(f"sink {getattr(sink, '__qualname__', sink)!s}", exc)
