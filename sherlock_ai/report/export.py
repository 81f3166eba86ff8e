"""The report for scripts and dashboards: JSON (names, suspects, processes, worker deaths) and
CSV (one row per name, its leak suspect's figures in the same row; or one row per worker
death). Sizes in bytes, times in seconds, moments in ISO 8601 (UTC). CSV text cells that a
spreadsheet would run as a formula are prefixed with ``'``, and every cell holding a CR, an LF,
a comma or a double quote is quoted, so no cell ends a record early whatever reaches the
writer; texts from the logs reach both without control characters (the reader escapes them).
JSON is ASCII (other characters as ``\\u`` escapes) and holds no NaN or infinity (the reader
keeps finite figures only; writing one would fail, not print it)."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from typing import Any, Dict, Iterable, List, Optional, Sequence

from ..deaths.telling import WorkerDeath
from .console import site_text
from .reader import ReadStats
from .stats import NameStats, Report, Suspect

ROUTE_FIELDS = ("name", "kinds", "count", "errors", "duration_p50", "duration_p95",
                "duration_max", "duration_total", "rss_change_mean", "rss_change_min",
                "rss_change_max", "traced_peak_max", "leak_per_request", "leak_site",
                "leak_first_seen", "leak_warnings")
DEATH_FIELDS = ("pid", "died_by", "found_dead", "signal", "exit_code", "cause", "evidence",
                "in_flight", "not_recorded", "rss", "limit", "rss_growth", "growth_window_s",
                "started_at", "told_by")
# What a spreadsheet reads as the start of a formula.
_FORMULA = frozenset("=+-@\t\r")
# What makes a CSV cell need quotes.
_QUOTED = re.compile(r'[\r\n,"]')
_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")


def iso(stamp: Optional[float]) -> Optional[str]:
    """``stamp`` (seconds since the epoch) in ISO 8601, UTC; ``None`` stays ``None``."""
    if stamp is None:
        return None
    return datetime.fromtimestamp(stamp, tz=timezone.utc).isoformat(timespec="milliseconds")


def route_row(s: Optional[NameStats], suspect: Optional[Suspect], name: str) -> Dict[str, Any]:
    """One name's figures; ``s`` is ``None`` for a suspect whose records were not read."""
    row: Dict[str, Any] = dict.fromkeys(ROUTE_FIELDS)
    row.update(name=name, kinds="", count=0, errors=0)
    if s is not None:
        d, m = s.duration, s.rss_change
        row.update(kinds=",".join(sorted(s.kinds)), count=s.count, errors=s.errors,
                   duration_p50=d.quantile(0.5), duration_p95=d.quantile(0.95),
                   duration_max=d.high if d.count else None,
                   duration_total=d.total if d.count else None, rss_change_mean=m.mean,
                   rss_change_min=m.low if m.count else None,
                   rss_change_max=m.high if m.count else None,
                   traced_peak_max=s.traced_peak_max)
    if suspect is not None:
        row.update(leak_per_request=suspect.per_request, leak_site=site_text(suspect),
                   leak_first_seen=iso(suspect.first_seen), leak_warnings=suspect.warnings)
    return row


def route_rows(report: Report) -> List[Dict[str, Any]]:
    """Every name, by total time, then the suspects that have no records of their own."""
    rows = [route_row(s, report.suspects.get(s.name), s.name) for s in report.ranked()]
    rows += [route_row(None, suspect, name) for name, suspect in sorted(report.suspects.items())
             if name not in report.names]
    return rows


def death_rows(deaths: Sequence[WorkerDeath]) -> List[Dict[str, Any]]:
    """The fields of each death's ``WORKER DIED`` JSON line (less the line's own ``kind`` and
    ``reported_by``), moments in ISO 8601: ``died_by`` is when it was found dead, or its last
    sign of life when ``found_dead`` is false (nobody told it; durations are then lower
    bounds)."""
    out = []
    for death in deaths:
        row = {key: value for key, value in death.as_dict().items()
               if key not in ("kind", "reported_by")}
        row.update(died_by=iso(death.ended_by), found_dead=death.prompt,
                   started_at=iso(death.started_at))
        out.append({key: row[key] for key in DEATH_FIELDS})
    return out


def as_json(report: Report, stats: ReadStats, deaths: Optional[Sequence[WorkerDeath]] = ()
            ) -> str:
    """The whole report as one JSON document (``deaths``: ``None`` when the input has no
    records folder to read them from, written as ``null``)."""
    doc = {
        "records": stats.records, "files": [p.name for p in stats.files],
        "bad_lines": stats.bad_lines, "bad_files": stats.bad_files,
        "long_lines": stats.long_lines, "foreign_tags": stats.foreign_tags,
        "left_out": stats.left_out, "more_names": report.more_names,
        "filtered": report.filtered, "untimed": stats.untimed,
        "first": iso(report.first), "last": iso(report.last),
        "routes": route_rows(report),
        "suspects": [
            {"name": s.name, "per_request": s.per_request, "requests": s.requests,
             "sites": s.sites, "first_seen": iso(s.first_seen), "last_seen": iso(s.last_seen),
             "warnings": s.warnings, "pid": s.pid, "kind_of_leak": s.kind}
            for s in sorted(report.suspects.values(), key=lambda s: -s.per_request)],
        "processes": [
            {"pid": p.pid, "records": p.records, "first": iso(p.first), "last": iso(p.last),
             "rss_max": p.rss_max}
            for p in sorted(report.processes.values(), key=lambda p: (p.first or 0, p.pid or 0))],
        "worker_deaths": None if deaths is None else death_rows(deaths),
    }
    return json.dumps(doc, indent=2, ensure_ascii=True, allow_nan=False)


def cell(value: Any) -> Any:
    """A CSV cell a spreadsheet will not run: text from the logs that starts with ``=``,
    ``+``, ``-``, ``@``, a tab or a carriage return gets a leading ``'`` (OWASP's rule for CSV
    injection), unless it is a plain number; figures (numbers) are left as they are."""
    if isinstance(value, str) and value[:1] in _FORMULA and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def csv_line(values: Iterable[Any]) -> str:
    """One CSV record (RFC 4180, ending in a line feed): each value through :func:`cell`,
    ``None`` as an empty cell, and every cell holding a CR, an LF, a comma or a double quote
    in double quotes (its quotes doubled), so that no text from the logs ends a record or a
    cell early, whatever it holds."""
    out = []
    for value in values:
        text = "" if value is None else str(cell(value))
        if _QUOTED.search(text):
            text = '"' + text.replace('"', '""') + '"'
        out.append(text)
    return ",".join(out) + "\n"


def as_csv(report: Report) -> str:
    """One CSV row per name (header first); empty cells for figures not measured."""
    return csv_line(ROUTE_FIELDS) + "".join(
        csv_line(row[key] for key in ROUTE_FIELDS) for row in route_rows(report))


def deaths_csv(deaths: Sequence[WorkerDeath]) -> str:
    """One CSV row per worker death (header first, :data:`DEATH_FIELDS`), its requests in
    flight as one JSON text (the list of the JSON output) in ``in_flight``."""
    return csv_line(DEATH_FIELDS) + "".join(
        csv_line(json.dumps(row[key], ensure_ascii=True) if key == "in_flight" else row[key]
                 for key in DEATH_FIELDS) for row in death_rows(deaths))
