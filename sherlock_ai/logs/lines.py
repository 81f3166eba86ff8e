"""The text of MEMORY, PERFORMANCE and RESOURCES log lines, and :class:`LogLine`, the consumer
that logs them."""

from __future__ import annotations

import logging
from typing import Any, Dict, Optional

from ..engine.measurement import Measurement
from ..engine.span import Figures
from ..formatting import format_bytes, format_change, log_safe
from ..request_id import request_id_var
from ..safety import report_internal_error
from . import direct
from .records import NO_REQUEST_ID
from .schema import (
    ARGS,
    CHANGE,
    CONCURRENT,
    CPU,
    CURRENT,
    ERROR,
    IO,
    MEMORY,
    MEMORY_USE,
    NET,
    PEAK,
    PERFORMANCE,
    RESOURCES,
    THREADS,
    TRACED,
)

MONITORING_LOGGER = "MonitoringLogger"
PERFORMANCE_LOGGER = "PerformanceLogger"

_monitoring = logging.getLogger(MONITORING_LOGGER)
_performance = logging.getLogger(PERFORMANCE_LOGGER)


def _tail(m: Measurement) -> str:
    out = f" | {CONCURRENT}: {m.concurrent}" if m.concurrent else ""
    if m.error is not None:
        out += f" | {ERROR}: {m.error}"
    return out


def memory_line(m: Measurement) -> str:
    """``MEMORY | name | STATUS | 0.245s | Current: .. | Change: .. [| Traced: .. (Peak: ..)]``"""
    line = memory_text(m.name, m.status, (m.duration, m.rss, m.rss_change, m.traced,
                                          m.traced_peak, m.concurrent), m.error)
    sites = m.attributes.get("top_allocations")
    return line + _site_lines(sites) if sites else line


def memory_text(name: str, status: str, figures: Figures, error: Optional[str]) -> str:
    """The MEMORY line of these figures (:func:`memory_line` without allocation sites)."""
    duration, rss, rss_change, traced, traced_peak, concurrent = figures
    # A service's RSS and its changes repeat from request to request: their text is kept.
    current = _size_texts.get(rss)
    if current is None:
        current = _kept(_size_texts, rss, format_bytes(rss))
    change = _change_texts.get(rss_change)
    if change is None:
        change = _kept(_change_texts, rss_change, format_change(rss_change))
    line = f"{_MEMORY}{name} | {status} | {duration:.3f}s{_CURRENT}{current}{_CHANGE}{change}"
    if traced is not None:
        line += f" | {TRACED}: {format_bytes(traced)} ({PEAK}: {format_bytes(traced_peak)})"
    if concurrent:
        line += f" | {CONCURRENT}: {concurrent}"
    if error is not None:
        line += f" | {ERROR}: {error}"
    return line


_MEMORY, _CURRENT, _CHANGE = f"{MEMORY} | ", f" | {CURRENT}: ", f" | {CHANGE}: "
# Figure -> text; equal figures (1024 and 1024.0 too) have the same text. Bounded: cleared
# when full.
_size_texts: Dict[Any, str] = {}
_change_texts: Dict[Any, str] = {}
_KEPT = 4096


def _kept(texts: Dict[Any, str], figure: Any, text: str) -> str:
    if len(texts) >= _KEPT:
        texts.clear()
    texts[figure] = text
    return text


def _site_lines(sites: list) -> str:
    # Continuation lines of the same record; log_safe keeps a file name from starting a line.
    return "".join(
        f"\n    at {log_safe(s['file'])}:{s['line']}: {format_change(s['size'])}"
        f" ({s['count']:+d} blocks)"
        for s in sites
    )


def performance_line(m: Measurement) -> str:
    """``PERFORMANCE | name | STATUS | 0.245s [| Args: ..]``"""
    line = f"{PERFORMANCE} | {m.name} | {m.status} | {m.duration:.3f}s"
    args = m.attributes.get("args")
    if args is not None:
        line += f" | {ARGS}: {args}"
    return line + _tail(m)


def resources_line(m: Measurement) -> str:
    """``RESOURCES | name | STATUS | t | CPU: ..% | Memory: rss (change) | Threads: n [...]``"""
    a = m.attributes
    line = (
        f"{RESOURCES} | {m.name} | {m.status} | {m.duration:.3f}s"
        f" | {CPU}: {a['cpu_percent']:.1f}%"
        f" | {MEMORY_USE}: {format_bytes(m.rss)} ({format_change(m.rss_change)})"
        f" | {THREADS}: {a['threads']}"
    )
    if "io_read" in a:
        line += f" | {IO}: R:{format_bytes(a['io_read'])} W:{format_bytes(a['io_write'])}"
    if "net_sent" in a:
        line += f" | {NET}: S:{format_bytes(a['net_sent'])} R:{format_bytes(a['net_recv'])}"
    return line + _tail(m)


_FORMATS = {
    "memory": (_monitoring, memory_line),
    "resources": (_monitoring, resources_line),
    "performance": (_performance, performance_line),
}


class LogLine:
    """The consumer that writes each kept measurement's line on ``MonitoringLogger`` (MEMORY,
    RESOURCES) or ``PerformanceLogger`` (PERFORMANCE), the record carrying the measurement as
    ``record.sherlock``. The registry of consumers starts with one
    (:data:`sherlock_ai.consumers.log_line`)."""

    site = "log line"

    def measurement_ended(self, m: Measurement) -> None:
        """Write ``m``'s line."""
        logger, render = _FORMATS[m.kind]
        if logger.isEnabledFor(m.level):
            message = render(m)
            if direct.write(logger, m.level, message, m):
                return  # only sherlock_ai's own files and console listen: written directly
            _log_record(logger, message, m)


def _log_record(logger: logging.Logger, message: str, m: Measurement) -> None:
    # Built directly rather than through logger.log(): the caller lookup that log() does
    # would name a line of sherlock_ai, and costs as much as the rest of the record.
    record = logging.getLogRecordFactory()(
        logger.name, m.level, "sherlock_ai", 0, message, (), None, m.name
    )
    record.sherlock = m
    # The current request's id, as the direct path writes it, whichever record factory runs
    # (the set-up's, or none).
    record.request_id = request_id_var.get() or NO_REQUEST_ID
    _handle(logger, record)


def _handle(logger: logging.Logger, record: logging.LogRecord) -> None:
    # Logger.handle() with each handler guarded: a handler whose emit() raises (rather than
    # calling handleError) would otherwise stop the record before the root's files and console.
    if logger.disabled:
        return
    passed = logger.filter(record)
    if not passed:
        return
    if isinstance(passed, logging.LogRecord):  # Python 3.12's filters may replace the record
        record = passed
    found = False
    current: Optional[logging.Logger] = logger
    while current is not None:
        for handler in current.handlers:
            found = True
            if record.levelno >= handler.level:
                try:
                    handler.handle(record)
                # A plain try, not `with internal_errors`: it runs per handler and line.
                except Exception as exc:  # noqa: BLE001 - one handler costs only its output
                    report_internal_error(f"log handler {handler!r}", exc)
        current = current.parent if current.propagate else None
    if not found and logging.lastResort is not None and record.levelno >= logging.lastResort.level:
        logging.lastResort.handle(record)


def safe_name(name: str) -> str:
    """A tracker or route name fit for one log line."""
    return log_safe(name, limit=200)

