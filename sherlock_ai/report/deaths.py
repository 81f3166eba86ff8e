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
from typing import TYPE_CHECKING, List, Sequence

from ..deaths.record import LIVE_SUFFIX, TOLD_SUFFIX, parse_name, read_record
from ..deaths.telling import WorkerDeath
from ..deaths.watch import process_gone
from ..logs.formatting import format_bytes, format_change
from ..logs.setup import LoggingConfig

if TYPE_CHECKING:
    from rich.table import Table

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


def rows(deaths: Sequence[WorkerDeath]) -> List[List[str]]:
    """The table's cells, one row per death."""
    out = []
    for death in deaths:
        flight = [f"{e['method']} {e['name']} (id {e['request_id'] or '?'}, "
                  f"{'' if death.prompt else '>='}{e['duration_s']:.2f}s, "
                  f"RSS {format_change(e['rss_change'])})" for e in death.in_flight]
        if death.not_recorded:
            flight.append(f"{death.not_recorded} more")
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
