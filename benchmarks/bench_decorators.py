"""Per-call cost of the decorators, as ratios to a plain ``logger.info`` measured in the same run,
in process CPU time (medians of interleaved rounds).

Every line goes to the same handlers: the default ``sherlock_ai()`` set-up (text lines into
app.log and monitoring.log of a temporary folder, console off), and the baseline logs one
MEMORY-sized line to ``MonitoringLogger``, where the decorators' lines go.
Run: ``python -m benchmarks.bench_decorators`` (or ``make bench`` for all).
"""

from __future__ import annotations

import compileall
import logging
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

from benchmarks.common import cpu_calls_us, table
from benchmarks.middleware_cases import default_setup, reset
from sherlock_ai import log_performance, monitor_memory, monitor_resources

ROOT = Path(__file__).resolve().parent.parent
TARGETS = {  # the most each case may cost, in multiples of the logger.info baseline (issue 12)
    "@monitor_memory(trace_malloc=False)": 1.5,
    "@monitor_memory(trace_malloc=True)": 2.5,
    "@monitor_memory under min_duration (no line)": 0.6,
}


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


def measure(calls_per_case: int, rounds: int, interpreters: int) -> dict:
    reset()
    default_setup()
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
    try:
        bare, baseline, *measured = cpu_calls_us(calls, rounds)
    finally:
        reset()
    rows = {name: us - bare for name, us in zip(cases, measured)}
    return {"baseline": baseline - bare, "rows": rows,
            "import_ms": import_time_ms(interpreters)}


def run(quick: bool = False) -> Dict[str, str]:
    """The figures of the section (templates/bench_decorators.md)."""
    rounds, interpreters = (3, 3) if quick else (9, 9)
    out = measure(2_000 if quick else 20_000, rounds, interpreters)
    imports = out["import_ms"]
    base = out["baseline"]
    per_call = table(
        ["case", "CPU µs per call", "× logger.info", "target"],
        [("plain `logger.info` (baseline)", base, 1.0, "")]
        + [(f"`{name}`", us, us / base, f"≤ {TARGETS[name]}×" if name in TARGETS else "")
           for name, us in out["rows"].items()],
    )
    return {
        "rounds": str(rounds),
        "per_call": per_call,
        "import_ms": f"{imports['sherlock_ai']:.1f}",
        "baseline_import_ms": f"{imports['baseline']:.1f}",
        "stdlib_modules": STDLIB_BASELINE,
        "interpreters": str(interpreters),
    }


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
