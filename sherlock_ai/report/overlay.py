"""What the HTML page draws over its charts: the events on the RSS timeline (leak suspects,
the memory guard's budget warnings and RSS-limit changes) and the value under the pointer.

The hover script is inline and small; it reads the values from the ``<title>`` of each
point's hit target, which stay the static fallback (a print, a page with scripts off).
"""

from __future__ import annotations

from html import escape
from typing import Callable, List, Sequence

from .charts import LEFT, RIGHT, WIDTH
from .stats import Event
from .units import size, when

# RSS-limit states drawn as "over the limit" (the others are "back under").
_OVER = frozenset({"crossed", "shedding", "recycling"})
_COLORS = {"leak_suspect": "#b00020", "memory_budget": "#ef6c00", "over": "#6a1b9a",
           "under": "#2e7d32"}

HOVER_STYLE = """
.tip{position:absolute;pointer-events:none;background:#222;color:#fff;font-size:12px;
padding:3px 7px;border-radius:3px;white-space:nowrap;z-index:1}
.cursor{fill:none;stroke:#222;stroke-width:1.5;visibility:hidden}
@media print{.tip,.cursor{display:none}}
"""

# The nearest point (by its place on the page) of a chart with data-hover: its title in a tip
# beside the pointer, a ring around it. No network, no other element changes.
HOVER_SCRIPT = """<script>
(() => {
  const tip = document.createElement("div");
  tip.className = "tip";
  tip.hidden = true;
  document.body.append(tip);
  for (const svg of document.querySelectorAll("svg.chart[data-hover]")) {
    const hits = [...svg.querySelectorAll("circle.hit")];
    const ring = svg.querySelector("circle.cursor");
    if (!hits.length || !ring) continue;
    svg.addEventListener("pointermove", (e) => {
      let best = null, bestD = Infinity;
      for (const hit of hits) {
        const b = hit.getBoundingClientRect();
        const dx = b.left + b.width / 2 - e.clientX, dy = b.top + b.height / 2 - e.clientY;
        const d = dx * dx + dy * dy / 16;
        if (d < bestD) { bestD = d; best = hit; }
      }
      const title = best && best.querySelector("title");
      if (!title) return;
      ring.setAttribute("cx", best.getAttribute("cx"));
      ring.setAttribute("cy", best.getAttribute("cy"));
      ring.style.visibility = "visible";
      tip.textContent = title.textContent;
      tip.hidden = false;
      tip.style.left = (e.pageX + 14) + "px";
      tip.style.top = (e.pageY + 14) + "px";
    });
    svg.addEventListener("pointerleave", () => {
      tip.hidden = true;
      ring.style.visibility = "hidden";
    });
  }
})();
</script>"""

CURSOR = "<circle class='cursor' cx='0' cy='0' r='6'/>"


def event_text(event: Event) -> str:
    """What the mark of ``event`` says on hover."""
    stamp, kind, name, pid, figures = event
    where = f"pid {pid}, " if pid is not None else ""
    if kind == "memory_budget":
        measure = str(figures.get("measure") or "").replace("_", " ")
        what = (f"memory budget {name}: {size(figures.get('measured_bytes'))} > "
                f"{size(figures.get('budget_bytes'))} ({measure})")
    elif kind == "rss_limit":
        state = str(figures.get("state") or "").replace("_", " ")
        action = figures.get("action")
        what = (f"RSS limit {state}: RSS {size(figures.get('rss_bytes'))}, limit "
                f"{size(figures.get('limit_bytes'))}" + (f", action {action}" if action else ""))
    else:
        what = f"leak suspect {name}"
    return f"{what} ({where}{when(stamp)})"


def limits(events: Sequence[Event]) -> List[float]:
    """The RSS limits the guard's lines name (drawn as a level, so kept in the scale)."""
    return sorted({float(e[4]["limit_bytes"]) for e in events
                   if e[1] == "rss_limit" and e[4].get("limit_bytes") is not None})


def event_marks(events: Sequence[Event], x: Callable[[float], float],
                y: Callable[[float], float], top: float, bottom: float) -> str:
    """Leak suspects: dashed red lines; budget warnings: orange ticks at the foot; RSS-limit
    changes: purple lines (over the limit) and green ones (back under), and the limit as a
    dotted level."""
    out = []
    for level in limits(events):
        at = y(level)
        out.append(f"<line class='limit' data-kind='rss_limit' x1='{LEFT}' "
                   f"x2='{WIDTH - RIGHT}' y1='{at:.1f}' y2='{at:.1f}' stroke='#6a1b9a' "
                   f"stroke-dasharray='2 3'><title>{escape('RSS limit ' + size(level))}"
                   "</title></line>")
    for event in events:
        stamp, kind, figures = event[0], event[1], event[4]
        at = x(stamp)
        if kind == "memory_budget":
            shape = (f"y1='{bottom - 14}' y2='{bottom}' stroke='{_COLORS[kind]}' "
                     "stroke-width='3'")
        elif kind == "rss_limit":
            over = "over" if figures.get("state") in _OVER else "under"
            shape = f"y1='{top}' y2='{bottom}' stroke='{_COLORS[over]}' stroke-width='2'"
        else:
            shape = (f"y1='{top}' y2='{bottom}' stroke='{_COLORS['leak_suspect']}' "
                     "stroke-width='1.5' stroke-dasharray='5 3'")
        out.append(f"<line class='event' data-kind='{kind}' x1='{at:.1f}' x2='{at:.1f}' "
                   f"{shape}><title>{escape(event_text(event))}</title></line>")
    return "".join(out)

