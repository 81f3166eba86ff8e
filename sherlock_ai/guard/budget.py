"""Per-request memory budgets: a request whose memory grew more than its route's budget gets
one ``MEMORY BUDGET`` warning. The request itself is not changed."""

from __future__ import annotations

from typing import FrozenSet, List, Mapping, Optional, Union

from ..engine.measurement import Measurement
from .events import BudgetEvent
from .sizes import budget_for

# How many of the app's routes a message about unknown budget keys lists.
_SHOWN_ROUTES = 40
# Methods frameworks add to every route: left out of the list of its methods.
_IMPLICIT = frozenset(("HEAD", "OPTIONS"))


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
        measured: Optional[int]
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

    def unknown_keys(self, routes: Mapping[str, Optional[FrozenSet[str]]]) -> Optional[str]:
        """What to tell when some keys of a budget mapping name no route among ``routes``
        (route template -> its methods, ``None`` for any), else ``None``."""
        budgets = self.budgets
        if isinstance(budgets, int):
            return None
        unknown: List[str] = []
        for key in budgets:
            method, space, template = key.partition(" ")
            if not space:
                method, template = "", key
            if template not in routes:
                unknown.append(key)
                continue
            methods = routes[template]
            if method and methods is not None and method not in methods:
                unknown.append(key)
        if not unknown:
            return None
        shown = [template if methods is None else
                 f"{template} ({', '.join(sorted(methods - _IMPLICIT or methods))})"
                 for template, methods in sorted(routes.items())]
        more = f" and {len(shown) - _SHOWN_ROUTES} more" if len(shown) > _SHOWN_ROUTES else ""
        return (f"memory_budget names routes this app does not serve: "
                f"{', '.join(map(repr, unknown))}; its routes are "
                f"{'; '.join(shown[:_SHOWN_ROUTES]) or 'none'}{more} (a key is a route "
                "template as the MEMORY lines name it, '/export', or a method and a template, "
                "'POST /export')")
