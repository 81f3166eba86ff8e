"""``MemoryGuard``: the memory budgets and the RSS limit of one middleware, as one more
consumer of its middleware's requests (told ``request_started`` and ``measurement_ended``,
after the request's figures are taken)."""

from __future__ import annotations

import logging
import threading
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Callable, FrozenSet, Mapping, Optional, Union

from ..engine.rss import current_rss
from ..formatting import format_bytes
from ..logs import writer
from ..safety import internal_errors, report_internal_error
from .budget import Budgets
from .events import ShedEvent, tell
from .limits import memory_limit
from .peak import PeakWindows, Window
from .peak import windows as peak_windows
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


# The RSS peak window of the request running in this context (set when it starts).
_window: ContextVar[Optional[Window]] = ContextVar("sherlock_ai_rss_peak_window", default=None)


def _say(level: int, message: str, *args: object) -> None:
    """One of the guard's own lines (``message % args``) on ``MonitoringLogger``."""
    writer.current.write_event(_logger, level, message, args)


def _rss_peaks() -> Optional[PeakWindows]:
    """The process's peak windows, or ``None`` (said once) where the mark cannot be reset."""
    why = peak_windows.available()
    if why is None:
        return peak_windows
    _say(
        logging.WARNING,
        "sherlock_ai memory guard: this system does not let a process reset its peak RSS "
        "(Linux's /proc/self/clear_refs; %s), so memory_budget compares each request's RSS "
        "change, which misses memory a request frees before it ends; trace_malloc=True "
        "compares its traced peak instead", why)
    return None


class MemoryGuard:
    """The guard of one middleware: ``memory_budget`` (bytes, or route template -> bytes),
    ``rss_limit`` (bytes or a :class:`Share` of what the process may use, turned into bytes
    here, once) and ``on_rss_limit``. Built by the integrations from their checked options;
    ``recycle`` without a supervisor falls back to ``log``, said once here."""

    site = "MemoryGuard.measurement_ended"

    def __init__(self, memory_budget: Union[int, Mapping[str, int], None] = None,
                 rss_limit: Union[int, Share, None] = None, on_rss_limit: str = "log",
                 shed_timeout: Optional[float] = 60.0, trace_malloc: bool = False) -> None:
        self.budgets = None if memory_budget is None else Budgets(memory_budget)
        #: The RSS high-water mark windows of the budgets, when they compare RSS peaks.
        self.peaks = None if memory_budget is None or trace_malloc else _rss_peaks()
        self.limit: Optional[int] = None
        #: Where :attr:`limit` came from (``"rss_limit"``, or the memory limit it is a share of).
        self.limit_source = "rss_limit"
        #: ``"gunicorn"``, ``"uvicorn --workers"`` or ``"celery prefork"`` when ``recycle``
        #: has one, else ``None``.
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
        if start_rss is not None and self.limit is not None and start_rss > self.limit:
            # Every fresh worker would cross it at its first request: recycling would only
            # churn workers, shedding would refuse every request from the start.
            _say(
        logging.WARNING,
                "sherlock_ai memory guard: rss_limit %s is below this process's RSS at set-up "
                "(%s): every request will find it crossed%s; raise rss_limit",
                format_bytes(self.limit), format_bytes(start_rss),
                f", so on_rss_limit={on_rss_limit!r} only logs" if on_rss_limit != "log"
                else "")
            self.action = "log"
        if self.limit is not None and self.action != "log":
            self.supervisor = find_supervisor()
        if self.action == "recycle" and self.supervisor is None:
            self.action = "log"
            _say(
        logging.WARNING,
                "sherlock_ai memory guard: on_rss_limit='recycle' needs a server that "
                "replaces a worker that exits (gunicorn, uvicorn with --workers, or Celery's "
                "prefork pool); none "
                "supervises this process, so crossing rss_limit is only logged "
                "(on_rss_limit='log')")
        #: Whether the budget mapping's keys were compared with the app's routes (or need not
        #: be: no mapping).
        self.routes_checked = not isinstance(memory_budget, Mapping)
        self.watermark = None if self.limit is None else Watermark(
            self.limit, self.action, shed_timeout, recycle=self.supervisor is not None)
        self._in_flight = 0
        self._lock = threading.Lock()

    def route_problem(self, routes: Optional[Mapping[str, Optional[FrozenSet[str]]]]
                      ) -> Optional[str]:
        """Compare the budget mapping's keys with the app's ``routes`` (template -> methods,
        ``None`` for any; ``routes=None``: unknown, nothing to compare) once: what to tell
        about keys that name no route, else ``None``."""
        if self.routes_checked or routes is None:
            return None
        self.routes_checked = True
        return None if self.budgets is None else self.budgets.unknown_keys(routes)

    def check_routes_now(
            self, find_routes: Callable[[], Optional[Mapping[str, Optional[FrozenSet[str]]]]]
    ) -> None:
        """:meth:`route_problem` with the routes ``find_routes`` returns, at a request, where
        the app had no start-up event to fail: one ERROR line, and the request is served."""
        problem = None
        with internal_errors:
            problem = self.route_problem(find_routes())
        if problem is not None:
            _say(logging.ERROR, "sherlock_ai memory guard: %s", problem)

    @property
    def draining(self) -> bool:
        """Whether the worker is leaving (recycled under uvicorn): every response is to say
        ``Connection: close`` so that its client reconnects to a sibling."""
        watermark = self.watermark
        return watermark is not None and watermark.draining

    @property
    def shedding(self) -> bool:
        """Whether new requests are being answered 503 (``on_rss_limit="shed"``, over the
        limit)."""
        watermark = self.watermark
        return watermark is not None and watermark.shedding

    def request_started(self, request: OpenRequest) -> None:
        """A measured request of this middleware began (told in its context)."""
        with self._lock:
            self._in_flight += 1
        if self.peaks is not None:
            try:
                _window.set(self.peaks.open())
            except Exception as exc:  # noqa: BLE001 - its budget compares the RSS change
                report_internal_error("memory guard RSS peak", exc)

    def measurement_ended(self, m: Measurement) -> None:
        """A measured request ended: check its budget, then the process's RSS."""
        with self._lock:
            self._in_flight -= 1
            in_flight = self._in_flight
        rss_peak = None
        if self.peaks is not None:
            window = _window.get()
            if window is not None:
                _window.set(None)
                try:
                    rss_peak = self.peaks.close(window)
                except Exception as exc:  # noqa: BLE001 - its budget compares the RSS change
                    report_internal_error("memory guard RSS peak", exc)
        if self.budgets is not None:
            event = self.budgets.check(m, rss_peak)
            if event is not None:
                tell(event)
        if self.watermark is not None:
            self.watermark.observe(m.name, m.rss, m.rss_change, in_flight)

    def should_shed(self, method: str, route: Any, excluded: bool = False) -> bool:
        """Called while :attr:`shedding`, before a request reaches the app: ``True`` to answer
        it 503 (counted), ``False`` to serve it (RSS is back under the limit; or ``excluded``,
        a path such as ``/health``, while the worker has not shed for ``shed_timeout``)."""
        with internal_errors:  # served
            watermark = self.watermark
            if watermark is None or not watermark.should_shed(excluded, self._in_flight):
                return False
            tell(ShedEvent(method, route() if callable(route) else route))
            return True
        return False
