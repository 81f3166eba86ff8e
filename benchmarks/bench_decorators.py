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
from sherlock_ai.logs.records import install_request_id_factory
from sherlock_ai.logs.setup import DEFAULT_DATE_FORMAT, DEFAULT_FORMAT

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


def import_time_ms(interpreters: int = 9) -> Dict[str, float]:
    """Median time of ``import sherlock_ai`` and of importing the standard modules it builds
    on (the baseline), in ``interpreters`` fresh interpreters each, taking turns;
    sherlock_ai's bytecode is compiled first, as a pip install does."""
    compileall.compile_dir(str(ROOT / "sherlock_ai"), quiet=1)
    timed = "import time; t = time.perf_counter(); import {}; print(time.perf_counter() - t)"
    runs: Dict[str, List[float]] = {"sherlock_ai": [], "baseline": []}
    for _ in range(interpreters):
        for key, modules in (("sherlock_ai", "sherlock_ai"), ("baseline", STDLIB_BASELINE)):
            out = subprocess.check_output([sys.executable, "-c", timed.format(modules)], text=True)
            runs[key].append(float(out) * 1000)
    return {key: statistics.median(values) for key, values in runs.items()}


def measure(calls_per_case: int, repeat: int, interpreters: int) -> dict:
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
    calls = [(nothing, calls_per_case), (lambda: log.info(line), calls_per_case)] + [
        (func, calls_per_case // 4 if "resources" in name else calls_per_case)
        for name, func in cases.items()]
    bare, baseline, *measured = per_call_interleaved_us(calls, repeat)
    rows = {name: us - bare for name, us in zip(cases, measured)}
    return {"baseline": baseline, "rows": rows, "import_ms": import_time_ms(interpreters)}


def run(quick: bool = False) -> Dict[str, str]:
    """The figures of the section (templates/bench_decorators.md)."""
    repeat, interpreters = (2, 3) if quick else (7, 9)
    out = measure(2_000 if quick else 20_000, repeat, interpreters)
    imports = out["import_ms"]
    base = out["baseline"]
    per_call = table(
        ["case", "µs per call", "× logger.info", "target"],
        [("plain `logger.info` (baseline)", base, 1.0, "")]
        + [(f"`{name}`", us, us / base, f"≤ {TARGETS[name]}×" if name in TARGETS else "")
           for name, us in out["rows"].items()],
    )
    return {
        "repeats": str(repeat),
        "per_call": per_call,
        "import_ms": f"{imports['sherlock_ai']:.1f}",
        "baseline_import_ms": f"{imports['baseline']:.1f}",
        "stdlib_modules": STDLIB_BASELINE,
        "interpreters": str(interpreters),
    }


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
