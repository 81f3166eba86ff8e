"""The leak watch: counts requests per route, opens tracing windows now and then, and turns
their snapshots into suspects (see :mod:`sherlock_ai.leaks`)."""

from __future__ import annotations

import logging
import threading
import time
import tracemalloc
import weakref
from contextvars import ContextVar
from enum import Enum
from typing import Any, Callable, Dict, Hashable, Iterator, List, Optional, Set, Tuple

from ..engine.rss import current_rss
from ..logs import writer
from ..logs.lines import MONITORING_LOGGER
from ..safety import report_internal_error
from . import rules
from .evidence import EvidenceStore
from .fit import LeakCriteria
from .native import NativeEvidence
from .routes import RouteRegistry
from .rules import CONNECTIONS_ID, IN_FLIGHT_ID, OVERFLOW_ROUTE, THREADS_ID
from .settings import LeakWatchSettings
from .suspects import LeakSuspect, SuspectBook
from .windows import CONFIRM, HOLD, NORMAL, Gate, Window, traced_blocks

_logger = logging.getLogger(MONITORING_LOGGER)

class Phase(Enum):
    """Where the watch's schedule is. :meth:`LeakWatch._advance` is the one transition
    function; each phase has one handler, which returns the next phase."""

    #: No window: requests are untraced; the RSS is read every ``snapshot_every`` of them.
    PAUSED = "paused"
    #: A window traces; its first point waits for the requests in flight at its opening.
    SETTLING = "settling"
    #: A window traces; its next point comes at a request count, or sooner by blocks.
    TRACING = "tracing"
    #: A point's snapshot is being grouped by site, within the time budget of each call.
    GROUPING = "grouping"
    #: The counts of the latest point are read again a few requests after it.
    LATE = "late"
    #: The window has ended; its evidence is weighed, within the time budget of each call.
    ANALYSING = "analysing"


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

    ``handle = watch.request_started(route_key, endpoint, connection)`` when a request
    starts and ``watch.request_finished(handle)`` when it ends. ``route_key`` is
    ``"{METHOD} {route template}"``; ``endpoint`` is the function that serves the route
    (``None`` when unknown: its request counts still name it); ``connection`` is a hashable
    key of the connection the request came on (the client's address and port; ``None`` when
    unknown), never logged. ``route_key`` and ``endpoint`` may be given only at the end:
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
        self._phase = Phase.PAUSED
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
        # The grouping or analysis in progress, in steps (see _work); windows left at the
        # suspect share; per route id, what its flagged suspects retain per request.
        self._job: Optional[Iterator[object]] = None
        self._suspect_windows = rules.STARTUP_WINDOWS
        self._rates: Dict[int, float] = {}
        self._book = SuspectBook()
        # Guarded by the gate's lock: requests in flight (started, not finished), the window
        # epoch (one more at each window's opening), and how many of the requests in flight
        # when the current window opened are still in flight (see _take_point).
        self._in_flight = 0
        self._epoch = 0
        self._stale = 0
        # Whether the line saying that windows wait for fewer traced blocks was logged.
        self._said_too_many_blocks = False
        # The threads alive when the current window opened (their memory is untraced). Held,
        # so that a new thread cannot take the identity of one that ended.
        self._threads_before: Set[threading.Thread] = set()
        # The most threads alive at once at any RSS reading between windows: each thread's
        # stack and state raise the RSS's high-water mark the first time that many are alive.
        self._most_threads = 0
        # Guarded by the gate's lock: the keys of the connections that served a request since
        # the current window opened, in the order of their first request, each with whether
        # it served another since (None between windows: nothing is kept then).
        self._connections: Optional[Dict[Hashable, bool]] = None
        # Touched only by the token's holder: those of the latest windows that ended (see
        # rules.CONNECTION_WINDOWS), each with the number of the latest window it served in.
        self._connections_before: Dict[Hashable, int] = {}
        _live.add(self)

    # -- the request path -------------------------------------------------------------------

    def request_started(self, route_key: str = "",
                        endpoint: Optional[Callable[..., Any]] = None,
                        connection: Optional[Hashable] = None) -> _Request:
        """Note a request's start (on ``connection``, when its key is known); pass the
        returned handle to :meth:`request_finished` (or call it without one in the same
        context: the request's task, or thread)."""
        try:
            with self._gate.lock:
                self._in_flight += 1
                handle = _Request(route_key, endpoint, self, self._epoch)
                connections = self._connections
                if connections is not None and connection is not None:
                    connections[connection] = connection in connections
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
            self._phase = Phase.PAUSED
        finally:
            self._gate.release()

    # -- windows (called by the one thread that holds the token) ----------------------------

    def _advance(self) -> None:
        """The one transition function: the current phase's handler runs and names the next
        phase. Whatever the phase, a window whose traced blocks near the budget is cut."""
        try:
            window = self._window
            if window is not None and window.full():
                self._phase = self._cut(window)
            else:
                self._phase = self._handlers[self._phase](self)
        except Exception as exc:  # noqa: BLE001
            report_internal_error("LeakWatch window", exc)
            self._job = None
            self._abandon_window()
            self._pause(self.settings.pause_requests)
            self._phase = Phase.PAUSED
        finally:
            self._gate.release()

    def _work(self) -> bool:
        """Run the job in progress, step by step, until ``rules.CALL_BUDGET_S`` seconds have
        passed in this call (the step running then finishes first); whether it is done. A
        step is a few thousand traces grouped, one site's fit, or one round of the native
        fit. The next call is due at the next request either way."""
        self._gate.schedule(1)
        job = self._job
        if job is None:
            return True
        deadline = time.perf_counter() + rules.CALL_BUDGET_S
        while True:
            try:
                next(job)
            except StopIteration:
                if self._job is job:
                    self._job = None
                return True
            if time.perf_counter() >= deadline:
                return False

    # -- the transitions, one per phase (called by the one thread that holds the token) ----

    def _between_windows(self) -> Phase:
        """PAUSED: an RSS reading, until the pause ends (or the RSS's growth ends it); then
        a window opens (SETTLING), unless tracemalloc already traces too many blocks."""
        with self._gate.lock:
            total = self._gate.total
        left = self._pause_until - total
        if left > 0:
            counts, rss = self._counts(), current_rss()
            # Between windows the threads level is the most threads alive so far: the native
            # fit reads the RSS's high-water mark, which a new most of threads raises.
            self._most_threads = max(self._most_threads, threading.active_count())
            counts[THREADS_ID] = self._most_threads
            self._native.sample(counts, rss)
            if not self._rss_calls_a_window(total, counts, rss):
                self._gate.schedule(min(self.settings.snapshot_every, left))
                return Phase.PAUSED
        self._native.cut()
        return self._open_window()

    def _settle(self) -> Phase:
        """SETTLING: requests in flight when tracing started hold objects it never saw; as
        they finish, newer requests' traced objects take their place and the traced level
        climbs to its steady in-flight level, in step with whatever routes were served
        meanwhile. The first point (TRACING, at once) waits until they have all finished,
        or ``rules.SETTLE_REQUESTS`` (streams that outlive it do not turn over), or the
        window's blocks grew fast enough to call a point."""
        window = self._open()
        with self._gate.lock:
            total, stale = self._gate.total, self._stale
        if stale and total < window.settle_by and not window.point_due():
            self._gate.schedule(1)
            return Phase.SETTLING
        window.point_at = total
        return self._take_point()

    def _take_point(self) -> Phase:
        """TRACING: a snapshot every ``snapshot_every`` requests, or sooner when the
        window's traced blocks grew fast (see Window.point_due); the snapshot alone in its
        call, its grouping in the calls that follow (GROUPING)."""
        window = self._open()
        with self._gate.lock:
            total = self._gate.total
        if total < window.point_at and not window.point_due():
            self._gate.schedule(1)
            return Phase.TRACING
        self._start_grouping(window, window.take_point(self._counts), total)
        return Phase.GROUPING

    def _group(self) -> Phase:
        """GROUPING: the snapshot grouped within the call's budget; then LATE."""
        return Phase.LATE if self._work() else Phase.GROUPING

    def _read_late(self) -> Phase:
        """LATE: the counts a little after the snapshot (see Window.late); then the next
        point (TRACING), or, after the last, the analysis (ANALYSING)."""
        window = self._open()
        with self._gate.lock:
            total = self._gate.total
        if total < window.late_at:
            self._gate.schedule(1)
            return Phase.LATE
        window.late.append(self._counts())
        if not window.done:
            every = self.settings.snapshot_every
            window.point_at = total + every - max(1, every // rules.LATE_SHARE)
            self._gate.schedule(1)
            return Phase.TRACING
        self._count_reused_connections(window)
        self._end_window()
        self._job = self._weighing(window)
        return self._analyse()

    def _analyse(self) -> Phase:
        """ANALYSING: the window's evidence weighed within the call's budget; its last step
        schedules the next window (PAUSED)."""
        return Phase.PAUSED if self._work() else Phase.ANALYSING

    def _cut(self, window: Window) -> Phase:
        """Any phase of an open window: end it, its traced blocks near
        ``rules.SNAPSHOT_BLOCKS``, with its last point now, whatever its request counts (a
        larger snapshot later would pause the request that takes it for longer); the
        grouping of an earlier point in progress goes first (GROUPING)."""
        if self._phase in (Phase.GROUPING, Phase.LATE):
            window.late.append(self._counts())  # the previous point's, early
        with self._gate.lock:
            total = self._gate.total
        window.cut_at = total
        self._start_grouping(window, window.take_point(self._counts, last=True), total)
        return Phase.GROUPING

    _handlers: Dict[Phase, Callable[[LeakWatch], Phase]] = {
        Phase.PAUSED: _between_windows, Phase.SETTLING: _settle, Phase.TRACING: _take_point,
        Phase.GROUPING: _group, Phase.LATE: _read_late, Phase.ANALYSING: _analyse,
    }

    def _open(self) -> Window:
        """The open window (the phases that read it have one)."""
        if self._window is None:
            raise RuntimeError(f"no window in phase {self._phase.value}")
        return self._window

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
        return growth >= max(rules.EARLY_BYTES,
                             (total - since) * self.settings.min_bytes_per_request)

    def _pause(self, requests: int) -> None:
        """Untraced for ``requests`` requests (RSS readings every ``snapshot_every``)."""
        with self._gate.lock:
            self._pause_started = self._gate.total
            self._pause_until = self._gate.total + requests
        self._pause_base = None
        self._gate.schedule(min(self.settings.snapshot_every, requests))

    def _open_window(self) -> Phase:
        s = self.settings
        if self._too_many_blocks():
            self._pause(s.pause_requests)
            return Phase.PAUSED
        kind, self._next_kind = self._next_kind, NORMAL
        full = kind != NORMAL or self._suspect_windows or not self._windows
        requests = s.window_requests if full else s.scout_requests
        if kind == HOLD:
            requests = max(requests, -(-rules.HOLD_REQUESTS // s.snapshot_every)
                           * s.snapshot_every)
        self._windows += 1
        frames = s.frames if kind == NORMAL else max(s.frames, rules.CONFIRM_FRAMES)
        self._threads_before = set(threading.enumerate())
        window = Window.start(self._windows, kind, requests // s.snapshot_every, frames)
        with self._gate.lock:
            window.key_of = self._routes.index.key_of
            self._epoch += 1
            self._stale = self._in_flight
            self._connections = {}
            window.settle_by = self._gate.total + rules.SETTLE_REQUESTS
            window.opened_at = self._gate.total
        self._window = window
        self._gate.schedule(1)
        return Phase.SETTLING

    def _too_many_blocks(self) -> bool:
        """Whether tracemalloc, started by someone else, already traces more than half of
        ``rules.SNAPSHOT_BLOCKS``: a window's snapshots would copy them all, each pausing the
        request that takes it for longer than the budget. The window waits for the next
        pause instead (the first time, a line says so)."""
        blocks = traced_blocks()
        if blocks * 2 <= rules.SNAPSHOT_BLOCKS:
            return False
        if not self._said_too_many_blocks:
            self._said_too_many_blocks = True
            writer.current.write_event(
                _logger, logging.WARNING,
                "LEAK WATCH | tracemalloc already traces about %s blocks: no tracing window "
                "opens while it traces more than %s (each snapshot would copy them all)",
                (f"{blocks:,}", f"{rules.SNAPSHOT_BLOCKS // 2:,}"))
        return True

    def _abandon_window(self) -> None:
        if self._window is not None:
            self._window.close()
            self._end_window()

    def _end_window(self) -> None:
        """No window from now on: no connection is noted until the next opens."""
        self._window = None
        with self._gate.lock:
            self._connections = None

    def _counts(self) -> List[int]:
        """Per route id its finished requests; at :data:`IN_FLIGHT_ID`, the requests in
        flight that started since the window opened; at :data:`THREADS_ID`, the threads
        alive that started since then; at :data:`CONNECTIONS_ID`, the connections that served
        a request since then (none between windows; see :meth:`_count_reused_connections`)."""
        before = self._threads_before
        threads = 0 if self._window is None else sum(
            1 for thread in threading.enumerate() if thread not in before)
        with self._gate.lock:
            counts = list(self._routes.finished)
            counts[IN_FLIGHT_ID] = self._in_flight - self._stale
            counts[THREADS_ID] = threads
            connections = self._connections
            counts[CONNECTIONS_ID] = 0 if connections is None else len(connections)
        return counts

    def _count_reused_connections(self, window: Window) -> None:
        """Turn the window's :data:`CONNECTIONS_ID` column, the connections first seen by each
        point, into those of them known to be kept alive: they served a request in one of the
        previous windows too, or a second one in this window. A connection that serves one
        request and closes (a client without keep-alive) frees what it held within the
        window: counted, it would rise with every route's requests and take the place of a
        leak on all of them. A connection new to the window that served only one request in
        it is missed (its step, if it is kept alive, stays in the routes' fit)."""
        before = self._connections_before
        with self._gate.lock:
            connections = self._connections or {}
            served = list(connections)
            known = [again or key in before for key, again in connections.items()]
        if 2 * sum(known) >= len(known):
            # Most connections are kept alive: so, probably, are those that served only one
            # request here (the first window knows no earlier ones).
            known = [True] * len(known)
        reused = [0]
        for kept_alive in known:
            reused.append(reused[-1] + kept_alive)
        number = window.number
        before.update(dict.fromkeys(served, number))
        oldest = number - rules.CONNECTION_WINDOWS
        self._connections_before = {key: seen for key, seen in before.items() if seen > oldest}
        for points in (window.counts, window.late):
            for k, counts in enumerate(points):
                first_seen = counts[CONNECTIONS_ID]
                if first_seen:
                    counts = list(counts)
                    counts[CONNECTIONS_ID] = reused[min(first_seen, len(reused) - 1)]
                    points[k] = counts

    def _start_grouping(self, window: Window, snapshot: tracemalloc.Snapshot,
                        total: int) -> None:
        """Group ``snapshot`` after what is being grouped already; the point's late counts
        are due a third of ``snapshot_every`` after ``total``."""
        window.late_at = total + max(1, self.settings.snapshot_every // rules.LATE_SHARE)
        self._job = self._grouping(self._job, window, snapshot)
        self._gate.schedule(1)

    @staticmethod
    def _grouping(earlier: Optional[Iterator[object]], window: Window,
                  snapshot: tracemalloc.Snapshot) -> Iterator[object]:
        if earlier is not None:
            yield from earlier
        yield from window.group(snapshot)

    def _weighing(self, window: Window) -> Iterator[object]:
        """The analysis of a finished window, in steps of bounded work (see :meth:`_work`):
        the fits per site, the native fit, the suspects; then the next window's schedule."""
        evidence, native = self._evidence, self._native
        before = (set(evidence.flagged), set(evidence.groups), set(native.flagged))
        share = self._share_spanned(window)
        evidence.add_window(window.number, window.counts, window.sizes, window.late,
                            window.deep, share)
        yield None
        with self._gate.lock:
            index, names = self._routes.index, list(self._routes.names)
        found = yield from evidence.weigh_steps(index, self._routes.blamable,
                                                window.kind != NORMAL,
                                                window.kind == HOLD and share >= 1.0)
        needed = found.needs_confirming
        yield from native.weigh_steps(found.explained, found.traced, self._routes.blamable)
        self._book.update(evidence.by_site(), names, native.flagged, evidence.groups_by_site())
        self._rates = self._flagged_rates()
        changed = before != (set(evidence.flagged), set(evidence.groups), set(native.flagged))
        if needed or changed or found.growing:
            self._suspect_windows = rules.SUSPECT_WINDOWS * self.settings.evidence_windows
        elif self._suspect_windows:
            self._suspect_windows -= 1
        if needed and self._extra_windows < rules.MAX_CONFIRMING_WINDOWS:
            self._extra_windows += 1
            self._next_kind = HOLD if found.needs_holding else CONFIRM
            self._pause(0)
            return
        self._extra_windows = 0
        s = self.settings
        pause = s.suspect_pause_requests if self._suspect_windows else s.pause_requests
        if share < 1.0:
            # A window its blocks ended early traced fewer requests: the pause shrinks in
            # proportion, so the share of requests traced (the cost) stays the same and the
            # evidence comes from more, shorter windows.
            pause = max(s.snapshot_every, int(pause * share))
        self._pause(pause)

    def _share_spanned(self, window: Window) -> float:
        """The share of its planned requests that ``window`` spanned: 1, unless its traced
        blocks ended it early."""
        if window.cut_at is None:
            return 1.0
        spanned = window.cut_at - window.opened_at
        return min(1.0, spanned / (window.points_wanted * self.settings.snapshot_every))

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
