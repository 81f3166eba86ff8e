"""``MemoryGuard``: the memory budgets and the RSS limit of one middleware, as one more
consumer of its middleware's requests (told ``request_started`` and ``measurement_ended``,
after the request's figures are taken)."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any, Mapping, Optional, Union

from ..engine.rss import current_rss
from ..formatting import format_bytes
from ..safety import report_internal_error
from .budget import Budgets
from .events import ShedEvent, tell
from .limits import memory_limit
from .sizes import Share
from .supervisor import find_supervisor
from .watermark import RETRY_AFTER, Watermark

if TYPE_CHECKING:
    from ..engine.measurement import Measurement
    from ..engine.requests import OpenRequest

_logger = logging.getLogger("MonitoringLogger")

#: The body of a shed request's 503.
SHED_BODY = b"Service Unavailable: this worker is over its memory limit, retry later\n"
SHED_HEADERS = (("Content-Type", "text/plain; charset=utf-8"),
                ("Content-Length", str(len(SHED_BODY))),
                ("Retry-After", str(RETRY_AFTER)))


class MemoryGuard:
    """The guard of one middleware: ``memory_budget`` (bytes, or route template -> bytes),
    ``rss_limit`` (bytes or a :class:`Share` of what the process may use, turned into bytes
    here, once) and ``on_rss_limit``. Built by the integrations from their checked options;
    ``recycle`` without a supervisor falls back to ``log``, said once here."""

    site = "MemoryGuard.measurement_ended"

    def __init__(self, memory_budget: Union[int, Mapping[str, int], None] = None,
                 rss_limit: Union[int, Share, None] = None, on_rss_limit: str = "log") -> None:
        self.budgets = None if memory_budget is None else Budgets(memory_budget)
        self.limit: Optional[int] = None
        #: Where :attr:`limit` came from (``"rss_limit"``, or the memory limit it is a share of).
        self.limit_source = "rss_limit"
        #: ``"gunicorn"`` or ``"uvicorn --workers"`` when ``recycle`` has one, else ``None``.
        self.supervisor: Optional[str] = None
        self.action = on_rss_limit
        if isinstance(rss_limit, Share):
            available = memory_limit()
            if available is None:
                raise RuntimeError(
                    f"rss_limit={str(rss_limit)!r} needs the memory this process may use, and "
                    "neither a cgroup limit nor the physical memory could be read: give "
                    "rss_limit in bytes or as a size such as '800MB'")
            self.limit = int(available.bytes * rss_limit.fraction)
            self.limit_source = f"{rss_limit} of {format_bytes(available.bytes)} " \
                                f"({available.source})"
        elif rss_limit is not None:
            self.limit = rss_limit
        start_rss = current_rss() if self.limit is not None else None
        if start_rss is not None and start_rss > self.limit:  # type: ignore[operator]
            # Every fresh worker would cross it at its first request: recycling would only
            # churn workers.
            _logger.warning(
                "sherlock_ai memory guard: rss_limit %s is below this process's RSS at set-up "
                "(%s): every request will find it crossed%s; raise rss_limit",
                format_bytes(self.limit), format_bytes(start_rss),
                ", so on_rss_limit='recycle' only logs" if on_rss_limit == "recycle" else "")
            if on_rss_limit == "recycle":
                self.action = "log"
        if self.limit is not None and self.action == "recycle":
            self.supervisor = find_supervisor()
            if self.supervisor is None:
                self.action = "log"
                _logger.warning(
                    "sherlock_ai memory guard: on_rss_limit='recycle' needs a server that "
                    "replaces a worker that exits (gunicorn, or uvicorn with --workers); none "
                    "supervises this process, so crossing rss_limit is only logged "
                    "(on_rss_limit='log')")
        self.watermark = None if self.limit is None else Watermark(self.limit, self.action)
        self._in_flight = 0
        self._lock = threading.Lock()

    @property
    def shedding(self) -> bool:
        """Whether new requests are being answered 503 (``on_rss_limit="shed"``, over the
        limit)."""
        watermark = self.watermark
        return watermark is not None and watermark.shedding

    def request_started(self, request: OpenRequest) -> None:
        """A measured request of this middleware began."""
        with self._lock:
            self._in_flight += 1

    def measurement_ended(self, m: Measurement) -> None:
        """A measured request ended: check its budget, then the process's RSS."""
        with self._lock:
            self._in_flight -= 1
            in_flight = self._in_flight
        if self.budgets is not None:
            event = self.budgets.check(m)
            if event is not None:
                tell(event)
        if self.watermark is not None:
            self.watermark.observe(m.name, m.rss, m.rss_change, in_flight)

    def should_shed(self, method: str, route: Any) -> bool:
        """Called while :attr:`shedding`, before a request reaches the app: ``True`` to answer
        it 503 (counted), ``False`` to serve it (RSS is back under the limit)."""
        try:
            watermark = self.watermark
            if watermark is None or not watermark.should_shed():
                return False
            tell(ShedEvent(method, route() if callable(route) else route))
            return True
        except Exception as exc:  # noqa: BLE001 - monitoring never hurts the monitored: serve
            report_internal_error("memory guard shedding", exc)
            return False
