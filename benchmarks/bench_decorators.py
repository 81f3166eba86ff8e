"""Per-call cost of the decorators, as ratios to a plain ``logger.info`` measured in the same run.

Every figure goes through the same handler: the specification's text format, writing to
/dev/null. Run: ``python -m benchmarks.bench_decorators`` (or ``make bench`` for all).
"""

from __future__ import annotations

import compileall
import logging
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

from benchmarks.common import per_call_interleaved_us, table
from sherlock_ai import log_performance, monitor_memory, monitor_resources
from sherlock_ai.log_records import install_request_id_factory
from sherlock_ai.logging_setup import DEFAULT_DATE_FORMAT, DEFAULT_FORMAT

ROOT = Path(__file__).resolve().parent.parent
TARGETS = {  # the most each case may cost, in multiples of the logger.info baseline
    "@monitor_memory(trace_malloc=False)": 2.0,
    "@monitor_memory(trace_malloc=True)": 3.0,
    "@monitor_memory under min_duration (no line)": 0.6,
}


def _route_logs_to_devnull() -> None:
    install_request_id_factory()
    handler = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115 - lives for the run
    handler.setFormatter(logging.Formatter(DEFAULT_FORMAT, DEFAULT_DATE_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


STDLIB_BASELINE = "logging, dataclasses, threading, re, typing"


def import_time_ms() -> Dict[str, float]:
    """Median time of ``import sherlock_ai`` and of importing the standard modules it builds
    on (the baseline), in 9 fresh interpreters each, taking turns; sherlock_ai's bytecode is
    compiled first, as a pip install does."""
    compileall.compile_dir(str(ROOT / "sherlock_ai"), quiet=1)
    timed = "import time; t = time.perf_counter(); import {}; print(time.perf_counter() - t)"
    runs: Dict[str, List[float]] = {"sherlock_ai": [], "baseline": []}
    for _ in range(9):
        for key, modules in (("sherlock_ai", "sherlock_ai"), ("baseline", STDLIB_BASELINE)):
            out = subprocess.check_output([sys.executable, "-c", timed.format(modules)], text=True)
            runs[key].append(float(out) * 1000)
    return {key: statistics.median(values) for key, values in runs.items()}


def measure() -> dict:
    _route_logs_to_devnull()
    log = logging.getLogger("MonitoringLogger")

    def nothing():
        return None

    line = "MEMORY | bench.nothing | SUCCESS | 0.000s | Current: 1.00MB | Change: +0.00B"
    cases = {
        "@monitor_memory(trace_malloc=False)": monitor_memory(trace_malloc=False)(nothing),
        "@monitor_memory(trace_malloc=True)": monitor_memory(trace_malloc=True)(nothing),
        "@monitor_memory under min_duration (no line)":
            monitor_memory(trace_malloc=False, min_duration=1.0)(nothing),
        "@log_performance": log_performance(nothing),
        "@monitor_resources": monitor_resources(nothing),
    }
    calls = [(nothing, 20_000), (lambda: log.info(line), 20_000)] + [
        (func, 5_000 if "resources" in name else 20_000) for name, func in cases.items()]
    bare, baseline, *measured = per_call_interleaved_us(calls)
    rows = {name: us - bare for name, us in zip(cases, measured)}
    return {"baseline": baseline, "rows": rows, "import_ms": import_time_ms()}


def run() -> str:
    """The markdown section for docs/performance.md."""
    out = measure()
    imports = out["import_ms"]
    base = out["baseline"]
    body = table(
        ["case", "µs per call", "× logger.info", "target"],
        [("plain `logger.info` (baseline)", base, 1.0, "")]
        + [(f"`{name}`", us, us / base, f"≤ {TARGETS[name]}×" if name in TARGETS else "")
           for name, us in out["rows"].items()],
    )
    return (
        "## Decorators, per call\n\n"
        "Cost added to a call of an empty function, against one `logger.info` through the same\n"
        "formatting handler (the specification's text format, written to /dev/null), both\n"
        "measured in the same run (best of 7 repeats).\n\n"
        f"{body}\n\n`import sherlock_ai`: {imports['sherlock_ai']:.1f} ms, against "
        f"{imports['baseline']:.1f} ms for `import {STDLIB_BASELINE}` (the standard modules it "
        "builds on), medians of 9 fresh interpreters each, in the same run (target: under "
        "40 ms).\n"
    )


if __name__ == "__main__":
    print(run())
