"""The highest RSS of the process while each request ran, for the per-request budgets.

A request that builds 60 MB and frees them before it ends shows no RSS change; its peak is what
a budget is about. Linux keeps one high-water mark of RSS per process (``VmHWM`` in
``/proc/self/status``, the same page counters as the RSS of ``/proc/self/statm``) and resets it
to the current RSS when ``5`` is written to ``/proc/self/clear_refs``. One mark serves every
request in flight, as tracemalloc's one peak serves the engine's spans: when a request starts,
the mark reached so far is folded into the running maximum of every open window, then reset;
when it ends, its peak is the larger of its running maximum and the mark then. Each window's
peak thus covers exactly its own lifetime, however requests overlap.

Costs per request: a write to ``clear_refs`` (about 0.3 µs) and one read of ``/proc/self/status``
(about 3.5 µs) at its end, and one more read at its start when other requests are open. The
mark is the process's: while windows are used, ``VmHWM`` and ``getrusage``'s ``ru_maxrss`` no
longer hold the process's lifetime peak (docs/memory-guard.md says so).
"""

from __future__ import annotations

import os
import threading
from typing import Optional, Set, Tuple

_STATUS = "/proc/self/status"
_CLEAR_REFS = "/proc/self/clear_refs"
_RESET_HIGH_WATER_MARK = b"5"
_KEY = b"VmHWM:"


class Window:
    """One request's window: the highest RSS seen so far, in bytes."""

    __slots__ = ("peak",)

    def __init__(self) -> None:
        self.peak = 0


class PeakWindows:
    """The process's RSS high-water mark shared by the windows of the requests in flight."""

    def __init__(self) -> None:
        self._open: Set[Window] = set()
        self._lock = threading.Lock()
        self._fds: Optional[Tuple[int, int]] = None

    def available(self) -> Optional[str]:
        """``None`` when windows can be measured here, else why not (for the set-up warning)."""
        try:
            self._files()
            self._reset()
            self._mark()
        except (OSError, ValueError) as exc:
            return f"{type(exc).__name__}: {exc}"
        return None

    def open(self) -> Window:
        """Start a window now. Raises ``OSError`` when the mark cannot be read or reset."""
        window = Window()
        with self._lock:
            if self._open:
                mark = self._mark()
                for other in self._open:
                    if mark > other.peak:
                        other.peak = mark
            self._reset()
            self._open.add(window)
        return window

    def close(self, window: Window) -> int:
        """End ``window``: the highest RSS of the process during it, in bytes."""
        with self._lock:
            self._open.discard(window)
            mark = self._mark()
        return mark if mark > window.peak else window.peak

    def after_fork_in_child(self) -> None:
        """The parent's files name the parent's /proc entries; its windows are not the
        child's; a lock held by another thread at the fork would never be released."""
        for fd in self._fds or ():
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds = None
        self._open = set()
        self._lock = threading.Lock()

    def _files(self) -> Tuple[int, int]:
        # /proc/self is resolved when a file is opened: a forked child opens its own (the
        # parent's are forgotten at the fork, see after_fork_in_child).
        fds = self._fds
        if fds is None:
            flags = getattr(os, "O_CLOEXEC", 0)
            status = os.open(_STATUS, os.O_RDONLY | flags)
            try:
                clear_refs = os.open(_CLEAR_REFS, os.O_WRONLY | flags)
            except OSError:
                os.close(status)
                raise
            self._fds = fds = (status, clear_refs)
        return fds

    def _mark(self) -> int:
        text = os.pread(self._files()[0], 4096, 0)
        start = text.index(_KEY) + len(_KEY)
        return int(text[start:text.index(b"kB", start)]) * 1024

    def _reset(self) -> None:
        os.write(self._files()[1], _RESET_HIGH_WATER_MARK)


#: The one set of windows of this process (the mark is the process's).
windows = PeakWindows()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=windows.after_fork_in_child)
