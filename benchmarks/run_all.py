"""Run every ``benchmarks/bench_*.py`` and write docs/performance.md from their figures and the
templates in ``benchmarks/templates/`` (see :mod:`benchmarks.page`): ``make bench`` is the one
way that page changes.

``python -m benchmarks.run_all [--only NAME] [--quick] [--output PATH]``. ``--quick`` runs
reduced sizes (rough figures, a check that everything runs and renders) and writes only to
``--output``; ``--only`` prints one section and writes nothing.

Each section runs in an interpreter of its own: what one benchmark sets up (a handler on a
logger, a record factory, tracemalloc, a consumer) cannot change what the next one measures.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import page  # noqa: E402 - after the path set-up above

DOCS_PAGE = ROOT / "docs" / "performance.md"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", help="run one benchmark module, e.g. bench_decorators")
    parser.add_argument("--quick", action="store_true", help="reduced sizes, rough figures")
    parser.add_argument("--output", type=Path, help="where to write the page "
                        "(default docs/performance.md; --quick writes only here)")
    parser.add_argument("--no-write", action="store_true", help="print, do not write the page")
    parser.add_argument("--section", help=argparse.SUPPRESS)  # one module, in this process
    parser.add_argument("--figures-to", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.section:
        figures = importlib.import_module(args.section).run(quick=args.quick)
        args.figures_to.write_text(json.dumps(figures), encoding="utf-8")
        return
    names = sorted(p.stem for p in (ROOT / "benchmarks").glob("bench_*.py"))
    if args.only:
        names = [n for n in names if n == args.only]
    sections = []
    for name in names:
        started = time.perf_counter()
        print(f"running {name} ...", file=sys.stderr, flush=True)
        figures = run_section(f"benchmarks.{name}", args.quick)
        text = page.section(name, figures)
        print(text, flush=True)
        print(f"  ({time.perf_counter() - started:.0f}s)", file=sys.stderr)
        sections.append(text)
    output = args.output if args.output is not None else None if args.quick else DOCS_PAGE
    if args.no_write or args.only or output is None:
        return
    machine = (f"{os.cpu_count()} cores, {platform.machine()}, Python "
               f"{platform.python_version()}, {platform.system()}, {time.strftime('%Y-%m-%d')}")
    if args.quick:
        machine += " (quick run: reduced sizes, rough figures)"
    output.write_text(page.page(machine, sections), encoding="utf-8")
    print(f"wrote {output}", file=sys.stderr)


def run_section(module: str, quick: bool = False) -> Dict[str, str]:
    """The figures of ``module``'s ``run(quick)``, run in a fresh interpreter (see the module
    docstring); its output goes to this process's stderr."""
    with tempfile.TemporaryDirectory(prefix="sherlock-bench-section-") as folder:
        out = Path(folder) / "figures.json"
        command = [sys.executable, "-m", "benchmarks.run_all", "--section", module,
                   "--figures-to", str(out)] + (["--quick"] if quick else [])
        subprocess.run(command, cwd=ROOT, check=True, stdout=sys.stderr)
        figures: Dict[str, str] = json.loads(out.read_text(encoding="utf-8"))
        return figures


if __name__ == "__main__":
    main()
