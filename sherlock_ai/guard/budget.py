"""Per-request memory budgets: a request whose memory grew more than its route's budget gets
one ``MEMORY BUDGET`` warning. The request itself is not changed."""

from __future__ import annotations

from typing import Mapping, Optional, Union

from ..engine.measurement import Measurement
from .events import BudgetEvent
from .sizes import budget_for


class Budgets:
    """Compares a finished request's figure with its budget.

    The figure is the request's traced peak (``Peak``) when the request was traced
    (``trace_malloc=True``): the most Python memory it held at once, its own allocations only;
    else its RSS peak when the guard measured one (see :mod:`sherlock_ai.guard.peak`): the
    process's highest RSS while the request ran minus its RSS when the request began (memory
    built and freed before the end included; process-wide: concurrent requests count too);
    else its RSS change (``Change``), which misses memory the request freed before it ended."""

    __slots__ = ("budgets",)

    def __init__(self, budgets: Union[int, Mapping[str, int]]) -> None:
        self.budgets = budgets

    def check(self, m: Measurement, rss_peak: Optional[int] = None) -> Optional[BudgetEvent]:
        """The event of ``m`` when it is over its budget, else ``None`` (``rss_peak``: the
        process's highest RSS while the request ran, when measured)."""
        attributes = m.attributes
        route = attributes.get("route")
        budget = budget_for(self.budgets, m.name, route)
        if budget is None:
            return None
        change = m.rss_change
        if m.traced_peak is not None:
            measured, measure = m.traced_peak, "traced_peak"
        elif rss_peak is not None and m.rss is not None and change is not None:
            # Never below the change: the mark's counters and statm's are read apart.
            measured, measure = max(rss_peak - (m.rss - change), change), "rss_peak"
        else:
            measured, measure = change, "rss_change"
        if measured is None or measured <= budget:
            return None
        return BudgetEvent(m.name, attributes.get("method", "OTHER"), route or m.name,
                           measured, budget, measure)
