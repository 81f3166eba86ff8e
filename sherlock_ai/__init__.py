"""sherlock_ai: where your Python service's memory goes, per function, block and request."""

from typing import TYPE_CHECKING

from .consumers import Consumer, add_consumer, log_line, remove_consumer
from .decorators import log_performance, monitor_memory, monitor_resources
from .engine.measurement import Measurement
from .engine.resources import MemorySnapshot, ResourceMonitor, ResourceSnapshot
from .engine.tracing import hold_tracing, release_tracing
from .formatting import format_bytes
from .logs.lines import MONITORING_LOGGER, PERFORMANCE_LOGGER
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
from .trackers import MemoryTracker, PerformanceTimer, ResourceTracker

if TYPE_CHECKING:
    # What __getattr__ below imports on first use, typed for users' type checkers.
    from .leaks import LeakSuspect, LeakWatch, LeakWatchSettings
    from .logs.json_lines import JsonFormatter

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
    "Consumer",
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
    "add_consumer",
    "carry_context",
    "clear_request_id",
    "format_bytes",
    "generate_request_id",
    "get_logger",
    "get_request_id",
    "hold_tracing",
    "install_request_id_factory",
    "is_valid_request_id",
    "log_line",
    "log_performance",
    "monitor_memory",
    "monitor_resources",
    "release_tracing",
    "remove_consumer",
    "request_id_context",
    "set_request_id",
    "sherlock_ai",
]
