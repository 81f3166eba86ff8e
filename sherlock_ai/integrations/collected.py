"""Ending the measurements of responses nobody closed, off the garbage collector's path.

A body the server never closed ends its measurement when it is collected. The collector runs
wherever an allocation triggers it: inside sherlock_ai's own critical sections too (a span
opening under the tracing lock, the leak watch under its gate), whose locks are not
re-entrant. Ending the measurement right there would deadlock the thread. So the weakref
callback only puts the work on a :class:`queue.SimpleQueue` (its ``put`` is safe in weakref
callbacks) and one daemon thread does it; at interpreter exit what is left is done at once.
"""

from __future__ import annotations

import atexit
import os
import queue
import threading
import weakref
from typing import Callable, Optional

from ..safety import report_internal_error

_work: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
_start_lock = threading.Lock()
_thread: Optional[threading.Thread] = None
_exiting = False


def end_when_collected(body: object, finish: Callable[[], None]) -> weakref.finalize:
    """Call ``finish`` soon after ``body`` is garbage collected (on the finisher thread), or at
    interpreter exit; ``TypeError`` when ``body`` takes no weak reference."""
    _ensure_finisher()
    return weakref.finalize(body, _collected, finish)


def wait_for_collected(timeout: float = 10.0) -> bool:
    """Wait until the measurements of the bodies collected so far have ended (the finisher
    thread does them in order): what a test or a harness calls after ``gc.collect()`` before
    it counts the lines. ``False`` when that took longer than ``timeout`` seconds."""
    if _thread is None or not _thread.is_alive():
        _drain()
        return True
    done = threading.Event()
    _work.put(done.set)
    return done.wait(timeout)


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
    try:
        finish()
    except Exception as exc:  # noqa: BLE001 - monitoring never hurts the monitored
        report_internal_error("unclosed response", exc)


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
    # The finisher thread does not exist in a forked child; the next response starts one.
    global _thread
    _thread = None


atexit.register(_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
