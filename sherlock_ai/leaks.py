"""Leak watch: which route keeps memory after its requests end, how much per request, and the
line that allocates it, in a live service with concurrent requests.

How it works (details and limits in docs/leak-detection.md):

1. Requests are counted per endpoint as they finish. Tracing is off most of the time.
2. Every so often a *window* opens: tracemalloc traces (1 frame by default) for
   ``window_requests`` requests, and the heap is snapshotted every ``snapshot_every`` of them.
   A snapshot taken while tracing holds exactly what the window allocated and is still alive.
3. Each snapshot is grouped by (allocation site, endpoint): the endpoint is the one whose code
   holds a frame of the allocation's traceback. Per key, the retained size is fitted against
   the endpoint's request count (:mod:`sherlock_ai.leak_estimator`).
4. A key that looks like a leak is confirmed by an immediate second window that runs a full
   garbage collection before its last snapshot. A site that grows outside any endpoint's own
   lines gets a window with deeper tracebacks, to reach the endpoint that called it.
5. A confirmed route is logged once as a WARNING on ``MonitoringLogger``, and again only when
   its estimate changes by more than a quarter.

The share of requests traced (``trace_share``) sets the cost; see the settings.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import tracemalloc
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Dict, Hashable, List, Optional, Set, Tuple

from . import tracing
from ._safety import report_internal_error
from .formatting import format_bytes, log_safe
from .heap import Site, group_sizes
from .leak_attribution import EndpointIndex, code_ranges
from .leak_estimator import Estimate, Evidence, LeakCriteria, WindowFit, fit_window, pool
from .lines import MONITORING_LOGGER
from .options import from_keywords

#: The route key that requests of routes beyond ``max_routes`` are counted under.
OVERFLOW_ROUTE = "OTHER <more routes>"

_logger = logging.getLogger(MONITORING_LOGGER)
_Key = Tuple[Site, Optional[int]]
# A candidate is confirmed by at most this many windows in a row before the schedule resumes.
_MAX_EXTRA_WINDOWS = 3
# Growth outside endpoints must reach this share of min_bytes_per_request per request (of all
# routes) to justify a window with deeper tracebacks.
_DEEP_TRIGGER_SHARE = 1 / 8
_EVIDENCE_KEYS_LIMIT = 10_000
_LOOKED_AT_LIMIT = 4096
_REPEAT_CHANGE = 0.25
_SITES_SHOWN = 5


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


@dataclass(frozen=True)
class LeakWatchSettings:
    """Settings of a :class:`LeakWatch`, checked when it is created.

    - ``trace_share``: share of requests traced in the long run (0 < share <= 1). The cost:
      a traced request runs several times slower (tracemalloc taxes every allocation), so the
      mean cost grows by about ``trace_share`` times that tax. Lower is cheaper and slower to
      notice a leak that starts later; windows to confirm a suspect come on top.
    - ``window_requests``: requests per tracing window.
    - ``snapshot_every``: requests between two snapshots in a window (at least 3 per window).
    - ``warmup_requests``: requests before the first window (start-up allocations settle).
    - ``min_bytes_per_request``: smallest retention per request that is reported.
    - ``min_requests``: requests of a route that the evidence must span.
    - ``frames``: traceback frames while looking (1 finds leaks on an endpoint's own lines).
    - ``confirm_frames``: frames of a window that looks for the endpoint behind growth in
      shared code (0: never look deeper). Only used when tracemalloc is not already running.
    - ``max_routes``: routes counted separately; later ones share :data:`OVERFLOW_ROUTE`.
    - ``evidence_windows``: how many recent windows a route's estimate pools (more, up to 8
      times as many, for a route whose requests in them are fewer than ``min_requests``).
    """

    trace_share: float = 0.25
    window_requests: int = 150
    snapshot_every: int = 25
    warmup_requests: int = 100
    min_bytes_per_request: int = 256
    min_requests: int = 20
    frames: int = 1
    confirm_frames: int = 8
    max_routes: int = 1000
    evidence_windows: int = 4

    def __post_init__(self) -> None:
        share = self.trace_share
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share <= 1:
            raise ValueError(f"trace_share must be a number in (0, 1], got {share!r}")
        _check_int("snapshot_every", self.snapshot_every, 1)
        _check_int("window_requests", self.window_requests, 3 * self.snapshot_every
                   if isinstance(self.snapshot_every, int) else 3)
        for name in ("warmup_requests", "confirm_frames"):
            _check_int(name, getattr(self, name), 0)
        for name in ("min_bytes_per_request", "min_requests", "frames", "max_routes",
                     "evidence_windows"):
            _check_int(name, getattr(self, name), 1)
        if self.confirm_frames and self.confirm_frames <= self.frames:
            raise ValueError(
                f"confirm_frames must be 0 (never look deeper) or more than frames "
                f"({self.frames}), got {self.confirm_frames}"
            )

    @classmethod
    def from_kwargs(cls, settings: Dict[str, Any]) -> LeakWatchSettings:
        """Settings from keyword arguments, refusing unknown names with the accepted ones."""
        return from_keywords(cls, settings, "LeakWatch setting(s)")

    @property
    def pause_requests(self) -> int:
        """Untraced requests between two scheduled windows."""
        return round(self.window_requests * (1 - self.trace_share) / self.trace_share)


class LeakSuspect:
    """A route whose requests keep leaving memory behind.

    ``per_request``: bytes retained per request (the fitted slope, summed over its sites);
    ``requests``: the route's requests the evidence spans; ``sites``: the growing allocation
    sites, largest first, as ``{"file", "line", "size", "count"}`` with the bytes and blocks
    they gained over those requests.
    """

    __slots__ = ("name", "method", "route", "per_request", "requests", "sites")

    def __init__(self, name: str, per_request: float, requests: int,
                 sites: List[Dict[str, Any]]) -> None:
        self.name = name
        method, _, route = name.partition(" ")
        self.method, self.route = (method, route) if route else ("", name)
        self.per_request = per_request
        self.requests = requests
        self.sites = sites

    def __repr__(self) -> str:
        return f"LeakSuspect({self.name!r}, per_request={self.per_request:.0f})"

    def as_dict(self) -> Dict[str, Any]:
        """The structured fields of the WARNING's JSON line."""
        return {
            "kind": "leak_suspect", "name": self.name, "method": self.method,
            "route": self.route, "per_request": float(self.per_request),
            "requests": self.requests, "sites": [dict(site) for site in self.sites],
        }

    def message(self) -> str:
        """``LEAK SUSPECT | GET /route | +4.04KB/request | file.py:LINE +size (+n blocks)...``"""
        evidence = ", ".join(
            f"{log_safe(os.path.basename(site['file']), limit=100)}:{site['line']}"
            f" +{format_bytes(site['size'])} ({site['count']:+d} blocks)"
            for site in self.sites
        )
        return (
            f"LEAK SUSPECT | {log_safe(self.name, limit=200)}"
            f" | +{format_bytes(self.per_request)}/request"
            f" | {evidence} over {self.requests} requests"
        )


class _Request:
    __slots__ = ("route_key", "endpoint")

    def __init__(self, route_key: str, endpoint: Optional[Callable[..., Any]]) -> None:
        self.route_key = route_key
        self.endpoint = endpoint


_NORMAL, _CONFIRM, _DEEP = "normal", "confirm", "deep"


class _Window:
    """One tracing window: its snapshot points (request totals, per-endpoint counts, grouped
    sizes) and what it was opened for."""

    __slots__ = ("number", "kind", "index", "deep", "points")

    def __init__(self, number: int, kind: str, index: EndpointIndex, deep: bool) -> None:
        self.number = number
        self.kind = kind
        self.index = index
        self.deep = deep
        self.points: List[Tuple[int, List[int], Dict[Hashable, List[int]]]] = []


# Every LeakWatch alive, for exporters that publish suspects (see active_watches()).
_live: weakref.WeakSet[LeakWatch] = weakref.WeakSet()


def active_watches() -> List[LeakWatch]:
    """The leak watches alive in this process (one per middleware with leak detection)."""
    return list(_live)


class LeakWatch:
    """Finds routes whose requests keep retaining memory (see the module docs).

    ``handle = watch.request_started(route_key, endpoint)`` when a request starts and
    ``watch.request_finished(handle)`` when it ends. ``route_key`` is ``"{METHOD} {route
    template}"``; ``endpoint`` is the function that serves the route (``None`` when unknown:
    that route cannot be blamed). Either may be given only at the end:
    ``watch.request_finished(handle, route_key=..., endpoint=...)``. Safe to call from any
    thread or task; neither call ever raises. Settings: :class:`LeakWatchSettings`, as keywords or
    ``settings=LeakWatchSettings(...)``.
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
        self._candidate_criteria = self.criteria.for_candidates()
        self._points_per_window = s.window_requests // s.snapshot_every
        self._lock = threading.Lock()
        # Guarded by _lock: routes, endpoint counts and the schedule.
        self._routes: Dict[str, Optional[int]] = {}
        self._endpoint_ids: Dict[int, int] = {}
        self._endpoints: List[Any] = []  # kept alive so that their id() keys stay unique
        self._primary_route: List[str] = []
        self._finished: List[int] = []
        self._total = 0
        self._next_at = s.warmup_requests
        self._busy = False
        self._index = EndpointIndex()
        # Touched only by the one thread that holds _busy.
        self._window: Optional[_Window] = None
        self._next_kind = _NORMAL
        self._extra_windows = 0
        self._windows = 0
        self._evidence: Dict[_Key, Evidence] = {}
        self._flagged: Dict[_Key, Estimate] = {}
        self._looked_at: Set[Site] = set()
        self._deep_for: Set[Site] = set()
        self._logged: Dict[int, float] = {}
        self._suspects: Dict[int, LeakSuspect] = {}
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
            with self._lock:
                endpoint_id = self._routes.get(route_key)
                # None: a route seen without its endpoint so far (or new); -1: not blamable.
                if endpoint_id is None and (endpoint is not None
                                            or route_key not in self._routes):
                    endpoint_id = self._register(route_key, endpoint)
                if endpoint_id is not None and endpoint_id >= 0:
                    self._finished[endpoint_id] += 1
                self._total += 1
                if self._total < self._next_at or self._busy:
                    return
                self._busy = True
            self._advance()
        except Exception as exc:  # noqa: BLE001 - monitoring never hurts the monitored
            report_internal_error("LeakWatch.request_finished", exc)

    @property
    def route_count(self) -> int:
        """Route keys counted separately now (at most ``max_routes``, plus the overflow)."""
        return len(self._routes)

    def suspects(self) -> List[LeakSuspect]:
        """The routes currently suspected of leaking, largest retention per request first."""
        return sorted(self._suspects.values(), key=lambda s: -s.per_request)

    def close(self) -> None:
        """End a window in progress (giving back its tracemalloc lease); later requests may
        open new ones."""
        with self._lock:
            if self._busy:
                return
            self._busy = True
        try:
            self._abandon_window()
        finally:
            with self._lock:
                self._busy = False

    # -- routes and endpoints (called with _lock held) ---------------------------------------

    def _register(self, route_key: str, endpoint: Any) -> Optional[int]:
        """The endpoint id of a route (``None``: not known yet, ``-1``: none to blame)."""
        if route_key not in self._routes and len(self._routes) >= self.settings.max_routes:
            self._routes.setdefault(OVERFLOW_ROUTE, -1)
            return -1
        if route_key == OVERFLOW_ROUTE:
            self._routes[route_key] = -1
            return -1
        if endpoint is None:
            self._routes[route_key] = None
            return None
        endpoint_id = self._endpoint_ids.get(id(endpoint))
        if endpoint_id is None:
            ranges = code_ranges(endpoint)
            endpoint_id = len(self._finished) if ranges else -1
            self._endpoint_ids[id(endpoint)] = endpoint_id
            self._endpoints.append(endpoint)
            if ranges:
                self._primary_route.append(route_key)
                self._finished.append(0)
                self._index = self._index.with_endpoint(endpoint_id, ranges)
        self._routes[route_key] = endpoint_id
        return endpoint_id

    def _schedule(self, after: int) -> None:
        with self._lock:
            self._next_at = self._total + after

    def _counts(self) -> Tuple[int, List[int]]:
        with self._lock:
            return self._total, list(self._finished)

    # -- windows (called by the one thread that set _busy) -----------------------------------

    def _advance(self) -> None:
        try:
            if self._window is None:
                self._open_window()
            else:
                self._take_point(self._window)
        except Exception as exc:  # noqa: BLE001
            report_internal_error("LeakWatch window", exc)
            self._abandon_window()
            self._schedule(self.settings.pause_requests)
        finally:
            with self._lock:
                self._busy = False

    def _open_window(self) -> None:
        kind, self._next_kind = self._next_kind, _NORMAL
        s = self.settings
        frames = s.confirm_frames if kind == _DEEP else s.frames
        tracing.hold_tracing(frames)
        self._windows += 1
        deep = tracemalloc.get_traceback_limit() > 1
        with self._lock:
            index = self._index
        self._window = _Window(self._windows, kind, index, deep)
        self._schedule(s.snapshot_every)

    def _abandon_window(self) -> None:
        if self._window is not None:
            self._window = None
            tracing.release_tracing()

    def _take_point(self, window: _Window) -> None:
        last = len(window.points) + 1 >= self._points_per_window
        if last and window.kind != _NORMAL:
            # Garbage in reference cycles waits for a full collection; a leak survives it.
            gc.collect()
        total, counts = self._counts()
        snapshot = tracemalloc.take_snapshot()
        if last:
            self._window = None
            tracing.release_tracing()
        window.points.append((total, counts, group_sizes(snapshot, window.index.key_of)))
        del snapshot
        if not last:
            self._schedule(self.settings.snapshot_every)
            return
        deeper, needed = self._weigh(window)
        self._plan_next(deeper, needed)

    def _plan_next(self, deeper: Set[Site], needed: Optional[str]) -> None:
        s = self.settings
        if needed is not None and self._extra_windows < _MAX_EXTRA_WINDOWS:
            self._extra_windows += 1
            self._next_kind = needed
            self._schedule(0)
            return
        if deeper and s.confirm_frames and self._extra_windows < _MAX_EXTRA_WINDOWS:
            self._extra_windows += 1
            self._next_kind = _DEEP
            self._deep_for = deeper
            self._schedule(0)
            return
        self._extra_windows = 0
        self._schedule(s.pause_requests)

    # -- weighing the evidence ---------------------------------------------------------------

    def _weigh(self, window: _Window) -> Tuple[Set[Site], Optional[str]]:
        """Fold the window's points into each key's evidence, update the suspects, and say
        which sites outside endpoints deserve deeper tracebacks and which kind of window
        candidates need to be confirmed (``None``: no candidates)."""
        points = window.points
        totals = [total for total, _, _ in points]
        keys: Set[Hashable] = set()
        for _, _, sizes in points:
            keys.update(sizes)
        deeper: Set[Site] = set()
        if window.kind == _DEEP:
            # Sites whose growth no endpoint's code reached even with deep tracebacks: no
            # use looking again.
            reached = {key[0] for key in keys if key[1] is not None}  # type: ignore[index]
            self._looked_at |= self._deep_for - reached
            if len(self._looked_at) > _LOOKED_AT_LIMIT:
                self._looked_at = self._deep_for - reached
            self._deep_for = set()
        for key in keys:
            site, endpoint_id = key  # type: ignore[misc]
            sizes = [p[2].get(key, (0, 0)) for p in points]
            ys = [size for size, _ in sizes]
            blocks = [count for _, count in sizes]
            if endpoint_id is None:
                if not window.deep and site not in self._looked_at \
                        and self._grows_outside_endpoints(fit_window(totals, ys, blocks)):
                    deeper.add(site)
                continue
            counts = [p[1][endpoint_id] if endpoint_id < len(p[1]) else 0 for p in points]
            self._evidence_of(key).add(fit_window(counts, ys, blocks), window.number)
        self._add_silent_keys(window)
        needed = self._update_flags(window)
        self._update_suspects()
        self._prune(window.number)
        return deeper, needed

    def _grows_outside_endpoints(self, fit: WindowFit) -> bool:
        estimate = pool([fit])
        c = self._candidate_criteria
        return (
            estimate.per_request >= c.min_bytes_per_request * _DEEP_TRIGGER_SHARE
            and estimate.t_value >= c.min_t
            and estimate.rise_share >= c.min_rise_share
            and estimate.requests >= c.min_requests
        )

    def _evidence_of(self, key: _Key) -> Evidence:
        evidence = self._evidence.get(key)
        if evidence is None:
            evidence = self._evidence[key] = Evidence(self.settings.evidence_windows,
                                                      self.settings.min_requests)
        return evidence

    def _needs_depth(self, key: _Key, index: EndpointIndex) -> bool:
        (filename, lineno), endpoint_id = key
        return index.endpoint_at(filename, lineno) != endpoint_id

    def _add_silent_keys(self, window: _Window) -> None:
        """A key with evidence that did not show in a window where its endpoint served
        requests retained nothing there: that is evidence too (when the window's tracebacks
        were deep enough to see it)."""
        points = window.points
        for key, evidence in self._evidence.items():
            if evidence.last_window == window.number:
                continue
            endpoint_id = key[1]
            if self._needs_depth(key, window.index) and not window.deep:
                continue
            counts = [p[1][endpoint_id] if endpoint_id < len(p[1]) else 0 for p in points]
            if counts[-1] > counts[0]:
                zeros = [0] * len(points)
                evidence.add(fit_window(counts, zeros, zeros), window.number)

    def _update_flags(self, window: _Window) -> Optional[str]:
        """Flag confirmed keys; the kind of window that candidates need next, if any."""
        confirming = window.kind != _NORMAL
        needed: Optional[str] = None
        for key, evidence in self._evidence.items():
            if evidence.last_window != window.number:
                continue
            estimate = evidence.estimate()
            # Flagging takes the full criteria and a confirming window; staying flagged the
            # candidates' criteria, so that one noisy window does not retract a real leak.
            if key in self._flagged:
                if estimate.is_leak(self._candidate_criteria):
                    self._flagged[key] = estimate
                else:
                    del self._flagged[key]
            elif confirming and estimate.is_leak(self.criteria):
                self._flagged[key] = estimate
            elif estimate.is_leak(self._candidate_criteria) and needed != _DEEP:
                needed = _DEEP if self._needs_depth(key, window.index) else _CONFIRM
        return needed

    def _update_suspects(self) -> None:
        by_endpoint: Dict[int, List[Tuple[Site, Estimate]]] = {}
        for (site, endpoint_id), estimate in self._flagged.items():
            by_endpoint.setdefault(endpoint_id, []).append((site, estimate))  # type: ignore
        suspects: Dict[int, LeakSuspect] = {}
        for endpoint_id, found in by_endpoint.items():
            found.sort(key=lambda item: -item[1].per_request)
            suspect = LeakSuspect(
                self._primary_route[endpoint_id],
                sum(estimate.per_request for _, estimate in found),
                max(estimate.requests for _, estimate in found),
                [{"file": log_safe(site[0]), "line": site[1], "size": estimate.growth,
                  "count": estimate.blocks} for site, estimate in found[:_SITES_SHOWN]],
            )
            suspects[endpoint_id] = suspect
            logged = self._logged.get(endpoint_id)
            if logged is None or abs(suspect.per_request - logged) > _REPEAT_CHANGE * logged:
                self._logged[endpoint_id] = suspect.per_request
                _logger.warning(suspect.message(), extra={"sherlock": suspect})
        self._suspects = suspects

    def _prune(self, window_number: int) -> None:
        horizon = window_number - 4 * self.settings.evidence_windows
        stale = [key for key, evidence in self._evidence.items()
                 if evidence.last_window < horizon and key not in self._flagged]
        for key in stale:
            del self._evidence[key]
        if len(self._evidence) > _EVIDENCE_KEYS_LIMIT:
            oldest = sorted(self._evidence, key=lambda k: self._evidence[k].last_window)
            for key in oldest[: len(self._evidence) - _EVIDENCE_KEYS_LIMIT]:
                if key not in self._flagged:
                    del self._evidence[key]
