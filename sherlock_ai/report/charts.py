"""SVG pieces of the HTML page: scales, nice ticks, time and size axes, lines broken at gaps.

Charts are drawn in a ``viewBox`` and stretched to the page width; every value a shape stands
for is in its ``<title>`` (shown on hover, and read by screen readers)."""

from __future__ import annotations

import math
import time
from html import escape
from typing import Callable, List, Optional, Sequence, Tuple

from .units import size

WIDTH = 1200
LEFT, RIGHT = 78, 16
COLORS = ("#1565c0", "#c62828", "#2e7d32", "#6a1b9a", "#ef6c00", "#00838f", "#4e342e",
          "#ad1457", "#558b2f", "#283593")
_TIME_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600,
               43200, 86400, 172800, 604800)

Point = Tuple[float, float]


def color(i: int) -> str:
    return COLORS[i % len(COLORS)]


def linear(low: float, high: float, start: float, end: float) -> Callable[[float], float]:
    """Maps [low, high] onto [start, end] (the middle when the range is empty)."""
    if high <= low:
        return lambda _: (start + end) / 2
    k = (end - start) / (high - low)
    return lambda v: start + (v - low) * k


def symlog(v: float, linear_below: float) -> float:
    """A log scale for both signs: about linear within ``linear_below`` of zero."""
    return math.copysign(math.log10(1 + abs(v) / linear_below), v)


def nice_step(span: float, count: int = 5) -> float:
    """A step of 1, 2 or 5 times a power of ten that cuts ``span`` into about ``count``."""
    if span <= 0:
        return 1.0
    raw = span / count
    power: float = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def size_ticks(low: float, high: float) -> List[float]:
    """Round sizes (in the unit of the range: KB, MB, GB) from ``low`` to ``high``."""
    if high - low < max(abs(high), 1024) * 0.02:
        # One value, or nearly: a range around it, so that it does not sit on the frame.
        pad = max(abs(high) * 0.05, 1024)
        low, high = low - pad, high + pad
    unit = 1024 ** max(0, min(4, int(math.log(max(abs(low), abs(high), 1), 1024))))
    step = nice_step((high - low) / unit) * unit
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step) + 1)]


def time_ticks(t0: float, t1: float) -> Tuple[List[float], str]:
    """Tick moments on whole local minutes, hours or days, and their strftime format."""
    span = max(t1 - t0, 1.0)
    # Past weeks, whole days of 1, 2 or 5 times a power of ten: at most about 8 ticks for
    # any span (logs with far-apart dates do not make a page of millions of ticks).
    step = next((s for s in _TIME_STEPS if span / s <= 8),
                max(nice_step(span / 86400, 8), 7.0) * 86400)
    offset = -time.localtime(t0).tm_gmtoff
    first = math.ceil((t0 - offset) / step) * step + offset
    ticks = [first + i * step for i in range(int((t1 - first) / step) + 1)]
    fmt = "%H:%M:%S" if step < 60 else "%H:%M"
    if span > 86400:
        fmt = "%m-%d " + fmt if step < 86400 else "%Y-%m-%d"
    return ticks, fmt


def svg_open(name: str, height: int, label: str, hover: bool = False) -> str:
    """``hover``: the page's script shows the value of the point under the pointer."""
    return (f"<svg class='chart' data-chart='{name}' viewBox='0 0 {WIDTH} {height}' "
            f"role='img' aria-label='{escape(label)}'{' data-hover' if hover else ''}>")


def time_axis(x: Callable[[float], float], t0: float, t1: float, top: float, bottom: float
              ) -> str:
    ticks, fmt = time_ticks(t0, t1)
    out = [f"<line class='axis' x1='{LEFT}' x2='{WIDTH - RIGHT}' y1='{bottom}' y2='{bottom}'/>"]
    for tick in ticks:
        at = x(tick)
        anchor = "end" if at > WIDTH - 40 else "start" if at < LEFT + 30 else "middle"
        out.append(f"<line class='grid' x1='{at:.1f}' x2='{at:.1f}' y1='{top}' y2='{bottom}'/>"
                   f"<text x='{at:.1f}' y='{bottom + 16}' text-anchor='{anchor}'>"
                   f"{escape(time.strftime(fmt, time.localtime(tick)))}</text>")
    return "".join(out)


def value_axis(y: Callable[[float], float], ticks: Sequence[float], label: Callable[[float], str]
               ) -> str:
    out = []
    for tick in ticks:
        at = y(tick)
        out.append(f"<line class='grid' x1='{LEFT}' x2='{WIDTH - RIGHT}' y1='{at:.1f}' "
                   f"y2='{at:.1f}'/><text x='{LEFT - 6}' y='{at + 4:.1f}' text-anchor='end'>"
                   f"{escape(label(tick))}</text>")
    return "".join(out)


def segments(points: Sequence[Point], gap: float) -> List[List[Point]]:
    """``points`` cut where two neighbours are more than ``gap`` apart in time: an idle
    period or a restart is a gap in the line, not a straight stroke across it."""
    out: List[List[Point]] = []
    for point in points:
        if not out or point[0] - out[-1][-1][0] > gap:
            out.append([])
        out[-1].append(point)
    return out


def series_path(points: Sequence[Point], gap: float, x: Callable[[float], float],
                y: Callable[[float], float], stroke: str, title: str, attrs: str = "",
                point_title: Optional[Callable[[Point], str]] = None) -> str:
    """One series: a polyline per segment (a dot for a segment of one point), and a dot with
    its value on hover for each point when ``point_title`` is given."""
    out = [f"<g {attrs}><title>{escape(title)}</title>"]
    for part in segments(points, gap):
        if len(part) == 1:
            t, v = part[0]
            out.append(f"<circle cx='{x(t):.1f}' cy='{y(v):.1f}' r='2.5' fill='{stroke}'/>")
            continue
        path = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in part)
        out.append(f"<polyline fill='none' stroke='{stroke}' stroke-width='1.6' "
                   f"points='{path}'/>")
    if point_title is not None:
        out += [f"<circle class='hit' cx='{x(p[0]):.1f}' cy='{y(p[1]):.1f}' r='4'>"
                f"<title>{escape(point_title(p))}</title></circle>" for p in points]
    out.append("</g>")
    return "".join(out)


def legend(entries: Sequence[Tuple[str, str]]) -> str:
    """HTML legend: a coloured key and a label per series."""
    return "<p class='legend'>" + "".join(
        f"<span><i style='background:{c}'></i>{escape(label)}</span>" for label, c in entries
    ) + "</p>"


def size_label(v: float) -> str:
    return size(v)
