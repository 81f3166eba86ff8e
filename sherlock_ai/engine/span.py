"""The measurement engine every tracker, decorator and middleware uses.

A :class:`Span` is one tracked block: it reads RSS and the clock when it opens and closes,
takes a tracemalloc lease when asked, and keeps two pieces of shared bookkeeping right:

- **Per-block peaks.** tracemalloc keeps a single peak per process. Each traced block that
  opens first folds the current peak into every open traced block's running maximum, then
  calls ``reset_peak``; so each block's peak covers exactly its own lifetime, nested or not.
- **Overlap.** A block's ``concurrent`` counts every other block that was open at some time
  during its life and is neither its ancestor nor its descendant (same task or thread,
  nested). Such blocks ran concurrently in another thread or task, and their allocations are
  in both blocks' process-wide figures. It is counted with two process-wide counters (blocks
  open, blocks ever opened), not a set of open blocks: a block that opens counts the open ones
  that are not its open ancestors, and when it closes, those opened since that are not its
  descendants (each block tells its ancestors when it opens). Constant work per block, however
  many requests are in flight.

RSS is read outside the window in which the span starts and stops tracing, so the engine's
own work neither pays tracemalloc's per-allocation tax nor appears in the traced figures.
"""

from __future__ import annotations

import tracemalloc
from contextvars import ContextVar
from time import perf_counter
from typing import NamedTuple, Optional, Set

from . import tracing
from .rss import current_rss

_current: ContextVar[Optional[Span]] = ContextVar("sherlock_ai_span", default=None)
_open_traced: Set[Span] = set()
# The overlap counters (see the module docstring), changed with tracing.LOCK held.
_open_now = 0
_opened = 0
_LOCK = tracing.LOCK


class Figures(NamedTuple):
    """What a closed span measured, in seconds and bytes (``None`` where unknown or unread);
    the fields mean what :class:`~sherlock_ai.engine.measurement.Measurement`'s do."""

    duration: float
    rss: Optional[int]
    rss_change: Optional[int]
    traced: Optional[int]
    traced_peak: Optional[int]
    concurrent: int


_new_tuple = tuple.__new__


class Span:
    """One open tracked block; :meth:`close` returns its figures."""

    __slots__ = ("parent", "trace", "open", "before", "serial", "inside", "peak_seen",
                 "traced_start", "rss_start", "t0", "_token")

    def __init__(self, trace: bool, rss_start: Optional[int] = None) -> None:
        """Open the block; ``rss_start`` is the RSS its opener read just before (when it also
        wrote it elsewhere: a request's flight record), else it is read now."""
        global _open_now, _opened
        # Order matters: whatever allocates (RSS read, context switch-over) happens before
        # tracing starts here and after it stops in close(), where tracemalloc's per-allocation
        # tax and the traced figures cannot see it.
        self.parent = parent = _current.get()
        self.rss_start = current_rss() if rss_start is None else rss_start
        self._token = token = _current.set(self)
        self.trace = trace
        self.open = True
        self.inside = 0  # descendants opened so far
        try:
            # peak_seen and traced_start are set, and read, only for a traced block.
            with _LOCK:
                before = _open_now
                while parent is not None:
                    if parent.open:
                        before -= 1
                    parent.inside += 1
                    parent = parent.parent
                self.before = before  # open blocks that are not its ancestors
                self.serial = _opened  # blocks opened before it
                _opened += 1
                _open_now += 1
                if trace:
                    self.peak_seen = 0
                    self.traced_start: Optional[int] = None
                    tracing.acquire()
                    if tracemalloc.is_tracing():
                        level, peak = tracemalloc.get_traced_memory()
                        for other in _open_traced:
                            if peak > other.peak_seen:
                                other.peak_seen = peak
                        tracemalloc.reset_peak()
                        self.traced_start = self.peak_seen = level
                        _open_traced.add(self)
        except BaseException:
            _current.reset(token)  # a span that failed to open is not left current
            raise
        self.t0 = perf_counter()

    @property
    def concurrent(self) -> int:
        """How many other blocks, neither ancestors nor descendants, overlapped it (so far,
        while it is open)."""
        if not self.open:
            return self.before
        return self.before + _opened - self.serial - 1 - self.inside

    def close(self, skip_rss_below: float = -1.0) -> Figures:
        """End the block. When it lasted less than ``skip_rss_below`` seconds the closing RSS
        read is skipped (nobody will look at it) and the RSS figures are ``None``."""
        global _open_now
        duration = perf_counter() - self.t0
        traced = traced_peak = None
        with _LOCK:
            if self.open:
                self.open = False
                _open_now -= 1
                # Kept in ``before`` from now on: a second close gives the same count.
                self.before = self.before + _opened - self.serial - 1 - self.inside
            concurrent = self.before
            if self.trace:
                if self.traced_start is not None and tracemalloc.is_tracing():
                    level, peak = tracemalloc.get_traced_memory()
                    traced = level - self.traced_start
                    traced_peak = max(peak, self.peak_seen) - self.traced_start
                _open_traced.discard(self)
                tracing.release()
        try:
            _current.reset(self._token)
        except ValueError:
            # Closed from another context (a generator stepped elsewhere): that copy is
            # discarded by its owner, nothing to restore here.
            pass
        rss = rss_change = None
        if duration >= skip_rss_below:
            rss = current_rss()
            if rss is not None and self.rss_start is not None:
                rss_change = rss - self.rss_start
        # tuple.__new__ rather than Figures(...): the named tuple's own __new__ is compiled
        # from "<string>", where tracemalloc would report the allocation as the user's (a
        # top_allocations site); allocated here it is sherlock_ai's, and one call cheaper.
        return _new_tuple(Figures, (duration, rss, rss_change, traced, traced_peak, concurrent))


def current_span() -> Optional[Span]:
    """The innermost open span of this task or thread, if any."""
    return _current.get()
