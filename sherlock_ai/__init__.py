"""sherlock_ai: where your Python service's memory goes, per function, block and request."""

from .decorators import log_performance, monitor_memory, monitor_resources
from .engine.measurement import Measurement
from .engine.resources import MemorySnapshot, ResourceMonitor, ResourceSnapshot
from .engine.tracing import hold_tracing, release_tracing
from .logs.formatting import format_bytes
from .logs.lines import MONITORING_LOGGER, PERFORMANCE_LOGGER, log_sink
from .logs.records import RequestIdFilter, install_request_id_factory
from .logs.setup import LogFileConfig, LoggingConfig, SherlockAI, get_logger, sherlock_ai
from .request_id import (
    carry_context,
    clear_request_id,
    generate_request_id,
    get_request_id,
    is_valid_request_id,
    request_id_context,
    set_request_id,
)
from .sinks import add_sink, remove_sink
from .trackers import MemoryTracker, PerformanceTimer, ResourceTracker

add_sink(log_sink)

__version__ = "0.1.0"

# Imported on first use: the leak watch is only needed by services that turn it on, the JSON
# formatter (json, datetime) by those that write JSON lines.
_LAZY = {"JsonFormatter": ".logs.json_lines", "LeakSuspect": ".leaks", "LeakWatch": ".leaks",
         "LeakWatchSettings": ".leaks"}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "JsonFormatter",
    "LeakSuspect",
    "LeakWatch",
    "LeakWatchSettings",
    "LogFileConfig",
    "LoggingConfig",
    "MONITORING_LOGGER",
    "Measurement",
    "MemorySnapshot",
    "MemoryTracker",
    "PERFORMANCE_LOGGER",
    "PerformanceTimer",
    "RequestIdFilter",
    "ResourceMonitor",
    "ResourceSnapshot",
    "ResourceTracker",
    "SherlockAI",
    "add_sink",
    "carry_context",
    "clear_request_id",
    "format_bytes",
    "generate_request_id",
    "get_logger",
    "get_request_id",
    "hold_tracing",
    "install_request_id_factory",
    "is_valid_request_id",
    "log_performance",
    "log_sink",
    "monitor_memory",
    "monitor_resources",
    "release_tracing",
    "remove_sink",
    "request_id_context",
    "set_request_id",
    "sherlock_ai",
]
