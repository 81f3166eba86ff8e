"""The report's "Worker deaths" table, read from the flight records of a log folder.

A death told by a supervisor or a sibling left its claimed record (with the teller's verdict)
in the folder; a process found gone with its record still open was told by nobody, and shows
here with what the record alone says (no signal; its requests' durations run to its last sign
of life). The report only reads: it claims nothing, so a process that looks later still tells
the death in the logs.
"""

from __future__ import annotations

from datetime import datetime
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Callable, List, Mapping, Optional, Sequence

from ..deaths.record import LIVE_SUFFIX, TOLD_SUFFIX, parse_name, read_record
from ..deaths.telling import WorkerDeath
from ..deaths.watch import process_gone
from ..formatting import format_bytes, format_change
from ..logs.setup import LoggingConfig
from .stats import Filters

if TYPE_CHECKING:
    from rich.table import Table

# How long after the last record a death is still drawn on the timeline, at least.
AFTER_LAST_RECORD_S = 300.0
COLUMNS = ("Died by", "PID", "How", "In flight", "Last RSS", "Told by")


def worker_deaths(logs_dir: Path) -> List[WorkerDeath]:
    """The deaths recorded in ``logs_dir``'s default records folder, oldest first."""
    folder = logs_dir / str(LoggingConfig.worker_records)
    found: List[WorkerDeath] = []
    if not folder.is_dir():
        return found
    for path in sorted(folder.iterdir()):
        ids = parse_name(path.name)
        if ids is None or not (path.name.endswith(TOLD_SUFFIX) or (
                path.name.endswith(LIVE_SUFFIX) and process_gone(*ids))):
            continue
        try:
            view = read_record(path)
        except OSError:
            continue  # removed meanwhile
        if view is not None and not view.closed:
            found.append(WorkerDeath.read_back(view))
    found.sort(key=lambda death: death.ended_by)
    return found


def passing(deaths: Sequence[WorkerDeath], filters: Optional[Filters]) -> List[WorkerDeath]:
    """The deaths the report's filters keep: died from ``since`` to ``until``, of a process in
    ``pids``, and with ``routes``, holding a request of one of them in flight."""
    if not filters:
        return list(deaths)
    kept = []
    for death in deaths:
        names = [f"{entry['method']} {entry['name']}" for entry in death.in_flight] \
            if filters.routes else [""]
        if any(filters.accepts(name, death.ended_by, death.pid) for name in names):
            kept.append(death)
    return kept


def in_flight_texts(death: WorkerDeath) -> List[str]:
    """``POST /upload (id 1a2b, >=3.20s, RSS +1.20GB)`` per request in flight, then ``N more``
    for those the record had no room for."""
    flight = [f"{e['method']} {e['name']} (id {e['request_id'] or '?'}, "
              f"{'' if death.prompt else '>='}{e['duration_s']:.2f}s, "
              f"RSS {format_change(e['rss_change'])})" for e in death.in_flight]
    if death.not_recorded:
        flight.append(f"{death.not_recorded} more")
    return flight


def death_title(death: WorkerDeath) -> str:
    """The tooltip of a death on the RSS timeline: pid, how, when, last RSS, in flight."""
    when = datetime.fromtimestamp(death.ended_by).strftime("%Y-%m-%d %H:%M:%S")
    return (f"WORKER DIED: pid {death.pid}, {death.how()}, "
            f"{'at' if death.prompt else 'after its last sign of life at'} {when}, "
            f"last RSS {format_bytes(death.rss)}; in flight: "
            f"{'; '.join(in_flight_texts(death)) or 'none'}")


def on_timeline(deaths: Sequence[WorkerDeath], first: Optional[float], last: Optional[float]
                ) -> List[WorkerDeath]:
    """The deaths drawn on the timeline of records from ``first`` to ``last``: those from
    ``first`` to as long after ``last`` as the records span (at least
    :data:`AFTER_LAST_RECORD_S`), since a worker that dies has usually stopped logging a while
    before; older deaths kept in the folder and later ones are in the table only."""
    if first is None or last is None:
        return []
    end = last + max(AFTER_LAST_RECORD_S, last - first)
    return [death for death in deaths if first <= death.ended_by <= end]


def death_marks(deaths: Sequence[WorkerDeath], x: Callable[[float], float],
                y: Callable[[float], float], top: float, bottom: float,
                colors: Mapping[object, str]) -> str:
    """Each death on the RSS timeline: a black dash-dot line at its time and a cross at its
    last RSS (at the foot without one) in the colour of its process's line (``colors``, by
    pid; black when its line is not drawn), whose title (the page's hover tip) names the pid,
    how it died and the requests in flight."""
    out = []
    for death in deaths:
        color = colors.get(death.pid, "#000")
        at = x(death.ended_by)
        level = min(max(y(death.rss), top), bottom) if death.rss else bottom
        title = escape(death_title(death))
        out.append(
            f"<g class='death' data-died='{death.pid}' data-cause='{escape(death.cause)}'>"
            f"<title>{title}</title>"
            f"<line x1='{at:.1f}' x2='{at:.1f}' y1='{top}' y2='{bottom}' stroke='#000' "
            f"stroke-width='1.5' stroke-dasharray='6 2 1 2'/>"
            f"<path d='M{at - 5:.1f},{level - 5:.1f}l10,10m0,-10l-10,10' stroke='{color}' "
            f"stroke-width='2.5'/>"
            f"<circle class='hit' cx='{at:.1f}' cy='{level:.1f}' r='6'><title>{title}</title>"
            "</circle></g>")
    return "".join(out)


def rows(deaths: Sequence[WorkerDeath]) -> List[List[str]]:
    """The table's cells, one row per death."""
    out = []
    for death in deaths:
        flight = in_flight_texts(death)
        out.append([
            datetime.fromtimestamp(death.ended_by).strftime("%Y-%m-%d %H:%M:%S"),
            str(death.pid), death.how(), "\n".join(flight) or "none",
            format_bytes(death.rss) + (f" of {format_bytes(death.limit)}" if death.limit
                                       else ""),
            death.told_by])
    return out


def deaths_table(deaths: Sequence[WorkerDeath]) -> Table:
    """The table for the terminal."""
    from rich.table import Table

    table = Table(title="Worker deaths", title_justify="left")
    for header in COLUMNS:
        table.add_column(header, overflow="fold")
    for row in rows(deaths):
        table.add_row(*row)
    return table


def deaths_html(deaths: Sequence[WorkerDeath]) -> str:
    """The section of the HTML page (empty without deaths)."""
    if not deaths:
        return ""
    head = "".join(f"<th>{escape(h)}</th>" for h in COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{escape(cell).replace(chr(10), '<br>')}</td>"
                                    for cell in row) + "</tr>" for row in rows(deaths))
    return (f"<h2>Worker deaths</h2><p class='note'>Processes that ended without closing "
            f"their flight record (docs/worker-deaths.md).</p>"
            f"<table><tr>{head}</tr>{body}</table>")
