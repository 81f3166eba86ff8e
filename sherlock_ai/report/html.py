"""The report as one self-contained HTML page: the answers first (leak suspects, the memory
guard's budget and limit events, worker recycles), then inline SVG charts stretched to the
page width, values on hover (a small inline script, with the SVG titles as the fallback), no
network; it prints as it shows. Its size is bounded whatever the logs hold (time axes,
lines drawn, rows).

Every text that comes from the logs (names, file names) is HTML-escaped.
"""

from __future__ import annotations

from html import escape
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from ..deaths.telling import WorkerDeath
from . import charts as c
from . import overlay as o
from .console import site_text, summary
from .deaths import death_marks, deaths_html, on_timeline
from .reader import ReadStats
from .sketch import Distribution
from .stats import MORE_PROCESSES, NameStats, Report
from .units import change, seconds, size, when

BOX_ROWS = 20
# Processes drawn on the RSS timeline (those with the largest RSS); the others are named.
RSS_LINES = 16

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em 2em;color:#222}
svg.chart{display:block;width:100%;height:auto;margin:.5em 0 1.5em}
svg text{font:12px system-ui,sans-serif;fill:#444}
.grid{stroke:#e3e3e3}.axis{stroke:#999}.hit{fill:transparent}.hit:hover{fill:#000}
.legend span{margin-right:1.2em;white-space:nowrap}
.legend i{display:inline-block;width:.9em;height:.9em;margin-right:.3em;vertical-align:-.1em}
table{border-collapse:collapse;margin:1em 0}
th,td{padding:4px 10px;border-bottom:1px solid #ddd;text-align:right}
th:first-child,td:first-child{text-align:left;overflow-wrap:anywhere}
tr.leak td{color:#b00020;font-weight:600}
.note{color:#666}
@media print{body{margin:0}svg.chart{break-inside:avoid}.hit{display:none}}
"""


def write_html(report: Report, stats: ReadStats, path: str,
               deaths: Sequence[WorkerDeath] = ()) -> None:
    """Write the page to ``path``."""
    with open(path, "w", encoding="utf-8") as out:
        out.write(render_html(report, stats, deaths))


def render_html(report: Report, stats: ReadStats, deaths: Sequence[WorkerDeath] = ()) -> str:
    """The whole page (``deaths``: the worker deaths of the folder, at the top)."""
    activity = report.activity.series()
    largest = sorted(activity, key=lambda pid: -(report.processes[pid].rss_max or 0)
                     if pid in report.processes else 0)[:RSS_LINES]
    pids = sorted(largest, key=lambda pid: (activity[pid][0][0], str(pid)))
    keys = [(_pid_label(pid), c.color(i)) for i, pid in enumerate(pids)]
    hidden = len(activity) - len(pids)
    drawn = on_timeline(deaths, report.first, report.last)
    end = max((death.ended_by for death in drawn), default=None)
    return "".join([
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<title>sherlock_ai report</title><style>", _STYLE, o.HOVER_STYLE,
        "</style></head><body>",
        "<h1>sherlock_ai report</h1>",
        *(f"<p class='note'>{escape(line)}</p>" for line in summary(report, stats)),
        f"<p class='note'>{stats.bad_lines} unreadable lines skipped.</p>",
        deaths_html(deaths),
        "<h2>Leak suspects</h2>", _suspects_table(report),
        "<h2>Memory budget and limit events</h2>", _guard_table(report),
        "<h2>Process memory (RSS) over time</h2>",
        "<p class='note'>Mean RSS at the end of the measured blocks, per time bucket of "
        f"{_step(report)}, one line per process; a line stops where its process logged "
        "nothing for a while (idle, or restarted). Dashed red: leak-suspect warnings; orange "
        "ticks: memory-budget warnings; purple: RSS over the memory limit (the dotted level), "
        "green: back under it. Black dash-dot lines with a cross at the last RSS: worker "
        "deaths (hover for the requests in flight).</p>",
        (f"<p class='note'>{hidden} more processes are not drawn (the {RSS_LINES} with the "
         "largest RSS are).</p>" if hidden > 0 else ""),
        (f"<p class='note'>{len(deaths) - len(drawn)} worker deaths fall outside these "
         "records' time and are in the table only.</p>" if len(drawn) < len(deaths) else ""),
        c.legend(keys), _rss_svg(report, pids, drawn, end),
        "<h2>Records per second</h2>",
        "<p class='note'>Web requests (names starting with an HTTP method) per second, all "
        "processes together; grey: other measured blocks.</p>", _rate_svg(report, end),
        "<h2>Process RSS change during each record, by name</h2>",
        "<p class='note'>The whole process's RSS at the end of a record minus at its start, "
        "not the memory the name kept: with concurrent requests it holds what the others did "
        "meanwhile, and allocators keep freed memory. Which route leaks is the leak "
        "suspects' answer above. Box: 25th to 75th percentile, thick line: median, whiskers: "
        "5th to 95th percentile; a dot is a name with one record. Logarithmic scale on both "
        "sides of zero, so that small and large changes both show.</p>",
        _boxes_svg(report.ranked(), lambda s: s.rss_change, 1024.0, c.size_label, change,
                   "memory-dist"),
        "<h2>Duration, by name</h2>",
        "<p class='note'>Same boxes, logarithmic scale.</p>",
        _boxes_svg(report.ranked(), lambda s: s.duration, 0.001, seconds, seconds,
                   "duration-dist"),
        "<h2>All names</h2>", _names_table(report),
        o.HOVER_SCRIPT, "</body></html>",
    ])


def _step(report: Report) -> str:
    step = report.activity.step
    if step < 1:
        return f"{step * 1000:.0f} ms"
    return f"{step:g} s" if step < 120 else f"{step / 60:g} min"


def _frame(report: Report, end: Optional[float] = None
           ) -> Tuple[float, float, Callable[[float], float]]:
    """The time axis of the charts: the records' time, to ``end`` (a death drawn) if later."""
    t0 = report.first if report.first is not None else 0.0
    # To the end of the last bucket: the points stand at the middle of theirs.
    t1 = max(report.last if report.last is not None else 0.0, t0 + 1.0) + report.activity.step
    if end is not None:
        t1 = max(t1, end + report.activity.step)
    return t0, t1, c.linear(t0, t1, c.LEFT, c.WIDTH - c.RIGHT)


def _rss_svg(report: Report, pids: Sequence[object], deaths: Sequence[WorkerDeath],
             end: Optional[float]) -> str:
    activity = report.activity.series()
    half = report.activity.step / 2
    lines: Dict[object, List[c.Point]] = {
        pid: [(t + half, cell[3] / cell[2]) for t, cell in activity[pid] if cell[2]]
        for pid in pids}
    values = [v for points in lines.values() for _, v in points]
    if not values:
        return "<p>No RSS figures in these logs.</p>"
    values += o.limits(report.events)
    height, top, bottom = 340, 12, 310
    t0, t1, x = _frame(report, end)
    ticks = c.size_ticks(min(values), max(values))
    low, high = min(values + ticks[:1]), max(values + ticks[-1:])
    y = c.linear(low, high, bottom, top)
    gap = 3 * report.activity.step
    out = [c.svg_open("rss", height, "Process RSS over time", hover=True),
           c.value_axis(y, ticks, size), c.time_axis(x, t0, t1, top, bottom)]
    for i, pid in enumerate(pids):
        if lines[pid]:
            label = _pid_label(pid)
            out.append(c.series_path(
                lines[pid], gap, x, y, c.color(i), label, f"class='series' data-pid='{pid}'",
                _point_title(label)))
    out.append(o.event_marks(report.events, x, y, top, bottom))
    out.append(death_marks(deaths, x, y, top, bottom,
                           {pid: c.color(i) for i, pid in enumerate(pids)}))
    out.append(o.CURSOR)
    out.append("</svg>")
    return "".join(out)


def _rate_svg(report: Report, end: Optional[float]) -> str:
    totals: Dict[float, List[float]] = {}
    for points in report.activity.series().values():
        for t, cell in points:
            total = totals.setdefault(t, [0.0, 0.0])
            total[0] += cell[1]
            total[1] += cell[0] - cell[1]
    if not totals:
        return "<p>No time stamps in these logs.</p>"
    step = report.activity.step
    height, top, bottom = 170, 10, 140
    t0, t1, x = _frame(report, end)
    high = max(sum(v) for v in totals.values()) / step
    ticks = [i * c.nice_step(high, 3) for i in range(5) if i * c.nice_step(high, 3) <= high]
    y = c.linear(0, max(high, ticks[-1]), bottom, top)
    width = max(x(t0 + step) - x(t0) - 0.5, 0.8)
    out = [c.svg_open("rate", height, "Records per second"),
           c.value_axis(y, ticks, lambda v: f"{v:g}/s"), c.time_axis(x, t0, t1, top, bottom)]
    for t, (requests, others) in sorted(totals.items()):
        at = x(t)
        for value, base, fill, what in ((requests, 0.0, "#1565c0", "requests"),
                                        (others, requests, "#9e9e9e", "other records")):
            if value:
                y0, y1 = y(base / step), y((base + value) / step)
                out.append(f"<rect x='{at:.1f}' y='{y1:.1f}' width='{width:.1f}' "
                           f"height='{max(y0 - y1, 0.8):.1f}' fill='{fill}'><title>"
                           f"{escape(when(t))}: {value / step:.3g} {what}/s</title></rect>")
    out.append("</svg>")
    return "".join(out)


def _boxes_svg(names: Sequence[NameStats], pick: Callable[[NameStats], Distribution],
               linear_below: float, tick_label: Callable[[float], str],
               value_label: Callable[[Optional[float]], str], chart: str) -> str:
    rows = [(s, pick(s)) for s in names if pick(s).count][:BOX_ROWS]
    if not rows:
        return "<p>No figures for distributions.</p>"
    boxes = [(s, d, [d.quantile(q) or 0.0 for q in (0.05, 0.25, 0.5, 0.75, 0.95)])
             for s, d in rows]
    low = min(min(q[0] for _, _, q in boxes), 0.0)
    high = max(max(q[-1] for _, _, q in boxes), 0.0)
    ticks = _log_ticks(low, high, linear_below)
    left, row = 330, 26
    height = row * len(boxes) + 34
    scale = c.linear(c.symlog(min(low, ticks[0]), linear_below),
                     c.symlog(max(high, ticks[-1]), linear_below), left, c.WIDTH - c.RIGHT)

    def x(v: float) -> float:
        return scale(c.symlog(v, linear_below))

    out = [c.svg_open(chart, height, chart.replace("-", " "))]
    for tick in ticks:
        at = x(tick)
        anchor = "end" if at > c.WIDTH - 40 else "middle"
        out.append(f"<line class='grid' x1='{at:.1f}' x2='{at:.1f}' y1='0' "
                   f"y2='{height - 22}'/><text x='{at:.1f}' y='{height - 6}' "
                   f"text-anchor='{anchor}'>{escape(tick_label(tick))}</text>")
    for i, (s, d, (p5, p25, p50, p75, p95)) in enumerate(boxes):
        mid = i * row + 14
        tip = escape(f"{s.name}: {d.count} records, median {value_label(p50)}, 25-75% "
                     f"{value_label(p25)} to {value_label(p75)}, 5-95% {value_label(p5)} to "
                     f"{value_label(p95)}, max {value_label(d.high)}")
        out.append(f"<g class='box'><title>{tip}</title>"
                   f"<text x='4' y='{mid + 4}'>{escape(_short(s.name))}</text>")
        if d.count == 1:
            out.append(f"<circle cx='{x(p50):.1f}' cy='{mid}' r='4' fill='#0d47a1'/></g>")
            continue
        out.append(f"<line x1='{x(p5):.1f}' x2='{x(p95):.1f}' y1='{mid}' y2='{mid}' "
                   "stroke='#555'/><rect x='{:.1f}' y='{}' width='{:.1f}' height='14' "
                   "fill='#90caf9' stroke='#1565c0'/>".format(
                       x(p25), mid - 7, max(x(p75) - x(p25), 1.5))
                   + f"<line x1='{x(p50):.1f}' x2='{x(p50):.1f}' y1='{mid - 8}' "
                   f"y2='{mid + 8}' stroke='#0d47a1' stroke-width='2.5'/></g>")
    out.append("</svg>")
    more = len([s for s in names if pick(s).count]) - len(rows)
    note = f"<p class='note'>{more} more names in the table below.</p>" if more > 0 else ""
    return "".join(out) + note


def _log_ticks(low: float, high: float, unit: float) -> List[float]:
    """0 and powers of 32 (sizes) or 10 (times) of ``unit`` on each side, within range."""
    base = 32 if unit >= 1024 else 10
    out = [0.0]
    for sign, end in ((1, high), (-1, -low)):
        value = unit
        while value <= end * base and len(out) < 16:
            out.append(sign * value)
            value *= base
    return sorted(out)


def _short(name: str, limit: int = 48) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


def _pid_label(pid: object) -> str:
    return ("no pid in the lines" if pid is None else "other processes"
            if pid == MORE_PROCESSES else f"pid {pid}")


def _point_title(label: str) -> Callable[[c.Point], str]:
    """The hover text of one point of the RSS line labelled ``label``."""
    def title(p: c.Point) -> str:
        return f"{label}, {when(p[0])}: {size(p[1])}"
    return title


def _guard_table(report: Report) -> str:
    """The memory guard's events, in time order (worker recycles first, counted)."""
    events = sorted((e for e in report.events if e[1] != "leak_suspect"), key=lambda e: e[0])
    if not events:
        return "<p>None in these logs.</p>"
    recycles = [e for e in events if e[4].get("state") == "recycling"]
    head = (f"<p><b>{len(recycles)} worker recycles</b> (pids "
            f"{escape(', '.join(sorted({str(e[3]) for e in recycles})))}).</p>"
            if recycles else "<p>No worker recycles.</p>")
    rows = "".join(f"<tr><td>{escape(when(e[0]))}</td><td>{escape(str(e[3] or '-'))}</td>"
                   f"<td>{escape(o.event_text(e))}</td></tr>" for e in events)
    return (head + "<table><tr><th>Time</th><th>PID</th><th>What</th></tr>"
            f"{rows}</table>")


def _suspects_table(report: Report) -> str:
    if not report.suspects:
        return "<p>None in these logs.</p>"
    rows = "".join(
        f"<tr class='leak'><td>{escape(s.name)}</td><td>+{escape(size(s.per_request))}"
        f"</td><td>{escape(site_text(s))}</td><td>{escape(when(s.first_seen))}</td>"
        f"<td>{s.warnings}</td></tr>"
        for s in sorted(report.suspects.values(), key=lambda s: -s.per_request)
    )
    return ("<table><tr><th>Name</th><th>Retained per request</th><th>Where</th>"
            f"<th>First seen</th><th>Warnings</th></tr>{rows}</table>")


def _names_table(report: Report) -> str:
    header = "".join(f"<th>{h}</th>" for h in (
        "Name", "Count", "Errors", "p50", "p95", "Max", "RSS change mean", "RSS change max",
        "Traced peak max"))
    rows = []
    for s in report.ranked():
        d, m = s.duration, s.rss_change
        cells = [s.name, str(s.count), str(s.errors), seconds(d.quantile(0.5)),
                 seconds(d.quantile(0.95)), seconds(d.high if d.count else None),
                 change(m.mean), change(m.high if m.count else None), size(s.traced_peak_max)]
        css = " class='leak'" if s.name in report.suspects else ""
        rows.append(f"<tr{css}>" + "".join(f"<td>{escape(x)}</td>" for x in cells) + "</tr>")
    return f"<table><tr>{header}</tr>{''.join(rows)}</table>"
