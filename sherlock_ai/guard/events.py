"""The memory guard's events: the text of their ``MEMORY BUDGET`` and ``MEMORY LIMIT`` lines,
their structured fields (``as_dict``, the JSON line's fields) and how they are told: logged on
``MonitoringLogger`` and handed to the consumers' ``memory_event`` hook (the Prometheus
counters). The layout is parsed back by :mod:`sherlock_ai.logs.schema`."""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional

from ..consumers import registry
from ..formatting import format_bytes, format_change, log_safe
from ..logs import writer
from ..logs.schema import MEASURE_LABELS, MEMORY_BUDGET, MEMORY_LIMIT

_logger = logging.getLogger("MonitoringLogger")


class BudgetEvent:
    """A request whose memory went over its budget."""

    __slots__ = ("name", "method", "route", "measured", "budget", "measure")
    event = "memory_budget"

    def __init__(self, name: str, method: str, route: str, measured: int, budget: int,
                 measure: str) -> None:
        self.name, self.method, self.route = name, method, route
        self.measured, self.budget, self.measure = measured, budget, measure

    def message(self) -> str:
        """``MEMORY BUDGET | POST /export | +182.40MB > 50.00MB | RSS change``"""
        return (f"{MEMORY_BUDGET} | {self.name} | {format_change(self.measured)}"
                f" > {format_bytes(self.budget)} | {MEASURE_LABELS[self.measure]}")

    def as_dict(self) -> Dict[str, Any]:
        return {"event": self.event, "name": self.name, "method": self.method,
                "route": self.route, "measured_bytes": self.measured,
                "budget_bytes": self.budget, "measure": self.measure}


class ShedEvent:
    """One request answered 503 while the process was over its RSS limit (not logged: the
    count is in the line written when shedding stops)."""

    __slots__ = ("method", "route")
    event = "request_shed"

    def __init__(self, method: str, route: str) -> None:
        self.method, self.route = method, route


class LimitEvent:
    """A change of state of the process watermark (see :mod:`sherlock_ai.guard.watermark`)."""

    __slots__ = ("state", "rss", "limit", "action", "grew_most", "top_sites", "retry_after",
                 "shed_requests", "pid", "in_flight", "shed_for", "excluded_too")
    event = "rss_limit"

    def __init__(self, state: str, rss: int, limit: int, action: str, *,
                 grew_most: Optional[List[Dict[str, Any]]] = None,
                 top_sites: Optional[List[Dict[str, Any]]] = None,
                 retry_after: Optional[int] = None, shed_requests: Optional[int] = None,
                 pid: Optional[int] = None, in_flight: Optional[int] = None,
                 shed_for: Optional[int] = None, excluded_too: Optional[bool] = None) -> None:
        self.state, self.rss, self.limit, self.action = state, rss, limit, action
        self.grew_most, self.top_sites = grew_most, top_sites
        self.retry_after, self.shed_requests = retry_after, shed_requests
        self.pid, self.in_flight = pid, in_flight
        #: Seconds of shedding after which it gave up (``shed_timeout``), for those two lines.
        self.shed_for, self.excluded_too = shed_for, excluded_too

    @property
    def level(self) -> int:
        return logging.INFO if self.state in ("back_under", "shed_stopped") else logging.WARNING

    def message(self) -> str:
        """One of the ``MEMORY LIMIT | ...`` lines of docs/memory-guard.md."""
        over = f"RSS {format_bytes(self.rss)} > {format_bytes(self.limit)}"
        under = f"RSS {format_bytes(self.rss)} < {format_bytes(self.limit)}"
        state = self.state
        grown = ", ".join(f"{g['route']} {format_change(g['bytes'])} ({g['requests']} requests)"
                          for g in self.grew_most or ()) or "none"
        if state == "crossed":
            text = f"{MEMORY_LIMIT} | crossed | {over} | action: {self.action} | grew most: {grown}"
            if self.top_sites:
                text += " | top sites: " + ", ".join(
                    f"{log_safe(s['file'], limit=200)}:{s['line']} {format_change(s['size'])}"
                    for s in self.top_sites)
            return text
        if state == "back_under":
            return f"{MEMORY_LIMIT} | back under | {under}"
        if state == "shedding":
            text = f"{MEMORY_LIMIT} | shedding | {over} | 503 with Retry-After: {self.retry_after}"
            if self.excluded_too:
                text += (f" | excluded paths too: still over after {self.shed_for}s of shedding "
                         "and no server replaces this worker")
            return text
        if state == "shed_stopped":
            return f"{MEMORY_LIMIT} | shed {self.shed_requests} requests | {under}"
        text = (f"{MEMORY_LIMIT} | recycling | {over} | pid {self.pid} exits after "
                f"{self.in_flight} in-flight requests")
        if self.grew_most is not None:
            text += f" | grew most: {grown}"
        if self.shed_for is not None:
            text += f" | still over after {self.shed_for}s of shedding"
        return text

    def as_dict(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"event": self.event, "state": self.state, "rss_bytes": self.rss,
                               "limit_bytes": self.limit, "action": self.action}
        for key in ("grew_most", "top_sites", "retry_after", "shed_requests", "pid",
                    "in_flight", "shed_for", "excluded_too"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


def tell(event: Any) -> None:
    """Log ``event``'s line (``ShedEvent`` has none) and hand it to the consumers."""
    if not isinstance(event, ShedEvent):
        level = event.level if isinstance(event, LimitEvent) else logging.WARNING
        writer.current.write_event(_logger, level, event.message(), event=event)
    registry.memory_event(event)
