"""The leak watch: counts requests per route, opens tracing windows now and then, and turns
their snapshots into suspects (see :mod:`sherlock_ai.leaks`)."""

from __future__ import annotations

import threading
import weakref
from contextvars import ContextVar
from typing import Any, Callable, Dict, Iterator, List, Optional, Set, Tuple

from ..engine.rss import current_rss
from ..safety import report_internal_error
from .criteria import LeakCriteria
from .evidence import FIT_UNITS, EvidenceStore
from .native import NativeEvidence
from .routes import IN_FLIGHT_ID, OVERFLOW_ROUTE, THREADS_ID, RouteRegistry
from .settings import LeakWatchSettings
from .suspects import LeakSuspect, SuspectBook
from .windows import CONFIRM, NORMAL, Gate, Window

# A candidate is confirmed by at most this many windows in a row before the schedule resumes.
_MAX_EXTRA_WINDOWS = 3
# The late counts of a point are read this fraction of snapshot_every after it (1/3).
_LATE_SHARE = 3
#: Work units (about one grouped trace each; a site's fit counts as FIT_UNITS) that one
#: request_finished call does at most, plus one step: the bound of the pause it causes.
WORK_PER_CALL = 2_000
#: Work units of one native interval fitted (a round of 100 intervals takes a call of its own).
NATIVE_UNITS = 20
# Windows at the suspect share after a change, in units of evidence_windows.
_SUSPECT_WINDOWS = 2
#: The smallest growth of the RSS within a pause that calls a window early.
EARLY_BYTES = 1 << 20
#: Windows after the first that come at the suspect share: one window alone rarely splits a
#: helper's growth between ten routes, and a leak there from the start is the common case.
STARTUP_WINDOWS = 2
#: Frames per allocation while a confirming window traces (when it starts tracemalloc):
#: growth under an endpoint's call, in a helper or a library, is then keyed by that
#: endpoint's frame, so the stack names the route and the timing of the counts cannot.
CONFIRM_FRAMES = 8
#: Requests a window's first point waits at most for the requests in flight at its opening.
SETTLE_REQUESTS = 1_000


class _Request:
    """A request the watch saw start: its route (if known then), and the window epoch it
    started in (``owner`` is ``None`` for a request whose start the watch did not see)."""

    __slots__ = ("route_key", "endpoint", "owner", "epoch", "done")

    def __init__(self, route_key: str, endpoint: Optional[Callable[..., Any]],
                 owner: Optional[LeakWatch] = None, epoch: int = 0) -> None:
        self.route_key = route_key
        self.endpoint = endpoint
        self.owner = owner
        self.epoch = epoch
        self.done = False


# The request started last in this context (each request runs in a context of its own: a
# task, or the WSGI middleware's private context), for request_finished() without a handle.
_started: ContextVar[Optional[_Request]] = ContextVar("sherlock_leak_request", default=None)


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
        # Between windows: the request count that ends the pause (RSS readings until then),
        # where it started, and its first reading (request count, route counts, RSS).
        self._pause_until = 0
        self._pause_started = 0
        self._pause_base: Optional[Tuple[int, List[int], int]] = None
        # The analysis in progress, a step per call (see _work); windows left at the suspect
        # share; per route id, what its flagged suspects retain per request.
        self._job: Optional[Iterator[int]] = None
        self._suspect_windows = STARTUP_WINDOWS
        self._rates: Dict[int, float] = {}
        self._book = SuspectBook()
        # Guarded by the gate's lock: requests in flight (started, not finished), the window
        # epoch (one more at each window's opening), and how many of the requests in flight
        # when the current window opened are still in flight (see _take_point).
        self._in_flight = 0
        self._epoch = 0
        self._stale = 0
        # The threads alive when the current window opened (their memory is untraced). Held,
        # so that a new thread cannot take the identity of one that ended.
        self._threads_before: Set[threading.Thread] = set()
        _live.add(self)

    # -- the request path -------------------------------------------------------------------

    def request_started(self, route_key: str = "",
                        endpoint: Optional[Callable[..., Any]] = None) -> _Request:
        """Note a request's start; pass the returned handle to :meth:`request_finished`
        (or call it without one in the same context: the request's task, or thread)."""
        try:
            with self._gate.lock:
                self._in_flight += 1
                handle = _Request(route_key, endpoint, self, self._epoch)
            _started.set(handle)
            return handle
        except Exception as exc:  # noqa: BLE001 - monitoring never hurts the monitored
            report_internal_error("LeakWatch.request_started", exc)
            return _Request(route_key, endpoint)

    def request_finished(self, handle: Optional[_Request] = None,
                         route_key: Optional[str] = None,
                         endpoint: Optional[Callable[..., Any]] = None) -> None:
        """Count a finished request (``route_key``/``endpoint`` override the start's;
        without ``handle``, the request started last in this context); now and then this
        call opens a window, snapshots the heap or weighs the evidence."""
        try:
            if handle is None:
                handle = _started.get()
                if handle is None or handle.owner is not self or handle.done:
                    handle = _Request("", None)  # its start was not seen
            if route_key is None:
                route_key = handle.route_key
            if endpoint is None:
                endpoint = handle.endpoint
            if not isinstance(route_key, str):
                route_key = OVERFLOW_ROUTE
            gate = self._gate
            with gate.lock:
                if handle.owner is self and not handle.done:
                    handle.done = True
                    self._in_flight -= 1
                    if handle.epoch != self._epoch and self._stale:
                        self._stale -= 1
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
            self._job = None
            self._abandon_window()
        finally:
            self._gate.release()

    # -- windows (called by the one thread that holds the token) ----------------------------

    def _advance(self) -> None:
        try:
            window = self._window
            if window is not None and window.full():
                self._cut(window)
            elif self._job is not None:
                self._work()
            elif self._window is not None:
                self._take_point(self._window)
            else:
                self._between_windows()
        except Exception as exc:  # noqa: BLE001
            report_internal_error("LeakWatch window", exc)
            self._job = None
            self._abandon_window()
            self._pause(self.settings.pause_requests)
        finally:
            self._gate.release()

    def _work(self) -> None:
        """Run the job in progress for at most :data:`WORK_PER_CALL` units (its last step
        may go past them by one step); the rest waits for the next request."""
        job = self._job
        spent = 0
        while spent < WORK_PER_CALL:
            try:
                spent += next(job)  # type: ignore[arg-type]
            except StopIteration:
                if self._job is job:
                    self._job = None
                return
        self._gate.schedule(1)

    def _between_windows(self) -> None:
        with self._gate.lock:
            total = self._gate.total
        left = self._pause_until - total
        if left > 0:
            # In the pause: an RSS reading (no tracing, no snapshot).
            counts, rss = self._counts(), current_rss()
            self._native.sample(counts, rss)
            if not self._rss_calls_a_window(total, counts, rss):
                self._gate.schedule(min(self.settings.snapshot_every, left))
                return
        self._native.cut()
        self._open_window()

    def _rss_calls_a_window(self, total: int, counts: List[int], rss: Optional[int]) -> bool:
        """Whether the RSS grew, since the pause's first reading, by more than the flagged
        suspects explain: at least :data:`EARLY_BYTES` and ``min_bytes_per_request`` per
        request of the pause. Not before ``suspect_pause_requests`` of it."""
        if rss is None:
            return False
        if self._pause_base is None:
            self._pause_base = (total, counts, rss)
            return False
        since, before, base = self._pause_base
        if total - self._pause_started < self.settings.suspect_pause_requests:
            return False
        explained = sum(rate * (counts[r] - before[r]) for r, rate in self._rates.items()
                        if r < len(before))
        growth = rss - base - explained
        return growth >= max(EARLY_BYTES, (total - since) * self.settings.min_bytes_per_request)

    def _pause(self, requests: int) -> None:
        """Untraced for ``requests`` requests (RSS readings every ``snapshot_every``)."""
        with self._gate.lock:
            self._pause_started = self._gate.total
            self._pause_until = self._gate.total + requests
        self._pause_base = None
        self._gate.schedule(min(self.settings.snapshot_every, requests))

    def _open_window(self) -> None:
        kind, self._next_kind = self._next_kind, NORMAL
        s = self.settings
        full = kind != NORMAL or self._suspect_windows or not self._windows
        requests = s.window_requests if full else s.scout_requests
        self._windows += 1
        frames = max(s.frames, CONFIRM_FRAMES) if kind == CONFIRM else s.frames
        self._threads_before = set(threading.enumerate())
        window = Window.start(self._windows, kind, requests // s.snapshot_every, frames)
        with self._gate.lock:
            window.key_of = self._routes.index.key_of
            self._epoch += 1
            self._stale = self._in_flight
            window.settle_by = self._gate.total + SETTLE_REQUESTS
            window.opened_at = self._gate.total
        self._window = window
        self._gate.schedule(1)

    def _abandon_window(self) -> None:
        if self._window is not None:
            self._window.close()
            self._window = None

    def _counts(self) -> List[int]:
        """Per route id its finished requests; at :data:`IN_FLIGHT_ID`, the requests in
        flight that started since the window opened; at :data:`THREADS_ID`, the threads
        alive that started since then (none between windows)."""
        before = self._threads_before
        threads = 0 if self._window is None else sum(
            1 for thread in threading.enumerate() if thread not in before)
        with self._gate.lock:
            counts = list(self._routes.finished)
            counts[IN_FLIGHT_ID] = self._in_flight - self._stale
            counts[THREADS_ID] = threads
        return counts

    def _take_point(self, window: Window) -> None:
        """While a window is open the watch looks at every request: a snapshot is due every
        ``snapshot_every`` requests, or sooner when the window's traced blocks grew fast
        (see Window.point_due, and _cut for a window that reached its block budget)."""
        every = self.settings.snapshot_every
        lag = max(1, every // _LATE_SHARE)
        with self._gate.lock:
            total = self._gate.total
            stale = self._stale
        if window.settling:
            # Requests in flight when tracing started hold objects it never saw; as they
            # finish, newer requests' traced objects take their place and the traced level
            # climbs to its steady in-flight level, in step with whatever routes were served
            # meanwhile. The first point waits until they have all finished (or
            # SETTLE_REQUESTS, for streams that outlive it: they do not turn over; or the
            # window's blocks, when they grow fast enough to call a point).
            if stale and total < window.settle_by and not window.point_due():
                self._gate.schedule(1)
                return
            window.settling = False
            window.point_at = total
        if not window.awaiting_late:
            if total < window.point_at and not window.point_due():
                self._gate.schedule(1)
                return
            # The snapshot alone in its call; its grouping, a bounded part per call, in the
            # calls that follow (see _work).
            snapshot = window.take_point(self._counts)
            self._await_late(window, snapshot, total + lag)
            return
        if total < window.late_at:
            self._gate.schedule(1)
            return
        # The counts a little after the snapshot: see Window.late.
        window.late.append(self._counts())
        window.awaiting_late = False
        if not window.done:
            window.point_at = total + every - lag
            self._gate.schedule(1)
            return
        self._window = None
        self._job = self._weighing(window)
        self._work()

    def _cut(self, window: Window) -> None:
        """End a window that added WINDOW_BLOCKS traced blocks: its last point now, whatever
        its request counts (a larger snapshot later would pause the request that takes it
        for longer); the grouping of an earlier point in progress goes first."""
        if window.awaiting_late:
            window.late.append(self._counts())
            window.awaiting_late = False
        window.settling = False
        window.cut = True
        with self._gate.lock:
            total = self._gate.total
        snapshot = window.take_point(self._counts, last=True)
        lag = max(1, self.settings.snapshot_every // _LATE_SHARE)
        self._await_late(window, snapshot, total + lag)

    def _await_late(self, window: Window, snapshot: Any, late_at: int) -> None:
        window.awaiting_late = True
        window.late_at = late_at
        self._job = self._grouping(self._job, window, snapshot)
        self._gate.schedule(1)

    @staticmethod
    def _grouping(earlier: Optional[Iterator[int]], window: Window,
                  snapshot: Any) -> Iterator[int]:
        if earlier is not None:
            yield from earlier
        yield from window.group(snapshot)

    def _weighing(self, window: Window) -> Iterator[int]:
        """The analysis of a finished window, in steps of bounded work (see :meth:`_work`):
        the fits per site, the native fit, the suspects; then the next window's schedule."""
        evidence, native = self._evidence, self._native
        before = (set(evidence.flagged), set(evidence.groups), set(native.flagged))
        evidence.add_window(window.number, window.counts, window.sizes, window.late,
                            window.deep)
        yield sum(len(point) for point in window.sizes)
        with self._gate.lock:
            index, names = self._routes.index, list(self._routes.names)
        yield from evidence.weigh_steps(index, self._routes.blamable, window.kind != NORMAL)
        needed = evidence.needed
        for intervals in native.weigh_steps(evidence.explained, evidence.traced,
                                            self._routes.blamable):
            yield max(FIT_UNITS, intervals * NATIVE_UNITS)
        self._book.update(evidence.by_site(), names, native.flagged, evidence.groups_by_site())
        self._rates = self._flagged_rates()
        changed = before != (set(evidence.flagged), set(evidence.groups), set(native.flagged))
        if needed or changed or evidence.growing:
            self._suspect_windows = _SUSPECT_WINDOWS * self.settings.evidence_windows
        elif self._suspect_windows:
            self._suspect_windows -= 1
        if needed and self._extra_windows < _MAX_EXTRA_WINDOWS:
            self._extra_windows += 1
            self._next_kind = CONFIRM
            self._pause(0)
            return
        self._extra_windows = 0
        s = self.settings
        pause = s.suspect_pause_requests if self._suspect_windows else s.pause_requests
        if window.cut:
            # A window its blocks ended early traced fewer requests: the pause shrinks in
            # proportion, so the share of requests traced (the cost) stays the same and the
            # evidence comes from more, shorter windows.
            with self._gate.lock:
                spanned = self._gate.total - window.opened_at
            planned = window.points_wanted * s.snapshot_every
            pause = max(s.snapshot_every, pause * min(spanned, planned) // planned)
        self._pause(pause)

    def _flagged_rates(self) -> Dict[int, float]:
        """Per route id, the bytes per request its flagged suspects retain (a group's rate
        for each of its routes)."""
        rates: Dict[int, float] = {}
        for (_, route_id), (estimate, _) in self._evidence.flagged.items():
            rates[route_id] = rates.get(route_id, 0.0) + estimate.per_request
        for (_, members), estimate in self._evidence.groups.items():
            for route_id in members:
                rates[route_id] = rates.get(route_id, 0.0) + estimate.per_request
        for route_id, estimate in self._native.flagged.items():
            rates[route_id] = rates.get(route_id, 0.0) + estimate.per_request
        return rates
