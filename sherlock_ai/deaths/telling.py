"""Telling a death: claiming a dead process's record (once across processes), what it says
(:class:`WorkerDeath`: the ``WORKER DIED | pid ...`` line and its fields) and where it goes
(``MonitoringLogger`` and the consumers' ``memory_event`` hook: the Prometheus counter)."""

from __future__ import annotations

import logging
import os
import signal as signals
from pathlib import Path
from time import time
from typing import Any, Dict, List, Optional

from .. import consumers
from ..formatting import format_bytes, format_change, log_safe
from ..logs import writer
from ..request_id import is_valid_request_id
from ..safety import internal_errors
from .cgroup import oom_kills
from .record import LIVE_SUFFIX, TOLD_SUFFIX, RecordView, Verdict, read_record, write_verdict

WORKER_DIED = "WORKER DIED"
#: The causes a death is counted under (the Prometheus label).
CAUSES = ("oom_killer", "sigkill", "signal", "exit", "unknown")
#: How close to its memory limit the last RSS reading must be to count as the OOM killer's sign.
NEAR_LIMIT = 0.9
#: How many told records a folder keeps for the report.
KEEP_TOLD = 50
_SHOWN_IN_FLIGHT = 10
_GROWTH_WINDOW_S = 60.0
_KINDS = frozenset(("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE",
                    "PATCH", "OTHER", "TASK"))

_STOP_SIGNALS = (signals.SIGTERM, signals.SIGINT, signals.SIGQUIT)

_logger = logging.getLogger("MonitoringLogger")


def signal_name(number: Optional[int]) -> Optional[str]:
    """``"SIGKILL"`` for 9; ``None`` for no signal."""
    if not number:
        return None
    try:
        return signals.Signals(number).name
    except ValueError:
        return f"signal {number}"


class WorkerDeath:
    """A process that ended without closing its record, as told by ``told_by``.

    ``ended_by`` is when it was found dead (its requests' durations run to it): the moment
    the supervisor or a sibling saw it; for a record read later, the last sign of life in the
    record (its durations are then lower bounds)."""

    event = "worker_died"

    def __init__(self, view: RecordView, told_by: str, *, signal: Optional[int] = None,
                 exit_code: Optional[int] = None, prompt: bool = True,
                 now: Optional[float] = None) -> None:
        self.pid = view.pid
        self.signal = signal_name(signal)
        self.exit_code = exit_code
        self.told_by = told_by
        self.started_at = view.started_at
        readings = view.readings
        last_alive = max([view.heartbeat or 0.0, view.started_at]
                         + [t for t, _ in readings[-1:]])
        #: Whether ``ended_by`` is the moment it was found dead (else its last sign of life).
        self.prompt = prompt
        self.ended_by = (time() if now is None else now) if prompt else last_alive
        self.rss = readings[-1][1] if readings else None
        self.limit = view.limit
        recent = [(t, rss) for t, rss in readings if t >= readings[-1][0] - _GROWTH_WINDOW_S] \
            if readings else []
        self.growth = recent[-1][1] - recent[0][1] if len(recent) > 1 else None
        self.growth_window_s = recent[-1][0] - recent[0][0] if len(recent) > 1 else None
        self.evidence = _oom_evidence(view, self.rss) if signal in (None, signals.SIGKILL) \
            and exit_code is None else None
        if self.evidence:
            self.cause = "oom_killer"
        elif signal == signals.SIGKILL:
            self.cause = "sigkill"
        elif signal:
            self.cause = "signal"
        elif exit_code is not None:
            self.cause = "exit"
        else:
            self.cause = "unknown"
        self.not_recorded = view.not_recorded
        self.in_flight: List[Dict[str, Any]] = []
        for entry in view.in_flight:
            after = [rss for t, rss in readings if t >= entry.started_at]
            self.in_flight.append({
                "method": entry.kind if entry.kind in _KINDS else "OTHER",
                "name": log_safe(entry.name, limit=100),
                "request_id": entry.request_id if is_valid_request_id(entry.request_id)
                else None,
                "duration_s": round(max(0.0, self.ended_by - entry.started_at), 3),
                "rss_change": after[-1] - entry.rss_at_start
                if after and entry.rss_at_start else None,
            })

    def how(self) -> str:
        """``SIGKILL, likely the OOM killer (oom_kill 0 -> 1 in ...)``, ``SIGSEGV``,
        ``exit code 3``, ``unknown``."""
        parts = [self.signal] if self.signal else []
        if self.exit_code is not None:
            parts.append(f"exit code {self.exit_code}")
        if self.evidence:
            parts.append(f"likely the OOM killer ({self.evidence})")
        return ", ".join(parts) or "unknown"

    def message(self) -> str:
        """``WORKER DIED | pid 4242 | SIGKILL | in flight: POST /upload (id 1a2b, 3.20s, RSS
        +1.20GB) | RSS 1.90GB, limit 2.00GB, +1.20GB in 4.0s | told by gunicorn arbiter``"""
        shown = [f"{e['method']} {e['name']} (id {e['request_id'] or '?'}, "
                 f"{'' if self.prompt else '>='}{e['duration_s']:.2f}s, "
                 f"RSS {format_change(e['rss_change'])})"
                 for e in self.in_flight[:_SHOWN_IN_FLIGHT]]
        more = len(self.in_flight) - len(shown) + self.not_recorded
        if more:
            shown.append(f"{more} more")
        memory = f"RSS {format_bytes(self.rss)}"
        if self.limit:
            memory += f", limit {format_bytes(self.limit)}"
        if self.growth is not None:
            memory += f", {format_change(self.growth)} in {self.growth_window_s:.1f}s"
        return (f"{WORKER_DIED} | pid {self.pid} | {self.how()} | in flight: "
                f"{', '.join(shown) or 'none'} | {memory} | told by {self.told_by}")

    @classmethod
    def read_back(cls, view: RecordView) -> WorkerDeath:
        """The death of a record as it was told (its verdict), or, for a record nobody told,
        as it reads now with what the record alone says (``told_by`` ``"nobody"``)."""
        verdict = view.verdict
        if verdict is None:
            return cls(view, "nobody", prompt=False)
        death = cls(view, f"pid {verdict.told_by}", signal=verdict.signal or None,
                    exit_code=verdict.exit_code, now=verdict.told_at)
        death.cause, death.evidence = verdict.cause, verdict.evidence
        return death

    def as_dict(self) -> Dict[str, Any]:
        """The JSON line's fields."""
        return {"kind": self.event, "pid": self.pid, "signal": self.signal,
                "exit_code": self.exit_code, "cause": self.cause, "evidence": self.evidence,
                "in_flight": self.in_flight, "not_recorded": self.not_recorded,
                "rss": self.rss, "limit": self.limit, "rss_growth": self.growth,
                "growth_window_s": self.growth_window_s, "started_at": self.started_at,
                "told_by": self.told_by, "reported_by": os.getpid()}


def _oom_evidence(view: RecordView, rss: Optional[int]) -> Optional[str]:
    """Why the OOM killer is the likely cause, or ``None`` without evidence."""
    now = oom_kills(view.cgroup_file)
    before = view.oom_kills_last_seen
    if before is None:
        before = view.oom_kills_at_start
    if now is not None and before is not None and now > before:
        return f"oom_kill {before} -> {now} in {log_safe(view.cgroup_file, limit=200)}"
    if rss and view.limit and rss >= NEAR_LIMIT * view.limit:
        return f"last RSS {format_bytes(rss)} of its {format_bytes(view.limit)} limit"
    return None


def claim(path: Path) -> Optional[Path]:
    """Take the record of ``path`` for telling its death: the rename succeeds in one process
    only. Returns the claimed record's path, or ``None`` when another process took it."""
    told = path.with_name(path.name[:-len(LIVE_SUFFIX)] + TOLD_SUFFIX)
    try:
        os.rename(path, told)
    except FileNotFoundError:
        return None
    return told


def tell_death(path: Path, told_by: str, *, signal: Optional[int] = None,
               exit_code: Optional[int] = None) -> Optional[WorkerDeath]:
    """Claim the record of ``path``, a process found dead, and tell its death unless another
    process did or the record says it closed. Never raises."""
    with internal_errors:
        told = claim(path)
        if told is None:
            return None
        view = read_record(told)
        if view is None or view.closed or (signal in _STOP_SIGNALS and not view.in_flight
                                           and not view.not_recorded):
            # A process asked to stop that ended by the signal's default action, with nothing
            # in flight, lost nothing (uvicorn re-raises SIGTERM after a graceful shutdown).
            os.unlink(told)
            return None
        death = WorkerDeath(view, told_by, signal=signal, exit_code=exit_code)
        write_verdict(told, Verdict(time(), os.getpid(), signal or 0, exit_code, death.cause,
                                    death.evidence))
        log_death(death)
        consumers.registry.memory_event(death)
        _prune(told.parent)
        return death
    return None


def supervised_records(folder: Optional[Path] = None) -> Path:
    """Where a supervisor looks for its workers' records: ``folder`` when given, else the
    folder of its own logging set-up when it made one, else that of the default set-up."""
    if folder is None:
        from . import recorder

        folder = recorder.folder()
    if folder is None:
        from ..logs.setup import LoggingConfig

        folder = Path(LoggingConfig.logs_dir) / str(LoggingConfig.worker_records)
    return folder


def tell_child_death(pid: int, told_by: str, *, signal: Optional[int] = None,
                     exit_code: Optional[int] = None) -> None:
    """In a supervisor that reaped its child ``pid`` (with this signal or exit code): tell
    its death when the child's record is still open. Never raises."""
    with internal_errors:
        for path in sorted(supervised_records().glob(f"{pid}-*{LIVE_SUFFIX}")):
            tell_death(path, told_by, signal=signal, exit_code=exit_code)


def log_death(death: WorkerDeath) -> None:
    """The ``WORKER DIED`` line on ``MonitoringLogger`` (its record's ``process`` is the dead
    process's pid, as the JSON line's ``pid``)."""
    writer.current.write_event(_logger, logging.WARNING, death.message(), event=death,
                               pid=death.pid)


def _prune(folder: Path) -> None:
    """Remove all but the newest :data:`KEEP_TOLD` told records (another teller may be
    removing the same ones)."""
    told = []
    for path in folder.glob("*" + TOLD_SUFFIX):
        try:
            told.append((path.stat().st_mtime, path))
        except FileNotFoundError:
            continue
    for _, old in sorted(told)[:-KEEP_TOLD]:
        try:
            old.unlink()
        except FileNotFoundError:
            pass
