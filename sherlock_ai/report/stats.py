"""Per-name figures, leak suspects, processes and time series, folded from a stream of records
in memory that depends on the names and processes seen, not on the number of records."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from .reader import Record
from .sketch import Distribution, TimeBuckets

# Leak-suspect warnings kept as events on the timeline (the latest per name is always kept).
EVENTS = 200
_HTTP = ("GET ", "POST ", "PUT ", "PATCH ", "DELETE ", "HEAD ", "OPTIONS ")


@dataclass
class NameStats:
    """Everything measured under one name (a route ``"GET /items/{id}"`` or a function)."""

    name: str
    kinds: set = field(default_factory=set)
    count: int = 0
    errors: int = 0
    duration: Distribution = field(default_factory=Distribution)
    rss_change: Distribution = field(default_factory=Distribution)
    traced_peak_max: Optional[float] = None

    def add(self, record: Record) -> None:
        self.kinds.add(record.kind)
        self.count += 1
        if record.status == "ERROR":
            self.errors += 1
        if record.duration is not None:
            self.duration.add(record.duration)
        if record.rss_change is not None:
            self.rss_change.add(record.rss_change)
        if record.traced_peak is not None:
            self.traced_peak_max = max(self.traced_peak_max or 0.0, record.traced_peak)

    @property
    def total_time(self) -> float:
        return self.duration.total

    def duration_at(self, share: float) -> Optional[float]:
        return self.duration.quantile(share)


@dataclass
class Suspect:
    """The latest LEAK SUSPECT warning of a name, and when it was first raised."""

    name: str
    per_request: float
    sites: List[Dict]
    first_seen: Optional[float]
    last_seen: Optional[float] = None
    requests: Optional[int] = None
    pid: Optional[int] = None
    warnings: int = 1


@dataclass
class Process:
    """One process (a pid; ``None`` for lines that carry none): its records and times."""

    pid: Optional[int]
    records: int = 0
    first: Optional[float] = None
    last: Optional[float] = None
    rss_max: Optional[float] = None


@dataclass
class Filters:
    """Which records count: times from ``since`` to ``until`` (seconds since the epoch),
    names matching one of ``routes`` (exact or ``fnmatch`` patterns), processes in ``pids``.
    A record without a time stamp does not pass a time filter."""

    since: Optional[float] = None
    until: Optional[float] = None
    routes: Sequence[str] = ()
    pids: Sequence[int] = ()

    def __bool__(self) -> bool:
        return bool(self.since is not None or self.until is not None or self.routes or self.pids)

    def accept(self, record: Record) -> bool:
        stamp = record.timestamp
        if self.since is not None and (stamp is None or stamp < self.since):
            return False
        if self.until is not None and (stamp is None or stamp > self.until):
            return False
        if self.pids and record.pid not in self.pids:
            return False
        return not self.routes or any(
            record.name == route or fnmatch.fnmatchcase(record.name, route)
            for route in self.routes)


@dataclass
class Report:
    """What the report shows. ``activity`` holds per process and time bucket [records,
    requests, RSS figures, sum of RSS]; ``route_memory`` per name [sum of RSS change,
    records]; ``events`` the leak-suspect warnings (time, name, pid)."""

    names: Dict[str, NameStats] = field(default_factory=dict)
    suspects: Dict[str, Suspect] = field(default_factory=dict)
    processes: Dict[Optional[int], Process] = field(default_factory=dict)
    activity: TimeBuckets = field(default_factory=lambda: TimeBuckets(4))
    route_memory: TimeBuckets = field(default_factory=lambda: TimeBuckets(2))
    events: List[Tuple[float, str, Optional[int]]] = field(default_factory=list)
    first: Optional[float] = None
    last: Optional[float] = None
    filtered: int = 0
    whole_seconds: bool = True

    def ranked(self) -> List[NameStats]:
        """Names by the total time spent in them, most first."""
        return sorted(self.names.values(), key=lambda s: (-s.total_time, s.name))


def build_report(records: Iterable[Record], filters: Optional[Filters] = None) -> Report:
    """Fold ``records`` into a :class:`Report`; records ``filters`` rejects are counted in
    ``Report.filtered``."""
    report = Report()
    accept = filters.accept if filters else None
    names, processes = report.names, report.processes
    activity, route_memory = report.activity.add, report.route_memory.add
    for record in records:
        if accept is not None and not accept(record):
            report.filtered += 1
            continue
        stamp, pid = record.timestamp, record.pid
        process = processes.get(pid)
        if process is None:
            process = processes[pid] = Process(pid)
        process.records += 1
        if stamp is not None:
            if report.whole_seconds and stamp % 1:
                report.whole_seconds = False
            if report.first is None or stamp < report.first:
                report.first = stamp
            if report.last is None or stamp > report.last:
                report.last = stamp
            if process.first is None or stamp < process.first:
                process.first = stamp
            if process.last is None or stamp > process.last:
                process.last = stamp
        if record.kind == "leak_suspect":
            _add_suspect(report, record)
            continue
        stats = names.get(record.name)
        if stats is None:
            stats = names[record.name] = NameStats(record.name)
        stats.add(record)
        rss = record.rss
        if rss is not None and (process.rss_max is None or rss > process.rss_max):
            process.rss_max = rss
        if stamp is not None:
            request = 1.0 if record.name.startswith(_HTTP) else 0.0
            activity(stamp, pid, (1.0, request, 0.0 if rss is None else 1.0, rss or 0.0))
            if record.rss_change is not None:
                route_memory(stamp, record.name, (record.rss_change, 1.0))
    if report.whole_seconds:
        # Text logs keep whole seconds: a bucket narrower than that would draw each second's
        # records as a burst at its start.
        report.activity.coarsen(1.0)
        report.route_memory.coarsen(1.0)
    return report


def _add_suspect(report: Report, record: Record) -> None:
    stamp = record.timestamp
    if stamp is not None:
        report.events.append((stamp, record.name, record.pid))
        if len(report.events) > EVENTS:
            report.events.sort()
            del report.events[EVENTS // 2: EVENTS // 2 + len(report.events) - EVENTS]
    known = report.suspects.get(record.name)
    if known is None:
        report.suspects[record.name] = Suspect(
            record.name, record.per_request or 0.0, record.sites, stamp, stamp,
            record.requests, record.pid)
        return
    known.warnings += 1
    if stamp is not None and (known.first_seen is None or stamp < known.first_seen):
        known.first_seen = stamp
    # The latest warning's estimate is the current one (files may be read out of time order).
    if stamp is None or known.last_seen is None or stamp >= known.last_seen:
        known.last_seen = stamp
        known.per_request, known.sites = record.per_request or 0.0, record.sites
        known.requests, known.pid = record.requests, record.pid
