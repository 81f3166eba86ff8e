"""Folding a stream of records into a :class:`~sherlock_ai.report.stats.Report`.

The loop over measurement rows is the report's hot path (a day of a busy service is millions
of rows): it works on tuples and local names, appends values to the distributions' pending
lists (counted a batch at a time) and finds time buckets by a dictionary look-up; anything
rarer (a leak suspect, a record given as a :class:`Record`) takes the plain path.

Memory is bounded whatever the logs hold: at most :data:`MAX_NAMES` names (later names are
counted under :data:`MORE_NAMES`), :data:`MAX_PROCESSES` processes (later ones under the pid
:data:`MORE_PROCESSES`) and :data:`MAX_SUSPECTS` suspects (later ones counted).
"""

from __future__ import annotations

import math
from itertools import islice
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple

from .reader import Record
from .stats import (
    EVENTS,
    MORE_NAMES,
    MORE_PROCESSES,
    Event,
    Filters,
    NameStats,
    Process,
    Report,
    Suspect,
)

_HTTP = ("GET ", "POST ", "PUT ", "PATCH ", "DELETE ", "HEAD ", "OPTIONS ")
_MEASURED = frozenset({"memory", "performance", "resources"})
# Rows folded between two flushes of the pending values (bounds the memory they take).
CHUNK = 8192
#: Distinct (name, kind) pairs, processes and suspects kept; past them, records are counted
#: under one entry (each name costs a few KB, each process a time series).
MAX_NAMES = 10_000
MAX_PROCESSES = 256
MAX_SUSPECTS = 1000
# Of the kinds a name has records of, the one its figures are taken from: a call under both
# @monitor_memory and @log_performance writes a MEMORY and a PERFORMANCE line, one call.
_PREFERRED = ("memory", "resources", "performance")


def build_report(records: Iterable[Any], filters: Optional[Filters] = None) -> Report:
    """Fold ``records`` (:class:`Record` objects, or what :func:`read_logs` returns) into a
    :class:`Report`; records ``filters`` rejects are counted in ``Report.filtered``."""
    fold = _Fold(Report(), filters)
    batches = getattr(records, "batches", None)
    if callable(batches):
        chunks: Iterator[List[Any]] = batches(CHUNK)
    else:
        stream = iter(records)
        chunks = iter(lambda: list(islice(stream, CHUNK)), [])
    for chunk in chunks:
        fold.take(chunk)
        fold.flush()
    return fold.finish()


class _Fold:
    def __init__(self, report: Report, filters: Optional[Filters]) -> None:
        self.report = report
        self.accept = filters.accepts if filters else None
        # Per name and kind: its NameStats, the append of its pending durations and RSS
        # changes, 1.0 for a web request (else 0.0).
        self.entries: Dict[Tuple[str, str], Tuple[NameStats, Any, Any, float]] = {}
        self.whole_seconds = True

    def entry(self, name: str, kind: str) -> Tuple[NameStats, Any, Any, float]:
        key = (name, kind)
        if len(self.entries) >= MAX_NAMES:
            self.report.more_names += 1
            key = (MORE_NAMES, kind)
            found = self.entries.get(key)
            if found is not None:
                return found
        stats = NameStats(key[0])
        stats.kinds.add(kind)
        entry = self.entries[key] = (stats, stats.duration.pending.append,
                                     stats.rss_change.pending.append,
                                     1.0 if key[0].startswith(_HTTP) else 0.0)
        return entry

    def process(self, pid: Optional[int]) -> Process:
        process = self.report.processes.get(pid)
        if process is None:
            if len(self.report.processes) >= MAX_PROCESSES:
                pid = MORE_PROCESSES
                process = self.report.processes.get(pid)
                if process is not None:
                    return process
            process = self.report.processes[pid] = Process(pid)
        return process

    def take(self, chunk: List[Any]) -> None:
        # One long loop on purpose: it runs once per record of a day of logs, and every
        # attribute lookup and call hoisted out of it is measured in seconds per million.
        report, accept, entries = self.report, self.accept, self.entries
        activity = report.activity
        a_step, a_cells = activity.step, activity.cells
        whole = self.whole_seconds
        inf = math.inf
        # The current process's figures are kept in locals (a file is mostly one process).
        process: Optional[Process] = None
        last_pid: Any = self
        process_pid: Optional[int] = None
        count, first, last, rss_max = 0, inf, -inf, -inf
        for row in chunk:
            if type(row) is not tuple:
                if row.kind not in _MEASURED:
                    if process is not None:
                        _store(process, count, first, last, rss_max)
                    self.other(row)
                    if process is not None:
                        count, first, last, rss_max = _load(process)
                    continue
                row = row.row()
            kind, name, stamp, pid, _, status, duration, rss, change, peak = row
            if accept is not None and not accept(name, stamp, pid):
                report.filtered += 1
                continue
            if pid != last_pid:
                if process is not None:
                    _store(process, count, first, last, rss_max)
                process, last_pid = self.process(pid), pid
                process_pid = process.pid
                count, first, last, rss_max = _load(process)
            pid = process_pid
            count += 1
            entry = entries.get((name, kind))
            if entry is None:
                entry = self.entry(name, kind)
            stats, add_duration, add_change, request = entry
            if status == "ERROR":
                stats.errors += 1
            add_duration(duration)
            if change is not None:
                add_change(change)
            if peak is not None and (stats.traced_peak_max is None or peak > stats.traced_peak_max):
                stats.traced_peak_max = peak
            if rss is not None and rss > rss_max:
                rss_max = rss
            if stamp is None:
                continue
            if whole and stamp % 1:
                whole = False
            if stamp < first:
                first = stamp
            if stamp > last:
                last = stamp
            cell = a_cells.get((int(stamp // a_step), pid))
            if cell is None:
                cell = activity.cell(stamp, pid)
                a_step, a_cells = activity.step, activity.cells
            cell[0] += 1.0
            cell[1] += request
            if rss is not None:
                cell[2] += 1.0
                cell[3] += rss
        if process is not None:
            _store(process, count, first, last, rss_max)
        self.whole_seconds = whole

    def flush(self) -> None:
        """Count the pending values (each measurement row left one duration)."""
        for stats, *_ in self.entries.values():
            stats.count += len(stats.duration.pending)
            stats.duration.flush()
            stats.rss_change.flush()

    def other(self, record: Record) -> None:
        """A record that is not a measurement (a leak suspect)."""
        if self.accept is not None and not self.accept(record.name, record.timestamp,
                                                       record.pid):
            self.report.filtered += 1
            return
        process = self.process(record.pid)
        record.pid = process.pid
        process.records += 1
        stamp = record.timestamp
        if stamp is not None:
            if self.whole_seconds and stamp % 1:
                self.whole_seconds = False
            if process.first is None or stamp < process.first:
                process.first = stamp
            if process.last is None or stamp > process.last:
                process.last = stamp
        if record.kind == "leak_suspect":
            _add_suspect(self.report, record)
        elif record.event and stamp is not None:
            _add_event(self.report, (stamp, record.kind, record.name, record.pid, record.event))

    def finish(self) -> Report:
        report = self.report
        by_name: Dict[str, List[NameStats]] = {}
        for (name, _), entry in self.entries.items():
            by_name.setdefault(name, []).append(entry[0])
        for name, kinds in by_name.items():
            kinds.sort(key=lambda s: _PREFERRED.index(next(iter(s.kinds))))
            chosen = kinds[0]
            for other in kinds[1:]:
                chosen.kinds |= other.kinds
                chosen.also_counted[next(iter(other.kinds))] = other.count
            report.names[name] = chosen
        firsts = [p.first for p in report.processes.values() if p.first is not None]
        lasts = [p.last for p in report.processes.values() if p.last is not None]
        report.first = min(firsts) if firsts else None
        report.last = max(lasts) if lasts else None
        report.whole_seconds = self.whole_seconds
        if self.whole_seconds:
            # Text logs keep whole seconds: a bucket narrower than that would draw each
            # second's records as a burst at its start.
            report.activity.coarsen(1.0)
        return report


def _load(process: Process) -> Tuple[int, float, float, float]:
    inf = math.inf
    return (process.records, inf if process.first is None else process.first,
            -inf if process.last is None else process.last,
            -inf if process.rss_max is None else process.rss_max)


def _store(process: Process, count: int, first: float, last: float, rss_max: float) -> None:
    process.records = count
    if first != math.inf:
        process.first, process.last = first, last
    if rss_max != -math.inf:
        process.rss_max = rss_max


def _add_event(report: Report, event: Event) -> None:
    events = report.events
    events.append(event)
    if len(events) > EVENTS:
        # The first and the latest half are kept.
        events.sort(key=lambda e: e[0])
        del events[EVENTS // 2: EVENTS // 2 + len(events) - EVENTS]


def _add_suspect(report: Report, record: Record) -> None:
    stamp = record.timestamp
    if stamp is not None:
        _add_event(report, (stamp, record.kind, record.name, record.pid, {}))
    kind = record.event.get("kind_of_leak", "python")
    key = record.name if kind == "python" else f"{record.name} ({kind})"
    known = report.suspects.get(key)
    if known is None and len(report.suspects) >= MAX_SUSPECTS:
        report.more_suspects += 1
        return
    if known is None:
        report.suspects[key] = Suspect(
            record.name, record.per_request or 0.0, record.sites, stamp, stamp,
            record.requests, record.pid, kind=kind)
        return
    known.warnings += 1
    if stamp is not None and (known.first_seen is None or stamp < known.first_seen):
        known.first_seen = stamp
    # The latest warning's estimate is the current one (files may be read out of time order).
    if stamp is None or known.last_seen is None or stamp >= known.last_seen:
        known.last_seen = stamp
        known.per_request, known.sites = record.per_request or 0.0, record.sites
        known.requests, known.pid = record.requests, record.pid
