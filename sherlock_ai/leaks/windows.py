"""When the leak watch works: the request count that opens the next window or takes the
next snapshot, and the token that lets one request at a time do that work; and the window
itself, which holds a tracemalloc lease while it is open."""

from __future__ import annotations

import gc
import threading
import tracemalloc
from typing import Callable, Hashable, List, Optional, Sequence

from ..engine import tracing
from ..engine.heap import Sizes, group_sizes


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


NORMAL, CONFIRM = "normal", "confirm"


class Window:
    """One tracing window: tracemalloc runs (a lease) from :func:`open` until its last
    point; per point the per-route counts and the sizes grouped by ``key_of``."""

    def __init__(self, number: int, kind: str, points: int,
                 key_of: Callable[[tracemalloc.Traceback], Optional[Hashable]]) -> None:
        self.number = number
        self.kind = kind
        self.points_wanted = points
        self.key_of = key_of
        self.counts: List[Sequence[int]] = []
        #: Per point, the counts a few requests after its snapshot. A snapshot holds what
        #: requests still in flight have already kept, and they are not counted yet; the
        #: fit uses the mean of both counts (see .series.window_counts).
        self.late: List[Sequence[int]] = []
        self.awaiting_late = False
        self.done = False
        self.sizes: List[Sizes] = []
        self.open = False

    @classmethod
    def start(cls, number: int, kind: str, points: int, frames: int,
              key_of: Callable[[tracemalloc.Traceback], Optional[Hashable]]) -> Window:
        """Open a window: take a tracing lease (``frames`` per allocation if it starts now)."""
        window = cls(number, kind, points, key_of)
        tracing.hold_tracing(frames)
        window.open = True
        return window

    def take_point(self, counts: Callable[[], Sequence[int]]) -> bool:
        """Snapshot now; ``True`` when that was the last point (the lease is given back)."""
        last = len(self.sizes) + 1 >= self.points_wanted
        if last and self.kind == CONFIRM:
            # Garbage in reference cycles waits for a full collection; a leak survives it.
            gc.collect()
        now = counts()
        snapshot = tracemalloc.take_snapshot()
        if last:
            self.close()
        self.counts.append(now)
        self.sizes.append(group_sizes(snapshot, self.key_of))
        return last

    def close(self) -> None:
        """Give back the tracing lease (once)."""
        if self.open:
            self.open = False
            tracing.release_tracing()


