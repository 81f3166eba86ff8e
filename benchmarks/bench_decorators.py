"""Per-call cost of the decorators, as ratios to a plain ``logger.info`` measured in the same run.

Every figure goes through the same handler: the specification's text format, writing to
/dev/null. Run: ``python benchmarks/bench_decorators.py`` (or ``make bench``).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import timeit

import sherlock_ai
from sherlock_ai import log_performance, monitor_memory
from sherlock_ai.log_records import install_request_id_factory

N = 20_000
REPEAT = 7


def _per_call_us(stmt) -> float:
    timer = timeit.Timer(stmt)
    return min(timer.repeat(repeat=REPEAT, number=N)) / N * 1e6


def _handler() -> logging.Handler:
    install_request_id_factory()
    handler = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115 - lives for the run
    handler.setFormatter(logging.Formatter(sherlock_ai.logging_setup.DEFAULT_FORMAT,
                                           sherlock_ai.logging_setup.DEFAULT_DATE_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    return handler


def import_time_ms() -> float:
    """Median of 5 fresh interpreters importing sherlock_ai (interpreter start subtracted)."""
    code = "import time; t=time.perf_counter(); import sherlock_ai; print(time.perf_counter()-t)"
    runs = sorted(
        float(subprocess.check_output([sys.executable, "-c", code], text=True)) for _ in range(5)
    )
    return runs[2] * 1000


def run() -> dict:
    _handler()
    log = logging.getLogger("MonitoringLogger")

    def nothing():
        return None

    plain = monitor_memory(trace_malloc=False)(nothing)
    traced = monitor_memory(trace_malloc=True)(nothing)
    quiet = monitor_memory(trace_malloc=False, min_duration=1.0)(nothing)
    perf = log_performance(nothing)

    bare = _per_call_us(nothing)
    line = "MEMORY | bench.nothing | SUCCESS | 0.000s | Current: 1.00MB | Change: +0.00B"
    baseline = _per_call_us(lambda: log.info(line))
    results = {
        "logger.info (baseline)": baseline,
        "@monitor_memory(trace_malloc=False)": _per_call_us(plain) - bare,
        "@monitor_memory(trace_malloc=True)": _per_call_us(traced) - bare,
        "@monitor_memory under min_duration (no line)": _per_call_us(quiet) - bare,
        "@log_performance": _per_call_us(perf) - bare,
    }
    return {"baseline_us": baseline, "rows": results, "import_ms": import_time_ms()}


def main() -> None:
    out = run()
    base = out["baseline_us"]
    print(f"{'case':48} {'us/call':>9} {'x logger.info':>14}")
    for name, us in out["rows"].items():
        print(f"{name:48} {us:9.2f} {us / base:14.2f}")
    print(f"import sherlock_ai: {out['import_ms']:.1f} ms")


if __name__ == "__main__":
    main()
