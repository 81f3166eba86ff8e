"""Run every ``benchmarks/bench_*.py`` and write their sections to docs/performance.md.

Each benchmark module has ``run() -> str`` returning a markdown section whose figures are
ratios against a baseline measured in the same run. ``python -m benchmarks.run_all [--only NAME]``
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

HEADER = """# Performance

Measured by `make bench` (`python -m benchmarks.run_all`), which rewrites this page. Each
figure is compared with a baseline measured in the same run on the same machine, so the ratios
travel better than the microseconds. Do not read the absolute numbers as promises for your
hardware.

Machine of this run: {machine}.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", help="run one benchmark module, e.g. bench_decorators")
    parser.add_argument("--no-write", action="store_true", help="print, do not write the docs")
    args = parser.parse_args()
    names = sorted(p.stem for p in (ROOT / "benchmarks").glob("bench_*.py"))
    if args.only:
        names = [n for n in names if n == args.only]
    sections = []
    for name in names:
        started = time.perf_counter()
        print(f"running {name} ...", file=sys.stderr, flush=True)
        section = importlib.import_module(f"benchmarks.{name}").run()
        print(section, flush=True)
        print(f"  ({time.perf_counter() - started:.0f}s)", file=sys.stderr)
        sections.append(section)
    if args.no_write or args.only:
        return
    machine = (f"{os.cpu_count()} cores, {platform.machine()}, Python "
               f"{platform.python_version()}, {platform.system()}, {time.strftime('%Y-%m-%d')}")
    text = HEADER.format(machine=machine) + "\n" + "\n".join(sections)
    (ROOT / "docs" / "performance.md").write_text(text, encoding="utf-8")
    print("wrote docs/performance.md", file=sys.stderr)


if __name__ == "__main__":
    main()
