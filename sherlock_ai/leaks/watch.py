"""The leak watch: counts requests per route, opens tracing windows now and then, and turns
their snapshots into suspects (see :mod:`sherlock_ai.leaks`)."""

from __future__ import annotations

import weakref
from typing import Any, Callable, List, Optional

from ..engine.rss import current_rss
from ..safety import report_internal_error
from .estimator import LeakCriteria
from .evidence import EvidenceStore
from .native import NativeEvidence
from .routes import OVERFLOW_ROUTE, RouteRegistry
from .settings import LeakWatchSettings
from .suspects import LeakSuspect, SuspectBook
from .windows import CONFIRM, NORMAL, Gate, Window

# A candidate is confirmed by at most this many windows in a row before the schedule resumes.
_MAX_EXTRA_WINDOWS = 3
# The late counts of a point are read this fraction of snapshot_every after it (1/3).
_LATE_SHARE = 3


class _Request:
    __slots__ = ("route_key", "endpoint")

    def __init__(self, route_key: str, endpoint: Optional[Callable[..., Any]]) -> None:
        self.route_key = route_key
        self.endpoint = endpoint


# Every LeakWatch alive, for exporters that publish suspects (see active_watches()).
_live: weakref.WeakSet[LeakWatch] = weakref.WeakSet()


def active_watches() -> List[LeakWatch]:
    """The leak watches alive in this process (one per middleware with leak detection)."""
    return list(_live)


class LeakWatch:
    """Finds routes whose requests keep retaining memory (see the package docs).

    ``handle = watch.request_started(route_key, endpoint)`` when a request starts and
    ``watch.request_finished(handle)`` when it ends. ``route_key`` is ``"{METHOD} {route
    template}"``; ``endpoint`` is the function that serves the route (``None`` when unknown:
    its request counts still name it). Either may be given only at the end:
    ``watch.request_finished(handle, route_key=..., endpoint=...)``. Safe to call from any
    thread or task; neither call ever raises. Settings: :class:`LeakWatchSettings`, as keywords
    or ``settings=LeakWatchSettings(...)``.
    """

    def __init__(self, settings: Optional[LeakWatchSettings] = None, **keywords: Any) -> None:
        if settings is None:
            settings = LeakWatchSettings.from_kwargs(keywords)
        elif keywords or not isinstance(settings, LeakWatchSettings):
            raise TypeError("LeakWatch takes settings=LeakWatchSettings(...) or keyword "
                            f"settings, not both; got settings={settings!r}")
        self.settings = s = settings
        self.criteria = LeakCriteria(min_bytes_per_request=s.min_bytes_per_request,
                                     min_requests=s.min_requests)
        self._gate = Gate(s.warmup_requests)
        # Guarded by the gate's lock.
        self._routes = RouteRegistry(s.max_routes)
        # Touched only by the one thread that holds the gate's token.
        self._window: Optional[Window] = None
        self._next_kind = NORMAL
        self._extra_windows = 0
        self._windows = 0
        self._evidence = EvidenceStore(s.evidence_windows, self.criteria)
        self._native = NativeEvidence(self.criteria, s.native_min_bytes_per_request,
                                      s.evidence_windows)
        # Between windows: the request count that ends the pause (RSS readings until then).
        self._pause_until = 0
        self._book = SuspectBook()
        _live.add(self)

    # -- the request path -------------------------------------------------------------------

    def request_started(self, route_key: str, endpoint: Optional[Callable[..., Any]] = None
                        ) -> _Request:
        """Note a request's start; pass the returned handle to :meth:`request_finished`."""
        return _Request(route_key, endpoint)

    def request_finished(self, handle: _Request, route_key: Optional[str] = None,
                         endpoint: Optional[Callable[..., Any]] = None) -> None:
        """Count a finished request (``route_key``/``endpoint`` override the start's); now
        and then this call opens a window, snapshots the heap or weighs the evidence."""
        try:
            if route_key is None:
                route_key = handle.route_key
            if endpoint is None:
                endpoint = handle.endpoint
            if not isinstance(route_key, str):
                route_key = OVERFLOW_ROUTE
            gate = self._gate
            with gate.lock:
                self._routes.count(route_key, endpoint)
                if not gate.due():
                    return
            self._advance()
        except Exception as exc:  # noqa: BLE001 - monitoring never hurts the monitored
            report_internal_error("LeakWatch.request_finished", exc)

    @property
    def route_count(self) -> int:
        """Route keys counted separately now (at most ``max_routes``, plus the overflow)."""
        return len(self._routes)

    def suspects(self) -> List[LeakSuspect]:
        """The routes currently suspected of leaking, largest retention per request first."""
        return self._book.ordered()

    def close(self) -> None:
        """End a window in progress (giving back its tracemalloc lease); later requests may
        open new ones."""
        if not self._gate.take():
            return
        try:
            self._abandon_window()
        finally:
            self._gate.release()

    # -- windows (called by the one thread that holds the token) ----------------------------

    def _advance(self) -> None:
        try:
            if self._window is not None:
                self._take_point(self._window)
                return
            with self._gate.lock:
                left = self._pause_until - self._gate.total
            if left > 0:
                # In the pause: an RSS reading (no tracing, no snapshot).
                self._native.sample(self._counts(), current_rss())
                self._gate.schedule(min(self.settings.snapshot_every, left))
            else:
                self._native.cut()
                self._open_window()
        except Exception as exc:  # noqa: BLE001
            report_internal_error("LeakWatch window", exc)
            self._abandon_window()
            self._pause(self.settings.pause_requests)
        finally:
            self._gate.release()

    def _pause(self, requests: int) -> None:
        """Untraced for ``requests`` requests (RSS readings every ``snapshot_every``)."""
        with self._gate.lock:
            self._pause_until = self._gate.total + requests
        self._gate.schedule(min(self.settings.snapshot_every, requests))

    def _open_window(self) -> None:
        kind, self._next_kind = self._next_kind, NORMAL
        s = self.settings
        with self._gate.lock:
            index = self._routes.index
        self._windows += 1
        self._window = Window.start(self._windows, kind, s.window_requests // s.snapshot_every,
                                    s.frames, index.key_of)
        self._gate.schedule(s.snapshot_every)

    def _abandon_window(self) -> None:
        if self._window is not None:
            self._window.close()
            self._window = None

    def _counts(self) -> List[int]:
        with self._gate.lock:
            return list(self._routes.finished)

    def _take_point(self, window: Window) -> None:
        every = self.settings.snapshot_every
        lag = max(1, every // _LATE_SHARE)
        if not window.awaiting_late:
            window.done = window.take_point(self._counts)
            window.awaiting_late = True
            self._gate.schedule(lag)
            return
        # The counts a little after the snapshot: see Window.late.
        window.late.append(self._counts())
        window.awaiting_late = False
        if not window.done:
            self._gate.schedule(every - lag)
            return
        self._window = None
        evidence = self._evidence
        evidence.add_window(window.number, window.counts, window.sizes, window.late)
        with self._gate.lock:
            index, names = self._routes.index, list(self._routes.names)
        needed = evidence.weigh(index, self._routes.blamable, window.kind != NORMAL)
        self._native.weigh(evidence.explained, evidence.traced, self._routes.blamable)
        self._book.update(evidence.by_site(), names, self._native.flagged,
                          evidence.groups_by_site())
        if needed and self._extra_windows < _MAX_EXTRA_WINDOWS:
            self._extra_windows += 1
            self._next_kind = CONFIRM
            self._pause(0)
            return
        self._extra_windows = 0
        self._pause(self.settings.pause_requests)
