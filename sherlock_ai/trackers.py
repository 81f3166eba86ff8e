"""Context managers that measure a block: MemoryTracker, PerformanceTimer, ResourceTracker.

Each works with ``with`` and ``async with``, hands the
:class:`~sherlock_ai.engine.measurement.Measurement` to the consumers (the log line among them)
and keeps it as ``.measurement``. A tracker instance measures one block at a time: create one
per block (entering one that is measuring raises ``RuntimeError``).
"""

from __future__ import annotations

import logging
from time import perf_counter
from types import TracebackType
from typing import Any, Dict, Literal, Optional, Type

from .consumers import registry
from .engine import heap, tracing
from .engine.measurement import ERROR, SUCCESS, Measurement
from .engine.resources import ResourceWindow
from .engine.span import Figures, Span
from .formatting import exception_summary, log_safe
from .logs.lines import safe_name
from .parameters import check_flag, check_level, check_min_duration, check_name
from .request_id import request_id_var
from .safety import internal_errors, report_internal_error


class Tracker:
    """What the three trackers share: the name, the threshold and the line at the end (the
    base of the classes below, used by the decorators; not exported)."""

    kind = ""

    def __init__(self, name: str, min_duration: float = 0.0, *, log_level: str = "INFO") -> None:
        self.name = safe_name(check_name(name))
        self.min_duration = check_min_duration(min_duration)
        self.level = check_level(log_level)
        self.attributes: Dict[str, Any] = {}
        self.measurement: Optional[Measurement] = None
        self._started = False
        self._marked_error: Optional[str] = None
        # A tracker the user holds keeps every measurement; see _template for decorators'.
        self._keep_quiet = True

    def mark_error(self, message: str) -> None:
        """Report the block as ERROR with ``message`` even though no exception left it (an
        HTTP 5xx response, a client that went away). Call before the block ends."""
        self._marked_error = log_safe(message)

    @classmethod
    def _template(cls, name: str, settings: Dict[str, Any]) -> Dict[str, Any]:
        """The state of a fresh tracker from settings validated once (see :meth:`_from`)."""
        # Nobody can read a decorator's tracker: its measurements of successful calls under
        # min_duration are dropped unless a consumer wants them (the cheapest path, no line).
        return {**settings, "name": name, "attributes": None, "measurement": None,
                "_started": False, "_marked_error": None, "_keep_quiet": False}

    @classmethod
    def _from(cls, template: Dict[str, Any]) -> Tracker:
        """A tracker built from a :meth:`_template` without validating again (the
        decorators' per-call path)."""
        tracker = cls.__new__(cls)
        tracker.__dict__ = template.copy()
        return tracker

    def _skip_rss_below(self, exc: Optional[BaseException]) -> float:
        # The closing RSS read is skipped only when no line and no consumer will show it.
        if (exc is None and self.min_duration and self._marked_error is None
                and not registry.wants_all):
            return self.min_duration
        return -1.0

    # __enter__/__exit__ run on every tracked call: they keep a plain try/except (free in
    # Python 3.11 until something raises) rather than a `with internal_errors`.
    def __enter__(self) -> Tracker:
        if self._started:
            # A second span would replace the first, whose line would never be written.
            raise RuntimeError(
                f"{type(self).__name__}({self.name!r}) is already measuring a block: an "
                "instance measures one block at a time; create one tracker per block (nested "
                "blocks, or the same code run by several threads or tasks at once)")
        self.measurement = None
        try:
            self._start()
            self._started = True
        except Exception as exc:  # noqa: BLE001 - monitoring never hurts the monitored
            self._started = False
            report_internal_error(f"{type(self).__name__} start", exc)
        return self

    def __exit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> Literal[False]:
        if self._started:
            self._started = False
            try:
                self._end(exc)
            except Exception as internal:  # noqa: BLE001
                report_internal_error(f"{type(self).__name__} end", internal)
        return False

    async def __aenter__(self) -> Tracker:
        return self.__enter__()

    async def __aexit__(self, exc_type: Optional[Type[BaseException]],
                        exc: Optional[BaseException],
                        tb: Optional[TracebackType]) -> Literal[False]:
        return self.__exit__(exc_type, exc, tb)

    def _start(self) -> None:
        raise NotImplementedError

    def _end(self, exc: Optional[BaseException]) -> None:
        raise NotImplementedError

    def _dropped(self, exc: Optional[BaseException], marked: Optional[str],
                 duration: float) -> bool:
        """Whether the measurement is a success faster than ``min_duration`` that nobody will
        see (no line, no consumer): it is not built, and pays for no second snapshot."""
        # GeneratorExit is a generator closed early by its consumer, not a failure.
        return (marked is None and (exc is None or isinstance(exc, GeneratorExit))
                and duration < self.min_duration and not self._keep_quiet
                and not registry.wants_all)

    def _emit(self, exc: Optional[BaseException], figures: Figures) -> None:
        duration = figures.duration
        marked, self._marked_error = self._marked_error, None
        if marked is None and (exc is None or isinstance(exc, GeneratorExit)):
            # _dropped's decision, inline: this runs on every decorated call.
            if duration < self.min_duration and not self._keep_quiet and not registry.wants_all:
                return
            status, level, error = SUCCESS, self.level, None
        else:
            status, level = ERROR, logging.ERROR
            error = marked if exc is None else _describe(exc)
        m = Measurement(
            kind=self.kind, name=self.name, status=status, duration=duration, level=level,
            request_id=request_id_var.get(), error=error, rss=figures.rss,
            rss_change=figures.rss_change, traced=figures.traced,
            traced_peak=figures.traced_peak, concurrent=figures.concurrent,
            below_threshold=status is SUCCESS and duration < self.min_duration,
            attributes=self.attributes,
        )
        if exc is not None and status is ERROR:
            m.attributes["error_type"] = type(exc).__name__
        self.measurement = m
        registry.measurement_ended(m)


def _describe(exc: BaseException) -> str:
    # "KeyError: 'missing'", as a traceback's last line reads; the message alone says little.
    return log_safe(exception_summary(exc))


class MemoryTracker(Tracker):
    """Measure a block's memory: RSS at its end and its change, plus, with ``trace_malloc``,
    the Python allocations it left alive (Traced) and its own peak (Peak).

    Logs ``MEMORY | {name} | {STATUS} | {t}s | Current: .. | Change: .. | Traced: .. (Peak: ..)``
    on ``MonitoringLogger`` unless the block succeeded faster than ``min_duration`` seconds.

    ``top_allocations=N`` (needs ``trace_malloc``) compares tracemalloc snapshots from the
    block's start and end and adds the N lines whose retained size grew most, as
    ``measurement.attributes["top_allocations"]`` and one indented line each under the MEMORY
    line. Snapshots cost time proportional to the number of live traced blocks.
    """

    kind = "memory"

    def __init__(
        self,
        name: str,
        min_duration: float = 0.0,
        trace_malloc: bool = True,
        *,
        log_level: str = "INFO",
        top_allocations: int = 0,
    ) -> None:
        super().__init__(name, min_duration, log_level=log_level)
        self.trace_malloc = check_flag("trace_malloc", trace_malloc)
        self.top_allocations = heap.check_top_allocations(top_allocations, self.trace_malloc)

    def _start(self) -> None:
        if self.top_allocations:
            # The snapshot is taken under a lease of its own, before the span reads the traced
            # level and resets the peak, so its cost stays out of the block's figures.
            tracing.hold_tracing()
            try:
                self._heap_before = heap.site_sizes()
                self._span = Span(self.trace_malloc)
            except BaseException:
                tracing.release_tracing()
                raise
        else:
            self._span = Span(self.trace_malloc)

    def _end(self, exc: Optional[BaseException]) -> None:
        figures = self._span.close(self._skip_rss_below(exc))
        if self.top_allocations:
            before, self._heap_before = self._heap_before, {}
            try:
                # Guarded: e.g. tracing stopped by the user between the two snapshots.
                with internal_errors:
                    if not self._dropped(exc, self._marked_error, figures.duration):
                        sites = heap.top_growth(before, heap.site_sizes(),
                                                self.top_allocations)
                        self.attributes = {**(self.attributes or {}), "top_allocations": sites}
            finally:
                tracing.release_tracing()
        self._emit(exc, figures)


class PerformanceTimer(Tracker):
    """Time a block with a monotonic clock; logs ``PERFORMANCE | {name} | {STATUS} | {t}s``
    on ``PerformanceLogger`` unless it succeeded faster than ``min_duration`` seconds."""

    kind = "performance"

    def __init__(self, name: str, min_duration: float = 0.0, *, log_level: str = "INFO") -> None:
        super().__init__(name, min_duration, log_level=log_level)

    def _start(self) -> None:
        self._t0 = perf_counter()

    def _end(self, exc: Optional[BaseException]) -> None:
        self._emit(exc, Figures(perf_counter() - self._t0, None, None, None, None, 0))


class ResourceTracker(Tracker):
    """Measure a block's CPU (this process's CPU time over the block's wall time), RSS and its
    change, thread count, storage I/O of this process and, when asked, machine-wide network
    bytes. Logs ``RESOURCES | {name} | ...`` on ``MonitoringLogger``."""

    kind = "resources"

    def __init__(
        self,
        name: str,
        min_duration: float = 0.0,
        include_io: bool = True,
        include_network: bool = False,
        *,
        log_level: str = "INFO",
    ) -> None:
        super().__init__(name, min_duration, log_level=log_level)
        self.include_io = check_flag("include_io", include_io)
        self.include_network = check_flag("include_network", include_network)

    def _start(self) -> None:
        self._span = Span(False)
        self._window = ResourceWindow(self.include_io, self.include_network)

    def _end(self, exc: Optional[BaseException]) -> None:
        figures = self._span.close()
        self.attributes = {**(self.attributes or {}), **self._window.end()}
        self._emit(exc, figures)
