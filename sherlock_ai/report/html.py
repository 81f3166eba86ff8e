"""The report as one self-contained HTML page: inline SVG charts, no script, no network.

Every text that comes from the logs (names, file names) is HTML-escaped.
"""

from __future__ import annotations

from datetime import datetime
from html import escape
from typing import List, Sequence, Tuple

from ..formatting import format_bytes, format_change
from .console import seconds, site_text, when
from .reader import ReadStats
from .stats import NameStats, Report, percentile

WIDTH, HEIGHT, PAD = 900, 260, 56
BOX_ROWS = 12

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}
th,td{padding:4px 10px;border-bottom:1px solid #ddd;text-align:right}
th:first-child,td:first-child{text-align:left}
tr.leak td{color:#b00020;font-weight:600}
svg text{font:11px system-ui,sans-serif;fill:#444}
.note{color:#666}
"""


def write_html(report: Report, stats: ReadStats, path: str) -> None:
    """Write the page to ``path``."""
    with open(path, "w", encoding="utf-8") as out:
        out.write(render_html(report, stats))


def render_html(report: Report, stats: ReadStats) -> str:
    """The whole page."""
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<title>sherlock_ai report</title><style>", _STYLE, "</style></head><body>",
        "<h1>sherlock_ai report</h1>",
        f"<p class='note'>{stats.records} records from {len(stats.files)} files, "
        f"{escape(when(report.first))} to {escape(when(report.last))}; "
        f"{stats.bad_lines} unreadable lines skipped.</p>",
        "<h2>Process RSS over time</h2>",
        "<p class='note'>Current (RSS) at the end of each measured block: the whole process, "
        "every request's memory included. Red lines: first warning of each leak suspect.</p>",
        _timeline_svg(report),
        "<h2>Leak suspects</h2>", _suspects_table(report),
        "<h2>Memory change per request, by name</h2>",
        "<p class='note'>Box: 25th to 75th percentile, line: median, whiskers: 5th to 95th "
        "percentile of each measurement's RSS change.</p>",
        _boxes_svg(report.ranked()),
        "<h2>All names</h2>", _names_table(report),
        "</body></html>",
    ]
    return "".join(parts)


def _scale(value: float, low: float, high: float, start: float, end: float) -> float:
    if high <= low:
        return (start + end) / 2
    return start + (value - low) / (high - low) * (end - start)


def _timeline_svg(report: Report) -> str:
    points = report.timeline
    if not points:
        return "<p>No RSS figures in these logs.</p>"
    first, last = points[0][0], points[-1][0]
    times = _spread_ties([t for t, _ in points])
    t0, t1 = times[0], times[-1]
    low, high = min(r for _, r in points), max(r for _, r in points)
    x = lambda t: _scale(t, t0, t1, PAD, WIDTH - 10)  # noqa: E731
    y = lambda r: _scale(r, low, high, HEIGHT - 30, 10)  # noqa: E731
    path = " ".join(f"{x(t):.1f},{y(r):.1f}" for t, (_, r) in zip(times, points))
    out = [f"<svg width='{WIDTH}' height='{HEIGHT}' "
           "role='img' aria-label='Process RSS over time'>",
           f"<polyline fill='none' stroke='#1565c0' stroke-width='1.5' points='{path}'/>",
           f"<text x='4' y='14'>{escape(format_bytes(high))}</text>",
           f"<text x='4' y='{HEIGHT - 30}'>{escape(format_bytes(low))}</text>",
           f"<text x='{PAD}' y='{HEIGHT - 8}'>{escape(_clock(first))}</text>",
           f"<text x='{WIDTH - 70}' y='{HEIGHT - 8}'>{escape(_clock(last))}</text>"]
    if len(points) == 1:
        out.append(f"<circle cx='{x(t0):.1f}' cy='{y(low):.1f}' r='3' fill='#1565c0'/>")
    for suspect in report.suspects.values():
        at = x(min(max(suspect.first_seen, t0), t1))
        out.append(f"<line x1='{at:.1f}' x2='{at:.1f}' y1='10' y2='{HEIGHT - 30}' "
                   "stroke='#b00020' stroke-dasharray='4 3'/>")
        out.append(f"<text x='{at + 4:.1f}' y='24' style='fill:#b00020'>"
                   f"{escape(suspect.name)}</text>")
    out.append("</svg>")
    return "".join(out)


def _spread_ties(times: List[float]) -> List[float]:
    """Sorted time stamps with each run of equal ones spread evenly, in order, over the time
    they stand for (a second for the whole seconds of text logs, else a millisecond): a short
    run logged in text would otherwise draw every point at one x."""
    out: List[float] = []
    i = 0
    while i < len(times):
        j = i
        while j < len(times) and times[j] == times[i]:
            j += 1
        step = (1.0 if float(times[i]).is_integer() else 0.001) / (j - i)
        out += [times[i] + k * step for k in range(j - i)]
        i = j
    return out


def _clock(stamp: float) -> str:
    return datetime.fromtimestamp(stamp).strftime("%H:%M:%S")


def _boxes_svg(names: Sequence[NameStats]) -> str:
    rows = [s for s in names if len(s.rss_changes) >= 2][:BOX_ROWS]
    if not rows:
        return "<p>Not enough memory figures for distributions.</p>"
    boxes: List[Tuple[NameStats, List[float]]] = []
    for s in rows:
        quantiles = [percentile(s.rss_changes, q) for q in (0.05, 0.25, 0.5, 0.75, 0.95)]
        boxes.append((s, [float(v) for v in quantiles if v is not None]))
    low = min(min(q[0], 0.0) for _, q in boxes)
    high = max(max(q[-1], 0.0) for _, q in boxes)
    left, row = 260, 26
    height = row * len(boxes) + 30
    x = lambda v: _scale(v, low, high, left, WIDTH - 20)  # noqa: E731
    out = [f"<svg width='{WIDTH}' height='{height}' "
           "role='img' aria-label='Memory change per request'>",
           f"<line x1='{x(0):.1f}' x2='{x(0):.1f}' y1='0' y2='{height - 20}' stroke='#bbb'/>"]
    for i, (s, (p5, p25, p50, p75, p95)) in enumerate(boxes):
        mid = i * row + 14
        out.append(f"<text x='4' y='{mid + 4}'>{escape(_short(s.name))}</text>")
        out.append(f"<line x1='{x(p5):.1f}' x2='{x(p95):.1f}' y1='{mid}' y2='{mid}' "
                   "stroke='#555'/>")
        out.append(f"<rect x='{x(p25):.1f}' y='{mid - 7}' width='{max(x(p75) - x(p25), 1):.1f}'"
                   " height='14' fill='#90caf9' stroke='#1565c0'/>")
        out.append(f"<line x1='{x(p50):.1f}' x2='{x(p50):.1f}' y1='{mid - 7}' y2='{mid + 7}' "
                   "stroke='#0d47a1' stroke-width='2'/>")
    out.append(f"<text x='{left}' y='{height - 4}'>{escape(format_change(low))}</text>")
    out.append(f"<text x='{WIDTH - 90}' y='{height - 4}'>{escape(format_change(high))}</text>")
    out.append("</svg>")
    return "".join(out)


def _short(name: str, limit: int = 40) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


def _suspects_table(report: Report) -> str:
    if not report.suspects:
        return "<p>None in these logs.</p>"
    rows = "".join(
        f"<tr class='leak'><td>{escape(s.name)}</td><td>+{escape(format_bytes(s.per_request))}"
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
        cells = [s.name, str(s.count), str(s.errors), seconds(s.duration_at(0.5)),
                 seconds(s.duration_at(0.95)), seconds(s.durations[-1] if s.durations else None),
                 format_change(s.rss_change_mean) if s.rss_changes else "-",
                 format_change(s.rss_change_max) if s.rss_changes else "-",
                 format_bytes(s.traced_peak_max) if s.traced_peak_max is not None else "-"]
        css = " class='leak'" if s.name in report.suspects else ""
        rows.append(f"<tr{css}>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>")
    return f"<table><tr>{header}</tr>{''.join(rows)}</table>"

