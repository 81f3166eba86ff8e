"""The ``sherlock-ai`` command (also ``python -m sherlock_ai``).

    sherlock-ai report LOGS_DIR [--html FILE]
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
        description="Read the text and JSON logs sherlock_ai wrote in LOGS_DIR (rotated files "
                    "included) and print per-route figures and leak suspects.")
    report.add_argument("logs_dir", metavar="LOGS_DIR", type=Path)
    report.add_argument("--html", metavar="FILE", help="also write a self-contained HTML page")
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
    from .report import run_report

    return run_report(args.logs_dir, html=args.html)


if __name__ == "__main__":
    sys.exit(main())
