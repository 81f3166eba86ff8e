"""The report for scripts and dashboards: JSON (names, suspects, processes) and CSV (one row
per name, its leak suspect's figures in the same row). Sizes in bytes, times in seconds,
moments in ISO 8601 (UTC). CSV text cells that a spreadsheet would run as a formula are
prefixed with ``'``; texts from the logs reach both without control characters (the reader
escapes them). JSON is ASCII (other characters as ``\\u`` escapes) and holds no NaN or
infinity (the reader keeps finite figures only; writing one would fail, not print it)."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional

from .console import site_text
from .reader import ReadStats
from .stats import NameStats, Report, Suspect

ROUTE_FIELDS = ("name", "kinds", "count", "errors", "duration_p50", "duration_p95",
                "duration_max", "duration_total", "rss_change_mean", "rss_change_min",
                "rss_change_max", "traced_peak_max", "leak_per_request", "leak_site",
                "leak_first_seen", "leak_warnings")
# What a spreadsheet reads as the start of a formula.
_FORMULA = frozenset("=+-@\t\r")
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


def as_json(report: Report, stats: ReadStats) -> str:
    """The whole report as one JSON document."""
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
    }
    return json.dumps(doc, indent=2, ensure_ascii=True, allow_nan=False)


def cell(value: Any) -> Any:
    """A CSV cell a spreadsheet will not run: text from the logs that starts with ``=``,
    ``+``, ``-``, ``@``, a tab or a carriage return gets a leading ``'`` (OWASP's rule for CSV
    injection), unless it is a plain number; figures (numbers) are left as they are."""
    if isinstance(value, str) and value[:1] in _FORMULA and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def as_csv(report: Report) -> str:
    """One CSV row per name (header first); empty cells for figures not measured."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=ROUTE_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in route_rows(report):
        writer.writerow({key: cell(value) for key, value in row.items()})
    return out.getvalue()
