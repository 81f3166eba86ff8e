"""Per-call cost of the decorators, as ratios to a plain ``logger.info`` measured in the same run.

Every figure goes through the same handler: the specification's text format, writing to
/dev/null. Run: ``python -m benchmarks.bench_decorators`` (or ``make bench`` for all).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys

from benchmarks.common import per_call_interleaved_us, table
from sherlock_ai import log_performance, monitor_memory, monitor_resources
from sherlock_ai.log_records import install_request_id_factory
from sherlock_ai.logging_setup import DEFAULT_DATE_FORMAT, DEFAULT_FORMAT

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


def import_time_ms() -> float:
    """Median of 7 fresh interpreters importing sherlock_ai."""
    code = "import time; t=time.perf_counter(); import sherlock_ai; print(time.perf_counter()-t)"
    runs = sorted(
        float(subprocess.check_output([sys.executable, "-c", code], text=True)) for _ in range(7)
    )
    return runs[3] * 1000


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
        f"{body}\n\n`import sherlock_ai`: {out['import_ms']:.1f} ms (median of 7 fresh "
        "interpreters; target < 40 ms).\n"
    )


if __name__ == "__main__":
    print(run())
