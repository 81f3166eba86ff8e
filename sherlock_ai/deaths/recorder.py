"""The process's flight recorder: which record the engine writes requests into, made when the
logging set-up names a folder, closed at a graceful exit.

:data:`current` is what the engine's request API reads once per request (``None``: no record).
A process configured directly gets its record and its watcher (:mod:`.watch`) at once; a child
forked from a configured process (a gunicorn worker of a preloaded app) gets them at its first
request, so that forked children that never serve (a ``multiprocessing`` pool) keep no record:
they leave through ``os._exit``, which would read as a death.

A Celery task (or any unit of work) is recorded like a request: ``slot =
recorder.current.opened("TASK", task_name, rss, request_id)`` when it starts (``current`` read
once, when it is not ``None``), ``closed(slot)`` on the same object when it ends.
"""

from __future__ import annotations

import atexit
import os
import threading
from pathlib import Path
from typing import Any, Awaitable, Callable, Optional, Union

from ..safety import report_internal_error
from .cgroup import memory_cgroup, oom_kills
from .record import FlightRecord

#: The environment variable naming the pid of a supervisor that tells its workers' deaths
#: (set by :mod:`sherlock_ai.integrations.gunicorn_hooks` in gunicorn's arbiter).
SUPERVISOR_ENV = "SHERLOCK_AI_DEATHS_SUPERVISOR"


class _FirstRequest:
    """Stands for the record of a forked child until its first request makes it."""

    def opened(self, kind: str, name: str, rss: Optional[int] = None,
               request_id: str = "") -> int:
        record = _start_record()
        return -1 if record is None else record.opened(kind, name, rss, request_id)

    def closed(self, slot: int) -> None:
        record = current
        if isinstance(record, FlightRecord):
            record.closed(slot)


#: The record requests are written into; ``None`` when none is kept.
current: Union[FlightRecord, _FirstRequest, None] = None
_folder: Optional[Path] = None
_lock = threading.Lock()


def folder() -> Optional[Path]:
    """The folder of this process's records, when configured."""
    return _folder


def process_ticks(pid: int) -> int:
    """When the kernel started ``pid`` (clock ticks since boot, ``/proc/PID/stat`` field 22),
    which tells a pid reused by another process from the one that died; 0 when unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            text = file.read()
        return int(text[text.rindex(b")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return 0


def configure(records_folder: Optional[Path]) -> None:
    """Keep this process's record in ``records_folder`` (created when missing), or none when
    ``None``. A record kept elsewhere before is closed as at a graceful exit."""
    global _folder, current
    with _lock:
        if records_folder == _folder and isinstance(current, FlightRecord):
            return
        _close_current()
        _folder = records_folder
    if records_folder is not None:
        _start_record()


def _start_record() -> Optional[FlightRecord]:
    """Make this process's record in the configured folder and start its watcher."""
    global current
    with _lock:
        if isinstance(current, FlightRecord) or _folder is None:
            return current if isinstance(current, FlightRecord) else None
        if os.name != "posix":
            return None  # telling a process gone needs POSIX (os.kill(pid, 0) ends it elsewhere)
        pid = os.getpid()
        try:
            os.makedirs(_folder, exist_ok=True)
            counter, limit = memory_cgroup()
            kills = oom_kills(counter)
            supervisor = int(os.environ.get(SUPERVISOR_ENV) or 0)
            record = FlightRecord(_folder, pid, process_ticks(pid), counter,
                                  -1 if kills is None else kills, limit or 0,
                                  supervisor if supervisor == os.getppid() else 0)
        except (OSError, ValueError) as exc:
            current = None
            report_internal_error(f"worker record in {_folder}", exc)
            return None
        current = record
        from . import watch

        watch.start(record, _folder, counter)
        return record


def _close_current() -> None:
    global current
    record, current = current, None
    if isinstance(record, FlightRecord):
        from . import watch

        watch.stop()
        try:
            record.close()
        except (OSError, ValueError) as exc:
            report_internal_error("worker record close", exc)


def close() -> None:
    """Close this process's record as at a graceful exit (atexit does it; gunicorn's
    ``worker_exit`` hook too)."""
    global _folder
    with _lock:
        _close_current()
        _folder = None


def closing_record_at_shutdown(receive: Callable[[], Awaitable[Any]]
                               ) -> Callable[[], Awaitable[Any]]:
    """An ASGI lifespan ``receive`` that closes this process's record when the server says it
    is shutting down (after its last request): a graceful exit, whatever way the process then
    ends."""

    async def receive_closing() -> Any:
        message = await receive()
        if isinstance(message, dict) and message.get("type") == "lifespan.shutdown":
            close()
        return message

    return receive_closing


def _forked() -> None:
    global current, _lock
    # The parent's mapping and watcher are not this process's: forget them without a store.
    _lock = threading.Lock()
    current = _FirstRequest() if _folder is not None else None
    from . import watch

    watch.forget()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)
atexit.register(close)
