"""Per-name figures, leak suspects, processes and time series, folded from a stream of records
in memory that depends on the names and processes seen, not on the number of records."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

from .reader import Record
from .sketch import Distribution, TimeBuckets

# Events kept for the timeline (leak-suspect warnings, the memory guard's lines): the first
# and the latest half of them when there are more.
EVENTS = 400
# (time, kind, name, pid, the guard's figures): kind leak_suspect, memory_budget, rss_limit.
Event = Tuple[float, str, str, Optional[int], Dict[str, Any]]
#: The name and pid under which records past the report's bounds are counted.
MORE_NAMES = "(more names)"
MORE_PROCESSES = -1


@dataclass
class NameStats:
    """Everything measured under one name (a route ``"GET /items/{id}"`` or a function)."""

    name: str
    kinds: Set[str] = field(default_factory=set)
    count: int = 0
    errors: int = 0
    duration: Distribution = field(default_factory=Distribution)
    rss_change: Distribution = field(default_factory=Distribution)
    traced_peak_max: Optional[float] = None
    #: Records of the same name of other kinds, not counted again (a call under both
    #: ``@monitor_memory`` and ``@log_performance`` writes one of each): kind -> records.
    also_counted: Dict[str, int] = field(default_factory=dict)

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
    sites: List[Dict[str, Any]]
    first_seen: Optional[float]
    last_seen: Optional[float] = None
    requests: Optional[int] = None
    pid: Optional[int] = None
    warnings: int = 1
    #: ``"python"`` (a site tracemalloc saw grow) or ``"native"`` (RSS growth it does not
    #: explain); a name with both kinds has one suspect of each.
    kind: str = "python"


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
    _matched: Dict[str, bool] = field(default_factory=dict, repr=False, compare=False)

    def __bool__(self) -> bool:
        return bool(self.since is not None or self.until is not None or self.routes or self.pids)

    def accept(self, record: Record) -> bool:
        return self.accepts(record.name, record.timestamp, record.pid)

    def accepts(self, name: str, stamp: Optional[float], pid: Optional[int]) -> bool:
        """Whether a record of ``name`` at ``stamp`` from ``pid`` counts."""
        if self.since is not None and (stamp is None or stamp < self.since):
            return False
        if self.until is not None and (stamp is None or stamp > self.until):
            return False
        if self.pids and pid not in self.pids:
            return False
        if not self.routes:
            return True
        # Matched once per name: there are few names and many records.
        known = self._matched.get(name)
        if known is None:
            known = self._matched[name] = any(
                name == route or fnmatch.fnmatchcase(name, route) for route in self.routes)
        return known


@dataclass
class Report:
    """What the report shows. ``activity`` holds per process and time bucket [records,
    requests, RSS figures, sum of RSS]; ``events`` what is drawn on the timeline
    (:data:`Event`). ``more_names``: records counted under :data:`MORE_NAMES`;
    processes past the bound are counted as the one process :data:`MORE_PROCESSES`;
    ``more_suspects``: LEAK
    SUSPECT records of suspects past the bound, not kept."""

    names: Dict[str, NameStats] = field(default_factory=dict)
    suspects: Dict[str, Suspect] = field(default_factory=dict)
    processes: Dict[Optional[int], Process] = field(default_factory=dict)
    activity: TimeBuckets = field(default_factory=lambda: TimeBuckets(4))
    events: List[Event] = field(default_factory=list)
    more_names: int = 0
    more_suspects: int = 0
    first: Optional[float] = None
    last: Optional[float] = None
    filtered: int = 0
    whole_seconds: bool = True

    def ranked(self) -> List[NameStats]:
        """Names by the total time spent in them, most first."""
        return sorted(self.names.values(), key=lambda s: (-s.total_time, s.name))
