"""What the ASGI middleware adds to one request, in process CPU time, against a bare Starlette
app and its peers (asgi-correlation-id first: an id and a header, no measurement, no log line),
all cases measured in turn in each round of one run; and what the Prometheus and OpenTelemetry
exporters add to it.

Run: ``python -m benchmarks.run_all --only bench_middleware`` (or ``make bench`` for all).
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from benchmarks.common import cpu_asgi_us, cpu_calls_us, opcodes_per_request, table, verdict
from benchmarks.instructions import instructions_per_request
from benchmarks.middleware_cases import cases, installed, reset, starlette_app

ROOT = Path(__file__).resolve().parent.parent
# The most our added cost may be, in multiples of asgi-correlation-id's (issue 12).
TARGETS = {"text": 2.0, "default": 2.5}
JSON_TARGET = 1.3  # JSON lines' added cost / text lines' added cost
EXPORTER_ROWS = (  # (label, case, the case it adds to)
    ("PrometheusExporter", "prom", "text"),
    ("memory guard (memory_budget, rss_limit)", "guard", "text"),
    ("OpenTelemetryExporter, metrics only (no span)", "otel_metrics", "text"),
    ("OpenTelemetryExporter, span attributes + metrics, under OpenTelemetry ASGI",
     "otel_exporter", "otel_ours"),
)


#: The cases whose lines must go to the set-up's files only (no handler of anyone else's).
OWN_FILES_CASES = ("default", "text", "json")


def check_own_files(defined: Dict[str, Tuple[str, Any]]) -> None:
    """Refuse to measure when something left in this process (a handler on the request
    logger or the root) would make those cases' set-ups hand their lines to ``logging`` too:
    their figures would not be what a service gets."""
    from sherlock_ai.logs import writer

    for key in OWN_FILES_CASES:
        set_up = defined[key][1][0]
        set_up()
        try:
            current = writer.current
            if not isinstance(current, writer.ToFiles) or current.pass_to_logging:
                raise RuntimeError(f"case {key!r}: its lines would be handed to logging too; "
                                   "something in this process added a handler")
        finally:
            reset()


def in_process(number: int, rounds: int) -> Dict[str, Tuple[str, List[float]]]:
    """key -> (label, CPU µs per request in each round)."""
    defined = cases()
    check_own_files(defined)
    measured = []
    for _, (set_up, wrap) in defined.values():
        measured.append((wrap(starlette_app()), set_up, reset))
    reset()
    per_round = cpu_asgi_us(measured, "/items/1", number, rounds)
    return {key: (label, figures) for (key, (label, _)), figures in zip(defined.items(),
                                                                          per_round)}


def opcodes(keys: Sequence[str]) -> Dict[str, float]:
    """key -> Python bytecode instructions per request, for the cases ``keys``."""
    defined = cases()
    out = {}
    for key in keys:
        set_up, wrap = defined[key][1]
        out[key] = opcodes_per_request(wrap(starlette_app()), set_up, reset, "/items/1")
    return out


def _median_of(values: Sequence[float]) -> float:
    return statistics.median(values)


def added(rows: Dict[str, Tuple[str, List[float]]], key: str, over: str = "bare") -> float:
    """Median over rounds of ``key``'s cost minus ``over``'s in the same round."""
    return _median_of([a - b for a, b in zip(rows[key][1], rows[over][1])])


def ratios(rows: Dict[str, Tuple[str, List[float]]], key: str, over: str = "bare",
           to: str = "cid") -> List[float]:
    """(``key`` - ``over``) / (``to`` - bare) in each round, from that round's figures."""
    bare, base, ref = rows["bare"][1], rows[over][1], rows[to][1]
    return [(k - o) / (r - b) for k, o, r, b in zip(rows[key][1], base, ref, bare)]


def ratio(rows: Dict[str, Tuple[str, List[float]]], key: str, over: str = "bare",
          to: str = "cid") -> float:
    """Median over rounds of :func:`ratios`."""
    return _median_of(ratios(rows, key, over, to))


def target_verdicts(rows: Dict[str, Tuple[str, List[float]]]) -> List[str]:
    """Issue 12's in-process targets, one sentence each: the median over the rounds, their
    range (one round can be far from the next on a shared machine) and the verdict."""
    out = []
    for key, to, what, limit in (
            ("text", "cid", "One text file adds", TARGETS["text"]),
            ("default", "cid", "The default set-up adds", TARGETS["default"]),
            ("json", "text", "JSON lines add", JSON_TARGET)):
        if key not in rows or to not in rows:
            continue
        per_round = ratios(rows, key, to=to)
        median = _median_of(per_round)
        whose = "asgi-correlation-id's" if to == "cid" else "what text lines add"
        held = verdict(median, per_round, lambda value, limit=limit: value <= limit)
        out.append(f"- {what} {median:.2f}x {whose}, rounds {min(per_round):.2f}x to "
                   f"{max(per_round):.2f}x (target: at most {limit:.1f}x; {held}).")
    return out


def request_table(rows: Dict[str, Tuple[str, List[float]]], ops: Dict[str, float],
                  instructions: Dict[str, float]) -> str:
    body = []
    for key, (label, figures) in rows.items():
        target = f"≤ {TARGETS[key]:.1f}x" if key in TARGETS else ""
        count = f"{ops[key]:,.0f}" if key in ops else ""
        machine = f"{instructions[key]:,.0f}" if key in instructions else ""
        if key == "bare":
            body.append((label, _median_of(figures), "", "", "", "", count, machine))
            continue
        per_round = ratios(rows, key)
        body.append((label, _median_of(figures), added(rows, key),
                     f"{_median_of(per_round):.2f}x",
                     f"{min(per_round):.2f}x to {max(per_round):.2f}x", target, count, machine))
    return table(["case", "CPU µs / request", "added µs", "added ÷ asgi-correlation-id's",
                  "range over rounds", "target", "bytecodes / request",
                  "instructions / request"], body)


def instruction_counts(keys: Sequence[str]) -> Dict[str, float]:
    """key -> machine instructions per request (cachegrind), for the cases ``keys``; empty
    without valgrind."""
    out = {}
    for key in keys:
        count = instructions_per_request(key)
        if count is None:
            return {}
        out[key] = count
    return out


def instruction_summary(instructions: Dict[str, float], quick: bool = False) -> str:
    """What the instruction counts say of the ratios to asgi-correlation-id."""
    if quick:
        return "Instructions are not counted in a quick run."
    if not instructions:
        return ("Instructions were not counted in this run: valgrind was not found (Debian: "
                "`apt-get install valgrind`).")
    bare, cid = instructions["bare"], instructions["cid"]

    def over_cid(key: str) -> str:
        return f"{(instructions[key] - bare) / (cid - bare):.2f}x"

    return ("Counted in instructions, what a request adds over the bare app is "
            + ", ".join(f"{over_cid(key)} asgi-correlation-id's for {label}"
                        for key, label in (("default", "the default set-up"),
                                           ("text", "one text file"), ("json", "one JSON file"),
                                           ("no_line", "no line"), ("floor", "the floor"))
                        if key in instructions)
            + ". CPU time also counts the system calls (asgi-correlation-id makes none) and "
            "the time lost to cache misses, which grow with the code and data a request "
            "touches; instructions count neither.")


def exporter_table(rows: Dict[str, Tuple[str, List[float]]], hooks: Dict[str, float]) -> str:
    body = []
    for label, key, base in EXPORTER_ROWS:
        if key not in rows:
            continue
        body.append((label, added(rows, key, base), f"{ratio(rows, key, base):.2f}x",
                     hooks.get(key, "")))
    return table(["exporter", "added µs / request", "added ÷ asgi-correlation-id's",
                  "its hooks alone, µs / request"], body)


def _request_measurement() -> Any:
    from sherlock_ai.engine.measurement import SUCCESS, Measurement

    return Measurement("memory", "GET /items/{item_id}", SUCCESS, 0.0004, 20, "a" * 32,
                       rss=50_000_000, rss_change=4096, concurrent=1,
                       attributes={"method": "GET", "route": "/items/{item_id}",
                                   "status_code": 200}, protocol="asgi")


def exporter_hooks(number: int, rounds: int) -> Dict[str, float]:
    """CPU µs of each exporter's per-request hooks (request_started, measurement_ended) on a
    prebuilt request measurement, outside any request: the part the exporter controls."""
    from prometheus_client import CollectorRegistry

    from sherlock_ai.exporters.prometheus import PrometheusExporter

    m = _request_measurement()
    prom = PrometheusExporter(registry=CollectorRegistry())
    # The exporter reads only the request's protocol (a web request's gauge, or a task's).
    request = SimpleNamespace(protocol="asgi")

    def prometheus() -> None:
        prom.request_started(request)  # type: ignore[arg-type]
        prom.measurement_ended(m)

    calls: List[Tuple[str, Callable[[], None]]] = [("prom", prometheus)]
    if installed("opentelemetry.sdk"):
        from benchmarks.middleware_cases import _meter_provider
        from sherlock_ai.exporters.opentelemetry import OpenTelemetryExporter

        otel = OpenTelemetryExporter(meter_provider=_meter_provider(), span_attributes=False)
        calls.append(("otel_metrics", lambda: otel.measurement_ended(m)))
        spans = _span_hooks(m)
        if spans is not None:
            calls.append(("otel_exporter", spans))
    figures = cpu_calls_us([(func, number) for _, func in calls], rounds)
    return {key: us for (key, _), us in zip(calls, figures)}


def _span_hooks(m: Any) -> Optional[Callable[[], None]]:
    """The exporter's hook inside an open server span of an SDK tracer provider."""
    from opentelemetry import trace

    from benchmarks.middleware_cases import _meter_provider, _tracer_provider
    from sherlock_ai.exporters.opentelemetry import OpenTelemetryExporter

    provider = _tracer_provider()
    exporter = OpenTelemetryExporter(meter_provider=_meter_provider(), tracer_provider=provider)
    tracer = provider.get_tracer("bench")
    span = tracer.start_span("GET /items/{item_id}", kind=trace.SpanKind.SERVER)
    context = trace.set_span_in_context(span)

    def hook() -> None:
        from opentelemetry import context as otel_context

        token = otel_context.attach(context)
        try:
            exporter.measurement_ended(m)
        finally:
            otel_context.detach(token)

    return hook


def run(quick: bool = False) -> Dict[str, str]:
    """The figures of the section (templates/bench_middleware.md)."""
    number, rounds = (300, 3) if quick else (3_000, 9)
    rows = in_process(number, rounds)
    counted = [key for key in ("bare", "cid", "floor", "default", "root_handler", "text",
                               "json", "no_line")
               if key in rows]
    ops = opcodes(counted)
    instructions = {} if quick else instruction_counts(counted)
    hooks = exporter_hooks(2_000 if quick else 20_000, rounds)
    missing = [name for name, module in (("prometheus-fastapi-instrumentator",
                                          "prometheus_fastapi_instrumentator"),
                                         ("OpenTelemetry ASGI", "opentelemetry.instrumentation"
                                          ".asgi")) if not installed(module)]
    return {
        "rounds": str(rounds),
        "requests_per_round": f"{number:,}",
        "bare_us": f"{_median_of(rows['bare'][1]):.1f}",
        "cid_us": f"{added(rows, 'cid'):.1f}",
        "in_process": request_table(rows, ops, instructions),
        "instructions": instruction_summary(instructions, quick),
        "verdicts": "\n".join(target_verdicts(rows)),
        "missing_peers": ("Peers not installed here, left out: " + ", ".join(missing) + "."
                          if missing else ""),
        "exporters": exporter_table(rows, hooks),
        "hook_calls": f"{2_000 if quick else 20_000:,}",
    }


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    print(run(quick="--quick" in sys.argv))
