"""The report in the terminal: rich tables, a summary and the leak suspects."""

from __future__ import annotations

import os
from datetime import datetime
from typing import Optional

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..formatting import format_bytes, format_change
from .reader import ReadStats
from .stats import Report, Suspect


def seconds(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.3f}s"


def site_text(suspect: Suspect) -> str:
    if not suspect.sites:
        return "-"
    top = suspect.sites[0]
    name = str(top.get('file', '?'))
    # Older records carry absolute paths (newer ones a path relative to the project).
    name = os.path.basename(name) if os.path.isabs(name) else name
    return f"{name}:{top.get('line', '?')}"


def when(stamp: Optional[float]) -> str:
    return "-" if stamp is None else datetime.fromtimestamp(stamp).strftime("%Y-%m-%d %H:%M:%S")


def render(report: Report, stats: ReadStats, console: Console) -> None:
    """Print the per-name table, the suspects and a summary of what was read."""
    table = Table(title="Requests and blocks, by total time", title_justify="left")
    for header in ("Name", "Count", "Errors", "p50", "p95", "Max"):
        table.add_column(header, justify="left" if header == "Name" else "right")
    for header in ("RSS change mean", "RSS change max", "Traced peak max", "Leak suspect"):
        table.add_column(header, justify="right")
    for s in report.ranked():
        suspect = report.suspects.get(s.name)
        table.add_row(
            Text(s.name), str(s.count), str(s.errors) if s.errors else "",
            seconds(s.duration_at(0.5)), seconds(s.duration_at(0.95)),
            seconds(s.durations[-1] if s.durations else None),
            format_change(s.rss_change_mean) if s.rss_changes else "-",
            format_change(s.rss_change_max) if s.rss_changes else "-",
            format_bytes(s.traced_peak_max) if s.traced_peak_max is not None else "-",
            f"+{format_bytes(suspect.per_request)}/request" if suspect else "",
            style="bold red" if suspect else None,
        )
    console.print(table)
    if report.suspects:
        leaks = Table(title="Leak suspects", title_justify="left")
        for header in ("Name", "Retained per request", "Where", "First seen", "Warnings"):
            leaks.add_column(header)
        for suspect in sorted(report.suspects.values(), key=lambda s: -s.per_request):
            leaks.add_row(Text(suspect.name), f"+{format_bytes(suspect.per_request)}",
                          Text(site_text(suspect)), when(suspect.first_seen), str(suspect.warnings))
        console.print(leaks)
    console.print(Text(
        f"{stats.records} records from {len(stats.files)} files ({format_bytes(stats.bytes)}), "
        f"{when(report.first)} to {when(report.last)}. RSS figures are the whole process's."
    ))
