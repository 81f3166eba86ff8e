"""The report in the terminal: rich tables that fit its width, the suspects, the processes
and a summary of what was read."""

from __future__ import annotations

import os
from typing import Callable, List, Optional, Sequence, Tuple

from rich.console import Console
from rich.table import Table
from rich.text import Text

from .files import LINE_LIMIT
from .fold import MAX_NAMES, MAX_PROCESSES, MAX_SUSPECTS
from .reader import ReadStats
from .stats import MORE_NAMES, MORE_PROCESSES, NameStats, Report, Suspect
from .units import change, seconds, size, when

# (header, justify, cell of a name's row); columns whose every cell is empty are left out.
_Column = Tuple[str, str, Callable[[NameStats, Optional[Suspect]], str]]
_COLUMNS: Sequence[_Column] = (
    ("Count", "right", lambda s, _: str(s.count)),
    ("Errors", "right", lambda s, _: str(s.errors) if s.errors else ""),
    ("p50", "right", lambda s, _: seconds(s.duration_at(0.5))),
    ("p95", "right", lambda s, _: seconds(s.duration_at(0.95))),
    ("Max", "right", lambda s, _: seconds(s.duration.high if s.duration.count else None)),
    ("ΔRSS\nmean", "right", lambda s, _: change(s.rss_change.mean)),
    ("ΔRSS\nmax", "right",
     lambda s, _: change(s.rss_change.high if s.rss_change.count else None)),
    ("Traced\npeak", "right", lambda s, _: size(s.traced_peak_max)),
    ("Leak\nper req", "right", lambda _, x: f"+{size(x.per_request)}" if x else ""),
)
# When the table is wider than the terminal, these columns go first, in this order.
_DROP_FIRST = ("Traced\npeak", "p50", "ΔRSS\nmax", "Errors")
_EMPTY = ("", "-")


def site_text(suspect: Suspect) -> str:
    """The top allocation site of a suspect, ``file.py:LINE`` (``-`` when none; what a native
    suspect is, since it has no site)."""
    if suspect.kind == "native":
        return "native: not seen by tracemalloc"
    if not suspect.sites:
        return "-"
    top = suspect.sites[0]
    name = str(top.get('file', '?'))
    # Older records carry absolute paths (newer ones a path relative to the project).
    name = os.path.basename(name) if os.path.isabs(name) else name
    return f"{name}:{top.get('line', '?')}"


def names_table(report: Report, width: int = 200) -> Tuple[Table, List[str]]:
    """The per-name table for a terminal ``width`` columns wide, without the columns that
    would be empty on every row; and the headers of those left out for lack of width."""
    ranked = report.ranked()
    rows = [[cell(s, report.suspects.get(s.name)) for _, _, cell in _COLUMNS] for s in ranked]
    shown = [i for i in range(len(_COLUMNS)) if any(row[i] not in _EMPTY for row in rows)]
    # A column needs its widest figure or header line, two of padding and a border.
    need = {i: max([len(row[i]) for row in rows]
                   + [len(line) for line in _COLUMNS[i][0].split("\n")]) + 3 for i in shown}
    left_out: List[str] = []
    for header in _DROP_FIRST:
        if 1 + 15 + sum(need[i] for i in shown) <= width:
            break
        i = next(i for i, column in enumerate(_COLUMNS) if column[0] == header)
        if i in shown:
            shown.remove(i)
            left_out.append(header.replace("\n", " "))
    table = Table(title="Requests and blocks, by total time", title_justify="left")
    # Names wrap (folding inside a long word) instead of being cut; a figure is never split.
    table.add_column("Name", overflow="fold", min_width=12)
    for i in shown:
        header, justify, _ = _COLUMNS[i]
        table.add_column(header, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for s, row in zip(ranked, rows):
        table.add_row(Text(s.name), *(row[i] for i in shown),
                      style="bold red" if s.name in report.suspects else None)
    return table, left_out


def suspects_table(report: Report) -> Table:
    """The leak suspects, the largest estimate first."""
    leaks = Table(title="Leak suspects", title_justify="left")
    leaks.add_column("Name", overflow="fold", min_width=12)
    leaks.add_column("Retained\nper request", justify="right", no_wrap=True)
    leaks.add_column("Where", overflow="fold")
    leaks.add_column("First seen", no_wrap=True)
    leaks.add_column("Warnings", justify="right", no_wrap=True)
    for suspect in sorted(report.suspects.values(), key=lambda s: -s.per_request):
        leaks.add_row(Text(suspect.name), f"+{size(suspect.per_request)}",
                      Text(site_text(suspect)), when(suspect.first_seen), str(suspect.warnings))
    return leaks


def processes_table(report: Report) -> Table:
    """One row per process that wrote the records (``-``: lines without a pid)."""
    table = Table(title="Processes", title_justify="left")
    for header in ("PID", "Records", "From", "To", "RSS max"):
        table.add_column(header, justify="right" if header != "From" else "left", no_wrap=True)
    for process in sorted(report.processes.values(), key=lambda p: (p.first or 0, p.pid or 0)):
        table.add_row(pid_text(process.pid), str(process.records),
                      when(process.first), when(process.last), size(process.rss_max))
    return table


def pid_text(pid: Optional[int]) -> str:
    """A process as the tables show it: its pid, ``-`` (lines without one), ``others``."""
    return "-" if pid is None else "others" if pid == MORE_PROCESSES else str(pid)


def summary(report: Report, stats: ReadStats) -> List[str]:
    """What was read, filtered, merged and skipped."""
    out = [f"{stats.records} records from {len(stats.files)} files ({size(stats.bytes)}), "
           f"{when(report.first)} to {when(report.last)}. RSS figures are the whole process's."]
    if report.filtered:
        out.append(f"{report.filtered} records left out by the filters.")
    if stats.untimed:
        out.append(f"{stats.untimed} records carry no time stamp this report could read "
                   "(they count in the table, not on the time axis).")
    if None in report.processes:
        out.append(f"{report.processes[None].records} records carry no pid: every process "
                   "that wrote them counts as one (\"-\"), several runs or workers writing one "
                   "folder are merged. Add %(process)d after the time in the log format to "
                   "tell them apart.")
    stacked = sorted(s.name for s in report.names.values() if s.also_counted)
    if stacked:
        out.append(f"{len(stacked)} names have records of several kinds (a call under both "
                   "@monitor_memory and @log_performance writes one of each): each is counted "
                   f"once, from its MEMORY records first, e.g. {stacked[0]}.")
    if stats.long_lines:
        out.append(f"{stats.long_lines} lines longer than {LINE_LIMIT // 1024} KB were passed "
                   "over unread (no record of ours is that long).")
    if stats.foreign_tags:
        out.append(f"{stats.foreign_tags} lines of other loggers carried one of our tags "
                   "(MEMORY, LEAK SUSPECT, ...) where every logger writes; not read as ours.")
    for left in stats.left_out:
        out.append(f"Not read: {left}.")
    if report.more_names:
        out.append(f"{report.more_names} records of names past the first {MAX_NAMES} are "
                   f"counted under {MORE_NAMES!r}.")
    if MORE_PROCESSES in report.processes:
        out.append(f"Processes past the first {MAX_PROCESSES} are counted as one, "
                   "\"others\".")
    if report.more_suspects:
        out.append(f"{report.more_suspects} LEAK SUSPECT records of suspects past the first "
                   f"{MAX_SUSPECTS} are not shown.")
    return out


def render(report: Report, stats: ReadStats, console: Console) -> None:
    """Print the per-name table, the suspects, the processes and a summary."""
    table, left_out = names_table(report, console.width)
    console.print(table)
    if left_out:
        console.print(Text(f"Left out for the terminal's width: {', '.join(left_out)} "
                           "(see --width, --format csv)."))
    if report.suspects:
        console.print(suspects_table(report))
    if len(report.processes) > 1:
        console.print(processes_table(report))
    for line in summary(report, stats):
        console.print(Text(line))
