"""The process watermark: after each measured request, the RSS its measurement already read is
compared with ``rss_limit`` (no extra system call); crossing it, and coming back under, are
changes of state, each told once by one ``MEMORY LIMIT`` line.

States: ``under`` -> ``above`` (action ``log``: a ``crossed`` warning naming the routes whose
requests grew RSS most since the last crossing) -> ``under`` (``back under``); with ``shed``,
``above`` is ``shedding`` until a shed request finds RSS back under the limit (shed requests
read RSS themselves, since none of them is measured); with ``recycle``, ``recycling`` is final:
the process asks its server to stop gracefully once.

Shedding that lasts ``shed_timeout`` seconds gives up, since the memory is not coming back (a
worker that sheds every request while its excluded health check answers 200 would never be
restarted): the worker is recycled where its server replaces workers, else its excluded paths
are shed too, so that the health check fails and whatever watches it restarts the process.
"""

from __future__ import annotations

import os
import threading
import tracemalloc
from time import monotonic
from typing import Any, Dict, List, Optional

from ..engine.rss import current_rss
from ..safety import internal_errors
from .events import LimitEvent, tell
from .supervisor import exit_gracefully

#: How many routes and allocation sites a ``crossed`` line names.
SHOWN = 3
#: Seconds a shed request is told to wait (``Retry-After``).
RETRY_AFTER = 5
# Route names come from the app's templates, bounded all the same.
_ROUTES_LIMIT = 1024
_OVERFLOW = "<other routes>"


class Watermark:
    """The state of one guard's RSS limit (``limit`` bytes, ``action`` of ``on_rss_limit``)."""

    def __init__(self, limit: int, action: str, shed_timeout: Optional[float] = None,
                 recycle: bool = False) -> None:
        self.limit = limit
        self.action = action
        #: Seconds of shedding before it gives up (``None``: never).
        self.shed_timeout = shed_timeout
        #: Whether giving up recycles the worker (a server replaces it), else fails its health.
        self.recycle = recycle
        #: Read by the middleware before each request: answer 503 instead of calling the app.
        self.shedding = False
        self.above = False
        self.recycling = False
        #: Shedding gave up without a server to replace the worker: excluded paths get 503 too.
        self.failing_health = False
        #: The worker is leaving: every response says ``Connection: close`` (see
        #: :func:`sherlock_ai.guard.supervisor.exit_gracefully`).
        self.draining = False
        self._shed_since = 0.0
        self._growth: Dict[str, List[int]] = {}
        self._shed = 0
        self._lock = threading.Lock()

    def observe(self, name: str, rss: Optional[int], rss_change: Optional[int],
                in_flight: int) -> None:
        """One measured request ended with the process at ``rss`` bytes."""
        if rss_change is not None and rss_change > 0:
            with self._lock:
                entry = self._growth.get(name)
                if entry is None:
                    if len(self._growth) >= _ROUTES_LIMIT:
                        name = _OVERFLOW
                    entry = self._growth.setdefault(name, [0, 0])
                entry[0] += rss_change
                entry[1] += 1
        if rss is None or self.recycling:
            return
        if rss > self.limit:
            if not self.above:
                self._cross(rss, in_flight)
        elif self.above and not self.shedding:
            self._back_under(rss)
        elif self.shedding:
            self._stop_shedding(rss)

    def should_shed(self, excluded: bool = False, in_flight: int = 0) -> bool:
        """Whether a new request is to be answered 503 (called only while :attr:`shedding`):
        RSS is read again, since a shed request is not measured; under the limit, shedding
        stops and the request is served. An ``excluded`` path is served until shedding gives
        up without a server to replace the worker (``in_flight``: its measured requests)."""
        rss = current_rss()
        if rss is not None and rss <= self.limit and not self.recycling:
            self._stop_shedding(rss)
            return False
        if self.shed_timeout is not None and not (self.recycling or self.failing_health) \
                and monotonic() - self._shed_since >= self.shed_timeout:
            self._give_up(self.limit if rss is None else rss, in_flight)
        if excluded and not self.failing_health:
            return False
        with self._lock:
            self._shed += 1
        return True

    def _give_up(self, rss: int, in_flight: int) -> None:
        with self._lock:
            if self.recycling or self.failing_health or not self.shedding:
                return
            if self.recycle:
                self.recycling = True
            else:
                self.failing_health = True
            shed_for = round(monotonic() - self._shed_since)
        if self.recycle:
            tell(LimitEvent("recycling", rss, self.limit, "recycle", pid=os.getpid(),
                            in_flight=in_flight, shed_for=shed_for))
            exit_gracefully(self._drain)
        else:
            tell(LimitEvent("shedding", rss, self.limit, "shed", retry_after=RETRY_AFTER,
                            shed_for=shed_for, excluded_too=True))

    def _cross(self, rss: int, in_flight: int) -> None:
        with self._lock:
            if self.above:
                return
            self.above = True
            grown = sorted(self._growth.items(), key=lambda item: -item[1][0])[:SHOWN]
            self._growth = {}
            if self.action == "shed":
                self.shedding = True
                self._shed_since = monotonic()
            elif self.action == "recycle":
                self.recycling = True
        grew_most = [{"route": name, "bytes": size, "requests": count}
                     for name, (size, count) in grown]
        if self.action == "shed":
            tell(LimitEvent("shedding", rss, self.limit, "shed", retry_after=RETRY_AFTER))
        elif self.action == "recycle":
            tell(LimitEvent("recycling", rss, self.limit, "recycle", pid=os.getpid(),
                            in_flight=in_flight, grew_most=grew_most))
            exit_gracefully(self._drain)
        else:
            tell(LimitEvent("crossed", rss, self.limit, "log", grew_most=grew_most,
                            top_sites=_top_sites()))

    def _drain(self) -> None:
        self.draining = True

    def _back_under(self, rss: int) -> None:
        with self._lock:
            if not self.above or self.shedding:
                return
            self.above = False
        tell(LimitEvent("back_under", rss, self.limit, self.action))

    def _stop_shedding(self, rss: int) -> None:
        with self._lock:
            if not self.shedding or self.recycling:
                return
            self.shedding = self.above = self.failing_health = False
            shed, self._shed = self._shed, 0
        tell(LimitEvent("shed_stopped", rss, self.limit, "shed", shed_requests=shed))


def _top_sites() -> Optional[List[Dict[str, Any]]]:
    """The lines holding the most traced memory (allocated since tracing started and still
    alive), when tracemalloc is tracing; one snapshot, at the crossing only."""
    if not tracemalloc.is_tracing():
        return None
    with internal_errors:
        from ..engine.heap import site_sizes, top_growth

        return top_growth({}, site_sizes(), SHOWN) or None
    return None
