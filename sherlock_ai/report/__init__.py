"""``sherlock-ai report``: per-route tables, charts and machine-readable figures from the logs
sherlock_ai wrote.

Needs the ``report`` extra (``rich``) for the terminal output; imported only by the command.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from .checks import iso_datetime
from .fold import build_report
from .reader import STDIN, ReadStats, Record, read_logs
from .stats import Filters, Report

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["Filters", "ReadStats", "Record", "Report", "build_report", "parse_moment",
           "read_logs", "run_report"]

FORMATS = ("table", "json", "csv", "deaths-csv")
_AGO = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_moment(text: str) -> float:
    """``2026-12-01T10:00`` (local time unless a zone is given), ``2026-12-01 10:00:00+00:00``,
    or a time ago: ``90s``, ``30m``, ``2h``, ``1d``; seconds since the epoch."""
    ago = _AGO.fullmatch(text.strip())
    if ago:
        return time.time() - float(ago.group(1)) * _UNIT[ago.group(2)]
    try:
        return iso_datetime(text.strip()).timestamp()
    except ValueError:
        raise ValueError(f"not a time: {text!r} (use 2026-12-01T10:00, or 30m, 2h, 1d ago)")\
            from None


def run_report(logs_dir: Path, html: Optional[str] = None, output: str = "table",
               filters: Optional[Filters] = None, log_format: Optional[str] = None,
               width: Optional[int] = None) -> int:
    """Print the report of ``logs_dir`` (a folder, one file, or ``Path("-")``: standard
    input) as a table (or JSON, CSV, or the CSV of the worker deaths) and write the HTML page
    when asked: 0 when records were found (or for the deaths' CSV), 1 when none, 2 when the
    input cannot be read or rich is missing."""
    try:
        from rich.console import Console
    except ImportError:
        sys.stderr.write('sherlock-ai report needs rich: pip install "sherlock-ai[report]"\n')
        return 2
    if logs_dir != STDIN and not logs_dir.is_dir() and not logs_dir.is_file():
        sys.stderr.write(f"sherlock-ai report: {logs_dir} is not a folder or a file\n")
        return 2
    stats = ReadStats()
    err = Console(stderr=True)
    try:
        report = _read_with_progress(logs_dir, stats, err, filters, log_format)
    except OSError as exc:
        sys.stderr.write(f"sherlock-ai report: cannot read {logs_dir}: {exc}\n")
        return 2
    _warn(err, stats)
    from .deaths import deaths_table, passing, worker_deaths

    # The flight records sit in the log folder: a file's own folder, none for standard input.
    deaths = None if logs_dir == STDIN else passing(worker_deaths(
        logs_dir if logs_dir.is_dir() else logs_dir.parent), filters)
    if deaths is None:
        err.print("note: worker deaths not read: standard input has no flight-records folder "
                  "(give the log folder, or look for WORKER DIED lines in the input)",
                  markup=False, highlight=False)
    # Piped output (a file, CI, make demo's pipe) is not cut to 80 columns.
    out = Console(width=width or (None if sys.stdout.isatty() else 160))
    if deaths and output == "table":
        out.print(deaths_table(deaths))
    if output == "deaths-csv":
        from .export import deaths_csv

        # The deaths come from the records folder, whatever the logs hold.
        sys.stdout.write(deaths_csv(deaths or ()))
    if not stats.records:
        sys.stderr.write(f"sherlock-ai report: no sherlock_ai records in {logs_dir}\n")
        return 0 if output == "deaths-csv" else 1
    if output == "json":
        from .export import as_json

        sys.stdout.write(as_json(report, stats, deaths) + "\n")
    elif output == "csv":
        from .export import as_csv

        sys.stdout.write(as_csv(report))
    elif output == "table":
        from .console import render

        render(report, stats, out)
    if html:
        from .html import write_html

        try:
            write_html(report, stats, html, deaths or ())
        except OSError as exc:
            sys.stderr.write(f"sherlock-ai report: cannot write {html}: {exc}\n")
            return 2
        # Machine-readable stdout stays one document: the note goes to stderr.
        (out if output == "table" else err).print(f"HTML report written to {html}",
                                                  markup=False, highlight=False)
    return 0


def _read_with_progress(logs_dir: Path, stats: ReadStats, err: Any,
                        filters: Optional[Filters], log_format: Optional[str]) -> Report:
    """Read and fold ``logs_dir``, with a progress bar on ``err`` when it is a terminal and the
    input takes more than a moment."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    from .files import log_files

    total = (0 if logs_dir == STDIN else logs_dir.stat().st_size if not logs_dir.is_dir()
             else sum(path.stat().st_size for path in log_files(logs_dir)))
    with Progress("reading logs", BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                  console=err, transient=True,
                  disable=not err.is_terminal or total < 4 * 2**20) as progress:
        task = progress.add_task("read", total=total)
        return build_report(read_logs(logs_dir, stats,
                                      lambda n: progress.advance(task, n), log_format),
                            filters)


def _warn(err: Console, stats: ReadStats) -> None:
    from rich.markup import escape

    if stats.bad_lines:
        err.print(f"[yellow]warning:[/] skipped {stats.bad_lines} unreadable lines (counted, "
                  "not read), e.g.", *(escape(repr(example)) for example in stats.bad_examples),
                  sep="\n  ", markup=True, highlight=False)
    for bad in stats.bad_files:
        err.print(f"[yellow]warning:[/] stopped reading {escape(bad)}", markup=True,
                  highlight=False)
