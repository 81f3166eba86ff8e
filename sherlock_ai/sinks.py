"""Sinks: plain callables given each finished measurement (the public ``add_sink`` API).

A sink is a callable taking a :class:`~sherlock_ai.engine.measurement.Measurement`. Sinks added with
``wants_all=True`` also receive the fast successful blocks that ``min_duration`` keeps out of
the logs; the engine skips the closing RSS read when no consumer wants them. Each sink is
registered as a consumer of :mod:`sherlock_ai.consumers`, the one event path.
"""

from __future__ import annotations

import threading
from typing import Callable, List, Optional

from . import consumers
from .engine.measurement import Measurement

Sink = Callable[[Measurement], None]


class _SinkConsumer:
    """A sink as a consumer."""

    __slots__ = ("finished", "wants_all", "site")

    def __init__(self, sink: Sink) -> None:
        self.finished = sink
        self.wants_all = False
        self.site = f"sink {getattr(sink, '__qualname__', sink)!s}"


_lock = threading.Lock()
# Matched by equality: ``seen.append`` is a new bound method at each access, equal to the last.
_adapters: List[_SinkConsumer] = []


def _adapter(sink: Sink) -> Optional[_SinkConsumer]:
    return next((a for a in _adapters if a.finished == sink), None)


def add_sink(sink: Sink, *, wants_all: bool = False) -> None:
    """Register ``sink`` for every finished measurement (idempotent)."""
    if not callable(sink):
        raise TypeError(f"a sink must be callable with a Measurement, got {sink!r}")
    with _lock:
        adapter = _adapter(sink)
        if adapter is None:
            adapter = _SinkConsumer(sink)
            _adapters.append(adapter)
        adapter.wants_all = adapter.wants_all or wants_all
        consumers.add_consumer(adapter)


def remove_sink(sink: Sink) -> None:
    """Stop sending measurements to ``sink``; unknown sinks are ignored."""
    with _lock:
        adapter = _adapter(sink)
        if adapter is not None:
            _adapters.remove(adapter)
            consumers.remove_consumer(adapter)


def has_eager_sinks() -> bool:
    """Whether some consumer wants measurements below ``min_duration``."""
    return consumers.wants_all()


#: Hand a measurement to every consumer (the name sinks have always used).
dispatch = consumers.measurement_finished
