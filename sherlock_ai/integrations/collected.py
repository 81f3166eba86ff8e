"""Ending the measurements of responses nobody closed, off the garbage collector's path.

A body the server never closed ends its measurement when it is collected. The collector runs
wherever an allocation triggers it: inside sherlock_ai's own critical sections too (a span
opening under the tracing lock, the leak watch under its gate), whose locks are not
re-entrant. Ending the measurement right there would deadlock the thread. So the weakref
callback only puts the work on a :class:`queue.SimpleQueue` (its ``put`` is safe in weakref
callbacks) and one daemon thread does it; at interpreter exit what is left is done at once.

The queue is bounded without dropping anything: when more than :data:`MAX_WAITING` bodies wait
(the finisher falls behind, as under a test client that never closes its responses and keeps
the thread busy), each new request that hands over a body finishes :data:`HELP_STEP` waiting
ones first, in its own thread, where sherlock_ai holds no lock. A waiting measurement keeps its
request's environ alive (a few KB), so an unbounded queue grew memory without end.
"""

from __future__ import annotations

import atexit
import os
import queue
import threading
import weakref
from typing import Callable, Optional

from ..safety import internal_errors

#: How many collected bodies may wait for the finisher before requests help it.
MAX_WAITING = 1000
#: How many waiting measurements a request finishes when more than MAX_WAITING wait: more than
#: the one body it adds, so the queue shrinks back.
HELP_STEP = 2

_work: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
_start_lock = threading.Lock()
_thread: Optional[threading.Thread] = None
_exiting = False
# Requests finishing waiting measurements now; a waiter's event is set only when none is, so
# that everything queued before it has ended, by whichever thread.
_helping = 0
_helpers = threading.Condition()


class _Waiter:
    """What :func:`wait_for_collected` queues: only the finisher thread sets it."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = threading.Event()

    def __call__(self) -> None:
        with _helpers:
            _helpers.wait_for(lambda: _helping == 0)
        self.done.set()


def end_when_collected(body: object, finish: Callable[[], None]
                       ) -> weakref.finalize[[Callable[[], None]], object]:
    """Call ``finish`` soon after ``body`` is garbage collected (on the finisher thread), or at
    interpreter exit; ``TypeError`` when ``body`` takes no weak reference. Called by a request
    when it hands ``body`` to the server: when the finisher is behind, that request finishes
    some of the waiting measurements first (see the module docstring)."""
    _ensure_finisher()
    if _work.qsize() > MAX_WAITING:
        _help_finisher()
    return weakref.finalize(body, _collected, finish)


def wait_for_collected(timeout: float = 10.0) -> bool:
    """Wait until the measurements of the bodies collected so far have ended (the finisher
    thread does them in order): what a test or a harness calls after ``gc.collect()`` before
    it counts the lines. ``False`` when that took longer than ``timeout`` seconds."""
    if _thread is None or not _thread.is_alive():
        _drain()
        return True
    waiter = _Waiter()
    _work.put(waiter)
    return waiter.done.wait(timeout)


def _help_finisher() -> None:
    global _helping
    with _helpers:
        _helping += 1
    try:
        for _ in range(HELP_STEP):
            try:
                finish = _work.get_nowait()
            except queue.Empty:
                return
            if isinstance(finish, _Waiter):
                _work.put(finish)  # the finisher's to set, after what was queued before it
            else:
                _run(finish)
    finally:
        with _helpers:
            _helping -= 1
            _helpers.notify_all()


def _drain() -> None:
    # No finisher thread (none started yet, or a forked child): do what is queued here.
    while True:
        try:
            finish = _work.get_nowait()
        except queue.Empty:
            return
        _run(finish)


def _collected(finish: Callable[[], None]) -> None:
    if _exiting:
        _run(finish)  # nothing else runs any more: no lock can be held by this thread
    else:
        _work.put(finish)


def _run(finish: Callable[[], None]) -> None:
    with internal_errors:
        finish()


def _finisher() -> None:
    while True:
        _run(_work.get())


def _ensure_finisher() -> None:
    global _thread
    if _thread is not None and _thread.is_alive():
        return
    with _start_lock:
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_finisher, name="sherlock_ai-unclosed",
                                       daemon=True)
            _thread.start()


def _at_exit() -> None:
    global _exiting
    _exiting = True
    _drain()


def _after_fork_in_child() -> None:
    # The finisher thread does not exist in a forked child; the next response starts one. What
    # was queued is the parent's to finish (the child would write its lines twice), and a
    # queue or lock copied while another thread held it may never be released.
    global _thread, _work, _helpers, _helping, _start_lock
    _thread = None
    _work = queue.SimpleQueue()
    _helpers = threading.Condition()
    _helping = 0
    _start_lock = threading.Lock()


atexit.register(_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
