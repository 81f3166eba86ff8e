"""The text of MEMORY, PERFORMANCE and RESOURCES log lines, and :class:`LogLine`, the consumer
that logs them."""

from __future__ import annotations

import logging
from typing import Any, Dict, List

from ..bounded import BoundedCache
from ..engine.measurement import Measurement
from ..formatting import format_bytes, format_change, log_safe
from . import writer
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

# Never disabled by an app's dictConfig (see writer.keep_enabled).
_monitoring = writer.keep_enabled(logging.getLogger(MONITORING_LOGGER))
_performance = writer.keep_enabled(logging.getLogger(PERFORMANCE_LOGGER))


def _tail(m: Measurement) -> str:
    out = f" | {CONCURRENT}: {m.concurrent}" if m.concurrent else ""
    if m.error is not None:
        out += f" | {ERROR}: {m.error}"
    return out


def memory_line(m: Measurement) -> str:
    """``MEMORY | name | STATUS | 0.245s | Current: .. | Change: .. [| Traced: .. (Peak: ..)]``"""
    rss, rss_change, traced = m.rss, m.rss_change, m.traced
    # A service's RSS and its changes repeat from request to request: their text is kept.
    current = _size_texts.get(rss)
    if current is None:
        current = _size_texts.keep(rss, format_bytes(rss))
    change = _change_texts.get(rss_change)
    if change is None:
        change = _change_texts.keep(rss_change, format_change(rss_change))
    line = f"{_MEMORY}{m.name} | {m.status} | {m.duration:.3f}s{_CURRENT}{current}{_CHANGE}{change}"
    if traced is not None:
        line += f" | {TRACED}: {format_bytes(traced)} ({PEAK}: {format_bytes(m.traced_peak)})"
    if m.concurrent:
        line += f" | {CONCURRENT}: {m.concurrent}"
    if m.error is not None:
        line += f" | {ERROR}: {m.error}"
    sites = m.attributes.get("top_allocations")
    return line + _site_lines(sites) if sites else line


_MEMORY, _CURRENT, _CHANGE = f"{MEMORY} | ", f" | {CURRENT}: ", f" | {CHANGE}: "
# Figure -> text; equal figures (1024 and 1024.0 too) have the same text.
_size_texts: BoundedCache[Any, str] = BoundedCache()
_change_texts: BoundedCache[Any, str] = BoundedCache()


def _site_lines(sites: List[Dict[str, Any]]) -> str:
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
        # Argument reprs may hold a client's text: escaped as names are (see safe_name).
        line += f" | {ARGS}: {str(args).replace('|', NAME_BAR)}"
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
    RESOURCES) or ``PerformanceLogger`` (PERFORMANCE) through the writer the configuration
    chose (see :mod:`sherlock_ai.logs.writer`). The registry of consumers starts with one
    (:data:`sherlock_ai.consumers.log_line`)."""

    site = "log line"

    def measurement_ended(self, m: Measurement) -> None:
        """Write ``m``'s line."""
        logger, render = _FORMATS[m.kind]
        if logger.isEnabledFor(m.level):
            writer.current.write(logger, m.level, render(m), None, m)
        else:
            writer.current.skipped(logger)


def safe_name(name: str) -> str:
    """A tracker or route name fit for one log line: control characters escaped (see
    :func:`~.formatting.log_safe`), at most 200 characters, and every ``|`` written as
    ``\\x7c``, the same escape, so that a name built from a client's text never holds the
    field separator ``" | "`` and cannot pass for a status, a duration or figures."""
    return log_safe(name, limit=200).replace("|", NAME_BAR)


#: What a ``|`` in a name is written as (:func:`safe_name`).
NAME_BAR = "\\x7c"

