"""The ``sherlock-ai`` command (also ``python -m sherlock_ai``).

    sherlock-ai report LOGS [--html FILE] [--format table|json|csv|deaths-csv]
                                [--since WHEN] [--until WHEN] [--route NAME] [--pid PID]
    sherlock-ai uvicorn-log-config > log.json     (then: uvicorn app:app --log-config log.json)
    sherlock-ai --version
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import List, Optional

from . import __version__


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command; returns its exit status."""
    parser = argparse.ArgumentParser(prog="sherlock-ai", description="sherlock_ai's tools")
    parser.add_argument("--version", action="version", version=f"sherlock-ai {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    report = commands.add_parser(
        "report", help="per-route tables (and an HTML page) from sherlock_ai's log files",
        description="Read the text and JSON logs sherlock_ai wrote in LOGS (a folder, with its "
                    "rotated and .gz files; one file; or - for standard input, such as "
                    "kubectl logs or docker logs piped in, whatever prefix stands before each "
                    "record) and print per-route figures and leak suspects.")
    report.add_argument("logs_dir", metavar="LOGS", type=Path,
                        help="a logs folder, a log file, or - for standard input")
    report.add_argument("--html", metavar="FILE", help="also write a self-contained HTML page")
    report.add_argument("--format", dest="output",
                        choices=("table", "json", "csv", "deaths-csv"), default="table",
                        help="what to print (default: table; deaths-csv: one row per worker "
                             "death)")
    report.add_argument("--since", metavar="WHEN", type=_moment,
                        help="only records from then: 2026-12-01T10:00 (local time unless a "
                             "zone is given) or a time ago: 30m, 2h, 1d")
    report.add_argument("--until", metavar="WHEN", type=_moment, help="only records until then")
    report.add_argument("--route", metavar="NAME", action="append", default=[],
                        help="only this name; shell patterns work ('GET /users*'); repeatable")
    report.add_argument("--pid", metavar="PID", type=int, action="append", default=[],
                        help="only this process; repeatable")
    report.add_argument("--log-format", metavar="FORMAT",
                        help="the logging format of the text lines, when not the default")
    report.add_argument("--width", metavar="COLUMNS", type=int,
                        help="width of the table (default: the terminal's, 160 when piped)")
    commands.add_parser(
        "uvicorn-log-config", help="print uvicorn's logging configuration with request ids (JSON)",
        description="Print, as JSON for uvicorn's --log-config, uvicorn's default logging "
                    "(errors to stderr, access lines to stdout) with %%(request_id)s in both "
                    "formats.")
    args = parser.parse_args(argv)
    if args.command == "uvicorn-log-config":
        from .integrations.server_logs import uvicorn_log_config

        json.dump(uvicorn_log_config(), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    from .report import Filters, run_report

    if args.log_format is not None and "%(message)s" not in args.log_format:
        parser.error("--log-format must contain %(message)s")
    filters = Filters(since=args.since, until=args.until, routes=args.route, pids=args.pid)
    return run_report(args.logs_dir, html=args.html, output=args.output, filters=filters,
                      log_format=args.log_format, width=args.width)


def _moment(text: str) -> float:
    from .report import parse_moment

    try:
        return parse_moment(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


if __name__ == "__main__":
    sys.exit(main())
