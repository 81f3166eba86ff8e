"""Per-name figures from records: counts, duration percentiles, memory change, suspects, and
the process RSS over time."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from .reader import Record

# The RSS timeline keeps at most this many points, evenly thinned, whatever the log size.
TIMELINE_POINTS = 2_000


def percentile(ordered: Sequence[float], share: float) -> Optional[float]:
    """The ``share`` quantile of sorted values (nearest rank), ``None`` when empty."""
    if not ordered:
        return None
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]


@dataclass
class NameStats:
    """Everything measured under one name (a route ``"GET /items/{id}"`` or a function)."""

    name: str
    kinds: set = field(default_factory=set)
    count: int = 0
    errors: int = 0
    durations: List[float] = field(default_factory=list)
    rss_changes: List[float] = field(default_factory=list)
    traced_peak_max: Optional[float] = None

    def add(self, record: Record) -> None:
        self.kinds.add(record.kind)
        self.count += 1
        if record.status == "ERROR":
            self.errors += 1
        if record.duration is not None:
            self.durations.append(record.duration)
        if record.rss_change is not None:
            self.rss_changes.append(record.rss_change)
        if record.traced_peak is not None:
            self.traced_peak_max = max(self.traced_peak_max or 0.0, record.traced_peak)

    def finish(self) -> None:
        """Sort the samples once, for the percentiles."""
        self.durations.sort()
        self.rss_changes.sort()

    @property
    def total_time(self) -> float:
        return sum(self.durations)

    def duration_at(self, share: float) -> Optional[float]:
        return percentile(self.durations, share)

    @property
    def rss_change_mean(self) -> Optional[float]:
        return sum(self.rss_changes) / len(self.rss_changes) if self.rss_changes else None

    @property
    def rss_change_max(self) -> Optional[float]:
        return self.rss_changes[-1] if self.rss_changes else None


@dataclass
class Suspect:
    """The latest LEAK SUSPECT warning of a name, and when it was first raised."""

    name: str
    per_request: float
    sites: List[Dict]
    first_seen: float
    warnings: int = 1


@dataclass
class Report:
    """What the report shows."""

    names: Dict[str, NameStats] = field(default_factory=dict)
    suspects: Dict[str, Suspect] = field(default_factory=dict)
    timeline: List[Tuple[float, float]] = field(default_factory=list)
    first: Optional[float] = None
    last: Optional[float] = None

    def ranked(self) -> List[NameStats]:
        """Names by the total time spent in them, most first."""
        return sorted(self.names.values(), key=lambda s: (-s.total_time, s.name))


def build_report(records: Iterable[Record]) -> Report:
    """Fold ``records`` into a :class:`Report`, keeping memory bounded by the names seen and
    :data:`TIMELINE_POINTS`."""
    report = Report()
    stride, skipped = 1, 0
    for record in records:
        stamp = record.timestamp
        report.first = stamp if report.first is None else min(report.first, stamp)
        report.last = stamp if report.last is None else max(report.last, stamp)
        if record.kind == "leak_suspect":
            _add_suspect(report, record)
            continue
        stats = report.names.get(record.name)
        if stats is None:
            stats = report.names[record.name] = NameStats(record.name)
        stats.add(record)
        if record.rss is not None:
            skipped += 1
            if skipped >= stride:
                skipped = 0
                report.timeline.append((stamp, record.rss))
                if len(report.timeline) >= TIMELINE_POINTS:
                    report.timeline = report.timeline[::2]
                    stride *= 2
    for stats in report.names.values():
        stats.finish()
    report.timeline.sort()
    return report


def _add_suspect(report: Report, record: Record) -> None:
    known = report.suspects.get(record.name)
    if known is None:
        report.suspects[record.name] = Suspect(record.name, record.per_request or 0.0,
                                               record.sites, record.timestamp)
        return
    known.warnings += 1
    known.first_seen = min(known.first_seen, record.timestamp)
    known.per_request, known.sites = record.per_request or 0.0, record.sites
