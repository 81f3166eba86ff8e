"""Shared use of tracemalloc, which is one global per process.

Trackers that trace take a lease: tracing starts with the first lease if it was off, is
never stopped while a lease is held, and is stopped when the last lease ends only if
sherlock_ai started it. ``tracemalloc.stop()`` drops every trace (its cost grows with their
number), so long-lived users such as the web middleware hold a lease for their lifetime
(:func:`hold_tracing`) instead of toggling tracing per request.

All functions here are called with :data:`LOCK` held, except the public ``hold``/``release``.
"""

from __future__ import annotations

import threading
import tracemalloc

from ..parameters import check_frames

LOCK = threading.Lock()

_leases = 0
_owned = False
_frames = 1


def acquire(frames: int = 1) -> None:
    """Take a lease, starting tracemalloc when nobody traces yet (call with LOCK held); when
    it starts here it keeps at least ``frames`` frames per allocation."""
    global _leases, _owned
    if _leases == 0 and not tracemalloc.is_tracing():
        tracemalloc.start(max(_frames, frames))
        _owned = True
    _leases += 1


def release() -> None:
    """End a lease; stop tracemalloc after the last one if sherlock_ai started it (LOCK held)."""
    global _leases, _owned
    _leases -= 1
    if _leases <= 0:
        _leases = 0
        if _owned:
            _owned = False
            if tracemalloc.is_tracing():
                tracemalloc.stop()


def hold_tracing(frames: int = 1) -> None:
    """Keep tracemalloc running until :func:`release_tracing` (for long-lived monitors).

    When this call starts it, tracemalloc keeps at least ``frames`` frames per allocation;
    when it already runs, its frame count is left as it is.
    """
    check_frames(frames)
    with LOCK:
        acquire(frames)


def release_tracing() -> None:
    """End a :func:`hold_tracing` lease."""
    with LOCK:
        release()


def set_traceback_frames(frames: int) -> None:
    """Frames kept per allocation when sherlock_ai starts tracemalloc (default 1).

    Takes effect the next time sherlock_ai starts tracing; deeper tracebacks cost more on
    every allocation of the process.
    """
    global _frames
    _frames = check_frames(frames)


def leases() -> int:
    """How many leases are held now (for tests and diagnostics)."""
    return _leases
