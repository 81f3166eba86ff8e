"""``sherlock-ai report``: per-route tables and charts from the logs sherlock_ai wrote.

Needs the ``report`` extra (``rich``) for the terminal output; imported only by the command.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

from .reader import ReadStats, Record, read_logs
from .stats import Report, build_report

__all__ = ["ReadStats", "Record", "Report", "build_report", "read_logs", "run_report"]


def run_report(logs_dir: Path, html: Optional[str] = None) -> int:
    """Print the report of ``logs_dir`` (and write the HTML page when asked): 0 when records
    were found, 1 when none, 2 when the folder cannot be read or rich is missing."""
    try:
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn
    except ImportError:
        sys.stderr.write('sherlock-ai report needs rich: pip install "sherlock-ai[report]"\n')
        return 2
    from .console import render

    if not logs_dir.is_dir():
        sys.stderr.write(f"sherlock-ai report: {logs_dir} is not a folder\n")
        return 2
    stats = ReadStats()
    err = Console(stderr=True)
    try:
        with Progress("reading logs", BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                      console=err, transient=True, disable=not err.is_terminal) as progress:
            from .reader import log_files

            total = sum(path.stat().st_size for path in log_files(logs_dir))
            task = progress.add_task("read", total=total)
            report = build_report(read_logs(logs_dir, stats,
                                            lambda n: progress.advance(task, n)))
    except OSError as exc:
        sys.stderr.write(f"sherlock-ai report: cannot read {logs_dir}: {exc}\n")
        return 2
    # Piped output (a file, CI, make demo's pipe) is not cut to 80 columns.
    out = Console() if sys.stdout.isatty() else Console(width=160)
    if stats.bad_lines:
        err.print(f"[yellow]warning:[/] skipped {stats.bad_lines} unreadable lines, e.g.",
                  *(repr(example) for example in stats.bad_examples), sep="\n  ",
                  markup=True, highlight=False)
    if not stats.records:
        sys.stderr.write(f"sherlock-ai report: no sherlock_ai records in {logs_dir}\n")
        return 1
    render(report, stats, out)
    if html:
        from .html import write_html

        try:
            write_html(report, stats, html)
        except OSError as exc:
            sys.stderr.write(f"sherlock-ai report: cannot write {html}: {exc}\n")
            return 2
        out.print(f"HTML report written to {html}", markup=False, highlight=False)
    return 0
