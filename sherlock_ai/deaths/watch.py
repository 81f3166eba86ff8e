"""The watcher: one daemon thread per recording process, off the request path. At start and
then once a second it stores a heartbeat into its own record (time, RSS, the cgroup's OOM
kill count) and looks at the other records of its folder: one whose process is gone without
closing it is a death, claimed and told here unless a supervisor that tells deaths
(gunicorn's arbiter with our hooks, a Celery worker's main process) is alive to do it; that one
is given :data:`SUPERVISOR_GRACE_S` first, since it knows the signal. The supervisor's own
watcher leaves its children's records to its reap, which tells them with the signal."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from time import monotonic, time
from typing import Dict, Optional

from ..engine.rss import current_rss
from ..safety import internal_errors
from .cgroup import oom_kills
from .record import LIVE_SUFFIX, FlightRecord, parse_name, read_record
from .telling import tell_death

INTERVAL_S = 1.0
# Longer than the 5 s of Celery's prefork pool, which reaps a child at its periodic
# maintain_pool when the child's exit event came before the child could be waited on.
SUPERVISOR_GRACE_S = 6.0

_PROC = os.path.exists("/proc/self/stat")
_thread: Optional[threading.Thread] = None
_stopping: Optional[threading.Event] = None


def process_gone(pid: int, ticks: int) -> bool:
    """Whether process ``pid`` started at ``ticks`` has ended: no such process, a zombie
    (ended, not yet reaped), or the pid now belongs to a process started at another time.
    Without ``/proc`` (macOS), whether the pid is free; on Windows, always (no record is kept
    there, and a folder read there was copied from elsewhere)."""
    if not _PROC:
        if os.name != "posix":
            return True
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except OSError:
            pass  # alive, someone else's
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            text = file.read()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    fields = text[text.rindex(b")") + 2:].split()
    return fields[0] in (b"Z", b"X") or (ticks != 0 and int(fields[19]) != ticks)


def start(record: FlightRecord, folder: Path, counter_file: str) -> None:
    """Start this process's watcher for ``record`` (stopping one started before)."""
    global _thread, _stopping
    stop()
    _stopping = stopping = threading.Event()
    _thread = threading.Thread(target=_watch, args=(record, folder, counter_file, stopping),
                               name="sherlock_ai-deaths", daemon=True)
    _thread.start()


def stop() -> None:
    """Stop the watcher and wait for its current look to end."""
    global _thread, _stopping
    thread, stopping = _thread, _stopping
    _thread = _stopping = None
    if stopping is not None:
        stopping.set()
    if thread is not None and thread is not threading.current_thread():
        thread.join(timeout=5.0)


def forget() -> None:
    """In a forked child: the parent's watcher thread does not exist here."""
    global _thread, _stopping
    _thread = _stopping = None


def _watch(record: FlightRecord, folder: Path, counter_file: str,
           stopping: threading.Event) -> None:
    dead_since: Dict[str, float] = {}
    while not stopping.is_set():
        with internal_errors:
            kills = oom_kills(counter_file)
            # The time is taken before the RSS is read: a reading never looks later than it
            # is (what was allocated before its time stamp is in it).
            now = time()
            record.heartbeat(now, current_rss(), -1 if kills is None else kills)
        with internal_errors:
            look(folder, dead_since, f"pid {os.getpid()}")
        stopping.wait(INTERVAL_S)


def look(folder: Path, dead_since: Dict[str, float], told_by: str) -> None:
    """Tell the deaths among the records of ``folder`` (``dead_since``: when each record was
    first seen dead, kept between looks)."""
    me = os.getpid()
    for entry in os.scandir(folder):
        name = entry.name
        found = parse_name(name) if name.endswith(LIVE_SUFFIX) else None
        if found is None or found[0] == me or not process_gone(*found):
            continue
        try:
            view = read_record(Path(entry.path))
        except FileNotFoundError:
            continue  # told or removed meanwhile
        if view is None:
            continue
        if view.closed:
            with internal_errors:
                os.unlink(entry.path)
            continue
        if view.supervisor == me:
            continue  # this process tells it as it reaps the child, with the signal
        if view.supervisor and not process_gone(view.supervisor, 0):
            first = dead_since.setdefault(name, monotonic())
            if monotonic() - first < SUPERVISOR_GRACE_S:
                continue
        dead_since.pop(name, None)
        tell_death(Path(entry.path), told_by)
