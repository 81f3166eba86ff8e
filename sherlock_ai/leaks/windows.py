"""When the leak watch works: the request count that opens the next window or takes the
next snapshot, and the token that lets one request at a time do that work; and the window
itself, which holds a tracemalloc lease while it is open."""

from __future__ import annotations

import gc
import threading
import tracemalloc
from typing import Callable, Hashable, Iterator, List, Optional, Sequence

from ..engine import tracing
from ..engine.heap import Sizes, group_in_steps
from . import rules


def traced_blocks() -> int:
    """About how many blocks tracemalloc traces now (an over-estimate read from its own
    memory in a few microseconds; 0 when it is off)."""
    return tracemalloc.get_tracemalloc_memory() // rules.TRACE_BYTES_PER_BLOCK


class Gate:
    """Counts finished requests; :meth:`due` hands the work token to one caller when the
    scheduled count is reached (nobody else gets it until :meth:`release`)."""

    def __init__(self, first_at: int) -> None:
        self.lock = threading.Lock()
        self.total = 0
        self._next_at = first_at
        self._busy = False

    def due(self) -> bool:
        """Count a request (call with :attr:`lock` held); ``True``: the caller holds the
        token and must :meth:`release` it."""
        self.total += 1
        if self.total < self._next_at or self._busy:
            return False
        self._busy = True
        return True

    def take(self) -> bool:
        """Take the token now, if free (e.g. to close the watch)."""
        with self.lock:
            if self._busy:
                return False
            self._busy = True
            return True

    def release(self) -> None:
        with self.lock:
            self._busy = False

    def schedule(self, after: int) -> None:
        """Work is next due ``after`` more requests from now."""
        with self.lock:
            self._next_at = self.total + after

    def schedule_at(self, total: int) -> None:
        """Work is next due when :attr:`total` reaches ``total`` (the next request, if it
        already has)."""
        with self.lock:
            self._next_at = max(total, self.total + 1)


#: The kinds of window: a normal one; a confirming one (deeper, a full collection before its
#: last point); a holding one (a confirming one of ``rules.HOLD_REQUESTS`` requests).
NORMAL, CONFIRM, HOLD = "normal", "confirm", "hold"


class Window:
    """One tracing window: tracemalloc runs (a lease) from :func:`open` until its last
    point; per point the per-route counts and the sizes grouped by ``key_of``."""

    def __init__(self, number: int, kind: str, points: int) -> None:
        self.number = number
        self.kind = kind
        self.points_wanted = points
        #: How a traced allocation is keyed (the routes' endpoint code, as known now).
        self.key_of: Callable[[tracemalloc.Traceback], Optional[Hashable]] = lambda tb: None
        #: The request count by which the first point stops waiting for the requests in
        #: flight at the opening.
        self.settle_by = 0
        #: The request count at the opening.
        self.opened_at = 0
        self.counts: List[Sequence[int]] = []
        #: Per point, the counts a few requests after its snapshot. A snapshot holds what
        #: requests still in flight have already kept, and they are not counted yet; the
        #: fit takes the counts at the snapshot or their mean with these, whichever fits the
        #: site better (see .series.window_counts).
        self.late: List[Sequence[int]] = []
        #: Request counts at which the next point's snapshot, and the late counts of the
        #: latest point, are due.
        self.point_at = 0
        self.late_at = 0
        self.done = False
        self.sizes: List[Sizes] = []
        self.open = False
        self.frozen = False
        #: Traced with more than one frame per allocation (see .series.WindowCounts.deep).
        self.deep = False
        #: Traced blocks at the latest point (see :func:`traced_blocks`).
        self.blocks_at_point = 0
        #: The request count at which its traced blocks ended it, at rules.SNAPSHOT_BLOCKS,
        #: before its planned points (``None``: not ended so).
        self.cut_at: Optional[int] = None
        #: Traced blocks at the latest check, and the most added between two checks.
        self.checked_blocks = 0
        self.largest_step = 0

    @classmethod
    def start(cls, number: int, kind: str, points: int, frames: int) -> Window:
        """Open a window: take a tracing lease (``frames`` per allocation if it starts now)."""
        window = cls(number, kind, points)
        tracing.hold_tracing(frames)
        window.open = True
        window.deep = tracemalloc.get_traceback_limit() > 1
        window.blocks_at_point = window.checked_blocks = traced_blocks()
        if kind != NORMAL and gc.isenabled() and gc.get_freeze_count() == 0:
            # The objects alive now go to the permanent generation until the window's
            # collection (O(1) both ways): that collection then examines only what was
            # made since, so its pause follows the window's objects, not the process's.
            # Not when something else froze objects: unfreezing would undo that.
            gc.freeze()
            window.frozen = True
        return window

    def full(self) -> bool:
        """Whether the window's next snapshot must be its last: one more step like the
        largest since the opening (a check runs per request) would take the traced blocks
        past ``rules.SNAPSHOT_BLOCKS``. A window without a point yet takes one first (a
        window of one point holds no change)."""
        if not self.open:
            return False
        blocks = traced_blocks()
        self.largest_step = max(self.largest_step, blocks - self.checked_blocks)
        self.checked_blocks = blocks
        return bool(self.counts) and blocks + self.largest_step >= rules.SNAPSHOT_BLOCKS

    def point_due(self) -> bool:
        """Whether the blocks added since the latest point call the next point before its
        request count: a window's points share ``rules.SNAPSHOT_BLOCKS`` evenly."""
        grown = traced_blocks() - self.blocks_at_point
        return grown * self.points_wanted >= rules.SNAPSHOT_BLOCKS

    def take_point(self, counts: Callable[[], Sequence[int]],
                   last: bool = False) -> tracemalloc.Snapshot:
        """Snapshot now, with the counts; after the last point (:attr:`done`; ``last``: end
        the window here) the lease is given back. The snapshot is grouped later, step by
        step (:meth:`group`)."""
        last = last or len(self.counts) + 1 >= self.points_wanted
        if last and self.kind != NORMAL:
            # Garbage in reference cycles waits for a full collection; a leak survives it.
            gc.collect()
            self._unfreeze()
        now = counts()
        collecting = gc.isenabled()
        if collecting:
            # The snapshot makes a tuple per traced block: left on, the collector would run
            # many times inside the call (in a heap of many objects, most of its cost).
            gc.disable()
        try:
            snapshot = tracemalloc.take_snapshot()
            if collecting and gc.get_freeze_count() == 0:
                # The next young collection would examine every one of those tuples (0.15 to
                # 0.4 µs each: most of a 50,000-block snapshot's pause). Moved to the oldest
                # generation at once (freeze, then unfreeze: two list splices), they are
                # freed when grouped, before a full collection is likely to come; what else
                # was young moves there too. Not when something else froze objects:
                # unfreezing would undo that.
                gc.freeze()
                gc.unfreeze()
        finally:
            if collecting:
                gc.enable()
        self.blocks_at_point = traced_blocks()
        if last:
            self.close()
            self.done = True
        self.counts.append(now)
        return snapshot

    def group(self, snapshot: tracemalloc.Snapshot) -> Iterator[int]:
        """Group ``snapshot`` by :attr:`key_of` into the next entry of :attr:`sizes`, at most
        ``rules.TRACES_PER_STEP`` traces per step; yields the traces of each step."""
        sizes: Sizes = {}
        self.sizes.append(sizes)
        return group_in_steps(snapshot, self.key_of, sizes, rules.TRACES_PER_STEP)

    def _unfreeze(self) -> None:
        if self.frozen:
            self.frozen = False
            gc.unfreeze()

    def close(self) -> None:
        """Give back the tracing lease (once), and the objects frozen at the start."""
        self._unfreeze()
        if self.open:
            self.open = False
            tracing.release_tracing()
