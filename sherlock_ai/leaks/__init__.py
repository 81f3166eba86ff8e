"""Leak watch: which route keeps memory after its requests end, how much per request, and the
line that allocates it, in a live service with concurrent requests.

How it works (details and limits in docs/leak-detection.md):

1. Requests are counted per route as they finish, and in flight between their start and end.
   Tracing is off most of the time.
2. Every so often a *window* opens: tracemalloc traces (1 frame by default) for
   ``window_requests`` requests, and the heap is snapshotted every ``snapshot_every`` of them.
   A snapshot taken while tracing holds exactly what the window allocated and is still alive;
   the first waits until the requests in flight when tracing started have ended.
   While nothing is suspected, shorter scout windows trace ``trace_share`` of the requests;
   while a route is suspected, full ones ``suspect_trace_share``; RSS growth that the flagged
   suspects do not explain calls a window early.
3. Each snapshot is grouped by allocation site, and a finished window analysed, in steps
   under one time budget per ``request_finished`` call (``rules.CALL_BUDGET_S``): the pause
   a call causes stays bounded. Per site, its retained size is fitted, with non-negative
   slopes, on the routes' request counts (:func:`.fit.fit_site`): a site that grows by 4 KB
   for every request of one route and not otherwise is that route's, whatever code it sits
   in. When the site is in the code of one route's endpoint, only that route is considered
   (the code is the prior); code shared by several routes leaves the choice to the counts
   among them; code outside every endpoint, to the counts of all routes.
4. A (site, route) that looks like a leak is confirmed by an immediate second window, traced
   with deeper tracebacks (the endpoint on the stack names the route of growth in a helper),
   that runs a full garbage collection (of the objects made since it opened) before its
   last snapshot.
5. A confirmed route is logged once as a WARNING on ``MonitoringLogger``, and again only when
   its estimate changes by more than a quarter.

The parts: :mod:`.settings` (what a user may set), :mod:`.rules` (every fixed constant,
with the rule it enforces), :mod:`.routes` (route ids, counters, endpoint code),
:mod:`.windows` (when to work, tracing leases, snapshots), :mod:`.evidence` (per-window data
and flags), :mod:`.fit` (why a route is flagged: the fit of a site and the criteria, on
:mod:`.series` and :mod:`.linear`), :mod:`.native` (RSS growth no traced site explains),
:mod:`.suspects` (what is logged and when) and :mod:`.watch` (the request path, and the
schedule's phases that tie the rest together).
"""

from .rules import OVERFLOW_ROUTE
from .settings import LeakWatchSettings
from .suspects import LeakSuspect
from .watch import LeakWatch, active_watches

__all__ = ["OVERFLOW_ROUTE", "LeakSuspect", "LeakWatch", "LeakWatchSettings",
           "active_watches"]
