"""The ``sherlock-ai`` command (also ``python -m sherlock_ai``).

    sherlock-ai report LOGS_DIR [--html FILE]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command; returns its exit status."""
    parser = argparse.ArgumentParser(prog="sherlock-ai", description="sherlock_ai's tools")
    commands = parser.add_subparsers(dest="command", required=True)
    report = commands.add_parser(
        "report", help="per-route tables (and an HTML page) from sherlock_ai's log files",
        description="Read the text and JSON logs sherlock_ai wrote in LOGS_DIR (rotated files "
                    "included) and print per-route figures and leak suspects.")
    report.add_argument("logs_dir", metavar="LOGS_DIR", type=Path)
    report.add_argument("--html", metavar="FILE", help="also write a self-contained HTML page")
    args = parser.parse_args(argv)
    from .report import run_report

    return run_report(args.logs_dir, html=args.html)


if __name__ == "__main__":
    sys.exit(main())
